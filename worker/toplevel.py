"""fcsync's generic top-level names (`celeryconfig`, `tasks`, `models`) bound to fcsync's own
files, so another project's module of the same name (say, in the directory `celery` runs
from, which it puts first on sys.path) can never be imported in their place."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

# worker/, tasks/, models/ and celeryconfig.py sit side by side, in the source tree (editable
# installs) as in site-packages (wheels).
ROOT = Path(__file__).resolve().parent.parent
NAMES = ("celeryconfig", "tasks", "models")


class ShadowedModuleError(SystemExit):
    """A name fcsync needs is already taken in this process by another project's module. A
    SystemExit, so every entry point (`fcsync`, `celery -A worker.app`) ends on this one line."""


def _location(name: str) -> Path:
    package = ROOT / name / "__init__.py"
    return package if package.exists() else ROOT / f"{name}.py"


def _is_ours(module: ModuleType, name: str) -> bool:
    origin = getattr(module, "__file__", None)
    return origin is not None and Path(origin).resolve() == _location(name)


def _refuse_taken(name: str) -> None:
    """Fail fast (one line naming the conflict and the fix) if another module holds `name`."""
    module = sys.modules.get(name)
    if module is not None and not _is_ours(module, name):
        origin = getattr(module, "__file__", None) or repr(module)
        raise ShadowedModuleError(
            f"fcsync: the module name {name!r} is taken by {origin}, not fcsync's "
            f"{_location(name)}; run fcsync in its own virtualenv, from a directory without "
            f"its own {name!r} (see README: Installing beside other code)"
        )


class _OwnFiles(importlib.abc.MetaPathFinder):
    """Ahead of sys.path: an import of one of NAMES, whenever it comes, loads fcsync's file."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in NAMES:
            return None  # submodules follow their package's __path__, which is fcsync's
        location = _location(fullname)
        search = [str(location.parent)] if location.name == "__init__.py" else None
        return importlib.util.spec_from_file_location(
            fullname, location, submodule_search_locations=search
        )


def _bind() -> None:
    if not any(isinstance(finder, _OwnFiles) for finder in sys.meta_path):
        sys.meta_path.insert(0, _OwnFiles())


def claim(name: str) -> ModuleType:
    """fcsync's module `name` (one of NAMES): loaded from its file if not imported yet; fails
    fast if another module already holds the name."""
    _refuse_taken(name)
    _bind()
    return importlib.import_module(name)


def claim_packages() -> None:
    """Bind `tasks` and `models` before anything imports them by name. Nothing is loaded here:
    a command that never opens the database never pays for SQLAlchemy and the models."""
    for name in ("tasks", "models"):
        _refuse_taken(name)
    _bind()
