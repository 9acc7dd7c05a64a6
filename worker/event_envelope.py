"""Stripe event envelopes, checked before anything is stored: strict JSON (one object, finite
numbers, no duplicate keys, bounded nesting) and the fields the inbox is keyed on, each of
a type and size its column holds."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy import String

from models import WebhookEvent
from worker.errors import ErrorCode, PermanentError

log = logging.getLogger(__name__)
T = TypeVar("T")

FC_EVENT_PREFIX = "financial_connections.account."
FC_ACCOUNT_OBJECT = "financial_connections.account"

# Stripe ids are a prefix and ASCII letters and digits; nothing else can reach a column, a
# task argument or a log line through them (no NUL, no lone surrogate, no newline).
_EVENT_ID = re.compile(r"evt_[A-Za-z0-9_]+")
_ACCOUNT_ID = re.compile(r"fca_[A-Za-z0-9_]+")
_CONNECTED_ACCOUNT = re.compile(r"acct_[A-Za-z0-9]+")
# Stripe's event types are dotted lower-case words; allow a little more, never control chars.
_EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:\-]+")


def _column_length(name: str) -> int:
    column_type = WebhookEvent.__table__.c[name].type
    assert isinstance(column_type, String) and column_type.length is not None
    return column_type.length


EVENT_ID_MAX = _column_length("id")
EVENT_TYPE_MAX = _column_length("type")
ACCOUNT_ID_MAX = _column_length("account_id")
# The accounts table's `stripe_account` column holds the context (String(64)).
STRIPE_ACCOUNT_MAX = 64
# `created` lands in a signed 64-bit BIGINT column.
CREATED_MAX = 2**63 - 1


class InvalidEventError(PermanentError):
    """A correctly signed body that is not a Stripe event fcsync can store."""

    def __init__(self, message: str, *, code: str = ErrorCode.BAD_EVENT) -> None:
        super().__init__(message, code=code)


def is_event_id(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) <= EVENT_ID_MAX
        and _EVENT_ID.fullmatch(value) is not None
    )


def is_fc_event_type(event_type: str) -> bool:
    return event_type.startswith(FC_EVENT_PREFIX)


def _refuse_constant(name: str) -> Any:
    raise InvalidEventError(f"body holds the non-JSON number {name}", code="bad_json")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidEventError(f"body holds a number out of range: {text[:40]}", code="bad_json")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # Parsers disagree on which duplicate wins: a body that means two things is refused.
        raise InvalidEventError("body repeats a key inside one object", code="bad_json")
    return obj


def load_event_json(payload: bytes | str) -> dict[str, Any]:
    """The body as one JSON object, parsed strictly; InvalidEventError says why not."""
    if isinstance(payload, bytes):
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEventError(f"body is not UTF-8: {exc.reason}", code="bad_json") from exc
    if payload.startswith("\ufeff"):
        raise InvalidEventError("body starts with a byte order mark", code="bad_json")
    try:
        data = json.loads(
            payload,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError as exc:
        raise InvalidEventError("body is nested too deeply", code="bad_json") from exc
    except ValueError as exc:  # JSONDecodeError, and ints past Python's digit limit
        raise InvalidEventError(f"body is not JSON: {exc}", code="bad_json") from exc
    if not isinstance(data, dict):
        raise InvalidEventError(
            f"body is a JSON {type(data).__name__}, not an event object", code="bad_json"
        )
    return data


def _text(
    data: Mapping[str, Any], key: str, pattern: re.Pattern[str], limit: int, *, label: str
) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise InvalidEventError(f"`{label}` must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise InvalidEventError(f"`{label}` is longer than {limit} characters")
    if pattern.fullmatch(value) is None:
        raise InvalidEventError(f"`{label}` is not well-formed: {value[:80]!r}")
    return value


def check_envelope(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Validate what the inbox stores and routes on; returns `data.object`.

    Unknown fields are tolerated (Stripe adds them); the fields fcsync reads must be exactly
    what Stripe documents: `id` (evt_...), `object` "event", `type`, `created` (Unix seconds),
    `livemode`, `account` (absent or null, or a Connect event's `acct_...`), and `data.object`,
    which for FC event types is a financial_connections.account.
    """
    event_id = data.get("id")
    if not is_event_id(event_id):
        shown = event_id[:80] if isinstance(event_id, str) else type(event_id).__name__
        raise InvalidEventError(
            f"`id` must be a Stripe event id (evt_ then letters, digits or _, at most "
            f"{EVENT_ID_MAX} characters), got {shown!r}"
        )
    if data.get("object") != "event":
        raise InvalidEventError('`object` must be "event"')
    event_type = _text(data, "type", _EVENT_TYPE, EVENT_TYPE_MAX, label="type")
    created = data.get("created")
    if type(created) is not int or not 0 <= created <= CREATED_MAX:
        raise InvalidEventError("`created` must be Unix seconds (a non-negative 64-bit integer)")
    if not isinstance(data.get("livemode"), bool):
        raise InvalidEventError("`livemode` must be true or false")
    if data.get("account") is not None:
        # A Connect event: the connected account it happened in, which routing compares.
        _text(data, "account", _CONNECTED_ACCOUNT, STRIPE_ACCOUNT_MAX, label="account")
    body = data.get("data")
    obj = body.get("object") if isinstance(body, dict) else None
    if not isinstance(obj, dict):
        raise InvalidEventError("`data.object` must be an object")
    if is_fc_event_type(event_type):
        if obj.get("object") != FC_ACCOUNT_OBJECT:
            raise InvalidEventError(f"`data.object` of a {event_type} event must be an account")
        _text(obj, "id", _ACCOUNT_ID, ACCOUNT_ID_MAX, label="data.object.id")
    return obj


# What parsing a body can raise besides PermanentError if a shape slipped past validation.
# Parsing is a pure function of the body, so these are the sender's fault, never ours.
_INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError)


def read_event(parse: Callable[[], T]) -> T:
    """Run a parse of an event body; whatever it raises is the body's fault (a PermanentError)."""
    try:
        return parse()
    except _INPUT_ERRORS as exc:
        log.exception("an event body got past validation and failed parsing")
        raise InvalidEventError("not a Stripe event fcsync can read") from exc
