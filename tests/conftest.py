"""Fixtures over :mod:`helpers`: the one way to get an emulator, and a raw HTTP session.

The helpers themselves live in ``helpers.py``; the names below stay importable from here for
test files written before it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from calltouch_async.testing import CalltouchEmulator
from helpers import SITE_ID, TOKEN, EmulatorFactory, client_for, make_leads, new_emulator

__all__ = ["SITE_ID", "TOKEN", "EmulatorFactory", "client_for", "make_leads"]

#: The CLI tests' ``emu`` fixture.
pytest_plugins = ["cli_support"]


@pytest.fixture
async def emulator() -> AsyncIterator[EmulatorFactory]:
    """``emulator(calls=N, **knobs)``: :func:`helpers.new_emulator`, closed after the test.

    Use the result with ``async with emulator(...) as emu`` (or ``await emu.start()``).
    """
    made: list[CalltouchEmulator] = []

    def factory(calls: int = 1000, **knobs: Any) -> CalltouchEmulator:
        emu = new_emulator(calls, **knobs)
        made.append(emu)
        return emu

    try:
        yield factory
    finally:
        for emu in made:
            await emu.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session, for tests that speak to the emulator without our client."""
    async with aiohttp.ClientSession() as session:
        yield session
