"""The events sweep: Stripe's `GET /v1/events` read back into the webhook inbox, through the
receiver's own checks and dedupe, so events a webhook outage lost are handled like delivered
ones. Stripe lists events for 30 days: an older gap is warned about and counted."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from worker import event_handlers, inbox, metrics, repository, webhooks
from worker.intents import HandleEvent, Intent
from worker.settings import Settings
from worker.stripe_gateway import StripeGateway
from worker.stripe_payloads import InvalidStripeResponse

log = logging.getLogger(__name__)

# The financial_connections.account.* types fcsync acts on: the others would be stored only
# to be marked ignored.
SWEPT_TYPES = tuple(sorted(event_handlers.HANDLERS))


@dataclass(frozen=True)
class EventsSweep:
    """What one context's sweep read (`created` after `start`) and what became of it."""

    stripe_account: str | None
    start: int
    outcomes: dict[str, int] = field(default_factory=dict)
    # The newest inbox event is older than Stripe's retention: events in between are lost.
    gap_beyond_retention: bool = False
    intents: tuple[Intent, ...] = ()

    @property
    def listed(self) -> int:
        return sum(self.outcomes.values())

    @property
    def stored(self) -> int:
        return self.outcomes.get("stored", 0)


def contexts_to_sweep(session: Session, stripe_key: str | None = None) -> tuple[str | None, ...]:
    """The Stripe account contexts whose events the key `stripe_key` (as the columns hold it)
    sweeps: None, its own account, then each Connect connected account (acct_...) a tracked FC
    account of the key lives in (Stripe lists a connected account's events only under its
    `Stripe-Account` header)."""
    return (None, *repository.tracked_stripe_accounts(session, stripe_key))


def sweep_events(
    session: Session,
    gateway: StripeGateway,
    *,
    now: datetime,
    settings: Settings,
    stripe_account: str | None = None,
    since: datetime | None = None,
) -> EventsSweep:
    """Page the context's events, as the gateway's key lists them, created since the newest
    inbox event of that key and context (less the overlap), or since `since` when given, into
    the inbox; the intents handle the newly stored ones, as the
    receiver's enqueue does.

    All pages go into one transaction: the list is newest first, so a sweep that committed its
    newer pages and died would leave the inbox's newest event past older ones never read."""
    oldest_listed = inbox.retention_start(now)
    if since is not None:
        # Asked for (`fcsync events sweep --since`): created at `since` or later.
        start = int(since.timestamp()) - 1
        gap = start + 1 < oldest_listed
    else:
        newest = inbox.newest_event_created(session, stripe_account, gateway.stripe_key)
        # An empty inbox (a new install) reads whatever Stripe still holds.
        start = oldest_listed if newest is None else newest - settings.fcsync_events_overlap_s
        gap = newest is not None and newest < oldest_listed
    if gap:
        log.warning(
            "the events sweep should read from %s, longer ago than the %d days Stripe lists "
            "events for: events in between cannot be read back; beat's reconciliation of "
            "account state still catches every refresh",
            datetime.fromtimestamp(start, tz=now.tzinfo).isoformat(),
            inbox.EVENTS_RETENTION.days,
        )
        metrics.events_sweep_gap()
    outcomes: Counter[str] = Counter()
    intents: list[Intent] = []
    starting_after: str | None = None
    seen_last_ids: set[str | None] = set()
    while True:
        page = gateway.list_events_page(
            types=SWEPT_TYPES,
            created_gt=start,
            starting_after=starting_after,
            stripe_account=stripe_account,
        )
        for body in page.bodies:
            receipt = webhooks.receive_listed_event(
                session, body, now=now, stripe_key=gateway.stripe_key, livemode=gateway.livemode
            )
            if receipt.status != 200:
                log.warning(
                    "event from GET /v1/events refused: [%s] %s", receipt.code, receipt.error
                )
            outcomes[receipt.outcome] += 1
            if receipt.enqueue and receipt.event_id:
                intents.append(HandleEvent(receipt.event_id))
        if not page.has_more:
            break
        if page.last_id in seen_last_ids:
            raise InvalidStripeResponse(f"events list does not advance past {page.last_id}")
        seen_last_ids.add(page.last_id)
        starting_after = page.last_id
    if outcomes["stored"]:
        log.info("events sweep stored %d events webhooks had not delivered", outcomes["stored"])
    metrics.events_swept(session, outcomes)
    return EventsSweep(stripe_account, start, dict(outcomes), gap, tuple(intents))
