"""The ``calltouch-async`` command line, run as a subprocess against the emulator.

What the emulator's ledger recorded is the oracle; the results file is checked against it.
Helpers are in ``cli_support``; resuming, interrupts, the dry run and ``--failed-out`` are in
``test_cli_resume``; input formats and encodings in ``test_cli_input``.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest

from calltouch_async.cli import (
    EXIT_AUTH,
    EXIT_INPUT,
    EXIT_OK,
    EXIT_UNKNOWN,
    EXIT_USAGE,
    _csv,
    _input,
    _lines,
    main,
)
from calltouch_async.testing import CalltouchEmulator, Fault
from cli_support import (
    DEADLINE,
    SITE_ID,
    TOKEN,
    call_line,
    comment_args,
    records,
    run_cli,
    start_cli,
    write_lines,
)

# --------------------------------------------------------------------------- comment


async def test_happy_path_writes_one_record_per_lead_and_comments_each_once(
    emu: CalltouchEmulator, tmp_path: Path
) -> None:
    texts = [f"happy {n}" for n in range(250)]
    lines = [call_line(n % 50 + 1, text) for n, text in enumerate(texts)]
    lines.append(call_line(9999, "nobody has this call"))  # not found: still exit 0
    leads = write_lines(tmp_path / "leads.jsonl", lines)
    out = tmp_path / "results.jsonl"

    run = await run_cli(*comment_args(emu, str(leads), "--out", str(out), "--no-progress"))

    assert run.code == EXIT_OK, run.stderr
    assert run.stdout == ""
    got = sorted(records(out.read_text()), key=lambda r: r["index"])
    assert [r["index"] for r in got] == list(range(251))
    assert [r["line"] for r in got] == list(range(1, 252))
    assert set(got[0]) == {"index", "line", "status", "call_id", "request_id", "error"}
    assert all(r["status"] == "commented" for r in got[:250])
    assert [r["call_id"] for r in got[:250]] == [n % 50 + 1 for n in range(250)]
    assert got[250]["status"] == "not_commented" and got[250]["error"] == "Lead not found"
    counts = emu.ledger.text_counts()
    assert all(counts[text] == 1 for text in texts) and sum(counts.values()) == 250
    assert "251 results" in run.stderr and "commented" in run.stderr


async def test_malformed_lines_are_reported_by_line_number_and_the_rest_proceeds(
    emu: CalltouchEmulator, tmp_path: Path
) -> None:
    lines = [
        call_line(1, "first"),
        '{"matching": [{"type": "call", "callParams": {"callId": 2}}], "addComment": "cut',
        "",  # blank lines are skipped, not leads
        '{"addComment": "no matching"}',
        call_line(3, "last"),
    ]
    leads = write_lines(tmp_path / "leads.jsonl", lines)

    run = await run_cli(*comment_args(emu, str(leads), "--no-progress"))

    assert run.code == EXIT_INPUT
    by_line = {r["line"]: r for r in records(run.stdout)}
    assert sorted(by_line) == [1, 2, 4, 5]
    assert [by_line[n]["index"] for n in (1, 2, 4, 5)] == [0, 1, 2, 3]
    assert by_line[1]["status"] == by_line[5]["status"] == "commented"
    assert by_line[2]["status"] == by_line[4]["status"] == "invalid"
    assert "malformed" in by_line[2]["error"] and "matching" in by_line[4]["error"]
    assert "line 2:" in run.stderr and "line 4:" in run.stderr
    assert sorted(emu.ledger.text_counts()) == ["first", "last"]


async def test_invalid_and_rejected_leads_exit_with_the_input_code(
    emu: CalltouchEmulator, tmp_path: Path
) -> None:
    bad_email = {
        "type": "requestContact",
        "requestContactParams": {
            "emails": ["not-an-email"], "date": "01-10-2020 12:00:00", "searchDepth": 60,
            "requestTypeToMatch": "nearest",
        },
    }
    lines = [
        call_line(1, "fine"),
        call_line(2, "   "),  # blank comment: refused locally, never sent
        json.dumps({"matching": [bad_email], "addComment": "server refuses this e-mail"}),
    ]
    leads = write_lines(tmp_path / "leads.jsonl", lines)

    run = await run_cli(*comment_args(emu, str(leads), "--no-progress"))

    assert run.code == EXIT_INPUT
    by_line = {r["line"]: r for r in records(run.stdout)}
    assert by_line[1]["status"] == "commented"
    assert by_line[2]["status"] == "invalid" and "addComment" in by_line[2]["error"]
    assert by_line[3]["status"] == "rejected" and "email" in by_line[3]["error"].lower()
    # The invalid lead never reached Calltouch; the rejected one's request executed nothing.
    assert list(emu.ledger.text_counts()) == ["fine"]
    assert all(r.lead_count <= 2 for r in emu.ledger.requests)


async def test_wrong_token_exits_with_the_auth_code_and_leaves_leads_failed_not_unknown(
    emu: CalltouchEmulator, tmp_path: Path
) -> None:
    leads = write_lines(tmp_path / "leads.jsonl", [call_line(1, "never applied")])
    wrong = "wrong-token-7d1a"

    run = await run_cli(*comment_args(emu, str(leads), "--no-progress"), token=wrong)

    assert run.code == EXIT_AUTH
    assert "credentials" in run.stderr and str(SITE_ID) in run.stderr
    assert wrong not in run.stdout + run.stderr
    # A 401 proves the request ran nothing: failed (sent again by --resume), never unknown.
    got = records(run.stdout)
    assert [r["status"] for r in got] == ["failed"] and "credentials" in got[0]["error"]
    assert emu.ledger.applied_total == 0


async def test_stdin_input_and_stdout_results(emu: CalltouchEmulator) -> None:
    data = "".join(call_line(n, f"piped {n}") + "\n" for n in range(1, 6)).encode()

    run = await run_cli(*comment_args(emu, "-", "--out", "-", "--no-progress"), stdin=data)

    assert run.code == EXIT_OK, run.stderr
    assert sorted(r["line"] for r in records(run.stdout)) == [1, 2, 3, 4, 5]
    assert emu.ledger.applied_total == 5


async def test_site_id_from_the_environment_and_unknown_outcomes_exit_6(
    emu: CalltouchEmulator, tmp_path: Path
) -> None:
    emu.inject(Fault.SERVER_ERROR, probability=1.0)  # 5xx: sent, outcome unknown
    leads = write_lines(tmp_path / "leads.jsonl", [call_line(1, "lost answer")])

    run = await run_cli(
        "comment", str(leads), "--base-url", emu.base_url, "--no-progress",
        site_id=str(SITE_ID),
    )

    assert run.code == EXIT_UNKNOWN, run.stderr
    assert [r["status"] for r in records(run.stdout)] == ["unknown"]


def test_usage_errors_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CALLTOUCH_ACCESS_TOKEN", raising=False)
    monkeypatch.delenv("CALLTOUCH_SITE_ID", raising=False)
    leads = write_lines(tmp_path / "leads.jsonl", [call_line(1, "x")])
    assert main(["comment", str(leads), "--site-id", "1"]) == EXIT_USAGE  # no token
    monkeypatch.setenv("CALLTOUCH_ACCESS_TOKEN", TOKEN)
    assert main(["comment", str(leads)]) == EXIT_USAGE  # no site id
    assert main(["comment", str(tmp_path / "missing.jsonl"), "--site-id", "1"]) == EXIT_USAGE
    assert main(["comment"]) == EXIT_USAGE  # argparse: FILE missing
    # No such flag, and argparse's error must not echo the value.
    assert main(["comment", str(leads), "--token", TOKEN]) == EXIT_USAGE
    assert main(["comment", str(leads), f"--access-token={TOKEN}"]) == EXIT_USAGE
    # --resume appends to a results file; utf-16 would not split into lines on b"\n".
    assert main(["comment", str(leads), "--site-id", "1", "--resume"]) == EXIT_USAGE
    assert main(["comment", str(leads), "--site-id", "1", "--resend-unknown",
                 "--out", str(tmp_path / "r.jsonl")]) == EXIT_USAGE
    assert main(["comment", str(leads), "--site-id", "1", "--encoding", "utf-16"]) == EXIT_USAGE
    assert main(["comment", str(leads), "--site-id", "1", "--encoding", "nonsense"]) == EXIT_USAGE
    assert not (tmp_path / "r.jsonl").exists()
    assert main(["--help"]) == EXIT_OK
    printed = capsys.readouterr()
    assert "exit codes" in printed.out and "130" in printed.out
    assert TOKEN not in printed.out + printed.err


# --------------------------------------------------------------------------- CSV input


def write_csv(path: Path, rows: list[str], *, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + "".join(r + "\n" for r in rows).encode())
    return path


async def test_csv_rows_match_by_call_id_phone_and_email_and_results_name_their_lines(
    emu: CalltouchEmulator, tmp_path: Path
) -> None:
    call6, call7, request3 = emu.calls[6], emu.calls[7], emu.requests[3]
    rows = [
        # Spreadsheet header: a BOM, any case, padding, a column the CLI does not know.
        ' Comment , CALL_ID ,Manager,Phone,  date,EMAIL',
        "by id 1,1,Anna,,,",
        '"by id 2, with a comma\nand a second line",2,,,,',  # lines 3-4
        f"by phone 6,,,{call6.phones[0]},{call6.time:%d-%m-%Y %H:%M:%S},",
        f"by phone 7 (ISO),,,{call7.phones[0]},{call7.time.isoformat()},",
        ",,,,,",  # an empty spreadsheet row: skipped, not a lead
        f"by email,,,,{request3.time:%Y-%m-%d %H:%M:%S},{request3.emails[0]}",
        "nobody has this call,9999,,,,",
    ]
    leads = write_csv(tmp_path / "export.CSV", rows, bom=True)  # .csv picks the format
    out = tmp_path / "results.jsonl"

    run = await run_cli(*comment_args(emu, str(leads), "--out", str(out), "--no-progress"))

    assert run.code == EXIT_OK, run.stderr
    assert "columns ignored: Manager" in run.stderr
    got = sorted(records(out.read_text()), key=lambda r: r["index"])
    expected = [  # (line, status, call_id, request_id)
        (2, "commented", 1, None),
        (3, "commented", 2, None),
        (5, "commented", 6, None),
        (6, "commented", 7, None),
        (8, "commented", None, 3),
        (9, "not_commented", None, None),
    ]
    assert [(r["line"], r["status"], r["call_id"], r["request_id"]) for r in got] == expected
    assert [r["index"] for r in got] == list(range(6))
    assert [r["error"] for r in got] == [None] * 5 + ["Lead not found"]
    counts = emu.ledger.text_counts()
    assert counts["by id 2, with a comma\nand a second line"] == 1
    assert sum(counts.values()) == 5 and set(counts.values()) == {1}


async def test_csv_semicolons_from_stdin_bad_rows_named_by_line_and_column(
    emu: CalltouchEmulator,
) -> None:
    call4 = emu.calls[4]
    rows = [
        "comment;call_id;phone;date;search_depth",
        '"first; fine";1;;;',
        "bad id;abc;;;",
        "no date;;79001234567;;",
        ";3;;;",
        f"bad date;;{call4.phones[0]};31-02-2020 10:00:00;",
        f"bad depth;;{call4.phones[0]};{call4.time:%d-%m-%Y %H:%M:%S};-5",
        "last;5;;;",
    ]
    data = "".join(r + "\n" for r in rows).encode()

    run = await run_cli(
        *comment_args(emu, "-", "--format", "csv", "--csv-delimiter", ";", "--no-progress"),
        stdin=data,
    )

    assert run.code == EXIT_INPUT, run.stderr
    by_line = {r["line"]: r for r in records(run.stdout)}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 8]
    assert by_line[2]["status"] == by_line[8]["status"] == "commented"
    assert by_line[8]["call_id"] == 5 and by_line[8]["index"] == 6
    errors = {line: by_line[line]["error"] for line in (3, 4, 5, 6, 7)}
    assert all(by_line[line]["status"] == "invalid" for line in errors)
    for line, column in [(3, "call_id"), (4, "date"), (5, "comment"), (6, "date"),
                         (7, "search_depth")]:
        assert f"column '{column}'" in errors[line], errors[line]
        assert f"line {line}: malformed lead: column '{column}'" in run.stderr
    assert sorted(emu.ledger.text_counts()) == ["first; fine", "last"]


def test_csv_records_track_lines_across_chunks_and_flag_unreadable_ones() -> None:
    data = (
        b"\xef\xbb\xbfcomment,call_id\n"
        b'"two\nlines",1\n'
        b"\n"
        b"\xff\xfe,2\n"  # not UTF-8
        + b"x" * (_lines.MAX_LINE + 1) + b",3\n"
        b'"unbalanced"x",4\r\n'
        b"last,5"
    )
    chunks = iter([*(data[i : i + 999] for i in range(0, len(data), 999)), b""])
    got = [rec for batch in _csv.csv_records(lambda _: next(chunks), ",") for rec in batch]
    assert [(r.line, r.last_line) for r in got] == [(1, 1), (2, 3), (5, 5), (6, 6), (7, 7),
                                                    (8, 8)]
    assert got[0].cells == ["comment", "call_id"] and got[1].cells == ["two\nlines", "1"]
    assert got[2].problem == "line 5 is not utf-8-sig text (see --encoding)"
    assert got[1].raw == b'"two\nlines",1\n'  # as read, for --failed-out
    assert got[3].problem is not None and "longer than" in got[3].problem
    assert got[5].cells == ["last", "5"] and got[5].problem is None


def test_csv_dates_and_the_delimiter_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for text in ("01-10-2020 12:00:00", "2020-10-01T12:00:00", "2020-10-01 12:00",
                 "01.10.2020 12:00:00", "01.10.2020 12:00", "01-10-2020 12:00"):
        assert _csv._calltouch_date(text) == "01-10-2020 12:00:00"
    for bad in ("1-10-2020 12:00:00", "2020-02-30 12:00", "2020-10-01", "2020-10-01T12:00Z",
                "01.10-2020 12:00", "31.02.2020 12:00"):
        with pytest.raises(ValueError):
            _csv._calltouch_date(bad)
    monkeypatch.setenv("CALLTOUCH_ACCESS_TOKEN", TOKEN)
    leads = write_lines(tmp_path / "leads.jsonl", [call_line(1, "x")])
    # A delimiter for JSON lines, or one that is not a single character: usage errors.
    assert main(["comment", str(leads), "--site-id", "1", "--csv-delimiter", ";"]) == EXIT_USAGE
    assert main(["comment", str(leads), "--site-id", "1", "--format", "csv",
                 "--csv-delimiter", ";;"]) == EXIT_USAGE


# --------------------------------------------------------------------------- demo, emulator


async def test_demo_end_to_end() -> None:
    run = await run_cli("demo", "--leads", "300", "--no-progress", token=None)

    assert run.code == EXIT_OK, run.stdout + run.stderr
    table = dict(
        line.strip().split("  ", 1) for line in run.stdout.splitlines() if "  " in line.strip()
    )
    assert table["comments applied twice+"].strip().startswith("0 ")
    assert table["verdict"].strip().startswith("OK")
    assert int(table["max requests in any 1 s"].split()[0]) <= 5
    for status in ("commented", "not_commented", "invalid", "rejected"):
        assert int(table[status].replace(",", "")) > 0
    assert "line " in run.stderr and "malformed lead" in run.stderr


async def test_emulator_command_shows_its_credentials_and_serves_the_comment_command(
    tmp_path: Path,
) -> None:
    # Its defaults: the banner must say which credentials it accepts, with a curl to try.
    server = await start_cli("emulator", "--port", "0", "--calls", "5", token=None)
    try:
        assert server.stdout is not None
        banner = [
            (await asyncio.wait_for(server.stdout.readline(), DEADLINE)).decode()
            for _ in range(6)
        ]
        base_url = banner[0].split()[-1]
        assert base_url.startswith("http://127.0.0.1:")
        assert "SiteId: 12345" in banner[2] and "Access-Token: test-token" in banner[2]
        curl = banner[-1]
        assert curl.strip().startswith(f"curl -s -X POST {base_url}/")
        assert "-H 'Access-Token: test-token'" in curl and "-H 'SiteId: 12345'" in curl
        leads = write_lines(tmp_path / "leads.jsonl", [call_line(5, "via the standalone")])
        run = await run_cli(
            "comment", str(leads), "--site-id", "12345", "--base-url", base_url,
            "--no-progress", token="test-token",
        )
        assert run.code == EXIT_OK, run.stderr
        assert records(run.stdout)[0]["call_id"] == 5
    finally:
        server.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(server.communicate(), DEADLINE)
    assert server.returncode == EXIT_OK, err.decode()
    assert "stopped" in out.decode()


def test_emulator_help_names_the_credentials_it_accepts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["emulator", "--help"]) == EXIT_OK
    text = capsys.readouterr().out
    assert text.startswith("usage: calltouch-async emulator")
    assert "--site-id (12345) and --token (test-token)" in text and "curl -s -X POST" in text


# --------------------------------------------------------------------------- reading input


def test_line_batches_split_lines_across_chunks_and_drop_over_long_ones() -> None:
    big = b"x" * (_lines.MAX_LINE + 1)
    data = b"a\r\n" + b"b" * 100_000 + b"\n" + big + b"\n" + b"c\n\nlast-without-newline"
    chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    reads = iter([*chunks, b""])
    lines = [line for batch in _lines.line_batches(lambda _: next(reads)) for line in batch]
    assert lines == [b"a\r", b"b" * 100_000, None, b"c", b"", b"last-without-newline"]


async def test_reader_survives_many_lines_longer_than_a_read(tmp_path: Path) -> None:
    # Each 100 kB line spans two reads; reading must not stall after a few of them.
    path = tmp_path / "long.jsonl"
    path.write_bytes(b"".join(bytes([65 + n]) * 100_000 + b"\n" for n in range(20)))
    with path.open("rb") as handle:
        reader = _input.BatchReader(handle.fileno(), _lines.lines_without_bom)
        async with asyncio.timeout(5):
            got = [line async for batch in reader.batches() for line in batch]
    assert [line[:1] if line else line for line in got] == [bytes([65 + n]) for n in range(20)]


async def test_the_emulator_banner_shows_the_default_token_but_never_a_given_one() -> None:
    from calltouch_async.testing.__main__ import banner

    async with CalltouchEmulator() as emu:
        assert "Access-Token: test-token" in banner(emu, "12345", "test-token")
        text = banner(emu, "777", "my-private-value")
    assert "my-private-value" not in text
    assert "SiteId: 777" in text and "<the --token value>" in text
