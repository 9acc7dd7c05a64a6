"""The control API under /_emulator/: JSON in and out, no auth, never subject to faults.

Tests, benchmarks and the demo use it to register platforms, seed and list accounts (of the
platform or of a connected account), read the ground truth, move the clock, inject faults,
register webhook endpoints, trigger and resend events and read stats. This module routes and
answers them, with the routes of the emulator as a whole; accounts' are in control_accounts.py."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from emulator.bank import Bank
from emulator.control_accounts import ACCOUNT_ROUTES
from emulator.control_requests import (
    NUMBER,
    ControlRequestError,
    check_body,
    requested_account,
    requested_platform,
)

PREFIX = "/_emulator/"


def _clock(bank: Bank, body: dict[str, Any], _: dict[str, str]) -> Any:
    check_body(body, {"advance_s": NUMBER})
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
    check_body(
        body,
        {
            "url": (str,),
            "secret": (str,),
            "connect": (bool,),
            "platform": (str,),
            "api_version": (str,),
        },
    )
    if "url" not in body or "secret" not in body:
        raise ControlRequestError(400, "url and secret are required")
    endpoint = bank.add_webhook_endpoint(
        body["url"],
        body["secret"],
        connect=body.get("connect", False),
        platform=requested_platform(bank, body),
        api_version=body.get("api_version"),
    )
    return asdict(endpoint)


def _endpoints(bank: Bank, _: dict[str, Any], __: dict[str, str]) -> Any:
    return [asdict(e) for e in bank.webhook_endpoints()]


def _register_platform(bank: Bank, body: dict[str, Any], _: dict[str, str]) -> Any:
    check_body(body, {"keys": (list,), "id": (str,)})
    keys = body.get("keys")
    if not keys or not all(isinstance(k, str) for k in keys):
        raise ControlRequestError(400, "keys must be a non-empty list of API keys")
    platform = bank.register_platform(keys, body.get("id"))
    return {"id": platform, "keys": bank.platforms()[platform]}


def _platforms(bank: Bank, _: dict[str, Any], __: dict[str, str]) -> Any:
    return [{"id": platform, "keys": keys} for platform, keys in bank.platforms().items()]


def _trigger_event(bank: Bank, body: dict[str, Any], _: dict[str, str]) -> Any:
    check_body(body, {"type": (str,), "account": (str,)})
    if "type" not in body or "account" not in body:
        raise ControlRequestError(400, "type and account are required")
    return bank.trigger_event(body["type"], requested_account(bank, body["account"]))


def _resend_event(bank: Bank, _: dict[str, Any], args: dict[str, str]) -> Any:
    endpoints = bank.resend_event(args["event"])
    if endpoints is None:
        raise ControlRequestError(404, f"no such event: {args['event']}")
    return {"id": args["event"], "endpoints": endpoints}


def _complete_session(bank: Bank, body: dict[str, Any], args: dict[str, str]) -> Any:
    check_body(body, {"accounts": (int,)})
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
        *ACCOUNT_ROUTES,
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
