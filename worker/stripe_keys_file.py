"""Where the Stripe accounts come from: STRIPE_API_KEY and STRIPE_WEBHOOK_SECRET (the account
`default`) and the TOML file FCSYNC_STRIPE_ACCOUNTS names, checked as a whole. A problem is one
ConfigurationError naming the file, the table and the fix, never a secret."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from worker.errors import ConfigurationError
from worker.settings import Settings
from worker.stripe_keys import DEFAULT, KEY_PREFIXES, StripeKey, StripeKeys, key_prefix

SETTING = "FCSYNC_STRIPE_ACCOUNTS"
CODE = "bad_stripe_accounts"
# Names go into Redis keys, task arguments, metrics labels and log lines: keep them plain.
NAME = re.compile(r"[a-z0-9_-]+")
CONNECTED_ACCOUNT = re.compile(r"acct_[A-Za-z0-9]+")
EXAMPLE_TABLE = '[accounts.eu] with api_key_env = "STRIPE_EU_API_KEY"'


class _AccountTable(BaseModel):
    """One `[accounts.<name>]` table as written; an unknown field is an error (a typo)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: SecretStr | None = None
    api_key_env: str | None = None
    webhook_secrets: list[SecretStr] | None = None
    webhook_secrets_env: str | None = None
    stripe_accounts: list[str] = []


def load_stripe_keys(settings: Settings, environ: Mapping[str, str] | None = None) -> StripeKeys:
    """Every configured Stripe account: `default` from the environment first, when set, then
    the file's accounts in the file's order."""
    env = os.environ if environ is None else environ
    keys = []
    api_key = _set(settings.stripe_api_key)
    secrets = _set(settings.stripe_webhook_secret)
    if api_key or secrets:
        if api_key and key_prefix(api_key.get_secret_value()) is None:
            raise ConfigurationError(
                f"STRIPE_API_KEY does not start with {_prefixes()}: set it to a secret or "
                "restricted key from the Stripe dashboard",
                code="invalid_setting",
            )
        keys.append(StripeKey(DEFAULT, api_key, _split_secrets(secrets)))
    path = settings.fcsync_stripe_accounts
    if path is None:
        return StripeKeys(tuple(keys))
    source = f"{SETTING} file {path}"
    file_keys = _read_file(path, env, source)
    env_default = bool(keys)
    if env_default and DEFAULT in {k.name for k in file_keys}:
        raise _bad(
            source,
            DEFAULT,
            "is defined while STRIPE_API_KEY or STRIPE_WEBHOOK_SECRET is set too",
            "unset those variables (the file then holds every account), or rename the table",
        )
    keys += file_keys
    _check_unique(keys, source, env_default=env_default)
    return StripeKeys(tuple(keys), source)


def _set(value: SecretStr | None) -> SecretStr | None:
    return value if value is not None and value.get_secret_value().strip() else None


def _split_secrets(value: SecretStr | None) -> tuple[SecretStr, ...]:
    """Comma-separated signing secrets (several while one is rotated)."""
    if value is None:
        return ()
    parts = (s.strip() for s in value.get_secret_value().split(","))
    return tuple(SecretStr(s) for s in parts if s)


def _prefixes() -> str:
    names = list(KEY_PREFIXES)
    return f"{', '.join(names[:-1])} or {names[-1]}"


def _bad(source: str, table: str | None, problem: str, fix: str) -> ConfigurationError:
    where = f"{source}, [accounts.{table}]" if table is not None else source
    return ConfigurationError(f"{where}: {problem}: {fix}", code=CODE)


def _read_file(path: Path, env: Mapping[str, str], source: str) -> list[StripeKey]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _bad(
            source, None, f"cannot be read ({exc.strerror})", f"point {SETTING} at the file"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        # tomllib's message gives the line and column, never the text there.
        raise _bad(
            source, None, f"is not valid TOML ({exc})", "fix it there; name each account once"
        ) from None
    accounts = document.get("accounts")
    extra = sorted(set(document) - {"accounts"})
    if extra:
        raise _bad(
            source,
            None,
            f"has {', '.join(extra)} at its top level",
            "put each account in " + EXAMPLE_TABLE,
        )
    if not isinstance(accounts, dict) or not accounts:
        raise _bad(source, None, "defines no accounts", "add one, e.g. " + EXAMPLE_TABLE)
    return [_account(name, table, env, source) for name, table in accounts.items()]


def _account(name: str, table: object, env: Mapping[str, str], source: str) -> StripeKey:
    if not NAME.fullmatch(name):
        raise _bad(
            source,
            name,
            "is not a usable name",
            "use lowercase letters, digits, `_` and `-` only (e.g. [accounts.eu-live])",
        )
    if not isinstance(table, dict):
        raise _bad(source, name, "is not a table", "write it as " + EXAMPLE_TABLE)
    try:
        fields = _AccountTable.model_validate(table)
    except ValidationError as exc:
        # pydantic's own message shows the input, which may be a secret: field and reason only.
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"])
        raise _bad(
            source,
            name,
            f"`{field}`: {error['msg']}",
            "the fields are api_key or api_key_env, webhook_secrets or webhook_secrets_env, "
            "and stripe_accounts",
        ) from None
    api_key = _api_key(name, fields, env, source)
    for account in fields.stripe_accounts:
        if not CONNECTED_ACCOUNT.fullmatch(account):
            raise _bad(
                source,
                name,
                f"stripe_accounts holds {account!r}, not a connected account id",
                "list acct_... ids (the Stripe-Account of each connected account)",
            )
    secrets = _webhook_secrets(name, fields, env, source)
    return StripeKey(
        name,
        api_key,
        secrets,
        tuple(fields.stripe_accounts),
        where=f"[accounts.{name}] in {source}",
    )


def _one_of(
    name: str,
    given: SecretStr | list[SecretStr] | None,
    env_name: str | None,
    field: str,
    env: Mapping[str, str],
    source: str,
) -> SecretStr | None:
    """A secret written in the file, or read from the variable the file names (None if the
    table has neither)."""
    if given is not None and env_name is not None:
        raise _bad(
            source,
            name,
            f"sets both {field} and {field}_env",
            f"keep {field}_env (the secret stays out of the file) and delete {field}",
        )
    if env_name is None:
        return None
    value = env.get(env_name, "").strip()
    if not value:
        raise _bad(
            source,
            name,
            f"{field}_env names {env_name}, which is not set",
            f"export {env_name} in every fcsync process's environment",
        )
    return SecretStr(value)


def _api_key(name: str, fields: _AccountTable, env: Mapping[str, str], source: str) -> SecretStr:
    api_key = _one_of(name, fields.api_key, fields.api_key_env, "api_key", env, source)
    api_key = api_key or fields.api_key
    if api_key is None:
        raise _bad(source, name, "has no key", 'set api_key_env = "NAME_OF_A_VARIABLE"')
    if key_prefix(api_key.get_secret_value()) is None:
        raise _bad(
            source,
            name,
            f"its key does not start with {_prefixes()}",
            "use a secret or restricted key from that account's Stripe dashboard",
        )
    return api_key


def _webhook_secrets(
    name: str, fields: _AccountTable, env: Mapping[str, str], source: str
) -> tuple[SecretStr, ...]:
    from_env = _one_of(
        name, fields.webhook_secrets, fields.webhook_secrets_env, "webhook_secrets", env, source
    )
    if from_env is not None:
        return _split_secrets(from_env)
    return tuple(s for s in fields.webhook_secrets or () if s.get_secret_value().strip())


def _check_unique(keys: list[StripeKey], source: str, *, env_default: bool) -> None:
    """One key, one signing secret, one connected account per name: a second name for any of
    them would make a webhook's account or a request's key a guess."""
    checks: list[tuple[str, Callable[[StripeKey], Iterable[str]]]] = [
        ("the same api key", lambda k: [k.api_key.get_secret_value()] if k.api_key else []),
        ("the same webhook signing secret", StripeKey.secret_values),
        ("the same connected account", lambda k: k.stripe_accounts),
    ]
    for what, values in checks:
        owner: dict[str, str] = {}
        for key in keys:
            for value in values(key):
                first = owner.setdefault(value, key.name)
                if first != key.name:
                    other = (
                        "STRIPE_API_KEY/STRIPE_WEBHOOK_SECRET (the account `default`)"
                        if env_default and first == DEFAULT
                        else f"[accounts.{first}]"
                    )
                    raise _bad(
                        source,
                        key.name,
                        f"has {what} as {other}",
                        "give each Stripe account its own, or keep one of the two",
                    )
