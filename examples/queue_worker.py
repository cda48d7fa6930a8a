"""A queue consumer: many worker coroutines, one lead each per message, one shared client.

``submit()`` coalesces what the workers submit at the same moment into shared requests; the
client keeps the process under 5 requests/second however many workers there are.

Run against the emulator::

    python -m calltouch_async.testing --port 8080 --calls 1000 &
    CALLTOUCH_BASE_URL=http://127.0.0.1:8080 CALLTOUCH_ACCESS_TOKEN=test-token \\
        CALLTOUCH_SITE_ID=12345 python examples/queue_worker.py
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter

from calltouch_async import CallMatch, CalltouchClient, CommentStatus, LeadComment

WORKERS = 50


async def worker(
    queue: asyncio.Queue[LeadComment], client: CalltouchClient, tally: Counter[str]
) -> None:
    while True:
        lead = await queue.get()
        try:
            result = await client.submit(lead)
            tally[result.status.value] += 1
            if result.status is CommentStatus.UNKNOWN:
                # May or may not be applied: record it for review rather than re-sending it.
                print(f"check by hand: {lead.comment!r} ({result.error})")
        finally:
            queue.task_done()


async def main() -> None:
    queue: asyncio.Queue[LeadComment] = asyncio.Queue()
    for call_id in range(1, 1001):  # stands in for messages from your broker
        queue.put_nowait(LeadComment([CallMatch(call_id)], f"Follow-up for call {call_id}"))
    tally: Counter[str] = Counter()
    async with CalltouchClient(
        site_id=os.environ["CALLTOUCH_SITE_ID"],
        access_token=os.environ["CALLTOUCH_ACCESS_TOKEN"],
        base_url=os.environ.get("CALLTOUCH_BASE_URL", "https://api.calltouch.ru"),
    ) as client:
        workers = [asyncio.create_task(worker(queue, client, tally)) for _ in range(WORKERS)]
        await queue.join()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    print(dict(tally))


if __name__ == "__main__":
    asyncio.run(main())
