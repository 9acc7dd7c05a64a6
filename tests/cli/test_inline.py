"""`track`, `untrack`, `refresh` and `sync` with --inline: the same task code in the CLI's
process, no broker and no worker; the database ends equal to the emulator's truth."""

from __future__ import annotations

import re

from emulator import EmulatorControl
from tests.cli.conftest import Workdir
from worker.playground.truth import diff_transactions

PLAIN_LINE = re.compile(r"^\d\d:\d\d:\d\d [a-z_]+: (outcome|page)=\w+")
COOLDOWN_LINE = re.compile(r"^\d\d:\d\d:\d\d refresh_account: cooldown: Stripe allows the next ")


def test_inline_track_refresh_wait_untrack_store_the_emulator_truth(
    migrated: Workdir, control: EmulatorControl
) -> None:
    account = control.create_account(transactions=250)["id"]

    track = migrated.run("track", account, "--inline")
    assert "track_account: outcome=subscribed" in track.stdout
    row = migrated.account(account)
    assert row["tracked"] and row["subscribed"]
    assert control.account(account)["subscriptions"] == ["transactions"]

    wait = migrated.run("refresh", account, "--inline", "--wait")
    lines = wait.stdout.splitlines()
    # When the subscription's refresh has just finished, Stripe's cooldown answers the refresh:
    # a plain line saying until when, and what to do meanwhile, close the output instead.
    if lines and COOLDOWN_LINE.match(lines[0]):
        assert lines[-1].startswith("the account is tracked, so beat"), wait.stdout
        lines = lines[1:-1]
    assert lines and all(PLAIN_LINE.match(line) for line in lines), wait.stdout
    # 250 rows at two pages (of 100) per run: the first run continues, the second finishes.
    # (Whether a second refresh starts depends on the subscription's refresh having finished:
    # test_progress.py pins the pending -> poll -> sync path on an unsubscribed account.)
    assert "sync_transactions: outcome=continued pages=2" in wait.stdout
    assert "sync_transactions: outcome=done" in wait.stdout

    truth = control.transactions(account)
    assert len(truth) >= 250
    assert diff_transactions(migrated.stored(account), truth, limit=0) == []
    latest = control.account(account)["transaction_refresh"]
    row = migrated.account(account)
    assert latest["status"] == "succeeded"
    assert row["cursor"] == latest["id"] == row["refresh_id"]

    untrack = migrated.run("untrack", account, "--inline")

    assert "untrack_account: outcome=untracked" in untrack.stdout
    row = migrated.account(account)
    assert not row["tracked"] and not row["subscribed"]
    assert control.account(account)["subscriptions"] == []
    assert diff_transactions(migrated.stored(account), truth, limit=0) == []  # rows stay


def test_refresh_inline_without_wait_starts_a_refresh_and_syncs_nothing(
    migrated: Workdir, control: EmulatorControl
) -> None:
    account = control.create_account(transactions=30)["id"]
    migrated.run("track", account, "--inline", "--no-subscribe")
    assert control.account(account)["transaction_refresh"] is None

    result = migrated.run("refresh", account, "--inline")

    assert "refresh_account: outcome=started" in result.stdout
    assert "poll_refresh" not in result.stdout and "sync_transactions" not in result.stdout
    assert control.account(account)["transaction_refresh"] is not None
    row = migrated.account(account)
    assert row["refresh_status"] == "pending" and row["cursor"] is None
    assert migrated.stored(account) == []


def test_sync_full_inline_rereads_the_whole_history(
    migrated: Workdir, control: EmulatorControl
) -> None:
    account = control.create_account(transactions=120)["id"]
    migrated.run("track", account, "--inline", "--no-subscribe")
    migrated.run("refresh", account, "--inline", "--wait")
    truth = control.transactions(account)
    assert diff_transactions(migrated.stored(account), truth, limit=0) == []
    # Rows lost behind fcsync's back: an incremental sync has nothing new to fetch ...
    migrated.execute(
        "DELETE FROM transactions WHERE id IN (:a, :b)", a=truth[0]["id"], b=truth[-1]["id"]
    )
    incremental = migrated.run("sync", account, "--inline")
    assert "sync_transactions: outcome=up_to_date" in incremental.stdout
    assert len(diff_transactions(migrated.stored(account), truth, limit=0)) == 2

    full = migrated.run("sync", account, "--full", "--inline")

    assert "sync_transactions: outcome=done" in full.stdout
    assert diff_transactions(migrated.stored(account), truth, limit=0) == []
