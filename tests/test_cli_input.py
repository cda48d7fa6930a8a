"""The CLI's input as Russian CRMs and spreadsheets produce it, and the edges of a run: a
closed pipe, a bad ``--base-url``, ``--version``. Subprocesses against the emulator's ledger."""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path

import pytest

import calltouch_async
from calltouch_async.cli import EXIT_INPUT, EXIT_OK, EXIT_PIPE, EXIT_USAGE, main
from calltouch_async.testing import CalltouchEmulator
from cli_support import (
    DEADLINE,
    TOKEN,
    call_line,
    comment_args,
    records,
    run_cli,
    write_lines,
)


async def test_a_cp1251_semicolon_csv_from_excel_comments_every_row(
    emu: CalltouchEmulator, tmp_path: Path
) -> None:
    call8 = emu.calls[8]
    rows = [
        "Комментарий не колонка;comment;call_id;phone;date",
        "x;Перезвонил клиент, интересуется;1;;",
        f"x;Второй звонок: «ёлка»;;{call8.phones[0]};{call8.time:%d.%m.%Y %H:%M}",
        "x;ASCII only;3;;",
    ]
    path = tmp_path / "export.csv"
    path.write_bytes("".join(r + "\r\n" for r in rows).encode("cp1251"))

    # No --csv-delimiter: the header line's ';' is taken.
    run = await run_cli(*comment_args(emu, str(path), "--encoding", "cp1251", "--no-progress"))

    assert run.code == EXIT_OK, run.stderr
    assert [r["status"] for r in records(run.stdout)] == ["commented"] * 3
    assert emu.ledger.comments_for("call", 1) == ["Перезвонил клиент, интересуется"]
    assert emu.ledger.comments_for("call", 8) == ["Второй звонок: «ёлка»"]
    assert emu.ledger.comments_for("call", 3) == ["ASCII only"]


async def test_json_lines_in_cp1251(emu: CalltouchEmulator, tmp_path: Path) -> None:
    path = tmp_path / "leads.jsonl"
    lead = '{"matching": [{"type": "call", "callParams": {"callId": 2}}], "addComment": "Привет"}'
    path.write_bytes(f"{lead}\n".encode("cp1251"))

    run = await run_cli(*comment_args(emu, str(path), "--encoding", "cp1251", "--no-progress"))

    assert run.code == EXIT_OK, run.stderr
    assert emu.ledger.comments_for("call", 2) == ["Привет"]


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
async def test_the_delimiter_is_sniffed_from_the_header_line(
    emu: CalltouchEmulator, tmp_path: Path, delimiter: str
) -> None:
    # The comment holds the other delimiters, quoted, so only the header can decide.
    rows = [f"comment{delimiter}call_id", f'"a, b; c\td"{delimiter}4']
    path = write_lines(tmp_path / "leads.csv", rows)

    run = await run_cli(*comment_args(emu, str(path), "--no-progress"))

    assert run.code == EXIT_OK, run.stderr
    assert emu.ledger.comments_for("call", 4) == ["a, b; c\td"]


async def test_a_header_naming_no_lead_column_stops_at_once_with_exit_2(
    emu: CalltouchEmulator, tmp_path: Path
) -> None:
    # Two columns the CLI does not know: nothing could become a lead.
    path = write_lines(tmp_path / "leads.csv", ["name,value", "a,1", "b,2"])

    run = await run_cli(*comment_args(emu, str(path), "--no-progress"))

    assert run.code == EXIT_USAGE, run.stderr
    assert "header names no lead" in run.stderr
    assert run.stdout == "" and emu.ledger.requests == []


async def test_several_phones_in_one_cell_and_dotted_dates(
    emu: CalltouchEmulator, tmp_path: Path
) -> None:
    call5, call6 = emu.calls[5], emu.calls[6]
    rows = [
        "comment,phone,date",
        # The first phone matches nothing; the second is call 5's.
        f'by second phone,"70000000001, {call5.phones[0]}",{call5.time:%d.%m.%Y %H:%M:%S}',
        f'semicolons,"70000000002;{call6.phones[0]}",{call6.time:%d.%m.%Y %H:%M}',
    ]
    path = write_lines(tmp_path / "leads.csv", rows)

    run = await run_cli(*comment_args(emu, str(path), "--no-progress"))

    assert run.code == EXIT_OK, run.stderr
    assert emu.ledger.comments_for("call", 5) == ["by second phone"]
    assert emu.ledger.comments_for("call", 6) == ["semicolons"]


async def test_a_utf8_default_names_the_encoding_option_for_cp1251_rows(
    emu: CalltouchEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "leads.csv"
    path.write_bytes("comment,call_id\nПривет,1\n".encode("cp1251"))

    run = await run_cli(*comment_args(emu, str(path), "--no-progress"))

    assert run.code == EXIT_INPUT
    [got] = records(run.stdout)
    assert got["status"] == "invalid" and "--encoding" in got["error"]


async def test_a_closed_pipe_ends_the_run_quietly(
    emu: CalltouchEmulator, tmp_path: Path
) -> None:
    # More results than a pipe buffers, so writes go on after `head` has gone.
    lines = [call_line(n % 50 + 1, f"piped {n}") for n in range(2000)]
    path = write_lines(tmp_path / "leads.jsonl", lines)
    cli = shlex.join([sys.executable, "-m", "calltouch_async",
                      *comment_args(emu, str(path), "--no-progress")])
    script = f'{cli} | head -1; echo "cli-exit=${{PIPESTATUS[0]}}" >&2'
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", script, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"CALLTOUCH_ACCESS_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), DEADLINE)

    assert len(out.decode().splitlines()) == 1
    assert "Traceback" not in err.decode() and "BrokenPipe" not in err.decode()
    assert f"cli-exit={EXIT_PIPE}" in err.decode(), err.decode()


@pytest.mark.parametrize(
    "url", ["notaurl", "ftp://example.com", "http://example.com", "https://", "http//x"]
)
def test_a_bad_base_url_is_a_usage_error_before_anything_is_sent(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # In-process: main() returns before a client, a session or a resolver exists.
    monkeypatch.setenv("CALLTOUCH_ACCESS_TOKEN", TOKEN)
    path = write_lines(tmp_path / "leads.jsonl", [call_line(1, "x")])
    out = tmp_path / "results.jsonl"
    assert main(["comment", str(path), "--site-id", "1", "--base-url", url,
                 "--out", str(out)]) == EXIT_USAGE
    assert "--base-url" in capsys.readouterr().err
    assert not out.exists()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == EXIT_OK
    assert capsys.readouterr().out.strip() == f"calltouch-async {calltouch_async.__version__}"
    assert calltouch_async.__version__[0].isdigit()
