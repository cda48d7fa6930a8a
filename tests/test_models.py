"""Wire models: the doc's example, round trips, response decoding, phone normal form."""

from __future__ import annotations

import copy
import json
import pickle
from datetime import datetime
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from calltouch_async._errors import MalformedResponseError
from calltouch_async._models import (
    UNSET,
    CallContactMatch,
    CallInfo,
    CallMatch,
    CallTypeToMatch,
    CommentResult,
    CommentStatus,
    LeadComment,
    RequestContactMatch,
    RequestInfo,
    RequestMatch,
    RequestTypeToMatch,
    TagsLogic,
    decode_response,
    encode_request,
    format_date,
    normalize_phone,
)
from helpers import decode_leads

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- the doc's example

# The example body of the comment method's page (seeds/000_8efcdb6959b62842.txt), written out
# by hand: the page's version has trailing commas and comments, so it is not JSON. Its five
# matching entries are kept, including the repeated ``call`` (types may repeat).
DOC_EXAMPLE_BODY: dict[str, Any] = {
    "comments": [
        {
            "matching": [
                {
                    "type": "request",
                    "requestParams": {
                        "requestId": 1,
                        "tags": ["тег1", "тег2"],
                        "tagsLogic": "and",
                    },
                },
                {
                    "type": "call",
                    "callParams": {"callId": 2, "tags": ["тег"], "tagsLogic": "and"},
                },
                {
                    "type": "requestContact",
                    "requestContactParams": {
                        "emails": ["name@server.com"],
                        "phones": ["79157771122", "+7 (915) 888-11-22"],
                        "date": "01-10-2020 12:00:00",
                        "tags": ["тег"],
                        "tagsLogic": "and",
                        "requestTypeToMatch": "nearestUniq",
                        "searchDepth": 120,
                    },
                },
                {
                    "type": "callContact",
                    "callContactParams": {
                        "phones": ["84953338877"],
                        "date": "01-10-2020 12:00:00",
                        "tags": ["тег"],
                        "tagsLogic": "and",
                        "callTypeToMatch": "nearestUniqLead",
                        "searchDepth": 120,
                    },
                },
                {
                    "type": "call",
                    "callParams": {"callId": 2, "tags": ["тег"], "tagsLogic": "and"},
                },
            ],
            "addComment": "Комментарий к лиду",
        }
    ]
}


def doc_example_lead() -> LeadComment:
    return LeadComment(
        matching=[
            RequestMatch(1, tags=["тег1", "тег2"], tags_logic=TagsLogic.AND),
            CallMatch(call_id=2, tags=["тег"], tags_logic=TagsLogic.AND),
            RequestContactMatch(
                emails=["name@server.com"],
                phones=["79157771122", "+7 (915) 888-11-22"],
                date=datetime(2020, 10, 1, 12, 0, 0),
                tags=["тег"],
                tags_logic=TagsLogic.AND,
                request_type_to_match=RequestTypeToMatch.NEAREST_UNIQ,
                search_depth=120,
            ),
            CallContactMatch(
                phones=["84953338877"],
                date=datetime(2020, 10, 1, 12, 0, 0),
                tags=["тег"],
                tags_logic=TagsLogic.AND,
                call_type_to_match=CallTypeToMatch.NEAREST_UNIQ_LEAD,
                search_depth=120,
            ),
            CallMatch(call_id=2, tags=["тег"], tags_logic=TagsLogic.AND),
        ],
        comment="Комментарий к лиду",
    )


def test_doc_example_encodes_to_the_docs_structure() -> None:
    body = encode_request([doc_example_lead()])
    assert json.loads(body) == DOC_EXAMPLE_BODY


def test_doc_example_keeps_matching_order_and_puts_type_first() -> None:
    entries = json.loads(encode_request([doc_example_lead()]))["comments"][0]["matching"]
    assert [e["type"] for e in entries] == [
        "request",
        "call",
        "requestContact",
        "callContact",
        "call",
    ]
    assert all(next(iter(e)) == "type" for e in entries)


def test_doc_example_round_trips() -> None:
    lead = doc_example_lead()
    assert decode_leads(encode_request([lead])) == [lead]


def test_body_is_utf8_not_ascii_escaped() -> None:
    body = encode_request([doc_example_lead()])
    assert "Комментарий к лиду".encode() in body


def test_several_leads_keep_their_order() -> None:
    leads = [LeadComment([CallMatch(i)], f"lead {i}") for i in range(1, 101)]
    parsed = json.loads(encode_request(leads))
    assert [c["matching"][0]["callParams"]["callId"] for c in parsed["comments"]] == list(
        range(1, 101)
    )
    assert [c["addComment"] for c in parsed["comments"]] == [f"lead {i}" for i in range(1, 101)]


# --------------------------------------------------------------------------- omitted fields


def test_unset_optional_fields_are_absent_not_null() -> None:
    leads = [
        LeadComment(
            [
                CallMatch(5),
                RequestMatch(6),
                CallContactMatch(
                    phones=["79150000000"],
                    date="01-10-2020 12:00:00",
                    call_type_to_match="nearest",
                    search_depth=60,
                ),
                RequestContactMatch(
                    emails=["a@b.c"],
                    date="01-10-2020 12:00:00",
                    request_type_to_match="nearest",
                    search_depth=60,
                ),
            ],
            "x",
        )
    ]
    matching = json.loads(encode_request(leads))["comments"][0]["matching"]
    assert matching == [
        {"type": "call", "callParams": {"callId": 5}},
        {"type": "request", "requestParams": {"requestId": 6}},
        {
            "type": "callContact",
            "callContactParams": {
                "phones": ["79150000000"],
                "date": "01-10-2020 12:00:00",
                "callTypeToMatch": "nearest",
                "searchDepth": 60,
            },
        },
        {
            "type": "requestContact",
            "requestContactParams": {
                "emails": ["a@b.c"],
                "date": "01-10-2020 12:00:00",
                "requestTypeToMatch": "nearest",
                "searchDepth": 60,
            },
        },
    ]
    assert b"null" not in encode_request(leads)


def test_md5_phones_use_the_wire_name() -> None:
    md5 = "0123456789abcdef0123456789ABCDEF"
    entry = CallContactMatch(
        md5_phones=[md5], date="01-10-2020 12:00:00", call_type_to_match="nearest", search_depth=1
    )
    params = json.loads(encode_request([LeadComment([entry], "x")]))["comments"][0]["matching"][0]
    assert params["callContactParams"]["md5Phones"] == [md5]
    assert "phones" not in params["callContactParams"]


def test_explicit_empty_tags_are_sent() -> None:
    body = json.loads(encode_request([LeadComment([CallMatch(1, tags=[])], "x")]))
    assert body["comments"][0]["matching"][0]["callParams"] == {"callId": 1, "tags": []}


# --------------------------------------------------------------------------- dates and enums


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (datetime(2020, 10, 1, 12, 0, 0), "01-10-2020 12:00:00"),
        (datetime(2021, 1, 2, 3, 4, 5), "02-01-2021 03:04:05"),
        (datetime(1999, 12, 31, 23, 59, 59), "31-12-1999 23:59:59"),
        (datetime(2020, 10, 1, 12, 0, 0, 999_999), "01-10-2020 12:00:00"),
        ("01-10-2020 12:00:00", "01-10-2020 12:00:00"),
        ("whatever the caller wrote", "whatever the caller wrote"),
    ],
)
def test_date_accepts_datetime_or_preformatted_string(value: datetime | str, wire: str) -> None:
    assert format_date(value) == wire
    call = CallContactMatch(phones=["1"], date=value, call_type_to_match="nearest", search_depth=1)
    request = RequestContactMatch(
        phones=["1"], date=value, request_type_to_match="nearest", search_depth=1
    )
    assert call.params.date == wire
    assert request.params.date == wire
    body = json.loads(encode_request([LeadComment([call, request], "x")]))
    assert body["comments"][0]["matching"][0]["callContactParams"]["date"] == wire
    assert body["comments"][0]["matching"][1]["requestContactParams"]["date"] == wire


def test_named_constants_equal_the_wire_strings() -> None:
    assert TagsLogic.AND == "and"
    assert TagsLogic.OR == "or"
    assert CallTypeToMatch.NEAREST == "nearest"
    assert CallTypeToMatch.NEAREST_UNIQ == "nearestUniq"
    assert CallTypeToMatch.NEAREST_UNIQ_LEAD == "nearestUniqLead"
    assert RequestTypeToMatch.NEAREST == "nearest"
    assert RequestTypeToMatch.NEAREST_UNIQ == "nearestUniq"
    for member in [*TagsLogic, *CallTypeToMatch, *RequestTypeToMatch]:
        assert json.loads(msgspec.json.encode(member)) == member.value


def test_unknown_enum_strings_pass_through() -> None:
    lead = LeadComment(
        [
            CallMatch(1, tags=["t"], tags_logic="xor"),
            CallContactMatch(
                phones=["1"],
                date="01-10-2020 12:00:00",
                call_type_to_match="farthest",
                search_depth=5,
            ),
            RequestContactMatch(
                phones=["1"],
                date="01-10-2020 12:00:00",
                request_type_to_match="newKind",
                search_depth=5,
            ),
        ],
        "x",
    )
    matching = json.loads(encode_request([lead]))["comments"][0]["matching"]
    assert matching[0]["callParams"]["tagsLogic"] == "xor"
    assert matching[1]["callContactParams"]["callTypeToMatch"] == "farthest"
    assert matching[2]["requestContactParams"]["requestTypeToMatch"] == "newKind"
    assert decode_leads(encode_request([lead])) == [lead]


def test_match_type_names_the_wire_type() -> None:
    lead = doc_example_lead()
    assert [m.match_type for m in lead.matching] == [
        "request",
        "call",
        "requestContact",
        "callContact",
        "call",
    ]


def test_match_entries_survive_pickle_and_deepcopy() -> None:
    lead = doc_example_lead()
    assert pickle.loads(pickle.dumps(lead)) == lead
    assert copy.deepcopy(lead) == lead
    assert copy.copy(lead.matching[0]) == lead.matching[0]
    assert msgspec.structs.replace(lead.matching[1]) == lead.matching[1]


def test_str_and_int_subclasses_encode_as_plain_values() -> None:
    class Text(str):
        pass

    class Number(int):
        pass

    lead = LeadComment([CallMatch(Number(7), tags=[Text("t")])], Text("hello"))
    assert json.loads(encode_request([lead])) == {
        "comments": [
            {
                "matching": [{"type": "call", "callParams": {"callId": 7, "tags": ["t"]}}],
                "addComment": "hello",
            }
        ]
    }


# --------------------------------------------------------------------------- round trips

# Text as users type it: any code point but lone surrogates (which UTF-8 cannot carry), with
# the characters JSON must escape over-represented.
texts = st.lists(
    st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(['"', "\\", "\n", "\r", "\t", "\x00", "\u2028", "😀", "👨‍👩‍👧", "ё"]),
    ),
    max_size=40,
).map("".join)
tag_lists = st.lists(texts, max_size=4)
ids = st.integers(min_value=1, max_value=2**63 - 1)
depths = st.integers(min_value=1, max_value=2**31)
dates = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 12, 31)).map(
    lambda d: d.replace(microsecond=0)
)
date_values = st.one_of(dates, dates.map(lambda d: d.strftime("%d-%m-%Y %H:%M:%S")))
tag_logics = st.one_of(st.sampled_from(list(TagsLogic)), texts)
phone_lists = st.lists(st.text(alphabet="0123456789+()- ", min_size=5, max_size=18), max_size=3)
email_lists = st.lists(
    st.builds(
        "{}@{}.ru".format,
        st.text(alphabet="abcxyz._-+0189", min_size=1, max_size=10),
        st.text(alphabet="abcdefgh-", min_size=1, max_size=8),
    ),
    max_size=3,
)
md5_lists = st.lists(st.binary(min_size=16, max_size=16).map(bytes.hex), max_size=2)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(UNSET), strategy)


def _kw(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments where an UNSET value means "not passed"."""
    return st.fixed_dictionaries(fields).map(
        lambda d: {k: v for k, v in d.items() if v is not UNSET}
    )


# Each example is (kind, constructor kwargs); the test builds both the object and, by hand,
# the JSON it must encode to.
match_specs = st.one_of(
    st.tuples(
        st.just("call"), _kw(call_id=ids, tags=optional(tag_lists), tags_logic=optional(tag_logics))
    ),
    st.tuples(
        st.just("request"),
        _kw(request_id=ids, tags=optional(tag_lists), tags_logic=optional(tag_logics)),
    ),
    st.tuples(
        st.just("callContact"),
        _kw(
            phones=optional(phone_lists),
            md5_phones=optional(md5_lists),
            date=date_values,
            tags=optional(tag_lists),
            tags_logic=optional(tag_logics),
            call_type_to_match=st.one_of(st.sampled_from(list(CallTypeToMatch)), texts),
            search_depth=depths,
        ),
    ),
    st.tuples(
        st.just("requestContact"),
        _kw(
            emails=optional(email_lists),
            phones=optional(phone_lists),
            md5_phones=optional(md5_lists),
            date=date_values,
            tags=optional(tag_lists),
            tags_logic=optional(tag_logics),
            request_type_to_match=st.one_of(st.sampled_from(list(RequestTypeToMatch)), texts),
            search_depth=depths,
        ),
    ),
)
lead_specs = st.tuples(st.lists(match_specs, min_size=1, max_size=4), texts)

_CLASSES: dict[str, Any] = {
    "call": CallMatch,
    "request": RequestMatch,
    "callContact": CallContactMatch,
    "requestContact": RequestContactMatch,
}
_WIRE_NAMES = {
    "call_id": "callId",
    "request_id": "requestId",
    "tags": "tags",
    "tags_logic": "tagsLogic",
    "phones": "phones",
    "md5_phones": "md5Phones",
    "emails": "emails",
    "date": "date",
    "call_type_to_match": "callTypeToMatch",
    "request_type_to_match": "requestTypeToMatch",
    "search_depth": "searchDepth",
}


def build_lead(spec: tuple[list[tuple[str, dict[str, Any]]], str]) -> LeadComment:
    matching, comment = spec
    return LeadComment([_CLASSES[kind](**kwargs) for kind, kwargs in matching], comment)


def expected_json(spec: tuple[list[tuple[str, dict[str, Any]]], str]) -> dict[str, Any]:
    matching, comment = spec
    entries = []
    for kind, kwargs in matching:
        params = {
            _WIRE_NAMES[k]: (
                v.strftime("%d-%m-%Y %H:%M:%S")
                if isinstance(v, datetime)
                else v.value
                if isinstance(v, TagsLogic | CallTypeToMatch | RequestTypeToMatch)
                else v
            )
            for k, v in kwargs.items()
        }
        entries.append({"type": kind, f"{kind}Params": params})
    return {"matching": entries, "addComment": comment}


@settings(FAST, max_examples=100)
@given(st.lists(lead_specs, min_size=1, max_size=3))
@example([([("call", {"call_id": 2**63 - 1, "tags": ['"', "\\", "\n", "😀"]})], 'a"b\\c\nd😀')])
@example([([("call", {"call_id": 1})], "")])
def test_round_trip(specs: list[tuple[list[tuple[str, dict[str, Any]]], str]]) -> None:
    leads = [build_lead(spec) for spec in specs]
    body = encode_request(leads)
    assert decode_leads(body) == leads
    assert json.loads(body) == {"comments": [expected_json(spec) for spec in specs]}


@FAST
@given(texts)
def test_any_comment_text_survives_stdlib_json(comment: str) -> None:
    body = encode_request([LeadComment([CallMatch(1)], comment)])
    assert json.loads(body)["comments"][0]["addComment"] == comment
    assert decode_leads(body)[0].comment == comment


@FAST
@given(dates)
def test_datetime_is_sent_day_first(when: datetime) -> None:
    entry = CallContactMatch(phones=["1"], date=when, call_type_to_match="n", search_depth=1)
    assert entry.params.date == when.strftime("%d-%m-%Y %H:%M:%S")
    assert datetime.strptime(entry.params.date, "%d-%m-%Y %H:%M:%S") == when


# --------------------------------------------------------------------------- normalize_phone


@pytest.mark.parametrize(
    ("phone", "normal"),
    [
        ("+7 (915) 888-11-22", "79158881122"),
        ("84953338877", "74953338877"),
        ("8 (495) 333-88-77", "74953338877"),
        ("79157771122", "79157771122"),
        ("9157771122", "9157771122"),
        ("915-777-11-22", "9157771122"),
        ("+375 29 123-45-67", "375291234567"),
        ("812345", "812345"),
        ("", ""),
        ("８９１５８８８１１２２", "79158881122"),
    ],
)
def test_normalize_phone(phone: str, normal: str) -> None:
    assert normalize_phone(phone) == normal
    assert normalize_phone(normal) == normal


def test_normalize_phone_is_never_applied_silently() -> None:
    entry = CallContactMatch(
        phones=["+7 (915) 888-11-22", "84953338877"],
        date="01-10-2020 12:00:00",
        call_type_to_match="nearest",
        search_depth=1,
    )
    body = json.loads(encode_request([LeadComment([entry], "x")]))
    assert body["comments"][0]["matching"][0]["callContactParams"]["phones"] == [
        "+7 (915) 888-11-22",
        "84953338877",
    ]


@FAST
@given(st.text(max_size=30))
def test_normalize_phone_gives_ascii_digits(phone: str) -> None:
    normal = normalize_phone(phone)
    assert normal.isascii()
    assert normal == "" or normal.isdigit()
    assert normalize_phone(normal) == normal
    assert not (len(normal) == 11 and normal.startswith("8"))


# --------------------------------------------------------------------------- responses

DOC_SUCCESS = b"""{
"meta": [],
"data": {
"comments": [
{
"callInfo": { "callId": 12692441, "callReferenceId": "test321", "sipCallId": null },
"requestInfo": null, "commented": true, "error": null
}
]
}
}"""

DOC_VALIDATION_ERROR = (
    b'{ "meta": [], "data": { "type": "validationError", "apiErrorData": null, '
    b'"validationErrorData": { "violations": [{ "fieldPath": "comments[0].addComment", '
    b'"message": "This value should not be blank." }] } } }'
)


def test_decodes_the_docs_success_example() -> None:
    data = decode_response(DOC_SUCCESS)
    assert data.type is None
    assert data.violations == []
    assert data.api_error_data is None
    assert data.comments is not None
    [outcome] = data.comments
    assert outcome.commented is True
    assert outcome.call_info == CallInfo(
        call_id=12692441, call_reference_id="test321", sip_call_id=None
    )
    assert outcome.request_info is None
    assert outcome.error is None


def test_ids_may_be_strings_or_numbers() -> None:
    body = json.dumps(
        {
            "meta": [],
            "data": {
                "comments": [
                    {
                        "callInfo": {
                            "callId": "12692441",
                            "callReferenceId": 5,
                            "sipCallId": "sip-1",
                        },
                        "requestInfo": None,
                        "commented": True,
                        "error": None,
                    },
                    {
                        "callInfo": None,
                        "requestInfo": {"requestId": 77, "requestNumber": "form-9"},
                        "commented": True,
                        "error": None,
                    },
                    {
                        "callInfo": None,
                        "requestInfo": {"requestId": "78", "requestNumber": 9},
                        "commented": True,
                        "error": None,
                    },
                ]
            },
        }
    ).encode()
    comments = decode_response(body).comments
    assert comments is not None
    assert comments[0].call_info == CallInfo("12692441", 5, "sip-1")
    assert comments[0].request_info is None
    assert comments[1].call_info is None
    assert comments[1].request_info == RequestInfo(77, "form-9")
    assert comments[2].request_info == RequestInfo("78", 9)


def test_not_commented_entry_keeps_its_error() -> None:
    body = (
        b'{"meta": [], "data": {"comments": [{"callInfo": null, "requestInfo": null, '
        b'"commented": false, "error": "\xd0\x9b\xd0\xb8\xd0\xb4 \xd0\xbd\xd0\xb5 '
        b'\xd0\xbd\xd0\xb0\xd0\xb9\xd0\xb4\xd0\xb5\xd0\xbd"}]}}'
    )
    comments = decode_response(body).comments
    assert comments is not None
    assert comments[0].commented is False
    assert comments[0].error == "Лид не найден"
    assert comments[0].call_info is None and comments[0].request_info is None


def test_missing_optional_members_take_defaults() -> None:
    body = b'{"data": {"comments": [{"commented": true}, {"commented": false}]}}'
    comments = decode_response(body).comments
    assert comments is not None
    assert [c.commented for c in comments] == [True, False]
    assert comments[1].call_info is None and comments[1].error is None


@pytest.mark.parametrize(
    "entry", [b"{}", b'{"callInfo": {"callId": 1}, "error": null}'], ids=["empty", "call-info"]
)
def test_an_entry_without_commented_is_malformed(entry: bytes) -> None:
    # Silence says nothing about whether the comment was applied: never "not commented".
    with pytest.raises(MalformedResponseError, match="commented"):
        decode_response(b'{"data": {"comments": [' + entry + b"]}}")


def test_unknown_fields_are_ignored_at_every_level() -> None:
    success = {
        "meta": [],
        "extra": {"x": 1},
        "version": 2,
        "data": {
            "comments": [
                {
                    "callInfo": {
                        "callId": 1,
                        "callReferenceId": None,
                        "sipCallId": None,
                        "duration": 30,
                        "nested": {"a": [1, 2]},
                    },
                    "requestInfo": {"requestId": 2, "requestNumber": "n", "formName": "f"},
                    "commented": True,
                    "error": None,
                    "points": 3,
                    "leadId": "L1",
                }
            ],
            "total": 1,
            "meta2": None,
        },
    }
    comments = decode_response(json.dumps(success).encode()).comments
    assert comments is not None
    assert comments[0].call_info == CallInfo(1, None, None)
    assert comments[0].request_info == RequestInfo(2, "n")
    assert comments[0].commented is True

    failure = {
        "meta": [],
        "trace": "abc",
        "data": {
            "type": "validationError",
            "apiErrorData": None,
            "requestId": "r-1",
            "validationErrorData": {
                "violations": [
                    {
                        "fieldPath": "comments[3].matching",
                        "message": "m",
                        "code": "c-1",
                        "invalidValue": [1],
                    }
                ],
                "count": 1,
            },
        },
    }
    data = decode_response(json.dumps(failure).encode())
    assert [(v.field_path, v.message) for v in data.violations] == [("comments[3].matching", "m")]

    api = {
        "meta": [],
        "data": {
            "type": "apiError",
            "validationErrorData": None,
            "apiErrorData": {"errorCode": 10007, "errorMessage": "x", "details": {}},
        },
    }
    api_error = decode_response(json.dumps(api).encode()).api_error_data
    assert api_error is not None
    assert (api_error.error_code, api_error.error_message) == (10007, "x")


def test_decodes_the_docs_validation_error() -> None:
    data = decode_response(DOC_VALIDATION_ERROR)
    assert data.type == "validationError"
    assert data.comments is None
    assert data.api_error_data is None
    assert len(data.violations) == 1
    assert data.violations[0].field_path == "comments[0].addComment"
    assert data.violations[0].message == "This value should not be blank."


def test_decodes_an_api_error() -> None:
    body = (
        b'{"meta": [], "data": {"type": "apiError", "apiErrorData": '
        b'{"errorCode": 401, "errorMessage": "Invalid access token"}, '
        b'"validationErrorData": null}}'
    )
    data = decode_response(body)
    assert data.type == "apiError"
    assert data.comments is None
    assert data.violations == []
    assert data.api_error_data is not None
    assert data.api_error_data.error_code == 401
    assert data.api_error_data.error_message == "Invalid access token"


def test_api_error_code_may_be_a_string() -> None:
    body = b'{"data": {"apiErrorData": {"errorCode": "E42", "errorMessage": null}}}'
    api_error = decode_response(body).api_error_data
    assert api_error is not None
    assert api_error.error_code == "E42"
    assert api_error.error_message is None


def test_decodes_str_bodies_too() -> None:
    assert decode_response(DOC_SUCCESS.decode()).comments is not None


_BIG_HTML = ("<html><head><title>502 Bad Gateway</title></head><body>" + "x" * 10_000).encode()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html><body>Service Unavailable</body></html>", id="html"),
        pytest.param(_BIG_HTML, id="html-10kB"),
        pytest.param(DOC_SUCCESS[: len(DOC_SUCCESS) // 2], id="truncated"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'{"data": 5}', id="data-int"),
        pytest.param(b"{}", id="no-data"),
        pytest.param(b'{"data": null}', id="data-null"),
        pytest.param(b'{"data": {"comments": {"a": 1}}}', id="comments-object"),
        pytest.param(b'{"data": {"comments": [{"commented": "yes"}]}}', id="commented-str"),
        pytest.param(b'{"data": {"comments": [{"callInfo": {"callId": 1.5}}]}}', id="float-id"),
        pytest.param(b'{"data": {"validationErrorData": {"violations": 3}}}', id="violations"),
        pytest.param(b"\xff\xfe{", id="not-utf8"),
        pytest.param(b'{"data": {"comments": []}} trailing', id="trailing-garbage"),
    ],
)
def test_malformed_bodies_raise_with_a_short_excerpt(body: bytes) -> None:
    with pytest.raises(MalformedResponseError) as info:
        decode_response(body)
    error = info.value
    assert len(error.excerpt) <= 201
    assert body.decode("utf-8", "replace").startswith(error.excerpt.rstrip("…"))
    assert repr(error.excerpt) in str(error)
    assert len(str(error)) < 500
    assert error.reason


def test_malformed_10kb_body_quotes_only_its_start() -> None:
    with pytest.raises(MalformedResponseError) as info:
        decode_response(_BIG_HTML)
    message = str(info.value)
    assert "502 Bad Gateway" in message
    assert "x" * 300 not in message
    assert info.value.excerpt.endswith("…")


# --------------------------------------------------------------------------- CommentResult


@pytest.mark.parametrize("status", list(CommentStatus))
def test_comment_result_commented_only_for_commented(status: CommentStatus) -> None:
    result = CommentResult(index=0, lead=doc_example_lead(), status=status)
    assert result.commented is (status is CommentStatus.COMMENTED)


def test_comment_status_values() -> None:
    assert [s.value for s in CommentStatus] == [
        "commented",
        "not_commented",
        "invalid",
        "rejected",
        "failed",
        "unknown",
    ]
