"""The command line: everything the pages do, from a terminal.

    $ python -m devmode ingest ../shared/data/financial_phrasebank/sentences_allagree.csv --name phrasebank
    $ python -m devmode datasets list

This module keeps the root group (``--db``), the commands that belong to no capability
(``backup``, ``hash-password``) and the hidden ``job KIND ID`` every worker process runs; each
capability adds its own commands from its ``cli.py``. devmode's errors become a one-line message
(exit code 1), never a traceback (``clitools.Group``).
"""

from __future__ import annotations

import click

from devmode import __version__, clitools, environment, jobs
from devmode.chat import cli as chat_cli
from devmode.clitools import group
from devmode.data import cli as data_cli
from devmode.finetune import cli as finetune_cli
from devmode.finetune import evaluations
from devmode.labels import cli as labels_cli
from devmode.labels import review_jobs
from devmode.models import adapted_bases, runs
from devmode.models import cli as models_cli
from devmode.monitor import cli as monitor_cli
from devmode.monitor import score_jobs, watcher
from devmode.suites import cli as suites_cli
from devmode.suites import store

# Every kind of background job, by the name its worker is started with.
JOB_KINDS = {
    kind.name: kind
    for kind in (
        runs.KIND,
        evaluations.KIND,
        adapted_bases.KIND,
        score_jobs.KIND,
        review_jobs.KIND,
        store.KIND,
        watcher.KIND,
    )
}


@group()
@click.version_option(__version__, prog_name="devmode")
@click.option(
    "--db",
    "db_path",
    envvar="DEVMODE_DB",
    default=environment.DEFAULT_DB_PATH,
    show_default=True,
    type=click.Path(dir_okay=False),
    help="SQLite file holding everything (also $DEVMODE_DB).",
)
@click.pass_context
def cli(ctx: click.Context, db_path: str) -> None:
    """devmode: fine-tune, monitor and probe language models on financial text."""
    ctx.obj = {"db_path": db_path}


@click.command("backup")
@click.argument("destination", type=click.Path(file_okay=False))
@click.pass_context
def backup_command(ctx, destination):
    """Back up the database (a consistent online copy, safe while the app runs) and the files
    folder beside it into DESTINATION."""
    from devmode.db import backup

    try:
        target = backup(clitools.db_path(ctx), destination)
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"Backed up {clitools.db_path(ctx)} to {target} (and its files folder).")


@click.command("hash-password")
@click.option(
    "--password",
    help="The password itself. Kept for scripts, but a password on the command line stays in "
    "the shell's history and shows in `ps` while the command runs: prefer the prompt (no "
    "option) or --password-stdin.",
)
@click.option(
    "--password-stdin",
    "from_stdin",
    is_flag=True,
    help="Read the password from standard input (its first line), e.g. piped from a secrets "
    "manager: it never appears on a command line.",
)
def hash_password_command(password, from_stdin):
    """Print the hash that puts the app behind a password: set it as DEVMODE_PASSWORD_HASH, or
    as the Streamlit secret devmode_password_hash. The password itself is stored nowhere.

    Without an option the password is asked for, hidden, twice (the safest way).
    """
    from devmode import auth

    if password is not None and from_stdin:
        raise click.ClickException("Give the password one way: --password or --password-stdin.")
    if from_stdin:
        password = click.get_text_stream("stdin").readline().rstrip("\r\n")
    elif password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    click.echo(auth.hash_password(password))


@click.command("job", hidden=True)
@click.argument("kind", type=click.Choice(sorted(JOB_KINDS)))
@click.argument("job_id", type=int)
@click.pass_context
def job_command(ctx, kind, job_id):
    """Internal: run job JOB_ID of KIND in this process (what a worker process runs; started by
    the pages and the --background options)."""
    jobs.execute(JOB_KINDS[kind], clitools.db_path(ctx), job_id, echo=print)


for module in (data_cli, finetune_cli, models_cli, labels_cli, monitor_cli, chat_cli, suites_cli):
    module.register_commands(cli)
cli.add_command(backup_command)
cli.add_command(hash_password_command)
cli.add_command(job_command)
