"""`python -m tests.chaos.report FILE`: the table of every chaos run recorded in FILE (one JSON
outcome per line, see tests/chaos/scenario.py) and, as the last line, one JSON object of totals.
Exits 1 when a run lost, duplicated or violated anything, or the file holds no run."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLUMNS = (
    ("scenario", "scenario"),
    ("broker", "broker"),
    ("seed", "seed"),
    ("faults", "faults injected"),
    ("accounts", "accounts"),
    ("transactions", "transactions"),
    ("lost", "lost"),
    ("duplicated", "duplicated"),
    ("violations", "violations"),
    ("requests_vs_fault_free", "requests vs fault-free"),
)


def table(outcomes: Sequence[dict[str, Any]]) -> str:
    """A Markdown table, so the README can hold it as printed."""
    rows = [[title for _, title in COLUMNS]]
    for o in sorted(outcomes, key=lambda o: (o["scenario"], o["broker"], o["seed"])):
        cells = [str(o[key]) for key, _ in COLUMNS]
        cells[-1] = f"{o['requests_vs_fault_free']:.2f}x (≤ {o['factor']:g}x)"
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def totals(outcomes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    requests = sum(o["requests"] for o in outcomes)
    fault_free = sum(o["fault_free_requests"] for o in outcomes)
    return {
        "scenarios": len({o["scenario"] for o in outcomes}),
        "seeds": len({o["seed"] for o in outcomes}),
        "accounts": sum(o["accounts"] for o in outcomes),
        "transactions": sum(o["transactions"] for o in outcomes),
        "lost": sum(o["lost"] for o in outcomes),
        "duplicated": sum(o["duplicated"] for o in outcomes),
        "violations": sum(o["violations"] for o in outcomes),
        "requests_vs_fault_free": round(requests / max(1, fault_free), 3),
    }


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.chaos.report FILE (written by FCSYNC_CHAOS_REPORT runs)")
        return 2
    path = Path(argv[0])
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    recorded = [json.loads(line) for line in lines if line.strip()]
    # A run that broke off (an error, no verdict) is a failure with nothing to count.
    broken = [o for o in recorded if "error" in o]
    outcomes = [o for o in recorded if "error" not in o]
    failed = [o for o in outcomes if o["lost"] or o["duplicated"] or o["violations"]]
    failed += [o for o in outcomes if o["requests_vs_fault_free"] > o["factor"]]
    print(table(outcomes))
    for o in failed:
        print(f"FAILED {o['scenario']} {o['broker']} seed {o['seed']}: {o['problems'][:3]}")
    for o in broken:
        print(f"FAILED {o['scenario']} {o['broker']} seed {o['seed']}: {o['error'][:300]}")
        failed.append(o)
    print(json.dumps(totals(outcomes)))
    return 1 if failed or not outcomes else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
