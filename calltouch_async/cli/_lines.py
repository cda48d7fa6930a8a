"""What the JSON-lines and CSV input formats share: the input's bytes cut into lines, and
what an input item decodes to.

``line_batches`` yields the lines of each chunk read, a line longer than ``MAX_LINE`` as
``None``; ``lines_without_bom`` also strips a leading UTF-8 byte-order mark. Both run in the
reader thread (``_input.BatchReader``). Splitting bytes on ``\n`` is right for every
encoding ``--encoding`` accepts (``ascii_compatible`` checks that).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from typing import Final, TypeAlias

from .._models import LeadComment

_CHUNK: Final = 64 * 1024
# Far above any valid lead (1000-character comment, 20 matching entries): a longer line is
# skipped to its end instead of being held in memory whole.
MAX_LINE: Final = 1024 * 1024

_BOM: Final = b"\xef\xbb\xbf"

#: A line without its newline; ``None`` stands for a line too long to keep.
Line: TypeAlias = bytes | None
#: ``os.read`` of the input: at most that many bytes; ``b""`` at the end.
Read: TypeAlias = Callable[[int], bytes]
#: What one input item decodes to: a lead, why it is not one, or nothing (a blank line, the
#: CSV header).
Decoded: TypeAlias = LeadComment | str | None


def ascii_compatible(encoding: str) -> bool:
    """True when ``encoding`` exists and writes ASCII (so ``\n``, quotes, JSON punctuation) as
    the same single bytes: UTF-8, cp1251, koi8-r, latin-1, but not UTF-16."""
    try:
        sample = '\n,;\t"{}[]:az09 '
        # utf-8-sig writes a byte-order mark first; the characters after it are what count.
        encoded = sample.encode(encoding).removeprefix(codecs.BOM_UTF8)
        return encoded == sample.encode("ascii")
    except (LookupError, UnicodeError):
        return False


def line_batches(read: Read) -> Iterator[list[Line]]:
    """The complete lines of each chunk ``read`` returns (a last line may lack its newline)."""
    pending = bytearray()
    skipping = False  # inside an over-long line: drop bytes until its newline
    while chunk := read(_CHUNK):
        lines: list[Line] = []
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if skipping:
                lines.append(None)
                skipping = False
            else:
                pending += chunk[start:end]
                lines.append(bytes(pending) if len(pending) <= MAX_LINE else None)
            pending.clear()
            start = end + 1
        if not skipping:
            pending += chunk[start:]
            if len(pending) > MAX_LINE:
                pending.clear()
                skipping = True
        if lines:
            yield lines
    if skipping:
        yield [None]
    elif pending:
        yield [bytes(pending)]


def lines_without_bom(read: Read) -> Iterator[list[Line]]:
    """``line_batches``, the first line without a UTF-8 byte-order mark (spreadsheet exports
    often start with one)."""
    batches = line_batches(read)
    for first in batches:
        if first[0] is not None:
            first[0] = first[0].removeprefix(_BOM)
        yield first
        break
    yield from batches
