"""Alembic migrations for fcsync's schema (SQLite and PostgreSQL)."""
