"""Financial Connections Sessions: what a Session asks for, the accounts its authentication
flow linked, and how Stripe renders it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from emulator import errors
from emulator.accounts import AccountBook
from emulator.identifiers import IdSource
from emulator.paging import list_object
from emulator.scopes import Scope


@dataclass
class Session:
    id: str
    scope: Scope
    client_secret: str
    account_holder: dict[str, str]
    permissions: list[str]
    filters: dict[str, Any]
    prefetch: list[str]
    limits: dict[str, Any] | None
    manual_entry: dict[str, Any] | None
    return_url: str | None
    accounts: list[str] = field(default_factory=list)


class Sessions:
    """Every session of every scope by id."""

    def __init__(self, ids: IdSource, accounts: AccountBook) -> None:
        self._ids = ids
        self._accounts = accounts
        self._sessions: dict[str, Session] = {}

    def create(self, params: dict[str, Any], scope: Scope) -> Session:
        holder = params["account_holder"]
        kind = holder["type"]
        other = "account" if kind == "customer" else "customer"
        if kind not in holder:
            raise errors.missing(f"account_holder[{kind}]")
        if other in holder:
            raise errors.invalid(
                f"account_holder[{other}]",
                f"account_holder[{other}] cannot be set when account_holder[type] is {kind}.",
            )
        if not params["permissions"]:
            raise errors.missing("permissions")
        session_id = self._ids.make("fcsess_")
        session = Session(
            id=session_id,
            scope=scope,
            client_secret=f"{session_id}_secret_{self._ids.make('', 24)}",
            account_holder=dict(holder),
            permissions=list(dict.fromkeys(params["permissions"])),
            filters=params.get("filters", {"countries": ["US"]}),
            prefetch=list(dict.fromkeys(params.get("prefetch", []))),
            limits=params.get("limits"),
            manual_entry=params.get("manual_entry"),
            return_url=params.get("return_url"),
        )
        self._sessions[session_id] = session
        return session

    def find(self, session_id: str) -> Session | None:
        """The session of any scope, as the control API sees it."""
        return self._sessions.get(session_id)

    def get(self, session_id: str, scope: Scope) -> Session:
        """The session as a request in `scope` sees it: other scopes' objects do not exist."""
        session = self._sessions.get(session_id)
        if session is None or session.scope != scope:
            raise errors.no_such("financial connections session", session_id, param="session")
        return session

    def render(self, session: Session) -> dict[str, Any]:
        rendered: dict[str, Any] = {
            "id": session.id,
            "object": "financial_connections.session",
            "account_holder": dict(session.account_holder),
            "accounts": list_object(
                [account.render() for a in session.accounts if (account := self._accounts.get(a))],
                False,
                "/v1/financial_connections/accounts",
            ),
            "client_secret": session.client_secret,
            "filters": session.filters,
            "livemode": session.scope.livemode,
            "permissions": list(session.permissions),
            "prefetch": list(session.prefetch),
        }
        if session.limits is not None:
            rendered["limits"] = session.limits
        if session.manual_entry is not None:
            rendered["manual_entry"] = session.manual_entry
        if session.return_url is not None:
            rendered["return_url"] = session.return_url
        return rendered
