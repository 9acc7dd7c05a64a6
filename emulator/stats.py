"""What the emulator counts for the control API's /stats: API requests by route and by account,
the faults it injected, the POSTs answered from their Idempotency-Key and the refreshes asked
for too early."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from emulator.faults import Outcome


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    # API requests naming an account (in the path or as `account=`), deleted ones included.
    requests_by_account: Counter[str] = field(default_factory=Counter)
    # The same, by the API key that asked (masked, as Stripe quotes keys): which key reached
    # which account, for callers that hold several keys.
    requests_by_key: Counter[tuple[str, str]] = field(default_factory=Counter)
    # The same, by route: which calls reached each account.
    requests_by_account_route: Counter[tuple[str, str]] = field(default_factory=Counter)
    rate_limited: int = 0
    server_errors: int = 0
    dropped_connections: int = 0
    latency_spikes: int = 0
    # POSTs answered with the answer stored under their Idempotency-Key, by route; the second
    # counter holds those whose previous answer was lost to a dropped connection.
    idempotent_replays: Counter[str] = field(default_factory=Counter)
    replayed_lost_replies: Counter[str] = field(default_factory=Counter)
    gating_violations: int = 0
    # Refreshes asked of an inactive or disconnected account (Stripe answers them 400).
    inactive_refreshes: int = 0

    def count_request(
        self, template: str, account_id: str | None, api_key: str | None = None
    ) -> None:
        self.requests[template] += 1
        if account_id:
            self.requests_by_account[account_id] += 1
            self.requests_by_account_route[(account_id, template)] += 1
            if api_key:
                self.requests_by_key[(api_key, account_id)] += 1

    def count_fault(self, outcome: Outcome) -> None:
        if outcome == "rate_limit":
            self.rate_limited += 1
        elif outcome == "server_error":
            self.server_errors += 1
        elif outcome == "drop":
            self.dropped_connections += 1

    def count_latency_spike(self) -> None:
        self.latency_spikes += 1

    def count_replay(self, template: str, *, lost: bool) -> None:
        self.idempotent_replays[template] += 1
        if lost:
            self.replayed_lost_replies[template] += 1

    def as_json(self, webhooks: dict[str, int]) -> dict[str, Any]:
        return {
            "requests": dict(sorted(self.requests.items())),
            "requests_by_account": dict(sorted(self.requests_by_account.items())),
            "requests_by_key": _nested(self.requests_by_key),
            "requests_by_account_route": _nested(self.requests_by_account_route),
            "rate_limited": self.rate_limited,
            "server_errors": self.server_errors,
            "dropped_connections": self.dropped_connections,
            "latency_spikes": self.latency_spikes,
            "idempotent_replays": dict(sorted(self.idempotent_replays.items())),
            "replayed_lost_replies": dict(sorted(self.replayed_lost_replies.items())),
            "gating_violations": self.gating_violations,
            "inactive_refreshes": self.inactive_refreshes,
            "webhooks": webhooks,
        }


def _nested(counts: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """{(outer, inner): n} as {outer: {inner: n}}, both sorted."""
    nested: dict[str, dict[str, int]] = {}
    for (outer, inner), n in sorted(counts.items()):
        nested.setdefault(outer, {})[inner] = n
    return nested
