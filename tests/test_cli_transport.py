"""The CLI against what the transport refuses: a plain ``http://`` base URL off this machine
(``--allow-insecure-http``) and a Calltouch that answers with a redirect.

No test here resolves a name or connects anywhere but 127.0.0.1: a name is answered by a
recording resolver that points it at the local emulator, and any other lookup is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import aiohttp.connector
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from hostile import Server, serve

from calltouch_async.cli import EXIT_OK, EXIT_REDIRECT, EXIT_USAGE, main
from calltouch_async.testing import CalltouchEmulator
from cli_support import DEADLINE, SITE_ID, TOKEN, call_line, records, run_cli, write_lines

# A reserved name (RFC 2606): never a real host, and never looked up here anyway.
REMOTE_HOST = "calltouch.example"


class LoopbackResolver(AbstractResolver):
    """Stands in for aiohttp's resolver: records each name and answers 127.0.0.1."""

    asked: ClassVar[list[str]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        LoopbackResolver.asked.append(host)
        return [
            ResolveResult(
                hostname=host, host="127.0.0.1", port=port, family=socket.AF_INET,
                proto=0, flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        pass


@pytest.fixture
def no_lookups(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Names go to :class:`LoopbackResolver`; a real lookup of anything is refused and listed."""
    refused: list[str] = []

    def refuse(host: Any, *args: Any, **kwargs: Any) -> Any:
        refused.append(str(host))
        raise OSError(f"test: no DNS lookup allowed ({host})")

    LoopbackResolver.asked = []
    monkeypatch.setattr(aiohttp.connector, "DefaultResolver", LoopbackResolver)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("CALLTOUCH_ACCESS_TOKEN", TOKEN)
    monkeypatch.delenv("CALLTOUCH_SITE_ID", raising=False)
    yield refused


@contextlib.contextmanager
def emulator_in_a_thread() -> Iterator[CalltouchEmulator]:
    """An emulator on its own loop and thread, so ``main()`` can run ``asyncio.run`` (and
    install its signal handlers) in the test's main thread."""
    emu = CalltouchEmulator(site_id=SITE_ID, access_token=TOKEN, rate_limit=None)
    emu.add_call(1, phones=["79001234567"], time=datetime(2024, 5, 1, 10))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(emu.start(), loop).result(DEADLINE)
        yield emu
    finally:
        asyncio.run_coroutine_threadsafe(emu.close(), loop).result(DEADLINE)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(DEADLINE)
        loop.close()


def test_plain_http_off_loopback_exits_2_and_names_the_flag(
    no_lookups: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    leads = write_lines(tmp_path / "leads.jsonl", [call_line(1, "never sent")])
    out = tmp_path / "results.jsonl"

    code = main([
        "comment", str(leads), "--site-id", str(SITE_ID), "--base-url", "http://example.com",
        "--out", str(out), "--no-progress",
    ])

    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--base-url" in err and "--allow-insecure-http" in err and TOKEN not in err
    assert not out.exists()
    assert LoopbackResolver.asked == [] and no_lookups == []


def test_what_the_client_would_refuse_is_a_usage_error_before_any_file_is_opened(
    no_lookups: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The CLI's own URL check lets user info through; the client's does not.
    leads = write_lines(tmp_path / "leads.jsonl", [call_line(1, "never sent")])
    out = tmp_path / "results.jsonl"

    code = main([
        "comment", str(leads), "--site-id", str(SITE_ID),
        "--base-url", "https://user:pw@calltouch.example", "--out", str(out), "--no-progress",
    ])

    assert code == EXIT_USAGE
    assert "user name or password" in capsys.readouterr().err
    assert not out.exists()
    assert LoopbackResolver.asked == [] and no_lookups == []


def test_allow_insecure_http_reaches_the_client(
    no_lookups: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The name resolves (through the recording resolver) to the local emulator: the lead is
    # commented only if the client itself accepted plain http to a non-loopback host.
    leads = write_lines(tmp_path / "leads.jsonl", [call_line(1, "over plain http")])
    out = tmp_path / "results.jsonl"
    with emulator_in_a_thread() as emu:
        port = emu.base_url.rsplit(":", 1)[1]
        code = main([
            "comment", str(leads), "--site-id", str(SITE_ID),
            "--base-url", f"http://{REMOTE_HOST}:{port}", "--allow-insecure-http",
            "--out", str(out), "--no-progress",
        ])

    assert code == EXIT_OK, capsys.readouterr().err
    assert [r["status"] for r in records(out.read_text())] == ["commented"]
    assert emu.ledger.comments_for("call", 1) == ["over plain http"]
    assert set(LoopbackResolver.asked) == {REMOTE_HOST} and no_lookups == []


async def redirect(request: web.Request, server: Server) -> web.StreamResponse:
    # A Location on loopback that nothing listens on: following it would fail loudly.
    return web.Response(status=307, headers={"Location": "http://127.0.0.1:9/elsewhere"})


async def test_a_redirect_ends_the_run_with_its_own_code_and_leaves_leads_unknown(
    tmp_path: Path,
) -> None:
    lines = [call_line(n, f"lead {n}") for n in range(1, 251)]
    leads = write_lines(tmp_path / "leads.jsonl", lines)
    async with serve(redirect) as server:
        run = await run_cli(
            "comment", str(leads), "--site-id", str(SITE_ID), "--base-url", server.url,
            "--no-progress",
        )

    assert run.code == EXIT_REDIRECT, run.stderr
    assert "307" in run.stderr and "base_url" in run.stderr
    got = records(run.stdout)
    # One line per lead: the client gave none of them a result, and a 3xx does not say
    # whether anything ran, so each is unknown (held back by --resume), never failed.
    assert sorted(r["index"] for r in got) == list(range(250))
    assert {r["status"] for r in got} == {"unknown"}
    assert all("redirect" in r["error"] for r in got)
    # Never followed: every request went to the comment path, none to the Location.
    assert server.posts and all(r.path != "/elsewhere" for r in server.requests)
