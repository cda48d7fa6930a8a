"""Answers are read up to a cap, after decompression: a hostile answer costs at most a few
caps of memory. Measured in a separate client process (peak RSS before and after the
request), so the server's own buffers and this test runner do not blur the figure.
"""

from __future__ import annotations

import asyncio
import json
import sys
import zlib
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from hostile import Server, serve

from calltouch_async._constants import MAX_ANSWER_BYTES

MiB = 1 << 20
#: Peak RSS growth allowed for one hostile answer: a few caps, plus room for the allocator.
ALLOWED_GROWTH = 4 * MAX_ANSWER_BYTES + 8 * MiB

CLIENT = """
import asyncio, json, resource, sys
from calltouch_async import CalltouchClient, CallMatch, LeadComment

def peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

async def main(url: str) -> None:
    leads = [LeadComment([CallMatch(i + 1)], f"lead-{i}") for i in range(3)]
    async with CalltouchClient(12345, "s3cret", base_url=url + "/warm", rate_limiter=None) as c:
        await c.comment(leads)  # every module and buffer of a normal exchange in place
    before = peak()
    async with CalltouchClient(12345, "s3cret", base_url=url + "/hostile", rate_limiter=None) as c:
        results = await c.comment(leads)
    print(json.dumps({"growth": peak() - before, "statuses": [r.status for r in results]}))

asyncio.run(main(sys.argv[1]))
"""


def gzip_bomb(decompressed: int) -> bytes:
    """Zeros that gzip to about a thousandth of their size."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(MiB)
    return b"".join(packer.compress(block) for _ in range(decompressed // MiB)) + packer.flush()


async def stream(request: web.Request, chunk: bytes, total: int) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        for _ in range(total // len(chunk)):
            await response.write(chunk)
        await response.write_eof()
    except ConnectionError:
        pass  # the client stopped reading at its cap and closed the connection
    return response


BOMB = gzip_bomb(200 * MiB)


async def bomb(request: web.Request) -> web.StreamResponse:
    return web.Response(
        body=BOMB, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )


async def empty_entries(request: web.Request) -> web.StreamResponse:
    # {"data": {"comments": [{}, {}, ... 40 MB
    return await stream(request, b"{}," * 21_846, 40 * MiB)


async def invalid_utf8(request: web.Request) -> web.StreamResponse:
    return await stream(request, b"\xff\xfe" * 32_768, 100 * MiB)


HOSTILE: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {
    "gzip-bomb-200MB": bomb,
    "40MB-of-empty-entries": empty_entries,
    "100MB-invalid-utf8": invalid_utf8,
}


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_a_hostile_answer_costs_at_most_a_few_caps_of_memory(name: str) -> None:
    async def answer(request: web.Request, server: Server) -> web.StreamResponse:
        if request.path.startswith("/warm"):
            body = {"meta": [], "data": {"comments": [{"commented": True}] * 3}}
            return web.json_response(body)
        return await HOSTILE[name](request)

    async with serve(answer) as api:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CLIENT, api.url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["statuses"] == ["unknown"] * 3
    assert report["growth"] <= ALLOWED_GROWTH, f"{name}: peak RSS grew {report['growth']:,} B"


async def test_a_cycle_through_a_result_is_collected() -> None:
    # A caller's lead may carry the caller's bookkeeping, which may keep the result: the
    # cycle job -> result -> lead -> job must not outlive them (results are GC-tracked).
    import gc
    import weakref

    import msgspec
    from hostile import apply_all

    from calltouch_async import CalltouchClient, LeadComment
    from conftest import SITE_ID, make_leads

    class Job(dict[str, object]):
        pass

    class TaggedLead(LeadComment, kw_only=True):
        job: dict[str, object] = msgspec.field(default_factory=dict)

    base = make_leads(1)[0]
    async with serve(apply_all) as api:
        async with CalltouchClient(SITE_ID, "t0ken-xyz", base_url=api.url, rate_limiter=None) as c:
            job = Job()
            lead = TaggedLead(matching=base.matching, comment=base.comment, job=job)
            (result,) = await c.comment([lead])
            job["results"] = [result]
            probe = weakref.ref(job)
            del job, lead, result
    gc.collect()
    assert probe() is None
