"""Every page renders headlessly, and a person's upload journey works through AppTest."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from devmode import ingest
from devmode.db import open_db
from tests.conftest import PHRASEBANK_ALLAGREE, file_digest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["app.py", *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("pages/*.py"))]
DATASETS_PAGE = str(ROOT / "pages" / "1_Datasets.py")


@pytest.fixture
def app_db(db_path, monkeypatch):
    monkeypatch.setenv("DEVMODE_DB", db_path)
    return db_path


@pytest.mark.parametrize("script", SCRIPTS)
def test_page_renders_on_an_empty_database(script, app_db):
    at = AppTest.from_file(str(ROOT / script), default_timeout=30).run()
    assert not at.exception
    assert at.title[0].value


def test_home_shows_counts_and_database(app_db):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    assert [(m.label, m.value) for m in at.metric] == [
        ("Datasets", "0"),
        ("Training runs", "0"),
        ("Active models", "0"),
        ("Open alerts", "0"),
    ]
    assert any(app_db in c.value for c in at.caption)


def upload(at, path, filename=None):
    at.file_uploader(key="datasets_file").set_value(
        (filename or Path(path).name, Path(path).read_bytes(), "text/csv")
    )
    return at.run()


def test_upload_map_save_and_see_labels_and_split(app_db):
    at = AppTest.from_file(DATASETS_PAGE, default_timeout=60).run()
    upload(at, PHRASEBANK_ALLAGREE)
    assert not at.exception
    assert "CSV, encoding utf-8" in at.success[0].value
    assert at.selectbox(key="datasets_text").value == "text"
    assert at.selectbox(key="datasets_label").value == "label"
    assert at.dataframe[0].value.shape == (20, 2)

    at.text_input(key="datasets_name").set_value("phrasebank")
    at.button[0].click().run()  # the form's "Save dataset"
    assert not at.exception and not at.error
    assert "Saved dataset **phrasebank** (2,259 rows)" in at.success[-1].value
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {
        "Rows": "2,259",
        "Empty texts": "0",
        "Duplicate texts": "0",
        "Blank labels": "0",
        "Train": "1,807",
        "Validation": "226",
        "Test": "226",
        "Split seed": "42",
    }
    chart = at.get("plotly_chart")[0]
    assert "Labels of phrasebank by split" in chart.proto.spec
    with open_db(app_db) as db:
        assert ingest.get_dataset(db, "phrasebank").row_count == 2259


def test_bad_upload_shows_the_message_and_stores_nothing(app_db, tmp_path):
    before = file_digest(app_db)
    at = AppTest.from_file(DATASETS_PAGE, default_timeout=30).run()
    upload(at, ROOT / "tests" / "bad_files" / "ragged_rows.csv")
    assert not at.exception
    # the preview reads the first rows, so this file is refused before there is a Save button
    assert "line 4 has 3 fields, but the header has 2" in at.error[0].value
    assert not at.button
    assert file_digest(app_db) == before


def test_name_clash_is_shown_in_the_page(app_db):
    with open_db(app_db) as db:
        from devmode.readers import read_upload

        up = read_upload(PHRASEBANK_ALLAGREE)
        ingest.insert_upload(db, up, "phrasebank", ingest.ColumnMapping("text", "label"))
    at = AppTest.from_file(DATASETS_PAGE, default_timeout=60).run()
    upload(at, PHRASEBANK_ALLAGREE)
    at.text_input(key="datasets_name").set_value("PhraseBank")
    at.button[0].click().run()
    assert "already exists" in at.error[0].value


def test_remap_rename_and_delete_from_the_page(app_db):
    with open_db(app_db) as db:
        from devmode.readers import read_upload

        ingest.insert_upload(
            db, read_upload(PHRASEBANK_ALLAGREE), "pb", ingest.ColumnMapping("text", "label")
        )
    at = AppTest.from_file(DATASETS_PAGE, default_timeout=60).run()
    assert at.selectbox(key="datasets_selected").value == "pb"

    at.selectbox(key="datasets_map_label").select_index(0)  # "— none —"
    save_roles = next(b for b in at.button if b.label == "Save roles")
    save_roles.click().run()
    assert not at.exception
    assert any("No label column is mapped" in i.value for i in at.info)

    at.text_input(key="datasets_new_name").set_value("phrasebank")
    at.button(key="datasets_rename").click().run()
    assert at.selectbox(key="datasets_selected").value == "phrasebank"

    at.checkbox(key="datasets_confirm_drop").check().run()
    at.button(key="datasets_drop").click().run()
    assert any("No datasets yet" in i.value for i in at.info)
    with open_db(app_db) as db:
        assert ingest.list_datasets(db) == []


FINE_TUNE_PAGE = str(ROOT / "pages" / "2_Fine_tune.py")


def test_fine_tune_page_starts_a_run_shows_its_report_and_promotes(
    app_db, tmp_path, tiny_model_dir
):
    import time

    from devmode import models, runs
    from tests.conftest import store_tiny_dataset

    store_tiny_dataset(app_db, tmp_path)
    at = AppTest.from_file(FINE_TUNE_PAGE, default_timeout=60).run()
    assert not at.exception
    at.text_input(key="train_base_model").set_value(str(tiny_model_dir))
    at.number_input(key="train_epochs").set_value(2)
    at.number_input(key="train_learning_rate").set_value(5e-3)
    at.number_input(key="train_batch_size").set_value(8)
    at.checkbox(key="train_freeze_embeddings").uncheck()
    at.button[0].click().run()  # "Start training"
    assert not at.exception and not at.error
    assert "Started run 1" in at.success[0].value

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with open_db(app_db) as db:
            run = runs.get_run(db, 1)
        if run.status in runs.FINISHED_STATUSES:
            break
        time.sleep(0.5)
    assert run.status == "completed", run.error

    at = AppTest.from_file(FINE_TUNE_PAGE, default_timeout=60).run()
    assert not at.exception
    assert any("**completed** · step 14/14" in m.value for m in at.markdown)
    figures = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Confusion matrix (test split)" in f for f in figures)
    assert any("Test split: before vs after" in f for f in figures)
    before_after = at.dataframe[0].value
    assert list(before_after["kind"]) == ["baseline", "baseline", "fine-tuned"]

    at.button(key="train_promote_sentiment").click().run()
    with open_db(app_db) as db:
        assert models.active_model(db, "sentiment").run_id == 1
