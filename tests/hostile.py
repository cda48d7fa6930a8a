"""A small hostile stand-in for Calltouch on 127.0.0.1, for what the emulator deliberately
never does (redirect, flood, echo the token, drop a connection mid-upload).

``serve(handler)`` runs an aiohttp.web server answering every path with ``handler`` and
records each request it received in full (method, path, headers, body).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

COMMENT_PATH = "/lead-service/v1/api/comment/lead/add"


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def leads(self) -> int:
        return len(json.loads(self.body)["comments"]) if self.body else 0


@dataclass
class Server:
    url: str = ""
    requests: list[Received] = field(default_factory=list)

    @property
    def posts(self) -> list[Received]:
        return [r for r in self.requests if r.method == "POST"]


Handler = Callable[[web.Request, Server], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def serve(handler: Handler, **runner_options: Any) -> AsyncIterator[Server]:
    server = Server()

    async def record(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        server.requests.append(
            Received(request.method, request.path, dict(request.headers), body)
        )
        return await handler(request, server)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


def results_body(count: int, *, commented: bool = True, **extra: Any) -> dict[str, Any]:
    entry = {"callInfo": None, "requestInfo": None, "commented": commented, "error": None}
    entry.update(extra)
    return {"meta": [], "data": {"comments": [dict(entry) for _ in range(count)]}}


async def apply_all(request: web.Request, server: Server) -> web.Response:
    """Answer like Calltouch when every lead of the request was commented."""
    return web.json_response(results_body(server.requests[-1].leads()))
