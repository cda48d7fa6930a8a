"""submit(): single leads from many coroutines coalesced into shared requests."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from calltouch_async import (
    AuthError,
    CallMatch,
    ClientClosedError,
    CommentResult,
    CommentStatus,
    LeadComment,
)
from calltouch_async.testing import Fault
from helpers import EmulatorFactory, client_for, make_leads, until

OK = CommentStatus.COMMENTED


async def test_concurrent_submits_share_full_requests(emulator: EmulatorFactory) -> None:
    leads = make_leads(250)
    async with emulator(calls=250) as emu, client_for(emu, linger=0.05) as client:
        results = await asyncio.gather(*(client.submit(lead) for lead in leads))
    assert [r.lead for r in results] == leads  # each caller got its own lead's result
    assert Counter(r.status for r in results) == {OK: 250}
    assert sorted(rec.lead_count for rec in emu.ledger.requests) == [50, 100, 100]
    assert set(emu.ledger.text_counts().values()) == {1}


async def test_linger_flushes_a_partial_batch(emulator: EmulatorFactory) -> None:
    async with emulator(calls=10) as emu, client_for(emu, linger=0.05) as client:
        results = await asyncio.gather(*(client.submit(lead) for lead in make_leads(3)))
    assert [r.status for r in results] == [OK] * 3
    assert [rec.lead_count for rec in emu.ledger.requests] == [3]


async def test_invalid_and_not_found_leads_get_their_own_results(
    emulator: EmulatorFactory,
) -> None:
    async with emulator(calls=10) as emu, client_for(emu) as client:
        good, bad, missing = await asyncio.gather(
            client.submit(LeadComment([CallMatch(1)], "good")),
            client.submit(LeadComment([CallMatch(1)], "")),
            client.submit(LeadComment([CallMatch(555_555)], "missing")),
        )
    assert (good.status, bad.status, missing.status) == (
        OK, CommentStatus.INVALID, CommentStatus.NOT_COMMENTED,
    )
    assert (bad.error or "").startswith("addComment: ")  # relative to the lead: no position
    assert {good.index, bad.index, missing.index} == {0}
    assert [rec.lead_count for rec in emu.ledger.requests] == [2]


async def test_auth_error_reaches_every_waiting_caller(emulator: EmulatorFactory) -> None:
    async with emulator(calls=10) as emu:
        emu.inject(Fault.AUTH_FAILURE, on_requests=[1])
        async with client_for(emu) as client:
            outcomes = await asyncio.gather(
                *(client.submit(lead) for lead in make_leads(5)), return_exceptions=True
            )
            assert all(isinstance(o, AuthError) for o in outcomes)
            with pytest.raises(AuthError):  # and to later callers: the credentials are bad
                await client.submit(make_leads(1)[0])
    assert emu.ledger.applied == []


async def test_a_caller_cancelled_before_sending_takes_its_lead_out(
    emulator: EmulatorFactory,
) -> None:
    leads = make_leads(3)
    async with emulator(calls=10) as emu, client_for(emu, linger=0.2) as client:
        tasks = [asyncio.create_task(client.submit(lead)) for lead in leads]
        await asyncio.sleep(0.05)  # all three wait in the batch; linger has not passed
        tasks[1].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[1], asyncio.CancelledError)
    assert emu.ledger.text_counts() == {leads[0].comment: 1, leads[2].comment: 1}
    assert [rec.lead_count for rec in emu.ledger.requests] == [2]


async def test_a_caller_cancelled_after_sending_is_not_resent(emulator: EmulatorFactory) -> None:
    lead = make_leads(1)[0]
    async with emulator(calls=10, latency=0.3) as emu, client_for(emu, linger=0.01) as client:
        task = asyncio.create_task(client.submit(lead))
        await until(lambda: emu.ledger.requests)  # sent; the answer takes 0.3 s
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.submit(make_leads(1, prefix="later", first_id=2)[0])
    assert emu.ledger.text_counts()[lead.comment] == 1
    assert len(emu.ledger.requests) == 2


async def test_backpressure_bounds_pending_leads(emulator: EmulatorFactory) -> None:
    seen_sizes: list[int] = []
    async with emulator(calls=100, latency=0.1) as emu:
        async with client_for(emu, max_pending=10, max_in_flight=1, linger=0.01) as client:
            results = await asyncio.gather(*(client.submit(lead) for lead in make_leads(35)))
            seen_sizes = [rec.lead_count for rec in emu.ledger.requests]
    assert Counter(r.status for r in results) == {OK: 35}
    assert max(seen_sizes) <= 10  # never more than max_pending leads were waiting at once


async def test_close_flushes_what_is_pending(emulator: EmulatorFactory) -> None:
    leads = make_leads(7)
    async with emulator(calls=10) as emu:
        client = client_for(emu, linger=10.0)  # would wait 10 s without the flush
        async with client:
            tasks = [asyncio.create_task(client.submit(lead)) for lead in leads]
            await asyncio.sleep(0.05)
        results = await asyncio.gather(*tasks)
    assert [r.status for r in results] == [OK] * 7
    assert [rec.lead_count for rec in emu.ledger.requests] == [7]


async def test_close_reports_what_could_not_be_sent(emulator: EmulatorFactory) -> None:
    async with emulator(calls=10, latency=2.0) as emu:
        client = client_for(emu, linger=0.01, flush_timeout=0.3)
        async with client:
            tasks = [asyncio.create_task(client.submit(lead)) for lead in make_leads(4)]
            # Sent; the answer takes 2 s, longer than the flush allows.
            await until(lambda: emu.ledger.requests)
        results = await asyncio.gather(*tasks)
    assert {r.status for r in results} == {CommentStatus.UNKNOWN}
    assert "unanswered when sending stopped" in (results[0].error or "")


async def test_callers_waiting_for_room_get_auth_error_too(emulator: EmulatorFactory) -> None:
    async with emulator(calls=10) as emu:
        emu.inject(Fault.AUTH_FAILURE, on_requests=[1])
        async with client_for(emu, max_pending=1, linger=0.01) as client:
            outcomes = await asyncio.gather(
                *(client.submit(lead) for lead in make_leads(3)), return_exceptions=True
            )
    assert [type(o) for o in outcomes] == [AuthError] * 3
    assert len(emu.ledger.requests) == 1


async def test_callers_waiting_for_room_at_close_are_told_it_closed(
    emulator: EmulatorFactory,
) -> None:
    async with emulator(calls=10, latency=0.3) as emu:
        client = client_for(emu, max_pending=1, linger=0.01)
        async with client:
            tasks = [asyncio.create_task(client.submit(lead)) for lead in make_leads(3)]
            await until(lambda: emu.ledger.requests)  # the first is sent; the others wait
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        with pytest.raises(ClientClosedError):
            await client.submit(make_leads(1)[0])
    first, *rest = outcomes
    assert isinstance(first, CommentResult) and first.status is OK
    assert all(isinstance(o, ClientClosedError) for o in rest)
    assert emu.ledger.text_counts() == {"lead-0": 1}


async def test_callers_cancelled_while_waiting_for_room_keep_no_slot(
    emulator: EmulatorFactory,
) -> None:
    # max_pending is a counter handed from caller to caller: callers cancelled in line must
    # leave it, or the slot is handed to nobody and later callers hang.
    first, *others = make_leads(6)
    async with emulator(calls=10, latency=0.2) as emu:
        async with client_for(emu, max_pending=1, linger=0.01) as client:
            sending = asyncio.create_task(client.submit(first))
            await until(lambda: client._coalescer is not None)
            coalescer = client._coalescer
            assert coalescer is not None
            waiting = [asyncio.create_task(client.submit(lead)) for lead in others]
            await until(lambda: len(coalescer._room_waiters) == len(others))
            for task in waiting[:2]:
                task.cancel()
            results = await asyncio.wait_for(asyncio.gather(sending, *waiting[2:]), 30)
            for task in waiting[:2]:
                with pytest.raises(asyncio.CancelledError):
                    await task
            assert coalescer._pending == 0 and not coalescer._room_waiters
    assert [r.status for r in results] == [OK] * 4
    assert sorted(emu.ledger.text_counts()) == sorted(
        lead.comment for lead in [first, *others[2:]]
    )


@pytest.mark.parametrize("sent", [False, True], ids=["before-sending", "after-sending"])
async def test_a_caller_cancelled_holding_a_slot_hands_it_on(
    emulator: EmulatorFactory, sent: bool
) -> None:
    # The slot is freed by whoever completes the lead's future: here the caller's own
    # cancellation, before the coalescer could. The caller in line must get it.
    first, second = make_leads(2)
    async with emulator(calls=10, latency=0.2) as emu:
        # Before sending: a linger no test run outlasts; closing the client sends what waits.
        async with client_for(emu, max_pending=1, linger=0.01 if sent else 60) as client:
            holder = asyncio.create_task(client.submit(first))
            await until(lambda: client._coalescer is not None)
            coalescer = client._coalescer
            assert coalescer is not None
            if sent:
                await until(lambda: emu.ledger.requests)  # on the wire, answer pending
            waiting = asyncio.create_task(client.submit(second))
            await until(lambda: len(coalescer._room_waiters) == 1)
            holder.cancel()
            with pytest.raises(asyncio.CancelledError):
                await holder
            await until(lambda: not coalescer._room_waiters)  # handed on
        result = await asyncio.wait_for(waiting, 30)
        assert coalescer._pending == 0 and not coalescer._room_waiters
    assert result.status is OK and result.index == 0
    expected = {first.comment: 1, second.comment: 1} if sent else {second.comment: 1}
    assert emu.ledger.text_counts() == expected
