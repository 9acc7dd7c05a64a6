"""Named Stripe accounts: the single-key setup as the account `default`, the TOML file beside
it, every way the file can be wrong named with its fix, secrets never shown, and a webhook
matched to the account whose secret signed it, refused when its mode is not the key's."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from emulator import signature_header
from tests.unit.test_http_webhooks import event
from worker.errors import ConfigurationError, PermanentError
from worker.settings import Settings
from worker.stripe_events import verify_webhook
from worker.stripe_keys import DEFAULT, StripeKeys, UnknownStripeKeyError
from worker.stripe_keys_file import load_stripe_keys

# Recognisable secret parts: none may ever appear in a repr or a message.
EU_KEY = "sk_live_EuKeyMarkQ7vR2xWp9876"
US_KEY = "rk_test_UsKeyMarkZ9nC4tYeWXYZ"
DEFAULT_KEY = "sk_test_DefaultMarkX3kL8sDabcd"
EU_HOOK = "whsec_EuHookMarkV5hJ1q"
EU_OLD_HOOK = "whsec_EuOldHookMarkB6gT"
US_HOOK = "whsec_UsHookMarkP2mN7c"
DEFAULT_HOOK = "whsec_DefaultHookMarkR8wQ"
MARKS = ("EuKeyMark", "UsKeyMark", "DefaultMark", "EuHookMark", "EuOldHookMark", "UsHookMark")
ENV = {"EU_KEY": EU_KEY, "EU_HOOKS": f"{EU_HOOK}, {EU_OLD_HOOK}"}

GOOD_FILE = f"""
[accounts.eu]
api_key_env = "EU_KEY"
webhook_secrets_env = "EU_HOOKS"
stripe_accounts = ["acct_1Eu", "acct_2Eu"]

[accounts.us-test]
api_key = "{US_KEY}"
webhook_secrets = ["{US_HOOK}"]
"""
verify = functools.partial(verify_webhook, tolerance=300)


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name in ("STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET", "FCSYNC_STRIPE_ACCOUNTS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def load(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str | None = GOOD_FILE, **env: str
) -> StripeKeys:
    if text is not None:
        path = tmp_path / "stripe-accounts.toml"
        path.write_text(text)
        env["FCSYNC_STRIPE_ACCOUNTS"] = str(path)
    return load_stripe_keys(settings(monkeypatch, **env), environ=ENV)


def refusal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, **env: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load(monkeypatch, tmp_path, text, **env)
    message = str(caught.value)
    assert caught.value.code in ("bad_stripe_accounts", "invalid_setting")
    assert not [m for m in MARKS if m in message + repr(caught.value)], message
    return message


def test_stripe_keys_single_key_setup_is_the_account_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keys = load(
        monkeypatch,
        tmp_path,
        None,
        STRIPE_API_KEY=DEFAULT_KEY,
        STRIPE_WEBHOOK_SECRET=f"{DEFAULT_HOOK},{EU_OLD_HOOK}",
    )
    assert keys.names() == [DEFAULT]
    key = keys.named(DEFAULT)
    assert (key.mode, key.kind, key.livemode, key.last4) == ("test", "secret", False, "abcd")
    assert key.secret_values() == [DEFAULT_HOOK, EU_OLD_HOOK]
    # A receiver alone may have the secret only: mode unknown, as before.
    alone = load(monkeypatch, tmp_path, None, STRIPE_WEBHOOK_SECRET=DEFAULT_HOOK).named(DEFAULT)
    assert alone.mode is None and alone.livemode is None
    assert load(monkeypatch, tmp_path, None).keys == ()


def test_stripe_keys_file_accounts_follow_default_with_modes_from_prefixes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keys = load(monkeypatch, tmp_path, STRIPE_API_KEY=DEFAULT_KEY)
    assert keys.names() == [DEFAULT, "eu", "us-test"]
    eu, us = keys.named("eu"), keys.named("us-test")
    assert (eu.mode, eu.kind, eu.last4, eu.secret_values()) == (
        "live",
        "secret",
        "9876",
        [EU_HOOK, EU_OLD_HOOK],
    )
    assert (us.mode, us.kind, us.last4, len(us.webhook_secrets)) == (
        "test",
        "restricted",
        "WXYZ",
        1,
    )
    assert eu.stripe_accounts == ("acct_1Eu", "acct_2Eu") and us.stripe_accounts == ()
    with pytest.raises(UnknownStripeKeyError, match="use one of default, eu, us-test"):
        keys.named("asia")


def test_stripe_keys_never_show_a_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    keys = load(
        monkeypatch, tmp_path, STRIPE_API_KEY=DEFAULT_KEY, STRIPE_WEBHOOK_SECRET=DEFAULT_HOOK
    )
    shown = repr(keys) + str(keys) + "".join(repr(k) + str(k) for k in keys.keys)
    assert "eu" in shown and not [m for m in MARKS if m in shown], shown


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        (
            "[accounts.eu]\napi_key_env='EU_KEY'\n[accounts.eu]\napi_key_env='EU_KEY'\n",
            {},
            "not valid TOML (Cannot declare ('accounts', 'eu') twice",
        ),
        ("[accounts.EU]\napi_key_env='EU_KEY'\n", {}, "[accounts.EU]: is not a usable name"),
        (
            "[accounts.eu]\napi_key='pk_live_EuKeyMarkQ7vR2xWp'\n",
            {},
            "[accounts.eu]: its key does not start with sk_test_, sk_live_, rk_test_ or rk_live_",
        ),
        (
            f"[accounts.eu]\napi_key='{EU_KEY}'\napi_key_env='EU_KEY'\n",
            {},
            "[accounts.eu]: sets both api_key and api_key_env: keep api_key_env",
        ),
        (
            "[accounts.eu]\napi_key_env='NOT_SET_ANYWHERE'\n",
            {},
            "names NOT_SET_ANYWHERE, which is not set: export NOT_SET_ANYWHERE",
        ),
        (
            f"[accounts.eu]\napi_key_env='EU_KEY'\n[accounts.eu2]\napi_key='{EU_KEY}'\n",
            {},
            "[accounts.eu2]: has the same api key as [accounts.eu]",
        ),
        (
            f"[accounts.eu]\napi_key='{US_KEY}'\nwebhook_secrets=['{DEFAULT_HOOK}']\n",
            {"STRIPE_WEBHOOK_SECRET": DEFAULT_HOOK},
            "has the same webhook signing secret as STRIPE_API_KEY/STRIPE_WEBHOOK_SECRET",
        ),
        (
            "[accounts.eu]\napi_key_env='EU_KEY'\nstripe_accounts=['acct_1']\n"
            f"[accounts.us]\napi_key='{US_KEY}'\nstripe_accounts=['acct_1']\n",
            {},
            "[accounts.us]: has the same connected account as [accounts.eu]",
        ),
        (
            "[accounts.default]\napi_key_env='EU_KEY'\n",
            {"STRIPE_API_KEY": DEFAULT_KEY},
            "[accounts.default]: is defined while STRIPE_API_KEY or STRIPE_WEBHOOK_SECRET is set",
        ),
        ("[accounts.eu]\napi_kye='x'\n", {}, "[accounts.eu]: `api_kye`: Extra inputs"),
        ("[accounts.eu]\napi_key=12345678\n", {}, "[accounts.eu]: `api_key`: Input should be"),
        ("[accounts.eu]\nwebhook_secrets=['whsec_x']\n", {}, "[accounts.eu]: has no key"),
        (
            "[accounts.eu]\napi_key_env='EU_KEY'\nstripe_accounts=['fca_1']\n",
            {},
            "stripe_accounts holds 'fca_1', not a connected account id",
        ),
        ("title = 'x'\n", {}, "has title at its top level"),
        ("", {}, "defines no accounts"),
    ],
)
def test_stripe_keys_file_problem_is_one_message_naming_file_table_and_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    message = refusal(monkeypatch, tmp_path, text, **env)
    assert message.startswith(f"FCSYNC_STRIPE_ACCOUNTS file {tmp_path / 'stripe-accounts.toml'}")
    assert expected in message


def test_stripe_keys_unknown_prefix_of_stripe_api_key_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    message = refusal(monkeypatch, tmp_path, GOOD_FILE, STRIPE_API_KEY="pk_test_DefaultMark12")
    assert message.startswith("STRIPE_API_KEY does not start with sk_test_")


def test_stripe_keys_missing_file_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigurationError, match=r"cannot be read .*point FCSYNC_STRIPE_ACCOUNTS"):
        load(monkeypatch, tmp_path, None, FCSYNC_STRIPE_ACCOUNTS=str(missing))


def test_stripe_keys_connected_account_finds_the_key_listing_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keys = load(monkeypatch, tmp_path)
    assert keys.for_connected_account("acct_2Eu").name == "eu"
    # Listed nowhere: the one key that lists no connected accounts reaches any.
    assert keys.for_connected_account("acct_other").name == "us-test"
    both_open = load(monkeypatch, tmp_path, STRIPE_API_KEY=DEFAULT_KEY)
    with pytest.raises(UnknownStripeKeyError, match=r"several could \(default, us-test\)"):
        both_open.for_connected_account("acct_other")


def signed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, secret: str, **extra: object
) -> tuple[StripeKeys, bytes, str]:
    keys = load(
        monkeypatch, tmp_path, STRIPE_API_KEY=DEFAULT_KEY, STRIPE_WEBHOOK_SECRET=DEFAULT_HOOK
    )
    body = event(**extra)  # type: ignore[arg-type]
    return keys, body, signature_header(body, secret)


@pytest.mark.parametrize(
    ("secret", "name"),
    [(DEFAULT_HOOK, DEFAULT), (EU_OLD_HOOK, "eu"), (US_HOOK, "us-test")],
)
def test_stripe_keys_webhook_matches_the_account_whose_secret_signed_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, secret: str, name: str
) -> None:
    livemode = name == "eu"
    keys, body, header = signed(monkeypatch, tmp_path, secret, livemode=livemode)
    match = keys.match_webhook(body, header, verify)
    assert match.key.name == name and match.refused is None
    assert match.event.id == "evt_1" and match.connected_account is None


def test_stripe_keys_webhook_of_the_other_mode_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keys, body, header = signed(monkeypatch, tmp_path, EU_HOOK, livemode=False)
    match = keys.match_webhook(body, header, verify)
    assert match.key.name == "eu"
    assert match.refused == "testmode event; the Stripe key `eu` is a live key"
    keys, body, header = signed(monkeypatch, tmp_path, DEFAULT_HOOK, livemode=True)
    assert keys.match_webhook(body, header, verify).refused == (
        "livemode event; the Stripe key `default` is a test key"
    )


def test_stripe_keys_connect_webhook_for_an_unlisted_account_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keys, body, header = signed(monkeypatch, tmp_path, EU_HOOK, livemode=True, account="acct_1Eu")
    listed = keys.match_webhook(body, header, verify)
    assert listed.connected_account == "acct_1Eu" and listed.refused is None
    keys, body, header = signed(monkeypatch, tmp_path, EU_HOOK, livemode=True, account="acct_9")
    assert keys.match_webhook(body, header, verify).refused == (
        "connected account acct_9 is not among the Stripe key `eu`'s"
    )
    # A key that lists none reaches any connected account.
    keys, body, header = signed(monkeypatch, tmp_path, US_HOOK, account="acct_9")
    assert keys.match_webhook(body, header, verify).refused is None


def test_stripe_keys_webhook_signed_by_no_account_is_a_signature_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keys, body, header = signed(monkeypatch, tmp_path, "whsec_someone_else")
    with pytest.raises(PermanentError) as caught:
        keys.match_webhook(body, header, verify)
    assert caught.value.code == "signature_invalid"
    with pytest.raises(PermanentError) as caught:
        keys.match_webhook(body, None, verify)
    assert caught.value.code == "signature_missing"
    # A well-signed body that is not an event is the body's fault, whoever signed it.
    not_json = b"{"
    with pytest.raises(PermanentError) as caught:
        keys.match_webhook(not_json, signature_header(not_json, US_HOOK), verify)
    assert caught.value.code == "bad_json"


def test_stripe_keys_webhook_without_any_secret_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keys = load(monkeypatch, tmp_path, None, STRIPE_API_KEY=DEFAULT_KEY)
    body = event()
    with pytest.raises(ConfigurationError, match="STRIPE_WEBHOOK_SECRET is not set"):
        keys.match_webhook(body, signature_header(body, DEFAULT_HOOK), verify)


def test_stripe_keys_event_json_is_what_the_account_signed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keys, body, header = signed(monkeypatch, tmp_path, US_HOOK, account="acct_9")
    assert keys.match_webhook(body, header, verify).data == json.loads(body)
