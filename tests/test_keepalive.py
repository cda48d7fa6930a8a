"""Stale keep-alive connections: a server closing a connection just as a request is written
on it. What provably did not go out is retried; what went out whole stays ``unknown``; and
the client retires idle connections before common servers and load balancers do.

The idle periods below are the stimulus (a connection left unused), not waits for a result.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from aiohttp import web
from hostile import Server, apply_all, serve

from calltouch_async import CallMatch, CalltouchClient, CommentStatus, LeadComment, RetryPolicy
from calltouch_async._constants import KEEPALIVE_TIMEOUT
from conftest import SITE_ID, TOKEN

S = CommentStatus
FAST = RetryPolicy(base_delay=0.01, max_delay=0.02)


async def test_a_server_closing_idle_connections_after_half_a_second() -> None:
    # Each request follows the previous answer by the server's idle timeout, so it races
    # the server's close of the connection it is about to reuse.
    async with serve(apply_all, keepalive_timeout=0.5) as api:
        async with CalltouchClient(
            SITE_ID, TOKEN, base_url=api.url, rate_limiter=None, retry=FAST
        ) as client:
            results = []
            for i in range(12):
                lead = LeadComment([CallMatch(i + 1)], f"lead-{i}")
                results += await client.comment([lead])
                await asyncio.sleep(0.5)
    applied = Counter(
        lead["addComment"] for r in api.posts for lead in _comments(r.body)
    )
    assert all(count == 1 for count in applied.values())  # nothing applied twice
    for result in results:
        if result.status is S.COMMENTED:
            assert applied[result.lead.comment] == 1
        else:
            # Never "failed", and "unknown" only for a request written in full: one that
            # could not be written was retried on a fresh connection.
            assert result.status is S.UNKNOWN, result
            assert "Can not write request body" not in (result.error or "")


def _comments(body: bytes) -> list[dict[str, str]]:
    return list(json.loads(body)["comments"])


async def test_a_connection_idle_longer_than_the_keepalive_is_not_reused() -> None:
    peers: list[object] = []

    async def remember_peer(request: web.Request, server: Server) -> web.Response:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        return await apply_all(request, server)

    # A server that keeps idle connections 5 s (Apache, Node.js and uvicorn's default):
    # a connection the client left idle longer than its own keep-alive is never reused,
    # so the client never races such a server's close.
    assert KEEPALIVE_TIMEOUT < 5
    async with serve(remember_peer, keepalive_timeout=5.0) as api:
        async with CalltouchClient(SITE_ID, TOKEN, base_url=api.url, rate_limiter=None) as c:
            await c.comment([LeadComment([CallMatch(1)], "first")])
            await c.comment([LeadComment([CallMatch(2)], "second")])  # warm: reused
            await asyncio.sleep(KEEPALIVE_TIMEOUT + 0.3)
            await c.comment([LeadComment([CallMatch(3)], "after idling")])
    assert peers[0] == peers[1]
    assert peers[2] != peers[1]
