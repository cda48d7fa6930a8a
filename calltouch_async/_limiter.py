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
:class:`SlidingWindowLimiter` is written here.

**One limiter per process and host.** Calltouch limits per IP, so :func:`shared_limiter` gives
every client of the process that talks to one host the same limiter, whatever its event loop
or thread. Its state sits behind a :class:`threading.Lock` (an :class:`asyncio.Lock` would
bind it to one loop). A caller *reserves* a start time under that lock and sleeps until it
on its own loop, so no loop ever has to wake another.

**When a request starts.** Taking a permit is not the moment Calltouch sees the request: a
new connection first costs a TCP and TLS handshake, a warm one nothing. So
:meth:`SlidingWindowLimiter.acquire` returns a :class:`Permit` that counts as starting "now"
until it is settled: :meth:`Permit.settle` with ``sent=True`` moves its start to when the
request's headers were written, ``sent=False`` frees its slot (the request never left).

**Adaptive margin.** A 429 that arrives while the limiter is not paused is one its log did
not expect (every start it allowed kept the window): the network spread arrivals more than
the margin. :meth:`SlidingWindowLimiter.cooldown` then widens the margin at once to
``max_margin`` for everyone sharing the limiter, holds it while 429s keep coming, and narrows
it back step by step once none has come for a while (steps in ``_constants.py``).
"""

from __future__ import annotations

import asyncio
import heapq
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Final, Protocol, runtime_checkable
from urllib.parse import urlsplit

from aiolimiter import AsyncLimiter

from ._constants import (
    ADAPTIVE_MARGIN_HOLD,
    ADAPTIVE_MARGIN_MAX,
    ADAPTIVE_MARGIN_STEP,
    ADAPTIVE_MARGIN_STEP_EVERY,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_RATE_MARGIN,
    RATE_LIMIT_PERIOD,
    RATE_LIMIT_REQUESTS,
)

__all__ = [
    "AdaptiveMargin",
    "Permit",
    "RateLimiter",
    "SlidingWindowLimiter",
    "SpacedLimiter",
    "canonical_host",
    "shared_limiter",
]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# A request's headers are written within the connect timeout of its permit, or never: the
# client bounds requests in flight below its pool size, so a permit never waits for a
# connection. A permit nobody settles counts as sent this long after it was granted.
_LONGEST_SEND: Final = DEFAULT_CONNECT_TIMEOUT + 1.0

# Permit states. WAITING: a reservation inside acquire(); PENDING: granted, not yet settled.
_WAITING: Final = 0
_PENDING: Final = 1
_SENT: Final = 2
_UNUSED: Final = 3
_STATE_NAMES: Final = ("waiting", "pending", "sent", "unused")


class Permit:
    """One request's start, as a limiter counts it.

    ``at`` is when the start counts: for a granted permit, when it was granted until it is
    settled; once settled as sent, when the request really went out.

    The client settles every permit exactly once, through :meth:`settle`: ``sent=True`` when
    the request's headers are written, ``sent=False`` when the exchange ended without the
    request leaving. Only the first call counts. Permits of :class:`SpacedLimiter` and the
    Redis limiter are counted from when they were granted and do not move.
    """

    __slots__ = ("_clock", "_lock", "at", "state")

    def __init__(
        self, clock: Clock, lock: threading.Lock | None = None, *, movable: bool = True
    ) -> None:
        self._clock = clock
        self._lock = lock
        self.at = clock()
        self.state = _PENDING if movable else _SENT

    def __repr__(self) -> str:
        return f"Permit(at={self.at:.3f}, {_STATE_NAMES[self.state]})"

    @property
    def pending(self) -> bool:
        """Granted, and not settled yet: it counts as starting "now"."""
        return self.state == _PENDING

    def settle(self, *, sent: bool) -> None:
        """The request went out now (``sent``), or ended without leaving (frees the slot)."""
        if self._lock is None:
            self._settle(sent)
            return
        with self._lock:  # another thread may be reading this permit's start
            self._settle(sent)

    def sent(self) -> None:
        """Shorthand for ``settle(sent=True)`` (for callers using a limiter directly)."""
        self.settle(sent=True)

    def _settle(self, sent: bool) -> None:
        if self.state == _PENDING:
            if sent:
                self.at = max(self.at, self._clock())
            self.state = _SENT if sent else _UNUSED

    def counted_at(self, now: float) -> float:
        """When this start counts at ``now``: its send time, or ``now`` while it may still go out.

        A reservation counts from its reserved time. A permit nobody settles counts as sent
        once a request could no longer be on its way (the connect timeout, plus a second), so
        it slows the limiter but cannot stall every client sharing it. A permit settled as not
        sent counts never (``-inf``).
        """
        if self.state == _SENT:
            return self.at
        if self.state == _UNUSED:
            return -math.inf
        return max(self.at, min(now, self.at + _LONGEST_SEND))


@runtime_checkable
class RateLimiter(Protocol):
    """What the client needs from a limiter."""

    async def acquire(self) -> Permit:
        """Wait until one more request may start now, and count it as started.

        Whoever sends must settle the permit (:meth:`Permit.settle`) once it is known whether
        the request left.
        """

    async def cooldown(self, seconds: float) -> None:
        """Let no request start for ``seconds`` (called after a 429)."""


class AdaptiveMargin:
    """The margin after the last unexpected 429, as a pure function of time.

    ``base`` while quiet. An unexpected 429 at ``t`` sets it to ``top``; from ``t + hold`` on
    it narrows by ``step`` every ``every`` seconds until it is back at ``base``. ``top <=
    base`` turns adaptation off. Not thread-safe by itself: its limiter guards it.
    """

    __slots__ = ("base", "every", "hold", "step", "top", "widened_at")

    def __init__(
        self,
        base: float,
        top: float = ADAPTIVE_MARGIN_MAX,
        *,
        hold: float = ADAPTIVE_MARGIN_HOLD,
        step: float = ADAPTIVE_MARGIN_STEP,
        every: float = ADAPTIVE_MARGIN_STEP_EVERY,
    ) -> None:
        if hold < 0 or step <= 0 or every <= 0:
            raise ValueError("hold must not be negative; step and every must be positive")
        self.base = base
        self.top = max(base, top)
        self.hold = hold
        self.step = step
        self.every = every
        self.widened_at = -math.inf

    def __repr__(self) -> str:
        return f"AdaptiveMargin(base={self.base:.0%}, top={self.top:.0%})"

    @property
    def lifetime(self) -> float:
        """Seconds after a widening until the margin is back at ``base``."""
        return self.hold + math.ceil((self.top - self.base) / self.step - 1e-9) * self.every

    def widen(self, now: float) -> None:
        self.widened_at = now

    def at(self, now: float) -> float:
        quiet = now - self.widened_at - self.hold
        if quiet < 0:
            return self.top
        if quiet >= self.lifetime:  # long quiet (or never widened)
            return self.base
        return max(self.base, self.top - (math.floor(quiet / self.every) + 1) * self.step)


class _Pausable:
    """What both in-process limiters share: settings, a clock, the pause after a 429."""

    __slots__ = ("_clock", "_lock", "_paused_until", "_sleep", "period", "rate")

    def __init__(
        self, rate: int, period: float, margin: float, clock: Clock, sleep: Sleep
    ) -> None:
        _check_limits(rate, period, margin)
        self.rate = rate
        self.period = period
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._paused_until = -math.inf

    async def cooldown(self, seconds: float) -> None:
        with self._lock:
            now = self._clock()
            if now >= self._paused_until:
                self._unexpected_429(now)
            self._paused_until = max(self._paused_until, now + seconds)

    def _unexpected_429(self, now: float) -> None:
        """A 429 came while not paused (limiters with an adaptive margin widen it)."""


class SlidingWindowLimiter(_Pausable):
    """At most ``rate`` starts in any window of ``period * (1 + margin)`` seconds.

    Safe to share between event loops and threads: the state is guarded by a thread lock, and
    each caller sleeps on its own loop until its reserved start. Waiters are served in the
    order they arrived (a waiter whose loop is slow to wake may be overtaken; it is never
    starved). A waiter cancelled while waiting takes no slot. ``clock`` and ``sleep`` can be
    replaced (tests use a fake clock); they must agree with each other.

    ``max_margin`` is the margin an unexpected 429 widens the window to (see
    :class:`AdaptiveMargin`); ``max_margin=margin`` keeps the margin fixed.
    """

    __slots__ = ("_permits", "margin")

    def __init__(
        self,
        rate: int = RATE_LIMIT_REQUESTS,
        period: float = RATE_LIMIT_PERIOD,
        *,
        margin: float = DEFAULT_RATE_MARGIN,
        max_margin: float = ADAPTIVE_MARGIN_MAX,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(rate, period, margin, clock, sleep)
        self.margin = AdaptiveMargin(margin, max_margin)
        # Reservations and granted permits, in the order they were reserved.
        self._permits: list[Permit] = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rate={self.rate}, window={self.window:.3f}s)"

    @property
    def window(self) -> float:
        """The window in force now: ``period * (1 + margin)``, the margin as adapted."""
        with self._lock:
            return self._window(self._clock())

    def _window(self, now: float) -> float:
        return self.period * (1.0 + self.margin.at(now))

    def _unexpected_429(self, now: float) -> None:
        self.margin.widen(now)

    async def acquire(self) -> Permit:
        permit = Permit(self._clock, self._lock)
        permit.state = _WAITING
        try:
            while True:
                with self._lock:
                    now = self._clock()
                    wait = self._reserve(permit, now)
                    if wait <= 0:
                        permit.at, permit.state = now, _PENDING
                        return permit
                await self._sleep(wait)
        except BaseException:
            with self._lock:  # cancelled while waiting: the slot goes to the others
                if permit in self._permits:
                    self._permits.remove(permit)
            raise

    def _reserve(self, permit: Permit, now: float) -> float:
        """Seconds until ``permit`` may start; it holds that start as a reservation meanwhile.

        Counted against it: every granted permit, and the reservations made before it (a
        later one must not push it back). It also never starts before an earlier reservation,
        which keeps the line in order.
        """
        longest = self.period * (1.0 + self.margin.top)
        self._permits = [p for p in self._permits if p.counted_at(now) > now - longest]
        if permit not in self._permits:
            self._permits.append(permit)
        earliest = max(now, self._paused_until)
        counted: list[float] = []
        ahead = True
        for other in self._permits:
            if other is permit:
                ahead = False
            elif ahead or other.state != _WAITING:
                at = other.counted_at(now)
                counted.append(at)
                if other.state == _WAITING:
                    earliest = max(earliest, at)
        if len(counted) >= self.rate:
            earliest = max(earliest, heapq.nlargest(self.rate, counted)[-1] + self._window(now))
        permit.at = earliest
        return earliest - now


class SpacedLimiter(_Pausable):
    """One start every ``period * (1 + margin) / rate`` seconds (aiolimiter underneath).

    aiolimiter's bucket binds to the event loop it first runs on, so keep one per loop; its
    permits count from when they were granted and its margin does not adapt.
    """

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

    async def acquire(self) -> Permit:
        while True:
            while (wait := self._paused_until - self._clock()) > 0:
                await self._sleep(wait)
            await self._bucket.acquire()
            # A 429 may have paused everyone while this waited in the bucket: then wait out
            # the pause and queue again, so the waiters do not all start when it ends.
            if self._paused_until <= self._clock():
                return Permit(self._clock, movable=False)


def _check_limits(rate: int, period: float, margin: float) -> None:
    if rate < 1:
        raise ValueError(f"rate must be at least 1, got {rate}")
    if period <= 0:
        raise ValueError(f"period must be positive, got {period}")
    if margin < 0:
        raise ValueError(f"margin must not be negative, got {margin}")


_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def canonical_host(base_url: str) -> str:
    """``base_url``'s host as the shared limiters key it: lowercase, without a default port.

    ``https://API.Calltouch.ru:443/`` and ``https://api.calltouch.ru`` give
    ``api.calltouch.ru``; a bare host (no scheme) is taken as is, lowercased.
    """
    if "://" not in base_url:
        return base_url.strip().lower()
    parts = urlsplit(base_url.strip())
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is None or port == _DEFAULT_PORTS.get(parts.scheme.lower()):
        return host
    return f"{host}:{port}"


# One limiter per API host for the whole process: Calltouch limits per IP, so every client
# of this process, on any loop or thread, that talks to the same host draws on one budget.
_shared: dict[str, SlidingWindowLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(base_url: str) -> SlidingWindowLimiter:
    """The process-wide default limiter for ``base_url``'s host (see :func:`canonical_host`).

    Created on first use (never at import), then shared by every client of this process on
    every event loop and thread.
    """
    host = canonical_host(base_url)
    with _shared_lock:
        limiter = _shared.get(host)
        if limiter is None:
            limiter = _shared[host] = SlidingWindowLimiter()
        return limiter
