"""Matching: priority order, each matching type, tags and/or, contacts, depth, *TypeToMatch."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest

from calltouch_async.testing import CalltouchEmulator
from helpers import SITE_ID, TOKEN, EmulatorFactory

HEADERS = {"Access-Token": TOKEN, "SiteId": str(SITE_ID)}
NOON = datetime(2020, 10, 1, 12, 0, 0)
PHONE = "79001234567"
_texts = itertools.count()


def at(minutes: float) -> datetime:
    return NOON + timedelta(minutes=minutes)


def stamp(moment: datetime) -> str:
    return moment.strftime("%d-%m-%Y %H:%M:%S")


def call(call_id: int, tags: list[str] | None = None, logic: str | None = None) -> dict[str, Any]:
    return {"type": "call", "callParams": _with_tags({"callId": call_id}, tags, logic)}


def request(
    request_id: int, tags: list[str] | None = None, logic: str | None = None
) -> dict[str, Any]:
    params = _with_tags({"requestId": request_id}, tags, logic)
    return {"type": "request", "requestParams": params}


def call_contact(
    phones: list[str] | None = None,
    *,
    md5: list[str] | None = None,
    date: datetime = NOON,
    depth: int = 120,
    to_match: str = "nearest",
    tags: list[str] | None = None,
    logic: str | None = None,
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "date": stamp(date),
        "searchDepth": depth,
        "callTypeToMatch": to_match,
    }
    if phones is not None:
        params["phones"] = phones
    if md5 is not None:
        params["md5Phones"] = md5
    return {"type": "callContact", "callContactParams": _with_tags(params, tags, logic)}


def request_contact(
    phones: list[str] | None = None,
    *,
    emails: list[str] | None = None,
    md5: list[str] | None = None,
    date: datetime = NOON,
    depth: int = 120,
    to_match: str = "nearest",
    tags: list[str] | None = None,
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "date": stamp(date),
        "searchDepth": depth,
        "requestTypeToMatch": to_match,
    }
    for key, value in (("phones", phones), ("emails", emails), ("md5Phones", md5)):
        if value is not None:
            params[key] = value
    return {"type": "requestContact", "requestContactParams": _with_tags(params, tags, None)}


def _with_tags(params: dict[str, Any], tags: list[str] | None, logic: str | None) -> dict[str, Any]:
    if tags is not None:
        params["tags"] = tags
    if logic is not None:
        params["tagsLogic"] = logic
    return params


@pytest.fixture
async def emu(emulator: EmulatorFactory) -> AsyncIterator[CalltouchEmulator]:
    async with emulator(0, rate_limit=None) as started:
        yield started


async def comment(
    http: aiohttp.ClientSession, emu: CalltouchEmulator, *matching: dict[str, Any]
) -> Any:
    """Send one lead with a fresh text; return its result entry."""
    lead = {"matching": list(matching), "addComment": f"comment {next(_texts)}"}
    async with http.post(emu.comment_url, json={"comments": [lead]}, headers=HEADERS) as resp:
        assert resp.status == 200, await resp.text()
        (result,) = (await resp.json())["data"]["comments"]
    return result


def found_call(result: Any) -> int | None:
    return None if result["callInfo"] is None else int(result["callInfo"]["callId"])


def found_request(result: Any) -> int | None:
    return None if result["requestInfo"] is None else int(result["requestInfo"]["requestId"])


# --------------------------------------------------------------------------- priority


async def test_the_first_entry_that_finds_wins_and_the_rest_are_ignored(
    emu: CalltouchEmulator, http: aiohttp.ClientSession
) -> None:
    emu.add_call(1, phones=[PHONE], time=NOON)
    emu.add_request(5, phones=[PHONE], time=NOON, request_number="f5")
    result = await comment(http, emu, call(99), request(5), call(1))
    assert result == {
        "callInfo": None,
        "requestInfo": {"requestId": 5, "requestNumber": "f5"},
        "commented": True,
        "error": None,
    }
    result = await comment(http, emu, call(1), request(5))
    assert (found_call(result), found_request(result)) == (1, None)
    # Each went to exactly one lead: the later entries were not applied as well.
    assert [(a.kind, a.lead_id) for a in emu.ledger.applied] == [("request", 5), ("call", 1)]


async def test_an_entry_whose_filter_fails_falls_through(
    emu: CalltouchEmulator, http: aiohttp.ClientSession
) -> None:
    emu.add_call(1, phones=[PHONE], time=NOON, tags=["a"])
    emu.add_call(2, phones=[PHONE], time=at(5))
    result = await comment(
        http,
        emu,
        call(1, tags=["zzz"]),
        call_contact(["79990000000"]),
        call_contact([PHONE], date=at(600), depth=10),
        call_contact([PHONE], date=at(4)),
    )
    assert found_call(result) == 2


async def test_not_found_by_any_entry(emu: CalltouchEmulator, http: aiohttp.ClientSession) -> None:
    emu.add_call(1, phones=[PHONE], time=NOON)
    result = await comment(http, emu, call(2), request(1), call_contact(["79990000000"]))
    assert result == {
        "callInfo": None,
        "requestInfo": None,
        "commented": False,
        "error": "Lead not found",
    }
    assert emu.ledger.applied == []
    assert emu.ledger.requests[0].outcome == "ok"


async def test_the_same_lead_twice_in_one_request_is_commented_twice(
    emu: CalltouchEmulator, http: aiohttp.ClientSession
) -> None:
    emu.add_call(1, phones=[PHONE], time=NOON)
    leads = [{"matching": [call(1)], "addComment": text} for text in ("x", "y")]
    async with http.post(emu.comment_url, json={"comments": leads}, headers=HEADERS) as resp:
        assert resp.status == 200
    assert emu.ledger.comments_for("call", 1) == ["x", "y"]
    assert [a.request_number for a in emu.ledger.applied] == [1, 1]


# --------------------------------------------------------------------------- by id, tags


@pytest.mark.parametrize(
    ("tags", "logic", "found"),
    [
        (None, None, True),
        ([], None, True),
        (["a"], None, True),
        (["a", "b"], None, True),
        (["a", "b"], "and", True),
        (["a", "c"], "and", False),
        (["a", "c"], None, False),
        (["a", "c"], "or", True),
        (["c", "d"], "or", False),
        (["a", "c"], "unknown", False),  # unknown logic reads as "and"
        (["A"], None, False),  # tags are case-sensitive
    ],
)
async def test_tags_and_tags_logic(
    emu: CalltouchEmulator,
    http: aiohttp.ClientSession,
    tags: list[str] | None,
    logic: str | None,
    found: bool,
) -> None:
    emu.add_call(1, phones=[PHONE], time=NOON, tags=["a", "b"])
    emu.add_request(1, phones=[PHONE], time=NOON, tags=["a", "b"])
    by_call = await comment(http, emu, call(1, tags, logic))
    by_request = await comment(http, emu, request(1, tags, logic))
    assert by_call["commented"] is found and by_request["commented"] is found
    contact = await comment(http, emu, call_contact([PHONE], tags=tags, logic=logic))
    assert contact["commented"] is found


async def test_call_info_carries_reference_and_sip_ids(
    emu: CalltouchEmulator, http: aiohttp.ClientSession
) -> None:
    emu.add_call(7, phones=[PHONE], time=NOON, reference_id="imp-7", sip_call_id="sip-7")
    result = await comment(http, emu, call(7))
    assert result["callInfo"] == {"callId": 7, "callReferenceId": "imp-7", "sipCallId": "sip-7"}


# --------------------------------------------------------------------------- contacts


@pytest.mark.parametrize(
    "written",
    ["79001234567", "+7 (900) 123-45-67", "89001234567", "8 900 123 45 67", "7-900-123-45-67"],
)
async def test_phones_match_in_any_written_form(
    emu: CalltouchEmulator, http: aiohttp.ClientSession, written: str
) -> None:
    emu.add_call(1, phones=["8 (900) 123-45-67"], time=NOON)
    emu.add_request(2, phones=["+79001234567"], time=NOON)
    assert found_call(await comment(http, emu, call_contact([written]))) == 1
    assert found_request(await comment(http, emu, request_contact([written]))) == 2


async def test_a_different_number_does_not_match(
    emu: CalltouchEmulator, http: aiohttp.ClientSession
) -> None:
    emu.add_call(1, phones=[PHONE], time=NOON)
    assert (await comment(http, emu, call_contact(["79001234568"])))["commented"] is False
    assert (await comment(http, emu, call_contact(["9001234567"])))["commented"] is False


async def test_md5_phones_hash_the_digits_only_form(
    emu: CalltouchEmulator, http: aiohttp.ClientSession
) -> None:
    emu.add_call(1, phones=["+7 900 123-45-67"], time=NOON)
    emu.add_request(2, phones=[PHONE], time=NOON)
    digest = hashlib.md5(PHONE.encode()).hexdigest()
    assert found_call(await comment(http, emu, call_contact(md5=[digest]))) == 1
    assert found_call(await comment(http, emu, call_contact(md5=[digest.upper()]))) == 1
    assert found_request(await comment(http, emu, request_contact(md5=[digest]))) == 2
    other = hashlib.md5(b"+7 900 123-45-67").hexdigest()
    assert (await comment(http, emu, call_contact(md5=[other])))["commented"] is False


async def test_emails_match_case_insensitively_and_only_requests(
    emu: CalltouchEmulator, http: aiohttp.ClientSession
) -> None:
    emu.add_request(3, emails=["Name@Server.com"], time=NOON)
    result = await comment(http, emu, request_contact(emails=["name@SERVER.COM"]))
    assert found_request(result) == 3
    result = await comment(http, emu, request_contact(emails=["other@server.com"]))
    assert result["commented"] is False


async def test_any_of_several_contacts_may_match(
    emu: CalltouchEmulator, http: aiohttp.ClientSession
) -> None:
    emu.add_request(3, phones=["79005550000"], emails=["a@b.c"], time=NOON)
    result = await comment(http, emu, request_contact(["79990000000"], emails=["a@b.c"]))
    assert found_request(result) == 3


@pytest.mark.parametrize(
    ("date", "depth", "found"),
    [
        (at(120), 120, True),  # exactly searchDepth minutes after: inside
        (at(-120), 120, True),  # and before: the depth looks both ways
        (at(120), 119, False),
        (at(-120.5), 120, False),
        (NOON, 1, True),
    ],
)
async def test_search_depth_boundary(
    emu: CalltouchEmulator,
    http: aiohttp.ClientSession,
    date: datetime,
    depth: int,
    found: bool,
) -> None:
    emu.add_call(1, phones=[PHONE], time=NOON)
    emu.add_request(1, phones=[PHONE], time=NOON)
    by_call = await comment(http, emu, call_contact([PHONE], date=date, depth=depth))
    by_request = await comment(http, emu, request_contact([PHONE], date=date, depth=depth))
    assert by_call["commented"] is found and by_request["commented"] is found


# --------------------------------------------------------------------------- *TypeToMatch


@pytest.fixture
def calls(emu: CalltouchEmulator) -> CalltouchEmulator:
    """Calls from one phone. Closest to noon: 4 and 5 (10 min, tie), then 3 (uniq), then 1."""
    emu.add_call(1, phones=[PHONE], time=at(-100), unique=True, unique_lead=True)
    emu.add_call(3, phones=[PHONE], time=at(-40), unique=True)
    emu.add_call(5, phones=[PHONE], time=at(-10), tags=["t"])
    emu.add_call(4, phones=[PHONE], time=at(10))
    emu.add_call(6, phones=["79990000000"], time=NOON, unique=True, unique_lead=True)
    return emu


@pytest.mark.parametrize(
    ("to_match", "expected"),
    [
        ("nearest", 4),  # 4 and 5 are both 10 minutes away: the smaller id
        ("nearestUniq", 3),
        ("nearestUniqLead", 1),
        ("somethingNew", 4),  # unpublished values read as nearest
    ],
)
async def test_call_type_to_match(
    calls: CalltouchEmulator, http: aiohttp.ClientSession, to_match: str, expected: int
) -> None:
    result = await comment(http, calls, call_contact([PHONE], to_match=to_match))
    assert found_call(result) == expected
    assert calls.ledger.comments_for("call", expected) == [calls.ledger.applied[0].text]


async def test_type_to_match_with_tags_and_depth(
    calls: CalltouchEmulator, http: aiohttp.ClientSession
) -> None:
    assert found_call(await comment(http, calls, call_contact([PHONE], tags=["t"]))) == 5
    # nearestUniqLead's only candidate (call 1, 100 min away) is outside a 60-minute depth.
    result = await comment(http, calls, call_contact([PHONE], to_match="nearestUniqLead", depth=60))
    assert result["commented"] is False


@pytest.mark.parametrize(
    ("to_match", "expected"), [("nearest", 2), ("nearestUniq", 1), ("other", 2)]
)
async def test_request_type_to_match(
    emu: CalltouchEmulator, http: aiohttp.ClientSession, to_match: str, expected: int
) -> None:
    emu.add_request(1, phones=[PHONE], time=at(-30), unique=True)
    emu.add_request(2, phones=[PHONE], time=at(5))
    emu.add_request(3, phones=[PHONE], time=at(-5))  # as close as 2: the smaller id wins
    result = await comment(http, emu, request_contact([PHONE], to_match=to_match))
    assert found_request(result) == expected


async def test_contact_matching_over_generated_data(
    emu: CalltouchEmulator, http: aiohttp.ClientSession
) -> None:
    emu.generate(calls=300, requests=100, seed=11)
    target = emu.calls[123]
    result = await comment(http, emu, call_contact([target.phones[0]], date=target.time, depth=1))
    found = emu.calls[found_call(result) or 0]
    assert target.phones[0] in found.phones and found.time == target.time
    request_target = emu.requests[42]
    result = await comment(
        http,
        emu,
        request_contact(emails=[request_target.emails[0]], date=request_target.time, depth=1),
    )
    assert emu.requests[found_request(result) or 0].time == request_target.time


async def test_replacing_a_lead_updates_contact_matching(
    emu: CalltouchEmulator, http: aiohttp.ClientSession
) -> None:
    emu.add_call(1, phones=[PHONE], time=NOON)
    emu.add_call(1, phones=["79990000000"], time=NOON)
    assert (await comment(http, emu, call_contact([PHONE])))["commented"] is False
    assert found_call(await comment(http, emu, call_contact(["79990000000"]))) == 1
