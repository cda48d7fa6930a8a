"""One rate limit shared by every process and host that uses the same Redis (or Valkey).

Calltouch counts requests per client IP. Several worker processes (gunicorn/uvicorn workers,
Celery/arq/taskiq workers, pods behind one NAT address) each with its own in-process limiter
multiply the rate and get 429s. :class:`RedisRateLimiter` keeps the budget in Redis, so they
all draw on one::

    import redis.asyncio as redis
    from calltouch_async import CalltouchClient
    from calltouch_async.redis_limiter import RedisRateLimiter

    r = redis.Redis.from_url("redis://localhost:6379/0")
    async with CalltouchClient(site_id, token, rate_limiter=RedisRateLimiter(r)) as client:
        ...

Needs the optional extra: ``pip install 'calltouch-async[redis]'``, and Redis 5 or later or
Valkey (the script reads ``TIME`` before writing, which needs scripts replicated by effects,
the default since Redis 5).

How a start is granted
----------------------
One Lua script per :meth:`~RedisRateLimiter.acquire`, run atomically by the server:

1. ``now`` is read with ``TIME`` on the Redis server, so the clocks of the worker hosts never
   matter (only the server's; a step back of its clock delays starts, it never over-admits).
2. A sorted set holds the last ``rate`` *reservations*: start times, possibly in the future.
   The new reservation is the earliest time ``s`` with ``s >= now``, ``s >=`` the shared pause
   (see :meth:`~RedisRateLimiter.cooldown`), ``s >=`` the latest reservation (so reservations
   never go back in time) and ``s >=`` the ``rate``-th latest reservation ``+ window``, where
   ``window = period * (1 + margin)``. Reservations are thus sorted and every ``rate + 1``
   consecutive ones span at least ``window``: at most ``rate`` starts in any window.
3. The script stores ``s``, drops what can no longer constrain anything (reservations older
   than ``now - window``, all but the last ``rate``), sets ``PEXPIRE`` on its keys and returns
   ``s - now`` in microseconds.

The caller then sleeps that long on its own monotonic clock and starts: no polling, one round
trip per request. The answer reaches the caller after the server read ``now``, so the sleep
ends no earlier than the slot; differences in network latency between workers are what the
margin absorbs.

Keys, all under one hash tag (one slot on Redis Cluster), namespaced per API host::

    {calltouch:<host>:<key>}:starts   sorted set: score = reserved start, server time in µs
    {calltouch:<host>:<key>}:pause    string: server time in µs before which nothing starts
    {calltouch:<host>:<key>}:margin   string: server time in µs of the last unexpected 429

All expire on their own once they no longer matter.

Adaptive margin
---------------
A 429 that comes while no pause is in force was not expected: the network spread the
arrivals more than the margin. :meth:`~RedisRateLimiter.cooldown` then records the server
time in the ``:margin`` key, and every acquire script, in every process, widens the window to
``max_margin`` for as long as the in-process limiter does, then narrows it back step by step
(the steps are the in-process limiter's, from ``_constants.py``). The key expires once the
margin is back at its base.

Failure and cancellation
------------------------
* Redis unreachable (connection refused or lost, timeouts, a server still loading, a replica
  that became read-only in a failover): the call is retried with a bounded backoff for up to
  ``unavailable_timeout`` seconds, then :class:`~calltouch_async.RateLimiterUnavailableError`
  is raised. No request starts without a reservation and there is no fall-back to an unshared
  limiter: while Redis is down, nothing is sent. Wrong Redis credentials raise at once.
* A reply lost after the script ran (or an ``acquire`` cancelled while waiting for it) may
  leave a reservation nobody uses; so does an ``acquire`` cancelled while it sleeps until its
  slot. An unused reservation only costs throughput (one slot in that window), never safety.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

try:
    from redis import exceptions as _redis_errors
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.commands.core import AsyncScript
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "calltouch_async.redis_limiter needs the 'redis' package: "
        "pip install 'calltouch-async[redis]'"
    ) from exc

from ._constants import (
    ADAPTIVE_MARGIN_HOLD,
    ADAPTIVE_MARGIN_MAX,
    ADAPTIVE_MARGIN_STEP,
    ADAPTIVE_MARGIN_STEP_EVERY,
    DEFAULT_BASE_URL,
    DEFAULT_RATE_MARGIN,
    RATE_LIMIT_PERIOD,
    RATE_LIMIT_REQUESTS,
)
from ._errors import RateLimiterUnavailableError
from ._limiter import AdaptiveMargin, Permit, _check_limits
from ._redis_budget import RedisDailyCounter

__all__ = [
    "DEFAULT_UNAVAILABLE_TIMEOUT",
    "RedisRateLimiter",
    "Reservation",
]

#: Seconds an ``acquire``/``cooldown`` keeps retrying an unreachable Redis before raising.
DEFAULT_UNAVAILABLE_TIMEOUT = 5.0
#: Backoff between attempts while Redis is unreachable: doubles from the first to the last.
_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 1.0
#: No new attempt is started with less than this much time left before the deadline.
_MIN_ATTEMPT = 0.05

_DEFAULT_HOST: Final = DEFAULT_BASE_URL.removeprefix("https://")

# Errors that mean "Redis cannot answer now": worth retrying until the deadline.
# redis-py's ConnectionError covers refused/lost connections, BusyLoadingError and a full pool;
# ReadOnlyError, TryAgainError and ClusterDownError happen during failovers and resharding.
_UNAVAILABLE: Final = (
    _redis_errors.ConnectionError,
    _redis_errors.TimeoutError,
    _redis_errors.ReadOnlyError,
    _redis_errors.TryAgainError,
    _redis_errors.ClusterDownError,
    OSError,  # includes the builtin TimeoutError raised by the per-call deadline
)
# Retrying cannot fix wrong credentials or missing permissions.
_REFUSED: Final = (
    _redis_errors.AuthenticationError,
    _redis_errors.AuthorizationError,
    _redis_errors.NoPermissionError,
)

#: KEYS[1] reservations (sorted set), KEYS[2] pause (string), KEYS[3] when the margin was
#: last widened (string), all holding server time in µs.
#: ARGV[1] rate, ARGV[2] base window in µs, ARGV[3] a unique member name for this reservation,
#: ARGV[4] "now" in µs overriding TIME: empty in production, set only by tests,
#: ARGV[5] widest window in µs, ARGV[6] hold in µs, ARGV[7] window step in µs, ARGV[8] step
#: period in µs (the adaptive margin: widest for `hold` after a widening, then one step
#: narrower every step period down to the base window).
#: Returns {wait µs, reserved start µs, now µs, window µs}.
_ACQUIRE_LUA: Final = """
local rate = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local now = tonumber(ARGV[4])
local widest = math.max(tonumber(ARGV[5]), window)
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local widened = tonumber(redis.call('GET', KEYS[3]))
if widened then
  local quiet = now - widened - tonumber(ARGV[6])
  if quiet < 0 then
    window = widest
  else
    local steps = math.floor(quiet / tonumber(ARGV[8])) + 1
    window = math.max(window, widest - steps * tonumber(ARGV[7]))
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - widest)
local slot = now
local paused = tonumber(redis.call('GET', KEYS[2]))
if paused and paused > slot then slot = paused end
local n = redis.call('ZCARD', KEYS[1])
if n > 0 then
  local last = tonumber(redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2])
  if last > slot then slot = last end
  if n >= rate then
    local kth = tonumber(redis.call('ZRANGE', KEYS[1], -rate, -rate, 'WITHSCORES')[2])
    if kth + window > slot then slot = kth + window end
  end
end
redis.call('ZADD', KEYS[1], slot, ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(rate + 1))
redis.call('PEXPIRE', KEYS[1], math.ceil((slot - now + widest) / 1000) + 1)
return {slot - now, slot, now, window}
"""

#: KEYS[1] pause (string, server time in µs), KEYS[2] when the margin was last widened.
#: ARGV[1] pause length in µs, ARGV[2] "now" in µs overriding TIME (tests only), ARGV[3] how
#: long a widening lasts in µs (0: the margin does not adapt). Never shortens a longer pause
#: already set. A 429 that comes while no pause is in force was not expected: it widens the
#: margin for every process (the key expires once the margin is back at its base).
#: Returns {paused until µs, now µs}.
_COOLDOWN_LUA: Final = """
local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local pause_end = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]))
local lasts = tonumber(ARGV[3])
if lasts > 0 and not (current and current > now) then
  redis.call('SET', KEYS[2], now, 'PX', math.ceil(lasts / 1000) + 1)
end
if current and current >= pause_end then
  return {current, now}
end
redis.call('SET', KEYS[1], pause_end, 'PX', math.ceil((pause_end - now) / 1000) + 1)
return {pause_end, now}
"""


@dataclass(frozen=True, slots=True)
class Reservation:
    """A start slot granted by the acquire script, in the Redis server's time (µs)."""

    now_us: int
    """Server time when the script ran."""
    slot_us: int
    """Server time at which the request may start."""
    window_us: int = 0
    """The window in force when the script ran (wider after an unexpected 429)."""

    @property
    def wait(self) -> float:
        """Seconds to sleep before starting: ``(slot_us - now_us) / 1e6``, never negative."""
        return max(0, self.slot_us - self.now_us) / 1_000_000


class RedisRateLimiter:
    """At most ``rate`` starts in any ``period * (1 + margin)`` seconds, shared through Redis.

    Every limiter built on the same Redis with the same ``host`` and ``key`` shares one budget,
    whatever process or machine it runs in. Implements the
    :class:`~calltouch_async._limiter.RateLimiter` protocol.

    :param redis: an async client, ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster``
        (all keys share one hash tag, so one slot); the limiter never closes it.
    :param key: names the budget; use different keys for budgets that must not be shared.
    :param host: the API host the budget is for (Calltouch limits per IP and host), part of
        every key name; must match the client's ``base_url`` host if that is not the default.
    :param rate: starts allowed per window.
    :param period: the server's window, seconds.
    :param margin: extra window length as a fraction of ``period`` (absorbs network jitter
        and differences in latency between workers and Redis).
    :param max_margin: the margin an unexpected 429 (one that came while no pause was in
        force) widens the window to, for every process sharing the budget, narrowing back
        to ``margin`` as in the in-process limiter; ``max_margin=margin`` turns that off.
    :param unavailable_timeout: seconds to keep retrying while Redis cannot be reached before
        :class:`~calltouch_async.RateLimiterUnavailableError` is raised.
    """

    __slots__ = (
        "_acquire_script",
        "_cooldown_script",
        "_margin_key",
        "_pause_key",
        "_redis",
        "_starts_key",
        "_widening",
        "host",
        "key",
        "rate",
        "unavailable_timeout",
        "window",
        "window_us",
    )

    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        key: str = "calltouch",
        host: str = _DEFAULT_HOST,
        rate: int = RATE_LIMIT_REQUESTS,
        period: float = RATE_LIMIT_PERIOD,
        margin: float = DEFAULT_RATE_MARGIN,
        max_margin: float = ADAPTIVE_MARGIN_MAX,
        unavailable_timeout: float = DEFAULT_UNAVAILABLE_TIMEOUT,
    ) -> None:
        _check_limits(rate, period, margin)
        for name, value in (("key", key), ("host", host)):
            if not value or "{" in value or "}" in value:
                raise ValueError(f"{name} must be non-empty and contain no braces, got {value!r}")
        if unavailable_timeout <= 0:
            raise ValueError(f"unavailable_timeout must be positive, got {unavailable_timeout}")
        self.key = key
        self.host = host
        self.rate = rate
        #: Window in microseconds, rounded up (rounding may only make the limiter stricter).
        self.window_us = math.ceil(period * (1.0 + margin) * 1_000_000)
        self.window = self.window_us / 1_000_000
        adaptive = AdaptiveMargin(margin, max_margin)
        # [widest window, hold, window step, step period, how long a widening lasts], in µs.
        self._widening = [
            max(self.window_us, math.ceil(period * (1.0 + adaptive.top) * 1_000_000)),
            round(ADAPTIVE_MARGIN_HOLD * 1_000_000),
            max(1, round(period * ADAPTIVE_MARGIN_STEP * 1_000_000)),
            round(ADAPTIVE_MARGIN_STEP_EVERY * 1_000_000),
            round(adaptive.lifetime * 1_000_000) if adaptive.top > margin else 0,
        ]
        self.unavailable_timeout = unavailable_timeout
        tag = "{calltouch:" + host + ":" + key + "}"
        self._starts_key = tag + ":starts"
        self._pause_key = tag + ":pause"
        self._margin_key = tag + ":margin"
        self._redis = redis
        # register_script computes the SHA once; each call is EVALSHA, and redis-py loads the
        # script again on NOSCRIPT (a restarted or different server).
        self._acquire_script: AsyncScript = redis.register_script(_ACQUIRE_LUA)
        self._cooldown_script: AsyncScript = redis.register_script(_COOLDOWN_LUA)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(host={self.host!r}, key={self.key!r}, rate={self.rate}, "
            f"window={self.window:.3f}s)"
        )

    @property
    def keys(self) -> tuple[str, str, str]:
        """The Redis keys used: ``(reservations, pause, margin)``; they share one hash tag."""
        return (self._starts_key, self._pause_key, self._margin_key)

    async def acquire(self) -> Permit:
        """Reserve the next start slot in Redis, then sleep until it (on the loop's clock).

        Returns a permit counted from its reserved slot (it does not move when settled).
        Raises :class:`~calltouch_async.RateLimiterUnavailableError` if Redis stays
        unreachable for ``unavailable_timeout`` seconds. Cancelled while sleeping, the
        reservation stays used (that costs one slot of throughput, never safety).
        """
        loop = asyncio.get_running_loop()
        reservation = await self.reserve()
        if reservation.wait > 0:
            await asyncio.sleep(reservation.wait)
        return Permit(loop.time, movable=False)

    async def reserve(self, *, now_us: int | None = None) -> Reservation:
        """Reserve the next start slot and return it, without sleeping.

        The caller must not start before ``reservation.wait`` seconds have passed (measured
        from when this returns). ``now_us`` replaces the server's ``TIME`` and exists for
        tests of the slot computation only: a budget must see either real time or injected
        time, never both.
        """
        args: list[str | int] = [
            self.rate, self.window_us, uuid.uuid4().hex, _now_arg(now_us), *self._widening[:4]
        ]
        keys = [self._starts_key, self._pause_key, self._margin_key]
        _wait_us, slot_us, server_now_us, window_us = await self._call(
            self._acquire_script, keys, args, "acquire"
        )
        return Reservation(now_us=server_now_us, slot_us=slot_us, window_us=window_us)

    async def cooldown(self, seconds: float, *, now_us: int | None = None) -> None:
        """Let no process start a request for ``seconds`` from now (server time).

        Called after a 429. Never shortens a longer pause already in force. A 429 that comes
        while no pause is in force widens the margin for every process sharing the budget.
        ``now_us`` replaces the server's ``TIME`` (tests only, as in :meth:`reserve`).
        """
        pause_us = max(0, round(seconds * 1_000_000))
        args = [pause_us, _now_arg(now_us), self._widening[4]]
        await self._call(
            self._cooldown_script, [self._pause_key, self._margin_key], args, "cooldown"
        )

    async def _call(
        self,
        script: AsyncScript,
        keys: Sequence[str],
        args: Sequence[str | int],
        action: str,
    ) -> list[int]:
        """Run ``script``, retrying while Redis is unreachable until the deadline."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.unavailable_timeout
        delay = _BACKOFF_FIRST
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    reply = await script(keys=keys, args=args)
                return [int(value) for value in reply]
            except _REFUSED as exc:
                raise RateLimiterUnavailableError(
                    f"Redis refused the rate limiter's {action} for {self._where()} "
                    f"({type(exc).__name__}: check the Redis credentials and ACL); "
                    "no request was started"
                ) from exc
            except _UNAVAILABLE as exc:
                remaining = deadline - loop.time()
                if remaining < _MIN_ATTEMPT:
                    raise RateLimiterUnavailableError(
                        f"Redis unreachable for {loop.time() - started:.1f}s during the rate "
                        f"limiter's {action} for {self._where()} ({type(exc).__name__}); "
                        "no request was started"
                    ) from exc
            # Leave the last attempt at least half of what remains.
            await asyncio.sleep(min(delay, remaining / 2))
            delay = min(delay * 2, _BACKOFF_MAX)

    def _where(self) -> str:
        return f"host {self.host!r}, key {self.key!r}"

    # --- the daily request budget (issue 16): kept beside the rate, shared the same way ---

    def daily_counter(self) -> RedisDailyCounter:
        """The per-day request count behind ``CalltouchClient(daily_request_budget=...)``:
        in this limiter's Redis, under its hash tag, so every process sharing the rate
        limit shares the budget too (see :mod:`calltouch_async._redis_budget`)."""
        tag = "{calltouch:" + self.host + ":" + self.key + "}"
        return RedisDailyCounter(self._redis, tag, self.unavailable_timeout)


def _now_arg(now_us: int | None) -> str | int:
    if now_us is None:
        return ""
    if now_us < 0:
        raise ValueError(f"now_us must not be negative, got {now_us}")
    return int(now_us)
