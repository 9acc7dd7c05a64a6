"""`fcsync demo --scale`: a share of every account's transactions and of the pages per task run,
the same cast whatever the share; `make demo` (no option) keeps the full bank."""

from __future__ import annotations

import math

from click.testing import CliRunner

from worker.demo import PAGES_PER_RUN, demo_bank, pages_per_run


def test_demo_scale_shrinks_every_account_and_keeps_the_cast() -> None:
    full, tenth = demo_bank(), demo_bank(0.1)
    assert [a.label for a in tenth] == [a.label for a in full]
    assert len(full) == 25
    for big, small in zip(full, tenth, strict=True):
        assert small.spec["transactions"] == round(big.spec["transactions"] / 10)
        assert {k: v for k, v in small.spec.items() if k != "transactions"} == {
            k: v for k, v in big.spec.items() if k != "transactions"
        }
    assert all(a.spec["transactions"] >= 1 for a in demo_bank(0.001))


def test_demo_scale_keeps_the_large_backfills_several_task_runs() -> None:
    assert pages_per_run(1.0) == PAGES_PER_RUN == 50
    assert pages_per_run(0.1) == 5
    assert pages_per_run(0.001) == 1
    for scale in (1.0, 0.1):
        largest = max(a.spec["transactions"] for a in demo_bank(scale))
        assert math.ceil(largest / 100) / pages_per_run(scale) >= 5


def test_demo_defaults_to_the_full_bank() -> None:
    from worker.cli import cli

    help_text = CliRunner().invoke(cli, ["demo", "--help"]).output
    assert "--scale" in help_text
    assert "[default: 1.0;" in " ".join(help_text.split())
