"""What `fcsync demo` tells the person watching it: what it sets up, what each phase does, what
its numbers mean and what to try next. The orchestration itself lives in worker/demo.py."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

INTRO = (
    "[bold]fcsync demo[/bold]: the whole job end to end, on this machine only.\n"
    "An emulated Stripe (fcsync's FC emulator: Stripe's API, signed webhooks and a clock it can "
    "move) holds linked bank accounts. fcsync runs as in production: a Celery worker, beat and "
    "the webhook receiver as separate processes, here on SQLite and an embedded broker in a "
    "temporary folder; their logs go there and are shown only if something fails. Stripe's "
    "clock then moves through three days of daily refreshes, and at the end the database must "
    "equal the emulator's truth, account by account."
)

# {pages}: the demo's pages per task run (scaled with its bank, 50 at full scale).
ROLES = {
    "large": "backfills of many pages: {pages} pages per task run, then the task re-enqueues "
    "itself and resumes from its checkpoint",
    "small": "everyday accounts",
    "inactive": "its bank connection is inactive: Stripe refuses to refresh it, so fcsync "
    "records account_inactive once and stops asking until Stripe says it is reactivated",
    "flaky": "half of its refreshes fail at the bank: fcsync records each failure, leaves the "
    "account's cursor where it was and asks again once Stripe's cooldown has passed",
}

TRACKING = (
    "Each fcsync.track_account reads the account from Stripe, stores it and subscribes it to "
    "Stripe's daily refresh, which starts its first refresh. The webhook receiver hears when a "
    "refresh finishes; the worker then pages its transactions into the database."
)

DAY = (
    "Stripe's clock moved 24 h: every subscribed account gets its daily refresh (pending "
    "transactions settle, new ones appear); a webhook tells fcsync, which syncs only what "
    "changed since the account's cursor"
)

GATING = (
    "A [bold]gating violation[/bold] is a refresh requested while one is still pending or "
    "before Stripe's next_refresh_available_at. Stripe ignores such a request, yet it spends "
    "the rate budget all workers share; fcsync reads the account before every refresh so that "
    "it never asks too early. The emulator counts them, and the demo passes only with 0."
)

# (why, command): printed as a shell session, a comment over each command, never cut.
TRY_NEXT = (
    (
        "in a second terminal: an emulated Stripe on port 12111",
        "fcsync emulator --seed 7 --accounts 3",
    ),
    (
        "point fcsync at it, with a database in this folder",
        "export STRIPE_API_BASE=http://127.0.0.1:12111",
    ),
    ("", "export STRIPE_API_KEY=sk_test_try DATABASE_URL=sqlite:///fcsync.db"),
    ("", "fcsync db upgrade"),
    ("the emulated accounts and their ids", "curl -s http://127.0.0.1:12111/_emulator/accounts"),
    ("keep one in sync (its first refresh starts)", "fcsync track fca_... --inline"),
    ("wait for that refresh, then sync its pages", "fcsync refresh fca_... --inline --wait"),
    ("per account: refresh, cursor, next due, why not fresh", "fcsync status"),
    ("what was stored", "fcsync transactions fca_... --csv"),
    ("worker + beat, as in production (Ctrl-C stops them)", "fcsync run"),
)


def _role(label: str, pages_per_run: int) -> str:
    return ROLES.get(label.split("-")[0], "").format(pages=pages_per_run)


def show_intro(console: Console) -> None:
    console.print(INTRO)
    console.print()


def show_cast(console: Console, bank: Sequence[tuple[str, int]], *, pages_per_run: int) -> None:
    """The accounts by kind (label prefix): how many transactions, and what each kind shows."""
    kinds: dict[str, list[tuple[str, int]]] = {}
    for label, transactions in bank:
        kinds.setdefault(label.split("-")[0], []).append((label, transactions))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(justify="right", no_wrap=True)
    grid.add_column()
    for members in kinds.values():
        first, last = members[0][0], members[-1][0]
        name = first if len(members) == 1 else f"{first}..{last.split('-')[-1]}"
        sizes = [n for _, n in members]
        count = f"{sizes[0]:,}" if len(sizes) == 1 else f"{min(sizes):,}-{max(sizes):,}"
        grid.add_row(name, count, _role(first, pages_per_run))
    console.print(Padding(grid, (0, 0, 0, 9)))


def explain(console: Console, text: str) -> None:
    """A paragraph under the timeline: indented past its timestamps."""
    console.print(Padding(text, (0, 0, 0, 9)), style="dim")


def show_try_next(console: Console) -> None:
    console.print()
    console.print("[bold]Try it yourself[/bold], in an empty folder:")
    for why, command in TRY_NEXT:
        if why:
            console.print(Text(f"  # {why}", style="dim"))
        console.print(Text(f"  {command}"), highlight=False)
