"""Reading leads: the reader thread (``BatchReader``), the format protocol, and JSON lines.

An input format turns the file's bytes into items in the reader thread (``parse``) and each
item into a lead, or the reason it is none, on the event loop (``decode``). It also gives an
item's bytes as read (``raw``), so ``--failed-out`` can write a lead back in the input's own
format.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Final, Generic, Protocol, TypeVar

import msgspec

from .._models import LeadComment
from ._lines import MAX_LINE, Decoded, Line, Read, lines_without_bom

__all__ = ["BatchReader", "InputError", "InputFormat", "JsonLines"]

_READ_AHEAD: Final = 8  # batches the reader thread may post before the loop takes them

T = TypeVar("T")


class InputError(Exception):
    """The input cannot be read as leads at all (e.g. a CSV header naming no lead column):
    the run stops before anything is sent, with exit 2."""


class _EndOfInput:
    pass


_EOF: Final = _EndOfInput()


class BatchReader(Generic[T]):
    """Batches ``parse`` makes of a file descriptor's bytes, produced by a daemon thread and
    handed to the event loop, at most ``_READ_AHEAD`` batches ahead of it.

    A thread, because stdin may be a pipe or a terminal that blocks; a daemon thread of our
    own rather than ``asyncio.to_thread``, because ``asyncio.run`` joins the default executor
    at exit, so Ctrl-C would hang until a silent stdin sent another line. Raw ``os.read``
    (not ``sys.stdin.buffer``) so the thread never holds a buffered object's lock at exit.
    ``bytes_read`` counts what the thread has read, for the progress bar's percentage.
    """

    def __init__(self, fd: int, parse: Callable[[Read], Iterator[list[T]]]) -> None:
        self._fd = fd
        self._parse = parse
        self._room = threading.Semaphore(_READ_AHEAD)
        self._stop = threading.Event()
        self._queue: asyncio.Queue[list[T] | _EndOfInput | BaseException] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.bytes_read = 0

    async def batches(self) -> AsyncGenerator[list[T], None]:
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._work, name="calltouch-async-reader", daemon=True).start()
        try:
            while True:
                item = await self._queue.get()
                self._room.release()
                if isinstance(item, _EndOfInput):
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.stop()

    def stop(self) -> None:
        """Make the thread post nothing more (it ends at its next batch)."""
        self._stop.set()
        self._room.release()  # wake the thread if it waits for room, so it sees the stop

    def _read(self, size: int) -> bytes:
        data = os.read(self._fd, size)
        self.bytes_read += len(data)  # one writer (this thread); the loop only reads it
        return data

    def _work(self) -> None:
        try:
            for batch in self._parse(self._read):
                if not self._post(batch):
                    return
            self._post(_EOF)
        except Exception as exc:  # an OSError reading; raised in the loop, not lost here
            self._post(exc)

    def _post(self, item: list[T] | _EndOfInput | BaseException) -> bool:
        """Hand ``item`` to the loop once it has room; False when nobody will take it."""
        # One permit per item posted (the loop releases one per item taken): a chunk that
        # completes no line posts nothing, so permits cannot be counted per read.
        self._room.acquire()
        if self._stop.is_set():
            return False
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            return False
        return True


class InputFormat(Protocol[T]):
    """How a file becomes leads: ``parse`` runs in the reader thread (``BatchReader``),
    ``decode`` on the event loop, one item at a time and in order."""

    @property
    def line(self) -> int:
        """The line the item last decoded starts on (1-based)."""

    @property
    def lines_read(self) -> int:
        """Lines decoded so far, including blank ones."""

    @property
    def header(self) -> bytes | None:
        """Bytes to write before the first lead of a ``--failed-out`` file (a CSV header)."""

    def parse(self, read: Read) -> Iterator[list[T]]: ...

    def start(self, batch: list[T]) -> list[T]:
        """The first batch without its preamble (a CSV header), which is checked here:
        ``InputError`` stops the run before anything is sent."""

    def decode(self, item: T) -> Decoded: ...

    def raw(self, item: T) -> bytes:
        """The item as read, newline-terminated, in the input's encoding."""


_lead_decoder = msgspec.json.Decoder(LeadComment)
_UTF8: Final = frozenset({"utf-8", "utf_8", "utf8", "utf-8-sig", "utf_8_sig", "utf8-sig"})


class JsonLines:
    """One lead per line in Calltouch's wire shape; blank lines are skipped.

    UTF-8 input (the default ``utf-8-sig``) is decoded from bytes directly; another encoding
    (``cp1251``) is decoded to text first.
    """

    header = None

    def __init__(self, encoding: str = "utf-8-sig") -> None:
        self.lines_read = 0
        self._encoding = None if encoding.lower() in _UTF8 else encoding

    @property
    def line(self) -> int:
        return self.lines_read

    def parse(self, read: Read) -> Iterator[list[Line]]:
        return lines_without_bom(read)

    def start(self, batch: list[Line]) -> list[Line]:
        return batch

    def decode(self, item: Line) -> Decoded:
        self.lines_read += 1
        if item is None:
            return f"longer than {MAX_LINE:,} bytes"
        if not item.strip():
            return None
        try:
            if self._encoding is None:
                return _lead_decoder.decode(item)
            return _lead_decoder.decode(item.decode(self._encoding))
        except UnicodeDecodeError:
            return f"not {self._encoding} text (see --encoding)"
        except msgspec.DecodeError as exc:
            return str(exc)

    def raw(self, item: Line) -> bytes:
        return b"\n" if item is None else item + b"\n"
