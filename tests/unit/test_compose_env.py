"""The compose stack's settings: every fcsync setting reaches its containers and is listed in
.env.example; the two modes (emulator profile as shipped, real Stripe without it) resolve to what
they promise; `docker compose config` accepts the file when a compose CLI is installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy.engine import make_url

from tests.cli.test_readme import rendered
from tests.unit.test_compose import (
    COMPOSE_FILE,
    INTERPOLATION,
    ROOT,
    compose,
    environment,
    interpolate,
    parse_service,
    project_services,
    services,
    shared_environment,
)

# The compose file's fixtures, shared with test_compose.py rather than written again.
__all__ = ["compose", "services"]
from worker.errors import ConfigurationError
from worker.settings import STRIPE_DEFAULT_API_BASE, Settings
from worker.stripe_keys_file import load_stripe_keys

ENV_EXAMPLE = ROOT / ".env.example"
# Compose itself reads this one (the profiles to start).
COMPOSE_VARIABLES = {"COMPOSE_PROFILES"}
# Settings the stack fixes or has no use for: the bundled PostgreSQL and Redis are the database
# and broker, so the embedded broker's knobs do nothing there.
FIXED = {"DATABASE_URL", "REDIS_URL"}
UNUSED = {"CELERY_BROKER_URL", "FCSYNC_EMBEDDED_BROKER_PATH", "FCSYNC_EMBEDDED_BROKER_POLL_S"}
ASSIGNMENT = re.compile(r"^(?P<comment>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>\S*)", re.M)


def setting_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def env_example(*, active: bool) -> dict[str, str]:
    """.env.example's assignments: the ones compose reads (active) or the commented ones."""
    return {
        m["name"]: m["value"]
        for m in ASSIGNMENT.finditer(ENV_EXAMPLE.read_text())
        if (m["comment"] is None) == active
    }


def read_by_compose(services: dict[str, dict[str, Any]]) -> set[str]:
    """Every variable that changes the stack: interpolated, or passed through to a container."""
    interpolated = {m["name"] for m in INTERPOLATION.finditer(COMPOSE_FILE.read_text())}
    passed = {k for s in services.values() for k, v in environment(s).items() if v is None}
    return interpolated | passed | COMPOSE_VARIABLES


def container_env(service: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    """What a container gets when `env` is the .env file (and the shell sets nothing)."""
    resolved = {}
    for name, value in environment(service).items():
        if value is not None:
            resolved[name] = interpolate(value, env)
        elif name in env:
            resolved[name] = env[name]
    return resolved


def settings_from(
    service: dict[str, Any], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Settings:
    for name in setting_names():
        monkeypatch.delenv(name, raising=False)
    for name, value in container_env(service, env).items():
        monkeypatch.setenv(name, value)
    return Settings()


def profiles(env: dict[str, str]) -> set[str]:
    return {p.strip() for p in env.get("COMPOSE_PROFILES", "").split(",") if p.strip()}


# ---------------------------------------------------------------- settings reach the containers


def test_compose_environment_passes_every_setting(compose: dict[str, Any]) -> None:
    env = shared_environment(compose)
    unknown = sorted(set(env) - setting_names())
    assert not unknown, f"not fields of worker.settings.Settings: {unknown}"
    missing = sorted(setting_names() - set(env) - UNUSED)
    assert not missing, f"settings the containers never get (x-fcsync-environment): {missing}"
    # Passed through as set, but for the two with a default of the stack's own.
    assert {name for name, value in env.items() if value is None} == setting_names() - FIXED - {
        "STRIPE_API_BASE",
        "FCSYNC_METRICS_HOST",
        *UNUSED,
    }


def test_compose_worker_publishes_its_metrics_port(
    compose: dict[str, Any], services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from(compose["x-fcsync"], {}, monkeypatch)
    assert settings.fcsync_metrics_host == "0.0.0.0"
    port = settings.fcsync_metrics_port
    published = [interpolate(str(p), {}) for p in services["worker"]["ports"]]
    assert published == [f"127.0.0.1:{port}:{port}"]


def test_compose_database_and_broker_are_the_bundled_services(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from(compose["x-fcsync"], {}, monkeypatch)
    assert not settings.uses_embedded_broker
    assert urlsplit(settings.broker_url).hostname == "redis"
    db = make_url(settings.database_url)
    assert (db.drivername, db.host) == ("postgresql+psycopg", "postgres")


# ---------------------------------------------------------------- the two modes


def test_compose_emulator_mode_as_shipped_points_fcsync_at_the_emulator(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = env_example(active=True)
    assert profiles(env) == {"emulator"}
    emulator = services["emulator"]
    assert emulator["profiles"] == ["emulator"]
    _, _, ctx = parse_service({**emulator, "command": interpolate(emulator["command"], env)})
    port = ctx.params["port"]
    assert ctx.params["host"] == "0.0.0.0"
    assert f"127.0.0.1:{port}:{port}" in [str(p) for p in emulator["ports"]]

    for name in project_services(services):
        settings = settings_from(services[name], env, monkeypatch)
        base = urlsplit(settings.stripe_api_base)
        assert (base.hostname, base.port) == ("emulator", port), name
        # Time travel: every process follows the emulator's clock.
        assert settings.fcsync_clock_url == f"http://emulator:{port}/_emulator/clock", name
        (default,) = load_stripe_keys(settings).api_keys()
        assert default.mode == "test", name
        # The emulator signs with the secret the receiver verifies.
        assert default.secret_values() == [ctx.params["webhook_secret"]], name


def test_compose_real_stripe_mode_never_starts_or_calls_the_emulator(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a user of real Stripe sets (README: delete the emulator block of .env).
    env = {"STRIPE_API_KEY": "sk_live_example", "STRIPE_WEBHOOK_SECRET": "whsec_example"}
    assert "emulator" not in profiles(env)
    started = [name for name, service in services.items() if not service.get("profiles")]
    assert set(started) == set(services) - {"emulator"}
    for name in started:
        service = services[name]
        resolved = [*container_env(service, env).values(), str(service.get("command", ""))]
        assert not any("emulator" in value for value in resolved), name
        if name in project_services(services):
            settings = settings_from(service, env, monkeypatch)
            assert settings.stripe_api_base == STRIPE_DEFAULT_API_BASE, name
            assert settings.fcsync_clock_url is None, name

    # Neither set: the worker and the receiver refuse to start, naming the variable.
    settings = settings_from(services["worker"], {}, monkeypatch)
    assert settings.stripe_api_base == STRIPE_DEFAULT_API_BASE
    keys = load_stripe_keys(settings)
    with pytest.raises(ConfigurationError, match="STRIPE_API_KEY"):
        keys.api_keys()
    with pytest.raises(ConfigurationError, match="STRIPE_WEBHOOK_SECRET"):
        keys.require_webhook_secrets()


# ---------------------------------------------------------------- .env.example


def test_env_example_lists_every_setting_and_every_compose_variable(
    services: dict[str, dict[str, Any]],
) -> None:
    listed = set(env_example(active=True)) | set(env_example(active=False))
    missing = sorted(setting_names() - listed)
    assert not missing, f"settings missing from .env.example: {missing}"
    missing = sorted(read_by_compose(services) - listed)
    assert not missing, f"variables docker-compose.yml reads, missing from .env.example: {missing}"


def test_env_example_sets_only_what_compose_reads(services: dict[str, dict[str, Any]]) -> None:
    # A variable set here that compose never reads would change nothing, silently.
    ignored = sorted(set(env_example(active=True)) - read_by_compose(services))
    assert not ignored, f".env.example sets what docker-compose.yml ignores: {ignored}"
    assert not set(env_example(active=True)) & (FIXED | UNUSED)


def test_env_example_commented_defaults_are_fcsyncs() -> None:
    checked = 0
    for name, value in env_example(active=False).items():
        field = Settings.model_fields.get(name.lower())
        if name.startswith("FCSYNC_") and field is not None and field.default is not None:
            assert value == rendered(field.default), f"{name}: .env.example says {value}"
            checked += 1
    assert checked >= 20


# ---------------------------------------------------------------- compose's own check


def compose_cli() -> list[str]:
    """`docker compose` (v2), else `docker-compose`; neither is a service the test setup
    provides, so without one this check is skipped, in CI too."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode:
        docker = None
    if docker:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy is None:
        pytest.skip("no `docker compose` or `docker-compose` on PATH")
    return [legacy]


@pytest.mark.parametrize("mode", ["emulator", "stripe"])
def test_compose_config_accepts_the_file(mode: str, tmp_path: Path) -> None:
    # --env-file: the checked-in example or an empty one, never a developer's own .env.
    env_file = ENV_EXAMPLE if mode == "emulator" else tmp_path / "empty.env"
    if mode == "stripe":
        env_file.write_text("")
    argv = [*compose_cli(), "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", "-q"]
    shell = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    done = subprocess.run(argv, cwd=ROOT, env=shell, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
