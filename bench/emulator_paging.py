"""Benchmark: does serving a page of FC transactions cost the same for 1,000 rows as for
1,000,000? Prints one JSON object (median/p95 per page kind, large/small ratios, RSS).

    .venv/bin/python -m bench emulator_paging [--large N] [--small N] [--samples N]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import requests

from emulator import Emulator, EmulatorConfig

HEADERS = {"Authorization": "Bearer sk_test_bench"}
LATER_REFRESHES = 30
PAGE = 100


def rss_mb() -> float:
    """Current resident set size (Linux /proc), falling back to the peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(http: requests.Session, url: str, params: dict[str, Any], samples: int) -> list[float]:
    latencies = []
    for _ in range(samples):
        started = time.perf_counter()
        response = http.get(url, params=params, headers=HEADERS)
        latencies.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        assert len(response.json()["data"]) == PAGE, "compare full pages only"
    return latencies


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
    }


def measure(emu: Emulator, http: requests.Session, size: int, samples: int) -> dict[str, Any]:
    control = emu.control
    started = time.perf_counter()
    account_id = control.create_account(transactions=size, refresh_cooldown_s=0)["id"]
    created_s = time.perf_counter() - started
    refresh_url = f"{emu.base_url}/v1/financial_connections/accounts/{account_id}/refresh"
    account_url = f"{emu.base_url}/v1/financial_connections/accounts/{account_id}"
    http.post(refresh_url, data={"features[]": "transactions"}, headers=HEADERS).raise_for_status()
    control.advance(2)
    refresh_id = http.get(account_url, headers=HEADERS).json()["transaction_refresh"]["id"]
    # Later refreshes give transaction_refresh[after] a full page to return even on the small
    # account (each adds 0-10 rows), so both sizes render the same 100 rows.
    for _ in range(LATER_REFRESHES):
        control.advance(6 * 3600)
        http.post(refresh_url, data={"features[]": "transactions"}, headers=HEADERS)
        control.advance(2)
    # The cursor of the 150th-oldest row: the page after it is the deepest a backfill reads.
    # Reaching it over HTTP would mean paging 10,000 times, so it is minted in-process.
    with emu.bank.lock:
        deep = emu.bank.accounts[account_id].ledger.ids.make(150)
    base = {"account": account_id, "limit": PAGE}
    kinds = {
        "first_page": base,
        "deep_starting_after": {**base, "starting_after": deep},
        "transaction_refresh_after": {**base, "transaction_refresh[after]": refresh_id},
    }
    result: dict[str, Any] = {"transactions": size, "create_s": round(created_s, 3)}
    list_url = f"{emu.base_url}/v1/financial_connections/transactions"
    for kind, params in kinds.items():
        timed(http, list_url, params, 10)
        result[kind] = summary(timed(http, list_url, params, samples))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    rss_start = rss_mb()
    with Emulator(EmulatorConfig(seed=1, refresh_delay_s=1.0, frozen_clock=True)) as emu:
        http = requests.Session()
        small = measure(emu, http, args.small, args.samples)
        rss_before_large = rss_mb()
        large = measure(emu, http, args.large, args.samples)
        rss_after_large = rss_mb()
        http.close()
    ratios = {
        kind: round(large[kind]["median_ms"] / small[kind]["median_ms"], 3)
        for kind in ("first_page", "deep_starting_after", "transaction_refresh_after")
    }
    print(
        json.dumps(
            {
                "small": small,
                "large": large,
                "ratio_large_over_small_median": ratios,
                "max_ratio": max(ratios.values()),
                "target_ratio": 2.0,
                "targets": {
                    "page latency, large over small account": {
                        "target": "< x2 (median, every kind of page)",
                        "value": max(ratios.values()),
                        "holds": max(ratios.values()) < 2.0,
                    }
                },
                "rss_mb": {
                    "start": round(rss_start, 1),
                    "before_large": round(rss_before_large, 1),
                    "after_large": round(rss_after_large, 1),
                    "large_account": round(rss_after_large - rss_before_large, 1),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
