"""FCSYNC_LOG_FORMAT=json end to end: `fcsync track --inline` and a real `celery worker` (prefork)
refresh and sync an account of the emulator, fail on one Stripe does not know and refuse messages
whose arguments are secrets. Every line they log is one JSON object; every line of a unit of work
names its task and account (and, once Stripe has answered, the refresh and Stripe's request id);
no secret appears in any output, not even in Celery's own lines, which quote the arguments.
A malformed FCSYNC_LOG_FORMAT stops every process with one line naming it."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import make_url

from emulator import Emulator, EmulatorControl
from tests.cli.conftest import FCSYNC, Workdir, wait_for
from worker.db import upgrade_database
from worker.playground.truth import diff_transactions
from worker.supervisor import beat_argv, worker_argv

KEY_MARK = "JsonKeyMarkT4wQ9z"
HOOK_MARK = "JsonHookMarkP2vX7k"
PG_MARK = "JsonPgPwMarkR8nB3c"
MARKERS = (KEY_MARK, HOOK_MARK, PG_MARK)
API_KEY = f"sk_test_{KEY_MARK}"
WEBHOOK_SECRET = f"whsec_{HOOK_MARK}"
# Well formed, and not an account of the emulator's: Stripe answers 404.
MISSING = "fca_1JsonLogsNoSuchAccount"
ACCOUNT_TASKS = {"fcsync.refresh_account", "fcsync.poll_refresh", "fcsync.sync_transactions"}


def json_lines(text: str, what: str) -> list[dict[str, Any]]:
    """Each line of `text` as the JSON object it must be."""
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"{what} line {number} is not JSON: {line!r}")
        assert isinstance(record, dict), line
        assert {"level", "logger", "process", "message", "time"} <= record.keys(), line
        records.append(record)
    return records


@dataclass
class PostgresWorkdir(Workdir):
    database_url: str = ""

    @property
    def db_url(self) -> str:
        return self.database_url


@pytest.fixture
def json_workdir(tmp_path: Path, emulator: Emulator, fresh_postgres_url: str) -> Workdir:
    """A folder whose fcsync logs JSON at DEBUG (every line there is to check), on a PostgreSQL
    URL carrying a password, with a recognisable API key and webhook secret."""
    # The local server trusts its clients: the password is carried, never checked.
    db_url = make_url(fresh_postgres_url).set(password=PG_MARK).render_as_string(False)
    upgrade_database(db_url)
    return PostgresWorkdir(
        tmp_path,
        emulator.base_url,
        database_url=db_url,
        extra={
            "STRIPE_API_KEY": API_KEY,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "FCSYNC_LOG_FORMAT": "json",
            "FCSYNC_LOG_LEVEL": "DEBUG",
        },
    )


def enqueue(workdir: Workdir, *tasks: tuple[str, dict[str, Any]]) -> None:
    client = Celery("fcsync-json-logs-client", broker=f"sqla+sqlite:///{workdir.broker_file}")
    try:
        for name, kwargs in tasks:
            client.send_task(name, kwargs=kwargs, queue="fcsync")
    finally:
        client.close()


def run_worker_until(workdir: Workdir, done: Any) -> tuple[str, str]:
    """A prefork `celery worker` (one child, without its banner) until `done()`; its stdout and
    its stderr, where its logs go."""
    out, err = workdir.path / "worker.out", workdir.path / "worker.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            worker_argv(1, pool="prefork", log_level="DEBUG", quiet=True),
            cwd=workdir.path,
            env=workdir.env(),
            stdout=stdout,
            stderr=stderr,
            process_group=0,
        )
    try:
        wait_for(done, timeout=60, what=f"the worker's sync\n{err.read_text()[-3000:]}")
    finally:
        os.kill(proc.pid, signal.SIGTERM)  # a warm shutdown: the worker logs it, and its pool
        try:
            proc.wait(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return out.read_text(), err.read_text()


@pytest.mark.integration
@pytest.mark.postgres
def test_json_logs_name_the_unit_of_work_on_every_line_and_never_a_secret(
    json_workdir: Workdir, control: EmulatorControl
) -> None:
    account = control.create_account(transactions=150)["id"]

    track = json_workdir.run("track", account, "--inline", "--no-subscribe")
    # What `fcsync refresh` and `fcsync track` enqueue (test_enqueue.py), without two more
    # commands' start-up time.
    # Secrets where ids belong (a producer's mistake): the tasks refuse them, and Celery's
    # "received" line quotes them, which only the JSON formatter's own masking catches.
    refused = {
        "fcsync.track_account": {"account_id": API_KEY, "subscribe": json_workdir.db_url},
        "fcsync.handle_event": {"event_id": WEBHOOK_SECRET},
    }
    enqueue(
        json_workdir,
        ("fcsync.refresh_account", {"account_id": account, "source": "manual"}),
        ("fcsync.track_account", {"account_id": MISSING, "subscribe": False}),
        *refused.items(),
    )

    def synced() -> bool:
        truth = control.transactions(account)
        stored = json_workdir.stored(account)
        return bool(truth) and diff_transactions(stored, truth, limit=0) == []

    def failed_on_missing() -> bool:
        sql = "SELECT 1 FROM accounts WHERE id = :id AND last_error_code IS NOT NULL"
        return bool(json_workdir.query(sql, id=MISSING))

    def done() -> bool:
        return synced() and failed_on_missing()

    stdout, stderr = run_worker_until(json_workdir, done)

    # The CLI's --inline run: a unit of work about the account, from its first line.
    inline = json_lines(track.stderr, "fcsync track --inline")
    assert inline, "DEBUG logs nothing?"
    assert {r.get("account_id") for r in inline} == {account}, track.stderr
    assert any(r["logger"] == "stripe" for r in inline)  # its Stripe requests, at DEBUG

    records = json_lines(stderr, "the worker's stderr")
    # Which account each task is about, as Celery's "received" line (in the consumer) shows it.
    received = {
        r["data"]["id"]: ast.literal_eval(r["data"]["kwargs"])
        for r in records
        if r["logger"] == "celery.worker.strategy" and "data" in r
    }
    assert len(received) >= 6, received  # refresh, poll, sync; the unknown account; two refused
    # A pool process only runs tasks: each of its lines is a task's, from its start to Celery's
    # own line of its outcome.
    pool = [r for r in records if r["process"] != "MainProcess"]
    assert len(pool) > 20, stderr[-3000:]
    for record in pool:
        task_id = record.get("task_id")
        assert task_id in received and record.get("task_name"), record
        expected = received[task_id].get("account_id")
        if expected in (account, MISSING):
            assert record["account_id"] == expected, record
        else:  # an id the task refuses never goes on its lines
            assert "account_id" not in record, record
    refusals = [r for r in pool if r["logger"] == "tasks.base"]
    assert {r["task_name"] for r in refusals} == set(refused), refusals

    refresh_id = control.account(account)["transaction_refresh"]["id"]
    outcomes = [
        r for r in pool if r["logger"] == "celery.app.trace" and r.get("account_id") == account
    ]
    assert {r["task_name"] for r in outcomes} == ACCOUNT_TASKS, outcomes
    for record in outcomes:
        assert record["refresh_id"] == refresh_id, record
        assert record["stripe_request_id"].startswith("req_"), record

    # Stripe's 404 for the unknown account: fcsync's line names the request it failed on.
    (failure,) = [r for r in pool if r["logger"] == "worker.runtime"]
    assert failure["level"] == "ERROR" and MISSING in failure["message"], failure
    assert failure["account_id"] == MISSING and failure["task_name"] == "fcsync.track_account"
    assert failure["stripe_request_id"].startswith("req_"), failure

    everything = stdout + stderr + track.stdout + track.stderr
    assert not [mark for mark in MARKERS if mark in everything]


BAD_FORMAT = "error [invalid_setting]: FCSYNC_LOG_FORMAT: must be one of text, json"


@pytest.mark.parametrize("process", ["fcsync", "worker", "beat"])
def test_a_malformed_log_format_stops_every_process_with_one_line(
    workdir: Workdir, process: str
) -> None:
    argv = {
        "fcsync": [FCSYNC, "status"],
        "worker": worker_argv(1, pool="solo"),
        "beat": beat_argv(workdir.path / "celerybeat-schedule"),
    }[process]

    result = workdir.start_and_exit(argv, FCSYNC_LOG_FORMAT="yaml")

    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stderr.splitlines() == [BAD_FORMAT]
