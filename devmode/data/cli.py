"""``python -m devmode ingest | datasets``: storing files as datasets, and looking after them.

$ python -m devmode ingest ../shared/data/financial_phrasebank/sentences_allagree.csv --name phrasebank
$ python -m devmode datasets show phrasebank
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from devmode import clitools
from devmode.clitools import echo_json, group, json_option, option, yes_option
from devmode.data import ingest, prices, readers, splits, suggestions, uploads


def _role_options(fn):
    for role in reversed(ingest.ROLES):
        fn = click.option(
            f"--{role}-column", help=f"Column holding the {role} (default: suggested)."
        )(fn)
    return fn


def _split_options(fn):
    fn = option(splits.SplitSpec.spec("seed"))(fn)
    return click.option(
        "--split",
        "split_fractions",
        default=splits.SplitSpec().fractions_text,
        show_default=True,
        help="Train,validation,test fractions, drawn within each label.",
    )(fn)


def _mapping(base: ingest.ColumnMapping, no_label: bool, **columns) -> ingest.ColumnMapping:
    """``base`` with the roles given on the command line put over it."""
    chosen = {role: columns[f"{role}_column"] or getattr(base, role) for role in ingest.ROLES}
    return ingest.ColumnMapping(**{**chosen, "label": None if no_label else chosen["label"]})


@click.command("ingest")
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
@click.option(
    "--prices",
    "as_prices",
    is_flag=True,
    help="A prices file: a date and closes, long (date, ticker, close) or wide (a column per "
    "ticker); no text column. Set against sentiment by the Monitor and alerts backtest.",
)
@click.option("--price-column", help="With --prices: the column of closes in a long file.")
@click.option("--hf-config", help="With hf:ID, the dataset's configuration name.")
@click.option(
    "--hf-split", default="train", show_default=True, help="With hf:ID, which split to take."
)
@click.pass_context
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
    as_prices,
    price_column,
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
    if as_prices or price_column:
        _ingest_prices(ctx, upload, name or ingest.suggest_name(default_name), locals())
        return
    suggested = suggestions.suggest_mapping(upload.columns, upload.preview(200))
    mapping = _mapping(
        suggested,
        no_label,
        text_column=text_column,
        label_column=label_column,
        date_column=date_column,
        ticker_column=ticker_column,
    )
    split = splits.SplitSpec.from_text(split_fractions, seed)
    name = name or ingest.suggest_name(default_name)
    click.echo(
        f"Reading {upload.source}: {upload.format}"
        + (f", {upload.encoding}" if upload.encoding else "")
        + f", columns {', '.join(upload.columns)}",
        err=True,
    )
    with (
        clitools.db(ctx) as db,
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


def _ingest_prices(ctx, upload: uploads.Upload, name: str, given: dict) -> None:
    """``ingest --prices``: store the file as a prices dataset."""
    if not given["as_prices"]:
        raise click.UsageError("--price-column is for a prices file: add --prices.")
    wrong = [f"--{r}-column" for r in ("text", "label") if given[f"{r}_column"]]
    if wrong:
        raise click.UsageError(
            f"A prices file has no {' or '.join(wrong)}: it holds a date, closes and maybe a "
            "ticker. Drop those options."
        )
    with clitools.db(ctx) as db:
        stored = prices.store_prices(
            db,
            upload,
            name,
            date_column=given["date_column"],
            ticker_column=given["ticker_column"],
            price_column=given["price_column"],
        )
        unmatched = prices.tickers_without_texts(db, stored)
    click.echo(f"Stored prices dataset {stored.describe()}.")
    for note in stored.notes:
        click.echo(f"  note: {note}")
    if unmatched:
        click.echo(
            f"  note: no scored text is about {', '.join(unmatched[:10])}"
            + (f" and {len(unmatched) - 10} more" if len(unmatched) > 10 else "")
            + " yet; their prices are kept and show once texts about them are scored."
        )


@group()
def datasets():
    """List, inspect, re-map, re-split, rename and drop stored datasets."""


@datasets.command("list")
@json_option()
@click.pass_context
def datasets_list(ctx, as_json):
    """List datasets, newest first."""
    with clitools.db(ctx) as db:
        found = ingest.list_datasets(db)
        price_sets = prices.list_price_sets(db)
    if as_json:
        echo_json([_dataset_dict(d) for d in found] + [p.to_dict() for p in price_sets])
        return
    if not found and not price_sets:
        click.echo("No datasets yet. Add one with: python -m devmode ingest FILE --name NAME")
        return
    click.echo(f"{'name':<28} {'rows':>10}  {'text':<14} {'label':<14} source")
    for d in found:
        click.echo(
            f"{d.name:<28} {d.row_count:>10,}  {d.mapping.text or '-':<14} "
            f"{d.mapping.label or '-':<14} {d.source}"
        )
    for p in price_sets:
        click.echo(f"{p.name:<28} {p.row_count:>10,}  {'(prices)':<14} {'-':<14} {p.source}")


@datasets.command("show")
@click.argument("name")
@click.option("--rows", "n_rows", default=5, show_default=True, help="How many rows to preview.")
@click.pass_context
def datasets_show(ctx, name, n_rows):
    """Show a dataset's columns, roles, split, label counts and first rows."""
    with clitools.db(ctx) as db:
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
def datasets_map(ctx, name, text_column, label_column, date_column, ticker_column, no_label):
    """Change which column is the text, label, date or ticker (a new label re-draws the split)."""
    with clitools.db(ctx) as db:
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
def datasets_split(ctx, name, split_fractions, seed):
    """Draw the train / validation / test split again with other fractions or seed."""
    split = splits.SplitSpec.from_text(split_fractions, seed)
    with clitools.db(ctx) as db:
        dataset = ingest.resplit(db, name, split)
        stats = ingest.dataset_stats(db, name)
    _echo_dataset(dataset, stats)


@datasets.command("rename")
@click.argument("name")
@click.argument("new_name")
@click.pass_context
def datasets_rename(ctx, name, new_name):
    """Rename a dataset."""
    with clitools.db(ctx) as db:
        dataset = ingest.rename_dataset(db, name, new_name)
    click.echo(f"Renamed {name!r} to {dataset.name!r}.")


@datasets.command("drop")
@click.argument("name")
@yes_option
@click.pass_context
def datasets_drop(ctx, name, yes):
    """Delete a dataset and its rows (a prices dataset and its closes)."""
    with clitools.db(ctx) as db:
        price_set = prices.find_price_set(db, name)
        if price_set is not None:
            if not yes:
                click.confirm(
                    f"Delete prices dataset {price_set.name!r} ({price_set.row_count:,} closes)?",
                    abort=True,
                )
            prices.drop_price_set(db, price_set.name)
            click.echo(f"Dropped prices dataset {price_set.name!r}.")
            return
        dataset = ingest.get_dataset(db, name)
        if not yes:
            click.confirm(
                f"Delete dataset {dataset.name!r} ({dataset.row_count:,} rows)?", abort=True
            )
        ingest.drop_dataset(db, dataset.name)
    click.echo(f"Dropped dataset {dataset.name!r}.")


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
        + " / ".join(f"{s} {stats.split_counts[s]:,}" for s in splits.SPLITS)
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


def register_commands(cli: click.Group) -> None:
    """Add these commands to the root group."""
    cli.add_command(ingest_command)
    cli.add_command(datasets)
