"""fcsync run from a folder that holds another project's `celeryconfig.py`, `tasks` and `models`
(the first entries on sys.path for `celery` and `python -c`) still loads its own, and a name
already taken in the process fails fast in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import clean_environ
from tests.processes import BIN, ROOT

DECOY_CONFIG = """\
import sys
print("DECOY celeryconfig imported", file=sys.stderr)
broker_url = "redis://decoy.invalid:1/0"
task_default_queue = "decoy"
"""


@pytest.fixture
def decoy(tmp_path: Path) -> Path:
    folder = tmp_path / "other-project"
    folder.mkdir()
    (folder / "celeryconfig.py").write_text(DECOY_CONFIG)
    for package in ("tasks", "models"):
        (folder / package).mkdir()
        (folder / package / "__init__.py").write_text(
            f"import sys\nprint('DECOY {package} imported', file=sys.stderr)\n"
        )
    return folder


def run(argv: list[str], cwd: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **clean_environ(),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fcsync.db'}",
        "CELERY_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
    }
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_toplevel_app_loads_its_own_config_tasks_and_models_beside_decoys(
    decoy: Path, tmp_path: Path
) -> None:
    probe = (
        "import json, worker.app, celeryconfig, tasks.sync, models;"
        "conf = worker.app.app.conf;"
        "print(json.dumps({'broker': conf.broker_url, 'queue': conf.task_default_queue,"
        " 'imports': list(conf.imports), 'files': [m.__file__ for m in"
        " (celeryconfig, tasks.sync, models)]}))"
    )
    done = run([sys.executable, "-c", probe], decoy, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "DECOY" not in done.stderr
    seen = json.loads(done.stdout)
    assert seen["broker"] == f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    assert seen["queue"] == "fcsync"
    assert "tasks.sync" in seen["imports"]
    assert all(Path(f).resolve().is_relative_to(ROOT) for f in seen["files"]), seen["files"]


def test_toplevel_celery_commands_use_fcsync_config_beside_decoys(
    decoy: Path, tmp_path: Path
) -> None:
    report = run([str(BIN / "celery"), "-A", "worker.app", "report"], decoy, tmp_path)
    assert report.returncode == 0, report.stderr
    assert "task_default_queue: 'fcsync'" in report.stdout
    assert "decoy" not in (report.stdout + report.stderr).lower()
    # No worker listens, but the broker asked is fcsync's (reachable), not the decoy's host.
    ping = run(
        [str(BIN / "celery"), "-A", "worker.app", "inspect", "ping", "--timeout", "0.5"],
        decoy,
        tmp_path,
    )
    assert "No nodes replied" in ping.stdout + ping.stderr, ping.stdout + ping.stderr
    assert "decoy" not in (ping.stdout + ping.stderr).lower()


def test_toplevel_name_taken_by_another_module_fails_fast_in_one_line(
    decoy: Path, tmp_path: Path
) -> None:
    done = run([sys.executable, "-c", "import models, worker.app"], decoy, tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("DECOY")]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("fcsync: the module name 'models' is taken by ")
    assert str(decoy / "models") in lines[0]
    assert "own virtualenv" in lines[0] and "README" in lines[0]
