"""No secret is ever shown or stored: a whole flow runs with recognisable secrets (Stripe key,
webhook secret, a PostgreSQL password, a password-protected Redis as broker and rate limiter),
then every process's output, every CLI answer, every table and every queued message is searched."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from celery import Celery
from sqlalchemy import create_engine, inspect, make_url, text

from emulator import Emulator, EmulatorConfig, EmulatorControl, signature_header
from tests.cli.conftest import FCSYNC, Supervisor, Workdir, free_port, wait_for
from tests.processes import decode_message, start_redis

# What must never appear: the secret part of each value (the `sk_test_`-style prefixes may).
KEY_MARK = "KeyMarkQ7vR2xWp"
HOOK_MARK = "HookMarkZ9nC4tYe"
PG_MARK = "PgPwMarkX3kL8sDf"
REDIS_MARK = "RedisPwMarkV5hJ1q"
WRONG_MARK = "WrongKeyMarkB6gT"
MARKERS = (KEY_MARK, HOOK_MARK, PG_MARK, REDIS_MARK, WRONG_MARK)
# A key of the wrong shape (a live key pasted with a stray character, say): Stripe answers 401.
WRONG_KEY = f"sk_test_{WRONG_MARK}-0u"


@pytest.fixture
def secret_redis(children: Supervisor, tmp_path: Path) -> int:
    """A Redis of the test's own that requires a password (the shared one has none)."""
    return start_redis(children, tmp_path, password=REDIS_MARK)


@pytest.fixture
def secret_postgres_url(fresh_postgres_url: str) -> str:
    """A fresh PostgreSQL database, reached by a URL that carries a password."""
    # The local server trusts its clients, so the password is carried but never checked.
    return make_url(fresh_postgres_url).set(password=PG_MARK).render_as_string(hide_password=False)


Call = Callable[[], "subprocess.CompletedProcess[str]"]


class Transcript:
    """Runs `fcsync` and keeps everything it printed."""

    def __init__(self, workdir: Workdir, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        # (the command, what it printed): only the second is searched, the first may be a secret.
        self.outputs: list[tuple[str, str]] = []

    def run(
        self, *args: str, expect: int | None = 0, **env: str
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [FCSYNC, *args],
            cwd=self.workdir.path,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        printed = f"{proc.stdout}{proc.stderr}"
        self.outputs.append((f"fcsync {' '.join(args[:1])} (exit {proc.returncode})", printed))
        output = f"$ fcsync {' '.join(args)} -> {proc.returncode}\n{printed}"
        if expect is not None:
            assert proc.returncode == expect, output
        return proc

    def call(self, *args: str, expect: int | None = 0, **env: str) -> Call:
        return lambda: self.run(*args, expect=expect, **env)

    def run_all(self, *calls: Call) -> list[subprocess.CompletedProcess[str]]:
        """Independent commands at once (each spends seconds importing, mostly waiting)."""
        with ThreadPoolExecutor(len(calls)) as pool:
            return list(pool.map(lambda call: call(), calls))


def table_dump(url: str) -> str:
    """Every row of every table (alembic's included), as text."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return "\n".join(
                repr(row)
                for table in inspect(conn).get_table_names()
                for row in conn.execute(text(f'SELECT * FROM "{table}"'))
            )
    finally:
        engine.dispose()


def redis_dump(port: int) -> tuple[str, int]:
    """Every value in every Redis database, Celery messages decoded; and how many messages."""
    parts: list[str] = []
    messages = 0

    def add(raw: bytes) -> None:
        nonlocal messages
        value = raw.decode(errors="replace")
        parts.append(value)
        try:
            loaded = json.loads(value)
        except ValueError:
            return
        # A queued message, or an unacked one stored as [message, exchange, routing key].
        message = loaded[0] if isinstance(loaded, list) and loaded else loaded
        if isinstance(message, dict) and "body" in message and "headers" in message:
            parts.append(repr(decode_message(message)))
            messages += 1

    for db in range(16):
        client = redis.Redis(port=port, password=REDIS_MARK, db=db)
        for key in client.scan_iter():
            parts.append(key.decode(errors="replace"))
            kind = client.type(key).decode()
            if kind == "string":
                add(client.get(key) or b"")
            elif kind == "list":
                for item in client.lrange(key, 0, -1):
                    add(item)
            elif kind == "hash":
                for field, item in client.hgetall(key).items():
                    parts.append(field.decode(errors="replace"))
                    add(item)
            elif kind == "set":
                for item in client.smembers(key):
                    add(item)
            elif kind == "zset":
                for item in client.zrange(key, 0, -1):
                    add(item)
        client.close()
    return "\n".join(parts), messages


def files_under(folder: Path) -> str:
    """Every file the processes wrote (logs, beat's schedule), as text."""
    return "\n".join(
        f"--- {path}\n" + path.read_bytes().decode(errors="replace")
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.suffix not in (".rdb",)
    )


def leaks(where: str, text_: str) -> list[str]:
    found = []
    for marker in MARKERS:
        start = text_.find(marker)
        if start != -1:
            found.append(f"{marker} in {where}: ...{text_[max(0, start - 120) : start + 40]}...")
    return found


@pytest.fixture
def own_emulator() -> Iterator[Emulator]:
    """An emulator of this test's own: the long flow must not depend on what earlier tests left
    in the session's emulator (accounts, refreshes, webhook endpoints)."""
    with Emulator(
        EmulatorConfig(seed=11, refresh_delay_s=0.2, refresh_cooldown_s=0.0, transactions=50)
    ) as emu:
        yield emu


def test_no_secret_appears_in_any_output_row_or_message(
    tmp_path: Path,
    own_emulator: Emulator,
    children: Supervisor,
    secret_redis: int,
    secret_postgres_url: str,
) -> None:
    emulator = own_emulator
    control = EmulatorControl(emulator.base_url)
    workdir = Workdir(tmp_path, emulator.base_url)
    redis_base = f"redis://:{REDIS_MARK}@127.0.0.1:{secret_redis}"
    env = workdir.env(
        DATABASE_URL=secret_postgres_url,
        CELERY_BROKER_URL=f"{redis_base}/0",
        REDIS_URL=f"{redis_base}/1",  # the shared request budget
        STRIPE_API_KEY=f"sk_test_{KEY_MARK}",
        STRIPE_WEBHOOK_SECRET=f"whsec_{HOOK_MARK}",
        FCSYNC_LOG_LEVEL="INFO",
    )
    # The CLI at DEBUG: the most a user can make fcsync say (stripe-python's lines included).
    cli = Transcript(workdir, {**env, "FCSYNC_LOG_LEVEL": "DEBUG"})
    account = control.create_account(transactions=120)["id"]
    refused = control.create_account(transactions=5, permissions=["balances"])["id"]

    # `fcsync run`: worker, beat and receiver as real processes on the password-protected Redis.
    port = free_port()
    run = children.spawn("run", [FCSYNC, "run", "--concurrency", "1", "--port", str(port)], env=env)
    run_log = tmp_path / "run.log"

    def ready() -> bool:
        response = None
        with contextlib.suppress(requests.ConnectionError):
            response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        started = "ready." in run_log.read_text(errors="replace")
        return started and response is not None and response.status_code == 200

    wait_for(ready, timeout=40, what=f"fcsync run\n{children.logs()}")

    def stored() -> int:
        return len(workdir_rows(secret_postgres_url, account))

    # Track (through the broker): the worker subscribes, polls the refresh and syncs.
    cli.run("track", account)
    wait_for(lambda: stored() == 120, timeout=30, what=f"the first sync\n{children.logs()}")
    # A signed webhook for the account, handled by the worker.
    events = requests.get(
        f"{emulator.base_url}/v1/events",
        auth=(f"sk_test_{KEY_MARK}", ""),
        params={"limit": 100},
        timeout=5,
    ).json()["data"]
    event = next(e for e in events if e["data"]["object"].get("id") == account)
    payload = json.dumps(event).encode()
    response = requests.post(
        f"http://127.0.0.1:{port}/webhooks/stripe",
        data=payload,
        headers={
            "Stripe-Signature": signature_header(payload, f"whsec_{HOOK_MARK}"),
            "Content-Type": "application/json",
        },
        timeout=5,
    )
    assert response.status_code == 200, response.text
    forged = requests.post(
        f"http://127.0.0.1:{port}/webhooks/stripe",
        data=payload,
        headers={"Stripe-Signature": signature_header(payload, "whsec_not_ours")},
        timeout=5,
    )
    assert forged.status_code == 400

    def handled() -> bool:
        query = "SELECT processed_at FROM webhook_events WHERE id = :id"
        rows = sql(secret_postgres_url, query, id=event["id"])
        return bool(rows and rows[0][0] is not None)

    wait_for(handled, timeout=30, what=f"the webhook handled\n{children.logs()}")
    # A secret where an id belongs (a URL pasted by mistake): the worker's failure lines quote
    # the argument, masked.
    sender = Celery("fcsync-secrets-test", broker=f"{redis_base}/0")
    task_id = sender.send_task(
        "fcsync.sync_transactions", kwargs={"account_id": f"{redis_base}/0"}, queue="fcsync"
    ).id
    sender.close()
    wait_for(
        lambda: run_log.read_text(errors="replace").count(f"[{task_id}]") >= 2,
        timeout=30,
        what=f"the worker's answer to a bad argument\n{children.logs()}",
    )
    # The same jobs in the CLI's own process; stripe-python's request lines only at DEBUG.
    quiet = cli.run_all(
        cli.call("sync", account, "--inline", "--full", FCSYNC_LOG_LEVEL="INFO"),
        cli.call("track", refused, "--inline", expect=None),  # recorded: missing permission
    )[0]
    assert "Request to Stripe" not in quiet.stdout + quiet.stderr, quiet.stderr
    verbose = cli.run("refresh", account, "--inline", "--wait")
    assert "Request to Stripe" in verbose.stderr
    # Reports, and the error paths: a key Stripe refuses, a broker and a database down, a secret
    # given as an argument.
    closed = free_port()
    dead_redis = f"redis://:{REDIS_MARK}@127.0.0.1:{closed}"
    down = make_url(secret_postgres_url).set(port=closed).render_as_string(hide_password=False)
    status = cli.run_all(
        cli.call("status"),
        cli.call("status", "--json"),
        cli.call("refresh", account, "--inline", expect=3, STRIPE_API_KEY=WRONG_KEY),
        cli.call("track", account, expect=None, CELERY_BROKER_URL=f"{dead_redis}/0"),
        cli.call("status", expect=None, DATABASE_URL=down),
        cli.call("sync", f"{redis_base}/0", "--inline", expect=None),  # a URL where an id belongs
    )[1]
    assert {row["id"] for row in json.loads(status.stdout)} >= {account, refused}

    os.kill(run.pid, signal.SIGTERM)
    assert run.wait(timeout=30) == 0, children.logs()
    # With the worker gone, a message waits on the broker: its body is searched too.
    cli.run("sync", account)
    broker, messages = redis_dump(secret_redis)
    assert messages >= 1, broker

    problems = leaks("fcsync run and its children (worker, beat, receiver)", run_log.read_text())
    problems += leaks("files in the working folder", files_under(tmp_path))
    for command, printed in cli.outputs:
        problems += leaks(f"the output of {command}", printed)
    problems += leaks("the database", table_dump(secret_postgres_url))
    problems += leaks("the broker", broker)
    assert not problems, "\n".join(problems)
    # The masked forms are what a user sees instead, and the stack at INFO is not flooded.
    assert f"redis://:***@127.0.0.1:{secret_redis}/0" in run_log.read_text()
    assert "Request to Stripe" not in run_log.read_text()


def sql(url: str, query: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(query), params)]
    finally:
        engine.dispose()


def workdir_rows(url: str, account: str) -> list[tuple[Any, ...]]:
    try:
        return sql(url, "SELECT id FROM transactions WHERE account_id = :a", a=account)
    except Exception:  # not migrated yet
        return []
