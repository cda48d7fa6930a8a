"""Shared pieces of the benchmarks: the emulator subprocess, leads, tables, small statistics.

Every benchmark talks to an emulator running in *another* process (``_server.py``), so the
client and the server never share an event loop or a core. The ledger figures (429s, the
busiest 1 s window, comments applied twice) come from that process over a control endpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import selectors
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from calltouch_async import CallMatch, LeadComment

HERE = Path(__file__).resolve().parent
SERVER = HERE / "_server.py"
SITE_ID = 12345
TOKEN = "test-token"
CEILING = 500.0  # leads/s: 5 requests/s x 100 leads
STARTUP_TIMEOUT = 60.0


# --------------------------------------------------------------------------- emulator process


class Emulator:
    """``with Emulator(...) as emu:`` runs ``_server.py`` and waits until it accepts
    connections; ``emu.base_url`` is the API, ``emu.stats()`` reads its ledger."""

    def __init__(
        self,
        *,
        calls: int = 1000,
        rate_limit: int | None = 5,
        latency: tuple[float, float] = (0.05, 0.3),
        jitter: float = 0.03,
        seed: int = 0,
        record: bool = True,
    ) -> None:
        self.argv = [
            sys.executable, str(SERVER),
            "--calls", str(calls),
            "--rate-limit", str(rate_limit or 0),
            "--latency", str(latency[0]), str(latency[1]),
            "--jitter", str(jitter),
            "--seed", str(seed),
        ]
        if not record:
            self.argv.append("--no-record")
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.control_url = ""

    def __enter__(self) -> Emulator:
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            ready = json.loads(self._first_line())
            self.base_url, self.control_url = ready["base_url"], ready["control_url"]
            _wait_accepting(self.base_url)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _first_line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(STARTUP_TIMEOUT):
                raise RuntimeError(f"emulator did not start within {STARTUP_TIMEOUT:g} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"emulator exited with status {self.proc.wait()}")
        return line

    def __exit__(self, *exc: object) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # the server stops when its stdin closes
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()

    def stats(self, *, texts: bool = False, arrivals: bool = False) -> dict[str, Any]:
        query = f"?texts={int(texts)}&arrivals={int(arrivals)}"
        with urllib.request.urlopen(self.control_url + "/_stats" + query, timeout=60) as resp:
            data: dict[str, Any] = json.load(resp)
        return data

    def reset(self) -> None:
        request = urllib.request.Request(self.control_url + "/_reset", method="POST")
        with urllib.request.urlopen(request, timeout=60):
            pass


def _wait_accepting(url: str, timeout: float = 10.0) -> None:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# --------------------------------------------------------------------------- leads


def text_for(tag: str, i: int) -> str:
    """A comment text unique to one lead of one run (the ledger counts texts)."""
    return f"{tag} lead {i}"


def call_id_for(i: int, calls: int) -> int:
    return i % calls + 1


def make_leads(n: int, *, calls: int, tag: str) -> list[LeadComment]:
    return [
        LeadComment(matching=[CallMatch(call_id=call_id_for(i, calls))], comment=text_for(tag, i))
        for i in range(n)
    ]


def wire_leads(n: int, *, calls: int, tag: str) -> list[dict[str, Any]]:
    """The same leads as plain dicts in the wire shape (what a hand-written client builds)."""
    return [
        {
            "matching": [{"type": "call", "callParams": {"callId": call_id_for(i, calls)}}],
            "addComment": text_for(tag, i),
        }
        for i in range(n)
    ]


@dataclass
class LedgerCheck:
    lost: int  # leads never applied on the server
    twice: int  # leads applied more than once
    phantom: int  # reported commented by the client, absent from the ledger


def check_ledger(
    sent: Iterable[str], reported: Iterable[str], applied: dict[str, int]
) -> LedgerCheck:
    sent_set = set(sent)
    return LedgerCheck(
        lost=sum(1 for t in sent_set if applied.get(t, 0) == 0),
        twice=sum(1 for t in sent_set if applied.get(t, 0) > 1),
        phantom=sum(1 for t in set(reported) if applied.get(t, 0) == 0),
    )


# --------------------------------------------------------------------------- library log


class _WarningCounter(logging.Handler):
    """Counts the library's warnings (429 retries, unknown outcomes) instead of printing
    hundreds of lines; a benchmark reports the counts where they matter."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[str(record.msg).split(" ", 1)[0]] += 1  # "retrying", "outcome", ...


LIBRARY_WARNINGS = _WarningCounter()
logging.getLogger("calltouch_async").addHandler(LIBRARY_WARNINGS)


# --------------------------------------------------------------------------- numbers


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def fmt(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def rss_mb(kilobytes: int) -> float:
    return kilobytes / 1024  # ru_maxrss is in KiB on Linux


# --------------------------------------------------------------------------- tables


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def _text_columns(self) -> list[bool]:
        """Columns holding words (left-aligned); the first always, numbers to the right."""
        return [
            i == 0 or any(any(ch.isalpha() for ch in row[i]) for row in self.rows)
            for i in range(len(self.columns))
        ]

    def plain(self) -> str:
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
        left = self._text_columns()

        def line(cells: Sequence[str]) -> str:
            return "  ".join(
                c.ljust(w) if lft else c.rjust(w)
                for c, w, lft in zip(cells, widths, left, strict=True)
            ).rstrip()

        out = [self.title, "=" * len(self.title), line(self.columns)]
        out.append("  ".join("-" * w for w in widths))
        out += [line(r) for r in self.rows]
        out += [f"* {n}" for n in self.notes]
        return "\n".join(out)

    def markdown(self) -> str:
        align = ["---" if lft else "---:" for lft in self._text_columns()]
        out = [f"#### {self.title}", ""]
        out.append("| " + " | ".join(self.columns) + " |")
        out.append("| " + " | ".join(align) + " |")
        out += ["| " + " | ".join(r) + " |" for r in self.rows]
        if self.notes:
            out.append("")
            out += [f"- {n}" for n in self.notes]
        return "\n".join(out)


def add_output_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", metavar="PATH", help="also write the tables as JSON (run_all.py reads it)"
    )


def emit(tables: Sequence[Table], json_path: str | None) -> None:
    for table in tables:
        print(table.plain(), end="\n\n", flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps([asdict(t) for t in tables], indent=1))


def machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )
