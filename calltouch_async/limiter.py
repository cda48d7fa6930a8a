"""Rate limiters: never more than 5 requests start in any window of 1 second (plus a margin).

Calltouch counts requests per client IP in any one-second window and answers the excess with
429. A limiter decides when a request may *start*. Two designs keep the guarantee:

* :class:`SlidingWindowLimiter` (the default) keeps the start times of the last ``rate``
  requests and lets the next one start once the oldest of them is ``period * (1 + margin)`` old.
  A burst of ``rate`` after idle is allowed, and steady throughput is ``rate`` per window.
* :class:`SpacedLimiter` spaces every start ``period * (1 + margin) / rate`` apart, using
  aiolimiter. No burst; it loses a little throughput to the spacing.

aiolimiter's ``AsyncLimiter(5, 1)`` keeps neither: it is a leaky bucket that starts full, so it
admits 5 at once and another 4 before the first second ends. aiolimiter has no sliding log, so
:class:`SlidingWindowLimiter` is written here (a deque and a lock, nothing more).

After a 429, :meth:`~RateLimiter.cooldown` pauses the limiter for every request that shares it.
Limiters are per event loop: an :class:`asyncio.Lock` binds to the loop it first runs on.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from aiolimiter import AsyncLimiter

from ._constants import DEFAULT_RATE_MARGIN, RATE_LIMIT_PERIOD, RATE_LIMIT_REQUESTS

__all__ = [
    "RateLimiter",
    "SlidingWindowLimiter",
    "SpacedLimiter",
    "shared_limiter",
]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@runtime_checkable
class RateLimiter(Protocol):
    """What the client needs from a limiter."""

    async def acquire(self) -> None:
        """Wait until one more request may start now, and count it as started."""

    async def cooldown(self, seconds: float) -> None:
        """Let no request start for ``seconds`` (called after a 429)."""


class SlidingWindowLimiter:
    """At most ``rate`` starts in any window of ``period * (1 + margin)`` seconds.

    Waiters are served in arrival order (:class:`asyncio.Lock` is FIFO). A waiter cancelled
    while waiting takes no slot. ``clock`` and ``sleep`` can be replaced (tests use a fake
    clock); they must agree with each other.
    """

    __slots__ = ("_clock", "_lock", "_paused_until", "_sleep", "_starts", "rate", "window")

    def __init__(
        self,
        rate: int = RATE_LIMIT_REQUESTS,
        period: float = RATE_LIMIT_PERIOD,
        *,
        margin: float = DEFAULT_RATE_MARGIN,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        _check_limits(rate, period, margin)
        self.rate = rate
        self.window = period * (1.0 + margin)
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque(maxlen=rate)
        self._paused_until = float("-inf")
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rate={self.rate}, window={self.window:.3f}s)"

    async def acquire(self) -> None:
        async with self._lock:
            while (wait := self._wait_time(self._clock())) > 0:
                await self._sleep(wait)
            self._starts.append(self._clock())

    async def cooldown(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def _wait_time(self, now: float) -> float:
        wait = self._paused_until - now
        if len(self._starts) == self.rate:
            wait = max(wait, self._starts[0] + self.window - now)
        return wait


class SpacedLimiter:
    """One start every ``period * (1 + margin) / rate`` seconds (aiolimiter underneath)."""

    __slots__ = ("_bucket", "_clock", "_paused_until", "_sleep", "interval")

    def __init__(
        self,
        rate: int = RATE_LIMIT_REQUESTS,
        period: float = RATE_LIMIT_PERIOD,
        *,
        margin: float = DEFAULT_RATE_MARGIN,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        _check_limits(rate, period, margin)
        self.interval = period * (1.0 + margin) / rate
        # A bucket of one that drains in `interval`: a start only when the previous has leaked.
        self._bucket = AsyncLimiter(1, self.interval)
        self._clock = clock
        self._sleep = sleep
        self._paused_until = float("-inf")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(interval={self.interval:.3f}s)"

    async def acquire(self) -> None:
        while (wait := self._paused_until - self._clock()) > 0:
            await self._sleep(wait)
        await self._bucket.acquire()

    async def cooldown(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + seconds)


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
