"""How a sync's pages of transactions reach the transactions table: one cached statement per
dialect that upserts a whole commit's pages, keyed by Stripe id, newest `updated` winning (a
reconciliation's also repairs a stored row that differs from Stripe's at the same `updated`).
Accounts, refreshes, a sync's cursor and lease have their own modules (worker/repository.py
and its neighbours); never commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any, cast

import orjson
from sqlalchemy import (
    Table,
    and_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.orm import Session

from models import Transaction
from worker.json_rows import insert_rows
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
_KEY_COLUMN = "stripe_key"


@cache
def _upsert(dialect: str, repair: bool = False) -> Any:
    """The page upsert, built once per dialect: SQLAlchemy compiles it once (its cache is keyed
    by the statement's structure) and runs it once per page, one round trip.

    The page travels as one parameter, a JSON array of rows (worker/json_rows.py; orjson's
    dump of the page's tuples: a fifth of `json.dumps`'s CPU): two parameters whatever the
    page size, so the statement is prepared once.

    The conflict guard keeps the newest version: a stored row changes only when the incoming
    `updated` is newer, so a replayed or reordered page writes nothing and what the statement
    returns is exactly what it inserted or changed. Each returned row says which: PostgreSQL's
    `xmax` is 0 for a row this statement inserted; on SQLite an inserted row gets a rowid above
    every rowid the table held before (see `upsert_transactions`).

    `repair` (a reconciliation): a stored row at the same `updated` as Stripe's that differs
    from it (a lost or corrupted write), or that was marked vanished, is rewritten too; a newer
    stored row still wins. Any rewrite clears `vanished_at`: Stripe lists the row again."""
    table = _TRANSACTIONS
    now = bindparam("now", type_=table.c.first_seen_at.type)
    stmt = insert_rows(
        dialect,
        table,
        _PAGE_COLUMNS,
        {
            # The page's Stripe account context and key: one value for the whole page, like `now`.
            _CONTEXT_COLUMN: bindparam(_CONTEXT_COLUMN, type_=table.c.stripe_account.type),
            _KEY_COLUMN: bindparam(_KEY_COLUMN, type_=table.c.stripe_key.type),
            "first_seen_at": now,
            "last_seen_at": now,
        },
    )
    newer = stmt.excluded.updated > table.c.updated
    if repair:
        differs = or_(
            table.c.vanished_at.is_not(None),
            *(table.c[name].is_distinct_from(stmt.excluded[name]) for name in _PAGE_COLUMNS[2:]),
        )
        newer = or_(newer, and_(stmt.excluded.updated == table.c.updated, differs))
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.id],
        set_={**{name: stmt.excluded[name] for name in _CHANGING}, "vanished_at": None},
        where=newer,
    )
    if dialect == "postgresql":
        return stmt.returning(literal_column("xmax = 0").label("inserted"))
    return stmt.returning(literal_column("rowid").label("rowid"))


def upsert_transactions(
    session: Session,
    transactions: Sequence[FCTransaction],
    *,
    now: datetime,
    stripe_account: str | None = None,
    repair: bool = False,
    stripe_key: str | None = None,
) -> tuple[int, int]:
    """Write one page in one statement. Returns (inserted, updated): rows new to the table and
    stored rows a newer version replaced (a replayed or older row counts as neither).
    `stripe_account`, `stripe_key`: the account's context and key name, stored on the rows
    this inserts. `repair`: also rewrite stored rows that differ at the same `updated` (see
    `_upsert`)."""
    if not transactions:
        return 0, 0
    dialect = session.get_bind().dialect.name
    # A transaction is its row (worker/records.py): the page is a JSON array of arrays. orjson
    # dumps no tuple subclass, so `default` hands each row over as its plain tuple; every text
    # was checked storable where the row was parsed, so none is a lone surrogate orjson refuses.
    params = {
        "rows": orjson.dumps(transactions, default=tuple).decode(),
        "now": now,
        _CONTEXT_COLUMN: stripe_account,
        _KEY_COLUMN: stripe_key,
    }
    if dialect == "postgresql":
        flags = session.execute(_upsert(dialect, repair), params).scalars().all()
        inserted = sum(1 for flag in flags if flag)
        return inserted, len(flags) - inserted
    # SQLite gives a new row the rowid after the largest one (the table is never near 2**63
    # rows): read in the same transaction, in-process, so it costs no round trip.
    before = (
        session.scalar(select(func.max(literal_column("rowid"))).select_from(_TRANSACTIONS)) or 0
    )
    rowids = session.execute(_upsert(dialect, repair), params).scalars().all()
    inserted = sum(1 for rowid in rowids if rowid > before)
    return inserted, len(rowids) - inserted


def upsert_pages(
    session: Session,
    pages: Sequence[Sequence[FCTransaction]],
    *,
    now: datetime,
    stripe_account: str | None = None,
    stripe_key: str | None = None,
) -> tuple[int, int]:
    """Write several pages (a sync's, in order) in one statement, or one a page when a
    transaction is on two of them (one statement may not change a row twice)."""
    rows = [t for page in pages for t in page]
    groups = [rows] if len({t.id for t in rows}) == len(rows) else pages
    counts = [
        upsert_transactions(
            session, group, now=now, stripe_account=stripe_account, stripe_key=stripe_key
        )
        for group in groups
    ]
    return sum(c[0] for c in counts), sum(c[1] for c in counts)
