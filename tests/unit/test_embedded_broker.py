"""The embedded broker's SQLite file is put in WAL mode, where a publish costs one fsync and the
worker's polling never blocks it; other brokers are left alone."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from kombu import Connection

from worker.app import write_ahead_log


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
