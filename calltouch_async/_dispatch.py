"""One chunk of valid leads -> requests -> one honest result per lead.

:class:`Dispatcher` is the one place a chunk becomes requests (one, or a few more when
Calltouch's validation names some of its leads): permits, attempts, retries, violation
isolation, and the status every lead ends in. :class:`Flight` is how the stream that
launched a chunk stops it when the client closes.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
from typing import Final, TypeAlias

from ._errors import AuthError, CalltouchError, RedirectError
from ._limiter import RateLimiter
from ._models import (
    CommentResult,
    CommentStatus,
    LeadComment,
    LeadOutcome,
    Violation,
    encode_request,
)
from ._retry import RetryPolicy
from ._telemetry import Telemetry
from ._transport import Attempt, Exchange, Reply, Transport

__all__ = ["CLIENT_CLOSED", "NOT_SENT_CLOSED", "Dispatcher", "Flight", "Item", "with_status"]

#: A lead with its position in the caller's input.
Item: TypeAlias = tuple[int, LeadComment]

#: Why a stream stops sending when the client closes (see :attr:`Flight.stopping`).
CLIENT_CLOSED: Final = "the client closed"
#: The error of a lead whose request was never written because the client closed.
NOT_SENT_CLOSED: Final = f"not sent: {CLIENT_CLOSED}"
_LEAD_PATH: Final = re.compile(r"comments\[(\d+)\]\.?")


class Flight:
    """One chunk's run as its stream sees it.

    ``stopping`` (set by the stream when the client closes, or after a fatal answer): why
    nothing more is sent; a cancellation that arrives while it is set means "stop now", and
    the leads end ``failed`` (never written) or ``unknown`` (written) instead of the run
    raising. ``posting`` is true while a request may be on the wire: the stream lets such a
    run finish rather than cancelling it at once. ``started``: the run's task has begun (a
    task cancelled before its first step would never report its leads, so it is not).
    ``cut``: the stream itself cancelled the run; only that cancellation becomes results
    (``comment()`` runs in its caller's task, whose own cancellation must propagate).
    """

    __slots__ = ("cut", "posting", "started", "stopping")

    def __init__(self) -> None:
        self.cut = False
        self.posting = False
        self.started = False
        self.stopping: str | None = None


def _not_sent(reason: str) -> str:
    return f"not sent: {reason}"


def _unanswered(reason: str) -> str:
    return f"unanswered when sending stopped ({reason}): it may or may not be applied"


class Dispatcher:
    """Sends chunks of valid leads and turns every lead into exactly one result.

    Per request: take a permit, POST, and retry what the :class:`RetryPolicy` allows (by
    default what provably did not run: 429, connect errors) with its delays, all under one
    deadline of ``timeout`` seconds. When Calltouch's validation names leads, they are
    ``rejected`` and the rest re-sent; when it names none, the chunk is halved until the
    culprits are found. Both kinds of extra request share one budget of
    ``4 * ceil(log2(n))`` for a chunk of ``n`` (28 for 100); leads left when it runs out
    are ``failed``.
    """

    __slots__ = (
        "_limiter", "_refused", "_retry", "_sending", "_site_id", "_timeout", "_transport",
        "telemetry",
    )

    def __init__(
        self,
        transport: Transport,
        limiter: RateLimiter | None,
        retry: RetryPolicy,
        timeout: float,
        site_id: int | str,
        max_in_flight: int,
        telemetry: Telemetry | None = None,
    ) -> None:
        #: Counts, the daily budget, spans and log extras (see ``_telemetry``).
        self.telemetry = telemetry or Telemetry(site_id)
        self._sending = asyncio.Semaphore(max_in_flight)  # per request, client-wide
        # Once Calltouch refused the credentials, nothing more is sent: they will not get
        # better, and requests already waiting for a slot must not go out after it.
        self._refused: Exchange | None = None
        self._transport = transport
        self._limiter = limiter
        self._retry = retry
        self._timeout = timeout
        self._site_id = site_id

    async def run(self, items: list[Item], flight: Flight) -> list[CommentResult]:
        """One result per item (any order). Raises :class:`AuthError` on bad credentials."""
        results: list[CommentResult] = []
        parts = [items]
        allowed = budget = 4 * math.ceil(math.log2(max(len(items), 2)))  # extra requests
        while parts:
            part = parts.pop()
            if flight.stopping:
                results += with_status(part, CommentStatus.FAILED, _not_sent(flight.stopping))
                continue
            exchange = await self._exchange(part, flight)
            if exchange.reply is not Reply.VIOLATIONS:
                results += self._results(part, exchange)
                continue
            rejected, rest = _separate(part, exchange.violations)
            if not rejected and len(part) == 1:
                rejected, rest = [_rejected(part[0], _messages(exchange.violations))], []
            results += rejected
            if not rest:
                continue
            cost = 1 if rejected else 2  # a re-send of the rest, or two halves
            if budget < cost:
                reason = (f"not sent: Calltouch's validation errors were not isolated within "
                          f"{allowed} extra requests ({_messages(exchange.violations)})")
                results += with_status(rest, CommentStatus.FAILED, reason)
                continue
            budget -= cost
            if rejected:
                parts.append(rest)
            else:
                middle = len(rest) // 2
                parts += [rest[middle:], rest[:middle]]
        return results

    async def _exchange(self, part: list[Item], flight: Flight) -> Exchange:
        """One request for ``part``, retried as the policy says; its classified answer."""
        body = encode_request([lead for _, lead in part])
        maybe_applied = False
        attempt = Attempt(None)
        try:
            # The deadline starts once the request has a slot to go out in (see _attempt).
            async with asyncio.timeout(None) as deadline:
                for number in itertools.count(1):
                    if flight.stopping:  # closing: start no new request
                        return _stopped(flight.stopping, maybe_applied)
                    attempt = Attempt(None)
                    exchange = await self._attempt(
                        body, attempt, deadline, flight, len(part), number
                    )
                    attempt = Attempt(None)  # answered: nothing is in flight until the next
                    maybe_applied |= exchange.reply is Reply.UNKNOWN
                    if number >= self._retry.max_attempts or not self._retry.should_retry(
                        exchange.reply, number
                    ):
                        break
                    await self._pause(exchange, number, len(part))
        except TimeoutError:
            sent = maybe_applied or attempt.may_be_sent
            reply = Reply.UNKNOWN if sent else Reply.FAILED
            return Exchange(reply, detail=f"no answer within the {self._timeout:g} s deadline")
        except asyncio.CancelledError:
            if not _stopped_by_close(flight) or flight.stopping is None:
                raise
            return _stopped(flight.stopping, maybe_applied or attempt.may_be_sent)
        if maybe_applied and exchange.reply not in (Reply.OK, Reply.UNKNOWN):
            detail = f"an earlier attempt was lost; then {exchange.detail}"
            return Exchange(Reply.UNKNOWN, exchange.status, detail)
        return exchange

    async def _attempt(
        self,
        body: bytes,
        attempt: Attempt,
        deadline: asyncio.Timeout,
        flight: Flight,
        leads: int,
        number: int,
    ) -> Exchange:
        """One permit and one POST, within the client-wide bound on requests in flight.

        The bound keeps a permit from ever waiting for a pooled connection (the pool is
        larger than the bound): a start is counted only for a request ready to go. Waiting
        for the bound is not part of the request's deadline, which starts here.
        """
        async with self._sending:
            if self._refused is not None:
                return self._refused
            if deadline.when() is None:
                deadline.reschedule(asyncio.get_running_loop().time() + self._timeout)
            # Charges the daily budget; counts, times and traces the attempt.
            async with self.telemetry.attempt(leads, number, attempt) as record:
                if record.refusal is not None:  # the daily budget is spent: nothing goes out
                    return Exchange(Reply.FAILED, detail=record.refusal)
                try:
                    if self._limiter is not None:
                        attempt.permit = await self._limiter.acquire()
                except CalltouchError as exc:  # a shared limiter's backend is down: not sent
                    return Exchange(Reply.FAILED, detail=str(exc))
                record.sending()  # the limiter wait ends, the request starts
                flight.posting = True
                try:
                    return record.answered(await self._transport.post(body, attempt))
                finally:
                    flight.posting = False

    async def _pause(self, exchange: Exchange, attempt: int, leads: int) -> None:
        delay = self._retry.delay(attempt, exchange.retry_after)
        if exchange.reply is Reply.RATE_LIMITED and self._limiter is not None:
            # Everyone sharing the limiter backs off, not just this request.
            try:
                await self._limiter.cooldown(delay)
            except CalltouchError as exc:  # the next acquire() will fail this request
                self.telemetry.warning(
                    "could not share the pause after a 429: %s", exc, leads=leads,
                    attempt=attempt, status="rate_limited",
                )
        self.telemetry.retry(leads, attempt, self._retry.max_attempts, delay, exchange)
        await asyncio.sleep(delay)

    def _results(self, part: list[Item], exchange: Exchange) -> list[CommentResult]:
        reply = exchange.reply
        if reply is Reply.OK and len(exchange.outcomes) == len(part):
            return _answered(part, exchange.outcomes)
        if reply is Reply.AUTH:
            self._refused = exchange
            raise AuthError(self._site_id, exchange.status, exchange.detail)
        if reply is Reply.REDIRECT:  # a wrong base_url will not fix itself either
            self._refused = exchange
            raise RedirectError(exchange.status, exchange.location)
        if reply is Reply.OK:
            detail = f"answer held {len(exchange.outcomes)} results for {len(part)} leads"
            reply, exchange = Reply.UNKNOWN, Exchange(Reply.UNKNOWN, exchange.status, detail)
        if reply is Reply.UNKNOWN:
            self.telemetry.warning(
                "outcome unknown for %d leads: %s", len(part), exchange.detail,
                leads=len(part), status="unknown",
            )
            return with_status(part, CommentStatus.UNKNOWN, exchange.detail)
        detail = exchange.detail
        if reply in (Reply.RATE_LIMITED, Reply.NOT_SENT):
            detail = f"gave up after {self._retry.max_attempts} attempts: {detail}"
        return with_status(part, CommentStatus.FAILED, detail)


def _stopped(reason: str, may_be_sent: bool) -> Exchange:
    """What a request stopped by its stream proved: nothing if never written."""
    if may_be_sent:
        return Exchange(Reply.UNKNOWN, detail=_unanswered(reason))
    return Exchange(Reply.FAILED, detail=_not_sent(reason))


def _stopped_by_close(flight: Flight) -> bool:
    """Whether the cancellation being handled is the stream stopping this run (not the
    caller cancelling); if so, it is taken back so the run can report its leads."""
    task = asyncio.current_task()
    if not flight.cut or task is None:
        return False
    task.uncancel()
    return task.cancelling() == 0  # anyone else's cancellation still propagates


def _answered(part: list[Item], outcomes: list[LeadOutcome]) -> list[CommentResult]:
    """One result per lead from Calltouch's per-lead outcomes (the hot path: locals only)."""
    commented, not_commented, result = (
        CommentStatus.COMMENTED, CommentStatus.NOT_COMMENTED, CommentResult
    )
    return [
        result(
            index=index, lead=lead, status=commented if o.commented else not_commented,
            call_info=o.call_info, request_info=o.request_info, error=o.error,
        )
        for (index, lead), o in zip(part, outcomes, strict=True)
    ]


def with_status(part: list[Item], status: CommentStatus, error: str) -> list[CommentResult]:
    """The same status and error for every lead of ``part``."""
    return [CommentResult(index=i, lead=lead, status=status, error=error) for i, lead in part]


def _rejected(item: Item, message: str) -> CommentResult:
    index, lead = item
    return CommentResult(index=index, lead=lead, status=CommentStatus.REJECTED, error=message)


def _messages(violations: list[Violation]) -> str:
    return "; ".join(f"{v.field_path}: {v.message}" for v in violations) or "validation error"


def _separate(
    part: list[Item], violations: list[Violation]
) -> tuple[list[CommentResult], list[Item]]:
    """Leads the violations name (as ``rejected``), and the others.

    A violation's path is made relative to the lead it names (``comments[3].addComment``
    becomes ``addComment`` on the lead at position 3 of this request): ``result.index``
    already says which lead it is.
    """
    named: dict[int, list[str]] = {}
    for violation in violations:
        match = _LEAD_PATH.match(violation.field_path)
        if match and int(match.group(1)) < len(part):
            path = violation.field_path[match.end():]
            text = f"{path}: {violation.message}" if path else violation.message
            named.setdefault(int(match.group(1)), []).append(text)
    rejected = [_rejected(part[p], "; ".join(m)) for p, m in sorted(named.items())]
    rest = [item for p, item in enumerate(part) if p not in named]
    return rejected, rest
