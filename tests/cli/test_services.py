"""The long-running commands: `webhooks`, `run` (supervised worker + beat + receiver) and
`emulator`, started as a user starts them and stopped by signal."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests

from emulator import EmulatorControl, signature_header
from tests.cli.conftest import (
    API_KEY,
    FCSYNC,
    WEBHOOK_SECRET,
    Supervisor,
    Workdir,
    clean_environ,
    free_port,
    wait_for,
)
from tests.processes import alive, descendants


def get(url: str, **kwargs: object) -> requests.Response | None:
    try:
        return requests.get(url, timeout=2, **kwargs)  # type: ignore[arg-type]
    except requests.ConnectionError:
        return None


def healthy(url: str) -> bool:
    response = get(url)
    return response is not None and response.status_code == 200


def test_webhooks_serves_healthz_and_stores_a_signed_event(
    migrated: Workdir, control: EmulatorControl, children: Supervisor
) -> None:
    port = free_port()
    env = migrated.env(STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
    children.spawn("webhooks", [FCSYNC, "webhooks", "--port", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: healthy(f"{base}/healthz"), timeout=20, what=f"/healthz\n{children.logs()}")
    assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
    account = control.create_account(transactions=1)["id"]
    events = requests.get(
        f"{migrated.base_url}/v1/events", auth=(API_KEY, ""), params={"limit": 100}, timeout=5
    ).json()["data"]
    event = next(e for e in events if e["data"]["object"]["id"] == account)
    payload = json.dumps(event).encode()
    url = f"{base}/webhooks/stripe"

    def post(signature: str) -> requests.Response:
        headers = {"Stripe-Signature": signature, "Content-Type": "application/json"}
        return requests.post(url, data=payload, headers=headers, timeout=5)

    forged = post(signature_header(payload, "whsec_not_ours"))
    first = post(signature_header(payload, WEBHOOK_SECRET))
    again = post(signature_header(payload, WEBHOOK_SECRET))

    assert forged.status_code == 400
    assert first.status_code == 200, first.text
    assert first.json() == {"received": True, "id": event["id"], "duplicate": False}
    assert again.status_code == 200 and again.json()["duplicate"] is True
    # Over the size limit without a Content-Length (chunked): refused, never cut and read.
    padded = json.dumps({**event, "id": "evt_padded", "padding": "x" * 300_000}).encode()
    chunked = requests.post(
        url,
        data=(padded[at : at + 8_192] for at in range(0, len(padded), 8_192)),
        headers={"Stripe-Signature": signature_header(padded, WEBHOOK_SECRET)},
        timeout=5,
    )
    assert chunked.status_code == 413, chunked.text
    assert migrated.query("SELECT id, type FROM webhook_events") == [(event["id"], event["type"])]
    # Handling is the worker's: one message on the broker, none for the duplicate.
    assert migrated.queued() == [
        {"task": "fcsync.handle_events", "args": [], "kwargs": {"event_ids": [event["id"]]}}
    ]


# A hangup stops the receiver as SIGTERM does (granian alone would restart its processes).
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_webhooks_in_several_processes_share_the_port_and_stop_together(
    migrated: Workdir, control: EmulatorControl, children: Supervisor, stop: signal.Signals
) -> None:
    port = free_port()
    env = migrated.env(STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET, FCSYNC_WEBHOOK_PROCESSES="2")
    proc = children.spawn("webhooks", [FCSYNC, "webhooks", "--port", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: healthy(f"{base}/healthz"), timeout=20, what=f"/healthz\n{children.logs()}")
    below = descendants(proc.pid)
    assert len(below) == 2, below  # the two serving processes, under the one that bound the port
    # granian's start is logged, but not its warning about the (deliberate) request threads.
    assert "granian" in children.logs() and "quite high" not in children.logs(), children.logs()
    account = control.create_account(transactions=1)["id"]
    events = requests.get(
        f"{migrated.base_url}/v1/events", auth=(API_KEY, ""), params={"limit": 100}, timeout=5
    ).json()["data"]
    event = next(e for e in events if e["data"]["object"]["id"] == account)
    ids = [f"evt_processes{i}" for i in range(20)]
    for event_id in ids:  # a connection each: the kernel hands each to one of the processes
        payload = json.dumps({**event, "id": event_id}).encode()
        headers = {"Stripe-Signature": signature_header(payload, WEBHOOK_SECRET)}
        answer = requests.post(f"{base}/webhooks/stripe", data=payload, headers=headers, timeout=5)
        assert answer.status_code == 200 and answer.json()["duplicate"] is False, answer.text
    assert sorted(row[0] for row in migrated.query("SELECT id FROM webhook_events")) == sorted(ids)
    assert len(migrated.queued()) == len(ids)
    # Whichever process answers the scrape counts every process's deliveries.
    metrics = requests.get(f"{base}/metrics", timeout=5).text
    assert (
        'fcsync_webhook_events_received_total{outcome="stored",'
        f'type="{event["type"]}"}} {float(len(ids))}'
    ) in metrics, metrics
    os.kill(proc.pid, stop)  # a process manager stopping the service, or a closed terminal
    assert proc.wait(timeout=20) == -stop, children.logs()
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in below) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in below if alive(pid)], "a receiver process outlived the receiver"


@pytest.mark.parametrize("killed", ["serving process", "receiver"])
def test_webhooks_processes_never_outlive_one_another(
    migrated: Workdir, children: Supervisor, killed: str
) -> None:
    """A serving process that dies stops the receiver (exit 1, for its supervisor to restart
    it); a receiver that dies however it dies (SIGKILL) takes its serving processes with it."""
    port = free_port()
    env = migrated.env(STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET, FCSYNC_WEBHOOK_PROCESSES="2")
    proc = children.spawn("webhooks", [FCSYNC, "webhooks", "--port", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: healthy(f"{base}/healthz"), timeout=20, what=f"/healthz\n{children.logs()}")
    below = sorted(descendants(proc.pid))
    assert len(below) == 2, below
    if killed == "receiver":
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    else:
        os.kill(below[0], signal.SIGKILL)
        assert proc.wait(timeout=20) == 1, children.logs()
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in below) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in below if alive(pid)], f"a serving process outlived the {killed}"


# Ctrl-C (SIGINT to the process group) takes the supervisor's same stop handler as SIGTERM:
# `make test` runs SIGTERM.
@pytest.mark.parametrize("stop", ["SIGTERM", pytest.param("ctrl-c", marks=pytest.mark.long)])
def test_run_on_embedded_defaults_stops_every_child_on_signal(
    tmp_path: Path, children: Supervisor, stop: str
) -> None:
    port = free_port()
    env = {
        **clean_environ(),
        "STRIPE_API_KEY": API_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PYTHONUNBUFFERED": "1",
    }
    proc = children.spawn(
        "run", [FCSYNC, "run", "--concurrency", "1", "--port", str(port)], env=env
    )
    log = tmp_path / "run.log"

    def started() -> dict[int, str]:
        below = descendants(proc.pid)
        names = " ".join(below.values())
        ready = "ready." in log.read_text(errors="replace")  # the worker's start-up banner
        everyone = all(part in names for part in (" worker ", " beat ", " webhooks "))
        return below if ready and everyone and healthy(f"http://127.0.0.1:{port}/healthz") else {}

    below = wait_for(started, timeout=40, what=f"worker, beat and webhooks\n{children.logs()}")
    try:
        assert proc.poll() is None
        # Embedded defaults: SQLite and the broker both in the working directory.
        assert (tmp_path / "fcsync.db").exists() and (tmp_path / "fcsync-broker.sqlite").exists()
        if stop == "SIGTERM":
            os.kill(proc.pid, signal.SIGTERM)  # a process manager stopping the service
        else:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's process group
        assert proc.wait(timeout=30) == 0, children.logs()
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in below) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = {pid: cmd for pid, cmd in below.items() if alive(pid)}
        assert not left, f"orphans after {stop}: {left}"
        assert "Traceback" not in log.read_text(errors="replace"), children.logs()
    finally:
        for pid in below:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_emulator_command_serves_the_api_on_the_given_port(children: Supervisor) -> None:
    port = free_port()
    argv = [FCSYNC, "emulator", "--port", str(port), "--accounts", "2", "--transactions", "5"]
    proc = children.spawn("emulator", argv, env=clean_environ())
    url = f"http://127.0.0.1:{port}/v1/financial_connections/accounts"

    def answer() -> requests.Response | None:
        response = get(url, auth=("sk_test_x", ""))
        return response if response is not None and response.status_code == 200 else None

    response = wait_for(answer, timeout=20, what=f"the emulator\n{children.logs()}")
    assert len(response.json()["data"]) == 2
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
