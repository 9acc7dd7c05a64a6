"""One Stripe API version across fcsync and the emulator it is tested against, of the major the
installed stripe-python pins: an SDK upgrade to another major fails here until both follow, while
a monthly release within the major (which only adds) does not."""

from __future__ import annotations

import stripe

from emulator.config import DEFAULT_API_VERSION, EmulatorConfig
from worker.settings import STRIPE_API_VERSION


def _major(version: str) -> str:
    # Named releases read `YYYY-MM-DD.<major>`; the SDK's types describe that major's objects.
    return version.rpartition(".")[2]


def test_api_version_fcsync_sends_a_version_of_the_major_the_sdk_pins() -> None:
    # `stripe.api_version` is the version the installed stripe-python pins (its documented
    # property; nothing in fcsync assigns it).
    assert _major(stripe.api_version) == _major(STRIPE_API_VERSION) != ""
    assert stripe.api_version >= STRIPE_API_VERSION


def test_api_version_emulator_defaults_to_the_version_fcsync_sends() -> None:
    assert DEFAULT_API_VERSION == STRIPE_API_VERSION
    assert EmulatorConfig().api_version == STRIPE_API_VERSION
