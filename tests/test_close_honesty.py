"""Honest results at the edges a hostile review found: a fatal answer in the middle of a stream,
a close that lands between a chunk's launch and its first step, a spent budget with a slow
source, and submit() leads pending when the client closes.

Each test checks the results against the emulator's ledger: a lead the server applied is never
`failed` or without a result; a `failed` lead was never applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import traceback
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from calltouch_async import (
    AuthError,
    CalltouchClient,
    ClientClosedError,
    CommentResult,
    CommentStatus,
    DailyBudgetExhaustedError,
    LeadComment,
    RedirectError,
    RetryPolicy,
)
from calltouch_async._token import Scrubber
from calltouch_async.testing import CalltouchEmulator, Fault
from helpers import SITE_ID, TOKEN, EmulatorFactory, client_for, make_leads, until

S = CommentStatus
MAYBE_APPLIED = {S.COMMENTED, S.NOT_COMMENTED, S.UNKNOWN}


def check_against_ledger(results: list[CommentResult], applied: set[str]) -> None:
    by_text = {r.lead.comment: r for r in results}
    assert len(by_text) == len(results), "a lead got two results"
    for text in applied:
        assert text in by_text, f"{text} was applied but got no result"
        assert by_text[text].status in MAYBE_APPLIED, by_text[text]
    for result in results:
        if result.status is S.FAILED:
            assert result.lead.comment not in applied, result


async def close_after(emu: CalltouchEmulator, turns: int) -> tuple[int, int]:
    """Stream 300 leads from an async source and close the client ``turns`` loop turns in;
    return (leads taken from the source, results received)."""
    read = 0

    async def source() -> AsyncIterator[LeadComment]:
        nonlocal read
        for lead in make_leads(300, prefix=f"k{turns}"):
            await asyncio.sleep(0)
            read += 1
            yield lead

    client = client_for(emu, rate_limiter=None)
    results: list[CommentResult] = []

    async def consume() -> None:
        with contextlib.suppress(ClientClosedError):  # input left unread: expected
            async for result in client.comment_many(source(), linger=None):
                results.append(result)

    async def close() -> None:
        for _ in range(turns):
            await asyncio.sleep(0)
        await client.aclose(flush_timeout=2)

    await asyncio.gather(consume(), close())
    return read, len(results)


async def test_a_close_in_any_loop_turn_leaves_no_lead_read_without_a_result(
    emulator: EmulatorFactory,
) -> None:
    # The close lands in every loop turn around the first chunk's launch, including the turn
    # between the chunk's task being created and its first step.
    async with emulator(300, rate_limit=None, latency=0.01) as emu:
        for turns in range(90, 112):
            read, answered = await close_after(emu, turns)
            assert answered == read, f"closed after {turns} turns: {read} read, {answered} results"


async def test_a_spent_budget_stops_reading_a_slow_async_source(
    emulator: EmulatorFactory,
) -> None:
    taken = 0

    async def slow_source() -> AsyncIterator[LeadComment]:
        nonlocal taken
        for lead in make_leads(15):
            taken += 1
            yield lead
            await asyncio.sleep(0.1)  # slower than the linger: every lead its own request

    async with emulator(100, rate_limit=None) as emu:
        results: list[CommentResult] = []
        async with client_for(emu, rate_limiter=None, daily_request_budget=2) as client:
            with pytest.raises(DailyBudgetExhaustedError):
                async for result in client.comment_many(slow_source(), linger=0.02):
                    results.append(result)
        assert len(emu.ledger.requests) == 2
    assert taken <= 4, f"{taken} leads taken from the source after the budget was spent"
    assert len(results) == taken
    assert [r.status for r in results].count(S.COMMENTED) == 2


async def test_submit_leads_pending_at_close_are_still_sent(emulator: EmulatorFactory) -> None:
    async with emulator(300, rate_limit=None, latency=0.05) as emu:
        client = client_for(emu, rate_limiter=None)
        async with client:
            calls = [asyncio.create_task(client.submit(lead)) for lead in make_leads(300)]
            await asyncio.sleep(0)  # the callers have queued their leads
            await client.aclose(flush_timeout=5.0)
            results = await asyncio.gather(*calls)
        await until(lambda: len(emu.ledger.requests) == 3)
    assert [r.status for r in results] == [S.COMMENTED] * 300
    assert len(emu.ledger.text_counts()) == 300


@pytest.mark.parametrize("ordered", [False, True])
async def test_an_auth_error_mid_stream_lets_requests_already_written_answer(
    emulator: EmulatorFactory, ordered: bool
) -> None:
    # Requests 1-3 and 5 run and then answer late; request 4 is refused at once. The leads of
    # the requests that ran must be reported as they ended, not dropped or called failed,
    # in input order too (what waits behind the refused request's hole still comes out).
    async with emulator(600, rate_limit=None) as emu:
        emu.inject(Fault.SLOW, on_requests=[1, 2, 3, 5], delay=1.0)
        emu.inject(Fault.AUTH_FAILURE, on_requests=[4])
        results: list[CommentResult] = []
        async with client_for(emu, rate_limiter=None, max_in_flight=5) as client:
            with pytest.raises(AuthError):
                async for result in client.comment_many(make_leads(500), ordered=ordered):
                    results.append(result)
        applied = set(emu.ledger.text_counts())
    assert len(applied) == 400
    check_against_ledger(results, applied)
    assert {r.status for r in results} == {S.COMMENTED}
    assert len(results) == 400  # the refused request's 100 leads: raised, not reported
    if ordered:
        assert [r.index for r in results] == sorted(r.index for r in results)


@pytest.mark.parametrize("fatal", [Fault.AUTH_FAILURE, "redirect"])
async def test_a_chunk_waiting_for_its_slot_when_a_fatal_answer_comes_ends_not_sent(
    emulator: EmulatorFactory, fatal: object
) -> None:
    async with emulator(300, rate_limit=None) as emu:
        if fatal == "redirect":
            api = await serve_redirects()
            base_url = api[1]
        else:
            emu.inject(Fault.AUTH_FAILURE, on_requests=[1])
            api, base_url = None, emu.base_url
        results: list[CommentResult] = []
        try:
            async with CalltouchClient(
                SITE_ID, TOKEN, base_url=base_url, rate_limiter=None, max_in_flight=1
            ) as client:
                with pytest.raises((AuthError, RedirectError)):
                    async for result in client.comment_many(make_leads(200)):
                        results.append(result)
        finally:
            if api is not None:
                await api[0].cleanup()
    # The first chunk got the fatal answer (no result); the second was never written.
    assert [r.status for r in results] == [S.FAILED] * 100
    assert all((r.error or "").startswith("not sent: stopped after") for r in results)


async def serve_redirects() -> tuple[web.AppRunner, str]:
    async def redirect(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=307, headers={"Location": "http://127.0.0.1:9/elsewhere"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("how", ["cancel", "timeout"])
async def test_a_callers_own_cancellation_propagates_while_the_client_closes(
    emulator: EmulatorFactory, how: str
) -> None:
    async with emulator(10, rate_limit=None, latency=2.0) as emu:
        client = client_for(emu, rate_limiter=None)
        await client.__aenter__()

        async def handler() -> list[CommentResult]:
            if how == "timeout":
                async with asyncio.timeout(0.5):  # the caller's own deadline
                    return await client.comment(make_leads(1))
            return await client.comment(make_leads(1))

        call = asyncio.create_task(handler())
        await until(lambda: emu.ledger.requests)  # on the wire, answered in 2 s
        closing = asyncio.create_task(client.aclose(flush_timeout=5))
        await until(lambda: client.closed)
        if how == "cancel":
            call.cancel()
        with pytest.raises(asyncio.CancelledError if how == "cancel" else TimeoutError):
            await call
        await closing


async def test_every_submit_caller_after_an_auth_error_gets_its_own_exception(
    emulator: EmulatorFactory,
) -> None:
    async with emulator(10, rate_limit=None) as emu:
        emu.inject(Fault.AUTH_FAILURE, probability=1.0)
        async with client_for(emu, rate_limiter=None) as client:
            raised = []
            for lead in make_leads(50):
                with pytest.raises(AuthError) as caught:
                    await client.submit(lead)
                raised.append(caught.value)
    assert len({id(e) for e in raised}) == len(raised)
    depth = sum(1 for _ in traceback.walk_tb(raised[-1].__traceback__))
    assert depth < 30, f"the traceback grew to {depth} frames"


@pytest.mark.timeout(20)  # linear: well under a second; the quadratic scrub took minutes
def test_a_text_of_a_million_backslashes_is_scrubbed_in_linear_time() -> None:
    scrubber = Scrubber("Ab3/xY9+Qw==")
    assert scrubber.text("\\" * 1_000_000) == "\\" * 1_000_000
    assert scrubber.text("x Ab3\\\\\\/xY9+Qw== y") == "x *** y"


async def test_requests_in_stats_never_go_down() -> None:
    # No send-time trace on this session: an attempt counts as sent from its start, then
    # proves it never left (connection refused). The counter must not take that back.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    retry = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02)
    async with aiohttp.ClientSession() as session:
        client = CalltouchClient(
            SITE_ID, TOKEN, base_url=f"http://127.0.0.1:{port}", rate_limiter=None,
            session=session, retry=retry,
        )
        async with client:
            seen = [client.stats().requests]
            call = asyncio.create_task(client.comment(make_leads(1)))
            while not call.done():
                seen.append(client.stats().requests)
                await asyncio.sleep(0)
            [result] = await call
            stats = client.stats()
    assert result.status is S.FAILED
    assert seen == sorted(seen), seen
    assert stats.requests == 3 and stats.answers.not_written == 3 and stats.in_flight == 0
