"""``submit()``'s coalescing source: one lead per call from many coroutines, one stream.

Submitted leads are queued in a :class:`SubmitSource`, an async iterable that one long-lived
stream (the same one ``comment_many`` uses) reads; the stream launches a chunk when it holds
100 leads or its first lead has waited ``linger`` seconds. Each caller awaits a future that
:class:`Coalescer` resolves with its own lead's result. Closing ends the source, so what it
holds is still sent.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable

import msgspec

from ._dispatch import NOT_SENT_CLOSED, Item
from ._errors import AuthError, RedirectError
from ._models import CommentResult, CommentStatus, LeadComment

__all__ = ["Coalescer", "SubmitSource"]

_Future = asyncio.Future[CommentResult]


class SubmitSource:
    """The submitted leads, handed to the stream a batch at a time (:meth:`take`).

    It numbers leads in the order the stream takes them, which is the stream's ``index``;
    ``waiters`` maps that index to the caller's future. A batch, not a lead, per step: the
    stream reads it without an awaited call per lead. Leads and their futures wait in two
    queues side by side, so taking a lead allocates nothing of its own (every object a lead
    costs is more work for the garbage collector, under a thousand concurrent callers).
    """

    __slots__ = ("_after_close", "_futures", "_leads", "_read", "_ready", "waiters")

    def __init__(self) -> None:
        self._leads: deque[LeadComment] = deque()
        self._futures: deque[_Future] = deque()  # the caller of the lead at the same place
        self._ready: asyncio.Future[None] | None = None  # the reader waits for a lead
        self._after_close: int | None = None  # leads still to hand out once closed
        self.waiters: dict[int, _Future] = {}
        self._read = 0

    async def take(self, limit: int) -> list[LeadComment]:
        """Up to ``limit`` leads (waiting for the first); ``[]`` once closed and drained.

        Safe to cancel: leads are taken only when the list is returned, without a pause.
        """
        while True:
            leads = self._take_now(limit)
            if leads or self._after_close == 0:
                return leads
            ready = self._ready = asyncio.get_running_loop().create_future()
            try:
                await ready
            finally:
                self._ready = None

    def _take_now(self, limit: int) -> list[LeadComment]:
        pending, futures, waiters = self._leads, self._futures, self.waiters
        leads: list[LeadComment] = []
        if self._after_close is not None:
            limit = min(limit, self._after_close)
        while pending and len(leads) < limit:
            lead, future = pending.popleft(), futures.popleft()
            if self._after_close is not None:
                self._after_close -= 1
            if not future.done():  # else the caller cancelled before it was read
                waiters[self._read] = future
                self._read += 1
                leads.append(lead)
        return leads

    def put(self, lead: LeadComment, future: _Future) -> None:
        self._leads.append(lead)
        self._futures.append(future)
        ready = self._ready
        if ready is not None:  # the reader waits: wake it once (not once per lead)
            self._ready = None
            if not ready.done():
                ready.set_result(None)

    def close(self) -> None:
        """End the iteration once the leads already queued are read."""
        if self._after_close is None:
            self._after_close = len(self._leads)
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_result(None)

    def keep(self, chunk: list[Item]) -> list[Item]:
        """Called as a chunk launches: the items whose caller still waits (the others are
        forgotten). One call per chunk, not per lead."""
        waiters = self.waiters
        kept = [item for item in chunk if not waiters[item[0]].done()]
        if len(kept) < len(chunk):
            for index, _ in chunk:
                if waiters[index].done():
                    del waiters[index]
        return kept

    def unread(self) -> list[tuple[LeadComment, _Future]]:
        """Take the leads the stream never read, with their callers' futures."""
        left = list(zip(self._leads, self._futures, strict=True))
        self._leads.clear()
        self._futures.clear()
        if self._after_close is not None:
            self._after_close = 0
        return left


#: Runs a stream over a source and yields its results a batch at a time (the client's, so it
#: owns the stream).
StreamFactory = Callable[[SubmitSource], AsyncIterator[list[CommentResult]]]


class Coalescer:
    """Owns the stream behind ``submit()``; started on first use, again after a failure.

    A caller joins with its lead (:meth:`join`, else :meth:`join_in_line`) and awaits the
    future it gets in its own coroutine: under a thousand concurrent callers, a coroutine of
    the coalescer's per lead cost a frame to create, to resume and to collect.

    At most ``max_pending`` leads wait for a result; further callers wait in line, in
    arrival order. A lead's slot is freed by whoever completes its future: the coalescer
    when it sets the result (a batch at a time) or an error, the caller when its
    cancellation cancels the future first (:meth:`abandon`). The bound is a plain counter: a
    caller that finds a slot free (nearly all) creates nothing for it.
    """

    __slots__ = (
        "_consumer", "_error", "_is_open", "_loop", "_max_pending", "_pending", "_room_waiters",
        "_source", "_stream",
    )

    def __init__(
        self, stream: StreamFactory, *, max_pending: int, is_open: Callable[[], bool]
    ) -> None:
        self._stream = stream
        self._is_open = is_open
        # Created on the client's loop, which the client checks on every call: looking the
        # loop up again per lead would cost more than the rest of taking a lead.
        self._loop = asyncio.get_running_loop()
        self._max_pending = max_pending
        self._pending = 0
        self._room_waiters: deque[asyncio.Future[None]] = deque()
        self._source: SubmitSource | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    def join(self, lead: LeadComment) -> _Future | None:
        """Queue ``lead`` in a free slot: the future of its result. None when no slot is free
        or callers wait in line (then :meth:`join_in_line`). Raises what the stream failed
        with for good (the credentials, a redirect)."""
        if self._pending >= self._max_pending or self._room_waiters:
            return None
        future = self._put(lead)
        self._pending += 1
        return future

    async def join_in_line(self, lead: LeadComment, check: Callable[[], None]) -> _Future:
        """Wait in line until a slot is handed over, ``check()`` again (the client may have
        closed meanwhile), then queue ``lead``: the future of its result."""
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._room_waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release(1)  # handed a slot, but cancelled before it could use it
            elif waiter in self._room_waiters:  # _release may have dropped it already
                self._room_waiters.remove(waiter)
            raise
        try:  # the slot handed over is this caller's now
            check()
            return self._put(lead)
        except BaseException:
            self._release(1)
            raise

    def abandon(self, future: _Future) -> None:
        """The caller stopped waiting before its result came (cancelled): it is not sent if
        not yet taken into a request, its result is dropped if it was, and its slot frees."""
        if not future.done():
            future.cancel()
        if future.cancelled():  # else the coalescer completed it, and freed the slot then
            self._release(1)

    def _put(self, lead: LeadComment) -> _Future:
        if self._error is not None:
            raise _fresh(self._error)
        source = self._source
        if source is None or self._consumer is None or self._consumer.done():
            source = self._start()
        future: _Future = self._loop.create_future()
        source.put(lead, future)
        return future

    def _release(self, count: int) -> None:
        """``count`` slots are free again: hand each to the first caller in line, or free it."""
        waiters = self._room_waiters
        while count and waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: _pending is unchanged
                count -= 1
        self._pending -= count

    def _start(self) -> SubmitSource:
        """A new stream, as there is none or it has ended."""
        self._source = source = SubmitSource()
        self._consumer = asyncio.create_task(self._deliver(source, self._stream(source)))
        return source

    async def _deliver(
        self, source: SubmitSource, batches: AsyncIterator[list[CommentResult]]
    ) -> None:
        waiters, set_index = source.waiters, msgspec.structs.force_setattr
        try:
            async for batch in batches:
                resolved = 0
                for result in batch:
                    future = waiters.pop(result.index)
                    if not future.done():  # else the caller was cancelled after sending
                        # The caller passed one lead: it is lead 0. Set in place, as nothing
                        # else holds this result yet (a copy per lead cost a copy per lead).
                        set_index(result, "index", 0)
                        future.set_result(result)
                        resolved += 1
                self._release(resolved)
        except (AuthError, RedirectError) as exc:
            self._error = exc  # credentials or base_url will not get better: every later call too
            self._fail_all(source, exc)
        except Exception as exc:
            if self._is_open():  # else closing: finish() reports what is left
                self._fail_all(source, exc)  # the next submit() starts a new stream

    async def finish(self, error: BaseException) -> list[CommentResult]:
        """After the client closed the stream: wait for the last results; leads the stream
        never read end ``failed`` (returned, as the stream never saw them), and any caller
        still without a result gets ``error``."""
        source, consumer = self._source, self._consumer
        if source is None or consumer is None:
            return []
        await asyncio.shield(consumer)
        never_read = []
        for lead, future in source.unread():
            if not future.done():
                result = CommentResult(
                    index=0, lead=lead, status=CommentStatus.FAILED, error=NOT_SENT_CLOSED
                )
                future.set_result(result)
                never_read.append(result)
        self._release(len(never_read))
        self._fail_all(source, error)
        return never_read

    def _fail_all(self, source: SubmitSource, exc: BaseException) -> None:
        futures = [*source.waiters.values(), *(future for _, future in source.unread())]
        failed = 0
        for future in futures:
            if not future.done():
                future.set_exception(_fresh(exc))
                failed += 1
        source.waiters.clear()
        self._release(failed)


def _fresh(exc: BaseException) -> BaseException:
    """A copy of ``exc`` for one caller: raising one instance again and again would chain every
    caller's frames onto its traceback (unbounded memory, and reports that grow)."""
    copy = type(exc).__new__(type(exc), *exc.args)
    copy.__dict__.update(exc.__dict__)
    copy.args = exc.args
    return copy
