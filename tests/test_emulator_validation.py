"""The emulator's body rules: one violation per broken rule, with its fieldPath, and nothing run.

Each case breaks one thing in lead 1 of an otherwise valid two-lead request; lead 0 alone would
be commented, so "nothing applied" shows that a violation stops the whole request.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from calltouch_async.testing import CalltouchEmulator
from helpers import SITE_ID, TOKEN, EmulatorFactory

HEADERS = {"Access-Token": TOKEN, "SiteId": str(SITE_ID)}
MD5 = hashlib.md5(b"79001234567").hexdigest()

MISSING = "This field is missing."
NOT_BLANK = "This value should not be blank."
ARRAY = "This value should be of type array."
OBJECT = "This value should be of type object."
STRING = "This value should be of type string."
INT = "This value should be of type int."
POSITIVE = "This value should be positive."
CHOICE = "The value you selected is not a valid choice."
TOO_FEW = "This collection should contain 1 element or more."
TOO_LONG = "This value is too long. It should have 1000 characters or less."
DATETIME = "This value is not a valid datetime."

Path = tuple[str | int, ...]
Mutation = Callable[[dict[str, Any]], None]

L1 = ("comments", 1)
M = (*L1, "matching")
REQ = (*M, 0, "requestParams")
CALL = (*M, 1, "callParams")
RC = (*M, 2, "requestContactParams")
CC = (*M, 3, "callContactParams")


def valid_body() -> dict[str, Any]:
    contact = {"date": "01-10-2020 12:00:00", "searchDepth": 120, "tags": ["t"]}
    lead = {
        "matching": [
            {
                "type": "request",
                "requestParams": {"requestId": 1, "tags": ["t"], "tagsLogic": "and"},
            },
            {"type": "call", "callParams": {"callId": 1, "tags": ["t"], "tagsLogic": "or"}},
            {
                "type": "requestContact",
                "requestContactParams": {
                    **contact,
                    "emails": ["name@server.com"],
                    "phones": ["79157771122", "+7 (915) 888-11-22"],
                    "md5Phones": [MD5],
                    "tagsLogic": "and",
                    "requestTypeToMatch": "nearestUniq",
                },
            },
            {
                "type": "callContact",
                "callContactParams": {
                    **contact,
                    "phones": ["84953338877"],
                    "md5Phones": [MD5.upper()],
                    "callTypeToMatch": "nearestUniqLead",
                },
            },
        ],
        "addComment": "Комментарий к лиду",
    }
    first = {"matching": [{"type": "call", "callParams": {"callId": 1}}], "addComment": "lead 0"}
    return {"comments": [first, lead]}


def node(body: dict[str, Any], path: Path) -> Any:
    for key in path:
        body = body[key]  # type: ignore[index]
    return body


def setting(path: Path, value: Any) -> Mutation:
    def mutate(body: dict[str, Any]) -> None:
        node(body, path[:-1])[path[-1]] = value

    return mutate


def deleting(*paths: Path) -> Mutation:
    def mutate(body: dict[str, Any]) -> None:
        for path in paths:
            del node(body, path[:-1])[path[-1]]

    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(body: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(body)

    return mutate


def fp(path: Path) -> str:
    """The fieldPath Calltouch's style gives a path: comments[1].matching[0].type."""
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out


CASES: list[tuple[str, Mutation, Path, str]] = [
    # comments
    ("comments-missing", deleting(("comments",)), ("comments",), MISSING),
    ("comments-not-list", setting(("comments",), {"a": 1}), ("comments",), ARRAY),
    ("comments-empty", setting(("comments",), []), ("comments",), TOO_FEW),
    ("lead-not-object", setting(L1, "text"), L1, OBJECT),
    # addComment
    ("comment-missing", deleting((*L1, "addComment")), (*L1, "addComment"), NOT_BLANK),
    ("comment-null", setting((*L1, "addComment"), None), (*L1, "addComment"), NOT_BLANK),
    ("comment-empty", setting((*L1, "addComment"), ""), (*L1, "addComment"), NOT_BLANK),
    ("comment-spaces", setting((*L1, "addComment"), " \t\n"), (*L1, "addComment"), NOT_BLANK),
    ("comment-number", setting((*L1, "addComment"), 5), (*L1, "addComment"), STRING),
    ("comment-1001", setting((*L1, "addComment"), "я" * 1001), (*L1, "addComment"), TOO_LONG),
    # UTF-16 code units [inferred]: 501 emoji are 1002 units.
    ("comment-501-emoji", setting((*L1, "addComment"), "😀" * 501), (*L1, "addComment"), TOO_LONG),
    # matching
    ("matching-missing", deleting(M), M, MISSING),
    ("matching-object", setting(M, {"type": "call"}), M, ARRAY),
    ("matching-empty", setting(M, []), M, TOO_FEW),
    (
        "matching-21",
        setting(M, [{"type": "call", "callParams": {"callId": 1}}] * 21),
        M,
        "This collection should contain 20 elements or less.",
    ),
    ("entry-not-object", setting((*M, 0), ["request"]), (*M, 0), OBJECT),
    ("type-missing", deleting((*M, 0, "type")), (*M, 0, "type"), MISSING),
    ("type-unknown", setting((*M, 0, "type"), "leadContact"), (*M, 0, "type"), CHOICE),
    ("type-number", setting((*M, 0, "type"), 1), (*M, 0, "type"), CHOICE),
    ("params-missing", deleting(REQ), REQ, MISSING),
    ("params-wrong-key", deleting(CALL), CALL, MISSING),
    ("params-not-object", setting(CC, [1]), CC, OBJECT),
    # ids
    ("requestId-missing", deleting((*REQ, "requestId")), (*REQ, "requestId"), MISSING),
    ("requestId-string", setting((*REQ, "requestId"), "1"), (*REQ, "requestId"), INT),
    ("requestId-float", setting((*REQ, "requestId"), 1.5), (*REQ, "requestId"), INT),
    ("requestId-zero", setting((*REQ, "requestId"), 0), (*REQ, "requestId"), POSITIVE),
    ("callId-missing", deleting((*CALL, "callId")), (*CALL, "callId"), MISSING),
    ("callId-bool", setting((*CALL, "callId"), True), (*CALL, "callId"), INT),
    ("callId-over-int64", setting((*CALL, "callId"), 2**63), (*CALL, "callId"), INT),
    ("depth-over-int64", setting((*CC, "searchDepth"), 2**63), (*CC, "searchDepth"), INT),
    ("callId-negative", setting((*CALL, "callId"), -4), (*CALL, "callId"), POSITIVE),
    # tags
    ("tags-string", setting((*REQ, "tags"), "t"), (*REQ, "tags"), ARRAY),
    ("tags-blank-item", setting((*CALL, "tags"), ["a", " "]), (*CALL, "tags"), NOT_BLANK),
    ("tags-number-item", setting((*RC, "tags"), [1]), (*RC, "tags"), NOT_BLANK),
    ("tagsLogic-number", setting((*CALL, "tagsLogic"), 1), (*CALL, "tagsLogic"), STRING),
    # contacts
    (
        "requestContact-no-contact",
        deleting((*RC, "emails"), (*RC, "phones"), (*RC, "md5Phones")),
        (*RC, "phones"),
        NOT_BLANK,
    ),
    (
        "callContact-no-contact",
        deleting((*CC, "phones"), (*CC, "md5Phones")),
        (*CC, "phones"),
        NOT_BLANK,
    ),
    (
        "callContact-empty-lists",
        both(setting((*CC, "phones"), []), setting((*CC, "md5Phones"), [])),
        (*CC, "phones"),
        NOT_BLANK,
    ),
    ("phones-string", setting((*RC, "phones"), "79001234567"), (*RC, "phones"), ARRAY),
    ("phones-number", setting((*CC, "phones"), [79001234567]), (*CC, "phones"), STRING),
    (
        "phones-no-digits",
        setting((*CC, "phones"), ["call me"]),
        (*CC, "phones"),
        "This value is not a valid phone number.",
    ),
    ("phones-blank", setting((*CC, "phones"), [" "]), (*CC, "phones"), NOT_BLANK),
    (
        "emails-bad",
        setting((*RC, "emails"), ["name.server.com"]),
        (*RC, "emails"),
        "This value is not a valid email address.",
    ),
    (
        "md5-short",
        setting((*CC, "md5Phones"), [MD5[:31]]),
        (*CC, "md5Phones"),
        "This value is not valid.",
    ),
    (
        "md5-not-hex",
        setting((*RC, "md5Phones"), ["z" * 32]),
        (*RC, "md5Phones"),
        "This value is not valid.",
    ),
    # date
    ("date-missing", deleting((*RC, "date")), (*RC, "date"), MISSING),
    ("date-iso", setting((*CC, "date"), "2020-10-01 12:00:00"), (*CC, "date"), DATETIME),
    ("date-one-digit-day", setting((*CC, "date"), "1-10-2020 12:00:00"), (*CC, "date"), DATETIME),
    ("date-no-time", setting((*CC, "date"), "01-10-2020"), (*CC, "date"), DATETIME),
    ("date-impossible", setting((*RC, "date"), "31-02-2020 12:00:00"), (*RC, "date"), DATETIME),
    ("date-number", setting((*RC, "date"), 20201001), (*RC, "date"), STRING),
    # searchDepth
    ("depth-missing", deleting((*CC, "searchDepth")), (*CC, "searchDepth"), MISSING),
    ("depth-string", setting((*CC, "searchDepth"), "120"), (*CC, "searchDepth"), INT),
    ("depth-zero", setting((*RC, "searchDepth"), 0), (*RC, "searchDepth"), POSITIVE),
    # *TypeToMatch
    ("callType-missing", deleting((*CC, "callTypeToMatch")), (*CC, "callTypeToMatch"), MISSING),
    ("callType-number", setting((*CC, "callTypeToMatch"), 1), (*CC, "callTypeToMatch"), STRING),
    (
        "requestType-missing",
        deleting((*RC, "requestTypeToMatch")),
        (*RC, "requestTypeToMatch"),
        MISSING,
    ),
]


@pytest.fixture
async def emu(emulator: EmulatorFactory) -> AsyncIterator[CalltouchEmulator]:
    async with emulator(0, rate_limit=None) as started:
        started.add_call(1, phones=["79001234567"], time=datetime(2020, 10, 1, 12), tags=["t"])
        yield started


async def send(http: aiohttp.ClientSession, emu: CalltouchEmulator, body: Any) -> tuple[int, Any]:
    async with http.post(emu.comment_url, json=body, headers=HEADERS) as resp:
        return resp.status, await resp.json()


def violations(answer: Any) -> list[tuple[str, str]]:
    data = answer["data"]
    assert data["type"] == "validationError"
    assert data["apiErrorData"] is None
    assert set(answer) == {"meta", "data"} and answer["meta"] == []
    return [(v["fieldPath"], v["message"]) for v in data["validationErrorData"]["violations"]]


async def test_the_valid_body_is_accepted(
    emu: CalltouchEmulator, http: aiohttp.ClientSession
) -> None:
    status, answer = await send(http, emu, valid_body())
    assert status == 200
    assert [c["commented"] for c in answer["data"]["comments"]] == [True, True]


@pytest.mark.parametrize(
    ("mutate", "path", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_each_rule_gives_its_violation_and_runs_nothing(
    emu: CalltouchEmulator,
    http: aiohttp.ClientSession,
    mutate: Mutation,
    path: Path,
    message: str,
) -> None:
    body = valid_body()
    mutate(body)
    status, answer = await send(http, emu, body)
    assert status == 400
    assert violations(answer) == [(fp(path), message)]
    assert emu.ledger.applied == []
    assert emu.ledger.count("validation_error") == 1


async def test_the_docs_example_violation_body_exactly(
    emu: CalltouchEmulator, http: aiohttp.ClientSession
) -> None:
    body = {
        "comments": [
            {"matching": [{"type": "call", "callParams": {"callId": 1}}], "addComment": ""}
        ]
    }
    status, answer = await send(http, emu, body)
    assert status == 400
    assert answer == {
        "meta": [],
        "data": {
            "type": "validationError",
            "apiErrorData": None,
            "validationErrorData": {
                "violations": [{"fieldPath": "comments[0].addComment", "message": NOT_BLANK}]
            },
        },
    }


async def test_more_than_100_leads(emu: CalltouchEmulator, http: aiohttp.ClientSession) -> None:
    lead = valid_body()["comments"][0]
    status, answer = await send(http, emu, {"comments": [lead] * 101})
    assert status == 400
    assert violations(answer) == [
        ("comments", "This collection should contain 100 elements or less.")
    ]
    assert emu.ledger.requests[0].lead_count == 101
    status, _ = await send(http, emu, {"comments": [lead] * 100})
    assert status == 200
    assert len(emu.ledger.applied) == 100


async def test_limits_are_inclusive(emu: CalltouchEmulator, http: aiohttp.ClientSession) -> None:
    body = valid_body()
    setting((*L1, "addComment"), "я" * 1000)(body)
    setting(M, [{"type": "call", "callParams": {"callId": 1}}] * 20)(body)
    status, _ = await send(http, emu, body)
    assert status == 200
    setting((*L1, "addComment"), "😀" * 500)(body)  # 1000 UTF-16 code units
    status, _ = await send(http, emu, body)
    assert status == 200


async def test_all_violations_are_reported_together(
    emu: CalltouchEmulator, http: aiohttp.ClientSession
) -> None:
    body = valid_body()
    setting(("comments", 0, "addComment"), " ")(body)
    setting((*M, 0, "type"), "nope")(body)
    deleting((*CC, "date"), (*CC, "searchDepth"))(body)
    status, answer = await send(http, emu, body)
    assert status == 400
    assert violations(answer) == [
        ("comments[0].addComment", NOT_BLANK),
        ("comments[1].matching[0].type", CHOICE),
        ("comments[1].matching[3].callContactParams.date", MISSING),
        ("comments[1].matching[3].callContactParams.searchDepth", MISSING),
    ]


@pytest.mark.parametrize(
    "mutate",
    [
        setting((*CC, "callTypeToMatch"), "someFutureValue"),
        setting((*RC, "requestTypeToMatch"), "nearest"),
        setting((*CALL, "tagsLogic"), "xor"),
        setting((*L1, "extra"), {"ignored": True}),
        setting((*CC, "emails"), ["not-used-by-calls"]),
        deleting((*REQ, "tags"), (*REQ, "tagsLogic")),
        setting((*CALL, "tags"), []),
    ],
    ids=[
        "unknown-callType",
        "nearest",
        "unknown-tagsLogic",
        "extra-key",
        "emails-on-call",
        "no-tags",
        "empty-tags",
    ],
)
async def test_unpublished_values_and_extras_are_accepted(
    emu: CalltouchEmulator, http: aiohttp.ClientSession, mutate: Mutation
) -> None:
    body = valid_body()
    mutate(body)
    status, _ = await send(http, emu, body)
    assert status == 200
