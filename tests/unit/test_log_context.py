"""What a log line knows about its unit of work: the context's rules (bound, note, forget), who
sets it (a task's signals, the gateway's answers, the webhook receiver), and the JSON line that
writes it: one object per record, every string in it masked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import stripe
from celery.signals import task_postrun, task_prerun
from flask.testing import FlaskClient
from pydantic import ValidationError
from sqlalchemy import Engine

from emulator import signature_header
from tests.stripe_http import Answer, CannedHTTPClient
from tests.unit.conftest import SECRET
from tests.unit.test_http_webhooks import event, post
from worker import event_handlers, log_context
from worker.errors import PermanentError, TransientError
from worker.http import create_app
from worker.logs import JsonLines, install, log_uncaught
from worker.records import Followup
from worker.runtime import Runtime
from worker.settings import Settings
from worker.stripe_gateway import StripeGateway
from worker.supervisor import stack_children

URL = "postgresql://fcsync:PgSecretPw@db:5432/fcsync"
KEY = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"


def test_bound_fields_end_with_their_block_and_notes_with_it() -> None:
    with log_context.bound(task_id="t1", account_id=None):
        log_context.note(stripe_request_id="req_1", refresh_id=None)
        assert log_context.current() == {"task_id": "t1", "stripe_request_id": "req_1"}
        with log_context.bound(task_name="fcsync.sync_transactions"):
            log_context.note(account_id="fca_1")
            log_context.forget("stripe_request_id")
            assert log_context.current() == {
                "task_id": "t1",
                "task_name": "fcsync.sync_transactions",
                "account_id": "fca_1",
            }
        assert log_context.current() == {"task_id": "t1", "stripe_request_id": "req_1"}
    assert log_context.current() == {}


def test_a_note_outside_any_unit_of_work_is_dropped_and_names_are_checked() -> None:
    log_context.note(account_id="fca_1")  # e.g. a test calling the gateway directly
    assert log_context.current() == {}
    with pytest.raises(TypeError, match="api_key"), log_context.bound(api_key="sk_x"):
        pass


@pytest.fixture
def json_out() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A private logger writing through a handler set up as fcsync sets up JSON logs."""
    out = io.StringIO()
    logger = logging.getLogger("fcsync_test_json_lines")
    handler = logging.StreamHandler(out)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    stripe_level = logging.getLogger("stripe").level
    install(logger, "INFO", "json")
    yield logger, out
    logger.removeHandler(handler)
    logging.getLogger("stripe").setLevel(stripe_level)
    logging.captureWarnings(False)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_carry_the_context_and_mask_message_exception_and_extras(
    json_out: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = json_out
    with log_context.bound(task_id="t1", account_id="fca_1"):
        log_context.note(stripe_request_id="req_9")
        logger.info("connecting to %s", URL)
        try:
            raise ConnectionError(f"refused:\n{KEY}")
        except ConnectionError:
            # Celery's task lines quote the task's arguments in `data`, beside the message.
            logger.exception("lost it", extra={"data": {"kwargs": f"{{'key': {KEY!r}}}"}})
    logger.warning("after the unit of work")

    text = out.getvalue()
    first, failed, after = lines(out)  # one object per line: a traceback's newlines escaped
    assert "PgSecretPw" not in text and "4eC39HqLyjWDarjtT1zdp7dc" not in text, text
    assert first["message"] == "connecting to postgresql://fcsync:***@db:5432/fcsync"
    assert first["level"] == "INFO" and first["logger"] == "fcsync_test_json_lines"
    assert (first["task_id"], first["account_id"], first["stripe_request_id"]) == (
        "t1",
        "fca_1",
        "req_9",
    )
    assert "Traceback" in failed["exc_info"] and "sk_***" in failed["exc_info"]
    assert failed["data"] == {"kwargs": "{'key': 'sk_***'}"}
    assert failed["time"].endswith("+00:00")
    assert not {"task_id", "account_id", "stripe_request_id"} & after.keys()


def test_an_uncaught_exception_is_one_more_json_line(
    json_out: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = json_out
    fcsync = logging.getLogger("fcsync")  # where log_uncaught writes
    fcsync.addHandler(logger.handlers[0])
    try:
        raise OSError(f"Error connecting to {URL}")
    except OSError as exc:
        log_uncaught(type(exc), exc, exc.__traceback__)
    finally:
        fcsync.removeHandler(logger.handlers[0])
    (line,) = lines(out)
    assert line["level"] == "CRITICAL" and line["message"] == "uncaught exception"
    assert "OSError: Error connecting to postgresql://fcsync:***@db" in line["exc_info"]


def test_celery_handlers_write_json_lines_when_the_format_is_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from celery.signals import after_setup_logger

    import worker.app  # noqa: F401  (connects the receivers, as `celery -A worker.app` does)
    from worker.settings import reset_settings

    monkeypatch.setenv("FCSYNC_LOG_FORMAT", "JSON")
    reset_settings()
    logger = logging.getLogger("fcsync_test_celery_json")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    stripe_level = logging.getLogger("stripe").level
    try:
        after_setup_logger.send(sender=None, logger=logger, loglevel=logging.INFO)
        assert isinstance(handler.formatter, JsonLines)
    finally:
        logger.removeHandler(handler)
        logging.getLogger("stripe").setLevel(stripe_level)
        logging.captureWarnings(False)
        monkeypatch.undo()
        reset_settings()


def test_an_unknown_log_format_is_refused_naming_the_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FCSYNC_LOG_FORMAT", "yaml")
    with pytest.raises(ValidationError, match="must be one of text, json"):
        Settings()
    monkeypatch.delenv("FCSYNC_LOG_FORMAT")
    assert Settings().fcsync_log_format == "text"


@pytest.mark.parametrize(("log_format", "quiet"), [("text", False), ("json", True)])
def test_run_starts_celery_without_its_banner_only_for_json(log_format: str, quiet: bool) -> None:
    from pathlib import Path

    children = stack_children(
        concurrency=1,
        webhooks=False,
        host="127.0.0.1",
        port=8000,
        path="/webhooks/stripe",
        schedule=Path("celerybeat-schedule"),
        log_level="INFO",
        log_format=log_format,
    )
    assert [("--quiet" in child.argv) for child in children] == [quiet, quiet]


def test_a_task_s_lines_name_it_and_its_account_from_prerun_to_postrun() -> None:
    from tasks.sync import sync_transactions_task

    for account, shown in (("fca_1", "fca_1"), ("sk_test_notanid", None)):
        task_prerun.send(
            sender=sync_transactions_task,
            task_id="t1",
            task=sync_transactions_task,
            args=(),
            kwargs={"account_id": account},
        )
        assert log_context.current().get("account_id") == shown
        assert log_context.current()["task_name"] == "fcsync.sync_transactions"
        task_postrun.send(sender=sync_transactions_task, task_id="t1", task=sync_transactions_task)
        assert log_context.current() == {}


def account_body(refresh: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "fca_1",
        "object": "financial_connections.account",
        "status": "active",
    }
    if refresh is not None:
        body["transaction_refresh"] = {
            "id": refresh,
            "status": "pending",
            "last_attempted_at": 1,
            "next_refresh_available_at": None,
        }
    return body


def test_the_gateway_notes_each_answer_s_request_id_and_refresh() -> None:
    http = CannedHTTPClient(
        Answer(200, account_body("fctxnref_1"), {"Request-Id": "req_ok"}),
        Answer(404, {"error": {"type": "invalid_request_error"}}, {"Request-Id": "req_404"}),
        stripe.APIConnectionError("Unexpected error communicating with Stripe."),
    )
    gateway = StripeGateway("sk_test_x", max_network_retries=0, http_client=http)
    with log_context.bound(task_id="t1"):
        gateway.retrieve_account("fca_1", stripe_account=None)
        assert log_context.current()["stripe_request_id"] == "req_ok"
        assert log_context.current()["refresh_id"] == "fctxnref_1"
        with pytest.raises(PermanentError):
            gateway.retrieve_account("fca_1", stripe_account=None)
        assert log_context.current()["stripe_request_id"] == "req_404"
        with pytest.raises(TransientError):
            gateway.retrieve_account("fca_1", stripe_account=None)
        # No answer, no id: the lines after it never name the previous request as this one.
        assert "stripe_request_id" not in log_context.current()


@pytest.fixture
def receiver_runtime(committed_engine: Engine, receiver_settings: Settings) -> Runtime:
    def send(_: Followup) -> None:
        raise ConnectionError("broker down")

    return Runtime(receiver_settings, send=send, engine=committed_engine)


class _Contexts(logging.Handler):
    """The log context of each record, as the JSON lines would carry it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(dict(log_context.current()))


def test_the_receiver_s_lines_for_an_event_name_it_and_its_account(
    receiver_runtime: Runtime,
) -> None:
    client: FlaskClient = create_app(receiver_runtime).test_client()
    contexts = _Contexts()
    logger = logging.getLogger("worker.inbox_writer")
    logger.addHandler(contexts)
    try:
        body = event("evt_logged")
        # Stored, so answered 200 even though its task could not be sent (the sweep sends it).
        assert post(client, body, signature_header(body, SECRET)).status_code == 200
    finally:
        logger.removeHandler(contexts)
    assert contexts.seen == [{"event_id": "evt_logged", "account_id": "fca_1"}]
    assert log_context.current() == {}
    # The handle_event task knows only the event: its account comes from the inbox row.
    with log_context.bound(event_id="evt_logged"), receiver_runtime.session() as session:
        event_handlers.handle_event(
            session,
            StripeGateway(None),  # an event about an untracked account asks Stripe nothing
            "evt_logged",
            now=datetime.now(UTC),
            settings=receiver_runtime.settings,
        )
        assert log_context.current() == {"event_id": "evt_logged", "account_id": "fca_1"}
