"""fcsync: keeps Stripe Financial Connections transactions synced into a SQL database."""
