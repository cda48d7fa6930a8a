"""Benchmark 7: one rate limit per process, whatever the event loops and threads.

Against a strict emulator (own process, 5 per 1 s, no jitter, 50-300 ms latency), with the
client's default limiter (one per process and host):

* **two threads**, each with its own event loop and its own client, ``--thread-leads``
  (5,000) leads each, started together: together they must stay under the one limit (zero
  429) and still use it (at least 90% of 500 leads/s);
* **back-to-back runs**: ``--runs`` (10) ``asyncio.run()`` calls one after another, each
  with a fresh client commenting ``--run-leads`` (300) leads: the limit must not reset with
  each new loop (zero 429).

The ledger judges: 429s, the most arrivals in any 1 s (429s included), leads lost or
applied twice.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections import Counter

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
    text_for,
)

from calltouch_async import CalltouchClient, CommentStatus


def comment_once(base_url: str, n: int, calls: int, tag: str, first: int = 0) -> list[str]:
    """One ``asyncio.run()`` with a fresh client; the texts it reported commented."""

    async def run() -> list[str]:
        leads = make_leads(first + n, calls=calls, tag=tag)[first:]
        async with CalltouchClient(SITE_ID, TOKEN, base_url=base_url) as client:
            return [
                r.lead.comment async for r in client.comment_many(leads)
                if r.status is CommentStatus.COMMENTED
            ]

    return asyncio.run(run())


def two_threads(base_url: str, n: int, calls: int, tag: str) -> tuple[float, list[str]]:
    reported: list[list[str]] = [[], []]
    start = threading.Barrier(3)

    def work(i: int) -> None:
        start.wait()
        reported[i] = comment_once(base_url, n, calls, tag, first=i * n)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began, reported[0] + reported[1]


def back_to_back(base_url: str, runs: int, n: int, calls: int, tag: str) -> tuple[float, list[str]]:
    began = time.perf_counter()
    reported: list[str] = []
    for k in range(runs):
        reported += comment_once(base_url, n, calls, tag, first=k * n)
    return time.perf_counter() - began, reported


def measure(args: argparse.Namespace) -> Table:
    table = Table(
        "One limit for every loop and thread: strict 5/1 s window, no jitter, "
        f"{args.latency[0] * 1000:g}-{args.latency[1] * 1000:g} ms latency, default limiter",
        ["case", "leads", "wall s", "leads/s", "% of 500/s", "requests", "429s",
         "max in 1 s", "lost", "twice"],
    )
    cases = {
        "two threads": (2 * args.thread_leads, lambda url, calls, tag: two_threads(
            url, args.thread_leads, calls, tag)),
        f"{args.runs} x asyncio.run()": (args.runs * args.run_leads, lambda url, calls, tag:
            back_to_back(url, args.runs, args.run_leads, calls, tag)),
    }
    for name, (total, job) in cases.items():
        tag = "loops-" + name.split()[0]
        with Emulator(calls=total, latency=tuple(args.latency), jitter=0.0, seed=args.seed) as emu:
            wall, reported = job(emu.base_url, total, tag)
            stats = emu.stats(texts=True)
        check = check_ledger([text_for(tag, i) for i in range(total)], reported, stats["texts"])
        rate = (total - check.lost) / wall
        table.add(
            name, fmt(total), fmt(wall, 2), fmt(rate, 0), fmt(100 * rate / CEILING),
            fmt(stats["requests"]), fmt(stats["rate_limited"]), fmt(stats["max_in_1s_all"]),
            fmt(check.lost), fmt(check.twice),
        )
        counts = Counter(reported)
        if len(counts) != len(reported) or check.phantom:
            table.notes.append(f"{name}: a lead reported twice or commented but not applied")
        print(f"  {name}: done in {wall:.1f} s", flush=True)
    table.notes += [
        "Each thread (or run) builds its own client on its own event loop; they share the "
        "process's one limiter for the host. leads/s = leads applied / wall time from the "
        "start to the last result; max in 1 s counts every arrival, 429s included.",
    ]
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thread-leads", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--run-leads", type=int, default=300)
    parser.add_argument("--latency", type=float, nargs=2, default=(0.05, 0.3))
    parser.add_argument("--seed", type=int, default=0)
    add_output_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    emit([measure(args)], args.json)


if __name__ == "__main__":
    main()
