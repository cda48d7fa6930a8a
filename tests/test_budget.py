"""``daily_request_budget``: the emulator's ledger is the judge of what went out.

* 1,000 leads with a budget of 3 requests: exactly 3 requests arrive, every other lead read
  ends ``failed`` naming the budget, and ``comment_many`` stops reading its input within one
  chunk.
* ``comment()`` and ``submit()`` get the same ``failed`` once it is spent.
* A request that never left gives its unit back.
* The day boundary (Telemetry with an injected wall clock): midnight Moscow time by default.
* Two processes with ``RedisRateLimiter`` share one budget under a key that expires.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aredis

from calltouch_async import (
    CallMatch,
    CommentResult,
    DailyBudgetExhaustedError,
    LeadComment,
    RetryPolicy,
)
from calltouch_async._telemetry import Telemetry
from calltouch_async.redis_limiter import RedisRateLimiter
from conftest import SITE_ID, TOKEN, EmulatorFactory, client_for, make_leads
from helpers import TESTS, run_together

sys.path.insert(0, str(Path(__file__).parent))
from redis_server import RedisServer, free_port


async def drain(
    stream: AsyncIterator[CommentResult],
) -> tuple[list[CommentResult], DailyBudgetExhaustedError | None]:
    results: list[CommentResult] = []
    try:
        async for result in stream:
            results.append(result)
    except DailyBudgetExhaustedError as exc:
        return results, exc
    return results, None


def assert_budget_failures(results: list[CommentResult], budget: int) -> None:
    statuses = Counter(r.status for r in results)
    assert statuses["commented"] == budget * 100
    assert set(statuses) <= {"commented", "failed"}
    for r in results:
        if r.status == "failed":
            assert r.error is not None and "daily request budget of" in r.error
            assert f"site {SITE_ID}" in r.error and "UTC+03:00" in r.error


@pytest.mark.parametrize("max_in_flight", [1, 10])
async def test_1000_leads_with_a_budget_of_3_send_exactly_3_requests(
    emulator: EmulatorFactory, max_in_flight: int
) -> None:
    async with emulator(calls=1000) as emu, client_for(
        emu, daily_request_budget=3, max_in_flight=max_in_flight
    ) as client:
        results, error = await drain(client.comment_many(make_leads(1000)))
        stats = client.stats()
    assert len(emu.ledger.requests) == 3
    assert emu.ledger.applied_total == 300
    assert_budget_failures(results, 3)
    # Reading stops within one chunk of the spent budget: each launched request charges it
    # before more is read. Every lead read got exactly one result; the ones never read are
    # the caller's to resume.
    assert error is not None and error.leads_read <= (3 + 1) * 100
    read = error.leads_read
    assert sorted(r.index for r in results) == list(range(read))
    assert stats.requests == 3
    assert stats.budget_used == 3 and stats.daily_request_budget == 3
    assert stats.leads["commented"] == 300 and stats.leads["failed"] == read - 300


async def test_comment_many_stops_reading_its_input(emulator: EmulatorFactory) -> None:
    """An endless input ends with the budget error instead of failing leads forever."""
    read = 0

    def endless() -> Iterator[LeadComment]:
        nonlocal read
        while True:
            read += 1
            yield LeadComment([CallMatch(read % 50 + 1)], f"lead-{read}")

    async with emulator(calls=50) as emu, client_for(emu, daily_request_budget=2) as client:
        results, error = await drain(client.comment_many(endless()))
    assert isinstance(error, DailyBudgetExhaustedError)
    assert "daily request budget of 2" in str(error)
    assert len(emu.ledger.requests) == 2
    assert len(results) == error.leads_read
    # Read ahead is bounded by the stream's window, not by the input.
    assert read <= error.leads_read + 1
    assert error.leads_read <= (client.max_in_flight + 2) * 100
    assert_budget_failures(results, 2)


async def test_comment_and_submit_get_failed_once_the_budget_is_spent(
    emulator: EmulatorFactory,
) -> None:
    async with emulator(calls=300) as emu, client_for(emu, daily_request_budget=1) as client:
        first = await client.comment(make_leads(10, prefix="first"))
        second = await client.comment(make_leads(10, prefix="second"))
        submitted = await asyncio.gather(
            *(client.submit(lead) for lead in make_leads(150, prefix="submit"))
        )
    assert [r.status for r in first] == ["commented"] * 10
    for r in [*second, *submitted]:
        assert r.status == "failed"
        assert r.error is not None and "daily request budget of 1 requests" in r.error
    assert len(emu.ledger.requests) == 1


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks came in Python 3.12")
async def test_runs_refused_by_the_budget_end_cleanly_as_eager_tasks(
    emulator: EmulatorFactory,
) -> None:
    """With ``asyncio.eager_task_factory`` a run refused by the spent budget never suspends:
    it ends inside ``create_task``, before the stream could register it."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
    try:
        async with emulator(calls=300) as emu, client_for(
            emu, daily_request_budget=1, linger=0.01
        ) as client:
            first = await client.comment(make_leads(10))
            submitted = await asyncio.gather(*(client.submit(lead) for lead in make_leads(5)))
            results, error = await drain(client.comment_many(make_leads(250, prefix="many")))
        gc.collect()  # "Task exception was never retrieved" is reported as a task is collected
    finally:
        loop.set_task_factory(None)
        loop.set_exception_handler(None)
    assert errors == []
    assert {r.status for r in first} == {"commented"}
    assert {r.status for r in [*submitted, *results]} == {"failed"}
    assert error is not None and len(results) == error.leads_read
    assert len(emu.ledger.requests) == 1


async def test_a_request_that_never_left_gives_its_unit_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refused connection sent nothing: the budget is not spent by it."""
    port = free_port()  # nothing listens there: 127.0.0.1 refuses at once
    from calltouch_async import CalltouchClient

    async with CalltouchClient(
        SITE_ID, "token", base_url=f"http://127.0.0.1:{port}", rate_limiter=None,
        daily_request_budget=1, retry=RetryPolicy(max_attempts=3, base_delay=0.001),
    ) as client:
        [result] = await client.comment(make_leads(1))
        stats = client.stats()
    assert result.status == "failed"
    assert result.error is not None and "gave up after 3 attempts" in result.error
    assert stats.requests == 0 and stats.budget_used == 0
    retries = [r for r in caplog.records if r.getMessage().startswith("retrying")]
    assert [r.status for r in retries] == ["not_sent", "not_sent"]  # type: ignore[attr-defined]


# --- the day boundary --------------------------------------------------------------------


class WallClock:
    def __init__(self, at: datetime) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now


async def test_the_day_starts_at_midnight_moscow_time_by_default() -> None:
    clock = WallClock(datetime(2026, 3, 1, 20, 59, 59, tzinfo=UTC))  # 23:59:59 in Moscow
    telemetry = Telemetry(SITE_ID, daily_request_budget=1, clock=clock)
    assert telemetry.today() == date(2026, 3, 1)
    assert await telemetry.charge() is None
    assert await telemetry.charge() is not None and telemetry.budget_exhausted
    clock.now += 1  # 21:00:00 UTC is midnight in Moscow: a new day, a new budget
    assert telemetry.today() == date(2026, 3, 2)
    assert not telemetry.budget_exhausted
    assert await telemetry.charge() is None
    assert telemetry.stats().budget_used == 1 and telemetry.stats().day == date(2026, 3, 2)


async def test_the_day_boundary_is_configurable() -> None:
    clock = WallClock(datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC))
    telemetry = Telemetry(SITE_ID, daily_request_budget=1, day_timezone=UTC, clock=clock)
    assert telemetry.today() == date(2026, 3, 1)  # Moscow would already say March 2nd
    assert await telemetry.charge() is None
    assert await telemetry.charge() is not None
    clock.now += 1
    assert await telemetry.charge() is None
    eastern = Telemetry(SITE_ID, day_timezone=timezone(timedelta(hours=-5)), clock=clock)
    assert eastern.today() == date(2026, 3, 1)


# --- shared through Redis ----------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with RedisServer() as server:
        yield server.url


async def run_worker_processes(base_url: str, redis_url: str, key: str, n: int) -> list[Any]:
    """``n`` processes, each a client commenting 1,000 leads, started together."""
    configs = [
        {"base_url": base_url, "token": TOKEN, "redis_url": redis_url, "key": key,
         "budget": 3, "leads": 1000, "prefix": f"w{worker}"}
        for worker in range(n)
    ]
    return await run_together(TESTS / "budget_worker.py", configs, deadline=60)


async def test_two_processes_share_one_budget_through_redis(
    emulator: EmulatorFactory, redis_url: str
) -> None:
    key = "budget-" + os.urandom(6).hex()
    async with emulator(calls=1000) as emu:
        outputs = await run_worker_processes(emu.base_url, redis_url, key, 2)
        requests = len(emu.ledger.requests)
        applied = emu.ledger.applied_total
    assert requests == 3
    assert applied == 300
    statuses = Counter[str]()
    for out in outputs:
        statuses.update(out["statuses"])
        assert out["error"] in (None, "DailyBudgetExhaustedError")
        assert set(out["errors"]) <= {"budget"}
    assert statuses["commented"] == 300
    assert set(statuses) == {"commented", "failed"}
    # One count for the project, under the limiter's hash tag, expiring on its own.
    r = aredis.Redis.from_url(redis_url)
    try:
        keys = [k.decode() async for k in r.scan_iter(match=f"*{key}*budget*")]
        assert len(keys) == 1
        assert keys[0].startswith("{calltouch:127.0.0.1:" + key + "}:budget:12345:")
        assert int(await r.get(keys[0]) or 0) == 3
        assert 0 < await r.ttl(keys[0]) <= 24 * 3600 + 3600 + 1
    finally:
        await r.aclose()


async def test_a_limiter_on_redis_keeps_the_budget_there(redis_url: str) -> None:
    r = aredis.Redis.from_url(redis_url)
    try:
        limiter = RedisRateLimiter(r, key="budget-" + os.urandom(6).hex(), host="127.0.0.1")
        first = Telemetry(SITE_ID, daily_request_budget=2)
        second = Telemetry(SITE_ID, daily_request_budget=2)  # another client, same project
        first.use_limiter(limiter)
        second.use_limiter(limiter)
        assert await first.charge() is None
        assert await second.charge() is None
        assert await first.charge() is not None  # the other client spent the second unit
        assert second.stats().budget_used == 2
        await second.give_back()
        assert await second.charge() is None  # the unit given back is usable again
    finally:
        await r.aclose()


async def test_an_unreachable_budget_store_sends_nothing_and_fails_the_leads(
    emulator: EmulatorFactory,
) -> None:
    with RedisServer() as server:
        r = aredis.Redis.from_url(server.url)
        try:
            limiter = RedisRateLimiter(
                r, key="budget-" + os.urandom(6).hex(), host="127.0.0.1", unavailable_timeout=0.3
            )
            async with emulator(calls=10) as emu, client_for(
                emu, rate_limiter=limiter, daily_request_budget=5
            ) as client:
                assert [x.status for x in await client.comment(make_leads(2))] == ["commented"] * 2
                server.kill()
                results = await client.comment(make_leads(2, prefix="later"))
                stats = client.stats()
            assert [x.status for x in results] == ["failed"] * 2
            assert all("daily request budget" in (x.error or "") for x in results)
            assert len(emu.ledger.requests) == 1
            assert stats.requests == 1
        finally:
            await r.aclose()
