"""Whose objects a request sees: the Stripe account its API key belongs to (the emulator's own
platform, or another one registered through the control API), the key's mode, and the
connected account it acts as (the `Stripe-Account` header)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from emulator import errors
from emulator.identifiers import IdSource

API_KEY = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9_]+$")
STRIPE_ACCOUNT = re.compile(r"^acct_[A-Za-z0-9]+$")
# Every well-formed key that no other platform registered reaches this one, as before there
# were several: existing callers never name it.
DEFAULT_PLATFORM = ""


@dataclass(frozen=True)
class Scope:
    """An object belongs to exactly one scope and is visible only to requests in it; any
    other scope answers 404 `resource_missing`, as Stripe does for another account's ids."""

    livemode: bool = False
    platform: str = DEFAULT_PLATFORM
    # The connected account (`acct_...`) the object belongs to; None: the platform's own.
    stripe_account: str | None = None


def masked(key: str) -> str:
    """A key as Stripe quotes it in errors: its start and end only."""
    return f"{key[:8]}{'*' * 4}{key[-4:]}" if len(key) > 12 else key


class Platforms:
    """The Stripe accounts besides the emulator's own, each reached by its own keys."""

    def __init__(self, ids: IdSource) -> None:
        self._ids = ids
        self._by_key: dict[str, str] = {}
        self._keys: dict[str, list[str]] = {}

    def register(self, keys: list[str], platform_id: str | None = None) -> str:
        """A new platform reached by `keys` (or more keys for an existing one); ValueError for
        a malformed key or id, or a key another platform already has."""
        for key in keys:
            if not API_KEY.match(key):
                raise ValueError(f"not a secret or restricted key: {masked(key)}")
            owner = self._by_key.get(key)
            if owner is not None and owner != platform_id:
                raise ValueError(f"key {masked(key)} already belongs to platform {owner}")
        if platform_id is None:
            platform_id = self._ids.make("acct_", 16)
        elif not STRIPE_ACCOUNT.match(platform_id):
            raise ValueError("id must look like acct_ followed by letters and digits")
        mine = self._keys.setdefault(platform_id, [])
        for key in keys:
            if key not in mine:
                mine.append(key)
            self._by_key[key] = platform_id
        return platform_id

    def known(self, platform_id: str) -> bool:
        return platform_id == DEFAULT_PLATFORM or platform_id in self._keys

    def all(self) -> dict[str, list[str]]:
        """Every registered platform and its keys, in registration order."""
        return {platform: list(keys) for platform, keys in self._keys.items()}

    def scope(self, key: str, stripe_account: str | None) -> Scope:
        """The scope of a request authenticated with `key` (already well-formed) and carrying
        `stripe_account` (the header, if any). A header that cannot name an account is
        refused as Stripe refuses an account the key has no access to."""
        platform = self._by_key.get(key, DEFAULT_PLATFORM)
        livemode = key.split("_")[1] == "live"
        if stripe_account is None or stripe_account == platform:
            return Scope(livemode, platform)
        if not STRIPE_ACCOUNT.match(stripe_account):
            raise errors.StripeError(
                403,
                f"The provided key '{masked(key)}' does not have access to account "
                f"'{stripe_account}' (or that account does not exist). Application access may "
                "have been revoked.",
                code="account_invalid",
            )
        return Scope(livemode, platform, stripe_account)
