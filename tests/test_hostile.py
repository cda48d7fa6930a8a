"""Hostile servers (issue 13): no answer makes the client follow it elsewhere, double-apply,
report an applied lead ``failed``, read without bound, or change what an answer means.

Every server here is a real HTTP server on 127.0.0.1 (``tests/hostile.py``); the client is
the real one.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hostile import COMMENT_PATH, Server, apply_all, results_body, serve

from calltouch_async import (
    AuthError,
    CalltouchClient,
    CommentStatus,
    RedirectError,
    RetryPolicy,
    SendTimeTrace,
)
from calltouch_async._constants import MAX_ANSWER_BYTES
from conftest import SITE_ID, TOKEN, make_leads

S = CommentStatus
FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.02)


def client(url: str, **options: Any) -> CalltouchClient:
    options.setdefault("rate_limiter", None)
    options.setdefault("retry", FAST_RETRY)
    return CalltouchClient(SITE_ID, TOKEN, base_url=url, **options)


# --------------------------------------------------------------------------- redirects


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_never_followed_and_raises(status: int) -> None:
    async with serve(apply_all) as elsewhere:
        target = elsewhere.url + COMMENT_PATH

        async def redirect(request: web.Request, server: Server) -> web.Response:
            return web.Response(status=status, headers={"Location": target})

        async with serve(redirect) as api, client(api.url) as c:
            with pytest.raises(RedirectError) as caught:
                await c.comment(make_leads(3))
    assert caught.value.status == status
    assert caught.value.location == target
    assert str(status) in str(caught.value) and target in str(caught.value)
    assert elsewhere.requests == []  # neither the token nor the comments went there
    assert len(api.posts) == 1


async def test_a_redirect_loop_costs_one_request_and_stops_the_stream() -> None:
    async def to_itself(request: web.Request, server: Server) -> web.Response:
        return web.Response(status=307, headers={"Location": COMMENT_PATH})

    async with serve(to_itself) as api, client(api.url, max_in_flight=1) as c:
        with pytest.raises(RedirectError) as caught:
            [r async for r in c.comment_many(make_leads(250))]
    assert caught.value.location == COMMENT_PATH
    assert len(api.posts) == 1


async def test_a_redirect_without_location_still_raises() -> None:
    async def bare(request: web.Request, server: Server) -> web.Response:
        return web.Response(status=302)

    async with serve(bare) as api, client(api.url) as c:
        with pytest.raises(RedirectError, match=r"302.*no Location"):
            await c.comment(make_leads(1))


# --------------------------------------------------------------------------- clear text


@pytest.mark.parametrize(
    "url", ["http://api.calltouch.ru", "http://10.0.0.7:8080", "http://127.0.0.1.example.com"]
)
def test_plain_http_to_another_host_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="allow_insecure_http") as caught:
        CalltouchClient(SITE_ID, TOKEN, base_url=url)
    assert TOKEN not in str(caught.value)


def test_plain_http_is_accepted_when_the_caller_takes_the_risk() -> None:
    # Built only: nothing is opened, so no connection or lookup is attempted.
    c = CalltouchClient(SITE_ID, TOKEN, base_url="http://proxy.internal", allow_insecure_http=True)
    assert "proxy.internal" in repr(c) and TOKEN not in repr(c)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:1", "http://127.8.9.10", "http://[::1]:8080", "http://localhost:80",
     "https://api.calltouch.ru"],
)
def test_loopback_and_https_need_no_opt_in(url: str) -> None:
    CalltouchClient(SITE_ID, TOKEN, base_url=url)


def test_a_subdomain_of_localhost_is_not_taken_for_loopback() -> None:
    # glibc resolves "api.localhost" through DNS (search domains included): it may be anywhere.
    with pytest.raises(ValueError, match="allow_insecure_http"):
        CalltouchClient(SITE_ID, TOKEN, base_url="http://api.localhost")


@pytest.mark.parametrize(
    "url", ["ftp://api.calltouch.ru", "https://", "api.calltouch.ru", "https://u:p@api.calltouch.ru"]
)
def test_a_base_url_that_is_not_an_https_origin_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        CalltouchClient(SITE_ID, TOKEN, base_url=url)


# --------------------------------------------------------------------------- size caps


def padded_success(leads: int, size: int) -> bytes:
    """A valid answer for ``leads`` leads, padded with whitespace to ``size`` bytes."""
    body = json.dumps(results_body(leads)).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


async def test_an_answer_over_the_cap_is_not_read_and_its_leads_are_unknown() -> None:
    body = padded_success(3, MAX_ANSWER_BYTES + 1)

    async def flood(request: web.Request, server: Server) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async with serve(flood) as api, client(api.url) as c:
        results = await c.comment(make_leads(3))
    assert [r.status for r in results] == [S.UNKNOWN] * 3
    assert f"over {MAX_ANSWER_BYTES} bytes" in (results[0].error or "")
    assert len(api.posts) == 1  # unknown is never re-sent


async def test_the_cap_counts_decompressed_bytes() -> None:
    body = gzip.compress(padded_success(2, 4 * MAX_ANSWER_BYTES))  # ~4 KB on the wire

    async def bomb(request: web.Request, server: Server) -> web.Response:
        return web.Response(
            body=body, content_type="application/json", headers={"Content-Encoding": "gzip"}
        )

    async with serve(bomb) as api, client(api.url) as c:
        results = await c.comment(make_leads(2))
    assert len(body) < MAX_ANSWER_BYTES // 100
    assert [r.status for r in results] == [S.UNKNOWN] * 2


async def test_an_answer_just_under_the_cap_is_read() -> None:
    body = padded_success(2, MAX_ANSWER_BYTES)

    async def large(request: web.Request, server: Server) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async with serve(large) as api, client(api.url) as c:
        results = await c.comment(make_leads(2))
    assert [r.status for r in results] == [S.COMMENTED] * 2


# --------------------------------------------------------------------------- strict answers


@pytest.mark.parametrize(
    "entry",
    [{}, {"callInfo": {"callId": 1, "callReferenceId": None, "sipCallId": None}, "error": None}],
    ids=["empty", "call-info-only"],
)
async def test_a_result_without_commented_is_unknown_not_not_commented(
    entry: dict[str, Any],
) -> None:
    async def silent(request: web.Request, server: Server) -> web.Response:
        return web.json_response({"meta": [], "data": {"comments": [entry, entry]}})

    async with serve(silent) as api, client(api.url) as c:
        results = await c.comment(make_leads(2))
    assert [r.status for r in results] == [S.UNKNOWN] * 2
    assert "commented" in (results[0].error or "")


@pytest.mark.parametrize("code", [500, "503", 599])
async def test_a_server_error_code_in_a_200_is_unknown(code: int | str) -> None:
    async def api_error(request: web.Request, server: Server) -> web.Response:
        error = {"errorCode": code, "errorMessage": "internal error"}
        return web.json_response({"meta": [], "data": {"type": "apiError", "apiErrorData": error}})

    async with serve(api_error) as api, client(api.url) as c:
        results = await c.comment(make_leads(2))
    assert [r.status for r in results] == [S.UNKNOWN] * 2  # part of it may have run
    assert len(api.posts) == 1


async def test_a_client_error_code_in_a_200_is_still_failed() -> None:
    async def api_error(request: web.Request, server: Server) -> web.Response:
        error = {"errorCode": 400, "errorMessage": "bad request"}
        return web.json_response({"meta": [], "data": {"type": "apiError", "apiErrorData": error}})

    async with serve(api_error) as api, client(api.url) as c:
        results = await c.comment(make_leads(1))
    assert [r.status for r in results] == [S.FAILED]


# --------------------------------------------------------------------------- injected sessions


def hostile_session(**options: Any) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(trace_configs=[SendTimeTrace()], **options)


async def test_a_session_raising_for_status_still_gets_auth_error() -> None:
    async def refuse(request: web.Request, server: Server) -> web.Response:
        return web.json_response({"meta": [], "data": {"type": "apiError"}}, status=401)

    async with serve(refuse) as api, hostile_session(raise_for_status=True) as session:
        async with client(api.url, session=session) as c:
            with pytest.raises(AuthError):
                await c.comment(make_leads(1))


async def test_a_session_raising_for_status_still_retries_a_429() -> None:
    async def limit_first(request: web.Request, server: Server) -> web.Response:
        if len(server.posts) == 1:
            return web.json_response({"meta": [], "data": {}}, status=429)
        return await apply_all(request, server)

    async with serve(limit_first) as api, hostile_session(raise_for_status=True) as session:
        async with client(api.url, session=session) as c:
            results = await c.comment(make_leads(2))
    assert [r.status for r in results] == [S.COMMENTED] * 2
    assert len(api.posts) == 2


async def test_a_session_raising_for_status_still_isolates_violations() -> None:
    async def reject_second(request: web.Request, server: Server) -> web.Response:
        if server.requests[-1].leads() == 3:
            violation = {"fieldPath": "comments[1].addComment", "message": "too long"}
            data = {"type": "validationError", "apiErrorData": None,
                    "validationErrorData": {"violations": [violation]}}
            return web.json_response({"meta": [], "data": data}, status=400)
        return await apply_all(request, server)

    async with serve(reject_second) as api, hostile_session(raise_for_status=True) as session:
        async with client(api.url, session=session) as c:
            results = await c.comment(make_leads(3))
    assert [r.status for r in results] == [S.COMMENTED, S.REJECTED, S.COMMENTED]


async def test_a_session_middleware_cannot_resend_a_post() -> None:
    async def resend_on_error(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        response = await handler(request)
        if response.status >= 500:
            response = await handler(request)  # a "helpful" retry middleware
        return response

    async def fail(request: web.Request, server: Server) -> web.Response:
        return web.Response(status=502)

    async with serve(fail) as api, hostile_session(middlewares=(resend_on_error,)) as session:
        async with client(api.url, session=session) as c:
            results = await c.comment(make_leads(1))
    assert [r.status for r in results] == [S.UNKNOWN]
    assert len(api.posts) == 1


async def test_a_session_that_does_not_decompress_still_reads_the_answer() -> None:
    async def gzipped(request: web.Request, server: Server) -> web.Response:
        body = gzip.compress(json.dumps(results_body(server.requests[-1].leads())).encode())
        return web.Response(
            body=body, content_type="application/json", headers={"Content-Encoding": "gzip"}
        )

    async with serve(gzipped) as api, hostile_session(auto_decompress=False) as session:
        async with client(api.url, session=session) as c:
            results = await c.comment(make_leads(2))
    assert [r.status for r in results] == [S.COMMENTED] * 2


async def test_a_session_with_tiny_header_limits_still_reads_the_answer() -> None:
    async with serve(apply_all) as api, hostile_session(
        max_line_size=8, max_field_size=8
    ) as session, client(api.url, session=session) as c:
        results = await c.comment(make_leads(2))
    assert [r.status for r in results] == [S.COMMENTED] * 2


async def test_a_redirect_reaches_every_waiting_submit() -> None:
    async def moved(request: web.Request, server: Server) -> web.Response:
        return web.Response(status=308, headers={"Location": "https://elsewhere.example/"})

    async with serve(moved) as api, client(api.url, linger=0.01) as c:
        calls = [c.submit(lead) for lead in make_leads(3)]
        raised = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(e, RedirectError) for e in raised), raised
    assert len(api.posts) == 1


@pytest.mark.parametrize("violations", [[], [{"fieldPath": "comments[0]", "message": "bad"}]])
async def test_a_validation_error_beside_per_lead_results_is_never_resent(
    violations: list[dict[str, str]],
) -> None:
    # Results say the leads were commented, the type says nothing ran: a re-send of what may
    # have run would apply it again (halving used to send each lead three times).
    async def contradict(request: web.Request, server: Server) -> web.Response:
        body = results_body(server.posts[-1].leads(), commented=True)
        body["data"] |= {"type": "validationError",
                         "validationErrorData": {"violations": violations}}
        return web.json_response(body)

    async with serve(contradict) as api, client(api.url) as c:
        results = await c.comment(make_leads(4))
        stats = c.stats()
    assert len(api.posts) == 1
    assert [r.status for r in results] == [S.UNKNOWN] * 4
    assert all(r.error and "may have run" in r.error for r in results)
    assert stats.answers.lost == 1


async def test_a_validation_error_beside_results_all_uncommented_is_a_validation_error() -> None:
    # Both say nothing was applied: halving and re-sending is safe, as for any violation.
    async def agree(request: web.Request, server: Server) -> web.Response:
        body = results_body(server.posts[-1].leads(), commented=False, error="bad")
        body["data"] |= {"type": "validationError"}
        return web.json_response(body)

    async with serve(agree) as api, client(api.url) as c:
        results = await c.comment(make_leads(2))
    assert [r.status for r in results] == [S.REJECTED] * 2
    assert len(api.posts) == 3  # the pair, then each lead alone
