"""Models move between machines as zip files: a run's model folder and its record.

    $ python -m devmode models export 3 --to model.zip
    $ python -m devmode models import model.zip          # here or on another machine

``export_zip`` writes the folder and the run's record (``devmode_run.json``: dataset, settings,
reports); ``import_zip`` adds such a file to another registry as a completed run of its own, for
example a model trained on a GPU machine to the team's monitoring screen.

An archive is outside input, and nothing is registered until all of it has been checked:

- its size: at most the upload limit, unpacking to at most ``MAX_UNPACKED_RATIO`` times that,
  and at most ``MAX_ARCHIVE_FILES`` files (a zip bomb stops here);
- its entries: plain files under one folder, no absolute paths, ``..``, links, backslashes or
  drive letters, no name over the file system's limit, no name used both as a file and as a
  folder, no name twice; data whose checksum or size does not match its header is refused;
- its model: it must load as a classifier;
- its record: a JSON object whose fields have the types a run has, whose training config is a
  valid ``TrainConfig``, and whose reports have numeric scores; a bad record can therefore never
  break the list of runs, the reports or the pages.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import stat
import uuid
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from sqlite_utils import Database

from devmode.errors import DevmodeError
from devmode.models import runs
from devmode.models.config import TrainConfig
from devmode.models.registry import Model, get_model_for_run, models_dir, register_model

# The run's record inside an exported archive, beside the model's own files.
RUN_RECORD = "devmode_run.json"
# Limits for an archive to import (its own size is held to the upload limit).
MAX_ARCHIVE_FILES = 1000
MAX_UNPACKED_RATIO = 4  # unpacked bytes per byte of the upload limit: a zip bomb stops here
# Longest name of one path part, and of a whole path, that file systems take (bytes).
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 1024
# Files every devmode classifier folder holds.
REQUIRED_FILES = ("devmode_model.json", "head.safetensors", "config.json")
# The record's fields and the JSON types each may have (None is always allowed).
RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "dataset": (str,),
    "dataset_sha256": (str,),
    "split_seed": (int,),
    "config": (dict,),
    "versions": (dict,),
    "baseline": (dict,),
    "validation": (dict,),
    "test": (dict,),
    "best_epoch": (int,),
    "device": (str,),
    "precision": (str,),
    "train_seconds": (int, float),
    "samples_per_second": (int, float),
}


class InvalidArchive(DevmodeError):
    """A model archive that cannot be imported; the message says what is wrong with it."""


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
    from devmode.models.classifier import load_classifier

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
                _unpack(archive, info, staging / relative, name)
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
        record = _read_record(staging / RUN_RECORD, name)
        (staging / RUN_RECORD).unlink(missing_ok=True)
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
        too_long = [part for part in path.parts if len(part.encode()) > MAX_NAME_BYTES]
        if too_long or len(info.filename.encode()) > MAX_PATH_BYTES:
            raise InvalidArchive(
                f"{name} has an entry whose name is longer than a file system takes "
                f"({len(info.filename.encode()):,} bytes: {info.filename[:60]!r}…). Refused: "
                "a model's files have short names; export the model again."
            )
        paths.append(path)
    files = {str(p) for p in paths}
    if len(files) < len(paths):
        twice = sorted({str(p) for p in paths if paths.count(p) > 1})
        raise InvalidArchive(f"{name} holds the same entry more than once: {twice[:3]}. Refused.")
    folders = {str(parent) for p in paths for parent in p.parents if str(parent) != "."}
    clash = sorted(files & folders)
    if clash:
        raise InvalidArchive(
            f"{name} uses {clash[0]!r} both as a file and as a folder, which cannot be unpacked. "
            "Refused: export the model again."
        )
    tops = {p.parts[0] for p in paths if len(p.parts) > 1}
    strip = len(tops) == 1 and all(len(p.parts) > 1 for p in paths)
    return [
        (info, Path(*path.parts[1:]) if strip else Path(*path.parts))
        for info, path in zip(infos, paths, strict=True)
    ]


def _unpack(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, name: str) -> None:
    """Copy one entry out; data that does not match its header (a bad checksum, a size that
    lies, a broken stream) is refused, not half-written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with archive.open(info) as source, open(target, "wb") as out:
            shutil.copyfileobj(source, out)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
        raise InvalidArchive(
            f"{name} is damaged: its entry {info.filename!r} does not match its header ({e}). "
            "Export the model again and copy the file whole."
        ) from None


def _read_record(path: Path, name: str) -> dict[str, Any]:
    """The run's record from the archive ({} when there is none), checked field by field."""
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidArchive(
            f"{name}: {RUN_RECORD} is not JSON ({e}). Expected the run record `models export` "
            "writes; export the model again."
        ) from None
    if not isinstance(record, dict):
        raise InvalidArchive(
            f"{name}: {RUN_RECORD} holds a {type(record).__name__}; expected a JSON object with "
            "the run's dataset, settings and reports. Export the model again."
        )
    for field, kinds in RECORD_TYPES.items():
        value = record.get(field)
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            expected = " or ".join(k.__name__.replace("dict", "object") for k in kinds)
            raise InvalidArchive(
                f"{name}: {RUN_RECORD} has {field} = {value!r}; expected {expected}. Export the "
                "model again."
            )
    for field in ("validation", "test"):
        _check_report(record.get(field), f"{field}", name)
    for part in ("majority", "zero_shot"):
        _check_report((record.get("baseline") or {}).get(part), f"baseline.{part}", name)
    return record


def _check_report(report: Any, field: str, name: str) -> None:
    """A report's scores are numbers from 0 to 1 (what the pages and the CLI print)."""
    if report is None:
        return
    if not isinstance(report, dict):
        raise InvalidArchive(f"{name}: {RUN_RECORD} has {field} = {report!r}; expected an object.")
    for score in ("accuracy", "macro_f1"):
        value = report.get(score)
        if not (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and 0 <= value <= 1
        ):
            raise InvalidArchive(
                f"{name}: {RUN_RECORD} has {field}.{score} = {value!r}; expected a number from "
                "0 to 1. Export the model again."
            )


def _register_import(db, staging: Path, card: dict, record: dict, source: str) -> Model:
    """One transaction: a completed run for the imported model, and its registry row. The
    archive's record is outside input: its settings are validated here, before anything is
    registered, so a bad archive can never break the listing of runs."""
    dataset = record.get("dataset") or card.get("train_config", {}).get("dataset") or "imported"
    try:
        written = record.get("config") or card.get("train_config") or {}
        config = TrainConfig.from_dict(TrainConfig.as_stored_before(written))
    except DevmodeError as e:
        raise InvalidArchive(
            f"{source} holds a training config that cannot be: {e} Export the model again from "
            "a devmode that trained it."
        ) from None
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
