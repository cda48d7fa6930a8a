"""RedisRateLimiter against a real Redis-compatible server (no fakes for timing).

* The slot computation, with time injected through ``now_us`` (the script then skips TIME):
  worked examples, and random sequences checked against a brute-force oracle.
* Several limiters on separate connections in one process: starts counted per window.
* Several worker processes, each with its own client, against one emulator: the emulator's
  ledger is the judge (zero 429, at most 5 in any second, throughput, exactly once), with a
  negative control (per-process limiters) that must produce 429s.
* Redis killed mid-run: acquires raise RateLimiterUnavailableError after the bounded wait and
  nothing starts without a reservation.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from calltouch_async import CallMatch, CalltouchClient, LeadComment, RateLimiterUnavailableError
from calltouch_async._constants import ADAPTIVE_MARGIN_HOLD, ADAPTIVE_MARGIN_STEP_EVERY
from calltouch_async._limiter import Permit, RateLimiter
from calltouch_async.redis_limiter import RedisRateLimiter
from calltouch_async.testing import CalltouchEmulator
from helpers import TESTS, max_in_window, new_emulator, run_together

sys.path.insert(0, str(Path(__file__).parent))
from redis_server import RedisServer, free_port

T0 = 1_700_000_000_000_000  # an injected server time, µs
SECOND = 1_000_000


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A real server on a free loopback port for this module; killed at the end."""
    with RedisServer() as server:
        yield server.url


@pytest.fixture
async def r(redis_url: str) -> AsyncIterator[aredis.Redis]:
    client = aredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def fresh_key() -> str:
    return "test-" + uuid.uuid4().hex[:12]


# --- the slot computation, with injected time ---------------------------------------------


async def test_five_start_at_once_and_the_sixth_waits_a_window(r: aredis.Redis) -> None:
    limiter = RedisRateLimiter(r, key=fresh_key(), rate=5, period=1.0, margin=0.05)
    window = 1_050_000
    first = [await limiter.reserve(now_us=T0 + i) for i in range(5)]
    assert [x.slot_us for x in first] == [T0 + i for i in range(5)]
    assert all(x.wait == 0 for x in first)
    sixth = await limiter.reserve(now_us=T0 + 10)
    assert sixth.slot_us == T0 + window  # the first start + window
    assert sixth.wait == pytest.approx((window - 10) / SECOND)
    # Reservations may lie in the future: the next ones queue up behind the first five.
    queued = [await limiter.reserve(now_us=T0 + 20) for _ in range(5)]
    expected = [T0 + i + window for i in range(1, 5)] + [T0 + 2 * window]
    assert [x.slot_us for x in queued] == expected


async def test_after_idle_a_burst_starts_at_once(r: aredis.Redis) -> None:
    limiter = RedisRateLimiter(r, key=fresh_key(), rate=5, period=1.0)
    for _ in range(7):
        await limiter.reserve(now_us=T0)
    later = T0 + 10 * SECOND
    burst = [await limiter.reserve(now_us=later) for _ in range(5)]
    assert [x.slot_us for x in burst] == [later] * 5
    assert (await limiter.reserve(now_us=later)).slot_us == later + limiter.window_us
    # Only the last `rate` reservations are kept.
    assert await r.zcard(limiter.keys[0]) == 5


async def test_cooldown_pushes_the_next_slot(r: aredis.Redis) -> None:
    limiter = RedisRateLimiter(r, key=fresh_key())
    await limiter.reserve(now_us=T0)
    await limiter.cooldown(2.0, now_us=T0 + 100)
    nxt = await limiter.reserve(now_us=T0 + 200)
    assert nxt.slot_us == T0 + 100 + 2 * SECOND
    # Once the pause is over the budget counts as before (the window still applies).
    assert (await limiter.reserve(now_us=T0 + 5 * SECOND)).slot_us == T0 + 5 * SECOND


async def test_cooldown_never_shortens_a_longer_pause(r: aredis.Redis) -> None:
    limiter = RedisRateLimiter(r, key=fresh_key())
    other = RedisRateLimiter(r, key=limiter.key)  # another process, same budget
    await limiter.cooldown(5.0, now_us=T0)
    await other.cooldown(1.0, now_us=T0 + SECOND)
    assert int(await r.get(limiter.keys[1]) or -1) == T0 + 5 * SECOND
    assert (await other.reserve(now_us=T0 + 2 * SECOND)).slot_us == T0 + 5 * SECOND
    await other.cooldown(10.0, now_us=T0 + 3 * SECOND)  # a longer one does extend it
    assert int(await r.get(limiter.keys[1]) or -1) == T0 + 13 * SECOND


async def test_keys_expire_on_their_own(r: aredis.Redis) -> None:
    limiter = RedisRateLimiter(r, key=fresh_key(), rate=2, period=1.0, margin=0.0, max_margin=0)
    starts, pause, _ = limiter.keys
    await limiter.reserve()
    assert 0 < await r.pttl(starts) <= 1_001
    await limiter.cooldown(3.0)
    assert 2_900 < await r.pttl(pause) <= 3_001
    # Reservations in the future (after the pause: at 3 s, 3 s, 4 s) keep the set alive
    # until the last of them has left the window.
    for _ in range(3):
        await limiter.reserve()
    assert 4_900 < await r.pttl(starts) <= 5_001


async def test_an_unexpected_429_widens_the_shared_margin_then_it_narrows(
    r: aredis.Redis,
) -> None:
    limiter = RedisRateLimiter(r, key=fresh_key(), margin=0.05)
    other = RedisRateLimiter(r, key=limiter.key)  # another process, same budget
    for _ in range(5):
        await limiter.reserve(now_us=T0)
    await limiter.cooldown(0.0, now_us=T0)  # no pause in force: unexpected, widens
    sixth = await other.reserve(now_us=T0 + 1)
    assert sixth.window_us == 1_200_000
    assert sixth.slot_us == T0 + 1_200_000
    lifetime = (ADAPTIVE_MARGIN_HOLD + 3 * ADAPTIVE_MARGIN_STEP_EVERY) * 1000  # ms
    assert lifetime - 1_000 < await r.pttl(limiter.keys[2]) <= lifetime + 1
    # From the end of the hold on, one step narrower per step period, down to the base.
    hold = round(ADAPTIVE_MARGIN_HOLD * SECOND)
    every = round(ADAPTIVE_MARGIN_STEP_EVERY * SECOND)
    windows = [
        (await other.reserve(now_us=T0 + hold + k * every)).window_us for k in range(-1, 4)
    ]
    assert windows == [1_200_000, 1_150_000, 1_100_000, 1_050_000, 1_050_000]


async def test_a_429_during_a_pause_does_not_widen_again(r: aredis.Redis) -> None:
    limiter = RedisRateLimiter(r, key=fresh_key())
    await limiter.cooldown(2.0, now_us=T0)  # widens at T0
    await limiter.cooldown(2.0, now_us=T0 + SECOND)  # paused: one of the same burst
    assert int(await r.get(limiter.keys[2]) or -1) == T0
    permit = await limiter.acquire()  # every limiter returns a permit; this one does not move
    assert isinstance(permit, Permit) and not permit.pending
    fixed = RedisRateLimiter(r, key=fresh_key(), max_margin=0.05)
    await fixed.cooldown(1.0, now_us=T0)
    assert await r.get(fixed.keys[2]) is None


async def test_keys_share_one_hash_tag_namespaced_by_host(r: aredis.Redis) -> None:
    limiter = RedisRateLimiter(r, key="jobs", host="api.calltouch.ru")
    assert limiter.keys == (
        "{calltouch:api.calltouch.ru:jobs}:starts",
        "{calltouch:api.calltouch.ru:jobs}:pause",
        "{calltouch:api.calltouch.ru:jobs}:margin",
    )
    assert len({key_slot(k.encode()) for k in limiter.keys}) == 1
    other_host = RedisRateLimiter(r, key="jobs", host="api.example.test")
    assert not set(limiter.keys) & set(other_host.keys)
    with pytest.raises(ValueError, match="braces"):
        RedisRateLimiter(r, key="a}b")


async def test_works_on_a_redis_cluster() -> None:
    """A one-node cluster: the script's keys must hash to one slot (no CROSSSLOT error)."""
    # The bus port is given: by default it is the port + 10000, too high for many free ports.
    cluster_args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-port", str(free_port()))  # fmt: skip
    with RedisServer(extra_args=cluster_args) as server:
        admin = aredis.Redis.from_url(server.url)
        try:
            await admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            for _ in range(200):
                info = await admin.execute_command("CLUSTER", "INFO")
                if b"cluster_state:ok" in info:
                    break
                await asyncio.sleep(0.05)
        finally:
            await admin.aclose()
        cluster = RedisCluster.from_url(server.url)
        try:
            limiter = RedisRateLimiter(cluster, key=fresh_key(), rate=2, period=1.0)
            slots = [await limiter.reserve(now_us=T0) for _ in range(3)]
            assert [x.slot_us for x in slots] == [T0, T0, T0 + limiter.window_us]
            await limiter.cooldown(0.01)
            await limiter.acquire()
        finally:
            await cluster.aclose()


def reference_slot(history: list[int], now: int, paused: int, rate: int, window: int) -> int:
    """The earliest start, by brute force over the whole history (nothing trimmed).

    Earliest ``s`` not before ``now``, the pause and the latest reservation, such that the
    history plus ``s`` has at most ``rate`` starts in any window ``[t, t + window)``.
    """
    floor = max([now, paused, *history])
    for s in sorted({floor, *(h + window for h in history if h + window > floor)}):
        starts = sorted([*history, s])
        if all(starts[i + rate] - starts[i] >= window for i in range(len(starts) - rate)):
            return s
    raise AssertionError("unreachable: the last candidate is always feasible")


# Keys expire in real time after as long as the injected times say they matter, so windows
# and pauses stay far longer than an example takes to run (a few milliseconds).
operations = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "reserve", "reserve", "cooldown"]),
        st.integers(-50_000, 1_500_000),  # server time step, µs (small steps back included)
        st.integers(500_000, 3_000_000),  # cooldown length, µs
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations, rate=st.integers(1, 6), window=st.integers(500_000, 2_000_000))
def test_script_matches_brute_force_oracle(
    redis_url: str, ops: list[tuple[str, int, int]], rate: int, window: int
) -> None:
    async def run() -> None:
        client = aredis.Redis.from_url(redis_url)
        try:
            limiter = RedisRateLimiter(
                client, key=fresh_key(), rate=rate, period=1.0, max_margin=0.0
            )
            limiter.window_us = window  # any window, including odd microsecond counts
            now, paused, history = T0, 0, list[int]()
            for op, step, length in ops:
                now += step
                if op == "cooldown":
                    await limiter.cooldown(length / SECOND, now_us=now)
                    paused = max(paused, now + length)
                    continue
                expected = reference_slot(history, now, paused, rate, window)
                got = await limiter.reserve(now_us=now)
                assert (got.now_us, got.slot_us) == (now, expected)
                history.append(expected)
        finally:
            await client.aclose()

    asyncio.run(run())


# --- real time, one process -----------------------------------------------------------------


async def test_limiters_on_separate_connections_share_one_budget(redis_url: str) -> None:
    rate, period, per_limiter = 5, 0.5, 10
    key = fresh_key()
    clients = [aredis.Redis.from_url(redis_url) for _ in range(3)]
    try:
        limiters = [RedisRateLimiter(c, key=key, rate=rate, period=period) for c in clients]
        starts: list[float] = []

        async def one(limiter: RedisRateLimiter) -> None:
            await limiter.acquire()
            starts.append(time.monotonic())

        begin = time.monotonic()
        async with asyncio.TaskGroup() as tasks:
            for limiter in limiters:
                for _ in range(per_limiter):
                    tasks.create_task(one(limiter))
        elapsed = time.monotonic() - begin
    finally:
        for c in clients:
            await c.aclose()
    assert len(starts) == 30
    assert max_in_window(starts, period) <= rate
    # ... and no slower than the budget: 6 bursts of 5, a window (0.525 s) apart.
    assert elapsed < 5 * period * 1.05 + 0.4


# --- Redis unreachable ----------------------------------------------------------------------


async def test_unreachable_redis_raises_after_the_bounded_wait() -> None:
    client = aredis.Redis.from_url(f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0")
    try:
        limiter = RedisRateLimiter(client, key="jobs", unavailable_timeout=0.5)
        begin = time.monotonic()
        with pytest.raises(RateLimiterUnavailableError) as caught:
            await limiter.acquire()
        assert 0.45 <= time.monotonic() - begin < 2.0
        message = str(caught.value)
        assert "api.calltouch.ru" in message and "'jobs'" in message
        assert "s3cret" not in message and "s3cret" not in repr(limiter)
        with pytest.raises(RateLimiterUnavailableError):
            await limiter.cooldown(1.0)
    finally:
        await client.aclose()


async def test_redis_killed_mid_run_stops_every_start_then_recovers() -> None:
    with RedisServer() as server:
        clients = [aredis.Redis.from_url(server.url) for _ in range(3)]
        try:
            key = fresh_key()
            limiters = [
                RedisRateLimiter(c, key=key, rate=5, period=0.5, unavailable_timeout=0.6)
                for c in clients
            ]
            starts: list[float] = []
            killed_at: list[float] = []

            async def worker(limiter: RedisRateLimiter) -> float:
                while True:
                    try:
                        await limiter.acquire()
                    except RateLimiterUnavailableError:
                        return time.monotonic()
                    starts.append(time.monotonic())
                    if len(starts) == 8 and not killed_at:
                        server.kill()
                        killed_at.append(time.monotonic())
                    await asyncio.sleep(0)

            failed_at = await asyncio.wait_for(
                asyncio.gather(*(worker(limiter) for limiter in limiters)), 10
            )
            kill = killed_at[0]
            # Each worker held at most one reservation when Redis died: no burst after it.
            assert len([t for t in starts if t > kill]) <= len(limiters)
            assert max_in_window(starts, 0.5) <= 5
            for t in failed_at:
                assert 0.5 <= t - kill < 2.0

            # The same limiters work again once Redis is back (script reloaded on NOSCRIPT).
            server.start()
            await asyncio.gather(*(limiter.acquire() for limiter in limiters))
        finally:
            for c in clients:
                await c.aclose()


# --- with the client, against the emulator --------------------------------------------------


def emulator() -> CalltouchEmulator:
    """Calltouch's rule, strictly: at most 5 arrivals in any 1 s window, no added jitter."""
    return new_emulator(
        0, access_token="test-token", rate_limit=5, rate_period=1.0, inbound_jitter=0.0
    )


async def test_client_sends_nothing_while_redis_is_down() -> None:

    with RedisServer() as server:
        client_r = aredis.Redis.from_url(server.url)
        try:
            limiter = RedisRateLimiter(client_r, key=fresh_key(), unavailable_timeout=0.5)
            async with emulator() as emu:
                emu.generate(calls=10)
                async with CalltouchClient(
                    12345, "test-token", base_url=emu.base_url, rate_limiter=limiter
                ) as client:
                    for i in (1, 2, 3):
                        lead = LeadComment([CallMatch(call_id=i)], f"lead {i}")
                        [result] = await client.comment([lead])
                        assert result.status == "commented"
                    server.kill()
                    lead = LeadComment([CallMatch(call_id=4)], "lead 4")
                    # Not sent, so `failed` (safe to send again), with the limiter's reason;
                    # other requests of the same stream are not torn down with it.
                    [result] = await client.comment([lead])
                    assert result.status == "failed"
                    assert "Redis" in (result.error or "")
                assert len(emu.ledger.requests) == 3
                assert emu.ledger.text_counts() == Counter({f"lead {i}": 1 for i in (1, 2, 3)})
        finally:
            await client_r.aclose()


async def run_workers(
    base_url: str,
    redis_url: str,
    limiter: str,
    chunks_per_worker: list[list[list[int]]],
    budget: float = 8.0,
) -> list[dict[str, Any]]:
    """Start one process per worker, wait until all are ready, start them together."""
    key = fresh_key()
    configs = [
        {"base_url": base_url, "limiter": limiter, "redis_url": redis_url, "key": key,
         "chunks": chunks, "budget": budget}
        for chunks in chunks_per_worker
    ]
    return await run_together(TESTS / "redis_worker.py", configs)


WORKERS, REQUESTS_PER_WORKER, LEADS_PER_REQUEST = 4, 5, 3


def worker_chunks() -> list[list[list[int]]]:
    ids = iter(range(1, WORKERS * REQUESTS_PER_WORKER * LEADS_PER_REQUEST + 1))
    return [
        [[next(ids) for _ in range(LEADS_PER_REQUEST)] for _ in range(REQUESTS_PER_WORKER)]
        for _ in range(WORKERS)
    ]


async def test_worker_processes_share_the_limit_through_redis(redis_url: str) -> None:
    total_leads = WORKERS * REQUESTS_PER_WORKER * LEADS_PER_REQUEST
    async with emulator() as emu:
        emu.generate(calls=total_leads)
        results = await run_workers(emu.base_url, redis_url, "redis", worker_chunks())
        ledger = emu.ledger
        arrivals = sorted(rec.arrived_at for rec in ledger.requests)
        rate_limited = ledger.count("rate_limited")
        in_window = ledger.max_in_window(1.0, accepted_only=False)
        texts = ledger.text_counts()
    busy = arrivals[-1] - arrivals[0]
    # The first five ride the initial burst; every later one costs a fifth of a window.
    steady_rate = (len(arrivals) - 5) / busy
    print(
        f"\nredis: {len(arrivals)} requests, {rate_limited} x 429, max {in_window} in 1 s, "
        f"{steady_rate:.2f} req/s over {busy:.2f} s"
    )
    assert [res["error"] for res in results] == [None] * WORKERS
    assert rate_limited == 0
    assert in_window <= 5
    assert len(arrivals) == WORKERS * REQUESTS_PER_WORKER
    assert steady_rate >= 0.9 * 5
    statuses = Counter(s for res in results for s in res["statuses"].values())
    assert statuses == Counter({"commented": total_leads})
    assert texts == Counter({f"lead {i}": 1 for i in range(1, total_leads + 1)})


async def test_negative_control_per_process_limiters_get_429(redis_url: str) -> None:
    async with emulator() as emu:
        emu.generate(calls=WORKERS * REQUESTS_PER_WORKER * LEADS_PER_REQUEST)
        # The 429s come in the first burst; no need to wait for the retries to drain.
        await run_workers(emu.base_url, redis_url, "local", worker_chunks(), budget=2.0)
        rate_limited = emu.ledger.count("rate_limited")
        in_window = emu.ledger.max_in_window(1.0, accepted_only=False)
    print(f"\nper-process limiters: {rate_limited} x 429, max {in_window} in 1 s")
    assert rate_limited > 0
    assert in_window > 5


async def test_limiter_satisfies_the_protocol(r: aredis.Redis) -> None:
    limiter = RedisRateLimiter(r)
    assert isinstance(limiter, RateLimiter)
    assert repr(limiter) == (
        "RedisRateLimiter(host='api.calltouch.ru', key='calltouch', rate=5, window=1.050s)"
    )
