"""The command line: everything the pages do, from a terminal.

    $ python -m devmode ingest ../shared/data/financial_phrasebank/sentences_allagree.csv --name phrasebank
    $ python -m devmode datasets list

Each command is a few lines over the library; devmode's errors become ``click.ClickException``
(a one-line message, exit code 1), never a traceback.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from devmode import __version__, environment, jobs
from devmode.chat import bench, limits, replies
from devmode.clitools import friendly_errors as _friendly_errors
from devmode.data import ingest, readers, sources, uploads
from devmode.db import open_db
from devmode.errors import DevmodeError
from devmode.finetune import (
    archives,
    config,
    distributed,
    out_of_domain,
    registry,
    reports,
    runs,
    worker,
)
from devmode.labels import corrections, labelling, review, review_jobs
from devmode.monitor import alerts, delivery, monitoring, score_jobs, trends, watcher, watchlist
from devmode.suites import cli as suites_cli


@click.group()
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


def _db(ctx: click.Context):
    return open_db(ctx.obj["db_path"])


def _setting_options(cls, *, required=(), only=None):
    """One option per setting of ``cls`` (a ``specs.Settings`` class): its flag, type,
    choices, default and help all come from the setting's spec, so nothing is restated here."""

    def decorate(fn):
        for spec in reversed(cls.specs()):
            if only is None or spec.name in only:
                fn = _option(spec, required=spec.name in required)(fn)
        return fn

    return decorate


def _option(spec, *, required: bool = False):
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


# ----------------------------------------------------------------------------------------------
# ingest


def _role_options(fn):
    for role in reversed(ingest.ROLES):
        fn = click.option(
            f"--{role}-column", help=f"Column holding the {role} (default: suggested)."
        )(fn)
    return fn


def _split_options(fn):
    fn = _option(ingest.SplitSpec.spec("seed"))(fn)
    return click.option(
        "--split",
        "split_fractions",
        default=",".join(f"{f:g}" for f in ingest.SplitSpec().fractions),
        show_default=True,
        help="Train,validation,test fractions, drawn within each label.",
    )(fn)


def _mapping(base: ingest.ColumnMapping, no_label: bool, **columns) -> ingest.ColumnMapping:
    """``base`` with the roles given on the command line put over it."""
    chosen = {role: columns[f"{role}_column"] or getattr(base, role) for role in ingest.ROLES}
    return ingest.ColumnMapping(**{**chosen, "label": None if no_label else chosen["label"]})


@cli.command("ingest")
@click.argument("source")
@click.option("--name", help="Dataset name (default: from the file name).")
@_role_options
@click.option(
    "--no-label", is_flag=True, help="Unlabelled data (e.g. headlines to score): no label column."
)
@click.option(
    "--format", "format_", type=click.Choice(uploads.FORMATS), help="Skip format detection."
)
@click.option("--encoding", help="Skip encoding detection (e.g. utf-8, cp1252).")
@_split_options
@click.option("--hf-config", help="With hf:ID, the dataset's configuration name.")
@click.option(
    "--hf-split", default="train", show_default=True, help="With hf:ID, which split to take."
)
@click.pass_context
@_friendly_errors
def ingest_command(
    ctx,
    source,
    name,
    text_column,
    label_column,
    date_column,
    ticker_column,
    no_label,
    format_,
    encoding,
    split_fractions,
    seed,
    hf_config,
    hf_split,
):
    """Store a CSV/TSV/JSON/JSONL/Parquet file, or hf:ID (a Hugging Face dataset), as a dataset.

    Column roles are suggested from names and values; the split is stratified by label and
    stored with its seed, so every later run holds out the same test rows.
    """
    if source.startswith("hf:"):
        upload = readers.read_hf_dataset(source[3:], config_name=hf_config, split=hf_split)
        default_name = source[3:].rstrip("/").rsplit("/", 1)[-1]
    else:
        upload = readers.read_upload(source, format=format_, encoding=encoding)
        default_name = Path(source).name
    suggested = ingest.suggest_mapping(upload.columns, upload.preview(200))
    mapping = _mapping(
        suggested,
        no_label,
        text_column=text_column,
        label_column=label_column,
        date_column=date_column,
        ticker_column=ticker_column,
    )
    split = ingest.SplitSpec(*_parse_fractions(split_fractions), seed=seed)
    name = name or ingest.suggest_name(default_name)
    click.echo(
        f"Reading {upload.source}: {upload.format}"
        + (f", {upload.encoding}" if upload.encoding else "")
        + f", columns {', '.join(upload.columns)}",
        err=True,
    )
    with (
        _db(ctx) as db,
        click.progressbar(
            length=1000, label="Ingesting", file=click.get_text_stream("stderr")
        ) as bar,
    ):

        def on_progress(rows_done: int, fraction: float) -> None:
            bar.update(int(fraction * 1000) - bar.pos)

        dataset = ingest.insert_upload(db, upload, name, mapping, split, on_progress=on_progress)
        stats = ingest.dataset_stats(db, dataset.name)
    click.echo(f"Stored {dataset.row_count:,} rows as dataset {dataset.name!r}.")
    _echo_dataset(dataset, stats)


def _parse_fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise ingest.InvalidSplit(
            f"--split expects three fractions for train,validation,test such as 0.8,0.1,0.1; "
            f"found {text!r}."
        )
    return parts


# ----------------------------------------------------------------------------------------------
# datasets


@cli.group()
def datasets():
    """List, inspect, re-map, re-split, rename and drop stored datasets."""


@datasets.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
@_friendly_errors
def datasets_list(ctx, as_json):
    """List datasets, newest first."""
    with _db(ctx) as db:
        found = ingest.list_datasets(db)
    if as_json:
        click.echo(json.dumps([_dataset_dict(d) for d in found], indent=2))
        return
    if not found:
        click.echo("No datasets yet. Add one with: python -m devmode ingest FILE --name NAME")
        return
    click.echo(f"{'name':<28} {'rows':>10}  {'text':<14} {'label':<14} source")
    for d in found:
        click.echo(
            f"{d.name:<28} {d.row_count:>10,}  {d.mapping.text or '-':<14} "
            f"{d.mapping.label or '-':<14} {d.source}"
        )


@datasets.command("show")
@click.argument("name")
@click.option("--rows", "n_rows", default=5, show_default=True, help="How many rows to preview.")
@click.pass_context
@_friendly_errors
def datasets_show(ctx, name, n_rows):
    """Show a dataset's columns, roles, split, label counts and first rows."""
    with _db(ctx) as db:
        dataset = ingest.get_dataset(db, name)
        stats = ingest.dataset_stats(db, name)
        rows = ingest.preview(db, name, limit=n_rows)
    _echo_dataset(dataset, stats)
    for row in rows:
        click.echo(json.dumps(row, ensure_ascii=False, default=str))


@datasets.command("map")
@click.argument("name")
@_role_options
@click.option("--no-label", is_flag=True, help="Unset the label column.")
@click.pass_context
@_friendly_errors
def datasets_map(ctx, name, text_column, label_column, date_column, ticker_column, no_label):
    """Change which column is the text, label, date or ticker (a new label re-draws the split)."""
    with _db(ctx) as db:
        current = ingest.get_dataset(db, name).mapping
        mapping = _mapping(
            current,
            no_label,
            text_column=text_column,
            label_column=label_column,
            date_column=date_column,
            ticker_column=ticker_column,
        )
        dataset = ingest.set_mapping(db, name, mapping)
        stats = ingest.dataset_stats(db, name)
    _echo_dataset(dataset, stats)


@datasets.command("split")
@click.argument("name")
@_split_options
@click.pass_context
@_friendly_errors
def datasets_split(ctx, name, split_fractions, seed):
    """Draw the train / validation / test split again with other fractions or seed."""
    split = ingest.SplitSpec(*_parse_fractions(split_fractions), seed=seed)
    with _db(ctx) as db:
        dataset = ingest.resplit(db, name, split)
        stats = ingest.dataset_stats(db, name)
    _echo_dataset(dataset, stats)


@datasets.command("rename")
@click.argument("name")
@click.argument("new_name")
@click.pass_context
@_friendly_errors
def datasets_rename(ctx, name, new_name):
    """Rename a dataset."""
    with _db(ctx) as db:
        dataset = ingest.rename_dataset(db, name, new_name)
    click.echo(f"Renamed {name!r} to {dataset.name!r}.")


@datasets.command("drop")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@_friendly_errors
def datasets_drop(ctx, name, yes):
    """Delete a dataset and its rows."""
    with _db(ctx) as db:
        dataset = ingest.get_dataset(db, name)
        if not yes:
            click.confirm(
                f"Delete dataset {dataset.name!r} ({dataset.row_count:,} rows)?", abort=True
            )
        ingest.drop_dataset(db, dataset.name)
    click.echo(f"Dropped dataset {dataset.name!r}.")


# ----------------------------------------------------------------------------------------------
# output helpers


def _dataset_dict(d: ingest.Dataset) -> dict:
    return {
        "name": d.name,
        "rows": d.row_count,
        "source": d.source,
        "format": d.format,
        "encoding": d.encoding,
        "columns": d.columns,
        "mapping": d.mapping.to_dict(),
        "split": {"fractions": d.split.fractions, "seed": d.split.seed},
        "sha256": d.sha256,
        "created_at": d.created_at,
    }


def _echo_dataset(d: ingest.Dataset, stats: ingest.DatasetStats) -> None:
    roles = ", ".join(f"{r}={c}" for r, c in d.mapping.to_dict().items() if c)
    click.echo(f"Dataset {d.name}: {d.row_count:,} rows from {d.source} ({d.format})")
    click.echo(f"  columns: {', '.join(d.columns)}")
    click.echo(f"  roles:   {roles}")
    click.echo(
        "  split:   "
        + " / ".join(f"{s} {stats.split_counts[s]:,}" for s in ingest.SPLITS)
        + f" (fractions {'/'.join(f'{f:g}' for f in d.split.fractions)}, seed {d.split.seed})"
    )
    click.echo(
        f"  checks:  {stats.empty_texts:,} empty texts, {stats.duplicate_texts:,} duplicate texts, "
        f"{stats.blank_labels:,} blank labels"
    )
    if stats.label_counts:
        totals: dict[str, int] = {}
        for c in stats.label_counts:
            totals[c["label"]] = totals.get(c["label"], 0) + c["count"]
        click.echo("  labels:  " + ", ".join(f"{k} {v:,}" for k, v in totals.items()))


# ----------------------------------------------------------------------------------------------
# train, runs, models


@cli.command("train")
@click.argument("dataset")
@_setting_options(config.TrainConfig)
@click.option("--background", is_flag=True, help="Start a worker process and return at once.")
@click.pass_context
@_friendly_errors
def train_command(ctx, dataset, background, **settings):
    """Fine-tune a classifier on DATASET's label column, on its stored split.

    Prints progress, then the test report next to the baselines. Ctrl-C cancels (the run can be
    resumed with `runs resume`).
    """
    train_config = config.TrainConfig(**settings)
    if distributed.is_launched():
        _train_distributed(ctx, dataset, train_config, background)
        return
    if background:
        run = worker.start_run(ctx.obj["db_path"], dataset, train_config)
        click.echo(f"Run {run.id}: {run.config.base_model} on {run.dataset}", err=True)
        click.echo(
            f"Started run {run.id} in process {run.pid}. Follow it: python -m devmode runs show "
            f"{run.id}"
        )
        return
    with _db(ctx) as db:
        run = runs.create_run(db, dataset, train_config)
    click.echo(f"Run {run.id}: {run.config.base_model} on {run.dataset}", err=True)
    _execute(ctx, run.id)


def _train_distributed(ctx, dataset: str, train_config, background: bool) -> None:
    """Under accelerate launch / torchrun: the main process creates and records the run, every
    process trains its share."""
    if background:
        raise DevmodeError(
            "--background starts one worker process; drop it under accelerate launch."
        )
    peers = distributed.cluster()
    run_id = None
    if peers.is_main:
        with _db(ctx) as db:
            run_id = runs.create_run(db, dataset, train_config).id
        click.echo(f"Run {run_id} on {peers.world_size} processes", err=True)
    run_id = peers.broadcast(run_id)
    if peers.is_main:
        _execute(ctx, run_id)
    else:
        worker.follow_run(ctx.obj["db_path"], run_id)


def _execute(ctx, run_id: int) -> None:
    try:
        status = worker.execute_run(
            ctx.obj["db_path"], run_id, echo=lambda m: click.echo(m, err=True)
        )
    except KeyboardInterrupt:
        raise click.ClickException(
            f"Cancelled run {run_id}. Resume it: python -m devmode runs resume {run_id}"
        ) from None
    with _db(ctx) as db:
        _echo_run(runs.get_run(db, run_id))
    if status != jobs.COMPLETED:
        raise click.ClickException(f"Run {run_id} ended {status}.")


@cli.command("worker", hidden=True)
@click.argument("run_id", type=int)
@click.pass_context
@_friendly_errors
def worker_command(ctx, run_id):
    """Internal: run RUN_ID in this process (started by the pages and `train --background`)."""
    worker.execute_run(ctx.obj["db_path"], run_id, echo=print)


@cli.group("runs")
def runs_group():
    """List, inspect, cancel, resume and compare training runs."""


@runs_group.command("list")
@click.option("--dataset", help="Only runs on this dataset.")
@click.pass_context
@_friendly_errors
def runs_list(ctx, dataset):
    """List runs, newest first, with their status and test scores."""
    with _db(ctx) as db:
        runs.reconcile(db)
        found = runs.list_runs(db, dataset)
    if not found:
        click.echo("No runs yet. Start one: python -m devmode train DATASET")
        return
    click.echo(
        f"{'id':>4} {'status':<12} {'dataset':<20} {'progress':>9} {'test acc':>9} {'macro-F1':>9}"
    )
    for run in found:
        acc = reports.score_text((run.test or {}).get("accuracy"))
        f1 = reports.score_text((run.test or {}).get("macro_f1"))
        click.echo(
            f"{run.id:>4} {run.status:<12} {run.dataset:<20} {run.fraction_done:>8.0%} {acc:>9} {f1:>9}"
        )


@runs_group.command("show")
@click.argument("run_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the whole run as JSON.")
@click.pass_context
@_friendly_errors
def runs_show(ctx, run_id, as_json):
    """Show a run: status, progress, settings, and the before/after report."""
    with _db(ctx) as db:
        runs.reconcile(db)
        run = runs.get_run(db, run_id)
        tests = out_of_domain.tests_for_run(db, run_id)
    if as_json:
        record = {**dataclasses.asdict(run), "config": run.config.to_dict()}
        click.echo(json.dumps({**record, "out_of_domain": tests}, indent=2, default=str))
        return
    _echo_run(run)
    _echo_test_sets(run, tests)


def _echo_test_sets(run, tests) -> None:
    if not tests:
        return
    click.echo("  test sets (in-domain and out-of-domain):")
    for line in out_of_domain.report_lines(run, tests):
        mapped = f"  map {line['label map']}" if line["label map"] else ""
        click.echo(
            f"    {line['test set']:<30} {line['kind']:<13} rows {line['rows'] or 0:>6,}  "
            f"accuracy {reports.score_text(line['accuracy'])}  "
            f"macro-F1 {reports.score_text(line['macro-F1'])}  drift {line['drift']:.3f}{mapped}"
        )


@runs_group.command("test")
@click.argument("run_id", type=int)
@click.argument("dataset")
@click.option(
    "--map",
    "label_map",
    multiple=True,
    metavar="THEIRS=OURS",
    help="Map a class of DATASET to one of the model's (repeatable), e.g. --map Bearish=negative.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the stored test as JSON.")
@click.pass_context
@_friendly_errors
def runs_test(ctx, run_id, dataset, label_map, as_json):
    """Test run RUN_ID's model on every labelled row of another DATASET (out of domain): the
    report then shows it beside the run's own test split, with how far apart the texts are."""
    with _db(ctx) as db:
        found = out_of_domain.add_test(
            db, run_id, dataset, out_of_domain.parse_label_map(label_map)
        )
        run = runs.get_run(db, run_id)
        tests = out_of_domain.tests_for_run(db, run_id)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    _echo_test_sets(run, tests)


@runs_group.command("cancel")
@click.argument("run_id", type=int)
@click.pass_context
@_friendly_errors
def runs_cancel(ctx, run_id):
    """Ask a running run to stop after its current step."""
    with _db(ctx) as db:
        run = runs.request_cancel(db, run_id)
    click.echo(f"Run {run_id}: {'cancel requested' if run.is_active else run.status}.")


@runs_group.command("resume")
@click.argument("run_id", type=int)
@click.option("--background", is_flag=True, help="Resume in a worker process and return at once.")
@click.pass_context
@_friendly_errors
def runs_resume(ctx, run_id, background):
    """Continue an interrupted, cancelled or failed run from its last checkpoint."""
    if background:
        pid = worker.resume_run(ctx.obj["db_path"], run_id)
        click.echo(f"Resumed run {run_id} in process {pid}.")
        return
    with _db(ctx) as db:
        runs.reconcile(db)
        jobs.check_resumable(jobs.TRAINING, runs.get_run(db, run_id))
    _execute(ctx, run_id)


@runs_group.command("compare")
@click.argument("run_ids", type=int, nargs=-1, required=True)
@click.pass_context
@_friendly_errors
def runs_compare(ctx, run_ids):
    """Compare runs side by side: the settings that differ and the test metrics."""
    with _db(ctx) as db:
        table = reports.compare_runs([runs.get_run(db, i) for i in run_ids])
    width = max(len(row["setting"]) for row in table)
    click.echo(f"{'':<{width}} " + " ".join(f"{'run ' + str(i):>12}" for i in run_ids))
    for row in table:
        click.echo(f"{row['setting']:<{width}} " + " ".join(f"{str(v):>12}" for v in row["values"]))


@cli.group("models")
def models_group():
    """The model registry: list, promote to active, export, delete."""


@models_group.command("list")
@click.pass_context
@_friendly_errors
def models_list(ctx):
    """List saved models with their labels and which task each is active for."""
    with _db(ctx) as db:
        found = registry.list_models(db)
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
@_friendly_errors
def models_promote(ctx, run_id, task):
    """Make a run's model the active sentiment or topic model."""
    with _db(ctx) as db:
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
    help="A .zip path, or a folder to write devmode-run-ID.zip into.",
)
@click.pass_context
@_friendly_errors
def models_export(ctx, run_id, destination):
    """Export a run's model folder (Hugging Face encoder + head + label map) as a zip."""
    with _db(ctx) as db:
        path = archives.export_zip(db, run_id, destination)
    click.echo(f"Wrote {path}")


@models_group.command("import")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@click.pass_context
@_friendly_errors
def models_import(ctx, archive):
    """Add a model archive written by `models export` (here or on another machine) to the
    registry, as a completed run of its own."""
    with _db(ctx) as db:
        model = archives.import_zip(
            db,
            archive,
            environment.files_dir(ctx.obj["db_path"]),
            max_bytes=environment.max_upload_bytes(),
        )
    click.echo(
        f"Imported {Path(archive).name} as run {model.run_id} ({model.dataset}: "
        f"{', '.join(model.labels)}). Make it active with `models promote {model.run_id} --as sentiment`."
    )


@models_group.command("delete")
@click.argument("run_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@_friendly_errors
def models_delete(ctx, run_id, yes):
    """Delete a run's saved model (the run and its metrics stay)."""
    if not yes:
        click.confirm(f"Delete the model of run {run_id}?", abort=True)
    with _db(ctx) as db:
        registry.delete_model(db, run_id)
    click.echo(f"Deleted the model of run {run_id}.")


def _echo_run(run) -> None:
    click.echo(
        f"Run {run.id} on {run.dataset}: {run.status}" + (f" ({run.error})" if run.error else "")
    )
    click.echo(
        f"  progress: step {run.step}/{run.total_steps}, epoch {run.epoch}/{run.epochs_planned}"
        + (
            f", {run.samples_per_second:,.0f} samples/s on {run.device} ({run.precision})"
            if run.samples_per_second
            else ""
        )
    )
    for row in reports.before_after(run):
        click.echo(
            f"  {row['model']:<28} accuracy {reports.score_text(row['accuracy'])}  "
            f"macro-F1 {reports.score_text(row['macro_f1'])}"
        )
    if reports.gain_text(run):
        click.echo(f"  {reports.gain_text(run)}")


@models_group.command("map-sentiment")
@click.argument("run_id", type=int)
@click.option(
    "--negative", multiple=True, required=True, help="A label that means negative (repeatable)."
)
@click.option(
    "--positive", multiple=True, required=True, help="A label that means positive (repeatable)."
)
@click.pass_context
@_friendly_errors
def models_map_sentiment(ctx, run_id, negative, positive):
    """Say which of a model's labels are negative and positive (the rest count as neutral)."""
    with _db(ctx) as db:
        mapping = monitoring.set_sentiment_map(db, run_id, list(negative), list(positive))
    click.echo(", ".join(f"{label} = {polarity}" for label, polarity in mapping.items()))


# ----------------------------------------------------------------------------------------------
# score, trends


@cli.command("score")
@click.argument("dataset")
@click.option(
    "--task",
    "tasks",
    type=click.Choice(registry.TASKS),
    multiple=True,
    help="Score with this task's active model only (repeatable). Default: topic, when a topic "
    "model is active, then sentiment.",
)
@click.option(
    "--background", is_flag=True, help="Start a worker process and return; the page shows it."
)
@click.option("--cancel", is_flag=True, help="Stop the dataset's running scoring job.")
@click.pass_context
@_friendly_errors
def score_command(ctx, dataset, tasks, background, cancel):
    """Score DATASET's rows with the active models; rows a model already scored are skipped.

    A stopped or killed job keeps every whole chunk it wrote: run the command again to go on.
    """
    db_path = ctx.obj["db_path"]
    with _db(ctx) as db:
        if cancel:
            job = score_jobs.active_job(db, dataset)
            if job is None:
                raise click.ClickException(f"No scoring job is running on {dataset}.")
            score_jobs.request_cancel(db, job.id)
            click.echo(f"Asked scoring job {job.id} to stop after its current chunk.")
            return
        job = score_jobs.create_job(db, dataset, list(tasks) or None)
    if background:
        pid = score_jobs.start_job(db_path, job.id)
        click.echo(f"Scoring job {job.id} started (process {pid}).")
        return
    job = score_jobs.execute_job(db_path, job.id, echo=click.echo)
    for line in score_jobs.describe_job(job, per_task=False):
        click.echo(line)
    if job.status != jobs.COMPLETED:
        raise click.ClickException(f"Scoring job {job.id} ended {job.status}.")


@cli.command("score-worker", hidden=True)
@click.argument("job_id", type=int)
@click.pass_context
@_friendly_errors
def score_worker_command(ctx, job_id):
    """Internal: run scoring job JOB_ID in this process (started by the Monitor page)."""
    score_jobs.execute_job(ctx.obj["db_path"], job_id, echo=print)


@cli.command("review-worker", hidden=True)
@click.argument("job_id", type=int)
@click.pass_context
@_friendly_errors
def review_worker_command(ctx, job_id):
    """Internal: run label review JOB_ID in this process (started by the Datasets page)."""
    review_jobs.execute_review(ctx.obj["db_path"], job_id, echo=print)


@cli.command("trends")
@click.argument("dataset")
@_setting_options(alerts.RuleSettings, only=("period", "ticker", "topic", "stories"))
@click.option(
    "--by",
    "column",
    help="Split by this column: ticker, topic, or any of the dataset's (e.g. source). "
    f"Shows the {trends.MAX_SPLIT_VALUES} values with the most texts.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
@_friendly_errors
def trends_command(ctx, dataset, period, ticker, topic, stories, column, as_json):
    """Print the sentiment index (P(positive) - P(negative)), share negative and volume per period."""
    with _db(ctx) as db:
        if column:
            points = trends.trend_by(db, dataset, column, period=period)
        else:
            points = trends.sentiment_trend(
                db, dataset, period=period, ticker=ticker, topic=topic, stories=stories
            )
        reason = "" if points else trends.why_no_trend(db, dataset, ticker=ticker, topic=topic)
    if as_json:
        click.echo(json.dumps(points, indent=2))
        return
    if not points:
        click.echo(f"{reason} Score new rows with: python -m devmode score {dataset}")
        return
    first = f"{column:<24} " if column else ""
    click.echo(f"{first}{period:<12} {'sentiment':>10} {'negative':>9} {'volume':>7}")
    for p in points:
        value = f"{str(p['value'])[:24]:<24} " if column else ""
        click.echo(
            f"{value}{p['period']:<12} {p['sentiment']:>+10.3f} {p['share_negative']:>8.0%} "
            f"{p['volume']:>7,}"
        )


@cli.group("alerts")
def alerts_group():
    """Rules that flag surges of negative sentiment, and the alerts they raised."""


@alerts_group.command("add")
@click.argument("dataset")
@_setting_options(alerts.RuleSettings, required=("threshold",))
@click.pass_context
@_friendly_errors
def alerts_add(ctx, dataset, **settings):
    """Add a rule to DATASET and check it against what is scored so far."""
    rule_settings = alerts.RuleSettings(**settings)
    with _db(ctx) as db:
        rule = alerts.add_alert_rule(db, dataset, rule_settings)
        raised = alerts.evaluate_alerts(db, dataset)
    click.echo(
        f"Rule {rule.id}: {rule.describe()}. {len(raised)} alerts in the data scored so far."
    )


@alerts_group.command("list")
@click.argument("dataset")
@click.option("--all", "include_acknowledged", is_flag=True, help="Include acknowledged alerts.")
@click.pass_context
@_friendly_errors
def alerts_list(ctx, dataset, include_acknowledged):
    """List DATASET's open alerts (newest period first)."""
    with _db(ctx) as db:
        events = alerts.alert_events(db, dataset, include_acknowledged=include_acknowledged)
    if not events:
        click.echo("No open alerts.")
        return
    for e in events:
        done = " (acknowledged)" if e["acknowledged_at"] else ""
        click.echo(
            f"{e['id']:>4}  {e['period']} of {e['period_start']}: {e['share_negative']:.0%} negative "
            f"of {e['volume']} texts; rule: {e['rule']}{done}"
        )


@alerts_group.command("ack")
@click.argument("alert_id", type=int)
@click.pass_context
@_friendly_errors
def alerts_ack(ctx, alert_id):
    """Acknowledge an alert (it leaves the open list)."""
    with _db(ctx) as db:
        alerts.acknowledge_alert(db, alert_id)
    click.echo(f"Acknowledged alert {alert_id}.")


@alerts_group.command("rules")
@click.argument("dataset")
@click.pass_context
@_friendly_errors
def alerts_rules(ctx, dataset):
    """List DATASET's rules with their ids and where each one is delivered."""
    with _db(ctx) as db:
        rules = alerts.list_alert_rules(db, dataset)
        channels = delivery.list_channels(db)
    if not rules:
        click.echo(f"No rules on {dataset}. Add one: python -m devmode alerts add {dataset} ...")
    for rule in rules:
        click.echo(f"{rule.id:>4}  {rule.describe()}")
        for channel in (c for c in channels if c.rule_id == rule.id):
            click.echo(f"      -> channel {channel.id}: {channel.describe()}")


@alerts_group.command("notify")
@click.argument("rule_id", type=int)
@click.option("--webhook", help="POST each new alert of the rule to this URL.")
@click.option(
    "--format",
    "webhook_format",
    type=click.Choice(delivery.WEBHOOK_FORMATS),
    default="slack",
    show_default=True,
    help=delivery.WEBHOOK_FORMAT_HELP,
)
@click.option("--email", help="E-mail each new alert to this address (see alerts smtp).")
@click.option("--remove", "remove_id", type=int, help="Stop delivering to channel ID instead.")
@click.pass_context
@_friendly_errors
def alerts_notify(ctx, rule_id, webhook, webhook_format, email, remove_id):
    """Deliver RULE_ID's new alerts to a webhook or an e-mail address, with retries."""
    with _db(ctx) as db:
        if remove_id is not None:
            delivery.remove_channel(db, remove_id)
            click.echo(f"Channel {remove_id} removed; its delivery log is kept.")
            return
        channel = delivery.add_channel(
            db, rule_id, webhook=webhook, email=email, format=webhook_format
        )
    click.echo(
        f"Channel {channel.id}: rule {rule_id}'s new alerts go to {channel.describe()} "
        "(delivered by the watcher: python -m devmode watch)."
    )


@alerts_group.command("deliveries")
@click.argument("dataset", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
@click.pass_context
@_friendly_errors
def alerts_deliveries(ctx, dataset, as_json):
    """The delivery log (newest first): every alert sent or being retried, and why it failed."""
    with _db(ctx) as db:
        rows = delivery.list_deliveries(db, dataset)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No deliveries yet.")
    for row in rows:
        error = (
            f": {row['last_error']}" if row["last_error"] and row["status"] != "delivered" else ""
        )
        click.echo(
            f"{row['id']:>4}  {row['status']:<9} rule {row['rule_id']}, {row['period']} of "
            f"{row['period_start']} -> {row['kind']} {row['target']} ({row['attempts']} tries){error}"
        )


@alerts_group.command("smtp")
@_setting_options(delivery.SmtpSettings, required=("host", "sender"))
@click.pass_context
@_friendly_errors
def alerts_smtp(ctx, **settings):
    """Set the mail server e-mail alerts go through (the password stays in an environment
    variable: only its name is stored)."""
    smtp = delivery.SmtpSettings(**settings)
    with _db(ctx) as db:
        delivery.set_smtp_settings(db, smtp)
    login = f" as {smtp.user} (password from ${smtp.password_env})" if smtp.user else ""
    click.echo(f"E-mail alerts go through {smtp.host}:{smtp.port} ({smtp.security}){login}.")


@cli.group("watchlist")
def watchlist_group():
    """Tickers with their names: who a text is about when the data has no ticker column."""


@watchlist_group.command("add")
@click.argument("ticker")
@click.option("--name", help="The company's name, matched as a whole word (e.g. Apple).")
@click.option("--alias", "aliases", multiple=True, help="Another name to match. Repeatable.")
@click.pass_context
@_friendly_errors
def watchlist_add(ctx, ticker, name, aliases):
    """Add TICKER (matched as $TICKER, and by its names); every dataset is tagged again."""
    with _db(ctx) as db:
        entry = watchlist.add_entry(db, ticker, name=name, aliases=aliases)
    click.echo(f"Watching {entry.describe()}: trends, alerts and the wall display follow it.")


@watchlist_group.command("list")
@click.pass_context
@_friendly_errors
def watchlist_list(ctx):
    """The watchlist."""
    with _db(ctx) as db:
        entries = watchlist.list_entries(db)
    if not entries:
        click.echo(
            "The watchlist is empty. Add one: python -m devmode watchlist add AAPL --name Apple"
        )
    for entry in entries:
        click.echo(entry.describe())


@watchlist_group.command("remove")
@click.argument("ticker")
@click.pass_context
@_friendly_errors
def watchlist_remove(ctx, ticker):
    """Take TICKER off the watchlist (its mentions go with it)."""
    with _db(ctx) as db:
        entry = watchlist.remove_entry(db, ticker)
    click.echo(f"Removed {entry.describe()}.")


# ----------------------------------------------------------------------------------------------
# sources, watch


@cli.group("sources")
def sources_group():
    """Feeds and folders that add rows to a dataset by themselves (polled by the watcher)."""


@sources_group.command("add")
@click.argument("dataset")
@click.option("--feed", help="An RSS or Atom feed URL.")
@click.option(
    "--folder",
    type=click.Path(file_okay=False),
    help="A folder; CSV, TSV, JSON, JSONL or Parquet files dropped into it are added.",
)
@_setting_options(sources.SourceSettings)
@click.pass_context
@_friendly_errors
def sources_add(ctx, dataset, feed, folder, every):
    """Attach a feed or a folder to DATASET (created on the first poll when it does not exist)."""
    settings = sources.SourceSettings(every=every)
    with _db(ctx) as db:
        source = sources.add_source(db, dataset, feed=feed, folder=folder, settings=settings)
    click.echo(
        f"Source {source.id}: {source.shown_location} -> {source.dataset}, every "
        f"{source.every_seconds} s. "
        "It is polled by the watcher: python -m devmode watch (or --once)."
    )


@sources_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
@click.pass_context
@_friendly_errors
def sources_list(ctx, as_json):
    """Every source with its health: last poll, items added, last error."""
    with _db(ctx) as db:
        found = sources.list_sources(db)
        current = watcher.current_watcher(db)
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in found], indent=2))
        return
    if not found:
        click.echo("No sources yet. Add one: python -m devmode sources add DATASET --feed URL")
    for source in found:
        click.echo(f"{source.id:>4}  {source.kind:<6} {source.shown_location} -> {source.dataset}")
        click.echo(f"      {source.health()}")
    click.echo(current.describe() if current else "Not watching: python -m devmode watch")


@sources_group.command("remove")
@click.argument("source_id", type=int)
@click.pass_context
@_friendly_errors
def sources_remove(ctx, source_id):
    """Stop polling SOURCE_ID; the rows it brought stay in the dataset."""
    with _db(ctx) as db:
        source = sources.remove_source(db, source_id)
    click.echo(
        f"Source {source_id} removed ({source.shown_location}); its rows stay in {source.dataset}."
    )


@cli.command("watch")
@click.option("--once", is_flag=True, help="One pass over every due source, then exit.")
@click.option("--stop", is_flag=True, help="Ask the running watcher to stop after its pass.")
@click.pass_context
@_friendly_errors
def watch_command(ctx, once, stop):
    """Poll due sources, score new rows, evaluate alert rules and deliver alerts, until stopped.

    One watcher runs at a time (this command, or *Start watching* on the Monitor page).
    """
    db_path = ctx.obj["db_path"]
    if stop:
        with _db(ctx) as db:
            stopped = watcher.stop_watching(db)
        click.echo(f"Asked watcher {stopped.id} to stop." if stopped else "No watcher is running.")
        return
    if once:
        summary = watcher.run_once(db_path)
        for line in summary.lines + summary.problems:
            click.echo(line)
        click.echo(
            f"Polled {summary.polled} sources: {summary.added:,} new rows, {summary.scored:,} "
            f"scored, {summary.new_alerts} new alerts, {summary.delivered} delivered."
        )
        return
    with _db(ctx) as db:
        job = watcher.create_watcher(db)
    click.echo(f"Watcher {job.id} watching; Ctrl-C (or watch --stop) stops it.")
    try:
        watcher.execute_watcher(db_path, job.id, echo=click.echo)
    except KeyboardInterrupt:
        pass
    click.echo("Stopped watching.")


@cli.command("watch-worker", hidden=True)
@click.argument("watcher_id", type=int)
@click.pass_context
@_friendly_errors
def watch_worker_command(ctx, watcher_id):
    """Internal: run watcher WATCHER_ID in this process (started by the Monitor page)."""
    watcher.execute_watcher(ctx.obj["db_path"], watcher_id, echo=print)


# ----------------------------------------------------------------------------------------------
# chat, conversations, chat-bench, serve


# What every chat command sends besides the message (system prompt, pinned, budget), which
# model answers (the embedded one unless --base-url), and the limits on the reply.
_context_options = _setting_options(limits.ChatSettings)
_backend_options = _setting_options(
    limits.BackendSpec, only=("base_url", "model", "api_key_name", "precision")
)
_limit_options = _setting_options(limits.ChatLimits)


def _chat_settings(ctx, options: dict, base: limits.ChatSettings | None) -> limits.ChatSettings:
    """Settings from the command's options; with ``base`` (a saved conversation), only the
    options given on the command line change it."""

    def given(name: str) -> bool:
        return name in options and (
            base is None or ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT
        )

    def changed(cls, current) -> dict:
        return {
            **current.to_dict(),
            **{spec.name: options[spec.name] for spec in cls.specs() if given(spec.name)},
        }

    base = base or limits.ChatSettings()
    backend = base.backend
    if any(given(spec.name) for spec in limits.BackendSpec.specs()):
        values = changed(limits.BackendSpec, backend)
        backend = limits.BackendSpec.from_dict(
            {**values, "kind": "endpoint" if values["base_url"] else "embedded"}
        )
    return limits.ChatSettings.from_dict(
        {
            **changed(limits.ChatSettings, base),
            "limits": changed(limits.ChatLimits, base.limits),
            "backend": backend.to_dict(),
        }
    )


def _backend(ctx, spec: limits.BackendSpec):
    from devmode.chat import backends

    return backends.make_backend(spec, cache_dir=environment.chat_model_dir(ctx.obj["db_path"]))


@cli.command("chat")
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
@_friendly_errors
def chat_command(ctx, prompt, save, conversation_id, **options):
    """Send PROMPT under the given limits; print the reply and which limit ended it."""
    from devmode.chat import conversations

    saved = None
    history: list[tuple[str, str]] = []
    if conversation_id is not None:
        with _db(ctx) as db:
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
        with _db(ctx) as db:
            target = saved or conversations.create_conversation(db, settings)
            conversations.add_exchange(db, target.id, prompt, reply, plan, settings)
        click.echo(f"Saved in conversation {target.id}.", err=True)


@cli.group("conversations")
def conversations_group():
    """Saved chat sandbox conversations: list, show, export, rename, delete."""


@conversations_group.command("list")
@click.pass_context
@_friendly_errors
def conversations_list(ctx):
    """Saved conversations, most recent first."""
    from devmode.chat import conversations

    with _db(ctx) as db:
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
@_friendly_errors
def conversations_show(ctx, conversation_id):
    """Print a conversation: settings, messages and each reply's limit report."""
    from devmode.chat import conversations

    with _db(ctx) as db:
        click.echo(conversations.export_markdown(db, conversation_id))


@conversations_group.command("export")
@click.argument("conversation_id", type=int)
@click.option("--format", "kind", type=click.Choice(["json", "markdown"]), default="json")
@click.option("--to", "path", type=click.Path(dir_okay=False), help="File (default: print).")
@click.pass_context
@_friendly_errors
def conversations_export(ctx, conversation_id, kind, path):
    """Export a conversation as JSON (everything) or Markdown (a transcript)."""
    from devmode.chat import conversations

    with _db(ctx) as db:
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
@_friendly_errors
def conversations_rename(ctx, conversation_id, title):
    """Give a conversation a new title."""
    from devmode.chat import conversations

    with _db(ctx) as db:
        conversations.rename_conversation(db, conversation_id, title)
    click.echo(f"Conversation {conversation_id} is now {title!r}.")


@conversations_group.command("delete")
@click.argument("conversation_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@_friendly_errors
def conversations_delete(ctx, conversation_id, yes):
    """Delete a conversation and its messages."""
    from devmode.chat import conversations

    if not yes:
        click.confirm(f"Delete conversation {conversation_id}?", abort=True)
    with _db(ctx) as db:
        conversations.delete_conversation(db, conversation_id)
    click.echo(f"Deleted conversation {conversation_id}.")


@cli.command("chat-bench")
@click.argument("prompts", nargs=-1, required=True)
@click.option(
    "--variant",
    "variants",
    multiple=True,
    required=True,
    help='One column of limits: "name=short,max_tokens=20,banned=risk;loss,budget=512" '
    "(fields of the chat limits; lists with ;). Repeat for each column.",
)
@_context_options
@_backend_options
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the rows.")
@click.pass_context
@_friendly_errors
def chat_bench_command(ctx, prompts, variants, json_path, **options):
    """Run every PROMPT under every --variant and tabulate what each produced and which limit
    fired."""
    settings = _chat_settings(ctx, options, None)  # the limits come from each --variant
    columns = [bench.parse_variant(v) for v in variants]
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
    rows = bench.run_bench(backend, settings, prompts, columns, on_row=show)
    if json_path:
        Path(json_path).write_text(json.dumps(rows, indent=2), encoding="utf-8")
        click.echo(f"Wrote {len(rows)} rows to {json_path}.")


cli.add_command(suites_cli.bench)
cli.add_command(suites_cli.suite_worker)


@cli.command("review-labels")
@click.argument("name")
@click.argument("ids", nargs=-1, type=int)
@click.option("--accept", is_flag=True, help="Accept the suggestions IDS: relabel those rows.")
@click.option("--reject", is_flag=True, help="Reject the suggestions IDS: keep those labels.")
@click.option(
    "--open", "open_only", is_flag=True, help="List the open suggestions without reviewing again."
)
@click.option(
    "--mode",
    type=click.Choice(review.MODES),
    default="quick",
    show_default=True,
    help="quick: the frozen base model's vectors (seconds); thorough: the base model fine-tuned "
    "once per fold (minutes, finds more).",
)
@_setting_options(config.TrainConfig, only={"base_model"})
@click.option("--json", "as_json", is_flag=True, help="Print the suggestions as JSON.")
@click.pass_context
@_friendly_errors
def review_labels(ctx, name, ids, accept, reject, open_only, mode, base_model, as_json):
    """Find rows of dataset NAME whose labels look wrong, with the label the model suggests.

    Every labelled row is judged by models that never saw it (5 folds over the base model's
    vectors, or 5 fine-tunes with --mode thorough), and confident learning (cleanlab) ranks the
    suspects; near-copies labelled two ways are listed too. Then accept or reject
    suggestions by id: review-labels NAME --accept 3 7, review-labels NAME --reject 9. An
    accepted label is changed with its history kept, and the dataset's label version goes up.
    """
    if accept and reject:
        raise click.UsageError("Give --accept or --reject, not both: one decision per call.")
    if (accept or reject) != bool(ids):
        raise click.UsageError(
            "Suggestion ids go with --accept or --reject (e.g. review-labels NAME --accept 3 7); "
            "without them, give no ids."
        )
    with _db(ctx) as db:
        if accept or reject:
            version = corrections.decide(
                db, name, accept=ids if accept else (), reject=ids if reject else ()
            )
            decided = len(set(ids))  # an id given twice is decided once
            click.echo(
                f"{'Accepted' if accept else 'Rejected'} {decided:,} suggestion"
                f"{'s' * (decided > 1)}; {name} is at label version {version}."
            )
            return
        if open_only:
            found = corrections.open_suggestions(db, name)
        else:
            with click.progressbar(
                length=1,
                label="Fine-tuning per fold" if mode == "thorough" else "Reading texts",
                file=click.get_text_stream("stderr"),
            ) as bar:

                def progress(done, total):
                    bar.length = total
                    bar.update(done - bar.pos)

                found = corrections.review_dataset(
                    db, name, base_model, mode=mode, on_progress=progress
                )
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo(f"No label of {name} looks wrong to the model.")
        return
    click.echo(f"{'id':>6} {'label':<14} {'suggested':<14} {'conf':>5}  text")
    for row in found:
        click.echo(
            f"{row['id']:>6} {row['label']:<14} {row['suggested']:<14} "
            f"{row['confidence']:>5.2f}  {' '.join(str(row['text']).split())[:70]}"
        )
    click.echo(f"Accept with: python -m devmode review-labels {name} --accept ID...")


@cli.command("label")
@click.argument("name")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="ROW=LABEL",
    help="Label row ROW (its id in the list) as LABEL (repeatable).",
)
@click.option("--new-class", is_flag=True, help="Allow labels the dataset has no rows of yet.")
@click.option("--limit", default=20, show_default=True, help="How many rows to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows to label as JSON.")
@click.pass_context
@_friendly_errors
def label_command(ctx, name, assignments, new_class, limit, as_json):
    """List the unlabelled rows of dataset NAME the current model is least sure of, with its
    suggestion, or save labels: label NAME --set 12=positive --set 40=negative."""
    with _db(ctx) as db:
        if assignments:
            edits = {}
            for assignment in assignments:
                row, sep, label = assignment.partition("=")
                if not sep or not row.strip().isdigit():
                    raise click.UsageError(
                        f"Expected --set ROW=LABEL with a row id, e.g. --set 12=positive; "
                        f"found {assignment!r}."
                    )
                edits[int(row)] = label
            version = labelling.save_labels(db, name, edits, allow_new_classes=new_class)
            click.echo(f"Saved {len(edits)} label(s); {name} is at label version {version}.")
            return
        found = labelling.rows_to_label(db, name, limit=limit)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo(f"Every row of {name} with a text has a label.")
        return
    click.echo(f"{'row':>6} {'suggested':<14} {'unsure':>6}  text")
    for row in found:
        unsure = "" if row["uncertainty"] is None else f"{row['uncertainty']:.2f}"
        click.echo(
            f"{row['row_id']:>6} {row['suggested'] or '':<14} {unsure:>6}  "
            f"{' '.join(row['text'].split())[:70]}"
        )
    click.echo(f"Label with: python -m devmode label {name} --set ROW=LABEL ...")


@cli.command("backup")
@click.argument("destination", type=click.Path(file_okay=False))
@click.pass_context
@_friendly_errors
def backup_command(ctx, destination):
    """Back up the database (a consistent online copy, safe while the app runs) and the files
    folder beside it into DESTINATION."""
    from devmode.db import backup

    try:
        target = backup(ctx.obj["db_path"], destination)
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"Backed up {ctx.obj['db_path']} to {target} (and its files folder).")


@cli.command("hash-password")
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
@_friendly_errors
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
    if len(password) < 8:
        raise click.ClickException("Choose a password of at least 8 characters.")
    click.echo(auth.hash_password(password))


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@_setting_options(limits.BackendSpec, only=("precision",))
@click.option(
    "--api-key-env",
    help="Require the API key held in this environment variable (default: no key needed).",
)
@click.pass_context
@_friendly_errors
def serve_command(ctx, host, port, precision, api_key_env):
    """Serve the embedded chat model as an OpenAI-compatible endpoint (/v1/chat/completions,
    /v1/models), for the Chat sandbox page and any OpenAI client."""
    import os

    from devmode.chat.server import MODEL_ID, ChatServer

    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise click.ClickException(
                f"--api-key-env {api_key_env} was given, but that variable is empty. Set it "
                "to the key clients must send, or leave the option out."
            )
    backend = _backend(ctx, limits.BackendSpec(precision=precision))
    server = ChatServer(
        (host, port), backend, api_key=api_key, log=lambda line: click.echo(line, err=True)
    )
    click.echo(
        f"Serving {backend.name} as model {MODEL_ID!r} at {server.base_url}"
        + (" (API key required)" if api_key else "")
        + ". Ctrl-C stops.",
        err=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
