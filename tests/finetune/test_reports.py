"""Every view of a run copes with a figure that was never published or measured: the published
reference for the Twitter topic file has no macro-F1, and `train topics` used to end, after 18
minutes of training, in a TypeError while printing the report (and `runs show` with it)."""

from streamlit.testing.v1 import AppTest

from devmode.db import open_db
from devmode.finetune import reports
from devmode.models import runs
from devmode.models.config import TrainConfig
from tests.conftest import ROOT, run_cli

TWITTER_TOPIC_SHA = "ffa39696baaf6a4ecdce52951f1131b16a01790179df25c61237ad42ca839490"


def report(accuracy, macro_f1):
    return {
        "accuracy": accuracy,
        "macro_f1": macro_f1,
        "per_class": [],
        "confusion_matrix": [[1, 0], [0, 1]],
        "labels": ["a", "b"],
        "n": 2,
        "mistakes": [],
    }


def topic_runs(db_path) -> list[int]:
    """Two finished runs on the Twitter topic file (as an import would record them)."""
    record = {
        "dataset": "topics",
        "dataset_sha256": TWITTER_TOPIC_SHA,
        "config": TrainConfig().to_dict(),
        "baseline": {"majority": report(0.3, 0.05), "zero_shot": report(0.4, 0.3)},
        "test": report(0.88, 0.84),
        "best_epoch": 3,
    }
    with open_db(db_path) as db:
        return [runs.add_imported_run(db, record, f"topics-{i}.zip") for i in range(2)]


def test_the_reference_without_a_macro_f1_is_shown_as_missing():
    rows = [r for r in reports.before_after(_FakeRun()) if r["kind"] == "published"]
    assert rows and rows[0]["macro_f1"] is None
    assert reports.score_text(None) == "-" and reports.score_text(0.8766) == "0.877"


class _FakeRun:
    baseline = None
    test = None
    best_epoch = None
    dataset_sha256 = TWITTER_TOPIC_SHA
    comparison = None


def test_every_cli_view_of_such_a_run_works(db_path):
    first, second = topic_runs(db_path)
    shown = run_cli(db_path, "runs", "show", str(first))
    assert shown.exit_code == 0, shown.output
    assert "finbert-tone fine-tune (published model card) accuracy 0.910 macro-F1 -" in " ".join(
        shown.output.split()
    )
    for command in (["runs", "list"], ["runs", "compare", str(first), str(second)]):
        result = run_cli(db_path, *command)
        assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert run_cli(db_path, "runs", "show", str(first), "--json").exit_code == 0


def test_the_fine_tune_page_shows_such_a_run(db_path, monkeypatch):
    monkeypatch.setenv("DEVMODE_DB", db_path)
    first, _ = topic_runs(db_path)
    at = AppTest.from_file(str(ROOT / "pages" / "2_Fine_tune.py"), default_timeout=60).run()
    at.selectbox(key="train_selected_run").set_value(first).run()
    assert not at.exception
    table = at.dataframe[0].value
    published = table[table["kind"] == "published"]
    assert list(published["accuracy"]) == [0.91] and published["macro-F1"].isna().all()
    assert any("Test split: before vs after" in c.proto.spec for c in at.get("plotly_chart"))
