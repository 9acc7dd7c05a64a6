"""Several Stripe keys served side by side: an FC account of a second key (the emulator's second
platform) is reached with that key only, its name stored on its rows; a request naming another
key, or none configured, is refused unsent; webhooks go to the key whose secret verifies them;
the events sweep reads each key's own events."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from celery import Task
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from models import Account, Refresh, Transaction, WebhookEvent
from tasks.arguments import KEY_NAME_MAX
from tasks.reconcile import reconcile_account_task
from tasks.refresh import poll_refresh_task, refresh_account_task
from tasks.sync import sync_transactions_task
from tasks.tracking import track_account_task, untrack_account_task
from tasks.webhooks import handle_event_task, sweep_events_task
from tests.emulator.conftest import API_KEY
from tests.service.conftest import WEBHOOK_SECRET, TaskRig
from tests.service.harness import REFRESH_COOLDOWN_S, REFRESH_DELAY_S, EmulatedFC
from tests.service.test_webhooks import receive
from worker import contract
from worker.db import session_scope
from worker.errors import ErrorCode, PermanentError
from worker.inbox import REFRESHED_TRANSACTIONS
from worker.records import Followup
from worker.runtime import Runtime, bound

KEY_B = "sk_test_secondkeyb"
HOOK_B = "whsec_second_key"
# How the emulator's stats name each key (masked as Stripe quotes keys).
SHOWN = {"default": "sk_test_****ator", "b": "sk_test_****keyb"}
HISTORY = 137
# The connected account `b` lists in its stripe_accounts.
TENANT = "acct_1TenantOfB"


@dataclass(kw_only=True)
class TwoKeys(TaskRig):
    fc: EmulatedFC
    platform_b: str

    def requests_by_key(self) -> dict[str, dict[str, int]]:
        return dict(self.fc.control.stats()["requests_by_key"])

    def key_b_account(self, **spec: Any) -> str:
        return str(self.fc.control.create_account(platform=self.platform_b, **spec)["id"])


@pytest.fixture
def two_keys(fc: EmulatedFC, committed_engine: Engine, tmp_path: Path) -> Iterator[TwoKeys]:
    """STRIPE_API_KEY (`default`, the emulator's platform) and `b` (a second platform) from an
    FCSYNC_STRIPE_ACCOUNTS file; the runtime builds each key's gateway itself."""
    platform_b = fc.control.register_platform([KEY_B])
    accounts = tmp_path / "stripe-accounts.toml"
    accounts.write_text(
        f'[accounts.b]\napi_key = "{KEY_B}"\nwebhook_secrets = ["{HOOK_B}"]\n'
        f'stripe_accounts = ["{TENANT}"]\n'
    )
    settings = fc.settings.model_copy(update={"fcsync_stripe_accounts": accounts})
    fc.settings = settings
    sent: list[Followup] = []
    # On the emulator's frozen clock, as Stripe's events are.
    runtime = Runtime(settings, send=sent.append, engine=committed_engine, clock=fc)
    with bound(runtime):
        yield TwoKeys(
            engine=committed_engine, runtime=runtime, sent=sent, fc=fc, platform_b=platform_b
        )


def keys_on(session: Session, model: Any, account_id: str) -> set[str | None]:
    return set(session.scalars(select(model.stripe_key).where(model.account_id == account_id)))


def test_stripe_keys_second_keys_account_is_reached_with_its_key_only(two_keys: TwoKeys) -> None:
    fc = two_keys.fc
    theirs = two_keys.key_b_account(transactions=HISTORY)
    ours = fc.create_account(transactions=20)

    # The key is named once; every later task (beat's, follow-ups) finds it on the stored row.
    assert track_account_task(theirs, stripe_key="b")["outcome"] == "subscribed"
    assert track_account_task(ours)["outcome"] == "subscribed"
    fc.advance(REFRESH_DELAY_S)
    assert poll_refresh_task(theirs)["outcome"] == "succeeded"
    [sync_due] = [
        f for f in two_keys.take(contract.SYNC_TRANSACTIONS) if f.kwargs["account_id"] == theirs
    ]
    assert sync_due.kwargs == {"account_id": theirs}
    report = sync_transactions_task(**sync_due.kwargs)
    assert (report["outcome"], report["inserted"]) == ("done", len(fc.truth(theirs)))
    fc.advance(REFRESH_COOLDOWN_S)
    assert refresh_account_task(theirs, source="manual")["outcome"] == "started"

    by_key = two_keys.requests_by_key()
    assert theirs in by_key[SHOWN["b"]] and theirs not in by_key[SHOWN["default"]]
    assert ours in by_key[SHOWN["default"]] and ours not in by_key[SHOWN["b"]]
    with session_scope(two_keys.engine) as session:
        account = session.get(Account, theirs)
        assert account is not None and account.stripe_key == "b"
        assert account.last_error_code is None
        assert keys_on(session, Refresh, theirs) == {"b"}
        assert keys_on(session, Transaction, theirs) == {"b"}
        # The single key's rows name no key: NULL is `default`.
        assert session.get(Account, ours).stripe_key is None  # type: ignore[union-attr]
        assert keys_on(session, Refresh, ours) == {None}
        assert fc.mismatches(session, theirs) == []


# Every task that takes `stripe_key` (tests/unit/test_task_arguments.py fuzzes its shape).
KEYED_TASKS: tuple[Task[Any, Any], ...] = (
    track_account_task,
    untrack_account_task,
    refresh_account_task,
    poll_refresh_task,
    sync_transactions_task,
    reconcile_account_task,
)
CONFIGURED = ("default", "b")


def test_stripe_keys_fuzzed_name_not_the_stored_one_is_a_logged_permanent_failure_unsent(
    two_keys: TwoKeys, caplog: pytest.LogCaptureFixture
) -> None:
    """A well-formed `stripe_key` that is not the account's stored key (the other configured
    key, or one no key has) on any task: one logged permanent failure, never a retry, no
    follow-up, no Stripe request, nothing recorded on the account."""
    ours = two_keys.fc.create_account(transactions=5)
    theirs = two_keys.key_b_account(transactions=5)
    assert track_account_task(ours, subscribe=False)["outcome"] == "tracked"
    assert track_account_task(theirs, stripe_key="b", subscribe=False)["outcome"] == "tracked"
    stored = {ours: "default", theirs: "b"}
    two_keys.sent.clear()
    requests_before = two_keys.fc.control.stats()["requests"]
    unknown = st.from_regex(rf"[a-z0-9_-]{{1,{KEY_NAME_MAX}}}", fullmatch=True).filter(
        lambda name: name not in CONFIGURED
    )

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.sampled_from(KEYED_TASKS),
        st.sampled_from(sorted(stored)),
        st.sampled_from(CONFIGURED) | unknown,
    )
    def refused(task: Task[Any, Any], account_id: str, name: str) -> None:
        if name == stored[account_id]:
            return
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            result = task.apply(kwargs={"account_id": account_id, "stripe_key": name})
        code = ErrorCode.STRIPE_KEY_MISMATCH if name in CONFIGURED else "unknown_stripe_key"
        # A retry would surface as celery.exceptions.Retry (state RETRY), not as a FAILURE.
        assert result.state == "FAILURE", (task.name, name, result.result)
        assert isinstance(result.result, PermanentError) and result.result.code == code
        [logged] = [r for r in caplog.records if r.levelno >= logging.INFO]
        assert logged.exc_info is None
        assert re.match(rf"permanent failure for {account_id}: \[{code}\]", logged.getMessage())
        assert two_keys.sent == []
        assert two_keys.fc.control.stats()["requests"] == requests_before, "a Stripe request"

    refused()
    with session_scope(two_keys.engine) as session:
        for account_id, name in stored.items():
            account = session.get(Account, account_id)
            assert account is not None and account.last_error_code is None
            assert (account.stripe_key or "default", account.tracked) == (name, True)


def test_stripe_keys_unknown_account_tracked_under_an_unknown_key_stores_nothing(
    two_keys: TwoKeys,
) -> None:
    theirs = two_keys.key_b_account()
    with pytest.raises(PermanentError) as refused:
        track_account_task(theirs, stripe_key="eu")
    assert refused.value.code == "unknown_stripe_key"
    with session_scope(two_keys.engine) as session:
        assert session.get(Account, theirs) is None


def test_stripe_keys_connected_account_listed_by_a_key_is_tracked_with_it(
    two_keys: TwoKeys,
) -> None:
    """Tracking a connected account's FC account without naming the key: the key whose
    `stripe_accounts` lists the connected account; a key that does not serve it is refused."""
    fc = two_keys.fc
    theirs = two_keys.key_b_account(transactions=5, stripe_account=TENANT)
    other = two_keys.key_b_account(transactions=5, stripe_account="acct_1NotListed")

    tracked = track_account_task(theirs, stripe_account=TENANT, subscribe=False)
    assert tracked["outcome"] == "tracked"
    with pytest.raises(PermanentError) as refused:
        track_account_task(other, stripe_account="acct_1NotListed", stripe_key="b")
    assert refused.value.code == ErrorCode.STRIPE_KEY_MISMATCH

    assert theirs in two_keys.requests_by_key()[SHOWN["b"]]
    assert other not in fc.control.stats()["requests_by_account"]
    with session_scope(two_keys.engine) as session:
        account = session.get(Account, theirs)
        assert account is not None
        assert (account.stripe_key, account.stripe_account) == ("b", TENANT)
        assert session.get(Account, other) is None


def event_of(fc: EmulatedFC, key: str, event_type: str) -> dict[str, Any]:
    """The newest event of `event_type` as the key lists it."""
    response = requests.get(
        f"{fc.emulator.base_url}/v1/events",
        params={"type": event_type, "limit": "1"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    response.raise_for_status()
    return dict(response.json()["data"][0])


def finished_refresh_event(two_keys: TwoKeys, account_id: str) -> dict[str, Any]:
    fc = two_keys.fc
    assert refresh_account_task(account_id, source="manual")["outcome"] == "started"
    fc.advance(REFRESH_DELAY_S + REFRESH_COOLDOWN_S)
    return event_of(fc, KEY_B, REFRESHED_TRANSACTIONS)


def test_stripe_keys_webhook_goes_to_the_key_whose_secret_verifies_it(
    two_keys: TwoKeys, session: Session
) -> None:
    fc = two_keys.fc
    theirs = two_keys.key_b_account(transactions=20)
    assert track_account_task(theirs, stripe_key="b", subscribe=False)["outcome"] == "tracked"
    event = finished_refresh_event(two_keys, theirs)

    # Signed with no configured key's secret: 400, nothing stored.
    unsigned = receive(fc, session, event, now=fc.now(), secret="whsec_nobody")
    assert (unsigned.status, unsigned.code) == (400, "signature_invalid")
    # The other mode than the key's: answered 200, never stored.
    live = receive(
        fc,
        session,
        {**event, "id": event["id"] + "live", "livemode": True},
        now=fc.now(),
        secret=HOOK_B,
    )
    assert live.status == 200 and live.ignored and not live.enqueue
    assert session.scalars(select(WebhookEvent.id)).all() == []

    # The same event signed with `default`'s secret names an account of `b`: kept, ignored.
    stray = {**event, "id": event["id"] + "stray"}
    assert receive(fc, session, stray, now=fc.now(), secret=WEBHOOK_SECRET).enqueue
    assert handle_event_task(stray["id"])["outcome"] == "ignored"
    row = session.get(WebhookEvent, stray["id"])
    assert row is not None and row.stripe_key is None
    assert row.error is not None and row.error.startswith("[stripe_key_mismatch]")

    stored = receive(fc, session, event, now=fc.now(), secret=HOOK_B)
    assert stored.enqueue
    assert handle_event_task(event["id"])["outcome"] == "processed"
    session.expire_all()
    row = session.get(WebhookEvent, event["id"])
    assert row is not None and row.stripe_key == "b" and row.outcome == "processed"
    assert [f.kwargs for f in two_keys.take(contract.SYNC_TRANSACTIONS)] == [{"account_id": theirs}]


def test_stripe_keys_events_sweep_reads_each_keys_own_events(
    two_keys: TwoKeys, session: Session
) -> None:
    fc = two_keys.fc
    theirs = two_keys.key_b_account(transactions=20)
    ours = fc.create_account(transactions=20)
    assert track_account_task(theirs, stripe_key="b", subscribe=False)["outcome"] == "tracked"
    assert track_account_task(ours, subscribe=False)["outcome"] == "tracked"
    for account_id in (theirs, ours):
        assert refresh_account_task(account_id, source="manual")["outcome"] == "started"
    fc.advance(REFRESH_DELAY_S + REFRESH_COOLDOWN_S)

    report = sweep_events_task()
    # Each key's own account: `default`'s platform, then `b`'s.
    assert report["contexts"] == 2 and report["stored"] >= 2
    rows = session.scalars(select(WebhookEvent).where(WebhookEvent.type == REFRESHED_TRANSACTIONS))
    by_account = {row.account_id: row.stripe_key for row in rows}
    assert by_account == {theirs: "b", ours: None}
    # Each key listed its events with its own key; neither saw the other's.
    handled = [
        handle_event_task(f.kwargs["event_id"]) for f in two_keys.take(contract.HANDLE_EVENT)
    ]
    assert {h["outcome"] for h in handled} <= {"processed", "ignored"}
    synced = {f.kwargs["account_id"] for f in two_keys.take(contract.SYNC_TRANSACTIONS)}
    assert synced == {theirs, ours}


def test_stripe_keys_events_sweep_of_a_key_reads_from_that_keys_newest_event(
    two_keys: TwoKeys, session: Session
) -> None:
    """`default`'s webhooks keep arriving while `b`'s endpoint is down: `b`'s sweep still reads
    back from `b`'s own newest inbox event, not from the newest of any key."""
    fc = two_keys.fc
    theirs = two_keys.key_b_account(transactions=20)
    ours = fc.create_account(transactions=20)
    assert track_account_task(theirs, stripe_key="b", subscribe=False)["outcome"] == "tracked"
    assert track_account_task(ours, subscribe=False)["outcome"] == "tracked"
    missed = finished_refresh_event(two_keys, theirs)
    # Hours later, past the sweep's overlap, `default`'s own event is delivered.
    fc.advance(2 * fc.settings.fcsync_events_overlap_s)
    assert refresh_account_task(ours, source="manual")["outcome"] == "started"
    fc.advance(REFRESH_DELAY_S + REFRESH_COOLDOWN_S)
    assert receive(fc, session, event_of(fc, API_KEY, REFRESHED_TRANSACTIONS), now=fc.now()).enqueue

    assert sweep_events_task()["stored"] >= 1
    row = session.get(WebhookEvent, missed["id"])
    assert row is not None and row.stripe_key == "b"
