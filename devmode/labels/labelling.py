"""Labelling in the browser: the rows without a label, the ones the current model is least sure
about first (active learning), and the labels a person types, saved with their history.

    rows = rows_to_label(db, "wire")          # [{row_id, text, suggested, confidence, uncertainty}]
    save_labels(db, "wire", {12: "positive", 40: "negative"})   # version + 1, history kept

The current model is the newest one trained on the dataset. Uncertainty is one minus the margin
between its two likeliest classes (margin sampling): 1 when it cannot tell two classes apart, 0
when it is sure. The table starts with a batch of unsure rows that are unlike each other and
shared out between the classes the model predicts (``labelling_order``): margin alone fills a
batch with near-copies of one hard case, mostly of the commonest class, and in
``benchmarks/active_learning.py`` it trailed random rows; the balanced, diverse batch beat them
in every round. A saved label is written to the dataset's own table, with a line in
``devmode_label_history`` per row (old label, new label, when), and the dataset's label version
goes up by one, all in one transaction; when two people label the same row the later save wins
and both are in the history. A newly labelled row joins the training split, so the test rows
stay the ones the previous run was scored on and the next run's gain is measured on them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from sqlite_utils import Database
from sqlite_utils.db import quote_identifier

from devmode.data import examples, ingest, splits
from devmode.errors import DevmodeError
from devmode.labels.corrections import LabelChange, write_label_changes
from devmode.models import registry

# A labelling session ranks at most this many unlabelled rows (a seeded sample of them when
# there are more): scoring them takes a few seconds on a CPU.
POOL = 2000
EDIT = "edit"
# The first rows of the table are a batch of the least-sure rows that differ from each other:
# BATCH of them, drawn from the BATCH x CANDIDATES least sure (diverse mini-batch active
# learning, Zhdanov 2019: margin alone picks near-copies of one hard case), shared out between
# the predicted classes.
BATCH = 30
CANDIDATES = 10


class LabelRefused(DevmodeError):
    """A label that cannot be saved: blank, a class the dataset does not have, an unknown row."""


def uncertainty(probabilities: np.ndarray) -> np.ndarray:
    """One minus the margin between each row's two likeliest classes: higher is less sure."""
    top2 = np.sort(probabilities, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def labelling_order(
    unsure: np.ndarray,
    vectors: Callable[[np.ndarray], np.ndarray],
    *,
    predicted: np.ndarray | None = None,
    batch: int = BATCH,
    seed: int = 0,
) -> np.ndarray:
    """Positions of rows in the order to label them, from their ``uncertainty``: first ``batch``
    rows that are unsure and unlike each other, then the rest, least sure first.

    Only the ``batch x CANDIDATES`` least-sure rows are embedded (``vectors(positions)`` gives
    their sentence vectors). They are grouped by k-means into ``batch`` clusters, weighted by
    uncertainty, and the row nearest each centre is taken. With ``predicted`` (each row's
    predicted class), the batch is shared out between the classes the candidates are predicted
    as, equally where they have enough candidates, and clustered class by class."""
    from sklearn.cluster import KMeans

    order = np.argsort(-unsure, kind="stable")
    candidates = order[: batch * CANDIDATES]
    if len(candidates) <= batch:
        return order
    features = np.asarray(vectors(candidates), dtype=np.float64)
    groups = (
        [np.arange(len(candidates))]
        if predicted is None
        else [np.flatnonzero(predicted[candidates] == c) for c in np.unique(predicted[candidates])]
    )
    picked = []
    for group, quota in zip(groups, _shares(batch, [len(g) for g in groups]), strict=True):
        if not quota:
            continue
        kmeans = KMeans(quota, n_init=3, random_state=seed)
        weights = unsure[candidates[group]] + 1e-6
        distances = kmeans.fit(features[group], sample_weight=weights).transform(features[group])
        for cluster in range(quota):
            members = np.flatnonzero(kmeans.labels_ == cluster)
            if len(members):
                nearest = members[distances[members, cluster].argmin()]
                picked.append(candidates[group[nearest]])
    picked = sorted(picked, key=lambda i: -unsure[i])
    chosen = set(picked)
    return np.array(picked + [i for i in order if i not in chosen], dtype=np.int64)


def _shares(total: int, sizes: list[int]) -> list[int]:
    """``total`` shared out as equally as ``sizes`` allow (no share above its size)."""
    shares = [0] * len(sizes)
    left = total
    while left and any(shares[i] < sizes[i] for i in range(len(sizes))):
        for i in range(len(sizes)):
            if left and shares[i] < sizes[i]:
                shares[i] += 1
                left -= 1
    return shares


def current_model(db: Database, name: str) -> registry.Model | None:
    """The model whose suggestions are shown: the newest one trained on dataset ``name``."""
    return registry.latest_model(db, name)


def classes(db: Database, name: str) -> list[str]:
    """The labels the dataset's rows carry, sorted."""
    return sorted({label for _, _, label in examples.labelled_rows(db, name)})


def unlabelled_rows(db: Database, name: str) -> list[tuple[int, str]]:
    """(rowid, text) of every row with a text and a blank label, in file order."""
    dataset = ingest.get_dataset(db, name)
    text = quote_identifier(dataset.mapping.text)
    label = f"r.{quote_identifier(dataset.mapping.label)}" if dataset.mapping.label else "null"
    cursor = db.execute(
        f"select rowid, {text}, {label} from {quote_identifier(dataset.name)} r order by rowid"
    )
    return [
        (row_id, str(t))
        for row_id, t, lab in cursor
        if not examples.is_blank(None if t is None else str(t))
        and examples.is_blank(None if lab is None else str(lab))
    ]


def rows_to_label(
    db: Database,
    name: str,
    *,
    limit: int | None = None,
    seed: int = 0,
    load_scorer: Callable[[str], Any] | None = None,
    vectors: Callable[[list[str]], np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """The dataset's unlabelled rows with the current model's suggestion, in the order to label
    them (``labelling_order``: a batch of unsure rows unlike each other, then the rest least sure
    first); in file order, without suggestions, when no model has been trained on it yet.

    :param vectors: sentence vectors of texts (default: the model's base encoder, frozen)
    """
    rows = unlabelled_rows(db, name)
    if len(rows) > POOL:
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), POOL, replace=False))
        rows = [rows[i] for i in keep]
    model = current_model(db, name)
    found = [
        {
            "row_id": r,
            "text": t,
            "suggested": None,
            "confidence": None,
            "uncertainty": None,
            "label": None,  # what the person says: the suggestion until they change it
        }
        for r, t in rows
    ]
    if model is not None and rows:
        if load_scorer is None:
            from devmode.models.scorers import load_scorer
        scores = load_scorer(model.path).score([t for _, t in rows])
        unsure = uncertainty(scores.probabilities)
        for row, label, p, u in zip(
            found, scores.labels, scores.probabilities, unsure, strict=True
        ):
            row.update(
                suggested=label, confidence=float(p.max()), uncertainty=float(u), label=label
            )
        if vectors is None:
            from devmode.models.classifier import base_vectors

            vectors = base_vectors(_base_model(db, model))
        order = labelling_order(
            unsure,
            lambda positions: vectors([found[i]["text"] for i in positions]),
            predicted=scores.probabilities.argmax(1),
            seed=seed,
        )
        found = [found[i] for i in order]
    return found[:limit]


def _base_model(db: Database, model: registry.Model) -> str:
    """The encoder the model was fine-tuned from (the default one for an imported model whose
    run does not say)."""
    from devmode.models import runs
    from devmode.models.config import TrainConfig

    try:
        from devmode.models import adapted_bases

        return adapted_bases.encoder_of(db, runs.get_run(db, model.run_id).config.base_model)
    except DevmodeError:
        return TrainConfig().base_model


def drop_labelled(
    db: Database, name: str, rows: list[dict[str, Any]], limit: int | None = None
) -> list[dict[str, Any]]:
    """``rows`` (from ``rows_to_label``) less those labelled since, at most ``limit`` of them,
    as the rows of the labelling table (its ``keep`` box unticked)."""
    still = {row_id for row_id, _ in unlabelled_rows(db, name)}
    return [{"keep": False, **row} for row in rows if row["row_id"] in still][:limit]


def save_labels(
    db: Database, name: str, labels: Mapping[int, str], *, allow_new_classes: bool = False
) -> int:
    """Write ``labels`` (rowid -> label) to dataset ``name``, all or none, with their history.
    Returns the dataset's label version afterwards (unchanged when nothing changed)."""
    with db.atomic():
        dataset = ingest.get_dataset(db, name)
        if not dataset.mapping.label:
            raise LabelRefused(
                f"Dataset {dataset.name!r} has no label column to write to. Map one first: "
                f"python -m devmode datasets map {dataset.name} --label-column COLUMN (add an "
                "empty column to the file if it has none)."
            )
        known = classes(db, dataset.name)
        cleaned = {
            int(row_id): _checked(label, known, allow_new_classes, row_id)
            for row_id, label in labels.items()
        }
        table = quote_identifier(dataset.name)
        column = quote_identifier(dataset.mapping.label)
        split = quote_identifier(splits.SPLIT_COLUMN)
        current = (
            {
                row_id: (old, where)
                for row_id, old, where in db.execute(
                    f"select rowid, {column}, {split} from {table} where rowid in "
                    f"({','.join('?' * len(cleaned))})",
                    list(cleaned),
                )
            }
            if cleaned
            else {}
        )
        missing = sorted(set(cleaned) - set(current))
        if missing:
            raise LabelRefused(
                f"Dataset {dataset.name} has no row{'s' * (len(missing) > 1)} "
                f"{', '.join(map(str, missing))}; expected row ids from its table of rows to "
                "label (reload it: the rows may have been deleted). Nothing was saved."
            )
        changed = {
            row_id: label
            for row_id, label in cleaned.items()
            if (current[row_id][0] or "").strip() != label
        }
        if not changed:
            return dataset.label_version
        version = write_label_changes(
            db,
            dataset,
            [
                LabelChange(row_id, current[row_id][0], label, split=current[row_id][1] or "train")
                for row_id, label in changed.items()
            ],
            source=EDIT,
        )
        if not _has_held_out_rows(db, dataset.name):
            # the first labels of an unlabelled dataset: draw validation and test from them
            ingest.resplit(db, dataset.name, dataset.split)
    return version


def edited_labels(rows: list[dict[str, Any]], edited: dict[int, dict[str, Any]]) -> dict[int, str]:
    """The labels to save from a table of ``rows_to_label`` a person edited: ``edited`` is
    Streamlit's ``edited_rows`` (position -> changed cells). A row counts once its ``label`` is
    typed or its ``keep`` box (the suggestion is right) is ticked."""
    chosen = {}
    for position, change in edited.items():
        row = rows[int(position)]
        label = change.get("label", row.get("label"))
        if "label" in change or change.get("keep"):
            chosen[row["row_id"]] = label
    return chosen


def retrain(db_path: str | Path, name: str):
    """Start a run on ``name`` with the settings of its latest run (the defaults for a first
    one): *Retrain with my labels*. Its report shows the gain over the previous model."""
    from devmode.db import open_db
    from devmode.finetune import worker
    from devmode.models import runs
    from devmode.models.config import TrainConfig

    with open_db(db_path) as db:
        earlier = runs.list_runs(db, name)
    config = earlier[0].config if earlier else TrainConfig()
    return worker.start_run(db_path, name, config)


def _checked(label: str | None, known: list[str], allow_new: bool, row_id: int) -> str:
    """The label as stored: stripped, in the spelling of the class it names."""
    value = (label or "").strip()
    if examples.is_blank(value):
        raise LabelRefused(
            f"Row {row_id} was given a blank label; expected one of {', '.join(known) or 'the classes'}. "
            "Type a class, or leave the row out of the save to keep it unlabelled. Nothing was saved."
        )
    spelled = {k.casefold(): k for k in known}
    if value.casefold() in spelled:
        return spelled[value.casefold()]
    if known and not allow_new:
        raise LabelRefused(
            f"Row {row_id} was given {value!r}, which is not one of the dataset's classes "
            f"({', '.join(known)}). Pick one of them, or allow new classes (the *New class* box, "
            "or --new-class on the CLI) if you mean to add one. Nothing was saved."
        )
    return value


def _has_held_out_rows(db: Database, name: str) -> bool:
    split = quote_identifier(splits.SPLIT_COLUMN)
    (held_out,) = db.execute(
        f"select count(distinct {split}) from {quote_identifier(name)} "
        f"where {split} in ('validation', 'test')"
    ).fetchone()
    return held_out == 2
