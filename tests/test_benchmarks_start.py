"""Every benchmark script starts (imports and parses its arguments): `make bench` is not part of
the suite, so an import a refactoring broke would otherwise go unseen until someone runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name.startswith(("bench_", "run_")))


def test_there_are_benchmarks_to_check() -> None:
    assert "run_all.py" in SCRIPTS and len(SCRIPTS) >= 8


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_benchmark_script_starts(script: str) -> None:
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--help"],
        capture_output=True, text=True, timeout=60, cwd=BENCHMARKS.parent,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "usage" in run.stdout.lower()
