"""What the client did, counted cheaply: ``stats()``, the daily request budget, log extras.

One :class:`Telemetry` per client; the dispatcher holds it and calls it at a few points:

* ``async with telemetry.attempt(leads, number, attempt) as record:`` around one HTTP attempt.
  Entering charges the daily budget (``record.refusal`` then says why nothing may go out),
  ``record.sending()`` marks the end of the limiter wait and the start of the request,
  ``record.answered(exchange)`` classifies the answer; leaving counts the request, ends its
  span and, for an attempt that never left, gives the budget back.
* ``telemetry.retry(...)`` before a re-send; ``telemetry.count(results)`` for every list of
  results taken off a stream (``_results.py``), so each lead is counted once.

Counting is plain integer arithmetic on this object (the client runs on one event loop), so
it costs a few attribute updates per request and one dict increment per lead. OpenTelemetry
(:mod:`._otel`) is imported only when the package is installed, and only when a client is
created.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from datetime import time as day_time
from operator import attrgetter
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from ._constants import DAY_TIMEZONE
from ._errors import CalltouchError
from ._models import CommentResult, CommentStatus
from ._transport import Attempt, Exchange, Reply

if TYPE_CHECKING:
    from ._otel import OtelHooks, Span

__all__ = [
    "ANSWER_KINDS", "AnswerCounts", "DailyCounter", "LimiterWaits", "SharesDailyCounter",
    "Stats", "Telemetry", "answer_kind",
]

log = logging.getLogger("calltouch_async")
_STATUS_OF: Final = attrgetter("status")

#: The kinds of answer ``stats().answers`` and the ``reply`` metric attribute distinguish.
ANSWER_KINDS: Final = (
    "ok", "rate_limited", "violations", "auth", "client_error", "server_error", "lost",
    "not_written", "other",
)


def answer_kind(reply: Reply, status: int) -> str:
    """The answer kind of one exchange that may have left (see :data:`ANSWER_KINDS`).

    Matched by member name, so a :class:`Reply` member added later lands in ``other`` (or
    in ``client_error``/``server_error`` by its HTTP status) instead of breaking the count.
    """
    name = reply.name
    if name == "OK":
        return "ok"
    if name == "RATE_LIMITED" or status == 429:
        return "rate_limited"
    if name == "VIOLATIONS":
        return "violations"
    if name == "AUTH":
        return "auth"
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "client_error"
    if name == "UNKNOWN":  # dropped, timed out, or a 2xx without a usable body
        return "lost"
    return "other"


def _attempt_kind(exchange: Exchange) -> str:
    """The answer kind, or ``not_sent`` for an attempt that provably never left."""
    if exchange.reply.name == "NOT_SENT":
        return "not_sent"
    return answer_kind(exchange.reply, exchange.status)


@dataclass(frozen=True, slots=True)
class AnswerCounts:
    """Answers by kind. Their sum is ``Stats.requests - Stats.in_flight``."""

    ok: int
    """2xx with one result per lead."""
    rate_limited: int
    """HTTP 429: not executed."""
    violations: int
    """Calltouch's validation error: not executed."""
    auth: int
    """Credentials refused (401/403 or an auth API error)."""
    client_error: int
    """Any other 4xx or API error: refused."""
    server_error: int
    """5xx: may or may not have run."""
    lost: int
    """No usable answer (connection dropped, deadline, truncated or empty body): may have run."""
    not_written: int
    """Counted as sent, then proved not written in full: not run, retried (``requests``
    never goes down)."""
    other: int
    """Anything else (e.g. a redirect)."""


@dataclass(frozen=True, slots=True)
class LimiterWaits:
    """Time attempts spent waiting for a rate-limit permit."""

    count: int
    total_seconds: float
    max_seconds: float


@dataclass(frozen=True, slots=True)
class Stats:
    """An immutable snapshot of one client's counters since it was created."""

    requests: int
    """HTTP requests that may have left (attempts that never connected are not counted)."""
    answers: AnswerCounts
    retries: int
    """Attempts that were followed by a re-send (after a 429, a connect error...)."""
    leads: Mapping[str, int]
    """Results handed out, by final status (every ``CommentStatus`` value is a key)."""
    in_flight: int
    """Requests sent and not yet answered."""
    limiter_waits: LimiterWaits
    day: date
    """The current day, in the client's ``day_timezone``."""
    requests_today: Mapping[str, int]
    """Requests this client sent since ``day`` began, per site id."""
    daily_request_budget: int | None
    budget_used: int
    """Requests charged to today's budget: this client's, or with a shared (Redis) budget,
    every process's as last seen by this one."""


@runtime_checkable
class DailyCounter(Protocol):
    """A per-day request count shared beyond this client (e.g. through Redis)."""

    async def take(self, site_id: str, day: str, limit: int, ttl: float) -> int | None:
        """Count one request for ``day`` unless ``limit`` are counted; the new count or None.

        ``ttl``: seconds the count must live (it may expire on its own after that).
        """

    async def give_back(self, site_id: str, day: str) -> None:
        """Undo one :meth:`take` whose request never left."""


@runtime_checkable
class SharesDailyCounter(Protocol):
    """A rate limiter that can also hold the daily budget (``RedisRateLimiter``)."""

    def daily_counter(self) -> DailyCounter: ...


class _AttemptRecord:
    """One HTTP attempt, from charging the budget to its answer (an async context manager)."""

    __slots__ = (
        "_attempt", "_charged", "_counted", "_in_flight", "_started", "_telemetry", "kind", "leads",
        "number", "refusal", "span", "status",
    )

    def __init__(self, telemetry: Telemetry, leads: int, number: int, attempt: Attempt) -> None:
        self._telemetry = telemetry
        self._attempt = attempt
        self._charged = False
        self._in_flight = False
        self._counted = False  # requests and in_flight count this attempt (it may have left)
        self._started = 0.0
        self.leads = leads
        self.number = number
        self.kind: str | None = None
        self.status = 0
        self.span: Span | None = None
        #: Why no request may go out (the daily budget is spent), or None.
        self.refusal: str | None = None

    async def __aenter__(self) -> _AttemptRecord:
        telemetry = self._telemetry
        if telemetry.budget is None:  # nothing to charge (the usual case): no awaited call
            self._started = time.perf_counter()
            return self
        try:
            self.refusal = await telemetry.charge()
        except CalltouchError as exc:  # a shared budget's Redis is down: nothing goes out
            self.refusal = str(exc)
            return self
        self._charged = self.refusal is None and telemetry.budget is not None
        self._started = time.perf_counter()
        return self

    def sending(self) -> None:
        """The permit is taken: the limiter wait ends and the request starts now."""
        telemetry = self._telemetry
        now = time.perf_counter()
        telemetry.waited(now - self._started)
        self._started = now
        self._in_flight = True
        self._attempt.on_sent = self._left
        if telemetry.otel is not None:
            self.span = telemetry.otel.start(self.leads, self.number)

    def _left(self) -> None:
        """The request may have left: ``requests`` and ``in_flight`` count it from now, so
        the answers add up to ``requests - in_flight`` at every moment."""
        self._counted = True
        self._telemetry.requests += 1
        self._telemetry.in_flight += 1

    def answered(self, exchange: Exchange) -> Exchange:
        """Classify the exchange's answer; returns it unchanged."""
        self.status = exchange.status
        self.kind = _attempt_kind(exchange)
        return exchange

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        sent = False
        if self._in_flight:
            self._attempt.on_sent = None  # counted once, and never after it ended
            sent = self._counted and self.kind != "not_sent"
            if not sent:
                self.kind = "not_sent"
            elif self.kind is None:
                self.kind = "lost"  # the deadline or a cancellation cut the exchange short
            self._telemetry.ended(self, sent, time.perf_counter() - self._started, exc)
        if self._charged and not sent:
            # A shared count is given back only on a normal exit: a cancelled attempt must
            # not wait on Redis, and over-counting one request is the safe direction.
            await self._telemetry.give_back(shared=exc is None)


class Telemetry:
    """One client's counters, daily budget, and optional OpenTelemetry hooks."""

    __slots__ = (
        "_answers", "_budget_used", "_counter", "_day", "_day_end", "_exhausted_day",
        "_leads", "_limited", "_requests_today", "_retries", "_waits", "_waits_max", "_waits_total",
        "budget", "clock", "day_timezone", "in_flight", "otel", "requests", "site_id",
    )

    def __init__(
        self,
        site_id: int | str,
        *,
        daily_request_budget: int | None = None,
        day_timezone: tzinfo = DAY_TIMEZONE,
        otel: OtelHooks | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if daily_request_budget is not None and daily_request_budget < 0:
            raise ValueError(f"daily_request_budget must be >= 0, got {daily_request_budget}")
        self.site_id = str(site_id)
        self.budget = daily_request_budget
        self.day_timezone = day_timezone
        self.otel = otel
        self.clock = clock
        self._counter: DailyCounter | None = None
        self._limited = True
        self.requests = 0
        self.in_flight = 0
        self._answers = dict.fromkeys(ANSWER_KINDS, 0)
        self._retries = 0
        self._leads: dict[str, int] = {status.value: 0 for status in CommentStatus}
        self._waits = 0
        self._waits_total = 0.0
        self._waits_max = 0.0
        self._day = date.min
        self._day_end = float("-inf")
        self._requests_today = 0
        self._budget_used = 0
        self._exhausted_day: date | None = None

    def __repr__(self) -> str:
        return f"Telemetry(site_id={self.site_id!r}, requests={self.requests})"

    def use_limiter(self, limiter: object | None) -> None:
        """Called once the client's limiter is known: waits are timed only with one, and
        the daily budget is kept in its store if it offers one (Redis)."""
        self._limited = limiter is not None
        if self.budget is not None and isinstance(limiter, SharesDailyCounter):
            self._counter = limiter.daily_counter()

    # ------------------------------------------------------------------ the day

    def today(self) -> date:
        """The current day in ``day_timezone``; a new day resets the daily counts."""
        now = self.clock()
        if now >= self._day_end:
            self._roll_over(now)
        return self._day

    def _roll_over(self, now: float) -> None:
        day = datetime.fromtimestamp(now, self.day_timezone).date()
        if day != self._day:
            self._day = day
            self._requests_today = 0
            self._budget_used = 0
        midnight = datetime.combine(day + timedelta(days=1), day_time(), self.day_timezone)
        self._day_end = midnight.timestamp()

    # ------------------------------------------------------------------ the budget

    @property
    def budget_exhausted(self) -> bool:
        """True once a request was refused today for lack of budget (until the day ends)."""
        return self._exhausted_day is not None and self._exhausted_day == self.today()

    async def charge(self) -> str | None:
        """Count one request against today's budget; the reason if it may not go out."""
        if self.budget is None:
            return None
        day = self.today()
        if self._exhausted_day == day:
            return self.budget_reason()
        if self._counter is None:
            if self._budget_used < self.budget:
                self._budget_used += 1
                return None
        else:
            ttl = self._day_end - self.clock()
            used = await self._counter.take(self.site_id, day.isoformat(), self.budget, ttl)
            if used is not None:
                self._budget_used = max(self._budget_used, used)
                return None
            self._budget_used = max(self._budget_used, self.budget)
        self._exhausted_day = day
        return self.budget_reason()

    async def give_back(self, *, shared: bool = True) -> None:
        """Undo a charge whose request never left (in Redis too unless ``shared=False``).

        If Redis cannot take the unit back, it stays spent: over-counting is the safe side.
        """
        self._budget_used = max(0, self._budget_used - 1)
        if self._counter is not None and shared:
            try:
                await self._counter.give_back(self.site_id, self._day.isoformat())
            except CalltouchError as exc:
                self.warning("could not give a budget unit back: %s", exc, leads=0)

    def budget_reason(self) -> str:
        """Why a lead was not sent: names the budget, the site and the day boundary."""
        return (
            f"daily request budget of {self.budget} requests for site {self.site_id} is spent "
            f"for {self._day.isoformat()} (days start at 00:00 {self.day_timezone}); not sent"
        )

    # ------------------------------------------------------------------ counting

    def attempt(self, leads: int, number: int, attempt: Attempt) -> _AttemptRecord:
        """A record of one HTTP attempt carrying ``leads`` leads (``number`` from 1)."""
        return _AttemptRecord(self, leads, number, attempt)

    def waited(self, seconds: float) -> None:
        if not self._limited:
            return
        self._waits += 1
        self._waits_total += seconds
        if seconds > self._waits_max:
            self._waits_max = seconds
        if self.otel is not None:
            self.otel.waited(seconds)

    def ended(
        self, record: _AttemptRecord, sent: bool, duration: float, exc: BaseException | None
    ) -> None:
        """An attempt that reached ``sending()`` is over; ``record.kind`` is its answer."""
        kind = record.kind or "not_sent"
        if record._counted:
            self.in_flight -= 1
            if not sent:  # it may have left, and proved it did not (body not written in full)
                self._answers["not_written"] += 1  # requests is a counter: it never goes down
        if sent:
            self.today()
            self._requests_today += 1
            self._answers[kind if kind in self._answers else "other"] += 1
        if self.otel is not None and record.span is not None:
            self.otel.end(record.span, kind, record.status, duration, sent, exc)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "request of %d leads, attempt %d: %s (HTTP %d) in %.3f s",
                record.leads, record.number, kind, record.status, duration,
                extra=self.extra(record.leads, record.number, kind, record.status),
            )

    def retry(self, leads: int, number: int, of: int, delay: float, exchange: Exchange) -> None:
        """Attempt ``number`` will be followed by another in ``delay`` seconds."""
        self._retries += 1
        kind = _attempt_kind(exchange)
        log.warning(
            "retrying a request of %d leads in %.2f s (attempt %d of %d): %s",
            leads, delay, number + 1, of, exchange.detail,
            extra=self.extra(leads, number, kind, exchange.status),
        )

    def warning(
        self, message: str, *args: object, leads: int, attempt: int = 0, status: str = ""
    ) -> None:
        """A WARNING (per request, never per lead) with the structured fields."""
        log.warning(message, *args, extra=self.extra(leads, attempt, status))

    def extra(
        self, leads: int, attempt: int, status: str, http_status: int = 0
    ) -> dict[str, Any]:
        """The ``extra`` fields every log record carries."""
        return {
            "site_id": self.site_id, "leads": leads, "attempt": attempt, "status": status,
            "http_status": http_status,
        }

    def count(self, results: Iterable[CommentResult]) -> None:
        """Results handed out, counted by status in one pass at C speed (a batch nearly
        always holds one status); one dict update and one metric add per status."""
        statuses = list(map(_STATUS_OF, results))
        if not statuses:
            return
        first = statuses[0]
        same = statuses.count(first)
        seen = {first: same} if same == len(statuses) else Counter(statuses)
        counts = self._leads
        for status, number in seen.items():
            counts[status] += number
        if self.otel is not None:
            self.otel.leads(seen)

    def stats(self) -> Stats:
        """An immutable snapshot (built only here, so counting stays cheap)."""
        day = self.today()
        return Stats(
            requests=self.requests,
            answers=AnswerCounts(**self._answers),
            retries=self._retries,
            leads=MappingProxyType(dict(self._leads)),
            in_flight=self.in_flight,
            limiter_waits=LimiterWaits(self._waits, self._waits_total, self._waits_max),
            day=day,
            requests_today=MappingProxyType({self.site_id: self._requests_today}),
            daily_request_budget=self.budget,
            budget_used=self._budget_used,
        )


_otel_missing = False


def new_telemetry(
    site_id: int | str,
    url: str,
    *,
    daily_request_budget: int | None,
    day_timezone: tzinfo,
    tracer_provider: object | None,
    meter_provider: object | None,
) -> Telemetry:
    """A client's telemetry, with OpenTelemetry hooks when ``opentelemetry-api`` is installed.

    The package is imported here (when a client is created), never at import time, and a
    missing package is looked for once per process.
    """
    global _otel_missing
    otel = None
    if not _otel_missing:
        try:
            from ._otel import OtelHooks
        except ImportError:
            _otel_missing = True
        else:
            otel = OtelHooks(site_id, url, tracer_provider, meter_provider)
    if otel is None and (tracer_provider is not None or meter_provider is not None):
        raise ImportError(
            "tracer_provider/meter_provider need OpenTelemetry: "
            "pip install 'calltouch-async[otel]'"
        )
    return Telemetry(
        site_id, daily_request_budget=daily_request_budget, day_timezone=day_timezone,
        otel=otel,
    )
