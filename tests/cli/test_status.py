"""`fcsync status` as people read it (a terminal of any width, or a pipe) and as scripts read it
(`--json`, one timestamp convention), plus `fcsync --version`."""

from __future__ import annotations

import json
from importlib.metadata import version
from typing import Any

import pytest

from emulator import EmulatorControl
from tests.cli.conftest import Synced, Workdir
from tests.cli.test_progress import ANSI, run_on_terminal

INACTIVE_ERROR = "[account_inactive] account is inactive"


@pytest.fixture(scope="module")
def accounts(synced: Synced, control: EmulatorControl) -> dict[str, str]:
    """The synced account beside an inactive one, whose recorded error looks like markup."""
    inactive = control.create_account(transactions=5, status="inactive")["id"]
    # Tracking an inactive account is a permanent failure (its exit code is not the point here).
    synced.workdir.run("track", inactive, "--inline", "--no-subscribe", expect=None)
    refresh = control.account(synced.account)["transaction_refresh"]
    return {"synced": synced.account, "inactive": inactive, "refresh": refresh["id"]}


def table_rows(text: str) -> dict[str, dict[str, str]]:
    """The status table's rows by account id: column name -> cell."""
    lines = text.splitlines()
    header = next(line for line in lines if "account" in line and "cursor" in line)
    names = [cell.strip() for cell in header.split("┃")[1:-1]]
    rows = {}
    for line in lines:
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.split("│")[1:-1]]
            rows[cells[0]] = dict(zip(names, cells, strict=True))
    return rows


def test_status_piped_is_one_whole_line_per_account_with_errors_shown_literally(
    synced: Synced, accounts: dict[str, str]
) -> None:
    out = synced.workdir.run("status").stdout

    rows = table_rows(out)
    assert set(rows) == {accounts["synced"], accounts["inactive"]}, out
    synced_row, inactive_row = rows[accounts["synced"]], rows[accounts["inactive"]]
    assert synced_row["last refresh"] == synced_row["cursor"] == accounts["refresh"]
    assert synced_row["state"] == "fresh" and synced_row["next due"] != "-"
    assert synced_row["why"] == ""
    assert inactive_row["last error"].startswith(INACTIVE_ERROR), out
    assert inactive_row["state"] == "inactive"
    assert inactive_row["why"] == "inactive at Stripe: no refresh possible until it is reactivated"
    assert "…" not in out and "\x1b[" not in out


@pytest.mark.parametrize("columns", [80, 120, 400])
def test_status_on_a_terminal_shows_ids_whole_and_errors_literally_at_any_width(
    synced: Synced, accounts: dict[str, str], columns: int
) -> None:
    code, out, err = run_on_terminal(synced.workdir, "status", columns=columns)

    assert code == 0 and "Traceback" not in err, out + err
    text = ANSI.sub("", out)
    assert all(len(line) <= columns for line in text.splitlines()), text
    for account_id in (accounts["synced"], accounts["inactive"], accounts["refresh"]):
        assert account_id in text, text
    assert INACTIVE_ERROR in text and "…" not in text
    for column in ("next due", "state", "why", "fresh", "inactive at Stripe"):
        assert column in text, text
    if columns == 400:
        assert set(table_rows(text)) == {accounts["synced"], accounts["inactive"]}, text


TIME_FIELDS = {
    "last_refresh_succeeded_at",
    "last_refresh_failed_at",
    "refresh_pending_since",
    "state_until",
    "last_rows_changed_at",
    "refresh_last_attempted_at",
    "next_refresh_available_at",
    "last_synced_at",
    "next_due_at",
    "last_error_at",
    "gone_at",
    "reconciled_at",
    "next_reconcile_at",
}


def test_status_json_gives_every_time_as_unix_seconds(
    synced: Synced, accounts: dict[str, str], control: EmulatorControl
) -> None:
    rows: list[dict[str, Any]] = json.loads(synced.workdir.run("status", "--json").stdout)

    by_id = {row["id"]: row for row in rows}
    assert {
        k for row in rows for k in row if k.endswith(("_at", "_since", "_until"))
    } == TIME_FIELDS
    for row in rows:
        for name in TIME_FIELDS:
            assert row[name] is None or type(row[name]) is int, (name, row[name])
    synced_row, inactive_row = by_id[accounts["synced"]], by_id[accounts["inactive"]]
    refresh = control.account(accounts["synced"])["transaction_refresh"]
    assert synced_row["refresh_last_attempted_at"] == refresh["last_attempted_at"]
    # fcsync's own times (when it synced, when it is due) are on the same scale as Stripe's.
    assert 0 <= synced_row["last_synced_at"] - refresh["last_attempted_at"] < 600
    assert synced_row["next_due_at"] > synced_row["last_synced_at"]
    assert (synced_row["state"], synced_row["stale_reason"]) == ("fresh", None)
    # The refresh it synced succeeded and brought rows; nothing of it failed or is pending.
    assert 0 <= synced_row["last_rows_changed_at"] - synced_row["last_refresh_succeeded_at"] < 600
    assert synced_row["last_refresh_failed_at"] is synced_row["refresh_pending_since"] is None
    assert inactive_row["last_error"].startswith(INACTIVE_ERROR)
    assert type(inactive_row["last_error_at"]) is int
    assert inactive_row["state"] == "inactive"
    assert inactive_row["stale_reason"].startswith("inactive at Stripe")


def test_version_prints_the_installed_package_version(workdir: Workdir) -> None:
    out = workdir.run("--version").stdout

    assert out == f"fcsync {version('fcsync')}\n"


def test_status_shows_each_accounts_stripe_account_context(migrated: Workdir) -> None:
    migrated.insert_account("fca_platform")
    migrated.insert_account("fca_connected", stripe_account="acct_1Connected")

    out = migrated.run("status").stdout
    rows = table_rows(out)
    assert rows["fca_platform"]["context"] == "platform"
    # One Stripe key: one table, no key named anywhere.
    assert "key" not in rows["fca_platform"] and "Stripe key" not in out
    assert rows["fca_connected"]["context"] == "acct_1Connected"
    listed = json.loads(migrated.run("status", "--json").stdout)
    assert {row["id"]: row["stripe_account"] for row in listed} == {
        "fca_connected": "acct_1Connected",
        "fca_platform": None,
    }


def test_status_lists_accounts_by_context_and_filters_on_one(migrated: Workdir) -> None:
    for account, context in (
        ("fca_a_conn2", "acct_1Second"),
        ("fca_b_platform", None),
        ("fca_c_conn1", "acct_1First"),
        ("fca_d_platform", None),
        ("fca_e_conn1", "acct_1First"),
    ):
        migrated.insert_account(account, stripe_account=context)

    # Piped, the table keeps its rows' order: the platform's first, then each acct_ by id.
    assert list(table_rows(migrated.run("status").stdout)) == [
        "fca_b_platform",
        "fca_d_platform",
        "fca_c_conn1",
        "fca_e_conn1",
        "fca_a_conn2",
    ]
    first = table_rows(migrated.run("status", "--context", "acct_1First").stdout)
    assert list(first) == ["fca_c_conn1", "fca_e_conn1"]
    platform = json.loads(migrated.run("status", "--json", "--context", "platform").stdout)
    assert [row["id"] for row in platform] == ["fca_b_platform", "fca_d_platform"]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("acct_1First-x", "is not a Stripe account context: give `platform`"),
        ("acct_1Nobody", "no stored account lives in acct_1Nobody"),
    ],
)
def test_status_refuses_a_context_it_does_not_know_in_one_line(
    migrated: Workdir, value: str, why: str
) -> None:
    migrated.insert_account("fca_conn", stripe_account="acct_1First")

    proc = migrated.run("status", "--context", value, expect=2)
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert line.startswith("error [bad_context]: --context: ") and why in line, line
    assert line.endswith("stored contexts: platform, acct_1First"), line


def test_status_of_one_account_in_another_context_says_where_it_lives(migrated: Workdir) -> None:
    migrated.insert_account("fca_conn", stripe_account="acct_1First")
    migrated.insert_account("fca_other", stripe_account="acct_1Other")

    proc = migrated.run("status", "fca_conn", "--context", "acct_1Other", expect=2)
    assert proc.stderr == (
        "error [bad_context]: --context: account fca_conn lives in acct_1First, not acct_1Other\n"
    )
    shown = table_rows(migrated.run("status", "fca_conn", "--context", "acct_1First").stdout)
    assert list(shown) == ["fca_conn"]


def test_status_shows_a_relink_stripe_asks_for(migrated: Workdir) -> None:
    migrated.insert_account("fca_expiring")
    migrated.insert_account("fca_fine")
    migrated.execute(
        "UPDATE accounts SET status_details_action = 'relink_required', "
        "status_details_cause = 'access_expired', expected_deactivation_date = 1796000000 "
        "WHERE id = 'fca_expiring'"
    )

    lines = migrated.run("status").stdout.splitlines()

    assert "relink" in lines[2]
    (expiring,) = [line for line in lines if "fca_expiring" in line]
    assert "required by 2026-11-30 00:53:20 (access_expired)" in expiring
    (fine,) = [line for line in lines if "fca_fine" in line]
    assert "required by" not in fine
    rows = {r["id"]: r for r in json.loads(migrated.run("status", "--json").stdout)}
    assert (
        rows["fca_expiring"]["status_details_action"],
        rows["fca_expiring"]["status_details_cause"],
        rows["fca_expiring"]["expected_deactivation_date"],
    ) == ("relink_required", "access_expired", 1_796_000_000)
    assert rows["fca_fine"]["status_details_action"] is None


def test_status_of_several_keys_shows_a_section_per_key_and_context(migrated: Workdir) -> None:
    for account, key, context in (
        ("fca_a_eu_conn", "eu", "acct_1First"),
        ("fca_b_default", None, None),
        ("fca_c_eu", "eu", None),
    ):
        migrated.insert_account(account, stripe_key=key, stripe_account=context)

    lines = migrated.run("status").stdout.splitlines()

    titles = [line for line in lines if line.startswith("Stripe key ")]
    assert titles == [
        "Stripe key default · platform (1 account)",
        "Stripe key eu · platform (1 account)",
        "Stripe key eu · acct_1First (1 account)",
    ]
    # Each line names its key too: a grep of one account still says which key reaches it.
    (eu_line,) = [line for line in lines if "fca_a_eu_conn" in line]
    assert table_rows("\n".join([*lines[:5], eu_line]))["fca_a_eu_conn"]["key"] == "eu"
    listed = json.loads(migrated.run("status", "--json").stdout)
    assert [(r["id"], r["stripe_key"]) for r in listed] == [
        ("fca_b_default", "default"),
        ("fca_c_eu", "eu"),
        ("fca_a_eu_conn", "eu"),
    ]
    both = migrated.run("status", "--stripe-key-name", "eu", "--context", "platform").stdout
    assert list(table_rows(both)) == ["fca_c_eu"]
    assert [line for line in both.splitlines() if line.startswith("Stripe key ")] == [
        "Stripe key eu · platform (1 account)"
    ]


def test_status_refuses_a_key_it_does_not_know_and_says_which_key_an_account_has(
    migrated: Workdir,
) -> None:
    migrated.insert_account("fca_eu", stripe_key="eu")

    unknown = migrated.run("status", "--stripe-key-name", "us", expect=2)
    assert unknown.stdout == ""
    assert unknown.stderr == (
        "error [unknown_stripe_key]: --stripe-key-name: no configured or stored Stripe key is "
        "named 'us'; keys: default, eu\n"
    )
    other = migrated.run("status", "fca_eu", "--stripe-key-name", "default", expect=2)
    assert other.stderr == (
        "error [unknown_stripe_key]: --stripe-key-name: account fca_eu is reached with the "
        "Stripe key eu, not default\n"
    )
