"""/metrics end to end: a prefork `celery worker` refreshes and syncs one account of the emulator
and sees another's refresh fail, while `fcsync webhooks` receives the emulator's events; both
processes' /metrics, scraped over HTTP and parsed as Prometheus text, tell exactly that."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from emulator import Emulator, EmulatorConfig, EmulatorControl
from tests.cli.conftest import FCSYNC, Workdir, free_port, wait_for
from worker.db import upgrade_database
from worker.freshness import State
from worker.playground.truth import diff_transactions
from worker.supervisor import Supervisor, worker_argv

SECRET = "whsec_fcsync_metrics"
REFRESHED = "financial_connections.account.refreshed_transactions"
REFRESH_POST = "POST /v1/financial_connections/accounts/{account}/refresh"
TRANSACTIONS_GET = "GET /v1/financial_connections/transactions"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample of http://127.0.0.1:PORT/metrics, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    """The sum of the samples named `metric` whose labels include `labels` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == metric and wanted <= ls)


@pytest.fixture
def hooked_emulator() -> Iterator[tuple[Emulator, int]]:
    """An emulator of this test's own that sends its events to a receiver port."""
    port = free_port()
    config = EmulatorConfig(
        seed=23,
        refresh_delay_s=0.2,
        refresh_cooldown_s=0.0,
        webhook_url=f"http://127.0.0.1:{port}/webhooks/stripe",
        webhook_secret=SECRET,
    )
    with Emulator(config) as emu:
        yield emu, port


@pytest.mark.integration
def test_metrics_tell_a_sync_and_a_failed_refresh(
    tmp_path: Path, hooked_emulator: tuple[Emulator, int]
) -> None:
    emu, receiver_port = hooked_emulator
    control = EmulatorControl(emu.base_url)
    good = control.create_account(transactions=120)["id"]
    bad = control.create_account(transactions=5)["id"]
    control.update_account(bad, fail_next_refreshes=1)
    worker_port = free_port()
    workdir = Workdir(
        tmp_path,
        emu.base_url,
        extra={
            "STRIPE_WEBHOOK_SECRET": SECRET,
            "FCSYNC_METRICS_PORT": str(worker_port),
            # Refreshes end by their webhook, not by a poll: the events come before the rows.
            "FCSYNC_POLL_INITIAL_S": "60",
            "FCSYNC_POLL_MAX_S": "60",
        },
    )
    upgrade_database(workdir.db_url)
    workdir.insert_account(good)
    workdir.insert_account(bad)

    children = Supervisor(log_dir=tmp_path, cwd=tmp_path)
    try:
        env = workdir.env()
        children.spawn("worker", worker_argv(2, pool="prefork"), env=env)
        receiver = [FCSYNC, "webhooks", "--port", str(receiver_port)]
        children.spawn("webhooks", receiver, env=env)
        wait_for(lambda: _answers(receiver_port), timeout=30, what="the receiver")
        client = Celery("fcsync-metrics-test", broker=f"sqla+sqlite:///{workdir.broker_file}")
        try:
            for account in (good, bad):
                kwargs: dict[str, Any] = {"account_id": account, "source": "manual"}
                client.send_task("fcsync.refresh_account", kwargs=kwargs, queue="fcsync")
        finally:
            client.close()

        def settled() -> bool:
            truth = control.transactions(good)
            synced = diff_transactions(workdir.stored(good), truth, limit=0) == []
            failed = workdir.account(bad)["refresh_status"] == "failed"
            unhandled = workdir.query("SELECT 1 FROM webhook_events WHERE processed_at IS NULL")
            events = workdir.query("SELECT 1 FROM webhook_events")
            return synced and failed and bool(events) and not unhandled

        wait_for(settled, timeout=60, what=f"the sync and the failure\n{children.logs()}")
        worker = scrape(worker_port)
        webhooks = scrape(receiver_port)
    finally:
        children.stop()
        control.close()

    # Refreshes: one each way, both asked for by fcsync, so both timed.
    assert value(worker, "fcsync_refreshes_total", outcome="failed") == 1
    assert value(worker, "fcsync_refreshes_total", outcome="succeeded") == 1
    assert value(worker, "fcsync_refresh_duration_seconds_count") == 2
    # Rows: every transaction stored was counted once, as inserted.
    (stored,) = workdir.query("SELECT count(*) FROM transactions")[0]
    assert stored >= 120
    assert value(worker, "fcsync_sync_rows_total", operation="inserted") == stored
    assert value(worker, "fcsync_sync_rows_total", operation="updated") == 0
    assert value(worker, "fcsync_sync_pages_total") >= 2  # 100 rows a page
    # Stripe requests, by templated endpoint only.
    assert value(worker, "fcsync_stripe_requests_total", endpoint=REFRESH_POST, status="200") == 2
    assert value(worker, "fcsync_stripe_requests_total", endpoint=TRANSACTIONS_GET) >= 2
    endpoints = {dict(ls)["endpoint"] for n, ls in worker if n == "fcsync_stripe_requests_total"}
    assert not [e for e in endpoints if "fca_" in e], endpoints
    assert value(worker, "fcsync_rate_limiter_wait_seconds_count") >= 4
    # Celery's task metrics, as celery-exporter names them, from the pool processes.
    sync_task = {"name": "fcsync.sync_transactions", "queue_name": "fcsync"}
    assert value(worker, "celery_task_received_total", **sync_task) >= 1
    assert value(worker, "celery_task_started_total", **sync_task) >= 1
    assert value(worker, "celery_task_succeeded_total", **sync_task) >= 1
    assert value(worker, "celery_task_runtime_count", **sync_task) >= 1
    assert value(worker, "celery_task_failed_total") == 0
    # Webhooks: stored by the receiver, handled by the worker; the good account's rows, stored
    # after its refreshed_transactions event (the only path to its sync), were timed from it.
    assert value(webhooks, "fcsync_webhook_events_received_total", type=REFRESHED) >= 2
    assert value(webhooks, "fcsync_webhook_events_received_total", outcome="rejected") == 0
    assert value(worker, "fcsync_webhook_events_handled_total", type=REFRESHED) >= 2
    assert value(worker, "fcsync_webhook_to_rows_seconds_count") == 1
    assert 0 <= value(worker, "fcsync_webhook_to_rows_seconds_sum") < 30
    # The accounts' freshness, read from the database at each scrape, by either process.
    for samples in (worker, webhooks):
        accounts = {
            dict(ls)["state"]: v for (n, ls), v in samples.items() if n == "fcsync_accounts"
        }
        assert set(accounts) == {str(s) for s in State}
        assert (accounts["fresh"], accounts["failing"], sum(accounts.values())) == (1, 1, 2)
        assert value(samples, "fcsync_oldest_pending_refresh_seconds") == 0
        assert 0 <= value(samples, "fcsync_max_sync_lag_seconds") < 60


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False
