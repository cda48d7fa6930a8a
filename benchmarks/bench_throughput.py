"""Benchmark 1: throughput and safety against the strict 5 requests/second window.

10,000 leads against an emulator (own process) with a strict sliding window of 5 requests per
second, 30 ms inbound jitter and 50-300 ms latency. Our client (default limiter, and
``SpacedLimiter`` as an extra row) side by side with two hand-written peers:
``peers/naive_gather.py`` (aiohttp + ``AsyncLimiter(5, 1)`` + json + gather) and
``peers/sequential_sleep.py`` (requests one after another with ``sleep(0.2)``).

Every client gets a fresh emulator, so no run inherits another's window or connections.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from _harness import (
    CEILING,
    LIBRARY_WARNINGS,
    SITE_ID,
    TOKEN,
    Emulator,
    Table,
    add_output_flag,
    check_ledger,
    emit,
    fmt,
    make_leads,
    text_for,
    wire_leads,
)
from peers import naive_gather, sequential_sleep

from calltouch_async import UNSET, CalltouchClient, CommentStatus, SpacedLimiter


@dataclass
class Run:
    name: str
    wall: float
    first_result: float | None
    results: int  # leads the client reported anything for
    reported: list[str]  # texts the client reported commented


async def run_ours(base_url: str, n: int, calls: int, tag: str, spaced: bool) -> Run:
    leads = make_leads(n, calls=calls, tag=tag)
    limiter = SpacedLimiter() if spaced else UNSET
    statuses: Counter[str] = Counter()
    reported: list[str] = []
    first: float | None = None
    async with CalltouchClient(SITE_ID, TOKEN, base_url=base_url, rate_limiter=limiter) as c:
        start = time.perf_counter()
        async for r in c.comment_many(leads):
            if first is None:
                first = time.perf_counter() - start
            statuses[r.status] += 1
            if r.status is CommentStatus.COMMENTED:
                reported.append(r.lead.comment)
        wall = time.perf_counter() - start
    name = "calltouch_async, SpacedLimiter" if spaced else "calltouch_async (default limiter)"
    return Run(name, wall, first, sum(statuses.values()), reported)


def peer(
    name: str, module: Callable[..., Awaitable[naive_gather.PeerRun]]
) -> Callable[[str, int, int, str], Awaitable[Run]]:
    async def run(base_url: str, n: int, calls: int, tag: str) -> Run:
        leads = wire_leads(n, calls=calls, tag=tag)
        got = await module(base_url, SITE_ID, TOKEN, leads)
        # A request that failed yields an error for its leads: each still "got a result".
        return Run(name, got.wall, got.first_result, n, got.commented)

    return run


CLIENTS: dict[str, Callable[[str, int, int, str], Awaitable[Run]]] = {
    "ours": lambda url, n, calls, tag: run_ours(url, n, calls, tag, spaced=False),
    "spaced": lambda url, n, calls, tag: run_ours(url, n, calls, tag, spaced=True),
    "naive": peer("naive: aiohttp + AsyncLimiter(5, 1) + gather", naive_gather.comment_all),
    "sequential": peer("sequential + sleep(0.2)", sequential_sleep.comment_all),
}


def measure(args: argparse.Namespace) -> Table:
    table = Table(
        f"Throughput and safety: {args.leads:,} leads, strict 5/1 s window, "
        f"{args.jitter * 1000:g} ms inbound jitter, {args.latency[0] * 1000:g}-"
        f"{args.latency[1] * 1000:g} ms latency",
        [
            "client", "leads/s", "% of 500/s", "wall s", "1st result s", "requests", "429s",
            "max sent in 1 s", "lost", "twice",
        ],
    )
    calls = max(args.leads, 1)
    for key in args.clients:
        tag = f"throughput-{key}"
        warned = sum(LIBRARY_WARNINGS.counts.values())
        with Emulator(
            calls=calls, latency=tuple(args.latency), jitter=args.jitter, seed=args.seed
        ) as emu:
            run = asyncio.run(CLIENTS[key](emu.base_url, args.leads, calls, tag))
            stats = emu.stats(texts=True)
        sent = [text_for(tag, i) for i in range(args.leads)]
        check = check_ledger(sent, run.reported, stats["texts"])
        applied = args.leads - check.lost
        rate = applied / run.wall if run.wall > 0 else 0.0
        table.add(
            run.name, fmt(rate, 0), fmt(100 * rate / CEILING), fmt(run.wall, 2),
            fmt(run.first_result, 2), fmt(stats["requests"]), fmt(stats["rate_limited"]),
            fmt(stats["max_in_1s_all"]), fmt(check.lost), fmt(check.twice),
        )
        if check.phantom or run.results != args.leads:
            table.notes.append(
                f"{run.name}: {check.phantom} leads reported commented but absent from the "
                f"ledger; {args.leads - run.results} leads got no result"
            )
        if warned := sum(LIBRARY_WARNINGS.counts.values()) - warned:
            table.notes.append(f"{run.name}: the library logged {warned} warnings (retries)")
        print(f"  {run.name}: done in {run.wall:.1f} s", flush=True)
    table.notes += [
        "leads/s = leads the server's ledger shows commented / wall time from the first send "
        "to the last result; lost = leads never applied (every lead exists on the server); "
        "twice = leads applied more than once; requests and 429s as the server counted them; "
        "max sent in 1 s = requests (429s included) arriving in the busiest 1 s window: over 5 "
        "breaks Calltouch's rule.",
        "Every client gets a fresh emulator process. The naive peer treats a 429 as an error "
        "(no retry); its lost leads are the 429ed requests.",
    ]
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--jitter", type=float, default=0.03, help="inbound jitter, seconds")
    parser.add_argument("--latency", type=float, nargs=2, default=(0.05, 0.3))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--clients", nargs="+", choices=list(CLIENTS), default=list(CLIENTS),
        help="which clients to run (default: all)",
    )
    add_output_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    emit([measure(args)], args.json)


if __name__ == "__main__":
    main()
