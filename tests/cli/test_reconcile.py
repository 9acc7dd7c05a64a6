"""`fcsync reconcile` as a user runs it: --days checked in one line, the task queued with the
window asked for, and with --inline a damaged account healed, a dropped pending row named, and
`status` showing what the reconciliation repaired."""

from __future__ import annotations

import json

import pytest

from emulator import EmulatorControl
from tests.cli.conftest import Workdir

BAD_DAYS = "error [bad_days]: --days must be a whole number of days from 1 to 180"


@pytest.mark.parametrize("days", ["0", "181", "abc", "-1", "1.5", "", "٣", "9" * 400])
def test_reconcile_bad_days_is_one_line_exit_2(migrated: Workdir, days: str) -> None:
    result = migrated.run("reconcile", "fca_x", "--days", days, expect=2)
    assert result.stderr.startswith(BAD_DAYS)
    assert len(result.stderr.strip().splitlines()) == 1
    assert len(result.stderr) < 300
    assert migrated.queued() == []


def test_reconcile_of_an_unknown_account_exits_3(migrated: Workdir) -> None:
    result = migrated.run("reconcile", "fca_unknown", "--inline", expect=3)
    assert "error [unknown_account]" in result.stderr
    assert "fcsync track fca_unknown" in result.stderr


def test_reconcile_queues_the_task_with_the_window_asked_for(migrated: Workdir) -> None:
    migrated.insert_account("fca_queued")
    result = migrated.run("reconcile", "fca_queued", "--days", "7")
    assert "enqueued fcsync.reconcile_account" in result.stdout
    migrated.run("reconcile", "fca_queued")
    assert migrated.queued() == [
        {"task": "fcsync.reconcile_account", "args": [], "kwargs": kwargs}
        for kwargs in ({"account_id": "fca_queued", "days": 7}, {"account_id": "fca_queued"})
    ]


def test_reconcile_inline_heals_the_account_names_the_dropped_row_and_status_shows_it(
    migrated: Workdir, control: EmulatorControl
) -> None:
    account = control.create_account(transactions=1_500)["id"]
    migrated.run("track", account, "--inline", "--no-subscribe")
    migrated.run("refresh", account, "--inline", "--wait", timeout=120)
    truth = control.transactions(account)
    pending = [t["id"] for t in truth if t["status"] == "pending"]
    assert pending, "the last three days of 1,500 rows hold pending ones"
    control.drop_transaction(pending[0])
    # Three different rows: the newest row is often the pending one Stripe dropped.
    kept = [t for t in truth if t["id"] != pending[0]]
    lost, edited = kept[0]["id"], kept[1]
    migrated.execute("DELETE FROM transactions WHERE id = :id", id=lost)
    migrated.execute("UPDATE transactions SET amount = 1 WHERE id = :id", id=edited["id"])

    result = migrated.run("reconcile", account, "--inline", "--days", "30")

    assert f"vanished: {pending[0]} (pending, no longer listed by Stripe)" in result.stdout
    assert "inserted=1" in result.stdout and "updated=1" in result.stdout
    stored = {t["id"]: t for t in migrated.stored(account)}
    assert stored[lost] == kept[0] and stored[edited["id"]] == edited
    status = json.loads(migrated.run("status", account, "--json").stdout)[0]
    assert (
        status["reconcile_inserted"],
        status["reconcile_updated"],
        status["reconcile_vanished"],
    ) == (1, 1, 1)
    table = migrated.run("status", account).stdout
    assert "last reconcile" in table and "1 inserted, 1 updated, 1 vanished" in table
