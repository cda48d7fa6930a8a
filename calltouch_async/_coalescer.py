"""``submit()``: one lead per call from many coroutines, packed into shared requests.

Submitted leads flow into one long-lived :func:`~calltouch_async._stream.stream_results`
(the same packing, limiter and failure handling as ``comment_many``), which launches a chunk
when it holds 100 leads or its first lead has waited ``linger`` seconds. Each caller awaits a
future resolved with its own lead's result.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Final

import msgspec

from ._dispatch import Dispatcher, Item
from ._errors import AuthError, ClientClosedError
from ._models import CommentResult, CommentStatus, LeadComment
from ._stream import Stream, stream_results

__all__ = ["Coalescer"]

_CLOSE: Final = object()


class _Waiter:
    __slots__ = ("future", "lead", "sent")

    def __init__(self, lead: LeadComment, future: asyncio.Future[CommentResult]) -> None:
        self.lead = lead
        self.future = future
        self.sent = False


class _SubmitSource:
    """The submitted leads as an async iterator whose ``__anext__`` is safe to cancel.

    It numbers leads in the order the stream reads them, which is the stream's ``index``.
    """

    __slots__ = ("_queue", "_read", "waiters")

    def __init__(self) -> None:
        self._queue: asyncio.Queue[_Waiter | object] = asyncio.Queue()
        self.waiters: dict[int, _Waiter] = {}
        self._read = 0

    def __aiter__(self) -> _SubmitSource:
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
        self._queue.put_nowait(_CLOSE)

    def unread(self) -> list[_Waiter]:
        """Take the waiters the stream never read."""
        left = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _Waiter):
                left.append(item)
        return left


class Coalescer:
    """Owns the shared stream behind ``submit()``; started on first use."""

    __slots__ = (
        "_closing", "_consumer", "_dispatcher", "_error", "_linger", "_max_in_flight", "_room",
        "_source", "_streams",
    )

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        linger: float,
        max_pending: int,
        max_in_flight: int,
        streams: set[Stream],
    ) -> None:
        self._dispatcher = dispatcher
        self._linger = linger
        self._max_in_flight = max_in_flight
        self._streams = streams
        self._room = asyncio.Semaphore(max_pending)
        self._source: _SubmitSource | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._closing = False

    async def submit(self, lead: LeadComment) -> CommentResult:
        async with self._room:  # backpressure: at most max_pending leads wait
            # Checked after the wait for room: the client may have closed, or failed, since.
            if self._error is not None:
                raise self._error
            if self._closing:
                raise ClientClosedError("the client is closing: submit() takes no more leads")
            source = self._start()
            future: asyncio.Future[CommentResult] = asyncio.get_running_loop().create_future()
            source.put(_Waiter(lead, future))
            return await future

    def _start(self) -> _SubmitSource:
        """The running stream's source; a new stream if there is none or it has ended."""
        if self._source is None or self._consumer is None or self._consumer.done():
            self._source = source = _SubmitSource()
            stream = stream_results(
                self._dispatcher, source, ordered=False, max_in_flight=self._max_in_flight,
                streams=self._streams, linger=self._linger,
                keep=functools.partial(_keep, source),
                on_sent=functools.partial(_mark_sent, source),
            )
            self._consumer = asyncio.create_task(self._deliver(source, stream))
        return self._source

    async def _deliver(
        self, source: _SubmitSource, stream: AsyncIterator[CommentResult]
    ) -> None:
        try:
            async for result in stream:
                waiter = source.waiters.pop(result.index)
                if not waiter.future.done():  # else the caller was cancelled after sending
                    waiter.future.set_result(_as_single(result))
        except AuthError as exc:
            self._error = exc  # the credentials will not get better: every later call too
            self._fail_all(source, exc)
        except Exception as exc:
            self._fail_all(source, exc)  # the next submit() starts a new stream

    def _fail_all(self, source: _SubmitSource, exc: BaseException) -> None:
        for waiter in [*source.waiters.values(), *source.unread()]:
            if not waiter.future.done():
                waiter.future.set_exception(exc)
        source.waiters.clear()

    async def aclose(self, flush_timeout: float) -> None:
        """Send what is pending (for at most ``flush_timeout`` seconds), then stop.

        Leads that could not be sent get ``failed``; leads cancelled in flight ``unknown``.
        """
        self._closing = True
        source, consumer = self._source, self._consumer
        if source is None or consumer is None:
            return
        source.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(consumer), flush_timeout)
        if not consumer.done():
            consumer.cancel()
            try:
                await consumer
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # aclose() itself was cancelled, not just the consumer
        for waiter in [*source.waiters.values(), *source.unread()]:
            if not waiter.future.done():
                result = _abandoned(waiter)
                self._dispatcher.telemetry.count_status(result.status)  # telemetry
                waiter.future.set_result(result)
        source.waiters.clear()


def _keep(source: _SubmitSource, item: Item) -> bool:
    """Called as a chunk launches: drop leads whose caller gave up."""
    waiter = source.waiters[item[0]]
    if waiter.future.done():
        del source.waiters[item[0]]
        return False
    return True


def _mark_sent(source: _SubmitSource, part: list[Item]) -> None:
    """A request carrying ``part`` may have left: closing now leaves them ``unknown``."""
    for index, _ in part:
        waiter = source.waiters.get(index)
        if waiter is not None:
            waiter.sent = True


def _abandoned(waiter: _Waiter) -> CommentResult:
    if waiter.sent:
        status = CommentStatus.UNKNOWN
        error = "client closed while the request was on its way: it may or may not be applied"
    else:
        status, error = CommentStatus.FAILED, "client closed before the lead could be sent"
    return CommentResult(index=0, lead=waiter.lead, status=status, error=error)


def _as_single(result: CommentResult) -> CommentResult:
    """The caller of ``submit()`` passed one lead: it is lead 0, also in error paths."""
    error = result.error
    if error is not None and result.index:
        error = error.replace(f"comments[{result.index}]", "comments[0]")
    return msgspec.structs.replace(result, index=0, error=error)
