"""Benchmark 3: the client's CPU cost per 100-lead request, over the transport floor.

An emulator (own process) with no latency and no rate limit; this process measures only
itself with ``time.process_time()``. Compared at the same concurrency (``--concurrency``
requests in flight) over the same server:

- ``calltouch_async`` with ``rate_limiter=None``: ``comment_many`` over prebuilt leads
  (validation, packing, msgspec encode/decode, one ``CommentResult`` per lead);
- bare aiohttp: POST the same pre-encoded bytes and read the answer's bytes (the floor);
- hand-written: dicts + ``json.dumps`` per request + ``json.loads`` of the answer (what the
  peers do), for reference.

Trials alternate between the variants; the median trial is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from _harness import (
    SITE_ID,
    TOKEN,
    Emulator,
    Table,
    add_output_flag,
    emit,
    fmt,
    make_leads,
    wire_leads,
)

from calltouch_async import CalltouchClient
from calltouch_async._models import encode_request

PATH = "/lead-service/v1/api/comment/lead/add"
HEADERS = {"Access-Token": TOKEN, "SiteId": str(SITE_ID), "Content-Type": "application/json"}
CALLS = 1000


async def ours(base_url: str, requests: int, concurrency: int) -> tuple[float, int]:
    leads = make_leads(requests * 100, calls=CALLS, tag="overhead")
    async with CalltouchClient(
        SITE_ID, TOKEN, base_url=base_url, rate_limiter=None, max_in_flight=concurrency
    ) as client:
        await client.comment(leads[:100])  # warm: connection, codec caches
        done = 0
        cpu = time.process_time()
        async for _ in client.comment_many(leads):
            done += 1
        cpu = time.process_time() - cpu
    return cpu, done


async def _workers(
    base_url: str, requests: int, concurrency: int,
    post: Callable[[aiohttp.ClientSession, int], Awaitable[int]],
) -> tuple[float, int]:
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency * 2)
    ) as session:
        await post(session, 0)  # warm
        queue = iter(range(requests))
        done = 0

        async def worker() -> None:
            nonlocal done
            for i in queue:
                answered = await post(session, i)
                done += answered  # not `done += await ...`: that reads `done` before awaiting

        cpu = time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cpu = time.process_time() - cpu
    return cpu, done


async def bare(base_url: str, requests: int, concurrency: int) -> tuple[float, int]:
    body = encode_request(make_leads(100, calls=CALLS, tag="overhead"))
    url = base_url + PATH

    async def post(session: aiohttp.ClientSession, i: int) -> int:
        async with session.post(url, data=body, headers=HEADERS) as resp:
            await resp.read()
            return 100 if resp.status == 200 else 0

    return await _workers(base_url, requests, concurrency, post)


async def hand_written(base_url: str, requests: int, concurrency: int) -> tuple[float, int]:
    leads = wire_leads(requests * 100, calls=CALLS, tag="overhead")
    url = base_url + PATH

    async def post(session: aiohttp.ClientSession, i: int) -> int:
        chunk: list[dict[str, Any]] = leads[i * 100 : i * 100 + 100]
        async with session.post(url, data=json.dumps({"comments": chunk}), headers=HEADERS) as r:
            answer = json.loads(await r.read())
        return sum(1 for o in answer["data"]["comments"] if "commented" in o)

    return await _workers(base_url, requests, concurrency, post)


VARIANTS: dict[str, Callable[[str, int, int], Awaitable[tuple[float, int]]]] = {
    "calltouch_async (rate_limiter=None)": ours,
    "bare aiohttp POST of pre-encoded bytes": bare,
    "hand-written: dicts + json.dumps/json.loads": hand_written,
}


def measure(args: argparse.Namespace) -> Table:
    cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
    quiet = {"rate_limit": None, "latency": (0.0, 0.0), "jitter": 0.0, "record": False}
    with Emulator(calls=CALLS, **quiet) as emu:
        for _ in range(args.trials):
            for name, variant in VARIANTS.items():
                seconds, leads = asyncio.run(variant(emu.base_url, args.requests, args.concurrency))
                if leads != args.requests * 100:
                    raise RuntimeError(f"{name}: {leads} of {args.requests * 100} leads answered")
                cpu[name].append(seconds)
    floor = statistics.median(cpu["bare aiohttp POST of pre-encoded bytes"])
    table = Table(
        f"Client CPU per 100-lead request: {args.requests} requests, {args.concurrency} in "
        f"flight, no latency, no rate limit",
        ["client", "CPU ms / request", "CPU us / lead", "x bare aiohttp"],
    )
    for name, values in cpu.items():
        per_request = statistics.median(values) / args.requests
        table.add(
            name, fmt(per_request * 1000, 3), fmt(per_request * 1e6 / 100, 1),
            fmt(statistics.median(values) / floor, 2),
        )
    table.notes.append(
        f"time.process_time() of the client process only (the emulator runs in its own); "
        f"median of {args.trials} alternating trials, each after one warm-up request. "
        "Ours includes local validation, packing, msgspec encode/decode and one typed "
        "CommentResult per lead; the bare loop only sends the same bytes and reads the answer."
    )
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--trials", type=int, default=5)
    add_output_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    emit([measure(args)], args.json)


if __name__ == "__main__":
    main()
