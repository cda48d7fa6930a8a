"""The hand-off between a stream and its consumer: results, errors, and the end.

A :class:`~calltouch_async._stream.Stream` puts each chunk's results (a list), an error
raised by a run, and finally :class:`End` into its :class:`Inbox`; :mod:`._results` takes
them off in that order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TypeAlias

from ._models import CommentResult

__all__ = ["End", "Entry", "Inbox"]


class End:
    """Queued last: every result is in; ``error`` is what the input failed with, if anything."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


Entry: TypeAlias = list[CommentResult] | BaseException | End


class Inbox:
    """A stream's queue of results, for its one consumer.

    Not :class:`asyncio.Queue`: that one serves any number of producers and consumers, with
    a bound and a count of unfinished tasks, and costs a dozen Python calls per request more
    (counted with ``sys.setprofile``). A stream has one consumer (an async generator cannot
    be iterated by two at once) and no bound, so one waiter is enough.
    """

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[Entry] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Entry) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Entry:
        """The next item, waiting for one. Safe to cancel: nothing is taken until returned."""
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()
