"""The README's "Testing your code with the emulator" example, copied from the README into a
new project (no pytest configuration: pytest-asyncio in its default strict mode) and run by a
separate pytest, as a user would."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example() -> str:
    text = README.read_text()
    section = text[text.index("## Testing your code with the emulator"):]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, "no python example in the README's emulator section"
    return found.group(1)


def test_the_readme_fixture_example_runs_as_written_in_a_new_project(tmp_path: Path) -> None:
    (tmp_path / "test_example.py").write_text(readme_example())
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # nothing set: strict mode
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout
