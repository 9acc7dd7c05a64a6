"""Throwaway PostgreSQL databases for tests and benchmarks: created empty on a server reached
through an admin URL, dropped (with their sessions) when done."""

from __future__ import annotations

import uuid

from sqlalchemy import create_engine, text


def create_postgres_database(admin_url: str, prefix: str, *, durable: bool = True) -> str:
    """A new, empty database named `<prefix>_<random>` on admin_url's server; returns its URL.
    `durable=False` (a test's throwaway database): its commits do not wait for the WAL to reach
    the disk, a few milliseconds each on a busy machine; a crash of the server could lose the
    last ones, never make them half-done. Benchmarks keep the default, what production has."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _admin(admin_url, f'CREATE DATABASE "{name}"')
    if not durable:
        _admin(admin_url, f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_postgres_database(admin_url: str, url: str) -> None:
    _admin(admin_url, f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def _admin(admin_url: str, statement: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(statement))
    finally:
        admin.dispose()
