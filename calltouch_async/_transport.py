"""One HTTP exchange with the comment method: POST a body, classify the answer.

The classification is what keeps comments from being lost or doubled: it separates answers
that prove nothing was executed (safe to repeat) from those where the comments may have been
applied (never repeated unless the caller opts in). This module knows nothing of chunks or
retries; of limiters it knows only the permit, which :class:`Attempt` settles.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

import aiohttp

from ._constants import COMMENT_PATH, USER_AGENT
from ._errors import MalformedResponseError
from ._limiter import Permit
from ._models import LeadOutcome, ResponseData, Violation, decode_response

__all__ = ["Attempt", "Exchange", "Reply", "SendTimeTrace", "Transport", "parse_retry_after"]

_AUTH_STATUSES: Final = frozenset({401, 403})
_AUTH_WORDS = re.compile(r"auth|token|credential|forbidden|access", re.IGNORECASE)


class Reply(enum.Enum):
    """What one exchange proved."""

    OK = "ok"  # executed; per-lead outcomes in `outcomes`
    VIOLATIONS = "violations"  # validation failed, nothing executed
    RATE_LIMITED = "rate_limited"  # 429, nothing executed
    AUTH = "auth"  # credentials refused, nothing executed
    FAILED = "failed"  # a definite refusal (4xx), nothing executed
    NOT_SENT = "not_sent"  # the request never left (connect error, DNS)
    UNKNOWN = "unknown"  # sent, answer lost: may or may not have been executed


@dataclass(slots=True)
class Exchange:
    """The classified result of one POST."""

    reply: Reply
    status: int = 0
    detail: str = ""
    outcomes: list[LeadOutcome] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    retry_after: float | None = None


class Attempt:
    """One POST's progress: whether its request may have left, and its rate-limit permit.

    ``on_sent`` is called once, when the request may have left. The permit is settled in one
    place, :meth:`_settle`, exactly once: as sent when the request may have left
    (:meth:`mark_sent`), or as not sent when the exchange ends without that (:meth:`finish`).
    """

    __slots__ = ("may_be_sent", "on_sent", "permit")

    def __init__(
        self, permit: Permit | None = None, on_sent: Callable[[], None] | None = None
    ) -> None:
        self.permit = permit
        self.on_sent = on_sent
        self.may_be_sent = False

    def mark_sent(self) -> None:
        """The request may have left now: its start counts from now."""
        if not self.may_be_sent:
            self.may_be_sent = True
            self._settle(sent=True)
            if self.on_sent is not None:
                self.on_sent()

    def finish(self) -> None:
        """The exchange is over: a permit whose request never left frees its slot."""
        if not self.may_be_sent:
            self._settle(sent=False)

    def _settle(self, *, sent: bool) -> None:
        if self.permit is not None:
            self.permit.settle(sent=sent)


class SendTimeTrace(aiohttp.TraceConfig):
    """Marks a request sent when its headers are written, so the rate limit counts the moment
    the request really left (after any connection handshake) and a request that never left
    is known not to have been sent.

    The client adds one to the session it creates. To get the same on a session you pass
    in, create it with ``aiohttp.ClientSession(trace_configs=[SendTimeTrace()])``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.on_request_headers_sent.append(_mark_sent)


async def _mark_sent(
    session: aiohttp.ClientSession,
    context: object,
    params: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    attempt = getattr(context, "trace_request_ctx", None)
    if isinstance(attempt, Attempt):
        attempt.mark_sent()


class Transport:
    """POSTs bodies to one account's comment endpoint through one session."""

    __slots__ = ("_headers", "_session", "_token_bytes", "traced", "url")

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, site_id: int | str, token: str
    ) -> None:
        self._session = session
        self._token_bytes = token.encode()
        self.traced = any(isinstance(t, SendTimeTrace) for t in session.trace_configs)
        self.url = base_url.rstrip("/") + COMMENT_PATH
        self._headers = {
            "Access-Token": token,
            "SiteId": str(site_id),
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }

    def __repr__(self) -> str:
        return f"Transport(url={self.url!r})"

    async def post(self, body: bytes, attempt: Attempt) -> Exchange:
        """Send ``body`` once and classify what came back (never raises on HTTP errors).

        ``attempt`` is marked sent when the headers are written; on a session without
        :class:`SendTimeTrace`, from the start. Its permit is settled however this ends.
        """
        if not self.traced:
            attempt.mark_sent()
        try:
            return await self._post(body, attempt)
        finally:
            attempt.finish()

    async def _post(self, body: bytes, attempt: Attempt) -> Exchange:
        try:
            async with self._session.post(
                self.url, data=body, headers=self._headers, trace_request_ctx=attempt
            ) as resp:
                raw = await resp.read()
                if self._token_bytes and self._token_bytes in raw:
                    # Calltouch's own text ends up in results, logs and exceptions: if it ever
                    # quotes the token, the token goes no further than here.
                    raw = raw.replace(self._token_bytes, b"***")
                return classify(resp.status, raw, resp.headers.get("Retry-After"))
        except aiohttp.ClientConnectorError as exc:
            return Exchange(Reply.NOT_SENT, detail=f"cannot connect: {exc.os_error}")
        except aiohttp.ConnectionTimeoutError:
            return Exchange(Reply.NOT_SENT, detail="connect timeout")
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Past the connect stage: the body may have reached Calltouch.
            return Exchange(Reply.UNKNOWN, detail=_describe(exc))


def classify(status: int, raw: bytes, retry_after: str | None = None) -> Exchange:
    """Turn an HTTP status and body into an :class:`Exchange`."""
    if status == 429:
        wait = parse_retry_after(retry_after)
        return Exchange(Reply.RATE_LIMITED, status, "HTTP 429", retry_after=wait)
    if status >= 500:
        return Exchange(Reply.UNKNOWN, status, f"HTTP {status}")
    try:
        data = decode_response(raw)
    except MalformedResponseError as exc:
        if status in _AUTH_STATUSES:
            return Exchange(Reply.AUTH, status, exc.excerpt)
        # A 2xx may have been executed before the body broke; a 4xx was refused.
        reply = Reply.UNKNOWN if status < 300 else Reply.FAILED
        return Exchange(reply, status, f"HTTP {status}, {exc}")
    return _classify_data(status, data)


def _classify_data(status: int, data: ResponseData) -> Exchange:
    if status in _AUTH_STATUSES or _is_auth_error(data):
        return Exchange(Reply.AUTH, status, _api_message(data))
    if data.type == "validationError" or data.violations:
        return Exchange(Reply.VIOLATIONS, status, "validation error", violations=data.violations)
    if status < 300 and data.comments is not None:
        return Exchange(Reply.OK, status, outcomes=data.comments)
    if status < 300 and data.api_error_data is not None:
        return Exchange(Reply.FAILED, status, _api_message(data))
    if status < 300:
        # A success status with neither results nor an error: it may have run.
        return Exchange(Reply.UNKNOWN, status, "answer without results or error")
    return Exchange(Reply.FAILED, status, f"HTTP {status}: {_api_message(data)}".rstrip(": "))


def _is_auth_error(data: ResponseData) -> bool:
    error = data.api_error_data
    if error is None:
        return False
    if str(error.error_code) in {"401", "403"}:
        return True
    return bool(data.type and _AUTH_WORDS.search(data.type))


def _api_message(data: ResponseData) -> str:
    error = data.api_error_data
    if error is None:
        return ""
    return f"{error.error_message or ''} (code {error.error_code})".strip()


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
