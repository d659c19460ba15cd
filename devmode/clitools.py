"""What every command line module shares: the group that turns devmode's errors into a one-line
message, the database of the command, options made from settings specs, and the flags every
capability uses the same way (``--json``, ``--yes``).

Each capability keeps its commands in its own ``cli.py`` and hands them to the root group with
``register_commands(cli)``; the root ``devmode/cli.py`` only gathers them.
"""

from __future__ import annotations

import json
from typing import Any

import click

from devmode.db import open_db
from devmode.errors import DevmodeError


class Group(click.Group):
    """A click group whose commands report devmode's errors (and a missing database folder) as a
    clean message with exit code 1, never a traceback. Groups made under it are of this class
    too, and the translation is stated here once."""

    group_class = type  # subgroups are Groups as well

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (DevmodeError, FileNotFoundError) as e:
            raise click.ClickException(str(e)) from e


def group(name: str | None = None, **kwargs):
    """``@click.group`` of the class above."""
    return click.group(name, cls=Group, **kwargs)


def db(ctx: click.Context):
    """The command's database (``--db``, or ``$DEVMODE_DB``), opened."""
    return open_db(ctx.obj["db_path"])


def db_path(ctx: click.Context) -> str:
    return ctx.obj["db_path"]


def json_option(help: str = "Print JSON instead of a table."):
    """``--json``: print what the command shows as JSON, for scripts (into ``as_json``)."""
    return click.option("--json", "as_json", is_flag=True, help=help)


yes_option = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def setting_options(cls, *, required=(), only=None):
    """One option per setting of ``cls`` (a ``specs.Settings`` class): its flag, type,
    choices, default and help all come from the setting's spec, so nothing is restated here."""

    def decorate(fn):
        for spec in reversed(cls.specs()):
            if only is None or spec.name in only:
                fn = option(spec, required=spec.name in required)(fn)
        return fn

    return decorate


def option(spec, *, required: bool = False):
    """The option of one setting spec."""
    flag = spec.cli_flag
    if spec.type is bool:
        return click.option(
            f"{flag}/--no-{flag[2:]}",
            spec.name,
            default=spec.default,
            show_default=True,
            help=spec.help,
        )
    if spec.type is tuple:
        return click.option(flag, spec.name, multiple=True, help=spec.help + " Repeatable.")
    kind = click.Choice(spec.choices) if spec.choices else spec.type
    if required:
        return click.option(flag, spec.name, type=kind, required=True, help=spec.help)
    return click.option(
        flag,
        spec.name,
        type=kind,
        default=spec.default,
        show_default=spec.default not in (None, "", ()),
        help=spec.help,
    )


def given_options(ctx: click.Context, options: dict[str, Any]) -> dict[str, Any]:
    """The options a person typed (not left at their defaults)."""
    return {
        name: value
        for name, value in options.items()
        if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT
    }
