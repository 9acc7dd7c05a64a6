"""The receiver's /status page: every account's freshness for a person in a browser, rendered on
the server (HTML and an inline SVG chart, no JavaScript) in a section per Stripe account context,
and who may read it: loopback clients, and any other client that shows FCSYNC_STATUS_TOKEN."""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, render_template, request
from pydantic import SecretStr
from werkzeug.datastructures import Authorization, Headers

from worker import reports
from worker.contexts import PLATFORM, context_name, context_order, unknown_context
from worker.freshness import MEANING, State, in_transactions_freshness
from worker.redaction import redact
from worker.stripe_keys import unknown_key_name

if TYPE_CHECKING:
    from worker.runtime import Runtime

blueprint = Blueprint("status_page", __name__, template_folder="templates")

# Two weeks of bars: a daily refresh rhythm and a missing day both show at a glance.
CHART_DAYS = 14
# Problems first: the page answers "is every account fresh, and if not, why?".
SEVERITY = (
    State.FAILING,
    State.RELINK_REQUIRED,
    State.STALE,
    State.COOLING_DOWN,
    State.REFRESHING,
    State.INACTIVE,
    State.DISCONNECTED,
    State.FRESH,
    State.UNTRACKED,
)
# Headers a reverse proxy adds: behind one, every request comes from the proxy's own address,
# often loopback, so a request that carries any of them is never taken for a loopback client.
FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
TOKEN_SETTING = "FCSYNC_STATUS_TOKEN"
STATE_NAMES = frozenset(state.value for state in State)


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    challenge: bool = False


def refusal(
    remote_addr: str | None,
    headers: Headers,
    authorization: Authorization | None,
    token: SecretStr | None,
) -> Refusal | None:
    """Why this request may not read the page; None when it may. Loopback clients need no
    token; anyone else shows the configured one, as a bearer token or as the password of HTTP
    Basic auth (what a browser asks for by itself; the user name is not checked)."""
    forwarded = [name for name in FORWARDING_HEADERS if name in headers]
    if not forwarded and _is_loopback(remote_addr):
        return None
    expected = token.get_secret_value() if token is not None else ""
    if not expected:
        why = f"it came through a proxy ({', '.join(forwarded)})" if forwarded else "it is remote"
        return Refusal(
            403,
            f"/status answers loopback clients only, and this request is not one: {why}. "
            f"Set {TOKEN_SETTING} to let other clients in with that token.",
        )
    given = _credential(authorization)
    if given is None:
        return Refusal(
            401,
            f"/status needs the token in {TOKEN_SETTING}: send `Authorization: Bearer <token>`, "
            "or give it as the password when the browser asks.",
            challenge=True,
        )
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return Refusal(403, f"wrong token: it does not match {TOKEN_SETTING}.")
    return None


def _is_loopback(remote_addr: str | None) -> bool:
    try:
        address = ipaddress.ip_address(remote_addr or "")
    except ValueError:  # a Unix socket, or no peer address at all
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _credential(authorization: Authorization | None) -> str | None:
    if authorization is None:
        return None
    if authorization.type == "bearer":
        return authorization.token
    if authorization.type == "basic":
        return authorization.password
    return None


@blueprint.get("/status")
def status() -> Response:
    runtime: Runtime = current_app.extensions["fcsync"]
    refused = refusal(
        request.remote_addr,
        request.headers,
        request.authorization,
        runtime.settings.fcsync_status_token,
    )
    if refused is not None:
        response = _text(refused.message, refused.status)
        if refused.challenge:
            response.headers.add("WWW-Authenticate", 'Basic realm="fcsync status", charset="UTF-8"')
            response.headers.add("WWW-Authenticate", 'Bearer realm="fcsync status"')
        return response
    wanted = request.args.getlist("state")
    unknown = [name for name in wanted if name not in STATE_NAMES]
    if unknown:
        known = ", ".join(State)
        return _text(f"unknown state {unknown[0]!r}: ?state= takes one of {known}.", 400)
    context = request.args.get("context")
    key = request.args.get("key")
    now = runtime.clock.now()
    with runtime.session() as session:
        rows = reports.account_status(session, now=now)
        days = reports.synced_per_day(session, now=now, days=CHART_DAYS)
    stored = sorted({r["stripe_account"] for r in rows}, key=context_order)
    why = unknown_context(context, stored) if context is not None else None
    if why is not None:
        return _text(f"bad ?context=: {why}.", 400)
    keys = reports.known_keys(runtime.keys.names(), (r["stripe_key"] for r in rows))
    why = unknown_key_name(key, keys) if key is not None else None
    if why is not None:
        return _text(f"bad ?key=: {why}.", 400)
    counts = _counts(rows)
    link = partial(_query, context=context, key=key)
    html = render_template(
        "status.html",
        now=_when(now),
        states=[(s, _label(s), MEANING[s], counts[s], link(wanted=[s])) for s in SEVERITY],
        total=sum(counts.values()),
        # Tracked with balances or ownership only: in no transactions state (see `features`).
        features_only=len(rows) - sum(counts.values()),
        wanted=wanted,
        wanted_labels=[_label(State(name)) for name in wanted],
        context=context,
        contexts=[
            (name, link(wanted=wanted, context=name))
            for name in [PLATFORM, *(s for s in stored if s is not None)]
        ],
        all_contexts=link(wanted=wanted, context=None),
        # Several keys: a section per (key, context), and a filter on the key; one key: none.
        several_keys=len(keys) > 1,
        key=key,
        keys=[(name, link(wanted=wanted, key=name)) for name in keys],
        all_keys=link(wanted=wanted, key=None),
        show_all_states=link(wanted=[]),
        groups=_groups(rows, keys, wanted=wanted, context=context, key=key, now=now),
        # The features column only where some account keeps balances or ownership fresh.
        features=any(r["features"] for r in rows),
        chart=chart(days),
    )
    response = Response(html, 200, mimetype="text/html")
    return _guarded(response)


def _counts(rows: list[dict[str, Any]]) -> dict[State, int]:
    counted = [
        r
        for r in rows
        if in_transactions_freshness(
            tracked=r["tracked"], transactions_tracked=r["transactions_tracked"]
        )
    ]
    return {state: sum(1 for r in counted if r["state"] == state) for state in SEVERITY}


def _query(*, wanted: list[str] | list[State], context: str | None, key: str | None) -> str:
    """A link to the page with these filters, so following one filter keeps the others."""
    pairs = [("state", str(s)) for s in wanted]
    if context is not None:
        pairs.append(("context", context))
    if key is not None:
        pairs.append(("key", key))
    return "?" + urlencode(pairs)


def _groups(
    rows: list[dict[str, Any]],
    keys: list[str],
    *,
    wanted: list[str],
    context: str | None,
    key: str | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """A section per Stripe key and account context (reports.sections' order), each with its
    own counts by state and its accounts, problems first. Each key's platform section is there
    even when empty: it is where a new account lands by default."""
    groups = []
    for section in reports.sections(rows, keys=keys):
        name = context_name(section.stripe_account)
        if (context is not None and name != context) or (
            key is not None and section.stripe_key != key
        ):
            continue
        mine = section.rows
        shown = [r for r in mine if not wanted or r["state"] in wanted]
        shown.sort(key=lambda r: (SEVERITY.index(State(r["state"])), r["id"]))
        counts = _counts(mine)
        groups.append(
            {
                "name": name,
                "key": section.stripe_key,
                "total": len(mine),
                "counts": [(s, _label(s), counts[s]) for s in SEVERITY if counts[s]],
                "accounts": [_account(r, now=now) for r in shown],
            }
        )
    return groups


def _label(state: State) -> str:
    return state.replace("_", " ")


def _text(message: str, status: int) -> Response:
    return _guarded(Response(message + "\n", status, mimetype="text/plain"))


def _guarded(response: Response) -> Response:
    # Account data: never cached on the way; and no script may run on the page, ever.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return response


def _account(row: dict[str, Any], *, now: datetime) -> dict[str, Any]:
    """One status row as the page shows it: every text that may quote Stripe or an error
    passes through the redaction first."""
    state = State(row["state"])
    name = " · ".join(n for n in (row["institution_name"], row["display_name"]) if n)
    outcome = row["refresh_status"] or "none yet"
    # An account no sweep looks at has no next refresh, whatever its row last said.
    unscheduled = state in (State.UNTRACKED, State.DISCONNECTED)
    due = None if unscheduled else row["next_due_at"]
    return {
        "id": row["id"],
        "name": redact(name),
        "state": str(state),
        "state_label": _label(state),
        "reason": redact(row["stale_reason"] or "synced to Stripe's latest refresh"),
        "relink": reports.relink_text(row),
        "outcome": outcome,
        "refresh_id": row["refresh_id"],
        "refreshed_at": _when(row["refresh_last_attempted_at"], seconds=False),
        "next_refresh": _when(due, seconds=False) or "not scheduled",
        "next_refresh_in": _relative(due, now=now) if due is not None else "",
        "transactions": f"{row['transactions']:,}",
        "last_synced": _when(row["last_synced_at"], seconds=False) or "never",
        "last_error": redact(row["last_error"]) if row["last_error"] else "",
        "last_error_at": _when(row["last_error_at"], seconds=False),
        "features": [_feature(name, f, now=now) for name, f in row["features"].items()],
    }


def _feature(name: str, f: dict[str, Any], *, now: datetime) -> dict[str, str]:
    """One optional feature of a status row (balances, ownership) as the page shows it: its
    state, when the data stored was refreshed, when it is due and when Stripe allows it."""
    state = State(f["state"])
    unscheduled = state in (State.UNTRACKED, State.DISCONNECTED)
    due = None if unscheduled else f["next_due_at"]
    available = f["next_refresh_available_at"]
    cooling = available is not None and available > now.timestamp()
    return {
        "name": name,
        "state": str(state),
        "state_label": _label(state),
        "refreshed_at": _when(f["refreshed_at"], seconds=False) or "never",
        "next_refresh": _when(due, seconds=False) or "not scheduled",
        "available_at": _when(available, seconds=False) if cooling else "",
        "last_error": redact(f["last_error"]) if f["last_error"] else "",
    }


def _when(moment: int | datetime | None, *, seconds: bool = True) -> str:
    """A time as the page shows it, in UTC (the page says so): to the minute in the table, so
    a row stays on one screen."""
    if moment is None:
        return ""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, tz=UTC)
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M{':%S' if seconds else ''}}"


def _relative(ts: int, *, now: datetime) -> str:
    delta = datetime.fromtimestamp(ts, tz=UTC) - now
    if abs(delta) < timedelta(minutes=1):
        return "now"
    span = _span(abs(delta))
    return f"in {span}" if delta > timedelta(0) else f"{span} ago"


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} d"


# The chart's drawing box, in SVG units (the SVG scales to the page's width).
CHART_WIDTH, CHART_HEIGHT = 560, 200
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 44, 550, 12, 172


def chart(days: list[reports.DaySynced]) -> dict[str, Any]:
    """Bar geometry for the synced-per-day chart: one stacked bar per day (inserted below,
    updated above), a rounded y scale, and a label under every other day."""
    peak = max((d.inserted + d.updated for d in days), default=0)
    top = _nice_ceiling(peak)
    slot = (PLOT_RIGHT - PLOT_LEFT) / max(len(days), 1)
    height = PLOT_BOTTOM - PLOT_TOP
    bars = []
    for i, d in enumerate(days):
        x = PLOT_LEFT + i * slot + slot * 0.15
        inserted_h = height * d.inserted / top
        updated_h = height * d.updated / top
        bars.append(
            {
                "day": d.day.isoformat(),
                "label": f"{d.day:%m-%d}" if (len(days) - 1 - i) % 2 == 0 else "",
                "inserted": d.inserted,
                "updated": d.updated,
                "x": round(x, 1),
                "width": round(slot * 0.7, 1),
                "center": round(x + slot * 0.35, 1),
                "inserted_y": round(PLOT_BOTTOM - inserted_h, 1),
                "inserted_h": round(inserted_h, 1),
                "updated_y": round(PLOT_BOTTOM - inserted_h - updated_h, 1),
                "updated_h": round(updated_h, 1),
            }
        )
    ticks = [
        {"value": f"{top * k // 4:,}", "y": round(PLOT_BOTTOM - height * k / 4, 1)}
        for k in range(5)
    ]
    return {
        "bars": bars,
        "ticks": ticks,
        "total": sum(d.inserted + d.updated for d in days),
        "days": len(days),
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "left": PLOT_LEFT,
        "right": PLOT_RIGHT,
        "bottom": PLOT_BOTTOM,
    }


def _nice_ceiling(value: int) -> int:
    """The y axis' top: 4 x (1, 2, 2.5 or 5 x 10^n), at least the peak, so ticks are round."""
    step = 1
    while 4 * step < value:
        for factor in (2, 2.5, 2):  # 1 -> 2 -> 5 -> 10 -> 20 -> ...
            step = int(step * factor)
            if 4 * step >= value:
                break
    return 4 * step
