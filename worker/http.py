"""The webhook receiver's web binding: Flask routes over the framework-free core in webhooks.py,
the /status page (status_page.py) and /metrics (metrics.py), served by waitress (a production
WSGI server)."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from sqlalchemy import Engine, text
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from werkzeug.exceptions import RequestEntityTooLarge

from worker import log_context, metrics, receiver_processes, status_page, webhooks
from worker.db import dispose_engines, make_engine, require_schema
from worker.errors import TransientError
from worker.inbox_writer import InboxWriter
from worker.runtime import Runtime
from worker.settings import Settings, get_settings
from worker.webhooks import Receipt

log = logging.getLogger(__name__)

DEFAULT_PATH = "/webhooks/stripe"


def create_app(runtime: Runtime | None = None, *, path: str = DEFAULT_PATH) -> Flask:
    """The receiver over `runtime` (by default this process's, sending to the broker)."""
    if runtime is None:
        from worker.app import send_followup

        settings = get_settings()
        runtime = Runtime(settings, send=send_followup, engine=receiver_engine(settings))
    settings = runtime.settings
    settings.webhook_secrets()  # fail at start-up, naming the variable, not on the first event
    require_schema(engine=runtime.engine)  # ... and not with a 500 for every event
    app = Flask("fcsync.webhooks")
    app.extensions["fcsync"] = runtime  # what it runs with, for whoever holds the app
    app.config["MAX_CONTENT_LENGTH"] = settings.fcsync_webhook_max_body_bytes
    app.register_blueprint(status_page.blueprint)
    writer = InboxWriter(runtime, batch_enqueue=not settings.uses_embedded_broker)

    @app.post(path)
    def receive() -> tuple[Response, int]:
        try:
            payload = request.get_data(cache=False)
        except RequestEntityTooLarge:
            return jsonify(error="payload too large"), 413
        try:
            read = webhooks.read_webhook(
                payload, request.headers.get("Stripe-Signature"), settings=settings
            )
            # Stored with the events of concurrent requests, in one statement (group commit).
            receipt = read if isinstance(read, Receipt) else writer.store(read)
        except (TransientError, OperationalError, InterfaceError) as exc:
            metrics.webhook_received(None, "unavailable")
            # Not the sender's fault: 503 makes Stripe deliver the event again later.
            log.warning("webhook not stored, database unavailable: %s", type(exc).__name__)
            return jsonify(error="database unavailable, retry later"), 503
        except DataError:
            metrics.webhook_received(None, "rejected")
            # The database refused a value the envelope checks let through: the body's fault.
            log.exception("webhook refused by the database; answering 400")
            return jsonify(error="event holds a value the inbox cannot store"), 400
        metrics.webhook_received(receipt.event_type, receipt.outcome)
        # The rest of this event's lines name it, and its account.
        with log_context.bound(event_id=receipt.event_id, account_id=receipt.account_id):
            return _answer(receipt)

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


def _answer(receipt: Receipt) -> tuple[Response, int]:
    """Stripe's answer for a verified (stored, and enqueued if new) or refused event."""
    if receipt.status != 200:
        log.warning("rejected webhook: [%s] %s", receipt.code, receipt.error)
        return jsonify(error=receipt.error, code=receipt.code), receipt.status
    answer = {"received": True, "id": receipt.event_id, "duplicate": receipt.duplicate}
    if receipt.ignored:
        log.info("acknowledged webhook %s without work: %s", receipt.event_id, receipt.ignored)
        answer["ignored"] = receipt.ignored
    return jsonify(answer), 200


def serve(host: str, port: int, *, path: str = DEFAULT_PATH) -> None:
    """Serve until stopped: in this process, or in FCSYNC_WEBHOOK_PROCESSES forked ones sharing
    one listening socket."""
    import waitress

    settings = get_settings()
    threads = settings.fcsync_webhook_threads
    if settings.fcsync_webhook_processes == 1:
        waitress.serve(create_app(path=path), host=host, port=port, threads=threads, ident="fcsync")
        return
    # Refused here, once, with the CLI's message, rather than by every child.
    settings.webhook_secrets()
    require_schema(settings.database_url)
    dispose_engines()  # nothing of the parent's pool crosses the fork
    sock = receiver_processes.listening_socket(host, port)
    receiver_processes.serve_forked(
        sock,
        settings.fcsync_webhook_processes,
        # Each child builds its own app: its runtime, database pool and broker connections.
        lambda: waitress.serve(
            create_app(path=path), sockets=[sock], threads=threads, ident="fcsync"
        ),
    )
