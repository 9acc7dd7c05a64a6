"""`fcsync untrack ACCOUNT --purge`: untracks, then deletes everything stored about the account
(its transactions, refreshes, inbox events and row), after a question on a terminal; without a
terminal only with --yes. Other accounts' data stays."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session

from emulator import EmulatorControl
from tests.cli.conftest import Workdir
from tests.cli.test_schema import on_a_terminal
from worker import inbox
from worker.db import make_engine

# Each test runs several `fcsync` processes against the emulator: start the file early.
pytestmark = pytest.mark.slow

COUNTS = (
    "SELECT (SELECT count(*) FROM accounts WHERE id = :a), "
    "(SELECT count(*) FROM transactions WHERE account_id = :a), "
    "(SELECT count(*) FROM refreshes WHERE account_id = :a), "
    "(SELECT count(*) FROM webhook_events WHERE account_id = :a)"
)


def synced_account(workdir: Workdir, control: EmulatorControl) -> str:
    """An account tracked, refreshed and synced, with an event about it in the inbox."""
    account = str(control.create_account(transactions=60)["id"])
    workdir.run("track", account, "--inline", "--no-subscribe")
    workdir.run("refresh", account, "--inline", "--wait")
    engine = make_engine(workdir.db_url)
    try:
        with Session(engine) as session, session.begin():
            inbox.insert_webhook_events(
                session,
                [
                    inbox.InboxEvent(
                        id=f"evt_for_{account[4:]}",
                        type="financial_connections.account.deactivated",
                        account_id=account,
                        stripe_account=None,
                        livemode=False,
                        created=0,
                        payload="{}",
                        outcome=None,
                    )
                ],
                now=datetime.now(UTC),
            )
    finally:
        engine.dispose()
    return account


def counts(workdir: Workdir, account: str) -> tuple[int, ...]:
    (row,) = workdir.query(COUNTS, a=account)
    return tuple(row)


def test_purge_with_yes_deletes_the_account_data_and_nothing_else(
    migrated: Workdir, control: EmulatorControl
) -> None:
    kept = synced_account(migrated, control)
    account = synced_account(migrated, control)
    before, kept_before = counts(migrated, account), counts(migrated, kept)
    assert before[0] == 1 and min(before) > 0

    result = migrated.run("untrack", account, "--purge", "--yes")

    assert result.stdout.splitlines()[-1] == (
        f"purged {account}: {before[1]} transactions, {before[2]} refreshes, {before[3]} inbox "
        "events and the account row"
    )
    assert counts(migrated, account) == (0, 0, 0, 0)
    assert counts(migrated, kept) == kept_before
    assert control.account(account)["subscriptions"] == []
    assert migrated.queued() == []  # untracked in this process, not by a worker later


def test_purge_without_a_terminal_needs_yes_and_changes_nothing(
    migrated: Workdir, control: EmulatorControl
) -> None:
    account = synced_account(migrated, control)
    before = counts(migrated, account)

    refused = migrated.run("untrack", account, "--purge", expect=2)

    (line,) = refused.stderr.splitlines()
    assert line.startswith(f"error [confirmation_required]: purging {account} deletes")
    assert line.endswith("add --yes to confirm without a terminal")
    assert counts(migrated, account) == before
    assert migrated.account(account)["tracked"] is True


def test_yes_without_purge_is_one_usage_line(migrated: Workdir) -> None:
    migrated.insert_account("fca_yes")
    result = migrated.run("untrack", "fca_yes", "--yes", expect=2)
    (line,) = result.stderr.splitlines()
    assert (
        line == "error [yes_without_purge]: --yes confirms --purge: add --purge, or leave --yes out"
    )


def test_purge_of_an_unknown_account_says_so_before_asking(migrated: Workdir) -> None:
    result = migrated.run("untrack", "fca_nobody", "--purge", expect=3)
    (line,) = result.stderr.splitlines()
    assert line.startswith("error [unknown_account]: account fca_nobody is not known")


@pytest.mark.parametrize(("answer", "code", "left"), [(b"n\n", 1, 1), (b"y\n", 0, 0)])
def test_purge_on_a_terminal_asks_first(
    migrated: Workdir, control: EmulatorControl, answer: bytes, code: int, left: int
) -> None:
    account = synced_account(migrated, control)

    exit_code, output = on_a_terminal(migrated, ["untrack", account, "--purge"], answer)

    assert exit_code == code, output
    assert f"Untrack {account} and delete its stored transactions" in output
    assert counts(migrated, account)[0] == left
