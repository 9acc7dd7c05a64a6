"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file, made fit for the several
processes (worker, beat, receiver, CLI) that share it."""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from typing import Any

from kombu.transport import sqlalchemy as sqla_transport
from sqlalchemy import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

log = logging.getLogger(__name__)


class SharedFileChannel(sqla_transport.Channel):
    """kombu creates its tables and each queue's row by checking first and creating second,
    guarded by a lock of one process only. Two processes starting together (a worker and the
    receiver, say) both see nothing and both create: the loser's CREATE TABLE or INSERT fails
    and takes its connection down. What the loser wanted exists by then, so read it again."""

    def _open(self) -> Any:
        try:
            return super()._open()
        except OperationalError as exc:
            if "already exists" not in str(exc):
                raise
            # Another process created kombu's tables between this one's check and its CREATE;
            # nothing was cached, and a second look finds them.
            return super()._open()

    def _get_or_create(self, queue: str) -> Any:
        try:
            return super()._get_or_create(queue)  # type: ignore[misc]  # untyped in the stubs
        except IntegrityError:
            # Another process inserted the queue's row between this one's SELECT and INSERT.
            self.session.rollback()
            return super()._get_or_create(queue)  # type: ignore[misc]  # untyped in the stubs


def tune(broker_url: str, polling_interval_s: float) -> None:
    """Make kombu's SQLAlchemy transport fit for an embedded broker shared by processes.

    kombu polls its tables once a second when idle, which caps a worker at a task or two per
    second. Its `polling_interval` cannot be given as a transport option (the transport hands
    every option to create_engine()), so it is set on the class, as is the channel."""
    sqla_transport.Transport.polling_interval = polling_interval_s
    share_broker_files()
    write_ahead_log(broker_url)


def share_broker_files() -> None:
    """This process's SQLAlchemy-transport connections tolerate other processes starting on the
    same broker file (any process that sends to a worker it may be starting beside)."""
    sqla_transport.Transport.Channel = SharedFileChannel


def write_ahead_log(broker_url: str) -> None:
    """Put an embedded broker's SQLite file in WAL mode (the file keeps it: kombu's own
    connections open it so). In the default rollback-journal mode every publish cost several
    fsyncs and waited for the worker's polling reads; in WAL it is one fsync, and readers never
    block it: the webhook receiver enqueues about twice as fast. A file that cannot be opened
    is left to kombu, which says so when it uses it."""
    url = make_url(broker_url.removeprefix("sqla+"))
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    try:
        with closing(sqlite3.connect(url.database, timeout=30)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:
        log.warning("embedded broker %s left in its journal mode: %s", url.database, exc)
