"""``python -m devmode review-labels | label``: finding labels that look wrong, and labelling the
rows the model is least sure of.

    $ python -m devmode review-labels phrasebank
    $ python -m devmode label headlines --set 12=positive
"""

from __future__ import annotations

import click

from devmode import clitools
from devmode.clitools import echo_json, json_option, setting_options
from devmode.labels import corrections, labelling, review
from devmode.models import config


@click.command("review-labels")
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
@setting_options(config.TrainConfig, only={"base_model"})
@json_option("Print the suggestions as JSON.")
@click.pass_context
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
    with clitools.db(ctx) as db:
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
        echo_json(found)
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


@click.command("label")
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
@json_option("Print the rows to label as JSON.")
@click.pass_context
def label_command(ctx, name, assignments, new_class, limit, as_json):
    """List the unlabelled rows of dataset NAME the current model is least sure of, with its
    suggestion, or save labels: label NAME --set 12=positive --set 40=negative."""
    with clitools.db(ctx) as db:
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
        echo_json(found)
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


def register_commands(cli: click.Group) -> None:
    """Add these commands to the root group."""
    cli.add_command(review_labels)
    cli.add_command(label_command)
