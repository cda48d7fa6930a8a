"""Input -> chunks -> results: reading lazily, packing, bounds, ordering, linger, closing.

A :class:`Stream` reads leads from any (async) iterable, validates each, packs valid ones
into chunks of up to 100 and hands each chunk to a
:class:`~calltouch_async._dispatch.Dispatcher` run, whose results it queues;
:mod:`._results` takes them off the queue. Every face of the client is this one stream:
``comment()`` over at most 100 leads, ``comment_many()`` itself, and ``submit()`` through a
coalescing source.

Closing (:meth:`Stream.close`): the input is no longer read and no new request starts; leads
read but never written end ``failed``; requests already written may answer until
:meth:`Stream.expire`, after which they end ``unknown``. A source that can be told to end
(``submit()``'s) is ended instead of cut, so what it already holds is still sent. A fatal
answer stops it the same way (:meth:`Stream.halt`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable, Iterable
from itertools import islice
from typing import Any, Final, Protocol, TypeAlias, runtime_checkable

from ._constants import MAX_LEADS_PER_REQUEST
from ._dispatch import CLIENT_CLOSED, Dispatcher, Flight, Item, with_status
from ._errors import AuthError, DailyBudgetExhaustedError, RedirectError
from ._inbox import End, Inbox
from ._models import CommentResult, CommentStatus, LeadComment
from ._validation import describe, passes, validate_lead

__all__ = ["FATAL", "BatchSource", "Stream"]

#: Answers after which nothing more is sent: the credentials or base_url will not get better.
FATAL: Final = (AuthError, RedirectError)
#: Reading a plain iterable gives the event loop a turn after a full chunk once it has read
#: for this long without one, so the requests it launched meanwhile start. (An iterable that
#: blocks on its next item blocks the whole loop, requests included, until it returns.)
READ_SLICE: Final = 0.001


@runtime_checkable
class BatchSource(Protocol):
    """A source the stream takes leads from a batch at a time (``submit()``'s)."""

    async def take(self, limit: int) -> list[LeadComment]:
        """Up to ``limit`` leads, waiting for at least one; ``[]`` when the source ended.
        Safe to cancel: leads count as taken only once returned."""


Leads: TypeAlias = Iterable[LeadComment] | AsyncIterable[LeadComment] | BatchSource


class _OneByOne:
    """An async iterable as a :class:`BatchSource` of one lead per batch."""

    __slots__ = ("_leads",)

    def __init__(self, leads: AsyncIterable[LeadComment]) -> None:
        self._leads = aiter(leads)

    async def take(self, limit: int) -> list[LeadComment]:
        try:
            return [await anext(self._leads)]
        except StopAsyncIteration:
            return []


class Stream:
    """One run of leads through the pipeline: a reader task, chunk runs, a result queue.

    Memory is bounded by ``room``: leads read but not yet handed to the consumer, at most
    ``(max_in_flight + 1) * 100``, so input is read at most one chunk past the window.
    Requests in flight are bounded per client by the dispatcher.

    A chunk is launched when full, when the input ends, and, for an async source with
    ``linger``, once no lead has come for ``linger`` seconds (``linger_from_first``: once
    its first lead has waited that long). A plain iterable never waits, so never lingers.
    In input order, when the consumer waits for a lead of the chunk being filled and the
    reader waits for the consumer, that partial chunk is launched too.

    ``stop_on_budget`` (``comment_many()``): once the daily request budget is spent, read
    no more input and end with :class:`DailyBudgetExhaustedError` after the results of what
    was read (``comment()`` has read everything anyway; ``submit()`` callers each get
    ``failed`` from the dispatcher, at no request).

    ``inline`` (``comment()``: at most 100 leads): the first chunk runs in the reading task.
    ``keep`` (``submit()``) gives, at launch, the items of a chunk whose callers still wait;
    ``end_input`` makes :meth:`close` end the source (which then yields what it holds)
    instead of cutting it off.
    """

    __slots__ = (
        "_chunk", "_cut", "_dispatcher", "_end_input", "_error", "_fatal", "_from_first", "_held",
        "_inline", "_keep", "_leads", "_linger", "_reading", "_room_waiter", "_running",
        "_since", "_stop_on_budget", "_stopping", "_timer", "ended", "producer", "queue",
        "reorder", "room", "unread",
    )

    def __init__(
        self,
        leads: Leads,
        *,
        max_in_flight: int,
        ordered: bool = False,
        linger: float | None = None,
        linger_from_first: bool = False,
        keep: Callable[[list[Item]], list[Item]] | None = None,
        end_input: Callable[[], None] | None = None,
        stop_on_budget: bool = False,
        inline: bool = False,
    ) -> None:
        self._dispatcher: Dispatcher | None = None
        self._inline = inline
        self._held: tuple[list[Item], Flight] | None = None
        self._leads = leads
        self._linger = linger
        self._from_first = linger_from_first
        self._keep = keep
        self._end_input = end_input
        self._stop_on_budget = stop_on_budget
        self.reorder = _Reorder() if ordered else None
        self.queue = Inbox()
        self.room = (max_in_flight + 1) * MAX_LEADS_PER_REQUEST
        self._room_waiter: asyncio.Future[None] | None = None
        self._chunk: list[Item] = []
        self._running: dict[asyncio.Task[None], Flight] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._since = 0.0
        self.producer: asyncio.Task[Any] | None = None  # the task that reads the input
        self.ended: asyncio.Future[None] | None = None  # set once every result is queued
        self._reading = False
        self._cut = False  # the reader is being stopped by close(), not cancelled
        self._stopping: str | None = None  # why no new request starts
        self._fatal: BaseException | None = None  # a fatal answer: raised after the rest
        self.unread = False  # closing left input unread
        self._error: BaseException | None = None  # the input's own error

    # ------------------------------------------------------------------ reading

    def start(self, dispatcher: Dispatcher) -> None:
        """Read and send in a task of the stream's own."""
        self._dispatcher, self._reading = dispatcher, True
        self.ended = asyncio.get_running_loop().create_future()
        self.producer = asyncio.create_task(self._produce())
        self.producer.add_done_callback(self._ended)

    async def run_here(self, dispatcher: Dispatcher) -> None:
        """Read and send in the calling task, to the end (``comment()``: no hop between
        tasks). Closing cancels this task while its request waits in the dispatcher, which
        turns that into results, as it does a run task."""
        self._dispatcher, self._reading = dispatcher, True
        self.ended = asyncio.get_running_loop().create_future()
        self.producer = asyncio.current_task()
        try:
            await self._produce()
        finally:
            self._ended(None)

    async def _produce(self) -> None:
        try:
            leads = self._leads
            # Cheapest test first: a Protocol's isinstance costs ~10 us, an ABC's ~0.2 us.
            if isinstance(leads, AsyncIterable):
                await self._read_batches(_OneByOne(leads))
            elif not isinstance(leads, Iterable) and isinstance(leads, BatchSource):
                await self._read_batches(leads)
            else:
                await self._read(leads)
        except (asyncio.CancelledError, Exception) as exc:
            task = asyncio.current_task()
            if task is None or not task.cancelling():
                self._error = exc  # the caller's iterable failed
            elif not (self._cut and task.uncancel() == 0):
                raise asyncio.CancelledError from exc  # cancelled: send nothing more
            # else closed while reading (the input may have answered that with an error of
            # its own): _ended reports what is in hand as never sent.
        finally:
            self._reading = False
        if self._cut:
            self._fail_chunk()
        # Leads already read still get their results, then the stream ends (or raises).
        self._launch()
        if self._held is not None:
            await self._run_held(self._held)
        while self._running:
            done, _ = await asyncio.wait(list(self._running))
            for task in done:  # cancelled before its first step, a run never left itself
                self._running.pop(task, None)

    def _ended(self, producer: object) -> None:
        if self._cut:  # also when cancelled before it ever ran
            self.unread = True
            self._fail_chunk()
        self.queue.put_nowait(End(self._error))
        if self.ended is not None and not self.ended.done():
            self.ended.set_result(None)

    async def _read(self, leads: Iterable[LeadComment]) -> None:
        # comment() and comment_many() over a list, a slice at a time: a slice never holds
        # more than fills the chunk or the room left (no timer runs for a plain iterable).
        size, source, index = MAX_LEADS_PER_REQUEST, iter(leads), 0
        loop = asyncio.get_running_loop()
        # With a daily budget, let each launched request charge it before more is read:
        # once it is spent, leads not yet read are left unread rather than failed. (A
        # budget shared in Redis is charged when Redis answers: reading stops then.)
        each_chunk = self._stop_on_budget and self.dispatcher.telemetry.budget is not None
        awake_since = loop.time()
        while True:
            batch: list[LeadComment] = []
            try:
                batch.extend(islice(source, min(size - len(self._chunk), self.room)))
            finally:  # what was taken before the input failed is still read
                self._take(batch, index)
                index += len(batch)
            if not batch:
                return
            if len(self._chunk) == size:
                self._launch()
                # A plain iterable never suspends: give the requests launched a turn once
                # reading has taken READ_SLICE (a slow cursor), not after every chunk (a
                # step of the event loop per request, for a list read in microseconds).
                if not self._inline and self.room > 0 and (
                    each_chunk or loop.time() - awake_since >= READ_SLICE
                ):
                    await asyncio.sleep(0)
                    awake_since = loop.time()
                if self._budget_spent(index - 1):
                    return
            if self.room <= 0:
                await self._wait_for_room()
                awake_since = loop.time()
                if self._budget_spent(index - 1):  # spent while waiting: read no further
                    return

    def _take(self, batch: list[LeadComment], first: int) -> None:
        """Add the valid leads of ``batch`` (numbered from ``first``) to the chunk in hand;
        an invalid one gets its result at once. The batch takes its room."""
        self.room -= len(batch)
        if all(map(passes, batch)):  # nearly always: no Python step per lead
            self._chunk += enumerate(batch, first)
            return
        for index, lead in enumerate(batch, first):
            if not passes(lead) and (problems := validate_lead(lead)):
                self.queue.put_nowait([_invalid(index, lead, describe(problems))])
            else:
                self._chunk.append((index, lead))

    async def _read_batches(self, source: BatchSource) -> None:
        # A batch never holds more than fills the chunk in hand or the room left, so a chunk
        # fills at a batch's last lead. An async iterable comes one lead a batch.
        index = -1
        size = MAX_LEADS_PER_REQUEST
        linger = self._linger
        loop = asyncio.get_running_loop()
        while leads := await source.take(min(self.room, size - len(self._chunk))):
            held = len(self._chunk)
            self._take(leads, index + 1)
            index += len(leads)
            if len(self._chunk) == size:
                self._launch()
            elif linger is not None and len(self._chunk) > held:  # an invalid lead is no lead
                if not held:
                    self._since = loop.time()
                    self._timer = loop.call_at(self._since + linger, self._lingered)
                elif not self._from_first:
                    self._since = loop.time()  # idle linger: counts from the last lead
            if self._budget_spent(index):  # also for partial chunks sent by the linger
                return
            if self.room <= 0:
                await self._wait_for_room()
                if self._budget_spent(index):  # spent while waiting: take no more
                    return

    def _budget_spent(self, index: int) -> bool:
        """Whether to stop reading because the daily budget is spent (checked after each
        batch taken, so no lead taken from the input is left without a result)."""
        if not self._stop_on_budget:
            return False
        telemetry = self._dispatcher.telemetry if self._dispatcher is not None else None
        if telemetry is None or not telemetry.budget_exhausted:
            return False
        self._error = DailyBudgetExhaustedError(telemetry.budget_reason(), index + 1)
        return True

    def _lingered(self) -> None:
        """The linger timer fired: launch the partial chunk, or wait for its new due time."""
        self._timer = None
        if not self._chunk or self._linger is None:
            return
        loop = asyncio.get_running_loop()
        due = self._since + self._linger
        if loop.time() < due:
            self._timer = loop.call_at(due, self._lingered)
        else:
            self._launch()

    async def _wait_for_room(self) -> None:
        while self.room <= 0:
            chunk = self._chunk
            if chunk and self.reorder is not None and self.reorder.next_index >= chunk[0][0]:
                # The consumer waits for a lead of this very chunk: send it as it is.
                self._launch()
            self._room_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._room_waiter
            finally:
                self._room_waiter = None

    def consumed(self, count: int) -> None:
        """The consumer has taken ``count`` results: as many more leads may be read."""
        self.room += count
        waiter = self._room_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ chunks

    def _launch(self) -> None:
        """Start a run for the chunk in hand, if it holds anything."""
        chunk, self._chunk = self._chunk, []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._keep is not None:
            kept = self._keep(chunk)
            self.consumed(len(chunk) - len(kept))  # dropped leads will never be consumed
            chunk = kept
        if not chunk:
            return
        flight = Flight()
        flight.stopping = self._stopping
        if self._inline and self._held is None:
            self._held = (chunk, flight)  # run by the reading task once the input is read
            return
        task = asyncio.create_task(self._run(chunk, flight))
        if not task.done():  # an eager task (Python 3.12+) may have run to its end already
            self._running[task] = flight

    async def _run(self, chunk: list[Item], flight: Flight) -> None:
        """Send one chunk and queue its results. The run leaves ``_running`` itself as it
        ends: a done callback would cost the loop one more step per chunk."""
        assert self._dispatcher is not None  # set by start() before anything is read
        flight.started = True
        try:
            self.queue.put_nowait(await self._dispatcher.run(chunk, flight))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # AuthError, or a bug: the consumer raises it
            if isinstance(exc, FATAL):
                self.halt(exc)  # at once: runs waiting for a slot must not go out after it
            self.queue.put_nowait(exc)
        finally:
            task = asyncio.current_task()
            if task is not None:  # not registered if it ended inside create_task (eager)
                self._running.pop(task, None)

    async def _run_held(self, held: tuple[list[Item], Flight]) -> None:
        """``comment()``'s one chunk, run in the reading task itself (one task less)."""
        self._held = None
        chunk, flight = held
        producer = asyncio.current_task()
        assert producer is not None
        # Registered like a run task: closing marks it stopping, and cancels it (the
        # dispatcher turns that into results) unless its request is on the wire.
        flight.stopping = self._stopping
        self._running[producer] = flight
        await self._run(chunk, flight)

    def _fail_chunk(self) -> None:
        chunk, self._chunk = self._chunk, []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if chunk:
            reason = self._stopping or CLIENT_CLOSED
            self.queue.put_nowait(with_status(chunk, CommentStatus.FAILED, f"not sent: {reason}"))

    # ------------------------------------------------------------------ ending

    @property
    def dispatcher(self) -> Dispatcher:
        assert self._dispatcher is not None, "a stream sends once started"
        return self._dispatcher

    @property
    def fatal(self) -> BaseException | None:
        """The fatal answer that halted the stream, if any."""
        return self._fatal

    @property
    def finished(self) -> bool:
        """Every result is in the queue (or the stream never started)."""
        return self.ended is None or self.ended.done()

    def close(self) -> None:
        """Stop reading and start no new request; runs writing a request may finish."""
        if self._end_input is not None:
            self._end_input()  # the source ends after what it holds: that is still sent
            return
        self._stop(CLIENT_CLOSED, cancel_posting=False)

    def expire(self) -> None:
        """The time to answer is over: end every run now (written leads ``unknown``)."""
        self._stop(CLIENT_CLOSED, cancel_posting=True)

    def halt(self, fatal: BaseException) -> None:
        """A fatal answer (credentials, a redirect): read nothing more and start no request,
        let requests already written answer; ``fatal`` is raised after their results."""
        if self._fatal is None:
            self._fatal = fatal
            self._stop(f"stopped after {type(fatal).__name__}", cancel_posting=False)

    def _stop(self, reason: str, *, cancel_posting: bool) -> None:
        self._stopping = self._stopping or reason
        if self._reading and self.producer is not None and not self._cut:
            self._cut = True
            self.producer.cancel()
        current = asyncio.current_task()  # a run halting its own stream is not cut
        for task, flight in self._running.items():
            flight.stopping = flight.stopping or self._stopping
            # A run that has not begun sees ``stopping`` when it does; cancelled before its
            # first step it would never report its leads.
            if task is current or not flight.started or flight.cut:
                continue
            if cancel_posting or not flight.posting:
                flight.cut = True
                task.cancel()

    async def cancel(self) -> None:
        """The consumer is gone: cancel everything, send nothing more, leak no task."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        current = asyncio.current_task()  # run_here's: the consumer's own task
        pending = [
            t for t in (self.producer, *self._running)
            if t is not None and not t.done() and t is not current
        ]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


def _invalid(index: int, lead: LeadComment, problems: str) -> CommentResult:
    return CommentResult(index=index, lead=lead, status=CommentStatus.INVALID, error=problems)


class _Reorder:
    """Releases results in input order; holds those that arrive early."""

    __slots__ = ("_held", "next_index")

    def __init__(self) -> None:
        self._held: dict[int, CommentResult] = {}
        self.next_index = 0

    def release_all(self) -> list[CommentResult]:
        """Everything held, in input order (the leads before them will never come)."""
        held, self._held = self._held, {}
        return [held[index] for index in sorted(held)]

    def push(self, results: list[CommentResult]) -> list[CommentResult]:
        for result in results:
            self._held[result.index] = result
        ready = []
        while self.next_index in self._held:
            ready.append(self._held.pop(self.next_index))
            self.next_index += 1
        return ready
