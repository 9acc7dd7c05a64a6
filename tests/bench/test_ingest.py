"""The ingest benchmark measures a whole sync: its fcsync competitor follows the runs' chain
(each continuation carries the lease handed on to it) to the last row, and a second sync of
the same database goes through every page again (a replay: nothing new to store)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bench.ingest import (
    FcsyncRun,
    all_rows,
    db_only,
    emulator_process,
    fresh_database,
    refreshed_account,
)
from emulator import EmulatorControl
from models import Account, Transaction
from worker.db import make_engine, upgrade_database

# More than one run's pages (FCSYNC_PAGES_PER_RUN, set to 5 here): continuations.
ROWS = 2_150


def test_ingest_fcsync_competitor_syncs_every_row_across_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FCSYNC_PAGES_PER_RUN", "5")
    with emulator_process() as base_url:
        control = EmulatorControl(base_url)
        account_id = refreshed_account(control, base_url, ROWS)
        # The refresh adds a few rows of its own: the bench counts what the emulator holds.
        held = len(control.transactions(account_id))
        assert held >= ROWS
        with fresh_database("sqlite", tmp_path) as url:
            run = FcsyncRun(base_url, url, account_id)
            try:
                _, rows = run.sync()
                assert rows == held
                assert run.problems(control) == []
                pages = len(run.page_times)
                assert pages == -(-held // 100)
                _, replayed = run.sync()
                assert replayed == 0
                assert len(run.page_times) == pages
            finally:
                run.close()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_ingest_db_only_loads_every_row_into_the_current_schema(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # db_only names the table's columns itself: a column fcsync adds must not break it.
    with emulator_process() as base_url:
        control = EmulatorControl(base_url)
        account_id = refreshed_account(control, base_url, 250)
        rows = all_rows(base_url, account_id)
        assert len(rows) == len(control.transactions(account_id))
        url = (
            f"sqlite:///{tmp_path / 'db_only.db'}"
            if kind == "sqlite"
            else request.getfixturevalue("fresh_postgres_url")
        )
        upgrade_database(url)
        engine = make_engine(url)
        try:
            with Session(engine) as session, session.begin():
                moment = datetime.now(UTC)
                session.add(Account(id=account_id, created_at=moment, updated_at=moment))
            db_only(url, account_id, rows)
            with Session(engine) as session:
                stored = session.scalar(select(func.count()).select_from(Transaction))
        finally:
            engine.dispose()
        assert stored == len(rows)
