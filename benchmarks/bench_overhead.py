"""Benchmark 3: the client's CPU per 100-lead request, against the floors it is judged by.

A minimal aiohttp server runs in its own process (``bench_overhead.py --serve``): it counts the
leads of a body and answers a prebuilt "commented" entry for each, so the server costs the
client nothing but the bytes it reads. This process measures only itself with
``time.process_time()``; the rate limiter is off. Every variant runs in the same run, in a
rotating order, ``--trials`` times; each figure is the median trial, with the spread printed:

- (a) bare aiohttp: POST the same prebuilt bytes, read the answer (the transport floor);
- (b) hand-written: dicts + ``json.dumps`` per request + ``json.loads`` of the answer, no
  validation (what a user would write instead of this package);
- (c) ``comment_many`` over all the leads;
- (d) ``comment()`` per 100 leads, from ``c`` workers;
- (e) ``submit()`` from 1,000 concurrent callers per round (10 requests a round);
- the floor of (e): 1,000 coroutines that each append a lead to a list and await a future that
  a flusher resolves once 100 are in (and the same floor with a bare POST of each 100).

Three loads: ``c=1`` and ``c=10`` requests in flight as fast as the server answers, and the real
pace of 5 requests/s (a request every 0.2 s, sources fed at that pace; ``c=10`` allowed).

A trial runs every variant over the same requests, interleaved ``--slice`` requests at a time
in a rotating order, all set up (and warmed) before measuring; each variant's CPU is summed
over its slices. Ratios are taken per trial (variants measured side by side), then the median.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from _harness import SITE_ID, TOKEN, Table, add_output_flag, emit, fmt, make_leads, wire_leads

from calltouch_async import CalltouchClient, LeadComment
from calltouch_async._models import encode_request

PATH = "/lead-service/v1/api/comment/lead/add"
HEADERS = {"Access-Token": TOKEN, "SiteId": str(SITE_ID), "Content-Type": "application/json"}
CALLS = 1000
CHUNK = 100
PACE = 0.2  # seconds between requests at Calltouch's 5 requests/s
CALLERS = 1000  # concurrent submit() callers per round

Result = tuple[float, int]  # (CPU seconds of the measured phase, leads answered)
Variant = Callable[[str, int, int, bool], Awaitable[Result]]


# --------------------------------------------------------------------------- minimal server


def _answer(n: int) -> bytes:
    entry = {
        "callInfo": {"callId": 1, "callReferenceId": None, "sipCallId": None},
        "requestInfo": None, "commented": True, "error": None,
    }
    return json.dumps({"meta": [], "data": {"comments": [entry] * n}}).encode()


async def _serve() -> None:
    """Answer every POST with one "commented" entry per lead; stop when stdin closes."""
    from aiohttp import web

    answers: dict[int, bytes] = {}

    async def comment(request: web.Request) -> web.Response:
        n = (await request.read()).count(b'"addComment"')  # json.dumps and msgspec both quote it
        body = answers.get(n) or answers.setdefault(n, _answer(n))
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/{tail:.*}", comment)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    loop, stop = asyncio.get_running_loop(), asyncio.Event()
    threading.Thread(
        target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True
    ).start()
    print(json.dumps({"base_url": f"http://127.0.0.1:{port}"}), flush=True)
    await stop.wait()
    await runner.cleanup()


class Server:
    """``with Server() as url:`` runs ``--serve`` in a child process."""

    def __enter__(self) -> str:
        import subprocess

        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"server exited with status {self.proc.wait()}")
        return str(json.loads(line)["base_url"])

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


# --------------------------------------------------------------------------- driving
#
# A variant is an async context manager: it sets itself up (session or client, a warm-up
# request) and yields ``run(count)``, which sends ``count`` requests of the slice's leads and
# returns the leads answered. A trial interleaves the variants a slice at a time.

Run = Callable[[int], Awaitable[int]]
Variant = Callable[["Load"], AbstractAsyncContextManager[Run]]


@dataclass(frozen=True)
class Load:
    base_url: str
    concurrency: int
    paced: bool
    leads: list[LeadComment]  # one slice's leads, 100 per request, shared by every variant
    wire: list[dict[str, Any]]  # the same leads as dicts, for the hand-written loop


async def _at_pace(i: int, start: float) -> None:
    delay = start + i * PACE - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


async def _drive(post: Callable[[int], Awaitable[int]], count: int, load: Load) -> int:
    """Run ``post(i)`` for ``i < count``: ``concurrency`` workers, or one start per PACE."""
    if load.paced:
        start = asyncio.get_running_loop().time()

        async def one(n: int) -> int:
            await _at_pace(n, start)
            return await post(n)

        return sum(await asyncio.gather(*(one(n) for n in range(count))))
    queue, done = iter(range(count)), 0

    async def worker() -> None:
        nonlocal done
        for i in queue:
            answered = await post(i)
            done += answered  # not `done += await ...`: that reads `done` before awaiting

    await asyncio.gather(*(worker() for _ in range(load.concurrency)))
    return done


def _session(load: Load) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=load.concurrency * 2))


@asynccontextmanager
async def _client(load: Load) -> AsyncIterator[CalltouchClient]:
    async with CalltouchClient(
        SITE_ID, TOKEN, base_url=load.base_url, rate_limiter=None,
        max_in_flight=load.concurrency,
    ) as client:
        await client.comment(load.leads[:CHUNK])  # warm: connection, codec caches
        yield client


def _chunk(leads: list[Any], i: int) -> list[Any]:
    return leads[i * CHUNK : (i + 1) * CHUNK]


# --------------------------------------------------------------------------- variants


@asynccontextmanager
async def bare(load: Load) -> AsyncIterator[Run]:
    body, url = encode_request(load.leads[:CHUNK]), load.base_url + PATH

    async with _session(load) as session:

        async def post(i: int) -> int:
            async with session.post(url, data=body, headers=HEADERS) as resp:
                await resp.read()
                return CHUNK if resp.status == 200 else 0

        await post(0)  # warm: the connection
        yield lambda count: _drive(post, count, load)


@asynccontextmanager
async def hand_written(load: Load) -> AsyncIterator[Run]:
    url = load.base_url + PATH

    async with _session(load) as session:

        async def post(i: int) -> int:
            body = json.dumps({"comments": _chunk(load.wire, i)})
            async with session.post(url, data=body, headers=HEADERS) as resp:
                answer = json.loads(await resp.read())
            return sum(1 for o in answer["data"]["comments"] if o["commented"])

        await post(0)
        yield lambda count: _drive(post, count, load)


async def _paced_source(leads: list[LeadComment]) -> AsyncIterator[LeadComment]:
    """``CHUNK`` leads every PACE seconds: a queue fed at Calltouch's pace."""
    start = asyncio.get_running_loop().time()
    for i in range(0, len(leads), CHUNK):
        await _at_pace(i // CHUNK, start)
        for lead in leads[i : i + CHUNK]:
            yield lead


@asynccontextmanager
async def comment_many(load: Load) -> AsyncIterator[Run]:
    async with _client(load) as client:

        async def run(count: int) -> int:
            leads = load.leads[: count * CHUNK]
            source = _paced_source(leads) if load.paced else leads
            return sum([r.commented async for r in client.comment_many(source)])

        yield run


@asynccontextmanager
async def comment(load: Load) -> AsyncIterator[Run]:
    async with _client(load) as client:

        async def post(i: int) -> int:
            return sum(r.commented for r in await client.comment(_chunk(load.leads, i)))

        yield lambda count: _drive(post, count, load)


async def _callers(
    leads: list[LeadComment], paced: bool, call: Callable[[LeadComment], Awaitable[object]]
) -> int:
    """``CALLERS`` concurrent tasks per round (CHUNK per PACE when paced); returns leads."""
    done = 0
    per_round = CHUNK if paced else CALLERS
    start = asyncio.get_running_loop().time()
    for n, i in enumerate(range(0, len(leads), per_round)):
        if paced:
            await _at_pace(n, start)
        done += sum(bool(r) for r in await asyncio.gather(*map(call, leads[i : i + per_round])))
    return done


def _callers_run(load: Load, call: Callable[[LeadComment], Awaitable[object]]) -> Run:
    def run(count: int) -> Awaitable[int]:
        return _callers(load.leads[: count * CHUNK], load.paced, call)

    return run


@asynccontextmanager
async def submit(load: Load) -> AsyncIterator[Run]:
    async with _client(load) as client:

        async def call(lead: LeadComment) -> bool:
            return (await client.submit(lead)).commented

        yield _callers_run(load, call)


class _Flusher:
    """The floor's other half: resolves each CHUNK of waiting callers, optionally after a bare
    POST of prebuilt bytes (at most ``concurrency`` at once)."""

    __slots__ = ("body", "futures", "gate", "post", "session", "tasks", "url")

    def __init__(self, session: aiohttp.ClientSession | None, load: Load):
        self.session, self.url = session, load.base_url + PATH
        self.body = encode_request(load.leads[:CHUNK])
        self.futures: list[asyncio.Future[bool]] = []
        self.gate = asyncio.Semaphore(load.concurrency)
        self.tasks: set[asyncio.Task[None]] = set()

    async def call(self, lead: LeadComment) -> bool:
        future = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        if len(self.futures) == CHUNK:
            batch, self.futures = self.futures, []
            task = asyncio.create_task(self._flush(batch))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return await future

    async def _flush(self, batch: list[asyncio.Future[bool]]) -> None:
        if self.session is not None:
            async with self.gate, self.session.post(self.url, data=self.body, headers=HEADERS) as r:
                await r.read()
        for future in batch:
            future.set_result(True)


@asynccontextmanager
async def _floor(load: Load, *, post: bool) -> AsyncIterator[Run]:
    async with _session(load) as session:
        flusher = _Flusher(session if post else None, load)
        await _callers(load.leads[:CALLERS], False, flusher.call)  # warm, as the others are
        yield _callers_run(load, flusher.call)


def floor(load: Load) -> AbstractAsyncContextManager[Run]:
    return _floor(load, post=False)


def floor_post(load: Load) -> AbstractAsyncContextManager[Run]:
    return _floor(load, post=True)


VARIANTS: dict[str, Variant] = {
    "(a) bare aiohttp POST of prebuilt bytes": bare,
    "(b) hand-written: dicts + json + aiohttp": hand_written,
    "(c) comment_many": comment_many,
    "(d) comment() per 100 leads": comment,
    "(e) submit(), 1,000 concurrent callers": submit,
    "floor of (e): callers + futures": floor,
    "floor of (e) + bare POST per 100": floor_post,
}
A, B, C, D, E, F, FP = VARIANTS
RATIOS = [(C, B), (D, B), (E, F), (E, FP), (C, A)]
KEYS = dict(zip(["a", "b", "c", "d", "e", "floor", "floor-post"], VARIANTS, strict=True))
LOADS = ["c1", "c10", "paced"]


# --------------------------------------------------------------------------- the run


def measure(
    base_url: str, requests: int, concurrency: int, paced: bool, trials: int, names: list[str],
    slice_size: int,
) -> dict[str, list[float]]:
    """CPU microseconds per lead of each named variant, one value per trial."""
    # One slice's leads, sent again by every slice: the heap stays small, so no variant pays
    # the garbage collector for the size of the test data.
    leads = make_leads(slice_size * CHUNK, calls=CALLS, tag="overhead")
    wire = wire_leads(slice_size * CHUNK, calls=CALLS, tag="overhead")
    load = Load(base_url, concurrency, paced, leads, wire)
    per_lead: dict[str, list[float]] = {name: [] for name in names}
    for trial in range(trials):
        totals = asyncio.run(_trial(load, requests, names, slice_size, trial))
        for name, (cpu, answered) in totals.items():
            if answered != requests * CHUNK:
                raise RuntimeError(f"{name}: {answered} of {requests * CHUNK} leads answered")
            per_lead[name].append(cpu * 1e6 / answered)
    return per_lead


async def _trial(
    load: Load, requests: int, names: list[str], slice_size: int, trial: int
) -> dict[str, tuple[float, int]]:
    """Every variant over ``requests`` requests, interleaved ``slice_size`` at a time.

    Neighbouring slices share the machine's state (a noisy neighbour, the CPU's clock), so
    interleaving pairs the variants far more closely than whole runs one after another. Each
    slice starts from a collected heap: no variant pays for another's garbage.
    """
    totals = {name: (0.0, 0) for name in names}
    async with AsyncExitStack() as stack:
        runs = {name: await stack.enter_async_context(VARIANTS[name](load)) for name in names}
        for n, first in enumerate(range(0, requests, slice_size)):
            count = min(slice_size, requests - first)
            shift = (trial + n) % len(names)  # rotate: no variant always goes first
            for name in names[shift:] + names[:shift]:
                gc.collect()
                cpu = time.process_time()
                answered = await runs[name](count)
                spent, total = totals[name]
                totals[name] = (spent + time.process_time() - cpu, total + answered)
    return totals


def _spread(values: list[float]) -> str:
    mid = statistics.median(values)
    return f"{min(values):.2f}-{max(values):.2f} (±{(max(values) - min(values)) / 2 / mid:.0%})"


def table(title: str, per_lead: dict[str, list[float]], trials: int) -> Table:
    out = Table(title, ["variant", "CPU us / lead", "spread of trials", "x (b) hand-written"])
    hand = per_lead.get(B)
    for name, values in per_lead.items():
        ratio = "-" if hand is None else fmt(
            statistics.median(v / h for v, h in zip(values, hand, strict=True)), 2
        )
        out.add(name, fmt(statistics.median(values), 2), _spread(values), ratio)
    for num, den in RATIOS:
        if num not in per_lead or den not in per_lead:
            continue
        ratios = [n / d for n, d in zip(per_lead[num], per_lead[den], strict=True)]
        out.notes.append(
            f"{num.split(' ', 1)[0]} / {den.split(':')[0]}: {statistics.median(ratios):.2f} "
            f"(trials {min(ratios):.2f}-{max(ratios):.2f})"
        )
    out.notes.append(
        f"median of {trials} trials, variants interleaved in slices in rotating order; CPU = "
        "time.process_time() of this process only (the server runs in its own); set-up and "
        "warm-up excluded; limiter off."
    )
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="100-lead requests per trial")
    parser.add_argument("--trials", type=int, default=7)
    parser.add_argument("--slice", type=int, default=50, help="requests per interleaved slice")
    parser.add_argument("--paced-requests", type=int, default=20, help="requests at 5/s")
    parser.add_argument("--paced-trials", type=int, default=3)
    parser.add_argument("--paced-slice", type=int, default=10)
    parser.add_argument(
        "--only", nargs="+", choices=list(KEYS), default=list(KEYS), help="variants to run"
    )
    parser.add_argument("--loads", nargs="+", choices=LOADS, default=LOADS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    add_output_flag(parser)
    return parser


def _tens(n: int) -> int:
    return max(10, n // 10 * 10)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.serve:
        asyncio.run(_serve())
        return
    names = [KEYS[key] for key in args.only]
    # Whole rounds of 1,000 submit() callers (10 requests) in every slice.
    requests, paced = _tens(args.requests), _tens(args.paced_requests)
    slice_size, paced_slice = _tens(args.slice), _tens(args.paced_slice)
    tables = []
    with Server() as url:
        for c in (1, 10):
            if f"c{c}" in args.loads:
                per_lead = measure(url, requests, c, False, args.trials, names, slice_size)
                title = f"Client CPU per lead: {requests} requests of 100 leads, c={c} in flight"
                tables.append(table(title, per_lead, args.trials))
        if "paced" in args.loads:
            per_lead = measure(url, paced, 10, True, args.paced_trials, names, paced_slice)
            title = f"Client CPU per lead at the real pace: {paced} requests at 5/s (c=10 allowed)"
            tables.append(table(title, per_lead, args.paced_trials))
    emit(tables, args.json)


if __name__ == "__main__":
    main()
