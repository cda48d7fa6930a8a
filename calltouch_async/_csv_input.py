"""CSV input for ``calltouch-async comment``: a header row naming the columns, then a lead
per row.

``CsvRows`` is the input format ``cli`` reads a CSV file with: ``csv_records`` parses the
rows in the reader thread, ``CsvRows.decode`` maps the header's columns (``CSV_COLUMNS``)
and turns each row into a ``LeadComment`` (``lead_from_row``), or into the reason it is none.
``CSV_HELP`` documents the columns for ``--help``.
"""

from __future__ import annotations

import csv
import re
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Final, NamedTuple

from ._models import (
    UNSET,
    CallContactMatch,
    CallMatch,
    LeadComment,
    Match,
    RequestContactMatch,
    RequestMatch,
    UnsetType,
)
from ._reading import MAX_LINE, Decoded, Line, Read, lines_without_bom

#: The CSV columns ``comment`` reads (header names, case-insensitive); others are ignored.
CSV_COLUMNS: Final = (
    "comment", "call_id", "request_id", "phone", "email", "date",
    "search_depth", "tags", "tags_logic", "type_to_match",
)
CSV_SEARCH_DEPTH: Final = 1440  # minutes: a day either side of ``date``
CSV_TYPE_TO_MATCH: Final = "nearest"
_NO_COMMENT: Final = "no 'comment' column in the CSV header"

#: The ``comment --help`` text on CSV input: the columns and how a row becomes a lead.
CSV_HELP: Final = """\
CSV input (--format csv, or a FILE ending in .csv): a header row, then a lead per row.
Header names are case-insensitive; other columns are ignored; an empty cell is absent.
  comment        the comment text (required)
  call_id        the call with this id
  request_id     the request with this id
  phone          a call, else a request, from this phone near date
  email          a request from this e-mail near date
  date           dd-mm-yyyy HH:MM:SS or YYYY-MM-DD[ T]HH:MM[:SS] (needed by phone/email)
  search_depth   minutes around date to search (1440)
  tags           tags the lead must carry, separated by | or ;
  tags_logic     and | or: all of the tags, or any
  type_to_match  nearest (default), nearestUniq, nearestUniqLead
Matching tries call_id, request_id, the call by phone, then the request by email/phone.
Results name a row by the line it starts on (the header is line 1).

"""


class CsvRecord(NamedTuple):
    """One CSV row as the reader thread hands it over."""

    line: int  # where the row starts (1-based)
    last_line: int  # where it ends: a quoted cell may hold newlines
    cells: list[str]
    problem: str | None = None  # why the row could not be read


class _TextLines:
    """``lines_without_bom`` as text for ``csv.reader``, newlines restored. A line too long
    or not UTF-8 reads as empty, and ``problem`` says so for the row that holds it."""

    def __init__(self, read: Read) -> None:
        self._batches = lines_without_bom(read)
        self._pending: deque[Line] = deque()
        self.count = 0
        self.problem: str | None = None

    def __iter__(self) -> _TextLines:
        return self

    def __next__(self) -> str:
        while not self._pending:
            self._pending.extend(next(self._batches))  # StopIteration: the end of the file
        raw = self._pending.popleft()
        self.count += 1
        if raw is None:
            return self._unreadable(f"longer than {MAX_LINE:,} bytes")
        try:
            return raw.decode() + "\n"
        except UnicodeDecodeError:
            return self._unreadable("not UTF-8 text")

    def _unreadable(self, why: str) -> str:
        self.problem = self.problem or f"line {self.count} is {why}"
        return "\n"

    @property
    def drained(self) -> bool:
        """Every line read so far is consumed: the next row may have to wait for input."""
        return not self._pending


def csv_records(read: Read, delimiter: str) -> Iterator[list[CsvRecord]]:
    """The non-blank rows of each chunk ``read`` returns (a row may span chunks)."""
    lines = _TextLines(read)
    rows = csv.reader(lines, delimiter=delimiter)
    batch: list[CsvRecord] = []
    while True:
        if batch and lines.drained:
            yield batch  # what is parsed goes to the loop before the next read blocks
            batch = []
        start = lines.count + 1
        try:
            cells = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:
            cells, lines.problem = [], lines.problem or f"not CSV: {exc}"
        if lines.problem is not None or any(cell.strip() for cell in cells):
            batch.append(CsvRecord(start, lines.count, cells, lines.problem))
        lines.problem = None
    if batch:
        yield batch


class CsvRows:
    """A CSV file with a header row naming its columns (``CSV_COLUMNS``): a lead per row."""

    def __init__(self, delimiter: str, *, warn: Callable[[str], None]) -> None:
        self._delimiter = delimiter
        self._warn = warn
        self._columns: dict[str, int] | None = None  # column name -> cell index
        self.line = self.lines_read = 0

    def parse(self, read: Read) -> Iterator[list[CsvRecord]]:
        return csv_records(read, self._delimiter)

    def decode(self, item: CsvRecord) -> Decoded:
        self.line, self.lines_read = item.line, item.last_line
        if self._columns is None:
            self._columns = self._header(item)
            return None
        if item.problem is not None:
            return item.problem
        try:
            return lead_from_row(_Row(self._columns, item.cells))
        except _CellError as exc:
            return str(exc)

    def _header(self, item: CsvRecord) -> dict[str, int]:
        if item.problem is not None:
            self._warn(f"warning: line {item.line}: CSV header unreadable: {item.problem}")
            return {}
        columns: dict[str, int] = {}
        ignored = []
        for index, cell in enumerate(item.cells):
            name = cell.strip().lower()
            if name in CSV_COLUMNS and name not in columns:
                columns[name] = index
            elif name:
                ignored.append(cell.strip())
        if ignored:
            self._warn(f"warning: CSV columns ignored: {', '.join(ignored)}")
        if "comment" not in columns:
            hint = " (is --csv-delimiter right?)" if len(item.cells) == 1 else ""
            self._warn(f"warning: {_NO_COMMENT}{hint}")
        return columns


class _CellError(ValueError):
    """A row's cell cannot be used; the message names the column."""


_CALLTOUCH_DATE: Final = re.compile(r"(\d\d)-(\d\d)-(\d{4}) (\d\d):(\d\d):(\d\d)", re.ASCII)
_ISO_DATE: Final = re.compile(r"(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d)(?::(\d\d))?", re.ASCII)
_TAG_SEPARATORS: Final = re.compile(r"[|;]")


class _Row:
    """The cells of one CSV row by column name; an empty cell is absent (``None``)."""

    def __init__(self, columns: dict[str, int], cells: list[str]) -> None:
        self._columns = columns
        self._cells = cells

    def has(self, name: str) -> bool:
        return name in self._columns

    def text(self, name: str) -> str | None:
        index = self._columns.get(name)
        if index is None or index >= len(self._cells):
            return None
        return self._cells[index].strip() or None

    def count(self, name: str) -> int | None:
        text = self.text(name)
        if text is None:
            return None
        if not (text.isascii() and text.isdecimal()) or int(text) == 0:
            raise _CellError(f"column {name!r}: must be a positive integer, got {text[:40]!r}")
        return int(text)

    def date(self) -> str | None:
        text = self.text("date")
        if text is None:
            return None
        try:
            return _calltouch_date(text)
        except ValueError:
            raise _CellError(
                "column 'date': must be dd-mm-yyyy HH:MM:SS or YYYY-MM-DD HH:MM[:SS], "
                f"got {text[:40]!r}"
            ) from None

    def tags(self) -> list[str] | UnsetType:
        text = self.text("tags")
        tags = [tag.strip() for tag in _TAG_SEPARATORS.split(text or "") if tag.strip()]
        return tags or UNSET


def _calltouch_date(text: str) -> str:
    """``dd-mm-yyyy HH:MM:SS`` from itself or ISO ``YYYY-MM-DD[ T]HH:MM[:SS]``; ValueError
    for another shape or a day not in the calendar."""
    if found := _CALLTOUCH_DATE.fullmatch(text):
        day, month, year, hour, minute, second = found.groups()
    elif found := _ISO_DATE.fullmatch(text):
        year, month, day, hour, minute, second = found.groups(default="00")
    else:
        raise ValueError(text)
    datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    return f"{day}-{month}-{year} {hour}:{minute}:{second}"


def lead_from_row(row: _Row) -> LeadComment:
    """The lead a CSV row describes; ``_CellError`` when it describes none."""
    comment = row.text("comment")
    if comment is None:
        raise _CellError("column 'comment': empty" if row.has("comment") else _NO_COMMENT)
    return LeadComment(matching=_row_matching(row), comment=comment)


def _row_matching(row: _Row) -> list[Match]:
    """Entries in priority order: call id, request id, call by phone, request by contact."""
    call_id, request_id = row.count("call_id"), row.count("request_id")
    phone, email, date = row.text("phone"), row.text("email"), row.date()
    depth = row.count("search_depth") or CSV_SEARCH_DEPTH
    how = row.text("type_to_match") or CSV_TYPE_TO_MATCH
    tags, logic = row.tags(), row.text("tags_logic") or UNSET
    matching: list[Match] = []
    if call_id is not None:
        matching.append(CallMatch(call_id, tags=tags, tags_logic=logic))
    if request_id is not None:
        matching.append(RequestMatch(request_id, tags=tags, tags_logic=logic))
    if date is not None and phone is not None:
        matching.append(CallContactMatch(
            phones=[phone], date=date, search_depth=depth, call_type_to_match=how,
            tags=tags, tags_logic=logic,
        ))
    if date is not None and (phone or email):
        matching.append(RequestContactMatch(
            emails=[email] if email else UNSET, phones=[phone] if phone else UNSET,
            date=date, search_depth=depth, request_type_to_match=how,
            tags=tags, tags_logic=logic,
        ))
    if not matching:
        raise _CellError(_no_match_reason(phone or email))
    return matching


def _no_match_reason(contact: str | None) -> str:
    if contact is not None:
        return "column 'date': needed to match by phone or email"
    return "no column to match by: give call_id, request_id, or phone or email with date"

