"""The embedded broker's SQLite file is put in WAL mode, where a publish costs one fsync and the
worker's polling never blocks it; other brokers are left alone. Processes that start together on
one broker file do not fail on the tables and queue rows another of them created first."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection
from kombu.transport import sqlalchemy as sqla_transport
from sqlalchemy import event
from sqlalchemy.engine import Engine

from worker.embedded_broker import SharedFileChannel, write_ahead_log


def journal_mode(path: Path) -> str:
    with closing(sqlite3.connect(path)) as conn:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])


def test_embedded_broker_file_is_in_wal_mode_and_kombu_still_delivers(tmp_path: Path) -> None:
    path = tmp_path / "fcsync-broker.sqlite"
    url = f"sqla+sqlite:///{path}"
    write_ahead_log(url)
    assert journal_mode(path) == "wal"
    with Connection(url) as conn:
        queue = conn.SimpleQueue("fcsync")
        queue.put({"event_id": "evt_1"})
        assert queue.get(timeout=5).payload == {"event_id": "evt_1"}
        queue.close()
    assert journal_mode(path) == "wal"


def test_embedded_broker_wal_leaves_other_brokers_alone(tmp_path: Path) -> None:
    write_ahead_log("redis://127.0.0.1:6379/0")
    write_ahead_log("sqla+sqlite://")
    write_ahead_log(f"sqla+sqlite:///{tmp_path / 'no' / 'such' / 'dir.sqlite'}")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def shared_channel() -> Iterator[None]:
    """kombu's transport with fcsync's channel, as `embedded_broker.tune` leaves it; restored."""
    saved = sqla_transport.Transport.Channel
    sqla_transport.Transport.Channel = SharedFileChannel
    yield
    sqla_transport.Transport.Channel = saved


@contextmanager
def another_process_first(path: Path, statement_start: str, sql: str) -> Iterator[list[str]]:
    """Just before this process sends a statement starting with `statement_start`, another
    connection (as another process would) runs `sql` and commits: the race of two processes
    starting on one broker file, made certain."""
    raced: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().startswith(statement_start) and not raced:
            raced.append(statement)
            with closing(sqlite3.connect(path)) as other:
                other.executescript(sql)

    event.listen(Engine, "before_cursor_execute", before)
    try:
        yield raced
    finally:
        event.remove(Engine, "before_cursor_execute", before)


def kombu_schema(tmp_path: Path) -> str:
    """kombu's own tables, as its first connection creates them, in a scratch file."""
    scratch = tmp_path / "scratch.sqlite"
    with Connection(f"sqla+sqlite:///{scratch}") as conn:
        conn.SimpleQueue("scratch").close()
    with closing(sqlite3.connect(scratch)) as db:
        rows = db.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
    return ";\n".join(row[0] for row in rows) + ";"


@pytest.mark.usefixtures("shared_channel")
def test_a_queue_another_process_created_meanwhile_is_used_not_refused(tmp_path: Path) -> None:
    path = tmp_path / "fcsync-broker.sqlite"
    url = f"sqla+sqlite:///{path}"
    with Connection(url) as conn:
        conn.SimpleQueue("other").close()  # kombu's tables exist; the fcsync queue does not
        with another_process_first(
            path, "INSERT INTO kombu_queue", "INSERT INTO kombu_queue (name) VALUES ('fcsync');"
        ) as raced:
            queue = conn.SimpleQueue("fcsync")
            queue.put({"event_id": "evt_1"})
        assert raced, "the race was not staged"
        assert queue.get(timeout=5).payload == {"event_id": "evt_1"}
        queue.close()
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT count(*) FROM kombu_queue WHERE name = 'fcsync'").fetchone()
    assert rows == (1,)


@pytest.mark.usefixtures("shared_channel")
def test_tables_another_process_created_meanwhile_are_used_not_refused(tmp_path: Path) -> None:
    path = tmp_path / "fcsync-broker.sqlite"
    schema = kombu_schema(tmp_path)
    with (
        another_process_first(path, "CREATE TABLE kombu_queue", schema) as raced,
        Connection(f"sqla+sqlite:///{path}") as conn,
    ):
        queue = conn.SimpleQueue("fcsync")
        queue.put({"event_id": "evt_2"})
        assert queue.get(timeout=5).payload == {"event_id": "evt_2"}
        queue.close()
    assert raced, "the race was not staged"
