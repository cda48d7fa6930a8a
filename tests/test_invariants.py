"""Property: whatever the input and whatever the server does, every lead ends in exactly one
honest result. Hypothesis draws the input (sizes, invalid and server-rejected leads, order,
concurrency) and the faults; each example runs the real client over real HTTP against a
fresh emulator and checks the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calltouch_async import (
    CallMatch,
    CalltouchClient,
    ClientClosedError,
    CommentStatus,
    LeadComment,
    RequestContactMatch,
    RetryPolicy,
)
from calltouch_async.testing import Fault
from helpers import SITE_ID, TOKEN, new_emulator

S = CommentStatus
FAULTS = [
    Fault.RATE_LIMIT, Fault.SERVER_ERROR, Fault.APPLY_THEN_DROP, Fault.MALFORMED_JSON,
    Fault.UNMAPPED_VIOLATION,
]
KIND = st.sampled_from(["ok", "ok", "ok", "ok", "invalid", "server_rejects", "not_found"])


def make_lead(i: int, kind: str) -> LeadComment:
    text = f"p-{i}"
    if kind == "invalid":
        return LeadComment([CallMatch(0)], text)
    if kind == "server_rejects":  # passes local checks, fails Calltouch's e-mail rule
        entry = RequestContactMatch(
            emails=["no-at-sign"], date="01-10-2020 12:00:00", search_depth=5,
            request_type_to_match="nearest",
        )
        return LeadComment([entry], text)
    if kind == "not_found":
        return LeadComment([CallMatch(900_000 + i)], text)
    return LeadComment([CallMatch(i % 400 + 1)], text)


async def scenario(
    kinds: list[str], faults: list[tuple[Fault, int]], ordered: bool, in_flight: int
) -> None:
    leads = [make_lead(i, kind) for i, kind in enumerate(kinds)]
    async with new_emulator(400, rate_limit=None) as emu:
        for fault, number in faults:
            emu.inject(fault, on_requests=[number])
        retry = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002)
        client = CalltouchClient(
            SITE_ID, TOKEN, base_url=emu.base_url, rate_limiter=None, retry=retry,
            max_in_flight=in_flight,
        )
        async with client:
            stream = client.comment_many(iter(leads), ordered=ordered)
            async with contextlib.aclosing(stream):
                results = [r async for r in stream]
        applied = emu.ledger.text_counts()

    assert sorted(r.index for r in results) == list(range(len(leads)))
    if ordered:
        assert [r.index for r in results] == list(range(len(leads)))
    assert all(count == 1 for count in applied.values()), "applied twice"
    for r, kind in ((r, kinds[r.index]) for r in results):
        assert r.lead is leads[r.index]
        if kind == "invalid":
            assert r.status is S.INVALID
        if kind == "server_rejects":
            assert r.status in (S.REJECTED, S.FAILED, S.UNKNOWN)
        if r.status is S.COMMENTED:
            assert applied[r.lead.comment] == 1
        if r.status in (S.INVALID, S.REJECTED, S.FAILED, S.NOT_COMMENTED):
            assert r.lead.comment not in applied
    statuses = Counter(r.status for r in results)
    if not faults:  # without faults, every lead's outcome is decided by its kind alone
        assert statuses[S.UNKNOWN] == statuses[S.FAILED] == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    # Sizes spread evenly over 0..260 (one to three requests), not clustered at small lists.
    kinds=st.integers(0, 260).flatmap(lambda n: st.lists(KIND, min_size=n, max_size=n)),
    faults=st.lists(st.tuples(st.sampled_from(FAULTS), st.integers(1, 4)), max_size=3),
    ordered=st.booleans(),
    in_flight=st.integers(1, 4),
)
def test_every_lead_gets_exactly_one_honest_result(
    kinds: list[str], faults: list[tuple[Fault, int]], ordered: bool, in_flight: int
) -> None:
    asyncio.run(scenario(kinds, faults, ordered, in_flight))


async def closing_scenario(
    kinds: list[str], close_at: float, flush_timeout: float, in_flight: int
) -> None:
    leads = [make_lead(i, kind) for i, kind in enumerate(kinds)]
    close_after = max(1, int(close_at * len(leads)))  # results read before closing
    results = []
    async with new_emulator(400, rate_limit=None, latency=(0.02, 0.1)) as emu:
        client = CalltouchClient(
            SITE_ID, TOKEN, base_url=emu.base_url, rate_limiter=None, max_in_flight=in_flight,
            flush_timeout=flush_timeout,
        )
        async with client:
            stream = client.comment_many(iter(leads))
            with contextlib.suppress(ClientClosedError):  # raised only if input was left unread
                async for r in stream:
                    results.append(r)
                    if len(results) == close_after:
                        await client.aclose()  # from inside the loop, as a signal handler may
        applied = emu.ledger.text_counts()
        received = sum(rec.lead_count for rec in emu.ledger.requests)

    assert len({r.index for r in results}) == len(results), "a lead got two results"
    assert all(count == 1 for count in applied.values()), "applied twice"
    for r in results:
        assert r.lead is leads[r.index]
        if r.lead.comment in applied:  # it ran: no result may say it did not
            assert r.status in (S.COMMENTED, S.NOT_COMMENTED, S.UNKNOWN), r
        if r.status in (S.INVALID, S.REJECTED, S.FAILED):
            assert r.lead.comment not in applied
    may_have_run = sum(r.status in (S.COMMENTED, S.NOT_COMMENTED, S.UNKNOWN) for r in results)
    assert received >= may_have_run  # nothing claims to have reached the server and did not


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    # At least two requests, so that closing can find some in flight and some not yet sent.
    kinds=st.integers(150, 400).flatmap(lambda n: st.lists(KIND, min_size=n, max_size=n)),
    close_at=st.floats(0.0, 1.0),
    flush_timeout=st.sampled_from([0.0, 0.01, 0.04, 5.0]),
    in_flight=st.integers(1, 3),
)
def test_closing_at_any_moment_leaves_every_result_honest(
    kinds: list[str], close_at: float, flush_timeout: float, in_flight: int
) -> None:
    asyncio.run(closing_scenario(kinds, close_at, flush_timeout, in_flight))
