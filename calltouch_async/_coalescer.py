"""``submit()``'s coalescing source: one lead per call from many coroutines, one stream.

Submitted leads are queued in a :class:`SubmitSource`, an async iterable that one long-lived
stream (the same one ``comment_many`` uses) reads; the stream launches a chunk when it holds
100 leads or its first lead has waited ``linger`` seconds. Each caller awaits a future that
:class:`Coalescer` resolves with its own lead's result. Closing ends the source, so what it
holds is still sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Final

import msgspec

from ._dispatch import NOT_SENT_CLOSED, Item
from ._errors import AuthError, RedirectError
from ._models import CommentResult, CommentStatus, LeadComment

__all__ = ["Coalescer", "SubmitSource"]

_CLOSE: Final = object()


class _Waiter:
    __slots__ = ("future", "lead")

    def __init__(self, lead: LeadComment, future: asyncio.Future[CommentResult]) -> None:
        self.lead = lead
        self.future = future


class SubmitSource:
    """The submitted leads as an async iterator whose ``__anext__`` is safe to cancel.

    It numbers leads in the order the stream reads them, which is the stream's ``index``.
    """

    __slots__ = ("_queue", "_read", "waiters")

    def __init__(self) -> None:
        self._queue: asyncio.Queue[_Waiter | object] = asyncio.Queue()
        self.waiters: dict[int, _Waiter] = {}
        self._read = 0

    def __aiter__(self) -> SubmitSource:
        return self

    async def __anext__(self) -> LeadComment:
        while True:
            item = await self._queue.get()
            if item is _CLOSE:
                raise StopAsyncIteration
            assert isinstance(item, _Waiter)
            if not item.future.done():  # a caller cancelled before its lead was read
                self.waiters[self._read] = item
                self._read += 1
                return item.lead

    def put(self, waiter: _Waiter) -> None:
        self._queue.put_nowait(waiter)

    def close(self) -> None:
        """End the iteration once the leads already queued are read."""
        self._queue.put_nowait(_CLOSE)

    def keep(self, item: Item) -> bool:
        """Called as a chunk launches: drop leads whose caller gave up."""
        waiter = self.waiters[item[0]]
        if waiter.future.done():
            del self.waiters[item[0]]
            return False
        return True

    def unread(self) -> list[_Waiter]:
        """Take the waiters the stream never read."""
        left = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _Waiter):
                left.append(item)
        return left


#: Runs a stream over a source and yields its results (the client's, so it owns the stream).
StreamFactory = Callable[[SubmitSource], AsyncIterator[CommentResult]]


class Coalescer:
    """Owns the stream behind ``submit()``; started on first use, again after a failure."""

    __slots__ = ("_consumer", "_error", "_is_open", "_room", "_source", "_stream")

    def __init__(
        self, stream: StreamFactory, *, max_pending: int, is_open: Callable[[], bool]
    ) -> None:
        self._stream = stream
        self._is_open = is_open
        self._room = asyncio.Semaphore(max_pending)
        self._source: SubmitSource | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    async def submit(self, lead: LeadComment, check: Callable[[], None]) -> CommentResult:
        """The result of ``lead``; ``check()`` raises if the lead may no longer be taken."""
        async with self._room:  # backpressure: at most max_pending leads wait
            # Checked after the wait for room: the client may have closed, or failed, since.
            check()
            if self._error is not None:
                raise self._error
            future: asyncio.Future[CommentResult] = asyncio.get_running_loop().create_future()
            self._start().put(_Waiter(lead, future))
            return await future

    def _start(self) -> SubmitSource:
        """The running stream's source; a new stream if there is none or it has ended."""
        if self._source is None or self._consumer is None or self._consumer.done():
            self._source = source = SubmitSource()
            self._consumer = asyncio.create_task(self._deliver(source, self._stream(source)))
        return self._source

    async def _deliver(self, source: SubmitSource, results: AsyncIterator[CommentResult]) -> None:
        try:
            async for result in results:
                waiter = source.waiters.pop(result.index)
                if not waiter.future.done():  # else the caller was cancelled after sending
                    # The caller passed one lead: it is lead 0.
                    waiter.future.set_result(msgspec.structs.replace(result, index=0))
        except (AuthError, RedirectError) as exc:
            self._error = exc  # credentials or base_url will not get better: every later call too
            _fail_all(source, exc)
        except Exception as exc:
            if self._is_open():  # else closing: finish() reports what is left
                _fail_all(source, exc)  # the next submit() starts a new stream

    async def finish(self, error: BaseException) -> list[CommentResult]:
        """After the client closed the stream: wait for the last results; leads the stream
        never read end ``failed`` (returned, as the stream never saw them), and any caller
        still without a result gets ``error``."""
        source, consumer = self._source, self._consumer
        if source is None or consumer is None:
            return []
        await asyncio.shield(consumer)
        never_read = []
        for waiter in source.unread():
            if not waiter.future.done():
                result = CommentResult(
                    index=0, lead=waiter.lead, status=CommentStatus.FAILED, error=NOT_SENT_CLOSED
                )
                waiter.future.set_result(result)
                never_read.append(result)
        _fail_all(source, error)
        return never_read


def _fail_all(source: SubmitSource, exc: BaseException) -> None:
    for waiter in [*source.waiters.values(), *source.unread()]:
        if not waiter.future.done():
            waiter.future.set_exception(exc)
    source.waiters.clear()
