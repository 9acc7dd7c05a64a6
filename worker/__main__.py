"""`python -m worker` is the `fcsync` command."""

from worker.cli import main

main()
