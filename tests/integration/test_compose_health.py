"""The compose healthchecks run for real: each service's healthcheck, as docker would run it,
against a live process here (the emulator, the webhook receiver, a worker, Flower started with
the service's own command); unhealthy when it is down."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from tests.cli.conftest import clean_environ
from tests.integration.conftest import Processes, wait_for
from tests.processes import BIN
from tests.unit.test_compose import argv, load_compose, parse_service
from worker.playground.emulator_env import free_port


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return load_compose()["services"]  # type: ignore[no-any-return]


def run_healthcheck(service: dict[str, Any], container_url: str, live_url: str) -> int:
    """Run a service's CMD healthcheck here, pointed at a live server; its exit code."""
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "python", test
    assert any(container_url in t for t in test), f"{container_url} not in {test}"
    cmd = [sys.executable, *(t.replace(container_url, live_url) for t in test[2:])]
    return subprocess.run(cmd, capture_output=True, timeout=30, check=False).returncode


def run_shell_healthcheck(service: dict[str, Any], env: dict[str, str], cwd: Path) -> int:
    """Run a CMD-SHELL healthcheck as the container's shell would (`$$` is compose's `$`)."""
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL", test
    shell_env = {**env, "PATH": f"{BIN}:{env['PATH']}"}
    command = test[1].replace("$$", "$")
    done = subprocess.run(["sh", "-c", command], env=shell_env, cwd=cwd, timeout=60, check=False)
    return done.returncode


@contextmanager
def serving(wsgi_app: Any) -> Iterator[str]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_compose_emulator_healthcheck_passes_against_a_live_emulator(
    services: dict[str, dict[str, Any]],
) -> None:
    from emulator.server import Emulator

    _, _, ctx = parse_service(services["emulator"])
    with Emulator() as emulator:
        url = emulator.base_url
        assert (
            run_healthcheck(services["emulator"], f"http://127.0.0.1:{ctx.params['port']}", url)
            == 0
        )
    assert run_healthcheck(services["emulator"], f"http://127.0.0.1:{ctx.params['port']}", url) != 0


def test_compose_webhooks_healthcheck_follows_the_database(
    services: dict[str, dict[str, Any]], migrated_sqlite: str
) -> None:
    from worker import http
    from worker.runtime import Runtime
    from worker.settings import Settings

    _, _, ctx = parse_service(services["webhooks"])
    container_url = f"http://127.0.0.1:{ctx.params['port']}"
    settings = Settings(database_url=migrated_sqlite, stripe_webhook_secret="whsec_x")  # type: ignore[arg-type]
    up = create_engine(migrated_sqlite)
    runtime = Runtime(settings, send=lambda _: None, engine=up)
    app = http.create_app(runtime, path=ctx.params["path"])
    with serving(app) as url:
        assert run_healthcheck(services["webhooks"], container_url, url) == 0
        # A receiver that cannot reach its database reports unhealthy (503).
        down = create_engine("sqlite:////nonexistent-dir/fcsync.db")
        runtime.engine = down
        assert run_healthcheck(services["webhooks"], container_url, url) != 0
    up.dispose()
    down.dispose()


def test_compose_worker_and_flower_healthchecks_follow_live_processes(
    stack_redis_url: str,
    processes: Processes,
    services: dict[str, dict[str, Any]],
    migrated_sqlite: str,
    tmp_path: Path,
) -> None:
    env = {
        **clean_environ(),
        "DATABASE_URL": migrated_sqlite,
        "REDIS_URL": stack_redis_url,
        "STRIPE_API_KEY": "sk_test_health",
        # What docker sets in a container; the worker's node name is Celery's default,
        # celery@<hostname>, as in the compose service (no -n).
        "HOSTNAME": socket.gethostname(),
    }
    assert "-n" not in argv(services["worker"])
    processes.worker(env, concurrency=1, name="celery")
    # Flower by the service's own command, on a free port.
    port = free_port()
    program, *rest = argv(services["flower"])
    flower_argv = [str(BIN / program), *(t.replace("5555", str(port)) for t in rest)]
    processes.spawn("flower", flower_argv, env={**env, "PYTHONUNBUFFERED": "1"}, cwd=tmp_path)
    container_url, live_url = "http://127.0.0.1:5555", f"http://127.0.0.1:{port}"

    # Ready first: each healthcheck run against a worker still starting waits out its timeout.
    log = processes.log_dir / "celery.log"
    wait_for(lambda: " ready." in log.read_text(), timeout=60, what=f"the worker\n{log}")
    assert run_shell_healthcheck(services["worker"], env, tmp_path) == 0
    wait_for(
        lambda: run_healthcheck(services["flower"], container_url, live_url) == 0,
        timeout=60,
        what=f"Flower's healthcheck\n{processes.logs()}",
    )
    processes.kill("flower")
    assert run_healthcheck(services["flower"], container_url, live_url) != 0
    processes.kill("celery")
    assert run_shell_healthcheck(services["worker"], env, tmp_path) != 0
