"""The labelled examples a run trains on, and the checks they must pass before any model loads.

    data = load_examples(db, "phrasebank")   # train / validation / test from the stored split
    check_data(data)                         # InvalidTrainingData with what to do, or nothing

Free of torch, so the pages and the CLI can refuse bad data at once, before a run is created.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from devmode.errors import DevmodeError

# A class needs this many labelled rows in all to appear in train, validation and test.
MIN_ROWS_PER_CLASS = 3


class InvalidTrainingData(DevmodeError):
    """The data cannot train a classifier: too few classes or rows, blanks, unseen labels."""


@dataclass(frozen=True)
class TrainData:
    """Texts and labels of the three splits; ``labels`` fixes the class order (sorted names)."""

    train: list[tuple[str, str]]
    validation: list[tuple[str, str]]
    test: list[tuple[str, str]]
    labels: list[str] = field(default_factory=list)

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[dict[str, Any]],
        *,
        text_column: str = "text",
        label_column: str = "label",
        split_column: str = "split",
    ) -> TrainData:
        """Group rows by their split ('train' / 'validation' / 'test'); other rows are ignored."""
        splits: dict[str, list[tuple[str, str]]] = {"train": [], "validation": [], "test": []}
        for row in rows:
            if row.get(split_column) in splits:
                text, label = row.get(text_column), row.get(label_column)
                splits[row[split_column]].append(
                    (text if text is None else str(text), label if label is None else str(label))
                )
        return cls(**splits, labels=sorted({label for _, label in splits["train"] if label}))


def is_blank(text: str | None) -> bool:
    """Nothing a model could read: empty, white space, or only invisible characters such as
    zero-width spaces and joiners and byte-order marks (Unicode's format characters)."""
    return not text or all(ch.isspace() or unicodedata.category(ch) == "Cf" for ch in text)


def check_data(data: TrainData) -> None:
    """Refuse data that cannot train or be judged, before any model is loaded."""
    for split in ("train", "validation", "test"):
        examples = getattr(data, split)
        blank = [i for i, (text, label) in enumerate(examples) if is_blank(text)]
        if blank:
            raise InvalidTrainingData(
                f"{len(blank)} {split} rows have a blank text (empty, spaces, or only invisible "
                "characters such as zero-width spaces). Expected text in every labelled "
                "row. Fill or delete those rows in the file and upload it again, or map another "
                "text column on the Datasets page."
            )
        unlabelled = sum(1 for _, label in examples if not (label or "").strip())
        if unlabelled:
            raise InvalidTrainingData(
                f"{unlabelled} {split} rows have a blank label; expected every split row to be "
                "labelled. Split the dataset again on the Datasets page."
            )
    counts = Counter(label for _, label in data.train + data.validation + data.test)
    _refuse_label_variants(counts)
    if len(data.labels) < 2:
        raise InvalidTrainingData(
            f"The training split has {len(data.labels)} class{'es' if len(data.labels) != 1 else ''} "
            f"({', '.join(data.labels) or 'none'}); a classifier needs at least two. Map a label "
            "column with two or more values on the Datasets page."
        )
    small = {label: n for label, n in counts.items() if n < MIN_ROWS_PER_CLASS}
    if small:
        shown = ", ".join(f"{label!r} ({n})" for label, n in sorted(small.items()))
        raise InvalidTrainingData(
            f"These classes have fewer than {MIN_ROWS_PER_CLASS} rows, too few to appear in "
            f"train, validation and test: {shown}. Add examples, merge them into another class, "
            "or drop those rows, and upload again."
        )
    for split in ("validation", "test"):
        unseen = sorted({label for _, label in getattr(data, split)} - set(data.labels))
        if unseen:
            raise InvalidTrainingData(
                f"The {split} split has labels the training split never shows: {unseen}. The "
                "model could never predict them. Split the dataset again (the split is drawn "
                "within each label) or add training examples of those classes."
            )
    if not data.validation or not data.test:
        raise InvalidTrainingData(
            f"The split has {len(data.validation)} validation and {len(data.test)} test rows; "
            "both are needed (validation picks the best epoch, test gives the honest score). "
            "Split the dataset again with non-zero validation and test fractions."
        )


def _refuse_label_variants(counts: Counter) -> None:
    """Labels that differ only in case or surrounding spaces ('positive', 'Positive',
    'positive ') would train as separate classes, without anyone having meant them to."""
    spellings: dict[str, list[str]] = {}
    for label in counts:
        spellings.setdefault(label.strip().casefold(), []).append(label)
    variants = [
        sorted(group, key=lambda x: -counts[x]) for group in spellings.values() if len(group) > 1
    ]
    if variants:
        shown = "; ".join(
            " / ".join(f"{label!r} ({counts[label]:,} rows)" for label in group)
            for group in variants
        )
        raise InvalidTrainingData(
            f"Some labels differ only in case or surrounding spaces, so they would train as "
            f"separate classes: {shown}. Expected one spelling per class. Write each class one "
            "way in the file's label column and upload it again."
        )


def load_examples(db, dataset_name: str) -> TrainData:
    """A stored dataset's labelled rows, grouped by its stored split."""
    from devmode.data import ingest, splits

    dataset = ingest.get_dataset(db, dataset_name)
    mapping = dataset.mapping
    if not mapping.label:
        raise InvalidTrainingData(
            f"Dataset {dataset.name!r} has no label column, so there is nothing to learn. Map its "
            "label column on the Datasets page (or python -m devmode datasets map NAME "
            "--label-column COLUMN) first."
        )
    rows = ingest.iter_rows(
        db, dataset.name, columns=[mapping.text, mapping.label, splits.SPLIT_COLUMN]
    )
    return TrainData.from_rows(
        list(rows),
        text_column=mapping.text,
        label_column=mapping.label,
        split_column=splits.SPLIT_COLUMN,
    )


def labelled_rows(db, dataset_name: str) -> list[tuple[int, str, str]]:
    """(rowid, text, label) of every row of a stored dataset with a text and a label, in file
    order (what a label review judges, and where a correction is written back)."""
    from sqlite_utils.db import quote_identifier

    from devmode.data import ingest

    dataset = ingest.get_dataset(db, dataset_name)
    text, label = dataset.mapping.text, dataset.mapping.label
    if not (text and label):
        role = "label" if text else "text"
        raise InvalidTrainingData(
            f"Dataset {dataset.name!r} has no {role} column, so it has no labelled texts. Map one "
            f"with: python -m devmode datasets map {dataset.name} --{role}-column COLUMN"
        )
    rows = db.execute(
        f"select rowid, {quote_identifier(text)}, {quote_identifier(label)} "
        f"from {quote_identifier(dataset.name)} order by rowid"
    )
    return [
        (row_id, str(t), str(lab).strip())
        for row_id, t, lab in rows
        if not is_blank(None if t is None else str(t))
        and not is_blank(None if lab is None else str(lab))
    ]
