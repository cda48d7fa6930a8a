"""Fault injection: the failures a test can tell the emulator to produce.

Test knobs, not Calltouch behaviour. A request gets at most one injected fault, the first
injection that claims it. ``RATE_LIMIT``, ``SERVER_ERROR``, ``AUTH_FAILURE`` and
``UNMAPPED_VIOLATION`` act before anything runs (an injected 429 does not use up the rate
window); ``APPLY_THEN_DROP``, ``SLOW`` and ``MALFORMED_JSON`` act on whatever answer the request
would get (normally a 200 after applying). A request the rate window rejects never reaches the
faults.

This module sits below both the emulator and the ledger (which records each request's
``Fault``), so neither imports the other for it.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable
from dataclasses import dataclass

from . import _answers
from ._answers import Answer

__all__ = ["BEFORE_EXECUTING", "Fault", "Faults", "Injection", "answer_before_executing"]


class Fault(enum.Enum):
    """Failures the emulator can be told to produce (see ``CalltouchEmulator.inject``)."""

    RATE_LIMIT = "rate_limit"
    """Answer 429, execute nothing."""
    SERVER_ERROR = "server_error"
    """Answer 500 (JSON body), 502 or 503 (HTML body), execute nothing."""
    APPLY_THEN_DROP = "apply_then_drop"
    """Execute the request, then close the connection without answering."""
    SLOW = "slow"
    """Execute, then wait the injection's ``delay`` seconds before answering."""
    MALFORMED_JSON = "malformed_json"
    """Execute, then answer 200 with a truncated JSON body."""
    AUTH_FAILURE = "auth_failure"
    """Answer as if the credentials were wrong, execute nothing."""
    UNMAPPED_VIOLATION = "unmapped_violation"
    """Execute nothing; answer a validationError whose fieldPaths name no lead."""


BEFORE_EXECUTING = frozenset(
    {Fault.RATE_LIMIT, Fault.SERVER_ERROR, Fault.AUTH_FAILURE, Fault.UNMAPPED_VIOLATION}
)
"""Faults decided before anything runs; the others alter the answer after executing."""


@dataclass(slots=True)
class Injection:
    """One ``inject()`` call: which requests get ``fault``, and how many times it may still."""

    fault: Fault
    on_requests: frozenset[int]
    probability: float
    delay: float
    remaining: int | None

    def hits(self, number: int, rng: random.Random) -> bool:
        """Whether the request with this arrival number gets this fault (not yet spent)."""
        if self.remaining == 0:
            return False
        if number in self.on_requests:
            return True
        return self.probability > 0 and rng.random() < self.probability


class Faults:
    """The injections made so far, consulted in the order they were made."""

    __slots__ = ("_injections",)

    def __init__(self) -> None:
        self._injections: list[Injection] = []

    def add(
        self,
        fault: Fault,
        on_requests: Iterable[int],
        probability: float,
        delay: float,
        times: int | None,
    ) -> None:
        """Check and record one injection (see ``CalltouchEmulator.inject``)."""
        numbers = frozenset(on_requests)
        if any(n < 1 for n in numbers):
            raise ValueError("on_requests are 1-based arrival numbers")
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if delay < 0 or (times is not None and times < 0):
            raise ValueError("delay and times must not be negative")
        self._injections.append(Injection(Fault(fault), numbers, probability, delay, times))

    def clear(self) -> None:
        """Remove every injection."""
        self._injections.clear()

    def pick(self, number: int, rng: random.Random) -> Injection | None:
        """The injection that claims this request, spending one of its ``times``; or None."""
        for injection in self._injections:
            if injection.hits(number, rng):
                if injection.remaining is not None:
                    injection.remaining -= 1
                return injection
        return None


def answer_before_executing(fault: Fault, rng: random.Random) -> Answer:
    """The answer a fault in :data:`BEFORE_EXECUTING` sends instead of executing."""
    outcome = f"fault:{fault.value}"
    if fault is Fault.RATE_LIMIT:
        return _answers.RATE_LIMITED._replace(outcome=outcome)
    if fault is Fault.AUTH_FAILURE:
        return _answers.AUTH_FAILED._replace(outcome=outcome)
    if fault is Fault.UNMAPPED_VIOLATION:
        return Answer(400, _answers.UNMAPPED, outcome)
    status, body, content_type = rng.choice(_answers.SERVER_ERRORS)
    return Answer(status, body, outcome, content_type)
