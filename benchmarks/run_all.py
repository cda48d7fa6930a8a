"""Run every benchmark (``make bench``), print plain tables, write ``benchmarks/results.md``.

Each benchmark runs as its own process (and starts its own emulator processes), in the
issue's order: throughput, codec, CPU overhead, memory, coalescing, margin sweep, loops and
threads, the plot, the cost of counting.
``--quick`` runs small sizes (a smoke test of the whole suite in about a minute);
``--only NAME...`` runs a subset.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _harness import Table  # noqa: E402

# name: (script, full-size flags, quick flags, what the issue calls it)
BENCHES: dict[str, tuple[str, list[str], list[str], str]] = {
    "throughput": (
        "bench_throughput.py", [], ["--leads", "1000"],
        "1. Throughput and safety against the 5 requests/second window",
    ),
    "codec": ("bench_codec.py", [], [], "2. Codec: msgspec vs json vs pydantic"),
    "overhead": (
        "bench_overhead.py", [],
        ["--requests", "50", "--trials", "2", "--paced-requests", "10", "--paced-trials", "1"],
        "3. Client CPU overhead over a bare aiohttp POST",
    ),
    "memory": (
        "bench_memory.py", [], ["--sizes", "10000", "50000"],
        "4. Memory while streaming from an async generator",
    ),
    "coalescing": (
        "bench_coalescing.py", [], ["--concurrent", "300", "--lone", "5"],
        "5. submit() coalescing",
    ),
    "margin": (
        "bench_margin.py", [],
        ["--leads", "1000", "--jitters", "0.03", "--margins", "0", "0.05", "--no-spaced"],
        "6. Margin sweep",
    ),
    "heavy-jitter": (
        "bench_margin.py",
        ["--leads", "10000", "--jitters", "0.15", "--margins", "0.05", "0.1", "0.2", "--no-spaced"],
        ["--leads", "1000", "--jitters", "0.15", "--margins", "0.05", "--no-spaced"],
        "6b. Heavy jitter (150 ms), 10,000 leads: fixed margins against the adaptive default",
    ),
    "loops": (
        "bench_loops.py", [], ["--thread-leads", "500", "--runs", "3"],
        "7. One limit for every loop and thread",
    ),
    "plot": (
        "bench_plot.py", [], ["--leads", "1000", "--out", "/tmp/rate_limit_quick.png"],
        "8. A picture of the limit (benchmarks/rate_limit.png)",
    ),
    "telemetry": (
        "bench_telemetry.py", [], ["--requests", "2000"],
        "9. The cost of counting: stats(), the budget, OpenTelemetry",
    ),
}
#: Benchmarks that print their own table (their stdout is taken as is).
PLAIN_OUTPUT = {"codec", "telemetry"}
TIMEOUT = 420.0  # seconds per benchmark: a hang must not eat the whole budget


def run_one(name: str, quick: bool) -> tuple[str, float, int]:
    """Run one benchmark; return its markdown section, wall time and exit status."""
    script, full, small, title = BENCHES[name]
    path = HERE / script
    if not path.exists():
        return f"### {title}\n\n`benchmarks/{script}` is not there yet: not run.\n", 0.0, 0
    flags = small if quick else full
    own_format = name not in PLAIN_OUTPUT
    with tempfile.TemporaryDirectory() as tmp:
        out_json = Path(tmp) / "tables.json"
        argv = [sys.executable, str(path), *flags]
        if own_format:
            argv += ["--json", str(out_json)]
        print(f"\n### {title}\n$ {shlex.join(['python', f'benchmarks/{script}', *flags])}",
              flush=True)
        began = time.perf_counter()
        try:
            proc = subprocess.run(
                argv, cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=TIMEOUT
            )
            status, stdout = proc.returncode, proc.stdout
        except subprocess.TimeoutExpired as exc:
            status = -1
            stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        wall = time.perf_counter() - began
        print(stdout, end="", flush=True)
        print(f"({script}: {wall:.0f} s)", flush=True)
        section = [f"### {title}", "", f"`{shlex.join(['python', f'benchmarks/{script}', *flags])}`"
                   f" ({wall:.0f} s)", ""]
        if status != 0:
            what = f"timed out after {TIMEOUT:g} s" if status == -1 else f"exited {status}"
            section += [f"**{script} {what}.** Its output:", "", "```", stdout.rstrip(), "```"]
        elif own_format:
            tables = [Table(**t) for t in json.loads(out_json.read_text())]
            section += [t.markdown() + "\n" for t in tables]
        else:
            section += _foreign(stdout)
    return "\n".join(section) + "\n", wall, status


def _foreign(stdout: str) -> list[str]:
    """Another script's output: markdown tables as they are, anything else verbatim."""
    lines = stdout.rstrip().splitlines()
    if any(line.lstrip().startswith("|") for line in lines):
        return lines
    return ["```", *lines, "```"]


def machine() -> list[str]:
    uname = platform.uname()
    return [
        f"- machine: `{platform.machine()}` ({uname.system} {uname.release}), "
        f"{os.cpu_count()} CPUs",
        f"- Python {platform.python_version()} ({platform.python_implementation()})",
    ]


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "calltouch_async"], cwd=ROOT,
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + (" (library with uncommitted changes)" if dirty else "")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", nargs="+", choices=list(BENCHES), default=list(BENCHES))
    parser.add_argument(
        "--out", type=Path,
        help="markdown file to write (default: benchmarks/results.md; none with --quick)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    sections: list[str] = []
    failed: list[str] = []
    for name in args.only:
        section, _, status = run_one(name, args.quick)
        sections.append(section)
        if status != 0:
            failed.append(name)
    total = time.perf_counter() - began
    command = shlex.join(["python", "benchmarks/run_all.py", *(argv or sys.argv[1:])])
    header = [
        "## Benchmarks",
        "",
        f"- command: `{command}` (`make bench`)",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; total wall time {total:.0f} s",
        *machine(),
        f"- revision: {git_revision()}",
        f"- load average (1 min) at start / end: {load_before:.1f} / {os.getloadavg()[0]:.1f} "
        "(other work on the machine skews timings)",
        "- every benchmark runs the emulator in a separate process (loopback only); the "
        "client side is measured in its own process",
        "",
    ]
    if args.quick:
        header.insert(2, "**Quick smoke run: small sizes, not the reference figures.**\n")
    out = args.out or (None if args.quick else HERE / "results.md")
    print(f"\nall benchmarks: {total:.0f} s")
    if out is not None:
        out.write_text("\n".join(header) + "\n" + "\n".join(sections))
        print(f"markdown written to {out}")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
