"""Limiter behaviour on a controllable clock (no real sleeping), plus the shared default.

The shared default across event loops and threads, against a server's ledger, is in
``test_limiter_loops.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest

from calltouch_async import Permit, SlidingWindowLimiter, SpacedLimiter
from calltouch_async._constants import (
    ADAPTIVE_MARGIN_HOLD,
    ADAPTIVE_MARGIN_MAX,
    ADAPTIVE_MARGIN_STEP,
    ADAPTIVE_MARGIN_STEP_EVERY,
)
from calltouch_async._limiter import RateLimiter, canonical_host, shared_limiter
from helpers import max_in_window


class FakeClock:
    """Virtual time: a sleeper waits until the clock reaches its deadline, and the sleeper
    with the earliest deadline moves the clock there once the other tasks had their turn."""

    def __init__(self) -> None:
        self.now = 0.0
        self._deadlines: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        deadline = self.now + max(0.0, seconds)
        self._deadlines.append(deadline)
        try:
            while self.now < deadline:
                for _ in range(3):  # let every runnable task reach its next sleep
                    await asyncio.sleep(0)
                if deadline <= min(self._deadlines):
                    self.now = max(self.now, deadline)
        finally:
            self._deadlines.remove(deadline)


def park_waiters(limiter: SlidingWindowLimiter) -> None:
    """From now on a waiter's sleep never returns: it stays parked until cancelled."""
    never = asyncio.Event()

    async def stuck_sleep(_: float) -> None:
        await never.wait()

    limiter._sleep = stuck_sleep


def window_limiter(clock: FakeClock, **kw: float) -> SlidingWindowLimiter:
    return SlidingWindowLimiter(clock=clock, sleep=clock.sleep, **kw)  # type: ignore[arg-type]


async def starts(limiter: RateLimiter, clock: FakeClock, n: int) -> list[float]:
    """Take ``n`` permits one after another, each sent as soon as it is granted."""
    times = []
    for _ in range(n):
        (await limiter.acquire()).sent()
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
    park_waiters(limiter)  # the waiter parks until cancelled
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


def test_shared_limiter_is_one_per_canonical_host() -> None:
    a = shared_limiter("https://api.calltouch.ru")
    assert shared_limiter("https://API.Calltouch.ru:443/") is a
    assert shared_limiter("api.calltouch.ru") is a
    assert shared_limiter("http://127.0.0.1:8080") is not a
    assert canonical_host("http://127.0.0.1:80/x") == "127.0.0.1"
    assert canonical_host("http://127.0.0.1:8080") == "127.0.0.1:8080"
    assert canonical_host("http://[::1]:8080") == "[::1]:8080"


def test_shared_limiter_is_one_for_every_loop_and_thread() -> None:
    # Fails if the default is keyed per event loop (or per thread) again: back-to-back
    # asyncio.run() calls and a loop in another thread all get the same limiter, and its
    # sixth start, on another loop than the first five, waits a full window.
    url = "http://127.0.0.1:9/per-loop-check"

    async def take(n: int) -> tuple[SlidingWindowLimiter, list[Permit]]:
        limiter = shared_limiter(url)
        permits = [await limiter.acquire() for _ in range(n)]
        for permit in permits:
            permit.sent()
        return limiter, permits

    first, five = asyncio.run(take(5))
    in_thread: list[tuple[SlidingWindowLimiter, list[Permit]]] = []
    thread = threading.Thread(target=lambda: in_thread.append(asyncio.run(take(1))))
    thread.start()
    thread.join()
    (other, (sixth,)) = in_thread[0]
    assert other is first
    assert asyncio.run(take(0))[0] is first
    assert sixth.at >= five[0].at + first.window


def test_starts_from_two_threads_share_one_window() -> None:
    # Real time, a short period: the starts the limiter grants to two loops in two threads
    # at once keep the window between them (its own grant times: no wall-clock assertion).
    limiter = SlidingWindowLimiter(rate=5, period=0.2, margin=0.0, max_margin=0.0)
    starts: list[float] = []

    async def worker() -> None:
        for _ in range(8):
            permit = await limiter.acquire()
            permit.sent()
            starts.append(permit.at)

    threads = [threading.Thread(target=asyncio.run, args=(worker(),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(starts) == 16
    assert max_in_window(sorted(starts), 0.2 - 1e-9) <= 5


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
    for _ in range(1000):  # the waiter sleeps one window: the five may go out any moment
        if clock.now >= 1.0:
            break
        await asyncio.sleep(0)
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


async def test_a_permit_settled_as_not_sent_frees_its_slot() -> None:
    clock = FakeClock()
    limiter = window_limiter(clock, margin=0.0)
    permits = [await limiter.acquire() for _ in range(5)]
    permits[0].settle(sent=False)  # e.g. the connection was refused: nothing reached the server
    permits[0].settle(sent=True)  # only the first settlement counts
    for permit in permits[1:]:
        permit.sent()
    assert await starts(limiter, clock, 1) == [0.0]


async def test_every_limiter_grants_a_permit_once_its_wait_is_over() -> None:
    clock = FakeClock()
    spaced = SpacedLimiter(clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    await spaced.cooldown(2.0)
    permit = await spaced.acquire()
    assert isinstance(permit, Permit) and permit.at == pytest.approx(2.0)
    permit.settle(sent=True)  # counted from when it was granted: it does not move
    assert permit.at == pytest.approx(2.0) and not permit.pending
    window = window_limiter(clock, margin=0.0)
    first = (await starts(window, clock, 5))[0]
    sixth = await window.acquire()  # granted a full window after the first start
    assert sixth.at == pytest.approx(first + 1.0) and sixth.pending


# --------------------------------------------------------------------------- adaptive margin


async def test_an_unexpected_429_widens_the_margin_at_once_for_everyone() -> None:
    clock = FakeClock()
    limiter = window_limiter(clock, margin=0.05)
    await starts(limiter, clock, 5)
    await limiter.cooldown(0.0)  # a 429 while not paused: the log had allowed that start
    assert limiter.window == pytest.approx(1.0 + ADAPTIVE_MARGIN_MAX)
    assert await starts(limiter, clock, 1) == [pytest.approx(1.0 + ADAPTIVE_MARGIN_MAX)]


async def test_a_429_during_a_pause_was_expected_and_does_not_restart_the_hold() -> None:
    clock = FakeClock()
    limiter = window_limiter(clock, margin=0.05)
    await limiter.cooldown(1.0)  # unexpected: widens at 0
    clock.now = 0.5
    await limiter.cooldown(1.0)  # while paused: one of the same burst
    clock.now = ADAPTIVE_MARGIN_HOLD  # the hold counts from 0, not from 0.5
    assert limiter.window == pytest.approx(1.0 + ADAPTIVE_MARGIN_MAX - ADAPTIVE_MARGIN_STEP)


async def test_the_margin_narrows_back_step_by_step_once_quiet() -> None:
    clock = FakeClock()
    limiter = window_limiter(clock, margin=0.05)
    await limiter.cooldown(0.0)
    seen = []
    for t in (0.0, ADAPTIVE_MARGIN_HOLD - 0.01, *(
        ADAPTIVE_MARGIN_HOLD + k * ADAPTIVE_MARGIN_STEP_EVERY for k in range(5)
    )):
        clock.now = t
        seen.append(round(limiter.window - 1.0, 4))
    assert seen == [0.2, 0.2, 0.15, 0.1, 0.05, 0.05, 0.05]
    # Back at the base margin, the window is the base one again.
    clock.now = 1000.0
    times = await starts(limiter, clock, 6)
    assert times[5] - times[0] == pytest.approx(1.05)
    # A new unexpected 429 widens it again.
    await limiter.cooldown(0.0)
    assert limiter.window == pytest.approx(1.2)


async def test_a_fixed_margin_does_not_adapt() -> None:
    clock = FakeClock()
    limiter = window_limiter(clock, margin=0.05, max_margin=0.05)
    await limiter.cooldown(0.0)
    assert limiter.window == pytest.approx(1.05)


async def test_waiters_get_their_starts_in_the_order_they_came() -> None:
    clock = FakeClock()
    limiter = window_limiter(clock, margin=0.0)
    await starts(limiter, clock, 5)
    started: dict[int, float] = {}

    async def waiter(name: int) -> None:
        (await limiter.acquire()).sent()
        started[name] = clock.now

    tasks = []
    for name in range(7):
        tasks.append(asyncio.create_task(waiter(name)))
        await asyncio.sleep(0)  # each one reserves before the next comes
    await asyncio.gather(*tasks)
    # Never a later start for one that came earlier: five at 1.0, then two at 2.0.
    assert [started[name] for name in range(7)] == [1.0] * 5 + [2.0] * 2


async def test_a_newcomer_does_not_jump_ahead_of_a_reserved_waiter() -> None:
    # Slots freed while the first waiter sleeps (requests that never left) do not let a
    # newcomer start before it.
    clock = FakeClock()
    limiter = window_limiter(clock, margin=0.0)
    permits = [await limiter.acquire() for _ in range(5)]
    first = asyncio.create_task(starts(limiter, clock, 1))
    await asyncio.sleep(0)  # it reserves the start at 1.0 and sleeps
    for permit in permits[:3]:
        permit.settle(sent=False)
    second = await starts(limiter, clock, 1)
    assert second[0] >= (await first)[0] == pytest.approx(1.0)


async def test_a_waiter_whose_loop_never_wakes_it_does_not_stall_the_others() -> None:
    # A waiter reserves a start, then its loop stops running it (not cancelled, never back):
    # it counts as one start, and the others go on around it.
    clock = FakeClock()
    limiter = window_limiter(clock, margin=0.0)
    await starts(limiter, clock, 5)
    park_waiters(limiter)
    stuck = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    limiter._sleep = clock.sleep
    assert await starts(limiter, clock, 4) == [1.0] * 4  # the stuck one holds the fifth slot
    assert await starts(limiter, clock, 1) == [2.0]
    stuck.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stuck
