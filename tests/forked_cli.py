"""`fcsync ARGS` as a process of its own, forked from a server that has imported fcsync's modules
once (multiprocessing's forkserver), instead of a new interpreter that imports them all again.

The command is the console script's entry point (`worker.cli:main`) in a separate process with
the test's environment, working directory, standard streams and exit code; what it skips is
the imports, ~0.8 s of CPU (0.79 s for a `status` on SQLite, nearly all it costs) for each of
the hundreds of commands the CLI tests run on two cores. The server imports no module that
reads settings (worker.app, celeryconfig, tasks): those load in each command's own process,
from its own environment, as they do in the console script. Tests of how the script itself
starts (which modules it loads, signals, terminals, the process tree) run the real script."""

from __future__ import annotations

import ast
import atexit
import multiprocessing
import os
import subprocess
import sys
import tempfile
from pathlib import Path

FCSYNC = str(Path(sys.executable).parent / "fcsync")
ROOT = Path(__file__).resolve().parents[1]
# Modules that read the environment when imported: the settings (celeryconfig, the Celery app,
# the tasks) and prometheus_client, which picks its multiprocess mode then. Neither they nor any
# module importing them is preloaded; each command imports them from its own environment.
READ_AT_IMPORT = ("celeryconfig", "worker.app", "tasks", "prometheus_client")
LIBRARIES = (
    "sqlalchemy.orm",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql.psycopg",
    "pydantic_settings",
    "alembic.command",
    "stripe",
    "click",
    "rich.console",
    "rich.table",
    "celery.app.base",
    "kombu.transport.redis",
    "flask",
)


def _module_imports(path: Path, name: str) -> set[str]:
    """What a module imports when it is imported (its top-level statements; not what its
    functions import later, nor `if TYPE_CHECKING:` blocks)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    statements = list(ast.parse(path.read_text()).body)
    while statements:
        node = statements.pop()
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            statements += node.body + node.orelse
        elif isinstance(node, ast.Try):
            statements += node.body + node.orelse + node.finalbody
    return found


def _preloadable() -> list[str]:
    """fcsync's modules that neither read the environment when imported nor import one that
    does, directly or through another of fcsync's modules."""
    sources = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for top in ("worker", "models", "emulator")
        for path in (ROOT / top).rglob("*.py")
    }
    imports = {name: _module_imports(path, name) for name, path in sources.items()}

    def reads(name: str, seen: set[str]) -> bool:
        if name.startswith(READ_AT_IMPORT) or name == "worker.__main__":
            return True
        seen.add(name)
        return any(
            reads(imported, seen)
            for imported in imports.get(name, ())
            if imported not in seen and (imported in sources or imported.startswith(READ_AT_IMPORT))
        )

    return sorted(name for name in sources if not reads(name, set()))


_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload([*LIBRARIES, *_preloadable()])


def _command(argv: list[str], env: dict[str, str], cwd: str, out: str, err: str) -> None:
    """The forked process: the test's environment, folder and streams, then the entry point.
    Its SystemExit is the exit code, as for the interpreter (multiprocessing maps it alike)."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path, flags in (
        (0, os.devnull, os.O_RDONLY),
        (1, out, os.O_WRONLY),
        (2, err, os.O_WRONLY),
    ):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.argv = [FCSYNC, *argv]
    from worker.cli import main

    try:
        main()
    finally:
        # An interpreter's exit runs these; multiprocessing's ends the process without them.
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()


def run_fcsync(
    args: list[str], *, env: dict[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """What `subprocess.run([fcsync, *args], capture_output=True, text=True)` gives."""
    with tempfile.TemporaryDirectory(prefix="fcsync-cli-") as folder:
        out, err = Path(folder, "stdout"), Path(folder, "stderr")
        out.touch()
        err.touch()
        process = _CONTEXT.Process(
            target=_command, args=(list(args), dict(env), str(cwd), str(out), str(err))
        )
        process.start()
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired(
                [FCSYNC, *args], timeout, output=out.read_text(), stderr=err.read_text()
            )
        return subprocess.CompletedProcess(
            [FCSYNC, *args], process.exitcode, out.read_text(), err.read_text()
        )
