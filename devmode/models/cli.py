"""``python -m devmode models``: the registry of saved models: list, promote, export (zip, hf,
onnx), import, delete, and which labels mean negative and positive; and ``classify``: texts
through a named model, with the words behind each answer.

    $ python -m devmode models promote 3 --as sentiment
    $ echo "Profit fell" | python -m devmode classify --model 3 --explain --json
"""

from __future__ import annotations

from pathlib import Path

import click

from devmode import clitools, environment
from devmode.clitools import echo_json, group, json_option, yes_option
from devmode.models import adapted_bases, archives, classify, exports, references, registry
from devmode.models.base_models import EMBEDDED_BASE_MODEL


@group("models")
def models_group():
    """The model registry: list, promote to active, export, delete."""


@models_group.command("list")
@click.pass_context
def models_list(ctx):
    """List saved models with their labels and which task each is active for, then the base
    models to fine-tune from (the embedded one and adapted ones)."""
    with clitools.db(ctx) as db:
        found = registry.list_models(db)
        bases = adapted_bases.list_adaptations(db)
    click.echo("Base models:")
    click.echo(f"  {EMBEDDED_BASE_MODEL:<24} base, embedded (the default)")
    for base in bases:
        click.echo(f"  {base.describe()}")
    if not found:
        click.echo("No models yet: a completed training run saves one.")
        return
    for m in found:
        active = f"  [active {m.active_as}]" if m.active_as else ""
        click.echo(f"run {m.run_id:<4} {m.dataset:<20} {', '.join(m.labels)}{active}")
        click.echo(f"         CPU scoring: {registry.cpu_scoring(m.path)}")


@models_group.command("promote")
@click.argument("run_id", type=int)
@click.option(
    "--as", "task", type=click.Choice(registry.TASKS), required=True, help="The task it serves."
)
@click.pass_context
def models_promote(ctx, run_id, task):
    """Make a run's model the active sentiment or topic model."""
    with clitools.db(ctx) as db:
        registry.promote(db, run_id, task)
    click.echo(f"Run {run_id}'s model is now the active {task} model.")


@models_group.command("export")
@click.argument("run_id", type=int)
@click.option(
    "--to",
    "destination",
    type=click.Path(),
    default=".",
    show_default=True,
    help="A .zip path or a new folder's path; an existing folder gets devmode-run-ID.zip "
    "(or devmode-run-ID-hf, devmode-run-ID-onnx) in it.",
)
@click.option(
    "--format",
    "format_",
    type=click.Choice(exports.FORMATS),
    default="zip",
    show_default=True,
    help=exports.FORMAT_HELP,
)
@click.pass_context
def models_export(ctx, run_id, destination, format_):
    """Export a run's model: a zip devmode imports, a Hugging Face folder, or ONNX."""
    with clitools.db(ctx) as db:
        path = exports.export_model(db, run_id, format_, destination)
    click.echo(f"Wrote {path}")


@models_group.command("import")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@click.pass_context
def models_import(ctx, archive):
    """Add a model archive written by `models export` (here or on another machine) to the
    registry, as a completed run of its own."""
    with clitools.db(ctx) as db:
        model = archives.import_zip(
            db,
            archive,
            environment.files_dir(clitools.db_path(ctx)),
            max_bytes=environment.max_upload_bytes(),
        )
    click.echo(
        f"Imported {Path(archive).name} as run {model.run_id} ({model.dataset}: "
        f"{', '.join(model.labels)}). Make it active with `models promote {model.run_id} --as sentiment`."
    )


@models_group.command("delete")
@click.argument("model")
@yes_option
@click.pass_context
def models_delete(ctx, model, yes):
    """Delete MODEL: a run's saved model, by run id (the run and its metrics stay), or an
    adapted base, adapted:NAME (refused while a run or an evaluation is queued on it)."""
    if model.startswith(adapted_bases.PREFIX):
        name = model.removeprefix(adapted_bases.PREFIX)
        if not yes:
            click.confirm(f"Delete the adapted base {model}?", abort=True)
        with clitools.db(ctx) as db:
            adapted_bases.delete_adaptation(clitools.db_path(ctx), db, name)
        click.echo(f"Deleted the adapted base {model}.")
        return
    if not model.isdigit():
        raise click.BadParameter(
            f"expected a run id (a whole number) or adapted:NAME; found {model!r}.",
            param_hint="MODEL",
        )
    run_id = int(model)
    if not yes:
        click.confirm(f"Delete the model of run {run_id}?", abort=True)
    with clitools.db(ctx) as db:
        registry.delete_model(db, run_id)
    click.echo(f"Deleted the model of run {run_id}.")


@models_group.command("map-sentiment")
@click.argument("run_id", type=int)
@click.option(
    "--negative", multiple=True, required=True, help="A label that means negative (repeatable)."
)
@click.option(
    "--positive", multiple=True, required=True, help="A label that means positive (repeatable)."
)
@click.pass_context
def models_map_sentiment(ctx, run_id, negative, positive):
    """Say which of a model's labels are negative and positive (the rest count as neutral)."""
    with clitools.db(ctx) as db:
        mapping = registry.set_sentiment_map(db, run_id, list(negative), list(positive))
    click.echo(", ".join(f"{label} = {polarity}" for label, polarity in mapping.items()))


@click.command("classify")
@click.argument("texts", nargs=-1)
@click.option(
    "--model",
    "reference",
    help=f"The model: {references.REFERENCE_HELP}. Default: the task's active model.",
)
@click.option(
    "--task",
    type=click.Choice(registry.TASKS),
    help="Which active model to use when --model is not given (default sentiment), and what "
    "the model's labels must read as.",
)
@click.option(
    "--explain", is_flag=True, help="Also weigh each word for the class it pushes toward."
)
@json_option("Print a JSON list of {text, label, probabilities} (and words with --explain).")
@click.pass_context
def classify_command(ctx, texts, reference, task, explain, as_json):
    """Classify TEXTs, or standard input (a text per line, at most 100,000), with a model."""
    if texts:
        texts = list(texts)
        classify.check_texts(texts)
    else:
        stdin = click.get_text_stream("stdin")
        if stdin.isatty():
            raise click.ClickException(
                "Give the texts as arguments, or pipe them in, one per line."
            )
        texts, blank = classify.read_lines(stdin)
        if blank:
            click.echo(f"Skipped {blank} blank line{'s' if blank != 1 else ''}.", err=True)
        if not texts:
            raise click.ClickException(
                "Standard input held no text. Expected a text per line; found only blank lines."
            )
    with clitools.db(ctx) as db:
        chosen = references.resolve(db, reference or f"active-{task or 'sentiment'}", task)
    scorer = references.load(chosen)
    big = len(texts) > classify.BATCH

    def progress(done: int, total: int) -> None:
        if big:
            click.echo(f"{done:,} of {total:,} texts", err=True)

    rows = classify.classify_texts(scorer, texts, explain=explain, on_progress=progress)
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['label']:<12} {row['probabilities'][row['label']]:.3f}  {row['text']}")
        if explain:
            top = classify.top_words(row)
            click.echo(f"{'':<19}top words: {', '.join(top) or '(none)'}")


def register_commands(cli: click.Group) -> None:
    """Add these commands to the root group."""
    cli.add_command(models_group)
    cli.add_command(classify_command)
