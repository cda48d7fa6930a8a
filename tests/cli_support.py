"""Helpers for the CLI's subprocess tests: run ``python -m calltouch_async`` against an
emulator served on the test's loop, and read what it wrote.

The emulator serves on the test's event loop, so the CLI runs through
``asyncio.create_subprocess_exec`` (a blocking ``subprocess.run`` would stall the emulator).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from calltouch_async.testing import CalltouchEmulator

# Distinctive, so finding it in any output is unambiguous.
TOKEN = "tok-3c9e1f-do-not-print"
SITE_ID = 4242
DEADLINE = 30.0


@pytest.fixture
async def emu() -> AsyncIterator[CalltouchEmulator]:
    """The CLI tests' emulator (registered by ``conftest.py``): no rate window, since these
    tests are about the command line, not the limit (the demo keeps it on)."""
    async with CalltouchEmulator(site_id=SITE_ID, access_token=TOKEN, rate_limit=None) as emu:
        emu.generate(calls=50, requests=20, seed=1)
        yield emu


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


async def run_cli(
    *args: str, token: str | None = TOKEN, stdin: bytes | None = None, site_id: str | None = None
) -> Run:
    proc = await start_cli(*args, token=token, stdin=stdin is not None, site_id=site_id)
    out, err = await asyncio.wait_for(proc.communicate(stdin), DEADLINE)
    return finished(proc, out, err)


async def start_cli(
    *args: str, token: str | None = TOKEN, stdin: bool = False, site_id: str | None = None
) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLTOUCH_")}
    if token is not None:
        env["CALLTOUCH_ACCESS_TOKEN"] = token
    if site_id is not None:
        env["CALLTOUCH_SITE_ID"] = site_id
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "calltouch_async", *args,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


def finished(proc: asyncio.subprocess.Process, out: bytes, err: bytes) -> Run:
    assert proc.returncode is not None
    run = Run(proc.returncode, out.decode(), err.decode())
    # The token is never printed, whatever happened.
    assert TOKEN not in run.stdout and TOKEN not in run.stderr
    return run


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(DEADLINE):
        for _ in itertools.count():
            if condition():
                return
            await asyncio.sleep(0.02)


def call_line(call_id: int, text: str) -> str:
    lead = {"matching": [{"type": "call", "callParams": {"callId": call_id}}], "addComment": text}
    return json.dumps(lead)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def comment_args(emu: CalltouchEmulator, file: str, *more: str) -> list[str]:
    return ["comment", file, "--site-id", str(SITE_ID), "--base-url", emu.base_url, *more]
