"""The SQLite store: one file, WAL on, schema kept by named migrations.

    with open_db("devmode.db") as db:
        print(summary(db))

Open one ``Database`` per unit of work (a page run, a CLI command, a worker job) and close it:
a sqlite3 connection belongs to the thread that opened it, so never cache one across threads.
devmode's own tables are prefixed ``devmode_``; every other table is a user's dataset.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlite_utils import Database

from devmode.schema import migrations

# devmode's own tables start with this; ingest refuses dataset names that do.
TABLE_PREFIX = "devmode_"
# How long a writer waits for another writer's transaction before giving up ("database is
# locked"). The longest transaction devmode holds is one upload (a million rows: about 16 s).
BUSY_TIMEOUT_MS = 120_000


class Store(Database):
    """sqlite-utils' ``Database`` whose writers queue instead of failing.

    Every transaction (``atomic()``, and so every sqlite-utils write) begins with
    ``BEGIN IMMEDIATE``: it takes the write lock before it reads, so a second writer waits for
    the first (up to ``BUSY_TIMEOUT_MS``) and then sees what the first wrote. A plain
    ``BEGIN`` that reads and then writes is refused at once in WAL mode when another writer
    committed in between ("database is locked", however long the busy timeout). Statements
    outside a transaction commit on their own (the connection is in autocommit mode), so none
    holds the lock by accident.
    """

    @contextmanager
    def atomic(self) -> Iterator[Store]:
        if self.conn.in_transaction:
            with super().atomic():  # a savepoint in the transaction around it
                yield self
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        try:
            self.conn.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise


def shuffle_key(seed: int, rowid: int) -> int:
    """A deterministic pseudo-random 63-bit key for ``rowid`` under ``seed`` (splitmix64).

    Registered in every connection as SQL ``devmode_shuffle_key(seed, rowid)``; ordering rows by
    it gives the same shuffle on every machine and every Python, unlike ``random()``.
    """
    mask = (1 << 64) - 1
    x = (int(seed) * 0x9E3779B97F4A7C15 + int(rowid) + 0x9E3779B97F4A7C15) & mask
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
    return (x ^ (x >> 31)) >> 1  # SQLite integers are signed 64-bit


def open_db(path: str | Path) -> Store:
    """Open (creating if needed) the devmode database at ``path``, in WAL mode, migrated.

    WAL lets pages read while a worker writes; ``Store`` makes two writers queue instead of
    failing (see its docstring). Use it as a context manager so the connection is closed::

        with open_db("devmode.db") as db:
            ...
    """
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise FileNotFoundError(
            f"The folder for the database does not exist: {path.parent}. "
            "Create it, or point DEVMODE_DB (or --db) at a file in an existing folder."
        )
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    db = Store(conn)
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.enable_wal()  # a no-op when the file is already in WAL mode
        db.conn.create_function("devmode_shuffle_key", 2, shuffle_key, deterministic=True)
        if migrations.pending(db):
            with db.atomic():  # two processes opening a new file: the second finds them done
                migrations.apply(db)
    except BaseException:
        db.close()
        raise
    return db


def utc_now() -> str:
    """The time as ISO-8601 UTC text with milliseconds: how every ``*_at`` column is written."""
    return stamp(dt.datetime.now(dt.UTC))


def stamp(moment: dt.datetime) -> str:
    """``moment`` written as every ``*_at`` column is (ISO-8601 with milliseconds), so that
    stamps compare as text: a due time computed from now, a back-off, a retry."""
    return moment.isoformat(timespec="milliseconds")


def count_rows(db: Database, table: str, where: str | None = None) -> int:
    """Rows in ``table`` matching ``where``; 0 when the table does not exist (yet)."""
    if not db[table].exists():
        return 0
    return db[table].count_where(where) if where else db[table].count


def summary(db: Database) -> dict[str, int]:
    """Counts for the home page. Tables that a feature has not created yet count as empty."""
    return {
        "datasets": count_rows(db, "devmode_datasets"),
        "runs": count_rows(db, "devmode_runs"),
        "active_models": count_rows(db, "devmode_models", "active_as is not null"),
        "open_alerts": count_rows(db, "devmode_alert_events", "acknowledged_at is null"),
        "conversations": count_rows(db, "devmode_conversations"),
    }


def backup(database_path: str | Path, destination: str | Path) -> Path:
    """Copy the database while the app and its workers keep running (SQLite's online backup:
    a consistent snapshot, unlike copying the file, which may catch half a transaction or miss
    the WAL), into the folder ``destination``, with the files folder beside it (models,
    checkpoints). Returns the copied database file.
    """
    import shutil

    from devmode.environment import files_dir

    source = Path(database_path).resolve()
    if not source.is_file():
        raise FileNotFoundError(f"No database at {source}; nothing to back up.")
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    target = destination / source.name
    if target.resolve() == source:
        raise ValueError("The backup folder is the database's own folder; choose another.")
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    with sqlite3.connect(str(source), timeout=BUSY_TIMEOUT_MS / 1000) as live:
        with sqlite3.connect(str(partial)) as copy:
            live.backup(copy)
    partial.replace(target)
    files = files_dir(source)
    if files.is_dir():
        shutil.copytree(files, files_dir(target), dirs_exist_ok=True)
    return target
