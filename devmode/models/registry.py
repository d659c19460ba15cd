"""The model registry: every finished run's model, which one is active per task, delete.

    $ python -m devmode models promote 3 --as sentiment

A model is a folder under ``<database>_files/models/run-<id>/`` (the encoder and tokenizer in
Hugging Face format, ``head.safetensors``, ``devmode_model.json``) and a row in
``devmode_models``. At most one model is active per task (sentiment, topic); the Monitor scores
with the active ones.

Models move between machines as zip files: ``archives.py``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from devmode.db import utc_now
from devmode.errors import DevmodeError
from devmode.models import runs
from devmode.schema import DERIVED_FROM_MODEL

TASKS = ("sentiment", "topic")


# Label names read as a polarity without asking (compared in lower case).
_POLARITY_NAMES = {
    "negative": "negative",
    "neg": "negative",
    "bearish": "negative",
    "neutral": "neutral",
    "neu": "neutral",
    "positive": "positive",
    "pos": "positive",
    "bullish": "positive",
}


class NotSentimentLike(DevmodeError):
    """The model's labels cannot be read as negative / neutral / positive without a mapping."""


class ModelNotFound(DevmodeError):
    """No model has that id or run."""


@dataclass(frozen=True)
class Model:
    id: int
    run_id: int
    dataset: str
    labels: list[str]
    path: str
    active_as: str | None
    created_at: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Model:
        return cls(**{**row, "labels": json.loads(row["labels"])})

    @property
    def temperature(self) -> float:
        """What its logits are divided by (``calibration.py``): 1 when it was not calibrated."""
        from devmode.models.calibration import stored_temperature

        return stored_temperature(self.path)

    def describe_import(self, archive_name: str) -> str:
        return f"Imported {archive_name} as run {self.run_id} ({', '.join(self.labels)})."


def models_dir(files_dir: str | Path) -> Path:
    return Path(files_dir) / "models"


def register_model(
    db: Database, run_id: int, dataset: str, labels: list[str], path: str | Path
) -> Model:
    """Record a finished run's saved model folder."""
    db["devmode_models"].insert(
        {
            "run_id": run_id,
            "dataset": dataset,
            "labels": json.dumps(labels),
            "path": str(path),
            "created_at": utc_now(),
        },
        replace=False,
    )
    return get_model_for_run(db, run_id)


def list_models(db: Database) -> list[Model]:
    return [Model.from_row(r) for r in db["devmode_models"].rows_where(order_by="id desc")]


def get_model_for_run(db: Database, run_id: int) -> Model:
    row = next(db["devmode_models"].rows_where("run_id = ?", [run_id]), None)
    if row is None:
        raise ModelNotFound(
            f"Run {run_id} has no saved model; only completed runs do. List them with "
            "python -m devmode models list."
        )
    return Model.from_row(row)


def latest_model(db: Database, dataset: str, before_run: int | None = None) -> Model | None:
    """The newest model trained on ``dataset`` whose folder is still there (of runs before
    ``before_run`` when given)."""
    for model in list_models(db):
        if (
            model.dataset == dataset
            and (before_run is None or model.run_id < before_run)
            and Path(model.path).is_dir()
        ):
            return model
    return None


def model_run_ids(db: Database) -> list[int]:
    """The runs that have a saved model, newest model first."""
    return [m.run_id for m in list_models(db)]


def model_rows(db: Database) -> list[dict[str, Any]]:
    """The registry as a table a person reads: each model with its run's test accuracy."""
    rows = []
    for m in list_models(db):
        test = runs.get_run(db, m.run_id).test or {}
        rows.append(
            {
                "run": m.run_id,
                "dataset": m.dataset,
                "labels": ", ".join(m.labels),
                "active as": m.active_as or "",
                "test accuracy": test.get("accuracy"),
                "CPU scoring": cpu_scoring(m.path),
                "created": m.created_at[:16],
            }
        )
    return rows


def cpu_scoring(path: str) -> str:
    """How the model scores on a CPU: int8 when its check agreed, with the figures."""
    from devmode.models import int8  # reads a JSON file: no torch here

    return int8.describe(int8.int8_card(path))


def active_model(db: Database, task: str) -> Model | None:
    row = next(db["devmode_models"].rows_where("active_as = ?", [task]), None)
    return Model.from_row(row) if row else None


def promote(db: Database, run_id: int, task: str) -> Model:
    """Make run ``run_id``'s model the active one for ``task``; the previous one steps down."""
    if task not in TASKS:
        raise DevmodeError(f"task must be one of {', '.join(TASKS)}; found {task!r}.")
    model = get_model_for_run(db, run_id)
    with db.atomic():
        db.execute("update devmode_models set active_as = null where active_as = ?", [task])
        db["devmode_models"].update(model.id, {"active_as": task})
    return get_model_for_run(db, run_id)


def delete_model(db: Database, run_id: int) -> None:
    """Delete a run's model folder and registry row (the run and its metrics stay)."""
    model = get_model_for_run(db, run_id)
    with db.atomic():
        db["devmode_models"].delete(model.id)
        for table in DERIVED_FROM_MODEL:
            db[table].delete_where("model_id = ?", [model.id])
        runs.save_figures(db, run_id, model_dir=None)
    shutil.rmtree(model.path, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# What a model's labels mean: negative, neutral or positive


def sentiment_map(db: Database, model: Model) -> dict[str, str]:
    """The model's labels as polarities: from a stored mapping, or from their names."""
    stored = db["devmode_sentiment_maps"].rows_where("model_id = ?", [model.id])
    mapping = {row["label"]: row["polarity"] for row in stored}
    if mapping:
        return mapping
    guessed = {label: _POLARITY_NAMES.get(label.strip().lower()) for label in model.labels}
    if all(guessed.values()) and {"negative", "positive"} <= set(guessed.values()):
        return guessed
    raise NotSentimentLike(
        f"The labels of run {model.run_id}'s model ({', '.join(model.labels)}) do not read as "
        "negative / neutral / positive, so a sentiment index cannot be computed. Map them, e.g. "
        f"python -m devmode models map-sentiment {model.run_id} --negative LABEL --positive LABEL "
        "(other labels count as neutral), or make a sentiment model active."
    )


def set_sentiment_map(
    db: Database, run_id: int, negative: list[str], positive: list[str]
) -> dict[str, str]:
    """Store which of a model's labels are negative and positive; the rest are neutral."""
    model = get_model_for_run(db, run_id)
    unknown = sorted(set(negative + positive) - set(model.labels))
    if unknown or not negative or not positive or set(negative) & set(positive):
        raise NotSentimentLike(
            f"Expected at least one negative and one positive label, none in both, all among the "
            f"model's labels ({', '.join(model.labels)}); found negative={negative}, "
            f"positive={positive}" + (f", unknown {unknown}" if unknown else "") + "."
        )
    mapping = {
        label: "negative" if label in negative else "positive" if label in positive else "neutral"
        for label in model.labels
    }
    with db.atomic():
        db["devmode_sentiment_maps"].delete_where("model_id = ?", [model.id])
        db["devmode_sentiment_maps"].insert_all(
            {"model_id": model.id, "label": k, "polarity": v} for k, v in mapping.items()
        )
    return mapping
