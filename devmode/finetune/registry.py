"""The model registry: every finished run's model, which one is active per task, export, delete.

    $ python -m devmode models promote 3 --as sentiment

A model is a folder under ``<database>_files/models/run-<id>/`` (the encoder and tokenizer in
Hugging Face format, ``head.safetensors``, ``devmode_model.json``) and a row in
``devmode_models``. At most one model is active per task (sentiment, topic); the Monitor scores
with the active ones.

Models move between machines as zip files: ``export_zip`` writes the folder and the run's record
(``devmode_run.json``: dataset, settings, test report); ``import_zip`` adds such a file to another
registry, for example a model trained on a GPU machine to the team's monitoring screen. An
archive is outside input: it is refused when it is larger than the upload limit, unpacks to more
than ``MAX_UNPACKED_RATIO`` times that, holds more than ``MAX_ARCHIVE_FILES`` files, or names a
path that would land outside its folder (absolute, ``..``, a link); nothing is registered until
the unpacked folder has loaded as a classifier.
"""

from __future__ import annotations

import io
import json
import shutil
import stat
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sqlite_utils import Database

from devmode.db import utc_now
from devmode.errors import DevmodeError
from devmode.finetune import runs
from devmode.finetune.config import TrainConfig

TASKS = ("sentiment", "topic")
# The run's record inside an exported archive, beside the model's own files.
RUN_RECORD = "devmode_run.json"
# Limits for an archive to import (its own size is held to the upload limit).
MAX_ARCHIVE_FILES = 1000
MAX_UNPACKED_RATIO = 4  # unpacked bytes per byte of the upload limit: a zip bomb stops here
# Files every devmode classifier folder holds.
REQUIRED_FILES = ("devmode_model.json", "head.safetensors", "config.json")


class InvalidArchive(DevmodeError):
    """A model archive that cannot be imported; the message says what is wrong with it."""


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
                "created": m.created_at[:16],
            }
        )
    return rows


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


def archive_name(run_id: int) -> str:
    """The file name an exported model gets: ``devmode-run-3.zip``."""
    return f"devmode-run-{run_id}.zip"


def export_zip(db: Database, run_id: int, destination: str | Path) -> Path:
    """Write run ``run_id``'s model folder to a zip file (paths inside are relative); a folder
    as ``destination`` gets ``archive_name(run_id)`` in it."""
    destination = Path(destination)
    if destination.is_dir():
        destination = destination / archive_name(run_id)
    tmp = destination.with_suffix(".partial")
    with open(tmp, "wb") as out:
        _write_archive(db, run_id, out)
    tmp.replace(destination)
    return destination


def export_bytes(db: Database, run_id: int) -> bytes:
    """The same archive as ``export_zip``, in memory: for a download, with nothing left on disk."""
    out = io.BytesIO()
    _write_archive(db, run_id, out)
    return out.getvalue()


def _write_archive(db: Database, run_id: int, out) -> None:
    model = get_model_for_run(db, run_id)
    source = Path(model.path)
    record = runs.run_record(db, run_id)
    folder = Path(f"devmode-run-{run_id}")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(source.rglob("*")):
            if file.is_file() and not file.is_symlink():  # only the folder's own files
                archive.write(file, folder / file.relative_to(source))
        archive.writestr(str(folder / RUN_RECORD), json.dumps(record, indent=2))


def import_zip(
    db: Database,
    archive_path: str | Path,
    files_dir: str | Path,
    *,
    max_bytes: int,
    name: str | None = None,
) -> Model:
    """Add a model exported by ``export_zip`` (here or on another machine) to the registry, as a
    completed run of its own; returns the new model. See the module docstring for the checks.

    :param max_bytes: the largest archive accepted (devmode's upload limit)
    :param name: the archive's name for messages and the run's record, when ``archive_path`` is
        a copy under another name (an upload)
    """
    from devmode.finetune.classifier import load_classifier

    archive_path = Path(archive_path)
    name = name or archive_path.name
    size = archive_path.stat().st_size
    if size > max_bytes:
        raise InvalidArchive(
            f"{name} is {size / 1e6:,.1f} MB; archives up to "
            f"{max_bytes / 1e6:,.0f} MB are accepted. Raise DEVMODE_MAX_UPLOAD_MB to allow more."
        )
    if not zipfile.is_zipfile(archive_path):
        raise InvalidArchive(
            f"{name} is not a zip file. Expected a model archive written by "
            "`models export` (or the Models tab's zip export)."
        )
    staging = models_dir(files_dir) / f"imported-{uuid.uuid4().hex[:12]}.partial"
    try:
        with zipfile.ZipFile(archive_path) as archive:
            members = _safe_members(archive, name, max_bytes * MAX_UNPACKED_RATIO)
            for info, relative in members:
                target = staging / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
        missing = [name for name in REQUIRED_FILES if not (staging / name).is_file()]
        if missing:
            raise InvalidArchive(
                f"{name} holds no devmode model: {', '.join(missing)} missing. "
                "Expected an archive written by `models export`."
            )
        try:
            _, _, card = load_classifier(staging)
        except Exception as e:  # noqa: BLE001 - any load failure means: not a usable model
            raise InvalidArchive(
                f"The model in {name} does not load: {type(e).__name__}: {e}"
            ) from e
        record_file = staging / RUN_RECORD
        record = json.loads(record_file.read_text()) if record_file.is_file() else {}
        record_file.unlink(missing_ok=True)
        return _register_import(db, staging, card, record, name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _safe_members(archive: zipfile.ZipFile, name: str, max_unpacked: int):
    """(entry, relative path) for each file, with the shared top folder taken off; refuses
    paths that leave the folder, links, too many files and too many bytes."""
    infos = [i for i in archive.infolist() if not i.is_dir()]
    if len(infos) > MAX_ARCHIVE_FILES:
        raise InvalidArchive(
            f"{name} holds {len(infos):,} files; a model has a dozen (at most "
            f"{MAX_ARCHIVE_FILES:,} accepted)."
        )
    unpacked = sum(i.file_size for i in infos)
    if unpacked > max_unpacked:
        raise InvalidArchive(
            f"{name} would unpack to {unpacked / 1e6:,.0f} MB, more than the "
            f"{max_unpacked / 1e6:,.0f} MB allowed."
        )
    paths = []
    for info in infos:
        path = PurePosixPath(info.filename)
        is_link = stat.S_ISLNK(info.external_attr >> 16)
        if (
            is_link
            or path.is_absolute()
            or ".." in path.parts
            or "\\" in info.filename
            or ":" in info.filename
            or "\x00" in info.filename
        ):
            raise InvalidArchive(
                f"{name} has an entry that would land outside its folder or is a link: "
                f"{info.filename!r}. Refused: only plain files under one folder are accepted."
            )
        paths.append(path)
    tops = {p.parts[0] for p in paths if len(p.parts) > 1}
    strip = len(tops) == 1 and all(len(p.parts) > 1 for p in paths)
    return [
        (info, Path(*path.parts[1:]) if strip else Path(*path.parts))
        for info, path in zip(infos, paths, strict=True)
    ]


def _register_import(db, staging: Path, card: dict, record: dict, source: str) -> Model:
    """One transaction: a completed run for the imported model, and its registry row. The
    archive's record is outside input: its settings are validated here, before anything is
    registered, so a bad archive can never break the listing of runs."""
    dataset = record.get("dataset") or card.get("train_config", {}).get("dataset") or "imported"
    try:
        config = TrainConfig.from_dict(record.get("config") or card.get("train_config") or {})
    except DevmodeError as e:
        raise InvalidArchive(f"{source} holds a training config that cannot be: {e}") from None
    record = {**record, "dataset": dataset, "config": config.to_dict()}
    with db.atomic():
        run_id = runs.add_imported_run(db, record, source)
        folder = staging.with_name(f"run-{run_id}")
        if folder.exists():
            raise InvalidArchive(f"{folder} already exists; move it away and import again.")
        staging.rename(folder)
        try:
            runs.save_figures(db, run_id, model_dir=str(folder))
            return register_model(db, run_id, dataset, card["labels"], folder)
        except BaseException:
            folder.rename(staging)  # the transaction rolls back; the caller removes the folder
            raise


def delete_model(db: Database, run_id: int) -> None:
    """Delete a run's model folder and registry row (the run and its metrics stay)."""
    model = get_model_for_run(db, run_id)
    with db.atomic():
        db["devmode_models"].delete(model.id)
        runs.save_figures(db, run_id, model_dir=None)
    shutil.rmtree(model.path, ignore_errors=True)
