"""From leads to requests and back: chunking, concurrency, retries, violation isolation.

:class:`Dispatcher` is the one place a chunk of valid leads becomes requests (one, or a few
more when Calltouch's validation names some of them) and every lead of it a result.
:func:`stream_results` feeds it from any (async) iterable, lazily, with at most
``max_in_flight`` requests running, and yields results as they are known.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import math
import re
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Final, TypeAlias

from ._constants import MAX_LEADS_PER_REQUEST
from .errors import AuthError, CalltouchError, ClientClosedError
from .limiter import RateLimiter
from .models import CommentResult, CommentStatus, LeadComment, Violation, encode_request
from .retry import RetryPolicy
from .transport import Attempt, Exchange, Reply, Transport
from .validation import describe, validate_lead

__all__ = ["Dispatcher", "Item", "Stream", "invalid_result", "stream_results"]

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


# --------------------------------------------------------------------------- streaming


class _End:
    __slots__ = ("error",)

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


_QueueItem: TypeAlias = list[CommentResult] | BaseException | _End


class Stream:
    """The state of one ``comment_many`` call: a producer reading input, chunk tasks, a queue.

    Two semaphores bound this stream's memory: ``slots`` (chunks launched) and
    ``unconsumed`` (leads read but not yet handed to the caller), so input is read at most one
    chunk past the window: ``(max_in_flight + 1) * 100`` leads per stream. Requests in flight
    are bounded per client by the dispatcher.
    Chunks are launched full; only in input order, when the caller waits for a lead of the
    chunk being filled and the reader must wait for the caller, is a partial one launched.
    """

    __slots__ = (
        "chunk_size", "dispatcher", "keep", "on_sent", "producer", "queue", "reorder", "slots",
        "tasks", "unconsumed",
    )

    def __init__(
        self,
        dispatcher: Dispatcher,
        max_in_flight: int,
        chunk_size: int,
        keep: Callable[[Item], bool] | None = None,
        ordered: bool = False,
        on_sent: OnSent | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.keep = keep
        self.on_sent = on_sent
        self.reorder = _Reorder() if ordered else None
        self.chunk_size = chunk_size
        self.queue: asyncio.Queue[_QueueItem] = asyncio.Queue()
        self.slots = asyncio.Semaphore(max_in_flight)
        self.unconsumed = asyncio.Semaphore((max_in_flight + 1) * chunk_size)
        self.tasks: set[asyncio.Task[None]] = set()
        self.producer: asyncio.Task[None] | None = None

    async def produce(
        self,
        leads: Iterable[LeadComment] | AsyncIterable[LeadComment],
        linger: float | None = None,
    ) -> None:
        """Read ``leads``, validate, pack valid ones into chunks, launch them.

        With ``linger`` (used by ``submit()``), a partial chunk is launched once its first
        lead has waited that long; ``leads`` must then be safe to cancel mid-``__anext__``.
        """
        chunk: list[Item] = []
        chunk_deadline = 0.0
        index = -1
        error: BaseException | None = None
        source = _aiter(leads) if linger is None else aiter(leads)  # type: ignore[arg-type]
        try:
            while True:
                if chunk and self.unconsumed.locked() and self._caller_needs(chunk):
                    # About to wait for the caller, who is waiting for this very chunk.
                    chunk = await self.launch(chunk)
                await self.unconsumed.acquire()
                try:
                    if chunk and linger is not None:
                        lead = await _next_before(source, chunk_deadline)
                    else:  # no timer per lead when there is nothing to time
                        lead = await anext(source)
                except StopAsyncIteration:
                    self.unconsumed.release()
                    break
                if isinstance(lead, _Lingered):
                    self.unconsumed.release()
                    chunk = await self.launch(chunk)
                    continue
                index += 1
                problems = validate_lead(lead, index)
                if problems:
                    self.queue.put_nowait([invalid_result(index, lead, describe(problems))])
                    continue
                if not chunk and linger is not None:
                    chunk_deadline = asyncio.get_running_loop().time() + linger
                chunk.append((index, lead))
                if len(chunk) == self.chunk_size:
                    chunk = await self.launch(chunk)
                    # A ready source never suspends: let requests holding permits go out.
                    await asyncio.sleep(0)
        except (asyncio.CancelledError, Exception) as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # The stream is being cancelled (the input may have answered that with an
                # error of its own): send nothing more.
                raise asyncio.CancelledError from exc
            error = exc  # the caller's iterable failed
        # Leads already read still get their results, then the stream ends (or raises).
        if chunk:
            await self.launch(chunk)
        if self.tasks:
            await asyncio.wait(set(self.tasks))
        self.queue.put_nowait(_End(error))

    def _caller_needs(self, chunk: list[Item]) -> bool:
        """In input order, the caller cannot go past a lead that is still in ``chunk``."""
        return self.reorder is not None and self.reorder.next_index >= chunk[0][0]

    async def launch(self, chunk: list[Item]) -> list[Item]:
        """Start a request for ``chunk`` (once a slot is free); return a new empty chunk."""
        await self.slots.acquire()
        if self.keep is not None:
            kept = [item for item in chunk if self.keep(item)]
            for _ in range(len(chunk) - len(kept)):
                self.unconsumed.release()  # dropped leads will never be consumed
            chunk = kept
        if not chunk:
            self.slots.release()
            return []
        task = asyncio.create_task(self._run(chunk))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return []

    async def _run(self, chunk: list[Item]) -> None:
        try:
            self.queue.put_nowait(await self.dispatcher.run(chunk, self.on_sent))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # AuthError, or a bug: the consumer raises it
            self.queue.put_nowait(exc)
        finally:
            self.slots.release()

    async def cancel(self, reason: BaseException | None = None) -> None:
        """Stop reading and cancel requests in flight; wake the consumer with ``reason``."""
        pending = [t for t in (self.producer, *self.tasks) if t is not None and not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if reason is not None:
            self.queue.put_nowait(reason)


async def stream_results(
    dispatcher: Dispatcher,
    leads: Iterable[LeadComment] | AsyncIterable[LeadComment],
    *,
    ordered: bool,
    max_in_flight: int,
    streams: set[Stream],
    chunk_size: int = MAX_LEADS_PER_REQUEST,
    linger: float | None = None,
    keep: Callable[[Item], bool] | None = None,
    on_sent: OnSent | None = None,
    closed: Callable[[], bool] = lambda: False,
) -> AsyncGenerator[CommentResult, None]:
    """Yield one result per lead of ``leads`` as requests answer (or in input order).

    ``linger``, ``keep`` and ``on_sent`` serve ``submit()``: launch partial chunks after
    ``linger`` seconds, drop at launch the items ``keep`` rejects (their callers gave up;
    dropped items yield no result), and report which leads' requests may have left.
    ``closed`` tells whether the client closed before the first iteration. If ``leads``
    raises, the leads read before get their results first.
    """
    if closed():  # created before the client closed, first iterated after
        raise client_closed()
    stream = Stream(dispatcher, max_in_flight, chunk_size, keep, ordered, on_sent)
    stream.producer = asyncio.create_task(stream.produce(leads, linger))
    streams.add(stream)
    reorder = stream.reorder
    try:
        while True:
            item = await stream.queue.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            if isinstance(item, BaseException):
                raise item
            for result in reorder.push(item) if reorder is not None else item:
                yield result
                stream.unconsumed.release()
    finally:
        streams.discard(stream)
        await stream.cancel()


class _Reorder:
    """Releases results in input order; holds those that arrive early."""

    __slots__ = ("_held", "next_index")

    def __init__(self) -> None:
        self._held: dict[int, CommentResult] = {}
        self.next_index = 0

    def push(self, results: list[CommentResult]) -> list[CommentResult]:
        for result in results:
            self._held[result.index] = result
        ready = []
        while self.next_index in self._held:
            ready.append(self._held.pop(self.next_index))
            self.next_index += 1
        return ready


class _Lingered:
    """The first lead of a partial chunk has waited ``linger``: launch the chunk."""


_LINGERED: Final = _Lingered()


async def _next_before(
    source: AsyncIterator[LeadComment], deadline: float
) -> LeadComment | _Lingered:
    """The next lead, or :data:`_LINGERED` if none comes before ``deadline`` (loop time)."""
    try:
        async with asyncio.timeout_at(deadline) as timer:
            return await anext(source)
    except TimeoutError:
        if timer.expired():
            return _LINGERED
        raise  # the source's own TimeoutError is an input error, not the linger timer


async def _aiter(
    leads: Iterable[LeadComment] | AsyncIterable[LeadComment],
) -> AsyncIterator[LeadComment]:
    if isinstance(leads, AsyncIterable):
        async for lead in leads:
            yield lead
    else:
        for lead in leads:
            yield lead


def client_closed() -> ClientClosedError:
    return ClientClosedError("this CalltouchClient is closed; create a new one")


def closed_error() -> ClientClosedError:
    return ClientClosedError("the client was closed while requests were in flight")
