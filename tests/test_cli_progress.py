"""The progress display: a bar on a terminal (tqdm's with the ``progress`` extra, else a
built-in one), a plain periodic line otherwise; and ``comment`` staying light."""

from __future__ import annotations

import asyncio
import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
from collections import Counter
from pathlib import Path

import pytest

from calltouch_async.cli._progress import Progress
from calltouch_async.cli._run import Outcome
from calltouch_async.testing import CalltouchEmulator
from cli_support import DEADLINE, SITE_ID, TOKEN, call_line, comment_args, write_lines

COUNTS = Counter({"commented": 40, "failed": 2})


def test_plain_line_percent_of_bytes_rate_eta_and_counts() -> None:
    stream = io.StringIO()
    progress = Progress(stream, mode="plain", total_bytes=1000, bytes_read=lambda: 250)
    progress.update(COUNTS)  # within the interval: nothing yet
    assert stream.getvalue() == ""
    progress.update(COUNTS, force=True)
    line = stream.getvalue()
    assert line.startswith("progress:  25%  42 leads") and line.endswith("\n")
    assert "/s" in line and "ETA" in line and "commented 40 failed 2" in line


def test_built_in_bar_without_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if the extra were not installed
    monkeypatch.setenv("COLUMNS", "200")  # room for the whole line
    stream = io.StringIO()
    progress = Progress(stream, mode="bar", total_bytes=1000, bytes_read=lambda: 500)
    progress.update(COUNTS, force=True)
    text = stream.getvalue()
    assert text.startswith("\r[##########..........]  50%  42 leads")
    assert "commented 40 failed 2" in text
    progress.close()
    assert stream.getvalue().endswith("\r\x1b[K")


def test_tqdm_bar_with_the_extra() -> None:
    pytest.importorskip("tqdm")
    stream = io.StringIO()
    progress = Progress(stream, mode="bar", total_bytes=1000, bytes_read=lambda: 500)
    progress.update(COUNTS, force=True)
    text = stream.getvalue()
    assert " 50%|" in text and "ETA" in text and "42 leads" in text
    assert "commented 40 failed 2" in text
    progress.close()


def test_the_rate_counts_answered_leads_only() -> None:
    counts = Counter({"commented": 90, "not_commented": 5, "rejected": 5, "failed": 600,
                      "unknown": 300, "invalid": 7})
    outcome = Outcome(counts, elapsed=2.0)
    assert outcome.answered == 100 and outcome.rate == 50.0


async def test_a_terminal_gets_a_progress_bar(tmp_path: Path) -> None:
    # 15 requests at 5 a second: the bar is redrawn many times on the way.
    async with CalltouchEmulator(site_id=SITE_ID, access_token=TOKEN, rate_limit=None) as emu:
        emu.generate(calls=50, seed=1)
        leads = write_lines(tmp_path / "leads.jsonl", [call_line(k % 50 + 1, f"t {k}")
                                                      for k in range(1500)])
        main_fd, term_fd = pty.openpty()
        # A real terminal has a size; a fresh pty's 0x0 would leave tqdm no room to draw.
        fcntl.ioctl(term_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 150, 0, 0))
        env = {**os.environ, "CALLTOUCH_ACCESS_TOKEN": TOKEN, "COLUMNS": "150"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "calltouch_async",
            *comment_args(emu, str(leads), "--out", str(tmp_path / "out.jsonl")),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=term_fd, env=env,
        )
        os.close(term_fd)
        seen = bytearray()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(DEADLINE):
            while proc.returncode is None:
                try:
                    chunk = await loop.run_in_executor(None, os.read, main_fd, 4096)
                except OSError:  # the terminal closed with the process
                    break
                if not chunk:
                    break
                seen += chunk
            await proc.wait()
        os.close(main_fd)
    text = seen.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "\r" in text and "%" in text and "leads" in text and "commented" in text
    assert TOKEN not in text


def test_comment_loads_neither_the_emulator_nor_aiohttp_web_nor_tqdm() -> None:
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "calltouch_async", "comment", "--help"],
        capture_output=True, text=True, timeout=DEADLINE, check=True,
    )
    loaded = [line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines()]
    assert "calltouch_async.cli" in loaded
    assert not [m for m in loaded if m.startswith(("calltouch_async.testing", "aiohttp.web"))]
    assert "tqdm" not in loaded
