"""The client's lifecycle: graceful close of every face, one event loop, entering once."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

import calltouch_async
from calltouch_async import (
    CallMatch,
    CalltouchClient,
    ClientClosedError,
    CommentStatus,
    LeadComment,
    WrongEventLoopError,
)
from calltouch_async.testing import CalltouchEmulator
from conftest import SITE_ID, TOKEN, EmulatorFactory, client_for, make_leads

S = CommentStatus


async def until(condition: Callable[[], bool], cap: float = 10.0) -> None:
    """Wait for ``condition`` (polled), failing after ``cap`` seconds."""
    deadline = time.monotonic() + cap
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


@pytest.mark.parametrize(
    ("flush_timeout", "answered"), [(10.0, S.COMMENTED), (0.05, S.UNKNOWN)]
)
async def test_aclose_mid_stream_is_honest_about_every_lead(
    emulator: EmulatorFactory, flush_timeout: float, answered: CommentStatus
) -> None:
    leads = make_leads(1000)
    results = []
    async with emulator(calls=1000, latency=0.4, rate_limit=None) as emu:
        client = client_for(emu, max_in_flight=3, flush_timeout=flush_timeout)
        async with client:

            async def consume() -> None:
                async for r in client.comment_many(leads):
                    results.append(r)

            task = asyncio.create_task(consume())
            await until(lambda: len(emu.ledger.requests) == 3)  # the window is full
            await client.aclose()
            with pytest.raises(ClientClosedError, match="input"):  # input was left unread
                await task
        applied = emu.ledger.text_counts()
        received = sum(rec.lead_count for rec in emu.ledger.requests)
    statuses = Counter(r.status for r in results)
    assert statuses[answered] == 300  # the three requests written: their real answer, or unknown
    assert statuses[S.FAILED] >= 1  # read, never written
    assert set(statuses) == {answered, S.FAILED}
    assert len({r.index for r in results}) == len(results)  # one result per lead
    for r in results:
        if r.lead.comment in applied:
            assert r.status in (S.COMMENTED, S.NOT_COMMENTED, S.UNKNOWN)
        if r.status is S.FAILED:
            assert r.error == "not sent: the client closed"
            assert r.lead.comment not in applied
    # Every lead the server received has a status that says it may have run.
    assert received == statuses[answered]
    assert all(count == 1 for count in applied.values())


async def test_aclose_past_flush_timeout_leaves_a_comment_call_unknown(
    emulator: EmulatorFactory,
) -> None:
    async with emulator(calls=10, latency=2.0) as emu:
        client = client_for(emu, flush_timeout=0.1)
        async with client:
            call = asyncio.create_task(client.comment(make_leads(3)))
            await until(lambda: len(emu.ledger.requests) == 1)
            await client.aclose()
            results = await call  # all its leads were read: results, not an error
    assert [r.status for r in results] == [S.UNKNOWN] * 3
    assert "may or may not" in (results[0].error or "")


async def test_aclose_flush_timeout_can_be_given_per_call(emulator: EmulatorFactory) -> None:
    async with emulator(calls=10, latency=2.0) as emu:
        client = client_for(emu)  # 30 s by default
        async with client:
            call = asyncio.create_task(client.comment(make_leads(2)))
            await until(lambda: len(emu.ledger.requests) == 1)
            await client.aclose(flush_timeout=0.1)
            assert {r.status for r in await call} == {S.UNKNOWN}


async def test_entering_twice_is_refused(emulator: EmulatorFactory) -> None:
    async with emulator() as emu:
        client = client_for(emu)
        async with client:
            with pytest.raises(RuntimeError, match="already open"):
                async with client:
                    pass
            assert not client.closed  # the refused entry closed nothing
            assert (await client.comment(make_leads(1)))[0].status is S.COMMENTED
        with pytest.raises(ClientClosedError, match="closed"):
            async with client:
                pass


async def test_unset_is_msgspecs(emulator: EmulatorFactory) -> None:
    lead = LeadComment([CallMatch(1, tags=calltouch_async.UNSET)], "no tags")
    async with emulator() as emu, client_for(emu) as client:
        [result] = await client.comment([lead])
    assert result.status is S.COMMENTED
    assert CalltouchClient(SITE_ID, TOKEN, rate_limiter=calltouch_async.UNSET)  # the default


async def test_a_slow_async_source_gets_its_results_after_linger(
    emulator: EmulatorFactory,
) -> None:
    queue: asyncio.Queue[LeadComment] = asyncio.Queue()
    for lead in make_leads(3):
        queue.put_nowait(lead)

    async def from_queue() -> AsyncIterator[LeadComment]:
        while True:  # a consumer's queue: it never ends
            yield await queue.get()

    async with emulator(calls=10) as emu, client_for(emu) as client:
        stream = client.comment_many(from_queue(), linger=0.05)
        async with contextlib.aclosing(stream):
            results = [await asyncio.wait_for(anext(stream), 10) for _ in range(3)]
    assert [r.status for r in results] == [S.COMMENTED] * 3
    assert [rec.lead_count for rec in emu.ledger.requests] == [3]


async def test_invalid_leads_do_not_hold_back_a_lingering_lead(emulator: EmulatorFactory) -> None:
    # The idle linger counts from the last lead taken into the request: invalid leads coming
    # faster than linger must not keep a valid one waiting for the source to pause.
    source_done = asyncio.Event()

    async def valid_then_invalid() -> AsyncIterator[LeadComment]:
        yield make_leads(1)[0]
        for _ in range(150):  # 3 s of invalid leads, one each 20 ms (linger is 0.1 s)
            await asyncio.sleep(0.02)
            yield LeadComment([CallMatch(1)], "")
        source_done.set()

    async with emulator(calls=10) as emu, client_for(emu) as client:
        stream = client.comment_many(valid_then_invalid(), linger=0.1)
        async with contextlib.aclosing(stream):
            async for result in stream:
                if result.status is S.COMMENTED:
                    break
    assert not source_done.is_set()  # sent while invalid leads were still coming
    assert [rec.lead_count for rec in emu.ledger.requests] == [1]


# ---------------------------------------------------------------------- other event loops


@contextlib.contextmanager
def emulator_in_a_thread() -> Iterator[CalltouchEmulator]:
    """An emulator serving from its own thread and loop, so it outlives the test's loops."""
    ready = threading.Event()
    box: dict[str, object] = {}

    async def serve() -> None:
        async with CalltouchEmulator(site_id=SITE_ID, access_token=TOKEN) as emu:
            emu.generate(calls=10, requests=10)
            stop = asyncio.Event()
            box.update(emu=emu, stop=stop, loop=asyncio.get_running_loop())
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    assert ready.wait(10)
    try:
        emu = box["emu"]
        assert isinstance(emu, CalltouchEmulator)
        yield emu
    finally:
        loop, stop = box["loop"], box["stop"]
        assert isinstance(loop, asyncio.AbstractEventLoop) and isinstance(stop, asyncio.Event)
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


def test_a_second_event_loop_is_refused_before_anything_is_sent() -> None:
    # A module-level client used by two asyncio.run() calls, as Celery tasks do.
    with emulator_in_a_thread() as emu:
        client = CalltouchClient(SITE_ID, TOKEN, base_url=emu.base_url, rate_limiter=None)
        first_loop = asyncio.new_event_loop()
        try:
            [first] = first_loop.run_until_complete(client.comment(make_leads(1)))
            assert first.status is S.COMMENTED

            async def second_run() -> None:
                lead = make_leads(1, prefix="second", first_id=2)[0]
                with pytest.raises(WrongEventLoopError, match=r"asyncio\.run\(\)"):
                    await client.comment([lead])
                with pytest.raises(WrongEventLoopError):
                    await anext(client.comment_many([lead]))
                with pytest.raises(WrongEventLoopError):
                    await client.submit(lead)

            asyncio.run(second_run())
            first_loop.run_until_complete(client.aclose())  # closed on its own loop
        finally:
            first_loop.close()
        assert [rec.lead_count for rec in emu.ledger.requests] == [1]  # the second sent nothing


async def test_another_thread_is_refused_before_anything_is_sent(
    emulator: EmulatorFactory,
) -> None:
    async with emulator(calls=10) as emu, client_for(emu) as client:
        await client.comment(make_leads(1))

        def in_a_thread() -> BaseException | None:
            try:
                asyncio.run(client.comment(make_leads(1, prefix="thread", first_id=2)))
            except BaseException as exc:  # returned to the test
                return exc
            return None

        error = await asyncio.to_thread(in_a_thread)
        assert isinstance(error, WrongEventLoopError)
        assert len(emu.ledger.requests) == 1
        assert (await client.comment(make_leads(1, prefix="again")))[0].status is S.COMMENTED


async def test_one_state_one_message_each(emulator: EmulatorFactory) -> None:
    async with emulator(calls=10, latency=0.5) as emu:
        client = client_for(emu)
        assert "state=open" in repr(client)
        call = asyncio.create_task(client.comment(make_leads(1)))
        await until(lambda: len(emu.ledger.requests) == 1)
        closing = asyncio.create_task(client.aclose())
        await until(lambda: "state=closing" in repr(client))
        assert client.closed
        with pytest.raises(ClientClosedError, match="closing"):
            await client.comment(make_leads(1, prefix="late"))
        await closing
        assert "state=closed" in repr(client)
        with pytest.raises(ClientClosedError, match="closed; create a new one"):
            await client.submit(make_leads(1)[0])
        assert (await call)[0].status is S.COMMENTED  # written before the close: answered
