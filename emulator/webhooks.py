"""Webhook endpoints and delivery: Stripe's v1 signature, one background sender with bounded
retries, the webhook faults (drop, duplicate, reorder, delay) and manual resends."""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import requests

from emulator.config import FaultSettings
from emulator.scopes import DEFAULT_PLATFORM, Scope

# Deliveries made while reordering is on are held this long (wall time), then sent shuffled.
REORDER_WINDOW_S = 0.3
DUPLICATE_GAP_S = 0.05
SEND_TIMEOUT_S = 5.0
USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"

log = logging.getLogger("emulator.webhooks")


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """`Stripe-Signature` for `payload`, as stripe.Webhook.construct_event verifies it.

    Signed with wall-clock time: receivers check the tolerance against their own clock."""
    t = int(time.time()) if timestamp is None else timestamp
    signed = f"{t}.".encode() + payload
    mac = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


@dataclass(frozen=True)
class Endpoint:
    """An account endpoint hears its platform's own events; a Connect endpoint (`connect`)
    those of the platform's connected accounts, as Stripe splits them."""

    url: str
    secret: str
    connect: bool = False
    platform: str = DEFAULT_PLATFORM
    # The version events are rendered at for this endpoint; None: the account's default.
    api_version: str | None = None

    def receives(self, scope: Scope) -> bool:
        return self.platform == scope.platform and self.connect == (
            scope.stripe_account is not None
        )

    def body(self, event: dict[str, Any]) -> bytes:
        """The event as this endpoint receives it: at its own API version, if it has one."""
        if self.api_version is not None:
            event = {**event, "api_version": self.api_version}
        return json.dumps(event, indent=2).encode()


@dataclass(frozen=True)
class Delivery:
    endpoint: Endpoint
    event_id: str
    body: bytes
    attempt: int
    generation: int
    # Wall seconds after its release: the copies of a duplicated event go out a little apart.
    gap_s: float = 0.0
    # Whether it goes through the reordering window (the setting when the event was emitted).
    reorder: bool = False


class WebhookDispatcher:
    """Sends on its own thread, never inside the request that produced the event. Delayed
    deliveries wait for the emulator's clock (`release_due`), the rest for wall time."""

    def __init__(
        self, *, attempts: int, backoff_s: float, seed: int, on_delivered: Callable[[str], None]
    ) -> None:
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._on_delivered = on_delivered
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, Delivery]] = []
        self._waiting: list[tuple[float, int, Delivery]] = []
        self._held: list[Delivery] = []
        self._held_until: float | None = None
        self._sending = 0
        self._order = itertools.count()
        self._endpoints: list[Endpoint] = []
        self._generation = 0
        self._rng = random.Random(f"{seed}/webhooks")
        self._counts = dict.fromkeys(
            ("sent", "failed", "dropped", "duplicated", "delayed", "reordered", "resent"), 0
        )
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._http = requests.Session()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="emulator-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=SEND_TIMEOUT_S + 1)
        self._http.close()

    def add_endpoint(
        self,
        url: str,
        secret: str,
        *,
        connect: bool = False,
        platform: str = DEFAULT_PLATFORM,
        api_version: str | None = None,
    ) -> Endpoint:
        endpoint = Endpoint(url, secret, connect, platform, api_version)
        with self._cond:
            self._endpoints.append(endpoint)
        return endpoint

    def endpoints(self, scope: Scope | None = None) -> list[Endpoint]:
        """Every endpoint, or those that receive the events of `scope` (re-entrant: the
        condition's lock is an RLock)."""
        with self._cond:
            return [e for e in self._endpoints if scope is None or e.receives(scope)]

    def counts(self) -> dict[str, int]:
        """What happened to deliveries so far, and two gauges: `queued` (due on wall time:
        waiting to be sent, held for reordering, backing off or being sent) and `waiting`
        (delayed until the emulator's clock reaches their time)."""
        with self._cond:
            queued = len(self._queue) + len(self._held) + self._sending
            return {**self._counts, "queued": queued, "waiting": len(self._waiting)}

    def reseed(self, seed: int) -> None:
        with self._cond:
            self._rng = random.Random(f"{seed}/webhooks")

    def reset(self, seed: int) -> None:
        with self._cond:
            self._generation += 1
            self._endpoints.clear()
            self._queue.clear()
            self._waiting.clear()
            self._held.clear()
            self._held_until = None
            self._counts = dict.fromkeys(self._counts, 0)
            self._rng = random.Random(f"{seed}/webhooks")

    def publish(
        self, event: dict[str, Any], faults: FaultSettings, *, at: float, scope: Scope
    ) -> int:
        """Queue `event` (of `scope`, emitted at emulator time `at`) for every endpoint that
        receives it, through the webhook faults; returns how many it is due to reach."""
        now = time.monotonic()
        event_id = event["id"]
        with self._cond:
            targets = self.endpoints(scope)
            for endpoint in targets:
                body = endpoint.body(event)
                # Every roll is always drawn so one fault's rate never shifts another's stream.
                drop = self._rng.random() < faults.webhook_drop_rate
                duplicate = self._rng.random() < faults.webhook_duplicate_rate
                delay = self._rng.random() < faults.webhook_delay_rate
                if drop:
                    self._counts["dropped"] += 1
                    continue
                copies = faults.webhook_duplicate_copies if duplicate else 1
                self._counts["duplicated"] += copies - 1
                delayed = delay and faults.webhook_delay_s > 0
                for copy in range(copies):
                    delivery = Delivery(
                        endpoint,
                        event_id,
                        body,
                        1,
                        self._generation,
                        gap_s=copy * DUPLICATE_GAP_S,
                        reorder=faults.webhook_reorder,
                    )
                    if delayed:
                        self._counts["delayed"] += 1
                        due = at + faults.webhook_delay_s
                        heapq.heappush(self._waiting, (due, next(self._order), delivery))
                    else:
                        self._admit(delivery, now)
            self._cond.notify_all()
            return len(targets)

    def release_due(self, now: float) -> None:
        """Hand the delayed deliveries due by emulator time `now` to the sender, oldest first."""
        with self._cond:
            if not self._waiting or self._waiting[0][0] > now:
                return
            started = time.monotonic()
            while self._waiting and self._waiting[0][0] <= now:
                self._admit(heapq.heappop(self._waiting)[2], started)
            self._cond.notify_all()

    def resend(self, event: dict[str, Any], scope: Scope) -> int:
        """Send `event` once more to every endpoint that receives `scope`'s events, now, as a
        manual resend does: outside the webhook faults. Returns how many it is due to reach."""
        now = time.monotonic()
        with self._cond:
            targets = self.endpoints(scope)
            for endpoint in targets:
                self._counts["resent"] += 1
                body = endpoint.body(event)
                self._push(now, Delivery(endpoint, event["id"], body, 1, self._generation))
            self._cond.notify_all()
            return len(targets)

    def _admit(self, delivery: Delivery, now: float) -> None:
        if delivery.reorder:
            self._held.append(delivery)
            if self._held_until is None:
                self._held_until = now + REORDER_WINDOW_S
        else:
            self._push(now + delivery.gap_s, delivery)

    def _push(self, due: float, delivery: Delivery) -> None:
        heapq.heappush(self._queue, (due, next(self._order), delivery))

    def _flush_held(self, now: float) -> None:
        order = list(range(len(self._held)))
        self._rng.shuffle(order)
        if len(order) > 1 and order == sorted(order):
            # A shuffle may come out in order; reordering is what was asked for, so rotate.
            order = order[1:] + order[:1]
        self._counts["reordered"] += sum(1 for at, index in enumerate(order) if at != index)
        for index in order:
            delivery = self._held[index]
            self._push(now + delivery.gap_s, delivery)
        self._held.clear()
        self._held_until = None

    def _next(self) -> Delivery | None:
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                if self._held_until is not None and self._held_until <= now:
                    self._flush_held(now)
                if self._queue and self._queue[0][0] <= now:
                    self._sending += 1
                    return heapq.heappop(self._queue)[2]
                wakeups = [self._queue[0][0]] if self._queue else []
                if self._held_until is not None:
                    wakeups.append(self._held_until)
                self._cond.wait(min(wakeups) - now if wakeups else None)
            return None

    def _run(self) -> None:
        while (delivery := self._next()) is not None:
            failure = self._send(delivery)
            ok = failure is None
            with self._cond:
                self._sending -= 1
                if delivery.generation != self._generation:
                    continue
                self._counts["sent" if ok else "failed"] += 1
                retrying = not ok and delivery.attempt < self._attempts
                backoff = self._backoff_s * 2 ** (delivery.attempt - 1)
                if retrying:
                    retry = replace(delivery, attempt=delivery.attempt + 1)
                    self._push(time.monotonic() + backoff, retry)
            if failure is not None:
                # Whoever runs a receiver against the emulator needs to see why it got nothing.
                log.warning(
                    "webhook delivery failed: endpoint=%s event=%s attempt=%d/%d reason=%s; %s",
                    delivery.endpoint.url,
                    delivery.event_id,
                    delivery.attempt,
                    self._attempts,
                    failure,
                    f"retrying in {backoff:g}s" if retrying else "giving up",
                )
            else:
                self._on_delivered(delivery.event_id)

    def _send(self, delivery: Delivery) -> str | None:
        """POST one delivery; None when the endpoint took it, else why not (one short line)."""
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Stripe-Signature": signature_header(delivery.body, delivery.endpoint.secret),
        }
        try:
            response = self._http.post(
                delivery.endpoint.url, data=delivery.body, headers=headers, timeout=SEND_TIMEOUT_S
            )
        except requests.Timeout:
            return f"no answer within {SEND_TIMEOUT_S:g}s"
        except requests.ConnectionError:
            return "connection failed (is the receiver running?)"
        except requests.RequestException as exc:
            return type(exc).__name__
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"
