"""The WSGI application: Stripe's HTTP conventions (auth, Request-Id, idempotency, error JSON)
and the fault layer in front of the v1 surface; /_emulator/ goes to the control API untouched."""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import socket
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from emulator import control_api, errors
from emulator.api_versions import check_api_version
from emulator.bank import Bank
from emulator.errors import StripeError
from emulator.events import Origin
from emulator.idempotency import IdempotencyKeys, StoredResponse
from emulator.identifiers import base62
from emulator.params import parse_pairs, validate
from emulator.scopes import API_KEY, Scope, masked
from emulator.stripe_api import OPERATIONS, Call, Operation

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

# An Idempotency-Key as stored: (scope, key).
StoredKey = tuple[Scope, str]


def _json(body: Any) -> bytes:
    # Stripe pretty-prints its JSON with two spaces.
    return json.dumps(body, indent=2).encode()


class EmulatorApp:
    def __init__(self, bank: Bank) -> None:
        self.bank = bank
        self._routes = Map(
            [Rule(op.path, endpoint=op, methods=[op.method]) for op in OPERATIONS],
            strict_slashes=False,
        )
        self._request_numbers = itertools.count(1)
        self._idempotency = IdempotencyKeys()
        bank.on_reset(self._idempotency.clear)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        if request.path.startswith(control_api.PREFIX):
            response = control_api.handle(self.bank, request)
        else:
            response = self._stripe(request, environ)
        return response(environ, start_response)

    def _request_id(self) -> str:
        digest = hashlib.blake2b(
            f"{self.bank.config.seed}/{next(self._request_numbers)}".encode(), digest_size=9
        ).digest()
        return "req_" + base62(int.from_bytes(digest, "big"), 14)

    def _stripe(self, request: Request, environ: WSGIEnvironment) -> Response:
        request_id = self._request_id()
        default_version = self.bank.config.api_version
        asked_version = request.headers.get("Stripe-Version")
        api_version = asked_version or default_version
        headers = {"Request-Id": request_id, "Stripe-Version": api_version}
        operation: Operation | None = None
        args: dict[str, str] = {}
        try:
            operation, matched = self._routes.bind_to_environ(environ).match()
            args = {k: str(v) for k, v in matched.items()}
        except (NotFound, MethodNotAllowed):
            operation = None
        bank = self.bank
        with bank.lock:
            template = operation.template if operation else f"{request.method} {request.path}"
            bank.count_request(
                template,
                args.get("account") or request.args.get("account"),
                _presented_key(request),
            )
        decision = bank.faults.decide()
        outcome = decision.outcome
        if decision.delay_s > 0:
            time.sleep(decision.delay_s)
        if decision.spiked or outcome in ("rate_limit", "server_error"):
            with bank.lock:
                if decision.spiked:
                    bank.count_latency_spike()
                if outcome in ("rate_limit", "server_error"):
                    bank.count_fault(outcome)
        if outcome == "rate_limit":
            return _error(
                StripeError(
                    429,
                    "Request rate limit exceeded. Learn more about rate limits here "
                    "https://docs.stripe.com/rate-limits.",
                    code="rate_limit",
                ),
                headers,
            )
        if outcome == "server_error":
            return _error(
                StripeError(
                    500,
                    "An unknown error occurred. Please retry the request.",
                    type_="api_error",
                ),
                headers,
            )
        stored_under: StoredKey | None = None
        try:
            if operation is None:
                raise errors.unrecognized_url(request.method, request.path)
            if asked_version is not None:
                try:
                    check_api_version(asked_version, default_version)
                except StripeError:
                    # Answered in the account's version, not one Stripe does not know.
                    headers["Stripe-Version"] = default_version
                    raise
            response, stored_under = self._execute(request, operation, args, request_id, headers)
        except StripeError as exc:
            response = _error(exc, headers)
        if outcome == "drop":
            # The request ran; only its answer is lost, as when a network path fails mid-reply.
            with bank.lock:
                bank.count_fault(outcome)
                if stored_under is not None:
                    self._idempotency.mark_lost(*stored_under)
            connection = environ.get("werkzeug.socket")
            if isinstance(connection, socket.socket):
                connection.shutdown(socket.SHUT_RDWR)
        return response

    def _execute(
        self,
        request: Request,
        operation: Operation,
        args: dict[str, str],
        request_id: str,
        headers: dict[str, str],
    ) -> tuple[Response, StoredKey | None]:
        """The answer, and the key it is stored under when it is a keyed POST's (fresh or
        replayed), for a dropped connection to mark lost."""
        api_key = _api_key(request)
        bank = self.bank
        with bank.lock:
            scope = bank.scope(api_key, request.headers.get("Stripe-Account"))
        pairs = list(request.args.items(multi=True))
        if request.method == "POST":
            pairs += list(request.form.items(multi=True))
        raw = parse_pairs(pairs)
        params = validate(raw, operation.spec)
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        if key is not None:
            headers["Idempotency-Key"] = key
            self._idempotency.check(key)
        fingerprint = json.dumps([operation.template, request.path, raw], sort_keys=True)
        call = Call(scope, Origin(request_id, key))
        with bank.lock:
            bank.tick()
            if key is not None:
                stored = self._idempotency.replay(scope, key, fingerprint)
                if stored is not None:
                    bank.count_replay(operation.template, lost=stored.lost)
                    return _replay(stored, headers), (scope, key)
            try:
                status, body = 200, _json(operation.handler(bank, call, params, args))
            except StripeError as exc:
                status, body = exc.status, _json(exc.body())
            if key is not None:
                self._idempotency.store(
                    scope, key, StoredResponse(fingerprint, status, body, request_id)
                )
        response = Response(body, status, headers, content_type="application/json")
        return response, (scope, key) if key is not None else None


def _presented_key(request: Request) -> str | None:
    """The request's key, masked, for the stats; None when it has no well-formed one (it is
    answered 401)."""
    try:
        return masked(_api_key(request))
    except StripeError:
        return None


def _api_key(request: Request) -> str:
    """The request's well-formed secret or restricted key, else Stripe's 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            credentials = base64.b64decode(credentials).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            credentials = ""
    elif scheme.lower() != "bearer":
        raise StripeError(
            401,
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY'). See https://docs.stripe.com/api#authentication for details.",
        )
    key = credentials.strip()
    if not API_KEY.match(key):
        raise StripeError(401, f"Invalid API Key provided: {masked(key)}")
    return key


def _replay(stored: StoredResponse, headers: dict[str, str]) -> Response:
    replay_headers = {
        **headers,
        "Idempotent-Replayed": "true",
        "Original-Request": stored.request_id,
    }
    return Response(stored.body, stored.status, replay_headers, content_type="application/json")


def _error(exc: StripeError, headers: dict[str, str]) -> Response:
    return Response(
        _json(exc.body()),
        exc.status,
        {**headers, **exc.headers},
        content_type="application/json",
    )
