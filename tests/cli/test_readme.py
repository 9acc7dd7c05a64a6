"""README.md says what the program does: the CLI reference, the configuration table, the task
contract and the Quickstart are checked against the code (and the contract's example is run)."""

from __future__ import annotations

import inspect
import json
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from tests.cli.conftest import ROOT, Workdir
from tests.unit.test_compose import interpolate
from worker.cli import cli
from worker.settings import Settings

README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def fenced(text: str, language: str = "") -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def table(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    cells = [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]
    return [row for row in cells[1:] if not set(row[0]) <= {"-"}]  # no header, no rule


# ---------------------------------------------------------------- the CLI reference


def subcommands(group: click.Group) -> dict[str, click.Command]:
    """A group's commands through click's own lookup (fcsync loads `emulator` on demand)."""
    ctx = click.Context(group)
    found = {name: group.get_command(ctx, name) for name in group.list_commands(ctx)}
    return {name: cmd for name, cmd in found.items() if cmd is not None}


def cli_reference() -> list[tuple[list[str], str]]:
    """(command path, its documented synopsis) for every command in the CLI block."""
    (block,) = fenced(section("CLI"))
    entries: list[tuple[list[str], str]] = []
    for line in block.splitlines():
        assert line.startswith("fcsync "), line
        # "db upgrade | db downgrade REVISION": alternatives are commands, not flags.
        for synopsis in re.split(r" \| (?=[a-z])", line.removeprefix("fcsync ")):
            words = synopsis.split()
            path = [words[0]]
            if isinstance(subcommands(cli)[words[0]], click.Group):
                path.append(words[1])
            entries.append((path, synopsis))
    return entries


def command(path: list[str]) -> click.Command:
    cmd: click.Command = cli
    for name in path:
        assert isinstance(cmd, click.Group) and name in subcommands(cmd), f"no `fcsync {name}`"
        cmd = subcommands(cmd)[name]
    return cmd


def test_readme_cli_reference_lists_every_command() -> None:
    documented = {" ".join(path) for path, _ in cli_reference()}
    actual = {
        f"{name} {sub}" if isinstance(cmd, click.Group) else name
        for name, cmd in subcommands(cli).items()
        for sub in (cmd.commands if isinstance(cmd, click.Group) else [""])
    }
    assert documented == actual


@pytest.mark.parametrize(("path", "synopsis"), cli_reference(), ids=lambda v: str(v))
def test_readme_cli_reference_matches_help(path: list[str], synopsis: str) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    usage = result.output.splitlines()[0]
    for argument in re.findall(r"\b[A-Z]{4,}\b", synopsis.split("--")[0]):
        assert argument in usage, f"{argument} of `fcsync {synopsis}` not in {usage!r}"
    params = {opt: p for p in command(path).params for opt in getattr(p, "opts", [])}
    for flag, value in re.findall(r"(--[a-z][a-z-]*)(?: ([^\s\[\]|-][^\s\[\]|]*))?", synopsis):
        assert flag in result.output, f"`fcsync {' '.join(path)} --help` has no {flag}"
        default = params[flag].default
        if value and value.isupper():  # a placeholder such as N, URL, YYYY-MM-DD
            continue
        if value:
            same = (
                float(value) == float(default)
                if isinstance(default, int | float) and not isinstance(default, bool)
                else value == str(default)
            )
            assert same, f"README says {flag} {value}, the default is {default!r}"


# ---------------------------------------------------------------- configuration


def config_rows() -> dict[str, str]:
    return {row[0].strip("`"): row[1] for row in table(section("Configuration"))}


def test_readme_configuration_names_exactly_the_settings() -> None:
    documented = set(config_rows())
    fields = {name.upper() for name in Settings.model_fields}
    assert documented <= fields, f"documented but not settings: {documented - fields}"
    fcsync_fields = {name for name in fields if name.startswith("FCSYNC_")}
    assert fcsync_fields <= documented, f"settings not documented: {fcsync_fields - documented}"


def rendered(default: Any) -> str | None:
    if default is None:
        return None
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


def test_readme_configuration_defaults_are_the_settings_defaults() -> None:
    checked = 0
    for name, cell in config_rows().items():
        field = Settings.model_fields[name.lower()]
        literal = re.fullmatch(r"`([^`]+)`", cell)
        if cell.startswith("unset"):
            assert field.default is None, f"{name}: README says unset, default {field.default!r}"
        elif literal and name != "CELERY_BROKER_URL":
            assert literal.group(1) == rendered(field.default), f"{name}: README says {cell}"
        checked += 1
    assert checked == len(config_rows())


# ---------------------------------------------------------------- the task contract


def contract_rows() -> dict[str, list[tuple[str, str | None]]]:
    """task name -> [(argument, documented default or None)]"""
    rows = {}
    for row in table(section("Task contract (for other services)")):
        listed = re.sub(r"\(.*?\)", "", row[1])  # "(`manual`/`beat`/...)" lists values
        arguments = re.findall(r"`(\w+)(?:=([^`]+))?`", listed) if listed != "—" else []
        rows[row[0].strip("`")] = [(name, default or None) for name, default in arguments]
    return rows


def as_json(value: Any) -> str:
    """How the contract writes a default: JSON (`true`, `"task"`, `0`)."""
    return json.dumps(value)


def test_readme_task_contract_matches_the_registered_tasks() -> None:
    from worker.app import app

    app.loader.import_default_modules()
    registered = {name: task for name, task in app.tasks.items() if name.startswith("fcsync.")}
    documented = contract_rows()
    assert set(documented) == set(registered)
    for name, arguments in documented.items():
        signature = inspect.signature(registered[name].run)
        params = {p: v for p, v in signature.parameters.items() if p != "self"}
        assert [a for a, _ in arguments] == list(params), name
        for argument, default in arguments:
            actual = params[argument].default
            if default is None:
                assert actual is inspect.Parameter.empty, f"{name}({argument}) has a default"
            else:
                assert default == as_json(actual), f"{name}({argument}): README says {default}"


def test_readme_task_contract_example_sends_what_the_table_promises(workdir: Workdir) -> None:
    (example,) = fenced(section("Task contract (for other services)"), "python")
    assert 'broker="redis://redis:6379/0"' in example
    broker = f"sqla+sqlite:///{workdir.broker_file}"
    exec(example.replace("redis://redis:6379/0", broker), {})  # the documented call, verbatim

    assert workdir.queued() == [
        {"task": "fcsync.track_account", "args": [], "kwargs": {"account_id": "fca_123"}},
        {
            "task": "fcsync.sync_transactions",
            "args": [],
            "kwargs": {"account_id": "fca_123", "full": True},
        },
    ]


# ---------------------------------------------------------------- Quickstart


def test_readme_quickstart_commands_are_makefile_targets() -> None:
    (block,) = fenced(section("Quickstart"), "sh")
    commands = [line.split("#")[0].split() for line in block.splitlines() if line.strip()]
    assert commands == [["make", "demo"], ["make", "test"]]
    makefile = Path(ROOT / "Makefile").read_text()
    for _, target in commands:
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"no `{target}` target"
    assert re.search(r"^demo: \$\(STAMP\)\n\t\$\(BIN\)/fcsync demo$", makefile, flags=re.M)


# ---------------------------------------------------------------- Docker compose walkthrough


def test_readme_compose_walkthrough_names_real_services_commands_and_ports() -> None:
    from tests.unit.test_compose import fcsync_cli, load_compose, parse_command

    services = load_compose()["services"]
    published = {
        f"127.0.0.1:{interpolate(str(port)).rsplit(':', 1)[-1]}"
        for service in services.values()
        for port in service.get("ports", [])
    }
    (block,) = fenced(section("Docker compose"), "sh")
    commands = [shlex.split(c, comments=True) for c in block.replace("\\\n", " ").splitlines()]
    commands = [c for c in commands if c]
    assert ["cp", ".env.example", ".env"] in commands and (ROOT / ".env.example").is_file()
    execs = [c[3:] for c in commands if c[:3] == ["docker", "compose", "exec"]]
    assert execs, "the walkthrough tracks an account inside the stack"
    for service, program, *args in execs:
        assert service in services, f"no compose service {service!r}"
        assert program == "fcsync", program
        parse_command(fcsync_cli(), [a.replace("fca_...", "fca_1") for a in args])
    urls = re.findall(r"http://(127\.0\.0\.1:\d+)(/[\w/]*)?", section("Docker compose"))
    assert {path for _, path in urls} >= {"/status", "/metrics", "/_emulator/clock", ""}
    for host, _ in urls:
        assert host in published, f"{host} is not published by docker-compose.yml"


# ---------------------------------------------------------------- several Stripe accounts


def test_readme_stripe_accounts_example_is_a_file_fcsync_keys_accepts(workdir: Workdir) -> None:
    (example,) = fenced(section("Several Stripe accounts"), "toml")
    path = workdir.path / "stripe-accounts.toml"
    path.write_text(example)
    env = {
        "FCSYNC_STRIPE_ACCOUNTS": str(path),
        "STRIPE_EU_API_KEY": "sk_live_readme_example_key_1",
        "STRIPE_EU_WEBHOOK_SECRETS": "whsec_readme_1,whsec_readme_2",
        "STRIPE_US_API_KEY": "rk_live_readme_example_key_2",
    }
    rows = json.loads(workdir.run("keys", "--json", **env).stdout)
    assert [(r["name"], r["webhook_secrets"]) for r in rows] == [
        ("default", 0),
        ("eu", 2),
        ("us", 1),
    ]
