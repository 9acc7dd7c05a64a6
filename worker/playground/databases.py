"""Throwaway PostgreSQL databases for tests and benchmarks: created empty on a server reached
through an admin URL, dropped (with their sessions) when done."""

from __future__ import annotations

import uuid

from sqlalchemy import create_engine, text


def create_postgres_database(admin_url: str, prefix: str) -> str:
    """A new, empty database named `<prefix>_<random>` on admin_url's server; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _admin(admin_url, f'CREATE DATABASE "{name}"')
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
