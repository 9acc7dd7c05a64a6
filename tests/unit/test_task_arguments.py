"""Task arguments as another service may send them by name: any wrong type, id, size, count,
unknown or missing name, or forged retry count is one short permanent failure, never a retry,
and never costs more than a moment of CPU."""

from __future__ import annotations

import gc
import logging
import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from celery import Task
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tasks import reconcile, refresh, sync, tracking, webhooks
from tasks.arguments import ACCOUNT_ID_MAX, EVENT_ID_MAX, KEY_NAME_MAX
from worker.contract import REFRESH_SOURCES
from worker.dispatch import MAX_POLL_ATTEMPT, poll_countdown
from worker.errors import PermanentError
from worker.intents import EVENT_IDS_MAX
from worker.reconcile import MAX_DAYS
from worker.refresh_gate import FEATURES
from worker.settings import get_settings

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


def stripe_ids(prefix: str, longest: int) -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]:
    valid = st.from_regex(rf"{prefix}[A-Za-z0-9]{{1,20}}", fullmatch=True)
    bad = st.one_of(
        JSON.filter(lambda v: not isinstance(v, str)),
        st.text(max_size=30).filter(lambda s: not s.startswith(prefix)),
        st.sampled_from(["acct_1", "fca_", "evt_", "", prefix.upper() + "1", f" {prefix}1"]),
        st.sampled_from(["-", "_", " ", "\x00", "\ud800", "é", "/", "\n"]).map(
            lambda c: f"{prefix}1{c}"
        ),
        # Past the column's length, up to a 200 kB string.
        st.integers(longest - len(prefix) + 1, 200_000).map(lambda n: prefix + "A" * n),
    )
    return valid, bad


def connected_accounts() -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]:
    """`stripe_account`: an acct_ id or null; anything else (an fca_ id too) is refused."""
    valid, bad = stripe_ids("acct_", ACCOUNT_ID_MAX)
    acct = re.compile(r"acct_[A-Za-z0-9]{1,59}", flags=re.ASCII)
    return (
        st.none() | valid,
        bad.filter(lambda v: v is not None and not (isinstance(v, str) and acct.fullmatch(v))),
    )


def event_id_lists() -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]:
    """`event_ids`: a list of 1 to EVENT_IDS_MAX event ids; anything else is refused."""
    valid, bad = stripe_ids("evt_", EVENT_ID_MAX)
    return (
        st.lists(valid, min_size=1, max_size=5),
        st.one_of(
            JSON.filter(lambda v: not isinstance(v, list)),
            st.just([]),
            st.lists(valid, max_size=3).flatmap(
                lambda ids: st.tuples(bad, st.integers(0, len(ids))).map(
                    lambda one: [*ids[: one[1]], one[0], *ids[one[1] :]]
                )
            ),
            # Past the bound, up to 100,000 ids: refused before any id is looked at.
            st.integers(EVENT_IDS_MAX + 1, 100_000).map(lambda n: ["evt_1"] * n),
        ),
    )


def key_names() -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]:
    """`stripe_key`: a configured key's name as FCSYNC_STRIPE_ACCOUNTS spells it (whether one has
    it is the runtime's to say: tests/service/test_stripe_keys_served.py) or null; anything
    else is refused before any unit of work."""
    name = re.compile(rf"[a-z0-9_-]{{1,{KEY_NAME_MAX}}}", flags=re.ASCII)
    return (
        st.none() | st.from_regex(name, fullmatch=True),
        st.one_of(
            JSON.filter(lambda v: v is not None and not isinstance(v, str)),
            st.text(max_size=30).filter(lambda s: not name.fullmatch(s)),
            st.sampled_from(["", "B", "Default", "eu ", " eu", "e.u", "eu\n", "\x00", "é", "/"]),
            # Past the column's length, up to a 200 kB name.
            st.integers(KEY_NAME_MAX + 1, 200_000).map("k".__mul__),
        ),
    )


KINDS: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "account": stripe_ids("fca_", ACCOUNT_ID_MAX),
    "stripe_account": connected_accounts(),
    "stripe_key": key_names(),
    "event": stripe_ids("evt_", EVENT_ID_MAX),
    "events": event_id_lists(),
    "flag": (st.booleans(), JSON.filter(lambda v: not isinstance(v, bool))),
    "source": (
        st.sampled_from(sorted(REFRESH_SOURCES)),
        JSON.filter(lambda v: not (isinstance(v, str) and v in REFRESH_SOURCES)),
    ),
    "days": (
        st.none() | st.integers(1, MAX_DAYS),
        st.one_of(
            st.integers(max_value=0),
            st.integers(min_value=MAX_DAYS + 1),
            st.sampled_from([10**4000, True, False, 7.0, "30"]),
            JSON.filter(lambda v: v is not None and not isinstance(v, int)),
        ),
    ),
    "feature": (
        st.sampled_from(FEATURES),
        JSON.filter(lambda v: not (isinstance(v, str) and v in FEATURES)),
    ),
    "features": (
        st.none()
        | st.permutations(FEATURES).flatmap(
            lambda order: st.integers(1, 3).map(lambda n: list(order[:n]))
        ),
        st.one_of(
            JSON.filter(lambda v: v is not None and not isinstance(v, list)),
            st.sampled_from(
                [
                    [],
                    ["balances", "balances"],
                    ["transactions", "transactions"],
                    ["transactions", "balance"],
                    ["transactions", 1],
                    "transactions",
                ]
            ),
        ),
    ),
    "handoff": (
        st.none() | st.from_regex(r"handoff/[0-9a-f]{32}", fullmatch=True),
        st.one_of(
            JSON.filter(lambda v: v is not None),
            st.sampled_from(["handoff/", "handoff/" + "A" * 32, "handoff/" + "0" * 33]),
            st.integers(33, 200_000).map(lambda n: "handoff/" + "0" * n),
        ),
    ),
    "moment": (
        st.none() | st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
        st.one_of(
            JSON.filter(lambda v: v is not None and not isinstance(v, str)),
            st.datetimes().map(datetime.isoformat),  # no UTC offset: a different moment per host
            st.text(max_size=30).filter(lambda s: not s[:1].isdigit()),
            st.integers(41, 200_000).map(lambda n: "2026-01-01T00:00:00+00:00" + " " * n),
        ),
    ),
    "attempt": (
        st.integers(0, MAX_POLL_ATTEMPT),
        st.one_of(
            st.integers(max_value=-1),
            st.integers(min_value=MAX_POLL_ATTEMPT + 1),
            st.sampled_from([10**9, 10**4000, 10**5000, True, False, 1.0, "1"]),
            JSON.filter(lambda v: not isinstance(v, int)),
        ),
    ),
}

# task -> {argument: (kind, required)}
TASKS: dict[str, tuple[Task[Any, Any], dict[str, tuple[str, bool]]]] = {
    "track": (
        tracking.track_account_task,
        {
            "account_id": ("account", True),
            "subscribe": ("flag", False),
            "stripe_account": ("stripe_account", False),
            "features": ("features", False),
            "stripe_key": ("stripe_key", False),
        },
    ),
    "untrack": (
        tracking.untrack_account_task,
        {
            "account_id": ("account", True),
            "unsubscribe": ("flag", False),
            "stripe_account": ("stripe_account", False),
            "stripe_key": ("stripe_key", False),
        },
    ),
    "refresh": (
        refresh.refresh_account_task,
        {
            "account_id": ("account", True),
            "source": ("source", False),
            "stripe_account": ("stripe_account", False),
            "feature": ("feature", False),
            "stripe_key": ("stripe_key", False),
        },
    ),
    "poll": (
        refresh.poll_refresh_task,
        {
            "account_id": ("account", True),
            "attempt": ("attempt", False),
            "stripe_account": ("stripe_account", False),
            "feature": ("feature", False),
            "stripe_key": ("stripe_key", False),
        },
    ),
    "sync": (
        sync.sync_transactions_task,
        {
            "account_id": ("account", True),
            "full": ("flag", False),
            "stripe_account": ("stripe_account", False),
            "handoff": ("handoff", False),
            "stripe_key": ("stripe_key", False),
        },
    ),
    "event": (webhooks.handle_event_task, {"event_id": ("event", True)}),
    "reconcile": (
        reconcile.reconcile_account_task,
        {
            "account_id": ("account", True),
            "days": ("days", False),
            "stripe_account": ("stripe_account", False),
            "stripe_key": ("stripe_key", False),
        },
    ),
    "reconcile_due": (reconcile.reconcile_due_accounts_task, {}),
    "events": (webhooks.handle_events_task, {"event_ids": ("events", True)}),
    "sweep_events": (webhooks.sweep_events_task, {"since": ("moment", False)}),
    "due": (refresh.refresh_due_accounts_task, {}),
    "stale": (refresh.poll_stale_refreshes_task, {}),
    "resync": (sync.retry_failed_syncs_task, {}),
}


@st.composite
def bad_calls(draw: st.DrawFn) -> tuple[Task[Any, Any], dict[str, Any], int]:
    """A task, its kwargs and a retries header, with at least one flaw; the rest valid or not."""
    task, params = TASKS[draw(st.sampled_from(sorted(TASKS)))]
    # Mostly valid companions, so that each flaw is met alone as often as in company.
    kwargs = {
        name: draw(KINDS[kind][0] if draw(st.integers(0, 4)) else KINDS[kind][1])
        for name, (kind, required) in params.items()
        if required or draw(st.booleans())
    }
    retries = 0
    mandatory = [name for name, (_, required) in params.items() if required]
    flaws = ["unknown", "retries"] + (["value", "value"] if params else [])
    flaws += ["missing"] if mandatory else []
    flaw = draw(st.sampled_from(flaws))
    if flaw == "value":
        name = draw(st.sampled_from(sorted(params)))
        kwargs[name] = draw(KINDS[params[name][0]][1])
    elif flaw == "missing":
        del kwargs[mandatory[0]]
    elif flaw == "unknown":
        key = draw(st.text(min_size=1, max_size=40) | st.integers(41, 100_000).map("k".__mul__))
        kwargs[key if key not in params else key + "_"] = draw(JSON)
    else:
        retries = draw(
            st.integers(max_value=-1)
            | st.integers(min_value=(task.max_retries or 0) + 1)
            | st.sampled_from([10**9, 10**4000, True, "1", 1.5])
        )
    return task, kwargs, retries


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad_calls())
@example((refresh.poll_refresh_task, {"account_id": "fca_1", "attempt": 10**9}, 0))
@example((refresh.poll_refresh_task, {"account_id": "fca_1", "attempt": True}, 0))
@example((refresh.poll_refresh_task, {"account_id": "fca_1"}, 10**9))
@example((tracking.track_account_task, {"account_id": "fca_1", "features": []}, 0))
@example((refresh.refresh_account_task, {"account_id": "fca_1", "feature": "balance"}, 0))
def test_task_arguments_fuzzed_are_one_short_permanent_failure_with_bounded_cpu(
    call: tuple[Task[Any, Any], dict[str, Any], int],
) -> None:
    task, kwargs, retries = call
    # This thread's CPU with the collector paused: a pathological argument costs the same every
    # time, whereas another thread of this test process, or a full collection of a heap other
    # tests left behind, once took CI's process clock past the bound on a valid refusal.
    gc.disable()
    try:
        started = time.thread_time()
        result = task.apply(kwargs=kwargs, retries=retries)
        spent = time.thread_time() - started
    finally:
        gc.enable()
    assert spent < 0.5, "no 2**huge, no megabyte-long message"
    # A retry would surface as celery.exceptions.Retry (state RETRY), not as a FAILURE.
    assert result.state == "FAILURE"
    assert isinstance(result.result, PermanentError), result.result
    assert result.result.code == "bad_argument"
    assert len(str(result.result)) < 400


@pytest.mark.parametrize(
    ("task", "kwargs"),
    [
        (refresh.poll_refresh_task, {"account_id": "fca_1", "attempt": 10**9}),
        (sync.sync_transactions_task, {"account_id": "fca_" + "A" * 1_000_000}),
        (tracking.untrack_account_task, {"account_id": "fca_1", "k" * 100_000: 1}),
    ],
)
def test_task_arguments_bad_one_is_logged_once_short_and_without_traceback(
    task: Task[Any, Any], kwargs: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        result = task.apply(kwargs=kwargs)
    assert result.state == "FAILURE"
    failures = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(failures) == 1, [r.getMessage()[:200] for r in failures]
    assert failures[0].exc_info is None
    assert re.match(rf"bad argument to {re.escape(task.name)}\[", failures[0].getMessage())
    assert len(failures[0].getMessage()) < 400


def test_task_arguments_poll_backoff_is_cheap_for_any_attempt() -> None:
    settings = get_settings()
    started = time.thread_time()
    for attempt in (0, 1, 31, 32, 33, MAX_POLL_ATTEMPT, 10**9):
        countdown = poll_countdown(attempt, settings)
        assert settings.fcsync_poll_initial_s <= countdown <= settings.fcsync_poll_max_s
    assert time.thread_time() - started < 0.5
