# Everything the README shows runs through these targets; each sets itself up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# A second venv with the lowest dependency versions pyproject.toml allows (see test-lowest).
LOWEST       := .venv-lowest
LOWEST_PINS  := .ci/lowest-versions.txt
LOWEST_STAMP := $(LOWEST)/.installed

.PHONY: test test-lowest test-py312 lint typecheck pytest demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy --strict calltouch_async
	$(BIN)/pytest

$(LOWEST)/bin/python:
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install --quiet --upgrade pip

# The test extra as usual, with aiohttp, aiolimiter and msgspec held at their lower bounds by a
# constraints file: extras others add keep installing, and a bound that no longer works fails.
$(LOWEST_STAMP): pyproject.toml $(LOWEST_PINS) | $(LOWEST)/bin/python
	$(LOWEST)/bin/python -m pip install --quiet -e '.[test]' -c $(LOWEST_PINS)
	touch $(LOWEST_STAMP)

# The suite against the lowest allowed versions (CI runs it after `test`).
test-lowest: $(LOWEST_STAMP)
	$(LOWEST)/bin/pytest -p no:cacheprovider

# The suite on Python 3.12, which pyproject.toml claims as well (CI runs it where the machine
# has one: pass its path as PYTHON312 when it is not on PATH).
PYTHON312   ?= python3.12
PY312       := .venv-py312
PY312_STAMP := $(PY312)/.installed

$(PY312)/bin/python:
	$(PYTHON312) -m venv $(PY312)
	$(PY312)/bin/python -m pip install --quiet --upgrade pip

$(PY312_STAMP): pyproject.toml | $(PY312)/bin/python
	$(PY312)/bin/python -m pip install --quiet -e '.[test]'
	touch $(PY312_STAMP)

test-py312: $(PY312_STAMP)
	$(PY312)/bin/pytest -p no:cacheprovider

demo: $(STAMP)
	$(BIN)/calltouch-async demo

# Fresh figures go next to the tracked reference (benchmarks/results.md), never over it:
# compare the two, and copy over deliberately when the reference should change.
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --out benchmarks/results.latest.md

clean:
	rm -rf $(VENV) $(LOWEST) $(PY312) .mypy_cache .pytest_cache .ruff_cache .hypothesis
