"""How `fcsync status` shows accounts to a person: a table, one line per account, when it fits
(always when piped, for grep), else one block per account; ids are never cut, text never markup."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from worker import reports

# Stripe ids are the handles people copy from this view: their columns never wrap or shrink.
ID_COLUMNS = frozenset({"account", "context", "key", "last refresh", "cursor"})
COLUMNS = (
    "account",
    "context",
    "status",
    "tracked",
    "subscribed",
    "last refresh",
    "outcome",
    "refreshed at",
    "cursor",
    "transactions",
    "last synced",
    "next due",
    "state",
    "why",
    "last reconcile",
    "features",
    "relink",
    "last error",
)
TITLE = "fcsync accounts (times in UTC)"
# Wide enough for any row: a pipe gets whole lines, never a table wrapped at 80 columns.
PIPE_WIDTH = 10_000


def _when(ts: int | None, default: str = "-") -> str:
    """A Unix second as UTC to the second (the table says its times are UTC)."""
    if ts is None:
        return default
    return f"{datetime.fromtimestamp(ts, tz=UTC):%Y-%m-%d %H:%M:%S}"


def _state(row: dict[str, Any]) -> str:
    """The freshness state with what qualifies it: until when a cooldown holds, a failure's code."""
    state = row["state"]
    if row["state_code"]:
        return f"{state} [{row['state_code']}]"
    if state == "cooling_down" and row["state_until"] is not None:
        return f"{state} until {_when(row['state_until'])}"
    return str(state)


def _reconcile(row: dict[str, Any]) -> str:
    """When the last reconciliation ran and what it repaired."""
    if row.get("reconciled_at") is None:
        return "never"
    return (
        f"{_when(row['reconciled_at'])}: {row['reconcile_inserted']} inserted, "
        f"{row['reconcile_updated']} updated, {row['reconcile_vanished']} vanished"
    )


def status_cells(row: dict[str, Any]) -> dict[str, str]:
    """One account_status row as the texts people read, by column name (COLUMNS' order)."""
    return {
        "account": row["id"],
        "context": row["stripe_account"] or "platform",
        "key": row["stripe_key"],
        "status": "gone" if row["gone_at"] else row["status"],
        "tracked": "yes" if row["tracked"] else "no",
        "subscribed": "yes" if row["subscribed"] else "no",
        "last refresh": row["refresh_id"] or "-",
        "outcome": row["refresh_status"] or "-",
        "refreshed at": _when(row["refresh_last_attempted_at"]),
        "cursor": row["cursor"] or "-",
        "transactions": str(row["transactions"]),
        "last synced": _when(row["last_synced_at"], "never"),
        "next due": _when(row["next_due_at"]),
        "state": _state(row),
        "why": row["stale_reason"] or "",
        "last reconcile": _reconcile(row),
        "features": _features(row.get("features", {})),
        "relink": reports.relink_text(row),
        "last error": row["last_error"] or "",
    }


def _features(features: dict[str, dict[str, Any]]) -> str:
    """Each optional feature's freshness: `balances refreshed <when>`, its refresh pending, or
    why it is not refreshed ([missing_permission], ...)."""
    shown = []
    for name, f in features.items():
        if f["last_error"]:
            shown.append(f"{name} {f['last_error'].split(' ', 1)[0]}")
        elif f["refresh_status"] == "pending":
            shown.append(f"{name} pending")
        elif f["refreshed_at"]:
            shown.append(f"{name} refreshed {_when(f['refreshed_at'])}")
        else:
            shown.append(f"{name} never refreshed")
    return "; ".join(shown)


def _table(rows: list[dict[str, str]], names: list[str]) -> Table:
    table = Table()
    for name in names:
        table.add_column(
            name,
            justify="right" if name == "transactions" else "left",
            no_wrap=name in ID_COLUMNS,
            overflow="fold",
        )
    for cells in rows:
        # Text, not str: an error such as "[account_inactive] ..." is shown, not parsed as markup.
        table.add_row(*(Text(cells[name]) for name in names))
    return table


def _block(cells: dict[str, str], names: list[str]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(overflow="fold")
    for name in names[1:]:
        grid.add_row(Text(name), Text(cells[name]))
    return grid


def print_status(
    rows: list[dict[str, Any]], *, terminal: bool, sections: list[reports.Section] | None = None
) -> None:
    """One table of every row; with `sections` (several Stripe keys), a titled table per
    (key, context), each line naming its key too, so a grep of one line still says it."""
    console = Console() if terminal else Console(width=PIPE_WIDTH)
    console.print(Text(TITLE, style="italic"))
    if sections is None:
        _print_accounts(console, [status_cells(row) for row in rows], list(COLUMNS), terminal)
        return
    names = list(COLUMNS)
    names.insert(names.index("context") + 1, "key")
    for section in sections:
        console.print()
        context = section.stripe_account or "platform"
        count = len(section.rows)
        console.print(
            Text(
                f"Stripe key {section.stripe_key} · {context} "
                f"({count} account{'' if count == 1 else 's'})",
                style="bold",
            )
        )
        _print_accounts(console, [status_cells(row) for row in section.rows], names, terminal)


def _print_accounts(
    console: Console, cells: list[dict[str, str]], names: list[str], terminal: bool
) -> None:
    table = _table(cells, names)
    natural = Measurement.get(console, console.options.update_width(PIPE_WIDTH), table).maximum
    if not terminal or natural <= console.width:
        console.print(table)
        return
    # Too narrow for a line per account: a block per account keeps every id whole.
    for account in cells:
        console.print()
        # The id on a line of its own: a line wraps when it must, it is never cut.
        console.print(Text(account["account"], style="bold"))
        console.print(_block(account, names))
