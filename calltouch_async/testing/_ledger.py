"""What the emulator saw and did: one record per arriving request, one per applied comment.

Tests assert on the ledger rather than on what the client believes happened: "every lead was
commented exactly once" is ``all(n == 1 for n in ledger.text_counts().values())``, and "never
more than 5 requests in any second" is ``ledger.max_in_window(1.0) <= 5``.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass

from ._faults import Fault

__all__ = ["AppliedComment", "Ledger", "RequestRecord"]


@dataclass(slots=True)
class RequestRecord:
    """One HTTP request as the emulator saw it.

    ``status`` and ``outcome`` are filled in when the answer is decided; a request whose
    connection was dropped keeps ``status == 0``.
    """

    number: int
    """1-based arrival number, counting every request (429s included)."""
    arrived_at: float
    """Clock reading (``time.monotonic()`` by default) at arrival, after the inbound jitter."""
    remote: str
    """Client IP address."""
    status: int = 0
    """HTTP status sent (set once decided, before any latency), or 0 if the connection was
    dropped or no answer was decided yet."""
    outcome: str = "pending"
    """``ok``, ``rate_limited``, ``auth_failed``, ``validation_error``, ``bad_request`` or
    ``fault:<name>``."""
    lead_count: int = 0
    """Number of leads in the body when it parsed and ``comments`` was a list, else 0. Bodies
    are read only by requests that get that far: 429s, credential failures and faults that act
    before executing keep 0."""
    fault: Fault | None = None
    """The injected fault this request got, if any."""


@dataclass(slots=True, frozen=True)
class AppliedComment:
    """A comment the emulator actually attached to a call or a request."""

    kind: str
    """``"call"`` or ``"request"``."""
    lead_id: int
    text: str
    request_number: int
    """Arrival number of the HTTP request that carried it (``RequestRecord.number``)."""


class Ledger:
    """Append-only log of requests and applied comments, reset by ``CalltouchEmulator.reset``."""

    __slots__ = ("_record_comments", "applied", "applied_total", "requests")

    def __init__(self, *, record_comments: bool = True) -> None:
        self.requests: list[RequestRecord] = []
        self.applied: list[AppliedComment] = []
        # Counted even when comments are not kept, so memory benchmarks can still check totals.
        self.applied_total = 0
        self._record_comments = record_comments

    def __repr__(self) -> str:
        return f"Ledger(requests={len(self.requests)}, applied={self.applied_total})"

    # -- written by the emulator ---------------------------------------------------------

    def arrive(self, arrived_at: float, remote: str) -> RequestRecord:
        """Record a new arrival and return its record (numbered from 1)."""
        record = RequestRecord(number=len(self.requests) + 1, arrived_at=arrived_at, remote=remote)
        self.requests.append(record)
        return record

    def apply(self, kind: str, lead_id: int, text: str, request_number: int) -> None:
        """Record a comment attached to a lead."""
        self.applied_total += 1
        if self._record_comments:
            self.applied.append(AppliedComment(kind, lead_id, text, request_number))

    def clear(self) -> None:
        """Forget everything (arrival numbering restarts at 1)."""
        self.requests.clear()
        self.applied.clear()
        self.applied_total = 0

    # -- read by tests -------------------------------------------------------------------

    def comments_for(self, kind: str, lead_id: int) -> list[str]:
        """Texts applied to one call (``kind="call"``) or request (``kind="request"``), in order."""
        return [a.text for a in self.applied if a.kind == kind and a.lead_id == lead_id]

    def text_counts(self) -> Counter[str]:
        """How many times each comment text was applied."""
        return Counter(a.text for a in self.applied)

    def count(self, outcome: str) -> int:
        """Number of requests with this outcome (e.g. ``"ok"``, ``"fault:slow"``)."""
        return sum(1 for r in self.requests if r.outcome == outcome)

    def status_counts(self) -> Counter[int]:
        """Number of requests per HTTP status (0 = dropped)."""
        return Counter(r.status for r in self.requests)

    def max_in_window(self, period: float = 1.0, *, accepted_only: bool = True) -> int:
        """Largest number of arrivals inside any half-open window ``[t, t + period)``.

        With ``accepted_only`` requests answered 429 are left out: they are what the rate limit
        allows to exceed the count. The busiest window can always be taken to start at an
        arrival, so one pass over the sorted times with a second pointer is enough.
        """
        times = sorted(
            r.arrived_at for r in self.requests if not (accepted_only and r.status == 429)
        )
        best = 0
        for i, start in enumerate(times):
            end = bisect.bisect_left(times, start + period, lo=i)
            best = max(best, end - i)
        return best
