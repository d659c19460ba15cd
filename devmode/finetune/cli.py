"""``python -m devmode train | runs | evaluations``: fine-tuning a classifier and following,
testing, cancelling, resuming and comparing its runs; k-fold estimates of a recipe.

    $ python -m devmode train phrasebank --epochs 3
    $ python -m devmode runs show 1
"""

from __future__ import annotations

import dataclasses

import click

from devmode import clitools, jobs
from devmode.clitools import echo_json, group, json_option, setting_options, yes_option
from devmode.errors import DevmodeError
from devmode.finetune import (
    adaptation,
    distillation,
    distributed,
    evaluations,
    out_of_domain,
    reports,
    worker,
)
from devmode.models import adapted_bases, config, runs


@click.command("train")
@click.argument("dataset")
@setting_options(config.TrainConfig)
@click.option("--background", is_flag=True, help="Start a worker process and return at once.")
@click.pass_context
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
        run = worker.start_run(clitools.db_path(ctx), dataset, train_config)
        click.echo(f"Run {run.id}: {run.config.base_model} on {run.dataset}", err=True)
        click.echo(
            f"Started run {run.id} in process {run.pid}. Follow it: python -m devmode runs show "
            f"{run.id}"
        )
        return
    with clitools.db(ctx) as db:
        distillation.check_teachers(db, train_config, dataset)
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
        with clitools.db(ctx) as db:
            run_id = runs.create_run(db, dataset, train_config).id
        click.echo(f"Run {run_id} on {peers.world_size} processes", err=True)
    run_id = peers.broadcast(run_id)
    if peers.is_main:
        _execute(ctx, run_id)
    else:
        worker.follow_run(clitools.db_path(ctx), run_id)


def _execute(ctx, run_id: int) -> None:
    try:
        status = worker.execute_run(
            clitools.db_path(ctx), run_id, echo=lambda m: click.echo(m, err=True)
        )
    except KeyboardInterrupt:
        raise click.ClickException(
            f"Cancelled run {run_id}. Resume it: python -m devmode runs resume {run_id}"
        ) from None
    with clitools.db(ctx) as db:
        _echo_run(runs.get_run(db, run_id))
    if status != jobs.COMPLETED:
        raise click.ClickException(f"Run {run_id} ended {status}.")


@group("runs")
def runs_group():
    """List, inspect, cancel, resume and compare training runs."""


@runs_group.command("list")
@click.option("--dataset", help="Only runs on this dataset.")
@click.pass_context
def runs_list(ctx, dataset):
    """List runs, newest first, with their status and test scores."""
    with clitools.db(ctx) as db:
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
@json_option("Print the whole run as JSON.")
@click.pass_context
def runs_show(ctx, run_id, as_json):
    """Show a run: status, progress, settings, and the before/after report."""
    with clitools.db(ctx) as db:
        run = runs.get_run(db, run_id, live=True)
        tests = out_of_domain.tests_for_run(db, run_id)
    if as_json:
        record = {**dataclasses.asdict(run), "config": run.config.to_dict()}
        echo_json({**record, "out_of_domain": tests})
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
@json_option("Print the stored test as JSON.")
@click.pass_context
def runs_test(ctx, run_id, dataset, label_map, as_json):
    """Test run RUN_ID's model on every labelled row of another DATASET (out of domain): the
    report then shows it beside the run's own test split, with how far apart the texts are."""
    with clitools.db(ctx) as db:
        found = out_of_domain.add_test(
            db, run_id, dataset, out_of_domain.parse_label_map(label_map)
        )
        run = runs.get_run(db, run_id)
        tests = out_of_domain.tests_for_run(db, run_id)
    if as_json:
        echo_json(found)
        return
    _echo_test_sets(run, tests)


@runs_group.command("cancel")
@click.argument("run_id", type=int)
@click.pass_context
def runs_cancel(ctx, run_id):
    """Ask a running run to stop after its current step."""
    with clitools.db(ctx) as db:
        run = runs.request_cancel(db, run_id)
    click.echo(f"Run {run_id}: {'cancel requested' if run.is_active else run.status}.")


@runs_group.command("resume")
@click.argument("run_id", type=int)
@click.option("--background", is_flag=True, help="Resume in a worker process and return at once.")
@click.pass_context
def runs_resume(ctx, run_id, background):
    """Continue an interrupted, cancelled or failed run from its last checkpoint."""
    if background:
        pid = worker.resume_run(clitools.db_path(ctx), run_id)
        click.echo(f"Resumed run {run_id} in process {pid}.")
        return
    with clitools.db(ctx) as db:
        jobs.check_resumable(runs.KIND, runs.get_run(db, run_id, live=True))
    _execute(ctx, run_id)


@runs_group.command("compare")
@click.argument("run_ids", type=int, nargs=-1, required=True)
@click.pass_context
def runs_compare(ctx, run_ids):
    """Compare runs side by side: the settings that differ and the test metrics."""
    with clitools.db(ctx) as db:
        table = reports.compare_runs([runs.get_run(db, i) for i in run_ids])
    width = max(len(row["setting"]) for row in table)
    click.echo(f"{'':<{width}} " + " ".join(f"{'run ' + str(i):>12}" for i in run_ids))
    for row in table:
        click.echo(f"{row['setting']:<{width}} " + " ".join(f"{str(v):>12}" for v in row["values"]))


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
    if reports.calibration_text(run):
        click.echo(f"  {reports.calibration_text(run)}")
    if reports.caveat_text(run):
        click.echo(f"  Caveat: {reports.caveat_text(run)}")


@group("evaluations")
def evaluations_group():
    """k-fold estimates of a training recipe (accuracy and macro-F1 with a 95% interval), and
    paired comparisons of two recipes on the same folds."""


@evaluations_group.command("run")
@click.argument("dataset")
@click.option(
    "--folds",
    type=int,
    default=evaluations.DEFAULT_FOLDS,
    show_default=True,
    help="Stratified folds of the labelled rows: each fold is tested by a model trained on the "
    "others.",
)
@click.option(
    "--fold-seed",
    type=click.IntRange(evaluations.MIN_FOLD_SEED, evaluations.MAX_FOLD_SEED),
    default=evaluations.DEFAULT_FOLD_SEED,
    show_default=True,
    help="Shuffles the rows into folds. Two evaluations compare only on the same folds.",
)
@setting_options(config.TrainConfig)
@click.option("--background", is_flag=True, help="Start a worker process and return at once.")
@json_option("Print the finished evaluation as JSON.")
@click.pass_context
def evaluations_run(ctx, dataset, folds, fold_seed, background, as_json, **settings):
    """Train the recipe (any train option) on k stratified folds of DATASET's labelled rows and
    report mean accuracy and macro-F1 with a 95% interval (corrected for the folds' overlap).

    Keeps every row's out-of-fold prediction and the k fold models. Ctrl-C cancels; `evaluations
    resume ID` goes on from the fold at work.
    """
    train_config = config.TrainConfig(**settings)
    if background:
        found = evaluations.start_evaluation(
            clitools.db_path(ctx), dataset, train_config, folds=folds, fold_seed=fold_seed
        )
        click.echo(
            f"Started evaluation {found.id} in process {found.pid}. Follow it: python -m devmode "
            f"evaluations show {found.id}"
        )
        return
    with clitools.db(ctx) as db:
        found = evaluations.create_evaluation(
            db, dataset, train_config, folds=folds, fold_seed=fold_seed
        )
    click.echo(f"Evaluation {found.id}: {folds} folds of {found.dataset}", err=True)
    _execute_evaluation(ctx, found.id, as_json)


def _execute_evaluation(ctx, evaluation_id: int, as_json: bool) -> None:
    try:
        status = evaluations.execute_evaluation(
            clitools.db_path(ctx), evaluation_id, echo=lambda m: click.echo(m, err=True)
        )
    except KeyboardInterrupt:
        raise click.ClickException(
            f"Cancelled evaluation {evaluation_id}. Resume it: python -m devmode evaluations "
            f"resume {evaluation_id}"
        ) from None
    with clitools.db(ctx) as db:
        found = evaluations.get_evaluation(db, evaluation_id)
    if as_json:
        echo_json(found.to_dict())
    else:
        _echo_evaluation(found)
    if status != jobs.COMPLETED:
        raise click.ClickException(f"Evaluation {evaluation_id} ended {status}.")


@evaluations_group.command("list")
@click.option("--dataset", help="Only evaluations of this dataset.")
@click.pass_context
def evaluations_list(ctx, dataset):
    """List evaluations, newest first, with their means and intervals."""
    with clitools.db(ctx) as db:
        found = evaluations.list_evaluations(db, dataset)
    if not found:
        click.echo("No evaluations yet. Start one: python -m devmode evaluations run DATASET")
        return
    click.echo(
        f"{'id':>4} {'status':<12} {'dataset':<20} {'folds':>5} {'seed':>5} "
        f"{'accuracy':>22} {'macro-F1':>22}"
    )
    for e in found:
        click.echo(
            f"{e.id:>4} {e.status:<12} {e.dataset:<20} {e.folds:>5} {e.fold_seed:>5} "
            f"{reports.estimate_text(e, 'accuracy'):>22} {reports.estimate_text(e, 'macro_f1'):>22}"
        )


@evaluations_group.command("show")
@click.argument("evaluation_id", type=int)
@json_option("Print the whole evaluation as JSON.")
@click.pass_context
def evaluations_show(ctx, evaluation_id, as_json):
    """Show an evaluation: its progress, each fold's figures and the summary."""
    with clitools.db(ctx) as db:
        found = evaluations.get_evaluation(db, evaluation_id, live=True)
    if as_json:
        echo_json(found.to_dict())
        return
    _echo_evaluation(found)


@evaluations_group.command("compare")
@click.argument("first", type=int)
@click.argument("second", type=int)
@json_option("Print the comparison as JSON.")
@click.pass_context
def evaluations_compare(ctx, first, second, as_json):
    """Compare evaluation SECOND against FIRST on the same folds: the paired difference per
    metric with its 95% interval and p-value (Nadeau and Bengio's corrected resampled t-test)."""
    with clitools.db(ctx) as db:
        compared = evaluations.compare(db, first, second)
    if as_json:
        echo_json(compared)
        return
    click.echo(
        f"Evaluation {second} against {first} on {compared['dataset']}, the same "
        f"{compared['folds']} folds (seed {compared['fold_seed']}); {compared['test']}:"
    )
    for row in reports.comparison_rows(compared):
        click.echo(
            f"  {row['metric']:<9} {row['first']:>7} {row['second']:>7}  difference "
            f"{row['difference']:>7} [{row['interval']}]  p = {row['p']}"
        )
    for key, (was, now) in compared["settings"].items():
        click.echo(f"  setting {key}: {was} -> {now}")


@evaluations_group.command("cancel")
@click.argument("evaluation_id", type=int)
@click.pass_context
def evaluations_cancel(ctx, evaluation_id):
    """Ask a running evaluation to stop after its current step."""
    with clitools.db(ctx) as db:
        found = evaluations.request_cancel(db, evaluation_id)
    click.echo(
        f"Evaluation {evaluation_id}: {'cancel requested' if found.is_active else found.status}."
    )


@evaluations_group.command("resume")
@click.argument("evaluation_id", type=int)
@click.option("--background", is_flag=True, help="Resume in a worker process and return at once.")
@json_option("Print the finished evaluation as JSON.")
@click.pass_context
def evaluations_resume(ctx, evaluation_id, background, as_json):
    """Continue an interrupted, cancelled or failed evaluation: finished folds are kept."""
    if background:
        pid = evaluations.resume_evaluation(clitools.db_path(ctx), evaluation_id)
        click.echo(f"Resumed evaluation {evaluation_id} in process {pid}.")
        return
    with clitools.db(ctx) as db:
        jobs.check_resumable(
            evaluations.KIND, evaluations.get_evaluation(db, evaluation_id, live=True)
        )
    _execute_evaluation(ctx, evaluation_id, as_json)


@evaluations_group.command("delete")
@click.argument("evaluation_id", type=int)
@yes_option
@click.pass_context
def evaluations_delete(ctx, evaluation_id, yes):
    """Delete an evaluation with its out-of-fold predictions and fold models."""
    if not yes:
        click.confirm(
            f"Delete evaluation {evaluation_id}, its predictions and its fold models?", abort=True
        )
    evaluations.delete_evaluation(clitools.db_path(ctx), evaluation_id)
    click.echo(f"Deleted evaluation {evaluation_id}.")


def _echo_evaluation(found) -> None:
    click.echo(
        f"Evaluation {found.id} of {found.dataset}: {found.status}"
        + (f" ({found.error})" if found.error else "")
    )
    click.echo(
        f"  {found.folds} folds (seed {found.fold_seed}) of {found.rows:,} labelled rows; "
        f"{len(found.fold_results)} finished"
    )
    for r in found.fold_results:
        click.echo(
            f"  fold {r['fold'] + 1}: accuracy {r['accuracy']:.3f}  macro-F1 {r['macro_f1']:.3f}  "
            f"temperature {r['temperature']:.2f}  ({r['rows_test']:,} test rows)"
        )
    if found.summary:
        for name, label in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
            click.echo(f"  {label:<9} {reports.estimate_text(found, name)}")
        click.echo(f"  {reports.pooled_calibration_text(found)}")


@click.command("adapt")
@click.argument("datasets", nargs=-1)
@click.option("--name", help="What to call the adapted base: train from it with adapted:NAME.")
@setting_options(adapted_bases.AdaptSettings)
@click.option("--background", is_flag=True, help="Start a worker process and return at once.")
@click.option("--cancel", "cancel_name", metavar="NAME", help="Cancel adaptation NAME.")
@click.option(
    "--resume", "resume_name", metavar="NAME", help="Start interrupted adaptation NAME again."
)
@click.pass_context
def adapt_command(ctx, datasets, name, background, cancel_name, resume_name, **settings):
    """Continue the base model's masked-word pre-training on the texts of DATASETs (labels
    ignored): an adapted base, stored as adapted:NAME, to fine-tune from with
    `train --base-model adapted:NAME`. Ctrl-C cancels."""
    db_path = clitools.db_path(ctx)
    if cancel_name or resume_name:
        with clitools.db(ctx) as db:
            found = adapted_bases.by_name(db, cancel_name or resume_name)
            if cancel_name:
                jobs.request_cancel(db, adapted_bases.KIND, found.id)
                click.echo(f"{found.reference}: cancel requested.")
                return
            live = adapted_bases.get_adaptation(db, found.id, live=True)
            jobs.check_resumable(adapted_bases.KIND, live)
        if background:
            pid = jobs.start(db_path, adapted_bases.KIND, found.id)
            click.echo(f"Started {found.reference} again in process {pid}.")
            return
        _adapt_here(db_path, found)
        return
    if not datasets or not name:
        raise click.UsageError(
            "Name the datasets to read and the base to make: adapt DATASET... --name NAME"
        )
    chosen = adapted_bases.AdaptSettings(**settings)
    if background:
        found = adaptation.start_adaptation(db_path, list(datasets), name, chosen)
        click.echo(
            f"Started {found.reference} in process {found.pid}. Follow it: python -m devmode "
            "models list"
        )
        return
    with clitools.db(ctx) as db:
        found = adaptation.create(db, list(datasets), name, chosen)
    _adapt_here(db_path, found)


def _adapt_here(db_path, found) -> None:
    try:
        status = adaptation.execute_adaptation(
            db_path, found.id, echo=lambda m: click.echo(m, err=True)
        )
    except KeyboardInterrupt:
        raise click.ClickException(
            f"Cancelled {found.reference}. Start it again: python -m devmode adapt --resume "
            f"{found.name}"
        ) from None
    if status != jobs.COMPLETED:
        raise click.ClickException(f"{found.reference} ended {status}.")
    click.echo(f"Adapted base ready: --base-model {found.reference}")


def register_commands(cli: click.Group) -> None:
    """Add these commands to the root group."""
    cli.add_command(train_command)
    cli.add_command(adapt_command)
    cli.add_command(runs_group)
    cli.add_command(evaluations_group)
