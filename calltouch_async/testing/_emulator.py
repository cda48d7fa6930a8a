"""A local stand-in for Calltouch's ``POST /lead-service/v1/api/comment/lead/add``.

The emulator is an independent oracle for the client's tests: it parses and checks bodies with
its own code and imports nothing from the client side, so a field name or rule that the client
got wrong cannot be confirmed by the same mistake here.

Each request goes through, in order: inbound jitter (a sleep modelling network spread) →
arrival (numbered, timed, recorded in the ledger) → the rate window → injected faults that act
before executing → credentials → body parsing → validation → matching and applying each lead →
latency → the answer (which a fault may then slow down, truncate or drop).

Documented behaviour (the API page): the request and answer shapes, at most 100 leads and 20
matching entries, ``addComment`` required and at most 1000 characters, the validationError
body, a validation error executes nothing, matching entries tried in priority order, and at
most 5 requests per second per IP with 429 for the excess, which is not executed.

Inferred behaviour (the doc is silent; chosen here, and the client must not rely on it beyond
what is documented):

- Rate window: a strict sliding window per client IP (see ``_rate_window``); 429s do not
  count. The 429 body is an ``apiError`` with ``errorCode`` 429 and ``Retry-After`` is not sent
  unless ``retry_after`` is given.
- Credentials: a missing or wrong ``Access-Token`` or ``SiteId`` gets HTTP 401 with an
  ``apiError`` body, errorCode 401, "Invalid access token or site id" (the real status and text
  are unpublished). Credentials are checked after the rate window, as a gateway would.
- A body that is not JSON, or not a JSON object, gets HTTP 400 with an ``apiError`` body
  (errorCode 400); one over ``max_body_size`` bytes gets 413. The ``Content-Type`` is not
  checked. Unknown keys anywhere in the body are ignored.
- Validation: HTTP 400. Messages are Symfony's standard ones: a missing required field "This
  field is missing.", wrong JSON types "This value should be of type array/object/string/int.",
  blank ``addComment`` (absent, null or whitespace only) "This value should not be blank.",
  counts "This collection should contain 1 element or more." / "... 100 elements or less." /
  "... 20 elements or less.", non-positive ids and ``searchDepth`` "This value should be
  positive.", an unknown matching ``type`` "The value you selected is not a valid choice.", a
  bad ``date`` "This value is not a valid datetime.", a bad MD5 "This value is not valid.", a
  contact entry without any phone/e-mail/MD5 "This value should not be blank." at
  ``....phones``. ``tags`` problems are reported at ``....tags`` (not per item); a phone must
  contain a digit, an e-mail must look like ``x@y``. Ids must be JSON integers (not strings,
  floats or booleans). ``date`` must be exactly ``dd-mm-yyyy HH:MM:SS``, naive.
  ``addComment``'s 1000 characters are counted in UTF-16 code units (an emoji is 2): the
  ``fieldPath``/``violations`` shape looks like Java Bean Validation, whose ``@Size`` counts
  that way (Symfony's ``Length`` would count code points; neither is confirmed).
- Matching semantics: ``call``/``request`` find the lead with that id if it has the tags
  (``tagsLogic`` "or": any of them; anything else, including the doc's "and": all of them).
  Contact entries find leads sharing a phone (compared as digits, a leading 8 of an 11-digit
  number read as 7), an MD5 of that digits-only form, or (requests) an e-mail compared
  case-insensitively, whose time is within ``searchDepth`` minutes of ``date`` in either
  direction (boundary included). ``nearest`` takes the closest in time, ``nearestUniq`` the
  closest flagged ``unique``, ``nearestUniqLead`` (calls) the closest flagged ``unique_lead``;
  unknown values mean ``nearest``. Ties go to the smaller id.
- A lead that no entry finds gets ``commented: false``, ``error: "Lead not found"``, and null
  ``callInfo``/``requestInfo``. Commenting the same lead twice is allowed and recorded twice.
- Ids in answers are JSON numbers (the doc's example; its table says strings).
- Latency applies to every answer, 429s included; it models the round trip.

Test knobs (not Calltouch behaviour): injected faults (see ``_faults``), which a request the
rate window rejects never reaches. ``reset()`` also empties the rate window.

Layout: ``_answers`` (the bodies sent), ``_faults`` (injection), ``_rate_window``, ``_data``
(calls, requests, matching), ``_validation`` (parsing the body), ``_ledger`` (what happened).
"""

from __future__ import annotations

import asyncio
import hmac
import random
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import msgspec
from aiohttp import web

from . import _answers, _data
from ._answers import Answer
from ._data import Call, DataStore, Request
from ._faults import BEFORE_EXECUTING, Fault, Faults, Injection, answer_before_executing
from ._ledger import Ledger, RequestRecord
from ._rate_window import RateWindow
from ._validation import Lead, parse_comments

__all__ = ["COMMENT_PATH", "CalltouchEmulator", "Fault", "serve_forever"]

COMMENT_PATH = "/lead-service/v1/api/comment/lead/add"

# Big enough for 100 leads of 1000 characters each escaped as \uXXXX, plus 20 matching
# entries each; Calltouch's own limit is not published.
_MAX_BODY = 16 * 1024 * 1024
_NOT_FOUND = "Lead not found"


class CalltouchEmulator:
    """An aiohttp.web server speaking Calltouch's comment API, with knobs for tests.

    Use as ``async with CalltouchEmulator() as emu:`` and point the client at
    ``emu.base_url``. Every random choice (jitter, latency, probabilistic faults, the status
    of a server error) comes from one ``random.Random(seed)``.

    ``clock`` (default ``time.monotonic``) times the rate window and the ledger; tests may
    pass a fake one. ``retry_after`` adds that ``Retry-After`` header to 429 answers.
    ``record_comments=False`` keeps only ``ledger.applied_total`` instead of every applied
    comment, for long runs that measure memory. ``max_body_size`` bounds a request body.
    """

    __slots__ = (
        "_clock",
        "_data",
        "_faults",
        "_host",
        "_inbound_jitter",
        "_latency",
        "_max_body_size",
        "_port",
        "_rate_limit",
        "_rate_period",
        "_retry_after",
        "_rng",
        "_runner",
        "_site_id",
        "_token",
        "_url",
        "_window",
        "ledger",
    )

    def __init__(
        self,
        *,
        site_id: int | str = 12345,
        access_token: str = "test-token",
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: int | None = 5,
        rate_period: float = 1.0,
        latency: float | tuple[float, float] = 0.0,
        inbound_jitter: float = 0.0,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        retry_after: int | None = None,
        record_comments: bool = True,
        max_body_size: int = _MAX_BODY,
    ) -> None:
        _check_settings(rate_limit, rate_period, latency, inbound_jitter)
        self._site_id = str(site_id)
        self._token = access_token.encode()
        self._host = host
        self._port = port
        self._rate_limit = rate_limit
        self._rate_period = rate_period
        self._latency = latency
        self._inbound_jitter = inbound_jitter
        self._rng = random.Random(seed)
        self._clock = clock
        self._retry_after = retry_after
        self._max_body_size = max_body_size
        self._window = RateWindow(rate_limit, rate_period)
        self._faults = Faults()
        self._data = DataStore()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self.ledger = Ledger(record_comments=record_comments)

    def __repr__(self) -> str:
        # The access token is deliberately absent.
        where = self._url or "not started"
        limit = "off" if self._rate_limit is None else f"{self._rate_limit}/{self._rate_period}s"
        return (
            f"CalltouchEmulator({where}, site_id={self._site_id!r}, rate_limit={limit}, "
            f"calls={len(self.calls)}, requests={len(self.requests)})"
        )

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` without a trailing slash; only while running."""
        if self._url is None:
            raise RuntimeError("the emulator is not running: use 'async with' or start()")
        return self._url

    @property
    def comment_url(self) -> str:
        """The full URL of the comment method."""
        return self.base_url + COMMENT_PATH

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        """Listen on ``host:port`` (port 0: a free one)."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        app = web.Application(client_max_size=self._max_body_size)
        app.router.add_post(COMMENT_PATH, self._handle)
        # No access log: it would cost time at benchmark rates and tells tests nothing the
        # ledger does not. A short shutdown timeout keeps close() quick with SLOW requests
        # still sleeping.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port, backlog=1024)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._url = _url_for(runner.addresses[0])

    async def close(self) -> None:
        """Stop listening and end open connections. Data and ledger stay readable."""
        runner, self._runner, self._url = self._runner, None, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- data ------------------------------------------------------------------------------

    @property
    def calls(self) -> dict[int, Call]:
        """Calls by id. Read it; add through ``add_call`` (which also indexes contacts)."""
        return self._data.calls

    @property
    def requests(self) -> dict[int, Request]:
        """Requests by id. Read it; add through ``add_request``."""
        return self._data.requests

    def add_call(
        self,
        call_id: int,
        *,
        phones: Iterable[str] = (),
        time: datetime,
        tags: Iterable[str] = (),
        unique: bool = False,
        unique_lead: bool = False,
        reference_id: str | None = None,
        sip_call_id: str | None = None,
    ) -> Call:
        """Add (or replace) a call. ``time`` is naive, in the account's zone."""
        call = _data.make_call(
            call_id,
            phones=phones,
            time=time,
            tags=tags,
            unique=unique,
            unique_lead=unique_lead,
            reference_id=reference_id,
            sip_call_id=sip_call_id,
        )
        return self._data.add_call(call)

    def add_request(
        self,
        request_id: int,
        *,
        phones: Iterable[str] = (),
        emails: Iterable[str] = (),
        time: datetime,
        tags: Iterable[str] = (),
        unique: bool = False,
        request_number: str | None = None,
    ) -> Request:
        """Add (or replace) a request (a form submission)."""
        request = _data.make_request(
            request_id,
            phones=phones,
            emails=emails,
            time=time,
            tags=tags,
            unique=unique,
            request_number=request_number,
        )
        return self._data.add_request(request)

    def generate(
        self,
        calls: int = 0,
        requests: int = 0,
        *,
        seed: int = 0,
        start: datetime = _data.GENERATE_START,
    ) -> None:
        """Add synthetic calls (ids 1..calls) and requests (ids 1..requests), deterministically.

        Phones are ``7`` + 10 digits from a pool smaller than the lead count (so contacts
        repeat), times are spread over 30 days from ``start``, some leads carry tags, and
        ``unique``/``unique_lead`` mark a contact's first call/request/lead.
        """
        if calls < 0 or requests < 0:
            raise ValueError("calls and requests must not be negative")
        _data.generate(self._data, calls, requests, seed=seed, start=start)

    # -- faults and ledger -----------------------------------------------------------------

    def inject(
        self,
        fault: Fault,
        *,
        on_requests: Iterable[int] = (),
        probability: float = 0.0,
        delay: float = 1.0,
        times: int | None = None,
    ) -> None:
        """Give ``fault`` to the requests arriving with these 1-based numbers, and/or to each
        request with ``probability``; at most ``times`` times in all (None: no limit).

        Injections are consulted in the order they were made and a request gets at most one
        fault. Arrival numbers count every request, 429s included; a request the rate window
        rejects never reaches the faults, so a fault aimed at it is not spent.
        """
        self._faults.add(fault, on_requests, probability, delay, times)

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self._faults.clear()

    def reset(self) -> None:
        """Clear the ledger (arrival numbers restart at 1), the faults and the rate window;
        keep the calls and requests."""
        self.ledger.clear()
        self._faults.clear()
        self._window.clear()

    # -- the handler -----------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self._inbound_jitter > 0:
            await asyncio.sleep(self._rng.uniform(0.0, self._inbound_jitter))
        now = self._clock()
        remote = request.remote or ""
        record = self.ledger.arrive(now, remote)
        if not self._window.admit(remote, now):
            return await self._respond(request, record, _answers.RATE_LIMITED, None)
        injection = self._faults.pick(record.number, self._rng)
        record.fault = injection.fault if injection is not None else None
        if injection is not None and injection.fault in BEFORE_EXECUTING:
            if injection.fault is Fault.RATE_LIMIT:
                self._window.release(remote, now)
            answer = answer_before_executing(injection.fault, self._rng)
            return await self._respond(request, record, answer, None)
        answer = await self._execute(request, record)
        return await self._respond(request, record, answer, injection)

    async def _execute(self, request: web.Request, record: RequestRecord) -> Answer:
        if not self._authorized(request):
            return _answers.AUTH_FAILED
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _answers.TOO_LARGE
        try:
            body = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return _answers.NOT_JSON
        if not isinstance(body, dict):
            return _answers.NOT_OBJECT
        comments = body.get("comments")
        record.lead_count = len(comments) if isinstance(comments, list) else 0
        leads, violations = parse_comments(body)
        if violations:
            return Answer(400, _answers.validation_error(violations), "validation_error")
        results = [self._comment(lead, record.number) for lead in leads]
        return Answer(200, _answers.encode({"meta": [], "data": {"comments": results}}), "ok")

    def _authorized(self, request: web.Request) -> bool:
        token = request.headers.get("Access-Token", "").encode("utf-8", "surrogateescape")
        site_id = request.headers.get("SiteId", "").strip()
        # compare_digest: the emulator may be reachable by other processes; no timing hints.
        return hmac.compare_digest(token, self._token) and site_id == self._site_id

    def _comment(self, lead: Lead, number: int) -> dict[str, object]:
        found = self._data.find(lead.matching)
        if found is None:
            return {"callInfo": None, "requestInfo": None, "commented": False, "error": _NOT_FOUND}
        is_call = isinstance(found, Call)
        self.ledger.apply("call" if is_call else "request", found.lead_id, lead.text, number)
        return {
            "callInfo": found.info() if is_call else None,
            "requestInfo": None if is_call else found.info(),
            "commented": True,
            "error": None,
        }

    async def _respond(
        self,
        request: web.Request,
        record: RequestRecord,
        answer: Answer,
        injection: Injection | None,
    ) -> web.StreamResponse:
        """Wait the latency (and a SLOW delay), then answer, truncate or drop as told."""
        fault = injection.fault if injection is not None else None
        record.outcome = answer.outcome if fault is None else f"fault:{fault.value}"
        # Set before the wait, so the ledger is right about requests still in flight.
        if fault is not Fault.APPLY_THEN_DROP:
            record.status = answer.status
        delay = self._draw_latency()
        if fault is Fault.SLOW:
            assert injection is not None
            delay += injection.delay
        if delay > 0:
            await asyncio.sleep(delay)
        if fault is Fault.APPLY_THEN_DROP:
            if request.transport is not None:
                request.transport.close()
            # Nothing can be written now; aiohttp treats the failed write as a disconnect.
            return web.Response(status=500)
        body = answer.body
        if fault is Fault.MALFORMED_JSON:
            # A JSON object's proper prefix is never valid JSON: the closing brace is missing.
            body = body[: len(body) // 2]
        headers = None
        if answer.status == 429 and self._retry_after is not None:
            headers = {"Retry-After": str(self._retry_after)}
        return web.Response(
            status=answer.status, body=body, content_type=answer.content_type, headers=headers
        )

    def _draw_latency(self) -> float:
        if isinstance(self._latency, tuple):
            return self._rng.uniform(*self._latency)
        return self._latency


def _check_settings(
    rate_limit: int | None,
    rate_period: float,
    latency: float | tuple[float, float],
    inbound_jitter: float,
) -> None:
    if rate_limit is not None and rate_limit < 1:
        raise ValueError("rate_limit must be at least 1, or None to turn the limit off")
    if rate_period <= 0:
        raise ValueError("rate_period must be positive")
    low, high = latency if isinstance(latency, tuple) else (latency, latency)
    if not 0 <= low <= high:
        raise ValueError("latency must be a non-negative number or a (low, high) range")
    if inbound_jitter < 0:
        raise ValueError("inbound_jitter must not be negative")


def _url_for(address: Sequence[Any]) -> str:
    host, port = str(address[0]), int(address[1])
    # A wildcard bind is reachable through loopback; an IPv6 literal needs brackets in URLs.
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def serve_forever(
    emulator: CalltouchEmulator, *, ready: Callable[[CalltouchEmulator], None] | None = None
) -> None:
    """Run ``emulator`` until cancelled (Ctrl-C under ``asyncio.run``), then close it.

    ``ready`` is called once it listens (e.g. to print ``base_url``); a CLI command can reuse
    this as it is.
    """
    async with emulator:
        if ready is not None:
            ready(emulator)
        await asyncio.Event().wait()
