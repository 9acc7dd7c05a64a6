"""`fcsync events sweep`: enqueued for a worker, or with --inline run here, the events it stores
handled and the syncs they ask for run; `fcsync status` warns of a gap past Stripe's 30 days."""

from __future__ import annotations

import time

from emulator import EmulatorControl
from tests.cli.conftest import Workdir
from worker import contract
from worker.playground.truth import diff_transactions

DAY_S = 86_400


def test_events_sweep_inline_recovers_a_refresh_no_webhook_announced(
    migrated: Workdir, control: EmulatorControl
) -> None:
    account = control.create_account(transactions=30)["id"]
    migrated.run("track", account, "--inline", "--no-subscribe")
    started = migrated.run("refresh", account, "--inline")
    assert "refresh_account: outcome=started" in started.stdout
    time.sleep(0.5)  # the emulator finishes it 0.2 s later; no webhook endpoint hears of it
    assert migrated.account(account)["refresh_status"] == "pending"

    swept = migrated.run("events", "sweep", "--inline")

    assert "sweep_events: contexts=1" in swept.stdout and "gaps=0" in swept.stdout
    assert "handle_event: event=evt_" in swept.stdout
    assert "sync_transactions: outcome=done" in swept.stdout
    latest = control.account(account)["transaction_refresh"]
    assert migrated.account(account)["cursor"] == latest["id"]
    assert diff_transactions(migrated.stored(account), control.transactions(account), limit=0) == []
    again = migrated.run("events", "sweep", "--inline")
    assert "stored=0" in again.stdout and "handle_event" not in again.stdout


def test_events_sweep_enqueues_the_task_for_a_worker(migrated: Workdir) -> None:
    migrated.run("events", "sweep")
    migrated.run("events", "sweep", "--since", "2026-11-29T10:30")
    queued = [(m["task"], m["kwargs"]) for m in migrated.queued()]
    assert queued == [
        (contract.SWEEP_EVENTS, {}),
        (contract.SWEEP_EVENTS, {"since": "2026-11-29T10:30:00+00:00"}),
    ]


def test_status_warns_when_the_inbox_is_older_than_stripes_30_days(migrated: Workdir) -> None:
    quiet = migrated.run("status")
    assert "warning" not in quiet.stderr
    created = int(time.time()) - 31 * DAY_S
    migrated.execute(
        "INSERT INTO webhook_events (id, type, account_id, livemode, created, payload,"
        " received_at, sweeps) VALUES ('evt_old', 'financial_connections.account.created',"
        " 'fca_old', false, :created, '{}', '2026-01-01 00:00:00', 0)",
        created=created,
    )

    status = migrated.run("status", "--json")

    assert status.stdout.strip() == "[]"  # what scripts read is unchanged
    assert "older than the 30 days Stripe lists events for" in status.stderr
