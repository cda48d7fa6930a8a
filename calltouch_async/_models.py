"""Wire models: the leads you send, the answers Calltouch gives, and the per-lead result.

Everything here is a :class:`msgspec.Struct`, encoded and decoded by msgspec in one native pass
(no per-lead dict building). The matching variants are *flat to construct*::

    CallMatch(call_id=2, tags=["vip"], tags_logic=TagsLogic.AND)

but keep the *nested wire layout* Calltouch expects::

    {"type": "call", "callParams": {"callId": 2, "tags": ["vip"], "tagsLogic": "and"}}

msgspec Structs may not define ``__init__``, so a tiny metaclass turns the flat keyword
arguments into the params block at construction time; decoding never goes through it.
Optional fields left out are :data:`msgspec.UNSET` and are omitted from the JSON.

This module knows nothing of HTTP.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeAlias

import msgspec
from msgspec import UNSET, UnsetType

from ._errors import MalformedResponseError

__all__ = [
    "DATE_FORMAT",
    "UNSET",
    "CallContactMatch",
    "CallInfo",
    "CallMatch",
    "CallTypeToMatch",
    "CommentResult",
    "CommentStatus",
    "LeadComment",
    "LeadOutcome",
    "Match",
    "RequestContactMatch",
    "RequestInfo",
    "RequestMatch",
    "RequestTypeToMatch",
    "ResponseData",
    "TagsLogic",
    "UnsetType",
    "Violation",
    "decode_response",
    "encode_request",
    "format_date",
    "normalize_phone",
]

#: Calltouch's date format, day first: ``01-10-2020 12:00:00``.
DATE_FORMAT = "%d-%m-%Y %H:%M:%S"


# --------------------------------------------------------------------------- named values
# The published sets are incomplete, so fields are typed ``str``: these members are strings,
# and any other string still passes through to Calltouch.


class TagsLogic(enum.StrEnum):
    """How ``tags`` combine: the lead must carry all of them, or any of them."""

    AND = "and"
    OR = "or"


class CallTypeToMatch(enum.StrEnum):
    """Which call a ``callContact`` entry picks among those found near ``date``."""

    NEAREST = "nearest"
    NEAREST_UNIQ = "nearestUniq"
    NEAREST_UNIQ_LEAD = "nearestUniqLead"


class RequestTypeToMatch(enum.StrEnum):
    """Which request a ``requestContact`` entry picks among those found near ``date``."""

    NEAREST = "nearest"
    NEAREST_UNIQ = "nearestUniq"


def format_date(value: datetime | str) -> str:
    """``datetime`` → ``dd-mm-yyyy HH:MM:SS`` (wall time as given); a string is kept as is."""
    return value.strftime(DATE_FORMAT) if isinstance(value, datetime) else value


def normalize_phone(phone: str) -> str:
    """ASCII digits only, and an 11-digit number starting with 8 gets a leading 7.

    ``"+7 (915) 888-11-22"`` → ``"79158881122"``; ``"84953338877"`` → ``"74953338877"``.
    Calltouch accepts masked numbers too, so nothing applies this for you: call it when you
    want the normal form that public Calltouch code sends.
    """
    # isdecimal, not isdigit: "²" is a digit but no decimal; other scripts' decimals (full-width
    # "８") become their ASCII digit, so the result is always ASCII.
    digits = "".join(ch if ch.isascii() else str(int(ch)) for ch in phone if ch.isdecimal())
    if len(digits) == 11 and digits[0] == "8":
        return "7" + digits[1:]
    return digits


# --------------------------------------------------------------------------- params blocks


class _Params(msgspec.Struct, rename="camel", omit_defaults=True):
    """A ``*Params`` block: snake_case in Python, camelCase on the wire, unset fields omitted."""


class CallParams(_Params):
    call_id: int
    tags: list[str] | UnsetType = UNSET
    tags_logic: str | UnsetType = UNSET


class RequestParams(_Params):
    request_id: int
    tags: list[str] | UnsetType = UNSET
    tags_logic: str | UnsetType = UNSET


class _ContactParams(_Params, kw_only=True):
    date: str
    search_depth: int
    phones: list[str] | UnsetType = UNSET
    md5_phones: list[str] | UnsetType = UNSET
    tags: list[str] | UnsetType = UNSET
    tags_logic: str | UnsetType = UNSET

    def __post_init__(self) -> None:
        # Accept a datetime (the annotation is the wire type): format it once, here.
        self.date = format_date(self.date)


class CallContactParams(_ContactParams, kw_only=True):
    call_type_to_match: str


class RequestContactParams(_ContactParams, kw_only=True):
    request_type_to_match: str
    emails: list[str] | UnsetType = UNSET


# --------------------------------------------------------------------------- matching entries


class _FlatMatchMeta(msgspec.StructMeta):
    """Builds a match entry from flat keyword arguments: ``CallMatch(call_id=1)``.

    Calling the class constructs its ``_params_type`` from the arguments and wraps it. Decoding
    and ``msgspec.structs`` helpers bypass this and construct the Struct directly; ``pickle``
    and ``copy.deepcopy`` call the class with the finished params block, which is kept as is.
    """

    _params_type: type[_Params]

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and type(args[0]) is cls._params_type:
            return super().__call__(args[0])
        return super().__call__(cls._params_type(*args, **kwargs))


class _Match(msgspec.Struct, metaclass=_FlatMatchMeta, tag_field="type"):
    """Base of the four matching variants (a msgspec tagged union on ``"type"``)."""

    _params_type: ClassVar[type[_Params]]

    @property
    def match_type(self) -> str:
        """The wire ``type`` of this entry (``"call"``, ``"requestContact"``...)."""
        return str(self.__struct_config__.tag)


class CallMatch(_Match, tag="call", rename={"params": "callParams"}):
    """A call by its Calltouch id, optionally only if it carries ``tags``."""

    params: CallParams
    _params_type = CallParams

    if TYPE_CHECKING:

        def __init__(
            self,
            call_id: int,
            *,
            tags: list[str] | UnsetType = UNSET,
            tags_logic: str | UnsetType = UNSET,
        ) -> None: ...


class RequestMatch(_Match, tag="request", rename={"params": "requestParams"}):
    """A request (form submission) by its Calltouch id, optionally only with ``tags``."""

    params: RequestParams
    _params_type = RequestParams

    if TYPE_CHECKING:

        def __init__(
            self,
            request_id: int,
            *,
            tags: list[str] | UnsetType = UNSET,
            tags_logic: str | UnsetType = UNSET,
        ) -> None: ...


class CallContactMatch(_Match, tag="callContact", rename={"params": "callContactParams"}):
    """A call from one of ``phones`` (or ``md5_phones``) within ``search_depth`` minutes of
    ``date``, picked by ``call_type_to_match``."""

    params: CallContactParams
    _params_type = CallContactParams

    if TYPE_CHECKING:

        def __init__(
            self,
            *,
            date: datetime | str,
            search_depth: int,
            call_type_to_match: str,
            phones: list[str] | UnsetType = UNSET,
            md5_phones: list[str] | UnsetType = UNSET,
            tags: list[str] | UnsetType = UNSET,
            tags_logic: str | UnsetType = UNSET,
        ) -> None: ...


class RequestContactMatch(
    _Match, tag="requestContact", rename={"params": "requestContactParams"}
):
    """A request from one of ``emails``/``phones``/``md5_phones`` within ``search_depth``
    minutes of ``date``, picked by ``request_type_to_match``."""

    params: RequestContactParams
    _params_type = RequestContactParams

    if TYPE_CHECKING:

        def __init__(
            self,
            *,
            date: datetime | str,
            search_depth: int,
            request_type_to_match: str,
            emails: list[str] | UnsetType = UNSET,
            phones: list[str] | UnsetType = UNSET,
            md5_phones: list[str] | UnsetType = UNSET,
            tags: list[str] | UnsetType = UNSET,
            tags_logic: str | UnsetType = UNSET,
        ) -> None: ...


Match: TypeAlias = CallMatch | RequestMatch | CallContactMatch | RequestContactMatch


class LeadComment(msgspec.Struct):
    """One lead to comment: ``matching`` in priority order (1..20 entries), and the text."""

    matching: list[Match]
    comment: str = msgspec.field(name="addComment")


class _CommentRequest(msgspec.Struct):
    comments: Sequence[LeadComment]


# --------------------------------------------------------------------------- responses


class CallInfo(msgspec.Struct, rename="camel", frozen=True):
    """The call a comment went to. Ids arrive as numbers or strings; both are kept as sent."""

    call_id: int | str | None = None
    call_reference_id: int | str | None = None
    sip_call_id: int | str | None = None


class RequestInfo(msgspec.Struct, rename="camel", frozen=True):
    """The request a comment went to."""

    request_id: int | str | None = None
    request_number: int | str | None = None


class LeadOutcome(msgspec.Struct, rename="camel", frozen=True):
    """One entry of ``data.comments``: what Calltouch did with the lead at that position.

    ``commented`` is required: an entry without it says nothing about whether the comment was
    applied, so the answer is malformed (its leads end ``unknown``), never ``not_commented``.
    """

    commented: bool
    call_info: CallInfo | None = None
    request_info: RequestInfo | None = None
    error: str | None = None


def holds_text(outcomes: list[LeadOutcome]) -> bool:
    """Whether any outcome carries text: an ``error``, or an id sent as a string.

    Nearly every answer holds numbers and nulls only, and text is all an echoing server can
    put the token in (unless the token reads as an integer). One tight loop over the known fields
    answers that at a third of the cost of looking at each outcome in general.
    """
    for outcome in outcomes:
        if outcome.error is not None:
            return True
        call = outcome.call_info
        if call is not None and (
            type(call.call_id) is str
            or type(call.call_reference_id) is str
            or type(call.sip_call_id) is str
        ):
            return True
        request = outcome.request_info
        if request is not None and (
            type(request.request_id) is str or type(request.request_number) is str
        ):
            return True
    return False


class Violation(msgspec.Struct, rename="camel", frozen=True):
    """A validation failure: ``field_path`` like ``comments[3].addComment``."""

    field_path: str = ""
    message: str = ""


class _ValidationErrorData(msgspec.Struct, frozen=True):
    violations: list[Violation] = msgspec.field(default_factory=list)


class ApiErrorData(msgspec.Struct, rename="camel", frozen=True):
    """``data.apiErrorData``: any API error other than validation."""

    error_code: int | str | None = None
    error_message: str | None = None


class ResponseData(msgspec.Struct, rename="camel", frozen=True):
    """The ``data`` member of any answer: success (``comments``) or an error."""

    comments: list[LeadOutcome] | None = None
    type: str | None = None
    api_error_data: ApiErrorData | None = None
    validation_error_data: _ValidationErrorData | None = None

    @property
    def violations(self) -> list[Violation]:
        """The violations of a ``validationError`` answer (empty otherwise)."""
        data = self.validation_error_data
        return data.violations if data is not None else []


class _ResponseBody(msgspec.Struct, frozen=True):
    data: ResponseData


# --------------------------------------------------------------------------- results


class CommentStatus(enum.StrEnum):
    """The one outcome every lead ends in. See the README's "What can go wrong"."""

    COMMENTED = "commented"
    """Calltouch commented the lead."""
    NOT_COMMENTED = "not_commented"
    """Calltouch answered ``commented: false`` (``error`` holds its reason, e.g. not found)."""
    INVALID = "invalid"
    """Failed local validation; never sent, cost nothing."""
    REJECTED = "rejected"
    """Calltouch's validation named this lead; the rest of its request was re-sent without it."""
    FAILED = "failed"
    """Definitely not applied (retries exhausted, or a non-retryable error)."""
    UNKNOWN = "unknown"
    """Sent, but the answer was lost: it may or may not have been applied."""


_COMMENTED: Final = CommentStatus.COMMENTED


class CommentResult(msgspec.Struct, frozen=True, kw_only=True):
    """The result for one lead. ``index`` is the lead's position in the caller's input."""

    # Tracked by the garbage collector (no gc=False): ``lead`` is the caller's own object,
    # which may refer back to the result (a subclass carrying the caller's bookkeeping).

    index: int
    lead: LeadComment
    status: CommentStatus
    call_info: CallInfo | None = None
    request_info: RequestInfo | None = None
    error: str | None = None

    @property
    def commented(self) -> bool:
        """True only when Calltouch confirmed the comment."""
        # Identity first: a member looked up on its class costs more than the test itself.
        status: str = self.status  # a plain "commented" given by hand counts too
        return status is _COMMENTED or status == _COMMENTED


# --------------------------------------------------------------------------- codec

def _encode_subclass(value: Any) -> Any:
    """msgspec encodes ``str``/``int`` but not their subclasses (``numpy.str_``, ``Markup``,
    a custom ``int``): send their plain value, as validation already accepted them."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    raise TypeError(f"cannot encode {type(value).__name__} in a Calltouch request")


# One encoder and one decoder for the life of the process: msgspec caches type info in them.
_encoder = msgspec.json.Encoder(enc_hook=_encode_subclass)
_response_decoder = msgspec.json.Decoder(_ResponseBody)


def encode_request(leads: Sequence[LeadComment]) -> bytes:
    """The JSON body for one request: ``{"comments": [...]}``."""
    return _encoder.encode(_CommentRequest(leads))


def decode_response(body: bytes) -> ResponseData:
    """Parse any answer of the comment method into its ``data`` member.

    Raises :class:`~calltouch_async._errors.MalformedResponseError` (quoting a short excerpt)
    when the body is not JSON or not the documented shape.
    """
    try:
        return _response_decoder.decode(body).data
    except msgspec.DecodeError as exc:
        raise MalformedResponseError(str(exc), body) from None
