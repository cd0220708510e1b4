# The front door: `make demo`, `make test`, `make lint`. Needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: help demo bridge tui test test-quick lint readme bench screenshots clean

help:  ## this list of targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# One stamp per set of extras, redone when pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[embedded,bullmq]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-run

demo: $(VENV)/.installed-run  ## Redis (embedded if needed), real BullMQ producers and workers, a bridge, the TUI
	$(BIN)/bbb-tui --demo

bridge: $(VENV)/.installed-run  ## just the bridge, on ws://localhost:8081 (embedded Redis if none)
	$(BIN)/bbb-bridge serve --embedded-redis

tui: $(VENV)/.installed-run  ## just the monitor, on ws://localhost:8081 (run `make bridge` first)
	$(BIN)/bbb-tui

test: $(VENV)/.installed-dev  ## the whole suite, against private redis-servers (and Chromium)
	scripts/ensure-chromium
	scripts/ensure-redis-tls
	$(BIN)/python -m pytest

test-quick: $(VENV)/.installed-dev  ## the suite without the soak tests (load, faults, fuzzing)
	scripts/ensure-chromium
	scripts/ensure-redis-tls
	$(BIN)/python -m pytest -m "not soak" -n auto

lint: $(VENV)/.installed-dev  ## ruff, strict mypy, the import layers, the README's tables
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m scripts.readme --check

readme: $(VENV)/.installed-dev  ## rewrite the README's options tables from the option tables
	$(BIN)/python -m scripts.readme

bench: $(VENV)/.installed-dev  ## benchmarks: scripts that print figures (not tests)
	$(BIN)/python -m bench.fanout --clients 1 100 1000 5000
	$(BIN)/python -m bench.memory --connections 15000
	$(BIN)/python -m bench.tui_ingest --rate 5000 10000 20000 --seconds 10
	$(BIN)/python -m bench.tui_ingest --rate 20000 --seconds 10 --modes following looking-back search record all
	$(BIN)/python -m bench.modes --clients 50 --rate 500 --seconds 5
	$(BIN)/python -m bench.groups --clients 2000 --events 20000
	$(BIN)/python -m bench.streams --queues 50 --clients 100 --rate 10000

# PNGs need rsvg-convert (Debian's librsvg2-bin), installed here when apt can.
screenshots: $(VENV)/.installed-dev  ## SVG + PNG screenshots from a scripted session
	command -v rsvg-convert >/dev/null || (apt-get install -y -qq librsvg2-bin || true)
	$(BIN)/python -m scripts.screenshots --out screenshots

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
