"""Long runs: SIGINT/SIGTERM then ``--resume`` until every lead is applied exactly once,
a torn results file, held-back ``unknown`` leads, the dry run and ``--failed-out``.
Subprocesses against the emulator's ledger; signals are sent once a condition holds (the
ledger holding N requests, or N result lines written), never after a guessed sleep."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from calltouch_async.cli import (
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_UNKNOWN,
)
from calltouch_async.testing import CalltouchEmulator
from cli_support import (
    DEADLINE,
    SITE_ID,
    TOKEN,
    Run,
    call_line,
    comment_args,
    finished,
    records,
    run_cli,
    start_cli,
    until,
    write_lines,
)

LEADS = 1200  # 12 requests: long enough to interrupt at several points
_EXIT_FOR = {signal.SIGINT: EXIT_INTERRUPTED, signal.SIGTERM: EXIT_TERMINATED}


def lead_texts(n: int, prefix: str = "lead") -> list[str]:
    return [f"{prefix} {k}" for k in range(n)]


def lines_written(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def interrupted_run(
    emu: CalltouchEmulator,
    leads: Path,
    out: Path,
    signum: signal.Signals,
    ready: Callable[[], bool],
    *more: str,
) -> Run:
    """One ``--resume`` run, sent ``signum`` once ``ready()`` holds (or when it ends first)."""
    proc = await start_cli(
        *comment_args(emu, str(leads), "--out", str(out), "--resume", "--no-progress", *more)
    )
    await until(lambda: ready() or proc.returncode is not None)
    if proc.returncode is None:
        proc.send_signal(signum)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), DEADLINE)
    return finished(proc, stdout, stderr)


def check_honest(emu: CalltouchEmulator, out: Path, texts: list[str]) -> None:
    """Complete result lines only; an ``unknown`` lead is one the emulator received."""
    received = emu.ledger.text_counts()
    for record in records(out.read_text()):
        if record["status"] == "unknown":
            assert received[texts[record["index"]]] >= 1, record
        assert record["status"] in ("commented", "failed", "unknown"), record


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("grace", ["5", "0"])
async def test_interrupted_at_several_points_then_resumed_applies_every_lead_once(
    tmp_path: Path, signum: signal.Signals, grace: str
) -> None:
    # Latency keeps requests in flight when the signal comes; grace 0 leaves some of them
    # unanswered (unknown: the emulator applies before it waits, so they were received).
    async with CalltouchEmulator(
        site_id=SITE_ID, access_token=TOKEN, rate_limit=None, latency=(0.2, 0.6)
    ) as emu:
        emu.generate(calls=50, seed=1)
        texts = lead_texts(LEADS)
        leads = write_lines(
            tmp_path / "leads.jsonl", [call_line(k % 50 + 1, t) for k, t in enumerate(texts)]
        )
        out = tmp_path / "results.jsonl"
        # Each point counts from where the previous run left off; anything this run sends or
        # writes means its signal handlers are in place.
        points: list[Callable[[int, int], Callable[[], bool]]] = [
            lambda reqs, _: lambda: len(emu.ledger.requests) >= reqs + 1,  # first request out
            lambda _, lines: lambda: lines_written(out) >= lines + 100,  # first answers in
            lambda reqs, _: lambda: len(emu.ledger.requests) >= reqs + 5,  # a burst out
        ]
        for point in points:
            ready = point(len(emu.ledger.requests), lines_written(out))
            run = await interrupted_run(emu, leads, out, signum, ready, "--grace", grace)
            assert run.code in (_EXIT_FOR[signum], EXIT_OK, EXIT_UNKNOWN), run.stderr
            check_honest(emu, out, texts)
        # Resumed without a signal: whatever is left is sent; unknown ones are held back.
        run = await run_cli(
            *comment_args(emu, str(leads), "--out", str(out), "--resume", "--no-progress")
        )
        assert run.code in (EXIT_OK, EXIT_UNKNOWN), run.stderr
        check_honest(emu, out, texts)

    counts = emu.ledger.text_counts()
    assert all(counts[t] == 1 for t in texts), [t for t in texts if counts[t] != 1][:5]
    assert sum(counts.values()) == LEADS
    # Each lead's latest line is final; an unknown one was received, so it was applied.
    latest = {r["index"]: r["status"] for r in records(out.read_text())}
    assert sorted(latest) == list(range(LEADS))
    assert set(latest.values()) <= {"commented", "unknown"}


async def test_the_first_signal_writes_every_result_the_second_exits_at_once(
    tmp_path: Path,
) -> None:
    # Answers slower than the grace: the first SIGINT waits up to the grace, the second
    # ends the wait at once with whatever lines are already written (all complete).
    async with CalltouchEmulator(
        site_id=SITE_ID, access_token=TOKEN, rate_limit=None, latency=30.0
    ) as emu:
        emu.generate(calls=50, seed=1)
        leads = write_lines(tmp_path / "leads.jsonl", [call_line(1, f"x {k}") for k in range(300)])
        out = tmp_path / "results.jsonl"
        proc = await start_cli(
            *comment_args(emu, str(leads), "--out", str(out), "--no-progress", "--grace", "60")
        )
        await until(lambda: len(emu.ledger.requests) >= 1)
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        await asyncio.wait_for(proc.stderr.readuntil(b"signal again"), DEADLINE)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), DEADLINE)
        run = finished(proc, stdout, stderr)
    assert run.code == EXIT_INTERRUPTED
    assert "stopped at once" in run.stderr
    for line in out.read_bytes().splitlines():
        json.loads(line)  # whole lines only


# --------------------------------------------------------------------------- resume



def result_line(index: int, status: str) -> str:
    return json.dumps({"index": index, "line": index + 1, "status": status, "call_id": None,
                       "request_id": None, "error": None})


async def test_resume_skips_final_results_sends_failed_and_missing_and_drops_a_torn_line(
    emu: CalltouchEmulator, tmp_path: Path
) -> None:
    texts = lead_texts(6)
    lines = [call_line(k + 1, t) for k, t in enumerate(texts)]
    leads = write_lines(tmp_path / "leads.jsonl", lines)
    out = tmp_path / "results.jsonl"
    earlier = [result_line(0, "commented"), result_line(1, "invalid"),
               result_line(2, "failed"), result_line(3, "not_commented")]
    # A crash tore the last line: it is ignored, and lead 4 is sent again.
    out.write_text("".join(f"{line}\n" for line in earlier) + result_line(4, "commented")[:30])

    run = await run_cli(
        *comment_args(emu, str(leads), "--out", str(out), "--resume", "--no-progress")
    )

    assert run.code == EXIT_INPUT, run.stderr  # lead 1 stays invalid from the earlier run
    assert sorted(emu.ledger.text_counts()) == ["lead 2", "lead 4", "lead 5"]
    got = records(out.read_text())  # every line parses: the torn one was cut off
    assert [r["index"] for r in got[4:]] and sorted(r["index"] for r in got[4:]) == [2, 4, 5]
    assert "settled by an earlier run, not sent again: 3" in run.stderr


async def test_unknown_is_held_back_unless_resend_unknown(
    emu: CalltouchEmulator, tmp_path: Path
) -> None:
    leads = write_lines(tmp_path / "leads.jsonl", [call_line(1, "maybe"), call_line(2, "sure")])
    out = tmp_path / "results.jsonl"
    out.write_text(result_line(0, "unknown") + "\n")

    run = await run_cli(
        *comment_args(emu, str(leads), "--out", str(out), "--resume", "--no-progress")
    )
    assert run.code == EXIT_UNKNOWN, run.stderr
    assert "1 unknown held back" in run.stderr
    assert list(emu.ledger.text_counts()) == ["sure"]

    run = await run_cli(*comment_args(
        emu, str(leads), "--out", str(out), "--resume", "--resend-unknown", "--no-progress"
    ))
    assert run.code == EXIT_OK, run.stderr
    assert emu.ledger.text_counts() == {"maybe": 1, "sure": 1}


# --------------------------------------------------------------------------- dry run


async def test_dry_run_sends_nothing_needs_no_token_and_counts(
    emu: CalltouchEmulator, tmp_path: Path
) -> None:
    lines = [call_line(k % 50 + 1, f"ok {k}") for k in range(250)]
    lines += [call_line(1, "   "), call_line(0, "zero id"), "not json", call_line(1, "  ")]
    leads = write_lines(tmp_path / "leads.jsonl", lines)
    out = tmp_path / "results.jsonl"

    run = await run_cli(
        *comment_args(emu, str(leads), "--out", str(out), "--dry-run", "--no-progress"),
        token=None,
    )

    assert run.code == EXIT_INPUT, run.stderr
    assert emu.ledger.requests == []
    assert "250 valid leads, 4 invalid" in run.stderr
    assert "requests needed: 3" in run.stderr and "time at 5 requests/s: 0m 01s" in run.stderr
    assert "2  addComment:" in run.stderr  # the two blank comments, one reason
    got = records(out.read_text())
    assert [(r["line"], r["status"]) for r in got] == [
        (251, "invalid"), (252, "invalid"), (253, "invalid"), (254, "invalid")
    ]
    assert got[1]["error"].startswith("matching[0].callParams.callId:")


async def test_dry_run_of_a_clean_file_exits_0(emu: CalltouchEmulator, tmp_path: Path) -> None:
    leads = write_lines(tmp_path / "leads.jsonl", [call_line(1, "fine")])
    run = await run_cli(*comment_args(emu, str(leads), "--dry-run", "--no-progress"), token=None)
    assert run.code == EXIT_OK, run.stderr
    assert run.stdout == "" and emu.ledger.requests == []


# --------------------------------------------------------------------------- failed-out


async def test_failed_out_csv_round_trip(emu: CalltouchEmulator, tmp_path: Path) -> None:
    rows = [
        "comment;call_id;email;date;Manager",
        "fine;1;;;Anna",
        "bad id;abc;;;Boris",
        "refused e-mail;;not-an-email;01.10.2020 12:00;Vera",
        '"two\nlines, bad id";-1;;;Gleb',
        "fine too;2;;;Dina",
    ]
    data = "".join(r + "\r\n" for r in rows).encode("cp1251")
    leads = tmp_path / "export.csv"
    leads.write_bytes(data)
    failed = tmp_path / "failed.csv"

    run = await run_cli(*comment_args(
        emu, str(leads), "--encoding", "cp1251", "--failed-out", str(failed), "--no-progress"
    ))

    assert run.code == EXIT_INPUT, run.stderr
    # The header, then the three bad rows as their results came, byte for byte as read
    # (cp1251, CRLF, a quoted newline).
    lines = [line + b"\r\n" for line in data.split(b"\r\n")]
    written = failed.read_bytes()
    assert written.startswith(lines[0])
    rest = written[len(lines[0]):]
    assert sorted(rest.split(b"\r\n")[:-1]) == sorted(line[:-2] for line in lines[2:5])
    # Fixed and run again: the export of failures is itself a valid input.
    fixed = failed.read_bytes().replace(b"abc", b"3").replace(b"-1", b"4")
    fixed = fixed.replace(b"not-an-email", emu.requests[2].emails[0].encode())
    fixed = fixed.replace(b"01.10.2020 12:00", f"{emu.requests[2].time:%d.%m.%Y %H:%M}".encode())
    failed.write_bytes(fixed)
    run = await run_cli(*comment_args(emu, str(failed), "--encoding", "cp1251", "--no-progress"))
    assert run.code == EXIT_OK, run.stderr
    assert emu.ledger.comments_for("call", 3) == ["bad id"]
    assert emu.ledger.comments_for("call", 4) == ["two\nlines, bad id"]
    assert emu.ledger.comments_for("request", 2) == ["refused e-mail"]


async def test_failed_out_json_lines_as_read(emu: CalltouchEmulator, tmp_path: Path) -> None:
    lines = [call_line(1, "fine"), '{"addComment": "no matching"}', call_line(2, " ")]
    leads = write_lines(tmp_path / "leads.jsonl", lines)
    failed = tmp_path / "failed.jsonl"

    run = await run_cli(
        *comment_args(emu, str(leads), "--failed-out", str(failed), "--no-progress")
    )

    assert run.code == EXIT_INPUT
    assert failed.read_text() == f"{lines[1]}\n{lines[2]}\n"
