"""How a sync's pages of transactions reach the transactions table: one cached statement per
dialect that upserts a whole commit's pages, keyed by Stripe id, newest `updated` winning.
The rest of the database's reads and writes are in worker/repository.py; never commits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import String, Table, Text, bindparam, func, literal_column, select, true
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models import Transaction
from worker.records import FCTransaction

_TRANSACTIONS = cast(Table, Transaction.__table__)
# The columns a page sets, in the order of FCTransaction's fields; both seen-at columns are `now`.
_PAGE_COLUMNS = (
    "id",
    "account_id",
    "amount",
    "currency",
    "description",
    "status",
    "posted_at",
    "void_at",
    "transacted_at",
    "transaction_refresh",
    "updated",
    "livemode",
)
# What a newer version of a row rewrites (`id`, `account_id` and `first_seen_at` stay, and so
# does the row's context: a Stripe id never moves between contexts).
_CHANGING = (*_PAGE_COLUMNS[2:], "last_seen_at")
# Set once per page from the account's row (never from the page: Stripe's transaction object
# does not say which context answered).
_CONTEXT_COLUMN = "stripe_account"


@cache
def _upsert(dialect: str) -> Any:
    """The page upsert, built once per dialect: SQLAlchemy compiles it once (its cache is keyed
    by the statement's structure) and runs it once per page, one round trip.

    The page travels as one parameter, a JSON array of rows (`json.dumps` of the page's
    tuples, in C), which the database unpacks itself (`jsonb_array_elements` on PostgreSQL,
    `json_each` on SQLite): two parameters whatever the page size, so the statement is
    prepared once. Per-column arrays cost psycopg a Python loop over every value (with a
    quoting regex per string) and a SQLite executemany SQLAlchemy's processing of 1,400
    parameters: several times the database's own work on the page.

    The conflict guard keeps the newest version: a stored row changes only when the incoming
    `updated` is newer, so a replayed or reordered page writes nothing and what the statement
    returns is exactly what it inserted or changed. Each returned row says which: PostgreSQL's
    `xmax` is 0 for a row this statement inserted; on SQLite an inserted row gets a rowid above
    every rowid the table held before (see `upsert_transactions`)."""
    table = _TRANSACTIONS
    rows = bindparam("rows", type_=Text)
    if dialect == "postgresql":
        # jsonb: each row parsed once, not once per field read from it (a third faster).
        elements = func.jsonb_array_elements(sql_cast(rows, postgresql.JSONB)).table_valued("value")
        insert: Any = postgresql.insert
    else:
        elements = func.json_each(rows).table_valued("value")
        insert = sqlite.insert
    values = [
        _field(elements.c.value, i, table.c[name].type) for i, name in enumerate(_PAGE_COLUMNS)
    ]
    now = bindparam("now", type_=table.c.first_seen_at.type)
    # The page's Stripe account context: one value for the whole page, like `now`.
    context = bindparam(_CONTEXT_COLUMN, type_=table.c.stripe_account.type)
    # SQLite reads `ON CONFLICT` after a bare `SELECT ... FROM` as a join's: the WHERE ends it.
    page = select(*values, context, now, now).select_from(elements).where(true())
    stmt = insert(table).from_select(
        [*_PAGE_COLUMNS, _CONTEXT_COLUMN, "first_seen_at", "last_seen_at"], page
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.id],
        set_={name: stmt.excluded[name] for name in _CHANGING},
        where=stmt.excluded.updated > table.c.updated,
    )
    if dialect == "postgresql":
        return stmt.returning(literal_column("xmax = 0").label("inserted"))
    return stmt.returning(literal_column("rowid").label("rowid"))


def _field(row: Any, index: int, type_: Any) -> Any:
    """Item `index` of a page row (a JSON array) as the column's type; text stays text, so a
    value too long for its column fails the INSERT instead of being cut by a cast."""
    value = row.op("->>")(literal_column(str(index)))
    return value if isinstance(type_, String) else sql_cast(value, type_)


def upsert_transactions(
    session: Session,
    transactions: Sequence[FCTransaction],
    *,
    now: datetime,
    stripe_account: str | None = None,
) -> tuple[int, int]:
    """Write one page in one statement. Returns (inserted, updated): rows new to the table and
    stored rows a newer version replaced (a replayed or older row counts as neither).
    `stripe_account`: the account's context, stored on the rows this inserts."""
    if not transactions:
        return 0, 0
    dialect = session.get_bind().dialect.name
    # A transaction is its row (worker/records.py): the page is a JSON array of arrays.
    params = {"rows": json.dumps(transactions), "now": now, _CONTEXT_COLUMN: stripe_account}
    if dialect == "postgresql":
        flags = session.execute(_upsert(dialect), params).scalars().all()
        inserted = sum(1 for flag in flags if flag)
        return inserted, len(flags) - inserted
    # SQLite gives a new row the rowid after the largest one (the table is never near 2**63
    # rows): read in the same transaction, in-process, so it costs no round trip.
    before = (
        session.scalar(select(func.max(literal_column("rowid"))).select_from(_TRANSACTIONS)) or 0
    )
    rowids = session.execute(_upsert(dialect), params).scalars().all()
    inserted = sum(1 for rowid in rowids if rowid > before)
    return inserted, len(rowids) - inserted


def upsert_pages(
    session: Session,
    pages: Sequence[Sequence[FCTransaction]],
    *,
    now: datetime,
    stripe_account: str | None = None,
) -> tuple[int, int]:
    """Write several pages (a sync's, in order) in one statement, or one a page when a
    transaction is on two of them (one statement may not change a row twice)."""
    rows = [t for page in pages for t in page]
    if len({t.id for t in rows}) == len(rows):
        return upsert_transactions(session, rows, now=now, stripe_account=stripe_account)
    counts = [
        upsert_transactions(session, page, now=now, stripe_account=stripe_account) for page in pages
    ]
    return sum(c[0] for c in counts), sum(c[1] for c in counts)
