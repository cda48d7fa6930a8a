"""One worker process of the multi-process rate limit tests (``tests/test_redis_limiter.py``).

Run as ``python tests/redis_worker.py CONFIG_JSON``. It builds its own client and limiter,
prints ``ready``, waits for a line on stdin (so all workers start together), sends one
``client.comment`` request per chunk of call ids, all at once, and prints one line of JSON:
``{"statuses": {call_id: status}, "error": null | "ExceptionName: message"}``.

CONFIG_JSON keys: ``base_url``, ``limiter`` (``"redis"`` or ``"local"``), ``redis_url``,
``key``, ``chunks`` (list of lists of call ids), ``budget`` (seconds before giving up).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any


async def work(cfg: dict[str, Any]) -> dict[str, Any]:
    import redis.asyncio as aredis

    from calltouch_async import CallMatch, CalltouchClient, LeadComment
    from calltouch_async._limiter import RateLimiter, SlidingWindowLimiter
    from calltouch_async.redis_limiter import RedisRateLimiter

    redis_client = aredis.Redis.from_url(cfg["redis_url"])
    try:
        limiter: RateLimiter
        if cfg["limiter"] == "redis":
            await redis_client.ping()  # connect before "ready": no setup cost after "go"
            limiter = RedisRateLimiter(redis_client, key=cfg["key"], host="127.0.0.1")
        else:
            limiter = SlidingWindowLimiter()
        statuses: dict[int, str] = {}
        error = None
        async with CalltouchClient(
            12345, "test-token", base_url=cfg["base_url"], rate_limiter=limiter
        ) as client:
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)

            async def one(ids: list[int]) -> None:
                leads = [LeadComment([CallMatch(call_id=i)], f"lead {i}") for i in ids]
                for call_id, result in zip(ids, await client.comment(leads), strict=True):
                    statuses[call_id] = str(result.status)

            try:
                async with asyncio.timeout(cfg["budget"]), asyncio.TaskGroup() as tasks:
                    for ids in cfg["chunks"]:
                        tasks.create_task(one(ids))
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        return {"statuses": statuses, "error": error}
    finally:
        await redis_client.aclose()


def main() -> None:
    result = asyncio.run(work(json.loads(sys.argv[1])))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
