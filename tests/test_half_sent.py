"""A request the connection dropped before its body was written in full was provably not
executed (the server never had a complete body): it is retried, never reported ``unknown``.
A request written in full whose answer was lost stays ``unknown``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from hostile import read_request, results_body, serve_raw

from calltouch_async import (
    CallMatch,
    CalltouchClient,
    CommentStatus,
    LeadComment,
    RetryPolicy,
    SendTimeTrace,
)
from conftest import SITE_ID, TOKEN

S = CommentStatus


@pytest.fixture
def small_window() -> Iterator[socket.socket]:
    """A listening socket whose connections accept only a few KB before the server reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    yield sock
    sock.close()


def small_send_buffer(addr_info: tuple[Any, ...]) -> socket.socket:
    """Client sockets that hold only a few KB unsent (the kernel would otherwise take it all)."""
    family, kind, proto = addr_info[:3]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return sock


def big_leads(n: int) -> list[LeadComment]:
    # ~2 KB of UTF-8 each: a 100-lead body of ~200 KB cannot fit in the socket buffers.
    return [LeadComment([CallMatch(i + 1)], f"{i}-" + "ж" * 990) for i in range(n)]


def reset(writer: asyncio.StreamWriter) -> None:
    """Drop the connection with a TCP reset, as a server closing a stale connection may."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def answer(leads: int) -> bytes:
    body = json.dumps(results_body(leads)).encode()
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def test_a_body_cut_off_while_being_written_is_retried_not_unknown(
    small_window: socket.socket,
) -> None:
    complete_bodies: list[bytes] = []
    connections = 0

    async def reset_the_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        _, length = await read_request(reader)
        if connections == 1:
            reset(writer)  # only the head was read: the body is still on its way
            return
        body = await reader.readexactly(length)
        complete_bodies.append(body)
        writer.write(answer(len(json.loads(body)["comments"])))
        await writer.drain()

    leads = big_leads(100)
    retry = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02)
    connector = aiohttp.TCPConnector(socket_factory=small_send_buffer)
    async with serve_raw(reset_the_first, sock=small_window, limit=4096) as url:
        async with aiohttp.ClientSession(
            connector=connector, trace_configs=[SendTimeTrace()]
        ) as session, CalltouchClient(
            SITE_ID, TOKEN, base_url=url, rate_limiter=None, retry=retry, session=session
        ) as client:
            results = await client.comment(leads)
    assert [r.status for r in results] == [S.COMMENTED] * 100
    assert connections == 2 and len(complete_bodies) == 1  # applied exactly once


async def test_a_body_written_in_full_then_dropped_stays_unknown() -> None:
    complete_bodies: list[bytes] = []

    async def read_then_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, length = await read_request(reader)
        complete_bodies.append(await reader.readexactly(length))
        reset(writer)  # applied, then the answer is lost

    async with serve_raw(read_then_drop) as url:
        async with CalltouchClient(SITE_ID, TOKEN, base_url=url, rate_limiter=None) as client:
            results = await client.comment(big_leads(3))
    assert [r.status for r in results] == [S.UNKNOWN] * 3
    assert len(complete_bodies) == 1  # never re-sent
