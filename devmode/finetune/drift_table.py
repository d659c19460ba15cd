"""The table of the Monitor's drift figures (``out_of_domain.untested_warning``), created by
migration 0018 (``schema.py``). What this creates has shipped: a change to it is a new migration."""

from __future__ import annotations

from sqlite_utils import Database

DRIFT_TABLE = "devmode_drift"


def create_drift_table(db: Database) -> None:
    """A model's drift figure for a dataset it scores, kept so that a page (or a new server)
    does not embed the texts again until the dataset has grown."""
    db[DRIFT_TABLE].create(
        {
            "model_id": int,
            "dataset_id": int,
            "rows": int,  # the dataset's rows when measured
            "text_column": str,  # its text column then (a re-mapping measures again)
            "training_sha256": str,  # the model's training texts then (a re-split: again)
            "distance": float,  # the dataset's texts from the training texts
            "own_distance": float,  # the model's own test split from its training texts
            "created_at": str,
        },
        pk=("model_id", "dataset_id"),
        not_null={"model_id", "dataset_id", "rows", "distance", "own_distance", "created_at"},
    )
