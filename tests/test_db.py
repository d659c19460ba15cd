import sqlite3
import threading

import pytest

from devmode import db as store
from devmode.db import open_db, shuffle_key, summary
from devmode.schema import migrations


def test_open_db_creates_schema_in_wal_mode(db_path):
    with open_db(db_path) as db:
        assert db.journal_mode == "wal"
        assert "devmode_datasets" in db.table_names()
        assert [m.name for m in migrations.applied(db)] == [m.name for m in migrations._migrations]
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] == store.BUSY_TIMEOUT_MS


def test_migrations_apply_once(db_path):
    with open_db(db_path) as db:
        before = list(db["_sqlite_migrations"].rows)
    with open_db(db_path) as db:
        assert list(db["_sqlite_migrations"].rows) == before
        assert migrations.pending(db) == []


def test_devmode_tables_are_prefixed(db):
    own = [t for t in db.table_names() if not t.startswith("_sqlite")]
    assert own and all(t.startswith(store.TABLE_PREFIX) for t in own)


def test_open_db_explains_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder for the database does not exist"):
        open_db(tmp_path / "nope" / "devmode.db")


def test_connections_belong_to_their_thread(db_path):
    """One connection per thread: sharing one across threads is refused by sqlite3 itself."""
    with open_db(db_path) as db:
        errors = []
        thread = threading.Thread(target=lambda: _try(lambda: db.table_names(), errors))
        thread.start()
        thread.join()
        assert errors and isinstance(errors[0], sqlite3.ProgrammingError)


def test_reader_sees_committed_rows_while_a_writer_holds_a_transaction(db_path):
    with open_db(db_path) as writer, open_db(db_path) as reader:
        writer["devmode_datasets"].insert(_record("a"))
        writer.execute("BEGIN")
        writer["devmode_datasets"].insert(_record("b"))
        # WAL: the reader is not blocked, and sees only what was committed
        assert [r["name"] for r in reader["devmode_datasets"].rows] == ["a"]
        writer.execute("COMMIT")
        assert [r["name"] for r in reader["devmode_datasets"].rows] == ["a", "b"]


def test_shuffle_key_is_deterministic_and_seed_dependent():
    assert shuffle_key(42, 7) == shuffle_key(42, 7)
    assert shuffle_key(42, 7) != shuffle_key(43, 7)
    keys = [shuffle_key(42, i) for i in range(1000)]
    assert len(set(keys)) == 1000 and all(0 <= k < 2**63 for k in keys)
    # the order is a real shuffle, not the identity
    assert sorted(range(1000), key=lambda i: keys[i]) != list(range(1000))


def test_summary_counts_what_exists(db):
    assert summary(db) == {
        "datasets": 0,
        "runs": 0,
        "active_models": 0,
        "open_alerts": 0,
        "conversations": 0,
    }
    db["devmode_datasets"].insert(_record("a"))
    assert summary(db)["datasets"] == 1


def _try(fn, errors):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - collected for the assertion
        errors.append(e)


def _record(name):
    return {"name": name, "row_count": 0, "columns": "[]", "created_at": "x", "updated_at": "x"}


def test_backup_is_a_consistent_copy_taken_while_a_writer_holds_a_transaction(tmp_path):
    import sqlite3

    from devmode.db import backup
    from devmode.environment import files_dir

    path = tmp_path / "live.db"
    with open_db(path) as db:
        db["notes"].insert_all([{"n": i} for i in range(1000)])
    (files_dir(path) / "models").mkdir(parents=True)
    (files_dir(path) / "models" / "weights.bin").write_bytes(b"w" * 10)
    writer = sqlite3.connect(str(path), isolation_level=None)
    writer.execute("begin immediate")
    writer.execute("insert into notes (n) values (-1)")  # not committed when the copy is taken
    target = backup(path, tmp_path / "backups")
    writer.execute("commit")
    writer.close()
    with open_db(target) as copy:
        assert copy.execute("pragma integrity_check").fetchone()[0] == "ok"
        assert copy["notes"].count == 1000
    assert (files_dir(target) / "models" / "weights.bin").read_bytes() == b"w" * 10
