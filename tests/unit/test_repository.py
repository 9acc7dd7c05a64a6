"""Repository on real SQLite and PostgreSQL: idempotent upserts, newest wins, forward cursor."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from models import Account, Transaction, WebhookEvent
from worker import due_accounts, inbox, page_store, refresh_store, repository, sync_store
from worker.records import FCAccount, FCTransaction, TransactionRefreshState

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def fc_account(account_id: str = "fca_1", **kw: object) -> FCAccount:
    base = FCAccount(
        id=account_id,
        livemode=False,
        institution_name="Bank",
        display_name="Checking",
        last4="6789",
        category="cash",
        subcategory="checking",
        status="active",
        permissions=("transactions",),
        subscriptions=(),
        customer="cus_1",
        created=1,
        transaction_refresh=None,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def txn(
    txn_id: str = "fctxn_1", *, updated: int = 100, status: str = "pending", account: str = "fca_1"
) -> FCTransaction:
    return FCTransaction(
        id=txn_id,
        account=account,
        amount=-1250,
        currency="usd",
        description="Coffee",
        status=status,
        posted_at=updated if status == "posted" else None,
        void_at=None,
        transacted_at=50,
        transaction_refresh=f"fctxnref_{updated}",
        updated=updated,
        livemode=False,
    )


def stored(session: Session, txn_id: str) -> Transaction:
    session.expire_all()
    row = session.get(Transaction, txn_id)
    assert row is not None
    return row


def test_repository_upsert_twice_gives_one_row(session: Session) -> None:
    repository.save_account(session, fc_account(), now=NOW)
    assert page_store.upsert_transactions(session, [txn()], now=NOW) == (1, 0)
    assert page_store.upsert_transactions(session, [txn()], now=NOW) == (0, 0)
    count = session.scalar(select(func.count()).select_from(Transaction))
    assert count == 1


def test_repository_pending_to_posted_updates_in_place(session: Session) -> None:
    repository.save_account(session, fc_account(), now=NOW)
    page_store.upsert_transactions(session, [txn(updated=100)], now=NOW)
    assert page_store.upsert_transactions(
        session, [txn(updated=200, status="posted")], now=NOW + timedelta(hours=1)
    ) == (0, 1)
    row = stored(session, "fctxn_1")
    assert (row.status, row.updated, row.posted_at) == ("posted", 200, 200)
    assert row.first_seen_at == NOW
    assert row.last_seen_at == NOW + timedelta(hours=1)


def test_repository_older_updated_never_overwrites_newer(session: Session) -> None:
    repository.save_account(session, fc_account(), now=NOW)
    page_store.upsert_transactions(session, [txn(updated=200, status="posted")], now=NOW)
    page_store.upsert_transactions(session, [txn(updated=100, status="pending")], now=NOW)
    row = stored(session, "fctxn_1")
    assert (row.status, row.updated) == ("posted", 200)


def test_repository_cursor_never_moves_backwards(session: Session) -> None:
    repository.save_account(session, fc_account(), now=NOW)
    assert sync_store.advance_cursor(session, "fca_1", "fctxnref_b", 200)
    assert not sync_store.advance_cursor(session, "fca_1", "fctxnref_a", 100)
    session.expire_all()
    account = session.get(Account, "fca_1")
    assert account is not None
    assert (account.cursor_refresh_id, account.cursor_refresh_at) == ("fctxnref_b", 200)
    assert sync_store.advance_cursor(session, "fca_1", "fctxnref_c", 300)


def test_repository_sync_lease_is_exclusive_until_it_expires(session: Session) -> None:
    repository.save_account(session, fc_account(), now=NOW)
    assert sync_store.acquire_sync_lease(session, "fca_1", "w1", now=NOW, lease_s=60)
    assert not sync_store.acquire_sync_lease(session, "fca_1", "w2", now=NOW, lease_s=60)
    assert sync_store.acquire_sync_lease(session, "fca_1", "w1", now=NOW, lease_s=60)
    later = NOW + timedelta(seconds=61)
    assert sync_store.acquire_sync_lease(session, "fca_1", "w2", now=later, lease_s=60)


def test_repository_apply_refresh_ignores_older_observations(session: Session) -> None:
    account = repository.save_account(session, fc_account(), now=NOW)
    new = TransactionRefreshState("fctxnref_2", "pending", 200, None)
    old = TransactionRefreshState("fctxnref_1", "succeeded", 100, 160)
    assert refresh_store.apply_refresh(account, new)
    assert not refresh_store.apply_refresh(account, old)
    assert account.refresh_id == "fctxnref_2"
    done = TransactionRefreshState("fctxnref_2", "succeeded", 200, 260)
    assert refresh_store.apply_refresh(account, done)
    assert not refresh_store.apply_refresh(account, new)
    assert account.refresh_status == "succeeded"


def test_repository_due_accounts_respect_next_refresh_available_at(session: Session) -> None:
    now_ts = int(NOW.timestamp())
    a = repository.save_account(session, fc_account("fca_due"), now=NOW)
    a.next_due_at = NOW - timedelta(minutes=1)
    b = repository.save_account(session, fc_account("fca_cool"), now=NOW)
    b.next_due_at = NOW - timedelta(minutes=1)
    refresh_store.apply_refresh(
        b, TransactionRefreshState("fctxnref_b", "succeeded", now_ts - 10, now_ts + 600)
    )
    c = repository.save_account(session, fc_account("fca_pending"), now=NOW)
    refresh_store.apply_refresh(c, TransactionRefreshState("fctxnref_c", "pending", now_ts, None))
    d = repository.save_account(session, fc_account("fca_later"), now=NOW)
    d.next_due_at = NOW + timedelta(hours=1)
    e = repository.save_account(session, fc_account("fca_inactive", status="inactive"), now=NOW)
    e.next_due_at = None
    session.flush()
    assert due_accounts.due_account_ids(session, now=NOW, limit=10) == ["fca_due"]


def test_repository_record_error_stores_no_secret(session: Session) -> None:
    account = repository.save_account(session, fc_account(), now=NOW)
    message = "Cannot connect to redis://:SuperSecretPw@10.0.0.1:6379/0 with sk_live_abcdef123456"
    repository.record_error(account, "broker_down", message, now=NOW)
    session.flush()
    session.expire_all()
    stored_message = session.get(Account, "fca_1").last_error_message  # type: ignore[union-attr]
    assert stored_message == "Cannot connect to redis://:***@10.0.0.1:6379/0 with sk_***"


def test_repository_record_event_error_stores_no_secret() -> None:
    row = WebhookEvent(id="evt_1", type="financial_connections.account.created")
    inbox.record_event_error(row, "bad", "signed with whsec_abcdef123456 for postgres://u:pw@h/db")
    assert row.error == "[bad] signed with whsec_*** for postgres://u:***@h/db"


def test_repository_claimed_due_accounts_are_not_claimed_again_until_the_claim_runs_out(
    session: Session,
) -> None:
    for n in range(5):
        repository.save_account(session, fc_account(f"fca_{n}"), now=NOW)
    until = NOW + timedelta(minutes=15)

    # A backlog in batches of two: each sweep claims accounts no earlier sweep claimed.
    batches = [
        due_accounts.claim_due_account_ids(session, now=NOW, until=until, limit=2) for _ in range(4)
    ]
    assert [len(b) for b in batches] == [2, 2, 1, 0]
    assert sorted(a for b in batches for a in b) == [f"fca_{n}" for n in range(5)]
    session.expire_all()
    assert {a.next_due_at for a in session.scalars(select(Account))} == {until}

    # Still claimed a second before the claim runs out; every one due again once it has.
    early = until - timedelta(seconds=1)
    assert due_accounts.claim_due_account_ids(session, now=early, until=early, limit=10) == []
    again = due_accounts.claim_due_account_ids(session, now=until, until=until, limit=10)
    assert sorted(again) == [f"fca_{n}" for n in range(5)]


def test_repository_upsert_counts_come_from_the_statement_itself(session: Session) -> None:
    # Rows new to the table, rows a newer version replaced, and replayed or older rows (neither),
    # mixed in one page, with stored rows inserted after the ones the page updates.
    repository.save_account(session, fc_account(), now=NOW)
    page_store.upsert_transactions(
        session, [txn(f"fctxn_{i}", updated=100) for i in range(6)], now=NOW
    )
    page = [
        txn("fctxn_0", updated=200, status="posted"),  # newer: updated
        txn("fctxn_1", updated=100),  # replay: neither
        txn("fctxn_2", updated=50),  # older: neither
        txn("fctxn_a", updated=100),  # new
        txn("fctxn_5", updated=300, status="posted"),  # newer: updated
        txn("fctxn_b", updated=100),  # new
        txn("fctxn_c", updated=400),  # new
    ]
    later = NOW + timedelta(hours=1)
    executed: list[str] = []
    connection = session.connection()
    listen = event.listens_for(connection, "before_cursor_execute")
    listen(lambda conn, cursor, statement, *rest: executed.append(statement))
    assert page_store.upsert_transactions(session, page, now=later) == (3, 2)
    # One upsert for the page, never a SELECT of the stored rows first.
    assert sum(s.lstrip().upper().startswith("INSERT") for s in executed) == 1
    assert not any("FROM transactions WHERE" in " ".join(s.split()) for s in executed)
    assert (stored(session, "fctxn_0").status, stored(session, "fctxn_0").updated) == (
        "posted",
        200,
    )
    assert stored(session, "fctxn_2").updated == 100
    replayed = stored(session, "fctxn_1")
    assert (replayed.first_seen_at, replayed.last_seen_at) == (NOW, NOW)
