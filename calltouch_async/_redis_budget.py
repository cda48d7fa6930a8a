"""The daily request budget shared through Redis: one count per site id and day.

:meth:`RedisRateLimiter.daily_counter <calltouch_async.redis_limiter.RedisRateLimiter>`
returns a :class:`RedisDailyCounter` on the limiter's own Redis, so every process of a
project that shares the rate limit also shares the budget. The key lives under the
limiter's hash tag (one slot on Redis Cluster) and names the day::

    {calltouch:<host>:<key>}:budget:<site id>:<YYYY-MM-DD>   integer, expires on its own

Each :meth:`~RedisDailyCounter.take` is one atomic script: read the count, refuse at the
limit, otherwise increment it and push its expiry to the end of the day plus an hour (so a
host whose clock is a little behind still finds it). Keys of past days expire; nothing needs
cleaning.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Final

from ._errors import RateLimiterUnavailableError

__all__ = ["RedisDailyCounter"]

#: Seconds a day's key outlives the end of the day.
_GRACE: Final = 3600
_BACKOFF_FIRST: Final = 0.05
_BACKOFF_MAX: Final = 1.0

#: KEYS[1] the day's count. ARGV[1] limit, ARGV[2] seconds to keep it. Returns the new count,
#: or -1 when the limit is reached (nothing changed).
_TAKE_LUA: Final = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then return -1 end
used = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return used
"""

#: KEYS[1] the day's count: one less, never below zero (the key may have expired).
_GIVE_BACK_LUA: Final = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used > 0 then redis.call('DECR', KEYS[1]) end
return used
"""


class RedisDailyCounter:
    """Per-day request counts in Redis, as :class:`~calltouch_async._telemetry.DailyCounter`.

    :param redis: a ``redis.asyncio.Redis`` or ``RedisCluster`` (never closed here).
    :param tag: the key prefix, a hash tag such as ``{calltouch:api.calltouch.ru:calltouch}``.
    :param unavailable_timeout: seconds to keep retrying while Redis cannot be reached;
        then :class:`~calltouch_async.RateLimiterUnavailableError` (nothing is sent).
    """

    __slots__ = ("_give_back", "_redis_errors", "_take", "tag", "unavailable_timeout")

    def __init__(self, redis: Any, tag: str, unavailable_timeout: float) -> None:
        from redis import exceptions  # the caller already uses redis: this costs nothing

        self.tag = tag
        self.unavailable_timeout = unavailable_timeout
        self._take = redis.register_script(_TAKE_LUA)
        self._give_back = redis.register_script(_GIVE_BACK_LUA)
        self._redis_errors = (exceptions.RedisError, OSError)

    def __repr__(self) -> str:
        return f"RedisDailyCounter(tag={self.tag!r})"

    def key(self, site_id: str, day: str) -> str:
        return f"{self.tag}:budget:{site_id}:{day}"

    async def take(self, site_id: str, day: str, limit: int, ttl: float) -> int | None:
        """Count one request unless ``limit`` are counted: the new count, or None."""
        keep = math.ceil(max(ttl, 0.0)) + _GRACE
        used = await self._run(self._take, self.key(site_id, day), [limit, keep])
        return None if used < 0 else used

    async def give_back(self, site_id: str, day: str) -> None:
        """Undo one :meth:`take` whose request never left."""
        await self._run(self._give_back, self.key(site_id, day), [])

    async def _run(self, script: Any, key: str, args: list[int]) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.unavailable_timeout
        delay = _BACKOFF_FIRST
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    return int(await script(keys=[key], args=args))
            except self._redis_errors as exc:
                remaining = deadline - loop.time()
                if remaining <= _BACKOFF_FIRST:
                    raise RateLimiterUnavailableError(
                        f"Redis unavailable for the shared daily request budget "
                        f"({type(exc).__name__}); no request was started"
                    ) from exc
            await asyncio.sleep(min(delay, remaining / 2))
            delay = min(delay * 2, _BACKOFF_MAX)
