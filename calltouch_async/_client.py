"""``CalltouchClient``: the lifecycle (one state, one event loop) and three faces of one stream.

``comment()`` is the stream over at most 100 leads in input order, ``comment_many()`` is the
stream itself, ``submit()`` feeds a long-lived stream through its coalescing source. Every
stream registers here when it starts and leaves when it ends; :meth:`CalltouchClient.aclose`
closes them all the same way.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Sequence
from datetime import tzinfo
from types import TracebackType
from typing import Final, Self

import aiohttp
from msgspec import UNSET, UnsetType

from ._coalescer import Coalescer, SubmitSource
from ._constants import (
    COMMENT_PATH,
    DAY_TIMEZONE,
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FLUSH_TIMEOUT,
    DEFAULT_LINGER,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_PENDING,
    DEFAULT_STREAM_LINGER,
    DEFAULT_TIMEOUT,
    KEEPALIVE_TIMEOUT,
    MAX_LEADS_PER_REQUEST,
)
from ._dispatch import Dispatcher
from ._errors import ClientClosedError, WrongEventLoopError
from ._limiter import RateLimiter, shared_limiter
from ._models import CommentResult, LeadComment
from ._results import batches, collect, iterate
from ._retry import RetryPolicy
from ._stream import Stream
from ._telemetry import Stats, new_telemetry
from ._token import Secret, argument_problem
from ._transport import SendTimeRequest, Transport

__all__ = ["CalltouchClient"]


class _State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


_OPEN: Final = _State.OPEN  # checked on every call: a member looked up on its class costs more

_REFUSED = {
    _State.CLOSING: "this CalltouchClient is closing: it takes no more leads",
    _State.CLOSED: "this CalltouchClient is closed; create a new one",
}


class CalltouchClient:
    """An asyncio client for Calltouch's lead-commenting method.

    Use it as ``async with CalltouchClient(site_id, token) as client:``, or call
    :meth:`aclose` yourself. One :class:`aiohttp.ClientSession` per client, created on the
    running loop at first use; the client then belongs to that loop (used from another,
    it raises :class:`WrongEventLoopError` before sending anything). A ``session`` you pass
    in is used as is and never closed by the client. A closed client cannot be reopened.

    ``rate_limiter``: by default every client of this process that talks to the same host
    shares one limiter (Calltouch limits per IP); pass your own (e.g. a Redis one shared by
    several processes) or ``None`` to send unlimited (only against a local server).
    ``timeout`` is a deadline per request, retries included. ``max_in_flight`` bounds the
    requests running at once and so the leads held in memory. ``linger`` and
    ``max_pending`` tune :meth:`submit`; ``flush_timeout`` is how long :meth:`aclose` lets
    requests already written answer.
    ``base_url`` must be ``https://`` unless its host is this machine;
    ``allow_insecure_http=True`` accepts plain http to another host.
    """

    __slots__ = (
        "_coalescer",
        "_dispatcher",
        "_entered",
        "_limiter_arg",
        "_loop",
        "_owns_session",
        "_session",
        "_state",
        "_streams",
        "_teardown",
        "_telemetry",
        "_token",
        "base_url",
        "flush_timeout",
        "linger",
        "max_in_flight",
        "max_pending",
        "retry",
        "site_id",
        "timeout",
    )

    def __init__(
        self,
        site_id: int | str,
        access_token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        rate_limiter: RateLimiter | UnsetType | None = UNSET,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        retry_unknown: bool = False,
        session: aiohttp.ClientSession | None = None,
        linger: float = DEFAULT_LINGER,
        max_pending: int = DEFAULT_MAX_PENDING,
        flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
        daily_request_budget: int | None = None,
        day_timezone: tzinfo = DAY_TIMEZONE,
        tracer_provider: object | None = None,
        meter_provider: object | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        token = Secret(access_token)
        del access_token  # tracebacks recorded with their locals must not record the token
        problem = argument_problem(site_id, token, base_url, allow_insecure_http)
        if problem is not None:
            raise problem
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if max_pending < 1:  # with no slot, every submit() would wait for ever
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            kind = type(session).__name__
            raise TypeError(f"session must be an aiohttp.ClientSession, got {kind}")
        if retry is not None and retry_unknown:
            raise ValueError("pass retry_unknown=True to your RetryPolicy, not to the client")
        self._state = _State.OPEN
        self.site_id = site_id
        self._token = token.value
        self.base_url = base_url.rstrip("/")
        self._limiter_arg = rate_limiter
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self.retry = retry if retry is not None else RetryPolicy(retry_unknown=retry_unknown)
        self._session = session
        self._owns_session = session is None
        self.linger = linger
        self.max_pending = max_pending
        self.flush_timeout = flush_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatcher: Dispatcher | None = None
        self._coalescer: Coalescer | None = None
        self._streams: set[Stream] = set()  # every running stream, submit()'s included
        self._teardown: asyncio.Future[None] | None = None
        self._entered = False
        # stats(), the daily budget, OpenTelemetry (imported here, if installed)
        self._telemetry = new_telemetry(
            site_id, self.base_url + COMMENT_PATH, daily_request_budget=daily_request_budget,
            day_timezone=day_timezone, tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )

    def __repr__(self) -> str:
        # Never the token; works on a client whose __init__ raised half-way.
        state = getattr(self, "_state", None)
        return (
            f"CalltouchClient(site_id={getattr(self, 'site_id', None)!r}, "
            f"base_url={getattr(self, 'base_url', None)!r}, "
            f"state={state.value if state is not None else 'unbuilt'})"
        )

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self._entered and self._state is _State.OPEN:
            raise RuntimeError(
                "this CalltouchClient is already open in an `async with` block; "
                "enter it once (use the same client inside, or create another)"
            )
        self._pipeline()
        self._entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` has been called (while closing, too)."""
        return self._state is not _OPEN

    def _check(self) -> None:
        """Raise unless the client may send now, from the running event loop."""
        if self._state is not _OPEN:
            raise ClientClosedError(_REFUSED[self._state])
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            raise WrongEventLoopError(
                "this CalltouchClient was opened on another event loop (an earlier "
                "asyncio.run(), or another thread); nothing was sent. Create the client "
                "inside the loop that uses it, e.g. inside the coroutine given to "
                "asyncio.run(), one per loop or thread"
            )

    def _pipeline(self) -> Dispatcher:
        """The dispatcher; created with the session on first use, on the running loop."""
        self._check()
        if self._dispatcher is None:
            self._loop = asyncio.get_running_loop()
            session = self._session
            if session is None:
                session = self._session = self._new_session()
            transport = Transport(session, self.base_url, self.site_id, self._token)
            limiter = self._resolve_limiter()
            self._telemetry.use_limiter(limiter)  # limiter waits; a Redis-shared budget
            self._dispatcher = Dispatcher(
                transport, limiter, self.retry, self.timeout, self.site_id,
                self.max_in_flight, self._telemetry,
            )
        return self._dispatcher

    def _new_session(self) -> aiohttp.ClientSession:
        # Connections stay open between requests so a permit is spent on a warm connection.
        connector = aiohttp.TCPConnector(
            limit=self.max_in_flight * 2, keepalive_timeout=KEEPALIVE_TIMEOUT
        )
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=DEFAULT_CONNECT_TIMEOUT)
        return aiohttp.ClientSession(
            connector=connector, timeout=timeout, request_class=SendTimeRequest
        )

    def _resolve_limiter(self) -> RateLimiter | None:
        if isinstance(self._limiter_arg, UnsetType):
            return shared_limiter(self.base_url)
        return self._limiter_arg

    async def aclose(self, *, flush_timeout: float | None = None) -> None:
        """Close gracefully; idempotent, and completed even if the call is cancelled.

        Every stream stops reading its input and starts no new request; leads read but never
        written end ``failed`` ("not sent: the client closed"). Requests already written get
        up to ``flush_timeout`` seconds (default: the client's) to answer; their leads then
        end with their real status, or ``unknown``. Pending :meth:`submit` leads are still
        sent within that time. Streams yield all those results; a ``comment_many`` stream
        then raises :class:`ClientClosedError` if its input was left unread. Finally the
        session is closed if the client made it.
        """
        if self._teardown is None:
            if self._state is _State.OPEN:
                self._check()  # from another loop, nothing here can be closed properly
            self._state = _State.CLOSING
            grace = self.flush_timeout if flush_timeout is None else flush_timeout
            self._teardown = asyncio.ensure_future(self._tear_down(grace))
        await asyncio.shield(self._teardown)

    async def _tear_down(self, grace: float) -> None:
        streams = list(self._streams)
        for stream in streams:
            stream.close()
        running = {s.ended for s in streams if s.ended is not None}
        if running:
            await asyncio.wait(running, timeout=grace)
        for stream in streams:
            if not stream.finished:
                stream.expire()
        running = {task for task in running if not task.done()}
        if running:
            await asyncio.wait(running)
        if self._coalescer is not None:
            never_read = await self._coalescer.finish(ClientClosedError(_REFUSED[_State.CLOSED]))
            self._telemetry.count(never_read)
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._state = _State.CLOSED

    def stats(self) -> Stats:
        """An immutable snapshot of this client's counters: requests, answers by kind,
        retries, leads by final status, requests in flight, limiter waits, requests today
        and the daily budget. Cheap enough to call on every metrics scrape."""
        return self._telemetry.stats()

    # ------------------------------------------------------------------ one stream

    def _attach(self, stream: Stream) -> Dispatcher:
        dispatcher = self._pipeline()  # refuses a closed client, or another loop
        self._streams.add(stream)
        return dispatcher

    def _iterate(self, stream: Stream) -> AsyncGenerator[CommentResult, None]:
        return iterate(stream, self._attach, self._streams.discard, self._unread_error)

    @staticmethod
    def _unread_error() -> ClientClosedError:
        return ClientClosedError(
            "the CalltouchClient was closed before this stream's input was read to the end"
        )

    # ------------------------------------------------------------------ the three faces

    async def comment(self, leads: Sequence[LeadComment]) -> list[CommentResult]:
        """Comment up to 100 leads in one request; one result per lead, in input order."""
        if len(leads) > MAX_LEADS_PER_REQUEST:
            raise ValueError(
                f"comment() takes at most {MAX_LEADS_PER_REQUEST} leads (one request), got "
                f"{len(leads)}; use comment_many() for any number"
            )
        # Unordered: collect() sorts the results once, at the end. (Attaching the stream
        # checks the client is open, on its loop.)
        stream = Stream(leads, max_in_flight=self.max_in_flight, inline=True)
        return await collect(stream, self._attach, self._streams.discard, self._unread_error)

    def comment_many(
        self,
        leads: Iterable[LeadComment] | AsyncIterable[LeadComment],
        *,
        ordered: bool = False,
        linger: float | None = DEFAULT_STREAM_LINGER,
    ) -> AsyncGenerator[CommentResult, None]:
        """Comment any number of leads; yield one result per lead as soon as it is known.

        ``leads`` is read lazily into requests of up to 100 valid leads, with at most
        ``max_in_flight`` requests running. Results come as requests answer, or in input
        order with ``ordered=True``; ``result.index`` is the lead's position in ``leads``.
        Leads failing local validation yield ``invalid`` at once and are never sent. From an
        async source, a partial request is sent once no lead has come for ``linger``
        seconds (``None``: only full requests and the last one); a plain iterable never
        waits, so never lingers.

        Breaking out of the loop cancels what is in flight once the generator is closed; use
        ``contextlib.aclosing`` to make that immediate.
        """
        if self._state is not _State.OPEN:
            raise ClientClosedError(_REFUSED[self._state])
        stream = Stream(
            leads, max_in_flight=self.max_in_flight, ordered=ordered, linger=linger,
            stop_on_budget=True,
        )
        return self._iterate(stream)

    async def submit(self, lead: LeadComment) -> CommentResult:
        """Comment one lead, sharing requests with every other concurrent ``submit()``.

        The lead joins a pending batch sent when it holds 100 leads or its oldest lead has
        waited ``linger`` seconds. At most ``max_pending`` leads wait; further callers wait
        for room. Cancelling the call before the lead is sent takes it out of the batch;
        after, the result is dropped (the lead is not re-sent). When the credentials are
        refused (or Calltouch redirects), callers whose lead was in that request, or not yet
        taken into one, get :class:`AuthError` (:class:`RedirectError`), and so does every
        later call; a lead already packed but never written ends ``failed`` ("not sent").
        The result's ``index`` is 0: the one lead passed.
        """
        # _check(), inline once the client has sent: one Python call less per lead, on the
        # path a thousand concurrent callers take.
        if self._state is not _OPEN or self._loop is not asyncio.get_running_loop():
            self._check()  # raises, unless nothing was sent yet
        coalescer = self._coalescer or self._new_coalescer()
        future = coalescer.join(lead)
        if future is None:  # backpressure: max_pending leads wait already
            future = await coalescer.join_in_line(lead, self._check)
        try:
            return await future
        except BaseException:  # an error set by the coalescer, or this caller cancelled
            if not future.done() or future.cancelled():  # cancelled before its result came
                coalescer.abandon(future)
            raise

    def _new_coalescer(self) -> Coalescer:
        self._coalescer = Coalescer(
            self._submit_stream, max_pending=self.max_pending, is_open=lambda: not self.closed
        )
        return self._coalescer

    def _submit_stream(self, source: SubmitSource) -> AsyncGenerator[list[CommentResult], None]:
        stream = Stream(
            source, max_in_flight=self.max_in_flight, linger=self.linger,
            linger_from_first=True, keep=source.keep, end_input=source.close,
        )
        # Started now, while the client is open: a close that comes before the consumer's
        # first step still sees this stream and sends what the callers queued.
        stream.start(self._attach(stream))
        return batches(stream, self._attach, self._streams.discard, self._unread_error)
