"""Writers queue instead of failing: real devmode processes write one database file at once."""

import csv
import random
import subprocess
import sys

from devmode.db import open_db
from tests.conftest import ROOT


def write_rows(path, prefix, n, seed):
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(n):
            words = " ".join(rng.choice(["rates", "bond", "yield", "stock"]) for _ in range(12))
            writer.writerow([f"{prefix} {i} {words}", rng.choice(["pos", "neg", "neu"])])
    return path


def devmode(db_path, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "devmode", "--db", str(db_path), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_concurrent_ingests_and_a_split_all_succeed(tmp_path):
    """Four uploads into one new file at once (each one transaction, migrations included),
    and a re-split of the first while they write: every process finishes, nothing is locked."""
    db_path = tmp_path / "team.db"
    files = [write_rows(tmp_path / f"f{i}.csv", f"file{i}", 15_000, i) for i in range(4)]
    processes = [devmode(db_path, "ingest", str(f), "--name", f"d{i}") for i, f in enumerate(files)]
    processes[0].wait(timeout=300)
    processes.append(devmode(db_path, "datasets", "split", "d0", "--seed", "7"))
    results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
    for code, stderr in results:
        assert code == 0, stderr[-2000:]
        assert "database is locked" not in stderr
    with open_db(db_path) as db:
        assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
        counts = {d: db[d].count for d in ("d0", "d1", "d2", "d3")}
        assert counts == dict.fromkeys(counts, 15_000)
        assert db.execute(
            "select split_seed from devmode_datasets where name = 'd0'"
        ).fetchone() == (7,)
