"""The examples run as written against the emulator."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from aiohttp.test_utils import TestClient, TestServer

from helpers import SITE_ID, TOKEN, EmulatorFactory

EXAMPLES = Path(__file__).parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def calltouch_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("CALLTOUCH_SITE_ID", str(SITE_ID))
    monkeypatch.setenv("CALLTOUCH_ACCESS_TOKEN", TOKEN)
    return monkeypatch


async def test_web_handler_comments_through_submit(
    emulator: EmulatorFactory, calltouch_env: pytest.MonkeyPatch
) -> None:
    web_handler = load("web_handler")
    async with emulator(calls=10) as emu:
        calltouch_env.setenv("CALLTOUCH_BASE_URL", emu.base_url)
        async with TestClient(TestServer(web_handler.make_app())) as http:
            responses = [
                await http.post("/comment", json={"call_id": i, "text": f"web-{i}"})
                for i in (1, 2)
            ]
            bodies = [await r.json() for r in responses]
    assert bodies == [{"status": "commented", "error": None}] * 2
    assert emu.ledger.text_counts() == {"web-1": 1, "web-2": 1}


async def test_queue_worker_drains_its_queue(
    emulator: EmulatorFactory, calltouch_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    queue_worker = load("queue_worker")
    async with emulator(calls=1000) as emu:
        calltouch_env.setenv("CALLTOUCH_BASE_URL", emu.base_url)
        await queue_worker.main()
    assert "{'commented': 1000}" in capsys.readouterr().out
    assert len(emu.ledger.applied) == 1000
    assert emu.ledger.count("rate_limited") == 0
