"""The token stays out of what an echoing server sends back beyond error text: answer ids
(callInfo/requestInfo), HTML error pages escaping it as entities, and the frames of a client
handed a session of the wrong kind.

Every server here is a small hostile aiohttp.web one on 127.0.0.1 (``hostile.serve``).
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hostile import Server, serve

from calltouch_async import CalltouchClient, CommentStatus
from calltouch_async._token import Scrubber
from calltouch_async.cli import EXIT_OK, EXIT_USAGE, main
from calltouch_async.cli._main import _comment_settings, build_parser
from cli_support import call_line, run_cli, write_lines
from conftest import SITE_ID, make_leads

S = CommentStatus
TOKEN = "Ab3/xY9+Qw==s3cret"


def ids_answer(server: Server, value: object) -> web.Response:
    entry = {
        "callInfo": {"callId": value, "callReferenceId": value, "sipCallId": value},
        "requestInfo": {"requestId": value, "requestNumber": value},
        "commented": True, "error": None,
    }
    return web.json_response({"meta": [], "data": {"comments": [entry] * server.posts[-1].leads()}})


async def echoed_ids(token: str, value: object) -> list[Any]:
    """Comment 2 leads with ``token`` against a server answering every id with ``value``
    (``"{token}"`` in it is replaced by the token the server received)."""

    async def answer(request: web.Request, server: Server) -> web.Response:
        echo = request.headers["Access-Token"]
        ids = value.replace("{token}", echo) if isinstance(value, str) else value
        return ids_answer(server, ids)

    async with serve(answer) as api:
        async with CalltouchClient(SITE_ID, token, base_url=api.url, rate_limiter=None) as c:
            return await c.comment(make_leads(2))


def all_ids(result: Any) -> list[object]:
    call, request = result.call_info, result.request_info
    return [call.call_id, call.call_reference_id, call.sip_call_id,
            request.request_id, request.request_number]


# --------------------------------------------------------------------------- answer ids


@pytest.mark.parametrize("echo", ["{token}", "id-{token}-7", "{token}".replace("/", "%2F")])
async def test_an_id_echoing_the_token_is_scrubbed(echo: str) -> None:
    results = await echoed_ids(TOKEN, echo)
    assert [r.status for r in results] == [S.COMMENTED] * 2
    for result in results:
        assert TOKEN not in repr(result) and "Ab3%2FxY9" not in repr(result)
        assert all("***" in str(i) for i in all_ids(result))
    if echo.startswith("id-"):
        assert all_ids(results[0])[0] == "id-***-7"  # the rest of the id is kept


async def test_a_one_character_token_leaves_ids_that_merely_contain_it() -> None:
    # Token "7": real ids hold a 7 by chance; only an id that IS the token is an echo.
    assert all_ids((await echoed_ids("7", "12734"))[0]) == ["12734"] * 5
    assert all_ids((await echoed_ids("7", 12734))[0]) == [12734] * 5
    assert all_ids((await echoed_ids("7", "{token}"))[0]) == ["***"] * 5
    assert all_ids((await echoed_ids("7", 7))[0]) == ["***"] * 5  # a number as the token
    assert all_ids((await echoed_ids("x7", 7))[0]) == [7] * 5  # never equal to a non-digit


_ID_FIELDS = [
    ("callInfo", "callId"), ("callInfo", "callReferenceId"), ("callInfo", "sipCallId"),
    ("requestInfo", "requestId"), ("requestInfo", "requestNumber"),
]


@pytest.mark.parametrize(("block", "field"), _ID_FIELDS)
async def test_one_echoing_id_among_plain_numbers_is_scrubbed(block: str, field: str) -> None:
    # Every other id of the answer is a number (what a real answer holds), so a check that
    # skips all-number answers must still look at each field of each lead.
    async def answer(request: web.Request, server: Server) -> web.Response:
        n = server.posts[-1].leads()
        entries = [
            {"callInfo": {"callId": i + 1, "callReferenceId": None, "sipCallId": 7},
             "requestInfo": {"requestId": 5, "requestNumber": None},
             "commented": True, "error": None}
            for i in range(n)
        ]
        entries[n - 2][block][field] = request.headers["Access-Token"]
        return web.json_response({"meta": [], "data": {"comments": entries}})

    async with serve(answer) as api:
        async with CalltouchClient(SITE_ID, TOKEN, base_url=api.url, rate_limiter=None) as c:
            results = await c.comment(make_leads(100))
    assert [r.status for r in results] == [S.COMMENTED] * 100
    assert all_ids(results[98]).count("***") == 1
    assert TOKEN not in repr(results)
    assert [all_ids(r)[0] for r in results[:3]] == [1, 2, 3]  # numbers are kept as sent


async def test_a_signed_number_token_echoed_as_a_number_id_is_scrubbed() -> None:
    # "-1234567890123" is not all digits, yet JSON can send it back whole as a number.
    results = await echoed_ids("-1234567890123", -1234567890123)
    assert [r.status for r in results] == [S.COMMENTED] * 2
    assert all_ids(results[0]) == ["***"] * 5
    assert "1234567890123" not in repr(results)


async def test_the_cli_results_file_holds_no_token_from_ids(tmp_path: Path) -> None:
    async def answer(request: web.Request, server: Server) -> web.Response:
        return ids_answer(server, request.headers["Access-Token"])

    leads = write_lines(tmp_path / "leads.jsonl", [call_line(1, "x")])
    out = tmp_path / "results.jsonl"
    async with serve(answer) as api:
        run = await run_cli(
            "comment", str(leads), "--site-id", str(SITE_ID), "--base-url", api.url,
            "--out", str(out), "--no-progress", token=TOKEN,
        )
    assert run.code == EXIT_OK, run.stderr
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["status"] == "commented" and record["call_id"] == "***"
    assert TOKEN not in out.read_text() + run.stdout + run.stderr


# --------------------------------------------------------------------------- quotings


def html_hex(text: str) -> str:
    """As OWASP-style escapers write it: every non-alphanumeric as ``&#xHH;``."""
    return "".join(c if c.isalnum() else f"&#x{ord(c):X};" for c in text)


@pytest.mark.parametrize("form", [
    html_hex(TOKEN),
    "".join(f"&#{ord(c)};" for c in TOKEN),  # every character, decimal
    "".join(f"&#x{ord(c):04x}" for c in TOKEN),  # zero-padded, no ";" (browsers accept it)
    TOKEN.replace("/", "&sol;").replace("+", "&plus;").replace("=", "&equals;"),
    TOKEN.replace("/", "\\x2f"),  # a Python/JavaScript string escape
    TOKEN.replace("/", "%252F").replace("+", "%252B").replace("=", "%253D"),  # quoted twice
])
async def test_a_token_quoted_in_an_html_error_page_is_scrubbed(
    form: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def waf(request: web.Request, server: Server) -> web.Response:
        page = f"<html><body>Bad request: header Access-Token={form}</body></html>"
        return web.Response(status=400, text=page, content_type="text/html")

    caplog.set_level("DEBUG")
    async with serve(waf) as api:
        async with CalltouchClient(SITE_ID, TOKEN, base_url=api.url, rate_limiter=None) as c:
            [result] = await c.comment(make_leads(1))
    assert result.status is S.FAILED
    assert result.error is not None and "Access-Token=***<" in result.error
    assert form not in result.error + caplog.text


def test_a_space_in_the_token_is_caught_form_encoded() -> None:
    assert Scrubber("ab cd").text("k=ab+cd&x") == "k=***&x"


# --------------------------------------------------------------------------- frames


def exception_text(exc: BaseException) -> str:
    """What an error reporter records: the traceback with every frame's locals."""
    return "".join(
        traceback.TracebackException(
            type(exc), exc, exc.__traceback__, capture_locals=True
        ).format()
    )


class NotASession:  # e.g. another HTTP library's client passed by mistake
    closed = False


def test_a_session_of_the_wrong_type_is_refused_without_the_token() -> None:
    with pytest.raises(TypeError, match=r"aiohttp\.ClientSession") as caught:
        CalltouchClient(SITE_ID, TOKEN, session=NotASession())  # type: ignore[arg-type]
    assert TOKEN not in exception_text(caught.value)


async def test_a_transport_failing_half_built_holds_no_token_and_has_a_repr() -> None:
    session = aiohttp.ClientSession()
    # aiohttp's own attribute, broken so that the Transport's constructor fails on it.
    session._trace_configs = None  # type: ignore[assignment]
    try:
        with pytest.raises(TypeError, match="not iterable") as caught:
            async with CalltouchClient(SITE_ID, TOKEN, session=session):
                pass
        text = exception_text(caught.value)  # repr() of every local, the half-built Transport
    finally:
        await session.close()
    assert "Transport(url=" in text
    assert TOKEN not in text


def test_a_cli_usage_error_holds_no_token_in_its_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    from calltouch_async.cli._run import UsageError

    monkeypatch.setenv("CALLTOUCH_ACCESS_TOKEN", TOKEN)
    args = build_parser().parse_args(["comment", "x.jsonl", "--site-id", "a b"])
    with pytest.raises(UsageError) as caught:
        _comment_settings(args)
    assert TOKEN not in exception_text(caught.value)


@pytest.mark.parametrize(("option", "env"), [
    (["--base-url", "https://user:pw@calltouch.example"], {}),
    (["--site-id", "12\n3"], {}),
    (["--site-id", "a b"], {}),
    ([], {"CALLTOUCH_ACCESS_TOKEN": "tok\tx"}),
])
def test_arguments_the_client_refuses_are_usage_errors(
    option: list[str], env: dict[str, str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CALLTOUCH_ACCESS_TOKEN", TOKEN)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    leads = write_lines(tmp_path / "leads.jsonl", [call_line(1, "never sent")])
    out = tmp_path / "results.jsonl"
    # Port 9 on loopback: nothing is sent anyway, the arguments are refused first.
    argv = ["comment", str(leads), "--site-id", str(SITE_ID), "--base-url",
            "http://127.0.0.1:9", "--out", str(out), "--no-progress", *option]
    assert main(argv) == EXIT_USAGE
    printed = capsys.readouterr()
    assert "Traceback" not in printed.err and printed.err.count("\n") == 1
    assert TOKEN not in printed.out + printed.err and "tok\tx" not in printed.err
    assert not out.exists()
