"""The access token never leaves the library: not in exception messages, args, chains or the
locals of their frames (as error reporters record them), nor in ``result.error`` or logs.

The scrub works on decoded text: a token echoed with JSON escapes is still caught, and a
token short enough to occur in the answer by chance does not corrupt it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import traceback
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from hostile import Server, apply_all, results_body, serve, serve_raw

from calltouch_async import (
    AuthError,
    CalltouchClient,
    CommentResult,
    CommentStatus,
    RedirectError,
    RetryPolicy,
    SendTimeTrace,
)
from calltouch_async._constants import MAX_ANSWER_BYTES
from calltouch_async._errors import excerpt
from calltouch_async._token import Scrubber
from conftest import SITE_ID, make_leads

S = CommentStatus
#: A token with a character JSON may escape (``\\/``), as real base64 tokens have.
TOKEN = "Ab3/xY9+Qw==s3cret"
#: The token, and the ways a text may quote it: JSON escapes, percent-encoding.
FORMS = (
    *(TOKEN.replace("/", slash) for slash in ("/", "\\/", "\\u002f", "\\u002F")),
    quote(TOKEN, safe=""),
    quote(TOKEN, safe="").lower(),
)
FAST = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02)


def escaped_echo(request: web.Request) -> str:
    """The token as a server may quote it inside JSON: with its ``/`` escaped."""
    return request.headers["Access-Token"].replace("/", "\\/")


def exposed(text: str) -> bool:
    # Also with the backslashes a repr() doubles undone.
    return any(form in t for t in (text, text.replace("\\\\", "\\")) for form in FORMS)


def exception_text(exc: BaseException) -> str:
    """Everything an error reporter could record: every exception of the chain, its args
    and the locals of every frame of its traceback."""
    parts: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        link = pending.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        parts += [repr(link.args), repr(getattr(link, "__dict__", {}))]
        parts += traceback.TracebackException(
            type(link), link, link.__traceback__, capture_locals=True
        ).format()
        pending += [link.__cause__, link.__context__]
    return "".join(parts)


# --------------------------------------------------------------------------- the scrub


async def test_an_escaped_echo_never_reaches_auth_error() -> None:
    async def refuse(request: web.Request, server: Server) -> web.Response:
        body = (
            '{"meta": [], "data": {"type": "apiError", "apiErrorData": {"errorCode": 401, '
            f'"errorMessage": "bad token {escaped_echo(request)}"}}}}}}'
        )
        return web.Response(status=401, body=body, content_type="application/json")

    async with serve(refuse) as api:
        async with CalltouchClient(SITE_ID, TOKEN, base_url=api.url, rate_limiter=None) as c:
            with pytest.raises(AuthError) as caught:
                await c.comment(make_leads(1))
    assert "bad token ***" in str(caught.value)
    assert not exposed(exception_text(caught.value))


@pytest.mark.parametrize("malformed", [False, True], ids=["per-lead-error", "malformed-body"])
async def test_an_escaped_echo_never_reaches_result_errors(malformed: bool) -> None:
    async def quote(request: web.Request, server: Server) -> web.Response:
        error = f"no lead for key {escaped_echo(request)}"
        body = (
            '{"meta": [], "data": {"comments": [{"commented": false, "error": "' + error + '"}]}'
            + ("<!-- cut -->" if malformed else "}")
        )
        return web.Response(body=body, content_type="application/json")

    async with serve(quote) as api:
        async with CalltouchClient(SITE_ID, TOKEN, base_url=api.url, rate_limiter=None) as c:
            [result] = await c.comment(make_leads(1))
    assert result.status is (S.UNKNOWN if malformed else S.NOT_COMMENTED)
    assert "no lead for key ***" in (result.error or "")
    assert not exposed(repr(result))


async def test_an_echo_in_a_violation_never_reaches_rejected_leads() -> None:
    async def reject(request: web.Request, server: Server) -> web.Response:
        if server.requests[-1].leads() == 1:
            return await apply_all(request, server)
        violation = (
            '{"fieldPath": "comments[0].addComment", '
            f'"message": "not for key {escaped_echo(request)}"}}'
        )
        body = (
            '{"meta": [], "data": {"type": "validationError", "apiErrorData": null, '
            '"validationErrorData": {"violations": [' + violation + "]}}}"
        )
        return web.Response(status=400, body=body, content_type="application/json")

    async with serve(reject) as api:
        async with CalltouchClient(SITE_ID, TOKEN, base_url=api.url, rate_limiter=None) as c:
            results = await c.comment(make_leads(2))
    assert [r.status for r in results] == [S.REJECTED, S.COMMENTED]
    assert "not for key ***" in (results[0].error or "")
    assert not exposed(repr(results))


def test_an_excerpt_decodes_only_the_bytes_it_shows() -> None:
    class Body(bytes):
        def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
            raise AssertionError("the whole body was decoded")

    assert len(excerpt(Body(b"x" * 1_000_000))) <= 201
    assert Scrubber(TOKEN).excerpt(Body(b"x" * 1_000_000)).endswith("…")


async def test_a_one_character_token_does_not_corrupt_answers() -> None:
    async def answer(request: web.Request, server: Server) -> web.Response:
        # "t" is everywhere in an answer: in "commented", "true", "data"...
        return web.json_response(results_body(server.requests[-1].leads(), error="it worked"))

    async with serve(answer) as api:
        async with CalltouchClient(SITE_ID, "t", base_url=api.url, rate_limiter=None) as c:
            results = await c.comment(make_leads(3))
    assert [r.status for r in results] == [S.COMMENTED] * 3


# --------------------------------------------------------------------------- the sweep

Outcome = tuple[list[CommentResult], BaseException | None]
Path = Callable[[], Awaitable[Outcome]]


async def outcome_of(url: str, **options: Any) -> Outcome:
    """Comment 3 leads through the public API; what came back, or what was raised."""
    options.setdefault("rate_limiter", None)
    options.setdefault("retry", FAST)
    try:
        async with CalltouchClient(SITE_ID, TOKEN, base_url=url, **options) as c:
            return await c.comment(make_leads(3)), None
    except (Exception, asyncio.CancelledError) as exc:  # what the caller would see
        return [], exc


async def through_server(handler: Callable[..., Awaitable[web.StreamResponse]]) -> Outcome:
    async with serve(handler) as api:
        return await outcome_of(api.url, timeout=0.5)


async def redirect(request: web.Request, server: Server) -> web.Response:
    token = request.headers["Access-Token"]
    location = f"https://x.example/{quote(token, safe='')}?k={escaped_echo(request)}"
    return web.Response(status=307, headers={"Location": location})


async def auth(request: web.Request, server: Server) -> web.Response:
    return web.Response(status=403, text=f"<html>forbidden: {request.headers['Access-Token']}")


async def malformed(request: web.Request, server: Server) -> web.Response:
    return web.Response(text=f'{{"data": {{"token": "{escaped_echo(request)}"')


async def oversized(request: web.Request, server: Server) -> web.Response:
    return web.Response(text=request.headers["Access-Token"] * (MAX_ANSWER_BYTES // 10))


async def server_error(request: web.Request, server: Server) -> web.Response:
    return web.Response(status=503, text=request.headers["Access-Token"])


async def silent(request: web.Request, server: Server) -> web.Response:
    await asyncio.sleep(2)  # past the client's 0.5 s deadline
    return await apply_all(request, server)


async def closed_session() -> Outcome:
    session = aiohttp.ClientSession(trace_configs=[SendTimeTrace()])
    await session.close()
    return await outcome_of("http://127.0.0.1:9", session=session)


async def connect_refused() -> Outcome:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    return await outcome_of(url)


async def disconnect() -> Outcome:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()

    async with serve_raw(drop) as url:
        return await outcome_of(url)


async def cancelled() -> Outcome:
    arrived = asyncio.Event()

    async def hold(request: web.Request, server: Server) -> web.Response:
        arrived.set()
        await asyncio.sleep(2)
        return await apply_all(request, server)

    async with serve(hold) as api:
        task = asyncio.ensure_future(outcome_of(api.url))
        await arrived.wait()  # cancelled while aiohttp waits for the answer
        task.cancel()
        return await task


async def bad_arguments() -> Outcome:
    try:
        CalltouchClient(SITE_ID, TOKEN, base_url="http://api.example.com", max_in_flight=0)
    except ValueError as exc:
        return [], exc
    raise AssertionError("the client was built")


PATHS: dict[str, Path] = {
    "redirect": lambda: through_server(redirect),
    "auth": lambda: through_server(auth),
    "malformed": lambda: through_server(malformed),
    "oversized": lambda: through_server(oversized),
    "server-error": lambda: through_server(server_error),
    "timeout": lambda: through_server(silent),
    "closed-session": closed_session,
    "connect-refused": connect_refused,
    "server-disconnect": disconnect,
    "cancelled": cancelled,
    "bad-arguments": bad_arguments,
}
EXPECTED: dict[str, type[BaseException] | S] = {
    "redirect": RedirectError, "auth": AuthError, "malformed": S.UNKNOWN,
    "oversized": S.UNKNOWN, "server-error": S.UNKNOWN, "timeout": S.UNKNOWN,
    "closed-session": S.FAILED, "connect-refused": S.FAILED,
    "server-disconnect": S.UNKNOWN, "cancelled": asyncio.CancelledError,
    "bad-arguments": ValueError,
}


@pytest.mark.parametrize("name", list(PATHS))
async def test_no_failure_path_exposes_the_token(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    results, raised = await PATHS[name]()
    expected = EXPECTED[name]
    if isinstance(expected, S):
        assert raised is None, f"{name} raised {raised!r}"
        assert [r.status for r in results] == [expected] * 3
        assert all(r.error for r in results)
    else:
        assert isinstance(raised, expected), f"{name}: {raised!r}"
        assert not exposed(exception_text(raised)), exception_text(raised)
    assert not exposed(repr(results))
    assert not exposed(caplog.text)
    assert not any(exposed(repr(record.args)) for record in caplog.records)


def test_a_client_refused_by_its_checks_holds_no_token_and_has_a_repr() -> None:
    try:
        CalltouchClient(SITE_ID, TOKEN, base_url="http://api.example.com")
    except ValueError as exc:
        frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)]
    half_built = next(f.f_locals["self"] for f in frames if f.f_code.co_name == "__init__")
    assert not hasattr(half_built, "_token")  # checked before the token was stored
    assert repr(half_built).startswith("CalltouchClient(")  # no AttributeError
    assert not exposed(repr(half_built) + repr(frames[-1].f_locals))
    assert repr(CalltouchClient.__new__(CalltouchClient)).startswith("CalltouchClient(")
