# fcsync: `make demo` runs the whole job against the emulator; `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint typecheck contracts unit install clean bench chaos

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,ops]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

# Four workers on the two cores: the end-to-end and chaos files spend most of their time waiting
# on the processes they start (1,337 tests in 817 s with three workers, 746 s with four, one
# after the other on a quiet machine; 1,366 tests in 301 s with four once the CLI tests forked
# their commands from a pre-imported server). A file's tests stay on one worker (module
# fixtures, ports, order).
# Files go out in collection order (tests/conftest.py puts the longest first), not xdist's
# default of the most tests first, which left a long one-test file to run alone at the end.
test: lint typecheck contracts
	$(BIN)/pytest -n 4 --dist loadfile --no-loadscope-reorder -m "not long" --durations=25

demo: $(STAMP)
	$(BIN)/fcsync demo

# Every chaos scenario, CHAOS_SEEDS seeds on each broker, then the table and its JSON totals
# (the last line). Long: `make test` runs one seed of each.
CHAOS_SEEDS ?= 3
CHAOS_BROKERS ?= redis,rabbitmq
CHAOS_REPORT ?= chaos-report.jsonl
chaos: $(STAMP)
	rm -f $(CHAOS_REPORT)
	FCSYNC_CHAOS_SEEDS=$(CHAOS_SEEDS) FCSYNC_CHAOS_BROKERS=$(CHAOS_BROKERS) \
	FCSYNC_CHAOS_REPORT=$(abspath $(CHAOS_REPORT)) \
	$(BIN)/pytest -n 2 --dist load -m "chaos or long" tests -q; \
	status=$$?; $(BIN)/python -m tests.chaos.report $(CHAOS_REPORT) || status=1; exit $$status

bench: $(STAMP)
	$(BIN)/python -m bench emulator_paging
	$(BIN)/python -m bench steady_state
	$(BIN)/python -m bench webhooks
	$(BIN)/python -m bench scheduler
	$(BIN)/python -m bench ingest
	$(BIN)/python -m bench fleet
	$(BIN)/python -m bench incremental
	$(BIN)/python -m bench memory

clean:
	rm -rf $(VENV) chaos-report.jsonl fcsync.db fcsync.db-wal fcsync.db-shm fcsync-broker.sqlite fcsync-broker.sqlite-wal fcsync-broker.sqlite-shm .pytest_cache .mypy_cache .ruff_cache
