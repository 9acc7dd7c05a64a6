"""The control API's account listing: every account the emulator holds, as Stripe renders it."""

from __future__ import annotations

from emulator import Emulator
from tests.emulator.conftest import Schemas


def test_control_lists_every_account_oldest_first_without_counting_api_requests(
    emulator: Emulator, schemas: Schemas
) -> None:
    control = emulator.control
    assert control.accounts() == []
    created = [
        control.create_account(transactions=2)["id"],
        control.create_account(transactions=0, status="inactive")["id"],
        control.create_account(transactions=1, permissions=["balances"])["id"],
    ]
    before = control.stats()["requests"]

    listed = control.accounts()

    assert [a["id"] for a in listed] == created
    assert listed == [control.account(account_id) for account_id in created]
    assert [a["status"] for a in listed] == ["active", "inactive", "active"]
    for account in listed:
        schemas.account(account)
    assert control.stats()["requests"] == before
