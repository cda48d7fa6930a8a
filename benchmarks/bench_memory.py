"""Benchmark 4: peak RSS streaming 100k and 1M leads from an async generator.

Each size runs in a fresh client process (``--child N``) against an emulator in another
process with no latency and no rate limit (its ledger grows in *its* process, not here).
The child reports the RSS after imports and client setup (the baseline), the peak
(``ru_maxrss``), and the current RSS at each tenth of the stream, to show it stays flat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from _harness import (
    SITE_ID,
    TOKEN,
    Emulator,
    Table,
    add_output_flag,
    call_id_for,
    emit,
    fmt,
    rss_mb,
)

from calltouch_async import CallMatch, CalltouchClient, CommentStatus, LeadComment

CALLS = 10_000
TARGET_MB = 150.0


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


async def leads(n: int) -> AsyncIterator[LeadComment]:
    for i in range(n):
        yield LeadComment(matching=[CallMatch(call_id=call_id_for(i, CALLS))], comment=f"m {i}")


async def child(base_url: str, n: int) -> dict[str, object]:
    statuses: Counter[str] = Counter()
    checkpoints: list[float] = []
    step = max(n // 10, 1)
    async with CalltouchClient(SITE_ID, TOKEN, base_url=base_url, rate_limiter=None) as client:
        await client.comment([])  # opens the session; nothing is sent
        baseline = rss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        start = time.perf_counter()
        seen = 0
        async for r in client.comment_many(leads(n)):
            statuses[r.status] += 1
            seen += 1
            if seen % step == 0:
                checkpoints.append(current_rss_mb())
        wall = time.perf_counter() - start
    return {
        "leads": n,
        "baseline_mb": baseline,
        "peak_mb": rss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
        "checkpoints_mb": checkpoints,
        "wall": wall,
        "commented": statuses[CommentStatus.COMMENTED],
        "results": sum(statuses.values()),
    }


def run_child(base_url: str, n: int) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", str(n), "--url", base_url],
        check=True, capture_output=True, text=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(args: argparse.Namespace) -> Table:
    table = Table(
        "Memory: peak RSS of the client process streaming leads from an async generator "
        "(limiting off)",
        ["leads", "baseline MB", "peak MB", "RSS at 10%..100% MB", "wall s", "leads/s",
         "commented"],
    )
    for n in args.sizes:
        with Emulator(
            calls=CALLS, rate_limit=None, latency=(0.0, 0.0), jitter=0.0, record=False
        ) as emu:
            r = run_child(emu.base_url, n)
            applied = emu.stats()["applied_total"]
        checkpoints = r["checkpoints_mb"]
        assert isinstance(checkpoints, list)
        spread = f"{min(checkpoints):.1f}..{max(checkpoints):.1f}" if checkpoints else "-"
        wall = float(r["wall"])  # type: ignore[arg-type]
        table.add(
            fmt(n), fmt(r["baseline_mb"]), fmt(r["peak_mb"]), spread, fmt(wall, 1),
            fmt(n / wall, 0), f"{r['commented']:,} (server: {applied:,})",
        )
        print(f"  {n:,} leads: peak {r['peak_mb']:.1f} MB in {wall:.1f} s", flush=True)
    table.notes.append(
        f"Each size in a fresh process; baseline = ru_maxrss after imports and opening the "
        f"client; peak = ru_maxrss at the end; target: flat and under {TARGET_MB:g} MB. The "
        f"emulator ({CALLS:,} calls, ids cycled) runs in its own process."
    )
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    add_output_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.child is not None:
        print(json.dumps(asyncio.run(child(args.url, args.child))))
        return
    emit([measure(args)], args.json)


if __name__ == "__main__":
    main()
