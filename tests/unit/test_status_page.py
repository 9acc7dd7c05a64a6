"""The receiver's /status page through Flask's test client, over a real migrated database: who may
read it (loopback, the token, proxies), the state filter, and that no secret ever shows."""

from __future__ import annotations

import base64
import re
import tomllib
from datetime import UTC, timedelta
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from pydantic import SecretStr
from werkzeug.datastructures import Headers

from models import Account, AccountFeature, Refresh
from tests.unit.conftest import inbox_session
from worker.http import create_app
from worker.runtime import Runtime
from worker.settings import Settings
from worker.status_page import refusal

TOKEN = "status-token-0123456789abcdef"
REMOTE = {"REMOTE_ADDR": "203.0.113.7"}
FAKE_KEY = "sk_test_51FakeKeyForTheStatusPage0000"
FAKE_WEBHOOK_SECRET = "whsec_FakeSigningSecret0000"
# How long before the page is asked for the seeded refresh was synced.
SYNCED_AGO = timedelta(minutes=9)


def seed(client: FlaskClient) -> None:
    """Four accounts in four states, as fcsync's services leave them; one refresh synced."""
    runtime: Runtime = client.application.extensions["fcsync"]
    now = runtime.clock.now()
    now_ts = int(now.timestamp())
    common: dict[str, Any] = {"created_at": now, "updated_at": now, "subscriptions": []}
    with inbox_session(client) as session:
        session.add_all(
            [
                Account(
                    id="fca_fresh",
                    institution_name="StripeBank",
                    display_name="Checking",
                    permissions=["transactions"],
                    refresh_id="fctxnref_ok",
                    refresh_status="succeeded",
                    refresh_last_attempted_at=now_ts - 600,
                    cursor_refresh_id="fctxnref_ok",
                    cursor_refresh_at=now_ts - 600,
                    last_synced_at=now - SYNCED_AGO,
                    next_due_at=now + timedelta(hours=23),
                    **common,
                ),
                Account(
                    id="fca_failing",
                    permissions=["transactions"],
                    refresh_id="fctxnref_bad",
                    refresh_status="failed",
                    refresh_last_attempted_at=now_ts - 300,
                    next_due_at=now + timedelta(minutes=10),
                    last_error_code="stripe_api_error",
                    last_error_message=(
                        f"Invalid API Key provided: {FAKE_KEY}; signed with {FAKE_WEBHOOK_SECRET}"
                    ),
                    last_error_at=now - timedelta(minutes=5),
                    **common,
                ),
                Account(id="fca_relink", permissions=["balances"], **common),
                Account(id="fca_untracked", tracked=False, permissions=["transactions"], **common),
            ]
        )
        session.flush()
        session.add(
            Refresh(
                id="fctxnref_ok",
                account_id="fca_fresh",
                source="beat",
                status="succeeded",
                completed_at=now - timedelta(minutes=10),
                synced_at=now - SYNCED_AGO,
                inserted=42,
                updated=3,
            )
        )


@pytest.fixture
def page(receiver_runtime: Runtime) -> FlaskClient:
    """The receiver without FCSYNC_STATUS_TOKEN, over four seeded accounts."""
    client = create_app(receiver_runtime).test_client()
    seed(client)
    return client


@pytest.fixture
def guarded(receiver_runtime: Runtime, receiver_settings: Settings) -> FlaskClient:
    """The receiver with FCSYNC_STATUS_TOKEN set."""
    settings = receiver_settings.model_copy(update={"fcsync_status_token": SecretStr(TOKEN)})
    runtime = Runtime(settings, send=receiver_runtime.send, engine=receiver_runtime.engine)
    return create_app(runtime).test_client()


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"ops:{password}".encode()).decode()}


def test_status_page_answers_loopback_clients_without_a_token(page: FlaskClient) -> None:
    response = page.get("/status")
    assert response.status_code == 200, response.text
    html = response.text
    for account in ("fca_fresh", "fca_failing", "fca_relink", "fca_untracked"):
        assert f'data-account="{account}"' in html
    assert 'data-state="fresh"' in html and 'class="badge state-failing"' in html
    assert "<script" not in html.lower()
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"


def test_status_page_lists_problems_first(page: FlaskClient) -> None:
    html = page.get("/status").text
    order = [html.index(f'data-account="{a}"') for a in ("fca_failing", "fca_relink")]
    order += [html.index(f'data-account="{a}"') for a in ("fca_fresh", "fca_untracked")]
    assert order == sorted(order)


def test_status_page_refuses_remote_clients_when_no_token_is_configured(
    page: FlaskClient,
) -> None:
    response = page.get("/status", environ_base=REMOTE, headers={"Authorization": "Bearer x"})
    assert response.status_code == 403
    assert "FCSYNC_STATUS_TOKEN" in response.text and "fca_" not in response.text


def test_status_page_lets_remote_clients_in_with_the_token(guarded: FlaskClient) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert guarded.get("/status", environ_base=REMOTE, headers=bearer).status_code == 200
    assert guarded.get("/status", environ_base=REMOTE, headers=basic(TOKEN)).status_code == 200
    # Loopback still needs none.
    assert guarded.get("/status").status_code == 200


def test_status_page_refuses_a_wrong_or_missing_token(guarded: FlaskClient) -> None:
    wrong = guarded.get("/status", environ_base=REMOTE, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and "wrong token" in wrong.text
    wrong_basic = guarded.get("/status", environ_base=REMOTE, headers=basic(TOKEN + "x"))
    assert wrong_basic.status_code == 403
    # A token that is a prefix of the right one is wrong too.
    prefix = {"Authorization": f"Bearer {TOKEN[:-1]}"}
    assert guarded.get("/status", environ_base=REMOTE, headers=prefix).status_code == 403
    missing = guarded.get("/status", environ_base=REMOTE)
    assert missing.status_code == 401
    assert 'Basic realm="fcsync status"' in missing.headers.getlist("WWW-Authenticate")[0]
    assert TOKEN not in missing.text + wrong.text


@pytest.mark.parametrize(
    "header",
    [
        {"X-Forwarded-For": "198.51.100.9"},
        {"Forwarded": "for=198.51.100.9"},
        {"X-Real-IP": "198.51.100.9"},
    ],
)
def test_status_page_never_takes_a_proxied_request_for_a_loopback_one(
    page: FlaskClient, guarded: FlaskClient, header: dict[str, str]
) -> None:
    # A reverse proxy on the same host connects from 127.0.0.1 on behalf of anyone.
    refused = page.get("/status", headers=header)
    assert refused.status_code == 403 and "proxy" in refused.text
    assert guarded.get("/status", headers=header).status_code == 401
    token = {**header, "Authorization": f"Bearer {TOKEN}"}
    assert guarded.get("/status", headers=token).status_code == 200


def test_status_page_filters_by_state(page: FlaskClient) -> None:
    html = page.get("/status?state=failing").text
    assert 'data-account="fca_failing"' in html
    assert 'data-account="fca_fresh"' not in html and 'data-account="fca_untracked"' not in html
    both = page.get("/status?state=fresh&state=untracked").text
    assert 'data-account="fca_fresh"' in both and 'data-account="fca_untracked"' in both
    assert 'data-account="fca_failing"' not in both
    none = page.get("/status?state=inactive").text
    assert 'data-account="' not in none and "No account is inactive." in none


def test_status_page_counts_no_account_tracked_without_transactions_by_transactions_state(
    page: FlaskClient,
) -> None:
    now = page.application.extensions["fcsync"].clock.now()
    with inbox_session(page) as session:
        for account_id, status in (("fca_balances", "active"), ("fca_balances_off", "inactive")):
            row = Account(
                id=account_id, transactions_tracked=False, status=status, permissions=["balances"]
            )
            row.created_at = row.updated_at = now
            row.subscriptions = []
            session.add(row)
            session.flush()
            session.add(AccountFeature(account_id=account_id, feature="balances"))
    html = page.get("/status").text

    legend = re.findall(r'<span class="count[^"]*">(\d+)</span>\s*<a href="\?state=(\w+)"', html)
    counted = {state: int(n) for n, state in legend if int(n)}
    assert counted == {"failing": 1, "relink_required": 1, "fresh": 1, "untracked": 1}
    section = sections(html)["platform"]
    assert dict(re.findall(r'class="context-count" data-state="(\w+)">(\d+) ', section)) == {
        "failing": "1",
        "relink_required": "1",
        "fresh": "1",
        "untracked": "1",
    }
    assert "(4; 2 tracked without transactions, counted by feature)" in html
    # Still listed, with their balances' own freshness.
    assert 'data-account="fca_balances"' in html and 'data-account="fca_balances_off"' in html


def test_status_page_answers_400_to_an_unknown_state(page: FlaskClient) -> None:
    response = page.get("/status?state=bogus")
    assert response.status_code == 400
    assert "unknown state 'bogus'" in response.text and "relink_required" in response.text


def test_status_page_shows_no_secret(page: FlaskClient) -> None:
    html = page.get("/status").text
    assert "fca_failing" in html and "Invalid API Key provided: sk_***" in html
    assert FAKE_KEY not in html and FAKE_WEBHOOK_SECRET not in html
    assert "FakeKeyForTheStatusPage" not in html and "FakeSigningSecret" not in html


def test_status_page_charts_synced_rows_on_the_day_they_were_synced(page: FlaskClient) -> None:
    runtime: Runtime = page.application.extensions["fcsync"]
    # The UTC day of the sync: yesterday's, in the first minutes after midnight.
    day = (runtime.clock.now() - SYNCED_AGO).astimezone(UTC).date().isoformat()
    html = page.get("/status").text
    assert html.count('<g class="day"') == 14
    assert f'data-day="{day}" data-inserted="42" data-updated="3"' in html


def test_status_page_labels_its_times_utc(page: FlaskClient) -> None:
    html = page.get("/status").text
    runtime: Runtime = page.application.extensions["fcsync"]
    today = f"{runtime.clock.now().astimezone(UTC):%Y-%m-%d}"
    assert re.search(rf'id="generated">{today} \d\d:\d\d:\d\d UTC<', html)
    assert html.count(" (UTC)</th>") == 3


def test_status_page_template_ships_in_the_wheel() -> None:
    """An installed fcsync (the compose image) has the template: pyproject's package-data
    names every file of worker/templates."""
    root = Path(__file__).resolve().parents[2]
    config = tomllib.loads((root / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["worker"]
    templates = [p.relative_to(root / "worker") for p in (root / "worker/templates").iterdir()]
    assert templates
    for path in templates:
        assert any(fnmatch(str(path), glob) for glob in globs), f"{path} is not package data"


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("172.17.0.1", False),  # Docker's bridge: how a published port reaches a container
        ("", False),
        (None, False),
    ],
)
def test_status_page_loopback_is_the_peer_address_only(address: str | None, loopback: bool) -> None:
    refused = refusal(address, Headers(), None, None)
    assert (refused is None) is loopback
    if refused is not None:
        assert refused.status == 403 and "FCSYNC_STATUS_TOKEN" in refused.message


# Connected accounts' rows: (id, context, tracked); a tracked one lacks the transactions
# permission, so it needs relinking, an untracked one is untracked.
CONNECTED = (
    ("fca_b_relink", "acct_1Beta", True),
    ("fca_a_untracked", "acct_1Alpha", False),
    ("fca_a_relink", "acct_1Alpha", True),
)


@pytest.fixture
def connect(page: FlaskClient) -> FlaskClient:
    """The four platform accounts beside three in two Connect connected accounts."""
    now = page.application.extensions["fcsync"].clock.now()
    with inbox_session(page) as session:
        for account, context, tracked in CONNECTED:
            permissions = ["balances"] if tracked else ["transactions"]
            row = Account(
                id=account, stripe_account=context, tracked=tracked, permissions=permissions
            )
            row.created_at = row.updated_at = now
            row.subscriptions = []
            session.add(row)
    return page


def sections(html: str) -> dict[str, str]:
    """Each context's section of the page, by context name, in the page's order."""
    parts = re.split(r'<section class="context" data-context="([^"]+)"', html)[1:]
    return {parts[i]: parts[i + 1].split("</section>")[0] for i in range(0, len(parts), 2)}


def test_status_page_groups_accounts_by_context_with_counts(connect: FlaskClient) -> None:
    groups = sections(connect.get("/status").text)

    assert list(groups) == ["platform", "acct_1Alpha", "acct_1Beta"]
    assert re.findall(r'data-account="([^"]+)"', groups["platform"]) == [
        "fca_failing",
        "fca_relink",
        "fca_fresh",
        "fca_untracked",
    ]
    assert re.findall(r'data-account="([^"]+)"', groups["acct_1Alpha"]) == [
        "fca_a_relink",
        "fca_a_untracked",
    ]
    counts = dict(
        re.findall(r'class="context-count" data-state="(\w+)">(\d+) ', groups["acct_1Alpha"])
    )
    assert counts == {"relink_required": "1", "untracked": "1"}
    assert dict(re.findall(r'data-state="(\w+)">(\d+) ', groups["acct_1Beta"])) == {
        "relink_required": "1"
    }


def test_status_page_filters_by_context_and_keeps_the_state_filter(connect: FlaskClient) -> None:
    alpha = connect.get("/status?context=acct_1Alpha")
    assert alpha.status_code == 200, alpha.text
    assert list(sections(alpha.text)) == ["acct_1Alpha"]
    # The state links keep the context; the context links keep the states.
    assert 'href="?state=failing&amp;context=acct_1Alpha"' in alpha.text
    both = connect.get("/status?state=relink_required&context=platform").text
    assert re.findall(r'data-account="([^"]+)"', both) == ["fca_relink"]
    assert 'href="?state=relink_required&amp;context=acct_1Beta"' in both


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("acct_1Alpha'<x>", "is not a Stripe account context: give `platform`"),
        ("acct_1Nobody", "no stored account lives in acct_1Nobody"),
    ],
)
def test_status_page_answers_400_to_an_unknown_context(
    connect: FlaskClient, value: str, why: str
) -> None:
    response = connect.get("/status", query_string={"context": value})
    assert response.status_code == 400
    assert response.mimetype == "text/plain"
    assert why in response.text
    assert "stored contexts: platform, acct_1Alpha, acct_1Beta" in response.text


def test_status_page_says_when_stripe_asks_for_a_relink(page: FlaskClient) -> None:
    runtime: Runtime = page.application.extensions["fcsync"]
    now = runtime.clock.now()
    with inbox_session(page) as session:
        session.add(
            Account(
                id="fca_expiring",
                permissions=["transactions"],
                subscriptions=[],
                status_details_action="relink_required",
                status_details_cause="access_expired",
                expected_deactivation_date=1_796_000_000,
                created_at=now,
                updated_at=now,
            )
        )
    html = page.get("/status").text

    def row(account: str) -> str:
        start = html[html.index(f'data-account="{account}"') :]
        return start[: start.index("</tr>")]

    assert "relink required by 2026-11-30 00:53:20 (access_expired) UTC" in row("fca_expiring")
    assert "relink" not in row("fca_fresh")


@pytest.fixture
def keyed(page: FlaskClient) -> FlaskClient:
    """The four accounts of `default` beside two reached with the key `eu`, one of them in a
    connected account."""
    now = page.application.extensions["fcsync"].clock.now()
    with inbox_session(page) as session:
        for account, context in (("fca_eu_conn", "acct_1Alpha"), ("fca_eu", None)):
            row = Account(
                id=account, stripe_key="eu", stripe_account=context, permissions=["transactions"]
            )
            row.created_at = row.updated_at = now
            row.subscriptions = []
            session.add(row)
    return page


def keyed_sections(html: str) -> list[tuple[str, str, list[str]]]:
    """Each section's key, context and accounts, in the page's order."""
    found = re.findall(
        r'<section class="context" data-context="([^"]+)" data-key="([^"]+)"(.*?)</section>',
        html,
        re.S,
    )
    return [
        (key, context, re.findall(r'data-account="([^"]+)"', body)) for context, key, body in found
    ]


def test_status_page_of_several_keys_has_a_section_per_key_and_context(
    keyed: FlaskClient,
) -> None:
    html = keyed.get("/status").text

    assert keyed_sections(html) == [
        ("default", "platform", ["fca_failing", "fca_relink", "fca_fresh", "fca_untracked"]),
        ("eu", "platform", ["fca_eu"]),
        ("eu", "acct_1Alpha", ["fca_eu_conn"]),
    ]
    assert 'id="context-eu-acct_1Alpha">Stripe key <span class="mono">eu</span> · ' in html
    assert 'id="key-filter"' in html and 'href="?key=eu"' in html


def test_status_page_filters_by_key_and_keeps_the_other_filters(keyed: FlaskClient) -> None:
    eu = keyed.get("/status?key=eu")
    assert eu.status_code == 200, eu.text
    assert [(k, c) for k, c, _ in keyed_sections(eu.text)] == [
        ("eu", "platform"),
        ("eu", "acct_1Alpha"),
    ]
    assert 'href="?state=failing&amp;key=eu"' in eu.text
    both = keyed.get("/status?state=stale&context=platform&key=eu").text
    assert keyed_sections(both) == [("eu", "platform", ["fca_eu"])]
    assert 'href="?state=stale&amp;context=acct_1Alpha&amp;key=eu"' in both
    assert 'href="?state=stale&amp;context=platform&amp;key=default"' in both
    # "show all states" keeps the context and the key.
    assert 'href="?context=platform&amp;key=eu" id="show-all"' in both


def test_status_page_answers_400_to_an_unknown_key(keyed: FlaskClient) -> None:
    response = keyed.get("/status", query_string={"key": "us<x>"})
    assert response.status_code == 400
    assert response.mimetype == "text/plain"
    assert response.text == (
        "bad ?key=: no configured or stored Stripe key is named 'us<x>'; keys: default, eu.\n"
    )


def test_status_page_of_one_key_names_no_key(page: FlaskClient) -> None:
    html = page.get("/status").text

    assert "data-key=" not in html and 'id="key-filter"' not in html
    assert "Stripe key" not in html
    assert list(sections(html)) == ["platform"]
    # The one key is still a filter that shows everything.
    filtered = page.get("/status?key=default").text
    assert re.findall(r'data-account="([^"]+)"', filtered) == re.findall(
        r'data-account="([^"]+)"', html
    )
    assert page.get("/status?key=eu").status_code == 400


def test_status_page_shows_each_features_freshness(page: FlaskClient) -> None:
    runtime: Runtime = page.application.extensions["fcsync"]
    now = runtime.clock.now()
    now_ts = int(now.timestamp())
    with inbox_session(page) as session:
        session.add_all(
            [
                AccountFeature(
                    account_id="fca_fresh",
                    feature="balances",
                    refresh_status="succeeded",
                    refresh_last_attempted_at=now_ts - 600,
                    refresh_next_available_at=now_ts + 3600,
                    stored_refresh_at=now_ts - 600,
                    next_due_at=now + timedelta(hours=23),
                ),
                AccountFeature(
                    account_id="fca_fresh",
                    feature="ownership",
                    last_error_code="missing_permission",
                    last_error_message=f"the account lacks the ownership permission {FAKE_KEY}",
                    next_due_at=now + timedelta(hours=6),
                ),
            ]
        )
    html = page.get("/status").text

    features = dict(re.findall(r'class="feature" data-feature="(\w+)" data-state="(\w+)"', html))
    assert features == {"balances": "fresh", "ownership": "relink_required"}
    start = html.index('data-feature="balances"')
    balances = html[start : html.index("</div>", start)]
    refreshed = f"{now - timedelta(minutes=10):%Y-%m-%d %H:%M}"
    due = f"{now + timedelta(hours=23):%Y-%m-%d %H:%M}"
    available = f"{now + timedelta(hours=1):%Y-%m-%d %H:%M}"
    assert f'refreshed <span class="when">{refreshed}</span>' in balances
    assert f'next <span class="when">{due}</span>' in balances
    assert f'Stripe allows it from <span class="when">{available}</span>' in balances
    assert "[missing_permission] the account lacks the ownership permission sk_***" in html
    assert FAKE_KEY not in html
    assert html.count(" (UTC)</th>") == 4
    # An account tracked without either feature says so.
    failing = html[html.index('data-account="fca_failing"') :]
    assert failing[: failing.index("</tr>")].count('<span class="muted">not tracked</span>') == 1


def test_status_page_has_no_features_column_when_no_account_tracks_one(page: FlaskClient) -> None:
    html = page.get("/status").text
    assert "Balances, ownership" not in html and 'class="features"' not in html
