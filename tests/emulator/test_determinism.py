"""Same seed and same calls give byte-identical data; another seed gives other data."""

from __future__ import annotations

import json

import stripe

from tests.emulator.conftest import API_KEY, make_emulator


def scripted_run(seed: int) -> bytes:
    """A fixed sequence of calls; returns every account's ground truth and the events."""
    with make_emulator(seed=seed, refresh_cooldown_s=0) as emu:
        client = stripe.StripeClient(API_KEY, base_addresses={"api": emu.base_url})
        control = emu.control
        ids = [control.create_account(transactions=n)["id"] for n in (0, 150, 2_000)]
        flaky = control.create_account(transactions=300, failure_rate=0.5)["id"]
        for _ in range(4):
            for account_id in [*ids, flaky]:
                client.v1.financial_connections.accounts.refresh(
                    account_id, {"features": ["transactions"]}
                )
            control.advance(6 * 3600)
        client.v1.financial_connections.accounts.subscribe(ids[1], {"features": ["transactions"]})
        control.advance(2 * 86_400)
        truth = {a: control.transactions(a) for a in [*ids, flaky]}
        events = [e.to_dict() for e in client.v1.events.list({"limit": 100}).auto_paging_iter()]
        return json.dumps({"truth": truth, "events": events}, sort_keys=True).encode()


def test_same_seed_same_calls_give_byte_identical_data() -> None:
    first = scripted_run(seed=11)
    assert first == scripted_run(seed=11)
    data = json.loads(first)
    assert sum(len(rows) for rows in data["truth"].values()) > 2_400
    outcomes = {e["data"]["object"]["transaction_refresh"]["status"] for e in data["events"][:-4]}
    assert outcomes == {"succeeded", "failed"}


def test_another_seed_gives_other_data() -> None:
    assert scripted_run(seed=11) != scripted_run(seed=12)
