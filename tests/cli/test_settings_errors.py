"""A missing or refused setting is fcsync's own configuration, never a fact about an account:
it is not recorded on any account, and every long-running process refuses to start without
the settings it needs, naming them in one line."""

from __future__ import annotations

import pytest

from emulator import EmulatorControl
from tests.cli.conftest import FCSYNC, Workdir, free_port, wait_for
from worker.supervisor import Supervisor, worker_argv


@pytest.fixture
def healthy(migrated: Workdir, control: EmulatorControl) -> tuple[Workdir, str]:
    """A tracked account with no error recorded."""
    account = control.create_account(transactions=5)["id"]
    migrated.run("track", account, "--inline", "--no-subscribe")
    assert migrated.account(account)["last_error_code"] is None
    return migrated, account


@pytest.mark.parametrize(
    ("key", "says"),
    [
        (None, "error [missing_setting]: STRIPE_API_KEY is not set"),
        # Stripe's 401
        ("sk_test_", "error [authentication]: the Stripe key `default` (STRIPE_API_KEY) was"),
    ],
)
@pytest.mark.parametrize("command", ["track", "refresh"])
def test_a_missing_or_refused_api_key_is_never_recorded_on_an_account(
    healthy: tuple[Workdir, str], command: str, key: str | None, says: str
) -> None:
    workdir, account = healthy

    result = workdir.run(command, account, "--inline", expect=3, STRIPE_API_KEY=key)

    (line,) = result.stderr.splitlines() or [""]
    assert line.startswith(says), result.stderr
    row = workdir.account(account)
    assert row["last_error_code"] is None and row["tracked"]


def test_a_refused_default_key_from_the_stripe_accounts_file_is_named_with_that_file(
    healthy: tuple[Workdir, str],
) -> None:
    workdir, account = healthy
    accounts = workdir.path / "stripe-accounts.toml"
    # Stripe's 401: the emulator knows no such key.
    accounts.write_text('[accounts.default]\napi_key = "sk_test_"\n')

    result = workdir.run(
        "refresh",
        account,
        "--inline",
        expect=3,
        STRIPE_API_KEY=None,
        FCSYNC_STRIPE_ACCOUNTS=str(accounts),
    )

    (line,) = result.stderr.splitlines() or [""]
    assert line.startswith(
        "error [authentication]: the Stripe key `default` ([accounts.default] in "
        f"FCSYNC_STRIPE_ACCOUNTS file {accounts}) was refused"
    ), result.stderr
    assert workdir.account(account)["last_error_code"] is None


MISSING_KEY = (
    "error [missing_setting]: STRIPE_API_KEY is not set: fcsync needs a Stripe secret or "
    "restricted key (or api_key_env of an account in the FCSYNC_STRIPE_ACCOUNTS file)"
)


def test_a_worker_without_stripe_api_key_refuses_to_start(migrated: Workdir) -> None:
    result = migrated.start_and_exit(worker_argv(1, pool="solo"), STRIPE_API_KEY=None)

    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stderr.splitlines() == [MISSING_KEY]
    assert "Traceback" not in result.stdout


def test_a_worker_with_a_stripe_accounts_file_it_cannot_use_refuses_to_start(
    migrated: Workdir,
) -> None:
    missing = migrated.path / "nowhere.toml"
    result = migrated.start_and_exit(
        worker_argv(1, pool="solo"), FCSYNC_STRIPE_ACCOUNTS=str(missing)
    )

    assert result.returncode == 3, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error [bad_stripe_accounts]: FCSYNC_STRIPE_ACCOUNTS file {missing}")


def test_run_without_stripe_api_key_refuses_before_starting_anything(workdir: Workdir) -> None:
    result = workdir.start_and_exit(
        [FCSYNC, "run", "--port", str(free_port())], STRIPE_API_KEY=None
    )

    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stderr.splitlines() == [MISSING_KEY]
    assert result.stdout == ""
    assert not (workdir.path / "fcsync.db").exists()  # nothing migrated, nothing started


def test_webhooks_without_its_secret_refuses_to_start(migrated: Workdir) -> None:
    result = migrated.start_and_exit([FCSYNC, "webhooks", "--port", str(free_port())])

    assert result.returncode == 3, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error [missing_setting]: STRIPE_WEBHOOK_SECRET is not set")


def test_run_without_the_webhook_secret_runs_without_the_receiver_and_says_so(
    workdir: Workdir, tmp_path_factory: pytest.TempPathFactory
) -> None:
    procs = Supervisor(log_dir=tmp_path_factory.mktemp("run-logs"), cwd=workdir.path)
    try:
        run = procs.spawn(
            "run",
            [FCSYNC, "run", "--concurrency", "1", "--port", str(free_port())],
            # INFO: the worker's "ready." banner is what this test waits for.
            env=workdir.env(FCSYNC_LOG_LEVEL="INFO"),
        )
        log = procs.log_dir / "run.log"
        wait_for(
            lambda: "ready." in log.read_text(errors="replace"),
            timeout=40,
            what=f"the worker's banner\n{procs.logs()}",
        )
        assert run.poll() is None
        text = log.read_text(errors="replace")
        assert "STRIPE_WEBHOOK_SECRET is not set: running without the webhook receiver" in text
    finally:
        procs.stop()
