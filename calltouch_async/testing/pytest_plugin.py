"""pytest plugin: ``calltouch_emulator`` and ``calltouch_emulator_factory`` fixtures.

Registered through the ``pytest11`` entry point, so it loads wherever the package is installed,
including projects that do not use pytest-asyncio. The fixtures are async and need it; without
it they fail with a message saying so, and nothing else in pytest is affected.

```python
async def test_my_service(calltouch_emulator):
    calltouch_emulator.add_call(1, phones=["79001234567"], time=datetime(2020, 10, 1, 12))
    await my_service.comment(base_url=calltouch_emulator.base_url, ...)
    assert calltouch_emulator.ledger.comments_for("call", 1) == ["..."]

async def test_no_limit(calltouch_emulator_factory):
    async with calltouch_emulator_factory(rate_limit=None, latency=0.05) as emu:
        ...
```
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ._emulator import CalltouchEmulator

__all__ = ["calltouch_emulator", "calltouch_emulator_factory"]

_NEEDS_ASYNCIO = (
    "the calltouch_emulator fixtures are async and need pytest-asyncio: "
    "pip install pytest-asyncio (and mark the test async, or use asyncio_mode = auto)"
)

EmulatorFactory = Callable[..., CalltouchEmulator]


async def _emulator() -> AsyncIterator[CalltouchEmulator]:
    """A started ``CalltouchEmulator()`` with default settings (rate limit on)."""
    async with CalltouchEmulator() as emulator:
        yield emulator


async def _factory() -> AsyncIterator[EmulatorFactory]:
    """``factory(**kwargs)`` builds a ``CalltouchEmulator(**kwargs)`` to use with
    ``async with``; any left running when the test ends are closed."""
    made: list[CalltouchEmulator] = []

    def factory(**kwargs: Any) -> CalltouchEmulator:
        emulator = CalltouchEmulator(**kwargs)
        made.append(emulator)
        return emulator

    try:
        yield factory
    finally:
        for emulator in made:
            await emulator.close()


def _missing() -> None:
    pytest.fail(_NEEDS_ASYNCIO, pytrace=False)


def _fixtures() -> tuple[object, object]:
    # Imported here, not at the top: this module loads in every pytest run where the package is
    # installed, and must not break the ones without pytest-asyncio.
    try:
        import pytest_asyncio
    except ImportError:
        return (
            pytest.fixture(name="calltouch_emulator")(_missing),
            pytest.fixture(name="calltouch_emulator_factory")(_missing),
        )
    return (
        pytest_asyncio.fixture(name="calltouch_emulator")(_emulator),
        pytest_asyncio.fixture(name="calltouch_emulator_factory")(_factory),
    )


calltouch_emulator, calltouch_emulator_factory = _fixtures()
