"""`fcsync keys` as an operator runs it: each configured Stripe account with its mode, kind,
last four and secrets counted, as a table or JSON; a bad file is one line with the fix, exit 2."""

from __future__ import annotations

import json

from tests.cli.conftest import API_KEY, Workdir

EU_KEY = "sk_live_CliEuKeyMarkQ7vR2x9876"
EU_HOOKS = "whsec_CliEuHookMarkA,whsec_CliEuHookMarkB"
ACCOUNTS = """
[accounts.eu]
api_key_env = "FCSYNC_TEST_EU_KEY"
webhook_secrets_env = "FCSYNC_TEST_EU_HOOKS"
stripe_accounts = ["acct_1Eu"]
"""


def _configured(workdir: Workdir, text: str) -> dict[str, str]:
    path = workdir.path / "stripe-accounts.toml"
    path.write_text(text)
    return {
        "FCSYNC_STRIPE_ACCOUNTS": str(path),
        "FCSYNC_TEST_EU_KEY": EU_KEY,
        "FCSYNC_TEST_EU_HOOKS": EU_HOOKS,
        "STRIPE_WEBHOOK_SECRET": "whsec_fcsync_cli",
    }


def test_keys_lists_each_account_without_its_secrets(workdir: Workdir) -> None:
    env = _configured(workdir, ACCOUNTS)
    table = workdir.run("keys", **env).stdout
    lines = table.splitlines()
    assert lines[0].split() == [
        "name",
        "mode",
        "kind",
        "key",
        "webhook",
        "secrets",
        "connected",
        "accounts",
    ]
    assert lines[1].split() == ["default", "test", "secret", "...", "1", "any"]
    assert lines[2].split() == ["eu", "live", "secret", "...9876", "2", "acct_1Eu"]
    rows = json.loads(workdir.run("keys", "--json", **env).stdout)
    assert rows[1] == {
        "name": "eu",
        "mode": "live",
        "kind": "secret",
        "key_last4": "9876",
        "webhook_secrets": 2,
        "stripe_accounts": ["acct_1Eu"],
    }
    # The test key is too short to show four of its characters.
    assert rows[0]["key_last4"] is None and API_KEY not in table
    assert "Mark" not in table + json.dumps(rows)


def test_keys_bad_file_is_one_line_naming_the_problem_and_the_fix(workdir: Workdir) -> None:
    env = _configured(workdir, ACCOUNTS.replace("FCSYNC_TEST_EU_KEY", "FCSYNC_TEST_UNSET_KEY"))
    for args in (["keys"], ["keys", "--json"]):
        proc = workdir.run(*args, expect=2, **env)
        assert proc.stdout == ""
        path = env["FCSYNC_STRIPE_ACCOUNTS"]
        assert proc.stderr.splitlines() == [
            f"error [bad_stripe_accounts]: FCSYNC_STRIPE_ACCOUNTS file {path}, "
            "[accounts.eu]: api_key_env names FCSYNC_TEST_UNSET_KEY, which is not set: "
            "export FCSYNC_TEST_UNSET_KEY in every fcsync process's environment"
        ]
