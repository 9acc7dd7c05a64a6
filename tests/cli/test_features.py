"""`track --features`, `refresh` of every tracked feature, `balances` and `owners`, and the
features in `status`, as a user runs them (subprocess, SQLite, the emulator for Stripe)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from emulator import EmulatorControl
from tests.cli.conftest import Workdir

OWNERS = [
    {"name": "Jenny Rosen", "email": "jenny@example.com", "phone": None, "raw_address": None},
    {"name": "Ada Lovelace", "email": None, "phone": "+15550001111", "raw_address": "1 Way"},
]
CREDIT = {"type": "credit", "current": {"usd": -4200}, "credit": {"used": {"usd": 4200}}}


def test_track_features_refresh_then_balances_owners_and_status_show_stripes_truth(
    migrated: Workdir, control: EmulatorControl
) -> None:
    account = control.create_account(
        transactions=20, permissions=["transactions", "balances", "ownership"]
    )["id"]
    control.update_account(account, owners=OWNERS, balance=CREDIT)

    migrated.run("track", account, "--features", "transactions,balances,ownership", "--inline")
    wait = migrated.run("refresh", account, "--inline", "--wait")
    assert "outcome=succeeded" in wait.stdout

    truth = control.account(account)
    balances = json.loads(migrated.run("balances", account, "--json").stdout)
    assert balances == [truth["balance"]]
    assert balances[0]["type"] == "credit"
    owners = json.loads(migrated.run("owners", account, "--json").stdout)
    # Stored owners come by name (Stripe's list order is not kept).
    assert owners == sorted(control.owners(account), key=lambda o: o["name"])
    assert [o["ownership"] for o in owners] == [truth["ownership"]] * 2

    rows = list(csv.DictReader(io.StringIO(migrated.run("balances", account, "--csv").stdout)))
    assert rows == [
        {
            "as_of": str(truth["balance"]["as_of"]),
            "type": "credit",
            "currency": "usd",
            "current": "-4200",
            "cash_available": "",
            "credit_used": "4200",
        }
    ]
    lines = migrated.run("owners", account).stdout.splitlines()
    assert [line.split("  ")[1] for line in lines] == ["Ada Lovelace", "Jenny Rosen"]

    (status,) = json.loads(migrated.run("status", account, "--json").stdout)
    assert set(status["features"]) == {"balances", "ownership"}
    balance = status["features"]["balances"]
    assert balance["refresh_status"] == "succeeded" and balance["last_error"] is None
    assert balance["refreshed_at"] == truth["balance_refresh"]["last_attempted_at"]
    table = migrated.run("status").stdout
    assert "balances refreshed" in table and "ownership refreshed" in table


def test_track_features_the_account_may_not_have_is_recorded_and_shown(
    migrated: Workdir, control: EmulatorControl
) -> None:
    account = control.create_account(transactions=5, permissions=["transactions"])["id"]
    refused = migrated.run(
        "track", account, "--features", "transactions,ownership", "--inline", expect=3
    )
    # A clear error at track time, naming the feature; what is granted is tracked all the same.
    assert "error [missing_permission]" in refused.stderr
    assert "lacks the ownership permission" in refused.stderr
    (status,) = json.loads(migrated.run("status", account, "--json").stdout)
    assert status["features"]["ownership"]["last_error"].startswith("[missing_permission]")
    assert status["tracked"] and status["transactions_tracked"]
    assert "ownership [missing_permission]" in migrated.run("status").stdout
    assert json.loads(migrated.run("owners", account, "--json").stdout) == []

    # Balances alone: tracked and refreshed without a transaction refresh, nor a subscription.
    alone = control.create_account(transactions=5, permissions=["transactions", "balances"])["id"]
    migrated.run("track", alone, "--features", "balances", "--inline")
    migrated.run("refresh", alone, "--inline")
    truth = control.account(alone)
    assert truth["transaction_refresh"] is None and truth["subscriptions"] == []
    assert truth["balance_refresh"] is not None


@pytest.mark.parametrize("bad", [",", "transactions,balance", "transactions,"])
def test_bad_features_are_one_usage_line_and_nothing_is_enqueued(
    workdir: Workdir, bad: str
) -> None:
    result = workdir.run("track", "fca_1abc", "--features", bad, expect=None)
    if bad == "transactions,":
        # A trailing comma names nothing more: transactions alone.
        assert result.returncode == 0, result.stderr
        (message,) = workdir.queued()
        assert message["kwargs"]["features"] == ["transactions"]
        return
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error [bad_features]: --features")
    assert "one or more of transactions, balances, ownership" in line
    assert workdir.queued() == []


def test_track_features_enqueues_the_list_for_the_worker(workdir: Workdir) -> None:
    workdir.run("track", "fca_1abc", "--features", "transactions,ownership")
    assert workdir.queued() == [
        {
            "task": "fcsync.track_account",
            "args": [],
            "kwargs": {
                "account_id": "fca_1abc",
                "subscribe": True,
                "features": ["transactions", "ownership"],
            },
        }
    ]


def test_balances_and_owners_of_an_unknown_account_exit_3(migrated: Workdir) -> None:
    for command in ("balances", "owners"):
        result = migrated.run(command, "fca_unknown", "--json", expect=3)
        assert result.stderr.startswith("error [unknown_account]")
        assert result.stdout == ""
