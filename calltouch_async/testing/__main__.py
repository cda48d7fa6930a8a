"""``python -m calltouch_async.testing``: run the emulator standalone until Ctrl-C.

Prints the base URL (never the token) so other programs can be pointed at it. ``main`` and
``build_parser`` are importable so a CLI command can reuse them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from ._emulator import COMMENT_PATH, CalltouchEmulator, serve_forever

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "python -m calltouch_async.testing") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Run a local Calltouch comment API emulator."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port (0: any free port)")
    parser.add_argument("--calls", type=int, default=0, help="synthetic calls, ids 1..N")
    parser.add_argument("--requests", type=int, default=0, help="synthetic requests, ids 1..N")
    parser.add_argument("--site-id", default="12345", help="expected SiteId header")
    parser.add_argument("--token", default="test-token", help="expected Access-Token header")
    parser.add_argument(
        "--rate-limit", type=int, default=5, help="requests per second per IP (0: no limit)"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before answering")
    parser.add_argument(
        "--latency-max", type=float, default=None,
        help="with --latency: answer after a uniform draw between the two",
    )
    parser.add_argument(
        "--jitter", type=float, default=0.0,
        help="inbound jitter: each request arrives up to this many seconds late",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for data and randomness")
    return parser


def emulator_from_args(args: argparse.Namespace) -> CalltouchEmulator:
    """Build (not start) the emulator the parsed arguments describe."""
    emulator = CalltouchEmulator(
        site_id=args.site_id,
        access_token=args.token,
        host=args.host,
        port=args.port,
        rate_limit=args.rate_limit or None,
        latency=args.latency if args.latency_max is None else (args.latency, args.latency_max),
        inbound_jitter=args.jitter,
        seed=args.seed,
    )
    emulator.generate(args.calls, args.requests, seed=args.seed)
    return emulator


def _announce(emulator: CalltouchEmulator) -> None:
    print(f"Calltouch emulator listening on {emulator.base_url}", flush=True)
    print(f"  POST {emulator.base_url}{COMMENT_PATH}", flush=True)
    print(
        f"  {len(emulator.calls)} calls, {len(emulator.requests)} requests; Ctrl-C to stop",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), serve until interrupted; exit status."""
    args = build_parser().parse_args(argv)
    try:
        emulator = emulator_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve_forever(emulator, ready=_announce))
    except KeyboardInterrupt:
        print("stopped", flush=True)
    except OSError as exc:  # e.g. the port is taken
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
