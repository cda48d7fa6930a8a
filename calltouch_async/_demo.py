"""``calltouch-async demo``: synthetic leads against the built-in emulator, checked by its ledger.

The emulator starts in this process with generated calls and requests and the strict
5-requests-per-second window. A lead file is written for its data, with a handful of
deliberately bad lines (malformed, invalid, rejected) spread evenly, and the ``comment``
command's own path (``cli.comment_file``) runs on it through the real client. The summary
table then sets the results against the emulator's ledger: leads by status, leads/s against
the 500/s ceiling, requests sent, 429s, and that every comment was applied once.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final

import msgspec

from ._constants import MAX_LEADS_PER_REQUEST, RATE_LIMIT_PERIOD, RATE_LIMIT_REQUESTS
from ._models import (
    CallContactMatch,
    CallMatch,
    CommentStatus,
    LeadComment,
    RequestContactMatch,
    format_date,
)
from .cli import (
    EXIT_ERROR,
    EXIT_OK,
    Outcome,
    Progress,
    ResultRecord,
    Settings,
    UsageError,
    client_logs_to,
    comment_file,
    summary_lines,
)

if TYPE_CHECKING:
    from .testing import CalltouchEmulator, Ledger

__all__ = ["run_demo"]

# Leads Calltouch may take per second: 100 per request, 5 requests a second.
CEILING_LEADS_PER_SECOND: Final = MAX_LEADS_PER_REQUEST * RATE_LIMIT_REQUESTS / RATE_LIMIT_PERIOD

DEMO_SITE_ID: Final = 12345
DEMO_TOKEN: Final = "demo-token"  # the emulator's own, not a Calltouch key
_DEMO_SEARCH_DEPTH: Final = 60  # minutes

# Lines the demo plants so its summary shows what operators will meet in real exports.
_MALFORMED_LINES: Final = (
    b'{"matching": [{"type": "call", "callParams": {"callId": 1}}], "addComment": "cut',
    b'{"addComment": "a lead without matching"}',
    b'{"matching": [{"type": "fax", "faxParams": {}}], "addComment": "unknown type"}',
    b'{"matching": [{"type": "call", "callParams": {"callId": "12"}}], "addComment": "x"}',
    b"[1, 2, 3]",
)


def _demo_text(line: int) -> str:
    # Unique per line, so the ledger can tell a comment applied twice from two comments.
    return f"Demo comment for line {line}: client called back, interested in the offer"


def _invalid_leads(line: int) -> list[LeadComment]:
    """Well-formed leads the client refuses locally (never sent, cost nothing)."""
    text = _demo_text(line)
    return [
        LeadComment(matching=[CallMatch(call_id=1)], comment="   "),
        LeadComment(matching=[CallMatch(call_id=1)], comment="x" * 1001),
        LeadComment(matching=[], comment=text),
        LeadComment(matching=[CallMatch(call_id=0)], comment=text),
    ]


def _rejected_leads(line: int) -> list[LeadComment]:
    """Leads only the server's validation refuses: the client does not check phone or
    e-mail formats, so these are sent and Calltouch's violations name them."""
    when, depth = "01-10-2020 12:00:00", _DEMO_SEARCH_DEPTH
    bad_email = RequestContactMatch(
        emails=["not-an-email"], date=when, search_depth=depth, request_type_to_match="nearest"
    )
    bad_phone = CallContactMatch(
        phones=["no digits here"], date=when, search_depth=depth, call_type_to_match="nearest"
    )
    text = _demo_text(line)
    return [LeadComment(matching=[bad_email], comment=text),
            LeadComment(matching=[bad_phone], comment=text)]


_PLANTED: Final = len(_MALFORMED_LINES) + len(_invalid_leads(0)) + len(_rejected_leads(0))


def _planted_line(k: int, line: int) -> bytes:
    """The ``k``-th deliberately bad line: malformed ones first, then invalid, then rejected."""
    if k < len(_MALFORMED_LINES):
        return _MALFORMED_LINES[k]
    leads = [*_invalid_leads(line), *_rejected_leads(line)]
    return msgspec.json.encode(leads[k - len(_MALFORMED_LINES)])


def _good_lead(emu: CalltouchEmulator, rng: random.Random, line: int) -> LeadComment:
    """Mostly calls by id; some by a call's phone and time, some requests by e-mail, a few
    that match nothing."""
    text, roll = _demo_text(line), rng.random()
    if roll < 0.80:
        call_id = rng.randint(1, len(emu.calls))
        return LeadComment(matching=[CallMatch(call_id=call_id)], comment=text)
    if roll < 0.88:
        call = emu.calls[rng.randint(1, len(emu.calls))]
        match = CallContactMatch(
            phones=[call.phones[0]], date=format_date(call.time),
            search_depth=_DEMO_SEARCH_DEPTH, call_type_to_match="nearest",
        )
        return LeadComment(matching=[match], comment=text)
    if roll < 0.97:
        request = emu.requests[rng.randint(1, len(emu.requests))]
        req_match = RequestContactMatch(
            emails=[request.emails[0]], date=format_date(request.time),
            search_depth=_DEMO_SEARCH_DEPTH, request_type_to_match="nearest",
        )
        return LeadComment(matching=[req_match], comment=text)
    missing = len(emu.calls) + rng.randint(1, 1_000_000)
    return LeadComment(matching=[CallMatch(call_id=missing)], comment=text)


def write_demo_leads(emu: CalltouchEmulator, path: Path, count: int, seed: int) -> None:
    """``count`` lines of leads for ``emu``'s data, a handful of bad ones spread evenly."""
    rng = random.Random(seed)
    planted = min(_PLANTED, count // 20)
    at = {round((k + 1) * count / (planted + 1)): k for k in range(planted)}
    encode = msgspec.json.Encoder().encode
    with path.open("wb") as out:
        for line in range(1, count + 1):
            if line in at:
                out.write(_planted_line(at[line], line))
            else:
                out.write(encode(_good_lead(emu, rng, line)))
            out.write(b"\n")


@dataclass
class LedgerCheck:
    """What the emulator's ledger says about the run, against the results file."""

    duplicates: int  # comment texts applied more than once
    commented: int  # leads the client reported commented
    missing: int  # ... of which the ledger has no trace
    applied: int  # comments the ledger holds
    unknown: int  # leads reported unknown: each may or may not have been applied

    @property
    def ok(self) -> bool:
        # Every applied comment is one the results call commented, or one left unknown.
        explained = self.commented <= self.applied <= self.commented + self.unknown
        return self.duplicates == 0 and self.missing == 0 and explained


def check_ledger(ledger: Ledger, results: Path) -> LedgerCheck:
    applied = {(a.kind, a.lead_id, a.text) for a in ledger.applied}
    duplicates = sum(1 for n in ledger.text_counts().values() if n > 1)
    decoder = msgspec.json.Decoder(ResultRecord)
    commented = missing = unknown = 0
    with results.open("rb") as handle:
        for raw in handle:
            record = decoder.decode(raw)
            unknown += record.status == CommentStatus.UNKNOWN
            if record.status != CommentStatus.COMMENTED:
                continue
            commented += 1
            key: tuple[str, int | str | None, str]
            if record.call_id is not None:
                key = ("call", record.call_id, _demo_text(record.line))
            else:
                key = ("request", record.request_id, _demo_text(record.line))
            missing += key not in applied
    return LedgerCheck(duplicates, commented, missing, ledger.applied_total, unknown)


def _verdict(outcome: Outcome, check: LedgerCheck) -> str:
    if not check.ok:
        return "FAILED: the ledger disagrees with the results"
    verdict = "OK: every comment applied at most once, every commented lead applied"
    return f"{verdict} (run interrupted)" if outcome.stopped else verdict


def run_demo(args: argparse.Namespace) -> int:
    if args.latency_min > args.latency_max:
        raise UsageError("--latency-min must not exceed --latency-max")
    emu = _demo_emulator(args)
    show = not args.no_progress and sys.stderr.isatty()
    with tempfile.TemporaryDirectory(prefix="calltouch-demo-") as tmp:
        leads, results = Path(tmp, "leads.jsonl"), Path(tmp, "results.jsonl")
        write_demo_leads(emu, leads, args.leads, args.seed)
        progress = Progress(sys.stderr, enabled=show, total=args.leads)
        with open(leads, "rb") as src, results.open("wb") as out, client_logs_to(progress):
            outcome = asyncio.run(_demo_comment(emu, src.fileno(), out, progress, args))
        check = check_ledger(emu.ledger, results)
    for line in summary_lines(outcome):
        print(line, file=sys.stderr)
    print("\n".join(demo_table(outcome, check, emu.ledger)))
    expected = frozenset({CommentStatus.INVALID.value, CommentStatus.REJECTED.value})
    code = outcome.exit_code(expected=expected)
    return EXIT_ERROR if code == EXIT_OK and not check.ok else code


def _demo_emulator(args: argparse.Namespace) -> CalltouchEmulator:
    from .testing import CalltouchEmulator  # the comment path never needs the emulator

    emu = CalltouchEmulator(
        site_id=DEMO_SITE_ID,
        access_token=DEMO_TOKEN,
        latency=(args.latency_min, args.latency_max),
        inbound_jitter=args.jitter,
        seed=args.seed,
    )
    emu.generate(calls=max(50, args.leads // 2), requests=max(20, args.leads // 5), seed=args.seed)
    return emu


async def _demo_comment(
    emu: CalltouchEmulator, fd: int, out: BinaryIO, progress: Progress, args: argparse.Namespace
) -> Outcome:
    # The emulator serves on this same loop: simplest, and enough for a demo's load.
    async with emu:
        _say_demo_intro(emu, args)
        settings = Settings(str(DEMO_SITE_ID), DEMO_TOKEN, emu.base_url)
        return await comment_file(fd, out, settings, progress)


def _say_demo_intro(emu: CalltouchEmulator, args: argparse.Namespace) -> None:
    print(
        f"Demo: {args.leads:,} leads against the built-in emulator at {emu.base_url} "
        f"({len(emu.calls):,} calls, {len(emu.requests):,} requests; strict window of "
        f"{RATE_LIMIT_REQUESTS} requests per {RATE_LIMIT_PERIOD:g} s; latency "
        f"{args.latency_min:g}-{args.latency_max:g} s, jitter {args.jitter:g} s). "
        f"Expect about {args.leads / CEILING_LEADS_PER_SECOND:,.0f} s.",
        file=sys.stderr,
        flush=True,
    )


def demo_table(outcome: Outcome, check: LedgerCheck, ledger: Ledger) -> list[str]:
    rate = outcome.rate
    share = f"{rate:,.0f} leads/s = {rate / CEILING_LEADS_PER_SECOND:.0%} of the " \
        f"{CEILING_LEADS_PER_SECOND:,.0f}/s ceiling"
    if outcome.elapsed < 2 * RATE_LIMIT_PERIOD:
        share += " (a run this short is mostly the first burst)"
    too_many = ledger.count("rate_limited")
    rows = [
        ("leads", f"{outcome.done:,} in {outcome.elapsed:,.1f} s"),
        *((f"  {s.value}", f"{outcome.counts[s]:,}") for s in CommentStatus),
        ("throughput", share),
        ("requests sent", f"{len(ledger.requests):,}"),
        ("429s from the emulator",
         f"{too_many} (retried; a 429 executes nothing)" if too_many else "0"),
        ("max requests in any 1 s", f"{ledger.max_in_window(1.0)} (limit {RATE_LIMIT_REQUESTS})"),
        ("comments applied twice+", f"{check.duplicates} (must be 0)"),
        ("commented leads in ledger", f"{check.commented - check.missing:,} of "
         f"{check.commented:,}; ledger holds {check.applied:,} comments"),
        ("verdict", _verdict(outcome, check)),
    ]
    width = max(len(name) for name, _ in rows)
    return ["", "Demo summary", *(f"  {name:<{width}}  {value}" for name, value in rows)]


