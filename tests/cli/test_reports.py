"""`status` and `transactions`: what a person (or a script) reads back from the database."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from emulator import EmulatorControl
from tests.cli.conftest import Synced
from tests.emulator.conftest import OPENAPI_DIR, Schemas
from worker.playground.truth import diff_transactions


def test_status_table_shows_refresh_cursor_rows_and_freshness(
    synced: Synced, control: EmulatorControl
) -> None:
    refresh = control.account(synced.account)["transaction_refresh"]

    table = synced.workdir.run("status").stdout

    line = next(line for line in table.splitlines() if synced.account in line)
    cells = [cell.strip() for cell in line.split("│")[1:-1]]
    header = next(line for line in table.splitlines() if "account" in line and "cursor" in line)
    names = [cell.strip() for cell in header.split("┃")[1:-1]]
    row = dict(zip(names, cells, strict=True))
    assert row["status"] == "active" and row["tracked"] == "yes" and row["subscribed"] == "no"
    assert row["outcome"] == "succeeded" and row["last refresh"].startswith(refresh["id"])
    assert row["cursor"] == refresh["id"]
    assert row["transactions"] == str(len(control.transactions(synced.account)))
    assert row["last synced"] != "never" and row["last error"] == ""


def test_status_json_matches_the_database(synced: Synced, control: EmulatorControl) -> None:
    rows = json.loads(synced.workdir.run("status", "--json").stdout)
    one = json.loads(synced.workdir.run("status", synced.account, "--json").stdout)

    assert [r["id"] for r in rows] == [synced.account] and one == rows
    refresh = control.account(synced.account)["transaction_refresh"]
    assert one[0]["refresh_status"] == "succeeded" and one[0]["cursor"] == refresh["id"]
    assert one[0]["transactions"] == len(control.transactions(synced.account))
    assert one[0]["last_synced_at"] is not None and one[0]["last_error"] is None


def test_transactions_json_is_stripes_shape_and_equals_the_truth(
    synced: Synced, control: EmulatorControl
) -> None:
    schemas = Schemas(OPENAPI_DIR)

    rows = json.loads(synced.workdir.run("transactions", synced.account, "--json").stdout)

    assert isinstance(rows, list) and rows
    for row in rows:
        schemas.transaction(row)
    truth = control.transactions(synced.account)
    assert [r["id"] for r in rows] == [t["id"] for t in truth]  # newest first, like Stripe
    assert diff_transactions(rows, truth, limit=0) == []


def test_transactions_plain_prints_one_line_per_row(
    synced: Synced, control: EmulatorControl
) -> None:
    lines = synced.workdir.run("transactions", synced.account).stdout.splitlines()

    truth = control.transactions(synced.account)
    assert [line.split()[0] for line in lines] == [t["id"] for t in truth]
    first = lines[0].split()
    assert first[1] == datetime.fromtimestamp(truth[0]["transacted_at"], UTC).date().isoformat()
    assert first[2] == truth[0]["status"] and first[3] == str(truth[0]["amount"])


def test_transactions_csv_has_a_header_and_every_row(
    synced: Synced, control: EmulatorControl
) -> None:
    out = synced.workdir.run("transactions", synced.account, "--csv").stdout

    rows = list(csv.DictReader(io.StringIO(out)))
    truth = {t["id"]: t for t in control.transactions(synced.account)}
    assert [r["id"] for r in rows] == list(truth)
    for row in rows:
        t = truth[row["id"]]
        assert int(row["amount"]) == t["amount"] and row["status"] == t["status"]
        assert int(row["updated"]) == t["updated"]
        posted = t["status_transitions"]["posted_at"]
        assert row["posted_at"] == ("" if posted is None else str(posted))


def test_transactions_since_keeps_rows_on_or_after_the_date(
    synced: Synced, control: EmulatorControl
) -> None:
    truth = control.transactions(synced.account)
    middle = datetime.fromtimestamp(truth[len(truth) // 2]["transacted_at"], UTC).date()
    cutoff = int(datetime(middle.year, middle.month, middle.day, tzinfo=UTC).timestamp())
    expected = [t["id"] for t in truth if t["transacted_at"] >= cutoff]
    assert 0 < len(expected) < len(truth)

    out = synced.workdir.run(
        "transactions", synced.account, "--json", "--since", middle.isoformat()
    ).stdout

    assert [r["id"] for r in json.loads(out)] == expected


@pytest.mark.parametrize("args", [["status", "fca_unknown"], ["status", "fca_unknown", "--json"]])
def test_status_of_an_unknown_account_exits_3(synced: Synced, args: list[str]) -> None:
    result = synced.workdir.run(*args, expect=3)
    assert "unknown_account" in result.stderr and "fca_unknown" in result.stderr
