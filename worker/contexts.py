"""The Stripe account contexts FC accounts live in, as people name them: `platform` (the
platform's own accounts, stripe_account NULL) or a Connect connected account's `acct_...`."""

from __future__ import annotations

import re
from collections.abc import Iterable

PLATFORM = "platform"
# A Connect connected account's id; the accounts.stripe_account column holds 64 characters.
CONNECTED_ACCOUNT_ID = re.compile(r"acct_[A-Za-z0-9]{1,59}")


def context_name(stripe_account: str | None) -> str:
    """How people read a context: `acct_...`, or `platform`."""
    return stripe_account or PLATFORM


def context_order(stripe_account: str | None) -> tuple[bool, str]:
    """A sort key: the platform first, then each connected account by id."""
    return (stripe_account is not None, stripe_account or "")


def unknown_context(name: str, known: Iterable[str | None]) -> str | None:
    """Why `name` names no context of the stored accounts (None when it does): `platform` always
    does; an `acct_...` only when some stored account lives in it, since a filter on any other
    context could only show nothing, which reads as "all fine"."""
    if name == PLATFORM:
        return None
    connected = sorted({s for s in known if s is not None})
    listed = ", ".join([PLATFORM, *connected])
    if not CONNECTED_ACCOUNT_ID.fullmatch(name):
        return (
            f"{name!r} is not a Stripe account context: give `platform` or a Connect connected "
            f"account id (acct_1Abc...); stored contexts: {listed}"
        )
    if name not in connected:
        return f"no stored account lives in {name}; stored contexts: {listed}"
    return None
