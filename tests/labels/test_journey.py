"""Issue 16's journey in a real browser: a few-shot model from a small file, suspect labels
reviewed and one accepted, twenty rows labelled from the model's suggestions, a retrain that
shows its gain, and a report with an out-of-domain line. Screenshots go to
$TMPDIR/devmode-labels-journey/."""

import csv
import re
import tempfile
from pathlib import Path

from devmode.data import ingest, readers
from devmode.db import open_db
from devmode.finetune import out_of_domain
from tests.browser_support import (
    StreamlitApp,
    assert_healthy,
    choose,
    click,
    expand,
    grid_text,
    open_page,
    settle,
    tick_first_row,
    type_into,
    visible_text,
)
from tests.conftest import PHRASEBANK_ALLAGREE, wait_for, write_csv

SCREENSHOTS = Path(tempfile.gettempdir()) / "devmode-labels-journey"
PHRASEBANK_50 = PHRASEBANK_ALLAGREE.with_name("sentences_50agree.csv")


def small_file(path: Path) -> Path:
    """8 labelled rows a class, a near-copy of one labelled otherwise, 40 rows unlabelled."""
    with open(PHRASEBANK_ALLAGREE, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    labelled = []
    for label in ("negative", "neutral", "positive"):
        labelled += [r for r in rows if r["label"] == label][5:85:10]
    copy = {"text": "UPDATE: " + labelled[0]["text"], "label": "positive"}  # [0] is negative
    unlabelled = [{"text": r["text"], "label": ""} for r in rows[1000:1400:10]]
    return write_csv(path, labelled + [copy] + unlabelled)


def notes_dataset(db_path, tmp_path) -> None:
    """Another labelled set whose classes are named otherwise (an analyst's own words)."""
    names = {"negative": "Bearish", "positive": "Bullish", "neutral": "Neutral"}
    with open(PHRASEBANK_50, newline="", encoding="utf-8") as f:
        rows = [{"text": r["text"], "label": names[r["label"]]} for r in csv.DictReader(f)]
    path = write_csv(tmp_path / "notes.csv", rows[::60])
    with open_db(db_path) as db:
        ingest.insert_upload(
            db, readers.read_upload(path), "notes", ingest.ColumnMapping("text", "label")
        )


def expander(page, title: str):
    return page.get_by_test_id("stExpander").filter(has_text=title)


def test_review_label_retrain_and_test_out_of_domain(browser, tmp_path, tiny_model_dir):
    """The runs train the tiny test model (a 2-layer BERT): the journey is about the pages, and
    SetFit on the real MiniLM is tests/finetune/test_few_shot.py's."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    db_path = tmp_path / "devmode.db"
    notes_dataset(db_path, tmp_path)
    small = small_file(tmp_path / "small.csv")
    with StreamlitApp(db_path) as app:
        page = browser.new_page(viewport={"width": 1400, "height": 1200})

        # -- a small file, and a few-shot model from it ----------------------------------------
        open_page(page, app.url("Datasets"))
        page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(small)
        page.get_by_text("Read small.csv").first.wait_for(timeout=60_000)
        settle(page)
        click(page, "Save dataset")
        page.get_by_text("Saved dataset small (65 rows)").first.wait_for(timeout=60_000)

        open_page(page, app.url("Fine_tune"))
        choose(page, "Dataset", "small")
        assert "few-shot method (SetFit) usually does better" in visible_text(page)
        choose(page, "Method", "few-shot")
        type_into(page, "Base model", str(tiny_model_dir))
        type_into(page, "Max length (tokens)", "32", role="spinbutton")  # a quicker run
        click(page, "Start training")
        page.get_by_text("Started run 1").first.wait_for(timeout=60_000)
        page.get_by_role("tab", name="Runs").click()
        page.get_by_text("Most confident mistakes").first.wait_for(timeout=600_000)
        settle(page)
        assert "completed" in visible_text(page)
        page.screenshot(path=SCREENSHOTS / "01_few_shot_report.png", full_page=True)

        # -- review suspect labels, accept the first ---------------------------------------------
        open_page(page, app.url("Datasets"))
        page.get_by_role("tab", name="Stored datasets").click()
        settle(page)
        choose(page, "Dataset", "small")
        expand(page, "Review labels: find the ones that look wrong")
        click(page, "Find suspect labels")
        review = expander(page, "Review labels: find the ones that look wrong")
        review.get_by_text("suggestions", exact=False).first.wait_for(timeout=120_000)
        grid = review.get_by_test_id("stDataFrame").first
        assert "suggested" in grid_text(grid)
        with open_db(db_path) as db:  # the near-copy labelled two ways is among them
            suspects = {r for (r,) in db.execute("select row_id from devmode_label_suggestions")}
        assert suspects & {1, 25}  # the copied row (the first) or its copy (the 25th)
        for _ in range(3):  # a tick that lands while the grid redraws selects nothing: again
            tick_first_row(page, review.get_by_test_id("stDataFrame").first)
            click(page, "Apply decisions")
            applied = page.get_by_text(re.compile(r"[01] accepted, 0 rejected")).first
            applied.wait_for(timeout=60_000)
            if applied.inner_text().startswith("1 accepted"):
                break
        page.get_by_text("1 accepted, 0 rejected").first.wait_for(timeout=60_000)
        page.screenshot(path=SCREENSHOTS / "02_review_applied.png", full_page=True)

        # -- label twenty rows from the model's suggestions, least sure first -----------------
        labelling = expander(page, "Label rows: the model's least sure first")
        assert "Suggestions from run 1's model" in labelling.inner_text()

        def label_version() -> int:
            with open_db(db_path) as db:
                return ingest.get_dataset(db, "small").label_version

        def first_row() -> str:
            grid = labelling.get_by_test_id("stDataFrame").first
            return grid.locator("table tr").nth(1).text_content() or ""

        for _ in range(40):  # each tick saves one row: version + 1
            before = label_version()
            if before >= 21:
                break
            ticked = first_row()
            tick_first_row(page, labelling.get_by_test_id("stDataFrame").first)
            # The tick waited for its script run, which saves the row. A click that lands while
            # the grid is redrawn selects nothing and starts no run: after a few seconds with
            # no new version, tick again.
            try:
                wait_for(lambda b=before: label_version() > b, timeout=4, what="the row saved")
            except AssertionError:
                continue
            page.get_by_text(f"at label version {label_version()}.").first.wait_for()
            # the next tick waits for the grid to show the rows without the one just saved
            wait_for(lambda t=ticked: first_row() != t, timeout=10, what="the grid redrawn")
        assert label_version() >= 21
        page.screenshot(path=SCREENSHOTS / "03_labelled.png", full_page=True)
        with open_db(db_path) as db:
            edits = db.execute(
                "select count(*) from devmode_label_history where source = 'edit'"
            ).fetchone()[0]
        assert edits >= 20

        # -- retrain with them: the report shows the gain on the same test rows -----------------
        click(page, "Retrain with my labels")
        page.get_by_text("Run 2 is training on label version").first.wait_for(timeout=60_000)
        open_page(page, app.url("Fine_tune"))
        page.get_by_role("tab", name="Runs").click()
        settle(page)
        page.get_by_text("Gain over run 1 on the same").first.wait_for(timeout=600_000)
        settle(page)
        page.screenshot(path=SCREENSHOTS / "04_gain.png", full_page=True)

        # -- an out-of-domain line, with a label map --------------------------------------------
        choose(page, "Another labelled dataset", "notes")
        type_into(
            page,
            "Label map (their class=the model's class, comma-separated)",
            "Bearish=negative, Bullish=positive",
        )
        click(page, "Test on it")
        settle(page, timeout=300_000)
        lines = page.get_by_test_id("stDataFrame").filter(has_text="out-of-domain")
        lines.first.wait_for(timeout=120_000)
        assert "notes" in grid_text(lines.first) and "in-domain" in grid_text(lines.first)
        with open_db(db_path) as db:
            (test,) = out_of_domain.tests_for_run(db, 2).values()
        assert test["label_map"]["Bearish"] == "negative" and test["rows"] > 50
        page.screenshot(path=SCREENSHOTS / "05_out_of_domain.png", full_page=True)
        assert_healthy(page)
