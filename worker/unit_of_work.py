"""How every edge runs a service call: one session, one clock reading, errors recorded,
follow-ups sent only after the commit."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from sqlalchemy.orm import Session

from worker import repository
from worker.clock import Clock
from worker.db import session_scope
from worker.errors import ConfigurationError, PermanentError
from worker.records import Followup
from worker.settings import Settings
from worker.stripe_gateway import StripeGateway

log = logging.getLogger(__name__)

R = TypeVar("R")


Dispatch = Callable[[Followup], None]


class UnitOfWork:
    """Runs `work(session, gateway, now)` in one transaction and dispatches its follow-ups."""

    def __init__(
        self,
        settings: Settings,
        gateway_factory: Callable[[], StripeGateway],
        dispatch: Dispatch,
    ) -> None:
        self.settings = settings
        self._gateway_factory = gateway_factory
        self._gateway: StripeGateway | None = None
        self._dispatch = dispatch
        self.clock = Clock(settings.fcsync_clock_url)

    @property
    def gateway(self) -> StripeGateway:
        if self._gateway is None:
            self._gateway = self._gateway_factory()
        return self._gateway

    def reset(self) -> None:
        """Forget per-process resources (after a fork)."""
        self._gateway = None

    def run(
        self,
        account_id: str | None,
        work: Callable[[Session, StripeGateway, datetime], R],
        *,
        record_unknown: bool = False,
    ) -> R:
        """`record_unknown`: a permanent failure about an account fcsync has no row for yet
        gets one (untracked), so `fcsync status` can say why it is missing."""
        try:
            with session_scope() as session:
                result = work(session, self.gateway, self.clock.now())
        except PermanentError as exc:
            log.error("permanent failure for %s: [%s] %s", account_id or "-", exc.code, exc)
            # Our own misconfiguration says nothing about the account: keep its state true.
            if account_id and not isinstance(exc, ConfigurationError):
                self.record_failure(account_id, exc, create=record_unknown)
            raise
        for followup in getattr(result, "followups", ()):
            self.dispatch(followup)
        return result

    def dispatch(self, followup: Followup) -> None:
        self._dispatch(followup)

    def set_dispatch(self, dispatch: Dispatch) -> Dispatch:
        """Route follow-ups elsewhere (the CLI's --inline mode); returns the previous target."""
        previous, self._dispatch = self._dispatch, dispatch
        return previous

    def record_failure(self, account_id: str, exc: PermanentError, *, create: bool = False) -> None:
        now = self.clock.now()
        with session_scope() as session:
            account = repository.get_account(session, account_id)
            if account is None and create:
                account = repository.save_unknown_account(session, account_id, now=now)
            if account is not None:
                repository.record_error(account, exc.code, str(exc), now=now)
