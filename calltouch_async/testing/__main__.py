"""``python -m calltouch_async.testing``: run the emulator standalone until Ctrl-C or SIGTERM.

Prints the base URL, the credentials it accepts (its own test values, not a Calltouch key)
and an example ``curl``, so other programs can be pointed at it. ``calltouch-async emulator``
runs ``main`` with its own ``prog``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from ._emulator import COMMENT_PATH, CalltouchEmulator, serve_forever

__all__ = ["build_parser", "main"]


_DEFAULT_SITE_ID = "12345"
_DEFAULT_TOKEN = "test-token"


def example_curl(base_url: str, site_id: str, token: str) -> str:
    """A ``curl`` that comments call 1 on the emulator (with ``--calls`` at least 1)."""
    body = '{"comments": [{"matching": [{"type": "call", "callParams": {"callId": 1}}], ' \
        '"addComment": "hello"}]}'
    return (
        f"curl -s -X POST {base_url}{COMMENT_PATH} -H 'Content-Type: application/json' "
        f"-H 'SiteId: {site_id}' -H 'Access-Token: {token}' -d '{body}'"
    )


_EPILOG = f"""\
credentials: the emulator accepts only the SiteId and Access-Token headers given by
--site-id ({_DEFAULT_SITE_ID}) and --token ({_DEFAULT_TOKEN}); any other pair gets 401.
These are the emulator's own test values, never a Calltouch key; the banner shows them
(a token given with --token is not printed). For example:

  {example_curl("http://127.0.0.1:8080", _DEFAULT_SITE_ID, _DEFAULT_TOKEN)}
"""


def build_parser(prog: str = "python -m calltouch_async.testing") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a local Calltouch comment API emulator.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port (0: any free port)")
    parser.add_argument("--calls", type=int, default=0, help="synthetic calls, ids 1..N")
    parser.add_argument("--requests", type=int, default=0, help="synthetic requests, ids 1..N")
    parser.add_argument(
        "--site-id", default=_DEFAULT_SITE_ID, help="SiteId header it accepts (%(default)s)"
    )
    parser.add_argument(
        "--token", default=_DEFAULT_TOKEN, help="Access-Token header it accepts (%(default)s)"
    )
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


def banner(emulator: CalltouchEmulator, site_id: str, token: str) -> str:
    """What the emulator prints once it listens: where, the credentials it takes, a curl.

    The default token is shown; one given with ``--token`` is not (it may be a value its
    owner keeps out of logs), and the curl names where to put it instead.
    """
    if token != _DEFAULT_TOKEN:
        token = "<the --token value>"
    return "\n".join([
        f"Calltouch emulator listening on {emulator.base_url}",
        f"  POST {emulator.base_url}{COMMENT_PATH}",
        f"  accepts SiteId: {site_id}  Access-Token: {token}  (emulator test values; "
        "others get 401)",
        f"  {len(emulator.calls)} calls, {len(emulator.requests)} requests; Ctrl-C to stop",
        "  try:",
        f"  {example_curl(emulator.base_url, site_id, token)}",
    ])


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), serve until interrupted; exit status.
    ``prog`` names the command in usage and errors (``calltouch-async emulator``)."""
    args = build_parser(*(() if prog is None else (prog,))).parse_args(argv)
    try:
        emulator = emulator_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve_until_stopped(emulator, args))
    except KeyboardInterrupt:  # where signal handlers cannot be installed (Windows)
        pass
    except OSError as exc:  # e.g. the port is taken
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("stopped", flush=True)
    return 0


async def _serve_until_stopped(emulator: CalltouchEmulator, args: argparse.Namespace) -> None:
    """Serve until SIGINT or SIGTERM (a container's stop). The handlers are installed
    explicitly: a process started in the background by a shell inherits SIGINT ignored, and
    asyncio's own Ctrl-C handling would then never stop it."""
    serving = asyncio.create_task(serve_forever(
        emulator, ready=lambda emu: print(banner(emu, args.site_id, args.token), flush=True)
    ))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, serving.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await serving


if __name__ == "__main__":
    sys.exit(main())
