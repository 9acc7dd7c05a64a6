"""`fcsync` imports what a command uses, when it uses it: `--help`, `--version` and usage errors
load neither the database, nor Celery, nor Stripe, nor the emulator; `status` reads the database
without Celery or Stripe; an enqueue sends its task without the services; piped --inline work
never loads the progress bar's rich. Checked by the modules loaded (a fact), not by a time
(which a busy machine would make flaky)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.cli.conftest import Workdir, clean_environ
from worker.cli import COMMANDS, serve

# Runs in a fresh interpreter (this test process imported everything long ago), through
# `main`, as the console script does; each command in turn, noting what is loaded after it.
PROBE = """
import json, sys
from worker.cli import main

out, watched, *commands = sys.argv[1:]
watched = watched.split(",")
seen = {}
for command in commands:
    sys.argv = ["fcsync", *command.split()]
    try:
        main()
    except SystemExit as end:
        code = end.code
    loaded = [m for m in sys.modules if any(m == w or m.startswith(w + ".") for w in watched)]
    seen[command] = {"exit": code, "loaded": sorted(loaded)}
with open(out, "w") as f:
    json.dump(seen, f)
"""

# What a command that only parses, explains or refuses its arguments has no use for.
HEAVY = (
    "sqlalchemy",
    "models",
    "alembic",
    "celery",
    "kombu",
    "tasks",
    "stripe",
    "requests",
    "flask",
    "granian",
    "emulator",
)
USAGE_ERRORS = [
    "track BAD",
    "track fca_1 --features nope",
    "reconcile fca_1 --days 0",
    "refresh fca_1 --wait",
    "status --context",
    "nosuch",
]


def loaded_after(
    *commands: str, watched: tuple[str, ...], cwd: Path, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """For each `fcsync COMMAND`, run in turn in one process: its exit code and the watched
    modules loaded by then."""
    out = cwd / "loaded.json"
    subprocess.run(
        [sys.executable, "-c", PROBE, str(out), ",".join(watched), *commands],
        cwd=cwd,
        env=env or clean_environ(),
        capture_output=True,
        check=True,
        timeout=60,
    )
    seen: dict[str, Any] = json.loads(out.read_text())
    return seen


def test_cli_help_and_usage_errors_load_no_database_celery_stripe_or_emulator(
    tmp_path: Path,
) -> None:
    helps = ["--help", "--version", "db upgrade --help", "events sweep --help"]
    helps += [f"{name} --help" for name in COMMANDS if name != "emulator"]

    seen = loaded_after(*helps, *USAGE_ERRORS, watched=HEAVY, cwd=tmp_path)

    assert {command: seen[command]["exit"] for command in helps} == dict.fromkeys(helps, 0)
    assert {command: seen[command]["exit"] for command in USAGE_ERRORS} == dict.fromkeys(
        USAGE_ERRORS, 2
    )
    # Cumulative: the first command that loads a module names the culprit.
    assert all(result["loaded"] == [] for result in seen.values()), seen


def test_cli_status_reads_without_stripe_and_enqueue_sends_without_the_services(
    migrated: Workdir,
) -> None:
    seen = loaded_after(
        "status",
        "track fca_1Probe",
        watched=("sqlalchemy", "celery", "stripe", "requests", "worker.runtime"),
        cwd=migrated.path,
        env=migrated.env(),
    )

    assert seen["status"]["exit"] == 0
    assert "sqlalchemy" in seen["status"]["loaded"]
    assert not {"celery", "stripe", "requests"} & set(seen["status"]["loaded"]), seen
    assert seen["track fca_1Probe"]["exit"] == 0
    assert "celery" in seen["track fca_1Probe"]["loaded"]
    assert not {"stripe", "worker.runtime"} & set(seen["track fca_1Probe"]["loaded"]), seen
    assert [m["task"] for m in migrated.queued()] == ["fcsync.track_account"]


def test_cli_inline_work_piped_shows_plain_lines_without_loading_rich(migrated: Workdir) -> None:
    seen = loaded_after(
        "events sweep --inline", watched=("rich",), cwd=migrated.path, env=migrated.env()
    )

    assert seen == {"events sweep --inline": {"exit": 0, "loaded": []}}


def test_cli_emulator_command_loads_the_emulator_when_used(tmp_path: Path) -> None:
    seen = loaded_after(
        "status --help", "--help", "emulator --help", watched=("emulator",), cwd=tmp_path
    )

    assert seen["status --help"]["loaded"] == seen["--help"]["loaded"] == []
    assert "emulator.cli" in seen["emulator --help"]["loaded"]


def test_cli_help_lists_the_emulator_as_its_own_help_describes_it() -> None:
    from emulator.cli import emulator_command

    assert serve.emulator.short_help == emulator_command.get_short_help_str(limit=1000)
