"""``CalltouchClient``: the session's lifecycle and the public methods."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Sequence
from types import TracebackType
from typing import Final, Self

import aiohttp
from yarl import URL

from ._coalescer import Coalescer
from ._constants import (
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FLUSH_TIMEOUT,
    DEFAULT_LINGER,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_PENDING,
    DEFAULT_TIMEOUT,
    KEEPALIVE_TIMEOUT,
    MAX_LEADS_PER_REQUEST,
)
from ._dispatch import Dispatcher, Item, invalid_result
from ._limiter import RateLimiter, shared_limiter
from ._models import CommentResult, LeadComment
from ._retry import RetryPolicy
from ._stream import Stream, client_closed, closed_error, stream_results
from ._token import Secret, argument_problem
from ._transport import SendTimeTrace, Transport
from ._validation import describe, validate_lead

__all__ = ["UNSET", "CalltouchClient"]


class _UnsetType(enum.Enum):
    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


#: "Not given": ``rate_limiter=UNSET`` means the shared per-host default, ``None`` means off.
UNSET: Final = _UnsetType.UNSET


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class CalltouchClient:
    """An asyncio client for Calltouch's lead-commenting method.

    Use it as ``async with CalltouchClient(site_id, token) as client:``, or call
    :meth:`aclose` yourself. One :class:`aiohttp.ClientSession` per client, created on the
    running loop when the client opens; a ``session`` you pass in is used as is and never
    closed by the client. A closed client cannot be reopened.

    ``rate_limiter``: by default every client of this process that talks to the same host
    shares one limiter (Calltouch limits per IP); pass your own (e.g. a Redis one shared by
    several processes) or ``None`` to send unlimited (only against a local server).
    ``timeout`` is a deadline per request, retries included. ``max_in_flight`` bounds the
    requests running at once and so the leads held in memory. ``linger``, ``max_pending``
    and ``flush_timeout`` tune :meth:`submit`. ``base_url`` must be ``https://`` unless its
    host is this machine; ``allow_insecure_http=True`` accepts plain http to another host.
    """

    __slots__ = (
        "_coalescer",
        "_dispatcher",
        "_limiter_arg",
        "_owns_session",
        "_runs",
        "_session",
        "_state",
        "_streams",
        "_teardown",
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
        rate_limiter: RateLimiter | _UnsetType | None = UNSET,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        retry_unknown: bool = False,
        session: aiohttp.ClientSession | None = None,
        linger: float = DEFAULT_LINGER,
        max_pending: int = DEFAULT_MAX_PENDING,
        flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
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
        if retry is not None and retry_unknown:
            raise ValueError("pass retry_unknown=True to your RetryPolicy, not to the client")
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
        self._dispatcher: Dispatcher | None = None
        self._coalescer: Coalescer | None = None
        self._streams: set[Stream] = set()
        self._runs: set[asyncio.Future[list[CommentResult]]] = set()
        self._teardown: asyncio.Future[None] | None = None
        self._state = _State.UNOPENED

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
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _open(self) -> Dispatcher:
        if self._state is _State.CLOSED:
            raise client_closed()
        if self._dispatcher is None:
            session = self._session
            if session is None:
                session = self._session = self._new_session()
            transport = Transport(session, self.base_url, self.site_id, self._token)
            self._dispatcher = Dispatcher(
                transport, self._resolve_limiter(), self.retry, self.timeout, self.site_id,
                self.max_in_flight,
            )
            self._state = _State.OPEN
        return self._dispatcher

    def _new_session(self) -> aiohttp.ClientSession:
        # Connections stay open between requests so a permit is spent on a warm connection.
        connector = aiohttp.TCPConnector(
            limit=self.max_in_flight * 2, keepalive_timeout=KEEPALIVE_TIMEOUT
        )
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=DEFAULT_CONNECT_TIMEOUT)
        return aiohttp.ClientSession(
            connector=connector, timeout=timeout, trace_configs=[SendTimeTrace()]
        )

    def _resolve_limiter(self) -> RateLimiter | None:
        if self._limiter_arg is UNSET:
            return shared_limiter(URL(self.base_url).host or self.base_url)
        return self._limiter_arg

    async def aclose(self) -> None:
        """Cancel ``comment``/``comment_many`` requests in flight, flush pending
        :meth:`submit` leads (up to ``flush_timeout``), close the session if the client made
        it. Idempotent; if the call is cancelled, the teardown still completes.

        Leads whose request was cancelled get no result: the ``comment_many`` stream or the
        ``comment`` call that carried them raises :class:`ClientClosedError`; their comments
        may or may not have been applied.
        """
        self._state = _State.CLOSED
        if self._teardown is None:
            self._teardown = asyncio.ensure_future(self._tear_down())
        await asyncio.shield(self._teardown)

    async def _tear_down(self) -> None:
        # Streams first, so they stop sending while submit() leads are flushed.
        streams = list(self._streams)
        await asyncio.gather(*(s.cancel(closed_error()) for s in streams))
        for run in self._runs:
            run.cancel()
        await asyncio.gather(*self._runs, return_exceptions=True)
        if self._coalescer is not None:
            await self._coalescer.aclose(self.flush_timeout)
        if self._owns_session and self._session is not None:
            await self._session.close()

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    # ------------------------------------------------------------------ public methods

    async def comment(self, leads: Sequence[LeadComment]) -> list[CommentResult]:
        """Comment up to 100 leads in one request; one result per lead, in input order."""
        if len(leads) > MAX_LEADS_PER_REQUEST:
            raise ValueError(
                f"comment() takes at most {MAX_LEADS_PER_REQUEST} leads (one request), got "
                f"{len(leads)}; use comment_many() for any number"
            )
        dispatcher = self._open()
        results: list[CommentResult | None] = [None] * len(leads)
        valid: list[Item] = []
        for index, lead in enumerate(leads):
            problems = validate_lead(lead, index)
            if problems:
                results[index] = invalid_result(index, lead, describe(problems))
            else:
                valid.append((index, lead))
        if valid:
            for result in await self._run_tracked(dispatcher, valid):
                results[result.index] = result
        return [r for r in results if r is not None]

    async def _run_tracked(self, dispatcher: Dispatcher, items: list[Item]) -> list[CommentResult]:
        """Run one chunk in a task that :meth:`aclose` can cancel."""
        run = asyncio.ensure_future(dispatcher.run(items))
        self._runs.add(run)
        try:
            return await run
        except asyncio.CancelledError:
            caller = asyncio.current_task()
            if run.cancelled() and self.closed and not (caller and caller.cancelling()):
                raise closed_error() from None
            raise
        finally:
            self._runs.discard(run)

    def comment_many(
        self,
        leads: Iterable[LeadComment] | AsyncIterable[LeadComment],
        *,
        ordered: bool = False,
    ) -> AsyncGenerator[CommentResult, None]:
        """Comment any number of leads; yield one result per lead as soon as it is known.

        ``leads`` is read lazily into requests of up to 100 valid leads, with at most
        ``max_in_flight`` requests running. Results come as requests answer, or in input
        order with ``ordered=True``; ``result.index`` is the lead's position in ``leads``.
        Leads failing local validation yield ``invalid`` at once and are never sent.

        Breaking out of the loop cancels what is in flight once the generator is closed; use
        ``contextlib.aclosing`` to make that immediate.
        """
        dispatcher = self._open()
        return stream_results(
            dispatcher, leads, ordered=ordered, max_in_flight=self.max_in_flight,
            streams=self._streams, closed=lambda: self.closed,
        )

    async def submit(self, lead: LeadComment) -> CommentResult:
        """Comment one lead, sharing requests with every other concurrent ``submit()``.

        The lead joins a pending batch sent when it holds 100 leads or its oldest lead has
        waited ``linger`` seconds. At most ``max_pending`` leads wait; further callers wait
        for room. Cancelling the call before the lead is sent takes it out of the batch;
        after, the result is dropped (the lead is not re-sent). Raises :class:`AuthError`
        to every waiting caller when the credentials are refused. The result's ``index``
        is 0: the one lead passed.
        """
        dispatcher = self._open()
        if self._coalescer is None:
            # Its stream is not in self._streams: aclose() flushes it instead of cancelling it.
            self._coalescer = Coalescer(
                dispatcher, linger=self.linger, max_pending=self.max_pending,
                max_in_flight=self.max_in_flight, streams=set(),
            )
        return await self._coalescer.submit(lead)
