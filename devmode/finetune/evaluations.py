"""k-fold evaluations: a training recipe's accuracy and macro-F1 with a 95% interval, from k
stratified folds of a dataset's labelled rows, and a paired comparison of two recipes on the
same folds. One split of a few hundred test rows cannot tell two recipes apart; k folds use
every row as a test row once.

    $ python -m devmode evaluations run phrasebank --folds 5 --epochs 3
    $ python -m devmode evaluations compare 1 2

    evaluation = create_evaluation(db, "phrasebank", TrainConfig(), folds=5, fold_seed=42)
    execute_evaluation(db_path, evaluation.id)   # each fold: train on k - 1, predict the one
    compare(db, 1, 2)                            # Nadeau and Bengio's corrected t-test

An evaluation is a job (``KIND``): cancel stops it after the current step; resume keeps the
finished folds and continues the fold at work from its last epoch's checkpoint. Each fold's
model is kept under the evaluation's folder until the evaluation is deleted; every labelled
row keeps its out-of-fold prediction (calibrated, and raw), so the pooled calibration error is
measured on rows no model trained on.

Inside each fold the training part is split again, stratified: a tenth (at least a row per
class) is the validation split that picks the best epoch and fits the temperature. No fold's
model, validation or temperature ever sees its test fold.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlite_utils import Database

from devmode import jobs
from devmode.data import examples, ingest
from devmode.db import open_db, utc_now
from devmode.errors import DevmodeError
from devmode.finetune import resampling
from devmode.models import adapted_bases
from devmode.models.config import TrainConfig

# What a worker process runs: ``python -m devmode job evaluation ID``; see ``jobs.JobKind``.
KIND = jobs.JobKind(
    name="evaluation",
    execute="devmode.finetune.evaluations:execute_evaluation",
    table="devmode_evaluations",
    noun="Evaluation",
    folder_name="evaluations",
    touched_column="updated_at",
    interrupted_message="The evaluation process stopped without finishing (killed or crashed). "
    "Resume it: finished folds are kept, and the fold at work goes on from its last checkpoint.",
    list_command="python -m devmode evaluations list",
)
DEFAULT_FOLDS = 5
DEFAULT_FOLD_SEED = 42
MIN_FOLDS, MAX_FOLDS = 2, 20
MIN_FOLD_SEED, MAX_FOLD_SEED = 0, 2**32 - 1  # what scikit-learn's shuffles take
# Each class needs this many rows per fold: one in the held-out fold, and rows left in the
# others for training and for the validation split that picks the epoch and the temperature.
ROWS_PER_CLASS_PER_FOLD = 2
# The share of each fold's training part kept for validation (at least one row per class).
VALIDATION_FRACTION = 0.1
METRICS = ("accuracy", "macro_f1")
_JSON_FIELDS = ("config", "fold_results", "summary")


class EvaluationNotPossible(DevmodeError):
    """The rows cannot be split into the folds asked for, or two evaluations cannot be compared."""


class EvaluationCancelled(DevmodeError):
    """A person cancelled the evaluation."""


@dataclass(frozen=True)
class Evaluation(jobs.JobRecord):
    dataset_id: int
    dataset: str
    dataset_sha256: str
    label_version: int
    folds: int
    fold_seed: int
    folds_digest: str
    rows: int
    config: TrainConfig
    fold_results: list[dict[str, Any]]
    summary: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Evaluation:
        values = dict(row)
        for name in _JSON_FIELDS:
            values[name] = json.loads(row[name]) if row[name] else None
        values["config"] = TrainConfig.from_stored(values["config"] or {})
        values["fold_results"] = values["fold_results"] or []
        return cls(**values)

    def progress_text(self) -> str:
        """'Evaluation 2 of phrasebank: 41% (fold 3 of 5)'."""
        fold = min(self.folds, len(self.fold_results) + 1)
        return (
            f"Evaluation {self.id} of {self.dataset}: {self.fraction_done:.0%} "
            f"(fold {fold} of {self.folds}, {self.status})"
        )

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {**asdict(self), "config": self.config.to_dict()}


# ----------------------------------------------------------------------------------------------
# Folds


def check_folds(labels: list[str], folds: int, fold_seed: int = DEFAULT_FOLD_SEED) -> None:
    """Refuse fold counts the labels cannot be split into (and seeds the shuffle cannot take),
    saying what would work."""
    if not isinstance(fold_seed, int) or not MIN_FOLD_SEED <= fold_seed <= MAX_FOLD_SEED:
        raise EvaluationNotPossible(
            f"--fold-seed must be a whole number from {MIN_FOLD_SEED} to {MAX_FOLD_SEED:,}; found "
            f"{fold_seed!r}. Any seed in that range works; two evaluations compare only on the "
            "same one."
        )
    if not isinstance(folds, int) or not MIN_FOLDS <= folds <= MAX_FOLDS:
        raise EvaluationNotPossible(
            f"--folds must be a whole number from {MIN_FOLDS} to {MAX_FOLDS}; found {folds!r}. Each row is "
            "tested by a model trained on the other folds, so one fold would leave nothing to "
            "train on. 5 is the usual choice."
        )
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    if len(counts) < 2:
        raise EvaluationNotPossible(
            f"An evaluation needs labelled rows of at least two classes; found "
            f"{sorted(counts) or 'none'}. Map a label column with two or more values."
        )
    needed = ROWS_PER_CLASS_PER_FOLD * folds
    scarce = {label: n for label, n in sorted(counts.items()) if n < needed}
    if scarce:
        fits = min(counts.values()) // ROWS_PER_CLASS_PER_FOLD
        advice = f"use --folds {fits}" if fits >= MIN_FOLDS else "label more rows of those classes"
        raise EvaluationNotPossible(
            f"{folds} folds need at least {needed} labelled rows of every class (each fold holds "
            f"some out, and the rest must train and validate); found {scarce}. Fewer folds fit: "
            f"{advice}, or merge those classes into another."
        )


def assign_folds(labels: list[str], folds: int, seed: int) -> np.ndarray:
    """Each row's fold (0 .. folds - 1), stratified by label and shuffled by ``seed``: the
    same labels, folds and seed always give the same folds."""
    from sklearn.model_selection import StratifiedKFold

    assigned = np.zeros(len(labels), dtype=np.int64)
    split = StratifiedKFold(folds, shuffle=True, random_state=seed)
    for fold, (_, held) in enumerate(split.split(np.zeros(len(labels)), labels)):
        assigned[held] = fold
    return assigned


def folds_digest(row_ids: list[int], labels: list[str], assigned: np.ndarray) -> str:
    """A fingerprint of which row (with which label) sits in which fold: two evaluations with
    the same digest were tested on exactly the same folds."""
    digest = hashlib.sha256()
    for row_id, label, fold in zip(row_ids, labels, assigned.tolist(), strict=True):
        digest.update(f"{row_id}\t{label}\t{fold}\n".encode())
    return digest.hexdigest()


def fold_data(
    rows: list[tuple[int, str, str]], assigned: np.ndarray, fold: int, seed: int
) -> tuple[examples.TrainData, list[int]]:
    """Fold ``fold`` as training data: its rows are the test split; the others, split again
    (stratified, ``VALIDATION_FRACTION``), train and validate. Returns the data and the test
    rows' indexes into ``rows``."""
    from sklearn.model_selection import train_test_split

    labels = sorted({label for _, _, label in rows})
    held = [i for i in range(len(rows)) if assigned[i] == fold]
    trained = [i for i in range(len(rows)) if assigned[i] != fold]
    size = max(len(labels), round(VALIDATION_FRACTION * len(trained)))
    fit, check = train_test_split(
        trained, test_size=size, stratify=[rows[i][2] for i in trained], random_state=seed
    )

    def pairs(indexes) -> list[tuple[str, str]]:
        return [(rows[i][1], rows[i][2]) for i in sorted(indexes)]

    return examples.TrainData(pairs(fit), pairs(check), pairs(held), labels), held


# ----------------------------------------------------------------------------------------------
# Creating, running, reading


def create_evaluation(
    db: Database, name: str, config: TrainConfig, *, folds: int, fold_seed: int
) -> Evaluation:
    """Store a queued evaluation of ``config`` on dataset ``name``, refused here (nothing
    stored) when its labelled rows cannot make ``folds`` folds."""
    from devmode.models import methods
    from devmode.models.base_models import resolve_base_model

    dataset = ingest.get_dataset(db, name)
    rows = examples.labelled_rows(db, dataset.name)
    labels = [label for _, _, label in rows]
    check_folds(labels, folds, fold_seed)
    if config.distil_from:
        raise EvaluationNotPossible(
            f"distil_from={config.distil_from} takes teachers that were trained on every fold, "
            "so each fold's model would learn from teachers that saw its test rows. Evaluate "
            "distillation with --distil-teachers N: each fold then trains its own teachers on "
            "its training part only."
        )
    if config.distil_texts:
        ingest.get_dataset(db, config.distil_texts)
    resolve_base_model(adapted_bases.resolve(db, config.base_model))
    seen = adapted_bases.overlap(db, config.base_model, [text for _, text, _ in rows])
    if seen:
        raise EvaluationNotPossible(
            f"{config.base_model} read {seen:,} of the texts of {dataset.name!r} while it "
            "adapted, so every fold would be tested on rows its encoder has already read. Adapt "
            "on other text (headlines, tweets) for an evaluation of this dataset."
        )
    assigned = assign_folds(labels, folds, fold_seed)
    first = fold_data(rows, assigned, 0, fold_seed)[0]
    examples.check_data(first)  # blank texts, label variants: as a run refuses them
    methods.check_for_method(config, first)
    now = utc_now()
    evaluation_id = (
        db[KIND.table]
        .insert(
            {
                "dataset_id": dataset.id,
                "dataset": dataset.name,
                "dataset_sha256": dataset.sha256,
                "label_version": dataset.label_version,
                "folds": folds,
                "fold_seed": fold_seed,
                "folds_digest": folds_digest([r[0] for r in rows], labels, assigned),
                "rows": len(rows),
                "config": json.dumps(config.to_dict()),
                "status": jobs.QUEUED,
                "done": 0,
                "total": folds * 1000,
                "fold_results": "[]",
                "created_at": now,
                "updated_at": now,
            }
        )
        .last_pk
    )
    return get_evaluation(db, evaluation_id)


def start_evaluation(
    db_path: str | Path, name: str, config: TrainConfig, *, folds: int, fold_seed: int
) -> Evaluation:
    """Create an evaluation and start its worker process (what the Fine-tune page does)."""
    with open_db(db_path) as db, db.atomic():
        evaluation = create_evaluation(db, name, config, folds=folds, fold_seed=fold_seed)
    jobs.start(db_path, KIND, evaluation.id)
    with open_db(db_path) as db:
        return get_evaluation(db, evaluation.id)


def resume_evaluation(db_path: str | Path, evaluation_id: int) -> int:
    """Resume an interrupted, cancelled or failed evaluation in a worker process; its pid."""
    with open_db(db_path) as db:
        jobs.check_resumable(KIND, get_evaluation(db, evaluation_id, live=True))
    return jobs.start(db_path, KIND, evaluation_id)


def execute_evaluation(
    db_path: str | Path,
    evaluation_id: int,
    *,
    echo: Callable[[str], None] = lambda line: None,
    should_stop: Callable[[], bool] | None = None,
) -> str:
    """Run evaluation ``evaluation_id`` in this process (what its worker, or the CLI in the
    foreground, does): every fold not finished yet, then the summary. Returns the status."""
    with jobs.claimed(db_path, KIND, evaluation_id) as db:
        evaluation = get_evaluation(db, evaluation_id)
        # an adapted:NAME base trains from its folder; the stored settings keep the name
        evaluation = dataclasses.replace(
            evaluation, config=adapted_bases.for_training(db, evaluation.config)
        )
        rows, assigned = _rows_as_created(db, evaluation)
        stop = jobs.CancelPoll(db, KIND, evaluation_id, also=should_stop)
        finished = {r["fold"] for r in evaluation.fold_results}
        for fold in range(evaluation.folds):
            if fold in finished:
                continue
            echo(f"fold {fold + 1} of {evaluation.folds}")
            try:
                _run_fold(db, db_path, evaluation, rows, assigned, fold, stop, echo)
            except EvaluationCancelled:
                jobs.set_status(db, KIND, evaluation_id, jobs.CANCELLED, pid=None)
                echo(f"Cancelled; resume it: python -m devmode evaluations resume {evaluation_id}")
                return jobs.CANCELLED
        summary = summarise(db, get_evaluation(db, evaluation_id))
        jobs.set_status(
            db,
            KIND,
            evaluation_id,
            jobs.COMPLETED,
            pid=None,
            done=evaluation.folds * 1000,
            summary=json.dumps(summary),
        )
    for name in METRICS:
        estimate = summary[name]
        echo(f"{name} {estimate['mean']:.3f} [{estimate['low']:.3f}, {estimate['high']:.3f}]")
    return jobs.COMPLETED


def _rows_as_created(
    db: Database, evaluation: Evaluation
) -> tuple[list[tuple[int, str, str]], np.ndarray]:
    """The labelled rows and each one's fold, refused when they are not the rows the folds
    were drawn from."""
    rows = examples.labelled_rows(db, evaluation.dataset)
    labels = [label for _, _, label in rows]
    assigned = assign_folds(labels, evaluation.folds, evaluation.fold_seed)
    if folds_digest([r[0] for r in rows], labels, assigned) != evaluation.folds_digest:
        raise EvaluationNotPossible(
            f"The labelled rows of {evaluation.dataset!r} changed after evaluation "
            f"{evaluation.id} drew its folds (rows or labels were added, removed or corrected), "
            "so its folds would not be the same. Start a new evaluation."
        )
    return rows, assigned


def _run_fold(db, db_path, evaluation, rows, assigned, fold, stop, echo) -> None:
    """Train fold ``fold``, predict its test rows, and store both in one transaction."""
    from devmode.finetune import distillation
    from devmode.models import calibration

    data, held = fold_data(rows, assigned, fold, evaluation.fold_seed)
    folder = KIND.folder(db_path, evaluation.id)
    model_dir = folder / f"fold-{fold + 1}"

    def progress(p) -> None:
        done = fold * 1000 + 1000 * p.step // max(1, p.total_steps)
        db[KIND.table].update(evaluation.id, {"done": done, "updated_at": utc_now()})

    run = distillation.trainer(db, evaluation.config, evaluation.dataset)
    result = run(
        evaluation.config,
        data,
        output_dir=model_dir,
        checkpoint_dir=folder / f"fold-{fold + 1}-checkpoints",
        on_progress=progress,
        should_stop=stop,
    )
    if result.status == jobs.CANCELLED:
        raise EvaluationCancelled(f"Evaluation {evaluation.id} was cancelled.")
    # the run judged its test split, the held fold in ``held``'s order, at its temperature
    calibrated = calibration.softmax(result.test_logits, result.temperature)
    uncalibrated = calibration.softmax(result.test_logits)
    names = result.labels
    record = {
        "fold": fold,
        "rows_train": len(data.train) + len(data.validation),
        "rows_test": len(held),
        "accuracy": result.test["accuracy"],
        "macro_f1": result.test["macro_f1"],
        "temperature": result.temperature,
        "best_epoch": result.best_epoch,
        "train_seconds": result.train_seconds,
        "model_dir": str(model_dir),
    }
    with db.atomic():
        db["devmode_evaluation_predictions"].upsert_all(
            (
                {
                    "evaluation_id": evaluation.id,
                    "row_id": rows[i][0],
                    "fold": fold,
                    "label": rows[i][2],
                    "predicted": names[int(p.argmax())],
                    "probabilities": json.dumps([round(float(x), 6) for x in p]),
                    "raw_probabilities": json.dumps([round(float(x), 6) for x in q]),
                }
                for i, p, q in zip(held, calibrated, uncalibrated, strict=True)
            ),
            pk=("evaluation_id", "row_id"),
        )
        results = get_evaluation(db, evaluation.id).fold_results + [record]
        db[KIND.table].update(
            evaluation.id,
            {
                "fold_results": json.dumps(sorted(results, key=lambda r: r["fold"])),
                "done": (fold + 1) * 1000,
                "updated_at": utc_now(),
            },
        )
    shutil.rmtree(folder / f"fold-{fold + 1}-checkpoints", ignore_errors=True)
    echo(
        f"fold {fold + 1}: accuracy {record['accuracy']:.3f}, macro-F1 {record['macro_f1']:.3f}, "
        f"temperature {record['temperature']:.2f}"
    )


def summarise(db: Database, evaluation: Evaluation) -> dict[str, Any]:
    """Each metric's mean over the folds with its corrected 95% interval, and the calibration
    error of the pooled out-of-fold predictions before and after each fold's temperature."""
    from devmode.models import calibration

    results = evaluation.fold_results
    n_train = float(np.mean([r["rows_train"] for r in results]))
    n_test = float(np.mean([r["rows_test"] for r in results]))
    summary: dict[str, Any] = {
        name: resampling.fold_interval([r[name] for r in results], n_train, n_test).to_dict()
        for name in METRICS
    }
    predictions = list(
        db["devmode_evaluation_predictions"].rows_where(
            "evaluation_id = ?", [evaluation.id], order_by="row_id"
        )
    )
    names = sorted({p["label"] for p in predictions})
    y_true = np.array([names.index(p["label"]) for p in predictions])
    after = np.array([json.loads(p["probabilities"]) for p in predictions])
    before = np.array([json.loads(p["raw_probabilities"]) for p in predictions])
    summary["pooled"] = {
        "rows": len(predictions),
        "accuracy": float((after.argmax(1) == y_true).mean()),
        "ece_before": calibration.expected_calibration_error(before, y_true),
        "ece_after": calibration.expected_calibration_error(after, y_true),
        "bins": calibration.ECE_BINS,
        "reliability_before": calibration.reliability_bins(before, y_true),
        "reliability_after": calibration.reliability_bins(after, y_true),
    }
    summary["rows_train"], summary["rows_test"] = n_train, n_test
    return summary


def get_evaluation(db: Database, evaluation_id: int, *, live: bool = False) -> Evaluation:
    """An evaluation by id; ``live`` first marks evaluations whose worker died."""
    if live:
        jobs.reconcile(db, KIND)
    return Evaluation.from_row(jobs.get_row(db, KIND, evaluation_id))


def list_evaluations(db: Database, dataset: str | None = None) -> list[Evaluation]:
    """Evaluations, newest first (after marking dead workers' as interrupted)."""
    jobs.reconcile(db, KIND)
    where, args = ("dataset = ?", [dataset]) if dataset else (None, [])
    return [
        Evaluation.from_row(row)
        for row in db[KIND.table].rows_where(where, args, order_by="id desc")
    ]


def out_of_fold(db: Database, evaluation_id: int) -> list[dict[str, Any]]:
    """Every row's out-of-fold prediction: row_id, fold, label, predicted, probabilities."""
    get_evaluation(db, evaluation_id)
    return [
        {**row, "probabilities": json.loads(row["probabilities"])}
        for row in db["devmode_evaluation_predictions"].rows_where(
            "evaluation_id = ?",
            [evaluation_id],
            order_by="row_id",
            select="row_id, fold, label, predicted, probabilities",
        )
    ]


def request_cancel(db: Database, evaluation_id: int) -> Evaluation:
    jobs.request_cancel(db, KIND, evaluation_id)
    return get_evaluation(db, evaluation_id)


def delete_evaluation(db_path: str | Path, evaluation_id: int) -> None:
    """Delete an evaluation, its out-of-fold predictions and its fold models; refused while
    its worker is at work (cancel it first)."""
    with open_db(db_path) as db, db.atomic():
        evaluation = get_evaluation(db, evaluation_id, live=True)
        if evaluation.is_active:
            raise jobs.JobAlreadyRunning(
                f"Evaluation {evaluation_id} is {evaluation.status}; cancel it first "
                f"(python -m devmode evaluations cancel {evaluation_id})."
            )
        db["devmode_evaluation_predictions"].delete_where("evaluation_id = ?", [evaluation_id])
        db[KIND.table].delete(evaluation_id)
    shutil.rmtree(KIND.folder(db_path, evaluation_id), ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Comparing two evaluations


def compare(db: Database, first_id: int, second_id: int) -> dict[str, Any]:
    """The second evaluation against the first on the same folds: per metric, both means, the
    paired difference (second minus first) with its corrected 95% interval and p-value.

    :raises EvaluationNotPossible: different datasets, folds, or an unfinished evaluation
    """
    first, second = get_evaluation(db, first_id), get_evaluation(db, second_id)
    for evaluation in (first, second):
        if not evaluation.is_completed:
            raise EvaluationNotPossible(
                f"Evaluation {evaluation.id} is {evaluation.status}; only completed evaluations "
                "compare. Wait for it, or resume it: python -m devmode evaluations resume "
                f"{evaluation.id}"
            )
    if first.dataset != second.dataset:
        raise EvaluationNotPossible(
            f"Evaluation {first.id} is on {first.dataset!r} and {second.id} on "
            f"{second.dataset!r}; a paired comparison needs the same rows. Evaluate both recipes "
            "on one dataset."
        )
    if first.folds_digest != second.folds_digest:
        raise EvaluationNotPossible(
            f"Evaluations {first.id} and {second.id} were not tested on the same folds "
            f"({first.folds} folds, seed {first.fold_seed} against {second.folds} folds, seed "
            f"{second.fold_seed}, or the labels changed between them). Run the second again "
            f"with --folds {first.folds} --fold-seed {first.fold_seed}."
        )
    n_train, n_test = first.summary["rows_train"], first.summary["rows_test"]  # of its folds
    before = first.config.to_dict()

    def by_fold(evaluation: Evaluation, name: str) -> list[float]:
        return [r[name] for r in sorted(evaluation.fold_results, key=lambda r: r["fold"])]

    return {
        "first": first.id,
        "second": second.id,
        "dataset": first.dataset,
        "folds": first.folds,
        "fold_seed": first.fold_seed,
        "test": "Nadeau-Bengio corrected resampled t-test, two-sided",
        "metrics": {
            name: {
                "first": first.summary[name]["mean"],
                "second": second.summary[name]["mean"],
                "difference": resampling.paired_difference(
                    by_fold(first, name), by_fold(second, name), n_train, n_test
                ).to_dict(),
            }
            for name in METRICS
        },
        "settings": {
            key: [before.get(key), value]
            for key, value in second.config.to_dict().items()
            if before.get(key) != value
        },
    }
