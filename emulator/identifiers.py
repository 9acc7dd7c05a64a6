"""Stripe-looking object ids, derived from the seed so the same calls give the same ids.

Transaction ids encode their row position, so looking one up needs no per-row index."""

from __future__ import annotations

import hashlib
import random

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}

# Stripe ids carry 24 characters after the prefix; ours split them into an account tag,
# a fixed-width row position (62**5 > 900 million rows) and a keyed hash.
TAG_WIDTH = 6
POSITION_WIDTH = 5
SUFFIX_WIDTH = 24 - 1 - TAG_WIDTH - POSITION_WIDTH


def base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        digits.append(ALPHABET[rem])
    return "".join(reversed(digits))


def from_base62(text: str) -> int | None:
    number = 0
    for char in text:
        digit = _INDEX.get(char)
        if digit is None:
            return None
        number = number * 62 + digit
    return number


class IdSource:
    """Random-looking ids drawn from one seeded stream, in call order."""

    def __init__(self, seed: int, stream: str) -> None:
        self._rng = random.Random(f"{seed}/{stream}")

    def make(self, prefix: str, length: int = 24) -> str:
        return prefix + "1" + "".join(self._rng.choices(ALPHABET, k=length - 1))


class TransactionIds:
    """Ids of one account's transactions: ascending with row position, verifiable by hash.

    Ascending ids keep "transacted_at desc, id desc" identical to row order."""

    def __init__(self, seed: int, tag: str) -> None:
        self.tag = tag
        self._key = hashlib.blake2b(f"{seed}/{tag}".encode(), digest_size=16).digest()

    def _suffix(self, position: int) -> str:
        digest = hashlib.blake2b(
            position.to_bytes(8, "big"), key=self._key, digest_size=10
        ).digest()
        return base62(int.from_bytes(digest, "big"), SUFFIX_WIDTH)

    def make(self, position: int) -> str:
        return f"fctxn_1{self.tag}{base62(position, POSITION_WIDTH)}{self._suffix(position)}"

    def position(self, transaction_id: str) -> int | None:
        """The row position an id names, or None when it is not one of ours."""
        body = transaction_id[len("fctxn_1") :]
        if not transaction_id.startswith("fctxn_1") or len(body) != 23:
            return None
        if body[:TAG_WIDTH] != self.tag:
            return None
        position = from_base62(body[TAG_WIDTH : TAG_WIDTH + POSITION_WIDTH])
        if position is None or body[TAG_WIDTH + POSITION_WIDTH :] != self._suffix(position):
            return None
        return position


def transaction_tag(transaction_id: str) -> str | None:
    if not transaction_id.startswith("fctxn_1") or len(transaction_id) != len("fctxn_1") + 23:
        return None
    return transaction_id[len("fctxn_1") : len("fctxn_1") + TAG_WIDTH]
