"""``calltouch-async demo``: synthetic leads against the emulator, checked by its ledger.

The emulator runs in its own process (``_demo_server``), which also writes the lead file for
its data. The ``comment`` command's own path (``_run.comment_file``) runs on that file
through the real client. The summary table then sets the results against the emulator's
ledger: leads by status, leads/s against the 500/s ceiling, requests sent, 429s, the most
requests that arrived in any 1 s (429s included), and that every comment was applied once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

from .._constants import MAX_LEADS_PER_REQUEST, RATE_LIMIT_PERIOD, RATE_LIMIT_REQUESTS
from .._models import CommentStatus
from ._input import BatchReader, JsonLines
from ._progress import Progress, client_logs_to
from ._results import ResultSink
from ._run import EXIT_ERROR, EXIT_OK, Outcome, Settings, UsageError, comment_file, summary_lines
from ._source import LeadSource

__all__ = ["run_demo"]

# Leads Calltouch may take per second: 100 per request, 5 requests a second.
CEILING_LEADS_PER_SECOND: Final = MAX_LEADS_PER_REQUEST * RATE_LIMIT_REQUESTS / RATE_LIMIT_PERIOD
# The demo server's credentials (``_demo_server.DEMO_*``; not imported: it loads the emulator).
_SITE_ID: Final = "12345"
_TOKEN: Final = "demo-token"


class _Server:
    """``with _Server(args, leads) as server:`` the demo's emulator process, ready."""

    def __init__(self, args: argparse.Namespace, leads: Path) -> None:
        self.argv = [
            sys.executable, "-m", "calltouch_async.cli._demo_server",
            "--leads", str(args.leads), "--leads-file", str(leads), "--seed", str(args.seed),
            "--latency", str(args.latency_min), str(args.latency_max),
            "--jitter", str(args.jitter),
        ]
        self.proc: subprocess.Popen[str] | None = None
        self.ready: dict[str, Any] = {}

    def __enter__(self) -> _Server:
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.ready = self._answer()
        return self

    def _answer(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the demo's emulator process ended without answering")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def check(self, results: Path) -> dict[str, Any]:
        """The ledger set against ``results`` (``_demo_server.check_ledger``)."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"{results}\n")
        self.proc.stdin.flush()
        return self._answer()

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the server exits when its stdin closes
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def run_demo(args: argparse.Namespace) -> int:
    if args.latency_min > args.latency_max:
        raise UsageError("--latency-min must not exceed --latency-max")
    mode = "off" if args.no_progress else "bar" if sys.stderr.isatty() else "plain"
    with tempfile.TemporaryDirectory(prefix="calltouch-demo-") as tmp:
        leads, results = Path(tmp, "leads.jsonl"), Path(tmp, "results.jsonl")
        with _Server(args, leads) as server:
            _say_intro(server.ready, args)
            progress = Progress(sys.stderr, mode=mode, total_bytes=leads.stat().st_size)
            settings = Settings(_SITE_ID, _TOKEN, server.ready["base_url"])
            with client_logs_to(progress):
                outcome = asyncio.run(_comment(leads, results, settings, progress))
            check = server.check(results)
    for line in summary_lines(outcome):
        print(line, file=sys.stderr)
    print("\n".join(demo_table(outcome, check)))
    expected = frozenset({CommentStatus.INVALID.value, CommentStatus.REJECTED.value})
    code = outcome.exit_code(expected=expected)
    return EXIT_ERROR if code == EXIT_OK and not _ledger_ok(check) else code


async def _comment(leads: Path, results: Path, settings: Settings, progress: Progress) -> Outcome:
    fmt = JsonLines()
    in_fd = os.open(leads, os.O_RDONLY)
    out_fd = os.open(results, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        reader = BatchReader(in_fd, fmt.parse)
        progress.bytes_read = lambda: reader.bytes_read
        sink = ResultSink(out_fd, progress.update)
        source = LeadSource(fmt, reader, sink, say=progress.say)
        await source.prime()
        return await comment_file(source, sink, settings, progress)
    finally:
        os.close(in_fd)
        os.close(out_fd)


def _say_intro(ready: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"Demo: {args.leads:,} leads against the emulator at {ready['base_url']}, in its own "
        f"process ({ready['calls']:,} calls, {ready['requests']:,} requests; strict window of "
        f"{RATE_LIMIT_REQUESTS} requests per {RATE_LIMIT_PERIOD:g} s; latency "
        f"{args.latency_min:g}-{args.latency_max:g} s, jitter {args.jitter:g} s). "
        f"Expect about {args.leads / CEILING_LEADS_PER_SECOND:,.0f} s.",
        file=sys.stderr,
        flush=True,
    )


def _ledger_ok(check: dict[str, Any]) -> bool:
    # Every applied comment is one the results call commented, or one left unknown.
    commented, applied = check["commented"], check["applied"]
    explained = commented <= applied <= commented + check["unknown"]
    return bool(check["duplicates"] == 0 and check["missing"] == 0 and explained)


def _verdict(outcome: Outcome, check: dict[str, Any]) -> str:
    if not _ledger_ok(check):
        return "FAILED: the ledger disagrees with the results"
    verdict = "OK: every comment applied at most once, every commented lead applied"
    return f"{verdict} (run stopped)" if outcome.stopped else verdict


def demo_table(outcome: Outcome, check: dict[str, Any]) -> list[str]:
    rate = outcome.rate
    share = f"{rate:,.0f} leads/s = {rate / CEILING_LEADS_PER_SECOND:.0%} of the " \
        f"{CEILING_LEADS_PER_SECOND:,.0f}/s ceiling"
    if outcome.elapsed < 2 * RATE_LIMIT_PERIOD:
        share += " (a run this short is mostly the first burst)"
    too_many = check["rate_limited"]
    rows = [
        ("leads", f"{outcome.done:,} in {outcome.elapsed:,.1f} s"),
        *((f"  {s.value}", f"{outcome.counts[s]:,}") for s in CommentStatus),
        ("throughput", share),
        ("requests sent", f"{check['requests']:,}"),
        ("429s from the emulator",
         f"{too_many} (retried; a 429 executes nothing)" if too_many else "0"),
        ("max requests in any 1 s",
         f"{check['max_in_1s']} (limit {RATE_LIMIT_REQUESTS}; every arrival, 429s included)"),
        ("comments applied twice+", f"{check['duplicates']} (must be 0)"),
        ("commented leads in ledger", f"{check['commented'] - check['missing']:,} of "
         f"{check['commented']:,}; ledger holds {check['applied']:,} comments"),
        ("verdict", _verdict(outcome, check)),
    ]
    width = max(len(name) for name, _ in rows)
    return ["", "Demo summary", *(f"  {name:<{width}}  {value}" for name, value in rows)]
