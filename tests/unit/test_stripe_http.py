"""Stripe's requests over fcsync's HTTP client (urllib3's pools under the SDK): connections kept
alive across requests, a lost connection or a timeout retried by the SDK and then a transient
error, the proxy environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) honoured as requests does, read
once when the gateway is built, and a ~/.netrc entry for the host never replacing the key's
Authorization header."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.errors import TransientError
from worker.stripe_gateway import StripeGateway

ACCOUNT = "fca_1"
BODY = json.dumps(
    {"id": ACCOUNT, "object": "financial_connections.account", "status": "active"}
).encode()


class Recorder:
    """An HTTP/1.1 server (connections kept alive) answering every GET with an FC account,
    keeping each request's target (absolute when it came as a proxy's request), Authorization
    header and client port (one per connection). Its first `hang_ups` requests get their
    connection closed unanswered; its first `stalls` wait `stall_s` before answering."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        self.ports: list[int] = []
        self.hang_ups = 0
        self.stalls = 0
        self.stall_s = 0.0
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                recorder.seen.append((self.path, self.headers.get("Authorization")))
                recorder.ports.append(self.client_address[1])
                if recorder.hang_ups:
                    recorder.hang_ups -= 1
                    self.close_connection = True
                    return
                if recorder.stalls:
                    recorder.stalls -= 1
                    time.sleep(recorder.stall_s)
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


def retrieve(api_base: str, *, retries: int = 0, timeout_s: float = 30.0) -> None:
    gateway = StripeGateway(
        "sk_test_proxy", api_base=api_base, max_network_retries=retries, timeout_s=timeout_s
    )
    assert gateway.retrieve_account(ACCOUNT, stripe_account=None).id == ACCOUNT


def test_requests_share_kept_alive_connections(recorder: Recorder) -> None:
    gateway = StripeGateway("sk_test_proxy", api_base=recorder.url, max_network_retries=0)
    for _ in range(3):
        gateway.retrieve_account(ACCOUNT, stripe_account=None)
    assert len(recorder.seen) == 3 and len(set(recorder.ports)) == 1


def test_threads_asking_at_once_each_keep_their_connection(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    # A sync's reading thread and its task's thread ask at once: neither connection is thrown
    # away after use (urllib3 says so at WARNING when its pool per host is too small).
    recorder.stalls, recorder.stall_s = 4, 0.2
    gateway = StripeGateway("sk_test_proxy", api_base=recorder.url, max_network_retries=0)
    askers = [
        threading.Thread(
            target=gateway.retrieve_account, args=(ACCOUNT,), kwargs={"stripe_account": None}
        )
        for _ in range(4)
    ]
    with caplog.at_level("WARNING", logger="urllib3"):
        for asker in askers:
            asker.start()
        for asker in askers:
            asker.join()
        for _ in range(4):
            gateway.retrieve_account(ACCOUNT, stripe_account=None)
    assert len(recorder.seen) == 8
    assert not [r for r in caplog.records if r.name.startswith("urllib3")]
    # The last four reuse the four kept connections.
    assert set(recorder.ports[4:]) <= set(recorder.ports[:4])


def test_a_connection_lost_before_the_answer_is_retried_by_the_sdk(recorder: Recorder) -> None:
    recorder.hang_ups = 1
    retrieve(recorder.url, retries=1)
    assert len(recorder.seen) == 2


def test_a_lost_connection_past_the_sdks_retries_is_a_transient_error(
    recorder: Recorder,
) -> None:
    recorder.hang_ups = 2
    with pytest.raises(TransientError):
        retrieve(recorder.url, retries=1)
    assert len(recorder.seen) == 2


def test_an_answer_slower_than_the_timeout_is_a_transient_error(recorder: Recorder) -> None:
    recorder.stalls, recorder.stall_s = 1, 1.0
    with pytest.raises(TransientError):
        retrieve(recorder.url, timeout_s=0.2)


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
