"""Idempotency-Keys, an HTTP-layer concern: a POST's answer kept under its key (per mode) and
replayed for a retry with the same parameters; other parameters under that key are refused."""

from __future__ import annotations

from dataclasses import dataclass

from emulator import errors
from emulator.errors import StripeError

MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True)
class StoredResponse:
    """A POST's outcome kept under its Idempotency-Key, replayed for the same parameters."""

    fingerprint: str
    status: int
    body: bytes
    request_id: str


class IdempotencyKeys:
    """Keys never expire (a simplification): they go only with a reset of the emulator."""

    def __init__(self) -> None:
        self._stored: dict[tuple[bool, str], StoredResponse] = {}

    @staticmethod
    def check(key: str) -> None:
        if len(key) > MAX_IDEMPOTENCY_KEY:
            raise errors.invalid(
                "Idempotency-Key",
                f"Idempotency keys can be at most {MAX_IDEMPOTENCY_KEY} characters long.",
            )

    def replay(self, livemode: bool, key: str, fingerprint: str) -> StoredResponse | None:
        """The answer stored under `key`, or None; refused if it was for other parameters."""
        stored = self._stored.get((livemode, key))
        if stored is not None and stored.fingerprint != fingerprint:
            raise StripeError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request.",
                type_="idempotency_error",
            )
        return stored

    def store(self, livemode: bool, key: str, response: StoredResponse) -> None:
        self._stored[(livemode, key)] = response

    def clear(self) -> None:
        self._stored.clear()
