"""The retry decisions, in small pieces a caller can override and test alone.

:meth:`RetryPolicy.should_retry` says whether a classified answer is worth another attempt,
:meth:`RetryPolicy.delay` how long to wait first (:meth:`RetryPolicy.backoff` when the server
named no wait). The dispatcher asks them and does the waiting and the re-sending; whether a
request may have been executed is decided by the transport's classification, not here.

Only what is proven not to have been executed is retried by default: a 429 and a request
that never left (connect errors). ``retry_unknown=True`` adds answers that were lost after
sending, at the risk of a comment being applied twice.
"""

from __future__ import annotations

import random

from ._constants import DEFAULT_MAX_ATTEMPTS, RETRY_AFTER_CAP, RETRY_BASE_DELAY, RETRY_MAX_DELAY
from ._transport import Reply

__all__ = ["RetryPolicy"]


class RetryPolicy:
    """Bounded attempts with exponential backoff and full jitter.

    Subclass and override :meth:`should_retry` to change what is retried, :meth:`delay` or
    :meth:`backoff` to change the waits. ``max_attempts`` counts the first attempt too
    (``max_attempts=1`` never retries); the dispatcher stops there whatever
    :meth:`should_retry` says.
    """

    __slots__ = ("base_delay", "max_attempts", "max_delay", "retry_after_cap", "retry_unknown")

    def __init__(
        self,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        base_delay: float = RETRY_BASE_DELAY,
        max_delay: float = RETRY_MAX_DELAY,
        retry_after_cap: float = RETRY_AFTER_CAP,
        retry_unknown: bool = False,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.retry_after_cap = retry_after_cap
        self.retry_unknown = retry_unknown

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_attempts={self.max_attempts}, base_delay={self.base_delay}, "
            f"max_delay={self.max_delay}, retry_unknown={self.retry_unknown})"
        )

    def should_retry(self, reply: Reply, attempt: int) -> bool:
        """Whether attempt ``attempt`` (from 1), answered ``reply``, deserves another.

        A 429 and a request that never left are safe to repeat; an answer lost after
        sending only with ``retry_unknown``; anything else is final.
        """
        if attempt >= self.max_attempts:
            return False
        if reply is Reply.UNKNOWN:
            return self.retry_unknown
        return reply is Reply.RATE_LIMITED or reply is Reply.NOT_SENT

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1``: the server's ``Retry-After``
        (capped at ``retry_after_cap``) when it sent one, else :meth:`backoff`."""
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap)
        return self.backoff(attempt)

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` when the server named no wait:
        exponential with full jitter, so senders that failed together do not retry together.

        ``retry_after``, if given, wins (capped): kept for callers of the older signature.
        """
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap)
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(0.5 * ceiling, ceiling)
