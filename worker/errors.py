"""The two roots of every failure fcsync reasons about: retry it, or record it and stop."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """The codes fcsync itself gives failures and records on accounts and events (Stripe's own
    codes, such as `resource_missing`, pass through as Stripe spells them)."""

    BAD_ARGUMENT = "bad_argument"
    UNKNOWN_ACCOUNT = "unknown_account"
    UNKNOWN_EVENT = "unknown_event"
    BAD_EVENT = "bad_event"
    ACCOUNT_INACTIVE = "account_inactive"
    MISSING_PERMISSION = "missing_permission"
    ACCOUNT_GONE = "account_gone"
    REFRESH_FAILED = "refresh_failed"
    REFRESH_STALE = "refresh_stale"
    DATABASE_UNAVAILABLE = "database_unavailable"
    STRIPE_ACCOUNT_MISMATCH = "stripe_account_mismatch"
    ACCOUNT_TRACKED = "account_tracked"
    TRANSACTIONS_NOT_TRACKED = "transactions_not_tracked"
    STRIPE_KEY_MISMATCH = "stripe_key_mismatch"
    # Stripe's code for a 404; here it is the one Stripe code fcsync acts on.
    RESOURCE_MISSING = "resource_missing"


class FcsyncError(Exception):
    """Base class; carries a short machine-readable code next to the message."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code or type(self).__name__

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class TransientError(FcsyncError):
    """Worth retrying later: rate limits, 5xx, lock timeouts, lost connections, DB hiccups."""

    def __init__(
        self, message: str, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class RateLimitedError(TransientError):
    """Stripe answered 429 (or our shared budget is spent); back off before the next call."""


class PermanentError(FcsyncError):
    """Retrying cannot help: bad ids, missing permission, inactive account, other 4xx."""


class ConfigurationError(PermanentError):
    """A required setting is missing or malformed."""


class StripeAccountMismatch(PermanentError):
    """A request named a Stripe account context the stored account does not live in: the
    request is wrong, not the account (nothing is recorded on it, nothing is sent to Stripe)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=ErrorCode.STRIPE_ACCOUNT_MISMATCH)


class StripeKeyMismatch(PermanentError):
    """A request named another configured Stripe key than the one the stored account is
    reached with: the request is wrong, not the account (nothing recorded, nothing sent)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=ErrorCode.STRIPE_KEY_MISMATCH)
