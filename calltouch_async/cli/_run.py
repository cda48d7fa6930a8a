"""The ``comment`` run: leads through the client to result lines, honest on every stop; and
the dry run, which validates without a client.

On the first SIGINT or SIGTERM the run stops reading input and closes the client
(``CalltouchClient.aclose``), which lets requests in flight answer for up to ``grace``
seconds; every result the stream still yields is written, then the run ends with 130
(SIGINT) or 143 (SIGTERM). A second signal exits at once. Leads with no result line are sent
by ``--resume``.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import sys
import time
from collections import Counter
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Final

from .._client import CalltouchClient
from .._constants import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_IN_FLIGHT,
    MAX_LEADS_PER_REQUEST,
    RATE_LIMIT_PERIOD,
    RATE_LIMIT_REQUESTS,
)
from .._errors import AuthError, CalltouchError, RedirectError
from .._models import CommentStatus
from .._validation import Problem, validate_lead
from ._progress import Progress
from ._results import ResultRecord, ResultSink
from ._source import LeadSource

__all__ = [
    "EXIT_AUTH", "EXIT_ERROR", "EXIT_FAILED", "EXIT_INPUT", "EXIT_INTERRUPTED", "EXIT_OK",
    "EXIT_PIPE", "EXIT_REDIRECT", "EXIT_TERMINATED", "EXIT_UNKNOWN", "EXIT_USAGE", "DryRun",
    "Outcome",
    "Settings", "UsageError", "comment_file", "dry_run",
]

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_AUTH: Final = 3
EXIT_INPUT: Final = 4
EXIT_FAILED: Final = 5
EXIT_UNKNOWN: Final = 6
EXIT_REDIRECT: Final = 7  # Calltouch answered 3xx: a wrong --base-url, or a proxy
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT
EXIT_PIPE: Final = 141  # 128 + SIGPIPE: the reader of the results went away
EXIT_TERMINATED: Final = 143  # 128 + SIGTERM

_STOP_CODES: Final = {
    "interrupt": EXIT_INTERRUPTED, "terminate": EXIT_TERMINATED, "auth": EXIT_AUTH,
    "error": EXIT_ERROR, "pipe": EXIT_PIPE, "redirect": EXIT_REDIRECT,
}
_SIGNALS: Final = {signal.SIGINT: "interrupt", signal.SIGTERM: "terminate"}
_INPUT_STATUSES: Final = frozenset({CommentStatus.INVALID, CommentStatus.REJECTED})
_ANSWERED: Final = frozenset(
    {CommentStatus.COMMENTED, CommentStatus.NOT_COMMENTED, CommentStatus.REJECTED}
)
#: Seconds requests in flight may take to answer after the first signal.
DEFAULT_GRACE: Final = 5.0


class UsageError(Exception):
    """A problem with the command line or environment: exit 2 with one line on stderr."""


@dataclass(frozen=True)
class Settings:
    """Where and as whom to comment. The token is kept out of ``repr``."""

    site_id: str
    token: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    grace: float = DEFAULT_GRACE
    allow_insecure_http: bool = False


@dataclass
class Outcome:
    """What a ``comment`` run did, for the summary and the exit code."""

    counts: Counter[str]
    elapsed: float = 0.0
    carried: Counter[str] = field(default_factory=Counter)  # settled earlier, not resent
    unanswered: int = 0  # leads the stream gave no result for, written by the CLI itself
    next_line: int | None = None  # first input line not read, when the run stopped early
    stopped: str | None = None  # "interrupt", "terminate", "auth", "redirect", "error", "pipe"
    malformed: int = 0

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    @property
    def answered(self) -> int:
        """Leads Calltouch answered for in this run."""
        return sum(self.counts[s] for s in _ANSWERED)

    @property
    def rate(self) -> float:
        """Answered leads per second: never-sent and unanswered leads do not count."""
        return self.answered / self.elapsed if self.elapsed > 0 else 0.0

    def exit_code(self, *, expected: frozenset[str] = frozenset()) -> int:
        """The documented code; statuses in ``expected`` (the demo's deliberate ones) are
        not held against the run. Leads settled by an earlier run count too."""
        if self.stopped is not None:
            return _STOP_CODES[self.stopped]
        seen = {s for s, n in (self.counts + self.carried).items() if n} - expected
        if CommentStatus.UNKNOWN in seen:
            return EXIT_UNKNOWN
        if CommentStatus.FAILED in seen:
            return EXIT_FAILED
        if seen & _INPUT_STATUSES:
            return EXIT_INPUT
        return EXIT_OK


class _Signals:
    """First SIGINT/SIGTERM: stop the input and close the client; a second: exit at once."""

    def __init__(self, client: CalltouchClient, source: LeadSource[Any]) -> None:
        self._client = client
        self._source = source
        self._loop = asyncio.get_running_loop()
        self._closing: asyncio.Future[None] | None = None
        self._installed = True
        self.received: str | None = None

    def __enter__(self) -> _Signals:
        try:
            for signum in _SIGNALS:
                self._loop.add_signal_handler(signum, self._on_signal, signum)
        except NotImplementedError:  # Windows: Ctrl-C stays a KeyboardInterrupt
            self._installed = False
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._installed:
            return
        for signum in _SIGNALS:
            self._loop.remove_signal_handler(signum)
            if self.received is not None:
                # Still a second signal until the process ends (the summary, the teardown).
                signal.signal(signum, lambda number, _frame: _exit_at_once(number))

    def _on_signal(self, signum: signal.Signals) -> None:
        if self.received is not None:
            _exit_at_once(signum)
        self.received = _SIGNALS[signum]
        os.write(2, b"\nstopping: no new requests; waiting for those in flight "
                    b"(signal again to exit at once)\n")
        self._source.stop()
        # Kept so the close is not garbage-collected mid-way: the loop holds tasks weakly.
        self._closing = asyncio.ensure_future(self._client.aclose())


def _exit_at_once(signum: int) -> None:
    os.write(2, b"\nstopped at once: leads without a result line are sent by --resume\n")
    os._exit(_STOP_CODES[_SIGNALS[signal.Signals(signum)]])  # result lines are written


async def comment_file(
    source: LeadSource[Any], sink: ResultSink, settings: Settings, progress: Progress
) -> Outcome:
    """The ``comment`` command's work: the source's leads through the client into ``sink``.

    Never raises for an auth error, a redirect, a closed pipe or a signal: the outcome says
    why the run stopped. A lead the stream gave no result for is written ``failed`` after an
    ``AuthError`` (nothing ran), otherwise ``unknown`` (it may have been sent).
    """
    outcome = Outcome(sink.counts)
    started = time.monotonic()
    client = CalltouchClient(
        settings.site_id, settings.token, base_url=settings.base_url,
        max_in_flight=settings.max_in_flight, flush_timeout=settings.grace,
        allow_insecure_http=settings.allow_insecure_http,
    )
    with _Signals(client, source) as signals:
        try:
            async with client, aclosing(client.comment_many(source.leads())) as results:
                async for result in results:
                    sink.add_result(result, *source.take(result.index))
        except BrokenPipeError:
            outcome.stopped = "pipe"
        except AuthError as exc:
            progress.say(f"error: {exc}")
            outcome.stopped = "auth"
        except RedirectError as exc:
            progress.say(f"error: {exc}")
            outcome.stopped = "redirect"
        except CalltouchError as exc:
            if signals.received is None:
                progress.say(f"error: {exc}")
                outcome.stopped = "error"
        outcome.stopped = signals.received or outcome.stopped
    outcome.elapsed = time.monotonic() - started
    if outcome.stopped != "pipe":
        outcome.unanswered = _write_unanswered(source, sink, outcome.stopped)
    if outcome.stopped and not source.finished:
        outcome.next_line = source.lines_read + 1
    outcome.malformed, outcome.carried = sink.malformed, source.carried
    progress.close()
    return outcome


def _write_unanswered(source: LeadSource[Any], sink: ResultSink, stopped: str | None) -> int:
    """Results for leads handed to the client that its stream never answered for.

    After a 401 or a 3xx the client has reported every other lead it read (answered, or
    ``failed`` "not sent"), so these are the leads of the requests that got that answer.
    """
    if stopped == "auth":
        # Calltouch refused the credentials: the request that got the 401 was not executed.
        status, error = CommentStatus.FAILED, "not applied: Calltouch refused the credentials"
    elif stopped == "redirect":
        # A 3xx does not say whether something behind it ran the request.
        status = CommentStatus.UNKNOWN
        error = "the run stopped on a redirect (check --base-url): may or may not have been sent"
    else:
        status = CommentStatus.UNKNOWN
        error = "the run stopped before an answer: may or may not have been applied"
    for ordinal, line, raw in sorted(source.origin.values()):
        sink.write(ResultRecord(ordinal, line, status.value, error=error), raw)
    count = len(source.origin)
    source.origin.clear()
    return count


# --------------------------------------------------------------------------- dry run


@dataclass
class DryRun:
    """What ``--dry-run`` found: valid leads, invalid ones by reason."""

    valid: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    carried: Counter[str] = field(default_factory=Counter)

    @property
    def invalid(self) -> int:
        return sum(self.reasons.values())

    @property
    def requests(self) -> int:
        return math.ceil(self.valid / MAX_LEADS_PER_REQUEST)

    @property
    def seconds(self) -> float:
        return self.requests * RATE_LIMIT_PERIOD / RATE_LIMIT_REQUESTS

    def exit_code(self) -> int:
        return EXIT_INPUT if self.invalid or self.carried.keys() & _INPUT_STATUSES else EXIT_OK

    def lines(self) -> list[str]:
        lines = [
            f"dry run: nothing sent; {self.valid:,} valid leads, {self.invalid:,} invalid",
            f"  requests needed: {self.requests:,} (up to {MAX_LEADS_PER_REQUEST} leads each)",
            f"  time at {RATE_LIMIT_REQUESTS} requests/s: {_duration(self.seconds)}",
        ]
        if self.carried:
            lines.append(f"  settled by an earlier run, skipped: {sum(self.carried.values()):,}")
        if self.reasons:
            lines.append("  invalid by reason:")
            lines.extend(f"  {n:>10,}  {reason}" for reason, n in self.reasons.most_common())
        return lines


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def _where(problem: Problem) -> str:
    return problem.path or "lead"  # paths are relative to the lead


async def dry_run(source: LeadSource[Any], sink: ResultSink) -> DryRun:
    """Validate every lead the run would send; write ``invalid`` results; send nothing."""
    report = DryRun()
    async for ordinal, item, decoded in source.items():
        if isinstance(decoded, str):
            source.malformed(ordinal, item, decoded)
            report.reasons["malformed line"] += 1
            continue
        problems = validate_lead(decoded)
        if not problems:
            report.valid += 1
            continue
        for problem in problems:
            report.reasons[f"{_where(problem)}: {problem.message}"] += 1
        error = "; ".join(f"{_where(p)}: {p.message}" for p in problems)
        record = ResultRecord(ordinal, source.line, CommentStatus.INVALID.value, error=error)
        sink.write(record, source.raw(item))
    report.carried = source.carried
    return report


def summary_lines(outcome: Outcome) -> list[str]:
    """The end-of-run report: counts per status, elapsed time, answered leads/s."""
    lines = [
        f"{outcome.done:,} results in {outcome.elapsed:,.1f} s "
        f"({outcome.answered:,} answered: {outcome.rate:,.0f} leads/s)"
    ]
    for status in CommentStatus:
        if outcome.counts[status]:
            lines.append(f"  {status.value:<14}{outcome.counts[status]:>10,}")
    if outcome.malformed:
        lines.append(f"  ({outcome.malformed:,} malformed lines, counted as invalid)")
    if outcome.carried:
        lines.append(f"settled by an earlier run, not sent again: {outcome.carried.total():,}")
        held = outcome.carried[CommentStatus.UNKNOWN]
        if held:
            lines.append(
                f"  {held:,} unknown held back (check them, or send again with --resend-unknown)"
            )
    if outcome.stopped:
        lines.extend(_stopped_lines(outcome))
    return lines


def _stopped_lines(outcome: Outcome) -> list[str]:
    what = {"interrupt": "interrupted", "terminate": "terminated"}.get(outcome.stopped or "")
    lines = [f"{what or 'stopped'}: {outcome.done:,} result lines written"]
    if outcome.unanswered:
        lines.append(f"  {outcome.unanswered:,} of them written by the CLI for leads the client "
                     "gave no result for")
    if outcome.next_line is not None:
        lines.append(f"input not read from line {outcome.next_line:,} on; "
                     "run again with --resume to continue")
    return lines


def print_lines(lines: list[str]) -> None:
    for line in lines:
        print(line, file=sys.stderr)
