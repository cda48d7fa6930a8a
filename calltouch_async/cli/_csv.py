"""CSV input for ``calltouch-async comment``: a header row naming the columns, then a lead
per row.

``CsvRows`` is the input format the CLI reads a CSV file with: ``csv_records`` parses the
rows in the reader thread (sniffing the delimiter from the header line unless one is given),
``CsvRows.start`` checks the header's columns (``CSV_COLUMNS``) before anything is sent, and
``CsvRows.decode`` turns each row into a ``LeadComment`` (``lead_from_row``), or into the
reason it is none. ``CSV_HELP`` documents the columns for ``--help``.
"""

from __future__ import annotations

import csv
import re
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Final, NamedTuple

from .._models import (
    UNSET,
    CallContactMatch,
    CallMatch,
    LeadComment,
    Match,
    RequestContactMatch,
    RequestMatch,
    UnsetType,
)
from ._input import InputError
from ._lines import MAX_LINE, Decoded, Line, Read, lines_without_bom

#: The CSV columns ``comment`` reads (header names, case-insensitive); others are ignored.
CSV_COLUMNS: Final = (
    "comment", "call_id", "request_id", "phone", "email", "date",
    "search_depth", "tags", "tags_logic", "type_to_match",
)
CSV_SEARCH_DEPTH: Final = 1440  # minutes: a day either side of ``date``
CSV_TYPE_TO_MATCH: Final = "nearest"
_NO_COMMENT: Final = "no 'comment' column in the CSV header"
_MATCH_COLUMNS: Final = ("call_id", "request_id", "phone", "email")
#: Delimiters tried when ``--csv-delimiter`` is not given, the first wins a tie.
SNIFFED_DELIMITERS: Final = (",", ";", "\t")

#: The ``comment --help`` text on CSV input: the columns and how a row becomes a lead.
CSV_HELP: Final = """\
CSV input (--format csv, or a FILE ending in .csv): a header row, then a lead per row.
The delimiter (, ; or tab) is taken from the header line unless --csv-delimiter is given.
Header names are case-insensitive; other columns are ignored; an empty cell is absent.
A header without comment and one of call_id, request_id, phone, email stops the run (exit 2).
  comment        the comment text (required)
  call_id        the call with this id
  request_id     the request with this id
  phone          a call, else a request, from this phone near date; several: "a, b" or "a; b"
  email          a request from this e-mail near date; several as for phone
  date           dd-mm-yyyy or dd.mm.yyyy HH:MM[:SS], or YYYY-MM-DD[ T]HH:MM[:SS]
                 (needed by phone/email)
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
    raw: bytes = b""  # the row's lines as read, for --failed-out


class _TextLines:
    """``lines_without_bom`` as text for ``csv.reader``, newlines restored. A line too long
    or not in ``encoding`` reads as empty, and ``problem`` says so for the row that holds it.
    ``raw`` collects the bytes of the lines handed out since the caller last cleared it."""

    def __init__(self, read: Read, encoding: str) -> None:
        self._batches = lines_without_bom(read)
        self._pending: deque[Line] = deque()
        self._encoding = encoding
        self.count = 0
        self.problem: str | None = None
        self.raw: list[bytes] = []

    def first(self) -> str:
        """The first line as text, without consuming it ("" for an empty input)."""
        while not self._pending:
            try:
                self._pending.extend(next(self._batches))
            except StopIteration:
                return ""
        try:
            return (self._pending[0] or b"").decode(self._encoding)
        except UnicodeDecodeError:
            return ""

    def __iter__(self) -> _TextLines:
        return self

    def __next__(self) -> str:
        while not self._pending:
            self._pending.extend(next(self._batches))  # StopIteration: the end of the file
        raw = self._pending.popleft()
        self.count += 1
        self.raw.append(b"" if raw is None else raw)
        if raw is None:
            return self._unreadable(f"longer than {MAX_LINE:,} bytes")
        try:
            return raw.decode(self._encoding) + "\n"
        except UnicodeDecodeError:
            return self._unreadable(f"not {self._encoding} text (see --encoding)")

    def _unreadable(self, why: str) -> str:
        self.problem = self.problem or f"line {self.count} is {why}"
        return "\n"

    @property
    def drained(self) -> bool:
        """Every line read so far is consumed: the next row may have to wait for input."""
        return not self._pending


def sniff_delimiter(header: str) -> str:
    """The one of ``SNIFFED_DELIMITERS`` found most often outside quotes in ``header``."""
    outside = re.sub(r'"[^"]*"', "", header)
    return max(SNIFFED_DELIMITERS, key=outside.count)


def csv_records(
    read: Read, delimiter: str | None, encoding: str = "utf-8-sig"
) -> Iterator[list[CsvRecord]]:
    """The non-blank rows of each chunk ``read`` returns (a row may span chunks); with no
    ``delimiter``, the header line's (``sniff_delimiter``)."""
    lines = _TextLines(read, encoding)
    rows = csv.reader(lines, delimiter=delimiter or sniff_delimiter(lines.first()))
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
            raw = b"\n".join(lines.raw) + b"\n"
            batch.append(CsvRecord(start, lines.count, cells, lines.problem, raw))
        lines.problem = None
        lines.raw.clear()
    if batch:
        yield batch


class CsvRows:
    """A CSV file with a header row naming its columns (``CSV_COLUMNS``): a lead per row.

    ``delimiter`` ``None`` sniffs it from the header line; ``encoding`` decodes every line.
    """

    def __init__(
        self, delimiter: str | None, *, warn: Callable[[str], None], encoding: str = "utf-8-sig"
    ) -> None:
        self._delimiter = delimiter
        self._encoding = encoding
        self._warn = warn
        self._columns: dict[str, int] = {}  # column name -> cell index
        self.header: bytes | None = None
        self.line = self.lines_read = 0

    def parse(self, read: Read) -> Iterator[list[CsvRecord]]:
        return csv_records(read, self._delimiter, self._encoding)

    def start(self, batch: list[CsvRecord]) -> list[CsvRecord]:
        """Take the header off the first batch; ``InputError`` when it names no lead column."""
        item = batch[0]
        self.line, self.lines_read = item.line, item.last_line
        self._columns = self._header(item)
        self.header = item.raw
        return batch[1:]

    def decode(self, item: CsvRecord) -> Decoded:
        self.line, self.lines_read = item.line, item.last_line
        if item.problem is not None:
            return item.problem
        try:
            return lead_from_row(_Row(self._columns, item.cells))
        except _CellError as exc:
            return str(exc)

    def raw(self, item: CsvRecord) -> bytes:
        return item.raw

    def _header(self, item: CsvRecord) -> dict[str, int]:
        if item.problem is not None:
            raise InputError(f"line {item.line}: CSV header unreadable: {item.problem}")
        columns: dict[str, int] = {}
        ignored = []
        for index, cell in enumerate(item.cells):
            name = cell.strip().lower()
            if name in CSV_COLUMNS and name not in columns:
                columns[name] = index
            elif name:
                ignored.append(cell.strip())
        if "comment" not in columns or not any(name in columns for name in _MATCH_COLUMNS):
            hint = " (is --csv-delimiter right?)" if len(item.cells) == 1 else ""
            raise InputError(
                f"the CSV header names no lead: it needs 'comment' and one of "
                f"{', '.join(_MATCH_COLUMNS)}{hint}; see --help"
            )
        if ignored:
            self._warn(f"warning: CSV columns ignored: {', '.join(ignored)}")
        return columns


class _CellError(ValueError):
    """A row's cell cannot be used; the message names the column."""


# dd-mm-yyyy (Calltouch's own) or dd.mm.yyyy (Russian spreadsheets), seconds optional.
_CALLTOUCH_DATE: Final = re.compile(
    r"(\d\d)([-.])(\d\d)\2(\d{4}) (\d\d):(\d\d)(?::(\d\d))?", re.ASCII
)
_ISO_DATE: Final = re.compile(r"(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d)(?::(\d\d))?", re.ASCII)
_TAG_SEPARATORS: Final = re.compile(r"[|;]")
_CONTACT_SEPARATORS: Final = re.compile(r"[,;]")


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
                "column 'date': must be dd-mm-yyyy, dd.mm.yyyy or YYYY-MM-DD, then HH:MM[:SS], "
                f"got {text[:40]!r}"
            ) from None

    def contacts(self, name: str) -> list[str]:
        """A phone or e-mail cell's entries: one, or several separated by ``,`` or ``;``."""
        text = self.text(name) or ""
        return [part.strip() for part in _CONTACT_SEPARATORS.split(text) if part.strip()]

    def tags(self) -> list[str] | UnsetType:
        text = self.text("tags")
        tags = [tag.strip() for tag in _TAG_SEPARATORS.split(text or "") if tag.strip()]
        return tags or UNSET


def _calltouch_date(text: str) -> str:
    """``dd-mm-yyyy HH:MM:SS`` from ``dd-mm-yyyy``/``dd.mm.yyyy HH:MM[:SS]`` or ISO
    ``YYYY-MM-DD[ T]HH:MM[:SS]``; ValueError
    for another shape or a day not in the calendar."""
    if found := _CALLTOUCH_DATE.fullmatch(text):
        day, _, month, year, hour, minute, second = found.groups(default="00")
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
    phones, emails, date = row.contacts("phone"), row.contacts("email"), row.date()
    depth = row.count("search_depth") or CSV_SEARCH_DEPTH
    how = row.text("type_to_match") or CSV_TYPE_TO_MATCH
    tags, logic = row.tags(), row.text("tags_logic") or UNSET
    matching: list[Match] = []
    if call_id is not None:
        matching.append(CallMatch(call_id, tags=tags, tags_logic=logic))
    if request_id is not None:
        matching.append(RequestMatch(request_id, tags=tags, tags_logic=logic))
    if date is not None and phones:
        matching.append(CallContactMatch(
            phones=phones, date=date, search_depth=depth, call_type_to_match=how,
            tags=tags, tags_logic=logic,
        ))
    if date is not None and (phones or emails):
        matching.append(RequestContactMatch(
            emails=emails or UNSET, phones=phones or UNSET,
            date=date, search_depth=depth, request_type_to_match=how,
            tags=tags, tags_logic=logic,
        ))
    if not matching:
        raise _CellError(_no_match_reason(bool(phones or emails)))
    return matching


def _no_match_reason(contact: bool) -> str:
    if contact:
        return "column 'date': needed to match by phone or email"
    return "no column to match by: give call_id, request_id, or phone or email with date"

