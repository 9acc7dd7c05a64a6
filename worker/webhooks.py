"""Stripe webhooks received, framework-free: verify -> dedupe into the inbox.

Receiving never calls Stripe; worker/event_handlers.py routes an inbox event through handlers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from worker import inbox
from worker.errors import ConfigurationError, PermanentError
from worker.event_envelope import is_fc_event_type, read_event
from worker.event_handlers import HANDLERS
from worker.records import FCEvent
from worker.settings import Settings
from worker.stripe_events import parse_event, verify_webhook
from worker.stripe_keys import StripeKeys, stored_key
from worker.stripe_keys_file import load_stripe_keys


@dataclass(frozen=True)
class Receipt:
    """What the HTTP edge answers: 200 for stored, duplicate or ignored events, 400 otherwise.

    `enqueue` is true only for a newly stored event that a handler will process."""

    status: int
    event_id: str | None = None
    account_id: str | None = None
    event_type: str | None = None
    duplicate: bool = False
    error: str | None = None
    code: str | None = None
    ignored: str | None = None
    enqueue: bool = False

    @property
    def outcome(self) -> str:
        """What became of the delivery: rejected, duplicate, ignored or stored."""
        if self.status != 200:
            return "rejected"
        if self.duplicate:
            return "duplicate"
        return "ignored" if self.ignored else "stored"


@dataclass(frozen=True)
class Verified:
    """A signed Financial Connections event to store, and what to answer once it is."""

    event: inbox.InboxEvent

    def receipt(self, *, stored: bool) -> Receipt:
        """The answer once the inbox has it: newly `stored`, or a duplicate of a stored one."""
        handled = self.event.outcome is None
        return Receipt(
            200,
            self.event.id,
            self.event.account_id,
            event_type=self.event.type,
            duplicate=not stored,
            ignored=None if handled else "no handler for this event type",
            enqueue=stored and handled,
        )


def read_webhook(
    payload: bytes,
    sig_header: str | None,
    *,
    settings: Settings,
    keys: StripeKeys | None = None,
) -> Receipt | Verified:
    """A delivery checked (signature, then envelope) without the database: the answer when
    there is nothing to store, else the event to store. It belongs to the configured key
    whose signing secret verifies it (`keys`, by default the settings'); none does: 400."""
    keys = keys if keys is not None else load_stripe_keys(settings)
    tolerance = settings.fcsync_webhook_tolerance_s
    try:
        # A missing secret raises ConfigurationError: not the sender's fault, so not a 400.
        match = read_event(
            lambda: keys.match_webhook(
                payload,
                sig_header,
                lambda body, header, secrets: verify_webhook(
                    body, header, secrets, tolerance=tolerance
                ),
            )
        )
    except ConfigurationError:
        raise
    except PermanentError as exc:
        return Receipt(400, error=str(exc), code=exc.code)
    return _check_event(
        match.event,
        payload.decode("utf-8"),
        stripe_key=stored_key(match.key.name),
        refused=match.refused,
    )


def receive_listed_event(
    session: Session,
    body: str,
    *,
    now: datetime,
    stripe_key: str | None = None,
    livemode: bool | None = None,
) -> Receipt:
    """An event read back from Stripe's `GET /v1/events` (the events sweep) with the key
    `stripe_key` (as the columns hold it; its events' `livemode`), through the same checks and
    into the same inbox as a delivered one: only the signature is not there to check, the
    event having come over the authenticated API."""
    try:
        event = read_event(lambda: parse_event(body))[0]
    except PermanentError as exc:
        return Receipt(400, error=str(exc), code=exc.code)
    refused = None
    if livemode is not None and event.livemode != livemode:
        refused = f"{'live' if event.livemode else 'test'}mode event listed with a key of the other"
    checked = _check_event(event, body, stripe_key=stripe_key, refused=refused)
    if isinstance(checked, Receipt):
        return checked
    stored = inbox.insert_webhook_events(session, [checked.event], now=now)
    return checked.receipt(stored=bool(stored))


def _check_event(
    event: FCEvent, body: str, *, stripe_key: str | None, refused: str | None
) -> Receipt | Verified:
    """A verified event's fate: acknowledged without work (the answer), or to be stored once
    by its id (the event to store), with the key it came with. `refused`: why its key must
    never apply it (its mode is not the key's, or a connected account the key does not serve):
    both modes' endpoints may point here, and a 2xx stops Stripe redelivering it for days."""
    if refused is not None:
        return Receipt(200, event.id, event_type=event.type, ignored=refused)
    if not is_fc_event_type(event.type):
        return Receipt(
            200,
            event.id,
            event_type=event.type,
            ignored="not a Financial Connections account event",
        )
    return Verified(
        inbox.InboxEvent(
            id=event.id,
            type=event.type,
            account_id=event.account.id if event.account else None,
            stripe_account=event.stripe_account,
            stripe_key=stripe_key,
            livemode=event.livemode,
            created=event.created,
            payload=body,
            # Kept for the record, with nothing left to do for a type fcsync does not act on.
            outcome=None if event.type in HANDLERS else "ignored",
        )
    )


def receive_webhook(
    session: Session,
    payload: bytes,
    sig_header: str | None,
    *,
    settings: Settings,
    now: datetime,
    keys: StripeKeys | None = None,
) -> Receipt:
    """One delivery read and, when it is to be stored, stored once."""
    read = read_webhook(payload, sig_header, settings=settings, keys=keys)
    if isinstance(read, Receipt):
        return read
    stored = inbox.insert_webhook_events(session, [read.event], now=now)
    return read.receipt(stored=bool(stored))
