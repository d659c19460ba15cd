"""The root command: every command has help and an example in docs/cli.md, --db, python -m."""

import re

import click
import pytest
from click.testing import CliRunner

from devmode.cli import cli
from tests.conftest import ROOT

CLI_REFERENCE = ROOT / "docs" / "cli.md"


def all_commands(group=cli, prefix=()):
    for name, command in group.commands.items():
        path = (*prefix, name)
        if command.hidden:
            continue  # internal (the worker entry point)
        if isinstance(command, click.Group):
            yield from all_commands(command, path)
        else:
            yield " ".join(path), command


COMMANDS = dict(all_commands())


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name):
    assert COMMANDS[name].help, f"{name} has no help text"
    result = CliRunner().invoke(cli, [*name.split(), "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_is_in_the_cli_reference_with_an_example(name):
    reference = CLI_REFERENCE.read_text()
    assert re.search(rf"python -m devmode (--db \S+ )?{re.escape(name)}\b", reference), (
        f"docs/cli.md has no example of `python -m devmode {name}`"
    )


def test_db_comes_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "env.db"
    monkeypatch.setenv("DEVMODE_DB", str(path))
    result = CliRunner().invoke(cli, ["datasets", "list"])
    assert result.exit_code == 0 and path.exists()


def test_python_dash_m_runs_the_cli(db_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "devmode", "--db", db_path, "datasets", "list"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "No datasets yet" in out.stdout
