"""Benchmark 2: encoding a 100-lead request and decoding a 100-result answer.

``python benchmarks/bench_codec.py`` (stdlib ``timeit``; best of 5 runs, each run long enough
to time reliably). Compared on the same data:

- msgspec, as the library does it: ``encode_request(leads)`` and ``decode_response(body)``
  (typed: every field checked, ids kept as number or string);
- stdlib ``json`` with hand-built dicts: the dicts are built from the same lead objects, as a
  user of the library would have to (that is part of the encode cost), then
  ``json.dumps(...).encode()``; ``json.dumps`` of prebuilt dicts is shown separately.
  Decoding is ``json.loads`` alone: plain dicts, nothing checked;
- pydantic v2 models of the same wire shape (``pip install -e '.[bench]'``): encode is
  ``model_dump_json`` of prebuilt models, decode is ``model_validate_json`` (typed, like
  msgspec). Skipped with a note when pydantic is not installed.

Every encoder's output is checked to parse to the same JSON before anything is timed.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import timeit
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec

from calltouch_async._models import (
    UNSET,
    CallContactMatch,
    CallContactParams,
    CallMatch,
    CallParams,
    CallTypeToMatch,
    LeadComment,
    Match,
    RequestContactMatch,
    RequestContactParams,
    RequestMatch,
    RequestParams,
    RequestTypeToMatch,
    TagsLogic,
    decode_response,
    encode_request,
)

LEADS = 100
REPEAT = 5  # runs per measurement; the best one is reported

COMMENTS = [
    "Клиент перезвонил, уточнил стоимость доставки в Казань; отправили КП на почту.",
    "Не дозвонились: абонент недоступен. Повторный звонок запланирован на завтра, 11:00.",
    "Сделка закрыта: оплата по счёту № 4521, менеджер — Ирина. Клиент просит «тихий» режим.",
    "Заявка с сайта дублирует звонок; комментарий оставлен для отчёта по качеству лидов.",
]


# --------------------------------------------------------------------------- data


def make_leads(n: int = LEADS) -> list[LeadComment]:
    """``n`` realistic leads: 2-3 matching entries with tags, one contact entry, Russian text."""
    leads = []
    start = datetime(2024, 3, 1, 9, 0, 0)
    for i in range(n):
        when = start + timedelta(minutes=37 * i)
        phone = f"7915{i:07d}"
        matching: list[Match] = [
            CallMatch(call_id=120_000_000 + i, tags=["повторный", "сайт"],
                      tags_logic=TagsLogic.AND),
        ]
        if i % 2:
            matching.append(
                RequestMatch(request_id=50_000_000 + i, tags=["форма"], tags_logic=TagsLogic.OR)
            )
            matching.append(
                RequestContactMatch(
                    emails=[f"client{i}@example.ru"],
                    phones=[phone],
                    date=when,
                    tags=["форма"],
                    tags_logic=TagsLogic.AND,
                    request_type_to_match=RequestTypeToMatch.NEAREST_UNIQ,
                    search_depth=120,
                )
            )
        else:
            matching.append(
                CallContactMatch(
                    phones=[phone, f"+7 (915) {i:03d}-11-22"],
                    date=when,
                    tags=["звонок"],
                    tags_logic=TagsLogic.AND,
                    call_type_to_match=CallTypeToMatch.NEAREST_UNIQ_LEAD,
                    search_depth=262_800,
                )
            )
        leads.append(LeadComment(matching, f"{COMMENTS[i % len(COMMENTS)]} (лид {i})"))
    return leads


def make_response(n: int = LEADS) -> bytes:
    """A success answer for ``n`` leads: calls and requests, ids as numbers and strings,
    some leads not found."""
    comments: list[dict[str, Any]] = []
    for i in range(n):
        if i % 10 == 9:
            comments.append({"callInfo": None, "requestInfo": None, "commented": False,
                             "error": "Лид не найден по заданным параметрам матчинга"})
        elif i % 2:
            comments.append({
                "callInfo": None,
                "requestInfo": {"requestId": str(50_000_000 + i), "requestNumber": f"form-{i}"},
                "commented": True, "error": None,
            })
        else:
            comments.append({
                "callInfo": {"callId": 120_000_000 + i, "callReferenceId": f"ref{i}",
                             "sipCallId": None},
                "requestInfo": None, "commented": True, "error": None,
            })
    return json.dumps({"meta": [], "data": {"comments": comments}}, ensure_ascii=False).encode()


# --------------------------------------------------------------------------- stdlib json


# Per params class: (attribute, wire name) pairs, worked out once, as a hand-written
# converter would hard-code them.
_WIRE_FIELDS: dict[type, tuple[tuple[str, str], ...]] = {
    cls: tuple(zip(cls.__struct_fields__, cls.__struct_encode_fields__, strict=True))
    for cls in (CallParams, RequestParams, CallContactParams, RequestContactParams)
}


def _params_dict(params: msgspec.Struct) -> dict[str, Any]:
    # The hand-written way: one key at a time, skipping what was not set.
    out: dict[str, Any] = {}
    for name, wire in _WIRE_FIELDS[type(params)]:
        value = getattr(params, name)
        if value is not UNSET:
            out[wire] = value
    return out


def lead_dict(lead: LeadComment) -> dict[str, Any]:
    return {
        "matching": [
            {"type": m.match_type, f"{m.match_type}Params": _params_dict(m.params)}
            for m in lead.matching
        ],
        "addComment": lead.comment,
    }


def json_encode_from_leads(leads: list[LeadComment]) -> bytes:
    return json_dumps({"comments": [lead_dict(lead) for lead in leads]})


def json_dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- pydantic


PydanticCodec = tuple[Callable[[], bytes], Callable[[bytes], object], Callable[[bytes], Any]]


def pydantic_codec(leads: list[LeadComment]) -> PydanticCodec | str:
    """(encode the prebuilt models, decode a body, decode a body to builtins) with pydantic v2,
    or why it cannot run."""
    try:
        import pydantic
        from pydantic import BaseModel, ConfigDict, Field
        from pydantic.alias_generators import to_camel
    except ImportError:
        return "pydantic is not installed (pip install -e '.[bench]'): row skipped"
    if not pydantic.VERSION.startswith("2."):
        return f"pydantic {pydantic.VERSION} is not v2: row skipped"

    class Wire(BaseModel):
        model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    class CallParams(Wire):
        call_id: int
        tags: list[str] | None = None
        tags_logic: str | None = None

    class RequestParams(Wire):
        request_id: int
        tags: list[str] | None = None
        tags_logic: str | None = None

    class ContactParams(Wire):
        phones: list[str] | None = None
        md5_phones: list[str] | None = None
        date: str
        tags: list[str] | None = None
        tags_logic: str | None = None
        search_depth: int

    class CallContactParams(ContactParams):
        call_type_to_match: str

    class RequestContactParams(ContactParams):
        emails: list[str] | None = None
        request_type_to_match: str

    class PCallMatch(Wire):
        type: Literal["call"] = "call"
        call_params: CallParams

    class PRequestMatch(Wire):
        type: Literal["request"] = "request"
        request_params: RequestParams

    class PCallContactMatch(Wire):
        type: Literal["callContact"] = "callContact"
        call_contact_params: CallContactParams

    class PRequestContactMatch(Wire):
        type: Literal["requestContact"] = "requestContact"
        request_contact_params: RequestContactParams

    PMatch = Annotated[
        PCallMatch | PRequestMatch | PCallContactMatch | PRequestContactMatch,
        Field(discriminator="type"),
    ]

    class PLead(Wire):
        matching: list[PMatch]
        add_comment: str

    class PRequest(Wire):
        comments: list[PLead]

    class PCallInfo(Wire):
        call_id: int | str | None = None
        call_reference_id: int | str | None = None
        sip_call_id: int | str | None = None

    class PRequestInfo(Wire):
        request_id: int | str | None = None
        request_number: int | str | None = None

    class POutcome(Wire):
        commented: bool = False
        call_info: PCallInfo | None = None
        request_info: PRequestInfo | None = None
        error: str | None = None

    class PViolation(Wire):
        field_path: str = ""
        message: str = ""

    class PValidationErrorData(Wire):
        violations: list[PViolation] = Field(default_factory=list)

    class PApiErrorData(Wire):
        error_code: int | str | None = None
        error_message: str | None = None

    class PData(Wire):
        comments: list[POutcome] | None = None
        type: str | None = None
        api_error_data: PApiErrorData | None = None
        validation_error_data: PValidationErrorData | None = None

    class PBody(Wire):
        data: PData

    # The same leads as pydantic models (built once: like msgspec Structs, they are built
    # when the caller makes its leads, not when a request is encoded).
    prebuilt = PRequest.model_validate({"comments": [lead_dict(lead) for lead in leads]})

    def encode() -> bytes:
        return prebuilt.model_dump_json(by_alias=True, exclude_none=True).encode()

    def decode(body: bytes) -> object:
        return PBody.model_validate_json(body).data

    def to_builtins(body: bytes) -> Any:
        return PBody.model_validate_json(body).data.model_dump(by_alias=True)

    return encode, decode, to_builtins


# --------------------------------------------------------------------------- timing


def best_us(stmts: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Best of ``REPEAT`` runs of each statement, in microseconds per call.

    The runs are interleaved (one run of each statement per round), so that a burst of load
    from other processes slows every variant alike instead of one row.
    """
    timers = {name: timeit.Timer(stmt) for name, stmt in stmts.items()}
    # autorange: enough calls for one run to take at least 0.2 s.
    numbers = {name: timer.autorange()[0] for name, timer in timers.items()}
    best = dict.fromkeys(stmts, float("inf"))
    for _ in range(REPEAT):
        for name, timer in timers.items():
            best[name] = min(best[name], timer.timeit(numbers[name]) / numbers[name] * 1e6)
    return best


def ratio(value: float | None, base: float) -> str:
    return "-" if value is None else f"{value / base:.1f}x"


def micro(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def main() -> int:
    leads = make_leads()
    body = make_response()
    prebuilt = {"comments": [lead_dict(lead) for lead in leads]}
    pyd = pydantic_codec(leads)

    # Same output from every encoder, same content from every decoder, before timing.
    expected = json.loads(encode_request(leads))
    assert json.loads(json_encode_from_leads(leads)) == expected
    assert json.loads(json_dumps(prebuilt)) == expected
    decoded = decode_response(body)
    assert decoded.comments is not None and len(decoded.comments) == LEADS
    if not isinstance(pyd, str):
        assert json.loads(pyd[0]()) == expected
        assert pyd[2](body) == msgspec.to_builtins(decoded)

    stmts: dict[str, Callable[[], object]] = {
        "msgspec encode": lambda: encode_request(leads),
        "msgspec decode": lambda: decode_response(body),
        "json encode": lambda: json_encode_from_leads(leads),
        "json decode": lambda: json.loads(body),
        "json dumps": lambda: json_dumps(prebuilt),
    }
    notes = []
    if isinstance(pyd, str):
        notes.append(pyd)
    else:
        pyd_encode, pyd_decode, _ = pyd
        stmts["pydantic encode"] = pyd_encode
        stmts["pydantic decode"] = lambda: pyd_decode(body)
    us = best_us(stmts)

    enc, dec = us["msgspec encode"], us["msgspec decode"]
    rows: list[tuple[str, float | None, float | None]] = [
        ("msgspec: `encode_request` / `decode_response` (typed)", enc, dec),
        ("json: dicts built from the leads + `dumps` / `loads` (untyped)",
         us["json encode"], us["json decode"]),
        ("json: `dumps` of prebuilt dicts", us["json dumps"], None),
    ]
    if not isinstance(pyd, str):
        rows.append((
            "pydantic v2: `model_dump_json` of prebuilt models / `model_validate_json` (typed)",
            us["pydantic encode"], us["pydantic decode"],
        ))

    request_size = len(encode_request(leads))
    print(f"Codec: a {LEADS}-lead request ({request_size:,} bytes, "
          f"{sum(len(lead.matching) for lead in leads)} matching entries) and a "
          f"{LEADS}-result answer ({len(body):,} bytes); best of {REPEAT} timeit runs, "
          f"µs per request/answer.")
    print(f"Python {platform.python_version()}, msgspec {msgspec.__version__}"
          + ("" if isinstance(pyd, str) else f", pydantic {_pydantic_version()}"))
    print()
    print("| codec | encode µs | decode µs | encode vs msgspec | decode vs msgspec |")
    print("|---|---:|---:|---:|---:|")
    for name, e, d in rows:
        print(f"| {name} | {micro(e)} | {micro(d)} | {ratio(e, enc)} | {ratio(d, dec)} |")
    for note in notes:
        print(f"\nNote: {note}")
    return 0


def _pydantic_version() -> str:
    import pydantic

    return pydantic.VERSION


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # --help
    sys.exit(main())
