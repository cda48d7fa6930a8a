"""Limiter behaviour on a controllable clock (no real sleeping), plus the shared default."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from calltouch_async import SlidingWindowLimiter, SpacedLimiter
from calltouch_async._limiter import RateLimiter, shared_limiter
from helpers import FakeClock, max_in_window


def window_limiter(clock: FakeClock, **kw: float) -> SlidingWindowLimiter:
    return SlidingWindowLimiter(clock=clock, sleep=clock.sleep, **kw)  # type: ignore[arg-type]


async def starts(limiter: RateLimiter, clock: FakeClock, n: int) -> list[float]:
    """Take ``n`` permits one after another, each sent as soon as it is granted."""
    times = []
    for _ in range(n):
        permit = await limiter.acquire()
        if permit is not None:
            permit.sent()
        times.append(clock.now)
    return times


async def test_five_start_at_once_and_the_sixth_waits_a_full_window() -> None:
    clock = FakeClock()
    limiter = window_limiter(clock, margin=0.05)
    times = await starts(limiter, clock, 6)
    assert times[:5] == [0.0] * 5
    assert times[5] == pytest.approx(1.05)


async def test_never_more_than_five_in_any_window_under_concurrency() -> None:
    clock = FakeClock()
    limiter = window_limiter(clock, margin=0.05)
    times: list[float] = []

    async def worker() -> None:
        for _ in range(10):
            (await limiter.acquire()).sent()
            times.append(clock.now)

    await asyncio.gather(*(worker() for _ in range(7)))
    assert len(times) == 70
    assert max_in_window(times, 1.05) == 5
    # And it does not waste the window: 70 starts take 13 full windows after the first burst.
    assert max(times) == pytest.approx(13 * 1.05)


async def test_a_burst_is_allowed_again_after_idle() -> None:
    clock = FakeClock()
    limiter = window_limiter(clock, margin=0.0)
    await starts(limiter, clock, 5)
    clock.now = 10.0
    assert await starts(limiter, clock, 5) == [10.0] * 5


async def test_cooldown_pauses_every_waiter_and_never_shortens() -> None:
    clock = FakeClock()
    limiter = window_limiter(clock, margin=0.0)
    (await limiter.acquire()).sent()
    await limiter.cooldown(3.0)
    await limiter.cooldown(1.0)  # a shorter pause does not cut the longer one
    assert await starts(limiter, clock, 2) == [3.0, 3.0]


async def test_a_cancelled_waiter_takes_no_slot() -> None:
    clock = FakeClock()
    limiter = window_limiter(clock, margin=0.0)
    await starts(limiter, clock, 5)
    never = asyncio.Event()

    async def stuck_sleep(_: float) -> None:
        await never.wait()

    limiter._sleep = stuck_sleep  # the waiter parks until cancelled
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    limiter._sleep = clock.sleep
    assert len(limiter._permits) == 5
    assert await starts(limiter, clock, 1) == [1.0]


async def test_spaced_limiter_spaces_starts() -> None:
    # aiolimiter reads the loop's clock, so this one runs on real time with a short period.
    limiter = SpacedLimiter(rate=5, period=0.25, margin=0.0)
    loop = asyncio.get_running_loop()
    times = []
    for _ in range(6):
        await limiter.acquire()
        times.append(loop.time())
    gaps = [b - a for a, b in itertools.pairwise(times[1:])]
    # aiolimiter's bucket admits the first one or two at once; after that, one per interval.
    assert all(gap >= 0.05 * 0.9 for gap in gaps)


async def test_spaced_limiter_cooldown() -> None:
    clock = FakeClock()
    limiter = SpacedLimiter(clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    await limiter.cooldown(2.0)
    await limiter.acquire()
    assert clock.now == pytest.approx(2.0)


async def test_shared_limiter_is_one_per_host_and_loop() -> None:
    a = shared_limiter("api.calltouch.ru")
    assert shared_limiter("api.calltouch.ru") is a
    assert shared_limiter("127.0.0.1") is not a


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        SlidingWindowLimiter(rate=0)
    with pytest.raises(ValueError, match="period"):
        SpacedLimiter(period=0)
    with pytest.raises(ValueError, match="margin"):
        SlidingWindowLimiter(margin=-0.1)


async def test_a_start_counts_from_when_the_request_was_sent() -> None:
    # Five permits taken at 0, whose requests go out at 0.15 s (a cold connection's
    # handshake): the sixth may not start before 0.15 + window, not 0 + window.
    clock = FakeClock()
    limiter = window_limiter(clock, margin=0.05)
    permits = [await limiter.acquire() for _ in range(5)]
    clock.now = 0.15
    for permit in permits:
        permit.sent()
    assert await starts(limiter, clock, 1) == [pytest.approx(1.2)]


async def test_a_permit_not_yet_sent_counts_as_starting_now() -> None:
    clock = FakeClock()
    limiter = window_limiter(clock, margin=0.0)
    permits = [await limiter.acquire() for _ in range(5)]
    waiter = asyncio.create_task(starts(limiter, clock, 1))
    await asyncio.sleep(0)  # the waiter sleeps one window: the five may go out any moment
    assert not waiter.done() and clock.now == pytest.approx(1.0)
    for permit in permits:
        permit.sent()  # they all went out at 1.0
    assert await waiter == [pytest.approx(2.0)]


async def test_spaced_limiter_waits_out_a_pause_that_began_while_queued() -> None:
    clock = FakeClock()
    limiter = SpacedLimiter(clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    limiter._bucket = _PauseWhileQueued(limiter)  # the 429 arrives while this one is queued
    await limiter.acquire()
    assert clock.now == pytest.approx(3.0)


class _PauseWhileQueued:
    """A bucket whose first acquire sees a 3 s cooldown start (as if another request hit 429)."""

    def __init__(self, limiter: SpacedLimiter) -> None:
        self.limiter = limiter
        self.calls = 0

    async def acquire(self) -> None:
        self.calls += 1
        if self.calls == 1:
            await self.limiter.cooldown(3.0)


async def test_a_permit_never_marked_sent_cannot_stall_the_limiter() -> None:
    clock = FakeClock()
    limiter = window_limiter(clock, margin=0.0)
    for _ in range(5):
        await limiter.acquire()  # a caller that forgets permit.sent()
    (start,) = await starts(limiter, clock, 1)
    assert start == pytest.approx(11.0 + 1.0)  # counted as sent 11 s on, then one window
