"""Every Prometheus metric fcsync exports, one recording function per event, and how they are
served: prometheus_client's multiprocess mode (a prefork worker's pool processes each write their
own files, the process serving /metrics sums them). Recording never raises into the work."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import ParamSpec
from wsgiref.simple_server import WSGIServer

log = logging.getLogger(__name__)

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# Marks a directory this module made for one process (and its forked pool processes only).
_OWNER_FILE = "fcsync-owner"


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_files(path: Path) -> None:
    """Samples left by processes that are gone: a container restarted on the same volume (or
    /tmp) reuses their pids, and a live process's counter would start from a dead one's."""
    for file in path.glob("*.db"):
        pid = file.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and (int(pid) == os.getpid() or not _is_alive(int(pid))):
            with contextlib.suppress(OSError):
                file.unlink()


def _remove_private_dir(path: Path, owner: int) -> None:
    if os.getpid() == owner:  # a pool process exiting leaves its parent's directory alone
        shutil.rmtree(path, ignore_errors=True)


def _remove_abandoned_private_dirs() -> None:
    """Private directories of processes killed before they could remove theirs (SIGKILL)."""
    for path in Path(tempfile.gettempdir()).glob("fcsync-metrics-*"):
        with contextlib.suppress(OSError, ValueError):
            owner = int((path / _OWNER_FILE).read_text())
            if not _is_alive(owner):
                shutil.rmtree(path, ignore_errors=True)


def _choose_multiprocess_dir() -> None:
    """prometheus_client picks how it stores values when it is first imported, from this
    variable: set it first. An operator's directory is used as given (one per worker: stale
    files are removed from it); without one, or when it names the private directory of the
    process that started this one (`fcsync run`), this process makes its own."""
    given = os.environ.get(MULTIPROC_DIR)
    if given and not (Path(given) / _OWNER_FILE).exists():
        Path(given).mkdir(parents=True, exist_ok=True)
        _remove_stale_files(Path(given))
        return
    _remove_abandoned_private_dirs()
    path = Path(tempfile.mkdtemp(prefix="fcsync-metrics-"))
    (path / _OWNER_FILE).write_text(str(os.getpid()))
    os.environ[MULTIPROC_DIR] = str(path)
    atexit.register(_remove_private_dir, path, os.getpid())


try:
    _choose_multiprocess_dir()
except OSError as exc:
    # No directory, no pool processes' samples: this process's own are still served.
    os.environ.pop(MULTIPROC_DIR, None)
    log.warning("metrics of this process only: no multiprocess directory (%s)", exc)

# After the directory is chosen (above), by design.
from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
    values,
)
from prometheus_client.core import Metric  # noqa: E402
from prometheus_client.registry import REGISTRY, Collector  # noqa: E402
from sqlalchemy import event  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

# Something imported prometheus_client before the directory was chosen (the `celery` command
# loads Flower's plugin, which does): choose its value class again. Metrics made before keep
# theirs; fcsync's, made below, all write to the directory.
if values.ValueClass is values.MutexValue:
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]

# --- Stripe and the request budget -----------------------------------------------------------
STRIPE_REQUESTS = Counter(
    "fcsync_stripe_requests",
    "Stripe API requests by endpoint (templated path) and HTTP status (connection_error: none)",
    ["endpoint", "status"],
)
STRIPE_REQUEST_DURATION = Histogram(
    "fcsync_stripe_request_duration_seconds",
    "Time a Stripe API request took, the SDK's own network retries included",
    ["endpoint"],
)
STRIPE_RATE_LIMITED = Counter(
    "fcsync_stripe_rate_limited",
    "Stripe API requests answered 429 (rate limited), by endpoint",
    ["endpoint"],
)
RATE_LIMITER_WAIT = Histogram(
    "fcsync_rate_limiter_wait_seconds",
    "Time a Stripe request waited for fcsync's shared request budget (0: none)",
    buckets=(0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RATE_LIMITER_REFUSALS = Counter(
    "fcsync_rate_limiter_refusals",
    "Stripe requests not sent because the shared budget was spent too far ahead",
)
# --- Refreshes and syncs ---------------------------------------------------------------------
REFRESHES = Counter(
    "fcsync_refreshes",
    "Transaction refreshes fcsync saw end, by outcome (succeeded, failed)",
    ["outcome"],
)
REFRESH_DURATION = Histogram(
    "fcsync_refresh_duration_seconds",
    "From fcsync requesting a refresh to seeing it end, by outcome",
    ["outcome"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
FEATURE_REFRESHES = Counter(
    "fcsync_feature_refreshes",
    "Refreshes fcsync saw end, by feature (transactions, balances, ownership) and outcome "
    "(succeeded, failed)",
    ["feature", "outcome"],
)
SYNC_PAGES = Counter("fcsync_sync_pages", "Pages of transactions a sync stored")
SYNC_ROWS = Counter(
    "fcsync_sync_rows",
    "Transaction rows a sync wrote, by operation (inserted, updated)",
    ["operation"],
)
RECONCILE_ROWS = Counter(
    "fcsync_reconcile_rows",
    "Transaction rows a reconciliation repaired, by operation (inserted: missing; updated: "
    "differed from Stripe's; vanished: pending rows Stripe no longer lists, marked)",
    ["operation"],
)
RECONCILES = Counter(
    "fcsync_reconciles",
    "Reconciliations that ended, by outcome (reconciled, truncated, gone)",
    ["outcome"],
)
# --- Webhooks --------------------------------------------------------------------------------
WEBHOOK_EVENTS_RECEIVED = Counter(
    "fcsync_webhook_events_received",
    "Webhook deliveries by event type and outcome (stored, duplicate, ignored, rejected, "
    "unavailable)",
    ["type", "outcome"],
)
WEBHOOK_EVENTS_HANDLED = Counter(
    "fcsync_webhook_events_handled",
    "Stored webhook events handled, by type and outcome (processed, ignored, duplicate, failed)",
    ["type", "outcome"],
)
WEBHOOK_TO_ROWS = Histogram(
    "fcsync_webhook_to_rows_seconds",
    "From a refreshed_transactions event's arrival to its refresh's rows being stored",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
EVENTS_SWEPT = Counter(
    "fcsync_events_swept",
    "Events the events sweep read from GET /v1/events, by outcome (stored: missed by webhooks; "
    "duplicate, ignored, rejected)",
    ["outcome"],
)
EVENTS_SWEEP_GAPS = Counter(
    "fcsync_events_sweep_gaps",
    "Events sweeps that found the newest inbox event older than Stripe keeps events (30 days): "
    "events in between can no longer be read back",
)
# --- Celery tasks: the names and labels of danihodovic/celery-exporter -------------------------
_TASK_LABELS = ["name", "hostname", "queue_name"]
CELERY_TASK_SENT = Counter("celery_task_sent", "Task messages published", _TASK_LABELS)
CELERY_TASK_RECEIVED = Counter("celery_task_received", "Tasks a worker received", _TASK_LABELS)
CELERY_TASK_STARTED = Counter("celery_task_started", "Tasks a worker started", _TASK_LABELS)
CELERY_TASK_SUCCEEDED = Counter("celery_task_succeeded", "Tasks that ran to success", _TASK_LABELS)
CELERY_TASK_FAILED = Counter(
    "celery_task_failed", "Tasks that failed, by exception class", [*_TASK_LABELS, "exception"]
)
CELERY_TASK_RETRIED = Counter(
    "celery_task_retried", "Tasks that failed and will be retried", _TASK_LABELS
)
CELERY_TASK_RUNTIME = Histogram(
    "celery_task_runtime", "Run time of tasks that succeeded, in seconds", _TASK_LABELS
)
# The gauges computed from the database at scrape time: worker/fleet_gauges.py.
from worker.fleet_gauges import FleetCollector, FleetSnapshot  # noqa: E402

P = ParamSpec("P")


def _never_raises(record: Callable[P, None]) -> Callable[P, None]:
    """A metric is never worth a failed sync: an error recording one is logged, not raised."""

    def safe(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            record(*args, **kwargs)
        except Exception:
            log.exception("could not record metric %s", record.__name__)

    safe.__name__ = record.__name__
    safe.__doc__ = record.__doc__
    return safe


# Facts found inside a unit of work count once it commits: a rolled-back page was not stored.
_PENDING = "fcsync_metrics_pending"


def _after_commit(session: Session, record: Callable[[], None]) -> None:
    session.info.setdefault(_PENDING, []).append(record)


@event.listens_for(Session, "after_commit")
def _record_committed(session: Session) -> None:
    for record in session.info.pop(_PENDING, ()):
        try:
            record()
        except Exception:
            log.exception("could not record a committed metric")


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)


@_never_raises
def stripe_request(endpoint: str, status: int | None, seconds: float) -> None:
    """One Stripe API call (`status` None: no answer, a connection error)."""
    STRIPE_REQUESTS.labels(endpoint, str(status) if status else "connection_error").inc()
    STRIPE_REQUEST_DURATION.labels(endpoint).observe(seconds)
    if status == 429:
        STRIPE_RATE_LIMITED.labels(endpoint).inc()


@_never_raises
def rate_limiter_waited(seconds: float) -> None:
    RATE_LIMITER_WAIT.observe(seconds)


@_never_raises
def rate_limiter_refused() -> None:
    RATE_LIMITER_REFUSALS.inc()


@_never_raises
def refresh_ended(session: Session, outcome: str, duration_s: float | None) -> None:
    """A refresh seen to end (`duration_s`: since fcsync requested it, None if it did not)."""

    def record() -> None:
        REFRESHES.labels(outcome).inc()
        FEATURE_REFRESHES.labels("transactions", outcome).inc()
        if duration_s is not None:
            REFRESH_DURATION.labels(outcome).observe(max(duration_s, 0.0))

    _after_commit(session, record)


@_never_raises
def feature_refresh_ended(session: Session, feature: str, outcome: str) -> None:
    """A balance or ownership refresh seen to end (transactions': refresh_ended)."""
    _after_commit(session, lambda: FEATURE_REFRESHES.labels(feature, outcome).inc())


@_never_raises
def sync_page_stored(session: Session, inserted: int, updated: int, *, pages: int = 1) -> None:
    def record() -> None:
        SYNC_PAGES.inc(pages)
        SYNC_ROWS.labels("inserted").inc(inserted)
        SYNC_ROWS.labels("updated").inc(updated)

    _after_commit(session, record)


@_never_raises
def reconcile_rows(session: Session, operation: str, count: int) -> None:
    _after_commit(session, lambda: RECONCILE_ROWS.labels(operation).inc(count))


@_never_raises
def reconcile_ended(session: Session, outcome: str) -> None:
    _after_commit(session, lambda: RECONCILES.labels(outcome).inc())


@_never_raises
def rows_stored_after_event(session: Session, seconds: float) -> None:
    _after_commit(session, lambda: WEBHOOK_TO_ROWS.observe(max(seconds, 0.0)))


@_never_raises
def webhook_received(event_type: str | None, outcome: str) -> None:
    WEBHOOK_EVENTS_RECEIVED.labels(event_type or "unknown", outcome).inc()


@_never_raises
def webhook_handled(session: Session, event_type: str, outcome: str) -> None:
    _after_commit(session, lambda: WEBHOOK_EVENTS_HANDLED.labels(event_type, outcome).inc())


@_never_raises
def events_swept(session: Session, outcomes: Mapping[str, int]) -> None:
    def record() -> None:
        for outcome, n in outcomes.items():
            EVENTS_SWEPT.labels(outcome).inc(n)

    _after_commit(session, record)


@_never_raises
def events_sweep_gap() -> None:
    EVENTS_SWEEP_GAPS.inc()


_HOSTNAME = socket.gethostname()


@_never_raises
def celery_task(state: str, name: str, queue: str | None, *, exception: str = "") -> None:
    """One Celery task event (`state`: sent, received, started, succeeded, retried, failed)."""
    labels = (name, _HOSTNAME, queue or "celery")
    if state == "failed":
        CELERY_TASK_FAILED.labels(*labels, exception).inc()
    else:
        _CELERY_COUNTERS[state].labels(*labels).inc()


@_never_raises
def celery_task_runtime(name: str, queue: str | None, seconds: float) -> None:
    CELERY_TASK_RUNTIME.labels(name, _HOSTNAME, queue or "celery").observe(seconds)


_CELERY_COUNTERS = {
    "sent": CELERY_TASK_SENT,
    "received": CELERY_TASK_RECEIVED,
    "started": CELERY_TASK_STARTED,
    "succeeded": CELERY_TASK_SUCCEEDED,
    "retried": CELERY_TASK_RETRIED,
}


class _ThisProcess(Collector):
    """This process's samples alone (no multiprocess directory could be made)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def registry(fleet: Callable[[], FleetSnapshot] | None = None) -> CollectorRegistry:
    """What a /metrics answer holds: every process's samples, plus the fleet's gauges."""
    served = CollectorRegistry()
    if os.environ.get(MULTIPROC_DIR):
        multiprocess.MultiProcessCollector(served)  # type: ignore[no-untyped-call]
    else:
        served.register(_ThisProcess())
    if fleet is not None:
        served.register(FleetCollector(fleet))
    return served


def exposition(served: CollectorRegistry) -> tuple[bytes, str]:
    """The body and content type of a /metrics answer."""
    return generate_latest(served), CONTENT_TYPE_LATEST


def serve(host: str, port: int, served: CollectorRegistry) -> WSGIServer | None:
    """Serve /metrics on a thread of this process; a port in use is logged, never fatal."""
    try:
        server, _ = start_http_server(port, addr=host, registry=served)
    except OSError as exc:
        log.warning("metrics not served on %s:%s: %s", host, port, exc)
        return None
    log.info("metrics served at http://%s:%s/metrics", host, server.server_port)
    return server


def process_exited(pid: int) -> None:
    """A pool process ended: its live gauges go (its counters stay in the sums)."""
    with contextlib.suppress(OSError, TypeError):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
