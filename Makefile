# Everything the README shows runs through these targets; each sets itself up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint typecheck pytest demo bench clean

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

demo: $(STAMP)
	$(BIN)/calltouch-async demo

# Fresh figures go next to the tracked reference (benchmarks/results.md), never over it:
# compare the two, and copy over deliberately when the reference should change.
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --out benchmarks/results.latest.md

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
