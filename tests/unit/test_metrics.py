"""worker/metrics.py: a prefork pool's samples reach the /metrics its parent serves; each process
started anew gets a metrics directory of its own (an operator's is used, stale files removed);
facts found in a unit of work count only once it commits; recording never raises; a refresh
counts once, when fcsync sees it end."""

from __future__ import annotations

import logging
import multiprocessing
import os
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from tests.unit.test_repository import fc_account
from worker import feature_store, metrics, refresh_store, repository
from worker.features import complete_features
from worker.playground.emulator_env import free_port
from worker.records import FeatureRefreshState, TransactionRefreshState
from worker.settings import Settings


def _served_value(port: int, sample: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample and labels.items() <= s.labels.items()
    )


def _pool_process_runs_a_task() -> None:
    metrics.celery_task("started", "fcsync.test_pool", "fcsync")
    metrics.celery_task_runtime("fcsync.test_pool", "fcsync", 0.25)


def test_metrics_of_prefork_pool_processes_reach_the_parents_metrics_page() -> None:
    port = free_port()
    server = metrics.serve("127.0.0.1", port, metrics.registry())
    assert server is not None
    try:
        pool = [
            multiprocessing.get_context("fork").Process(target=_pool_process_runs_a_task)
            for _ in range(3)
        ]
        for process in pool:
            process.start()
        for process in pool:
            process.join(timeout=30)
            assert process.exitcode == 0
            metrics.process_exited(process.pid or 0)
        task = {"name": "fcsync.test_pool", "queue_name": "fcsync"}
        assert _served_value(port, "celery_task_started_total", **task) == 3
        assert _served_value(port, "celery_task_runtime_count", **task) == 3
        assert _served_value(port, "celery_task_runtime_sum", **task) == 0.75
    finally:
        server.shutdown()
        server.server_close()


def _directory_of_a_new_process(env: dict[str, str]) -> str:
    code = "import os, worker.metrics; print(os.environ['PROMETHEUS_MULTIPROC_DIR'])"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def _dead_pid() -> int:
    code = "import os; print(os.getpid())"
    ended = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(ended.stdout)


def test_a_process_started_by_another_makes_a_metrics_directory_of_its_own() -> None:
    # One a process killed by SIGKILL left behind is removed by the next one.
    abandoned = Path(tempfile.mkdtemp(prefix="fcsync-metrics-"))
    (abandoned / "fcsync-owner").write_text(str(_dead_pid()))
    ours = os.environ[metrics.MULTIPROC_DIR]
    theirs = _directory_of_a_new_process(dict(os.environ))
    assert theirs != ours
    assert not Path(theirs).exists()  # removed when that process exited
    assert Path(ours).is_dir()
    assert not abandoned.exists()


def test_an_operators_metrics_directory_is_used_with_stale_files_removed(tmp_path: Path) -> None:
    dead_pid = _dead_pid()
    stale = tmp_path / f"counter_{dead_pid}.db"
    live = tmp_path / f"counter_{os.getpid()}.db"
    stale.write_bytes(b"")
    live.write_bytes(b"")
    env = {**os.environ, metrics.MULTIPROC_DIR: str(tmp_path)}
    assert _directory_of_a_new_process(env) == str(tmp_path)
    assert not stale.exists()
    assert live.exists()


def _pages() -> float:
    """This process's count of stored sync pages."""
    return REGISTRY.get_sample_value("fcsync_sync_pages_total") or 0.0


def test_facts_of_a_unit_of_work_count_once_it_commits() -> None:
    engine = create_engine("sqlite://")
    before = _pages()
    with Session(engine) as session:
        session.connection()
        metrics.sync_page_stored(session, 3, 0)
        session.rollback()
        session.connection()
        metrics.sync_page_stored(session, 2, 1)
        assert _pages() == before
        session.commit()
    assert _pages() == before + 1


def test_a_metric_that_cannot_be_recorded_is_logged_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = create_engine("sqlite://")
    with caplog.at_level(logging.ERROR, logger="worker.metrics"), Session(engine) as session:
        session.connection()
        metrics.sync_page_stored(session, -1, 0)  # a counter never goes down: prometheus raises
        session.commit()
        metrics.celery_task("no_such_state", "fcsync.x", None)
    assert "could not record" in caplog.text


def _refreshes(outcome: str) -> float:
    return REGISTRY.get_sample_value("fcsync_refreshes_total", {"outcome": outcome}) or 0.0


def _feature_refreshes(feature: str, outcome: str) -> float:
    labels = {"feature": feature, "outcome": outcome}
    return REGISTRY.get_sample_value("fcsync_feature_refreshes_total", labels) or 0.0


def test_a_refresh_counts_when_fcsync_sees_it_end_never_when_first_seen_ended(
    session: Session,
) -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    repository.save_account(session, fc_account("fca_metrics1"), now=now)
    before = _refreshes("succeeded")
    by_feature = _feature_refreshes("transactions", "succeeded")
    # Tracking an account whose last refresh ended long ago: no end seen.
    old = TransactionRefreshState("fctxnref_old", "succeeded", 1_700_000_000, None)
    refresh_store.save_refresh(
        session, "fca_metrics1", old, stripe_account=None, source="subscription", now=now
    )
    session.commit()
    assert _refreshes("succeeded") == before
    # A refresh seen pending, then ended: one end, seen again: still one.
    pending = TransactionRefreshState("fctxnref_new", "pending", 1_800_000_000, None)
    refresh_store.save_refresh(
        session, "fca_metrics1", pending, stripe_account=None, source="beat", now=now
    )
    ended = replace(pending, status="succeeded")
    for _ in range(2):
        refresh_store.save_refresh(
            session, "fca_metrics1", ended, stripe_account=None, source="beat", now=now
        )
        session.commit()
    assert _refreshes("succeeded") == before + 1
    assert _feature_refreshes("transactions", "succeeded") == by_feature + 1


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
def test_a_feature_refresh_counts_by_feature_when_fcsync_sees_it_end(
    session: Session, outcome: str
) -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    settings = Settings(database_url="sqlite://")
    live = fc_account("fca_metrics2")
    repository.save_account(session, live, now=now)
    feature_store.set_features(session, "fca_metrics2", ["balances"])
    before = _feature_refreshes("balances", outcome)
    ownership = _feature_refreshes("ownership", outcome)

    def fold(status: str, attempted: int) -> None:
        state = FeatureRefreshState(status, attempted, None)
        seen = replace(live, balance_refresh=state)
        # No owners to page through for balances: the gateway is never asked.
        complete_features(session, None, seen, now=now, settings=settings, stripe_account=None)  # type: ignore[arg-type]
        session.commit()

    # Tracked when its last balance refresh had ended long ago: no end seen.
    fold(outcome, 1_700_000_000)
    assert _feature_refreshes("balances", outcome) == before
    # A refresh seen pending, then ended: one end; seen again: still one.
    fold("pending", 1_800_000_000)
    fold(outcome, 1_800_000_000)
    fold(outcome, 1_800_000_000)
    assert _feature_refreshes("balances", outcome) == before + 1
    # A newer refresh fcsync never saw pending (it ended between two looks) ended all the same.
    fold(outcome, 1_900_000_000)
    assert _feature_refreshes("balances", outcome) == before + 2
    assert _feature_refreshes("ownership", outcome) == ownership
