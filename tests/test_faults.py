"""The app under faults, in a real browser: the server killed (-9) mid-upload, and the server
and its scoring worker killed mid-scoring. Afterwards the database is whole, nothing half-written
is visible, and the interrupted job says so and resumes. (A training worker killed mid-run is
tests/test_worker.py::test_worker_process_killed_is_interrupted_then_resumes.)"""

import csv
import os
import random
import signal

from devmode.data import ingest
from devmode.db import open_db
from devmode.monitor import monitoring, score_jobs
from tests.browser_support import (
    StreamlitApp,
    assert_healthy,
    click,
    open_page,
    settle,
    type_into,
    visible_text,
)
from tests.conftest import PHRASEBANK_ALLAGREE, promoted_news_db, wait_for, write_csv


def integrity(db_path) -> str:
    with open_db(db_path) as db:
        return db.execute("pragma integrity_check").fetchone()[0]


def test_server_killed_mid_upload_leaves_the_database_as_it_was(browser, tmp_path):
    with open(PHRASEBANK_ALLAGREE, newline="", encoding="utf-8") as f:
        sentences = [r["text"] for r in csv.DictReader(f)]
    big = tmp_path / "big.csv"
    rows = [
        {"text": f"{sentences[i % len(sentences)]} #{i}", "label": "neutral"}
        for i in range(150_000)
    ]
    write_csv(big, rows)
    db_path = tmp_path / "devmode.db"
    app = StreamlitApp(db_path).start()
    try:
        page = browser.new_page()
        open_page(page, app.url("Datasets"))
        page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(big)
        page.get_by_text("Read big.csv").wait_for(timeout=120_000)
        settle(page)
        type_into(page, "Dataset name", "big")
        page.get_by_role("button", name="Save dataset", exact=True).click()
        page.get_by_text("rows stored").first.wait_for(timeout=60_000)  # batches are going in
        app.kill()
        page.close()
    finally:
        app.stop()
    assert integrity(db_path) == "ok"
    with open_db(db_path) as db:
        assert ingest.list_datasets(db) == []
        assert not db["big"].exists()  # no half-written table either
    with StreamlitApp(db_path) as again:  # the app comes back and works on the same file
        page = browser.new_page()
        open_page(page, again.url("Datasets"))
        page.get_by_role("tab", name="Stored datasets").click()
        settle(page)
        assert "No datasets yet" in visible_text(page)
        assert_healthy(page)
        page.close()


def dated_rows(n_rows: int) -> list[dict]:
    rng = random.Random(0)
    words = ["good", "bad", "great", "awful", "shares", "rose", "fell", "flat"]
    return [
        {
            "date": f"20{10 + i % 10}-{1 + i % 12:02d}-{1 + i % 28:02d}",
            "ticker": "AB"[i % 2],
            "text": " ".join(rng.choice(words) for _ in range(5)),
        }
        for i in range(n_rows)
    ]


def predictions(db_path) -> int:
    with open_db(db_path) as db:
        return db["devmode_predictions"].count_where("task = 'sentiment'")


def test_server_and_worker_killed_mid_scoring_then_resumed(browser, tmp_path, tiny_model_dir):
    db_path = str(tmp_path / "devmode.db")
    total = 8 * monitoring.CHUNK_ROWS + 100  # whole chunks and a part one
    promoted_news_db(db_path, tmp_path, tiny_model_dir, dated_rows(total))
    app = StreamlitApp(db_path).start()
    try:
        page = browser.new_page()
        open_page(page, app.url("Monitor"))
        click(page, "Score new rows")
        wait_for(lambda: predictions(db_path) >= 2 * monitoring.CHUNK_ROWS, what="two chunks")
        with open_db(db_path) as db:
            job = score_jobs.latest_job(db, "news")
        # the machine goes down: the server and the worker it started, both with kill -9
        os.kill(job.pid, signal.SIGKILL)
        app.kill()
        page.close()
    finally:
        app.stop()
    assert integrity(db_path) == "ok"
    done = predictions(db_path)
    assert 0 < done < total and done % monitoring.CHUNK_ROWS == 0  # whole chunks, nothing half

    with StreamlitApp(db_path) as again:
        page = browser.new_page()
        open_page(page, again.url("Monitor"))
        page.get_by_text("Scoring job 1 is interrupted").wait_for(timeout=60_000)
        assert "Rows already scored are kept" in visible_text(page)
        click(page, "Resume scoring")
        page.get_by_text("Scoring job 1 completed").wait_for(timeout=300_000)
        settle(page)
        assert_healthy(page)
        page.close()
    assert predictions(db_path) == total and integrity(db_path) == "ok"
