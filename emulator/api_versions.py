"""The Stripe API versions the emulator accepts in `Stripe-Version` and on webhook endpoints, and
Stripe's 400 for any other (a typo, a missing release name, a beta suffix it does not grant)."""

from __future__ import annotations

from emulator.errors import StripeError

# Dated versions before named releases began (the changelog's "previous versions").
_DATED = (
    "2014-10-07 2014-11-05 2014-11-20 2014-12-08 2014-12-17 2014-12-22 2015-01-11 2015-01-26 "
    "2015-02-10 2015-02-16 2015-02-18 2015-03-24 2015-04-07 2015-06-15 2015-07-07 2015-07-13 "
    "2015-07-28 2015-08-07 2015-08-19 2015-09-03 2015-09-08 2015-09-23 2015-10-01 2015-10-12 "
    "2015-10-16 2016-02-03 2016-02-19 2016-02-22 2016-02-23 2016-02-29 2016-03-07 2016-06-15 "
    "2016-07-06 2016-10-19 2017-01-27 2017-02-14 2017-04-06 2017-05-25 2017-06-05 2017-08-15 "
    "2017-12-14 2018-01-23 2018-02-05 2018-02-06 2018-02-28 2018-05-21 2018-07-27 2018-08-23 "
    "2018-09-06 2018-09-24 2018-10-31 2018-11-08 2019-02-11 2019-02-19 2019-03-14 2019-05-16 "
    "2019-08-14 2019-09-09 2019-10-08 2019-10-17 2019-11-05 2019-12-03 2020-03-02 2020-08-27 "
    "2022-08-01 2022-11-15 2023-08-16 2023-10-16 2024-04-10 2024-06-20"
)
# Named releases since 2024-09-30: each major's monthly releases carry its name.
_NAMED = {
    "acacia": "2024-09-30 2024-10-28 2024-11-20 2024-12-18 2025-01-27 2025-02-24",
    "basil": "2025-03-31 2025-04-30 2025-05-28 2025-06-30 2025-07-30 2025-08-27",
    "clover": "2025-09-30 2025-10-29 2025-11-17 2025-12-15 2026-01-28 2026-02-25",
    "dahlia": "2026-03-25 2026-04-22 2026-05-27 2026-06-24 2026-07-29 2026-08-26",
    "endive": "2026-09-30 2026-10-28",
}
KNOWN_API_VERSIONS = frozenset(
    [
        *_DATED.split(),
        *(f"{date}.{name}" for name, dates in _NAMED.items() for date in dates.split()),
    ]
)


def is_known(version: str, default: str) -> bool:
    """Whether Stripe knows `version` (the emulator's own default always counts)."""
    return version == default or version in KNOWN_API_VERSIONS


def check_api_version(version: str, default: str) -> None:
    """Stripe's 400 for a version it does not know."""
    if not is_known(version, default):
        raise StripeError(400, invalid_message(version))


def invalid_message(version: str) -> str:
    return f"Invalid Stripe API version: {version}"
