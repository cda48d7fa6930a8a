"""Result lines: writing them (``ResultSink``), reading them back for ``--resume``
(``load_previous``), and the ``--failed-out`` copy of the leads that need another look.

Every result line is written with one ``write`` of the whole line, unbuffered, so a crash
loses at most the answers in flight and never leaves half a line, short of the machine
itself stopping; ``load_previous`` drops a torn last line all the same.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import Final

import msgspec

from .._models import CommentResult, CommentStatus

__all__ = [
    "FAILED_OUT_STATUSES",
    "FailedOut",
    "Previous",
    "ResultRecord",
    "ResultSink",
    "load_previous",
]

#: Leads ``--failed-out`` writes back in the input's format.
FAILED_OUT_STATUSES: Final = frozenset({
    CommentStatus.FAILED, CommentStatus.UNKNOWN, CommentStatus.REJECTED, CommentStatus.INVALID,
})
_STATUSES: Final = tuple(CommentStatus)  # a status is kept as 1 + its position here


class ResultRecord(msgspec.Struct, omit_defaults=False):
    """One line of the results file. ``index`` is the lead's 0-based position among the
    input's leads (blank lines and a CSV header are not leads), ``line`` the 1-based input
    line it starts on."""

    index: int
    line: int
    status: str
    call_id: int | str | None = None
    request_id: int | str | None = None
    error: str | None = None


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(ResultRecord).decode


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is out (a pipe may take part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Previous:
    """The latest status of every lead in an earlier results file, one byte per lead."""

    __slots__ = ("_codes", "lines", "torn")

    def __init__(self) -> None:
        self._codes = bytearray()
        self.lines = 0  # complete result lines read
        self.torn = False  # a torn last line was cut off

    def record(self, index: int, status: CommentStatus) -> None:
        if index >= len(self._codes):
            self._codes.extend(bytes(index + 1 - len(self._codes)))
        self._codes[index] = _STATUSES.index(status) + 1

    def status(self, index: int) -> CommentStatus | None:
        code = self._codes[index] if index < len(self._codes) else 0
        return _STATUSES[code - 1] if code else None


def load_previous(path: str) -> Previous:
    """The results already in ``path`` (none if it does not exist); a last line without its
    newline, torn by a crash, is cut off the file so appended lines start clean."""
    previous = Previous()
    try:
        handle = open(path, "r+b")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return previous
    with handle:
        good = 0  # bytes up to the end of the last complete line
        for raw in handle:
            if not raw.endswith(b"\n"):
                previous.torn = True
                break
            good += len(raw)
            if not raw.strip():
                continue
            try:
                record = _decode(raw)
                previous.record(record.index, CommentStatus(record.status))
            except (msgspec.DecodeError, ValueError):
                raise ValueError(
                    f"{path}: result line {previous.lines + 1} is not a result; is it the "
                    "--out of this input?"
                ) from None
            previous.lines += 1
        if previous.torn:
            handle.truncate(good)
    return previous


class FailedOut:
    """``--failed-out``: leads to fix or re-run, in the input's format (the CSV header first)."""

    __slots__ = ("_fd", "_header", "_wrote_header", "count")

    def __init__(self, fd: int, header: Callable[[], bytes | None]) -> None:
        self._fd = fd
        self._header = header
        self._wrote_header = False
        self.count = 0

    def write(self, raw: bytes) -> None:
        self._start()
        write_all(self._fd, raw)
        self.count += 1

    def _start(self) -> None:
        if not self._wrote_header:
            self._wrote_header = True
            header = self._header()
            if header:
                write_all(self._fd, header)

    def finish(self) -> None:
        """Write the header even when no lead failed, so the file has the input's shape."""
        self._start()


class ResultSink:
    """Writes result lines to ``fd``, counts statuses, copies leads to ``--failed-out``, and
    tells ``on_write`` (the progress display) after each line."""

    def __init__(
        self,
        fd: int,
        on_write: Callable[[Counter[str]], None],
        failed_out: FailedOut | None = None,
    ) -> None:
        self._fd = fd
        self._on_write = on_write
        self.failed_out = failed_out
        self.counts: Counter[str] = Counter()
        self.malformed = 0

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def write(self, record: ResultRecord, raw: bytes | None = None) -> None:
        write_all(self._fd, _encode(record) + b"\n")
        self.counts[record.status] += 1
        if raw is not None and record.status in FAILED_OUT_STATUSES:
            self.keep(raw)
        self._on_write(self.counts)

    def keep(self, raw: bytes) -> None:
        """Copy a lead to ``--failed-out``, if given."""
        if self.failed_out is not None:
            self.failed_out.write(raw)

    def add_result(self, result: CommentResult, ordinal: int, line: int, raw: bytes) -> None:
        call, request = result.call_info, result.request_info
        record = ResultRecord(
            index=ordinal,
            line=line,
            status=result.status.value,
            call_id=call.call_id if call is not None else None,
            request_id=request.request_id if request is not None else None,
            error=result.error,  # relative to the lead; ``line`` says which lead it is
        )
        self.write(record, raw)

    def add_malformed(self, ordinal: int, line: int, reason: str, raw: bytes) -> None:
        self.malformed += 1
        error = f"malformed line: {reason}"
        self.write(ResultRecord(ordinal, line, CommentStatus.INVALID.value, error=error), raw)
