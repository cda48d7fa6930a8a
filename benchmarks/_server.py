"""The emulator in its own process, with a small control endpoint for the benchmarks.

``python benchmarks/_server.py --calls 10000 --latency 0.05 0.3 --jitter 0.03`` starts a
:class:`CalltouchEmulator` and a second tiny aiohttp server on loopback, then prints one JSON
line ``{"base_url": ..., "control_url": ...}`` once both accept connections. The control
server answers ``GET /_stats`` with the ledger figures (``?texts=1`` adds how many times
each comment text was applied, ``?arrivals=1`` every arrival time with its status) and
``POST /_reset`` with an empty ledger and rate window.

The process ends when its stdin closes (the benchmark exits or closes the pipe) or on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections import Counter

from aiohttp import web

from calltouch_async.testing import CalltouchEmulator


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="synthetic calls, ids 1..N")
    parser.add_argument("--rate-limit", type=int, default=5, help="per second; 0: off")
    parser.add_argument("--rate-period", type=float, default=1.0)
    parser.add_argument(
        "--latency", type=float, nargs=2, default=(0.0, 0.0), metavar=("LOW", "HIGH"),
        help="answer latency range in seconds",
    )
    parser.add_argument("--jitter", type=float, default=0.0, help="inbound jitter, seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-record", action="store_true",
        help="count applied comments without keeping them (long memory runs)",
    )
    return parser


def ledger_stats(emu: CalltouchEmulator, rate: int, *, texts: bool, arrivals: bool) -> dict:
    ledger = emu.ledger
    records = list(ledger.requests)
    every = sorted(r.arrived_at for r in records)
    sizes = [r.lead_count for r in records if r.status == 200]
    # The tightest `rate + 1` consecutive arrivals (429s included): the closest the client
    # came to (or went past, below the period) the window's limit.
    spans = [every[i + rate] - every[i] for i in range(len(every) - rate)]
    stats: dict[str, object] = {
        "requests": len(records),
        "statuses": {str(k): v for k, v in sorted(ledger.status_counts().items())},
        "rate_limited": sum(1 for r in records if r.status == 429),
        "max_in_1s": ledger.max_in_window(1.0),
        "max_in_1s_all": ledger.max_in_window(1.0, accepted_only=False),
        "min_span": min(spans) if spans else None,
        "leads_in_ok_requests": sum(sizes),
        "ok_requests": len(sizes),
        "min_ok_size": min(sizes) if sizes else 0,
        "applied_total": ledger.applied_total,
        "first_arrival": every[0] if every else None,
        "last_arrival": every[-1] if every else None,
    }
    if texts:
        stats["texts"] = dict(Counter(a.text for a in ledger.applied))
    if arrivals:
        stats["arrivals"] = sorted([r.arrived_at, r.status] for r in records)
    return stats


async def serve(args: argparse.Namespace) -> None:
    rate = args.rate_limit or None
    emu = CalltouchEmulator(
        port=0,
        rate_limit=rate,
        rate_period=args.rate_period,
        latency=tuple(args.latency),
        inbound_jitter=args.jitter,
        seed=args.seed,
        record_comments=not args.no_record,
    )
    emu.generate(calls=args.calls, seed=args.seed)

    async def stats(request: web.Request) -> web.Response:
        flags = request.query
        body = ledger_stats(
            emu, rate or 5, texts=flags.get("texts") == "1", arrivals=flags.get("arrivals") == "1"
        )
        return web.json_response(body)

    async def reset(request: web.Request) -> web.Response:
        emu.reset()
        return web.json_response({"ok": True})

    control = web.Application()
    control.router.add_get("/_stats", stats)
    control.router.add_post("/_reset", reset)
    runner = web.AppRunner(control, access_log=None)
    async with emu:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        ready = {"base_url": emu.base_url, "control_url": f"http://{host}:{port}"}
        print(json.dumps(ready), flush=True)
        try:
            await _until_stdin_closes()
        finally:
            await runner.cleanup()


async def _until_stdin_closes() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def drain() -> None:
        while await reader.read(4096):
            pass
        stop.set()

    drainer = asyncio.create_task(drain())
    await stop.wait()
    drainer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await drainer


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
