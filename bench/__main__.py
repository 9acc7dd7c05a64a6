"""`python -m bench NAME [options]`: run the benchmark bench/NAME.py with the options."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

NAMES = sorted(p.stem for p in Path(__file__).parent.glob("*.py") if not p.stem.startswith("_"))

if len(sys.argv) < 2 or sys.argv[1] not in NAMES:
    sys.exit(f"usage: python -m bench NAME [options], NAME one of: {', '.join(NAMES)}")
name = sys.argv.pop(1)
sys.argv[0] = f"bench/{name}.py"
runpy.run_module(f"bench.{name}", run_name="__main__", alter_sys=True)
