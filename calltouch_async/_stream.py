"""Input -> chunks -> results: reading lazily, packing, bounds, ordering, linger.

:func:`stream_results` feeds a :class:`~calltouch_async._dispatch.Dispatcher` from any (async)
iterable, lazily, with at most ``max_in_flight`` requests running, and yields results as
they are known.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Final, TypeAlias

from ._constants import MAX_LEADS_PER_REQUEST
from ._dispatch import Dispatcher, Item, OnSent, invalid_result
from ._errors import ClientClosedError, DailyBudgetExhaustedError
from ._models import CommentResult, CommentStatus, LeadComment
from ._validation import describe, validate_lead

__all__ = ["Stream", "client_closed", "closed_error", "stream_results"]


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
                if linger is None and self.dispatcher.telemetry.budget_exhausted:
                    # telemetry: the daily budget is spent, so comment_many reads no more
                    # (submit() reads on: its callers get `failed` from the dispatcher).
                    reason = self.dispatcher.telemetry.budget_reason()
                    error = DailyBudgetExhaustedError(reason, index + 1)
                    break
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
                    self.dispatcher.telemetry.count_status(CommentStatus.INVALID)  # telemetry
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
