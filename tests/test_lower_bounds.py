"""The lowest-versions job tests what pyproject.toml promises, no more and no less."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_the_lowest_versions_job_pins_exactly_the_declared_lower_bounds() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    bounds = {}
    for requirement in project["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", requirement)
        assert match, f"{requirement!r}: every dependency needs a tested lower bound"
        bounds[match[1].lower()] = match[2]
    pins = {}
    for line in (ROOT / ".ci" / "lowest-versions.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    # A pin may spell the bound in full (3.10.0 for >=3.10).
    assert {name: re.sub(r"(\.0)+$", "", v) for name, v in pins.items()} == {
        name: re.sub(r"(\.0)+$", "", v) for name, v in bounds.items()
    }
