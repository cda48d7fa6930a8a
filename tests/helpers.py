"""The one module of test helpers: identities, leads, the emulator factory, waiting, decoding.

Test files import from here (``from helpers import ...``); ``conftest.py`` only turns these into
fixtures. Nothing here sleeps a guessed time: :func:`until` polls a condition with a generous
cap, so a loaded machine makes a test slower, never red.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec

from calltouch_async import CallMatch, CalltouchClient, LeadComment
from calltouch_async.testing import CalltouchEmulator

__all__ = [
    "SITE_ID",
    "TOKEN",
    "UNTIL_TIMEOUT",
    "EmulatorFactory",
    "FakeClock",
    "client_for",
    "decode_leads",
    "make_leads",
    "max_in_window",
    "new_emulator",
    "until",
]

SITE_ID = 12345
# Not the emulator's default token: tests that check the token never leaks look for this one.
TOKEN = "s3cret-t0ken-value"
#: How long :func:`until` waits by default: far above any honest wait, so only a hang fails.
UNTIL_TIMEOUT = 30.0

EmulatorFactory = Callable[..., CalltouchEmulator]


def new_emulator(calls: int = 1000, **knobs: Any) -> CalltouchEmulator:
    """A not yet started emulator for :data:`SITE_ID` / :data:`TOKEN`, seeded with ``calls``
    calls and as many requests (ids ``1..calls``); ``knobs`` go to ``CalltouchEmulator``.

    Use it with ``async with`` (or ``await emu.start()``); the ``emulator`` fixture wraps it
    and closes whatever a test leaves running.
    """
    knobs.setdefault("site_id", SITE_ID)
    knobs.setdefault("access_token", TOKEN)
    emu = CalltouchEmulator(**knobs)
    if calls:
        emu.generate(calls=calls, requests=calls)
    return emu


def make_leads(n: int, *, prefix: str = "lead", first_id: int = 1) -> list[LeadComment]:
    """``n`` valid leads matching calls ``first_id..``, each with a unique comment text."""
    return [LeadComment([CallMatch(first_id + i)], f"{prefix}-{i}") for i in range(n)]


def client_for(emu: CalltouchEmulator, **options: Any) -> CalltouchClient:
    """A client for ``emu`` with no rate limiter unless the test passes one."""
    options.setdefault("rate_limiter", None)
    return CalltouchClient(SITE_ID, TOKEN, base_url=emu.base_url, **options)


# A cap per call reads better at the call site than a wrapping ``asyncio.timeout`` block.
async def until(
    condition: Callable[[], object],
    *,
    timeout: float = UNTIL_TIMEOUT,  # noqa: ASYNC109
    every: float = 0.01,
) -> None:
    """Return as soon as ``condition()`` is true; raise ``TimeoutError`` after ``timeout`` s.

    For waiting on something the test cannot await directly (a request reaching the server, a
    task parking in a queue). The condition is checked before the first pause, so a state that
    already holds costs no sleep at all.
    """
    # Polling, not an Event: the conditions are other code's state (a ledger, a queue), which
    # signals nothing a test could await.
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(every)


class _Body(msgspec.Struct):
    comments: list[LeadComment]


def decode_leads(body: bytes) -> list[LeadComment]:
    """A request body decoded back into leads, straight with msgspec (the package keeps no
    decoder for requests: only tests read them)."""
    return msgspec.json.decode(body, type=_Body).comments


class FakeClock:
    """Stands in for ``time.monotonic``: a window then depends on nothing but the test.

    ``sleep`` moves the clock instead of waiting, for code that takes a ``sleep`` argument.
    """

    __slots__ = ("now",)

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def max_in_window(times: Iterable[float], window: float) -> int:
    """Most events in any half-open window ``[t, t + window)`` starting at an event."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered)), default=0
    )


TESTS = Path(__file__).resolve().parent


async def run_together(
    script: Path, configs: list[dict[str, Any]], deadline: float = 30.0
) -> list[dict[str, Any]]:
    """Run ``script`` once per config (its JSON as the one argument) in its own process; wait
    until every process printed ``ready``, release them together (``go`` on stdin), and
    return the JSON each printed last."""
    path = [str(TESTS.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    procs: list[asyncio.subprocess.Process] = []
    try:
        for config in configs:
            procs.append(await asyncio.create_subprocess_exec(
                sys.executable, str(script), json.dumps(config), env=env,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            ))
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            if line.strip() != b"ready":
                _out, err = await proc.communicate()
                raise AssertionError(f"worker failed to start: {line!r}\n{err.decode()[-3000:]}")
        outputs = await asyncio.wait_for(
            asyncio.gather(*(proc.communicate(b"go\n") for proc in procs)), deadline
        )
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    results = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()[-3000:]
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    return results
