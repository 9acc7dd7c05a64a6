"""Validation of task arguments: a bad argument is a permanent failure, never a retry, and what
is said about it is short (other services send by name; a 10 MB id must not reach the logs)."""

from __future__ import annotations

import re
import reprlib
from datetime import datetime
from typing import Any

from worker.errors import ErrorCode, PermanentError
from worker.intents import EVENT_IDS_MAX
from worker.refresh_gate import FEATURES
from worker.stripe_keys_file import NAME

# Stripe ids are a prefix and ASCII letters and digits; accounts.id is String(64) and
# webhook_events.id String(255), so a longer id could never name a stored row.
ACCOUNT_ID_MAX = 64
EVENT_ID_MAX = 255
# The `stripe_key` columns are String(64).
KEY_NAME_MAX = 64

_shown = reprlib.Repr()
_shown.maxstring = 40
_shown.maxother = 40
_shown.maxlong = 24
_shown.maxlevel = 2
_shown.maxlist = _shown.maxtuple = _shown.maxdict = _shown.maxset = 4


def shown(value: Any) -> str:
    """A short repr for messages and logs: long strings and numbers are cut with '...'."""
    try:
        return _shown.repr(value)
    except Exception:  # e.g. an int past Python's digit limit: its repr itself raises
        return f"<{type(value).__name__}>"


def bad_argument(name: str, expected: str, value: Any) -> PermanentError:
    return PermanentError(
        f"{name} must be {expected}, got {shown(value)}", code=ErrorCode.BAD_ARGUMENT
    )


def stripe_id(
    value: Any, prefix: str, name: str = "account_id", max_length: int = ACCOUNT_ID_MAX
) -> str:
    if (
        not isinstance(value, str)
        or len(value) > max_length
        or not re.fullmatch(re.escape(prefix) + r"[A-Za-z0-9]+", value, flags=re.ASCII)
    ):
        raise bad_argument(
            name, f"a Stripe id {prefix}<letters and digits> of at most {max_length} chars", value
        )
    return value


def event_id_list(value: Any) -> list[str]:
    """The `event_ids` argument: a JSON list of 1 to EVENT_IDS_MAX `evt_` ids, each once, in the
    order given (a repeated id is dropped: it names the same inbox row)."""
    if not isinstance(value, list) or not 1 <= len(value) <= EVENT_IDS_MAX:
        raise bad_argument("event_ids", f"a list of 1 to {EVENT_IDS_MAX} event ids", value)
    return list(
        dict.fromkeys(
            stripe_id(each, "evt_", "each of event_ids", max_length=EVENT_ID_MAX) for each in value
        )
    )


def stripe_account_id(value: Any) -> str | None:
    """The optional `stripe_account` argument: a connected account's `acct_` id, or None (the
    account's stored context; the platform for one fcsync does not know)."""
    return None if value is None else stripe_id(value, "acct_", "stripe_account")


def stripe_key_name(value: Any) -> str | None:
    """The optional `stripe_key` argument: the name of a configured Stripe key (lowercase
    letters, digits, `_` and `-`, as FCSYNC_STRIPE_ACCOUNTS names them), or None (the account's
    stored key; `default` for one fcsync does not know). Whether a key has the name is the
    runtime's to say (`unknown_stripe_key`)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > KEY_NAME_MAX or not NAME.fullmatch(value):
        raise bad_argument(
            "stripe_key",
            f"a Stripe key name of lowercase letters, digits, _ and - (at most {KEY_NAME_MAX})",
            value,
        )
    return value


def handoff_token(value: Any) -> str | None:
    """The optional `handoff` argument: the lease token of a sync's continuation message, as
    worker/sync.py's continue_run makes it (`handoff/<32 hex digits>`), or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"handoff/[0-9a-f]{32}", value):
        raise bad_argument("handoff", "handoff/<32 hex digits>", value)
    return value


def flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise bad_argument(name, "true or false", value)
    return value


def choice(value: Any, allowed: frozenset[str], name: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise bad_argument(name, f"one of {sorted(allowed)}", value)
    return value


def bounded_int(value: Any, name: str, low: int, high: int) -> int:
    # bool is an int subclass, but `true` for a count is a sender's bug, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad_argument(name, f"an integer from {low} to {high}", value)
    return value


def moment(value: Any, name: str) -> datetime:
    """An ISO 8601 time with its UTC offset (a time without one means different moments on
    different machines)."""
    try:
        parsed = (
            datetime.fromisoformat(value) if isinstance(value, str) and len(value) <= 40 else None
        )
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise bad_argument(name, "an ISO 8601 time with its UTC offset", value)
    return parsed


def feature_list(value: Any) -> list[str] | None:
    """The optional `features` argument of fcsync.track_account: a JSON list of at least one
    of transactions, balances, ownership, each at most once."""
    allowed = set(FEATURES)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(f, str) and f in allowed for f in value)
        or len(set(value)) != len(value)
    ):
        raise bad_argument(
            "features", f"a non-empty list of distinct features from {list(FEATURES)}", value
        )
    return list(value)
