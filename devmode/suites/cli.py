"""``python -m devmode bench ...``: suites from the terminal and in CI.

    $ python -m devmode bench run suite.yaml                  # exit 1 when a check fails
    $ python -m devmode bench run suite.yaml --json > run.json
    $ python -m devmode bench run suite.yaml --baseline run.json   # and when a cell regressed
    $ python -m devmode bench compare 3 4
    $ python -m devmode bench report 4 --format html -o run-4.html

Exit codes of ``bench run``: 0 every cell passed (and none regressed), 1 a check failed or a
cell regressed, 2 the suite could not run (a bad file, an unknown baseline).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from devmode import clitools
from devmode.clitools import group, json_option
from devmode.db import open_db
from devmode.errors import DevmodeError
from devmode.suites import reports, runner, store
from devmode.suites.files import read_suite, suite_yaml

FAILED_CHECKS = 1
CANNOT_RUN = 2


class CannotRun(click.ClickException):
    exit_code = CANNOT_RUN


def _load(db, suite: str):
    """A suite file, or a stored suite's name."""
    path = Path(suite)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        return read_suite(path)
    return store.get_suite(db, suite)


@group("bench")
def bench() -> None:
    """Prompt suites: prompts x cases x variants with assertions, kept, rerun and compared."""


@bench.command("run")
@click.argument("suite")
@json_option("Print the report as JSON (for scripts).")
@click.option(
    "--baseline",
    metavar="RUN",
    help="Compare with this run: a stored run's id, or a JSON report an earlier --json printed.",
)
@click.pass_context
def run_command(ctx, suite, as_json, baseline):
    """Run SUITE (a YAML file, devmode's or promptfoo's, or a stored suite's name) and check
    every reply. Exits 1 when a check fails or a cell regressed against --baseline."""
    db_path = clitools.db_path(ctx)
    try:
        with open_db(db_path) as db:
            found = _load(db, suite)
            before = reports.load_baseline(db, baseline) if baseline else None
            runner.check_classifiers(db, found)
            run = store.create_run(db, found)
    except DevmodeError as e:
        raise CannotRun(str(e)) from e
    click.echo(
        f"Suite {found.name}: {found.size} replies ({len(found.prompts)} prompts x "
        f"{len(found.cases)} cases x {len(found.variants)} variants x {found.repeat}), run {run.id}.",
        err=True,
    )

    def progress(row, done, total):
        mark = {store.PASS: "pass", store.FAIL: "FAIL", store.ERROR: "ERROR"}[row["outcome"]]
        click.echo(f"  [{done}/{total}] {mark:<5} {row['cell']} #{row['repeat'] + 1}", err=True)

    try:
        runner.execute_run(db_path, run.id, on_result=progress)
    except DevmodeError as e:
        raise CannotRun(str(e)) from e
    with open_db(db_path) as db:
        report = reports.run_report(db, run.id)
    diff = reports.compare(before, report) if before else None
    if as_json:
        click.echo(reports.as_json({**report, **({"comparison": diff} if diff else {})}))
    else:
        _print_report(report, diff)
    problems = reports.failing(report, diff)
    for line in problems:
        click.echo(line, err=True)
    if problems:
        sys.exit(FAILED_CHECKS)


@bench.command("rescore")
@click.argument("run_id", metavar="RUN", type=int)
@click.option(
    "--suite",
    "suite_file",
    help="Check with this suite file's assertions (default: the run's suite as saved now).",
)
@json_option("Print the new run's report as JSON (for scripts).")
@click.pass_context
def rescore_command(ctx, run_id, suite_file, as_json):
    """Check the replies RUN stored again with the current assertions, without asking any chat
    model; stored as a new run marked rescored. Exits 1 when a check fails."""
    db_path = clitools.db_path(ctx)
    try:
        with open_db(db_path) as db:
            suite = _load(db, suite_file) if suite_file else None
        run = runner.rescore(db_path, run_id, suite)
    except DevmodeError as e:
        raise CannotRun(str(e)) from e
    with open_db(db_path) as db:
        report = reports.run_report(db, run.id)
    click.echo(f"Run {run.id}: run {run_id}'s replies rescored, no model asked.", err=True)
    if as_json:
        click.echo(reports.as_json({**report, "rescored_from": run_id}))
    else:
        _print_report(report)
    problems = reports.failing(report)
    for line in problems:
        click.echo(line, err=True)
    if problems:
        sys.exit(FAILED_CHECKS)


def _print_report(report, diff=None) -> None:
    summary = report["summary"]
    click.echo(
        f"{report['suite']}, run {report['run']}: {summary['passed']} of {summary['cells']} "
        f"cells passed, {summary['errors']} errors"
    )
    rows = reports.grid(report)
    columns = list(rows[0]) if rows else []
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        click.echo("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))
    for line in report["variants"]:
        interval = line["interval"]
        within = f" [{interval[0]:.0%}, {interval[1]:.0%}]" if interval else ""
        click.echo(
            f"  {line['variant']}: pass rate {_pct(line['pass_rate'])}{within}, "
            f"{line['passes']} of {line['repeats']} replies passed"
        )
    flaky = [c["cell"] for c in report["cells"] if c.get("flaky")]
    if flaky:
        click.echo(f"Flaky (passed and failed within the run): {', '.join(flaky)}")
    if diff:
        click.echo(reports.diff_text(diff))


@bench.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.pass_context
def import_command(ctx, path):
    """Store the suite in PATH (devmode's YAML or a promptfooconfig.yaml) under its name."""
    suite = read_suite(path)
    with clitools.db(ctx) as db:
        store.save_suite(db, suite)
    click.echo(f"Stored suite {suite.name} ({suite.size} replies a run).")


@bench.command("export")
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here, not stdout.")
@click.pass_context
def export_command(ctx, name, output):
    """Write stored suite NAME as devmode's YAML."""
    with clitools.db(ctx) as db:
        text = suite_yaml(store.get_suite(db, name))
    _write(text, output)


@bench.command("list")
@click.pass_context
def list_command(ctx):
    """The stored suites."""
    with clitools.db(ctx) as db:
        names = store.suite_names(db)
    click.echo("\n".join(names) if names else "No suites yet: python -m devmode bench import FILE")


@bench.command("runs")
@click.argument("suite", required=False)
@click.pass_context
def runs_command(ctx, suite):
    """The runs of every suite, or of SUITE, newest first."""
    with clitools.db(ctx) as db:
        found = store.list_runs(db, suite)
    for run in found:
        click.echo(f"{run.id:>4}  {run.label()}  {run.created_at}")
    if not found:
        click.echo("No suite runs yet: python -m devmode bench run FILE")


@bench.command("compare")
@click.argument("before")
@click.argument("after", type=int)
@json_option("Print the comparison as JSON.")
@click.pass_context
def compare_command(ctx, before, after, as_json):
    """What changed from run BEFORE (an id or a JSON report) to run AFTER."""
    with clitools.db(ctx) as db:
        diff = reports.compare(reports.load_baseline(db, before), reports.run_report(db, after))
    if as_json:
        click.echo(reports.as_json(diff))
        return
    click.echo(reports.diff_text(diff))
    for change in diff["regressions"]:
        click.echo(
            f"  regressed {change['cell']}: {reports.fall_text(change)}, now {change['why']}"
        )
    for change in diff["fixes"]:
        click.echo(f"  fixed {change['cell']}")
    if diff["flaky"]:
        click.echo(reports.flaky_text(diff))
    for line in diff["variants"]:
        click.echo(
            f"  {line['variant']}: pass rate {_pct(line['pass_rate_before'])} -> "
            f"{_pct(line['pass_rate_after'])}, median {_num(line['median_total_s_before'])} -> "
            f"{_num(line['median_total_s_after'])} s, tokens "
            f"{_num(line['median_completion_tokens_before'])} -> "
            f"{_num(line['median_completion_tokens_after'])}"
        )


def _write(text: str, output: str | None) -> None:
    """To the file ``output``, or to stdout."""
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"Wrote {output}.")
    else:
        click.echo(text, nl=False)


def _pct(value) -> str:
    return "-" if value is None else f"{value:.0%}"


def _num(value) -> str:
    return "-" if value is None else f"{value:.2f}"


@bench.command("report")
@click.argument("run_id", type=int)
@click.option("--format", "kind", type=click.Choice(sorted(reports.RENDERERS)), default="json")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here, not stdout.")
@click.pass_context
def report_command(ctx, run_id, kind, output):
    """Run RUN_ID's report as JSON, CSV (a line per reply) or a self-contained HTML page."""
    with clitools.db(ctx) as db:
        report = reports.run_report(db, run_id)
    _write(reports.RENDERERS[kind](report), output)


@bench.command("cancel")
@click.argument("run_id", type=int)
@click.pass_context
def cancel_command(ctx, run_id):
    """Stop suite run RUN_ID after its current reply; the replies checked so far are kept."""
    with clitools.db(ctx) as db:
        runner.request_cancel(db, run_id)
    click.echo(f"Asked suite run {run_id} to stop.")


@bench.command("resume")
@click.argument("run_id", type=int)
@click.pass_context
def resume_command(ctx, run_id):
    """Go on with a cancelled, interrupted or failed suite run, in this terminal."""
    run = runner.execute_run(
        clitools.db_path(ctx),
        run_id,
        on_result=lambda row, done, total: click.echo(
            f"  [{done}/{total}] {row['cell']}", err=True
        ),
    )
    click.echo(run.label())


def register_commands(cli: click.Group) -> None:
    """Add these commands to the root group."""
    cli.add_command(bench)
