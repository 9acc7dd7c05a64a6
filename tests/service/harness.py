"""The emulator as the service tests see it: one frozen-clock emulator, a real gateway over HTTP,
and the few service-level steps (track, refresh, sync) every scenario is built from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from emulator import Emulator, EmulatorControl
from worker import refresh, reports, tracking
from worker.errors import PermanentError
from worker.intents import Intent, SyncDue
from worker.playground.truth import diff_transactions
from worker.settings import Settings
from worker.stripe_gateway import StripeGateway
from worker.sync import SyncStart, SyncStep, abandon_run, start_sync, sync_page

REFRESH_POST = "POST /v1/financial_connections/accounts/{account}/refresh"
RETRIEVE_ACCOUNT = "GET /v1/financial_connections/accounts/{account}"
LIST_TRANSACTIONS = "GET /v1/financial_connections/transactions"
# make_emulator's defaults: a refresh completes 5 s after it starts, the next may start 60 s later.
REFRESH_DELAY_S = 5
REFRESH_COOLDOWN_S = 60


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


class FixedClock:
    """A runtime's clock that moves only when a test moves it (`current`)."""

    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current


@dataclass
class EmulatedFC:
    emulator: Emulator
    control: EmulatorControl
    gateway: StripeGateway
    settings: Settings

    def now(self) -> datetime:
        return at(self.control.now())

    def advance(self, seconds: float) -> datetime:
        return at(self.control.advance(seconds))

    def create_account(self, **spec: Any) -> str:
        return str(self.control.create_account(**spec)["id"])

    def requests(self, template: str) -> int:
        return int(self.control.stats()["requests"].get(template, 0))

    def refresh_posts(self) -> int:
        return self.requests(REFRESH_POST)

    def list_calls(self) -> int:
        return self.requests(LIST_TRANSACTIONS)

    def gating_violations(self) -> int:
        return int(self.control.stats()["gating_violations"])

    def truth(self, account_id: str) -> list[dict[str, Any]]:
        return self.control.transactions(account_id)

    # -- service-level steps, each at the emulator's `now` ---------------------------------

    def track(
        self,
        session: Session,
        account_id: str,
        *,
        subscribe: bool = False,
        stripe_account: str | None = None,
        features: list[str] | None = None,
        expect: tuple[str, ...] = ("tracked", "subscribed"),
    ) -> tracking.TrackResult:
        result = tracking.track_account(
            session,
            self.gateway,
            account_id,
            subscribe=subscribe,
            now=self.now(),
            settings=self.settings,
            stripe_account=stripe_account,
            features=features,
        )
        assert result.outcome in expect, result
        session.commit()
        return result

    def refresh(self, session: Session, account_id: str) -> refresh.PollResult:
        """Ask for a refresh, let it complete, poll it, then wait out the cooldown."""
        decision = refresh.request_refresh(
            session,
            self.gateway,
            account_id,
            source="manual",
            now=self.now(),
            settings=self.settings,
        )
        assert decision.outcome == "started", decision
        session.commit()
        self.advance(REFRESH_DELAY_S)
        polled = refresh.poll_refresh(
            session, self.gateway, account_id, now=self.now(), settings=self.settings
        )
        assert polled.refresh_id == decision.refresh_id
        session.commit()
        self.advance(REFRESH_COOLDOWN_S)
        return polled

    def interrupted_sync(self, session: Session, account_id: str, *, full: bool = False) -> None:
        """Track, refresh, and start a sync whose worker dies before its first page (its lease
        handed back, its target left for the failed-sync sweep)."""
        self.track(session, account_id)
        self.refresh(session, account_id)
        started = start_sync(
            session, account_id, full=full, owner="lost", now=self.now(), settings=self.settings
        )
        assert started.outcome == "started", started
        abandon_run(session, account_id, "lost")

    def store_failed_refresh(self, account_id: str, *, now: datetime) -> None:
        """A refresh POST with fcsync's idempotency key fails after Stripe began executing it
        (the account was inactive for a moment): Stripe keeps that answer under the key, as it
        keeps a 500, and replays it within the key's window."""
        window_s = self.settings.fcsync_failed_refresh_retry_s
        key = refresh.refresh_idempotency_key(account_id, None, now=now, window_s=window_s)
        self.control.set_account_status(account_id, "inactive")
        try:
            self.gateway.refresh_transactions(account_id, stripe_account=None, idempotency_key=key)
        except PermanentError:
            pass
        else:
            raise AssertionError("the refresh of an inactive account did not fail")
        finally:
            self.control.set_account_status(account_id, "active")

    def sync(
        self, session: Session, account_id: str, *, owner: str = "owner-1", full: bool = False
    ) -> tuple[SyncStart, list[SyncStep]]:
        """One whole sync, committed page by page as the task does."""
        start = start_sync(
            session, account_id, full=full, owner=owner, now=self.now(), settings=self.settings
        )
        session.commit()
        running = start.outcome in ("started", "resumed")
        steps = self.finish_sync(session, account_id, owner=owner) if running else []
        return start, steps

    def finish_sync(self, session: Session, account_id: str, *, owner: str) -> list[SyncStep]:
        steps: list[SyncStep] = []
        while not steps or steps[-1].outcome == "page":
            steps.append(
                sync_page(
                    session,
                    self.gateway,
                    account_id,
                    owner=owner,
                    now=self.now(),
                    settings=self.settings,
                )
            )
            session.commit()
            assert len(steps) < 50, "a sync that never finishes"
        return steps

    def mismatches(self, session: Session, account_id: str) -> list[str]:
        """Every difference between the database and Stripe's ground truth (none = synced)."""
        stored = reports.stored_transactions(session, account_id)
        return diff_transactions(stored, self.truth(account_id), limit=0)


def sync_requests(intents: tuple[Intent, ...] | list[Intent]) -> list[SyncDue]:
    return [i for i in intents if isinstance(i, SyncDue)]
