"""The fault matrix: every lead ends in exactly one honest outcome, checked against the ledger.

For each fault the emulator injects, the invariants of ``check`` must hold: one result per
lead; no comment applied twice; every ``commented`` lead applied; no ``invalid``,
``rejected`` or ``failed`` lead applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from hostile import Server, serve

from calltouch_async import (
    AuthError,
    CalltouchClient,
    ClientClosedError,
    CommentResult,
    CommentStatus,
    LeadComment,
    RateLimiterUnavailableError,
    RequestContactMatch,
    RetryPolicy,
    SlidingWindowLimiter,
)
from calltouch_async._transport import Reply, classify
from calltouch_async.testing import CalltouchEmulator, Fault
from helpers import SITE_ID, TOKEN, EmulatorFactory, client_for, make_leads, until

S = CommentStatus
FAST_RETRY = RetryPolicy(max_attempts=6, base_delay=0.01, max_delay=0.05)


@pytest.fixture(autouse=True)
async def asyncio_debug() -> None:
    """Run every test here in asyncio debug mode (warnings are errors in this suite)."""
    asyncio.get_running_loop().set_debug(True)


def check(emu: CalltouchEmulator, leads: list[LeadComment], results: list[CommentResult]) -> None:
    assert sorted(r.index for r in results) == list(range(len(leads)))
    applied = emu.ledger.text_counts()
    assert all(count == 1 for count in applied.values()), "a comment was applied twice"
    for r in results:
        assert r.lead is leads[r.index]
        if r.status is S.COMMENTED:
            assert applied[r.lead.comment] == 1
        elif r.status in (S.INVALID, S.REJECTED, S.FAILED):
            assert r.lead.comment not in applied, f"{r.status} lead was applied"
            assert r.error


async def run(client: CalltouchClient, leads: list[LeadComment]) -> list[CommentResult]:
    return [r async for r in client.comment_many(leads)]


def our_tasks() -> set[asyncio.Task[object]]:
    """Tasks running the client's code (the emulator's own server tasks are not ours)."""
    return {
        t
        for t in asyncio.all_tasks()
        if "calltouch_async" in t.get_coro().cr_code.co_filename  # type: ignore[union-attr]
        and "testing" not in t.get_coro().cr_code.co_filename  # type: ignore[union-attr]
    }


def statuses(results: list[CommentResult]) -> Counter[str]:
    return Counter(r.status.value for r in results)


async def test_429_storm_is_ridden_out(emulator: EmulatorFactory) -> None:
    leads = make_leads(300)
    async with emulator(calls=300, seed=7) as emu:
        emu.inject(Fault.RATE_LIMIT, probability=0.5)
        async with client_for(emu, retry=RetryPolicy(max_attempts=30, base_delay=0.01)) as c:
            results = await run(c, leads)
    check(emu, leads, results)
    assert statuses(results) == {"commented": 300}
    assert emu.ledger.status_counts()[429] > 0


async def test_429_until_attempts_run_out_fails_without_applying(
    emulator: EmulatorFactory,
) -> None:
    leads = make_leads(50)
    async with emulator(calls=50) as emu:
        emu.inject(Fault.RATE_LIMIT, probability=1.0)
        async with client_for(emu, retry=RetryPolicy(max_attempts=3, base_delay=0.01)) as c:
            results = await run(c, leads)
    check(emu, leads, results)
    assert statuses(results) == {"failed": 50}
    assert "3 attempts" in (results[0].error or "")
    assert len(emu.ledger.requests) == 3


# Faults after which the lead may have run: its request ends "unknown" and is never re-sent.
# ``cause`` is searched in each such lead's error (its own cause, nothing else); ``applied`` is
# how often the server applied such a lead (None: not settled when the test ends, as a slow
# answer may still be running).
LOST_ANSWERS = [
    pytest.param(Fault.SERVER_ERROR, {}, r"^HTTP 5", 0, id="5xx"),
    pytest.param(Fault.APPLY_THEN_DROP, {}, None, 1, id="apply-then-drop"),
    pytest.param(Fault.MALFORMED_JSON, {}, None, 1, id="malformed-json"),
    pytest.param(Fault.SLOW, {"timeout": 0.5}, "deadline", None, id="slower-than-the-deadline"),
]


@pytest.mark.parametrize(("fault", "options", "cause", "applied"), LOST_ANSWERS)
async def test_a_lost_answer_is_unknown_and_not_resent(
    emulator: EmulatorFactory,
    fault: Fault,
    options: dict[str, float],
    cause: str | None,
    applied: int | None,
) -> None:
    leads = make_leads(200)
    async with emulator(calls=200) as emu:
        emu.inject(fault, on_requests=[1], delay=3.0)
        async with client_for(emu, max_in_flight=1, retry=FAST_RETRY, **options) as c:
            results = await run(c, leads)
    check(emu, leads, results)
    assert statuses(results) == {"unknown": 100, "commented": 100}
    assert len(emu.ledger.requests) == 2  # the faulted request was not sent again
    unknown = [r for r in results if r.status is S.UNKNOWN]
    assert [r.index for r in unknown] == list(range(100))
    if cause is not None:
        assert all(re.search(cause, r.error or "") for r in unknown)
    if applied is not None:
        assert all(emu.ledger.text_counts()[r.lead.comment] == applied for r in unknown)


async def test_5xx_is_resent_when_the_caller_opts_in(emulator: EmulatorFactory) -> None:
    leads = make_leads(100)
    async with emulator(calls=100) as emu:
        emu.inject(Fault.SERVER_ERROR, on_requests=[1])
        retry = RetryPolicy(max_attempts=3, base_delay=0.01, retry_unknown=True)
        async with client_for(emu, retry=retry) as c:
            results = await run(c, leads)
    check(emu, leads, results)
    assert statuses(results) == {"commented": 100}


class FixedBackoff(RetryPolicy):
    """Half a second between attempts, no jitter: attempts at 0, 0.5 and 1.0 s."""

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        return 0.5


async def test_retries_share_one_deadline(emulator: EmulatorFactory) -> None:
    leads = make_leads(10)
    async with emulator(calls=10) as emu:
        emu.inject(Fault.RATE_LIMIT, probability=1.0)
        retry = FixedBackoff(max_attempts=100)
        # The 1.25 s deadline falls in the wait after the third 429: nothing is in flight.
        async with client_for(emu, timeout=1.25, retry=retry) as c:
            loop = asyncio.get_running_loop()
            started = loop.time()
            results = await run(c, leads)
            elapsed = loop.time() - started
    check(emu, leads, results)
    assert statuses(results) == {"failed": 10}
    assert "deadline" in (results[0].error or "")
    assert len(emu.ledger.requests) == 3
    assert elapsed < 5.0  # 100 attempts x 0.5 s would be 50 s: the deadline covers them all


def bad_email_lead(i: int) -> LeadComment:
    entry = RequestContactMatch(
        emails=["not an email"],
        date="01-10-2020 12:00:00",
        search_depth=60,
        request_type_to_match="nearest",
    )
    return LeadComment([entry], f"bad-email-{i}")


async def test_violations_reject_named_leads_and_resend_the_rest(
    emulator: EmulatorFactory,
) -> None:
    leads = make_leads(100)
    leads[3], leads[70] = bad_email_lead(3), bad_email_lead(70)  # valid locally, not to Calltouch
    async with emulator(calls=100) as emu, client_for(emu) as c:
        results = await run(c, leads)
    check(emu, leads, results)
    assert statuses(results) == {"commented": 98, "rejected": 2}
    rejected = {r.index: r.error or "" for r in results if r.status is S.REJECTED}
    assert set(rejected) == {3, 70}
    # Relative to the lead (its index says which): Calltouch's comments[i] is its position in
    # that request, which is not the caller's.
    assert rejected[70].startswith("matching[0].requestContactParams.emails")
    assert "email" in rejected[70]
    assert [rec.lead_count for rec in emu.ledger.requests] == [100, 98]  # one extra request


async def test_unmapped_violations_are_isolated_by_halving(emulator: EmulatorFactory) -> None:
    leads = make_leads(100)
    async with emulator(calls=100) as emu:
        emu.inject(Fault.UNMAPPED_VIOLATION, on_requests=[1])
        async with client_for(emu) as c:
            results = await run(c, leads)
    check(emu, leads, results)
    assert statuses(results) == {"commented": 100}
    # The faulted first request is answered before the emulator parses it (lead_count 0).
    assert len(emu.ledger.requests) == 3
    assert [rec.lead_count for rec in emu.ledger.requests[1:]] == [50, 50]


async def test_unmapped_violations_everywhere_stay_within_the_split_budget(
    emulator: EmulatorFactory,
) -> None:
    leads = make_leads(100)
    async with emulator(calls=100, rate_limit=None) as emu:
        emu.inject(Fault.UNMAPPED_VIOLATION, probability=1.0)
        async with client_for(emu) as c:
            results = await run(c, leads)
    check(emu, leads, results)
    assert set(statuses(results)) <= {"rejected", "failed"}
    assert len(emu.ledger.requests) <= 1 + 28  # 4 * ceil(log2(100)) extra requests at most
    assert emu.ledger.applied == []


async def test_auth_failure_mid_stream_raises_and_stops(emulator: EmulatorFactory) -> None:
    leads = make_leads(1000)
    async with emulator(calls=1000) as emu:
        emu.inject(Fault.AUTH_FAILURE, on_requests=[3])
        async with client_for(emu, max_in_flight=1) as c:
            seen: list[CommentResult] = []
            with pytest.raises(AuthError) as caught:
                async for r in c.comment_many(leads):
                    seen.append(r)
    assert str(SITE_ID) in str(caught.value)
    assert TOKEN not in str(caught.value)
    # Two requests answered; the third refused (its leads get no result); a chunk already
    # packed behind it was never written: "not sent", and the stream read no further.
    commented = [r for r in seen if r.status is S.COMMENTED]
    not_sent = [r for r in seen if r.status is S.FAILED]
    assert len(commented) == 200 and len(commented) + len(not_sent) == len(seen) <= 300
    assert all(r.error == "not sent: stopped after AuthError" for r in not_sent)
    assert not {r.lead.comment for r in not_sent} & set(emu.ledger.text_counts())
    assert len(emu.ledger.requests) == 3  # no retry, nothing sent after it
    assert all(count == 1 for count in emu.ledger.text_counts().values())


async def test_wrong_token_raises_auth_error_from_comment(emulator: EmulatorFactory) -> None:
    async with emulator() as emu:
        client = CalltouchClient(SITE_ID, "wrong-" + TOKEN, base_url=emu.base_url)
        async with client:
            with pytest.raises(AuthError) as caught:
                await client.comment(make_leads(3))
    assert TOKEN not in str(caught.value) and "wrong-" not in str(caught.value)
    assert emu.ledger.applied == []


async def test_connect_errors_are_retried_then_failed() -> None:
    # A port nobody listens on: the request never leaves, so retrying is safe.
    emu = CalltouchEmulator()
    await emu.start()
    url = emu.base_url
    await emu.close()
    leads = make_leads(5)
    retry = RetryPolicy(max_attempts=3, base_delay=0.01)
    async with CalltouchClient(SITE_ID, TOKEN, base_url=url, rate_limiter=None, retry=retry) as c:
        results = await run(c, leads)
    assert statuses(results) == {"failed": 5}
    assert "3 attempts" in (results[0].error or "")


def test_other_4xx_is_failed_with_status_and_message() -> None:
    body = b'{"meta": [], "data": {"type": "apiError", "apiErrorData": {"errorCode": 10042, "errorMessage": "Points exhausted"}}}'  # noqa: E501
    exchange = classify(402, body)
    assert exchange.reply is Reply.FAILED
    assert "402" in exchange.detail and "Points exhausted" in exchange.detail
    assert classify(404, b"<html>not found</html>").reply is Reply.FAILED
    assert classify(403, b"").reply is Reply.AUTH
    assert classify(200, b"<html>").reply is Reply.UNKNOWN
    assert classify(200, b'{"data": {}}').reply is Reply.UNKNOWN  # may have run: not "failed"


async def test_consumer_cancelled_mid_stream_leaks_nothing(emulator: EmulatorFactory) -> None:
    leads = make_leads(1000)
    async with emulator(calls=1000, latency=0.2) as emu, client_for(emu, max_in_flight=3) as c:
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in c.comment_many(leads):
                first.set()

        task = asyncio.create_task(consume())
        await first.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert our_tasks() == set()
        assert not c._streams
    assert all(count == 1 for count in emu.ledger.text_counts().values())


async def test_breaking_out_with_aclosing_cancels_in_flight(emulator: EmulatorFactory) -> None:
    leads = make_leads(1000)
    async with emulator(calls=1000, latency=0.2) as emu:
        async with client_for(emu, max_in_flight=3) as c:
            async with contextlib.aclosing(c.comment_many(leads)) as stream:
                async for _ in stream:
                    break
            assert our_tasks() == set()
        sent = len(emu.ledger.requests)
    assert sent < 10


async def test_aclose_ends_a_running_stream(emulator: EmulatorFactory) -> None:
    leads = make_leads(1000)
    async with emulator(calls=1000, latency=0.3) as emu:
        c = client_for(emu, max_in_flight=2)
        async with c:
            stream = c.comment_many(leads)

            async def consume() -> int:
                return len([r async for r in stream])

            task = asyncio.create_task(consume())
            await until(lambda: emu.ledger.requests)
            await c.aclose()
            with pytest.raises(ClientClosedError):
                await task
    assert all(count == 1 for count in emu.ledger.text_counts().values())


async def test_aclose_lets_a_comment_call_in_flight_answer(emulator: EmulatorFactory) -> None:
    async with emulator(calls=10, latency=1.0) as emu:
        c = client_for(emu)
        async with c:
            call = asyncio.create_task(c.comment(make_leads(3)))
            await until(lambda: emu.ledger.requests)  # at the server; answering takes 1 s
            await c.aclose()  # within flush_timeout (30 s): the answer is awaited
            results = await call  # all its leads were read: results, not ClientClosedError
            assert our_tasks() == set()
    assert [r.status for r in results] == [S.COMMENTED] * 3
    assert len(emu.ledger.requests) == 1


async def test_cancelling_a_comment_call_cancels_its_request(emulator: EmulatorFactory) -> None:
    async with emulator(calls=10, latency=1.0) as emu, client_for(emu) as c:
        call = asyncio.create_task(c.comment(make_leads(3)))
        await until(lambda: emu.ledger.requests)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert our_tasks() == set()
        assert not c.closed


async def test_the_token_never_reaches_logs_or_errors(
    emulator: EmulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    leads = make_leads(300)

    async def lines() -> AsyncIterator[LeadComment]:
        for lead in leads:
            yield lead

    async with emulator(calls=300) as emu:
        emu.inject(Fault.RATE_LIMIT, on_requests=[1])
        emu.inject(Fault.SERVER_ERROR, on_requests=[3])
        emu.inject(Fault.APPLY_THEN_DROP, on_requests=[4])
        async with client_for(emu, max_in_flight=1, retry=FAST_RETRY) as c:
            results = [r async for r in c.comment_many(lines())]
            text = repr(c) + repr(results) + repr(emu)
    check(emu, leads, results)
    assert any(r.levelno == logging.WARNING for r in caplog.records)  # retries and unknowns
    assert TOKEN not in caplog.text
    assert TOKEN not in text


async def test_max_in_flight_bounds_the_whole_client(emulator: EmulatorFactory) -> None:
    # Three streams and a comment() call at once: never more than 2 requests in flight.
    async with emulator(calls=1200, latency=0.3, rate_limit=None) as emu:
        async with client_for(emu, max_in_flight=2) as c:

            async def stream(prefix: str, first: int) -> int:
                leads = make_leads(300, prefix=prefix, first_id=first)
                return len([r async for r in c.comment_many(leads)])

            counts = await asyncio.gather(
                stream("a", 1), stream("b", 301), stream("c", 601),
                c.comment(make_leads(50, prefix="d", first_id=901)),
            )
    assert counts[:3] == [300, 300, 300] and len(counts[3]) == 50
    # Each answer takes 0.3 s: arrivals closer together than that were in flight together.
    assert emu.ledger.max_in_window(0.25, accepted_only=False) <= 2


async def test_leads_that_never_left_before_the_deadline_are_failed(
    emulator: EmulatorFactory,
) -> None:
    limiter = SlidingWindowLimiter()
    async with emulator(calls=10) as emu:
        async with client_for(emu, rate_limiter=limiter, timeout=0.5) as c:
            await limiter.cooldown(5.0)  # as after a 429: nothing may start for 5 s
            [result] = await c.comment(make_leads(1))
    assert result.status is S.FAILED  # the deadline passed while it waited for a permit
    assert emu.ledger.requests == []


async def test_waiting_for_a_free_slot_is_not_part_of_the_deadline(
    emulator: EmulatorFactory,
) -> None:
    async with emulator(calls=10, latency=0.6) as emu:
        async with client_for(emu, max_in_flight=1, timeout=1.0) as c:
            first, second = await asyncio.gather(
                c.comment(make_leads(1, prefix="first")),
                c.comment(make_leads(1, prefix="second", first_id=2)),
            )
    # The second waited 0.6 s for the only slot, then had its own full second.
    assert [first[0].status, second[0].status] == [S.COMMENTED, S.COMMENTED]
    assert len(emu.ledger.requests) == 2


async def test_calltouch_echoing_the_token_never_reaches_the_caller() -> None:
    async def echo_token(request: web.Request, server: Server) -> web.Response:
        message = f"bad token {request.headers['Access-Token']}"
        body = {"meta": [], "data": {"type": "apiError", "apiErrorData": {
            "errorCode": 401, "errorMessage": message}}}
        return web.json_response(body, status=401)

    async with serve(echo_token) as api:
        async with CalltouchClient(SITE_ID, TOKEN, base_url=api.url, rate_limiter=None) as client:
            with pytest.raises(AuthError) as caught:
                await client.comment(make_leads(1))
    assert TOKEN not in str(caught.value)
    assert "bad token ***" in str(caught.value)


class PauseCannotBeShared(SlidingWindowLimiter):
    """A limiter whose backend fails exactly when a 429 pause should be shared."""

    async def cooldown(self, seconds: float) -> None:
        raise RateLimiterUnavailableError("the shared store is down")


async def test_a_pause_that_cannot_be_shared_does_not_end_the_stream(
    emulator: EmulatorFactory,
) -> None:
    leads = make_leads(300)
    async with emulator(calls=300, rate_limit=None) as emu:
        emu.inject(Fault.RATE_LIMIT, on_requests=[1])
        async with client_for(emu, rate_limiter=PauseCannotBeShared(), retry=FAST_RETRY) as c:
            results = await run(c, leads)
    check(emu, leads, results)
    assert statuses(results) == {"commented": 300}


async def test_cancelling_a_stream_whose_input_answers_with_an_error_sends_nothing_more(
    emulator: EmulatorFactory,
) -> None:
    started = asyncio.Event()

    async def feed() -> AsyncIterator[LeadComment]:
        for lead in make_leads(50):
            yield lead
        started.set()
        try:
            await asyncio.Event().wait()  # a cursor waiting for more rows
        except asyncio.CancelledError:
            raise RuntimeError("cursor closed") from None

    async with emulator(calls=50) as emu, client_for(emu) as c:

        async def consume() -> None:
            async for _ in c.comment_many(feed()):
                pass

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.2)
        assert emu.ledger.requests == []  # the partial chunk of 50 was never sent
        assert our_tasks() == set()


async def test_an_interrupted_aclose_still_tears_everything_down(
    emulator: EmulatorFactory,
) -> None:
    async with emulator(calls=10, latency=1.0) as emu:
        client = client_for(emu, linger=0.01)
        await client.comment(make_leads(1))  # opens the session
        pending = asyncio.create_task(client.submit(make_leads(1, first_id=2)[0]))
        await until(lambda: len(emu.ledger.requests) == 2)  # flushed: at the server
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.aclose(), 0.05)  # a shutdown timeout fires
        await client.aclose()  # waits for the teardown that went on regardless
        assert client._session is not None and client._session.closed
        assert (await pending).status is S.COMMENTED  # flushed, answered in 1 s
        assert our_tasks() == set()


async def test_close_tells_sent_from_never_sent_submits(emulator: EmulatorFactory) -> None:
    async with emulator(calls=200, latency=2.0) as emu:
        client = client_for(emu, linger=0.01, max_in_flight=1, flush_timeout=0.3)
        async with client:
            tasks = [asyncio.create_task(client.submit(lead)) for lead in make_leads(150)]
            await until(lambda: emu.ledger.requests)
        results = await asyncio.gather(*tasks)
    # One request of 100 was at the server; the other 50 waited for the only slot.
    assert statuses(results) == {"unknown": 100, "failed": 50}
    assert len(emu.ledger.requests) == 1


async def test_the_token_quoted_in_per_lead_errors_is_scrubbed() -> None:
    async def quote_token(request: web.Request, server: Server) -> web.Response:
        token = request.headers["Access-Token"]
        body = {"meta": [], "data": {"comments": [
            {"callInfo": None, "requestInfo": None, "commented": False,
             "error": f"no lead for key {token}"}]}}
        return web.json_response(body)

    async with serve(quote_token) as api:
        async with CalltouchClient(SITE_ID, TOKEN, base_url=api.url, rate_limiter=None) as client:
            results = await client.comment(make_leads(1))
    assert results[0].error == "no lead for key ***"
    assert TOKEN not in repr(results)
