"""The emulator's rate window: Calltouch's "5 requests per second per IP", read strictly.

Inferred (the doc is silent): a strict sliding window per client IP. A request is accepted
only if fewer than ``limit`` accepted requests arrived in the preceding ``period`` seconds, so
no half-open window ``[t, t + period)`` ever holds more than ``limit`` accepted requests.
Requests answered 429 do not count.
"""

from __future__ import annotations

from collections import deque

__all__ = ["RateWindow"]


class RateWindow:
    """Accepted arrival times per client IP over the last ``period`` seconds."""

    __slots__ = ("_limit", "_period", "_seen")

    def __init__(self, limit: int | None, period: float) -> None:
        self._limit = limit
        self._period = period
        self._seen: dict[str, deque[float]] = {}

    def admit(self, remote: str, now: float) -> bool:
        """Accept (and remember) this arrival unless ``limit`` were accepted in ``period``."""
        if self._limit is None:
            return True
        seen = self._seen.setdefault(remote, deque())
        # Arrivals at exactly now - period are outside: windows are half-open [t, t + period).
        while seen and seen[0] <= now - self._period:
            seen.popleft()
        if len(seen) >= self._limit:
            return False
        seen.append(now)
        return True

    def release(self, remote: str, now: float) -> None:
        """Forget an accepted arrival that ended up answered 429 (an injected one)."""
        seen = self._seen.get(remote)
        if seen and now in seen:
            seen.remove(now)

    def clear(self) -> None:
        """Forget every arrival (``CalltouchEmulator.reset``)."""
        self._seen.clear()
