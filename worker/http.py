"""The webhook receiver's web binding: Flask routes over the framework-free core in webhooks.py,
the /status page (status_page.py) and /metrics (metrics.py), served by granian
(receiver_processes.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, jsonify
from sqlalchemy import Engine, text
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_input_stream

from worker import log_context, metrics, receiver_processes, status_page, webhooks
from worker.db import dispose_engines, make_engine, require_schema
from worker.errors import TransientError
from worker.inbox_writer import InboxWriter
from worker.runtime import Runtime
from worker.settings import Settings, get_settings
from worker.stripe_keys_file import load_stripe_keys
from worker.webhooks import Receipt

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

DEFAULT_PATH = "/webhooks/stripe"
# What the webhook route answers: a JSON body and its status.
Answer = tuple[dict[str, Any], int]


def create_app(runtime: Runtime | None = None, *, path: str = DEFAULT_PATH) -> Flask:
    """The receiver over `runtime` (by default this process's, sending to the broker)."""
    if runtime is None:
        from worker.app import prepare_sending, send_followup, send_followups

        prepare_sending()
        settings = get_settings()
        runtime = Runtime(
            settings,
            send=send_followup,
            # A batch past EVENT_IDS_MAX events is several messages: one broker round trip.
            send_many=send_followups,
            engine=receiver_engine(settings),
        )
    settings = runtime.settings
    keys = runtime.keys
    keys.require_webhook_secrets()  # fail at start-up, naming the variable, not on the first event
    require_schema(engine=runtime.engine)  # ... and not with a 500 for every event
    app = Flask("fcsync.webhooks")
    app.extensions["fcsync"] = runtime  # what it runs with, for whoever holds the app
    app.config["MAX_CONTENT_LENGTH"] = settings.fcsync_webhook_max_body_bytes
    app.register_blueprint(status_page.blueprint)
    writer = InboxWriter(runtime)

    def receive(payload: bytes, signature: str | None) -> Answer:
        try:
            read = webhooks.read_webhook(payload, signature, settings=settings, keys=keys)
            # Stored with the events of concurrent requests, in one statement (group commit).
            receipt = read if isinstance(read, Receipt) else writer.store(read)
        except (TransientError, OperationalError, InterfaceError) as exc:
            metrics.webhook_received(None, "unavailable")
            # Not the sender's fault: 503 makes Stripe deliver the event again later.
            log.warning("webhook not stored, database unavailable: %s", type(exc).__name__)
            return {"error": "database unavailable, retry later"}, 503
        except DataError:
            metrics.webhook_received(None, "rejected")
            # The database refused a value the envelope checks let through: the body's fault.
            log.exception("webhook refused by the database; answering 400")
            return {"error": "event holds a value the inbox cannot store"}, 400
        metrics.webhook_received(receipt.event_type, receipt.outcome)
        # The rest of this event's lines name it, and its account.
        with log_context.bound(event_id=receipt.event_id, account_id=receipt.account_id):
            return _answer(receipt)

    app.wsgi_app = WebhookRoute(  # type: ignore[method-assign]  # Flask's middleware slot
        app.wsgi_app, path, receive, max_body=settings.fcsync_webhook_max_body_bytes
    )

    @app.errorhandler(413)
    def too_large(_: Exception) -> tuple[Response, int]:
        return jsonify(error="payload too large"), 413

    served = metrics.registry(fleet=runtime.fleet_snapshot)

    @app.get("/metrics")
    def metrics_page() -> Response:
        body, content_type = metrics.exposition(served)
        return Response(body, content_type=content_type)

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        try:
            with runtime.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            return jsonify(status="unhealthy", database=str(exc.__class__.__name__)), 503
        return jsonify(status="ok"), 200

    return app


def receiver_engine(settings: Settings) -> Engine:
    """The receiver's database: a connection for each server thread, none tested at checkout
    (a dead one fails its request with a 503, which Stripe redelivers)."""
    return make_engine(
        settings.database_url, pool_size=settings.fcsync_webhook_threads, pre_ping=False
    )


def _answer(receipt: Receipt) -> Answer:
    """Stripe's answer for a verified (stored, and enqueued if new) or refused event."""
    if receipt.status != 200:
        log.warning("rejected webhook: [%s] %s", receipt.code, receipt.error)
        return {"error": receipt.error, "code": receipt.code}, receipt.status
    answer: dict[str, Any] = {
        "received": True,
        "id": receipt.event_id,
        "duplicate": receipt.duplicate,
    }
    if receipt.ignored:
        log.info("acknowledged webhook %s without work: %s", receipt.event_id, receipt.ignored)
        answer["ignored"] = receipt.ignored
    return answer, 200


class WebhookRoute:
    """The webhook POST answered before Flask, whose request context, routing and response
    objects cost more of the receiver's CPU per event than verifying it; every other request
    (the status page, /metrics, /healthz, another method on the path) goes on to Flask."""

    def __init__(
        self,
        app: WSGIApplication,
        path: str,
        receive: Callable[[bytes, str | None], Answer],
        *,
        max_body: int,
    ) -> None:
        self._app = app
        self._path = path
        self._receive = receive
        self._max_body = max_body

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != self._path:
            return self._app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            return _respond(
                start_response, {"error": "method not allowed"}, 405, [("Allow", "POST")]
            )
        try:
            # One byte over the limit: a body without a Content-Length (chunked) ends at the
            # limit without an error, so a body at the limit is told from one over it.
            payload = get_input_stream(environ, max_content_length=self._max_body + 1).read()
            too_large = len(payload) > self._max_body
        except RequestEntityTooLarge:
            too_large = True
        try:
            answer, status = (
                ({"error": "payload too large"}, 413)
                if too_large
                else self._receive(payload, environ.get("HTTP_STRIPE_SIGNATURE"))
            )
        except Exception:
            log.exception("webhook failed")
            answer, status = {"error": "internal server error"}, 500
        return _respond(start_response, answer, status)


def _respond(
    start_response: StartResponse,
    answer: dict[str, Any],
    status: int,
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    body = json.dumps(answer).encode()
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            *(headers or []),
        ],
    )
    return [body]


def serve(host: str, port: int, *, path: str = DEFAULT_PATH) -> None:
    """Serve until stopped, in FCSYNC_WEBHOOK_PROCESSES processes sharing one listening socket."""
    settings = get_settings()
    # Refused here, once, with the CLI's message, rather than by every process.
    load_stripe_keys(settings).require_webhook_secrets()
    require_schema(settings.database_url)
    dispose_engines()  # nothing of this process's pool crosses the fork
    receiver_processes.serve(
        # Each process builds its own app: its runtime, database pool and broker connections.
        lambda: create_app(path=path),
        host,
        port,
        processes=settings.fcsync_webhook_processes,
        threads=settings.fcsync_webhook_threads,
    )
