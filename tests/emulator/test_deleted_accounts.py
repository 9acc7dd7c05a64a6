"""An account Stripe no longer knows: after `DELETE /_emulator/accounts/{id}` every API call
naming it is a 404 `resource_missing`, its scheduled work stops, and the stats still count
the requests that named it."""

from __future__ import annotations

import pytest
import stripe

from emulator import ControlError, Emulator


def test_deleted_account_answers_404_to_every_call_naming_it(
    emulator: Emulator, client: stripe.StripeClient
) -> None:
    control = emulator.control
    kept = control.create_account(transactions=5)["id"]
    account_id = control.create_account(transactions=5)["id"]
    fc = client.v1.financial_connections
    # A subscribed account with a refresh still pending: the emulator's own schedule holds
    # work for it that must not run (or crash) once the account is gone.
    fc.accounts.subscribe(account_id, {"features": ["transactions"]})

    control.delete_account(account_id)

    calls = [
        lambda: fc.accounts.retrieve(account_id),
        lambda: fc.accounts.refresh(account_id, {"features": ["transactions"]}),
        lambda: fc.accounts.subscribe(account_id, {"features": ["transactions"]}),
        lambda: fc.transactions.list({"account": account_id}),
    ]
    for call in calls:
        with pytest.raises(stripe.InvalidRequestError) as raised:
            call()
        assert (raised.value.http_status, raised.value.code) == (404, "resource_missing")
    control.advance(2 * 86_400)  # its pending refresh and daily refresh fall due: nothing runs
    assert [a.id for a in fc.accounts.list().data] == [kept]
    assert fc.accounts.retrieve(kept).id == kept

    by_account = control.stats()["requests_by_account"]
    assert by_account[account_id] == 1 + len(calls)
    with pytest.raises(ControlError) as missing:
        control.delete_account(account_id)
    assert missing.value.status == 404
