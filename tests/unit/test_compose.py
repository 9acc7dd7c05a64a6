"""docker-compose.yml and the Dockerfile against the code: every command parses with the real
CLI (fcsync's click group, celery's, Flower's options), health, restarts and ordering hold.

No Docker engine is needed: the compose file is read with PyYAML. Its environment, the two modes
and .env.example: test_compose_env.py; the healthchecks run against live servers:
tests/integration/test_compose_health.py."""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

SERVICES = {"redis", "postgres", "emulator", "migrate", "worker", "beat", "webhooks", "flower"}
BACKING = {"redis", "postgres"}
ONE_SHOT = {"migrate"}
DEPENDS_ON_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
IMAGE = "fcsync:local"

# ${VAR}, ${VAR:-default}, ${VAR-default} (compose interpolation; `$$` is a literal `$`).
INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
)


# ---------------------------------------------------------------- helpers


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def interpolate(value: str, env: Mapping[str, str] | None = None) -> str:
    """What compose makes of a value, given the variables set in .env and the shell (none by
    default)."""

    def replace(match: re.Match[str]) -> str:
        op, arg = match.group("op"), match.group("arg")
        assert op in (":-", "-"), f"{match.group(0)}: every variable needs a default (:-)"
        return (env or {}).get(match.group("name")) or arg

    return INTERPOLATION.sub(replace, value.replace("$$", "\0")).replace("\0", "$")


def argv(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    tokens = shlex.split(command) if isinstance(command, str) else [str(t) for t in command]
    return [interpolate(t) for t in tokens]


def healthcheck_text(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return test
    assert test[0] in ("CMD", "CMD-SHELL"), f"healthcheck test must start CMD/CMD-SHELL: {test}"
    return " ".join(test[1:])


def project_services(services: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(name for name in services if name not in BACKING)


def parse_command(
    group: click.Group, tokens: list[str], *, obj: Any = None
) -> tuple[list[str], click.Context]:
    """Parse TOKENS (without the program name) as click would, without invoking anything.

    Returns the resolved command path (e.g. ["db", "upgrade"]) and the leaf context, whose
    .params hold the converted option values. Unknown commands/options or bad values raise."""
    path: list[str] = []
    current: click.Command = group
    info_name = group.name or "cli"
    parent: click.Context | None = None
    while isinstance(current, click.Group):
        # Through click's lookup, not `.commands`: fcsync mounts `emulator` lazily.
        names = current.list_commands(click.Context(current))
        index = next((i for i, t in enumerate(tokens) if t in names), None)
        if index is None:
            known = ", ".join(sorted(names))
            pytest.fail(f"{' '.join(tokens)!r}: no subcommand of {info_name!r} ({known})")
        # Group-level options plus the subcommand name: parses the options, checks them.
        ctx = current.make_context(info_name, tokens[: index + 1], parent=parent)
        if parent is None and obj is not None:
            ctx.obj = obj(ctx)
        name = tokens[index]
        sub = current.get_command(ctx, name)
        assert sub is not None, f"{name!r} is not a command of {info_name!r}"
        path.append(name)
        current, info_name, parent, tokens = sub, name, ctx, tokens[index + 1 :]
    return path, current.make_context(info_name, tokens, parent=parent)


def fcsync_cli() -> click.Group:
    from worker.cli import cli

    assert isinstance(cli, click.Group)
    return cli


def celery_obj(ctx: click.Context) -> Any:
    """celery's group callback would build this from -A; the worker/beat options need it."""
    from celery import Celery
    from celery.app.utils import find_app
    from celery.bin.base import CLIContext

    app = find_app(ctx.params["app"])
    assert isinstance(app, Celery), f"-A {ctx.params['app']} is not a Celery app"
    return CLIContext(app=app, no_color=True, workdir=None, quiet=True)


def parse_service(service: dict[str, Any]) -> tuple[str, list[str], click.Context]:
    tokens = argv(service)
    program, rest = tokens[0], tokens[1:]
    if program == "fcsync":
        path, ctx = parse_command(fcsync_cli(), rest)
    elif program == "celery":
        from celery.bin.celery import celery as celery_cli

        path, ctx = parse_command(celery_cli, rest, obj=celery_obj)
    else:
        pytest.fail(f"unexpected program {program!r} in {tokens}")
    return program, path, ctx


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's environment as written: None for a name without a value, which compose
    passes through from .env or the shell when set there."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {str(k): None if v is None else str(v) for k, v in env.items()}


def shared_environment(compose: dict[str, Any]) -> dict[str, str | None]:
    return environment(compose["x-fcsync"])


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on", {})
    if isinstance(deps, list):  # short form means service_started
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


# ---------------------------------------------------------------- the services


def test_compose_has_exactly_the_stack(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == SERVICES
    assert services["redis"]["image"].startswith("redis:7")
    assert services["postgres"]["image"].startswith("postgres:16")


def test_compose_project_services_share_one_image_and_environment(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    shared = compose["x-fcsync"]
    assert shared["build"] in (".", "./", {"context": "."})
    assert shared["image"] == IMAGE
    for name in project_services(services):
        service = services[name]
        assert service.get("build") == shared["build"], name
        assert service.get("image") == IMAGE, name
        own = {k: v for k, v in environment(service).items() if k not in shared["environment"]}
        assert environment(service).items() >= shared_environment(compose).items(), name
        # Beyond fcsync's settings, only Flower's own options (Flower reads FLOWER_*).
        assert all(k.startswith("FLOWER_") for k in own) and (not own or name == "flower"), own


def test_compose_every_image_service_is_health_checked_or_one_shot(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        if name in ONE_SHOT:
            assert "healthcheck" not in service, name
            assert str(service.get("restart", "no")) == "no", f"{name} must run once"
            continue
        assert "healthcheck" in service, f"{name} has no healthcheck"
        assert not service["healthcheck"].get("disable", False), name
        assert healthcheck_text(service).strip(), name
        assert service.get("restart") == "unless-stopped", f"{name} must be restarted"
    assert "redis-cli ping" in healthcheck_text(services["redis"])
    postgres = services["postgres"]
    assert f"pg_isready -U {postgres['environment']['POSTGRES_USER']}" in healthcheck_text(postgres)


def test_compose_postgres_persists_its_data(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    volumes = services["postgres"]["volumes"]
    named = [
        str(v).split(":", 1)[0] for v in volumes if str(v).endswith("/var/lib/postgresql/data")
    ]
    assert named and named[0] in (compose.get("volumes") or {})


# ---------------------------------------------------------------- commands are real entry points


def test_compose_fcsync_console_script_is_the_click_group() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["fcsync"] == "worker.cli:main"
    import worker.cli

    assert callable(worker.cli.main)
    fcsync_cli()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("emulator", ["emulator"]),
        ("migrate", ["db", "upgrade"]),
        ("webhooks", ["webhooks"]),
    ],
)
def test_compose_fcsync_commands_are_registered(
    services: dict[str, dict[str, Any]], name: str, expected: list[str]
) -> None:
    program, path, _ = parse_service(services[name])
    assert (program, path) == ("fcsync", expected)


@pytest.mark.parametrize(
    ("name", "expected"), [("worker", "worker"), ("beat", "beat"), ("flower", "flower")]
)
def test_compose_celery_commands_use_the_app(
    services: dict[str, dict[str, Any]], name: str, expected: str
) -> None:
    from celery import Celery

    from worker.app import app

    program, path, ctx = parse_service(services[name])
    assert (program, path) == ("celery", [expected])
    assert isinstance(app, Celery)
    assert ctx.find_root().obj.app is app, "-A must resolve to worker.app:app"


def test_compose_flower_options_are_flowers_and_match_its_port_and_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    import flower.options  # defines Flower's options on tornado's global parser
    from flower.command import is_flower_option
    from tornado.options import OptionParser

    _, _, ctx = parse_service(services["flower"])
    tokens = list(ctx.params["tornado_argv"])
    # Flower silently drops what it does not know (is_flower_option): a typo would pass unseen.
    assert all(is_flower_option(token) for token in tokens), tokens
    parser = OptionParser()  # a copy of Flower's: parsing leaves tornado's global one alone
    for name, option in flower.options.options._options.items():
        if name not in parser._options:  # `help`, which every parser has
            parser.define(name, default=option.default, type=option.type, multiple=option.multiple)
    parser.parse_command_line(["flower", *tokens])
    port = parser.port
    assert f"127.0.0.1:{port}:{port}" in [str(p) for p in services["flower"]["ports"]]
    assert f"http://127.0.0.1:{port}/healthcheck" in healthcheck_text(services["flower"])


def test_compose_worker_consumes_the_fcsync_queue(services: dict[str, dict[str, Any]]) -> None:
    from worker.app import app

    _, _, ctx = parse_service(services["worker"])
    queues = ctx.params["queues"]
    assert queues, "the worker must consume an explicit queue (-Q)"
    assert app.conf.task_default_queue in queues
    assert {route["queue"] for route in app.conf.task_routes.values()} <= set(queues)


def test_compose_runs_exactly_one_beat(services: dict[str, dict[str, Any]]) -> None:
    beats = [
        name
        for name in project_services(services)
        if argv(services[name])[0] == "celery" and parse_service(services[name])[1] == ["beat"]
    ]
    assert beats == ["beat"]
    # `fcsync run` supervises a beat of its own.
    assert not any(argv(services[n])[:2] == ["fcsync", "run"] for n in project_services(services))
    replicas = services["beat"].get("deploy", {}).get("replicas", 1)
    assert replicas == 1 and "scale" not in services["beat"]
    # A non-root container can write /tmp; the default schedule file would go to the cwd.
    _, _, ctx = parse_service(services["beat"])
    assert str(ctx.params["schedule"]).startswith("/tmp/")


# ---------------------------------------------------------------- wiring between services


def test_compose_webhooks_port_path_and_healthz_match_the_receiver(
    services: dict[str, dict[str, Any]], migrated_sqlite: str
) -> None:
    from worker.http import create_app
    from worker.runtime import Runtime
    from worker.settings import Settings

    webhooks = services["webhooks"]
    _, _, ctx = parse_service(webhooks)
    port, path = ctx.params["port"], ctx.params["path"]
    assert ctx.params["host"] == "0.0.0.0"
    assert f"{port}:{port}" in [str(p) for p in webhooks["ports"]]
    health = healthcheck_text(webhooks)
    assert f"http://127.0.0.1:{port}/healthz" in health

    settings = Settings(database_url=migrated_sqlite, stripe_webhook_secret="whsec_x")  # type: ignore[arg-type]
    app = create_app(Runtime(settings, send=lambda _: None), path=path)
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    # The receiver answers the compose path (an unsigned event is refused there, not unknown).
    assert client.post(path, data=b"{}").status_code == 400
    assert client.post(path + "x", data=b"{}").status_code == 404

    # The emulator delivers its signed events to exactly this receiver.
    _, _, emulator = parse_service(services["emulator"])
    assert emulator.params["webhook_url"] == f"http://webhooks:{port}{path}"


def test_compose_database_url_matches_postgres(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    db = make_url(interpolate(shared_environment(compose)["DATABASE_URL"]))
    pg = services["postgres"]["environment"]
    assert (db.username, db.password, db.database) == (
        pg["POSTGRES_USER"],
        pg["POSTGRES_PASSWORD"],
        pg["POSTGRES_DB"],
    )


def test_compose_every_variable_has_a_default() -> None:
    text = COMPOSE_FILE.read_text()
    for match in INTERPOLATION.finditer(text.replace("$$", "")):
        assert match.group("op") == ":-", f"{match.group(0)} needs a :- default"


def test_compose_depends_on_conditions_are_valid(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dep, condition in depends_on(service).items():
            assert dep in services and dep != name, f"{name} depends on unknown {dep}"
            assert condition in DEPENDS_ON_CONDITIONS, f"{name} -> {dep}: {condition}"
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{dep} has no healthcheck"
            if condition == "service_completed_successfully":
                assert dep in ONE_SHOT, f"{dep} never completes"

    assert depends_on(services["migrate"]) == {"postgres": "service_healthy"}
    expected = {
        "migrate": "service_completed_successfully",
        "redis": "service_healthy",
        "postgres": "service_healthy",
    }
    for name in ("worker", "beat", "webhooks"):
        assert depends_on(services[name]) == expected, name
    # Flower only needs the broker; nothing waits on the emulator, which may not be started.
    assert depends_on(services["flower"]) == {"redis": "service_healthy"}
    assert not any("emulator" in depends_on(service) for service in services.values())

    # No cycles (compose refuses them).
    def visit(name: str, seen: tuple[str, ...]) -> None:
        assert name not in seen, f"dependency cycle {' -> '.join((*seen, name))}"
        for dep in depends_on(services[name]):
            visit(dep, (*seen, name))

    for name in services:
        visit(name, ())


# ---------------------------------------------------------------- the image


def test_dockerfile_installs_the_project() -> None:
    assert DOCKERFILE.is_file()
    text = DOCKERFILE.read_text()
    lines = [line.strip() for line in text.replace("\\\n", " ").splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]

    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert any(re.fullmatch(r"WORKDIR /app/?", i) for i in instructions)
    assert re.search(r"^ENV\b.*\bPYTHONUNBUFFERED=1\b", text.replace("\\\n", " "), re.M)
    runs = [i for i in instructions if i.startswith("RUN ")]
    # The project with its ops extra, which brings Flower (the flower service's command).
    assert any(re.search(r'\bpip install (--?\S+ )*"\.\[ops\]"(\s|&&|$)', r) for r in runs), runs
    assert not any(re.search(r"\[[^\]]*\bdev\b", i) for i in instructions), "never [dev]"
    ops = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(re.match(r"flower\b", requirement) for requirement in ops["ops"]), ops["ops"]

    users = [i.split()[1] for i in instructions if i.startswith("USER ")]
    assert users and users[-1] not in ("root", "0", "0:0"), "must run as a non-root user"
    assert instructions[-1] in ('CMD ["fcsync", "--help"]', "CMD fcsync --help")

    # Everything pip needs to build the package is copied in.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    modules = [f"{m}.py" for m in project["tool"]["setuptools"].get("py-modules", [])]
    needed = {"pyproject.toml", project["project"]["readme"], *modules, *packages}
    copied = {
        src.rstrip("/")
        for i in instructions
        if i.startswith("COPY ")
        for src in i.split()[1:-1]
        if not src.startswith("--")
    }
    assert needed <= copied or "." in copied, f"not copied: {sorted(needed - copied)}"

    ignored = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", "*.db", "*.sqlite"} <= ignored
    assert not needed & ignored, "the .dockerignore hides files the build needs"
