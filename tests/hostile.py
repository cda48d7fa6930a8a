"""A small hostile stand-in for Calltouch on 127.0.0.1, for what the emulator deliberately
never does (redirect, flood, echo the token, drop a connection mid-upload).

``serve(handler)`` runs an aiohttp.web server answering every path with ``handler`` and
records each request it received in full (method, path, headers, body).
"""

from __future__ import annotations

import asyncio
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
    headers: dict[str, str] = field(repr=False)  # holds the token
    body: bytes = field(repr=False)

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


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serve_raw(handler: RawHandler, **server_options: Any) -> AsyncIterator[str]:
    """A bare TCP server on 127.0.0.1 for misbehaviour below HTTP (drops, resets); yields
    its base URL. ``handler`` gets each connection's reader and writer."""
    connections: set[asyncio.Task[None]] = set()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            connections.discard(task)

    if "sock" not in server_options:
        server_options.update(host="127.0.0.1", port=0)
    server = await asyncio.start_server(run, **server_options)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in list(connections):
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, int]:
    """Read one request's head; return it and its Content-Length (the body is left unread)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, length
