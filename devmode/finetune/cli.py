"""``python -m devmode train | runs``: fine-tuning a classifier and following, testing, cancelling,
resuming and comparing its runs.

    $ python -m devmode train phrasebank --epochs 3
    $ python -m devmode runs show 1
"""

from __future__ import annotations

import dataclasses

import click

from devmode import clitools, jobs
from devmode.clitools import echo_json, group, json_option, setting_options
from devmode.errors import DevmodeError
from devmode.finetune import distributed, out_of_domain, reports, worker
from devmode.models import config, runs


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


def register_commands(cli: click.Group) -> None:
    """Add these commands to the root group."""
    cli.add_command(train_command)
    cli.add_command(runs_group)
