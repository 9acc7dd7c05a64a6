"""Idempotency-Keys, an HTTP-layer concern: a POST's answer kept under its key (per scope:
platform, mode and `Stripe-Account`) and replayed for a retry with the same parameters; other
parameters under that key are refused. A stored answer whose delivery was lost (a dropped
connection) is marked so until replayed."""

from __future__ import annotations

from dataclasses import dataclass, replace

from emulator import errors
from emulator.errors import StripeError
from emulator.scopes import Scope

MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True)
class StoredResponse:
    """A POST's outcome kept under its Idempotency-Key, replayed for the same parameters."""

    fingerprint: str
    status: int
    body: bytes
    request_id: str
    # Its last delivery was lost to a dropped connection: the next replay is what recovers it.
    lost: bool = False


class IdempotencyKeys:
    """Keys never expire (a simplification): they go only with a reset of the emulator."""

    def __init__(self) -> None:
        self._stored: dict[tuple[Scope, str], StoredResponse] = {}

    @staticmethod
    def check(key: str) -> None:
        if len(key) > MAX_IDEMPOTENCY_KEY:
            raise errors.invalid(
                "Idempotency-Key",
                f"Idempotency keys can be at most {MAX_IDEMPOTENCY_KEY} characters long.",
            )

    def replay(self, scope: Scope, key: str, fingerprint: str) -> StoredResponse | None:
        """The answer stored under `key` (as it stood before this replay delivers it), or None;
        refused if it was for other parameters."""
        stored = self._stored.get((scope, key))
        if stored is None:
            return None
        if stored.fingerprint != fingerprint:
            raise StripeError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request.",
                type_="idempotency_error",
            )
        if stored.lost:
            self._stored[(scope, key)] = replace(stored, lost=False)
        return stored

    def store(self, scope: Scope, key: str, response: StoredResponse) -> None:
        self._stored[(scope, key)] = response

    def mark_lost(self, scope: Scope, key: str) -> None:
        stored = self._stored.get((scope, key))
        if stored is not None:
            self._stored[(scope, key)] = replace(stored, lost=True)

    def clear(self) -> None:
        self._stored.clear()
