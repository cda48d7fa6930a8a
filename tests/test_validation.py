"""Local validation: every documented rule just inside and just outside its limit, with the
exact server-style path of each problem, and fuzzing with wrong types everywhere."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calltouch_async._models import (
    UNSET,
    CallContactMatch,
    CallMatch,
    CallParams,
    CallTypeToMatch,
    LeadComment,
    RequestContactMatch,
    RequestMatch,
    RequestTypeToMatch,
    TagsLogic,
    encode_request,
)
from calltouch_async._validation import (
    MAX_COMMENT_CHARS,
    MAX_MATCHING_ENTRIES,
    Problem,
    _all_problems,
    _passes,
    describe,
    validate_lead,
)

M0 = "matching[0]"
DATE = "01-10-2020 12:00:00"
MD5 = "0123456789abcdef0123456789abcdef"


def call_contact(**overrides: Any) -> CallContactMatch:
    kwargs: dict[str, Any] = {
        "phones": ["79157771122"],
        "date": DATE,
        "call_type_to_match": CallTypeToMatch.NEAREST_UNIQ_LEAD,
        "search_depth": 120,
    }
    kwargs.update(overrides)
    return CallContactMatch(**{k: v for k, v in kwargs.items() if v is not UNSET})


def request_contact(**overrides: Any) -> RequestContactMatch:
    kwargs: dict[str, Any] = {
        "emails": ["name@server.com"],
        "date": DATE,
        "request_type_to_match": RequestTypeToMatch.NEAREST_UNIQ,
        "search_depth": 120,
    }
    kwargs.update(overrides)
    return RequestContactMatch(**{k: v for k, v in kwargs.items() if v is not UNSET})


def lead_with(entry: object, comment: object = "Комментарий к лиду") -> LeadComment:
    return LeadComment([entry], comment)  # type: ignore[list-item]


def paths(lead: object) -> list[str]:
    problems = validate_lead(lead)
    assert all(p.message for p in problems)
    return [p.path for p in problems]


def assert_ok(lead: object) -> None:
    assert validate_lead(lead) == []
    encode_request([lead])  # type: ignore[list-item]


# --------------------------------------------------------------------------- valid leads


def test_the_docs_example_is_valid() -> None:
    lead = LeadComment(
        [
            RequestMatch(1, tags=["тег1", "тег2"], tags_logic=TagsLogic.AND),
            CallMatch(call_id=2, tags=["тег"], tags_logic=TagsLogic.AND),
            request_contact(
                phones=["79157771122", "+7 (915) 888-11-22"],
                date=datetime(2020, 10, 1, 12),
                tags=["тег"],
                tags_logic="and",
            ),
            call_contact(phones=["84953338877"], tags=["тег"], tags_logic="and"),
            CallMatch(call_id=2, tags=["тег"], tags_logic=TagsLogic.AND),
        ],
        "Комментарий к лиду",
    )
    assert_ok(lead)


def test_unknown_enum_strings_are_valid() -> None:
    assert_ok(lead_with(CallMatch(1, tags=["t"], tags_logic="xor")))
    assert_ok(lead_with(call_contact(call_type_to_match="somethingNew")))
    assert_ok(lead_with(request_contact(request_type_to_match="somethingNew")))


def test_tuples_are_accepted_where_lists_are_expected() -> None:
    lead = LeadComment(
        (CallMatch(1, tags=("a", "b")), call_contact(phones=("79157771122",))),  # type: ignore[arg-type]
        "x",
    )
    assert_ok(lead)


# --------------------------------------------------------------------------- the lead itself


@pytest.mark.parametrize(
    "lead",
    [
        None,
        {"matching": [], "addComment": "x"},
        "text",
        5,
        CallMatch(1),
        [LeadComment([CallMatch(1)], "x")],
    ],
)
def test_a_non_lead_is_rejected(lead: object) -> None:
    problems = validate_lead(lead)
    assert [p.path for p in problems] == [""]
    assert "LeadComment" in problems[0].message


def test_paths_are_relative_to_the_lead() -> None:
    # The result's index says which lead; the path never names a position in a request.
    lead = lead_with(CallMatch(0))
    assert [p.path for p in validate_lead(lead)] == ["matching[0].callParams.callId"]
    assert str(validate_lead(7)[0]) == "must be a LeadComment, not int"


# --------------------------------------------------------------------------- addComment


def test_comment_is_required_by_the_constructor() -> None:
    with pytest.raises(TypeError):
        LeadComment([CallMatch(1)])  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "comment",
    [
        pytest.param(None, id="missing"),
        pytest.param(5, id="int"),
        pytest.param(b"bytes", id="bytes"),
        pytest.param(["x"], id="list"),
        pytest.param("", id="empty"),
        pytest.param(" ", id="space"),
        pytest.param(" \t\r\n ", id="whitespace"),
        pytest.param("\u3000\u00a0", id="unicode-spaces"),
        pytest.param("x" * (MAX_COMMENT_CHARS + 1), id="1001"),
        pytest.param("😀" * (MAX_COMMENT_CHARS + 1), id="1001-non-bmp"),
        # Counted in UTF-16 code units, as Calltouch most likely does: an emoji is 2.
        pytest.param("😀" * MAX_COMMENT_CHARS, id="1000-emoji-is-2000-units"),
        pytest.param("x" * (MAX_COMMENT_CHARS - 1) + "😀", id="999-plus-emoji"),
        pytest.param("ж" * (MAX_COMMENT_CHARS + 1), id="1001-cyrillic"),
        pytest.param("a\ud800b", id="lone-surrogate"),
        pytest.param("\udfff", id="lone-low-surrogate"),
    ],
)
def test_bad_comment(comment: object) -> None:
    problems = validate_lead(lead_with(CallMatch(1), comment))
    assert [p.path for p in problems] == ["addComment"]
    assert problems[0].message


@pytest.mark.parametrize(
    "comment",
    [
        pytest.param("x", id="1"),
        pytest.param(" x ", id="padded"),
        pytest.param("x" * MAX_COMMENT_CHARS, id="1000"),
        pytest.param("😀" * (MAX_COMMENT_CHARS // 2), id="500-emoji-is-1000-units"),
        pytest.param("ж" * MAX_COMMENT_CHARS, id="1000-cyrillic"),
        pytest.param('quote " backslash \\ newline \n', id="escapes"),
    ],
)
def test_good_comment(comment: str) -> None:
    assert_ok(lead_with(CallMatch(1), comment))


def test_over_long_comment_message_gives_the_length() -> None:
    [problem] = validate_lead(lead_with(CallMatch(1), "ж" * 1001))
    assert "1000" in problem.message and "1001" in problem.message
    [problem] = validate_lead(lead_with(CallMatch(1), "😀" * 501))
    assert "UTF-16" in problem.message and "1002" in problem.message


def test_limits_are_the_documented_ones() -> None:
    assert MAX_COMMENT_CHARS == 1000
    assert MAX_MATCHING_ENTRIES == 20


# --------------------------------------------------------------------------- matching


@pytest.mark.parametrize("count", [1, 2, 19, 20])
def test_matching_up_to_20_entries(count: int) -> None:
    assert_ok(LeadComment([CallMatch(i + 1) for i in range(count)], "x"))


@pytest.mark.parametrize("count", [0, 21, 40])
def test_matching_empty_or_over_20(count: int) -> None:
    lead = LeadComment([CallMatch(i + 1) for i in range(count)], "x")
    assert paths(lead) == ["matching"]


def test_matching_problems_of_21_entries_are_all_reported() -> None:
    entries: list[Any] = [CallMatch(i + 1) for i in range(21)]
    entries[20] = CallMatch(0)
    assert paths(LeadComment(entries, "x")) == [
        "matching",
        "matching[20].callParams.callId",
    ]


@pytest.mark.parametrize("matching", [None, CallMatch(1), {"0": CallMatch(1)}, "call", 3])
def test_matching_must_be_a_list(matching: object) -> None:
    assert paths(LeadComment(matching, "x")) == ["matching"]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "entry",
    [
        None,
        {"type": "call", "callParams": {"callId": 1}},
        CallParams(1),
        "call",
        1,
        LeadComment([CallMatch(1)], "x"),
    ],
)
def test_a_non_match_entry_is_rejected(entry: object) -> None:
    problems = validate_lead(LeadComment([CallMatch(1), entry], "x"))  # type: ignore[list-item]
    assert [p.path for p in problems] == ["matching[1]"]
    assert "CallMatch" in problems[0].message


# --------------------------------------------------------------------------- ids


@pytest.mark.parametrize("value", [1, 2, 12692441, 2**63 - 1])
def test_good_ids(value: int) -> None:
    assert_ok(lead_with(CallMatch(value)))
    assert_ok(lead_with(RequestMatch(value)))


@pytest.mark.parametrize(
    "value",
    [0, -1, -(2**63), 2**63, 2**80, True, False, "1", "12692441", 1.0, 2.5, None, [1]],
)
def test_bad_ids(value: object) -> None:
    assert paths(lead_with(CallMatch(value))) == [f"{M0}.callParams.callId"]  # type: ignore[arg-type]
    assert paths(lead_with(RequestMatch(value))) == [f"{M0}.requestParams.requestId"]  # type: ignore[arg-type]


def test_bool_id_message_names_the_type() -> None:
    [problem] = validate_lead(lead_with(CallMatch(True)))
    assert "bool" in problem.message


# --------------------------------------------------------------------------- tags


@pytest.mark.parametrize(
    ("tags", "where"),
    [
        ([""], "tags[0]"),
        (["ok", "   "], "tags[1]"),
        (["ok", "\n"], "tags[1]"),
        (["ok", 5], "tags[1]"),
        (["ok", None], "tags[1]"),
        (["bad\ud800"], "tags[0]"),
        ("тег", "tags"),
        (None, "tags"),
        ({"тег"}, "tags"),
    ],
)
def test_bad_tags(tags: object, where: str) -> None:
    assert paths(lead_with(CallMatch(1, tags=tags))) == [f"{M0}.callParams.{where}"]  # type: ignore[arg-type]
    assert paths(lead_with(RequestMatch(1, tags=tags))) == [f"{M0}.requestParams.{where}"]  # type: ignore[arg-type]
    assert paths(lead_with(call_contact(tags=tags))) == [f"{M0}.callContactParams.{where}"]
    assert paths(lead_with(request_contact(tags=tags))) == [f"{M0}.requestContactParams.{where}"]


@pytest.mark.parametrize("tags", [[], ["x"], ["тег1", "тег2"], [" padded "]])
def test_good_tags(tags: list[str]) -> None:
    assert_ok(lead_with(CallMatch(1, tags=tags, tags_logic=TagsLogic.OR)))
    assert_ok(lead_with(request_contact(tags=tags, tags_logic="and")))


@pytest.mark.parametrize("logic", ["", "  ", None, 1, TagsLogic])
def test_bad_tags_logic(logic: object) -> None:
    assert paths(lead_with(CallMatch(1, tags=["x"], tags_logic=logic))) == [  # type: ignore[arg-type]
        f"{M0}.callParams.tagsLogic"
    ]
    assert paths(lead_with(call_contact(tags_logic=logic))) == [f"{M0}.callContactParams.tagsLogic"]


# --------------------------------------------------------------------------- contact entries


def test_contact_entry_without_any_contact() -> None:
    assert paths(lead_with(call_contact(phones=UNSET))) == [f"{M0}.callContactParams.phones"]
    assert paths(lead_with(request_contact(emails=UNSET))) == [f"{M0}.requestContactParams.phones"]


def test_contact_entry_with_only_empty_lists() -> None:
    assert paths(lead_with(call_contact(phones=[], md5_phones=[]))) == [
        f"{M0}.callContactParams.phones"
    ]
    assert paths(lead_with(request_contact(emails=[], phones=[], md5_phones=[]))) == [
        f"{M0}.requestContactParams.phones"
    ]


@pytest.mark.parametrize("field", ["phones", "emails", "md5_phones"])
def test_request_contact_with_one_kind_of_contact(field: str) -> None:
    value = [MD5] if field == "md5_phones" else ["x@y.z" if field == "emails" else "7915"]
    kwargs = {"emails": UNSET, field: value}
    assert_ok(lead_with(request_contact(**kwargs)))


def test_call_contact_with_only_md5() -> None:
    assert_ok(lead_with(call_contact(phones=UNSET, md5_phones=[MD5])))


@pytest.mark.parametrize(
    ("phones", "where"),
    [
        ([""], "phones[0]"),
        (["7915", " "], "phones[1]"),
        ([79157771122], "phones[0]"),
        ("79157771122", "phones"),
    ],
)
def test_bad_phones(phones: object, where: str) -> None:
    found = paths(lead_with(call_contact(phones=phones, md5_phones=[MD5])))
    assert found == [f"{M0}.callContactParams.{where}"]


def test_bad_emails() -> None:
    found = paths(lead_with(request_contact(emails=["a@b.c", ""])))
    assert found == [f"{M0}.requestContactParams.emails[1]"]


@pytest.mark.parametrize(
    "md5", [MD5, MD5.upper(), "d41d8cd98f00b204e9800998ecf8427e", "0" * 32, "F" * 32]
)
def test_good_md5(md5: str) -> None:
    assert_ok(lead_with(call_contact(phones=UNSET, md5_phones=[md5])))
    assert_ok(lead_with(request_contact(emails=UNSET, md5_phones=[md5])))


@pytest.mark.parametrize(
    "md5",
    [
        pytest.param(MD5[:31], id="31"),
        pytest.param(MD5 + "0", id="33"),
        pytest.param("g" * 32, id="non-hex"),
        pytest.param(MD5[:31] + "-", id="dash"),
        pytest.param(MD5 + "\n", id="trailing-newline"),
        pytest.param(" " + MD5[:31], id="space"),
        pytest.param("０" * 32, id="fullwidth-digits"),
    ],
)
def test_bad_md5(md5: str) -> None:
    found = paths(lead_with(call_contact(phones=UNSET, md5_phones=[MD5, md5])))
    assert found == [f"{M0}.callContactParams.md5Phones[1]"]
    found = paths(lead_with(request_contact(md5_phones=[md5])))
    assert found == [f"{M0}.requestContactParams.md5Phones[0]"]


def test_md5_that_is_not_a_string() -> None:
    found = paths(lead_with(call_contact(md5_phones=[12345])))
    assert found == [f"{M0}.callContactParams.md5Phones[0]"]


# --------------------------------------------------------------------------- date


@pytest.mark.parametrize(
    "value",
    [
        DATE,
        "29-02-2020 23:59:59",
        "01-01-1970 00:00:00",
        datetime(2020, 10, 1, 12),
        datetime(2100, 12, 31, 23, 59, 59, 123),
    ],
)
def test_good_date(value: object) -> None:
    assert_ok(lead_with(call_contact(date=value)))
    assert_ok(lead_with(request_contact(date=value)))


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("31-02-2020 00:00:00", id="31-feb"),
        pytest.param("29-02-2021 00:00:00", id="29-feb-not-leap"),
        pytest.param("01-10-2020 24:00:00", id="hour-24"),
        pytest.param("2020-10-01T12:00:00", id="iso"),
        pytest.param("2020-10-01 12:00:00", id="year-first"),
        pytest.param("10/01/2020 12:00:00", id="slashes"),
        pytest.param("01-10-2020", id="no-time"),
        pytest.param("01-10-2020 12:00", id="no-seconds"),
        pytest.param("01-10-2020 12:00:00.000", id="fraction"),
        pytest.param("1-10-2020 12:00:00", id="one-digit-day"),
        pytest.param("01-1-2020  12:00:00", id="one-digit-month-padded"),
        pytest.param("01-10-2020  2:00:00", id="one-digit-hour-padded"),
        pytest.param("01-10-2020 12:00:00 ", id="trailing-space"),
        pytest.param("０1-10-2020 12:00:00", id="fullwidth-digit"),
        pytest.param("", id="empty"),
        pytest.param(None, id="none"),
        pytest.param(1601553600, id="timestamp"),
        pytest.param(date(2020, 10, 1), id="date-object"),
    ],
)
def test_bad_date(value: object) -> None:
    assert paths(lead_with(call_contact(date=value))) == [f"{M0}.callContactParams.date"]
    assert paths(lead_with(request_contact(date=value))) == [f"{M0}.requestContactParams.date"]


# ------------------------------------------------------------------- searchDepth, *TypeToMatch


@pytest.mark.parametrize("depth", [1, 120, 262800, 2**31])
def test_good_search_depth(depth: int) -> None:
    assert_ok(lead_with(call_contact(search_depth=depth)))
    assert_ok(lead_with(request_contact(search_depth=depth)))


@pytest.mark.parametrize("depth", [0, -1, True, "120", 120.0, None, 2**63])
def test_bad_search_depth(depth: object) -> None:
    assert paths(lead_with(call_contact(search_depth=depth))) == [
        f"{M0}.callContactParams.searchDepth"
    ]
    assert paths(lead_with(request_contact(search_depth=depth))) == [
        f"{M0}.requestContactParams.searchDepth"
    ]


@pytest.mark.parametrize("value", ["", " ", None, 1, ["nearest"]])
def test_bad_type_to_match(value: object) -> None:
    assert paths(lead_with(call_contact(call_type_to_match=value))) == [
        f"{M0}.callContactParams.callTypeToMatch"
    ]
    assert paths(lead_with(request_contact(request_type_to_match=value))) == [
        f"{M0}.requestContactParams.requestTypeToMatch"
    ]


# --------------------------------------------------------------------------- several problems


def test_every_problem_of_a_lead_is_reported_in_order() -> None:
    lead = LeadComment(
        [
            CallMatch(0, tags=[""]),
            "junk",
            call_contact(phones=UNSET, date="2020-10-01", search_depth=0, call_type_to_match=""),
            request_contact(emails=["ok"], md5_phones=["nope"]),
        ],
        "",
    )
    assert paths(lead) == [
        "addComment",
        "matching[0].callParams.callId",
        "matching[0].callParams.tags[0]",
        "matching[1]",
        "matching[2].callContactParams.phones",
        "matching[2].callContactParams.date",
        "matching[2].callContactParams.searchDepth",
        "matching[2].callContactParams.callTypeToMatch",
        "matching[3].requestContactParams.md5Phones[0]",
    ]


def test_describe_joins_problems() -> None:
    problems = [
        Problem("addComment", "must not be blank"),
        Problem("matching", "must have at least one entry"),
    ]
    assert str(problems[0]) == "addComment: must not be blank"
    assert describe(problems) == (
        "addComment: must not be blank; matching: must have at least one entry"
    )
    assert describe([]) == ""


def test_messages_are_short_even_for_huge_values() -> None:
    problems = validate_lead(lead_with(call_contact(date="x" * 100_000), "y" * 100_000))
    assert len(problems) == 2
    assert all(len(p.message) < 200 for p in problems)


# --------------------------------------------------------------------------- fuzzing


class Text(str):
    """A str subclass, like numpy.str_ or markupsafe.Markup."""


class Number(int):
    """An int subclass that is not bool."""


# "Valid" values include the valid-but-awkward: subclasses of str/int (which msgspec does not
# encode by itself) and, rarely, text with a lone surrogate (which UTF-8 cannot carry).
surrogate_text = st.lists(st.sampled_from(["a", " ", "\ud800", "\udfff", "😀"]), max_size=4).map(
    "".join
)


def pick(*options: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``st.one_of`` by an index draw. Hypothesis's shrinker re-encodes a ``one_of`` value
    through any branch whose type matches, and ``st.text()`` then chokes on a ``str`` subclass
    (KeyError while shrinking, hiding the real failure): ``Text``/``Number`` avoid ``one_of``."""
    return st.integers(0, len(options) - 1).flatmap(lambda i: options[i])


scalars = pick(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**62, max_value=2**70),
    st.floats(),
    st.text(max_size=20),
    surrogate_text,
    st.text(alphabet="0123456789abcdef", min_size=31, max_size=33),
    st.builds(Text, st.text(max_size=5)),
    st.builds(Number, st.integers()),
    st.binary(max_size=5),
    st.datetimes(),
    st.dates(),
    st.sampled_from([*TagsLogic, *CallTypeToMatch, *RequestTypeToMatch, object(), ...]),
    st.just(DATE),
    st.just("  "),
)
anything = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner),
        st.dictionaries(st.text(max_size=3), inner, max_size=2),
        st.frozensets(st.integers(), max_size=2),
    ),
    max_leaves=6,
)
valid_datetimes = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1))
positive = pick(
    st.integers(min_value=1, max_value=2**63 - 1),
    st.just(1),
    st.builds(Number, st.integers(min_value=1, max_value=2**63 - 1)),
)
strings = pick(
    st.text(min_size=1, max_size=10),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzабвгд@.+-0123456789", min_size=1, max_size=12),
    st.just("nearest"),
    st.builds(Text, st.text(min_size=1, max_size=10)),
    surrogate_text,
)
string_lists = st.lists(strings, min_size=1, max_size=3)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value that is mostly valid, sometimes anything at all, sometimes not passed."""
    return st.integers(0, 9).flatmap(
        lambda k: valid if k < 7 else anything if k < 9 else st.just(UNSET)
    )


def _kwargs(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(fields).map(
        lambda d: {k: v for k, v in d.items() if v is not UNSET}
    )


def _required(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value that is mostly valid, sometimes anything at all."""
    return st.integers(0, 9).flatmap(lambda k: valid if k < 8 else anything)


fuzz_matches = st.one_of(
    st.builds(
        lambda a, kw: CallMatch(a, **kw),
        _required(positive),
        _kwargs(tags=maybe(string_lists), tags_logic=maybe(strings)),
    ),
    st.builds(
        lambda a, kw: RequestMatch(a, **kw),
        _required(positive),
        _kwargs(tags=maybe(string_lists), tags_logic=maybe(strings)),
    ),
    st.builds(
        lambda kw: CallContactMatch(**kw),
        _kwargs(
            date=_required(st.one_of(st.just(DATE), valid_datetimes)),
            search_depth=_required(positive),
            call_type_to_match=_required(strings),
            phones=maybe(string_lists),
            md5_phones=maybe(st.lists(st.just(MD5), max_size=2)),
            tags=maybe(string_lists),
            tags_logic=maybe(strings),
        ),
    ),
    st.builds(
        lambda kw: RequestContactMatch(**kw),
        _kwargs(
            date=_required(st.one_of(st.just(DATE), valid_datetimes)),
            search_depth=_required(positive),
            request_type_to_match=_required(strings),
            emails=maybe(string_lists),
            phones=maybe(string_lists),
            md5_phones=maybe(st.lists(st.just(MD5), max_size=2)),
            tags=maybe(string_lists),
            tags_logic=maybe(strings),
        ),
    ),
)
fuzz_lead_comments = st.builds(
    LeadComment,
    st.one_of(
        st.lists(fuzz_matches, min_size=1, max_size=3),
        st.lists(fuzz_matches, min_size=1, max_size=3),
        st.lists(st.one_of(fuzz_matches, anything), max_size=3),
        st.tuples(fuzz_matches),
        anything,
    ),
    pick(
        st.text(min_size=1, max_size=30),
        st.text(min_size=1, max_size=30),
        st.text(min_size=995, max_size=1005),
        st.builds(Text, st.text(min_size=1, max_size=30)),
        surrogate_text,
        anything,
    ),
)
fuzz_leads = st.one_of(fuzz_lead_comments, fuzz_lead_comments, fuzz_lead_comments, anything)

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(fuzz_leads)
def test_validate_never_raises_and_valid_leads_encode(lead: object) -> None:
    problems = validate_lead(lead)
    assert isinstance(problems, list)
    for problem in problems:
        assert isinstance(problem, Problem)
        # Relative to the lead: never a position in a request.
        assert problem.path == "" or problem.path.startswith(("addComment", "matching"))
        assert isinstance(problem.message, str) and problem.message.strip()
        assert describe(problems)
    if not problems:
        assert isinstance(lead, LeadComment)
        body = encode_request([lead])
        parsed = json.loads(body)
        assert len(parsed["comments"]) == 1
        assert parsed["comments"][0]["addComment"] == lead.comment


def _has_int_subclass_call_id(lead: object) -> bool:
    matching = getattr(lead, "matching", None)
    return isinstance(matching, list | tuple) and any(
        type(e) is CallMatch and type(e.params.call_id) is not int for e in matching
    )


@FUZZ
@given(fuzz_leads)
def test_the_fast_pass_agrees_with_the_full_pass(lead: object) -> None:
    # The fast pass decides alone for valid leads, so it must never pass an invalid one; and
    # it must pass every valid one except the int-subclass ids it leaves to the full pass.
    full = _all_problems(lead)
    if _passes(lead):
        assert full == []
    elif not _has_int_subclass_call_id(lead):
        assert full != []


def test_a_plain_valid_lead_takes_the_fast_pass() -> None:
    assert _passes(lead_with(CallMatch(1)))
    assert _passes(lead_with(CallMatch(1, tags=["a"], tags_logic="or")))
    assert _passes(lead_with(call_contact()))
    assert not _passes(lead_with(CallMatch(0)))
    assert not _passes(lead_with(CallMatch(1), "  "))


@FUZZ
@given(st.integers(min_value=-(2**64), max_value=2**64), st.sampled_from(["ok", " ", ""]))
def test_the_fast_pass_checks_call_ids_and_comments(call_id: int, comment: str) -> None:
    lead = LeadComment([CallMatch(call_id)], comment)
    assert _passes(lead) == (not _all_problems(lead))


_COMMENT_TEXT = st.one_of(
    st.text(max_size=1100),
    st.text(alphabet=st.sampled_from("a \t\u00e9\u044f\U0001f600\ud800\udfff"), max_size=1100),
    st.integers(min_value=0, max_value=1100).map(lambda n: "x" * n),
    st.integers(min_value=490, max_value=510).map(lambda n: "\U0001f600" * n),
)


@FUZZ
@given(_COMMENT_TEXT)
def test_the_inline_comment_check_agrees_with_the_full_pass(comment: str) -> None:
    # The fast pass checks a short comment inline: blank, lone surrogates, UTF-16 length.
    lead = LeadComment([CallMatch(1)], comment)
    assert _passes(lead) == (not _all_problems(lead))


def test_the_inline_comment_check_refuses_what_the_full_pass_refuses() -> None:
    for comment in ["", " \t\n", "\u3000", "a\ud800b", "\U0001f600" * 501, "x" * 1001]:
        assert not _passes(lead_with(CallMatch(1), comment)), repr(comment)
    for comment in ["ok", "\u043f\u0440\u0438\u0432\u0435\u0442", "\U0001f600" * 500, "x" * 1000]:
        assert _passes(lead_with(CallMatch(1), comment)), repr(comment)
