"""One worker process of the shared daily budget test (``tests/test_budget.py``).

Run as ``python tests/budget_worker.py CONFIG_JSON``. It builds a client on a
``RedisRateLimiter`` with ``daily_request_budget``, prints ``ready``, waits for a line on
stdin (so the workers start together), comments ``leads`` leads through ``comment_many`` and
prints one line of JSON: ``{"statuses": {status: count}, "errors": [...], "error": ...}``
where ``errors`` says, per failed lead, whether its reason named the budget.

CONFIG_JSON keys: ``base_url``, ``token``, ``redis_url``, ``key``, ``budget``, ``leads``,
``prefix``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from typing import Any


async def work(cfg: dict[str, Any]) -> dict[str, Any]:
    import redis.asyncio as aredis

    from calltouch_async import CallMatch, CalltouchClient, DailyBudgetExhaustedError, LeadComment
    from calltouch_async.redis_limiter import RedisRateLimiter

    redis_client = aredis.Redis.from_url(cfg["redis_url"])
    statuses: Counter[str] = Counter()
    errors: set[str] = set()
    error = None
    try:
        await redis_client.ping()  # connect before "ready": no setup cost after "go"
        limiter = RedisRateLimiter(redis_client, key=cfg["key"], host="127.0.0.1")
        async with CalltouchClient(
            12345, cfg["token"], base_url=cfg["base_url"], rate_limiter=limiter,
            daily_request_budget=cfg["budget"],
        ) as client:
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            leads = [
                LeadComment([CallMatch(call_id=i + 1)], f"{cfg['prefix']}-{i}")
                for i in range(cfg["leads"])
            ]
            try:
                async for result in client.comment_many(leads):
                    statuses[str(result.status)] += 1
                    if result.status == "failed":
                        named = "daily request budget" in (result.error or "")
                        errors.add("budget" if named else result.error or "")
            except DailyBudgetExhaustedError as exc:
                error = type(exc).__name__
    finally:
        await redis_client.aclose()
    return {"statuses": statuses, "errors": sorted(errors), "error": error}


def main() -> None:
    result = asyncio.run(work(json.loads(sys.argv[1])))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
