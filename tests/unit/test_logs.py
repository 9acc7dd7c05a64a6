"""Every log record is redacted on its way out, whatever logger it came from and whatever it
carries (arguments, exception text, stack); stripe-python's request lines are quiet unless DEBUG."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import pytest
from celery.signals import after_setup_logger, after_setup_task_logger

from worker.logs import RedactingFilter, configure_logging, install, level_number, print_uncaught

URL = "redis://:SuperSecretPw@127.0.0.1:6379/6"
KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A private logger tree (parent with a handler, a child that propagates to it)."""
    out = io.StringIO()
    parent = logging.getLogger("fcsync_test_logs")
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    parent.addHandler(handler)
    parent.setLevel(logging.DEBUG)
    parent.propagate = False
    yield parent, out
    parent.removeHandler(handler)


def test_redacting_filter_masks_arguments_exceptions_and_stacks_of_child_records(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    parent, out = captured
    install(parent, logging.INFO)
    child = parent.getChild("child")  # a filter on the logger would miss this one
    child.info("connecting to %s with %s", URL, KEY)
    try:
        raise ConnectionError(f"Cannot connect to {URL} using {KEY}")
    except ConnectionError:
        child.exception("lost the broker")
    child.warning("where %s", URL, stack_info=True)
    text = out.getvalue()
    assert "SuperSecretPw" not in text and "4eC39HqLyjWDarjtT1zdp7dc" not in text, text
    assert "redis://:***@127.0.0.1:6379/6" in text and "sk_***" in text
    assert "Traceback" in text and "ConnectionError: Cannot connect to redis://:***@" in text
    assert "Stack (most recent call last)" in text


def test_redacting_filter_survives_bad_arguments_and_a_second_pass() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s and %s", (URL,), None)
    assert RedactingFilter().filter(record) and RedactingFilter().filter(record)
    assert "SuperSecretPw" not in record.getMessage()


def test_install_adds_the_filter_once() -> None:
    logger = logging.getLogger("fcsync_test_logs_once")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        install(logger, "INFO")
        install(logger, "INFO")
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize(
    ("level", "stripe_level"),
    [("INFO", logging.WARNING), ("warning", logging.WARNING), ("DEBUG", logging.DEBUG)],
)
def test_stripe_request_lines_show_only_at_debug(level: str, stripe_level: int) -> None:
    stripe_logger = logging.getLogger("stripe")
    before = stripe_logger.level
    try:
        install(logging.getLogger("fcsync_test_logs_levels"), level)
        assert stripe_logger.level == stripe_level
    finally:
        stripe_logger.setLevel(before)


def test_level_number_accepts_names_numbers_and_falls_back_to_info() -> None:
    assert level_number("debug") == logging.DEBUG
    assert level_number(logging.ERROR) == logging.ERROR
    assert level_number("nonsense") == logging.INFO
    assert level_number(None) == logging.INFO


@pytest.mark.parametrize("signal", [after_setup_logger, after_setup_task_logger])
def test_celery_worker_and_beat_handlers_are_redacted(signal: object) -> None:
    import worker.app  # noqa: F401  (connects the receivers, as `celery -A worker.app` does)

    logger = logging.getLogger("fcsync_test_logs_celery")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    stripe_logger = logging.getLogger("stripe")
    before = stripe_logger.level
    try:
        signal.send(sender=None, logger=logger, loglevel=logging.INFO)  # type: ignore[attr-defined]
        assert any(isinstance(f, RedactingFilter) for f in handler.filters)
        assert stripe_logger.level == logging.WARNING
    finally:
        logger.removeHandler(handler)
        stripe_logger.setLevel(before)


def test_an_uncaught_exception_prints_masked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # configure_logging changes process-wide state: put it back after the test.
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(logging.getLogger("stripe"), "level", logging.getLogger("stripe").level)
    configure_logging("WARNING")
    assert sys.excepthook is print_uncaught
    try:
        raise OSError(f"Error connecting to {URL}")
    except OSError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    err = capsys.readouterr().err
    assert "Traceback" in err and "redis://:***@127.0.0.1:6379/6" in err
    assert "SuperSecretPw" not in err


def test_an_unknown_log_level_is_refused_naming_the_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner
    from pydantic import ValidationError

    from worker.cli import cli
    from worker.settings import Settings

    monkeypatch.setenv("FCSYNC_LOG_LEVEL", "loud")
    with pytest.raises(ValidationError, match="must be one of DEBUG, INFO"):
        Settings()
    monkeypatch.setenv("FCSYNC_LOG_LEVEL", "debug")
    assert Settings().fcsync_log_level == "DEBUG"
    result = CliRunner().invoke(cli, ["--log-level", "loud", "status"])
    assert result.exit_code == 2 and "Invalid value for '--log-level'" in result.output
