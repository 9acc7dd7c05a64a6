"""The /status page in a real browser: `fcsync webhooks` serves it over accounts that fcsync's
services drove into every freshness state against the emulator; headless Chromium (Debian's
`chromium`) loads it, its DOM is checked and its screenshot saved under the test's folder.

Without Chromium the test skips locally and fails under CI=true (`.ci/run` installs it)."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests
from sqlalchemy.orm import Session

from tests.cli.conftest import FCSYNC, Supervisor, clean_environ, free_port, wait_for
from tests.conftest import unavailable
from tests.rows import account_row
from tests.service.conftest import emulated_fc
from tests.service.harness import EmulatedFC
from worker import refresh, tracking
from worker.db import make_engine, upgrade_database

CHROMIUM = "/usr/bin/chromium"
TOKEN = "status-page-browser-token-5d1e"
WINDOW = (1280, 900)
DAY_S = 86_400
# Days of emulator time the accounts live through, each with the fresh account's sync.
WEEK_DAYS = 7
# A recorded error quoting a key, as a misconfigured proxy or an SDK message could.
LEAKED_KEY = "sk_test_51LeakedKeyInAnError000000"
# The badge backgrounds of the page's CSS: each state's colour must reach the screen.
BADGE_RGB = {
    "fresh": (0xDA, 0xFB, 0xE1),
    "failing": (0xFF, 0xEB, 0xE9),
    "relink_required": (0xFF, 0xF1, 0xE5),
}


@pytest.fixture
def chromium() -> str:
    if shutil.which(CHROMIUM) is None:
        unavailable("Chromium", f"no {CHROMIUM} (Debian: apt-get install chromium)")
    return CHROMIUM


class Page(HTMLParser):
    """What the test reads from the rendered DOM: account rows, badges, chart days, links."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.rows: dict[str, str] = {}
        self.badges: list[str] = []
        self.days: list[tuple[str, int, int]] = []
        self.bars = 0
        self.scripts = 0
        self.links: list[str] = []
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "tr" and "account" in classes:
            self.rows[a["data-account"]] = a["data-state"]
        elif tag == "span" and "badge" in classes:
            self.badges.extend(c for c in classes if c.startswith("state-"))
        elif tag == "g" and "day" in classes:
            self.days.append((a["data-day"], int(a["data-inserted"]), int(a["data-updated"])))
        elif tag == "rect" and "bar" in classes:
            self.bars += 1
        elif tag == "script":
            self.scripts += 1
        elif tag == "a":
            self.links.append(a.get("href", ""))


def browse(chromium: str, folder: Path, url: str, *args: str) -> str:
    """Chromium's headless run of `url` with `args`: its stdout (the DOM for --dump-dom)."""
    folder.mkdir(parents=True, exist_ok=True)
    argv = [
        chromium,
        "--headless",
        # Root in a container has no user namespace for Chromium's sandbox.
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={folder / 'profile'}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        *args,
        url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=90, cwd=folder)
    assert done.returncode == 0, f"chromium -> {done.returncode}\n{done.stderr[-2000:]}"
    return done.stdout


def pixels(png: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Width, height and RGB pixels of an 8-bit, non-interlaced RGB(A) PNG (what Chromium
    writes), decoded here so the check needs nothing beyond the standard library."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 4 if colour == 6 else 3
    raw, stride = zlib.decompress(idat), width * bpp
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = previous[i]
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                corner = previous[i - bpp] if i >= bpp else 0
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                nearest = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + nearest) & 0xFF
        rows.append(line)
        previous = line
    rgb = [(r[i], r[i + 1], r[i + 2]) for r in rows for i in range(0, stride, bpp)]
    return width, height, rgb


def drive_accounts(fc: EmulatedFC, session: Session) -> dict[str, str]:
    """Accounts in every freshness state, each reached the way fcsync reaches it: fcsync's own
    services against the emulator, a week of emulator time passing (one refresh and sync a
    day for the chart)."""
    new = lambda **spec: fc.create_account(**spec)  # noqa: E731
    accounts = {
        "fresh": new(transactions=40),
        "stale": new(transactions=20),
        "cooling_down": new(transactions=20, refresh_cooldown_s=3 * DAY_S),
        "failing": new(transactions=10),
        "refreshing": new(transactions=5, refresh_delay_s=DAY_S),
        "relink_required": new(transactions=5, permissions=["balances"]),
        "inactive": new(transactions=5, status="inactive"),
        "disconnected": new(transactions=5, status="disconnected"),
        "untracked": new(transactions=5),
    }

    def track(state: str) -> None:
        tracking.track_account(
            session,
            fc.gateway,
            accounts[state],
            subscribe=False,
            now=fc.now(),
            settings=fc.settings,
        )
        session.commit()

    def refresh_and_sync(state: str) -> None:
        fc.refresh(session, accounts[state])
        fc.sync(session, accounts[state])

    # A week: the fresh account refreshed and synced every day; the stale one only on the
    # first; the cooling-down one two days ago, under a three-day cooldown.
    for state in ("fresh", "stale"):
        track(state)
        refresh_and_sync(state)
    for day in range(1, WEEK_DAYS):
        fc.advance(DAY_S)
        if day == WEEK_DAYS - 3:
            track("cooling_down")
            refresh_and_sync("cooling_down")
        refresh_and_sync("fresh")
    for state in ("failing", "refreshing", "relink_required", "inactive", "disconnected"):
        track(state)
    fc.control.update_account(accounts["failing"], fail_next_refreshes=1)
    fc.refresh(session, accounts["failing"])
    decision = refresh.request_refresh(
        session,
        fc.gateway,
        accounts["refreshing"],
        source="manual",
        now=fc.now(),
        settings=fc.settings,
    )
    assert decision.outcome == "started", decision
    session.commit()
    track("untracked")
    tracking.untrack_account(
        session,
        fc.gateway,
        accounts["untracked"],
        unsubscribe=False,
        now=fc.now(),
        settings=fc.settings,
    )
    # An error text that quotes a key: the page must mask it.
    failing = account_row(session, accounts["failing"])
    failing.last_error_message = f"Invalid API Key provided: {LEAKED_KEY}"
    session.commit()
    return accounts


@pytest.fixture
def fc() -> Iterator[EmulatedFC]:
    """fcsync's services call the emulator from this process; the receiver follows its frozen
    clock (FCSYNC_CLOCK_URL), so a week passes in a second."""
    with emulated_fc() as fc:
        yield fc


def test_status_page_in_headless_chromium(
    chromium: str, fc: EmulatedFC, children: Supervisor, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'fcsync.db'}"
    upgrade_database(db_url)
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            accounts = drive_accounts(fc, session)
    finally:
        engine.dispose()
    port = free_port()
    env = {
        **clean_environ(),
        "DATABASE_URL": db_url,
        "STRIPE_WEBHOOK_SECRET": "whsec_status_page",
        "FCSYNC_CLOCK_URL": f"{fc.emulator.base_url}/_emulator/clock",
        "FCSYNC_STATUS_TOKEN": TOKEN,
        "FCSYNC_LOG_LEVEL": "WARNING",
    }
    argv = [FCSYNC, "webhooks", "--host", "127.0.0.1", "--port", str(port)]
    children.spawn("webhooks", argv, env=env, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{base}/healthz", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    wait_for(up, timeout=30, what=f"fcsync webhooks\n{children.logs()}")

    # The whole page: every account in the state fcsync drove it to, coloured and named.
    dom = browse(chromium, tmp_path / "all", f"{base}/status", "--dump-dom")
    page = Page(dom)
    assert page.rows == {account: state for state, account in accounts.items()}, page.rows
    for state in accounts:
        assert f"state-{state}" in page.badges and f">{state.replace('_', ' ')}<" in dom
    assert page.scripts == 0
    assert "Invalid API Key provided: sk_***" in dom and LEAKED_KEY not in dom and TOKEN not in dom
    # The chart: 14 days, two bars each; the last week's days each hold a sync's rows (the
    # first day's backfill of two accounts the most), the week before none.
    assert len(page.days) == 14 and page.bars == 28
    synced = [inserted + updated for _, inserted, updated in page.days]
    assert synced[:-WEEK_DAYS] == [0] * (14 - WEEK_DAYS)
    assert all(n > 0 for n in synced[-WEEK_DAYS:]), synced
    assert synced[-WEEK_DAYS] >= 60 and synced[-WEEK_DAYS] == max(synced), synced
    assert "?state=failing" in page.links

    # The filter, followed as a person would: only the failing account remains.
    failing = Page(
        browse(chromium, tmp_path / "failing", f"{base}/status?state=failing", "--dump-dom")
    )
    assert failing.rows == {accounts["failing"]: "failing"}

    # What a person sees: a real, non-blank screenshot with the states' colours on it.
    shot = tmp_path / "status.png"
    browse(chromium, tmp_path / "shot", f"{base}/status", f"--screenshot={shot}")
    print(f"status page screenshot: {shot}")
    width, height, rgb = pixels(shot.read_bytes())
    assert (width, height) == WINDOW
    colours = set(rgb)
    assert len(colours) > 50, f"{len(colours)} colours: a blank page?"
    inked = sum(1 for p in rgb if p != (255, 255, 255)) / len(rgb)
    assert inked > 0.05, f"only {inked:.1%} of the screenshot is not white"
    for state, colour in BADGE_RGB.items():
        assert colour in colours, f"no {state} badge colour {colour} on the screenshot"
