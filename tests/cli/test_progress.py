"""Long --inline work shows a progress bar on a terminal and plain timestamped lines otherwise."""

from __future__ import annotations

import os
import pty
import re
import subprocess

from emulator import EmulatorControl
from tests.cli.conftest import FCSYNC, Workdir

PLAIN_LINE = re.compile(r"^\d\d:\d\d:\d\d [a-z_]+: (outcome|page)=\w+")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BAR = "━"


def run_on_terminal(workdir: Workdir, *args: str, columns: int = 120) -> tuple[int, str, str]:
    """Run `fcsync ARGS` with stdout on a pseudo-terminal, as in an interactive shell."""
    primary, secondary = pty.openpty()
    env = workdir.env(TERM="xterm-256color", COLUMNS=str(columns))
    proc = subprocess.Popen(
        [FCSYNC, *args], cwd=workdir.path, env=env, stdout=secondary, stderr=subprocess.PIPE
    )
    os.close(secondary)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        _, err = proc.communicate(timeout=60)
    finally:
        os.close(primary)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, b"".join(chunks).decode(errors="replace"), err.decode()


def test_refresh_wait_on_a_terminal_shows_a_bar_through_pending_pages_done(
    migrated: Workdir, control: EmulatorControl
) -> None:
    account = control.create_account(transactions=250)["id"]
    migrated.run("track", account, "--inline", "--no-subscribe")

    code, out, err = run_on_terminal(migrated, "refresh", account, "--inline", "--wait")

    assert code == 0 and "Traceback" not in err, out + err
    text = ANSI.sub("", out)
    assert BAR in text
    assert "pending" in text  # the refresh phase ...
    screens = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
    final = screens[-1]
    assert re.search(rf"done {BAR}+ 3 pages", final), final  # ... pages, then done
    assert not any(PLAIN_LINE.match(line) for line in screens)
    # The bar moves with every commit of pages (one, or several read ahead of it), not only when
    # a sync run returns: a "syncing" screen counts the first run's pages (2 pages per run here).
    counts = [int(m.group(1)) for line in screens if (m := re.search(r" (\d+) pages", line))]
    assert counts == sorted(counts) and counts[-1] == 3, counts
    assert any(re.search(r"syncing: \d+ new, 0 updated .* [12] pages", line) for line in screens)


def test_refresh_wait_piped_prints_plain_lines_without_a_bar(
    migrated: Workdir, control: EmulatorControl
) -> None:
    account = control.create_account(transactions=250)["id"]
    migrated.run("track", account, "--inline", "--no-subscribe")

    out = migrated.run("refresh", account, "--inline", "--wait").stdout

    lines = out.splitlines()
    assert lines and all(PLAIN_LINE.match(line) for line in lines), out
    phases = [line.split()[1] + " " + line.split()[2] for line in lines]
    assert phases[0] == "refresh_account: outcome=started"
    assert "poll_refresh: outcome=succeeded" in phases
    assert phases[-1] == "sync_transactions: outcome=done"
    assert BAR not in out and "\x1b[" not in out
    # A line per page too, each run counting from its first page (2 pages per run here).
    pages = [line.split(": ", 1)[1] for line in lines if " page=" in line]
    assert [p.split()[0] for p in pages] == ["page=1", "page=2", "page=1"], out
    assert pages[:2] == ["page=1 inserted=100 updated=0", "page=2 inserted=200 updated=0"]


def test_retries_on_a_terminal_show_the_error_code_literally(
    migrated: Workdir, control: EmulatorControl
) -> None:
    account = control.create_account(transactions=20)["id"]
    migrated.run("track", account, "--inline", "--no-subscribe")
    control.set_faults(rate_limit_rate=1.0)
    try:
        code, out, err = run_on_terminal(migrated, "refresh", account, "--inline")
    finally:
        control.set_faults(rate_limit_rate=0.0)

    assert code == 4 and "Traceback" not in err, out + err
    text = ANSI.sub("", out)
    # "[rate_limit]" is what Stripe said, not markup for the bar to swallow.
    assert "refresh_account: transient error [rate_limit], retrying" in text, text
    assert "retrying after [rate_limit]" in text, text
