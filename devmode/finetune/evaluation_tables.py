"""The tables of k-fold evaluations (``evaluations.py``), created by migration 0016
(``schema.py``). What this creates has shipped: a change to these tables is a new migration."""

from __future__ import annotations

from sqlite_utils import Database


def create_evaluation_tables(db: Database) -> None:
    """An evaluation is a job with its folds' figures; every labelled row keeps its
    out-of-fold prediction."""
    db["devmode_evaluations"].create(
        {
            "id": int,
            "dataset_id": int,
            "dataset": str,
            "dataset_sha256": str,
            "label_version": int,
            "folds": int,
            "fold_seed": int,
            "folds_digest": str,  # SHA-256 of every row's fold: equal digests, the same folds
            "rows": int,
            "config": str,  # JSON: the TrainConfig every fold trains with
            "status": str,
            "pid": int,
            "cancel_requested": int,
            "error": str,
            "done": int,  # thousandths of folds, for the progress bar
            "total": int,
            "fold_results": str,  # JSON: one record per finished fold
            "summary": str,  # JSON: means, intervals, pooled calibration, once all folds ran
            "created_at": str,
            "updated_at": str,
            "started_at": str,
            "finished_at": str,
        },
        pk="id",
        not_null={"dataset", "folds", "fold_seed", "folds_digest", "config", "status"},
        defaults={"cancel_requested": 0, "done": 0, "total": 0},
    )
    db["devmode_evaluation_predictions"].create(
        {
            "evaluation_id": int,
            "row_id": int,  # the rowid of the row in the dataset's table
            "fold": int,
            "label": str,
            "predicted": str,
            "probabilities": str,  # JSON: calibrated, in the evaluation's label order
            "raw_probabilities": str,  # JSON: before temperature scaling
        },
        pk=("evaluation_id", "row_id"),
        not_null={"evaluation_id", "row_id", "fold", "label", "predicted", "probabilities"},
    )
