"""Fixtures for the emulator's tests: Stripe's schemas, running emulators, real stripe-python
clients pointed at them, and a local webhook receiver. Nothing here mocks the SDK."""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import stripe

from emulator import Emulator, EmulatorConfig

OPENAPI_DIR = Path(
    os.environ.get(
        "FCSYNC_STRIPE_OPENAPI_DIR",
        Path(__file__).resolve().parents[2] / ".." / "shared" / "stripe-openapi",
    )
)
# A fixed, frozen start makes every timestamp in a test predictable.
START = 1_790_000_000
API_KEY = "sk_test_emulator"


class Schemas:
    """Stripe's OpenAPI schemas via the shared check_refs helper (never copied here)."""

    def __init__(self, directory: Path) -> None:
        spec = importlib.util.spec_from_file_location("check_refs", directory / "check_refs.py")
        assert spec is not None and spec.loader is not None
        self._module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self._module)
        self._doc = self._module.load(str(directory / "financial_connections.json"))
        self._validators: dict[tuple[str, bool], Any] = {}

    def check(self, name_or_ref: str, obj: Any, *, strict: bool = True) -> None:
        key = (name_or_ref, strict)
        if key not in self._validators:
            self._validators[key] = self._module.validator(self._doc, name_or_ref, strict=strict)
        self._validators[key].validate(obj)

    def account(self, obj: Any) -> None:
        self.check("financial_connections.account", obj)

    def transaction(self, obj: Any) -> None:
        self.check("financial_connections.transaction", obj)

    def page(self, kind: str, obj: Any) -> None:
        self.check(f"#/x-derived/list_schemas/{kind}", obj)

    def event(self, obj: Any) -> None:
        # The narrowed fc_account_event cannot be strict (its allOf halves forbid each other's
        # fields), so strictness comes from the plain event and the embedded account.
        self.check("#/x-derived/fc_account_event", obj, strict=False)
        self.check("event", obj)
        self.account(obj["data"]["object"])


@pytest.fixture(scope="session")
def schemas() -> Schemas:
    return Schemas(OPENAPI_DIR)


def make_emulator(**overrides: Any) -> Emulator:
    values: dict[str, Any] = {
        "seed": 7,
        "refresh_delay_s": 5.0,
        "refresh_cooldown_s": 60.0,
        "start_time": START,
        "frozen_clock": True,
        "webhook_backoff_s": 0.1,
    }
    values.update(overrides)
    return Emulator(EmulatorConfig(**values))


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A frozen-clock emulator: time moves only through control.advance()."""
    with make_emulator() as emu:
        yield emu


@pytest.fixture
def client(emulator: Emulator) -> stripe.StripeClient:
    return stripe.StripeClient(
        API_KEY, base_addresses={"api": emulator.base_url}, max_network_retries=0
    )


@pytest.fixture
def global_stripe(emulator: Emulator) -> Iterator[None]:
    """The global `stripe.*` style pointed at the emulator; globals restored afterwards."""
    saved = (stripe.api_key, stripe.api_base, stripe.max_network_retries)
    stripe.api_key, stripe.api_base, stripe.max_network_retries = API_KEY, emulator.base_url, 0
    try:
        yield
    finally:
        stripe.api_key, stripe.api_base, stripe.max_network_retries = saved


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A local webhook endpoint; answers 500 to the first `fail_first` deliveries."""

    url: str = ""
    fail_first: int = 0
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        with self.lock:
            return list(self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if state.delay_s:
                time.sleep(state.delay_s)
            with state.lock:
                state.attempts += 1
                failing = state.attempts <= state.fail_first
                if not failing:
                    state.received.append(Received(dict(self.headers.items()), body))
            self.send_response(500 if failing else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}/webhooks"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()
