"""fcsync's generic top-level names (`celeryconfig`, `tasks`, `models`) bound to fcsync's own
files, so another project's module of the same name (say, in the directory `celery` runs
from, which it puts first on sys.path) can never be imported in their place."""

from __future__ import annotations

import importlib.util
import sys
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


def claim(name: str) -> ModuleType:
    """fcsync's module `name`: loaded from its file if not imported yet; fails fast (one line
    naming the conflict and the fix) if another module already holds the name."""
    module = sys.modules.get(name)
    if module is not None:
        if not _is_ours(module, name):
            origin = getattr(module, "__file__", None) or repr(module)
            raise ShadowedModuleError(
                f"fcsync: the module name {name!r} is taken by {origin}, not fcsync's "
                f"{_location(name)}; run fcsync in its own virtualenv, from a directory without "
                f"its own {name!r} (see README: Installing beside other code)"
            )
        return module
    location = _location(name)
    search = [str(location.parent)] if location.name == "__init__.py" else None
    spec = importlib.util.spec_from_file_location(name, location, submodule_search_locations=search)
    assert spec is not None and spec.loader is not None, location
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def claim_packages() -> None:
    """Bind `tasks` and `models` before anything imports them by name."""
    for name in ("tasks", "models"):
        claim(name)
