"""One chunk of valid leads -> requests -> one honest result per lead.

:class:`Dispatcher` is the one place a chunk becomes requests (one, or a few more when
Calltouch's validation names some of its leads): permits, attempts, retries, violation
isolation, and the status every lead ends in.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import math
import re
from collections.abc import Callable
from typing import Final, TypeAlias

from ._errors import AuthError, CalltouchError, RedirectError
from ._limiter import RateLimiter
from ._models import CommentResult, CommentStatus, LeadComment, Violation, encode_request
from ._retry import RetryPolicy
from ._transport import Attempt, Exchange, Reply, Transport

__all__ = ["Dispatcher", "Item", "OnSent", "invalid_result"]

log = logging.getLogger("calltouch_async")

#: A lead with its position in the caller's input.
Item: TypeAlias = tuple[int, LeadComment]
#: Told which leads a request that may have left was carrying.
OnSent: TypeAlias = Callable[[list[Item]], None]

_LEAD_PATH: Final = re.compile(r"comments\[(\d+)\]")
_RETRYABLE: Final = frozenset({Reply.RATE_LIMITED, Reply.NOT_SENT})


def invalid_result(index: int, lead: LeadComment, problems: str) -> CommentResult:
    return CommentResult(index=index, lead=lead, status=CommentStatus.INVALID, error=problems)


class Dispatcher:
    """Sends chunks of valid leads and turns every lead into exactly one result.

    Per request: take a permit, POST, and retry what provably did not run (429, connect
    errors) with backoff, all under one deadline of ``timeout`` seconds. When Calltouch's
    validation names leads, they are ``rejected`` and the rest re-sent; when it names none,
    the chunk is halved until the culprits are found, at most ``4 * ceil(log2(n))`` extra
    requests for a chunk of ``n`` (about 14 for one bad lead among 100).
    """

    __slots__ = ("_limiter", "_retry", "_sending", "_site_id", "_timeout", "_transport")

    def __init__(
        self,
        transport: Transport,
        limiter: RateLimiter | None,
        retry: RetryPolicy,
        timeout: float,
        site_id: int | str,
        max_in_flight: int,
    ) -> None:
        self._sending = asyncio.Semaphore(max_in_flight)
        self._transport = transport
        self._limiter = limiter
        self._retry = retry
        self._timeout = timeout
        self._site_id = site_id

    async def run(self, items: list[Item], on_sent: OnSent | None = None) -> list[CommentResult]:
        """One result per item (any order). Raises :class:`AuthError` on bad credentials.

        ``on_sent(part)`` is called when a request carrying ``part`` may have left.
        """
        results: list[CommentResult] = []
        parts = [items]
        split_budget = 4 * math.ceil(math.log2(max(len(items), 2)))
        while parts:
            part = parts.pop()
            exchange = await self._exchange(part, on_sent)
            if exchange.reply is not Reply.VIOLATIONS:
                results.extend(self._results(part, exchange))
                continue
            rejected, rest = _separate(part, exchange.violations)
            results.extend(rejected)
            if rejected:
                parts.extend([rest] if rest else [])
            elif len(part) == 1:
                results.append(_rejected(part[0], _messages(exchange.violations)))
            elif split_budget >= 2:
                split_budget -= 2
                middle = len(part) // 2
                parts += [part[middle:], part[:middle]]
            else:
                reason = f"validation error not isolated: {_messages(exchange.violations)}"
                results.extend(_with_status(part, CommentStatus.FAILED, reason))
        return results

    async def _exchange(self, part: list[Item], on_sent: OnSent | None) -> Exchange:
        body = encode_request([lead for _, lead in part])
        notify = None if on_sent is None else functools.partial(on_sent, part)
        maybe_applied = False
        attempt = Attempt(None)
        try:
            # The deadline starts once the request has a slot to go out in (see _attempt).
            async with asyncio.timeout(None) as deadline:
                for number in itertools.count(1):
                    attempt = Attempt(None, notify)
                    exchange = await self._attempt(body, attempt, deadline)
                    attempt = Attempt(None)  # answered: nothing is in flight until the next
                    maybe_applied |= exchange.reply is Reply.UNKNOWN
                    if not self._should_retry(exchange, number):
                        break
                    await self._pause(exchange, number, len(part))
        except TimeoutError:
            sent = maybe_applied or attempt.may_be_sent
            reply = Reply.UNKNOWN if sent else Reply.FAILED
            return Exchange(reply, detail=f"no answer within the {self._timeout:g} s deadline")
        if maybe_applied and exchange.reply not in (Reply.OK, Reply.UNKNOWN):
            detail = f"an earlier attempt was lost; then {exchange.detail}"
            return Exchange(Reply.UNKNOWN, exchange.status, detail)
        return exchange

    async def _attempt(
        self, body: bytes, attempt: Attempt, deadline: asyncio.Timeout
    ) -> Exchange:
        """One permit and one POST, within the client-wide bound on requests in flight.

        The bound keeps a permit from ever waiting for a pooled connection (the pool is
        larger than the bound): a start is counted only for a request ready to go. Waiting
        for the bound is not part of the request's deadline, which starts here.
        """
        async with self._sending:
            if deadline.when() is None:
                deadline.reschedule(asyncio.get_running_loop().time() + self._timeout)
            try:
                if self._limiter is not None:
                    attempt.permit = await self._limiter.acquire()
            except CalltouchError as exc:  # a shared limiter's backend is down: not sent
                return Exchange(Reply.FAILED, detail=str(exc))
            return await self._transport.post(body, attempt)

    def _should_retry(self, exchange: Exchange, attempt: int) -> bool:
        if attempt >= self._retry.max_attempts:
            return False
        if exchange.reply is Reply.UNKNOWN:
            return self._retry.retry_unknown
        return exchange.reply in _RETRYABLE

    async def _pause(self, exchange: Exchange, attempt: int, leads: int) -> None:
        delay = self._retry.backoff(attempt, exchange.retry_after)
        if exchange.reply is Reply.RATE_LIMITED and self._limiter is not None:
            # Everyone sharing the limiter backs off, not just this request.
            try:
                await self._limiter.cooldown(delay)
            except CalltouchError as exc:  # the next acquire() will fail this request
                log.warning("could not share the pause after a 429: %s", exc)
        log.warning(
            "retrying a request of %d leads in %.2f s (attempt %d of %d): %s",
            leads, delay, attempt + 1, self._retry.max_attempts, exchange.detail,
        )
        await asyncio.sleep(delay)

    def _results(self, part: list[Item], exchange: Exchange) -> list[CommentResult]:
        reply = exchange.reply
        if reply is Reply.OK and len(exchange.outcomes) == len(part):
            return [
                CommentResult(
                    index=index, lead=lead,
                    status=CommentStatus.COMMENTED if o.commented else CommentStatus.NOT_COMMENTED,
                    call_info=o.call_info, request_info=o.request_info, error=o.error,
                )
                for (index, lead), o in zip(part, exchange.outcomes, strict=True)
            ]
        if reply is Reply.AUTH:
            raise AuthError(self._site_id, exchange.status, exchange.detail)
        if reply is Reply.REDIRECT:
            raise RedirectError(exchange.status, exchange.location)
        if reply is Reply.OK:
            detail = f"answer held {len(exchange.outcomes)} results for {len(part)} leads"
            reply, exchange = Reply.UNKNOWN, Exchange(Reply.UNKNOWN, exchange.status, detail)
        if reply is Reply.UNKNOWN:
            log.warning("outcome unknown for %d leads: %s", len(part), exchange.detail)
            return _with_status(part, CommentStatus.UNKNOWN, exchange.detail)
        detail = exchange.detail
        if reply in _RETRYABLE:
            detail = f"gave up after {self._retry.max_attempts} attempts: {detail}"
        return _with_status(part, CommentStatus.FAILED, detail)


def _with_status(part: list[Item], status: CommentStatus, error: str) -> list[CommentResult]:
    return [CommentResult(index=i, lead=lead, status=status, error=error) for i, lead in part]


def _rejected(item: Item, message: str) -> CommentResult:
    index, lead = item
    return CommentResult(index=index, lead=lead, status=CommentStatus.REJECTED, error=message)


def _messages(violations: list[Violation]) -> str:
    return "; ".join(f"{v.field_path}: {v.message}" for v in violations) or "validation error"


def _separate(
    part: list[Item], violations: list[Violation]
) -> tuple[list[CommentResult], list[Item]]:
    """Leads the violations name (as ``rejected``), and the others."""
    named: dict[int, list[str]] = {}
    for violation in violations:
        match = _LEAD_PATH.match(violation.field_path)
        if match and int(match.group(1)) < len(part):
            position = int(match.group(1))
            index = part[position][0]
            # Rewrite the path to the caller's index: that is the lead they know.
            path = f"comments[{index}]" + violation.field_path[match.end():]
            named.setdefault(position, []).append(f"{path}: {violation.message}")
    rejected = [_rejected(part[p], "; ".join(m)) for p, m in sorted(named.items())]
    rest = [item for p, item in enumerate(part) if p not in named]
    return rejected, rest
