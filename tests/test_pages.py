"""Every page renders headlessly, and a person's upload journey works through AppTest."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from devmode.data import ingest
from devmode.db import open_db
from devmode.models import runs
from tests.conftest import PHRASEBANK_ALLAGREE, ROOT, file_digest

# app.py runs Home (its default page); the other pages also run on their own, as AppTest does
SCRIPTS = ["app.py", *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("pages/[1-9]_*.py"))]
DATASETS_PAGE = str(ROOT / "pages" / "1_Datasets.py")


@pytest.fixture
def app_db(db_path, monkeypatch):
    monkeypatch.setenv("DEVMODE_DB", db_path)
    return db_path


@pytest.mark.parametrize("script", SCRIPTS)
def test_page_renders_on_an_empty_database(script, app_db):
    # the Chat sandbox's first render loads (and converts) the embedded chat model
    at = AppTest.from_file(
        str(ROOT / script), default_timeout=180 if "Chat" in script else 30
    ).run()
    assert not at.exception
    assert at.title[0].value


def test_home_shows_counts_and_database(app_db):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    assert [(m.label, m.value) for m in at.metric] == [
        ("Datasets", "0"),
        ("Training runs", "0"),
        ("Active models", "0"),
        ("Open alerts", "0"),
        ("Conversations", "0"),
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
    assert not at.exception and not at.error, [e.value for e in at.error]
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
        from devmode.data.readers import read_upload

        up = read_upload(PHRASEBANK_ALLAGREE)
        ingest.insert_upload(db, up, "phrasebank", ingest.ColumnMapping("text", "label"))
    at = AppTest.from_file(DATASETS_PAGE, default_timeout=60).run()
    upload(at, PHRASEBANK_ALLAGREE)
    at.text_input(key="datasets_name").set_value("PhraseBank")
    at.button[0].click().run()
    assert "already exists" in at.error[0].value


def test_remap_rename_and_delete_from_the_page(app_db):
    with open_db(app_db) as db:
        from devmode.data.readers import read_upload

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

    from devmode import jobs
    from devmode.models import registry, runs
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
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Started run 1" in at.success[0].value

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with open_db(app_db) as db:
            run = runs.get_run(db, 1)
        if run.status in jobs.FINISHED_STATUSES:
            break
        time.sleep(0.5)
    assert run.status == "completed", run.error

    at = AppTest.from_file(FINE_TUNE_PAGE, default_timeout=60).run()
    assert not at.exception
    assert any("**completed** · step 14/14" in m.value for m in at.markdown)
    figures = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Confusion matrix (test split)" in f for f in figures)
    assert any("Test split: before vs after" in f for f in figures)
    assert any("Reliability (test split)" in f for f in figures)
    assert any(c.value.startswith("Temperature ") and "raw," in c.value for c in at.caption)
    before_after = at.dataframe[0].value
    assert list(before_after["kind"]) == ["baseline", "baseline", "fine-tuned"]

    at.button(key="train_promote_sentiment").click().run()
    with open_db(app_db) as db:
        assert registry.active_model(db, "sentiment").run_id == 1


def test_fine_tune_page_estimates_with_k_folds_and_compares_two_evaluations(
    app_db, tmp_path, tiny_model_dir
):
    """*Estimate with k folds* starts an evaluation in a worker; its tab shows the folds, the
    summary with intervals and the pooled reliability, and a second one compares with it."""
    from devmode.finetune import evaluations
    from tests.conftest import store_tiny_dataset, tiny_config, wait_for_evaluation

    store_tiny_dataset(app_db, tmp_path)
    at = AppTest.from_file(FINE_TUNE_PAGE, default_timeout=60).run()
    at.text_input(key="train_base_model").set_value(str(tiny_model_dir))
    at.number_input(key="train_epochs").set_value(2)
    at.number_input(key="train_learning_rate").set_value(5e-3)
    at.number_input(key="train_batch_size").set_value(8)
    at.checkbox(key="train_freeze_embeddings").uncheck()
    at.number_input(key="train_folds").set_value(2)
    at.button[1].click().run()  # "Estimate with k folds"
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Started evaluation 1 (2 folds)" in at.success[0].value
    evaluated = wait_for_evaluation(app_db, 1)
    assert evaluated.status == "completed", evaluated.error

    # a second recipe on the same folds, made here to keep the page test short
    with open_db(app_db) as db:
        second = evaluations.create_evaluation(
            db, "tiny", tiny_config(tiny_model_dir, epochs=1), folds=2, fold_seed=42
        )
    evaluations.execute_evaluation(app_db, second.id)

    at = AppTest.from_file(FINE_TUNE_PAGE, default_timeout=60).run()
    at.selectbox(key="train_selected_evaluation").set_value(1).run()
    assert not at.exception
    figures = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Reliability (out-of-fold predictions)" in f for f in figures)
    assert any("2-fold estimate" in m.value for m in at.markdown)
    tables = [t.value for t in at.dataframe]
    summary = next(t for t in tables if "95% interval" in t.columns)
    assert list(summary[""]) == ["accuracy", "macro-F1"]
    folds = next(t for t in tables if "temperature" in t.columns)
    assert list(folds["fold"]) == [1, 2]
    at.selectbox(key="train_eval_a").set_value(1)
    at.selectbox(key="train_eval_b").set_value(2).run()
    compared = next(t.value for t in at.dataframe if "p" in t.value.columns)
    assert list(compared["metric"]) == ["accuracy", "macro-F1"]
    assert any("Nadeau and Bengio" in c.value for c in at.caption)


# ----------------------------------------------------------------------------------------------
# Chat sandbox

CHAT_PAGE = str(ROOT / "pages" / "4_Chat_sandbox.py")


def send(at, text):
    at.text_area(key="chat_draft").set_value(text)
    return at.button(key="chat_send").click().run()


def replies(at):
    return [c.value for c in at.caption if c.value.startswith(("stopped:", "the model ended"))]


def test_chat_journey_limits_budget_and_restart(app_db):
    """No configuration: the embedded model, a 20-token limit, a banned word, a small budget;
    all of it there again in a new session."""
    at = AppTest.from_file(CHAT_PAGE, default_timeout=180).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    at.number_input(key="chat_max_tokens").set_value(20)
    at.slider(key="chat_temperature").set_value(0.0)
    send(at, "What is a bond?")
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert replies(at)[-1].startswith("stopped: max tokens (20) · prompt")
    first_reply = at.chat_message[1].markdown[0].value
    assert at.text_area(key="chat_draft").value == ""  # sent and saved: the box is cleared

    word = next(w for w in first_reply.split()[3:] if w.isalpha() and len(w) >= 5)
    at.text_input(key="chat_banned").set_value(word)
    send(at, "What is a bond?")
    assert replies(at)[-1].startswith(f"stopped: banned word {word!r}")
    assert word not in at.chat_message[3].markdown[0].value

    at.number_input(key="chat_budget_tokens").set_value(70).run()
    assert "dropped or cut" in at.expander[-1].label  # the preview shows it before sending
    send(at, "Summarise.")
    assert not at.error
    assert any(c.value.startswith("Context: history dropped") for c in at.caption)

    again = AppTest.from_file(CHAT_PAGE, default_timeout=180)  # a new session, by its link
    again.query_params["conversation"] = "1"
    again.run()
    assert again.selectbox(key="chat_conversation").value == 1
    assert len(again.chat_message) == 6
    assert again.number_input(key="chat_budget_tokens").value == 70  # the settings came back too
    assert again.text_input(key="chat_banned").value == word
    assert replies(again)[0].startswith("stopped: max tokens (20)")


def test_chat_refusals_keep_the_message_and_store_nothing(app_db, chat_server):
    at = AppTest.from_file(CHAT_PAGE, default_timeout=60).run()
    at.radio(key="chat_kind").set_value("endpoint").run()
    at.text_input(key="chat_base_url").set_value("http://127.0.0.1:9/v1").run()
    at.number_input(key="chat_timeout_s").set_value(5.0)
    send(at, "Is this reachable?")
    assert "could not reach http://127.0.0.1:9/v1" in at.error[0].value
    assert "kept above; nothing was saved" in at.error[0].value
    assert at.text_area(key="chat_draft").value == "Is this reachable?"

    at.text_input(key="chat_base_url").set_value(chat_server.base_url)
    at.text_input(key="chat_banned").set_value("guaranteed")
    send(at, "Are returns guaranteed?")
    assert "contains the banned word 'guaranteed'" in at.error[0].value
    assert at.text_area(key="chat_draft").value == "Are returns guaranteed?"

    at.number_input(key="chat_budget_tokens").set_value(16)
    send(at, "A question far too long for sixteen tokens of context, with the system prompt too.")
    assert "more than the whole context budget of 16" in at.error[0].value

    at.number_input(key="chat_budget_tokens").set_value(2048)
    at.text_input(key="chat_banned").set_value("")
    send(at, "   ")
    assert "The message is empty" in at.error[0].value
    with open_db(app_db) as db:
        assert db["devmode_conversations"].count == 0

    at.number_input(key="chat_max_tokens").set_value(6)
    send(at, "What is a bond?")  # the endpoint (devmode serve) answers through the openai SDK
    assert not at.error and replies(at)[-1].startswith("stopped: max tokens (6)")
    with open_db(app_db) as db:
        assert db["devmode_chat_messages"].count == 2


def test_limit_bench_tabulates_prompts_by_variant(app_db, chat_server):
    at = AppTest.from_file(CHAT_PAGE, default_timeout=120).run()
    at.radio(key="chat_kind").set_value("endpoint").run()
    at.text_input(key="chat_base_url").set_value(chat_server.base_url).run()
    at.text_area(key="chat_bench_prompts").set_value("What is a bond?\nWhat are rates?")
    at.button(key="chat_bench_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = next(d.value for d in at.dataframe if "stopped_by" in d.value.columns)
    assert list(table["variant"]) == ["short", "no rates", "one sentence"] * 2
    assert table["stopped_by"].iloc[0] == "max_tokens"
    assert table["stopped_by"].iloc[4] == "refused"  # "rates" is banned and in the prompt
    assert "Limit bench" in at.get("plotly_chart")[-1].proto.spec


def test_fine_tune_page_imports_an_archive_and_shows_it(news_db, tmp_path, monkeypatch):
    import tempfile
    import zipfile

    from devmode.models import archives

    monkeypatch.setenv("DEVMODE_DB", news_db)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where upload copies would stay
    (tmp_path / "export").mkdir()
    with open_db(news_db) as db:
        archive = archives.export_zip(db, 1, tmp_path / "export" / "model.zip")
    at = AppTest.from_file(str(ROOT / "pages" / "2_Fine_tune.py"), default_timeout=60).run()
    at.file_uploader(key="train_import_file").set_value(
        ("desk-model.zip", archive.read_bytes(), "application/zip")
    )
    at.run()
    at.button(key="train_import").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="train_model_run").value == 2
    with open_db(news_db) as db:
        record = runs.get_run(db, 2)
    assert record.versions["imported_from"] == "desk-model.zip"
    assert not list(tmp_path.glob("devmode-upload-*"))  # the copy is gone

    hostile = tmp_path / "hostile.zip"
    with zipfile.ZipFile(hostile, "w") as z:
        z.writestr("../evil.txt", b"x")
    at.file_uploader(key="train_import_file").set_value(
        ("hostile.zip", hostile.read_bytes(), "application/zip")
    )
    at.run()
    at.button(key="train_import").click().run()
    assert "hostile.zip has an entry that would land outside its folder" in at.error[0].value


def test_the_suites_page_holds_case_ids_and_the_significance(app_db):
    """The suite on the page (its run and comparison: tests/suites/test_journey.py)."""
    at = AppTest.from_file(str(ROOT / "pages" / "5_Suites.py"), default_timeout=60).run()
    assert not at.exception and "cannot run: Give the suite a name" in at.warning[0].value
    cases = next(d.value for d in at.dataframe if "company" in d.value.columns)
    assert list(cases.columns) == ["case id", "company"]
    assert at.number_input(key="suite_significance").value == 0.05
    at.text_input(key="suite_name").set_value("starter")
    at.number_input(key="suite_significance").set_value(0.01).run()
    assert not at.warning and not at.exception


def test_the_chat_sandbox_links_to_the_suites_page_where_its_tab_was(app_db):
    at = AppTest.from_file(CHAT_PAGE, default_timeout=60).run()
    assert not at.exception
    links = {(e.proto.label, e.proto.page) for e in at.get("page_link")}
    assert any(label.startswith("Suites:") and page == "Suites" for label, page in links), links
    assert [t.label for t in at.tabs] == ["Chat", "Limit bench"]


def test_fine_tune_page_adapts_a_base_lists_it_and_deletes_it(app_db, tiny_model_dir, tmp_path):
    from devmode.models import adapted_bases
    from tests.conftest import store_texts, store_tiny_dataset, wait_for

    store_tiny_dataset(app_db, tmp_path)
    store_texts(app_db, tmp_path, "texts", 300)
    at = AppTest.from_file(str(ROOT / "pages" / "2_Fine_tune.py"), default_timeout=60).run()
    at.multiselect(key="train_adapt_sets").set_value(["texts"])
    at.text_input(key="train_adapt_name").set_value("tinynews")
    at.text_input(key="train_adapt_base_model").set_value(str(tiny_model_dir))
    at.number_input(key="train_adapt_epochs").set_value(1)
    at.button(key="FormSubmitter:train_adapt_form-Adapt").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]

    def finished():
        with open_db(app_db) as db:
            return not adapted_bases.list_adaptations(db)[0].is_active

    wait_for(finished, what="the adaptation to finish")
    at.run()
    with open_db(app_db) as db:
        assert adapted_bases.by_name(db, "tinynews").is_completed
    table = at.dataframe[-1].value
    assert list(table["base model"]) == ["adapted:tinynews"]
    assert list(table["status"]) == ["completed"]
    assert any("adapted:tinynews" in c.value for c in at.caption)  # offered in New run
    at.button(key="train_adapted_delete").click().run()
    with open_db(app_db) as db:
        assert adapted_bases.list_adaptations(db) == []
