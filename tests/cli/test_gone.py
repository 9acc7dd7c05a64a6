"""An account Stripe no longer knows, as a user meets it: `refresh --inline` exits 3 naming
`account_gone`, and `status` (table and JSON) shows the account as gone."""

from __future__ import annotations

import json

from emulator import EmulatorControl
from tests.cli.conftest import Workdir
from tests.cli.test_status import table_rows


def test_refresh_of_an_account_stripe_forgot_exits_3_and_status_shows_it_gone(
    migrated: Workdir, control: EmulatorControl
) -> None:
    account = control.create_account(transactions=5)["id"]
    migrated.run("track", account, "--inline", "--no-subscribe")
    control.delete_account(account)

    result = migrated.run("refresh", account, "--inline", expect=3)

    assert "[account_gone]" in result.stderr and account in result.stderr
    (row,) = json.loads(migrated.run("status", account, "--json").stdout)
    assert row["gone_at"] is not None and row["next_due_at"] is None
    assert row["last_error"].startswith("[account_gone]")
    assert table_rows(migrated.run("status").stdout)[account]["status"] == "gone"
