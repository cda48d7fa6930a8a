"""OpenTelemetry spans and metrics for the client (optional extra ``[otel]``).

Imported only by :func:`calltouch_async._telemetry.new_telemetry`, inside a ``try``: when
``opentelemetry-api`` is missing the import fails there, once, and nothing else happens.

Names follow the semantic conventions for HTTP clients where one exists
(``http.request.method``, ``server.address``, ``server.port``, ``url.full``,
``http.response.status_code``, ``error.type``, ``http.request.resend_count``); the rest is
under ``calltouch.``. ``url.full`` never holds a secret: the token travels in a header.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from opentelemetry import context, metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from yarl import URL

__all__ = ["SPAN_NAME", "OtelHooks", "Span"]

SPAN_NAME: Final = "calltouch comment"
_SCOPE: Final = "calltouch_async"
#: Seconds; the semantic conventions' advice for HTTP durations, plus room for long waits.
_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0,
)


class Span:
    """A live attempt span and the context token that made it current."""

    __slots__ = ("span", "token")

    def __init__(self, span: trace.Span, token: object) -> None:
        self.span = span
        self.token = token


class OtelHooks:
    """The tracer and instruments of one client."""

    __slots__ = (
        "_duration", "_lead_attrs", "_leads", "_reply_attrs", "_requests",
        "_span_attrs", "_tracer", "_wait", "_wait_attrs",
    )

    def __init__(
        self,
        site_id: int | str,
        url: str,
        tracer_provider: object | None,
        meter_provider: object | None,
    ) -> None:
        self._tracer = trace.get_tracer(
            _SCOPE, tracer_provider=tracer_provider  # type: ignore[arg-type]
        )
        meter = metrics.get_meter(
            _SCOPE, meter_provider=meter_provider  # type: ignore[arg-type]
        )
        self._requests = meter.create_counter(
            "calltouch.requests", "{request}", "HTTP requests sent, by reply kind"
        )
        self._leads = meter.create_counter(
            "calltouch.leads", "{lead}", "Leads handed a final result, by status"
        )
        self._duration = meter.create_histogram(
            "calltouch.request.duration", "s", "Duration of one HTTP attempt",
            explicit_bucket_boundaries_advisory=_BUCKETS,
        )
        self._wait = meter.create_histogram(
            "calltouch.limiter.wait", "s", "Time an attempt waited for a rate-limit permit",
            explicit_bucket_boundaries_advisory=_BUCKETS,
        )
        # Requests in flight are in stats(), not here: a gauge per client would cost two
        # records per request or a callback registered for the provider's lifetime.
        site = str(site_id)
        parsed = URL(url)
        self._span_attrs: dict[str, str | int] = {
            "http.request.method": "POST",
            "server.address": parsed.host or "",
            "server.port": parsed.port or 443,
            "url.full": str(parsed.with_query(None).with_fragment(None).with_user(None)),
            "calltouch.site_id": site,
        }
        self._wait_attrs = {"calltouch.site_id": site}
        # Attribute dicts built once, not per request or per lead.
        self._reply_attrs: dict[str, dict[str, str]] = {}
        self._lead_attrs: dict[str, dict[str, str]] = {}

    def start(self, leads: int, number: int) -> Span:
        """A CLIENT span for one attempt, child of the caller's current span, made current."""
        attributes = dict(self._span_attrs)
        attributes["calltouch.leads"] = leads
        attributes["calltouch.attempt"] = number
        if number > 1:
            attributes["http.request.resend_count"] = number - 1
        span = self._tracer.start_span(SPAN_NAME, kind=SpanKind.CLIENT, attributes=attributes)
        return Span(span, context.attach(trace.set_span_in_context(span)))

    def end(
        self,
        live: Span,
        kind: str,
        status: int,
        duration: float,
        sent: bool,
        exc: BaseException | None,
    ) -> None:
        """End the attempt's span; record the request and its duration if it was sent."""
        context.detach(live.token)  # type: ignore[arg-type]
        span = live.span
        if span.is_recording():
            span.set_attribute("calltouch.reply", kind)
            if status:
                span.set_attribute("http.response.status_code", status)
            if kind != "ok":
                error = str(status) if status >= 400 else type(exc).__name__ if exc else kind
                span.set_attribute("error.type", error)
                span.set_status(Status(StatusCode.ERROR, kind))
        span.end()
        if sent:
            attrs = self._attrs(self._reply_attrs, "reply", kind)
            self._requests.add(1, attrs)
            self._duration.record(duration, attrs)

    def waited(self, seconds: float) -> None:
        self._wait.record(seconds, self._wait_attrs)

    def leads(self, counts: Mapping[str, int]) -> None:
        for status, n in counts.items():
            self._leads.add(n, self._attrs(self._lead_attrs, "status", status))

    def _attrs(self, cache: dict[str, dict[str, str]], key: str, value: str) -> dict[str, str]:
        attrs = cache.get(value)
        if attrs is None:
            attrs = cache[value] = {**self._wait_attrs, key: str(value)}
        return attrs
