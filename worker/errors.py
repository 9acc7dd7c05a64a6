"""The two roots of every failure fcsync reasons about: retry it, or record it and stop."""

from __future__ import annotations


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
