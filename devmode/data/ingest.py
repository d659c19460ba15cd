"""Datasets: uploads stored as SQLite tables, with column roles and a stored, seeded split.

    $ python -m devmode ingest sentences_allagree.csv --name phrasebank

    upload = readers.read_upload("sentences_allagree.csv")
    mapping = suggestions.suggest_mapping(upload.columns, upload.preview(200))
    dataset = insert_upload(db, upload, "phrasebank", mapping)

A dataset named ``phrasebank`` is the table ``phrasebank`` (the file's columns as they were, plus
``devmode_split``) and a row in ``devmode_datasets`` (source, hash, column roles, split seed).
Every write is one transaction: a bad file, a crash or a kill leaves the database as it was.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from sqlite_utils import Database
from sqlite_utils.db import quote_identifier

from devmode.data.splits import SPLIT_COLUMN, SPLITS, SplitSpec, assign_split, is_filled
from devmode.data.uploads import InvalidUpload, Upload
from devmode.db import TABLE_PREFIX, utc_now
from devmode.errors import DevmodeError
from devmode.schema import DERIVED_FROM_DATASET

ROLES = ("text", "label", "date", "ticker")
# Dataset names are table names: a letter, then letters, digits and underscores.
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
# Names SQLite or devmode keep for themselves.
RESERVED_PREFIXES = (TABLE_PREFIX, "sqlite_", "_")
# Rows per INSERT batch: large enough to amortise Python overhead, small enough to bound memory.
DEFAULT_BATCH_SIZE = 5000


class InvalidDatasetName(DevmodeError):
    """The name cannot be used as a dataset (table) name."""


class DatasetExists(DevmodeError):
    """A dataset or table of that name is already in the database."""


class NoSuchDataset(DevmodeError):
    """No dataset has that name."""


class InvalidMapping(DevmodeError):
    """The column roles do not fit the data: a missing column, or a role with nothing in it."""


# ----------------------------------------------------------------------------------------------
# Value objects


@dataclass(frozen=True)
class ColumnMapping:
    """Which of a dataset's columns plays which role. Only ``text`` is required."""

    text: str | None = None
    label: str | None = None
    date: str | None = None
    ticker: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


@dataclass(frozen=True)
class Dataset:
    """A stored dataset's record in ``devmode_datasets``."""

    id: int
    name: str
    source: str
    format: str
    encoding: str | None
    delimiter: str | None
    size_bytes: int
    sha256: str
    row_count: int
    columns: list[str]
    mapping: ColumnMapping
    split: SplitSpec
    created_at: str
    updated_at: str
    label_version: int = 0  # goes up with every accepted label correction (labels/corrections.py)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Dataset:
        train, validation, test = json.loads(row["split_fractions"])
        return cls(
            id=row["id"],
            name=row["name"],
            source=row["source"],
            format=row["format"],
            encoding=row["encoding"],
            delimiter=row["delimiter"],
            size_bytes=row["size_bytes"],
            sha256=row["sha256"],
            row_count=row["row_count"],
            columns=json.loads(row["columns"]),
            mapping=ColumnMapping(**{r: row[f"{r}_column"] for r in ROLES}),
            split=SplitSpec.from_stored(
                {"train": train, "validation": validation, "test": test, "seed": row["split_seed"]}
            ),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            label_version=row.get("label_version") or 0,
        )

    def describe_source(self) -> str:
        """'From a.csv · csv · uploaded 2026-11-30T09:30 UTC · sha256 3f2a…'"""
        return (
            f"From {self.source} · {self.format} · uploaded {self.created_at[:16]} UTC · "
            f"sha256 {self.sha256[:12]}…"
        )


@dataclass(frozen=True)
class DatasetStats:
    """What a person checks before training: size, gaps, duplicates and the label balance."""

    rows: int
    empty_texts: int
    duplicate_texts: int  # rows whose text already appeared in an earlier row
    blank_labels: int
    split_counts: dict[str, int]  # {'train': 1807, 'validation': 226, 'test': 226}
    label_counts: list[dict[str, Any]]  # [{'label': 'neutral', 'split': 'train', 'count': 1109}]


# ----------------------------------------------------------------------------------------------
# Names


def suggest_name(filename: str) -> str:
    """A valid dataset name from a file name: ``'Sentences AllAgree.csv'`` -> ``'sentences_allagree'``."""
    stem = re.sub(r"\.[A-Za-z0-9]+$", "", filename.rsplit("/", 1)[-1]).strip().lower()
    name = re.sub(r"[^a-z0-9_]+", "_", stem).strip("_") or "dataset"
    if not name[0].isalpha():
        name = f"data_{name}"
    if name.startswith(RESERVED_PREFIXES):
        name = f"data_{name.lstrip('_')}"
    return name[:63]


def validate_name(db: Database, name: str) -> None:
    """Raise unless ``name`` can become a new dataset's table name."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidDatasetName(
            f"{name!r} is not a valid dataset name. Expected a letter followed by up to 62 "
            "letters, digits or underscores (it becomes a table name). Try "
            f"{suggest_name(str(name or 'dataset'))!r}."
        )
    if name.lower().startswith(RESERVED_PREFIXES):
        raise InvalidDatasetName(
            f"{name!r} starts with {name[: name.find('_') + 1]!r}, which is reserved for devmode's "
            "and SQLite's own tables. Pick a name that does not."
        )
    if "devmode_price_sets" in db.table_names() and db["devmode_price_sets"].count_where(
        "lower(name) = lower(?)", [name]
    ):  # prices datasets share the datasets' names (data/prices.py)
        raise DatasetExists(
            f"A prices dataset {name!r} already exists, and names ignore case. Pick another "
            f"name, or drop it first (python -m devmode datasets drop {name})."
        )
    clash = next((t for t in db.table_names() if t.lower() == name.lower()), None)
    if clash:
        existing = _dataset_row(db, clash)
        detail = (
            f"dataset {clash!r} ({existing['row_count']:,} rows from {existing['source']}, "
            f"uploaded {existing['created_at'][:16].replace('T', ' ')})"
            if existing
            else f"table {clash!r}"
        )
        raise DatasetExists(
            f"A {detail} already exists, and names ignore case. Pick another name, or drop it "
            f"first (python -m devmode datasets drop {clash})."
        )


def validate_mapping(columns: list[str], mapping: ColumnMapping) -> None:
    """Raise ``InvalidMapping`` if a role names a missing column, two roles share one, or no text."""
    if not mapping.text:
        raise InvalidMapping(
            f"No text column is mapped. Expected one of the columns ({', '.join(columns)}) to "
            "hold the text. Pick it as the text column (or pass --text-column)."
        )
    missing = {r: c for r, c in mapping.to_dict().items() if c and c not in columns}
    if missing:
        described = ", ".join(f"{role} column {col!r}" for role, col in missing.items())
        raise InvalidMapping(
            f"The {described} {'is' if len(missing) == 1 else 'are'} not in the data. Columns are "
            f"{columns}. Pick one of those (or pass --{next(iter(missing))}-column)."
        )
    used = [c for c in mapping.to_dict().values() if c]
    if len(used) != len(set(used)):
        raise InvalidMapping(
            f"One column is mapped to two roles ({mapping.to_dict()}). Expected a different "
            "column for each role; leave a role empty if the data has no column for it."
        )


# ----------------------------------------------------------------------------------------------
# Writing


def insert_upload(
    db: Database,
    upload: Upload,
    name: str,
    mapping: ColumnMapping,
    split: SplitSpec | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Callable[[int, float], None] | None = None,
) -> Dataset:
    """Stream ``upload`` into a new table ``name``, record it, and split it; all or nothing.

    Rows are inserted ``batch_size`` at a time, so memory stays bounded for any file size;
    ``on_progress(rows_done, fraction_done)`` is called after each batch. Everything happens in
    one transaction: if the file turns out to be bad on its millionth row, nothing is kept.

    :raises InvalidDatasetName, DatasetExists, InvalidMapping, readers.InvalidUpload:
    """
    split = split or SplitSpec()
    validate_mapping(upload.columns, mapping)
    now = utc_now()
    table = db[name]
    total = 0
    with db.atomic():  # the name is checked under the write lock: two uploads cannot both take it
        validate_name(db, name)
        for rows, fraction in upload.batches(batch_size):
            _refuse_nul(rows, total, upload.source)
            # alter=True: a JSONL line further down may bring a new key
            table.insert_all(rows, batch_size=batch_size, alter=True)
            total += len(rows)
            if on_progress:
                on_progress(total, fraction)
        columns = [c.name for c in table.columns]
        table.add_column(SPLIT_COLUMN, str)
        _check_roles_have_values(db, name, mapping)
        db["devmode_datasets"].insert(
            {
                "name": name,
                "source": upload.source,
                "format": upload.format,
                "encoding": upload.encoding,
                "delimiter": upload.delimiter,
                "size_bytes": upload.size_bytes,
                "sha256": upload.sha256,
                "row_count": total,
                "columns": json.dumps(columns),
                **{f"{role}_column": col for role, col in mapping.to_dict().items()},
                "split_seed": split.seed,
                "split_fractions": json.dumps(split.fractions),
                "created_at": now,
                "updated_at": now,
            }
        )
        assign_split(db, name, mapping.label, split)
    return get_dataset(db, name)


def create_empty(
    db: Database, name: str, columns: list[str], mapping: ColumnMapping, *, source: str, format: str
) -> Dataset:
    """A new dataset with no rows yet, that a feed or a watched folder appends to."""
    validate_mapping(columns, mapping)
    now = utc_now()
    with db.atomic():
        validate_name(db, name)
        db[name].create({column: str for column in [*columns, SPLIT_COLUMN]})
        split = SplitSpec()
        db["devmode_datasets"].insert(
            {
                "name": name,
                "source": source,
                "format": format,
                "size_bytes": 0,
                "sha256": hashlib.sha256(b"").hexdigest(),
                "row_count": 0,
                "columns": json.dumps(columns),
                **{f"{role}_column": col for role, col in mapping.to_dict().items()},
                "split_seed": split.seed,
                "split_fractions": json.dumps(split.fractions),
                "created_at": now,
                "updated_at": now,
            }
        )
    return get_dataset(db, name)


def append_rows(db: Database, name: str, rows: list[dict[str, Any]]) -> list[int]:
    """Append ``rows`` to a dataset (new keys become columns); returns their rowids.

    The dataset's hash moves on with what was added, so a run trained before is told the data
    changed. Appended rows get no split: they are for scoring, not for training.
    """
    with db.atomic():
        dataset = get_dataset(db, name)
        _refuse_nul(rows, dataset.row_count, dataset.source)
        table = db[dataset.name]
        ids = [table.insert(row, alter=True).last_rowid for row in rows]
        digest = hashlib.sha256(dataset.sha256.encode())
        digest.update(json.dumps(rows, default=str, sort_keys=True).encode())
        _update_record(
            db,
            dataset,
            {
                "row_count": dataset.row_count + len(rows),
                "sha256": digest.hexdigest(),
                "columns": json.dumps([c.name for c in table.columns if c.name != SPLIT_COLUMN]),
            },
        )
    return ids


def _refuse_nul(rows: list[dict[str, Any]], before: int, source: str) -> None:
    """A NUL character anywhere in the file (not only where the binary check looked) is refused:
    stored, it would cut the text short wherever it is read back as a C string."""
    for i, row in enumerate(rows):
        for column, value in row.items():
            if isinstance(value, str) and "\x00" in value:
                raise InvalidUpload(
                    f"{source}: row {before + i + 1:,} ({column}) holds a NUL character (byte "
                    "0x00), which text never has. Expected plain text; remove that byte, or "
                    "export the file again as UTF-8 text."
                )


def set_mapping(db: Database, name: str, mapping: ColumnMapping) -> Dataset:
    """Change a dataset's column roles; a new label column re-draws the split (same seed)."""
    with db.atomic():
        dataset = get_dataset(db, name)
        validate_mapping(dataset.columns, mapping)
        _check_roles_have_values(db, name, mapping)
        _update_record(db, dataset, {f"{r}_column": c for r, c in mapping.to_dict().items()})
        if mapping.label != dataset.mapping.label:
            assign_split(db, name, mapping.label, dataset.split)
    return get_dataset(db, name)


def resplit(db: Database, name: str, split: SplitSpec) -> Dataset:
    """Draw the train / validation / test split again with new fractions or seed.

    Runs trained on the old split keep the seed they recorded; a new split changes which rows
    later runs hold out.
    """
    with db.atomic():
        dataset = get_dataset(db, name)
        _update_record(
            db, dataset, {"split_seed": split.seed, "split_fractions": json.dumps(split.fractions)}
        )
        assign_split(db, name, dataset.mapping.label, split)
    return get_dataset(db, name)


def rename_dataset(db: Database, name: str, new_name: str) -> Dataset:
    """Rename a dataset and its table together."""
    with db.atomic():
        dataset = get_dataset(db, name)
        if new_name.lower() != dataset.name.lower() or not NAME_PATTERN.match(new_name):
            validate_name(db, new_name)  # a change of case alone is not a clash with itself
        # SQLite refuses a rename that only changes case, so go through a temporary name
        temporary = f"{TABLE_PREFIX}renaming_{dataset.id}"
        db.execute(
            f"ALTER TABLE {quote_identifier(dataset.name)} RENAME TO {quote_identifier(temporary)}"
        )
        db.execute(
            f"ALTER TABLE {quote_identifier(temporary)} RENAME TO {quote_identifier(new_name)}"
        )
        _update_record(db, dataset, {"name": new_name})
    return get_dataset(db, new_name)


def drop_dataset(db: Database, name: str) -> None:
    """Delete a dataset's rows, its record and what was worked out from them."""
    with db.atomic():
        dataset = get_dataset(db, name)
        db[dataset.name].drop()
        db["devmode_datasets"].delete(dataset.id)  # first: the rollup's triggers then skip it
        for table in DERIVED_FROM_DATASET:
            db[table].delete_where("dataset_id = ?", [dataset.id])


def _update_record(db: Database, dataset: Dataset, values: dict[str, Any]) -> None:
    db["devmode_datasets"].update(dataset.id, {**values, "updated_at": utc_now()})


def _check_roles_have_values(db: Database, name: str, mapping: ColumnMapping) -> None:
    for role in ("text", "label"):
        column = getattr(mapping, role)
        if (
            column
            and not db.execute(
                f"select 1 from {quote_identifier(name)} where {is_filled(column)} limit 1"
            ).fetchone()
        ):
            raise InvalidMapping(
                f"The {role} column {column!r} is blank in every row. Expected a {role} in at least "
                f"some rows. Pick another column as the {role}"
                + (", or leave the label empty for unlabelled data." if role == "label" else ".")
            )


# ----------------------------------------------------------------------------------------------
# Reading


def dataset_names(db: Database, *, labelled: bool = False, dated: bool = False) -> list[str]:
    """Names of the stored datasets, newest first; only those with a label (or date) column
    mapped when asked."""
    return [
        d.name
        for d in list_datasets(db)
        if (d.mapping.label or not labelled) and (d.mapping.date or not dated)
    ]


def list_datasets(db: Database) -> list[Dataset]:
    """Every dataset, newest first."""
    return [Dataset.from_row(r) for r in db["devmode_datasets"].rows_where(order_by="id desc")]


def get_dataset(db: Database, name: str) -> Dataset:
    """The dataset called ``name`` (case-insensitive), or ``NoSuchDataset`` listing what there is."""
    row = _dataset_row(db, name)
    if row is None:
        names = [d.name for d in list_datasets(db)]
        raise NoSuchDataset(
            f"No dataset called {name!r}. "
            + (f"Datasets are: {', '.join(names)}." if names else "There are no datasets yet.")
            + " Upload one on the Datasets page or with python -m devmode ingest FILE --name NAME."
        )
    return Dataset.from_row(row)


def _dataset_row(db: Database, name: str) -> dict[str, Any] | None:
    return next(db["devmode_datasets"].rows_where("lower(name) = lower(?)", [name]), None)


def preview(
    db: Database, name: str, limit: int = 20, split: str | None = None
) -> list[dict[str, Any]]:
    """The first ``limit`` rows in file order, with their split; optionally of one split only."""
    dataset = get_dataset(db, name)
    where, args = (f"{quote_identifier(SPLIT_COLUMN)} = ?", [split]) if split else (None, [])
    return list(db[dataset.name].rows_where(where, args, order_by="rowid", limit=limit))


def iter_rows(
    db: Database, name: str, split: str | None = None, columns: list[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Stream a dataset's rows in file order, optionally one split and some columns only."""
    dataset = get_dataset(db, name)
    where, args = (f"{quote_identifier(SPLIT_COLUMN)} = ?", [split]) if split else (None, [])
    select = ", ".join(quote_identifier(c) for c in columns) if columns else "*"
    yield from db[dataset.name].rows_where(where, args, select=select, order_by="rowid")


def dataset_stats(db: Database, name: str) -> DatasetStats:
    """Counts of rows, empty texts, duplicate texts, blank labels, and rows per split and label."""
    dataset = get_dataset(db, name)
    table = quote_identifier(dataset.name)
    split = quote_identifier(SPLIT_COLUMN)
    text = dataset.mapping.text
    empty = duplicates = blank = 0
    if text:
        empty, duplicates = db.execute(
            f"""select sum(not ({is_filled(text)})),
                       count({quote_identifier(text)}) - count(distinct {quote_identifier(text)})
                from {table}"""
        ).fetchone()
    label = dataset.mapping.label
    if label:
        blank = db.execute(
            f"select count(*) from {table} where not ({is_filled(label)})"
        ).fetchone()[0]
        label_counts = [
            {"label": str(lab), "split": s, "count": n}
            for lab, s, n in db.execute(
                f"""select {quote_identifier(label)}, {split}, count(*) from {table}
                    where {is_filled(label)} group by 1, 2 order by 1, 2"""
            )
        ]
    else:
        label_counts = []
    split_counts = dict.fromkeys(SPLITS, 0)
    for s, n in db.execute(
        f"select {split}, count(*) from {table} where {split} is not null group by 1"
    ):
        split_counts[s] = n
    return DatasetStats(
        rows=dataset.row_count,
        empty_texts=empty or 0,
        duplicate_texts=duplicates or 0,
        blank_labels=blank,
        split_counts=split_counts,
        label_counts=label_counts,
    )
