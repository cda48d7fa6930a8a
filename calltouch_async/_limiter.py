"""Rate limiters: never more than 5 requests start in any window of 1 second (plus a margin).

Calltouch counts requests per client IP in any one-second window and answers the excess with
429. A limiter decides when a request may *start*. Two designs keep the guarantee:

* :class:`SlidingWindowLimiter` (the default) keeps the start times of recent requests and
  lets the next one start once no window of ``period * (1 + margin)`` would hold more than
  ``rate`` of them. A burst of ``rate`` after idle is allowed, and steady throughput is
  ``rate`` per window.
* :class:`SpacedLimiter` spaces every start ``period * (1 + margin) / rate`` apart, using
  aiolimiter. No burst; it loses a little throughput to the spacing.

aiolimiter's ``AsyncLimiter(5, 1)`` keeps neither: it is a leaky bucket that starts full, so it
admits 5 at once and another 4 before the first second ends. aiolimiter has no sliding log, so
:class:`SlidingWindowLimiter` is written here (a short list and a lock, nothing more).

**When a request starts.** Taking a permit is not the moment Calltouch sees the request: a
new connection first costs a TCP and TLS handshake (tens to hundreds of milliseconds), a
warm one nothing. If starts were counted when the permit is taken, a first burst on cold
connections followed by a burst on warm ones could reach Calltouch six in one second. So
:meth:`SlidingWindowLimiter.acquire` returns a :class:`Permit` that the client marks
:meth:`~Permit.sent` when the request's headers are written (an aiohttp trace); until then
the start counts as "now", so nothing can start a window ahead of it.

After a 429, :meth:`~RateLimiter.cooldown` pauses the limiter for every request that shares it.
Limiters are per event loop: an :class:`asyncio.Lock` binds to the loop it first runs on.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from aiolimiter import AsyncLimiter

from ._constants import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_RATE_MARGIN,
    RATE_LIMIT_PERIOD,
    RATE_LIMIT_REQUESTS,
)

__all__ = [
    "Permit",
    "RateLimiter",
    "SlidingWindowLimiter",
    "SpacedLimiter",
    "shared_limiter",
]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# A request's headers are written within the connect timeout of its permit, or never: the
# client bounds requests in flight below its pool size, so a permit never waits for a
# connection (on a session you pass in, give the connector at least max_in_flight).
_LONGEST_SEND = DEFAULT_CONNECT_TIMEOUT + 1.0


class Permit:
    """One request's start, as a limiter counts it.

    It counts from when the permit was taken until :meth:`sent` moves it to the moment the
    request really went out; a permit not yet sent counts as starting "now". The client calls
    :meth:`sent` when the request's headers are written, and again (a no-op by then) when the
    exchange ends, whatever happened.
    """

    __slots__ = ("_clock", "at", "pending")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.at = clock()
        self.pending = True

    def __repr__(self) -> str:
        state = "pending" if self.pending else "sent"
        return f"Permit(at={self.at:.3f}, {state})"

    def sent(self) -> None:
        """The request has gone out now (only the first call counts)."""
        if self.pending:
            self.pending = False
            self.at = max(self.at, self._clock())

    def counted_at(self, now: float) -> float:
        """When this start counts: its send time, or ``now`` while it may still go out.

        The client marks every permit sent when its request is written, and again when the
        exchange ends. A permit nobody marks (a caller using a limiter directly and
        forgetting :meth:`sent`) counts as sent once a request could no longer be on its
        way (the connect timeout, plus a second), so it slows the limiter but cannot stall
        every client sharing it.
        """
        if not self.pending:
            return self.at
        return min(now, self.at + _LONGEST_SEND)


@runtime_checkable
class RateLimiter(Protocol):
    """What the client needs from a limiter."""

    async def acquire(self) -> Permit | None:
        """Wait until one more request may start now, and count it as started.

        A limiter that can count the start from when the request is really sent returns a
        :class:`Permit`, and whoever sends must call its :meth:`~Permit.sent`; one that
        counts from now returns ``None``.
        """

    async def cooldown(self, seconds: float) -> None:
        """Let no request start for ``seconds`` (called after a 429)."""


class _Pausable:
    """What both limiters share: validated settings, a clock, and the pause after a 429."""

    __slots__ = ("_clock", "_paused_until", "_sleep")

    def __init__(
        self, rate: int, period: float, margin: float, clock: Clock, sleep: Sleep
    ) -> None:
        _check_limits(rate, period, margin)
        self._clock = clock
        self._sleep = sleep
        self._paused_until = float("-inf")

    async def cooldown(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + seconds)


class SlidingWindowLimiter(_Pausable):
    """At most ``rate`` starts in any window of ``period * (1 + margin)`` seconds.

    Waiters are served in arrival order (:class:`asyncio.Lock` is FIFO). A waiter cancelled
    while waiting takes no slot. ``clock`` and ``sleep`` can be replaced (tests use a fake
    clock); they must agree with each other.
    """

    __slots__ = ("_lock", "_permits", "rate", "window")

    def __init__(
        self,
        rate: int = RATE_LIMIT_REQUESTS,
        period: float = RATE_LIMIT_PERIOD,
        *,
        margin: float = DEFAULT_RATE_MARGIN,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(rate, period, margin, clock, sleep)
        self.rate = rate
        self.window = period * (1.0 + margin)
        self._permits: list[Permit] = []
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rate={self.rate}, window={self.window:.3f}s)"

    async def acquire(self) -> Permit:
        async with self._lock:
            while (wait := self._wait_time(self._clock())) > 0:
                await self._sleep(wait)
            permit = Permit(self._clock)
            self._permits.append(permit)
            return permit

    def _wait_time(self, now: float) -> float:
        # Starts a full window old can no longer share a window with one starting now.
        self._permits = [p for p in self._permits if p.counted_at(now) > now - self.window]
        wait = self._paused_until - now
        if len(self._permits) >= self.rate:
            starts = sorted(p.counted_at(now) for p in self._permits)
            wait = max(wait, starts[-self.rate] + self.window - now)
        return wait


class SpacedLimiter(_Pausable):
    """One start every ``period * (1 + margin) / rate`` seconds (aiolimiter underneath)."""

    __slots__ = ("_bucket", "interval")

    def __init__(
        self,
        rate: int = RATE_LIMIT_REQUESTS,
        period: float = RATE_LIMIT_PERIOD,
        *,
        margin: float = DEFAULT_RATE_MARGIN,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(rate, period, margin, clock, sleep)
        self.interval = period * (1.0 + margin) / rate
        # A bucket of one that drains in `interval`: a start only when the previous has leaked.
        self._bucket = AsyncLimiter(1, self.interval)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(interval={self.interval:.3f}s)"

    async def acquire(self) -> None:
        while True:
            while (wait := self._paused_until - self._clock()) > 0:
                await self._sleep(wait)
            await self._bucket.acquire()
            # A 429 may have paused everyone while this waited in the bucket: then wait out
            # the pause and queue again, so the waiters do not all start when it ends.
            if self._paused_until <= self._clock():
                return


def _check_limits(rate: int, period: float, margin: float) -> None:
    if rate < 1:
        raise ValueError(f"rate must be at least 1, got {rate}")
    if period <= 0:
        raise ValueError(f"period must be positive, got {period}")
    if margin < 0:
        raise ValueError(f"margin must not be negative, got {margin}")


# One limiter per (event loop, API host): Calltouch limits per IP, so every client of this
# process that talks to the same host must draw on the same budget.
_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, RateLimiter]] = (
    weakref.WeakKeyDictionary()
)


def shared_limiter(host: str) -> RateLimiter:
    """The process-wide default limiter for ``host`` on the running event loop."""
    loop = asyncio.get_running_loop()
    per_host = _shared.setdefault(loop, {})
    limiter = per_host.get(host)
    if limiter is None:
        limiter = per_host[host] = SlidingWindowLimiter()
    return limiter
