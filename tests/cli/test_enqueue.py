"""Without --inline, `track`/`untrack`/`refresh`/`sync` only enqueue: the message waits on the
embedded broker until a real `celery worker` on the same broker file does the work."""

from __future__ import annotations

import pytest

from emulator import EmulatorControl
from tests.cli.conftest import Supervisor, Workdir, wait_for
from worker.playground.truth import diff_transactions
from worker.supervisor import worker_argv


def test_track_enqueues_and_a_real_worker_syncs_the_account(
    migrated: Workdir, control: EmulatorControl, children: Supervisor
) -> None:
    account = control.create_account(transactions=150)["id"]

    result = migrated.run("track", account)

    assert result.stdout.startswith("enqueued fcsync.track_account")
    assert migrated.queued() == [
        {
            "task": "fcsync.track_account",
            "args": [],
            "kwargs": {"account_id": account, "subscribe": True},
        }
    ]
    assert migrated.query("SELECT id FROM accounts") == []  # nothing ran in the CLI
    worker = worker_argv(1, name="worker", pool="solo")
    children.spawn("worker", worker, env=migrated.env(), cwd=migrated.path)

    def synced() -> bool:
        truth = control.transactions(account)
        try:
            stored = migrated.stored(account)
        except Exception:  # the worker holds the write lock for a moment
            return False
        return bool(stored) and not diff_transactions(stored, truth, limit=1)

    wait_for(synced, timeout=40, what=f"the worker to sync {account}\n{children.logs()}")
    row = migrated.account(account)
    assert row["tracked"] and row["subscribed"]
    assert row["cursor"] == control.account(account)["transaction_refresh"]["id"]


@pytest.mark.parametrize(
    ("args", "task", "kwargs"),
    [
        (["untrack", "fca_q"], "fcsync.untrack_account", {"unsubscribe": True}),
        (["untrack", "fca_q", "--keep-subscription"], "fcsync.untrack_account",
         {"unsubscribe": False}),
        (["refresh", "fca_q"], "fcsync.refresh_account", {"source": "manual"}),
        (["sync", "fca_q", "--full"], "fcsync.sync_transactions", {"full": True}),
        (["track", "fca_q", "--no-subscribe"], "fcsync.track_account", {"subscribe": False}),
        (["track", "fca_q", "--stripe-account", "acct_1Q"], "fcsync.track_account",
         {"subscribe": True, "stripe_account": "acct_1Q"}),
        (["sync", "fca_q", "--stripe-account", "acct_1Q"], "fcsync.sync_transactions",
         {"full": False, "stripe_account": "acct_1Q"}),
    ],
)  # fmt: skip
def test_commands_without_inline_put_the_named_task_on_the_broker(
    migrated: Workdir, args: list[str], task: str, kwargs: dict[str, object]
) -> None:
    workdir = migrated
    workdir.insert_account("fca_q")  # `refresh` and `sync` refuse accounts fcsync never saw
    result = workdir.run(*args, STRIPE_API_KEY=None)  # enqueueing needs no Stripe key

    assert result.stdout.startswith(f"enqueued {task}")
    assert workdir.queued() == [
        {"task": task, "args": [], "kwargs": {"account_id": "fca_q", **kwargs}}
    ]


@pytest.mark.parametrize("bad", ["fca_1", "acct_", "acct_1-2", "ACCT_1", "acct_" + "a" * 60])
def test_a_malformed_stripe_account_is_one_usage_line_and_nothing_is_enqueued(
    workdir: Workdir, bad: str
) -> None:
    result = workdir.run("track", "fca_q", "--stripe-account", bad, expect=2)

    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error [bad_stripe_account]: {bad!r} is not a Stripe account id")
    assert workdir.queued() == []
