"""Adapted base models: an encoder whose masked-language-model pre-training was continued on the
person's own texts (``finetune/adaptation.py``), kept in the registry as a base to fine-tune
from, by name.

    $ python -m devmode adapt headlines --name news
    $ python -m devmode train phrasebank --base-model adapted:news
    $ python -m devmode models delete adapted:news

An adaptation is a job (``KIND``) and, once completed, a base: its row in
``devmode_adaptations`` and a Hugging Face folder under ``<database>_files/adapted/NAME``. A
``TrainConfig`` names it ``adapted:NAME``; ``for_training`` turns that into the folder when a
run or an evaluation starts, so the stored settings keep the name a person chose.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from devmode import environment, jobs
from devmode.db import utc_now
from devmode.errors import DevmodeError
from devmode.models.adapted_table import TABLE
from devmode.models.base_models import ADAPTED_PREFIX, EMBEDDED_BASE_MODEL, InvalidBaseModel
from devmode.specs import Settings, setting

# What a worker process runs: ``python -m devmode job adaptation ID``; see ``jobs.JobKind``.
KIND = jobs.JobKind(
    name="adaptation",
    execute="devmode.finetune.adaptation:execute_adaptation",
    table=TABLE,
    noun="Adaptation",
    folder_name="adaptations",
    touched_column="updated_at",
    interrupted_message="The adaptation process stopped without finishing (killed or crashed). "
    "Start it again (its passes start over): python -m devmode adapt --resume NAME.",
    list_command="python -m devmode models list",
)
PREFIX = ADAPTED_PREFIX
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# The tables that name an adapted base in a job's settings, with the noun a refusal uses.
USERS = (("devmode_runs", "run"), ("devmode_evaluations", "evaluation"))


class AdaptationNotPossible(DevmodeError):
    """The name, the texts or the base cannot make an adapted base."""


class AdaptedBaseInUse(DevmodeError):
    """A queued or running job trains on the adapted base."""


@dataclass(frozen=True)
class AdaptSettings(Settings):
    """How an adaptation runs: ``adapt``'s options, each defined here once."""

    error = AdaptationNotPossible

    base_model: str = setting(
        EMBEDDED_BASE_MODEL,
        "The base model to continue from: the embedded all-MiniLM-L6-v2, or a local BERT-like "
        "model folder.",
        label="Base model",
    )
    epochs: int = setting(2, "Passes over the texts.", minimum=1, maximum=100)
    max_texts: int = setting(
        100_000,
        "Read at most this many distinct texts (a seeded sample of each dataset).",
        minimum=200,
        maximum=1_000_000,
        unit="texts",
    )
    learning_rate: float = setting(
        5e-5, "Peak rate of the masked-word training.", above=0, below=1, number_format="%.0e"
    )

    def check_together(self) -> None:
        if self.base_model.startswith(PREFIX):
            raise AdaptationNotPossible(
                f"Adapt from a base model, not from another adapted one ({self.base_model}); "
                "adapt on all the texts at once instead: python -m devmode adapt DATASET "
                "DATASET --name NAME."
            )


@dataclass(frozen=True)
class Adaptation(jobs.JobRecord):
    name: str
    base_model: str
    datasets: list[str]
    epochs: int
    max_texts: int
    learning_rate: float
    texts: int | None
    path: str | None
    summary: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Adaptation:
        values = dict(row)
        values["datasets"] = json.loads(row["datasets"])
        values["summary"] = json.loads(row["summary"]) if row["summary"] else None
        return cls(**values)

    @property
    def reference(self) -> str:
        return PREFIX + self.name

    def progress_text(self) -> str:
        return f"Adaptation {self.reference}: {self.fraction_done:.0%} ({self.status})"

    def describe(self) -> str:
        """One line of ``models list``."""
        line = f"{self.reference:<24} base, from {', '.join(self.datasets)} ({self.status}"
        if self.summary and self.summary.get("held_out_loss") is not None:
            line += f", held-out masked-word loss {self.summary['held_out_loss']:.2f}"
        return line + ")"


def ready(db: Database) -> list[str]:
    """The adapted bases a run can start from now: ``adapted:NAME`` of each completed one."""
    return [base.reference for base in list_adaptations(db) if base.is_completed]


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise AdaptationNotPossible(
            f"--name must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or "
            f"digit; found {name!r}. It is how you pick the base later: adapted:NAME."
        )
    return name


def folder(db_path: str | Path, name: str) -> Path:
    return environment.files_dir(db_path) / "adapted" / name


def create_adaptation(
    db: Database, name: str, datasets: list[str], settings: AdaptSettings
) -> Adaptation:
    """Queue an adaptation: refused (nothing stored) when the name is taken or a dataset does not
    exist; the texts themselves are counted and checked when it starts."""
    from devmode.data import ingest

    check_name(name)
    if not datasets:
        raise AdaptationNotPossible("Name at least one dataset whose texts to adapt on.")
    for dataset in datasets:
        ingest.get_dataset(db, dataset)  # NoSuchDataset, with the list of names
    taken = next(db[KIND.table].rows_where("name = ?", [name]), None)
    if taken:
        raise AdaptationNotPossible(
            f"An adapted base named {name!r} already exists ({taken['status']}). Pick another "
            f"--name, or delete it first: python -m devmode models delete adapted:{name}"
        )
    now = utc_now()
    record = {
        "name": name,
        "base_model": settings.base_model,
        "datasets": json.dumps(list(datasets)),
        "epochs": settings.epochs,
        "max_texts": settings.max_texts,
        "learning_rate": settings.learning_rate,
        "status": jobs.QUEUED,
        "created_at": now,
        "updated_at": now,
    }
    try:
        adaptation_id = db[KIND.table].insert(record).last_pk
    except sqlite3.IntegrityError:  # another process took the name a moment ago
        raise AdaptationNotPossible(
            f"An adapted base named {name!r} was just created by someone else. Pick another --name."
        ) from None
    return get_adaptation(db, adaptation_id)


def get_adaptation(db: Database, adaptation_id: int, *, live: bool = False) -> Adaptation:
    if live:
        jobs.reconcile(db, KIND)
    return Adaptation.from_row(jobs.get_row(db, KIND, adaptation_id))


def list_adaptations(db: Database) -> list[Adaptation]:
    """Every adaptation, newest first (after marking dead workers' as interrupted)."""
    jobs.reconcile(db, KIND)
    return [Adaptation.from_row(r) for r in db[KIND.table].rows_where(order_by="id desc")]


def active(db: Database) -> list[Adaptation]:
    """The adaptations queued or at work (dead workers' marked interrupted first)."""
    return [a for a in list_adaptations(db) if a.is_active]


def any_active(adaptations: list[Adaptation]) -> bool:
    return any(a.is_active for a in adaptations)


def by_name(db: Database, name: str) -> Adaptation:
    row = next(db[KIND.table].rows_where("name = ?", [name]), None)
    if row is None:
        known = [r["name"] for r in db[KIND.table].rows_where(select="name", order_by="name")]
        raise InvalidBaseModel(
            f"No adapted base named {name!r}; "
            + (f"there are {', '.join(PREFIX + k for k in known)}." if known else "there are none.")
            + " Make one with python -m devmode adapt DATASET --name NAME."
        )
    return Adaptation.from_row(row)


def resolve(db: Database, base_model: str) -> str:
    """The folder an ``adapted:NAME`` base lives in (any other base model is returned as it is);
    refused when there is no such base or it has not completed."""
    if not base_model.startswith(PREFIX):
        return base_model
    adaptation = by_name(db, base_model.removeprefix(PREFIX))
    if not adaptation.is_completed or not adaptation.path or not Path(adaptation.path).is_dir():
        raise InvalidBaseModel(
            f"The adapted base {base_model} is {adaptation.status}, so there is nothing to train "
            f"from yet. Wait for it (python -m devmode models list), or resume it."
        )
    return adaptation.path


def encoder_of(db: Database, base_model: str, fallback: str = EMBEDDED_BASE_MODEL) -> str:
    """What to load for a stored run's ``base_model`` when something needs its untrained
    encoder (zero-shot, sentence vectors): an adapted base's folder, or ``fallback`` once that
    base is deleted (the run's own model keeps working: it holds its encoder)."""
    try:
        return resolve(db, base_model)
    except InvalidBaseModel:
        return fallback


def overlap(db: Database, base_model: str, texts: list[str]) -> int:
    """How many of ``texts`` an ``adapted:NAME`` base read while it adapted (0 for any other
    base, or when its datasets are gone): what it knows of rows it is about to be tested on."""
    if not base_model.startswith(PREFIX):
        return 0
    from sqlite_utils.db import quote_identifier

    from devmode.data import ingest
    from devmode.data.examples import is_blank

    adaptation = by_name(db, base_model.removeprefix(PREFIX))
    wanted = {t.strip() for t in texts if not is_blank(t)}
    seen = 0
    for name in adaptation.datasets:
        try:
            found = ingest.get_dataset(db, name)
        except ingest.NoSuchDataset:
            continue
        column, table = quote_identifier(found.mapping.text), quote_identifier(found.name)
        for (value,) in db.execute(f"select {column} from {table}"):
            if isinstance(value, str) and value.strip() in wanted:
                wanted.discard(value.strip())
                seen += 1
    return seen


def for_training(db: Database, config):
    """``config`` with an ``adapted:NAME`` base replaced by its folder (what a worker trains
    from); other configs come back unchanged."""
    path = resolve(db, config.base_model)
    return config if path == config.base_model else dataclasses.replace(config, base_model=path)


def users(db: Database, name: str) -> list[str]:
    """The queued or running runs and evaluations that train on ``adapted:NAME`` (one whose
    worker died does not count: it is interrupted, whatever its row says yet)."""
    placeholders = ", ".join("?" * len(jobs.ACTIVE_STATUSES))
    found = []
    for table, noun in USERS:
        for row in db[table].rows_where(
            f"status in ({placeholders}) and json_extract(config, '$.base_model') = ?",
            [*jobs.ACTIVE_STATUSES, PREFIX + name],
            select="id, status, pid",
        ):
            if row["pid"] is None or jobs.pid_alive(row["pid"]):
                found.append(f"{noun} {row['id']} ({row['status']})")
    return found


def delete_adaptation(db_path: str | Path, db: Database, name: str) -> None:
    """Delete an adapted base and its folder; refused while it adapts, or while a run or an
    evaluation is queued on it or training from it (cancel those first)."""
    with db.atomic():
        adaptation = by_name(db, name)
        jobs.reconcile(db, KIND)
        adaptation = get_adaptation(db, adaptation.id)
        if adaptation.is_active:
            raise AdaptedBaseInUse(
                f"{adaptation.reference} is still {adaptation.status}; cancel it first "
                f"(python -m devmode adapt --cancel {adaptation.name})."
            )
        busy = users(db, name)
        if busy:
            raise AdaptedBaseInUse(
                f"{adaptation.reference} is the base of {', '.join(busy)}; deleting it would "
                "leave them nothing to train from. Cancel them first, or wait for them to finish."
            )
        db[KIND.table].delete(adaptation.id)
    shutil.rmtree(folder(db_path, name), ignore_errors=True)
    shutil.rmtree(KIND.folder(db_path, adaptation.id), ignore_errors=True)
