"""One rate limit per process, whatever the event loops and threads, judged by a server;
and the limiter through the real stack (a 429 widens the margin, a refused request frees its slot).

The emulator runs in its own process (``benchmarks/_server.py``), strict (5 per 1 s, no
jitter), so the arrivals it counts are not bent by the clients' CPU work. Every case checks
the server's ledger: every lead applied exactly once, one result each, no 429, and at most 5
arrivals (429s included) in any 1 s window.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from calltouch_async import CalltouchClient, CommentStatus, RetryPolicy, SlidingWindowLimiter
from calltouch_async._client import UNSET
from calltouch_async._constants import ADAPTIVE_MARGIN_MAX, DEFAULT_RATE_MARGIN
from calltouch_async._limiter import shared_limiter
from calltouch_async.testing import Fault
from conftest import SITE_ID, EmulatorFactory, make_leads
from conftest import TOKEN as EMULATOR_TOKEN

SERVER = Path(__file__).resolve().parent.parent / "benchmarks" / "_server.py"
TOKEN = "test-token"  # the token benchmarks/_server.py accepts


class ServerProcess:
    """The emulator in a child process; ``stats()`` reads its ledger."""

    def __init__(self, calls: int) -> None:
        argv = [sys.executable, str(SERVER), "--calls", str(calls), "--rate-limit", "5",
                "--latency", "0.02", "0.1", "--jitter", "0"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        ready = json.loads(self.proc.stdout.readline())  # printed once it accepts connections
        self.base_url: str = ready["base_url"]
        self.control_url: str = ready["control_url"]

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.control_url + "/_stats?texts=1", timeout=30) as resp:
            data: dict[str, Any] = json.load(resp)
        return data

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()  # the server stops when its stdin closes
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess(calls=1000)
    try:
        yield proc
    finally:
        proc.close()


def comment_all(base_url: str, tag: str, n: int, limiter: Any = UNSET) -> Counter[str]:
    """One ``asyncio.run()`` with a fresh client: the statuses of ``n`` leads tagged ``tag``."""

    async def run() -> Counter[str]:
        leads = make_leads(n, prefix=tag)
        async with CalltouchClient(SITE_ID, TOKEN, base_url=base_url, rate_limiter=limiter) as c:
            return Counter([r.status.value async for r in c.comment_many(leads)])

    return asyncio.run(run())


def in_threads(*jobs: tuple[str, int, Any], base_url: str) -> list[Counter[str]]:
    """Each job ``(tag, n, limiter)`` in its own thread, with its own loop and client."""
    results: list[Counter[str]] = [Counter() for _ in jobs]
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def work(i: int, tag: str, n: int, limiter: Any) -> None:
        try:
            start.wait(30)
            results[i] = comment_all(base_url, tag, n, limiter)
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(i, *job)) for i, job in enumerate(jobs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def assert_exactly_once(stats: dict[str, Any], tags: dict[str, int]) -> None:
    expected = {f"{tag}-{i}": 1 for tag, n in tags.items() for i in range(n)}
    assert stats["texts"] == expected  # every lead applied once, nothing else applied


def test_back_to_back_asyncio_runs_share_one_limit(server: ServerProcess) -> None:
    tags = {f"run{k}": 700 for k in range(4)}  # 7 requests a run: a burst, then the window
    for tag, n in tags.items():
        assert comment_all(server.base_url, tag, n) == {CommentStatus.COMMENTED.value: n}
    stats = server.stats()
    assert_exactly_once(stats, tags)
    assert stats["rate_limited"] == 0
    assert stats["max_in_1s_all"] <= 5


def test_two_threads_each_with_its_own_loop_share_one_limit(server: ServerProcess) -> None:
    tags = {"left": 1000, "right": 1000}
    results = in_threads(*((tag, n, UNSET) for tag, n in tags.items()), base_url=server.base_url)
    assert results == [{CommentStatus.COMMENTED.value: n} for n in tags.values()]
    stats = server.stats()
    assert_exactly_once(stats, tags)
    assert stats["rate_limited"] == 0
    assert stats["max_in_1s_all"] <= 5


def test_negative_control_a_limiter_per_thread_overruns_the_window(
    server: ServerProcess,
) -> None:
    # The same harness with one limiter per thread (what a limiter keyed per loop gives):
    # two bursts of 5 reach the server in the same second, and it answers 429.
    jobs = [(tag, 500, SlidingWindowLimiter()) for tag in ("left", "right")]
    results = in_threads(*jobs, base_url=server.base_url)
    assert results == [{CommentStatus.COMMENTED.value: 500}] * 2  # 429s retried, none lost
    stats = server.stats()
    assert_exactly_once(stats, {"left": 500, "right": 500})
    assert stats["max_in_1s_all"] > 5
    assert stats["rate_limited"] > 0


# --------------------------------------------------------------------------- the real stack


async def test_an_unexpected_429_widens_the_margin_for_every_client_of_the_host(
    emulator: EmulatorFactory,
) -> None:
    async with emulator(calls=10) as emu:
        emu.inject(Fault.RATE_LIMIT, on_requests=[1])  # the server's window disagrees once
        limiter = shared_limiter(emu.base_url)
        assert limiter.window == pytest.approx(1.0 + DEFAULT_RATE_MARGIN)
        async with CalltouchClient(SITE_ID, EMULATOR_TOKEN, base_url=emu.base_url) as c:
            (result,) = await c.comment(make_leads(1))
        assert result.status is CommentStatus.COMMENTED  # retried after the 429
        assert emu.ledger.status_counts() == {429: 1, 200: 1}
        # Every client of this host, on any loop, now shares the wider margin.
        assert limiter.window == pytest.approx(1.0 + ADAPTIVE_MARGIN_MAX)


async def test_a_request_that_never_left_gives_its_slot_back() -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    limiter = SlidingWindowLimiter()
    retry = RetryPolicy(max_attempts=6, base_delay=0.01, max_delay=0.01)
    async with CalltouchClient(
        SITE_ID, EMULATOR_TOKEN, base_url=f"http://127.0.0.1:{port}",
        rate_limiter=limiter, retry=retry,
    ) as client:
        (result,) = await client.comment(make_leads(1))
    assert result.status is CommentStatus.FAILED  # six attempts, none sent
    # Six permits were taken (one per attempt) and none of them counts any more.
    left = limiter._permits
    assert left and all(p.counted_at(time.monotonic()) == -math.inf for p in left)
