"""The one place secrets are masked: URL passwords and Stripe keys never survive redaction."""

from __future__ import annotations

import pytest

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
