"""One HTTP exchange with the comment method: POST a body, classify the answer.

The classification is what keeps comments from being lost or doubled: it separates answers
that prove nothing was executed (safe to repeat) from those where the comments may have been
applied (never repeated unless the caller opts in). This module knows nothing of chunks or
retries; of limiters it knows only the permit, which :class:`Attempt` settles.
"""

from __future__ import annotations

import asyncio
import enum
import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, TypeVar

import aiohttp
import msgspec

from ._constants import COMMENT_PATH, MAX_ANSWER_BYTES, READ_CHUNK_BYTES, USER_AGENT
from ._errors import MalformedResponseError, excerpt
from ._limiter import Permit
from ._models import (
    CallInfo,
    LeadOutcome,
    RequestInfo,
    ResponseData,
    Violation,
    decode_response,
    holds_text,
)
from ._token import Scrubber

__all__ = [
    "Attempt",
    "Exchange",
    "Reply",
    "SendTimeRequest",
    "SendTimeTrace",
    "Transport",
    "classify",
    "marks_send_time",
    "parse_retry_after",
]

_AUTH_STATUSES: Final = frozenset({401, 403})
_AUTH_WORDS = re.compile(r"auth|token|credential|forbidden|access", re.IGNORECASE)


class Reply(enum.Enum):
    """What one exchange proved."""

    OK = "ok"  # executed; per-lead outcomes in `outcomes`
    VIOLATIONS = "violations"  # validation failed, nothing executed
    RATE_LIMITED = "rate_limited"  # 429, nothing executed
    AUTH = "auth"  # credentials refused, nothing executed
    REDIRECT = "redirect"  # a 3xx, never followed; `location` says where it pointed
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
    location: str = ""


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

    The client's own sessions get the same, more cheaply, from :class:`SendTimeRequest`. To
    get it on a session you pass in, create it with
    ``aiohttp.ClientSession(trace_configs=[SendTimeTrace()])``.
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


#: The attempt the current task is sending, for :class:`SendTimeRequest` (aiohttp's
#: body-writer task starts with a copy of the sending task's context).
_SENDING: ContextVar[Attempt | None] = ContextVar("calltouch_async_sending", default=None)


class SendTimeRequest(aiohttp.ClientRequest):
    """The request class of the client's own sessions: marks a request sent as aiohttp starts
    writing it (its headers go out with the first bytes of the body, in that same step).

    It tells what :class:`SendTimeTrace` tells without aiohttp's tracing, which builds and
    sends a signal for every step of every request whether or not anyone listens (measured:
    8% of the client's CPU per 100-lead request).
    """

    async def write_bytes(self, *args: Any, **kwargs: Any) -> None:
        attempt = _SENDING.get()
        if attempt is not None:
            attempt.mark_sent()
        await super().write_bytes(*args, **kwargs)


def marks_send_time(session: aiohttp.ClientSession) -> bool:
    """Whether ``session`` marks each request sent when it is written (else the client counts
    it sent from the start). ``_request_class`` is aiohttp's; should it ever be renamed, this
    answers False, which is the safe side (and ``tests/test_send_time.py`` fails)."""
    request_class = getattr(session, "_request_class", None)
    return (isinstance(request_class, type) and issubclass(request_class, SendTimeRequest)) or any(
        isinstance(t, SendTimeTrace) for t in session.trace_configs
    )


class Transport:
    """POSTs bodies to one account's comment endpoint through one session.

    Every request fixes what the classification depends on, whatever the session's defaults
    (:data:`_FIXED_OPTIONS`): a session passed in may choose the pool, proxy and TLS, never
    the meaning of an answer. Answers are read up to :data:`MAX_ANSWER_BYTES` after
    decompression. No exception from aiohttp leaves :meth:`post`: each becomes an
    :class:`Exchange`, and what must propagate (cancellation) leaves without aiohttp's frames,
    whose locals hold the request headers and so the token.
    """

    __slots__ = ("_headers", "_marks_send_time", "_scrubber", "_session", "url")

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, site_id: int | str, token: str
    ) -> None:
        self.url = base_url.rstrip("/") + COMMENT_PATH
        self._scrubber = Scrubber(token)
        self._headers = {
            "Access-Token": token,
            "SiteId": str(site_id),
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        del token  # from here on, a failure's frames (recorded with locals) do not hold it
        self._session = session
        self._marks_send_time = marks_send_time(session)

    def __repr__(self) -> str:
        # Works on a half-built Transport: error reporters repr the locals of failed frames.
        return f"Transport(url={getattr(self, 'url', None)!r})"

    async def post(self, body: bytes, attempt: Attempt) -> Exchange:
        """Send ``body`` once and classify what came back (never raises on HTTP errors).

        ``attempt`` is marked sent when aiohttp writes the request (:class:`SendTimeRequest`
        or :class:`SendTimeTrace`); on a session with neither, from the start. Its permit is
        settled however this ends.
        """
        if not self._marks_send_time:
            attempt.mark_sent()
        try:
            return await self._send(body, attempt)
        except BaseException as exc:
            # Only what must propagate gets here (cancellation, KeyboardInterrupt).
            raise _without_frames(exc) from None
        finally:
            attempt.finish()

    async def _send(self, body: bytes, attempt: Attempt) -> Exchange:
        upload = aiohttp.UploadTracker()  # how much of the body left, if the send fails
        sending = _SENDING.set(attempt)  # for SendTimeRequest
        try:
            async with self._session.post(
                self.url, data=body, headers=self._headers, trace_request_ctx=attempt,
                upload_tracker=upload, **_FIXED_OPTIONS,
            ) as resp:
                return await self._answer(resp)
        except Exception as exc:  # every failure is classified, none escapes raw
            return self._scrubbed(await _failure(exc, self._session, upload))
        finally:
            _SENDING.reset(sending)

    async def _answer(self, resp: aiohttp.ClientResponse) -> Exchange:
        status = resp.status
        if 300 <= status < 400:
            # Never followed (allow_redirects=False): the body is not read.
            location = self._scrubber.text(resp.headers.get("Location", ""))
            location = excerpt(location, _LOCATION_CHARS)
            return Exchange(Reply.REDIRECT, status, location, location=location)
        if status == 429 or status >= 500:
            # Decided by the status alone: the body is not read.
            return classify(status, b"", resp.headers.get("Retry-After"))
        raw = await _read_capped(resp, MAX_ANSWER_BYTES)
        if raw is None:
            if status in _AUTH_STATUSES:
                return Exchange(Reply.AUTH, status, f"answer over {MAX_ANSWER_BYTES} bytes")
            # An answer this large is not Calltouch's; whatever it is, the request may have run.
            detail = f"HTTP {status}, answer over {MAX_ANSWER_BYTES} bytes: not read"
            return Exchange(Reply.UNKNOWN, status, detail)
        return classify(status, raw, resp.headers.get("Retry-After"), self._scrubber)

    def _scrubbed(self, exchange: Exchange) -> Exchange:
        exchange.detail = self._scrubber.text(exchange.detail)
        return exchange


#: What a session's defaults must not change about a request: a 3xx is never followed (it
#: would carry the token and the comments to another origin), an HTTP error status is an
#: answer to classify (not an exception), and the body goes out as given.
_FIXED_OPTIONS: Final[dict[str, Any]] = {
    "allow_redirects": False,
    "raise_for_status": False,
    "read_until_eof": True,
    "expect100": False,
    "compress": False,
    # Answers are decompressed before they are measured and parsed with aiohttp's usual
    # header limits, what aiohttp reads ahead of the capped read stays far under the cap, and
    # no session middleware (which could retry a POST or follow a redirect) runs.
    "auto_decompress": True,
    "middlewares": (),
    "read_bufsize": 2**16,
    "max_line_size": 8190,
    "max_field_size": 8190,
    "max_headers": 128,
}
_LOCATION_CHARS: Final = 300


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes | None:
    """The answer's body, or None once more than ``cap`` bytes (decompressed) arrived.

    aiohttp decompresses as it reads, in bounded steps, so counting what ``content`` yields
    counts decompressed bytes: a compressed bomb stops at the cap like a plain flood.
    """
    headers = resp.headers
    length = resp.content_length
    if (
        length is not None
        and length <= cap
        and "Transfer-Encoding" not in headers
        and headers.get("Content-Encoding", "identity").strip().lower() == "identity"
    ):
        # The usual answer: framed by Content-Length, not compressed, so aiohttp reads
        # exactly ``length`` bytes (at most the cap) in one read.
        return await resp.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(READ_CHUNK_BYTES):
        size += len(chunk)
        if size > cap:
            resp.close()  # the rest is never read; the connection is not reused
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _failure(
    exc: Exception, session: aiohttp.ClientSession, upload: aiohttp.UploadTracker
) -> Exchange:
    """Classify an exception raised while sending or reading: was the whole request written?

    A request not wholly written cannot have been executed: the server never got a complete
    body (HTTP frames it by ``Content-Length``). Once it was, the answer is merely lost.
    """
    detail = _describe(exc)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Exchange(Reply.NOT_SENT, detail=f"cannot connect: {exc.os_error}")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return Exchange(Reply.NOT_SENT, detail="connect timeout")
    if await _may_have_been_written(upload):
        return Exchange(Reply.UNKNOWN, detail=detail)
    if session.closed:
        # Nothing was sent, and retrying on the same session cannot help.
        return Exchange(Reply.FAILED, detail=f"not sent: the HTTP session is closed ({detail})")
    return Exchange(Reply.NOT_SENT, detail=f"request not written in full: {detail}")


#: How long a failed request's body writer may take to settle (it was cancelled, so it
#: settles within a few loop iterations); unsettled, the request counts as written.
_SETTLE_WAIT: Final = 1.0


async def _may_have_been_written(upload: aiohttp.UploadTracker) -> bool:
    """False only when the whole body provably did not leave (aiohttp's upload record)."""
    done: asyncio.Future[None] = upload.upload_complete
    if not done.done():
        await asyncio.wait([done], timeout=_SETTLE_WAIT)
    return not done.done() or done.exception() is None


def _without_frames(exc: BaseException) -> BaseException:
    """``exc`` with no traceback along its chain: aiohttp's frames hold the request headers
    (and so the token) in their locals, which error reporters record."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        link = pending.pop()
        if link is not None and id(link) not in seen:
            seen.add(id(link))
            link.__traceback__ = None
            pending += [link.__cause__, link.__context__]
    return exc


_NO_SCRUB: Final = Scrubber("")


def classify(
    status: int, raw: bytes, retry_after: str | None = None, scrubber: Scrubber = _NO_SCRUB
) -> Exchange:
    """Turn an HTTP status and body into an :class:`Exchange`.

    Every text in it (``detail``, per-lead ``error``) has been through ``scrubber``.
    """
    if status == 429:
        wait = parse_retry_after(retry_after)
        return Exchange(Reply.RATE_LIMITED, status, "HTTP 429", retry_after=wait)
    if 300 <= status < 400:
        return Exchange(Reply.REDIRECT, status, "redirect")
    if status >= 500:
        return Exchange(Reply.UNKNOWN, status, f"HTTP {status}")
    try:
        data = decode_response(raw)
    except MalformedResponseError as exc:
        body = scrubber.excerpt(raw)
        if status in _AUTH_STATUSES:
            return Exchange(Reply.AUTH, status, body)
        # A 2xx may have been executed before the body broke; a 4xx was refused.
        reply = Reply.UNKNOWN if status < 300 else Reply.FAILED
        detail = f"HTTP {status}, unexpected response body ({exc.reason}): {body!r}"
        return Exchange(reply, status, scrubber.text(detail))
    exchange = _classify_data(status, data)
    exchange.detail = scrubber.text(exchange.detail)
    _scrub_outcomes(exchange.outcomes, scrubber)
    exchange.violations = [
        msgspec.structs.replace(
            v, field_path=scrubber.text(v.field_path), message=scrubber.text(v.message)
        )
        for v in exchange.violations
    ]
    return exchange


_Ids = TypeVar("_Ids", CallInfo, RequestInfo)


def _scrub_outcomes(outcomes: list[LeadOutcome], scrubber: Scrubber) -> None:
    """Scrub every per-lead ``error`` and id, in place (an echoing server may put the token
    there). Errors are nearly always None and ids numbers, which cannot hold a token that
    does not read as an integer: then there is nothing to scrub."""
    if not scrubber.numeric and not holds_text(outcomes):
        return
    plain = scrubber.ids_are_plain
    for position, outcome in enumerate(outcomes):
        error, call, request = outcome.error, outcome.call_info, outcome.request_info
        if error is None and (call is None or plain(call)) and (request is None or plain(request)):
            continue
        clean = error if error is None else scrubber.text(error)
        clean_call = call if call is None else _scrub_ids(call, scrubber)
        clean_request = request if request is None else _scrub_ids(request, scrubber)
        if clean != error or clean_call is not call or clean_request is not request:
            outcomes[position] = msgspec.structs.replace(
                outcome, error=clean, call_info=clean_call, request_info=clean_request
            )


def _scrub_ids(ids: _Ids, scrubber: Scrubber) -> _Ids:
    """``ids`` itself when no id echoes the token, else a copy with those ids scrubbed."""
    changed: dict[str, int | str | None] = {}
    for name in ids.__struct_fields__:
        value = getattr(ids, name)
        scrubbed = scrubber.ident(value)
        if scrubbed is not value:
            changed[name] = scrubbed
    return msgspec.structs.replace(ids, **changed) if changed else ids


def _classify_data(status: int, data: ResponseData) -> Exchange:
    if status in _AUTH_STATUSES or _is_auth_error(data):
        return Exchange(Reply.AUTH, status, _api_message(data))
    if data.type == "validationError" or data.violations:
        if data.comments and any(outcome.commented for outcome in data.comments):
            # Results say leads were commented, the error type says nothing ran: neither is
            # proof, and re-sending would apply the leads again. Trusting the results would
            # be a guess too (commented: true beside a validation error is no honest answer).
            detail = "validation error beside leads reported commented: may have run"
            return Exchange(Reply.UNKNOWN, status, detail)
        return Exchange(Reply.VIOLATIONS, status, "validation error", violations=data.violations)
    if status < 300 and data.comments is not None:
        return Exchange(Reply.OK, status, outcomes=data.comments)
    if status < 300 and data.api_error_data is not None:
        # A server error code may have applied part of the request, like an HTTP 5xx.
        reply = Reply.UNKNOWN if _is_server_error(data) else Reply.FAILED
        return Exchange(reply, status, _api_message(data))
    if status < 300:
        # A success status with neither results nor an error: it may have run.
        return Exchange(Reply.UNKNOWN, status, "answer without results or error")
    return Exchange(Reply.FAILED, status, f"HTTP {status}: {_api_message(data)}".rstrip(": "))


def _is_server_error(data: ResponseData) -> bool:
    error = data.api_error_data
    code = str(error.error_code if error is not None else "").strip()
    return code.isdigit() and 500 <= int(code) <= 599


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
