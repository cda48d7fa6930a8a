"""The emulator's own body rules: a decoded JSON body in, parsed leads and violations out.

Written from the API page, independently of the client's models and validation, so that a
rule both sides got wrong the same way cannot hide. Every violation is collected (Symfony
reports them all at once); any violation means the request executes nothing.

``fieldPath`` follows the doc's example (``comments[0].addComment``); messages are Symfony's
standard ones, as in the doc's example. Which constraint Calltouch puts on each field is not
published: the rules below are what the doc's text and examples imply.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from ._data import ContactMatcher, IdMatcher, Matcher, normalize_phone

__all__ = [
    "MAX_COMMENT_LENGTH",
    "MAX_LEADS",
    "MAX_MATCHING",
    "ContactMatcher",
    "IdMatcher",
    "Lead",
    "Matcher",
    "Violation",
    "parse_comments",
]

MAX_LEADS = 100
MAX_MATCHING = 20
MAX_COMMENT_LENGTH = 1000
_INT64_MAX = 2**63 - 1


def _utf16_length(text: str) -> int:
    """Length in UTF-16 code units [inferred]: the doc's violation messages look like
    Java Bean Validation, whose ``@Size`` counts UTF-16 code units (an emoji is 2)."""
    return sum(2 if ord(char) > 0xFFFF else 1 for char in text)


MISSING = "This field is missing."
NOT_BLANK = "This value should not be blank."
TYPE_ARRAY = "This value should be of type array."
TYPE_OBJECT = "This value should be of type object."
TYPE_STRING = "This value should be of type string."
TYPE_INT = "This value should be of type int."
POSITIVE = "This value should be positive."
CHOICE = "The value you selected is not a valid choice."
TOO_FEW = "This collection should contain 1 element or more."
TOO_LONG = f"This value is too long. It should have {MAX_COMMENT_LENGTH} characters or less."
DATETIME = "This value is not a valid datetime."
PHONE = "This value is not a valid phone number."
EMAIL = "This value is not a valid email address."
INVALID = "This value is not valid."


# Per-item check of a contact list: (normal form, violation message or "").
_Normalizer = Callable[[str], tuple[str, str]]


def too_many(limit: int) -> str:
    return f"This collection should contain {limit} elements or less."


_DATE_SHAPE = re.compile(r"[0-9]{2}-[0-9]{2}-[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2}")
_DATE_FORMAT = "%d-%m-%Y %H:%M:%S"
_MD5 = re.compile(r"[0-9a-fA-F]{32}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")

# type -> (params key, kind of lead it finds, contact lists that count as "a contact")
_TYPES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "call": ("callParams", "call", ()),
    "request": ("requestParams", "request", ()),
    "callContact": ("callContactParams", "call", ("phones", "md5Phones")),
    "requestContact": ("requestContactParams", "request", ("phones", "emails", "md5Phones")),
}


class Violation(NamedTuple):
    field_path: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"fieldPath": self.field_path, "message": self.message}


@dataclass(slots=True, frozen=True)
class Lead:
    text: str
    matching: tuple[Matcher, ...]


def parse_comments(body: dict[str, object]) -> tuple[list[Lead], list[Violation]]:
    """Check a decoded request body; return its leads (complete only if no violations)."""
    checker = _Checker()
    leads = checker.comments(body)
    return leads, checker.violations


class _Checker:
    """Walks one body, appending to ``violations``; each method returns its parsed part."""

    __slots__ = ("violations",)

    def __init__(self) -> None:
        self.violations: list[Violation] = []

    def fail(self, path: str, message: str) -> None:
        self.violations.append(Violation(path, message))

    def comments(self, body: dict[str, object]) -> list[Lead]:
        if "comments" not in body:
            self.fail("comments", MISSING)
            return []
        comments = body["comments"]
        if not isinstance(comments, list):
            self.fail("comments", TYPE_ARRAY)
            return []
        if not comments:
            self.fail("comments", TOO_FEW)
        elif len(comments) > MAX_LEADS:
            self.fail("comments", too_many(MAX_LEADS))
        leads = [self.lead(f"comments[{i}]", item) for i, item in enumerate(comments)]
        return [lead for lead in leads if lead is not None]

    def lead(self, path: str, item: object) -> Lead | None:
        if not isinstance(item, dict):
            self.fail(path, TYPE_OBJECT)
            return None
        text = self.comment_text(f"{path}.addComment", item.get("addComment"))
        matching = self.matching(f"{path}.matching", item)
        if text is None or matching is None:
            return None
        return Lead(text, matching)

    def comment_text(self, path: str, value: object) -> str | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            self.fail(path, NOT_BLANK)
        elif not isinstance(value, str):
            self.fail(path, TYPE_STRING)
        elif _utf16_length(value) > MAX_COMMENT_LENGTH:
            self.fail(path, TOO_LONG)
        else:
            return value
        return None

    def matching(self, path: str, item: dict[str, object]) -> tuple[Matcher, ...] | None:
        if "matching" not in item:
            self.fail(path, MISSING)
            return None
        entries = item["matching"]
        if not isinstance(entries, list):
            self.fail(path, TYPE_ARRAY)
            return None
        if not entries:
            self.fail(path, TOO_FEW)
        elif len(entries) > MAX_MATCHING:
            self.fail(path, too_many(MAX_MATCHING))
        before = len(self.violations)
        parsed = [self.entry(f"{path}[{j}]", entry) for j, entry in enumerate(entries)]
        if len(self.violations) != before:
            return None
        return tuple(m for m in parsed if m is not None)

    def entry(self, path: str, entry: object) -> Matcher | None:
        if not isinstance(entry, dict):
            self.fail(path, TYPE_OBJECT)
            return None
        kind = entry.get("type")
        if kind is None:
            self.fail(f"{path}.type", MISSING)
            return None
        if not isinstance(kind, str) or kind not in _TYPES:
            self.fail(f"{path}.type", CHOICE)
            return None
        key, lead_kind, contacts = _TYPES[kind]
        params = entry.get(key)
        if params is None:
            self.fail(f"{path}.{key}", MISSING)
            return None
        if not isinstance(params, dict):
            self.fail(f"{path}.{key}", TYPE_OBJECT)
            return None
        if contacts:
            return self.contact_params(f"{path}.{key}", lead_kind, contacts, params)
        return self.id_params(f"{path}.{key}", lead_kind, params)

    def id_params(self, path: str, kind: str, params: dict[str, object]) -> IdMatcher | None:
        id_key = "callId" if kind == "call" else "requestId"
        lead_id = self.positive_int(f"{path}.{id_key}", params.get(id_key))
        tags, any_tag = self.tags(path, params)
        if lead_id is None or tags is None:
            return None
        return IdMatcher(kind, lead_id, tags, any_tag)

    def contact_params(
        self, path: str, kind: str, contacts: tuple[str, ...], params: dict[str, object]
    ) -> ContactMatcher | None:
        before = len(self.violations)
        phones = self.string_list(f"{path}.phones", params.get("phones"), _phone)
        md5s = self.string_list(f"{path}.md5Phones", params.get("md5Phones"), _md5)
        emails: frozenset[str] | None = frozenset()
        if "emails" in contacts:
            emails = self.string_list(f"{path}.emails", params.get("emails"), _email)
        if len(self.violations) == before and not (phones or md5s or emails):
            self.fail(f"{path}.phones", NOT_BLANK)
        date = self.date(f"{path}.date", params.get("date"))
        depth = self.positive_int(f"{path}.searchDepth", params.get("searchDepth"))
        type_key = "callTypeToMatch" if kind == "call" else "requestTypeToMatch"
        type_to_match = self.string(f"{path}.{type_key}", params.get(type_key))
        tags, any_tag = self.tags(path, params)
        if len(self.violations) != before:
            return None
        assert phones is not None and md5s is not None and emails is not None
        assert date is not None and depth is not None and type_to_match is not None
        assert tags is not None
        return ContactMatcher(kind, phones, md5s, emails, date, depth, type_to_match, tags, any_tag)

    def tags(self, path: str, params: dict[str, object]) -> tuple[tuple[str, ...] | None, bool]:
        """``tags`` (absent = no filter) and whether ``tagsLogic`` asks for any tag (``or``)."""
        logic = params.get("tagsLogic", "and")
        if not isinstance(logic, str):
            self.fail(f"{path}.tagsLogic", TYPE_STRING)
        raw = params.get("tags")
        if raw is None:
            return (), False
        if not isinstance(raw, list):
            self.fail(f"{path}.tags", TYPE_ARRAY)
            return None, False
        if not all(isinstance(t, str) and t.strip() for t in raw):
            self.fail(f"{path}.tags", NOT_BLANK)
            return None, False
        # Values other than "or" (the published set is incomplete) mean "and", the doc's value.
        return tuple(raw), logic == "or"

    def positive_int(self, path: str, value: object) -> int | None:
        if value is None:
            self.fail(path, MISSING)
        # JSON true/false decode to bool, which Python counts as int; Calltouch ids are not.
        # Past 2**63 - 1 a JSON integer no longer fits a 64-bit int (PHP reads it as a float).
        elif not isinstance(value, int) or isinstance(value, bool) or value > _INT64_MAX:
            self.fail(path, TYPE_INT)
        elif value <= 0:
            self.fail(path, POSITIVE)
        else:
            return value
        return None

    def string(self, path: str, value: object) -> str | None:
        if value is None:
            self.fail(path, MISSING)
        elif not isinstance(value, str):
            self.fail(path, TYPE_STRING)
        else:
            return value
        return None

    def date(self, path: str, value: object) -> datetime | None:
        text = self.string(path, value)
        if text is None:
            return None
        if _DATE_SHAPE.fullmatch(text):
            try:
                return datetime.strptime(text, _DATE_FORMAT)
            except ValueError:  # right shape, impossible date such as 31-02-2020
                pass
        self.fail(path, DATETIME)
        return None

    def string_list(
        self, path: str, value: object, normalize: _Normalizer
    ) -> frozenset[str] | None:
        """An optional list of strings, each normalised; ``None`` (and a violation) if bad."""
        if value is None:
            return frozenset()
        if not isinstance(value, list):
            self.fail(path, TYPE_ARRAY)
            return None
        out: set[str] = set()
        for item in value:
            if not isinstance(item, str):
                self.fail(path, TYPE_STRING)
                return None
            normal, problem = normalize(item)
            if problem:
                self.fail(path, problem)
                return None
            out.add(normal)
        return frozenset(out)


def _phone(item: str) -> tuple[str, str]:
    if not item.strip():
        return "", NOT_BLANK
    digits = normalize_phone(item)
    return digits, "" if digits else PHONE


def _md5(item: str) -> tuple[str, str]:
    return item.lower(), "" if _MD5.fullmatch(item) else INVALID


def _email(item: str) -> tuple[str, str]:
    email = item.strip().lower()
    return email, "" if _EMAIL.fullmatch(email) else EMAIL
