"""The stable task names other services call with `send_task`; changing one breaks callers."""

from __future__ import annotations

TRACK_ACCOUNT = "fcsync.track_account"
UNTRACK_ACCOUNT = "fcsync.untrack_account"
REFRESH_ACCOUNT = "fcsync.refresh_account"
POLL_REFRESH = "fcsync.poll_refresh"
SYNC_TRANSACTIONS = "fcsync.sync_transactions"
HANDLE_EVENT = "fcsync.handle_event"
HANDLE_EVENTS = "fcsync.handle_events"
REFRESH_DUE_ACCOUNTS = "fcsync.refresh_due_accounts"
POLL_STALE_REFRESHES = "fcsync.poll_stale_refreshes"
RETRY_FAILED_SYNCS = "fcsync.retry_failed_syncs"
SWEEP_EVENTS = "fcsync.sweep_events"
RECONCILE_ACCOUNT = "fcsync.reconcile_account"
RECONCILE_DUE_ACCOUNTS = "fcsync.reconcile_due_accounts"

REFRESH_SOURCES = frozenset({"manual", "beat", "webhook", "task", "subscription"})
