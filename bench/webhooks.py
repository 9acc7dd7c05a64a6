"""Benchmark: signed webhook events per second through the receiver into the inbox, and latency.

Starts the real receiver (`fcsync webhooks`, granian) as a user runs it, on PostgreSQL + Redis
and on the embedded defaults (SQLite + the embedded SQLAlchemy broker), both at once; a load
generator in a process of its own (bench/_webhook_load.py) sends distinct
`financial_connections.account.refreshed_transactions` events, shaped after one the emulator
emitted and signed as Stripe signs them, over keep-alive connections. Rounds alternate between
the stacks (A, B, A, B...); figures are medians of the rounds. After each round every event
must be in the inbox exactly once, answered 200 as new, and named by the queued task messages
exactly once (one message may name several); then a few are resent (200, duplicate, nothing
enqueued) and a few sent badly signed (400, nothing stored). The client's own ceiling (against
a trivial server) is measured too. Prints one JSON object last; exits 1 when a correctness check
fails.

    .venv/bin/python -m bench webhooks [--quick] [--events 4000] [--rounds 3]
        [--connections 16] [--stacks postgresql,sqlite] [--processes 1]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import requests
from celery import Celery
from kombu import Queue
from sqlalchemy import Engine, create_engine, text

from bench._support import POSTGRES_ADMIN_URL
from emulator import Emulator, EmulatorConfig
from worker.db import make_engine, upgrade_database
from worker.playground.emulator_env import free_port, scrubbed_environ
from worker.supervisor import Supervisor

PATH = "/webhooks/stripe"
SECRET = "whsec_bench_webhooks"
API_KEY = "sk_test_bench_webhooks"
EVENT_TYPE = "financial_connections.account.refreshed_transactions"
# A Redis database of this benchmark's own (its queue is counted and cleared there).
REDIS_URL = os.environ.get("FCSYNC_BENCH_WEBHOOKS_REDIS_URL", "redis://127.0.0.1:6379/14")
QUEUE = "fcsync"
TARGET_EVENTS_PER_S = 1_000
TARGET_P99_MS = 50.0
# Resent and badly signed events per round, after the timed stream.
CHECKS = 20


@dataclass
class Receiver:
    """One stack's receiver process and what it writes to."""

    name: str
    db_url: str
    broker_url: str
    env: dict[str, str]
    workdir: Path
    port: int = field(default_factory=free_port)
    supervisor: Supervisor | None = None
    engine: Engine | None = None

    def start(self) -> None:
        upgrade_database(self.db_url)
        # The queue exists before the receiver sends (a worker would have declared it).
        client = Celery("bench-webhooks", broker=self.broker_url)
        with client.connection_for_write() as conn:
            Queue(QUEUE).bind(conn.default_channel).declare()
        client.close()
        self.engine = make_engine(self.db_url)
        self.supervisor = Supervisor(
            log_dir=self.workdir, env=self.env, cwd=self.workdir, children=()
        )
        argv = [sys.executable, "-m", "worker", "webhooks", "--port", str(self.port)]
        self.supervisor.spawn(self.name, argv)
        deadline = time.monotonic() + 30
        while True:
            if self.supervisor.exited():
                raise RuntimeError(f"{self.name} receiver exited: see {self.workdir}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} receiver did not answer /healthz")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.engine is not None:
            self.engine.dispose()

    def stored(self, prefix: str) -> tuple[int, int]:
        """Inbox rows whose id starts with `prefix`: (rows, distinct ids)."""
        assert self.engine is not None
        with self.engine.connect() as conn:
            row = conn.execute(
                text("SELECT count(*), count(DISTINCT id) FROM webhook_events WHERE id LIKE :p"),
                {"p": f"{prefix}%"},
            ).one()
        return int(row[0]), int(row[1])

    def queued(self) -> list[str]:
        """The events named by the task messages waiting in fcsync's queue (nobody consumes
        them here): fcsync.handle_event's `event_id`, each of fcsync.handle_events' `event_ids`."""
        if self.broker_url.startswith("redis"):
            with redis.Redis.from_url(self.broker_url) as client:
                return [
                    event_id
                    for key in client.scan_iter(match=f"{QUEUE}*")
                    if client.type(key) == b"list"
                    for message in client.lrange(key, 0, -1)
                    for event_id in _events_in(message)
                ]
        broker = create_engine(self.broker_url.removeprefix("sqla+"))
        try:
            with broker.connect() as conn:
                return [
                    event_id
                    for payload in conn.execute(
                        text(
                            "SELECT m.payload FROM kombu_message m JOIN kombu_queue q"
                            " ON m.queue_id = q.id WHERE q.name = :q"
                        ),
                        {"q": QUEUE},
                    ).scalars()
                    for event_id in _events_in(payload)
                ]
        finally:
            broker.dispose()

    def cpu_s(self) -> float:
        """CPU seconds the receiver has used so far (user + system), its forked processes
        (FCSYNC_WEBHOOK_PROCESSES) included."""
        assert self.supervisor is not None
        return sum(_cpu_s(pid) for pid in _process_tree(self.supervisor.procs[self.name].pid))

    def pg_sessions(self) -> int | None:
        """Sessions PostgreSQL has opened on this database so far (None on SQLite)."""
        if not self.db_url.startswith("postgresql"):
            return None
        assert self.engine is not None
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
                ).scalar_one()
            )


def _events_in(message: bytes | str) -> list[str]:
    """The events a queued Celery message (kombu's JSON envelope) asks to handle."""
    envelope = json.loads(message)
    _, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
    return list(kwargs["event_ids"]) if "event_ids" in kwargs else [kwargs["event_id"]]


def _process_tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            found += _process_tree(int(child))
    return found


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def receiver_env(db_url: str, **extra: str) -> dict[str, str]:
    env = scrubbed_environ()
    env.update(
        {
            "DATABASE_URL": db_url,
            "STRIPE_API_KEY": API_KEY,
            "STRIPE_WEBHOOK_SECRET": SECRET,
            **extra,
        }
    )
    return env


def emulated_event() -> dict[str, Any]:
    """A `refreshed_transactions` event as the emulator emits it (the shape Stripe sends)."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with Emulator(EmulatorConfig(seed=13, refresh_delay_s=1.0, frozen_clock=True)) as emu:
        account = emu.control.create_account(transactions=20)["id"]
        base = f"{emu.base_url}/v1"
        refresh = f"{base}/financial_connections/accounts/{account}/refresh"
        requests.post(refresh, data={"features[]": "transactions"}, headers=headers, timeout=10)
        emu.control.advance(2)
        events = requests.get(
            f"{base}/events", params={"type": EVENT_TYPE}, headers=headers, timeout=10
        ).json()["data"]
    return dict(events[0])


def send(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the load generator in its own process."""
    done = subprocess.run(
        [sys.executable, "-m", "bench._webhook_load"],
        input=json.dumps(spec).encode(),
        capture_output=True,
        check=True,
    )
    return dict(json.loads(done.stdout))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_round(
    receiver: Receiver, template: dict[str, Any], *, prefix: str, events: int, connections: int
) -> dict[str, Any]:
    spec = {
        "host": "127.0.0.1",
        "port": receiver.port,
        "path": PATH,
        "template": template,
        "secret": SECRET,
        "prefix": prefix,
        "count": events,
        "connections": connections,
    }
    sessions_before = receiver.pg_sessions()
    cpu_before = receiver.cpu_s()
    got = send(spec)
    cpu = receiver.cpu_s() - cpu_before
    sessions_after = receiver.pg_sessions()
    latencies = [x for x in got["latencies_ms"] if x is not None]
    problems = []
    if any(status != 200 for status in got["statuses"]):
        counts: dict[int, int] = {}
        for status in got["statuses"]:
            counts[status] = counts.get(status, 0) + 1
        problems.append(f"answers by status: {counts}")
    if any(
        not json.loads(body or "{}").get("received") or json.loads(body)["duplicate"]
        for body in got["bodies"]
    ):
        problems.append("an event was not answered as newly received")
    rows, distinct = receiver.stored(prefix)
    if rows != events or distinct != events:
        problems.append(f"inbox holds {rows} rows ({distinct} distinct) for {events} events")
    queued = receiver.queued()
    enqueued = [event_id for event_id in queued if event_id.startswith(prefix)]
    if len(enqueued) != events or len(set(enqueued)) != events:
        problems.append(
            f"{len(enqueued)} events ({len(set(enqueued))} distinct) enqueued for {events}"
            " new events"
        )
    problems += check_duplicates_and_forgeries(receiver, spec, queued=len(queued))
    result: dict[str, Any] = {
        "events": events,
        "events_per_s": round(events / got["wall_s"], 1),
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies), 2),
        "client_cpu_share": round(got["client_cpu_s"] / got["wall_s"], 3),
        # What the receiver's own process spent: on a machine this busy, the steadier figure.
        "receiver_cpu_ms_per_event": round(1000 * cpu / events, 3),
        "receiver_cpu_share": round(cpu / got["wall_s"], 3),
        "problems": problems,
    }
    if sessions_before is not None and sessions_after is not None:
        result["pg_sessions_opened"] = sessions_after - sessions_before
    return result


def check_duplicates_and_forgeries(
    receiver: Receiver, spec: dict[str, Any], *, queued: int
) -> list[str]:
    """Resent events: 200, duplicate, nothing enqueued. Forged ones: 400, nothing stored."""
    problems = []
    resent = send({**spec, "count": CHECKS, "connections": 4})
    if any(
        s != 200 or not json.loads(b)["duplicate"]
        for s, b in zip(resent["statuses"], resent["bodies"], strict=True)
    ):
        problems.append("a resent event was not answered as a duplicate")
    forged_prefix = f"{spec['prefix']}forged"
    forged = send(
        {
            **spec,
            "count": CHECKS,
            "connections": 4,
            "secret": "whsec_forged",
            "prefix": forged_prefix,
        }
    )
    if any(s != 400 for s in forged["statuses"]):
        problems.append("a badly signed event was not refused with 400")
    if receiver.stored(forged_prefix)[0]:
        problems.append("a badly signed event was stored")
    if len(receiver.queued()) != queued:
        problems.append("a duplicate or forged event enqueued a task")
    return problems


def client_ceiling(template: dict[str, Any], *, events: int, connections: int) -> float:
    """Events/s the load generator sends to a server that answers at once (in its own process):
    what this client can measure at most on this machine."""
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-m", "bench._webhook_load", "--sink", str(port)],
        stdout=subprocess.PIPE,
    )
    try:
        assert sink.stdout is not None
        sink.stdout.readline()  # "ready"
        spec = {
            "host": "127.0.0.1",
            "port": port,
            "path": PATH,
            "template": template,
            "secret": SECRET,
            "prefix": "evt_sink",
            "count": events,
            "connections": connections,
        }
        got = send(spec)
    finally:
        sink.terminate()
        sink.wait()
    return round(events / got["wall_s"], 1)


class Databases:
    """Databases of this run's own on the local PostgreSQL, dropped at the end."""

    def __init__(self) -> None:
        self.admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        self.names: list[str] = []

    def create(self) -> str | None:
        """A new database's URL, or None (said on stderr) when PostgreSQL is unreachable."""
        name = f"bench_webhooks_{os.getpid()}_{len(self.names)}"
        try:
            with self.admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:
            print(f"PostgreSQL unreachable, its case skipped: {exc}", file=sys.stderr)
            return None
        self.names.append(name)
        return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            for name in self.names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


def redis_reachable() -> bool:
    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2) as client:
            client.ping()
    except redis.RedisError as exc:
        print(f"Redis unreachable, the PostgreSQL + Redis case skipped: {exc}", file=sys.stderr)
        return False
    return True


def clear_redis_queue() -> None:
    """Only this benchmark's keys, in its own Redis database."""
    with redis.Redis.from_url(REDIS_URL) as client:
        for key in list(client.scan_iter(match=f"{QUEUE}*")) + list(
            client.scan_iter(match="_kombu*")
        ):
            client.delete(key)


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    keys = (
        "events_per_s",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "receiver_cpu_ms_per_event",
        "receiver_cpu_share",
        "client_cpu_share",
        "pg_sessions_opened",
    )
    summary: dict[str, Any] = {
        key: statistics.median(r[key] for r in rounds) for key in keys if key in rounds[0]
    }
    summary["rounds"] = rounds
    return summary


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def receivers_for(
    stacks: list[str],
    databases: Databases,
    tmp: Path,
    *,
    code: Path | None = None,
    processes: int = 1,
) -> list[Receiver]:
    """A receiver per reachable stack; with `code`, running that checkout's fcsync instead.
    `processes`: FCSYNC_WEBHOOK_PROCESSES of the PostgreSQL + Redis receiver."""
    suffix, extra = ("", {}) if code is None else ("@baseline", {"PYTHONPATH": str(code)})
    found = []
    if "postgresql" in stacks and redis_reachable():
        db_url = databases.create()
        if db_url is not None:
            name = f"postgresql+redis{suffix}"
            workdir = tmp / name
            workdir.mkdir()
            env = receiver_env(
                db_url, REDIS_URL=REDIS_URL, FCSYNC_WEBHOOK_PROCESSES=str(processes), **extra
            )
            found.append(Receiver(name, db_url, REDIS_URL, env, workdir))
    if "sqlite" in stacks:
        name = f"sqlite+embedded{suffix}"
        workdir = tmp / name
        workdir.mkdir()
        db_url = f"sqlite:///{workdir / 'fcsync.db'}"
        broker = workdir / "fcsync-broker.sqlite"
        env = receiver_env(db_url, FCSYNC_EMBEDDED_BROKER_PATH=str(broker), **extra)
        found.append(Receiver(name, db_url, f"sqla+sqlite:///{broker}", env, workdir))
    return found


def targets_of(results: dict[str, Any]) -> dict[str, Any]:
    pg = results.get("postgresql+redis")
    if pg is None:
        return {}
    return {
        "postgresql_events_per_s": {
            "target": f">= {TARGET_EVENTS_PER_S:,} events/s on PostgreSQL + Redis",
            "value": pg["events_per_s"],
            "holds": pg["events_per_s"] >= TARGET_EVENTS_PER_S,
        },
        "postgresql_p99_ms": {
            "target": f"p99 <= {TARGET_P99_MS:g} ms on PostgreSQL + Redis",
            "value": pg["p99_ms"],
            "holds": pg["p99_ms"] <= TARGET_P99_MS,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,500 events, 2 rounds")
    parser.add_argument("--events", type=int, default=4_000, help="events per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per stack")
    parser.add_argument("--connections", type=int, default=16, help="concurrent senders")
    parser.add_argument("--stacks", default="postgresql,sqlite")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="FCSYNC_WEBHOOK_PROCESSES of the PostgreSQL + Redis receivers (the baseline's too)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of another fcsync commit: its receivers run in the same rounds",
    )
    args = parser.parse_args()
    if args.quick:
        args.events, args.rounds = 1_500, 2
    stacks = [s.strip() for s in args.stacks.split(",") if s.strip()]
    started = time.monotonic()
    template = emulated_event()
    databases = Databases()
    rounds: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="fcsync-bench-webhooks-") as tmp:
        receivers = receivers_for(stacks, databases, Path(tmp), processes=args.processes)
        if args.baseline is not None:
            receivers += receivers_for(
                stacks,
                databases,
                Path(tmp),
                code=args.baseline.resolve(),
                processes=args.processes,
            )
        try:
            clear_redis_queue()
            for receiver in receivers:
                receiver.start()
            ceiling = client_ceiling(template, events=args.events, connections=args.connections)
            for n in range(args.rounds):
                for i, receiver in enumerate(receivers):
                    rounds.setdefault(receiver.name, []).append(
                        measure_round(
                            receiver,
                            template,
                            prefix=f"evt_bench{n}s{i}n",
                            events=args.events,
                            connections=args.connections,
                        )
                    )
        finally:
            for receiver in receivers:
                receiver.stop()
            clear_redis_queue()
            databases.drop_all()
    results = {name: summarise(each) for name, each in rounds.items()}
    # Paired by round (each baseline round ran next to its own): steadier than medians' ratio.
    ratios = {
        f"{name}_over_baseline": {
            key: round(
                statistics.median(
                    new[key] / old[key]
                    for new, old in zip(rounds[name], rounds[f"{name}@baseline"], strict=True)
                ),
                2,
            )
            for key in ("events_per_s", "p99_ms", "receiver_cpu_ms_per_event")
        }
        for name in rounds
        if f"{name}@baseline" in rounds
    }
    problems = [p for each in rounds.values() for r in each for p in r["problems"]]
    report = {
        "benchmark": "webhooks",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
        "events_per_round": args.events,
        "rounds": args.rounds,
        "connections": args.connections,
        "postgresql_receiver_processes": args.processes,
        "event_bytes": len(json.dumps(template, indent=2)),
        "client_ceiling_events_per_s": ceiling,
        **results,
        **({"ratios": ratios} if ratios else {}),
        "correct": not problems,
        "problems": problems[:20],
        "targets": targets_of(results),
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(report, indent=2))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
