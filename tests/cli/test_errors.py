"""Exit codes: 2 usage, 3 permanent (naming the code), 4 transient after the inline retries;
never a traceback (Workdir.run checks stderr on every call)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulator import EmulatorControl
from tests.cli.conftest import Workdir


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["sync", "fca_x", "--bogus"], "No such option '--bogus'"),
        (["transactions", "fca_x", "--json", "--csv"], "choose one of --json and --csv"),
        (["refresh", "fca_x", "--wait"], "--wait needs --inline"),
        (["transactions", "fca_x", "--since", "yesterday"], "Invalid value for '--since'"),
        (["track"], "Missing argument 'ACCOUNT'"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_cli_usage_errors_exit_2(workdir: Workdir, args: list[str], says: str) -> None:
    result = workdir.run(*args, expect=2)
    assert says in result.stderr


def test_track_unknown_account_exits_3_naming_resource_missing(migrated: Workdir) -> None:
    result = migrated.run("track", "fca_doesnotexist", "--inline", expect=3)
    assert "resource_missing" in result.stderr and "fca_doesnotexist" in result.stderr


def test_sync_of_an_untracked_account_exits_3(migrated: Workdir) -> None:
    result = migrated.run("sync", "fca_nevertracked", "--inline", expect=3)
    assert "[unknown_account]" in result.stderr


@pytest.mark.parametrize(
    ("command", "spec", "code"),
    [
        ("track", {"status": "inactive"}, "account_inactive"),
        ("refresh", {"status": "inactive"}, "account_inactive"),
        ("track", {"permissions": ["balances"]}, "missing_permission"),
    ],
)
def test_inline_on_an_unusable_account_exits_3_and_records_it(
    migrated: Workdir, control: EmulatorControl, command: str, spec: dict[str, object], code: str
) -> None:
    account = control.create_account(transactions=5, **spec)["id"]
    if command == "refresh":
        migrated.insert_account(account)  # `refresh` refuses accounts fcsync never saw

    result = migrated.run(command, account, "--inline", expect=3)

    assert f"[{code}]" in result.stderr and account in result.stderr
    assert migrated.account(account)["last_error_code"] == code


def test_inline_without_stripe_api_key_exits_3_naming_the_variable(migrated: Workdir) -> None:
    result = migrated.run("track", "fca_x", "--inline", expect=3, STRIPE_API_KEY=None)
    assert "STRIPE_API_KEY" in result.stderr and "[missing_setting]" in result.stderr


def test_a_malformed_setting_exits_3_naming_the_variable(workdir: Workdir) -> None:
    result = workdir.run("status", expect=3, FCSYNC_PAGES_PER_RUN="0")
    assert "[invalid_setting]: FCSYNC_PAGES_PER_RUN" in result.stderr


def test_settings_that_do_not_fit_together_exit_3_naming_them(workdir: Workdir) -> None:
    result = workdir.run(
        "status",
        expect=3,
        CELERY_BROKER_URL="amqp://guest:guest@127.0.0.1:5672//",
        FCSYNC_BROKER_CONSUMER_TIMEOUT_S="900",
    )
    assert "[invalid_setting]: FCSYNC_BROKER_CONSUMER_TIMEOUT_S=900" in result.stderr


def test_a_visibility_timeout_below_a_countdown_exits_3_naming_both(workdir: Workdir) -> None:
    result = workdir.run("status", expect=3, FCSYNC_BROKER_VISIBILITY_TIMEOUT_S="600")
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        "error [invalid_setting]: FCSYNC_BROKER_VISIBILITY_TIMEOUT_S=600 must be longer than "
    )
    assert "FCSYNC_MAX_COUNTDOWN_S=3600" in line


def test_an_unreachable_database_exits_4(workdir: Workdir) -> None:
    missing = workdir.path / "no-such-folder" / "fcsync.db"
    result = workdir.run("status", expect=4, DATABASE_URL=f"sqlite:///{missing}")
    assert "[database_unavailable]" in result.stderr


@pytest.fixture
def faults(control: EmulatorControl) -> Iterator[EmulatorControl]:
    yield control
    control.set_faults(server_error_rate=0.0, rate_limit_rate=0.0)


@pytest.mark.parametrize(
    ("fault", "code"), [("server_error_rate", "[http_500]"), ("rate_limit_rate", "[rate_limit]")]
)
def test_inline_transient_errors_exit_4_after_retries(
    migrated: Workdir, faults: EmulatorControl, fault: str, code: str
) -> None:
    account = faults.create_account(transactions=5)["id"]
    faults.set_faults(**{fault: 1.0})

    result = migrated.run("track", account, "--inline", expect=4)

    assert code in result.stderr and "transient" in result.stderr
    # INLINE_RETRIES retries, each announced, before giving up.
    assert result.stdout.count("transient error") == 4, result.stdout
