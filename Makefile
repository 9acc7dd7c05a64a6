# fcsync: `make demo` runs the whole job against the emulator; `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint typecheck contracts unit install clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

# Two workers, one per core; a file's tests stay on one worker (module fixtures, ports, order).
test: lint typecheck contracts
	$(BIN)/pytest -n 2 --dist loadfile

demo: $(STAMP)
	$(BIN)/fcsync demo

bench: $(STAMP)
	$(BIN)/python -m bench emulator_paging
	$(BIN)/python -m bench steady_state

clean:
	rm -rf $(VENV) fcsync.db fcsync-broker.sqlite .pytest_cache .mypy_cache .ruff_cache
