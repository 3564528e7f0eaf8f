# Two commands for a fresh machine (README): `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test test-slow bench clean scalesim-env

# torch==2.13.0 first: that CPU build lies on this machine's disk; anything that pulls torch
# before it would fetch a multi-GB CUDA build of a newer release. The zigzag extra (ZigZag 3.9.1,
# simulator=zigzag) adds ~4 s and ~52 MB, so CI tests that adapter on the real package.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,ray,optuna,zigzag]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/dance-demo

test: install
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: install
	$(BIN)/python -m pytest -q -m slow

bench: install
	$(BIN)/python benchmarks/simulator.py

# SCALE-Sim 3.0.0 for the `scalesim` simulator adapter and tools/scalesim_reference.py: its own
# venv because it fails under numpy 2 (the product's). The stamp rebuilds it when the pins change.
SCALESIM_VENV  := tools/.scalesim-venv
SCALESIM_STAMP := $(SCALESIM_VENV)/.installed-stamp

$(SCALESIM_STAMP): tools/requirements-scalesim.txt
	test -x $(SCALESIM_VENV)/bin/python || $(PYTHON) -m venv $(SCALESIM_VENV)
	$(SCALESIM_VENV)/bin/python -m pip install -q -r tools/requirements-scalesim.txt
	touch $(SCALESIM_STAMP)

scalesim-env: $(SCALESIM_STAMP)

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
