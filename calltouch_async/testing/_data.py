"""The emulator's calls and requests, and the lookup that finds a lead for one matching entry.

Interpretation of the matching block (the doc names the fields, not their semantics; every
point here is inferred and documented in ``_emulator``'s module docstring):

- ``call`` / ``request``: the lead with that id, if it exists and passes the tag filter.
- ``callContact`` / ``requestContact``: leads sharing a phone (compared in the normal form
  ``normalize_phone`` gives), an MD5 of that normal form, or (requests only) an e-mail
  (case-insensitive), whose time is within ``searchDepth`` minutes of ``date`` in either
  direction, that pass the tag filter and the ``*TypeToMatch`` filter; the closest in time wins,
  ties go to the smaller id.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

__all__ = [
    "Call",
    "ContactMatcher",
    "DataStore",
    "IdMatcher",
    "Matcher",
    "Request",
    "normalize_phone",
]

_NON_DIGITS = re.compile(r"\D+")


def normalize_phone(phone: str) -> str:
    """Digits only; an 11-digit Russian number written with a leading 8 becomes 7XXXXXXXXXX."""
    digits = _NON_DIGITS.sub("", phone)
    if len(digits) == 11 and digits[0] == "8":
        return "7" + digits[1:]
    return digits


def _naive(moment: datetime) -> datetime:
    # Calltouch dates carry no zone (presumably the account's); mixing aware and naive values
    # would fail at comparison time, far from the mistake, so refuse it here.
    if moment.tzinfo is not None:
        raise ValueError("time must be a naive datetime: Calltouch dates carry no time zone")
    return moment


@dataclass(slots=True, frozen=True)
class Call:
    """A call in the emulated account. ``phones`` are stored normalised (``normalize_phone``)."""

    call_id: int
    phones: tuple[str, ...]
    time: datetime
    tags: frozenset[str] = frozenset()
    unique: bool = False
    """First call from this caller (used by ``callTypeToMatch: nearestUniq``)."""
    unique_lead: bool = False
    """First lead of any kind from this contact (used by ``nearestUniqLead``)."""
    reference_id: str | None = None
    """``callReferenceId`` in answers: the id given when the call was imported."""
    sip_call_id: str | None = None
    """``sipCallId`` in answers: the PBX's id of the call."""

    @property
    def lead_id(self) -> int:
        return self.call_id

    def info(self) -> dict[str, object]:
        """The ``callInfo`` block of an answer."""
        return {
            "callId": self.call_id,
            "callReferenceId": self.reference_id,
            "sipCallId": self.sip_call_id,
        }


@dataclass(slots=True, frozen=True)
class Request:
    """A request (form submission) in the emulated account.

    ``phones`` are stored normalised and ``emails`` lower-cased.
    """

    request_id: int
    phones: tuple[str, ...]
    emails: tuple[str, ...]
    time: datetime
    tags: frozenset[str] = frozenset()
    unique: bool = False
    """First request from this contact (used by ``requestTypeToMatch: nearestUniq``)."""
    request_number: str | None = None
    """``requestNumber`` in answers: the id the site's form sent."""

    @property
    def lead_id(self) -> int:
        return self.request_id

    def info(self) -> dict[str, object]:
        """The ``requestInfo`` block of an answer."""
        return {"requestId": self.request_id, "requestNumber": self.request_number}


_Lead = TypeVar("_Lead", Call, Request)


@dataclass(slots=True, frozen=True)
class IdMatcher:
    """``call`` / ``request`` entry: one lead by id, optionally filtered by tags."""

    kind: str
    lead_id: int
    tags: tuple[str, ...]
    any_tag: bool


@dataclass(slots=True, frozen=True)
class ContactMatcher:
    """``callContact`` / ``requestContact`` entry, with contacts already normalised."""

    kind: str
    phones: frozenset[str]
    md5_phones: frozenset[str]
    emails: frozenset[str]
    date: datetime
    search_depth: int
    type_to_match: str
    tags: tuple[str, ...]
    any_tag: bool


Matcher = IdMatcher | ContactMatcher


@dataclass(slots=True)
class _Index:
    """Contact key -> ids, so contact matching does not scan every lead.

    Entries may go stale when a lead is replaced under the same id; lookups re-check each
    candidate against the stored lead, so stale entries cost a little time but are never wrong.
    """

    by_key: dict[str, list[int]] = field(default_factory=dict)

    def add(self, keys: Iterable[str], lead_id: int) -> None:
        for key in keys:
            self.by_key.setdefault(key, []).append(lead_id)

    def ids(self, keys: Iterable[str]) -> set[int]:
        found: set[int] = set()
        for key in keys:
            found.update(self.by_key.get(key, ()))
        return found

    def clear(self) -> None:
        self.by_key.clear()


class DataStore:
    """Calls and requests, indexed by phone, phone MD5 and e-mail."""

    __slots__ = ("_call_index", "_request_index", "calls", "requests")

    def __init__(self) -> None:
        self.calls: dict[int, Call] = {}
        self.requests: dict[int, Request] = {}
        self._call_index = _Index()
        self._request_index = _Index()

    def add_call(self, call: Call) -> Call:
        self.calls[call.call_id] = call
        self._call_index.add(_contact_keys(call.phones, ()), call.call_id)
        return call

    def add_request(self, request: Request) -> Request:
        self.requests[request.request_id] = request
        self._request_index.add(_contact_keys(request.phones, request.emails), request.request_id)
        return request

    def clear(self) -> None:
        self.calls.clear()
        self.requests.clear()
        self._call_index.clear()
        self._request_index.clear()

    # -- lookups -------------------------------------------------------------------------

    def find(self, matching: Iterable[Matcher]) -> Call | Request | None:
        """The lead found by the first entry that finds one (the doc's priority order)."""
        for matcher in matching:
            lead = self.match(matcher)
            if lead is not None:
                return lead
        return None

    def match(self, matcher: Matcher) -> Call | Request | None:
        """The lead one matching entry finds, if any."""
        if isinstance(matcher, IdMatcher):
            if matcher.kind == "call":
                return self.call_by_id(matcher.lead_id, matcher.tags, matcher.any_tag)
            return self.request_by_id(matcher.lead_id, matcher.tags, matcher.any_tag)
        if matcher.kind == "call":
            return self._nearest_call(matcher)
        return self._nearest_request(matcher)

    def _nearest_call(self, m: ContactMatcher) -> Call | None:
        # Values outside the known set are accepted (the full set is not published) and read
        # as "nearest", the least restrictive meaning.
        flag: Callable[[Call], bool] = _CALL_FILTERS.get(m.type_to_match, _any)
        candidates = self.calls_by_contact(m.phones, m.md5_phones)
        return nearest(
            candidates,
            m.date,
            m.search_depth,
            lambda c: flag(c) and tags_match(c.tags, m.tags, m.any_tag),
        )

    def _nearest_request(self, m: ContactMatcher) -> Request | None:
        flag: Callable[[Request], bool] = _REQUEST_FILTERS.get(m.type_to_match, _any)
        candidates = self.requests_by_contact(m.phones, m.md5_phones, m.emails)
        return nearest(
            candidates,
            m.date,
            m.search_depth,
            lambda r: flag(r) and tags_match(r.tags, m.tags, m.any_tag),
        )

    def call_by_id(self, call_id: int, tags: tuple[str, ...], any_tag: bool) -> Call | None:
        call = self.calls.get(call_id)
        return call if call is not None and tags_match(call.tags, tags, any_tag) else None

    def request_by_id(
        self, request_id: int, tags: tuple[str, ...], any_tag: bool
    ) -> Request | None:
        request = self.requests.get(request_id)
        return request if request is not None and tags_match(request.tags, tags, any_tag) else None

    def calls_by_contact(self, phones: frozenset[str], md5s: frozenset[str]) -> Iterator[Call]:
        """Calls having one of ``phones`` (normalised) or whose phone MD5 is in ``md5s``."""
        keys = [*phones, *(f"md5:{h}" for h in md5s)]
        return self._resolve(self._call_index.ids(keys), self.calls, phones, md5s, frozenset())

    def requests_by_contact(
        self, phones: frozenset[str], md5s: frozenset[str], emails: frozenset[str]
    ) -> Iterator[Request]:
        """Requests sharing a phone, a phone MD5 or an e-mail (lower-cased) with the query."""
        keys = [*phones, *(f"md5:{h}" for h in md5s), *(f"email:{e}" for e in emails)]
        ids = self._request_index.ids(keys)
        return self._resolve(ids, self.requests, phones, md5s, emails)

    @staticmethod
    def _resolve(
        ids: set[int],
        leads: dict[int, _Lead],
        phones: frozenset[str],
        md5s: frozenset[str],
        emails: frozenset[str],
    ) -> Iterator[_Lead]:
        for lead_id in sorted(ids):
            lead = leads.get(lead_id)
            if lead is not None and _has_contact(lead, phones, md5s, emails):
                yield lead


def _contact_keys(phones: Iterable[str], emails: Iterable[str]) -> list[str]:
    # One index serves three kinds of key; prefixes keep them from colliding.
    keys: list[str] = []
    for phone in phones:
        keys.append(phone)
        keys.append("md5:" + hashlib.md5(phone.encode()).hexdigest())
    keys.extend("email:" + email for email in emails)
    return keys


def _has_contact(
    lead: Call | Request, phones: frozenset[str], md5s: frozenset[str], emails: frozenset[str]
) -> bool:
    if not phones.isdisjoint(lead.phones):
        return True
    if md5s and any(hashlib.md5(p.encode()).hexdigest() in md5s for p in lead.phones):
        return True
    return isinstance(lead, Request) and not emails.isdisjoint(lead.emails)


def _any(lead: Call | Request) -> bool:
    return True


_CALL_FILTERS: dict[str, Callable[[Call], bool]] = {
    "nearest": _any,
    "nearestUniq": lambda c: c.unique,
    "nearestUniqLead": lambda c: c.unique_lead,
}
_REQUEST_FILTERS: dict[str, Callable[[Request], bool]] = {
    "nearest": _any,
    "nearestUniq": lambda r: r.unique,
}


def tags_match(lead_tags: frozenset[str], wanted: tuple[str, ...], any_tag: bool) -> bool:
    """No tags asked: any lead. ``and``: the lead has all of them. ``or``: at least one."""
    if not wanted:
        return True
    if any_tag:
        return not lead_tags.isdisjoint(wanted)
    return lead_tags.issuperset(wanted)


def nearest(
    candidates: Iterable[_Lead],
    date: datetime,
    depth_minutes: int,
    keep: Callable[[_Lead], bool],
) -> _Lead | None:
    """The kept candidate closest to ``date`` within ``depth_minutes``; ties: the smaller id."""
    depth = timedelta(minutes=depth_minutes)
    best: _Lead | None = None
    best_key: tuple[timedelta, int] | None = None
    for lead in candidates:
        distance = abs(lead.time - date)
        if distance > depth or not keep(lead):
            continue
        key = (distance, lead.lead_id)
        if best_key is None or key < best_key:
            best, best_key = lead, key
    return best


# -- synthetic data --------------------------------------------------------------------------

_TAGS = ("new", "repeat", "target", "vip", "spam")
GENERATE_START = datetime(2020, 10, 1, 0, 0, 0)
_SPREAD_SECONDS = 30 * 24 * 3600  # leads are spread over 30 days after ``start``
# Half the leads untagged, the rest with one tag or two.
_TAG_SETS: list[frozenset[str]] = (
    [frozenset()] * 15
    + [frozenset({t}) for t in _TAGS]
    + [frozenset(pair) for pair in itertools.combinations(_TAGS, 2)]
)


def generate(store: DataStore, calls: int, requests: int, *, seed: int, start: datetime) -> None:
    """Add ``calls`` calls (ids 1..calls) and ``requests`` requests (ids 1..requests).

    Contacts are drawn from a pool smaller than the number of leads, so some people call or
    write more than once; ``unique`` marks a contact's first call (or first request), and
    ``unique_lead`` a call that is the contact's first lead of either kind, which is what the
    flags mean in Calltouch's reports.
    """
    _naive(start)
    rng = random.Random(seed)
    pool = [_random_phone(rng) for _ in range(max(1, (calls + requests) * 2 // 3))]
    drafts: list[tuple[datetime, str, int, str]] = []
    for call_id in range(1, calls + 1):
        drafts.append((_random_time(rng, start), "call", call_id, rng.choice(pool)))
    for request_id in range(1, requests + 1):
        drafts.append((_random_time(rng, start), "request", request_id, rng.choice(pool)))
    # Uniqueness depends on what came before in time, so walk the leads in time order.
    drafts.sort()
    seen_call: set[str] = set()
    seen_request: set[str] = set()
    seen_lead: set[str] = set()
    made_calls: list[Call] = []
    made_requests: list[Request] = []
    for moment, kind, lead_id, phone in drafts:
        tags = rng.choice(_TAG_SETS)
        if kind == "call":
            unique, unique_lead = phone not in seen_call, phone not in seen_lead
            call = _synthetic_call(rng, lead_id, phone, moment, tags, unique, unique_lead)
            made_calls.append(call)
            seen_call.add(phone)
        else:
            made_requests.append(
                _synthetic_request(lead_id, phone, moment, tags, unique=phone not in seen_request)
            )
            seen_request.add(phone)
        seen_lead.add(phone)
    # Stored in id order, so iterating ``emu.calls`` reads naturally.
    for made_call in sorted(made_calls, key=lambda c: c.call_id):
        store.add_call(made_call)
    for made_request in sorted(made_requests, key=lambda r: r.request_id):
        store.add_request(made_request)


def _synthetic_call(
    rng: random.Random,
    call_id: int,
    phone: str,
    moment: datetime,
    tags: frozenset[str],
    unique: bool,
    unique_lead: bool,
) -> Call:
    return Call(
        call_id=call_id,
        phones=(phone,),
        time=moment,
        tags=tags,
        unique=unique,
        unique_lead=unique_lead,
        reference_id=f"ref-{call_id}" if rng.random() < 0.3 else None,
        sip_call_id=f"sip-{rng.getrandbits(32):08x}" if rng.random() < 0.5 else None,
    )


def _synthetic_request(
    request_id: int, phone: str, moment: datetime, tags: frozenset[str], *, unique: bool
) -> Request:
    return Request(
        request_id=request_id,
        phones=(phone,),
        emails=(f"client{phone[-6:]}@example.com",),
        time=moment,
        tags=tags,
        unique=unique,
        request_number=f"form-{request_id}",
    )


def _random_phone(rng: random.Random) -> str:
    return f"79{rng.randrange(10**9):09d}"


def _random_time(rng: random.Random, start: datetime) -> datetime:
    return start + timedelta(seconds=rng.randrange(_SPREAD_SECONDS))


def _not_a_string(name: str, values: Iterable[str]) -> None:
    # A lone string is iterable too: "79001234567" would become eleven one-digit phones.
    if isinstance(values, str):
        raise TypeError(f"{name} must be a collection of strings, not a string")


def make_call(
    call_id: int,
    *,
    phones: Iterable[str],
    time: datetime,
    tags: Iterable[str],
    unique: bool,
    unique_lead: bool,
    reference_id: str | None,
    sip_call_id: str | None,
) -> Call:
    """Build a ``Call`` from user input: phones normalised, the time checked to be naive."""
    _not_a_string("phones", phones)
    return Call(
        call_id=call_id,
        phones=tuple(normalize_phone(p) for p in phones),
        time=_naive(time),
        tags=frozenset(tags),
        unique=unique,
        unique_lead=unique_lead,
        reference_id=reference_id,
        sip_call_id=sip_call_id,
    )


def make_request(
    request_id: int,
    *,
    phones: Iterable[str],
    emails: Iterable[str],
    time: datetime,
    tags: Iterable[str],
    unique: bool,
    request_number: str | None,
) -> Request:
    """Build a ``Request`` from user input: phones normalised, e-mails lower-cased."""
    _not_a_string("phones", phones)
    _not_a_string("emails", emails)
    return Request(
        request_id=request_id,
        phones=tuple(normalize_phone(p) for p in phones),
        emails=tuple(e.strip().lower() for e in emails),
        time=_naive(time),
        tags=frozenset(tags),
        unique=unique,
        request_number=request_number,
    )
