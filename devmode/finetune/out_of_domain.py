"""Test a trained model on another labelled dataset: how it holds up on text unlike its training
set, side by side with its own test split, and how far apart the two sets of texts are.

    label_map = parse_label_map(["Bearish=negative", "Bullish=positive"])
    add_test(db, run_id=3, dataset="tweets", label_map=label_map)   # stored with the run
    tests_for_run(db, 3)                      # what the report shows beside the in-domain line

Every class of the other dataset must name one of the model's classes, by the same name or
through the label map; a class left unmapped is refused with the classes it could map to. The
drift figure is the cosine distance between the two sets' mean sentence embeddings under the
run's base model (0 for the same kind of text; topics far apart reach 0.3 and more).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sqlite_utils import Database

from devmode.data import examples, ingest
from devmode.db import utc_now
from devmode.errors import DevmodeError
from devmode.finetune.drift_table import DRIFT_TABLE
from devmode.models import adapted_bases, registry, runs

TABLE = "devmode_out_of_domain"
# Texts drawn (seeded) from each set for its mean embedding: the mean of 512 unit vectors moves
# by well under 0.01 between draws.
EMBEDDING_SAMPLE = 512
# The drift figure is kept (``devmode_drift``) and measured again once the dataset has grown
# past this factor of its size then: embedding the texts takes seconds (9.5 s for a fresh
# server's first Monitor page on 2 cores), and a few more rows barely move a mean of 512.
DRIFT_GROWTH = 1.1


class LabelMapRefused(DevmodeError):
    """A label map that is malformed, names a class the model lacks, or leaves a class out."""


def parse_label_map(pairs: Sequence[str] | str) -> dict[str, str]:
    """``["Bearish=negative", ...]`` (or the same in one text, separated by commas or lines) as
    a dict; refuses anything not of the form A=B."""
    if isinstance(pairs, str):
        pairs = [p for p in pairs.replace("\n", ",").split(",") if p.strip()]
    mapping = {}
    for pair in pairs:
        source, sep, target = pair.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise LabelMapRefused(
                f"Expected each label map entry as THEIR_CLASS=MODEL_CLASS (e.g. "
                f"Bearish=negative); found {pair!r}."
            )
        mapping[source.strip()] = target.strip()
    return mapping


def resolve_label_map(
    their_classes: Sequence[str], model_classes: Sequence[str], label_map: dict[str, str]
) -> dict[str, str]:
    """Each of their classes -> a model class: the map's entry, else the same name (any case)."""
    by_fold = {c.casefold(): c for c in model_classes}
    wrong = {k: v for k, v in label_map.items() if v.casefold() not in by_fold}
    if wrong:
        raise LabelMapRefused(
            f"The label map sends {wrong} to classes the model does not have; expected one of "
            f"{', '.join(model_classes)}."
        )
    resolved, unmapped = {}, []
    for theirs in their_classes:
        target = label_map.get(theirs, theirs)
        if target.casefold() in by_fold:
            resolved[theirs] = by_fold[target.casefold()]
        else:
            unmapped.append(theirs)
    if unmapped:
        raise LabelMapRefused(
            f"These classes of the test set map to none of the model's classes "
            f"({', '.join(model_classes)}): {', '.join(unmapped)}. Map each, e.g. "
            f"{unmapped[0]}={model_classes[0]}. Nothing was stored."
        )
    return resolved


def mean_embeddings(text_sets: Sequence[Sequence[str]], base_model: str) -> list[np.ndarray]:
    """For each set of texts, the mean of its unit sentence vectors under the frozen base model
    (a seeded sample of ``EMBEDDING_SAMPLE`` of them), the model loaded once for all sets."""
    from devmode.models.classifier import base_vectors

    vectors = base_vectors(base_model)
    means = []
    for texts in text_sets:
        texts = list(texts)
        if len(texts) > EMBEDDING_SAMPLE:
            keep = np.random.default_rng(0).choice(len(texts), EMBEDDING_SAMPLE, replace=False)
            texts = [texts[i] for i in keep]
        means.append(vectors(texts).mean(0))
    return means


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine distance between two mean embeddings."""
    return float(1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def training_texts(db: Database, run: runs.Run) -> list[str]:
    return [text for text, _ in examples.load_examples(db, run.dataset).train]


def sample_texts(db: Database, dataset: str, n: int = EMBEDDING_SAMPLE) -> list[str]:
    """Up to ``n`` texts of a dataset, drawn by a seeded hash of their row ids (any size)."""
    from sqlite_utils.db import quote_identifier

    found = ingest.get_dataset(db, dataset)
    text = quote_identifier(found.mapping.text)
    rows = db.execute(
        f"select {text} from {quote_identifier(found.name)} where {text} is not null "
        f"order by devmode_shuffle_key(0, rowid) limit ?",
        [n],
    )
    return [str(t) for (t,) in rows]


def untested_warning(
    db: Database,
    model: registry.Model,
    dataset: str,
) -> str | None:
    """What the Monitor says when ``model`` scores a dataset that is neither its training set nor
    one of its out-of-domain tests: how far the texts are from its training texts, beside how
    far its own test split is (the distance a model is known to cope with)."""
    run = runs.get_run(db, model.run_id)
    if dataset == run.dataset or dataset in tests_for_run(db, run.id):
        return None
    advice = (
        f"Its scores there are untested: label a sample of {dataset} and add it as an "
        f"out-of-domain test in the run's report (Fine-tune page, or python -m devmode runs "
        f"test {run.id} {dataset} --map THEIRS=OURS)."
    )
    head = f"The active model (run {run.id}) was trained on {run.dataset} and never tested on text like {dataset}."
    try:
        own = examples.load_examples(db, run.dataset)
    except DevmodeError:  # an imported model: its training set is not stored here
        return f"{head} {advice}"
    scored = ingest.get_dataset(db, dataset)
    measured_on = {
        "rows": scored.row_count,
        "text_column": scored.mapping.text,
        "training_sha256": texts_digest(t for t, _ in own.train),
    }
    drift = stored_drift(db, model.id, scored.id, **measured_on)
    if drift is None:
        trained, texts, own_test = mean_embeddings(
            [[t for t, _ in own.train], sample_texts(db, dataset), [t for t, _ in own.test]],
            adapted_bases.encoder_of(db, run.config.base_model, model.path),
        )
        drift = {"distance": distance(trained, texts), "own_distance": distance(trained, own_test)}
        db[DRIFT_TABLE].upsert(
            {
                "model_id": model.id,
                "dataset_id": scored.id,
                **measured_on,
                **drift,
                "created_at": utc_now(),
            },
            pk=("model_id", "dataset_id"),
        )
    return (
        f"{head} Drift: the distance between the two sets' mean embeddings is "
        f"{drift['distance']:.3f} (its own test split: {drift['own_distance']:.3f}). {advice}"
    )


def stored_drift(
    db: Database, model_id: int, dataset_id: int, rows: int, text_column: str, training_sha256: str
) -> dict[str, float] | None:
    """The drift figures measured before, while they still hold: the same training texts and
    text column, and the dataset no smaller and at most ``DRIFT_GROWTH`` larger than it was."""
    found = db.execute(
        f'select "rows", text_column, training_sha256, distance, own_distance from {DRIFT_TABLE} '
        "where model_id = ? and dataset_id = ?",
        [model_id, dataset_id],
    ).fetchone()
    if (
        found is None
        or (found[1], found[2]) != (text_column, training_sha256)
        or not found[0] <= rows <= found[0] * DRIFT_GROWTH
    ):
        return None
    return {"distance": found[3], "own_distance": found[4]}


def texts_digest(texts) -> str:
    """SHA-256 over the texts in order (a change of any, or of the split, changes it)."""
    import hashlib

    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


def add_test(
    db: Database,
    run_id: int,
    dataset: str,
    label_map: dict[str, str] | None = None,
    *,
    load_scorer: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Score run ``run_id``'s model on every labelled row of ``dataset`` and store the report
    with the run (replacing an earlier test on the same dataset). Returns the stored test."""
    from devmode.finetune.evaluation import classification_report

    model = registry.get_model_for_run(db, run_id)
    run = runs.get_run(db, run_id)
    other = ingest.get_dataset(db, dataset)
    rows = examples.labelled_rows(db, other.name)
    if not rows:
        raise LabelMapRefused(
            f"Dataset {other.name!r} has no labelled rows to test on; expected a dataset with a "
            "label column. Map its label column on the Datasets page first."
        )
    their_classes = sorted({label for _, _, label in rows})
    resolved = resolve_label_map(their_classes, model.labels, label_map or {})
    if load_scorer is None:
        from devmode.models.scorers import load_scorer
    texts = [text for _, text, _ in rows]
    scores = load_scorer(model.path).score(texts)
    names = list(scores.label_names)
    y_true = np.array([names.index(resolved[label]) for _, _, label in rows])
    report = classification_report(names, y_true, scores.probabilities, texts)
    gap = distance(
        *mean_embeddings(
            [training_texts(db, run), texts],
            adapted_bases.encoder_of(db, run.config.base_model, model.path),
        )
    )
    record = {
        "run_id": run_id,
        "dataset": other.name,
        "dataset_id": other.id,
        "label_version": other.label_version,
        "label_map": json.dumps({k: v for k, v in resolved.items() if k != v}),
        "rows": len(rows),
        "report": json.dumps(report),
        "distance": gap,
        "tested_at": utc_now(),
    }
    with db.atomic():
        db[TABLE].delete_where("run_id = ? and dataset_id = ?", [run_id, other.id])
        db[TABLE].insert(record)
    return tests_for_run(db, run_id)[other.name]


def tests_for_run(db: Database, run_id: int) -> dict[str, dict[str, Any]]:
    """The out-of-domain tests stored with a run, by dataset name."""
    return {
        row["dataset"]: {
            **row,
            "label_map": json.loads(row["label_map"] or "{}"),
            "report": json.loads(row["report"]),
        }
        for row in db[TABLE].rows_where("run_id = ?", [run_id], order_by="id")
    }


def report_lines(run: runs.Run, tests: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """In-domain and out-of-domain scores side by side: one line per test set."""
    test = run.test or {}
    lines = [
        {
            "test set": f"{run.dataset} (its test split)",
            "kind": "in-domain",
            "rows": test.get("n"),
            "accuracy": test.get("accuracy"),
            "macro-F1": test.get("macro_f1"),
            "drift": 0.0,
            "label map": "",
        }
    ]
    for name, found in tests.items():
        lines.append(
            {
                "test set": name,
                "kind": "out-of-domain",
                "rows": found["rows"],
                "accuracy": found["report"]["accuracy"],
                "macro-F1": found["report"]["macro_f1"],
                "drift": found["distance"],
                "label map": ", ".join(f"{k} → {v}" for k, v in found["label_map"].items()),
            }
        )
    return lines
