"""Shared fixtures: real databases (SQLite and PostgreSQL), Redis, the emulator.

A missing PostgreSQL, Redis or RabbitMQ skips its tests locally and fails them under CI=true."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

from models import Base
from worker import db
from worker.db import make_engine, upgrade_database
from worker.embedded_broker import share_broker_files
from worker.playground.databases import create_postgres_database, drop_postgres_database

PG_ADMIN_URL = os.environ.get(
    "FCSYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_TEST_URL = os.environ.get("FCSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# The machine's RabbitMQ: a stack on it gets a vhost of its own (tests/brokers.py).
RABBITMQ_TEST_URL = os.environ.get(
    "FCSYNC_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//"
)
IN_CI = os.environ.get("CI", "").lower() == "true"

# Tests send tasks on embedded brokers while the workers they started are still starting on them.
share_broker_files()


def unavailable(what: str, why: object) -> None:
    message = f"{what} is not reachable: {why}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: services are required)", pytrace=False)
    pytest.skip(message)


# Databases whose block has ended, dropped when the session finishes: PostgreSQL checkpoints
# on every DROP DATABASE (1-5 s on a busy machine), which each test would otherwise wait for;
# one after another at the end, all but the first find little left to write.
_finished_databases: list[str] = []


def create_database(prefix: str) -> str:
    """A fresh, empty, throwaway database on the local PostgreSQL; returns its URL."""
    return create_postgres_database(PG_ADMIN_URL, prefix, durable=False)


def drop_database(url: str) -> None:
    drop_postgres_database(PG_ADMIN_URL, url)


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database of its own for the block (skipped locally, a failure
    under CI=true, when PostgreSQL is not reachable); dropped when the session finishes."""
    try:
        url = create_database(prefix)
    except Exception as exc:
        unavailable("PostgreSQL", exc)
    try:
        yield url
    finally:
        _finished_databases.append(url)


def pytest_sessionfinish(session: pytest.Session) -> None:
    while _finished_databases:
        drop_database(_finished_databases.pop())


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway database on the local PostgreSQL, shared by the session's tests."""
    with fresh_database("fcsync_test") as url:
        yield url


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (a stack migrates it itself)."""
    with fresh_database("fcsync_e2e") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        unavailable("Redis", exc)
    return REDIS_TEST_URL


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("db") / "fcsync.db"
    return f"sqlite:///{path}"


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def migrated_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    upgrade_database(url)
    engine = make_engine(url)
    if request.param == "sqlite":
        _sqlite_real_transactions(engine)
    yield engine
    engine.dispose()


def _sqlite_real_transactions(engine: Engine) -> None:
    """pysqlite defers BEGIN until the first write, so the per-test outer transaction would
    not exist and savepoints would commit for real. Let SQLAlchemy emit BEGIN itself (the
    SQLAlchemy docs' recipe for SAVEPOINT on pysqlite); tests only."""

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")


@pytest.fixture
def session(migrated_engine: Engine) -> Iterator[Session]:
    """One transaction per test, rolled back at the end (savepoints for inner commits)."""
    with migrated_engine.connect() as conn:
        trans = conn.begin()
        sess = Session(bind=conn, join_transaction_mode="create_savepoint")
        try:
            yield sess
        finally:
            sess.close()
            trans.rollback()


@pytest.fixture
def migrated_sqlite(tmp_path: Path) -> str:
    """A migrated SQLite file: the receiver refuses to start on a database without the schema."""
    from worker.db import upgrade_database

    url = f"sqlite:///{tmp_path / 'fcsync.db'}"
    upgrade_database(url)
    return url


@pytest.fixture(scope="session")
def postgres_engine(postgres_url: str) -> Iterator[Engine]:
    db.upgrade_database(postgres_url)
    engine = db.make_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def committed_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database whose commits are real (task runs, concurrent sessions)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fcsync.db'}"
        db.upgrade_database(url)
        engine = db.make_engine(url)
        yield engine
        engine.dispose()
        return
    engine = request.getfixturevalue("postgres_engine")
    yield engine
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} CASCADE"))


# Longest first (LPT): `make test` hands whole files to its xdist workers in collection order
# (`--no-loadscope-reorder`), so a long file collected last would leave one worker idle while
# the other finishes it. These markers flag the files that start real processes, longest first.
LONGEST_FIRST = ("slow", "chaos", "integration")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def weight(item: pytest.Item) -> int:
        for rank, marker in enumerate(LONGEST_FIRST):
            if item.get_closest_marker(marker) is not None:
                return rank
        return len(LONGEST_FIRST)

    # A file's weight is its heaviest test's, so its tests stay together and in their order.
    by_file: dict[str, int] = {}
    for item in items:
        by_file[item.path.as_posix()] = min(by_file.get(item.path.as_posix(), 99), weight(item))
    items.sort(key=lambda item: by_file[item.path.as_posix()])
