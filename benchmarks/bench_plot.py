"""Benchmark 8: a picture of the limit (``benchmarks/rate_limit.png``).

For the client's default limiter, the naive ``AsyncLimiter(5, 1)`` + gather peer and the
sequential-sleep peer, side by side: each against a fresh strict emulator (own process,
5 per 1 s, ``--jitter`` 30 ms inbound jitter, 50-300 ms latency), ``--leads`` (3,000) leads.
The plot shows, at every arrival, how many requests arrived at the server in the second
ending then (the sliding window Calltouch counts), the 5 per second line, and every request
answered 429. Needs matplotlib (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
from pathlib import Path

from _harness import (
    HERE,
    Emulator,
    Table,
    add_output_flag,
    emit,
    fmt,
)
from bench_throughput import CLIENTS

PANELS = {
    "ours": "calltouch_async (default limiter)",
    "naive": "naive: AsyncLimiter(5, 1) + gather",
    "sequential": "sequential + sleep(0.2)",
}


def sliding_counts(arrivals: list[float], period: float = 1.0) -> list[int]:
    """For each arrival, the arrivals in the ``period`` ending at it (itself included)."""
    return [i - bisect.bisect_right(arrivals, t - period) + 1 for i, t in enumerate(arrivals)]


def trailing_curve(arrivals: list[float], period: float = 1.0) -> tuple[list[float], list[int]]:
    """The arrivals in the ``period`` ending at each moment, as a step curve: +1 at each
    arrival, -1 when it leaves the window (leavings first when they coincide)."""
    events = sorted([(t, 1) for t in arrivals] + [(t + period, -1) for t in arrivals],
                    key=lambda e: (e[0], e[1]))
    xs, ys, count = [0.0], [0], 0
    for t, change in events:
        count += change
        xs.append(t)
        ys.append(count)
    return xs, ys


def collect(args: argparse.Namespace) -> dict[str, list[tuple[float, int]]]:
    """Per client, its arrivals at the server: (seconds from the first, HTTP status)."""
    runs: dict[str, list[tuple[float, int]]] = {}
    for key in PANELS:
        tag = f"plot-{key}"
        with Emulator(
            calls=args.leads, latency=tuple(args.latency), jitter=args.jitter, seed=args.seed
        ) as emu:
            asyncio.run(CLIENTS[key](emu.base_url, args.leads, args.leads, tag))
            stats = emu.stats(arrivals=True)
        arrivals = [(float(t), int(status)) for t, status in stats["arrivals"]]
        first = arrivals[0][0] if arrivals else 0.0
        runs[key] = [(t - first, status) for t, status in arrivals]
        print(f"  {PANELS[key]}: {len(arrivals)} requests", flush=True)
    return runs


def draw(runs: dict[str, list[tuple[float, int]]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(15, 4.6), sharey=True)
    for ax, (key, arrivals) in zip(axes, runs.items(), strict=True):
        times = [t for t, _ in arrivals]
        counts = sliding_counts(times)
        ax.step(*trailing_curve(times), where="post", color="tab:blue", lw=1.2,
                label="arrivals in the last 1 s")
        ax.axhline(5, color="black", ls="--", lw=1, label="Calltouch's limit: 5 per 1 s")
        limited = [(t, c) for (t, status), c in zip(arrivals, counts, strict=True)
                   if status == 429]
        if limited:
            ax.scatter([t for t, _ in limited], [c for _, c in limited], color="tab:red",
                       marker="x", s=40, zorder=3, label=f"answered 429 ({len(limited)})")
        ax.set_title(f"{PANELS[key]}\nmost in 1 s: {max(counts, default=0)}, "
                     f"429s: {len(limited)}", fontsize=10)
        ax.set_xlabel("seconds since the first arrival")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    axes[0].set_ylabel("requests arriving in the sliding second")
    axes[0].set_ylim(0, max(11, *(max(sliding_counts([t for t, _ in a]), default=0) + 1
                                  for a in runs.values())))
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def measure(args: argparse.Namespace) -> Table:
    runs = collect(args)
    title = (f"{args.leads:,} leads per client against a strict 5/1 s server, "
             f"{args.jitter * 1000:g} ms inbound jitter, "
             f"{args.latency[0] * 1000:g}-{args.latency[1] * 1000:g} ms latency")
    draw(runs, args.out, title)
    table = Table(f"The picture's figures ({args.out.name}): {title}",
                  ["client", "requests", "most in any 1 s", "429s", "span s"])
    for key, arrivals in runs.items():
        times = [t for t, _ in arrivals]
        table.add(PANELS[key], fmt(len(arrivals)), fmt(max(sliding_counts(times), default=0)),
                  fmt(sum(1 for _, s in arrivals if s == 429)),
                  fmt(times[-1] if times else 0.0, 1))
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=3000)
    parser.add_argument("--jitter", type=float, default=0.03)
    parser.add_argument("--latency", type=float, nargs=2, default=(0.05, 0.3))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "rate_limit.png")
    add_output_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    emit([measure(args)], args.json)


if __name__ == "__main__":
    main()
