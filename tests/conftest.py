"""Shared fixtures: a real emulator on 127.0.0.1 and leads that match its generated calls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from calltouch_async import CallMatch, CalltouchClient, LeadComment
from calltouch_async.testing import CalltouchEmulator

SITE_ID = 12345
TOKEN = "s3cret-t0ken-value"


def make_leads(n: int, *, prefix: str = "lead", first_id: int = 1) -> list[LeadComment]:
    """``n`` valid leads matching calls ``first_id..``, each with a unique comment text."""
    return [
        LeadComment([CallMatch(first_id + i)], f"{prefix}-{i}") for i in range(n)
    ]


EmulatorFactory = Callable[..., AbstractAsyncContextManager[CalltouchEmulator]]


@pytest.fixture
def emulator() -> EmulatorFactory:
    """``async with emulator(calls=N, **knobs) as emu``: started, seeded with N calls."""

    @asynccontextmanager
    async def start(calls: int = 1000, **knobs: Any) -> AsyncIterator[CalltouchEmulator]:
        knobs.setdefault("site_id", SITE_ID)
        knobs.setdefault("access_token", TOKEN)
        async with CalltouchEmulator(**knobs) as emu:
            emu.generate(calls=calls, requests=calls)
            yield emu

    return start


def client_for(emu: CalltouchEmulator, **options: Any) -> CalltouchClient:
    options.setdefault("rate_limiter", None)
    return CalltouchClient(SITE_ID, TOKEN, base_url=emu.base_url, **options)
