"""An aiohttp web service that comments one lead per HTTP request with ``submit()``.

One long-lived client for the whole app (created on startup, closed on cleanup): concurrent
handlers share 100-lead requests, so the service reaches hundreds of leads per second under
Calltouch's 5 requests/second.

Run against the emulator::

    python -m calltouch_async.testing --port 8080 --calls 1000 &
    CALLTOUCH_BASE_URL=http://127.0.0.1:8080 CALLTOUCH_ACCESS_TOKEN=test-token \\
        CALLTOUCH_SITE_ID=12345 python examples/web_handler.py
    curl -X POST localhost:8081/comment -d '{"call_id": 5, "text": "Called back"}'
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from aiohttp import web

from calltouch_async import CallMatch, CalltouchClient, LeadComment

CLIENT = web.AppKey("calltouch", CalltouchClient)


async def calltouch_client(app: web.Application) -> AsyncIterator[None]:
    client = CalltouchClient(
        site_id=os.environ["CALLTOUCH_SITE_ID"],
        access_token=os.environ["CALLTOUCH_ACCESS_TOKEN"],
        base_url=os.environ.get("CALLTOUCH_BASE_URL", "https://api.calltouch.ru"),
    )
    async with client:  # on shutdown: pending leads are flushed, then the session closes
        app[CLIENT] = client
        yield


async def comment(request: web.Request) -> web.Response:
    payload = await request.json()
    lead = LeadComment([CallMatch(int(payload["call_id"]))], str(payload["text"]))
    result = await request.app[CLIENT].submit(lead)
    return web.json_response({"status": result.status, "error": result.error})


def make_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(calltouch_client)
    app.router.add_post("/comment", comment)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), port=8081)
