"""Benchmark 5: ``submit()`` coalescing single leads into shared 100-lead requests.

Against an emulator (own process) with the strict 5/1 s window, 30 ms inbound jitter and
50-300 ms latency:

1. ``--concurrent`` (2,000) ``submit()`` calls started at once: requests used (expect
   ceil(2000/100) = 20), leads/s, % of the 500 leads/s ceiling, 429s, p50/p99 latency of a
   submit (call to result).
2. A lone submit at low load, ``--lone`` (20) times one after another with a pause between
   so the limiter is idle: p50/p99 latency, expected about ``linger`` plus one round trip.
   For reference, the same number of lone ``comment([lead])`` calls (one round trip, no
   linger) on the same client.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from _harness import (
    CEILING,
    SITE_ID,
    TOKEN,
    Emulator,
    Table,
    add_output_flag,
    check_ledger,
    emit,
    fmt,
    make_leads,
    percentile,
    text_for,
)

from calltouch_async import CalltouchClient, CommentStatus, LeadComment
from calltouch_async._constants import DEFAULT_LINGER


async def burst(base_url: str, leads: list[LeadComment]) -> tuple[float, list[float], list[str]]:
    async with CalltouchClient(SITE_ID, TOKEN, base_url=base_url) as client:

        async def one(lead: LeadComment) -> tuple[float, str | None]:
            began = time.perf_counter()
            r = await client.submit(lead)
            done = time.perf_counter() - began
            return done, r.lead.comment if r.status is CommentStatus.COMMENTED else None

        start = time.perf_counter()
        outcomes = await asyncio.gather(*(one(lead) for lead in leads))
        wall = time.perf_counter() - start
    latencies = [lat for lat, _ in outcomes]
    return wall, latencies, [t for _, t in outcomes if t is not None]


async def lone(
    base_url: str, submits: list[LeadComment], singles: list[LeadComment], pause: float
) -> tuple[list[float], list[float]]:
    async with CalltouchClient(SITE_ID, TOKEN, base_url=base_url) as client:
        await client.comment([singles[-1]])  # a warm connection, as in a long-lived service
        await asyncio.sleep(pause)
        submit_lat: list[float] = []
        comment_lat: list[float] = []
        for sub, single in zip(submits, singles, strict=False):
            began = time.perf_counter()
            await client.submit(sub)
            submit_lat.append(time.perf_counter() - began)
            await asyncio.sleep(pause)
            began = time.perf_counter()
            await client.comment([single])
            comment_lat.append(time.perf_counter() - began)
            await asyncio.sleep(pause)
    return submit_lat, comment_lat


def measure(args: argparse.Namespace) -> list[Table]:
    latency = tuple(args.latency)
    n = args.concurrent
    leads = make_leads(n, calls=n, tag="coalesce")
    with Emulator(calls=n, latency=latency, jitter=args.jitter, seed=args.seed) as emu:
        wall, lats, reported = asyncio.run(burst(emu.base_url, leads))
        stats = emu.stats(texts=True)
    check = check_ledger([text_for("coalesce", i) for i in range(n)], reported, stats["texts"])
    rate = (n - check.lost) / wall
    conditions = (
        f"strict 5/1 s window, {args.jitter * 1000:g} ms jitter, "
        f"{latency[0] * 1000:g}-{latency[1] * 1000:g} ms latency"
    )
    many = Table(
        f"Coalescing: {n:,} concurrent submit() calls, {conditions}",
        ["requests", "leads/request", "leads/s", "% of 500/s", "wall s", "429s",
         "max sent in 1 s", "lost", "twice", "p50 s", "p99 s"],
    )
    many.add(
        fmt(stats["requests"]), fmt(stats["leads_in_ok_requests"] / max(stats["ok_requests"], 1)),
        fmt(rate, 0), fmt(100 * rate / CEILING), fmt(wall, 2), fmt(stats["rate_limited"]),
        fmt(stats["max_in_1s_all"]), fmt(check.lost), fmt(check.twice),
        fmt(percentile(lats, 50), 2), fmt(percentile(lats, 99), 2),
    )
    many.notes.append(
        "Default client (shared sliding-window limiter, linger "
        f"{DEFAULT_LINGER * 1000:g} ms); latency = from the submit() call to its result. "
        "After idle the limiter admits a burst of 5, so a run this short can average a little "
        "over 500 leads/s without exceeding 5 requests in any 1 s window."
    )

    submits = make_leads(args.lone, calls=1000, tag="lone-submit")
    singles = make_leads(args.lone + 1, calls=1000, tag="lone-comment")
    with Emulator(calls=1000, latency=latency, jitter=args.jitter, seed=args.seed) as emu:
        sub_lat, com_lat = asyncio.run(lone(emu.base_url, submits, singles, args.pause))
        lone_stats = emu.stats()
    single = Table(
        f"Lone submit() latency at low load ({args.lone} samples each, {conditions})",
        ["call", "p50 ms", "p99 ms", "min ms", "max ms"],
    )
    for name, values in (
        (f"submit(lead) (linger {DEFAULT_LINGER * 1000:g} ms)", sub_lat),
        ("comment([lead]) (one round trip)", com_lat),
    ):
        single.add(
            name, fmt(percentile(values, 50) * 1000, 0), fmt(percentile(values, 99) * 1000, 0),
            fmt(min(values) * 1000, 0), fmt(max(values) * 1000, 0),
        )
    single.notes.append(
        f"One call at a time, {args.pause * 1000:g} ms apart, on one warm client, so the "
        f"limiter never makes them wait; {lone_stats['rate_limited']} 429s. With {args.lone} "
        "samples p99 (nearest rank) is the slowest one. Expected: submit ~ linger + one round trip."
    )
    return [many, single]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrent", type=int, default=2000)
    parser.add_argument("--lone", type=int, default=20)
    parser.add_argument("--pause", type=float, default=0.25, help="seconds between lone calls")
    parser.add_argument("--jitter", type=float, default=0.03)
    parser.add_argument("--latency", type=float, nargs=2, default=(0.05, 0.3))
    parser.add_argument("--seed", type=int, default=0)
    add_output_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    emit(measure(args), args.json)


if __name__ == "__main__":
    main()
