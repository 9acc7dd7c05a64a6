"""Stripe's requests honour the proxy environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) as
requests does, read once when the gateway is built; a ~/.netrc entry for the host never replaces
the key's Authorization header."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.stripe_gateway import StripeGateway

ACCOUNT = "fca_1"
BODY = json.dumps(
    {"id": ACCOUNT, "object": "financial_connections.account", "status": "active"}
).encode()


class Recorder:
    """An HTTP server answering every GET with an FC account, keeping each request's target
    (absolute when it came as a proxy's request) and Authorization header."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.seen.append((self.path, self.headers.get("Authorization")))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(BODY)))
                self.end_headers()
                self.wfile.write(BODY)

            def log_message(self, *_: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    found = Recorder()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    yield found
    found.server.shutdown()
    found.server.server_close()


@pytest.fixture(autouse=True)
def clean_proxy_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


def retrieve(api_base: str) -> None:
    gateway = StripeGateway("sk_test_proxy", api_base=api_base, max_network_retries=0)
    assert gateway.retrieve_account(ACCOUNT, stripe_account=None).id == ACCOUNT


def test_requests_go_through_the_proxy_the_environment_names(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", recorder.url)
    retrieve("http://stripe.invalid")
    # A proxy is asked for the absolute address.
    assert recorder.seen == [
        (
            f"http://stripe.invalid/v1/financial_connections/accounts/{ACCOUNT}",
            "Bearer sk_test_proxy",
        )
    ]


def test_no_proxy_sends_stripe_requests_direct(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    retrieve(recorder.url)
    assert recorder.seen == [
        (f"/v1/financial_connections/accounts/{ACCOUNT}", "Bearer sk_test_proxy")
    ]


def test_a_netrc_entry_for_the_host_never_replaces_the_key(
    recorder: Recorder, tmp_path: Path
) -> None:
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    retrieve(recorder.url)
    assert [auth for _, auth in recorder.seen] == ["Bearer sk_test_proxy"]
