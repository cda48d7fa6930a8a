"""The emulator's own rules, over real HTTP with raw aiohttp (not this package's client).

Timing is never asserted except with generous lower bounds; everything else is counted at the
server. Rate-window edges are tested with a fake clock, so they cannot depend on load.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from calltouch_async.testing import (
    COMMENT_PATH,
    AppliedComment,
    CalltouchEmulator,
    Fault,
    Ledger,
    RequestRecord,
)
from helpers import SITE_ID, TOKEN, EmulatorFactory, FakeClock

HEADERS = {"Access-Token": TOKEN, "SiteId": str(SITE_ID)}
WHEN = datetime(2020, 10, 1, 12, 0, 0)


@pytest.fixture
async def emu(emulator: EmulatorFactory) -> AsyncIterator[CalltouchEmulator]:
    """A started emulator with no data and the default rate limit."""
    async with emulator(0) as started:
        yield started


def call_lead(text: str, call_id: int = 1) -> dict[str, Any]:
    return {"matching": [{"type": "call", "callParams": {"callId": call_id}}], "addComment": text}


def body_of(*texts: str) -> dict[str, Any]:
    return {"comments": [call_lead(t) for t in texts]}


async def post(
    http: aiohttp.ClientSession,
    emu: CalltouchEmulator,
    body: Any,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """POST and return (status, decoded JSON or raw text when the body is not JSON)."""
    async with http.post(
        emu.comment_url, json=body, headers=HEADERS if headers is None else headers
    ) as resp:
        raw = await resp.read()
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, raw.decode(errors="replace")


def api_error(code: int, message: str) -> dict[str, Any]:
    return {
        "meta": [],
        "data": {
            "type": "apiError",
            "apiErrorData": {"errorCode": code, "errorMessage": message},
            "validationErrorData": None,
        },
    }


async def with_call(factory: EmulatorFactory, **kwargs: Any) -> CalltouchEmulator:
    emu = factory(0, **kwargs)
    await emu.start()
    emu.add_call(1, phones=["79001234567"], time=WHEN, reference_id="ref-1", sip_call_id="sip-1")
    return emu


# --------------------------------------------------------------------------- answers


async def test_answer_has_the_documented_shape(
    emu: CalltouchEmulator, http: aiohttp.ClientSession
) -> None:
    emu.add_call(12692441, phones=["79001234567"], time=WHEN, reference_id="test321")
    emu.add_request(7, phones=["79001234567"], time=WHEN, request_number="form-7")
    body = {
        "comments": [
            {"matching": [{"type": "call", "callParams": {"callId": 12692441}}], "addComment": "a"},
            {
                "matching": [{"type": "request", "requestParams": {"requestId": 7}}],
                "addComment": "b",
            },
            {"matching": [{"type": "call", "callParams": {"callId": 99}}], "addComment": "c"},
        ]
    }
    status, answer = await post(http, emu, body)
    assert status == 200
    assert answer == {
        "meta": [],
        "data": {
            "comments": [
                {
                    "callInfo": {
                        "callId": 12692441,
                        "callReferenceId": "test321",
                        "sipCallId": None,
                    },
                    "requestInfo": None,
                    "commented": True,
                    "error": None,
                },
                {
                    "callInfo": None,
                    "requestInfo": {"requestId": 7, "requestNumber": "form-7"},
                    "commented": True,
                    "error": None,
                },
                {
                    "callInfo": None,
                    "requestInfo": None,
                    "commented": False,
                    "error": "Lead not found",
                },
            ]
        },
    }
    assert emu.ledger.applied == [
        AppliedComment("call", 12692441, "a", 1),
        AppliedComment("request", 7, "b", 1),
    ]
    (record,) = emu.ledger.requests
    assert (record.number, record.status, record.outcome, record.lead_count) == (1, 200, "ok", 3)
    assert record.remote == "127.0.0.1" and record.fault is None


async def test_only_the_comment_path_answers(
    emu: CalltouchEmulator, http: aiohttp.ClientSession
) -> None:
    async with http.get(emu.comment_url) as resp:
        assert resp.status == 405
    async with http.post(emu.base_url + "/other", json={}) as resp:
        assert resp.status == 404
    assert emu.base_url.startswith("http://127.0.0.1:")
    assert not emu.base_url.endswith("/")
    assert emu.comment_url.endswith(COMMENT_PATH)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "Invalid JSON body"),
        (b"", "Invalid JSON body"),
        (b"[1, 2]", "Request body must be a JSON object"),
        (b'"comments"', "Request body must be a JSON object"),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_a_bad_request(
    emu: CalltouchEmulator, http: aiohttp.ClientSession, raw: bytes, message: str
) -> None:
    async with http.post(emu.comment_url, data=raw, headers=HEADERS) as resp:
        assert resp.status == 400
        assert await resp.json() == api_error(400, message)
    assert emu.ledger.count("bad_request") == 1
    assert emu.ledger.requests[0].lead_count == 0


async def test_a_body_over_the_size_limit_is_refused(
    emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    async with emulator(0, max_body_size=1000) as emu:
        status, answer = await post(http, emu, body_of("x" * 2000))
    assert status == 413
    assert answer["data"]["apiErrorData"]["errorCode"] == 413
    assert emu.ledger.applied == []


# --------------------------------------------------------------------------- rate window


async def test_eleven_simultaneous_requests_five_run_six_get_429(
    emu: CalltouchEmulator, http: aiohttp.ClientSession
) -> None:
    """The doc's example, with default settings."""
    emu.add_call(1, phones=["79001234567"], time=WHEN)
    results = await asyncio.gather(*(post(http, emu, body_of(f"lead {i}")) for i in range(11)))
    statuses = Counter(status for status, _ in results)
    arrivals = [r.arrived_at for r in emu.ledger.requests]
    if max(arrivals) - min(arrivals) >= 1.0:  # a machine too loaded to be "simultaneous"
        assert emu.ledger.max_in_window(1.0) <= 5
        pytest.skip("the 11 requests did not arrive within one second")
    assert statuses == {200: 5, 429: 6}
    rejected = [answer for status, answer in results if status == 429]
    assert all(a == api_error(429, "Too Many Requests") for a in rejected)
    assert emu.ledger.status_counts() == {200: 5, 429: 6}
    assert emu.ledger.count("ok") == 5 and emu.ledger.count("rate_limited") == 6
    assert len(emu.ledger.applied) == 5
    assert set(emu.ledger.text_counts().values()) == {1}
    assert emu.ledger.max_in_window(1.0) == 5
    assert emu.ledger.max_in_window(1.0, accepted_only=False) == 11
    assert [r.number for r in emu.ledger.requests] == list(range(1, 12))


async def test_window_is_sliding_and_half_open(
    emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    clock = FakeClock(1000.0)
    async with emulator(0, clock=clock) as emu:
        statuses = []
        # Binary fractions, so that "exactly one period later" is exact in floating point.
        for at in (0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.9375, 1, 1.0625, 1.125, 1.1875, 1.25):
            clock.now = 1000.0 + at
            statuses.append((await post(http, emu, body_of(f"t={at}")))[0])
    # Five in [0, 1); at 1 the arrival at 0 has left the window, at 1.125 the one at 0.125...
    assert statuses == [200, 200, 200, 200, 200, 429, 429, 200, 429, 200, 429, 200]
    assert emu.ledger.max_in_window(1.0) == 5


async def test_429s_do_not_count_against_the_window(
    emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    clock = FakeClock(1000.0)
    async with emulator(0, clock=clock, rate_limit=2) as emu:
        statuses = [(await post(http, emu, body_of("a")))[0] for _ in range(2)]
        clock.now += 0.9
        statuses += [(await post(http, emu, body_of("b")))[0] for _ in range(5)]
        clock.now += 0.1  # the first two left; the rejected ones never entered
        statuses += [(await post(http, emu, body_of("c")))[0] for _ in range(3)]
    assert statuses == [200, 200, 429, 429, 429, 429, 429, 200, 200, 429]


async def test_the_real_clock_window_refuses_the_third_in_a_period(
    emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    # A period far longer than any load can stretch three concurrent requests: 2 in, 1 out.
    async with emulator(0, rate_limit=2, rate_period=60.0) as emu:
        first = await asyncio.gather(*(post(http, emu, body_of(f"a{i}")) for i in range(3)))
    assert Counter(s for s, _ in first) == {200: 2, 429: 1}


async def test_window_slides_in_real_time(
    emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    async with emulator(0, rate_limit=1, rate_period=0.3) as emu:
        first_status, _ = await post(http, emu, body_of("first"))
        # Waiting on the clock is the point here: the period must pass in real time.
        await asyncio.sleep(0.35)
        later_status, _ = await post(http, emu, body_of("later"))
    assert (first_status, later_status) == (200, 200)  # the period passed: accepted again
    assert emu.ledger.max_in_window(0.3) <= 1


async def test_rate_limit_none_accepts_everything(
    emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    async with emulator(0, rate_limit=None) as emu:
        results = await asyncio.gather(*(post(http, emu, body_of(f"x{i}")) for i in range(40)))
    assert Counter(s for s, _ in results) == {200: 40}
    assert emu.ledger.max_in_window(1.0) == 40


async def test_hundreds_of_concurrent_connections(
    emulator: EmulatorFactory,
) -> None:
    async with (
        emulator(0, rate_limit=None) as emu,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
    ):
        emu.add_call(1, phones=["79001234567"], time=WHEN)
        results = await asyncio.gather(*(post(http, emu, body_of(f"c{i}")) for i in range(300)))
    assert Counter(s for s, _ in results) == {200: 300}
    assert len(emu.ledger.text_counts()) == 300


async def test_the_window_is_per_client_ip(emulator: EmulatorFactory) -> None:
    clock = FakeClock(1000.0)
    async with emulator(0, clock=clock, rate_limit=1) as emu:
        statuses = []
        for source in ("127.0.0.1", "127.0.0.2", "127.0.0.1", "127.0.0.2"):
            connector = aiohttp.TCPConnector(local_addr=(source, 0))
            try:
                async with aiohttp.ClientSession(connector=connector) as http:
                    statuses.append((await post(http, emu, body_of(source)))[0])
            except aiohttp.ClientConnectorError:  # pragma: no cover - no 127.0.0.2 here
                pytest.skip("cannot bind a second loopback address")
    assert statuses == [200, 200, 429, 429]
    assert [r.remote for r in emu.ledger.requests] == ["127.0.0.1", "127.0.0.2"] * 2


async def test_retry_after_is_sent_only_when_configured(
    emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    for retry_after, expected in ((None, None), (2, "2")):
        clock = FakeClock(1000.0)
        async with emulator(0,
            clock=clock, rate_limit=1, retry_after=retry_after
        ) as emu:
            await post(http, emu, body_of("a"))
            async with http.post(emu.comment_url, json=body_of("b"), headers=HEADERS) as resp:
                assert resp.status == 429
                assert resp.headers.get("Retry-After") == expected


async def test_inbound_jitter_spreads_arrivals_and_the_window_holds(
    emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    async with emulator(0, inbound_jitter=0.2, rate_limit=3, seed=7) as emu:
        results = await asyncio.gather(*(post(http, emu, body_of(f"j{i}")) for i in range(12)))
    records = emu.ledger.requests
    arrivals = [r.arrived_at for r in records]
    assert arrivals == sorted(arrivals)  # numbered in order of arrival after the jitter
    assert max(arrivals) - min(arrivals) > 0  # the jitter did spread them
    assert emu.ledger.max_in_window(1.0) <= 3
    assert Counter(s for s, _ in results) == emu.ledger.status_counts()
    # Every 429 was justified: 3 accepted arrivals in the second before it.
    accepted = [r.arrived_at for r in records if r.status == 200]
    for r in records:
        if r.status == 429:
            assert sum(1 for t in accepted if r.arrived_at - 1.0 < t <= r.arrived_at) >= 3


# --------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"SiteId": "12345"},
        {"Access-Token": "test-token"},
        {"Access-Token": "wrong", "SiteId": "12345"},
        {"Access-Token": "test-token", "SiteId": "54321"},
        {"Access-Token": "", "SiteId": ""},
    ],
    ids=["none", "no-token", "no-site", "wrong-token", "wrong-site", "empty"],
)
async def test_bad_credentials_get_401_and_execute_nothing(
    emulator: EmulatorFactory, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    emu = await with_call(emulator, access_token="s3cret-tok")
    async with http.post(emu.comment_url, json=body_of("a"), headers=headers) as resp:
        raw = await resp.read()
    assert resp.status == 401
    assert json.loads(raw) == api_error(401, "Invalid access token or site id")
    assert b"s3cret" not in raw
    assert emu.ledger.applied == []
    assert emu.ledger.count("auth_failed") == 1


async def test_right_credentials_with_a_numeric_site_id(
    emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    emu = await with_call(emulator, site_id=777, access_token="tok")
    status, _ = await post(http, emu, body_of("a"), {"Access-Token": "tok", "SiteId": "777"})
    assert status == 200


async def test_the_token_appears_in_no_repr(emulator: EmulatorFactory) -> None:
    async with emulator(0, access_token="s3cret-tok") as emu:
        assert "s3cret" not in repr(emu)
        assert "s3cret" not in repr(emu.ledger)
    assert "s3cret" not in repr(emu)


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("fault", "statuses", "applied"),
    [
        (Fault.RATE_LIMIT, {429}, False),
        (Fault.SERVER_ERROR, {500, 502, 503}, False),
        (Fault.AUTH_FAILURE, {401}, False),
        (Fault.UNMAPPED_VIOLATION, {400}, False),
        (Fault.MALFORMED_JSON, {200}, True),
        (Fault.SLOW, {200}, True),
    ],
)
async def test_each_fault_on_a_chosen_request(
    emulator: EmulatorFactory,
    http: aiohttp.ClientSession,
    fault: Fault,
    statuses: set[int],
    applied: bool,
) -> None:
    emu = await with_call(emulator, rate_limit=None)
    emu.inject(fault, on_requests=[2], delay=0.05)
    results = [await post(http, emu, body_of(f"lead {i}")) for i in range(1, 4)]
    assert results[0][0] == 200 and results[2][0] == 200
    assert results[1][0] in statuses
    record = emu.ledger.requests[1]
    assert (record.fault, record.outcome) == (fault, f"fault:{fault.value}")
    assert emu.ledger.count(f"fault:{fault.value}") == 1
    assert emu.ledger.comments_for("call", 1) == (
        ["lead 1", "lead 2", "lead 3"] if applied else ["lead 1", "lead 3"]
    )


async def test_server_error_bodies_are_json_or_html(
    emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    emu = await with_call(emulator, rate_limit=None, seed=3)
    emu.inject(Fault.SERVER_ERROR, probability=1.0)
    seen = {}
    for i in range(30):
        status, answer = await post(http, emu, body_of(f"e{i}"))
        seen[status] = answer
    assert set(seen) == {500, 502, 503}
    assert seen[500] == api_error(500, "Internal Server Error")
    assert isinstance(seen[502], str) and "502" in seen[502]
    assert emu.ledger.applied == []


async def test_injected_rate_limit_body_and_no_window_cost(
    emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    clock = FakeClock(1000.0)
    emu = await with_call(emulator, clock=clock, rate_limit=2)
    emu.inject(Fault.RATE_LIMIT, on_requests=[1])
    results = [await post(http, emu, body_of(f"r{i}")) for i in range(4)]
    assert [s for s, _ in results] == [429, 200, 200, 429]
    assert results[0][1] == api_error(429, "Too Many Requests")
    assert emu.ledger.count("fault:rate_limit") == 1 and emu.ledger.count("rate_limited") == 1


async def test_unmapped_violation_names_no_lead(
    emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    emu = await with_call(emulator)
    emu.inject(Fault.UNMAPPED_VIOLATION, on_requests=[1])
    status, answer = await post(http, emu, body_of("a", "b"))
    assert status == 400
    assert answer["data"]["type"] == "validationError"
    assert answer["data"]["apiErrorData"] is None
    violations = answer["data"]["validationErrorData"]["violations"]
    assert {v["fieldPath"] for v in violations} == {"comments", ""}
    assert {v["message"] for v in violations} == {"Invalid request"}
    assert emu.ledger.applied == []


async def test_apply_then_drop_applies_and_closes_without_answering(
    emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    emu = await with_call(emulator)
    emu.inject(Fault.APPLY_THEN_DROP, on_requests=[1])
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        await post(http, emu, body_of("dropped"))
    status, _ = await post(http, emu, body_of("after"))
    assert status == 200
    assert emu.ledger.comments_for("call", 1) == ["dropped", "after"]
    dropped = emu.ledger.requests[0]
    assert (dropped.status, dropped.outcome) == (0, "fault:apply_then_drop")
    assert emu.ledger.status_counts() == {0: 1, 200: 1}


async def test_malformed_json_is_a_truncated_json_answer(
    emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    emu = await with_call(emulator)
    emu.inject(Fault.MALFORMED_JSON, on_requests=[1])
    async with http.post(emu.comment_url, json=body_of("m"), headers=HEADERS) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        text = await resp.text()
    assert text.startswith('{"meta":[]')
    with pytest.raises(ValueError):
        json.loads(text)
    assert emu.ledger.comments_for("call", 1) == ["m"]


async def test_slow_answers_late_and_applies_even_if_the_client_gives_up(
    emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    emu = await with_call(emulator)
    emu.inject(Fault.SLOW, on_requests=[1, 2], delay=0.4)
    started = time.monotonic()
    status, _ = await post(http, emu, body_of("waited"))
    assert status == 200 and time.monotonic() - started >= 0.35
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(
            emu.comment_url,
            json=body_of("abandoned"),
            headers=HEADERS,
            timeout=aiohttp.ClientTimeout(total=0.1),
        ) as resp:
            await resp.read()
    assert emu.ledger.comments_for("call", 1) == ["waited", "abandoned"]


EXECUTING_FAULTS = {Fault.APPLY_THEN_DROP, Fault.SLOW, Fault.MALFORMED_JSON}


@pytest.mark.parametrize("fault", list(Fault))
async def test_probabilistic_faults_are_reproducible_with_a_seed(
    emulator: EmulatorFactory, http: aiohttp.ClientSession, fault: Fault
) -> None:
    async def faulted_numbers(seed: int) -> list[int]:
        emu = await with_call(emulator, rate_limit=None, seed=seed)
        emu.inject(fault, probability=0.3, delay=0.01)
        for i in range(20):
            try:
                await post(http, emu, body_of(f"p{i}"))
            except aiohttp.ClientError:
                assert fault is Fault.APPLY_THEN_DROP
        await emu.close()
        numbers = [r.number for r in emu.ledger.requests if r.fault is fault]
        assert emu.ledger.count(f"fault:{fault.value}") == len(numbers)
        applied = {int(a.text[1:]) + 1 for a in emu.ledger.applied}
        expected = set(range(1, 21))
        assert applied == (expected if fault in EXECUTING_FAULTS else expected - set(numbers))
        return numbers

    first, again, other = (
        await faulted_numbers(1),
        await faulted_numbers(1),
        await faulted_numbers(2),
    )
    assert first == again
    assert 0 < len(first) < 20
    assert first != other


async def test_times_limits_a_fault_and_the_first_injection_wins(
    emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    emu = await with_call(emulator, rate_limit=None)
    emu.inject(Fault.AUTH_FAILURE, on_requests=[2], times=1)
    emu.inject(Fault.SERVER_ERROR, probability=1.0, times=2)
    statuses = [(await post(http, emu, body_of(f"t{i}")))[0] for i in range(5)]
    assert statuses[1] == 401
    assert [s >= 500 for s in statuses] == [True, False, True, False, False]
    assert [r.fault for r in emu.ledger.requests] == [
        Fault.SERVER_ERROR,
        Fault.AUTH_FAILURE,
        Fault.SERVER_ERROR,
        None,
        None,
    ]


async def test_clear_faults_and_reset(
    emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    clock = FakeClock(1000.0)
    emu = await with_call(emulator, clock=clock, rate_limit=1)
    emu.inject(Fault.SERVER_ERROR, on_requests=[2])
    emu.clear_faults()
    assert (await post(http, emu, body_of("a")))[0] == 200
    assert (await post(http, emu, body_of("b")))[0] == 429  # window, not the cleared fault
    emu.inject(Fault.AUTH_FAILURE, on_requests=[1])
    emu.reset()
    assert emu.ledger.requests == [] and emu.ledger.applied == []
    assert 1 in emu.calls  # data survives
    assert (await post(http, emu, body_of("c")))[0] == 200  # window and faults cleared
    assert emu.ledger.requests[0].number == 1


def test_inject_rejects_nonsense() -> None:
    emu = CalltouchEmulator()
    with pytest.raises(ValueError):
        emu.inject(Fault.SLOW, on_requests=[0])
    with pytest.raises(ValueError):
        emu.inject(Fault.SLOW, probability=1.5)
    with pytest.raises(ValueError):
        emu.inject(Fault.SLOW, delay=-1)
    with pytest.raises(ValueError):
        emu.inject("no-such-fault")  # type: ignore[arg-type]
    emu.inject("slow")  # type: ignore[arg-type]  # a value is as good as the member


# --------------------------------------------------------------------------- latency


async def test_latency_fixed_and_range(
    emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    for latency in (0.2, (0.2, 0.3)):
        emu = await with_call(emulator, latency=latency)
        started = time.monotonic()
        status, _ = await post(http, emu, body_of("l"))
        assert status == 200 and time.monotonic() - started >= 0.19
        await emu.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate_limit": 0},
        {"rate_period": 0},
        {"latency": -1},
        {"latency": (0.5, 0.1)},
        {"inbound_jitter": -0.1},
    ],
)
def test_settings_are_checked(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        CalltouchEmulator(**kwargs)


# --------------------------------------------------------------------------- lifecycle


async def test_lifecycle() -> None:
    emu = CalltouchEmulator()
    with pytest.raises(RuntimeError):
        _ = emu.base_url
    assert "not started" in repr(emu)
    await emu.start()
    try:
        assert emu.running and emu.base_url in repr(emu)
        with pytest.raises(RuntimeError):
            await emu.start()
    finally:
        await emu.close()
    await emu.close()  # idempotent
    assert not emu.running
    async with emu:  # restartable
        assert emu.running


# --------------------------------------------------------------------------- ledger


def record(number: int, at: float, status: int, outcome: str = "ok") -> RequestRecord:
    return RequestRecord(
        number=number, arrived_at=at, remote="127.0.0.1", status=status, outcome=outcome
    )


def test_ledger_max_in_window_is_half_open() -> None:
    ledger = Ledger()
    times = [0.0, 0.2, 0.5, 0.99, 1.0, 1.0, 1.1, 3.0]
    ledger.requests.extend(record(i + 1, t, 200) for i, t in enumerate(times))
    assert ledger.max_in_window(1.0) == 6  # [0.2, 1.2): 0.2, 0.5, 0.99, 1.0, 1.0, 1.1
    assert ledger.max_in_window(0.5) == 4  # [0.99, 1.49): 0.99, 1.0, 1.0, 1.1
    assert ledger.max_in_window(10.0) == 8
    assert ledger.max_in_window(0.001) == 2  # the two at exactly 1.0
    assert Ledger().max_in_window() == 0


def test_ledger_max_in_window_accepted_only() -> None:
    ledger = Ledger()
    ledger.requests.extend(
        [record(1, 0.0, 200), record(2, 0.1, 429, "rate_limited"), record(3, 0.2, 0, "fault:x")]
    )
    assert ledger.max_in_window(1.0) == 2  # a dropped request still ran
    assert ledger.max_in_window(1.0, accepted_only=False) == 3


def test_ledger_helpers() -> None:
    ledger = Ledger()
    first = ledger.arrive(5.0, "127.0.0.1")
    first.status, first.outcome = 200, "ok"
    second = ledger.arrive(6.0, "127.0.0.1")
    second.status, second.outcome = 429, "rate_limited"
    ledger.apply("call", 1, "one", 1)
    ledger.apply("request", 1, "two", 1)
    ledger.apply("call", 1, "one", 1)
    assert [r.number for r in ledger.requests] == [1, 2]
    assert ledger.comments_for("call", 1) == ["one", "one"]
    assert ledger.comments_for("request", 1) == ["two"]
    assert ledger.comments_for("call", 2) == []
    assert ledger.text_counts() == Counter({"one": 2, "two": 1})
    assert ledger.count("ok") == 1 and ledger.count("rate_limited") == 1 and ledger.count("x") == 0
    assert ledger.status_counts() == Counter({200: 1, 429: 1})
    assert ledger.applied_total == 3
    ledger.clear()
    assert (ledger.requests, ledger.applied, ledger.applied_total) == ([], [], 0)


async def test_record_comments_off_keeps_only_the_total(
    emulator: EmulatorFactory, http: aiohttp.ClientSession
) -> None:
    emu = await with_call(emulator, record_comments=False)
    await post(http, emu, body_of("a", "b"))
    assert emu.ledger.applied == [] and emu.ledger.applied_total == 2


# --------------------------------------------------------------------------- generate


def test_generate_is_deterministic_and_plausible() -> None:
    a, b, c = CalltouchEmulator(), CalltouchEmulator(), CalltouchEmulator()
    a.generate(200, 100, seed=5)
    b.generate(200, 100, seed=5)
    c.generate(200, 100, seed=6)
    assert a.calls == b.calls and a.requests == b.requests
    assert a.calls != c.calls
    assert list(a.calls) == list(range(1, 201)) and list(a.requests) == list(range(1, 101))
    phones = [p for call in a.calls.values() for p in call.phones]
    assert all(len(p) == 11 and p.startswith("7") and p.isdigit() for p in phones)
    assert len(set(phones)) < len(phones)  # some contacts come back
    assert any(call.tags for call in a.calls.values())
    assert {call.unique for call in a.calls.values()} == {True, False}
    assert {call.unique_lead for call in a.calls.values()} == {True, False}
    assert {r.unique for r in a.requests.values()} == {True, False}
    assert all(r.emails and "@" in r.emails[0] for r in a.requests.values())
    times = [call.time for call in a.calls.values()]
    assert max(times) - min(times) > timedelta(days=7)


def test_add_rejects_aware_times_and_lone_strings() -> None:
    emu = CalltouchEmulator()
    with pytest.raises(ValueError):
        emu.add_call(1, time=datetime(2020, 1, 1, tzinfo=UTC))
    with pytest.raises(TypeError):
        emu.add_call(1, phones="79001234567", time=WHEN)
    call = emu.add_call(2, phones=["8 (900) 123-45-67"], time=WHEN, tags=["a"])
    assert call.phones == ("79001234567",) and call.tags == frozenset({"a"})
    request = emu.add_request(3, emails=["Name@Example.COM"], time=WHEN)
    assert request.emails == ("name@example.com",)


# --------------------------------------------------------------------------- plugin and CLI


async def test_the_factory_closes_what_the_test_left_running(
    calltouch_emulator_factory: EmulatorFactory,
) -> None:
    # The plugin's own factory (the suite's ``emulator`` fixture is a different one).
    emu = calltouch_emulator_factory(rate_limit=None)
    await emu.start()
    assert emu.running  # the fixture's teardown closes it; pytest would flag a leak otherwise


async def test_the_plugin_fixture_is_a_running_default_emulator(
    calltouch_emulator: CalltouchEmulator, http: aiohttp.ClientSession
) -> None:
    calltouch_emulator.add_call(1, phones=["79001234567"], time=WHEN)
    default_headers = {"Access-Token": "test-token", "SiteId": "12345"}  # its documented defaults
    status, _ = await post(http, calltouch_emulator, body_of("hi"), default_headers)
    assert status == 200
    assert calltouch_emulator.ledger.comments_for("call", 1) == ["hi"]


def _plugin_args() -> list[str]:
    installed = any(ep.name == "calltouch_emulator" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "calltouch_async.testing.pytest_plugin"]


def test_plugin_without_pytest_asyncio_fails_clearly(tmp_path: Path) -> None:
    """Where pytest-asyncio is missing, the plugin still loads and says what is needed."""
    (tmp_path / "test_user.py").write_text(
        "def test_uses_it(calltouch_emulator):\n    pass\n", encoding="utf-8"
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    # A package of that name that fails to import, first on the path: as if not installed.
    shadow = tmp_path / "shadow" / "pytest_asyncio"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed')\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(shadow.parent)}
    args = ["-p", "no:asyncio", "-p", "no:cacheprovider", *_plugin_args(), str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "need pytest-asyncio" in done.stdout


async def test_cli_serves_until_interrupted(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "calltouch_async.testing",
        "--port",
        "0",
        "--calls",
        "5",
        "--token",
        "cli-s3cret",
        "--rate-limit",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        base_url = first.rsplit(" ", 1)[-1].strip()
        assert base_url.startswith("http://127.0.0.1:")
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                base_url + COMMENT_PATH,
                json=body_of("via cli"),
                headers={"Access-Token": "cli-s3cret", "SiteId": "12345"},
            ) as resp,
        ):
            assert resp.status == 200
            assert (await resp.json())["data"]["comments"][0]["commented"] is True
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert b"cli-s3cret" not in first.encode() + out + err


def test_standalone_flags_set_a_latency_range_and_jitter() -> None:
    from calltouch_async.testing.__main__ import build_parser, emulator_from_args

    args = build_parser("emu").parse_args(
        ["--latency", "0.05", "--latency-max", "0.3", "--jitter", "0.03", "--rate-limit", "0"]
    )
    emu = emulator_from_args(args)
    assert emu._latency == (0.05, 0.3)
    assert emu._inbound_jitter == 0.03
    assert emu._rate_limit is None
