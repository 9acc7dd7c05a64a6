"""A stand-in HTTP server between the gateway and the emulator: it forwards every request,
records what the gateway sent (method, path, `Stripe-Account`), and rewrites answers while a
rewrite is set. Tests assert on the wire with it, never by mocking the Stripe SDK."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from tests.local_http import QuietHandler, serving

LIST_PATH = "/v1/financial_connections/transactions"
ACCOUNT_PATH = "/v1/financial_connections/accounts/"
# What the gateway sends that the emulator reads (Stripe-Account scopes objects to a
# connected account once the emulator supports it; before, it is only recorded).
FORWARDED = ("Authorization", "Content-Type", "Idempotency-Key", "Stripe-Version", "Stripe-Account")
Rewrite = Callable[[Any], Any]


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    stripe_account: str | None


@dataclass
class StandIn:
    """Forwards every request to the emulator; rewrites answers while a rewrite is set."""

    upstream: str
    url: str = ""
    rewrite_list: Rewrite | None = None
    rewrite_account: Rewrite | None = None
    list_requests: int = 0
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def rewrite(self, path: str, status: int, body: bytes) -> bytes:
        rewrite = self.rewrite_list if path == LIST_PATH else None
        if path.startswith(ACCOUNT_PATH):
            rewrite = self.rewrite_account
        if rewrite is None or status != 200:
            return body
        return json.dumps(rewrite(json.loads(body))).encode()

    def about(self, account_id: str) -> list[Seen]:
        """The requests about one FC account: its own paths, and lists of its transactions."""
        with self.lock:
            return [s for s in self.seen if account_id in s.path]


@contextmanager
def stand_in(upstream: str) -> Iterator[StandIn]:
    """The stand-in on a free port in front of `upstream`."""
    state = StandIn(upstream)

    class Handler(QuietHandler):
        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            answer = requests.request(
                self.command,
                state.upstream + self.path,
                headers={h: self.headers[h] for h in FORWARDED if h in self.headers},
                data=self.rfile.read(length) if length else None,
                timeout=10,
            )
            path = urlsplit(self.path).path
            with state.lock:
                # The query names the account of a list: record it with the path.
                state.seen.append(Seen(self.command, self.path, self.headers.get("Stripe-Account")))
                state.list_requests += path == LIST_PATH
                body = state.rewrite(path, answer.status_code, answer.content)
            self.send_response(answer.status_code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = forward

    with serving(Handler) as url:
        state.url = url
        yield state
