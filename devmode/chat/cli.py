"""``python -m devmode chat | conversations | chat-bench | serve``: a chat model under a context
budget and response limits, the saved conversations, the limit bench, and the embedded model as
an OpenAI-compatible endpoint.

    $ python -m devmode chat "Summarise: Apple beats estimates" --max-tokens 40
    $ python -m devmode serve --port 8000
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from devmode import clitools, environment
from devmode.chat import conversations, limit_bench, limits, replies
from devmode.clitools import group, setting_options, yes_option

# What every chat command sends besides the message (system prompt, pinned, budget), which
# model answers (the embedded one unless --base-url), and the limits on the reply.
_context_options = setting_options(limits.ChatSettings)


_backend_options = setting_options(
    limits.BackendSpec, only=("base_url", "model", "api_key_name", "precision")
)


_limit_options = setting_options(limits.ChatLimits)


def _chat_settings(ctx, options: dict, base: limits.ChatSettings | None) -> limits.ChatSettings:
    """Settings from the command's options; with ``base`` (a saved conversation), only the
    options given on the command line change it."""
    if base is None:
        return limits.ChatSettings().changed_by(options)
    return base.changed_by(clitools.given_options(ctx, options))


def _backend(ctx, spec: limits.BackendSpec):
    from devmode.chat import backends

    return backends.make_backend(spec, cache_dir=environment.chat_model_dir(clitools.db_path(ctx)))


@click.command("chat")
@click.argument("prompt")
@_context_options
@_limit_options
@_backend_options
@click.option("--save", is_flag=True, help="Keep the exchange as a new saved conversation.")
@click.option(
    "--conversation",
    "conversation_id",
    type=int,
    help="Continue a saved conversation: its history and settings, changed by the options given.",
)
@click.pass_context
def chat_command(ctx, prompt, save, conversation_id, **options):
    """Send PROMPT under the given limits; print the reply and which limit ended it."""
    saved = None
    history: list[tuple[str, str]] = []
    if conversation_id is not None:
        with clitools.db(ctx) as db:
            saved = conversations.get_conversation(db, conversation_id)
            history = conversations.history(db, conversation_id)
    settings = _chat_settings(ctx, options, saved.settings if saved else None)
    backend = _backend(ctx, settings.backend)
    plan = settings.plan(backend, history, prompt)
    for part in plan.dropped:
        click.echo(f"[{part.kind} {part.status}: {part.tokens} tokens]", err=True)
    reply = replies.respond(
        backend, plan, settings.limits, on_text=lambda t: click.echo(t, nl=False)
    )
    click.echo()
    click.echo(replies.describe_reply(reply))
    if reply.stopped_by == "api_error" and not reply.text:
        raise SystemExit(1)  # nothing came back: a script should see it failed
    if save or saved:
        with clitools.db(ctx) as db:
            target = saved or conversations.create_conversation(db, settings)
            conversations.add_exchange(db, target.id, prompt, reply, plan, settings)
        click.echo(f"Saved in conversation {target.id}.", err=True)


@group("conversations")
def conversations_group():
    """Saved chat sandbox conversations: list, show, export, rename, delete."""


@conversations_group.command("list")
@click.pass_context
def conversations_list(ctx):
    """Saved conversations, most recent first."""
    with clitools.db(ctx) as db:
        found = conversations.list_conversations(db)
    if not found:
        click.echo("No saved conversations. `chat --save` or the Chat sandbox page makes one.")
    for c in found:
        click.echo(
            f"{c.id:>4}  {c.title or '(untitled)'}  [{c.message_count} messages, "
            f"{c.settings.backend.describe()}, updated {c.updated_at[:16]}]"
        )


@conversations_group.command("show")
@click.argument("conversation_id", type=int)
@click.pass_context
def conversations_show(ctx, conversation_id):
    """Print a conversation: settings, messages and each reply's limit report."""
    with clitools.db(ctx) as db:
        click.echo(conversations.export_markdown(db, conversation_id))


@conversations_group.command("export")
@click.argument("conversation_id", type=int)
@click.option("--format", "kind", type=click.Choice(["json", "markdown"]), default="json")
@click.option("--to", "path", type=click.Path(dir_okay=False), help="File (default: print).")
@click.pass_context
def conversations_export(ctx, conversation_id, kind, path):
    """Export a conversation as JSON (everything) or Markdown (a transcript)."""
    with clitools.db(ctx) as db:
        text = (
            conversations.export_json(db, conversation_id)
            if kind == "json"
            else conversations.export_markdown(db, conversation_id)
        )
    if path:
        Path(path).write_text(text, encoding="utf-8")
        click.echo(f"Wrote conversation {conversation_id} to {path}.")
    else:
        click.echo(text)


@conversations_group.command("rename")
@click.argument("conversation_id", type=int)
@click.argument("title")
@click.pass_context
def conversations_rename(ctx, conversation_id, title):
    """Give a conversation a new title."""
    with clitools.db(ctx) as db:
        conversations.rename_conversation(db, conversation_id, title)
    click.echo(f"Conversation {conversation_id} is now {title!r}.")


@conversations_group.command("delete")
@click.argument("conversation_id", type=int)
@yes_option
@click.pass_context
def conversations_delete(ctx, conversation_id, yes):
    """Delete a conversation and its messages."""
    if not yes:
        click.confirm(f"Delete conversation {conversation_id}?", abort=True)
    with clitools.db(ctx) as db:
        conversations.delete_conversation(db, conversation_id)
    click.echo(f"Deleted conversation {conversation_id}.")


@click.command("chat-bench")
@click.argument("prompts", nargs=-1, required=True)
@click.option(
    "--variant",
    "variants",
    multiple=True,
    required=True,
    help='One column of limits: "name=short,max_tokens=20,banned=risk;loss,budget=512" '
    f"(fields of the chat limits; lists {limits.LIST_HELP}). Repeat for each column.",
)
@_context_options
@_backend_options
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the rows.")
@click.pass_context
def chat_bench_command(ctx, prompts, variants, json_path, **options):
    """Run every PROMPT under every --variant and tabulate what each produced and which limit
    fired."""
    settings = _chat_settings(ctx, options, None)  # the limits come from each --variant
    columns = [limit_bench.parse_variant(v) for v in variants]
    backend = _backend(ctx, settings.backend)

    def show(row):
        tokens = row["completion_tokens"] if row["completion_tokens"] is not None else "-"
        seconds = f"{row['total_s']:.2f} s" if row["total_s"] is not None else "-"
        text = " ".join((row["text"] or "").split())
        if not text and row["stopped_by"] in ("refused", "context_overflow", "api_error"):
            text = row["detail"]
        click.echo(
            f"{row['variant']:<14} {row['stopped_by']:<16} {tokens:>6} tokens {seconds:>8}  "
            f"{text[:60]!r}"
        )

    click.echo(f"{'variant':<14} {'stopped by':<16} {'completion':>13} {'total':>8}  text")
    rows = limit_bench.run_bench(backend, settings, prompts, columns, on_row=show)
    if json_path:
        Path(json_path).write_text(json.dumps(rows, indent=2), encoding="utf-8")
        click.echo(f"Wrote {len(rows)} rows to {json_path}.")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@setting_options(limits.BackendSpec, only=("precision",))
@click.option(
    "--api-key-env",
    help="Require the API key held in this environment variable (default: no key needed).",
)
@click.pass_context
def serve_command(ctx, host, port, precision, api_key_env):
    """Serve the embedded chat model as an OpenAI-compatible endpoint (/v1/chat/completions,
    /v1/models), and the database's classifiers (POST /predict, GET /info), with one key."""
    import os

    from devmode.chat.server import MODEL_ID, ChatServer
    from devmode.models import predict
    from devmode.serving import bearer_check

    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise click.ClickException(
                f"--api-key-env {api_key_env} was given, but that variable is empty. Set it "
                "to the key clients must send, or leave the option out."
            )
    backend = _backend(ctx, limits.BackendSpec(precision=precision))

    def log(line: str) -> None:
        click.echo(line, err=True)

    classifiers, stop_classifiers = predict.classifier_routes(
        clitools.db_path(ctx), bearer_check(api_key), log
    )
    server = ChatServer(
        (host, port),
        backend,
        api_key=api_key,
        log=log,
        routes=classifiers,
        routes_help=predict.ROUTES_HELP,
        on_shutdown=[stop_classifiers],
    )
    root = server.base_url.removesuffix("/v1")
    click.echo(
        f"Serving {backend.name} as model {MODEL_ID!r} at {server.base_url}"
        + (" (API key required)" if api_key else "")
        + f", and the classifiers at {root}/predict ({root}/info lists them). Ctrl-C stops.",
        err=True,
    )
    if hasattr(backend, "decoder"):  # the kernels picked at load, and what was timed
        click.echo(f"The model runs {backend.decoder.describe(timings=True)}.", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def register_commands(cli: click.Group) -> None:
    """Add these commands to the root group."""
    cli.add_command(chat_command)
    cli.add_command(conversations_group)
    cli.add_command(chat_bench_command)
    cli.add_command(serve_command)
