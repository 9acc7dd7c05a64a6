"""--stripe-key-name on the account commands: a name no configured key has is one usage line
before anything is enqueued; an account tracked with a second key is served with it from then
on, and a command naming another key is refused without asking Stripe anything."""

from __future__ import annotations

import pytest

from emulator import EmulatorControl
from tests.cli.conftest import Workdir

KEY_B = "sk_test_cli_second_key"
PLATFORM_B = "acct_1CliSecondKey"


@pytest.fixture
def two_keys(migrated: Workdir, control: EmulatorControl) -> Workdir:
    """`default` (STRIPE_API_KEY) and `b`, the emulator's second platform."""
    control.register_platform([KEY_B], PLATFORM_B)
    accounts = migrated.path / "stripe-accounts.toml"
    accounts.write_text(f'[accounts.b]\napi_key = "{KEY_B}"\n')
    migrated.extra["FCSYNC_STRIPE_ACCOUNTS"] = str(accounts)
    return migrated


@pytest.mark.parametrize("command", ["track", "untrack", "refresh", "sync"])
def test_an_unknown_stripe_key_name_is_one_usage_line_and_nothing_is_enqueued(
    two_keys: Workdir, command: str
) -> None:
    result = two_keys.run(command, "fca_1Any", "--stripe-key-name", "eu", expect=2)

    (line,) = result.stderr.splitlines()
    assert line.startswith("error [unknown_stripe_key]: no configured Stripe key is named 'eu'")
    assert "default, b" in line
    assert not two_keys.broker_file.exists() or two_keys.queued() == []


def test_an_account_tracked_with_a_second_key_is_served_with_it_and_another_key_refused(
    two_keys: Workdir, control: EmulatorControl
) -> None:
    account = control.create_account(transactions=30, platform=PLATFORM_B)["id"]
    two_keys.run("track", account, "--stripe-key-name", "b", "--no-subscribe", "--inline")
    two_keys.run("refresh", account, "--inline", "--wait")
    stored = two_keys.query(
        "SELECT a.stripe_key, count(t.id) FROM accounts a JOIN transactions t "
        f"ON t.account_id = a.id WHERE a.id = '{account}' GROUP BY a.stripe_key"
    )
    assert stored == [("b", len(control.transactions(account)))]
    before = control.stats()["requests"]

    result = two_keys.run("sync", account, "--stripe-key-name", "default", "--inline", expect=3)

    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error [stripe_key_mismatch]: account {account} is reached with")
    assert control.stats()["requests"] == before
