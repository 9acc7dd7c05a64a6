"""The Stripe accounts one deployment serves, each named with its key, its webhook signing
secrets and the connected accounts it reaches; and the lookups on them: by name, by connected
account, and by the signature of a webhook. Loading and validation live in stripe_keys_file."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import SecretStr

from worker.errors import ConfigurationError, PermanentError
from worker.records import FCEvent

# The account STRIPE_API_KEY and STRIPE_WEBHOOK_SECRET configure: the single-key setup.
DEFAULT = "default"

Mode = Literal["test", "live"]
KeyKind = Literal["secret", "restricted"]
# Stripe's key prefixes: the kind of key and the mode whose objects (and events) it sees.
KEY_PREFIXES: dict[str, tuple[KeyKind, Mode]] = {
    "sk_test_": ("secret", "test"),
    "sk_live_": ("secret", "live"),
    "rk_test_": ("restricted", "test"),
    "rk_live_": ("restricted", "live"),
}
# Below this many characters after its prefix, a key's last four would show most of it.
LAST4_MIN_SECRET = 12
# What stripe_events.verify_webhook raises when no secret it was given signed the body
# (a missing header is `signature_missing`: the same for every account, so it ends the search).
SIGNATURE_MISMATCH = "signature_invalid"
# Where named keys are configured, for messages (stripe_keys_file.SETTING).
SETTING_HINT = "the FCSYNC_STRIPE_ACCOUNTS file"

# Checks a body against one account's secrets: the event and its JSON, or a PermanentError.
# The receiver passes stripe_events.verify_webhook (with its tolerance): only the gateway
# imports stripe.
Verify = Callable[[bytes, str | None, Sequence[str]], tuple[FCEvent, dict[str, Any]]]


def stored_key(name: str) -> str | None:
    """The `stripe_key` column's value for a key name: NULL for `default`, so rows of the
    single-key setup (and every row from before keys had names) need no name."""
    return None if name == DEFAULT else name


def key_name(stored: str | None) -> str:
    """The key name a `stripe_key` column's value stands for."""
    return stored or DEFAULT


def key_order(name: str) -> tuple[bool, str]:
    """A sort key for key names: `default` (STRIPE_API_KEY's) first, then each by name."""
    return (name != DEFAULT, name)


def unknown_key_name(name: str, known: Iterable[str]) -> str | None:
    """Why `name` names no Stripe key fcsync knows of, configured or stored (None when it
    does): a filter on any other key could only show nothing, which reads as "all fine"."""
    listed = sorted(set(known), key=key_order)
    if name in listed:
        return None
    return f"no configured or stored Stripe key is named {name!r}; keys: {', '.join(listed)}"


def key_origin(stored: str | None, where: str | None = None) -> str:
    """Which configured key, for messages: its name and where it is set (`where`, as
    StripeKey.where says it), never its value. Not given: STRIPE_API_KEY for `default`, the
    FCSYNC_STRIPE_ACCOUNTS file for any other name."""
    if where is None:
        where = "STRIPE_API_KEY" if stored is None else f"[accounts.{stored}] in {SETTING_HINT}"
    return f"the Stripe key `{key_name(stored)}` ({where})"


def key_prefix(api_key: str) -> tuple[KeyKind, Mode] | None:
    """The kind and mode a key's prefix says, None for a key of no known prefix."""
    for prefix, kind_mode in KEY_PREFIXES.items():
        if api_key.startswith(prefix):
            return kind_mode
    return None


@dataclass(frozen=True)
class StripeKey:
    """One configured Stripe account. `api_key` is None only for `default` when the process
    has STRIPE_WEBHOOK_SECRET alone (a receiver): its mode is then unknown and unchecked, as
    it always was. No `stripe_accounts` means any connected account the key reaches."""

    name: str
    api_key: SecretStr | None
    webhook_secrets: tuple[SecretStr, ...] = ()
    stripe_accounts: tuple[str, ...] = ()
    # Where it is configured, for messages: a file's table; None for the environment's
    # STRIPE_API_KEY (`default` only).
    where: str | None = None

    @property
    def origin(self) -> str:
        """The key's name and where it is set (key_origin), for messages."""
        return key_origin(stored_key(self.name), self.where)

    @property
    def kind(self) -> KeyKind | None:
        found = key_prefix(self.api_key.get_secret_value()) if self.api_key else None
        return found[0] if found else None

    @property
    def mode(self) -> Mode | None:
        found = key_prefix(self.api_key.get_secret_value()) if self.api_key else None
        return found[1] if found else None

    @property
    def livemode(self) -> bool | None:
        """The `livemode` of the events this key's account sends; None when unknown."""
        return None if self.mode is None else self.mode == "live"

    @property
    def last4(self) -> str | None:
        """The key's last four characters, how Stripe's dashboard names a key; None for a key
        too short to show any of it."""
        if self.api_key is None:
            return None
        value = self.api_key.get_secret_value()
        secret_part = value.split("_", 2)[-1]
        return value[-4:] if len(secret_part) >= LAST4_MIN_SECRET else None

    def serves(self, connected_account: str | None) -> bool:
        """Whether this key may act for a context: its own account (None) always; a connected
        account when listed, or when the key lists none."""
        if connected_account is None or not self.stripe_accounts:
            return True
        return connected_account in self.stripe_accounts

    def secret_values(self) -> list[str]:
        return [s.get_secret_value() for s in self.webhook_secrets]


def mode_refusal(key: StripeKey, livemode: bool) -> str | None:
    """Why an event of this `livemode` is never applied for `key`, or None: a test key's
    account never sends live events, so one signed with its secret is someone's mistake. Both
    modes' endpoints may point at one receiver; answering 2xx stops Stripe redelivering."""
    if key.livemode is None or key.livemode == livemode:
        return None
    mode = "live" if livemode else "test"
    return f"{mode}mode event; the Stripe key `{key.name}` is a {key.mode} key"


@dataclass(frozen=True)
class WebhookMatch:
    """The account whose secret signed a webhook, the event, and the context it is for.

    `refused` says why the event must not be applied (its mode, or a connected account the
    key does not serve); the edge still answers 200 so Stripe stops redelivering it."""

    key: StripeKey
    event: FCEvent
    data: dict[str, Any]
    connected_account: str | None
    refused: str | None


class UnknownStripeKeyError(PermanentError):
    """A key name or a connected account that no configured Stripe account serves."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="unknown_stripe_key")


@dataclass(frozen=True)
class StripeKeys:
    """The configured Stripe accounts, in configuration order (`default` first when set).
    `source` says where they came from, for messages."""

    keys: tuple[StripeKey, ...]
    source: str = "STRIPE_API_KEY"

    def names(self) -> list[str]:
        return [k.name for k in self.keys]

    def named(self, name: str) -> StripeKey:
        for key in self.keys:
            if key.name == name:
                return key
        raise UnknownStripeKeyError(
            f"no Stripe account is named {name!r} in {self.source}: "
            f"use one of {', '.join(self.names()) or '(none configured)'}"
        )

    def api_keys(self) -> list[StripeKey]:
        """The keys fcsync can call Stripe with, or a ConfigurationError when there is none:
        a worker would only fail task after task."""
        usable = [k for k in self.keys if k.api_key is not None]
        if not usable:
            raise ConfigurationError(
                "STRIPE_API_KEY is not set: fcsync needs a Stripe secret or restricted key "
                f"(or api_key_env of an account in {SETTING_HINT})",
                code="missing_setting",
            )
        return usable

    def require_webhook_secrets(self) -> None:
        """A ConfigurationError when no key has a signing secret: no webhook could verify."""
        if not any(k.webhook_secrets for k in self.keys):
            raise ConfigurationError(
                "STRIPE_WEBHOOK_SECRET is not set: the webhook receiver needs the endpoint's "
                f"signing secret (whsec_...), or webhook_secrets_env of an account in "
                f"{SETTING_HINT}",
                code="missing_setting",
            )

    def listing(self, connected_account: str | None) -> str | None:
        """The name of the key whose `stripe_accounts` lists the connected account, if any."""
        for key in self.keys:
            if connected_account is not None and connected_account in key.stripe_accounts:
                return key.name
        return None

    def for_connected_account(self, connected_account: str) -> StripeKey:
        """The key that acts for `acct_...`: the one listing it, else the only key that lists
        no connected accounts (any it reaches). Ambiguity is an error, never a guess."""
        listed = self.listing(connected_account)
        if listed is not None:
            return self.named(listed)  # the file's validation lets only one key list an account
        open_keys = [k for k in self.keys if not k.stripe_accounts]
        if len(open_keys) == 1:
            return open_keys[0]
        names = ", ".join(k.name for k in open_keys)
        why = f"several could ({names})" if open_keys else "none serves it"
        raise UnknownStripeKeyError(
            f"no configured Stripe account lists the connected account {connected_account} "
            f"and {why}: add it to `stripe_accounts` of the right account in {self.source}"
        )

    def match_webhook(self, payload: bytes, sig_header: str | None, verify: Verify) -> WebhookMatch:
        """The account whose signing secret signed `payload`, tried account by account.

        Raises what `verify` raises for a body no account signed (or a malformed one), and a
        ConfigurationError when no account has a secret: that is not the sender's fault."""
        self.require_webhook_secrets()
        candidates = [k for k in self.keys if k.webhook_secrets]
        for key in candidates[:-1]:
            try:
                return _matched(key, *verify(payload, sig_header, key.secret_values()))
            except PermanentError as exc:
                if exc.code != SIGNATURE_MISMATCH:
                    raise
        # The last account's verdict is the answer when no account signed the body.
        last = candidates[-1]
        return _matched(last, *verify(payload, sig_header, last.secret_values()))


def _matched(key: StripeKey, event: FCEvent, data: dict[str, Any]) -> WebhookMatch:
    # A Connect endpoint's events carry the connected account they happened on.
    account = data.get("account")
    connected = account if isinstance(account, str) and account else None
    refused = mode_refusal(key, event.livemode)
    if refused is None and not key.serves(connected):
        refused = f"connected account {connected} is not among the Stripe key `{key.name}`'s"
    return WebhookMatch(key, event, data, connected, refused)
