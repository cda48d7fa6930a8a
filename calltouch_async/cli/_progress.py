"""What a run shows on stderr while it works: a progress bar on a terminal, a plain line every
few seconds otherwise, and the client's warnings above either.

The bar is tqdm's when the ``progress`` extra is installed (``pip install
'calltouch-async[progress]'``), imported only when a bar is drawn; otherwise a built-in one.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, TextIO

from .._models import CommentStatus

__all__ = ["PLAIN_INTERVAL", "Progress", "client_logs_to"]

#: Seconds between plain progress lines when stderr is not a terminal (a log file, CI).
PLAIN_INTERVAL: Final = 10.0
_BAR_INTERVAL: Final = 0.1
_BAR_CELLS: Final = 20


class Progress:
    """Leads done, rate, counts per status, and (for a file) the percent of its bytes read
    with an ETA.

    ``mode`` ``"bar"`` redraws one ``\\r`` line at most ten times a second (a terminal);
    ``"plain"`` prints a whole line every ``interval`` seconds (a log); ``"off"`` nothing.
    ``say`` prints a message above the bar so notes do not tear it.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        mode: str,
        total_bytes: int | None = None,
        bytes_read: Callable[[], int] | None = None,
        interval: float | None = None,
    ) -> None:
        self._stream = stream
        self.mode = mode
        self._total = total_bytes or None
        self.bytes_read = bytes_read or (lambda: 0)
        self._interval = interval or (_BAR_INTERVAL if mode == "bar" else PLAIN_INTERVAL)
        self._started = time.monotonic()
        self._drawn_at = self._started
        self._shown = False
        self._tqdm: Any = None  # a tqdm bar; False: tqdm is not installed

    def update(self, counts: Counter[str], *, force: bool = False) -> None:
        if self.mode == "off":
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < self._interval:
            return
        self._drawn_at = now
        if self.mode == "bar" and self._draw_tqdm(counts, now):
            return
        if self.mode == "bar":
            width = max(20, shutil.get_terminal_size().columns - 1)
            self._stream.write(f"\r{self._fit(counts, now, width)}\x1b[K")
            self._shown = True
        else:
            self._stream.write(f"progress: {self._text(counts, now, bar=False)}\n")
        self._stream.flush()

    def _draw_tqdm(self, counts: Counter[str], now: float) -> bool:
        """Draw with tqdm if it is installed: its bar, percent and ETA over the input's
        bytes; our leads, rate and counts after it. False when it is not installed."""
        if self._tqdm is None:
            try:
                tqdm = importlib.import_module("tqdm").tqdm  # untyped: kept to this spot
            except ImportError:
                self._tqdm = False
                return False
            self._tqdm = tqdm(
                total=self._total, file=self._stream, unit="B", unit_scale=True,
                dynamic_ncols=True, mininterval=0, leave=False,
                bar_format="{percentage:3.0f}%|{bar}| ETA {remaining}  {postfix}"
                if self._total else "{postfix}",
            )
        if self._tqdm is False:
            return False
        self._tqdm.n = self.bytes_read()
        self._tqdm.set_postfix_str(self._text(counts, now, bar=False, percent=False), refresh=False)
        self._tqdm.refresh()
        self._shown = True
        return True

    def _fraction(self) -> float | None:
        return min(self.bytes_read() / self._total, 1.0) if self._total else None

    def _text(
        self, counts: Counter[str], now: float, *, bar: bool, eta: bool = True,
        percent: bool = True,
    ) -> str:
        done = sum(counts.values())
        elapsed = now - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        tally = " ".join(f"{s.value} {counts[s]:,}" for s in CommentStatus if counts[s])
        head = f"{done:,} leads  {rate:,.0f}/s"
        fraction = self._fraction() if percent else None
        if fraction is not None:
            head = f"{fraction:4.0%}  {head}"
            if bar:
                filled = round(fraction * _BAR_CELLS)
                head = f"[{'#' * filled}{'.' * (_BAR_CELLS - filled)}] {head}"
            if eta and 0 < fraction < 1:
                head += f"  ETA {elapsed * (1 - fraction) / fraction:,.0f} s"
        return f"{head}  {tally}".rstrip()

    def _fit(self, counts: Counter[str], now: float, width: int) -> str:
        """The fullest line that fits: drop the bar, then the ETA, then cut the end."""
        for bar, eta in ((True, True), (False, True), (False, False)):
            text = self._text(counts, now, bar=bar, eta=eta)
            if len(text) <= width:
                return text
        return text[:width]

    @property
    def _drawing_tqdm(self) -> bool:
        # Not truthiness: a tqdm bar's own bool() depends on its total.
        return self._tqdm is not None and self._tqdm is not False

    def clear(self) -> None:
        if self._drawing_tqdm:
            self._tqdm.clear()
            return
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = False

    def say(self, message: str) -> None:
        self.clear()
        print(message, file=self._stream, flush=True)
        if self._drawing_tqdm:
            self._tqdm.refresh()

    def close(self) -> None:
        """Take the bar off the terminal at the end of a run."""
        if self._drawing_tqdm:
            self._tqdm.close()
            self._tqdm = False
        self.clear()


class _ProgressLogHandler(logging.Handler):
    """Client warnings (retries, unknown outcomes) printed above the progress line."""

    def __init__(self, progress: Progress) -> None:
        super().__init__(logging.WARNING)
        self._progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        self._progress.say(f"{record.levelname.lower()}: {record.getMessage()}")


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
