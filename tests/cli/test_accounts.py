"""Account ids on the command line: a malformed id is a usage error before anything is
enqueued; an account fcsync does not know is an error with a hint, whatever the command; a
failed `track` through a worker shows in `fcsync status`; a refresh in Stripe's cooldown says
when the next one is allowed and what to do meanwhile."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from emulator import EmulatorControl
from tests.cli.conftest import Workdir, wait_for
from worker.supervisor import Supervisor, worker_argv


@pytest.mark.parametrize("bad", ["acct_123", "fca_has space", "fca_" + "x" * 61])
@pytest.mark.parametrize(
    "command",
    [
        ["track"],
        ["track", "--inline"],
        ["untrack"],
        ["refresh"],
        ["sync", "--inline"],
        ["status"],
        ["transactions"],
    ],
    ids=" ".join,
)
def test_a_malformed_account_id_is_one_usage_line_and_nothing_is_enqueued(
    workdir: Workdir, command: list[str], bad: str
) -> None:
    result = workdir.run(command[0], bad, *command[1:], expect=2)

    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error [bad_account_id]: {bad!r} is not a Financial Connections")
    assert "fca_" in line
    assert workdir.queued() == []
    assert not (workdir.path / "fcsync.db").exists()  # rejected before any database access


def test_transactions_of_an_unknown_account_exits_3_like_status(migrated: Workdir) -> None:
    status = migrated.run("status", "fca_unknown", expect=3)
    result = migrated.run("transactions", "fca_unknown", "--json", expect=3)

    (line,) = result.stderr.splitlines()
    assert line.startswith("error [unknown_account]: account fca_unknown is not known")
    assert "fcsync track fca_unknown" in line
    assert result.stdout == ""
    assert status.stderr.startswith("error [unknown_account]")


def test_transactions_of_a_known_account_without_rows_prints_nothing(migrated: Workdir) -> None:
    migrated.insert_account("fca_empty")

    assert migrated.run("transactions", "fca_empty").stdout == ""
    assert json.loads(migrated.run("transactions", "fca_empty", "--json").stdout) == []


@pytest.mark.parametrize(
    "args", [["refresh"], ["refresh", "--inline"], ["sync"], ["sync", "--inline"]], ids=" ".join
)
def test_refresh_or_sync_of_a_never_tracked_account_refuses_with_a_hint(
    migrated: Workdir, control: EmulatorControl, args: list[str]
) -> None:
    account = control.create_account(transactions=5)["id"]

    result = migrated.run(args[0], account, *args[1:], expect=3)

    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error [unknown_account]: account {account} is not known to fcsync")
    assert line.endswith(f"run `fcsync track {account}` first")
    assert migrated.queued() == []
    assert migrated.query("SELECT id FROM accounts") == []  # not tracked behind the user's back
    assert control.account(account)["transaction_refresh"] is None  # Stripe was not asked


def test_track_of_an_account_stripe_does_not_know_shows_in_status(
    migrated: Workdir, children: Supervisor
) -> None:
    """Through a real worker: the id is well formed, Stripe answers 404, and the failure is
    recorded where `fcsync status` shows it (before, only the worker's log knew)."""
    migrated.run("track", "fca_doesnotexist")
    worker = worker_argv(1, name="worker", pool="solo")
    children.spawn("worker", worker, env=migrated.env(), cwd=migrated.path)

    def recorded() -> list[tuple[object, ...]]:
        try:
            return migrated.query(
                "SELECT tracked, last_error_code FROM accounts WHERE id = 'fca_doesnotexist'"
            )
        except Exception:  # the worker holds the write lock for a moment
            return []

    assert wait_for(recorded, timeout=40, what=f"the failure\n{children.logs()}") == [
        (0, "resource_missing")
    ]
    (row,) = json.loads(migrated.run("status", "fca_doesnotexist", "--json").stdout)
    assert row["last_error"].startswith("[resource_missing]")
    assert not row["tracked"] and row["status"] == "unknown"
    table = migrated.run("status").stdout
    assert "fca_doesnotexist" in table and "resource_missing" in table
    assert migrated.query("SELECT count(*) FROM refreshes") == [(0,)]


def test_a_successful_track_replaces_the_record_of_a_failed_one(
    migrated: Workdir, control: EmulatorControl
) -> None:
    account = control.create_account(transactions=5)["id"]
    migrated.insert_account(account, tracked=False)  # as a failed track leaves it
    migrated.execute(
        "UPDATE accounts SET status = 'unknown', last_error_code = 'resource_missing'",
    )

    migrated.run("track", account, "--inline", "--no-subscribe")

    row = migrated.account(account)
    assert row["tracked"] and row["last_error_code"] is None
    assert migrated.query("SELECT status FROM accounts") == [("active",)]


COOLDOWN_LINE = re.compile(
    r"refresh_account: cooldown: Stripe allows the next refresh at "
    r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC \(in (1h 5[89]m|2h)\)$"
)


@pytest.mark.parametrize("tracked", [True, False])
def test_refresh_inline_in_cooldown_says_when_and_what_to_do(
    migrated: Workdir, control: EmulatorControl, tracked: bool
) -> None:
    account = control.create_account(transactions=5, refresh_cooldown_s=7_200)["id"]
    migrated.run("track", account, "--inline", "--no-subscribe")
    migrated.run("refresh", account, "--inline", "--wait")  # Stripe now waits two hours
    if not tracked:
        migrated.run("untrack", account, "--inline", "--keep-subscription")

    result = migrated.run("refresh", account, "--inline")

    first, advice = result.stdout.splitlines()
    match = COOLDOWN_LINE.match(first.split(" ", 1)[1])
    assert match, result.stdout
    allowed = control.account(account)["transaction_refresh"]["next_refresh_available_at"]
    assert match.group(1) == f"{datetime.fromtimestamp(allowed, tz=UTC):%Y-%m-%d %H:%M:%S}"
    # The cooldown the earlier refresh started, not a new one (Stripe's time is whole seconds).
    assert datetime.fromtimestamp(allowed, tz=UTC) - datetime.now(UTC) <= timedelta(
        hours=2, seconds=1
    )
    if tracked:
        assert advice.startswith("the account is tracked, so beat (`fcsync run`) refreshes it")
    else:
        assert advice.startswith(f"it is not tracked, so run `fcsync refresh {account}` again")
    assert advice.endswith(f"meanwhile `fcsync sync {account}` stores what Stripe already has")
    assert "refresh=None" not in result.stdout


@pytest.mark.parametrize("command", ["refresh", "sync", "untrack"])
def test_a_command_naming_another_stripe_account_context_exits_3_and_asks_stripe_nothing(
    migrated: Workdir, control: EmulatorControl, command: str
) -> None:
    account = control.create_account(transactions=5)["id"]
    migrated.run("track", account, "--inline", "--no-subscribe")
    before = control.stats()["requests"]

    result = migrated.run(command, account, "--stripe-account", "acct_1Q", "--inline", expect=3)

    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error [stripe_account_mismatch]: account {account} belongs to")
    assert "context platform, not acct_1Q" in line
    assert control.stats()["requests"] == before
    assert migrated.query(
        f"SELECT tracked, last_error_code FROM accounts WHERE id = '{account}'"
    ) == [(1, None)]
