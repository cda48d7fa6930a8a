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
Ratios are taken per trial (neighbouring runs share the machine's state), then the median.
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


async def _measured(run: Callable[[], Awaitable[int]]) -> Result:
    gc.collect()
    cpu = time.process_time()
    leads = await run()
    return time.process_time() - cpu, leads


async def _at_pace(i: int, start: float) -> None:
    delay = start + i * PACE - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


async def _drive(
    post: Callable[[int], Awaitable[int]], requests: int, concurrency: int, paced: bool
) -> int:
    """Run ``post(i)`` for every request: ``concurrency`` workers, or one start per PACE."""
    if paced:
        start = asyncio.get_running_loop().time()

        async def one(i: int) -> int:
            await _at_pace(i, start)
            return await post(i)

        return sum(await asyncio.gather(*(one(i) for i in range(requests))))
    queue, done = iter(range(requests)), 0

    async def worker() -> None:
        nonlocal done
        for i in queue:
            answered = await post(i)
            done += answered  # not `done += await ...`: that reads `done` before awaiting

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


def _session(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency * 2))


def _client(base_url: str, concurrency: int) -> CalltouchClient:
    return CalltouchClient(
        SITE_ID, TOKEN, base_url=base_url, rate_limiter=None, max_in_flight=concurrency
    )


def _leads(requests: int) -> list[LeadComment]:
    return make_leads(requests * CHUNK, calls=CALLS, tag="overhead")


# --------------------------------------------------------------------------- variants


async def bare(base_url: str, requests: int, concurrency: int, paced: bool) -> Result:
    body, url = encode_request(_leads(1)), base_url + PATH

    async with _session(concurrency) as session:

        async def post(i: int) -> int:
            async with session.post(url, data=body, headers=HEADERS) as resp:
                await resp.read()
                return CHUNK if resp.status == 200 else 0

        await post(0)  # warm: the connection
        return await _measured(lambda: _drive(post, requests, concurrency, paced))


async def hand_written(base_url: str, requests: int, concurrency: int, paced: bool) -> Result:
    leads, url = wire_leads(requests * CHUNK, calls=CALLS, tag="overhead"), base_url + PATH

    async with _session(concurrency) as session:

        async def post(i: int) -> int:
            chunk: list[dict[str, Any]] = leads[i * CHUNK : (i + 1) * CHUNK]
            body = json.dumps({"comments": chunk})
            async with session.post(url, data=body, headers=HEADERS) as resp:
                answer = json.loads(await resp.read())
            return sum(1 for o in answer["data"]["comments"] if o["commented"])

        await post(0)
        return await _measured(lambda: _drive(post, requests, concurrency, paced))


async def _paced_source(leads: list[LeadComment]) -> AsyncIterator[LeadComment]:
    """``CHUNK`` leads every PACE seconds: a queue fed at Calltouch's pace."""
    start = asyncio.get_running_loop().time()
    for i in range(0, len(leads), CHUNK):
        await _at_pace(i // CHUNK, start)
        for lead in leads[i : i + CHUNK]:
            yield lead


async def comment_many(base_url: str, requests: int, concurrency: int, paced: bool) -> Result:
    leads = _leads(requests)
    async with _client(base_url, concurrency) as client:
        await client.comment(leads[:CHUNK])  # warm: connection, codec caches

        async def run() -> int:
            source = _paced_source(leads) if paced else leads
            return sum([r.commented async for r in client.comment_many(source)])

        return await _measured(run)


async def comment(base_url: str, requests: int, concurrency: int, paced: bool) -> Result:
    leads = _leads(requests)
    async with _client(base_url, concurrency) as client:

        async def post(i: int) -> int:
            results = await client.comment(leads[i * CHUNK : (i + 1) * CHUNK])
            return sum(r.commented for r in results)

        await client.comment(leads[:CHUNK])
        return await _measured(lambda: _drive(post, requests, concurrency, paced))


async def _callers(
    requests: int, paced: bool, call: Callable[[LeadComment], Awaitable[object]]
) -> int:
    """``CALLERS`` concurrent tasks per round (CHUNK per PACE when paced); returns leads."""
    leads, done = _leads(requests), 0
    per_round = CHUNK if paced else CALLERS
    start = asyncio.get_running_loop().time()
    for n, i in enumerate(range(0, len(leads), per_round)):
        if paced:
            await _at_pace(n, start)
        done += sum(bool(r) for r in await asyncio.gather(*map(call, leads[i : i + per_round])))
    return done


async def submit(base_url: str, requests: int, concurrency: int, paced: bool) -> Result:
    async with _client(base_url, concurrency) as client:
        await client.comment(_leads(1))

        async def call(lead: LeadComment) -> bool:
            return (await client.submit(lead)).commented

        return await _measured(lambda: _callers(requests, paced, call))


class _Flusher:
    """The floor's other half: resolves each CHUNK of waiting callers, optionally after a bare
    POST of prebuilt bytes (at most ``concurrency`` at once)."""

    __slots__ = ("body", "futures", "gate", "post", "session", "tasks", "url")

    def __init__(self, session: aiohttp.ClientSession | None, url: str, concurrency: int):
        self.session, self.url, self.body = session, url, encode_request(_leads(1))
        self.futures: list[asyncio.Future[bool]] = []
        self.gate = asyncio.Semaphore(concurrency)
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


async def _floor(
    base_url: str, requests: int, concurrency: int, paced: bool, *, post: bool
) -> Result:
    async with _session(concurrency) as session:
        flusher = _Flusher(session if post else None, base_url + PATH, concurrency)
        await _callers(1, False, flusher.call)  # warm, as the others are
        return await _measured(lambda: _callers(requests, paced, flusher.call))


async def floor(base_url: str, requests: int, concurrency: int, paced: bool) -> Result:
    return await _floor(base_url, requests, concurrency, paced, post=False)


async def floor_post(base_url: str, requests: int, concurrency: int, paced: bool) -> Result:
    return await _floor(base_url, requests, concurrency, paced, post=True)


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
    base_url: str, requests: int, concurrency: int, paced: bool, trials: int, names: list[str]
) -> dict[str, list[float]]:
    """CPU microseconds per lead of each named variant, one value per trial."""
    per_lead: dict[str, list[float]] = {name: [] for name in names}
    for trial in range(trials):
        shift = trial % len(names)  # rotate: no variant always runs first or last
        for name in names[shift:] + names[:shift]:
            cpu, leads = asyncio.run(VARIANTS[name](base_url, requests, concurrency, paced))
            if leads != requests * CHUNK:
                raise RuntimeError(f"{name}: {leads} of {requests * CHUNK} leads answered")
            per_lead[name].append(cpu * 1e6 / leads)
    return per_lead


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
        f"median of {trials} trials in rotating order; CPU = time.process_time() of this process "
        "only (the server runs in its own); warm-up request excluded; limiter off."
    )
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="100-lead requests per run")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--paced-requests", type=int, default=20, help="requests at 5/s")
    parser.add_argument("--paced-trials", type=int, default=3)
    parser.add_argument(
        "--only", nargs="+", choices=list(KEYS), default=list(KEYS), help="variants to run"
    )
    parser.add_argument("--loads", nargs="+", choices=LOADS, default=LOADS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    add_output_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.serve:
        asyncio.run(_serve())
        return
    names = [KEYS[key] for key in args.only]
    requests = max(10, args.requests // 10 * 10)  # whole rounds of 1,000 submit() callers
    paced = max(10, args.paced_requests // 10 * 10)
    tables = []
    with Server() as url:
        for c in (1, 10):
            if f"c{c}" in args.loads:
                per_lead = measure(url, requests, c, False, args.trials, names)
                title = f"Client CPU per lead: {requests} requests of 100 leads, c={c} in flight"
                tables.append(table(title, per_lead, args.trials))
        if "paced" in args.loads:
            per_lead = measure(url, paced, 10, True, args.paced_trials, names)
            title = f"Client CPU per lead at the real pace: {paced} requests at 5/s (c=10 allowed)"
            tables.append(table(title, per_lead, args.paced_trials))
    emit(tables, args.json)


if __name__ == "__main__":
    main()
