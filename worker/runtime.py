"""What one process runs fcsync with: sessions on its database, the Stripe gateway, the clock and
where follow-up work goes; `run` is one transaction, then its intents sent, after the commit."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Protocol, TypedDict, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from worker import failpoints, fleet, log_context, repository, sync
from worker.clock import Clock
from worker.db import get_engine, is_missing_table
from worker.dispatch import followup_for
from worker.errors import (
    ConfigurationError,
    ErrorCode,
    PermanentError,
    StripeAccountMismatch,
    TransientError,
)
from worker.intents import Intent
from worker.metrics import FleetSnapshot
from worker.ratelimit import limiter_for
from worker.records import Followup
from worker.redaction import redact
from worker.settings import Settings
from worker.stripe_gateway import StripeGateway, gateway_from_settings

log = logging.getLogger(__name__)

R = TypeVar("R")

Send = Callable[[Followup], None]
# Many follow-ups at once: one broker round trip where the broker allows it (worker/app.py).
SendMany = Callable[[Sequence[Followup]], None]
Work = Callable[[Session, StripeGateway, datetime], R]


# A sync's commit holds at least this many pages when the run has them to read: each
# commit costs round trips, an fsync and their CPU, which a 2-core machine shares with Stripe's
# side; the reading ahead brings the pages meanwhile, so waiting for them costs no time.
PAGES_A_COMMIT_WAITS_FOR = 5


class SyncReport(TypedDict):
    account: str
    outcome: str
    pages: int
    inserted: int
    updated: int


PageHook = Callable[[dict[str, Any]], None]


class Now(Protocol):
    def now(self) -> datetime: ...


class Runtime:
    """Built once per process (and again after a fork, see `reset`): nothing below it reads the
    global settings or engine, so a test or the CLI's --inline builds its own."""

    def __init__(
        self,
        settings: Settings,
        *,
        send: Send,
        send_many: SendMany | None = None,
        engine: Engine | None = None,
        gateway: Callable[[], StripeGateway] | None = None,
        clock: Now | None = None,
        on_page: PageHook | None = None,
    ) -> None:
        self.settings = settings
        self.send = send
        self._send_many = send_many
        self.engine = engine if engine is not None else get_engine(settings.database_url)
        self._sessions = sessionmaker(expire_on_commit=False)
        self._gateway_factory = gateway or self._default_gateway
        self._gateway: StripeGateway | None = None
        self.clock: Now = clock if clock is not None else Clock(settings.fcsync_clock_url)
        # Who watches the pages of the syncs this runtime runs: the CLI's --inline progress.
        self.on_page = on_page
        failpoints.arm(settings.armed_failpoints)

    def _default_gateway(self) -> StripeGateway:
        # One request budget shared by every worker process (Redis), or this process alone.
        limiter = limiter_for(self.settings.redis_url, self.settings.fcsync_requests_per_second)
        return gateway_from_settings(self.settings, limiter=limiter)

    @property
    def gateway(self) -> StripeGateway:
        if self._gateway is None:
            self._gateway = self._gateway_factory()
        return self._gateway

    def watching_pages(self, on_page: PageHook) -> Runtime:
        """This runtime (same sessions, gateway, clock and dispatch) with a page watcher."""
        watched = copy.copy(self)
        watched.on_page = on_page
        return watched

    def reset(self) -> None:
        """Forget per-process resources (after a fork)."""
        self._gateway = None

    @contextmanager
    def session(
        self, connection: Connection | None = None, *, one_statement: bool = False
    ) -> Iterator[Session]:
        """One unit of work: commit on success, roll back on any exception. A lost or refused
        database connection is a TransientError (retried like a Stripe 5xx); a missing table
        is not: it stays what it is, for the edge to name the migration it needs.

        `connection`: run on this connection (a sync's pages share one) instead of the pool's.
        `one_statement`: the work is a single statement, atomic on its own, so it runs outside
        a transaction (autocommit): no BEGIN and COMMIT round trips around it. Only for work
        that can never grow a second statement it must commit with."""
        session = self._sessions(bind=connection if connection is not None else self.engine)
        try:
            if one_statement:
                session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            yield session
            session.commit()
        except OperationalError as exc:
            session.rollback()
            if is_missing_table(exc):
                raise
            raise _unavailable(exc) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """One connection for several units of work (each `run(..., connection=)` still its own
        transaction); refused, it is a TransientError like a session's."""
        try:
            connection = self.engine.connect()
        except OperationalError as exc:
            raise _unavailable(exc) from exc
        with connection:
            yield connection

    def run(
        self,
        account_id: str | None,
        work: Work[R],
        *,
        record_unknown: bool = False,
        stripe_account: str | None = None,
        connection: Connection | None = None,
    ) -> R:
        """`work(session, gateway, now)` in one transaction, then the tasks for its intents.

        A permanent failure is recorded on the account; `record_unknown` gives an account
        fcsync has no row for yet one (untracked, in the context `stripe_account`), so
        `fcsync status` can say why it is missing.
        The account goes on the log lines of the unit of work (task, command) this runs in."""
        if account_id:
            log_context.note(account_id=account_id)
        now = self.clock.now()
        try:
            with self.session(connection) as session:
                result = work(session, self.gateway, now)
        except PermanentError as exc:
            log.error("permanent failure for %s: [%s] %s", account_id or "-", exc.code, exc)
            # Our own misconfiguration, or a request naming the wrong context, says nothing
            # about the account: keep its state true.
            if account_id and not isinstance(exc, ConfigurationError | StripeAccountMismatch):
                self.record_failure(
                    account_id, exc, create=record_unknown, stripe_account=stripe_account
                )
            raise
        self.dispatch_all(getattr(result, "intents", ()), now=now)
        return result

    def dispatch_all(self, intents: Sequence[Intent], *, now: datetime) -> None:
        """Send the tasks that carry out `intents` at once (timed from `now`)."""
        followups = [
            followup
            for intent in intents
            if (followup := followup_for(intent, settings=self.settings, now=now)) is not None
        ]
        if followups:
            self.send_all(followups)

    def send_all(self, followups: Sequence[Followup]) -> None:
        """A sweep's hundreds of tasks at once (`send_many`, e.g. one Redis pipeline), else each."""
        if self._send_many is not None:
            self._send_many(followups)
        else:
            for followup in followups:
                self.send(followup)

    def dispatch(self, intent: Intent, *, now: datetime | None = None) -> None:
        """Send the task that carries out `intent` (timed from `now`, the work's clock reading)."""
        followup = followup_for(intent, settings=self.settings, now=now or self.clock.now())
        if followup is not None:
            self.send(followup)

    def fleet_snapshot(self) -> FleetSnapshot:
        """The accounts' freshness, as /metrics reports it."""
        with self.session() as session:
            return fleet.snapshot(session, now=self.clock.now())

    def record_failure(
        self,
        account_id: str,
        exc: PermanentError,
        *,
        create: bool = False,
        stripe_account: str | None = None,
    ) -> None:
        now = self.clock.now()
        with self.session() as session:
            account = repository.get_account(session, account_id)
            if account is None and create:
                account = repository.save_unknown_account(
                    session, account_id, stripe_account=stripe_account, now=now
                )
            elif account is not None and create and account.status == "unknown":
                # Stripe never confirmed it: the row shows the context last tried.
                account.stripe_account = stripe_account
            if account is not None:
                repository.record_error(account, exc.code, str(exc), now=now)

    def run_sync(
        self,
        account_id: str,
        *,
        full: bool,
        owner: str,
        stripe_account: str | None = None,
        handoff: str | None = None,
    ) -> SyncReport:
        """Up to FCSYNC_PAGES_PER_RUN pages, committed one at a time or, when the pages read ahead
        arrive faster than they are written, several at once; `on_page` gets the run's report
        after each commit (pages, inserted and updated so far). `stripe_account`, when given,
        must be the account's stored context (the pages always go out in that one)."""
        settings = self.settings
        start = self.run(
            account_id,
            lambda s, gw, now: sync.start_sync(
                s,
                account_id,
                full=full,
                owner=owner,
                now=now,
                settings=settings,
                stripe_account=stripe_account,
                handoff=handoff,
            ),
        )
        # The refresh this sync stores the rows of.
        log_context.note(refresh_id=start.target_refresh_id)
        report: SyncReport = {
            "account": account_id,
            "outcome": start.outcome,
            "pages": 0,
            "inserted": 0,
            "updated": 0,
        }
        if start.outcome in ("busy", "up_to_date"):
            return report
        seen: list[str] = []

        def page_work(remaining: int, first: bool) -> Work[sync.SyncStep]:
            # The run's last page reads nothing ahead: the next run may never come. After the
            # run's first page (committed alone: nothing was read ahead of it), a commit waits
            # for the pages being read ahead, up to PAGES_A_COMMIT_WAITS_FOR.
            wait = 0 if first else min(remaining, PAGES_A_COMMIT_WAITS_FOR) - 1
            return lambda s, gw, now: sync.sync_page(
                s,
                gw,
                account_id,
                owner=owner,
                now=now,
                settings=settings,
                seen_last_ids=seen,
                read_ahead=remaining - 1,
                max_pages=remaining,
                wait_pages=wait,
            )

        try:
            # The run's pages share one connection, each step still its own transaction: a
            # pool checkout per page cost a liveness round trip each (pool_pre_ping).
            with self.connection() as connection:
                while report["pages"] < settings.fcsync_pages_per_run:
                    remaining = settings.fcsync_pages_per_run - report["pages"]
                    work = page_work(remaining, first=report["pages"] == 0)
                    step = self.run(account_id, work, connection=connection)
                    seen.extend(step.last_ids)
                    report["pages"] += step.pages
                    report["inserted"] += step.inserted
                    report["updated"] += step.updated
                    if self.on_page is not None:
                        self.on_page(dict(report))
                    if step.outcome != "page":
                        report["outcome"] = step.outcome
                        return report
                    failpoints.failpoint("sync.after_page")
        except PermanentError:
            self.run(
                account_id,
                lambda s, gw, now: sync.park_failed_run(
                    s, account_id, owner, now=now, settings=settings
                ),
            )
            raise
        except BaseException:
            self.run(account_id, lambda s, gw, now: sync.abandon_run(s, account_id, owner))
            raise
        finally:
            # Whatever ended the run, its reading ahead makes no further request.
            self.gateway.stop_reading_ahead(account_id)
        # Bounded work per run: continue in a fresh message at the back of the queue, so one
        # large backfill never hogs a worker slot or outlives the task time limit, and every
        # other account's task queued meanwhile runs first (round-robin across accounts).
        self.dispatch(
            self.run(
                account_id,
                lambda s, gw, now: sync.continue_run(
                    s, account_id, owner, now=now, settings=settings
                ),
            )
        )
        report["outcome"] = "continued"
        return report


def _unavailable(exc: OperationalError) -> TransientError:
    return TransientError(
        f"database unavailable: {redact(str(exc.orig))}", code=ErrorCode.DATABASE_UNAVAILABLE
    )


# The runtime bound to this context (a test, the CLI's --inline), else the process's own: a
# ContextVar, so binding one never changes what another thread's tasks run with.
_bound: ContextVar[Runtime | None] = ContextVar("fcsync_runtime", default=None)


def bound_runtime() -> Runtime | None:
    return _bound.get()


@contextmanager
def bound(runtime: Runtime) -> Iterator[Runtime]:
    """Tasks called in this context run with `runtime`."""
    token = _bound.set(runtime)
    try:
        yield runtime
    finally:
        _bound.reset(token)
