"""Stripe's JSON answers checked against its API reference before anything is read from them:
transaction list pages, transactions and accounts. Unknown fields and new enum values pass;
a missing field, a wrong type or a value fcsync cannot store raises `InvalidStripeResponse`."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any, NoReturn, TypeGuard, cast

from worker.errors import PermanentError
from worker.records import (
    ActiveStatusDetails,
    EventPage,
    FCAccount,
    FCTransaction,
    TransactionPage,
    TransactionRefreshState,
)

# The widths of fcsync's columns (models/): a longer value is no Stripe id or enum we know, and
# PostgreSQL would refuse it halfway through a page.
ID_WIDTH = 64
ENUM_WIDTH = 16
# status_details' open enums (`institution_requirement` is 23 characters; room for new ones).
DETAIL_WIDTH = 64
CURRENCY_WIDTH = 8
LAST4_WIDTH = 8
NAME_WIDTH = 255
# Timestamps and amounts live in BIGINT columns.
INT64 = range(-(2**63), 2**63)
# Enough of a bad value to recognise it in `last_error_message` without storing a huge body.
SHOWN_CHARS = 60


class InvalidStripeResponse(PermanentError, ValueError):
    """An answer that breaks Stripe's contract (wrong shape, another account, paging that does
    not advance). Also a ValueError, so parsers that reject bad input by ValueError reject it."""

    def __init__(self, message: str, *, code: str = "invalid_stripe_response") -> None:
        super().__init__(f"invalid Stripe answer: {message}", code=code)


def _shown(value: object) -> str:
    """A bad value for an error message: JSON-escaped (a NUL could not even be recorded) and cut."""
    if value is None:
        return "null"
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}.get(
        type(value), "object"
    )
    text = json.dumps(value, default=repr)
    return f"{kind} {text[:SHOWN_CHARS]}{'...' if len(text) > SHOWN_CHARS else ''}"


def _name(obj: object, fallback: str) -> str:
    """The object's id for error messages, if it is one that can be shown as is."""
    raw_id = obj.get("id") if isinstance(obj, Mapping) else None
    if isinstance(raw_id, str) and len(raw_id) <= ID_WIDTH and raw_id.isprintable():
        return raw_id
    return fallback


class _Fields:
    """Typed reads of one JSON object; every failure names the object and the field."""

    def __init__(self, obj: object, what: str) -> None:
        if not isinstance(obj, Mapping):
            raise InvalidStripeResponse(f"{what} must be a JSON object, got {_shown(obj)}")
        self.obj: Mapping[str, Any] = obj
        self.what = what

    def fail(self, key: str, problem: str) -> NoReturn:
        raise InvalidStripeResponse(f"{self.what}: `{key}` {problem}")

    def present(self, key: str) -> bool:
        return self.obj.get(key) is not None

    def text(self, key: str, *, width: int | None = None, prefix: str = "") -> str:
        value = self.obj.get(key)
        if not isinstance(value, str):
            self.fail(key, f"must be a string, got {_shown(value)}")
        if not _storable(value):
            self.fail(key, f"is not valid text: {_shown(value)}")
        if width is not None and len(value) > width:
            self.fail(key, f"is longer than {width} characters: {_shown(value)}")
        if prefix and (not value.startswith(prefix) or value == prefix):
            self.fail(key, f"must be an id starting with {prefix}, got {_shown(value)}")
        return value

    def optional_text(self, key: str, *, width: int | None = None) -> str | None:
        return self.text(key, width=width) if self.present(key) else None

    def integer(self, key: str) -> int:
        value = self.obj.get(key)
        # bool is an int to Python but not to JSON; a float would be truncated by int().
        if type(value) is not int:
            self.fail(key, f"must be an integer, got {_shown(value)}")
        if value not in INT64:
            self.fail(key, f"is outside the 64-bit range: {_shown(value)}")
        return value

    def optional_integer(self, key: str) -> int | None:
        return self.integer(key) if self.present(key) else None

    def flag(self, key: str) -> bool:
        value = self.obj.get(key)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {_shown(value)}")
        return value

    def optional_flag(self, key: str, default: bool) -> bool:
        return self.flag(key) if self.present(key) else default

    def strings(self, key: str) -> tuple[str, ...]:
        """A nullable array of enum strings (`permissions`, `subscriptions`)."""
        value = self.obj.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail(key, f"must be an array of strings, got {_shown(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str) or len(item) > ENUM_WIDTH or not _storable(item):
                self.fail(key, f"item {i} must be a short string, got {_shown(item)}")
        return tuple(value)

    def literal(self, key: str, expected: str, *, required: bool = True) -> None:
        value = self.obj.get(key)
        if value != expected and (required or value is not None):
            self.fail(key, f"must be {expected!r}, got {_shown(value)}")


def _storable(value: str) -> bool:
    """No NUL (PostgreSQL text refuses it) and no lone surrogate (not encodable as UTF-8)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_transaction(obj: object, *, position: int = 0) -> FCTransaction:
    name = _name(obj, f"#{position}")
    row = _Fields(obj, f"transaction {name}")
    txn_id = row.text("id", width=ID_WIDTH, prefix="fctxn_")
    row.literal("object", "financial_connections.transaction")
    transitions = _Fields(
        row.obj.get("status_transitions"), f"transaction {name} status_transitions"
    )
    return FCTransaction(
        id=txn_id,
        account=row.text("account", width=ID_WIDTH, prefix="fca_"),
        amount=row.integer("amount"),
        currency=row.text("currency", width=CURRENCY_WIDTH),
        description=row.text("description"),
        status=row.text("status", width=ENUM_WIDTH),
        posted_at=transitions.optional_integer("posted_at"),
        void_at=transitions.optional_integer("void_at"),
        transacted_at=row.integer("transacted_at"),
        transaction_refresh=row.text("transaction_refresh", width=ID_WIDTH),
        updated=row.integer("updated"),
        livemode=row.flag("livemode"),
    )


_INT64_MIN, _INT64_MAX = INT64.start, INT64.stop - 1


def _is_int64(value: object) -> TypeGuard[int]:
    return type(value) is int and _INT64_MIN <= value <= _INT64_MAX


def _is_text(value: object, width: int) -> TypeGuard[str]:
    return type(value) is str and len(value) <= width


def _valid_row(obj: object) -> FCTransaction | None:
    """The transaction when it passes every check of `parse_transaction` but the text one
    (`_storable`, done once a page), else None: the checks of the common case in one pass,
    without building error context (a sync validates every row it reads)."""
    # A JSON object is a dict (orjson) or an OrderedDict (the SDK's parse).
    if not isinstance(obj, dict):
        return None
    get = obj.get
    txn_id, account, currency = get("id"), get("account"), get("currency")
    status, ref, description = get("status"), get("transaction_refresh"), get("description")
    amount, transacted_at, updated = get("amount"), get("transacted_at"), get("updated")
    livemode, transitions = get("livemode"), get("status_transitions")
    if not isinstance(transitions, dict):
        return None
    posted_at, void_at = transitions.get("posted_at"), transitions.get("void_at")
    if not (
        _is_text(txn_id, ID_WIDTH)
        and txn_id.startswith("fctxn_")
        and txn_id != "fctxn_"
        and get("object") == "financial_connections.transaction"
        and _is_text(account, ID_WIDTH)
        and account.startswith("fca_")
        and account != "fca_"
        and _is_int64(amount)
        and _is_text(currency, CURRENCY_WIDTH)
        and type(description) is str
        and _is_text(status, ENUM_WIDTH)
        and (posted_at is None or _is_int64(posted_at))
        and (void_at is None or _is_int64(void_at))
        and _is_int64(transacted_at)
        and _is_text(ref, ID_WIDTH)
        and _is_int64(updated)
        and type(livemode) is bool
    ):
        return None
    return FCTransaction(
        txn_id,
        account,
        amount,
        currency,
        description,
        status,
        posted_at,
        void_at,
        transacted_at,
        ref,
        updated,
        livemode,
    )


def _parse_rows(data: list[Any]) -> tuple[FCTransaction, ...]:
    """Every row of a page checked; any row the fast checks doubt goes through
    `parse_transaction`, which raises with the object and field that is wrong."""
    rows = tuple(map(_valid_row, data))
    if None not in rows:
        text = "".join(
            t.id + t.account + t.currency + t.description + t.status + t.transaction_refresh
            for t in rows
            if t is not None
        )
        # One check for the page's text: a NUL or lone surrogate in any string is in their join.
        if _storable(text):
            return cast(tuple[FCTransaction, ...], rows)
    return tuple(parse_transaction(obj, position=i) for i, obj in enumerate(data))


def parse_transactions_page(body: object) -> TransactionPage:
    """One answer of GET /v1/financial_connections/transactions, checked whole before use."""
    page, data, has_more = _list_answer(body, "transactions list")
    rows = _parse_rows(data)
    _check_listed_ids(page, [t.id for t in rows], has_more, "transaction", "rows")
    return TransactionPage(transactions=rows, has_more=has_more)


def _list_answer(body: object, what: str) -> tuple[_Fields, list[Any], bool]:
    """A list object's `data` and `has_more`, checked."""
    page = _Fields(body, what)
    page.literal("object", "list")
    data = page.obj.get("data")
    if not isinstance(data, list):
        page.fail("data", f"must be an array, got {_shown(data)}")
    return page, data, page.flag("has_more")


def _check_listed_ids(page: _Fields, ids: list[str], has_more: bool, item: str, items: str) -> None:
    """Paging can go on: no id twice, and more only after a page that has an item to page from."""
    if len(set(ids)) != len(ids):
        page.fail("data", f"holds the same {item} twice")
    if has_more and not ids:
        page.fail("has_more", f"is true on an empty page: the list would end without its {items}")


def parse_events_page(body: object) -> EventPage:
    """One answer of GET /v1/events: a list of objects with string ids that pages on. Each
    event's own envelope is checked where every event is, on its way into the inbox."""
    page, data, has_more = _list_answer(body, "events list")
    ids = [
        _Fields(obj, f"event {i} of the list").text("id", prefix="evt_")
        for i, obj in enumerate(data)
    ]
    _check_listed_ids(page, ids, has_more, "event", "events")
    return EventPage(
        bodies=tuple(json.dumps(obj) for obj in data),
        last_id=ids[-1] if ids else None,
        has_more=has_more,
    )


def check_page_for_sync(
    page: TransactionPage,
    account_id: str,
    *,
    starting_after: str | None,
    seen_last_ids: Collection[str] = (),
) -> None:
    """What only the sync can know: the rows are the synced account's, and paging advances
    (a page that ends where an earlier one did would be fetched forever)."""
    for t in page.transactions:
        if t.account != account_id:
            raise InvalidStripeResponse(
                f"transaction {t.id} of account {t.account} in the list of {account_id}"
            )
    if not page.has_more:
        return
    ids = {t.id for t in page.transactions}
    if page.last_id == starting_after or page.last_id in seen_last_ids or starting_after in ids:
        raise InvalidStripeResponse(
            f"transactions list of {account_id} does not advance: has_more is true but the page "
            f"after {starting_after} ends at {page.last_id} again"
        )


def parse_account(obj: object) -> FCAccount:
    """A financial_connections.account: the fields fcsync decides by are checked strictly,
    descriptive ones only when present (event payloads may be rendered at older versions)."""
    name = _name(obj, "?")
    data = _Fields(obj, f"account {name}")
    account_id = data.text("id", width=ID_WIDTH, prefix="fca_")
    data.literal("object", "financial_connections.account", required=False)
    holder_obj = data.obj.get("account_holder")
    holder = _Fields({} if holder_obj is None else holder_obj, f"account {name} account_holder")
    customer: object = holder.obj.get("customer")
    if isinstance(customer, Mapping):
        customer = _Fields(customer, f"account {name} customer").text("id", width=NAME_WIDTH)
    elif customer is not None:
        customer = holder.text("customer", width=NAME_WIDTH)
    refresh = data.obj.get("transaction_refresh")
    return FCAccount(
        id=account_id,
        livemode=data.optional_flag("livemode", False),
        institution_name=data.optional_text("institution_name", width=NAME_WIDTH) or "",
        display_name=data.optional_text("display_name", width=NAME_WIDTH),
        last4=data.optional_text("last4", width=LAST4_WIDTH),
        category=data.optional_text("category", width=ENUM_WIDTH) or "other",
        subcategory=data.optional_text("subcategory", width=ENUM_WIDTH) or "other",
        status=data.text("status", width=ENUM_WIDTH),
        permissions=data.strings("permissions"),
        subscriptions=data.strings("subscriptions"),
        customer=customer if isinstance(customer, str) else None,
        created=data.optional_integer("created"),
        transaction_refresh=None if refresh is None else _refresh_state(refresh, name),
        status_details_active=_active_details(data.obj.get("status_details"), name),
        account_number_expiry=_number_expiry(data.obj.get("account_numbers"), name),
    )


def _active_details(obj: object, account_name: str) -> ActiveStatusDetails | None:
    """`status_details.active`, absent at versions before 2026-06-24 and for inactive accounts;
    its action and cause are kept as Stripe words them (new values included)."""
    details = _Fields({} if obj is None else obj, f"account {account_name} status_details")
    if not details.present("active"):
        return None
    active = _Fields(details.obj["active"], f"account {account_name} status_details.active")
    return ActiveStatusDetails(
        action=active.text("action", width=DETAIL_WIDTH),
        cause=active.optional_text("cause", width=DETAIL_WIDTH),
        expected_deactivation_date=active.optional_integer("expected_deactivation_date"),
    )


def _number_expiry(obj: object, account_name: str) -> int | None:
    if obj is None:
        return None
    if not isinstance(obj, list):
        raise InvalidStripeResponse(f"account {account_name}: `account_numbers` must be an array")
    what = f"account {account_name} account_numbers"
    dates = [_Fields(n, what).optional_integer("expected_expiry_date") for n in obj]
    return min((d for d in dates if d is not None), default=None)


def _refresh_state(obj: object, account_name: str) -> TransactionRefreshState:
    refresh = _Fields(obj, f"account {account_name} transaction_refresh")
    return TransactionRefreshState(
        id=refresh.text("id", width=ID_WIDTH),
        status=refresh.text("status", width=ENUM_WIDTH),
        last_attempted_at=refresh.integer("last_attempted_at"),
        next_refresh_available_at=refresh.optional_integer("next_refresh_available_at"),
    )


def parse_account_answer(obj: object, account_id: str) -> FCAccount:
    """An account Stripe returned for a call about `account_id`: it must be that account."""
    account = parse_account(obj)
    if account.id != account_id:
        raise InvalidStripeResponse(f"asked about account {account_id}, got account {account.id}")
    return account
