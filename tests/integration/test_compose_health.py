"""The compose healthchecks run for real: each service's CMD healthcheck, as docker would run
it, against a live server here (the emulator, the webhook receiver); unhealthy when it is down."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import create_engine

from tests.unit.test_compose import load_compose, parse_service


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
    up = create_engine("sqlite://")
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
