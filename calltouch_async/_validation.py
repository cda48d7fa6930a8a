"""Local checks mirroring the documented limits, run on every lead before it is sent.

A lead that fails them is never sent (it would cost a request and points, and could sink the
other 99 leads of its request). Problems are reported with Calltouch's own path style,
relative to the lead (``matching[0].callParams.callId``): the result's ``index`` says which
lead it is. The checks are plain ``isinstance`` and length tests: cheap enough for
every lead of a million-lead stream.

Nearly every lead is valid, so a lead is checked twice only when it fails: first a pass that
formats no position into paths (the common ``CallMatch`` id and a short comment inline,
everything else through the same ``_check_*`` functions with an empty path), then, only if that
found something, the full pass that names where. The passes share every rule but those two
inline checks, which ``tests/test_validation.py`` holds equal to ``_check_positive_int`` and
``_check_comment`` by property tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Any

import msgspec

from ._models import (
    DATE_FORMAT,
    CallContactMatch,
    CallMatch,
    LeadComment,
    RequestContactMatch,
    RequestMatch,
)

__all__ = [
    "MAX_COMMENT_CHARS",
    "MAX_MATCHING_ENTRIES",
    "Problem",
    "describe",
    "passes",
    "utf16_units",
    "validate_lead",
]

MAX_COMMENT_CHARS = 1000
MAX_MATCHING_ENTRIES = 20
_MD5 = re.compile(r"[0-9a-fA-F]{32}\Z")
# A lone surrogate cannot be encoded as UTF-8: msgspec would raise for the whole request.
_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_UTF8 = "must not contain lone surrogates (not encodable as UTF-8)"
# strptime alone is lenient (one-digit fields, any run of whitespace, non-ASCII digits):
# the shape is checked first, then strptime checks the calendar (no 31-02).
_DATE_SHAPE = re.compile(r"\d\d-\d\d-\d{4} \d\d:\d\d:\d\d\Z", re.ASCII)
# No Calltouch id or search depth exceeds a signed 64-bit integer (the server's integer width is
# not published): a bigger number names nothing and would likely fail the whole request.
_MAX_INT64 = 2**63 - 1
_SHORT_COMMENT = MAX_COMMENT_CHARS // 2  # characters; each counts at most 2 UTF-16 units
_UNSET = msgspec.UNSET


class Problem(msgspec.Struct, frozen=True):
    """One reason a lead cannot be sent: where (server-style path) and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def describe(problems: list[Problem]) -> str:
    """All problems of one lead as one line, for ``CommentResult.error``."""
    return "; ".join(map(str, problems))


def validate_lead(lead: object) -> list[Problem]:
    """Every problem of ``lead`` (an empty list when it can be sent); paths relative to it."""
    return [] if _passes(lead) else _all_problems(lead)


def _all_problems(lead: object) -> list[Problem]:
    """The full pass: every problem, each with its path within the lead."""
    if not isinstance(lead, LeadComment):
        return [Problem("", f"must be a LeadComment, not {type(lead).__name__}")]
    problems: list[Problem] = []
    _check_comment(lead.comment, "addComment", problems)
    _check_matching(lead.matching, "matching", problems)
    return problems


def _passes(lead: object) -> bool:
    """True when ``lead`` has no problem; formats no position and, when valid, no message.

    May answer False for a valid lead (an ``int`` subclass as id, say): the full pass then
    finds nothing, which only costs time. It must never answer True for an invalid one.
    """
    if not isinstance(lead, LeadComment):
        return False
    comment = lead.comment
    # The usual comment, inline: a non-blank str of at most MAX_COMMENT_CHARS / 2 characters
    # (so at most MAX_COMMENT_CHARS UTF-16 units) without a lone surrogate. Anything else
    # goes through _check_comment, which decides.
    if not (
        type(comment) is str
        and 0 < len(comment) <= _SHORT_COMMENT
        and (comment.isascii() or _SURROGATE.search(comment) is None)
        and not comment.isspace()
    ) and not _clean(_check_comment, comment):
        return False
    matching = lead.matching
    if type(matching) is not list and not isinstance(matching, list | tuple):
        return False
    if not 0 < len(matching) <= MAX_MATCHING_ENTRIES:
        return False
    for entry in matching:
        if type(entry) is CallMatch:  # the usual entry, inline: a plain positive int id
            params = entry.params
            call_id = params.call_id
            if type(call_id) is not int or not 0 < call_id <= _MAX_INT64:
                return False
            if (
                params.tags is not _UNSET or params.tags_logic is not _UNSET
            ) and not _clean(_check_tags, params):
                return False
        elif not _clean(_check_entry, entry):
            return False
    return True


def _clean(check: Callable[[Any, str, list[Problem]], None], value: object) -> bool:
    """Whether ``check`` finds nothing in ``value`` (with no path: nothing is formatted)."""
    found: list[Problem] = []
    check(value, "", found)
    return not found


#: The fast pass alone, for hot loops (no list per lead): True proves a lead valid; False
#: means "ask :func:`validate_lead`" (it may still be valid).
passes = _passes


def utf16_units(text: str) -> int:
    """Length as Calltouch most likely counts it [inferred]: its validation messages look like
    Java Bean Validation, whose ``@Size`` counts UTF-16 code units, so a character outside the
    Basic Multilingual Plane (most emoji) counts 2."""
    if len(text) * 2 <= MAX_COMMENT_CHARS:
        return len(text)  # cannot be over the limit whatever it holds
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _check_comment(comment: object, path: str, problems: list[Problem]) -> None:
    if not isinstance(comment, str):
        problems.append(Problem(path, f"must be a string, not {type(comment).__name__}"))
    elif not comment or comment.isspace():
        problems.append(Problem(path, "must not be blank"))
    elif (units := utf16_units(comment)) > MAX_COMMENT_CHARS:
        problems.append(
            Problem(
                path,
                f"must be at most {MAX_COMMENT_CHARS} characters counted in UTF-16 code units "
                f"(an emoji counts 2), got {units}",
            )
        )
    elif _has_surrogate(comment):
        problems.append(Problem(path, _NOT_UTF8))


def _check_matching(matching: object, path: str, problems: list[Problem]) -> None:
    if not isinstance(matching, list | tuple):
        problems.append(Problem(path, f"must be a list, not {type(matching).__name__}"))
        return
    if not matching:
        problems.append(Problem(path, "must have at least one entry"))
    elif len(matching) > MAX_MATCHING_ENTRIES:
        problems.append(
            Problem(path, f"must have at most {MAX_MATCHING_ENTRIES} entries, got {len(matching)}")
        )
    for j, entry in enumerate(matching):
        _check_entry(entry, f"{path}[{j}]", problems)


def _check_entry(entry: object, path: str, problems: list[Problem]) -> None:
    if isinstance(entry, CallMatch):
        params: Any = entry.params
        _check_positive_int(params.call_id, f"{path}.callParams.callId", problems)
        _check_tags(params, f"{path}.callParams", problems)
    elif isinstance(entry, RequestMatch):
        params = entry.params
        _check_positive_int(params.request_id, f"{path}.requestParams.requestId", problems)
        _check_tags(params, f"{path}.requestParams", problems)
    elif isinstance(entry, CallContactMatch):
        params = entry.params
        block = f"{path}.callContactParams"
        contacts = {"phones": params.phones, "md5Phones": params.md5_phones}
        _check_contact(params, block, contacts, problems)
        _check_word(params.call_type_to_match, f"{block}.callTypeToMatch", problems)
    elif isinstance(entry, RequestContactMatch):
        params = entry.params
        block = f"{path}.requestContactParams"
        contacts = {
            "phones": params.phones, "emails": params.emails, "md5Phones": params.md5_phones
        }
        _check_contact(params, block, contacts, problems)
        _check_word(params.request_type_to_match, f"{block}.requestTypeToMatch", problems)
    else:
        problems.append(
            Problem(
                path,
                "must be CallMatch, RequestMatch, CallContactMatch or RequestContactMatch, "
                f"not {type(entry).__name__}",
            )
        )


def _check_contact(
    params: Any, block: str, contacts: dict[str, object], problems: list[Problem]
) -> None:
    given = 0
    for name, values in contacts.items():
        if values is not _UNSET:
            given += _check_strings(values, f"{block}.{name}", problems)
    if not given:
        problems.append(Problem(f"{block}.phones", f"needs at least one of {', '.join(contacts)}"))
    md5_phones = contacts["md5Phones"]
    if isinstance(md5_phones, list | tuple):
        for k, value in enumerate(md5_phones):
            if isinstance(value, str) and not _MD5.match(value):
                problems.append(
                    Problem(f"{block}.md5Phones[{k}]", "must be 32 hexadecimal characters")
                )
    _check_date(params.date, f"{block}.date", problems)
    _check_positive_int(params.search_depth, f"{block}.searchDepth", problems)
    _check_tags(params, block, problems)


def _check_strings(values: object, path: str, problems: list[Problem]) -> int:
    """Check a list of non-blank strings; return how many it holds."""
    if not isinstance(values, list | tuple):
        problems.append(Problem(path, f"must be a list of strings, not {type(values).__name__}"))
        return 0
    for k, value in enumerate(values):
        if not isinstance(value, str):
            problems.append(
                Problem(f"{path}[{k}]", f"must be a string, not {type(value).__name__}")
            )
        elif not value or value.isspace():
            problems.append(Problem(f"{path}[{k}]", "must not be blank"))
        elif _has_surrogate(value):
            problems.append(Problem(f"{path}[{k}]", _NOT_UTF8))
    return len(values)


def _check_tags(params: Any, block: str, problems: list[Problem]) -> None:
    if params.tags is not _UNSET:
        _check_strings(params.tags, f"{block}.tags", problems)
    if params.tags_logic is not _UNSET:
        _check_word(params.tags_logic, f"{block}.tagsLogic", problems)


def _check_positive_int(value: object, path: str, problems: list[Problem]) -> None:
    # bool is an int subclass, and True would be sent as ``true``: reject it explicitly.
    if not isinstance(value, int) or isinstance(value, bool):
        problems.append(Problem(path, f"must be an integer, not {type(value).__name__}"))
    elif value <= 0:
        problems.append(Problem(path, f"must be positive, got {value}"))
    elif value > _MAX_INT64:
        problems.append(Problem(path, f"must be at most {_MAX_INT64} (a 64-bit integer)"))


def _check_word(value: object, path: str, problems: list[Problem]) -> None:
    if not isinstance(value, str):
        problems.append(Problem(path, f"must be a string, not {type(value).__name__}"))
    elif not value or value.isspace():
        problems.append(Problem(path, "must not be blank"))
    elif _has_surrogate(value):
        problems.append(Problem(path, _NOT_UTF8))


def _has_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def _check_date(value: object, path: str, problems: list[Problem]) -> None:
    if not isinstance(value, str):
        problems.append(
            Problem(path, f"must be a datetime or a string, not {type(value).__name__}")
        )
    elif not _is_calltouch_date(value):
        problems.append(Problem(path, f"must be dd-mm-yyyy HH:MM:SS, got {value[:40]!r}"))


@lru_cache(maxsize=4096)
def _is_calltouch_date(value: str) -> bool:
    # strptime costs microseconds and leads of one export often share dates: cache the verdict.
    if not _DATE_SHAPE.match(value):
        return False
    try:
        datetime.strptime(value, DATE_FORMAT)
    except ValueError:
        return False
    return True
