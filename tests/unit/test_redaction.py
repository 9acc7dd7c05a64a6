"""The one place secrets are masked: URL passwords and Stripe keys never survive redaction."""

from __future__ import annotations

import string
import time
from urllib.parse import quote

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from worker.redaction import mask_url, redact


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:SuperSecretPw@127.0.0.1:6379/6", "redis://:***@127.0.0.1:6379/6"),
        (
            "postgresql+psycopg://app:pa:ss@db.internal:5432/fc",
            "postgresql+psycopg://app:***@db.internal:5432/fc",
        ),
        ("amqp://guest:guest@[::1]:5672//", "amqp://guest:***@[::1]:5672//"),
        ("sqlite:///fcsync.db", "sqlite:///fcsync.db"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_mask_url_hides_only_the_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_redact_masks_urls_and_stripe_secrets_inside_text() -> None:
    text = (
        "Error 111 connecting to redis://:SuperSecretPw@10.0.0.1:6379/0; "
        "key sk_test_4eC39HqLyjWDarjtT1zdp7dc, rk_live_abcdefgh1234, secret whsec_abc123xyz"
    )
    out = redact(text)
    for secret in ("SuperSecretPw", "4eC39HqLyjWDarjtT1zdp7dc", "abcdefgh1234", "abc123xyz"):
        assert secret not in out
    assert "redis://:***@10.0.0.1:6379/0" in out
    assert "sk_***" in out and "whsec_***" in out


def test_redact_leaves_stripe_ids_alone() -> None:
    text = "fca_1AbCdEf fctxnref_9xyz evt_123 acct_1Xyz"
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # Celery's failover list: every URL of it.
        (
            "redis://:pw1@h1:6379/0;redis://:pw2@h2:6379/0",
            "redis://:***@h1:6379/0;redis://:***@h2:6379/0",
        ),
        # A raw `@` (redis-py reads up to the last one) and a raw `/` (SQLAlchemy reads it).
        ("redis://:p@ss@h:1/0", "redis://:***@h:1/0"),
        ("postgresql://u:pa/ss@h/db", "postgresql://u:***@h/db"),
        ("redis://h:6379/0?password=sec&db=1", "redis://h:6379/0?password=***&db=1"),
        ("12redis://:pw@h", "12redis://:***@h"),
        ("sk_test_fcsync_cli", "sk_***"),
    ],
)
def test_mask_url_and_redact_cover_every_way_a_password_is_written(text: str, masked: str) -> None:
    assert mask_url(text) == masked
    assert redact(text) == masked


# Characters a password may hold unencoded (`/`, `?`, `#` and spaces end a URL's authority).
RAW = string.ascii_letters + string.digits + "!$%&'()*+,-.:;=@[]^_`{|}~"
SCHEMES = st.sampled_from(["redis", "rediss", "amqp", "postgresql+psycopg", "sqla+postgresql"])


@settings(max_examples=300, deadline=None)
@given(scheme=SCHEMES, user=st.sampled_from(["", "app"]), password=st.text(RAW, min_size=8))
def test_no_raw_password_survives(scheme: str, user: str, password: str) -> None:
    url = f"{scheme}://{user}:{password}@127.0.0.1:6379/0"
    assume(password not in url.replace(password, "", 1))
    for out in (mask_url(url), redact(f"Error 111 connecting to {url}. Retrying.")):
        assert password not in out, out
        assert f"{user}:***@127.0.0.1:6379/0" in out, out


@settings(max_examples=200, deadline=None)
@given(scheme=SCHEMES, password=st.text(min_size=8))
def test_no_encoded_password_survives(scheme: str, password: str) -> None:
    encoded = quote(password, safe="")
    url = f"{scheme}://app:{encoded}@db.internal:5432/fc"
    assume(encoded not in url.replace(encoded, "", 1))
    assert mask_url(url) == f"{scheme}://app:***@db.internal:5432/fc"
    assert encoded not in redact(f"could not connect to {url}")


@settings(max_examples=100, deadline=None)
@given(
    prefix=st.sampled_from(["sk_test_", "sk_live_", "rk_live_", "whsec_"]),
    secret=st.text(string.ascii_letters + string.digits, min_size=8),
)
def test_no_stripe_secret_survives(prefix: str, secret: str) -> None:
    out = redact(f"Invalid API Key provided: {prefix}{secret}, retrying")
    assert secret not in out


@pytest.mark.parametrize(
    "text",
    ["a://:" * 40_000, "a" * 200_000, "a://" + "b" * 200_000, "?" + "a" * 200_000],
)
def test_redact_takes_linear_time_on_huge_text(text: str) -> None:
    # Every log record is redacted: a quadratic pattern would let one huge argument stall a
    # worker for minutes.
    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 2
