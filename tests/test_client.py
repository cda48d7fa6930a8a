"""The core pipeline over real HTTP against the emulator: comment, comment_many, lifecycle."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from calltouch_async import (
    CallMatch,
    CalltouchClient,
    ClientClosedError,
    CommentStatus,
    LeadComment,
    RequestMatch,
)
from calltouch_async.testing import Fault
from helpers import SITE_ID, TOKEN, EmulatorFactory, client_for, make_leads

OK = CommentStatus.COMMENTED


async def test_comment_returns_one_result_per_lead_in_input_order(
    emulator: EmulatorFactory,
) -> None:
    async with emulator(calls=10) as emu, client_for(emu) as client:
        leads = [
            LeadComment([CallMatch(3)], "to call 3"),
            LeadComment([CallMatch(0)], "invalid id"),
            LeadComment([CallMatch(999_999)], "no such call"),
            LeadComment([RequestMatch(2)], "to request 2"),
        ]
        results = await client.comment(leads)
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert [r.status for r in results] == [
        OK, CommentStatus.INVALID, CommentStatus.NOT_COMMENTED, OK,
    ]
    assert results[0].call_info is not None and int(results[0].call_info.call_id or 0) == 3
    assert results[3].request_info is not None
    assert "callParams.callId" in (results[1].error or "")
    assert results[2].error
    assert len(emu.ledger.requests) == 1  # one request; the invalid lead never left
    assert emu.ledger.requests[0].lead_count == 3
    assert emu.ledger.comments_for("call", 3) == ["to call 3"]


async def test_comment_refuses_more_than_100_and_points_to_comment_many(
    emulator: EmulatorFactory,
) -> None:
    async with emulator() as emu, client_for(emu) as client:
        with pytest.raises(ValueError, match="comment_many"):
            await client.comment(make_leads(101))
        assert emu.ledger.requests == []


async def test_comment_many_maps_indexes_and_keeps_chunks_full(
    emulator: EmulatorFactory,
) -> None:
    leads = make_leads(450)
    for i in range(0, 450, 7):  # every 7th lead is invalid
        leads[i] = LeadComment([CallMatch(i + 1)], "   ")
    invalid = set(range(0, 450, 7))
    async with emulator(calls=450) as emu, client_for(emu, max_in_flight=3) as client:
        results = [r async for r in client.comment_many(leads)]
    assert sorted(r.index for r in results) == list(range(450))
    for r in results:
        assert r.lead is leads[r.index]
        assert r.status is (CommentStatus.INVALID if r.index in invalid else OK)
    valid = 450 - len(invalid)
    sizes = [rec.lead_count for rec in emu.ledger.requests]
    assert len(sizes) == math.ceil(valid / 100)
    assert sizes[:-1] == [100] * (len(sizes) - 1)  # invalid leads take no place in a chunk
    assert set(emu.ledger.text_counts().values()) == {1}
    assert len(emu.ledger.applied) == valid


async def test_ordered_yields_in_input_order(emulator: EmulatorFactory) -> None:
    leads = make_leads(350)
    leads[5] = LeadComment([], "no matching")
    async with (
        emulator(calls=350, latency=(0.0, 0.05)) as emu,
        client_for(emu, max_in_flight=4) as client,
    ):
        indexes = [r.index async for r in client.comment_many(leads, ordered=True)]
    assert indexes == list(range(350))


async def test_async_iterables_and_empty_input(emulator: EmulatorFactory) -> None:
    async def agen(n: int) -> AsyncIterator[LeadComment]:
        for lead in make_leads(n):
            yield lead

    async with emulator(calls=150) as emu, client_for(emu) as client:
        assert [r async for r in client.comment_many([])] == []
        assert [r async for r in client.comment_many(agen(0))] == []
        assert emu.ledger.requests == []
        results = [r async for r in client.comment_many(agen(150))]
    assert Counter(r.status for r in results) == {OK: 150}
    assert [rec.lead_count for rec in emu.ledger.requests] == [100, 50]


async def test_input_is_read_no_further_than_the_window_needs(
    emulator: EmulatorFactory,
) -> None:
    read = 0

    def counting(n: int) -> Iterator[LeadComment]:
        nonlocal read
        for lead in make_leads(n):
            read += 1
            yield lead

    max_in_flight = 2
    async with (
        emulator(calls=1000, latency=0.2) as emu,
        client_for(emu, max_in_flight=max_in_flight) as client,
    ):
        stream = client.comment_many(counting(100_000))
        first = await anext(stream)
        read_at_first_result = read
        await stream.aclose()
    assert first.status is OK
    # In flight: max_in_flight chunks; plus one chunk being filled, waiting for a slot.
    assert read_at_first_result <= (max_in_flight + 1) * 100 + 1


async def test_two_clients_share_the_default_limiter(emulator: EmulatorFactory) -> None:
    # The real default (5 per 1 s + margin) against the strict window: 8 requests in all.
    async with emulator(calls=800, rate_limit=5, rate_period=1.0) as emu:
        a = CalltouchClient(SITE_ID, TOKEN, base_url=emu.base_url)
        b = CalltouchClient(SITE_ID, TOKEN, base_url=emu.base_url)
        async with a, b:
            results = [r async for r in a.comment_many(make_leads(400, prefix="a"))]
            results += [r async for r in b.comment_many(make_leads(400, prefix="b", first_id=401))]
    assert Counter(r.status for r in results) == {OK: 800}
    assert emu.ledger.count("rate_limited") == 0
    assert emu.ledger.max_in_window(1.0) <= 5
    assert len(emu.ledger.requests) == 8


async def test_two_clients_running_at_once_never_exceed_the_window(
    emulator: EmulatorFactory,
) -> None:
    import asyncio

    async with emulator(calls=1200, rate_limit=5, rate_period=1.0) as emu:
        a = CalltouchClient(SITE_ID, TOKEN, base_url=emu.base_url, max_in_flight=6)
        b = CalltouchClient(SITE_ID, TOKEN, base_url=emu.base_url, max_in_flight=6)

        async def run(client: CalltouchClient, prefix: str, first: int) -> list[str]:
            leads = make_leads(600, prefix=prefix, first_id=first)
            return [r.status async for r in client.comment_many(leads)]

        async with a, b:
            statuses = await asyncio.gather(run(a, "a", 1), run(b, "b", 601))
    assert Counter(statuses[0] + statuses[1]) == {OK: 1200}
    assert emu.ledger.count("rate_limited") == 0
    assert emu.ledger.max_in_window(1.0) <= 5


async def test_429_is_retried_and_every_lead_commented_once(emulator: EmulatorFactory) -> None:
    async with emulator(calls=500, retry_after=0) as emu:
        emu.inject(Fault.RATE_LIMIT, on_requests=[1, 2, 4])
        async with client_for(emu) as client:
            results = [r async for r in client.comment_many(make_leads(300))]
    assert Counter(r.status for r in results) == {OK: 300}
    assert emu.ledger.status_counts()[429] == 3
    assert set(emu.ledger.text_counts().values()) == {1}
    assert len(emu.ledger.applied) == 300


async def test_closed_client_cannot_be_reused_and_repr_hides_the_token(
    emulator: EmulatorFactory,
) -> None:
    async with emulator() as emu:
        client = client_for(emu)
        assert TOKEN not in repr(client)
        async with client:
            await client.comment(make_leads(1))
        assert client.closed
        with pytest.raises(ClientClosedError):
            await client.comment(make_leads(1))
        with pytest.raises(ClientClosedError):
            client.comment_many(make_leads(1))
        await client.aclose()  # idempotent


async def test_an_injected_session_is_used_and_never_closed(emulator: EmulatorFactory) -> None:
    async with emulator() as emu, aiohttp.ClientSession() as session:
        async with client_for(emu, session=session) as client:
            results = await client.comment(make_leads(2))
        assert [r.status for r in results] == [OK, OK]
        assert not session.closed


def test_constructing_a_client_needs_no_running_loop() -> None:
    # No session, limiter or loop is created before the client is opened inside a loop.
    client = CalltouchClient(SITE_ID, TOKEN)
    assert not client.closed


@pytest.mark.parametrize("error", [ValueError("broken feed"), TimeoutError("feed timed out")])
async def test_an_input_error_is_raised_after_the_leads_read_before_it(
    emulator: EmulatorFactory, error: Exception
) -> None:
    async def failing_feed() -> AsyncIterator[LeadComment]:
        for lead in make_leads(150):
            yield lead
        raise error

    results = []
    async with emulator(calls=150) as emu, client_for(emu) as client:
        with pytest.raises(type(error)):
            async for r in client.comment_many(failing_feed()):
                results.append(r)
    assert sorted(r.index for r in results) == list(range(150))  # none of them lost
    assert len(emu.ledger.applied) == 150


async def test_a_stream_first_iterated_after_close_raises(emulator: EmulatorFactory) -> None:
    async with emulator() as emu:
        client = client_for(emu)
        async with client:
            stream = client.comment_many(make_leads(3))
        with pytest.raises(ClientClosedError):
            await anext(stream)
    assert emu.ledger.requests == []


def test_retry_unknown_belongs_to_the_retry_policy() -> None:
    from calltouch_async import RetryPolicy

    with pytest.raises(ValueError, match="RetryPolicy"):
        CalltouchClient(SITE_ID, TOKEN, retry=RetryPolicy(), retry_unknown=True)


@pytest.mark.parametrize(
    ("argument", "value"), [("max_in_flight", 0), ("timeout", 0), ("max_pending", 0)]
)
def test_a_bound_that_allows_nothing_is_refused_at_construction(argument: str, value: int) -> None:
    # max_pending=0 used to be accepted, and then every submit() waited for ever.
    with pytest.raises(ValueError, match=f"^{argument} must be"):
        CalltouchClient(SITE_ID, TOKEN, **{argument: value})  # type: ignore[arg-type]
