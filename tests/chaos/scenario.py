"""A chaos scenario and its run: the same seeded script played twice on fresh stacks, once
without faults (the baseline) and once with them; the faulty run is judged against the
emulator's truth and its Stripe requests against the baseline's. Every outcome can be appended
to a report file (FCSYNC_CHAOS_REPORT) that `python -m tests.chaos.report` turns into a table."""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import pytest

from tests.brokers import broker_marks
from tests.chaos.invariants import CursorWatch, Verdict, judge
from worker.playground.measures import WITHOUT_RECONCILE
from worker.playground.stack import Stack, StackOptions

REPORT_ENV = "FCSYNC_CHAOS_REPORT"
SEED_ENV = "FCSYNC_CHAOS_SEED"
SEEDS_ENV = "FCSYNC_CHAOS_SEEDS"


@dataclass
class Run:
    """What a scenario's script gets: the started stack, the seeded random stream, whether to
    inject faults at all (False for the baseline) and a counter of the faults it injected."""

    stack: Stack
    rng: random.Random
    faulty: bool
    seed: int
    injected: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Scenario:
    """`accounts(rng)` gives the emulator's account specs; `script(run)` tracks, injects faults
    (only when `run.faulty`) and converges. `factor` is the stated bound on Stripe requests
    against the same seed's fault-free run. `faults` are emulator faults set for the faulty run
    after the stack starts (their seed is the run's); `env` applies to both runs' processes,
    `faulty_env` on top of it to the faulty run's only (failpoints, say)."""

    name: str
    accounts: Callable[[random.Random], list[dict[str, Any]]]
    script: Callable[[Run], None]
    factor: float
    faults: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    faulty_env: Mapping[str, str] = field(default_factory=dict)
    concurrency: int = 2


@dataclass(frozen=True)
class Outcome:
    scenario: str
    seed: int
    broker: str
    faults: int
    faults_by_kind: dict[str, int]
    accounts: int
    transactions: int
    lost: int
    duplicated: int
    violations: int
    requests: int
    fault_free_requests: int
    factor: float
    elapsed_s: float
    problems: list[str]

    @property
    def requests_vs_fault_free(self) -> float:
        return self.requests / max(1, self.fault_free_requests)

    def failures(self) -> list[str]:
        """Why the run fails its scenario (empty when it passes)."""
        found = list(self.problems)
        if self.requests_vs_fault_free > self.factor:
            found.append(
                f"{self.requests} Stripe requests, {self.requests_vs_fault_free:.2f}x the "
                f"fault-free run's {self.fault_free_requests} (bound {self.factor}x)"
            )
        if self.faults == 0:
            found.append("no fault was injected: the run proved nothing")
        return found

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "requests_vs_fault_free": round(self.requests_vs_fault_free, 3)}


def emulator_faults(stats: Mapping[str, Any]) -> Counter[str]:
    """The faults the emulator injected, by kind, from its /stats."""
    webhooks = stats["webhooks"]
    counts: Counter[str] = Counter(
        rate_limited=stats["rate_limited"],
        server_errors=stats["server_errors"],
        dropped_connections=stats["dropped_connections"],
        webhooks_dropped=webhooks.get("dropped", 0),
        webhooks_duplicated=webhooks.get("duplicated", 0),
        webhooks_delayed=webhooks.get("delayed", 0),
        webhooks_reordered=webhooks.get("reordered", 0),
        latency_spikes=stats.get("latency_spikes", 0),
    )
    return +counts


@dataclass
class Played:
    run: Run
    requests: int
    # None for the baseline, which is only counted.
    verdict: Verdict | None


def play(scenario: Scenario, options: StackOptions, seed: int, *, faulty: bool) -> Played:
    """One run of the scenario on a fresh stack, stopped when it returns."""
    # Without the weekly reconciliation: its slot (a hash of the account id) falls in a run's
    # emulated days now and then, and its listing would count as a request the faults caused.
    # It has its own end-to-end test (tests/integration/test_reconcile_end_to_end.py).
    env = {
        **WITHOUT_RECONCILE,
        **options.env,
        **scenario.env,
        **(scenario.faulty_env if faulty else {}),
    }
    stack_options = replace(options, seed=seed, env=env, concurrency=scenario.concurrency)
    rng = random.Random(f"{scenario.name}/{seed}")
    specs = scenario.accounts(rng)
    with Stack(stack_options, specs) as stack:
        run = Run(stack=stack, rng=rng, faulty=faulty, seed=seed)
        if faulty and scenario.faults:
            stack.ctl.set_faults(**{**scenario.faults, "seed": seed})
        assert stack.engine is not None
        with CursorWatch(stack.engine, stack.accounts) as watch:
            scenario.script(run)
        verdict = judge(stack, watch) if faulty else None
        stats = stack.ctl.stats()
        if faulty:
            run.injected.update(emulator_faults(stats))
        return Played(run, sum(stats["requests"].values()), verdict)


def run_scenario(
    scenario: Scenario,
    new_options: Callable[[str], StackOptions],
    seed: int,
    *,
    broker: str,
) -> Outcome:
    """The baseline, then the faulty run, each on fresh options from `new_options(label)`;
    the outcome is appended to the report file when FCSYNC_CHAOS_REPORT names one (a run that
    broke off, a stack that never converged say, as a line naming its error)."""
    try:
        baseline = play(scenario, new_options("baseline"), seed, faulty=False)
        started = time.monotonic()
        played = play(scenario, new_options("faulty"), seed, faulty=True)
    except Exception as exc:
        error = {"scenario": scenario.name, "seed": seed, "broker": broker, "error": repr(exc)}
        write_report_line(error)
        raise
    run, verdict = played.run, played.verdict
    assert verdict is not None
    outcome = Outcome(
        scenario=scenario.name,
        seed=seed,
        broker=broker,
        faults=sum(run.injected.values()),
        faults_by_kind=dict(sorted(run.injected.items())),
        accounts=verdict.accounts,
        transactions=verdict.transactions,
        lost=verdict.lost,
        duplicated=verdict.duplicated,
        violations=verdict.violations,
        requests=played.requests,
        fault_free_requests=baseline.requests,
        factor=scenario.factor,
        elapsed_s=round(time.monotonic() - started, 1),
        problems=verdict.problems[:40],
    )
    record(outcome)
    print(json.dumps(outcome.as_json()))
    return outcome


def record(outcome: Outcome) -> None:
    write_report_line(outcome.as_json())


def write_report_line(line: Mapping[str, Any]) -> None:
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")


def seeds(default: Sequence[int]) -> list[int]:
    """FCSYNC_CHAOS_SEEDS=N runs seeds 1..N (`make chaos`); FCSYNC_CHAOS_SEED=S replays seed S
    alone (the one a failed run printed); otherwise `default` (`make test`)."""
    one = os.environ.get(SEED_ENV, "").strip()
    if one:
        return [int(one)]
    wanted = os.environ.get(SEEDS_ENV, "").strip()
    return list(range(1, int(wanted) + 1)) if wanted else list(default)


def full_load() -> bool:
    """Whether this is a `make chaos` run (FCSYNC_CHAOS_SEEDS or FCSYNC_CHAOS_SEED set): a
    scenario whose full load would not fit `make test`'s time runs a smaller one there."""
    return any(os.environ.get(name, "").strip() for name in (SEEDS_ENV, SEED_ENV))


def brokers(default: Sequence[str] = ("redis",)) -> list[str]:
    """FCSYNC_CHAOS_BROKERS=redis,rabbitmq (`make chaos`); otherwise `default` (`make test`)."""
    wanted = os.environ.get("FCSYNC_CHAOS_BROKERS", "").strip()
    return [b.strip() for b in wanted.split(",") if b.strip()] if wanted else list(default)


def matrix(default_seeds: Sequence[int], default_brokers: Sequence[str] = ("redis",)) -> list[Any]:
    """(broker, seed) parameters a scenario's test is parametrized with (marked by broker)."""
    return [
        pytest.param(b, s, marks=broker_marks(b), id=f"{b}-{s}")
        for b in brokers(default_brokers)
        for s in seeds(default_seeds)
    ]
