"""The control API's account routes: seed, tune, list, read and delete accounts, move them
through their lifecycle, read their ground truth and owners, drop a pending transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from werkzeug.routing import Rule

from emulator.accounts import MAX_TRANSACTIONS, Account
from emulator.bank import Bank
from emulator.control_requests import (
    TUNABLES,
    ControlRequestError,
    Handler,
    check_body,
    check_tunables,
    requested_account,
    requested_scope,
)
from emulator.ownership import check_balance, check_owners


def _create_account(bank: Bank, body: dict[str, Any], _: dict[str, str]) -> Any:
    check_body(
        body,
        {
            "transactions": (int,),
            "status": (str,),
            "permissions": (list,),
            "customer": (str,),
            "stripe_account": (str,),
            "platform": (str,),
            **TUNABLES,
        },
    )
    check_tunables(body)
    scope = requested_scope(bank, body)
    body = {k: v for k, v in body.items() if k not in ("stripe_account", "platform")}
    if not 0 <= body.get("transactions", 0) <= MAX_TRANSACTIONS:
        raise ControlRequestError(400, f"transactions must be between 0 and {MAX_TRANSACTIONS}")
    permissions = body.get("permissions")
    allowed = {"balances", "ownership", "payment_method", "transactions"}
    if permissions is not None and not set(permissions) <= allowed:
        raise ControlRequestError(400, f"permissions must be drawn from {sorted(allowed)}")
    return bank.create_account(scope=scope, **body).render()


def _update_account(bank: Bank, body: dict[str, Any], args: dict[str, str]) -> Any:
    account = requested_account(bank, args["account"])
    check_body(
        body,
        {
            "status": (str,),
            "fail_next_refreshes": (int,),
            "next_refresh_changes": (int,),
            "balance": (dict,),
            "owners": (list,),
            **TUNABLES,
        },
    )
    check_tunables(body)
    for key in ("fail_next_refreshes", "next_refresh_changes"):
        if body.get(key, 0) < 0:
            raise ControlRequestError(400, f"{key} must be >= 0")
    bank.tune_account(
        account,
        fail_next_refreshes=body.get("fail_next_refreshes"),
        next_refresh_changes=body.get("next_refresh_changes"),
        **{key: float(body[key]) for key in TUNABLES if key in body},
    )
    # What the next balance / ownership refresh reports (refreshes take it when they end).
    if "balance" in body:
        account.balance_shape = check_balance(body["balance"])
    if "owners" in body and account.ownerships is not None:
        account.ownerships.current = check_owners(body["owners"])
    if "status" in body:
        try:
            bank.set_status(account, body["status"])
        except ValueError as exc:
            raise ControlRequestError(400, str(exc)) from exc
    return account.render()


def _expect_deactivation(bank: Bank, body: dict[str, Any], args: dict[str, str]) -> Any:
    """`status_details.active` of an active account: Stripe expects it to become inactive at
    `expected_deactivation_date` (default: in 30 days), `cause` and `action` as Stripe names
    them (any string: Stripe may add values)."""
    account = requested_account(bank, args["account"])
    check_body(body, {"action": (str,), "cause": (str,), "expected_deactivation_date": (int,)})
    date = body.get("expected_deactivation_date", int(bank.now()) + 30 * 86_400)
    if date <= bank.now():
        raise ControlRequestError(400, "expected_deactivation_date must be in the future")
    bank.expect_deactivation(
        account,
        action=body.get("action", "relink_required"),
        cause=body.get("cause", "unspecified"),
        expected_deactivation_date=date,
    )
    return account.render()


def _lifecycle_step(step: Callable[[Bank, Account], None]) -> Handler:
    """A route that takes no body and moves the account one step (deactivate, relink,
    disconnect), answering with the account."""

    def handler(bank: Bank, body: dict[str, Any], args: dict[str, str]) -> Any:
        account = requested_account(bank, args["account"])
        check_body(body, {})
        step(bank, account)
        return account.render()

    return handler


def _account_numbers(bank: Bank, body: dict[str, Any], args: dict[str, str]) -> Any:
    account = requested_account(bank, args["account"])
    check_body(body, {"type": (str,), "expected_expiry_date": (int,)})
    if "type" not in body:
        raise ControlRequestError(400, "type is required")
    return bank.account_numbers_changed(account, body["type"], body.get("expected_expiry_date"))


def _list_accounts(bank: Bank, query: dict[str, Any], _: dict[str, str]) -> Any:
    """Every account, or those of one `platform` and/or `stripe_account` (empty: the
    platform's own)."""
    check_body(query, {"stripe_account": (str,), "platform": (str,)})
    bank.tick()
    accounts = bank.all_accounts()
    if "platform" in query:
        accounts = [a for a in accounts if a.scope.platform == query["platform"]]
    if "stripe_account" in query:
        wanted = query["stripe_account"] or None
        accounts = [a for a in accounts if a.scope.stripe_account == wanted]
    return [account.render() for account in accounts]


def _get_account(bank: Bank, _: dict[str, Any], args: dict[str, str]) -> Any:
    bank.tick()
    return requested_account(bank, args["account"]).render()


def _delete_account(bank: Bank, _: dict[str, Any], args: dict[str, str]) -> Any:
    bank.delete_account(requested_account(bank, args["account"]))
    return {"id": args["account"], "deleted": True}


def _transactions(bank: Bank, _: dict[str, Any], args: dict[str, str]) -> Any:
    return bank.ground_truth(requested_account(bank, args["account"]))


def _drop_transaction(bank: Bank, _: dict[str, Any], args: dict[str, str]) -> Any:
    """Stripe drops a pending transaction that never posts: no event, it just stops being
    listed (a posted or void one stays: 400)."""
    if bank.drop_transaction(args["transaction"]) is None:
        raise ControlRequestError(404, f"no such transaction: {args['transaction']}")
    return {"id": args["transaction"], "dropped": True}


def _owners(bank: Bank, _: dict[str, Any], args: dict[str, str]) -> Any:
    """The owners of the account's latest ownership, as the owners endpoint lists them."""
    account = requested_account(bank, args["account"])
    if account.ownership is None or account.ownerships is None:
        return []
    return list(account.ownerships.snapshots[account.ownership].owners)


ACCOUNT_ROUTES = [
    Rule("/_emulator/accounts", endpoint=_create_account, methods=["POST"]),
    Rule("/_emulator/accounts", endpoint=_list_accounts, methods=["GET"]),
    Rule("/_emulator/accounts/<account>", endpoint=_update_account, methods=["POST"]),
    Rule("/_emulator/accounts/<account>", endpoint=_get_account, methods=["GET"]),
    Rule("/_emulator/accounts/<account>", endpoint=_delete_account, methods=["DELETE"]),
    Rule("/_emulator/accounts/<account>/transactions", endpoint=_transactions, methods=["GET"]),
    Rule("/_emulator/transactions/<transaction>", endpoint=_drop_transaction, methods=["DELETE"]),
    Rule("/_emulator/accounts/<account>/owners", endpoint=_owners, methods=["GET"]),
    Rule(
        "/_emulator/accounts/<account>/expect_deactivation",
        endpoint=_expect_deactivation,
        methods=["POST"],
    ),
    Rule(
        "/_emulator/accounts/<account>/deactivate",
        endpoint=_lifecycle_step(lambda bank, account: bank.set_status(account, "inactive")),
        methods=["POST"],
    ),
    Rule(
        "/_emulator/accounts/<account>/relink",
        endpoint=_lifecycle_step(Bank.relink),
        methods=["POST"],
    ),
    Rule(
        "/_emulator/accounts/<account>/disconnect",
        endpoint=_lifecycle_step(lambda bank, account: bank.set_status(account, "disconnected")),
        methods=["POST"],
    ),
    Rule(
        "/_emulator/accounts/<account>/account_numbers",
        endpoint=_account_numbers,
        methods=["POST"],
    ),
]
