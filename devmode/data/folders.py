"""Watched folders: CSV / TSV / JSON / JSONL / Parquet files dropped into a folder, read like
uploads once they stop changing.

    batch = scan_folder("/data/inbox", state)  # a group per new or changed file

A file is taken once it has not changed for ``SETTLE_S`` (files still being written, and
``.part`` / ``.tmp`` / hidden ones, wait) and read again when it changes (only its new rows are
added). What cannot be taken is named in a note and skipped until it changes, and the other
files go on: a file that cannot be read, an empty one, a link that leads outside the folder.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from devmode.data import readers, suggestions
from devmode.data.polling import Batch, Group, PollFailed, item_key, plural
from devmode.data.uploads import UPLOAD_EXTENSIONS
from devmode.errors import in_words

# A folder's file is taken once it has not changed for this long (it may be half-written).
SETTLE_S = 2.0
# Files a writer is still busy with, by convention.
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".download")
# A column every folder row gets: the file it came from.
SOURCE_COLUMN = "source"


def scan_folder(location: str | Path, state: dict[str, Any], *, settle: float = SETTLE_S) -> Batch:
    """The rows of files that are new or changed since they were taken, a group per file;
    ``state["files"]`` holds each taken file's size and modification time."""
    folder = Path(location)
    if not folder.is_dir():
        raise PollFailed(
            f"The folder {readable(str(folder))} is gone. Create it again, or remove this source."
        )
    inside = folder.resolve()
    taken: dict[str, list[int]] = dict(state.get("files", {}))
    groups, notes, waiting = [], [], 0
    for path in sorted(folder.iterdir()):
        name = readable(path.name)
        try:
            if not _is_data_file(path):
                continue
            if not path.resolve().is_relative_to(inside):
                notes.append(f"{name} links to a file outside the folder: skipped.")
                continue
            stat = path.stat()
            signature = [stat.st_size, stat.st_mtime_ns]
            if taken.get(path.name) == signature:
                continue
            if time.time() - stat.st_mtime < settle:
                waiting += 1
                continue
            taken[path.name] = signature  # read or refused, it waits until it changes
            if stat.st_size == 0:
                notes.append(f"{name} is empty (0 bytes): skipped until it changes.")
                continue
            groups.append(_read_file(path, name))
        except Exception as e:  # noqa: BLE001 - one file never stops the others
            notes.append(
                f"{name} could not be read ({readable(in_words(e))}); it is tried again when it "
                "changes."
            )
    if waiting:
        notes.append(f"{plural(waiting, 'file')} still being written: taken next poll.")
    return Batch(groups, {"files": taken}, None, notes)


def _read_file(path: Path, name: str) -> Group:
    upload = readers.read_upload(path, filename=name)
    rows = [row for batch, _ in upload.batches() for row in batch]
    mapping = suggestions.suggest_mapping(upload.columns, rows[:200])
    items = []
    for row in rows:
        row.setdefault(SOURCE_COLUMN, name)
        text = row.get(mapping.text) if mapping.text else None
        date = row.get(mapping.date) if mapping.date else None
        identity = json.dumps(row, sort_keys=True, default=str) if text is None else text
        items.append((item_key(None, identity, date), row))
    columns = upload.columns
    if SOURCE_COLUMN not in columns:
        columns = [*columns, SOURCE_COLUMN]
    return Group(name, columns, mapping, items)


def readable(name: str) -> str:
    """A file name as text that can be stored and printed: bytes that are not UTF-8 (a name
    written on another system, ``caf\\xe9.csv``) become U+FFFD."""
    return os.fsencode(name).decode("utf-8", "replace")


def _is_data_file(path: Path) -> bool:
    return (
        path.is_file()
        and not path.name.startswith((".", "~"))
        and not path.name.endswith(PARTIAL_SUFFIXES)
        and path.suffix.lower().lstrip(".") in UPLOAD_EXTENSIONS
    )
