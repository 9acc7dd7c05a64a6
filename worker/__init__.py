"""fcsync: keeps Stripe Financial Connections transactions synced into a SQL database."""

from worker.toplevel import claim_packages

# Before any module here imports `tasks` or `models` by name (see worker/toplevel.py).
claim_packages()
