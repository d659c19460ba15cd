"""What every command line module shares: devmode's errors as a one-line message."""

from __future__ import annotations

import functools

import click

from devmode.errors import DevmodeError


def friendly_errors(fn):
    """Turn devmode's errors (and a missing database folder) into a clean CLI message (exit
    code 1), never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (DevmodeError, FileNotFoundError) as e:
            raise click.ClickException(str(e)) from e

    return wrapper
