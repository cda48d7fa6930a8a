"""``LeadSource``: the input's leads for ``comment_many``, minus what needs no sending.

It numbers the input's leads, skips those an earlier run already settled (``--resume``),
turns malformed ones into results at once, and remembers for every lead handed to the client
which input lead it is, until its result comes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, Final, Generic, TypeVar

from .._models import CommentStatus, LeadComment
from ._input import BatchReader, InputFormat
from ._results import Previous, ResultSink

__all__ = ["LeadSource", "Origin"]

T = TypeVar("T")

#: (position among the input's leads, line number, the lead's bytes as read)
Origin = tuple[int, int, bytes]

_SHOWN_MALFORMED: Final = 5  # malformed lines quoted on stderr; the rest only counted
_NO_RAW: Final = b""


class LeadSource(Generic[T]):
    """Leads of one input for ``comment_many``; malformed ones become results at once.

    ``origin`` maps ``comment_many``'s index to the lead's ``Origin`` for the leads handed
    over and not yet answered; entries are removed as results arrive, so it holds at most
    what the client holds in flight. ``stop()`` ends the input at the next lead.
    """

    def __init__(
        self,
        fmt: InputFormat[T],
        reader: BatchReader[T],
        sink: ResultSink,
        *,
        previous: Previous | None = None,
        resend_unknown: bool = False,
        say: Any = print,
    ) -> None:
        self._format = fmt
        self._reader = reader
        self._batches = reader.batches()
        self._sink = sink
        self._previous = previous
        self._resend_unknown = resend_unknown
        self._keep_raw = sink.failed_out is not None
        self._say = say
        self._first: list[T] = []
        self.origin: dict[int, Origin] = {}
        self.carried: Counter[str] = Counter()  # leads settled by an earlier run, not resent
        self.finished = False
        self.stopped = False
        self.leads_read = 0

    @property
    def lines_read(self) -> int:
        return self._format.lines_read

    @property
    def line(self) -> int:
        """The line the lead last decoded starts on."""
        return self._format.line

    async def prime(self) -> None:
        """Read the first batch and let the format check its preamble (``InputError``)."""
        first = await anext(self._batches, None)
        if first is not None:
            self._first = self._format.start(first)

    def stop(self) -> None:
        """Hand over no further lead, and stop the reader thread."""
        self.stopped = True
        self._reader.stop()

    async def items(self) -> AsyncIterator[tuple[int, T, LeadComment | str]]:
        """(position, item, lead or why it is none) for every lead of the input that this
        run must handle; results of malformed ones are the caller's to write."""
        async with aclosing(self._batches):
            batch: list[T] | None = self._first
            while batch is not None:
                for item in batch:
                    if self.stopped:
                        return
                    decoded = self._format.decode(item)
                    if decoded is None:
                        continue
                    ordinal = self.leads_read
                    self.leads_read += 1
                    if not self._settled(ordinal, item):
                        yield ordinal, item, decoded
                # Decoding a chunk's leads never suspends, and neither does the client
                # reading them; without a turn for the loop here, requests already holding
                # a rate permit would wait behind ~1,000 leads of parsing and reach
                # Calltouch late, bunched with the next ones (the emulator then answers 429).
                await asyncio.sleep(0)
                batch = await anext(self._batches, None)
        self.finished = not self.stopped

    def _settled(self, ordinal: int, item: T) -> bool:
        """True for a lead an earlier run settled: counted, copied to --failed-out if it
        belongs there, and not handled again."""
        if self._previous is None:
            return False
        status = self._previous.status(ordinal)
        if status is None or status is CommentStatus.FAILED:
            return False
        if status is CommentStatus.UNKNOWN and self._resend_unknown:
            return False
        self.carried[status] += 1
        if status not in (CommentStatus.COMMENTED, CommentStatus.NOT_COMMENTED):
            self._sink.keep(self._format.raw(item))
        return True

    def raw(self, item: T) -> bytes:
        return self._format.raw(item) if self._keep_raw else _NO_RAW

    def malformed(self, ordinal: int, item: T, reason: str) -> None:
        line = self._format.line
        if self._sink.malformed < _SHOWN_MALFORMED:
            self._say(f"line {line}: malformed lead: {reason}")
        self._sink.add_malformed(ordinal, line, reason, self.raw(item))

    async def leads(self) -> AsyncIterator[LeadComment]:
        """The leads to send, for ``comment_many``."""
        handed = 0
        async for ordinal, item, decoded in self.items():
            if isinstance(decoded, str):
                self.malformed(ordinal, item, decoded)
                continue
            self.origin[handed] = (ordinal, self._format.line, self.raw(item))
            handed += 1
            yield decoded

    def take(self, index: int) -> Origin:
        return self.origin.pop(index)

