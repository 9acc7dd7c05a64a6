"""The chaos checks themselves: a cursor that moved back or ran ahead of its rows is caught, and
the report's totals and exit status follow the runs it reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.chaos import report
from tests.chaos.invariants import Snapshot, cursor_order_problems

ORDER = {"fca_1": ["fctxr_a", "fctxr_b", "fctxr_c"]}
TRUTH = {
    "fca_1": [
        {"id": "fctxn_1", "updated": 10, "transaction_refresh": "fctxr_a"},
        {"id": "fctxn_2", "updated": 20, "transaction_refresh": "fctxr_b"},
        {"id": "fctxn_3", "updated": 30, "transaction_refresh": "fctxr_c"},
    ]
}


def test_cursor_with_every_row_it_covers_is_fine() -> None:
    snaps = [
        Snapshot("fca_1", "fctxr_a", {"fctxn_1": 10}),
        Snapshot("fca_1", "fctxr_b", {"fctxn_1": 10, "fctxn_2": 20}),
    ]
    assert cursor_order_problems(snaps, ORDER, TRUTH) == []


def test_cursor_ahead_of_its_rows_is_caught() -> None:
    snaps = [Snapshot("fca_1", "fctxr_b", {"fctxn_1": 10})]
    assert cursor_order_problems(snaps, ORDER, TRUTH) == [
        "fca_1: cursor fctxr_b stored ahead of 1 rows (e.g. fctxn_2)"
    ]


def test_cursor_over_an_older_version_of_a_row_is_caught() -> None:
    snaps = [Snapshot("fca_1", "fctxr_a", {"fctxn_1": 9})]
    assert cursor_order_problems(snaps, ORDER, TRUTH) == [
        "fca_1: cursor fctxr_a stored ahead of 1 rows (e.g. fctxn_1)"
    ]


def test_cursor_moving_back_is_caught() -> None:
    rows = {"fctxn_1": 10, "fctxn_2": 20}
    snaps = [Snapshot("fca_1", "fctxr_b", rows), Snapshot("fca_1", "fctxr_a", rows)]
    assert cursor_order_problems(snaps, ORDER, TRUTH) == ["fca_1: cursor moved back to fctxr_a"]


def outcome(**changes: Any) -> dict[str, Any]:
    base = {
        "scenario": "crash",
        "seed": 1,
        "broker": "redis",
        "faults": 20,
        "accounts": 5,
        "transactions": 100,
        "lost": 0,
        "duplicated": 0,
        "violations": 0,
        "requests": 150,
        "fault_free_requests": 100,
        "factor": 2.0,
        "requests_vs_fault_free": 1.5,
        "problems": [],
    }
    return {**base, **changes}


def test_report_prints_the_table_then_the_totals_last(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "report.jsonl"
    runs = [outcome(), outcome(scenario="webhooks", seed=2, requests=100, fault_free_requests=100)]
    path.write_text("".join(json.dumps(r) + "\n" for r in runs))
    assert report.main([str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| scenario")
    assert json.loads(lines[-1]) == {
        "scenarios": 2,
        "seeds": 2,
        "accounts": 10,
        "transactions": 200,
        "lost": 0,
        "duplicated": 0,
        "violations": 0,
        "requests_vs_fault_free": 1.25,
    }


def test_report_fails_on_a_lost_row_or_a_retry_storm(tmp_path: Path) -> None:
    path = tmp_path / "report.jsonl"
    path.write_text(json.dumps(outcome(lost=1)) + "\n")
    assert report.main([str(path)]) == 1
    path.write_text(json.dumps(outcome(requests_vs_fault_free=2.5)) + "\n")
    assert report.main([str(path)]) == 1
    path.write_text("")
    assert report.main([str(path)]) == 1
    broke_off = {"scenario": "crash", "seed": 3, "broker": "redis", "error": "StackFailure()"}
    path.write_text(json.dumps(outcome()) + "\n" + json.dumps(broke_off) + "\n")
    assert report.main([str(path)]) == 1
