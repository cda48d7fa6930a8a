"""``calltouch-async``: comment leads from a JSON-lines or CSV file; a demo; the emulator.

Commands::

    calltouch-async comment FILE [--format jsonl|csv] [--csv-delimiter C] [--site-id ID]
                                 [--base-url URL] [--out PATH] [--max-in-flight N]
                                 [--no-progress]
    calltouch-async demo [--leads N] [--seed S] [--latency-min S] [--latency-max S] [--jitter S]
    calltouch-async emulator [--port P] [--calls N] [--requests M] ...

``comment`` reads FILE (``-``: stdin), one lead per line in Calltouch's wire shape::

    {"matching": [{"type": "call", "callParams": {"callId": 1}}], "addComment": "text"}

Blank lines are skipped. A line that is not JSON or not that shape is reported (with its line
number) as an ``invalid`` result and the rest proceeds. CSV input (``--format csv``, the
default for a ``.csv`` FILE) has a header row naming the columns and a lead per row
(``_csv_input``; ``CSV_HELP`` there documents the columns); a row that cannot become a lead
is reported the same way, by the line it starts on. Input is streamed: memory stays constant
whatever the file size. The access token is read only from ``CALLTOUCH_ACCESS_TOKEN`` (a
command-line flag would show in ``ps`` and shell history); the site id from ``--site-id`` or
``CALLTOUCH_SITE_ID``. Results go to ``--out`` (default stdout) as JSON lines with
``index`` (0-based position among the file's leads), ``line`` (1-based), ``status``,
``call_id``, ``request_id`` and ``error``; a progress line and the summary go to stderr.

Exit codes of ``comment`` (a stopped run wins; otherwise the worst lead status):

    0    every lead was commented or not_commented (Calltouch found no lead for it)
    1    an unexpected error stopped the run
    2    usage error: bad arguments, no token or site id, FILE or --out cannot be opened
    3    Calltouch refused the credentials (site id or access token)
    4    some leads invalid or rejected: the input lines the results name need fixing
    5    some leads failed: definitely not applied, safe to send again
    6    some leads unknown: sent but unanswered; they may or may not have been applied
    130  interrupted (Ctrl-C); unanswered leads are written as unknown

``demo`` exits 0 when the run checks out (its deliberately bad lines are expected), 1 when a
ledger check fails, otherwise the ``comment`` code for unexpected failed or unknown leads.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import ExitStack, aclosing, contextmanager
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    BinaryIO,
    Final,
    Generic,
    NoReturn,
    Protocol,
    TextIO,
    TypeAlias,
    TypeVar,
    cast,
)

import msgspec

from ._client import CalltouchClient
from ._constants import DEFAULT_BASE_URL, DEFAULT_MAX_IN_FLIGHT
from ._csv_input import CSV_HELP, CsvRows
from ._errors import AuthError, CalltouchError
from ._models import CommentResult, CommentStatus, LeadComment
from ._reading import MAX_LINE, Decoded, Line, Read, lines_without_bom

if TYPE_CHECKING:
    from .testing import CalltouchEmulator

__all__ = [
    "EXIT_AUTH",
    "EXIT_ERROR",
    "EXIT_FAILED",
    "EXIT_INPUT",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNKNOWN",
    "EXIT_USAGE",
    "build_parser",
    "main",
]

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_AUTH: Final = 3
EXIT_INPUT: Final = 4
EXIT_FAILED: Final = 5
EXIT_UNKNOWN: Final = 6
EXIT_INTERRUPTED: Final = 130

TOKEN_ENV: Final = "CALLTOUCH_ACCESS_TOKEN"
SITE_ID_ENV: Final = "CALLTOUCH_SITE_ID"

PROG: Final = "calltouch-async"
_EPILOG: Final = """\
exit codes (comment):
  0    every lead was commented or not_commented
  1    an unexpected error stopped the run
  2    usage error (arguments, missing token/site id, unreadable FILE)
  3    Calltouch refused the credentials
  4    some leads invalid or rejected (fix those input lines)
  5    some leads failed (not applied; safe to send again)
  6    some leads unknown (sent, unanswered: may or may not be applied)
  130  interrupted (Ctrl-C)
the worst lead status wins: unknown > failed > invalid/rejected.

environment:
  CALLTOUCH_ACCESS_TOKEN  the API key (required by comment; never accepted as a flag)
  CALLTOUCH_SITE_ID       the site id, unless --site-id is given
"""

_INPUT_STATUSES: Final = frozenset({CommentStatus.INVALID, CommentStatus.REJECTED})
_SHOWN_MALFORMED: Final = 5  # malformed lines quoted on stderr; the rest only counted


class UsageError(Exception):
    """A problem with the command line or environment: exit 2 with one line on stderr."""


# --------------------------------------------------------------------------- reading input

_READ_AHEAD: Final = 8  # batches the reader thread may post before the loop takes them

T = TypeVar("T")


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
    """

    def __init__(self, fd: int, parse: Callable[[Read], Iterator[list[T]]]) -> None:
        self._fd = fd
        self._parse = parse
        self._room = threading.Semaphore(_READ_AHEAD)
        self._stop = threading.Event()
        self._queue: asyncio.Queue[list[T] | _EndOfInput | Exception] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def batches(self) -> AsyncIterator[list[T]]:
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._work, name="calltouch-async-reader", daemon=True).start()
        try:
            while True:
                item = await self._queue.get()
                self._room.release()
                if isinstance(item, _EndOfInput):
                    return
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self._stop.set()
            self._room.release()  # wake the thread if it waits for room, so it sees the stop

    def _work(self) -> None:
        try:
            for batch in self._parse(lambda size: os.read(self._fd, size)):
                if not self._post(batch):
                    return
            self._post(_EOF)
        except Exception as exc:  # an OSError reading; raised in the loop, not lost here
            self._post(exc)

    def _post(self, item: list[T] | _EndOfInput | Exception) -> bool:
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


class LineReader(BatchReader[Line]):
    """The lines of a file descriptor (``lines_without_bom``), read by a daemon thread."""

    def __init__(self, fd: int) -> None:
        super().__init__(fd, lines_without_bom)


# --------------------------------------------------------------------------- input formats


class InputFormat(Protocol[T]):
    """How a file becomes leads: ``parse`` runs in the reader thread (``BatchReader``),
    ``decode`` on the event loop, one item at a time and in order."""

    @property
    def line(self) -> int:
        """The line the item last decoded starts on (1-based)."""

    @property
    def lines_read(self) -> int:
        """Lines decoded so far, including blank ones."""

    def parse(self, read: Read) -> Iterator[list[T]]: ...

    def decode(self, item: T) -> Decoded: ...


_lead_decoder = msgspec.json.Decoder(LeadComment)


class JsonLines:
    """One lead per line in Calltouch's wire shape; blank lines are skipped."""

    def __init__(self) -> None:
        self.lines_read = 0

    @property
    def line(self) -> int:
        return self.lines_read

    def parse(self, read: Read) -> Iterator[list[Line]]:
        return lines_without_bom(read)

    def decode(self, item: Line) -> Decoded:
        self.lines_read += 1
        if item is None:
            return f"longer than {MAX_LINE:,} bytes"
        if not item.strip():
            return None
        try:
            return _lead_decoder.decode(item)
        except msgspec.DecodeError as exc:
            return str(exc)


# --------------------------------------------------------------------------- results


class ResultRecord(msgspec.Struct, omit_defaults=False):
    """One line of the results file."""

    index: int
    line: int
    status: str
    call_id: int | str | None = None
    request_id: int | str | None = None
    error: str | None = None


_record_encoder = msgspec.json.Encoder()


class Progress:
    """One ``\\r``-rewritten stderr line: leads done, leads/s, counts per status.

    Drawn at most ``1 / interval`` times a second and only on a terminal; ``say`` prints a
    message above it so log lines and notes do not tear it.
    """

    def __init__(
        self, stream: TextIO, *, enabled: bool, total: int | None, interval: float = 0.1
    ) -> None:
        self._stream = stream
        self._enabled = enabled
        self._total = total
        self._interval = interval
        self._started = time.monotonic()
        self._drawn_at = 0.0
        self._shown = False

    def update(self, done: int, counts: Counter[str], *, force: bool = False) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < self._interval:
            return
        self._drawn_at = now
        width = max(20, shutil.get_terminal_size().columns - 1)
        text = self._fit(done, counts, now - self._started, width)
        self._stream.write(f"\r{text}\x1b[K")
        self._stream.flush()
        self._shown = True

    def _fit(self, done: int, counts: Counter[str], elapsed: float, width: int) -> str:
        """The fullest line that fits: drop the bar, then the ETA, then cut the end."""
        rate = done / elapsed if elapsed > 0 else 0.0
        tally = " ".join(f"{s.value} {counts[s]:,}" for s in CommentStatus if counts[s])
        head, bar, eta = f"{done:,} leads", "", ""
        if self._total:
            fraction = min(done / self._total, 1.0)
            filled = round(fraction * 10)
            bar = f"[{'#' * filled}{'.' * (10 - filled)}] {fraction:.0%} "
            head = f"{done:,}/{self._total:,}"
            if rate > 0 and done < self._total:
                eta = f"  ETA {(self._total - done) / rate:,.0f}s"
        for parts in ((bar, eta), ("", eta), ("", "")):
            text = f"{parts[0]}{head}  {rate:,.0f}/s{parts[1]}  {tally}"
            if len(text) <= width:
                return text
        return text[:width]

    def clear(self) -> None:
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = False

    def say(self, message: str) -> None:
        self.clear()
        print(message, file=self._stream, flush=True)


class _ProgressLogHandler(logging.Handler):
    """Client warnings (retries, unknown outcomes) printed above the progress line."""

    def __init__(self, progress: Progress) -> None:
        super().__init__(logging.WARNING)
        self._progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        self._progress.say(f"{record.levelname.lower()}: {record.getMessage()}")


class ResultSink:
    """Writes result lines, counts statuses, and keeps the progress line current."""

    def __init__(self, out: BinaryIO, progress: Progress) -> None:
        self.out = out
        self.progress = progress
        self.counts: Counter[str] = Counter()
        self.malformed = 0

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def write(self, record: ResultRecord) -> None:
        self.out.write(_record_encoder.encode(record) + b"\n")
        self.counts[record.status] += 1
        self.progress.update(self.done, self.counts)

    def add_result(self, result: CommentResult, ordinal: int, line: int) -> None:
        call, request = result.call_info, result.request_info
        self.write(
            ResultRecord(
                index=ordinal,
                line=line,
                status=result.status.value,
                call_id=call.call_id if call is not None else None,
                request_id=request.request_id if request is not None else None,
                error=_local_paths(result.error, result.index),
            )
        )

    def add_malformed(self, ordinal: int, line: int, reason: str) -> None:
        self.malformed += 1
        if self.malformed <= _SHOWN_MALFORMED:
            self.progress.say(f"line {line}: malformed lead: {reason}")
        error = f"malformed line: {reason}"
        self.write(ResultRecord(ordinal, line, CommentStatus.INVALID.value, error=error))


def _local_paths(error: str | None, index: int) -> str | None:
    # The client names a lead ``comments[i]`` by its position in what it was given, which is
    # not the file's numbering; the record's ``line`` already says which lead it is.
    if error is None:
        return None
    prefix = f"comments[{index}]"
    return error.replace(prefix + ".", "").replace(prefix, "lead")


# --------------------------------------------------------------------------- the comment path

class LeadSource(Generic[T]):
    """Turns input items into leads for ``comment_many``; malformed ones become results at once.

    ``origin`` maps ``comment_many``'s index to (position among the file's leads, line
    number) for the leads handed over and not yet answered; entries are removed as results
    arrive, so it holds at most what the client holds in flight.
    """

    def __init__(
        self, fmt: InputFormat[T], batches: AsyncIterator[list[T]], sink: ResultSink
    ) -> None:
        self._format = fmt
        self._batches = batches
        self._sink = sink
        self.origin: dict[int, tuple[int, int]] = {}
        self.finished = False

    @property
    def lines_read(self) -> int:
        return self._format.lines_read

    async def leads(self) -> AsyncIterator[LeadComment]:
        handed = ordinal = 0
        async for batch in self._batches:
            for item in batch:
                decoded = self._format.decode(item)
                if decoded is None:
                    continue
                if isinstance(decoded, str):
                    self._sink.add_malformed(ordinal, self._format.line, decoded)
                else:
                    self.origin[handed] = (ordinal, self._format.line)
                    handed += 1
                    yield decoded
                ordinal += 1
            # Decoding a chunk's leads never suspends, and neither does the client reading
            # them; without a turn for the loop here, requests already holding a rate permit
            # would wait behind ~1,000 leads of parsing and reach Calltouch late, bunched
            # with the next ones (the emulator then answers 429).
            await asyncio.sleep(0)
        self.finished = True

    def take(self, index: int) -> tuple[int, int]:
        return self.origin.pop(index)


@dataclass(frozen=True)
class Settings:
    """Where and as whom to comment. The token is kept out of ``repr``."""

    site_id: str
    token: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT


@dataclass
class Outcome:
    """What a ``comment`` run did, for the summary and the exit code."""

    counts: Counter[str]
    elapsed: float
    unanswered: int = 0
    next_line: int | None = None  # first input line not read, when the run stopped early
    stopped: str | None = None  # why the run stopped early: "auth", "interrupt", "error"
    malformed: int = 0

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    @property
    def rate(self) -> float:
        """Answered leads per second (leads written as unknown on a stop do not count)."""
        answered = self.done - self.unanswered
        return answered / self.elapsed if self.elapsed > 0 else 0.0

    def exit_code(self, *, expected: frozenset[str] = frozenset()) -> int:
        """The documented code; statuses in ``expected`` (the demo's deliberate ones) are
        not held against the run."""
        if self.stopped == "interrupt":
            return EXIT_INTERRUPTED
        if self.stopped == "auth":
            return EXIT_AUTH
        if self.stopped == "error":
            return EXIT_ERROR
        seen = {status for status, n in self.counts.items() if n} - expected
        if CommentStatus.UNKNOWN in seen:
            return EXIT_UNKNOWN
        if CommentStatus.FAILED in seen:
            return EXIT_FAILED
        if seen & _INPUT_STATUSES:
            return EXIT_INPUT
        return EXIT_OK


async def comment_file(
    fd: int,
    out: BinaryIO,
    settings: Settings,
    progress: Progress,
    fmt: InputFormat[Any] | None = None,
) -> Outcome:
    """The ``comment`` command's work: read leads from ``fd`` (``fmt``, by default JSON
    lines), comment them, write results.

    Never raises for an auth error or Ctrl-C: the outcome says the run stopped, and every
    lead handed to the client without an answer is written as ``unknown``.
    """
    fmt = JsonLines() if fmt is None else fmt
    sink = ResultSink(out, progress)
    source = LeadSource(fmt, BatchReader(fd, fmt.parse).batches(), sink)
    outcome = Outcome(sink.counts, 0.0)
    started = time.monotonic()
    try:
        await _comment_all(source, sink, settings)
    except AuthError as exc:
        progress.say(f"error: {exc}")
        outcome.stopped = "auth"
    except CalltouchError as exc:
        progress.say(f"error: {exc}")
        outcome.stopped = "error"
    except asyncio.CancelledError:
        # Ctrl-C under asyncio.run cancels this task; returning (not re-raising) lets the
        # summary and the exit code still be produced.
        outcome.stopped = "interrupt"
    outcome.elapsed = time.monotonic() - started
    outcome.unanswered = _write_unanswered(source, sink, outcome.stopped)
    if outcome.stopped and not source.finished:
        outcome.next_line = source.lines_read + 1
    outcome.malformed = sink.malformed
    out.flush()
    progress.clear()
    return outcome


async def _comment_all(source: LeadSource[Any], sink: ResultSink, settings: Settings) -> None:
    async with CalltouchClient(
        settings.site_id,
        settings.token,
        base_url=settings.base_url,
        max_in_flight=settings.max_in_flight,
    ) as client:
        # Closing the stream at once on any exit stops its requests instead of leaving that
        # to garbage collection.
        async with aclosing(client.comment_many(source.leads())) as results:
            async for result in results:
                sink.add_result(result, *source.take(result.index))


def _write_unanswered(source: LeadSource[Any], sink: ResultSink, stopped: str | None) -> int:
    # Handed to the client but never answered: some may have been sent, so "unknown" is the
    # only honest status. Writing them lets the operator re-check exactly these lines.
    why = "interrupted" if stopped == "interrupt" else "the run stopped"
    error = f"{why} before an answer: may or may not have been applied"
    for ordinal, line in sorted(source.origin.values()):
        sink.write(ResultRecord(ordinal, line, CommentStatus.UNKNOWN.value, error=error))
    count = len(source.origin)
    source.origin.clear()
    return count


# --------------------------------------------------------------------------- summary


def summary_lines(outcome: Outcome) -> list[str]:
    """The end-of-run report: counts per status, elapsed time, leads/s."""
    lines = [
        f"{outcome.done:,} leads in {outcome.elapsed:,.1f} s ({outcome.rate:,.0f} leads/s)"
    ]
    for status in CommentStatus:
        if outcome.counts[status]:
            lines.append(f"  {status.value:<14}{outcome.counts[status]:>10,}")
    if outcome.malformed:
        lines.append(f"  ({outcome.malformed:,} malformed lines, counted as invalid)")
    if outcome.stopped:
        lines.extend(_stopped_lines(outcome))
    return lines


def _stopped_lines(outcome: Outcome) -> list[str]:
    answered = outcome.done - outcome.unanswered
    what = "interrupted" if outcome.stopped == "interrupt" else "stopped"
    lines = [
        f"{what}: {answered:,} leads answered; {outcome.unanswered:,} handed to the client "
        "without an answer (written as unknown: they may or may not have been applied)"
    ]
    if outcome.next_line is not None:
        lines.append(f"input not read from line {outcome.next_line:,} on")
    return lines


# --------------------------------------------------------------------------- commands


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _delimiter(text: str) -> str:
    value = "\t" if text in ("tab", "\\t") else text
    if len(value) != 1 or value in "\"\r\n":
        raise argparse.ArgumentTypeError("must be one character (not a quote or newline), or tab")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _comment_settings(args: argparse.Namespace) -> Settings:
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise UsageError(f"set {TOKEN_ENV} to the API key (it is never taken as a flag)")
    site_id = (args.site_id or os.environ.get(SITE_ID_ENV, "")).strip()
    if not site_id:
        raise UsageError(f"give --site-id or set {SITE_ID_ENV}")
    return Settings(site_id, token, args.base_url, args.max_in_flight)


def _open_input(name: str, stack: ExitStack) -> int:
    """The file descriptor to read leads from."""
    if name == "-":
        if sys.stdin.isatty():
            print("reading leads from the terminal; end with Ctrl-D", file=sys.stderr)
        return sys.stdin.fileno()
    try:
        handle = stack.enter_context(open(name, "rb"))  # noqa: SIM115 - closed by the stack
    except OSError as exc:
        raise UsageError(f"cannot open {name}: {exc.strerror}") from None
    return handle.fileno()


def _count_lines(path: str) -> int | None:
    # One quick pass so the bar can show a percentage; a rate-limited run takes far longer.
    try:
        with open(path, "rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except OSError:
        return None


def _open_output(name: str, stack: ExitStack) -> BinaryIO:
    if name == "-":
        return sys.stdout.buffer
    try:
        return stack.enter_context(open(name, "wb"))
    except OSError as exc:
        raise UsageError(f"cannot write {name}: {exc.strerror}") from None


def _is_csv(args: argparse.Namespace) -> bool:
    """CSV by ``--format``, else by FILE's extension (stdin: JSON lines)."""
    csv_input = args.format == "csv" or (args.format is None and args.file.lower().endswith(".csv"))
    if not csv_input and args.csv_delimiter is not None:
        raise UsageError("--csv-delimiter applies to CSV input only (--format csv)")
    return csv_input


def _progress_total(args: argparse.Namespace, csv_input: bool) -> int | None:
    lines = _count_lines(args.file) if args.file != "-" else None
    return lines - 1 if lines and csv_input else lines  # the CSV header is no lead


def _run_comment(args: argparse.Namespace) -> int:
    settings = _comment_settings(args)
    csv_input = _is_csv(args)
    show = not args.no_progress and sys.stderr.isatty()
    with ExitStack() as stack:
        fd = _open_input(args.file, stack)
        out = _open_output(args.out, stack)
        total = _progress_total(args, csv_input) if show else None
        progress = Progress(sys.stderr, enabled=show, total=total)
        fmt: InputFormat[Any] = (
            CsvRows(args.csv_delimiter or ",", warn=progress.say) if csv_input else JsonLines()
        )
        with client_logs_to(progress):
            outcome = asyncio.run(comment_file(fd, out, settings, progress, fmt))
    for line in summary_lines(outcome):
        print(line, file=sys.stderr)
    return outcome.exit_code()


@contextmanager
def client_logs_to(progress: Progress) -> Iterator[None]:
    """Route the client's warnings above the progress line for the duration of a run."""
    logger = logging.getLogger("calltouch_async")
    handler, propagate = _ProgressLogHandler(progress), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False  # or Python's last-resort handler prints them a second time
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


# --------------------------------------------------------------------------- demo


def _run_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo  # the demo's code and the emulator load only for the demo

    return run_demo(args)


# --------------------------------------------------------------------------- emulator


def _run_emulator(args: argparse.Namespace) -> int:
    from .testing import serve_forever
    from .testing.__main__ import emulator_from_args

    try:
        emulator = emulator_from_args(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        asyncio.run(serve_forever(emulator, ready=_announce_emulator))
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    except OSError as exc:  # e.g. the port is taken
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _announce_emulator(emulator: CalltouchEmulator) -> None:
    from .testing import COMMENT_PATH

    print(f"Calltouch emulator listening on {emulator.base_url}", flush=True)
    print(f"  POST {emulator.base_url}{COMMENT_PATH}", flush=True)
    print(
        f"  {len(emulator.calls):,} calls, {len(emulator.requests):,} requests; Ctrl-C to stop",
        flush=True,
    )


# --------------------------------------------------------------------------- parser and main


class _Parser(argparse.ArgumentParser):
    """argparse, except that its errors never echo argument values.

    ``unrecognized arguments: --token SECRET`` would print a key someone tried to pass as
    a flag; only the option names are shown.
    """

    def error(self, message: str) -> NoReturn:
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            words = message[len(prefix):].split()
            names = [word.split("=", 1)[0] for word in words if word.startswith("-")]
            message = prefix + (" ".join(names) or "(values not shown)")
            if any("token" in name.lower() for name in names):
                message += f"; the access token is read from ${TOKEN_ENV} only"
        super().error(message)


_Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Comment Calltouch leads in bulk, within the API's 5 requests/second.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Typed as plain ArgumentParser subcommands so the emulator's parser can be a parent.
    commands = cast(
        _Commands, parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    )
    _add_comment_parser(commands)
    _add_demo_parser(commands)
    _add_emulator_parser(commands)
    return parser


def _add_comment_parser(commands: _Commands) -> None:
    p = commands.add_parser(
        "comment",
        help="comment the leads of a JSON-lines or CSV file",
        description="Comment every lead of FILE (JSON lines in Calltouch's wire shape: "
        '{"matching": [...], "addComment": "..."}, or CSV with the columns below), writing '
        "one result line per lead.",
        epilog=CSV_HELP + _EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="file of leads, or - for stdin")
    p.add_argument(
        "--format", choices=("jsonl", "csv"),
        help="input format (default: csv for a FILE ending in .csv, else jsonl)",
    )
    p.add_argument(
        "--csv-delimiter", type=_delimiter, metavar="CHAR",
        help="CSV cell separator (default: ,); ';' for many Excel exports, or tab",
    )
    p.add_argument("--site-id", help=f"Calltouch site id (default: ${SITE_ID_ENV})")
    p.add_argument("--base-url", default=DEFAULT_BASE_URL, help="API base URL (%(default)s)")
    p.add_argument(
        "--out", default="-", metavar="PATH", help="results as JSON lines (default: - = stdout)"
    )
    p.add_argument(
        "--max-in-flight", type=_positive_int, default=DEFAULT_MAX_IN_FLIGHT, metavar="N",
        help="requests running at once (%(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.set_defaults(run=_run_comment)


def _add_demo_parser(commands: _Commands) -> None:
    p = commands.add_parser(
        "demo",
        help="comment synthetic leads against the built-in emulator",
        description="Start the emulator in this process (strict 5 requests/second window), "
        "write a synthetic lead file with a few deliberately bad lines, run the real comment "
        "path on it, and check the emulator's ledger.",
    )
    p.add_argument("--leads", type=_positive_int, default=10_000, help="(%(default)s)")
    p.add_argument("--seed", type=int, default=0, help="(%(default)s)")
    p.add_argument("--latency-min", type=_non_negative_float, default=0.05, metavar="S",
                   help="emulator answer latency, lower bound in seconds (%(default)s)")
    p.add_argument("--latency-max", type=_non_negative_float, default=0.3, metavar="S",
                   help="emulator answer latency, upper bound in seconds (%(default)s)")
    p.add_argument("--jitter", type=_non_negative_float, default=0.03, metavar="S",
                   help="network spread before requests reach the emulator (%(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.set_defaults(run=_run_demo)


def _add_emulator_parser(commands: _Commands) -> None:
    from .testing.__main__ import build_parser as emulator_parser

    commands.add_parser(
        "emulator",
        parents=[emulator_parser()],
        add_help=False,  # the parent brings its own -h
        help="run the local Calltouch emulator until Ctrl-C",
        description="Run a local Calltouch comment API emulator (for trying the client).",
    ).set_defaults(run=_run_emulator)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or argparse's own usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return int(args.run(args))
    except UsageError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the event loop
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
