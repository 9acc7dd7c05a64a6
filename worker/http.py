"""The webhook receiver's web binding: Flask routes over the framework-free core in webhooks.py,
served by waitress (a production WSGI server)."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from sqlalchemy import text
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from werkzeug.exceptions import RequestEntityTooLarge

from worker import contract, webhooks
from worker.clock import Clock
from worker.db import get_engine, require_schema, session_scope
from worker.records import Followup
from worker.runtime import Send
from worker.settings import Settings, get_settings

log = logging.getLogger(__name__)

DEFAULT_PATH = "/webhooks/stripe"


def create_app(
    settings: Settings | None = None, *, dispatch: Send | None = None, path: str = DEFAULT_PATH
) -> Flask:
    settings = settings or get_settings()
    settings.webhook_secrets()  # fail at start-up, naming the variable, not on the first event
    require_schema(settings.database_url)  # ... and not with a 500 for every event
    if dispatch is None:
        from worker.app import send_followup

        dispatch = send_followup
    clock = Clock(settings.fcsync_clock_url)
    app = Flask("fcsync.webhooks")
    app.config["MAX_CONTENT_LENGTH"] = settings.fcsync_webhook_max_body_bytes

    @app.post(path)
    def receive() -> tuple[Response, int]:
        try:
            payload = request.get_data(cache=False)
        except RequestEntityTooLarge:
            return jsonify(error="payload too large"), 413
        try:
            with session_scope() as session:
                receipt = webhooks.receive_webhook(
                    session,
                    payload,
                    request.headers.get("Stripe-Signature"),
                    settings=settings,
                    now=clock.now(),
                )
        except (OperationalError, InterfaceError) as exc:
            # Not the sender's fault: 503 makes Stripe deliver the event again later.
            log.warning("webhook not stored, database unavailable: %s", type(exc).__name__)
            return jsonify(error="database unavailable, retry later"), 503
        except DataError:
            # The database refused a value the envelope checks let through: the body's fault.
            log.exception("webhook refused by the database; answering 400")
            return jsonify(error="event holds a value the inbox cannot store"), 400
        if receipt.status != 200:
            log.warning("rejected webhook: [%s] %s", receipt.code, receipt.error)
            return jsonify(error=receipt.error, code=receipt.code), receipt.status
        if receipt.enqueue and receipt.event_id:
            try:
                dispatch(Followup(contract.HANDLE_EVENT, {"event_id": receipt.event_id}))
            except Exception:
                # Stored in the inbox already: the retry_failed_syncs sweep enqueues it later.
                log.exception("could not enqueue %s; the sweep will pick it up", receipt.event_id)
        answer = {"received": True, "id": receipt.event_id, "duplicate": receipt.duplicate}
        if receipt.ignored:
            log.info("acknowledged webhook %s without work: %s", receipt.event_id, receipt.ignored)
            answer["ignored"] = receipt.ignored
        return jsonify(answer), 200

    @app.errorhandler(413)
    def too_large(_: Exception) -> tuple[Response, int]:
        return jsonify(error="payload too large"), 413

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        try:
            with get_engine().connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            return jsonify(status="unhealthy", database=str(exc.__class__.__name__)), 503
        return jsonify(status="ok"), 200

    return app


def serve(host: str, port: int, *, path: str = DEFAULT_PATH, threads: int = 8) -> None:
    import waitress

    waitress.serve(create_app(path=path), host=host, port=port, threads=threads, ident="fcsync")
