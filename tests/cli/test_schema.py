"""A database that was never migrated: every command that reads it, and every long-running
process, says so in one line naming the fix (exit 3), on SQLite and PostgreSQL; the password in
the database URL is never printed. Plus `db upgrade`/`db downgrade`'s own usage errors."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import make_url

from tests.cli.conftest import FCSYNC, WEBHOOK_SECRET, Workdir, free_port, wait_for
from tests.conftest import fresh_database
from worker.supervisor import Supervisor, beat_argv, worker_argv

PASSWORD = "S3cretDbPw"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def unmigrated(request: pytest.FixtureRequest, workdir: Workdir) -> Iterator[Workdir]:
    """A folder whose DATABASE_URL (with a password in it) points at an empty database."""
    if request.param == "sqlite":
        yield workdir
        return
    with fresh_database("fcsync_empty") as created:
        url = make_url(created)
        if not url.password:  # trust authentication ignores it; it is there to be masked
            url = url.set(password=PASSWORD)
        workdir.extra["DATABASE_URL"] = url.render_as_string(hide_password=False)
        yield workdir


def schema_line(workdir: Workdir) -> str:
    url = make_url(workdir.env()["DATABASE_URL"])
    masked = url.render_as_string(hide_password=False).replace(f":{url.password}@", ":***@")
    return (
        f"error [no_schema]: the database at {masked} has no fcsync schema: run `fcsync db upgrade`"
    )


def secrets_of(workdir: Workdir) -> list[str]:
    password = make_url(workdir.env()["DATABASE_URL"]).password
    return [str(password)] if password else []


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["status", "fca_x", "--json"],
        ["untrack", "fca_x", "--inline"],
        ["transactions", "fca_x"],
        ["refresh", "fca_x"],
        ["sync", "fca_x", "--inline"],
        ["track", "fca_x", "--inline"],
    ],
    ids=" ".join,
)
def test_commands_on_an_unmigrated_database_say_run_db_upgrade(
    unmigrated: Workdir, args: list[str]
) -> None:
    result = unmigrated.run(*args, expect=3)

    assert result.stderr.splitlines() == [schema_line(unmigrated)]
    for secret in secrets_of(unmigrated):
        assert secret not in result.stdout + result.stderr


@pytest.mark.parametrize("process", ["worker", "beat", "webhooks"])
def test_long_running_processes_refuse_to_start_on_an_unmigrated_database(
    unmigrated: Workdir, process: str
) -> None:
    argv = {
        "worker": worker_argv(1, pool="solo"),
        "beat": beat_argv(unmigrated.path / "celerybeat-schedule"),
        "webhooks": [FCSYNC, "webhooks", "--port", str(free_port())],
    }[process]

    result = unmigrated.start_and_exit(argv, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)

    assert result.returncode == 3, result.stdout + result.stderr
    # Beat logs "beat: Starting..." before its start-up signal; Celery's records open with "[".
    ours = [line for line in result.stderr.splitlines() if not line.startswith("[")]
    assert ours == [schema_line(unmigrated)], result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for secret in secrets_of(unmigrated):
        assert secret not in result.stdout + result.stderr


def test_run_migrates_before_it_starts_anything(workdir: Workdir) -> None:
    """`fcsync run` is the one command that upgrades by itself: its worker must not refuse."""
    procs = Supervisor(log_dir=workdir.path, cwd=workdir.path)
    try:
        run = procs.spawn(
            "run",
            [FCSYNC, "run", "--concurrency", "1", "--port", str(free_port())],
            # INFO: the worker's "ready." banner is what this test waits for.
            env=workdir.env(STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET, FCSYNC_LOG_LEVEL="INFO"),
        )
        log = workdir.path / "run.log"
        wait_for(
            lambda: "ready." in log.read_text(errors="replace"),
            timeout=40,
            what=f"the worker's banner\n{procs.logs()}",
        )
        assert run.poll() is None
        assert workdir.query("SELECT count(*) FROM alembic_version") == [(1,)]
    finally:
        procs.stop()


def test_db_upgrade_to_an_unknown_revision_is_a_usage_error(workdir: Workdir) -> None:
    result = workdir.run("db", "upgrade", "--revision", "nonsense", expect=2)

    (line,) = result.stderr.splitlines()
    assert line.startswith("error [bad_revision]: Can't locate revision identified by 'nonsense'")
    assert "`head`" in line


def test_db_downgrade_without_a_terminal_needs_yes(workdir: Workdir) -> None:
    workdir.run("db", "upgrade")

    refused = workdir.run("db", "downgrade", "base", expect=2)

    (line,) = refused.stderr.splitlines()
    assert line.startswith("error [confirmation_required]:") and "--yes" in line
    assert workdir.query("SELECT count(*) FROM alembic_version") == [(1,)]  # nothing dropped
    workdir.run("db", "downgrade", "base", "--yes")
    assert workdir.query("SELECT count(*) FROM alembic_version") == [(0,)]


def on_a_terminal(workdir: Workdir, args: list[str], answer: bytes) -> tuple[int, str]:
    """Run fcsync with a pseudo-terminal as stdin/stdout; answer its prompt; (exit, output)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [FCSYNC, *args],
        cwd=workdir.path,
        env=workdir.env(),
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 30
    answered = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        if not answered and b"[y/N]" in output:
            os.write(leader, answer)
            answered = True
        if proc.poll() is not None and not ready:
            break
    os.close(leader)
    return proc.wait(timeout=10), output.decode(errors="replace")


@pytest.mark.parametrize(("answer", "code", "left"), [(b"n\n", 1, 1), (b"y\n", 0, 0)])
def test_db_downgrade_on_a_terminal_asks_first(
    workdir: Workdir, answer: bytes, code: int, left: int
) -> None:
    workdir.run("db", "upgrade")

    exit_code, output = on_a_terminal(workdir, ["db", "downgrade", "base"], answer)

    assert exit_code == code, output
    assert f"Downgrade {workdir.db_url} to base?" in output
    assert "Traceback" not in output
    assert workdir.query("SELECT count(*) FROM alembic_version") == [(left,)]
