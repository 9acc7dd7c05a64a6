"""Balances and owners as Stripe shapes them: the balance a balance refresh reports, the owners
of an account, and the ownership snapshots (`fcaowns_...`) each ownership refresh takes of them,
paged by the owners endpoint."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from emulator import errors
from emulator.identifiers import ALPHABET
from emulator.paging import list_object, page_by_id

OWNER_FIELDS = ("name", "email", "phone", "raw_address")
FIRST_NAMES = ("Jenny", "Ada", "Grace", "Alan", "Katherine", "Linus")
LAST_NAMES = ("Rosen", "Lovelace", "Hopper", "Turing", "Johnson", "Torvalds")


def owners_path(account_id: str) -> str:
    return f"/v1/financial_connections/accounts/{account_id}/owners"


def default_owners(seed: int, account_id: str) -> list[dict[str, str | None]]:
    """One or two owners, the same for the same seed and account."""
    rng = random.Random(f"{seed}/{account_id}/owners")
    owners: list[dict[str, str | None]] = []
    for _ in range(1 + (rng.random() < 0.4)):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        owners.append(
            {
                "name": f"{first} {last}",
                "email": f"{first.lower()}.{last.lower()}@example.com",
                "phone": f"+1555{rng.randrange(10**7):07d}",
                "raw_address": f"{rng.randrange(1, 999)} Main Street, Springfield",
            }
        )
    return owners


def balance_at(as_of: int, shape: dict[str, Any] | None, amount: int) -> dict[str, Any]:
    """The balance object a refresh completing at `as_of` reports: the shape the control API
    set (type, current, cash / credit), else a cash balance of `amount` US cents."""
    if shape is None:
        return {
            "as_of": as_of,
            "cash": {"available": {"usd": amount}},
            "current": {"usd": amount},
            "type": "cash",
        }
    return {"as_of": as_of, **shape}


@dataclass
class Ownership:
    id: str
    created: int
    owners: list[dict[str, Any]]

    def render(self, account_id: str) -> dict[str, Any]:
        """The expanded `ownership` of an account (`expand[]=ownership`)."""
        return {
            "id": self.id,
            "object": "financial_connections.account_ownership",
            "created": self.created,
            "owners": list_object(
                list(self.owners), False, f"{owners_path(account_id)}?ownership={self.id}"
            ),
        }


@dataclass
class Ownerships:
    """The ownership snapshots of one account, oldest first; owners keep their ids across
    snapshots only when nothing about them changed, as a new refresh re-reads them."""

    seed: int
    account_id: str
    # What the institution currently reports (the next refresh's owners).
    current: list[dict[str, str | None]]
    snapshots: dict[str, Ownership] = field(default_factory=dict)

    def take(self, at: int) -> Ownership:
        seq = len(self.snapshots) + 1
        rng = random.Random(f"{self.seed}/{self.account_id}/ownership/{seq}")
        ownership_id = "fcaowns_1" + "".join(rng.choices(ALPHABET, k=23))
        owners = [
            {
                "id": "fcaown_1" + "".join(rng.choices(ALPHABET, k=23)),
                "object": "financial_connections.account_owner",
                "email": owner.get("email"),
                "name": owner["name"],
                "ownership": ownership_id,
                "phone": owner.get("phone"),
                "raw_address": owner.get("raw_address"),
                "refreshed_at": at,
            }
            for owner in self.current
        ]
        snapshot = Ownership(ownership_id, at, owners)
        self.snapshots[ownership_id] = snapshot
        return snapshot

    def list_owners(self, params: dict[str, Any]) -> dict[str, Any]:
        """GET .../owners?ownership=...: newest last in the snapshot's order, paged by id."""
        snapshot = self.snapshots.get(params["ownership"])
        if snapshot is None:
            raise errors.no_such("ownership", params["ownership"], param="ownership", status=400)
        # page() walks keys newest first from the end: list the first owner first.
        keys = list(range(len(snapshot.owners)))
        position = {o["id"]: len(keys) - 1 - i for i, o in enumerate(snapshot.owners)}
        ordered = list(reversed(snapshot.owners))
        chosen, has_more = page_by_id(keys, params, position, "owner", lambda _: True)
        return list_object(
            [ordered[p] for p in chosen],
            has_more,
            owners_path(self.account_id),
        )


def check_owners(value: object) -> list[dict[str, str | None]]:
    """Owners as the control API takes them: a list of {name, email?, phone?, raw_address?}."""
    if not isinstance(value, list):
        raise ValueError("owners must be a list of objects")
    owners: list[dict[str, str | None]] = []
    for owner in value:
        if not isinstance(owner, dict) or not isinstance(owner.get("name"), str):
            raise ValueError("each owner needs a name (string)")
        unknown = set(owner) - set(OWNER_FIELDS)
        if unknown:
            raise ValueError(f"unknown owner fields: {sorted(unknown)}")
        if not all(v is None or isinstance(v, str) for v in owner.values()):
            raise ValueError("owner fields must be strings or null")
        owners.append({k: owner.get(k) for k in OWNER_FIELDS})
    return owners


def check_balance(value: object) -> dict[str, Any]:
    """A balance shape as the control API takes it (Stripe's, without `as_of`, which the
    refresh sets): type cash with cash.available, or credit with credit.used."""
    if not isinstance(value, dict) or value.get("type") not in ("cash", "credit"):
        raise ValueError("balance needs type cash or credit")
    unknown = set(value) - {"type", "current", "cash", "credit"}
    if unknown:
        raise ValueError(f"unknown balance fields: {sorted(unknown)}")
    for key, inner in (("current", None), ("cash", "available"), ("credit", "used")):
        part = value.get(key)
        if part is None and key != "current":
            continue
        amounts = part.get(inner) if inner is not None and isinstance(part, dict) else part
        if inner is not None and amounts is None:
            continue
        if not isinstance(amounts, dict) or not all(
            isinstance(c, str) and isinstance(a, int) and not isinstance(a, bool)
            for c, a in amounts.items()
        ):
            raise ValueError(f"balance {key} must map currency codes to integer amounts")
    return dict(value)
