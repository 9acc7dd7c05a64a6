"""What one process runs fcsync with: sessions on its database, the Stripe gateway, the clock and
where follow-up work goes; `run` is one transaction, then its intents sent, after the commit."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from worker import failpoints, fleet, lifecycle, log_context, repository
from worker.clock import Clock
from worker.db import get_engine, is_missing_table
from worker.dispatch import followup_for
from worker.errors import (
    ConfigurationError,
    ErrorCode,
    PermanentError,
    StripeAccountMismatch,
    StripeKeyMismatch,
    TransientError,
)
from worker.fleet_gauges import FleetSnapshot
from worker.intents import Intent
from worker.ratelimit import limiter_for
from worker.records import Followup
from worker.redaction import redact
from worker.settings import Settings
from worker.stripe_gateway import StripeGateway, gateway_for_key
from worker.stripe_keys import (
    DEFAULT,
    StripeKeys,
    UnknownStripeKeyError,
    key_name,
    stored_key,
)
from worker.stripe_keys_file import load_stripe_keys

log = logging.getLogger(__name__)

R = TypeVar("R")

Send = Callable[[Followup], None]
# Many follow-ups at once: one broker round trip where the broker allows it (worker/app.py).
SendMany = Callable[[Sequence[Followup]], None]
Work = Callable[[Session, StripeGateway, datetime], R]


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
        keys: StripeKeys | None = None,
    ) -> None:
        self.settings = settings
        self.send = send
        self._send_many = send_many
        self.engine = engine if engine is not None else get_engine(settings.database_url)
        self._sessions = sessionmaker(expire_on_commit=False)
        # The configured Stripe keys: STRIPE_API_KEY (`default`) and FCSYNC_STRIPE_ACCOUNTS'.
        self.keys = keys if keys is not None else load_stripe_keys(settings)
        # `gateway`: what the `default` key's gateway is (a test's, e.g. behind a stand-in).
        self._default_factory = gateway
        # One gateway, and one request budget, per key, built on first use (Stripe limits each
        # account on its own); never another one for a key once built, until a fork.
        self._gateways: dict[str, StripeGateway] = {}
        self.clock: Now = clock if clock is not None else Clock(settings.fcsync_clock_url)
        # Who watches the pages of the syncs this runtime runs: the CLI's --inline progress.
        self.on_page = on_page
        failpoints.arm(settings.armed_failpoints)

    def gateway_for(self, name: str = DEFAULT) -> StripeGateway:
        """The gateway of the key `name`, with its own request budget shared by every worker
        process (Redis), or this process alone. An unknown name is UnknownStripeKeyError; the
        `default` key unconfigured is a gateway without a key, which refuses its first call
        (work that never calls Stripe runs without one)."""
        built = self._gateways.get(name)
        if built is not None:
            return built
        if name == DEFAULT and self._default_factory is not None:
            built = self._default_factory()
        else:
            key = (
                None if name == DEFAULT and name not in self.keys.names() else self.keys.named(name)
            )
            api_key = key.api_key.get_secret_value() if key and key.api_key else None
            settings = self.settings
            limiter = limiter_for(
                settings.redis_url, settings.fcsync_requests_per_second, stripe_key=name
            )
            built = gateway_for_key(
                settings,
                api_key,
                stored_key(name),
                limiter=limiter,
                key_origin=key.origin if key is not None else None,
            )
        self._gateways[name] = built
        return built

    @property
    def gateway(self) -> StripeGateway:
        """The `default` key's gateway."""
        return self.gateway_for(DEFAULT)

    def watching_pages(self, on_page: PageHook) -> Runtime:
        """This runtime (same sessions, gateway, clock and dispatch) with a page watcher."""
        watched = copy.copy(self)
        watched.on_page = on_page
        return watched

    def reset(self) -> None:
        """Forget per-process resources (after a fork)."""
        self._gateways = {}

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
        stripe_key: str | None = None,
        key_of: Callable[[Session], str | None] | None = None,
        connection: Connection | None = None,
    ) -> R:
        """`work(session, gateway, now)` in one transaction, then the tasks for its intents.

        The gateway is the one of the account's stored key (`stripe_key`, a name the request
        gives, must be it; an account fcsync has not mirrored takes it, else `default`), or
        of `key_of(session)` (a `stripe_key` column's value) for work about no one account.
        A permanent failure is recorded on the account; `record_unknown` gives an account
        fcsync has no row for yet one (untracked, in the context `stripe_account`, of the key
        `stripe_key`), so `fcsync status` can say why it is missing.
        The account goes on the log lines of the unit of work (task, command) this runs in."""
        if account_id:
            log_context.note(account_id=account_id)
        now = self.clock.now()
        try:
            with self.session(connection) as session:
                if key_of is not None:
                    name = key_name(key_of(session))
                else:
                    name = account_key(
                        session, account_id, stripe_key, self.keys, stripe_account=stripe_account
                    )
                result = work(session, self.gateway_for(name), now)
                notices = lifecycle.pending(session)
        except PermanentError as exc:
            log.error("permanent failure for %s: [%s] %s", account_id or "-", exc.code, exc)
            # Our own misconfiguration, or a request naming the wrong context or key, says
            # nothing about the account: keep its state true.
            if account_id and not isinstance(exc, REQUEST_ERRORS):
                self.record_failure(
                    account_id,
                    exc,
                    create=record_unknown,
                    stripe_account=stripe_account,
                    stripe_key=stripe_key,
                )
            raise
        self.dispatch_all([*getattr(result, "intents", ()), *notices], now=now)
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
        stripe_key: str | None = None,
    ) -> None:
        now = self.clock.now()
        stored = stored_key(stripe_key or DEFAULT)
        with self.session() as session:
            account = repository.get_account(session, account_id)
            if account is None and create:
                account = repository.save_unknown_account(
                    session, account_id, stripe_account=stripe_account, stripe_key=stored, now=now
                )
            elif account is not None and create and account.status == "unknown":
                # Stripe never confirmed it: the row shows the context and key last tried.
                account.stripe_account = stripe_account
                account.stripe_key = stored
            if account is not None:
                repository.record_error(account, exc.code, str(exc), now=now)

    def reads_ahead(self, account_id: str) -> bool:
        """Whether a sync's reading ahead of the account has pages waiting or is fetching."""
        return any(gateway.reads_ahead(account_id) for gateway in self._gateways.values())

    def stop_reading_ahead(self, account_id: str) -> None:
        """A sync run is over, however it ended: its reading ahead makes no further request."""
        for gateway in self._gateways.values():
            gateway.stop_reading_ahead(account_id)


# Failures of the request itself, not facts about the account it names: never recorded on it.
REQUEST_ERRORS = (
    ConfigurationError,
    StripeAccountMismatch,
    StripeKeyMismatch,
    UnknownStripeKeyError,
)


def account_key(
    session: Session,
    account_id: str | None,
    requested: str | None,
    keys: StripeKeys,
    *,
    stripe_account: str | None = None,
) -> str:
    """The key name every Stripe request about the account goes out with: the stored one; for
    an account Stripe never confirmed (or no account), the one the request names, else the
    one whose `stripe_accounts` lists the request's connected account `stripe_account`, else
    `default`. A name no key has is UnknownStripeKeyError; another than the stored one, or a
    key that does not serve the connected account named, StripeKeyMismatch: before anything is
    sent (Stripe would answer 404 for another key's account, and park it as gone)."""
    if requested is not None:
        keys.named(requested)
    account = repository.get_account(session, account_id) if account_id else None
    if account is None or account.status == "unknown":
        name = requested or keys.listing(stripe_account) or DEFAULT
        if name in keys.names() and not keys.named(name).serves(stripe_account):
            raise StripeKeyMismatch(
                f"the Stripe key `{name}` does not serve the connected account {stripe_account}"
                f" (not among its stripe_accounts in {keys.source})"
            )
        if account is not None:
            account.stripe_key = stored_key(name)
        return name
    stored = key_name(account.stripe_key)
    if requested is not None and requested != stored:
        raise StripeKeyMismatch(
            f"account {account.id} is reached with the Stripe key `{stored}`, not `{requested}`"
        )
    return stored


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
