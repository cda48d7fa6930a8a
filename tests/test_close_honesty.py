"""Honest results at the edges a hostile review found: a fatal answer in the middle of a stream,
a close that lands between a chunk's launch and its first step, a spent budget with a slow
source, and submit() leads pending when the client closes.

Each test checks the results against the emulator's ledger: a lead the server applied is never
`failed` or without a result; a `failed` lead was never applied.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from calltouch_async import (
    AuthError,
    ClientClosedError,
    CommentResult,
    CommentStatus,
    DailyBudgetExhaustedError,
    LeadComment,
)
from calltouch_async.testing import CalltouchEmulator, Fault
from helpers import EmulatorFactory, client_for, make_leads, until

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


async def test_an_auth_error_mid_stream_lets_requests_already_written_answer(
    emulator: EmulatorFactory,
) -> None:
    # Requests 1-3 and 5 run and then answer late; request 4 is refused at once. The leads of
    # the requests that ran must be reported as they ended, not dropped or called failed.
    async with emulator(600, rate_limit=None) as emu:
        emu.inject(Fault.SLOW, on_requests=[1, 2, 3, 5], delay=1.0)
        emu.inject(Fault.AUTH_FAILURE, on_requests=[4])
        results: list[CommentResult] = []
        async with client_for(emu, rate_limiter=None, max_in_flight=5) as client:
            with pytest.raises(AuthError):
                async for result in client.comment_many(make_leads(500)):
                    results.append(result)
        applied = set(emu.ledger.text_counts())
    assert len(applied) == 400
    check_against_ledger(results, applied)
    assert {r.status for r in results} == {S.COMMENTED}
    assert len(results) == 400  # the refused request's 100 leads: raised, not reported


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
