"""Taking a stream's results off its queue: one at a time as they come (``comment_many()``),
a list at a time (``submit()``), or all at once in input order (``comment()``).

Every result is counted here once, and a fatal answer (:class:`AuthError`,
:class:`RedirectError`) halts the stream: the results of requests already written still come
out before it is raised.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from operator import attrgetter
from typing import Final

from ._dispatch import Dispatcher
from ._errors import CalltouchError
from ._inbox import End
from ._models import CommentResult
from ._stream import FATAL, Stream

__all__ = ["batches", "collect", "iterate"]

_INDEX_OF: Final = attrgetter("index")


async def iterate(
    stream: Stream,
    attach: Callable[[Stream], Dispatcher],
    detach: Callable[[Stream], None],
    unread_error: Callable[[], BaseException],
) -> AsyncGenerator[CommentResult, None]:
    """Run ``stream`` and yield one result per lead.

    ``attach`` registers the stream with its owner before anything starts and returns the
    dispatcher to send with (or refuses by raising); ``detach`` is called when it ends.
    Results are yielded until the last one; then the input's own error is raised, or
    ``unread_error()`` if closing left input unread.
    """
    async with aclosing(batches(stream, attach, detach, unread_error)) as results:
        async for batch in results:
            for result in batch:
                yield result


async def batches(
    stream: Stream,
    attach: Callable[[Stream], Dispatcher],
    detach: Callable[[Stream], None],
    unread_error: Callable[[], BaseException],
) -> AsyncGenerator[list[CommentResult], None]:
    """What :func:`iterate` yields, a list at a time as results come (``submit()``).

    A stream its owner started already (``submit()``'s, started while the client was open so
    that a close sees it) is not attached again.
    """
    if stream.producer is None:
        stream.start(attach(stream))
    dispatcher = stream.dispatcher
    reorder = stream.reorder
    try:
        while True:
            try:
                item = await _next_batch(stream, dispatcher, unread_error)
            except CalltouchError:
                if reorder is not None and (held := reorder.release_all()):
                    # A fatal answer left holes (the refused request's leads): what waits
                    # behind them in input order still comes out before the error.
                    yield held
                raise
            if item is None:
                return
            batch = reorder.push(item) if reorder is not None else item
            yield batch
            stream.consumed(len(batch))
    finally:
        detach(stream)
        await stream.cancel()


async def collect(
    stream: Stream,
    attach: Callable[[Stream], Dispatcher],
    detach: Callable[[Stream], None],
    unread_error: Callable[[], BaseException],
) -> list[CommentResult]:
    """What :func:`iterate` yields, as one list in input order (``comment()``): the
    stream runs in this task (:meth:`Stream.run_here`), then its results are taken."""
    dispatcher = attach(stream)
    results: list[CommentResult] = []
    try:
        await stream.run_here(dispatcher)
        while (batch := await _next_batch(stream, dispatcher, unread_error)) is not None:
            results += batch  # all queued already: no wait
    finally:
        detach(stream)
        await stream.cancel()
    results.sort(key=_INDEX_OF)
    return results


async def _next_batch(
    stream: Stream, dispatcher: Dispatcher, unread_error: Callable[[], BaseException]
) -> list[CommentResult] | None:
    """The next results (counted), or None after the last; raises what the stream ended with.

    A fatal answer (:class:`AuthError`, :class:`RedirectError`) halts the stream; the
    results of requests already written still come, then it is raised (leads of requests
    that got a fatal answer have no result).
    """
    while isinstance(item := await stream.queue.get(), FATAL):
        stream.halt(item)
    if isinstance(item, End):
        if stream.fatal is not None:
            raise stream.fatal
        if item.error is not None:
            raise item.error
        if stream.unread:
            raise unread_error()
        return None
    if isinstance(item, BaseException):
        raise item
    dispatcher.telemetry.count(item)  # every lead's final status, counted once
    return item
