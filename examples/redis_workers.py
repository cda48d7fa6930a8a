"""Several worker processes behind one IP, sharing one 5 requests/second budget through Redis.

Calltouch counts requests per client IP. Worker processes (gunicorn/uvicorn workers,
Celery/arq/taskiq workers, pods behind one NAT address) that each keep their own limiter
multiply the rate and collect 429s. With ``RedisRateLimiter`` every process reserves its
start slots in one Redis (or Valkey), so together they never exceed the limit. Each process
here has its own Redis connection, limiter and client, as separate deployments would.

Needs ``pip install 'calltouch-async[redis]'`` and a Redis/Valkey server. Against the emulator::

    python -m calltouch_async.testing --port 8080 --calls 1000 &
    REDIS_URL=redis://127.0.0.1:6379/0 CALLTOUCH_BASE_URL=http://127.0.0.1:8080 \\
        CALLTOUCH_SITE_ID=12345 CALLTOUCH_ACCESS_TOKEN=test-token python examples/redis_workers.py

Against Calltouch leave out ``CALLTOUCH_BASE_URL`` and set your site id and token (and the
ids of real calls in ``jobs_for``).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections import Counter
from urllib.parse import urlsplit

import redis.asyncio as redis

from calltouch_async import CallMatch, CalltouchClient, LeadComment
from calltouch_async.redis_limiter import RedisRateLimiter

WORKERS = 4
JOBS_PER_WORKER = 5
LEADS_PER_JOB = 20
BASE_URL = os.environ.get("CALLTOUCH_BASE_URL", "https://api.calltouch.ru")


def jobs_for(worker: int) -> list[list[LeadComment]]:
    """Stands in for what this worker takes from its queue: small batches of leads."""
    first = worker * JOBS_PER_WORKER * LEADS_PER_JOB + 1
    return [
        [
            LeadComment([CallMatch(call_id)], f"Follow-up for call {call_id}")
            for call_id in range(start, start + LEADS_PER_JOB)
        ]
        for start in range(first, first + JOBS_PER_WORKER * LEADS_PER_JOB, LEADS_PER_JOB)
    ]


async def work(worker: int) -> Counter[str]:
    r = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    # The same `host` (and `key`) in every process means one shared budget. Name the API
    # host you talk to, so a budget for the emulator never mixes with the real one.
    limiter = RedisRateLimiter(r, host=urlsplit(BASE_URL).netloc)
    tally: Counter[str] = Counter()
    try:
        async with CalltouchClient(
            site_id=os.environ["CALLTOUCH_SITE_ID"],
            access_token=os.environ["CALLTOUCH_ACCESS_TOKEN"],
            base_url=BASE_URL,
            rate_limiter=limiter,  # the only change from a single-process setup
        ) as client:

            async def job(leads: list[LeadComment]) -> None:
                for result in await client.comment(leads):  # one request per job
                    tally[result.status.value] += 1

            async with asyncio.TaskGroup() as tasks:
                for leads in jobs_for(worker):
                    tasks.create_task(job(leads))
    finally:
        await r.aclose()  # the limiter never closes the connection it was given
    return tally


def run_worker(worker: int) -> Counter[str]:
    return asyncio.run(work(worker))


def main() -> None:
    started = time.monotonic()
    # Separate processes, as separate deployments would be ("spawn": nothing is inherited).
    with multiprocessing.get_context("spawn").Pool(WORKERS) as pool:
        tallies = pool.map(run_worker, range(WORKERS))
    elapsed = time.monotonic() - started
    for worker, tally in enumerate(tallies):
        print(f"worker {worker}: {dict(tally)}")
    requests = WORKERS * JOBS_PER_WORKER
    print(f"{requests} requests from {WORKERS} processes in {elapsed:.1f} s (limit: 5 per second)")


if __name__ == "__main__":
    main()
