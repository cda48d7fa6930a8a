"""The pipeline's pieces: retry decisions alone, the violation budget against a hostile
server, error paths relative to the lead, neutral texts in the lower layers."""

from __future__ import annotations

import inspect
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from hostile import Server, serve

from calltouch_async import (
    CalltouchClient,
    CommentStatus,
    LeadComment,
    Permit,
    RetryPolicy,
    SlidingWindowLimiter,
    _dispatch,
    _stream,
)
from calltouch_async._transport import Reply
from calltouch_async.testing import Fault
from conftest import SITE_ID, TOKEN, EmulatorFactory, client_for, make_leads

S = CommentStatus


# ---------------------------------------------------------------------- RetryPolicy alone


def test_should_retry_repeats_only_what_provably_did_not_run() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.should_retry(Reply.RATE_LIMITED, 1)
    assert policy.should_retry(Reply.NOT_SENT, 2)
    assert not policy.should_retry(Reply.RATE_LIMITED, 3)  # the last attempt
    for final in (Reply.OK, Reply.VIOLATIONS, Reply.AUTH, Reply.FAILED, Reply.UNKNOWN):
        assert not policy.should_retry(final, 1)
    assert RetryPolicy(retry_unknown=True).should_retry(Reply.UNKNOWN, 1)


def test_delay_honours_retry_after_up_to_the_cap_else_backs_off() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0, retry_after_cap=30.0)
    assert policy.delay(1, 2.0) == 2.0
    assert policy.delay(1, 3600.0) == 30.0
    assert 0.25 <= policy.delay(1) <= 0.5
    assert 4.0 <= policy.delay(9) <= 8.0


class NeverRetry(RetryPolicy):
    def should_retry(self, reply: Reply, attempt: int) -> bool:
        return False


async def test_the_dispatcher_asks_should_retry(emulator: EmulatorFactory) -> None:
    async with emulator(calls=10, retry_after=0) as emu:
        emu.inject(Fault.RATE_LIMIT, on_requests=[1])
        async with client_for(emu, retry=NeverRetry()) as client:
            results = await client.comment(make_leads(2))
    assert [r.status for r in results] == [S.FAILED] * 2  # a 429 not retried: not sent
    assert len(emu.ledger.requests) == 1


# ---------------------------------------------------------------------- violations


@asynccontextmanager
async def naming_server(
    name: Callable[[int], int | str | None],
) -> AsyncIterator[tuple[str, list[int]]]:
    """A server that answers a validation error naming lead ``name(n)`` of a request of
    ``n`` leads (``None``: names no lead; ``"ok"``: comments them all), and records each
    request's size."""
    sizes: list[int] = []

    async def handle(request: web.Request, server: Server) -> web.Response:
        comments = json.loads(await request.read())["comments"]
        sizes.append(len(comments))
        named = name(len(comments))
        if named == "ok":
            entry = {"callInfo": None, "requestInfo": None, "commented": True, "error": None}
            return web.json_response({"meta": [], "data": {"comments": [entry] * len(comments)}})
        path = "comments" if named is None else f"comments[{named}].addComment"
        body = {"meta": [], "data": {
            "type": "validationError", "apiErrorData": None,
            "validationErrorData": {"violations": [{"fieldPath": path, "message": "evil"}]}}}
        return web.json_response(body, status=400)

    async with serve(handle) as api:
        yield api.url, sizes


def client_at(url: str) -> CalltouchClient:
    return CalltouchClient(SITE_ID, TOKEN, base_url=url, rate_limiter=None)


async def test_one_named_lead_per_answer_costs_at_most_the_budget() -> None:
    async with naming_server(lambda n: n - 1) as (url, sizes), client_at(url) as client:
        results = [r async for r in client.comment_many(make_leads(100))]
    assert len(sizes) == 1 + 28  # 4 * ceil(log2(100)) extra requests, not 100
    statuses = Counter(r.status for r in results)
    assert statuses == {S.REJECTED: 29, S.FAILED: 71}
    failed = [r for r in results if r.status is S.FAILED]
    assert all("not isolated within 28 extra requests" in (r.error or "") for r in failed)
    # The named leads were the last of each request: 99, 98, ... 71.
    assert {r.index for r in results if r.status is S.REJECTED} == set(range(71, 100))


async def test_a_named_violation_path_is_relative_to_its_lead() -> None:
    async with naming_server(lambda n: 3 if n == 10 else None) as (url, sizes):
        async with client_at(url) as client:
            results = await client.comment(make_leads(10))
    rejected = results[3]
    assert rejected.status is S.REJECTED
    assert rejected.error == "addComment: evil"  # not comments[3].addComment
    assert sizes[:2] == [10, 9]  # then the rest, re-sent without it


async def test_a_request_halved_then_named_keeps_the_callers_index() -> None:
    # Unnamed first (halving), then each half names its own position 1.
    naming = {8: None, 4: 1}
    async with naming_server(lambda n: naming.get(n, "ok")) as (url, sizes):
        async with client_at(url) as client:
            results = await client.comment(make_leads(8))
    assert [r.index for r in results] == list(range(8))
    assert {r.index for r in results if r.status is S.REJECTED} == {1, 5}  # position 1 of each half
    assert all(r.error == "addComment: evil" for r in results if r.status is S.REJECTED)
    assert sizes == [8, 4, 3, 4, 3]


# ---------------------------------------------------------------------- layering


@pytest.mark.parametrize("module", [_stream, _dispatch])
def test_lower_layers_never_name_the_client(module: object) -> None:
    assert "CalltouchClient" not in inspect.getsource(module)  # type: ignore[arg-type]


async def test_a_plain_iterable_never_lingers(emulator: EmulatorFactory) -> None:
    # A list never waits for input: full chunks, whatever the linger.
    async with emulator(calls=250) as emu, client_for(emu) as client:
        results = [r async for r in client.comment_many(make_leads(250), linger=0.0)]
    assert len(results) == 250
    assert [rec.lead_count for rec in emu.ledger.requests] == [100, 100, 50]


class CountingLimiter(SlidingWindowLimiter):
    """Counts the permits asked for: a chunk's run asks as its request starts."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    async def acquire(self) -> Permit:
        self.asked += 1
        return await super().acquire()


async def test_a_slow_plain_iterable_does_not_hold_back_the_requests_it_filled(
    emulator: EmulatorFactory,
) -> None:
    # A plain iterable never suspends the stream; once reading it has taken READ_SLICE by the
    # time a chunk fills, that chunk's request gets a turn before the next lead is read.
    leads = make_leads(300)
    limiter = CountingLimiter()
    asked_when_read: list[int] = []

    def feed() -> Iterator[LeadComment]:
        for i, lead in enumerate(leads):
            if i == 99:
                time.sleep(2 * _stream.READ_SLICE)  # blocks, as a synchronous cursor does
            if i == 100:
                asked_when_read.append(limiter.asked)
            yield lead

    async with emulator(calls=300) as emu, client_for(emu, rate_limiter=limiter) as client:
        results = [r async for r in client.comment_many(feed())]
    assert asked_when_read == [1]  # the first chunk's request had started
    assert sorted(r.index for r in results) == list(range(300))
    assert len(emu.ledger.requests) == 3


async def test_await_for_lingered_send(emulator: EmulatorFactory) -> None:
    # An async source that pauses: what it gave before the pause is sent after linger.
    import asyncio

    gate = asyncio.Event()

    async def feed() -> AsyncIterator[object]:
        for lead in make_leads(5):
            yield lead
        await gate.wait()
        for lead in make_leads(5, prefix="after", first_id=6):
            yield lead

    async with emulator(calls=20) as emu, client_for(emu) as client:
        stream = client.comment_many(feed(), linger=0.05)  # type: ignore[arg-type]
        first = [await asyncio.wait_for(anext(stream), 10) for _ in range(5)]
        gate.set()
        rest = [r async for r in stream]
    assert {r.index for r in first} == set(range(5))
    assert {r.index for r in rest} == set(range(5, 10))
    assert [rec.lead_count for rec in emu.ledger.requests] == [5, 5]


async def test_after_auth_error_nothing_more_is_sent(emulator: EmulatorFactory) -> None:
    # Requests waiting for a slot when the credentials were refused must not go out after.
    from calltouch_async import AuthError

    async with emulator(calls=500) as emu:
        emu.inject(Fault.AUTH_FAILURE, on_requests=[1])
        async with client_for(emu, max_in_flight=1) as client:
            with pytest.raises(AuthError):
                [r async for r in client.comment_many(make_leads(500))]
            with pytest.raises(AuthError):
                await client.comment(make_leads(1, prefix="later"))
    assert len(emu.ledger.requests) == 1


async def test_leads_read_before_a_plain_iterable_fails_all_get_a_result(
    emulator: EmulatorFactory,
) -> None:
    # A list is read a slice at a time: the leads of the slice the failure interrupts were
    # taken from the input, so they are sent (or reported invalid) like the rest.
    leads = make_leads(150)
    leads[120] = leads[120].__class__(leads[120].matching, "  ")  # blank: invalid

    def feed() -> object:
        yield from leads
        raise ValueError("the cursor broke")

    async with emulator(calls=150) as emu, client_for(emu) as client:
        results = []
        with pytest.raises(ValueError, match="cursor broke"):
            async for result in client.comment_many(feed()):  # type: ignore[arg-type]
                results.append(result)
    assert sorted(r.index for r in results) == list(range(150))
    assert Counter(r.status for r in results) == {
        CommentStatus.COMMENTED: 149, CommentStatus.INVALID: 1,
    }
    assert sum(rec.lead_count for rec in emu.ledger.requests) == 149
