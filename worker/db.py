"""Engine and session lifecycle: the edge that starts a unit of work owns its session."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from worker.errors import PermanentError
from worker.redaction import mask_url, redact
from worker.settings import get_settings

log = logging.getLogger(__name__)
# Alembic logs one INFO line per plugin on every command: nothing an operator acts on.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

_engines: dict[str, Engine] = {}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the webhook receiver, the worker and beat read while one of them writes;
    # busy_timeout turns short write contention into a wait instead of "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# Connections past the pool's size are opened for one checkout and closed after it: a process
# with more threads than that would pay a new session (and its pragmas) per unit of work.
DEFAULT_POOL_SIZE = 5
# A pooled PostgreSQL connection is replaced after this long, at checkout and without a round
# trip, before a server's or a firewall's idle timeout (often an hour) can cut it unseen.
POOL_RECYCLE_S = 1_800


def make_engine(url: str, *, pool_size: int = DEFAULT_POOL_SIZE, pre_ping: bool = True) -> Engine:
    """An engine whose pool holds `pool_size` connections (one per thread that uses it at once).

    `pre_ping` tests each PostgreSQL connection with a round trip at checkout, so a connection
    the server dropped is replaced before use. A task's unit of work (many statements, retried
    as a whole) is worth it; the webhook receiver's one-statement requests are not: a dead
    connection fails that request with a 503, which Stripe redelivers, and SQLAlchemy, told of
    the disconnect, replaces every connection of the pool opened before it."""
    if url.startswith("sqlite"):
        # An in-memory database lives in one connection per thread (SingletonThreadPool).
        in_memory = make_url(url).database in (None, "", ":memory:")
        pool = {} if in_memory else {"pool_size": pool_size, "max_overflow": 5}
        engine = create_engine(url, connect_args={"timeout": 30}, **pool)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        pool_pre_ping=pre_ping,
        pool_size=pool_size,
        max_overflow=5,
        pool_recycle=POOL_RECYCLE_S,
    )


def get_engine(url: str | None = None) -> Engine:
    url = url or get_settings().database_url
    if url not in _engines:
        _engines[url] = make_engine(url)
    return _engines[url]


def dispose_engines(*, close: bool = True) -> None:
    """After fork, drop the parent's pooled connections without closing them under it."""
    for engine in _engines.values():
        engine.dispose(close=close)
    if close:
        _engines.clear()


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    factory = sessionmaker(bind=engine or get_engine(), expire_on_commit=False)
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str | None = None) -> Any:
    """An Alembic config pointing at the packaged migrations and the given database."""
    from pathlib import Path

    from alembic.config import Config

    import migrations

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.set_main_option("sqlalchemy.url", (url or get_settings().database_url).replace("%", "%%"))
    return cfg


def upgrade_database(url: str | None = None, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade_database(url: str | None = None, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


class SchemaMissingError(PermanentError):
    """The database was never migrated: nothing fcsync does can work until it is."""

    def __init__(self, url: str) -> None:
        super().__init__(
            f"the database at {mask_url(url)} has no fcsync schema: run `fcsync db upgrade`",
            code="no_schema",
        )


# PostgreSQL's SQLSTATE for "relation does not exist" (psycopg's UndefinedTable).
_UNDEFINED_TABLE = "42P01"


def is_missing_table(exc: BaseException) -> bool:
    """Whether a database error says one of fcsync's tables does not exist."""
    if not isinstance(exc, DBAPIError):
        return False
    if getattr(exc.orig, "sqlstate", None) == _UNDEFINED_TABLE:
        return True
    return isinstance(exc, OperationalError) and str(exc.orig).startswith("no such table")


def require_schema(url: str | None = None, *, engine: Engine | None = None) -> None:
    """Refuse to start on a database that was never migrated (SchemaMissingError); checked
    through `engine` when given (the one the process will use), else the URL's.

    An unreachable database is only a warning here: the worker retries and the receiver's
    /healthz reports it, so a process may start before its database does."""
    if engine is None:
        engine = get_engine(url or get_settings().database_url)
    url = engine.url.render_as_string(hide_password=False)
    try:
        with engine.connect() as conn:
            migrated = inspect(conn).has_table("alembic_version") and (
                conn.execute(text("SELECT version_num FROM alembic_version")).first() is not None
            )
    except OperationalError as exc:
        log.warning(
            "cannot check the schema of the database at %s: %s",
            mask_url(url),
            redact(str(exc.orig)),
        )
        return
    if not migrated:
        raise SchemaMissingError(url)
