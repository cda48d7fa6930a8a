"""The demo's emulator, in a process of its own: ``python -m calltouch_async.cli._demo_server``.

So the demo measures the client, not the CPU the emulator and the client would take from
each other on one event loop (the benchmarks do the same). The process generates its data,
writes the demo's lead file for it (a handful of deliberately bad lines spread evenly),
starts the emulator with the strict 5-requests-per-second window, and prints one JSON line:
``{"base_url", "calls", "requests"}``. It then reads one line on stdin, the path of the
results file, and answers with one JSON line, the ledger set against those results
(``check_ledger``), and exits. It also exits when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from pathlib import Path
from typing import Any, Final

import msgspec

from .._models import (
    CallContactMatch,
    CallMatch,
    CommentStatus,
    LeadComment,
    RequestContactMatch,
    format_date,
)
from ..testing import CalltouchEmulator, Ledger
from ._results import ResultRecord

__all__ = ["DEMO_SITE_ID", "DEMO_TOKEN", "check_ledger", "demo_text", "main", "write_demo_leads"]

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


def demo_text(line: int) -> str:
    # Unique per line, so the ledger can tell a comment applied twice from two comments.
    return f"Demo comment for line {line}: client called back, interested in the offer"


def _invalid_leads(line: int) -> list[LeadComment]:
    """Well-formed leads the client refuses locally (never sent, cost nothing)."""
    text = demo_text(line)
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
    text = demo_text(line)
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
    text, roll = demo_text(line), rng.random()
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


def check_ledger(ledger: Ledger, results: Path) -> dict[str, Any]:
    """The ledger against the results file: what the demo's table and verdict need."""
    applied = {(a.kind, a.lead_id, a.text) for a in ledger.applied}
    decoder = msgspec.json.Decoder(ResultRecord)
    commented = missing = unknown = 0
    with results.open("rb") as handle:
        for raw in handle:
            record = decoder.decode(raw)
            unknown += record.status == CommentStatus.UNKNOWN
            if record.status != CommentStatus.COMMENTED:
                continue
            commented += 1
            kind, lead_id = (
                ("call", record.call_id) if record.call_id is not None
                else ("request", record.request_id)
            )
            missing += (kind, lead_id, demo_text(record.line)) not in applied
    return {
        "duplicates": sum(1 for n in ledger.text_counts().values() if n > 1),
        "commented": commented,
        "missing": missing,
        "applied": ledger.applied_total,
        "unknown": unknown,
        "requests": len(ledger.requests),
        "rate_limited": ledger.count("rate_limited"),
        # Every arrival, the 429s included: those are the ones that went over.
        "max_in_1s": ledger.max_in_window(1.0, accepted_only=False),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, required=True)
    parser.add_argument("--leads-file", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency", type=float, nargs=2, default=(0.05, 0.3))
    parser.add_argument("--jitter", type=float, default=0.03)
    return parser


async def _serve(args: argparse.Namespace) -> None:
    emu = CalltouchEmulator(
        site_id=DEMO_SITE_ID, access_token=DEMO_TOKEN, latency=tuple(args.latency),
        inbound_jitter=args.jitter, seed=args.seed,
    )
    emu.generate(calls=max(50, args.leads // 2), requests=max(20, args.leads // 5), seed=args.seed)
    write_demo_leads(emu, args.leads_file, args.leads, args.seed)
    async with emu:
        ready = {"base_url": emu.base_url, "calls": len(emu.calls), "requests": len(emu.requests)}
        print(json.dumps(ready), flush=True)
        # A thread, so the emulator keeps serving while the line is awaited.
        results = (await asyncio.to_thread(sys.stdin.readline)).strip()
        if results:
            print(json.dumps(check_ledger(emu.ledger, Path(results))), flush=True)


def main(argv: list[str] | None = None) -> int:
    asyncio.run(_serve(_parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
