"""The gateway's error mapping, answer by answer: Stripe's HTTP errors (through the real SDK,
over a scripted HTTP client) become retry-or-record with the code fcsync stores."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any

import pytest
import stripe

from tests.stripe_http import Answer, CannedHTTPClient
from worker.errors import (
    ConfigurationError,
    FcsyncError,
    PermanentError,
    RateLimitedError,
    TransientError,
)
from worker.settings import STRIPE_API_VERSION
from worker.stripe_gateway import StripeGateway

ACCOUNT = "fca_1"
ACCOUNT_BODY = {"id": ACCOUNT, "object": "financial_connections.account", "status": "active"}


def error(status: int, type_: str = "invalid_request_error", code: str | None = None) -> Answer:
    body: dict[str, Any] = {"type": type_, "message": f"a {status} from Stripe"}
    if code is not None:
        body["code"] = code
    return Answer(status, {"error": body})


def gateway(
    *answers: Answer | Exception, retries: int = 0
) -> tuple[StripeGateway, CannedHTTPClient]:
    http = CannedHTTPClient(*answers)
    return StripeGateway("sk_test_x", max_network_retries=retries, http_client=http), http


def failure(*answers: Answer | Exception) -> FcsyncError:
    stripe_gateway, _ = gateway(*answers)
    with pytest.raises(FcsyncError) as raised:
        stripe_gateway.retrieve_account(ACCOUNT, stripe_account=None)
    return raised.value


def case_id(value: object) -> str:
    if isinstance(value, type):
        return value.__name__
    return str(value.status) if isinstance(value, Answer) else str(value)


def lost_connection() -> stripe.APIConnectionError:
    # What stripe.RequestsClient raises for a timeout or a refused connection.
    return stripe.APIConnectionError(
        "Unexpected error communicating with Stripe.", should_retry=True
    )


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (error(401), "authentication"),
        (error(401, code="api_key_expired"), "api_key_expired"),
        (error(403), "authentication"),
        (error(403, code="secret_key_required"), "secret_key_required"),
        (error(404, code="resource_missing"), "resource_missing"),
        (error(400), "invalid_request"),
        (error(400, code="parameter_missing"), "parameter_missing"),
        (error(400, "idempotency_error"), "invalid_request"),
        (error(404, "idempotency_error"), "invalid_request"),
        (error(402, "card_error"), "invalid_request"),
    ],
    ids=case_id,
)
def test_gateway_errors_that_a_retry_cannot_fix_are_permanent(answer: Answer, code: str) -> None:
    raised = failure(answer)
    assert isinstance(raised, PermanentError)
    assert raised.code == code
    assert str(answer.status) in raised.message


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (error(429, code="lock_timeout"), "lock_timeout"),
        (error(400, code="lock_timeout"), "lock_timeout"),
        (error(409, code="idempotency_key_in_use"), "idempotency_key_in_use"),
        (error(400, code="idempotency_key_in_use"), "idempotency_key_in_use"),
        (error(409), "http_409"),
        (error(500, "api_error"), "http_500"),
        (error(502, "api_error"), "http_502"),
        (error(503, "api_error"), "http_503"),
        # Bodies without Stripe's `error` object: a proxy's page, an empty or foreign answer.
        (Answer(400, {"message": "no error object"}), "http_400"),
        (Answer(502, "<html>Bad Gateway</html>"), "http_502"),
        (Answer(500, ""), "http_500"),
        (Answer(503, []), "http_503"),
    ],
    ids=case_id,
)
def test_gateway_errors_that_can_pass_are_transient(answer: Answer, code: str) -> None:
    raised = failure(answer)
    assert isinstance(raised, TransientError)
    assert raised.code == code


@pytest.mark.parametrize(
    "answer",
    [error(429), error(429, code="rate_limit"), error(400, code="rate_limit")],
    ids=["429", "429-rate_limit", "400-rate_limit"],
)
def test_gateway_errors_rate_limit_is_its_own_transient_error(answer: Answer) -> None:
    raised = failure(answer)
    assert isinstance(raised, RateLimitedError)
    assert raised.code == "rate_limit"


def test_gateway_errors_a_lost_connection_is_transient() -> None:
    raised = failure(lost_connection())
    assert isinstance(raised, TransientError) and not isinstance(raised, RateLimitedError)
    assert raised.code == "connection"


@pytest.mark.parametrize("retries", [0, 1, 3])
@pytest.mark.parametrize(
    "answer",
    [error(500, "api_error"), error(409), lost_connection()],
    ids=["500", "409", "connection"],
)
def test_gateway_errors_the_sdk_retries_exactly_max_network_retries_times(
    answer: Answer | Exception, retries: int
) -> None:
    stripe_gateway, http = gateway(answer, retries=retries)
    with pytest.raises(TransientError):
        stripe_gateway.retrieve_account(ACCOUNT, stripe_account=None)
    assert len(http.calls) == 1 + retries


@pytest.mark.parametrize(
    "answer",
    [error(429, code="rate_limit"), error(400), error(404, code="resource_missing")],
    ids=["429", "400", "404"],
)
def test_gateway_errors_the_sdk_never_retries_a_4xx(answer: Answer) -> None:
    stripe_gateway, http = gateway(answer, retries=3)
    with pytest.raises(FcsyncError):
        stripe_gateway.retrieve_account(ACCOUNT, stripe_account=None)
    assert len(http.calls) == 1


def test_gateway_errors_a_retried_refresh_keeps_its_idempotency_key_and_succeeds() -> None:
    stripe_gateway, http = gateway(
        error(500, "api_error"), lost_connection(), Answer(200, ACCOUNT_BODY), retries=2
    )
    account = stripe_gateway.refresh_transactions(
        ACCOUNT, stripe_account="acct_1", idempotency_key="refresh-fca_1-1"
    )
    assert account.id == ACCOUNT and account.stripe_account == "acct_1"
    assert [call.method for call in http.calls] == ["post"] * 3
    assert {call.headers["Idempotency-Key"] for call in http.calls} == {"refresh-fca_1-1"}
    # Each retry goes out in the connected account's context too.
    assert {call.headers["Stripe-Account"] for call in http.calls} == {"acct_1"}


def test_gateway_errors_a_connected_account_stripe_refuses_is_permanent() -> None:
    """Stripe's answer for an `acct_` the key cannot act for (not connected, or mistyped)."""
    stripe_gateway, http = gateway(error(403, code="account_invalid"))
    with pytest.raises(PermanentError) as raised:
        stripe_gateway.retrieve_account(ACCOUNT, stripe_account="acct_1Unknown")
    assert raised.value.code == "account_invalid"
    assert http.calls[0].headers["Stripe-Account"] == "acct_1Unknown"


# A key Stripe's 401 names (masked, as Stripe does) beside the key fcsync sent.
REFUSED_KEY = "sk_test_51RefusedKeyNeverShown0000"


@pytest.mark.parametrize(
    ("stripe_key", "named"),
    [
        (None, "the Stripe key `default` (STRIPE_API_KEY) was refused: Stripe 401"),
        (
            "eu",
            "the Stripe key `eu` ([accounts.eu] in the FCSYNC_STRIPE_ACCOUNTS file) was "
            "refused: Stripe 401",
        ),
    ],
)
def test_gateway_errors_a_refused_key_is_named_with_where_it_is_set_never_shown(
    stripe_key: str | None, named: str
) -> None:
    http = CannedHTTPClient(error(401, "invalid_request_error"))
    stripe_gateway = StripeGateway(
        REFUSED_KEY, max_network_retries=0, http_client=http, stripe_key=stripe_key
    )
    with pytest.raises(ConfigurationError) as raised:
        stripe_gateway.retrieve_account(ACCOUNT, stripe_account=None)
    assert raised.value.message.startswith(named), raised.value.message
    assert raised.value.code == "authentication"
    assert "RefusedKeyNeverShown" not in raised.value.message


@pytest.mark.parametrize("status", [400, 401, 404, 429, 502])
@pytest.mark.parametrize("value", ["Bad Gateway", None, 42, [], True], ids=repr)
def test_gateway_errors_an_error_that_is_no_object_is_transient(status: int, value: Any) -> None:
    # A proxy's `{"error": "Bad Gateway"}`: the SDK cannot read it as Stripe's error object.
    raised = failure(Answer(status, {"error": value}))
    assert isinstance(raised, TransientError)
    assert raised.code == "unreadable_error"


@pytest.mark.parametrize("code", [5, ["lock_timeout"], {"a": 1}, ""], ids=repr)
@pytest.mark.parametrize(
    ("answer", "root", "fallback"),
    [
        (error(404), PermanentError, "invalid_request"),
        (error(401), PermanentError, "authentication"),
        (error(429), RateLimitedError, "rate_limit"),
        (error(500, "api_error"), TransientError, "http_500"),
    ],
    ids=case_id,
)
def test_gateway_errors_a_code_that_is_no_string_is_ignored(
    answer: Answer, root: type[FcsyncError], fallback: str, code: Any
) -> None:
    body = {"error": {**answer.body["error"], "code": code}}
    raised = failure(Answer(answer.status, body))
    assert isinstance(raised, root)
    assert raised.code == fallback


PAGE_BODY = {
    "object": "list",
    "url": "/v1/financial_connections/transactions",
    "has_more": False,
    "data": [],
}


def test_gateway_errors_the_raw_list_page_keeps_the_sdk_s_request_retries_and_errors() -> None:
    # The page is read as raw JSON through the SDK (no StripeObjects): the request on the wire,
    # the SDK's retries and its typed errors must be those of `transactions.list`.
    stripe_gateway, http = gateway(
        error(500, "api_error"),
        Answer(200, PAGE_BODY, {"Request-Id": "req_page"}),
        error(429, code="rate_limit"),
        retries=1,
    )
    page = stripe_gateway.list_transactions_page(
        ACCOUNT, stripe_account=None, after_refresh="fctxnref_1", starting_after="fctxn_9"
    )
    assert page.transactions == () and not page.has_more
    assert [call.method for call in http.calls] == ["get", "get"]
    url = http.calls[0].url
    assert url.startswith("https://api.stripe.com/v1/financial_connections/transactions?")
    assert "transaction_refresh[after]=fctxnref_1" in url
    assert "starting_after=fctxn_9" in url and "limit=100" in url
    assert http.calls[0].headers["Stripe-Version"] == STRIPE_API_VERSION
    assert "Stripe-Account" not in http.calls[0].headers  # the platform's own request
    with pytest.raises(RateLimitedError):
        stripe_gateway.list_transactions_page(
            ACCOUNT, stripe_account=None, after_refresh=None, starting_after=None
        )


def a_row(amount: str) -> str:
    """A page of one transaction whose `amount` is the JSON text given."""
    row = {
        "id": "fctxn_1",
        "object": "financial_connections.transaction",
        "account": ACCOUNT,
        "amount": 0,
        "currency": "usd",
        "description": "d",
        "livemode": False,
        "status": "posted",
        "status_transitions": {"posted_at": 1, "void_at": None},
        "transacted_at": 1,
        "transaction_refresh": "fctxnref_1",
        "updated": 1,
    }
    body = json.dumps({**PAGE_BODY, "data": [row]})
    return body.replace('"amount": 0', f'"amount": {amount}')


@pytest.mark.parametrize(
    ("body", "root", "code"),
    [
        # JSON that Python reads and orjson refuses (or reads as a float: an integer past 64
        # bits): the checks name the field, as they did.
        (a_row("NaN"), PermanentError, "invalid_stripe_response"),
        (a_row(str(2**70)), PermanentError, "invalid_stripe_response"),
        (a_row("0").replace('"d"', '"\\ud800"'), PermanentError, "invalid_stripe_response"),
        # No JSON at all: the SDK's own error for an unreadable body, a transient one.
        ("<html>OK</html>", TransientError, "http_200"),
    ],
    ids=["nan", "int_past_64_bits", "lone_surrogate", "html"],
)
def test_gateway_errors_a_page_orjson_cannot_read_fails_as_the_sdk_s_parse_made_it(
    body: str, root: type[FcsyncError], code: str
) -> None:
    stripe_gateway, _ = gateway(Answer(200, body))
    with pytest.raises(FcsyncError) as raised:
        stripe_gateway.list_transactions_page(
            ACCOUNT, stripe_account=None, after_refresh=None, starting_after=None
        )
    assert isinstance(raised.value, root)
    assert raised.value.code == code


def test_gateway_errors_a_connected_account_s_page_goes_out_in_its_context() -> None:
    stripe_gateway, http = gateway(Answer(200, PAGE_BODY))
    stripe_gateway.list_transactions_page(
        ACCOUNT, stripe_account="acct_1", after_refresh=None, starting_after=None
    )
    assert http.calls[0].headers["Stripe-Account"] == "acct_1"
    assert "stripe_account" not in http.calls[0].url


class _CutShort(http.server.BaseHTTPRequestHandler):
    """Promises a page's length, sends a part of it and hangs up."""

    def do_GET(self) -> None:
        body = json.dumps(PAGE_BODY).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body) + 100))
        self.end_headers()
        self.wfile.write(body[:10])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args: Any) -> None:
        return None


def test_gateway_errors_a_page_cut_short_is_a_lost_connection() -> None:
    # Over the SDK's real HTTP client: the page is read whole inside the SDK's request, so a
    # body cut short is the SDK's connection error (transient), never a bare urllib3 one.
    server = http.server.HTTPServer(("127.0.0.1", 0), _CutShort)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        stripe_gateway = StripeGateway(
            "sk_test_x",
            api_base=f"http://127.0.0.1:{server.server_address[1]}",
            max_network_retries=0,
            timeout_s=5,
        )
        with pytest.raises(TransientError) as raised:
            stripe_gateway.list_transactions_page(
                ACCOUNT, stripe_account=None, after_refresh=None, starting_after=None
            )
        assert raised.value.code == "connection"
    finally:
        server.shutdown()
        server.server_close()
