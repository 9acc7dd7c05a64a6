"""The control API under /_emulator/: JSON in and out, no auth, never subject to faults.

Tests, benchmarks and the demo use it to register platforms, seed and list accounts (of the
platform or of a connected account), read the ground truth, move the clock, inject faults,
register webhook endpoints, trigger and resend events and read stats."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from emulator.accounts import ACCOUNT_STATUSES, MAX_TRANSACTIONS, Account
from emulator.bank import Bank
from emulator.scopes import DEFAULT_PLATFORM, STRIPE_ACCOUNT, Scope

PREFIX = "/_emulator/"

Handler = Callable[[Bank, dict[str, Any], dict[str, str]], Any]


class ControlRequestError(Exception):
    """A control request the emulator refuses; answered as {"error": {"message"}} with `status`
    (the client raises it as emulator.ControlError)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _check(body: dict[str, Any], types: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    for key, value in body.items():
        allowed = types.get(key)
        if allowed is None:
            raise ControlRequestError(400, f"unknown key: {key}")
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise ControlRequestError(
                400, f"{key} must be {' or '.join(t.__name__ for t in allowed)}"
            )
    return body


NUMBER = (int, float)
TUNABLES = {
    "refresh_delay_s": NUMBER,
    "refresh_cooldown_s": NUMBER,
    "failure_rate": NUMBER,
}


def _check_tunables(body: dict[str, Any]) -> None:
    for key in ("refresh_delay_s", "refresh_cooldown_s"):
        if body.get(key, 0) < 0:
            raise ControlRequestError(400, f"{key} must be >= 0")
    if not 0 <= body.get("failure_rate", 0) <= 1:
        raise ControlRequestError(400, "failure_rate must be in [0, 1]")
    if body.get("status", "active") not in ACCOUNT_STATUSES:
        raise ControlRequestError(400, f"status must be one of {', '.join(ACCOUNT_STATUSES)}")


def _platform(bank: Bank, body: dict[str, Any]) -> str:
    platform = body.get("platform", DEFAULT_PLATFORM)
    if not bank.known_platform(platform):
        raise ControlRequestError(404, f"no such platform: {platform}")
    return str(platform)


def _scope(bank: Bank, body: dict[str, Any]) -> Scope:
    """The scope `platform` and `stripe_account` name (default: the emulator's platform)."""
    stripe_account = body.get("stripe_account")
    if stripe_account is not None and not STRIPE_ACCOUNT.match(stripe_account):
        raise ControlRequestError(400, "stripe_account must look like acct_ and letters or digits")
    return Scope(False, _platform(bank, body), stripe_account)


def _account(bank: Bank, account_id: str) -> Account:
    account = bank.find_account(account_id)
    if account is None:
        raise ControlRequestError(404, f"no such account: {account_id}")
    return account


def _create_account(bank: Bank, body: dict[str, Any], _: dict[str, str]) -> Any:
    _check(
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
    _check_tunables(body)
    scope = _scope(bank, body)
    body = {k: v for k, v in body.items() if k not in ("stripe_account", "platform")}
    if not 0 <= body.get("transactions", 0) <= MAX_TRANSACTIONS:
        raise ControlRequestError(400, f"transactions must be between 0 and {MAX_TRANSACTIONS}")
    permissions = body.get("permissions")
    allowed = {"balances", "ownership", "payment_method", "transactions"}
    if permissions is not None and not set(permissions) <= allowed:
        raise ControlRequestError(400, f"permissions must be drawn from {sorted(allowed)}")
    return bank.create_account(scope=scope, **body).render()


def _update_account(bank: Bank, body: dict[str, Any], args: dict[str, str]) -> Any:
    account = _account(bank, args["account"])
    _check(
        body,
        {
            "status": (str,),
            "fail_next_refreshes": (int,),
            "next_refresh_changes": (int,),
            **TUNABLES,
        },
    )
    _check_tunables(body)
    for key in ("fail_next_refreshes", "next_refresh_changes"):
        if body.get(key, 0) < 0:
            raise ControlRequestError(400, f"{key} must be >= 0")
    bank.tune_account(
        account,
        fail_next_refreshes=body.get("fail_next_refreshes"),
        next_refresh_changes=body.get("next_refresh_changes"),
        **{key: float(body[key]) for key in TUNABLES if key in body},
    )
    if "status" in body:
        try:
            bank.set_status(account, body["status"])
        except ValueError as exc:
            raise ControlRequestError(400, str(exc)) from exc
    return account.render()


def _list_accounts(bank: Bank, query: dict[str, Any], _: dict[str, str]) -> Any:
    """Every account, or those of one `platform` and/or `stripe_account` (empty: the
    platform's own)."""
    _check(query, {"stripe_account": (str,), "platform": (str,)})
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
    return _account(bank, args["account"]).render()


def _delete_account(bank: Bank, _: dict[str, Any], args: dict[str, str]) -> Any:
    bank.delete_account(_account(bank, args["account"]))
    return {"id": args["account"], "deleted": True}


def _transactions(bank: Bank, _: dict[str, Any], args: dict[str, str]) -> Any:
    return bank.ground_truth(_account(bank, args["account"]))


def _clock(bank: Bank, body: dict[str, Any], _: dict[str, str]) -> Any:
    _check(body, {"advance_s": NUMBER})
    if body.get("advance_s", 0) < 0:
        raise ControlRequestError(400, "advance_s must be >= 0")
    return {"now": bank.advance(float(body.get("advance_s", 0)))}


def _now(bank: Bank, _: dict[str, Any], __: dict[str, str]) -> Any:
    bank.tick()
    return {"now": int(bank.now())}


def _set_faults(bank: Bank, body: dict[str, Any], _: dict[str, str]) -> Any:
    try:
        return bank.update_faults(body).as_json()
    except ValueError as exc:
        raise ControlRequestError(400, str(exc)) from exc


def _faults(bank: Bank, _: dict[str, Any], __: dict[str, str]) -> Any:
    return bank.fault_settings().as_json()


def _add_endpoint(bank: Bank, body: dict[str, Any], _: dict[str, str]) -> Any:
    _check(body, {"url": (str,), "secret": (str,), "connect": (bool,), "platform": (str,)})
    if "url" not in body or "secret" not in body:
        raise ControlRequestError(400, "url and secret are required")
    endpoint = bank.add_webhook_endpoint(
        body["url"],
        body["secret"],
        connect=body.get("connect", False),
        platform=_platform(bank, body),
    )
    return asdict(endpoint)


def _endpoints(bank: Bank, _: dict[str, Any], __: dict[str, str]) -> Any:
    return [asdict(e) for e in bank.webhook_endpoints()]


def _register_platform(bank: Bank, body: dict[str, Any], _: dict[str, str]) -> Any:
    _check(body, {"keys": (list,), "id": (str,)})
    keys = body.get("keys")
    if not keys or not all(isinstance(k, str) for k in keys):
        raise ControlRequestError(400, "keys must be a non-empty list of API keys")
    platform = bank.register_platform(keys, body.get("id"))
    return {"id": platform, "keys": bank.platforms()[platform]}


def _platforms(bank: Bank, _: dict[str, Any], __: dict[str, str]) -> Any:
    return [{"id": platform, "keys": keys} for platform, keys in bank.platforms().items()]


def _trigger_event(bank: Bank, body: dict[str, Any], _: dict[str, str]) -> Any:
    _check(body, {"type": (str,), "account": (str,)})
    if "type" not in body or "account" not in body:
        raise ControlRequestError(400, "type and account are required")
    return bank.trigger_event(body["type"], _account(bank, body["account"]))


def _resend_event(bank: Bank, _: dict[str, Any], args: dict[str, str]) -> Any:
    endpoints = bank.resend_event(args["event"])
    if endpoints is None:
        raise ControlRequestError(404, f"no such event: {args['event']}")
    return {"id": args["event"], "endpoints": endpoints}


def _complete_session(bank: Bank, body: dict[str, Any], args: dict[str, str]) -> Any:
    _check(body, {"accounts": (int,)})
    session = bank.find_session(args["session"])
    if session is None:
        raise ControlRequestError(404, f"no such session: {args['session']}")
    count = body.get("accounts", 1)
    if not 1 <= count <= 100:
        raise ControlRequestError(400, "accounts must be between 1 and 100")
    bank.complete_session(session, count)
    return bank.render_session(session)


def _stats(bank: Bank, _: dict[str, Any], __: dict[str, str]) -> Any:
    return bank.stats_json()


def _reset(bank: Bank, _: dict[str, Any], __: dict[str, str]) -> Any:
    bank.reset()
    return {"reset": True}


ROUTES = Map(
    [
        Rule("/_emulator/platforms", endpoint=_register_platform, methods=["POST"]),
        Rule("/_emulator/platforms", endpoint=_platforms, methods=["GET"]),
        Rule("/_emulator/accounts", endpoint=_create_account, methods=["POST"]),
        Rule("/_emulator/accounts", endpoint=_list_accounts, methods=["GET"]),
        Rule("/_emulator/accounts/<account>", endpoint=_update_account, methods=["POST"]),
        Rule("/_emulator/accounts/<account>", endpoint=_get_account, methods=["GET"]),
        Rule("/_emulator/accounts/<account>", endpoint=_delete_account, methods=["DELETE"]),
        Rule("/_emulator/accounts/<account>/transactions", endpoint=_transactions, methods=["GET"]),
        Rule("/_emulator/clock", endpoint=_clock, methods=["POST"]),
        Rule("/_emulator/clock", endpoint=_now, methods=["GET"]),
        Rule("/_emulator/faults", endpoint=_set_faults, methods=["POST"]),
        Rule("/_emulator/faults", endpoint=_faults, methods=["GET"]),
        Rule("/_emulator/webhook_endpoints", endpoint=_add_endpoint, methods=["POST"]),
        Rule("/_emulator/webhook_endpoints", endpoint=_endpoints, methods=["GET"]),
        Rule("/_emulator/events", endpoint=_trigger_event, methods=["POST"]),
        Rule("/_emulator/events/<event>/resend", endpoint=_resend_event, methods=["POST"]),
        Rule(
            "/_emulator/sessions/<session>/complete", endpoint=_complete_session, methods=["POST"]
        ),
        Rule("/_emulator/stats", endpoint=_stats, methods=["GET"]),
        Rule("/_emulator/reset", endpoint=_reset, methods=["POST"]),
    ]
)


def handle(bank: Bank, request: Request) -> Response:
    try:
        try:
            handler, args = ROUTES.bind_to_environ(request.environ).match()
        except (NotFound, MethodNotAllowed) as exc:
            raise ControlRequestError(
                404, f"no control route {request.method} {request.path}"
            ) from exc
        # A GET's query is its body: filters such as ?stripe_account=acct_...
        body: Any = request.args.to_dict() if request.method == "GET" else {}
        if request.method == "POST" and request.get_data():
            try:
                body = json.loads(request.get_data())
            except ValueError as exc:
                raise ControlRequestError(400, f"body is not JSON: {exc}") from exc
            if not isinstance(body, dict):
                raise ControlRequestError(400, "body must be a JSON object")
        with bank.lock:
            result = handler(bank, body, args)
        status = 200
    except ValueError as exc:
        result, status = {"error": {"message": str(exc)}}, 400
    except ControlRequestError as exc:
        result, status = {"error": {"message": exc.message}}, exc.status
    return Response(json.dumps(result), status, content_type="application/json")
