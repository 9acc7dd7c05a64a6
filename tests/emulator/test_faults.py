"""Faults on the Stripe surface: Stripe's rate limit, seeded 429/500/dropped connections,
latency and its spikes, replays of lost replies; never on /_emulator/ control routes."""

from __future__ import annotations

import time

import pytest
import requests
import stripe

from emulator import ControlError, Emulator
from tests.emulator.conftest import API_KEY, make_emulator

REFRESH = "POST /v1/financial_connections/accounts/{account}/refresh"


def outcomes(emu: Emulator, count: int) -> list[int]:
    url = f"{emu.base_url}/v1/financial_connections/accounts"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    return [requests.get(url, headers=headers).status_code for _ in range(count)]


def test_requests_per_second_allows_a_burst_then_answers_429(
    emulator: Emulator, client: stripe.StripeClient
) -> None:
    emulator.control.set_faults(requests_per_second=5)
    for _ in range(5):
        client.v1.financial_connections.accounts.list()
    with pytest.raises(stripe.RateLimitError) as exc:
        client.v1.financial_connections.accounts.list()
    assert exc.value.http_status == 429
    assert exc.value.error.code == "rate_limit"
    assert exc.value.error.type == "invalid_request_error"
    time.sleep(0.25)
    client.v1.financial_connections.accounts.list()
    stats = emulator.control.stats()
    assert stats["rate_limited"] == 1
    assert stats["requests"]["GET /v1/financial_connections/accounts"] == 7


def test_seeded_fault_rates_are_deterministic() -> None:
    runs = []
    for seed in (5, 5, 6):
        with make_emulator() as emu:
            emu.control.set_faults(rate_limit_rate=0.2, server_error_rate=0.3, seed=seed)
            runs.append(outcomes(emu, 60))
            stats = emu.control.stats()
            assert stats["rate_limited"] == runs[-1].count(429)
            assert stats["server_errors"] == runs[-1].count(500)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert 5 <= runs[0].count(429) <= 25 and 8 <= runs[0].count(500) <= 32


def test_server_errors_and_dropped_connections_raise_the_sdk_errors(
    emulator: Emulator, client: stripe.StripeClient
) -> None:
    emulator.control.set_faults(server_error_rate=1.0)
    with pytest.raises(stripe.APIError) as exc:
        client.v1.financial_connections.accounts.list()
    assert exc.value.http_status == 500 and exc.value.error.type == "api_error"

    emulator.control.set_faults(server_error_rate=0.0, drop_connection_rate=1.0)
    with pytest.raises(stripe.APIConnectionError):
        client.v1.financial_connections.accounts.list()
    assert emulator.control.stats()["dropped_connections"] == 1


def test_a_dropped_refresh_ran_and_its_retry_is_replayed(
    emulator: Emulator, client: stripe.StripeClient
) -> None:
    account_id = emulator.control.create_account(transactions=5)["id"]
    emulator.control.set_faults(drop_connection_rate=1.0)
    options: dict[str, str] = {"idempotency_key": "retry-me"}
    with pytest.raises(stripe.APIConnectionError):
        client.v1.financial_connections.accounts.refresh(
            account_id,
            {"features": ["transactions"]},
            options,
        )
    emulator.control.set_faults(drop_connection_rate=0.0)
    retried = client.v1.financial_connections.accounts.refresh(
        account_id,
        {"features": ["transactions"]},
        options,
    )
    assert retried.last_response.headers["Idempotent-Replayed"] == "true"
    assert retried.transaction_refresh.status == "pending"
    again = client.v1.financial_connections.accounts.refresh(
        account_id,
        {"features": ["transactions"]},
        options,
    )
    assert again.transaction_refresh.id == retried.transaction_refresh.id
    stats = emulator.control.stats()
    assert stats["gating_violations"] == 0
    # Two replays; only the first recovered an answer a dropped connection had lost.
    assert stats["idempotent_replays"] == {REFRESH: 2}
    assert stats["replayed_lost_replies"] == {REFRESH: 1}


def test_sdk_retries_recover_from_server_errors(emulator: Emulator) -> None:
    # Seed 3's first two rolls are 0.02 and 0.30: one 500, then success on the SDK's retry.
    emulator.control.set_faults(server_error_rate=0.25, seed=3)
    retrying = stripe.StripeClient(
        API_KEY, base_addresses={"api": emulator.base_url}, max_network_retries=2
    )
    account_id = emulator.control.create_account(transactions=3)["id"]
    assert retrying.v1.financial_connections.accounts.retrieve(account_id).id == account_id
    assert emulator.control.stats()["server_errors"] == 1


def test_latency_is_added_to_api_requests_only(emulator: Emulator) -> None:
    emulator.control.set_faults(latency_ms=150)
    started = time.monotonic()
    outcomes(emulator, 2)
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    emulator.control.stats()
    assert time.monotonic() - started < 0.1


def timed_outcomes(emu: Emulator, count: int) -> list[tuple[int, float]]:
    url = f"{emu.base_url}/v1/financial_connections/accounts"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    answers = []
    for _ in range(count):
        started = time.monotonic()
        status = requests.get(url, headers=headers).status_code
        answers.append((status, time.monotonic() - started))
    return answers


def test_latency_spikes_delay_a_seeded_fraction_and_leave_other_faults_alone() -> None:
    spikes = {"latency_spike_rate": 0.25, "latency_spike_ms": 80}
    runs = []
    for extra in (spikes, spikes, {}):
        with make_emulator() as emu:
            emu.control.set_faults(server_error_rate=0.3, seed=4, **extra)
            answers = timed_outcomes(emu, 40)
            runs.append(([status for status, _ in answers], answers, emu.control.stats()))
    (statuses, answers, stats), (again, _, stats_again), (plain, _, plain_stats) = runs
    spiked = stats["latency_spikes"]
    assert 4 <= spiked <= 18 and stats_again["latency_spikes"] == spiked
    # Each spiked request waited its 80 ms (a busy machine may slow others down as well).
    assert sum(seconds >= 0.08 for _, seconds in answers) >= spiked
    assert plain_stats["latency_spikes"] == 0
    # The spikes' stream is their own: the same seed answers the same 500s with or without them.
    assert statuses == again == plain


def test_faults_never_touch_control_routes(emulator: Emulator) -> None:
    emulator.control.set_faults(server_error_rate=1.0, requests_per_second=1)
    for _ in range(5):
        emulator.control.create_account(transactions=1)
        emulator.control.now()
    assert emulator.control.stats()["requests"] == {}


def test_fault_settings_merge_and_validate(emulator: Emulator) -> None:
    control = emulator.control
    assert control.faults()["requests_per_second"] == 0
    merged = control.set_faults(requests_per_second=25, webhook_reorder=True)
    assert merged["requests_per_second"] == 25 and merged["webhook_reorder"] is True
    assert control.set_faults(latency_ms=3)["requests_per_second"] == 25
    for bad in (
        {"nope": 1},
        {"rate_limit_rate": "high"},
        {"server_error_rate": 2},
        {"latency_spike_rate": 1.5},
        {"latency_spike_ms": -1},
        {"webhook_reorder": 1},
        {"webhook_duplicate_copies": 1},
        {"webhook_duplicate_copies": 2.5},
        {"webhook_delay_rate": 1.5},
    ):
        with pytest.raises(ControlError) as exc:
            control.set_faults(**bad)
        assert exc.value.status == 400
    assert control.faults() == merged | {"latency_ms": 3.0}
    control.reset()
    assert control.faults()["requests_per_second"] == 0
