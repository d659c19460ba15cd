"""Labelling in the browser's core: the rows to label (least sure first), labels saved with their
history, the gain of the next run on the same test rows, and out-of-domain tests."""

import re

import numpy as np
import pytest

from devmode.data import examples, ingest, readers, splits
from devmode.db import open_db
from devmode.finetune import out_of_domain, reports, worker
from devmode.labels import labelling
from devmode.models import runs
from tests.conftest import label_history, run_cli, tiny_config, tiny_rows, write_csv


def _store(db_path, tmp_path, name, rows, split=(0.6, 0.2, 0.2)):
    upload = readers.read_upload(write_csv(tmp_path / f"{name}.csv", rows))
    with open_db(db_path) as db:
        ingest.insert_upload(
            db, upload, name, ingest.ColumnMapping("text", "label"), splits.SplitSpec(*split)
        )


@pytest.fixture
def partly_labelled(db_path, tmp_path):
    """The tiny task with 12 of its texts left unlabelled."""
    rows = [{"text": r["text"], "label": r["label"]} for r in tiny_rows(90)]
    rows += [{"text": r["text"], "label": ""} for r in tiny_rows(12, seed=7)]
    _store(db_path, tmp_path, "tiny", rows)
    return db_path


def _train(db_path, tiny_model_dir, dataset="tiny", **overrides):
    with open_db(db_path) as db:
        queued = runs.create_run(
            db, dataset, tiny_config(tiny_model_dir, **{"epochs": 2, **overrides})
        )
    worker.execute_run(db_path, queued.id)
    with open_db(db_path) as db:
        return runs.get_run(db, queued.id)


def test_uncertainty_is_one_minus_the_margin_of_the_two_likeliest_classes():
    p = np.array([[0.9, 0.05, 0.05], [0.45, 0.44, 0.11], [0.5, 0.0, 0.5]])
    assert np.allclose(labelling.uncertainty(p), [0.15, 0.99, 1.0])


def test_the_first_batch_is_unsure_rows_unlike_each_other():
    rng = np.random.default_rng(0)
    # 40 near-copies of one hard case, the least sure of all, then 160 rows spread out
    copies = rng.normal(0, 0.01, (40, 8)) + 5
    spread = rng.normal(0, 1, (160, 8))
    features = np.vstack([copies, spread])
    unsure = np.concatenate([np.full(40, 0.99), rng.uniform(0.3, 0.95, 160)])
    asked = []

    def vectors(positions):
        asked.extend(positions)
        return features[positions]

    order = labelling.labelling_order(unsure, vectors, batch=10)
    assert sorted(order) == list(range(200))  # every row, once
    first = order[:10]
    assert sum(i < 40 for i in first) <= 2  # not ten copies of the same case
    assert list(unsure[first]) == sorted(unsure[first], reverse=True)
    rest = unsure[order[10:]]
    assert list(rest) == sorted(rest, reverse=True)  # then the least sure first
    assert len(asked) == 10 * labelling.CANDIDATES  # only the candidates are embedded
    plain = np.argsort(-unsure, kind="stable")
    assert list(labelling.labelling_order(unsure[:8], vectors, batch=10)) == list(plain[:8])


def test_rows_to_label_come_least_sure_first_once_a_model_exists(partly_labelled, tiny_model_dir):
    with open_db(partly_labelled) as db:
        before = labelling.rows_to_label(db, "tiny")
    assert len(before) == 12 and all(r["suggested"] is None for r in before)
    assert [r["row_id"] for r in before] == sorted(r["row_id"] for r in before)  # file order

    _train(partly_labelled, tiny_model_dir)
    with open_db(partly_labelled) as db:
        after = labelling.rows_to_label(db, "tiny", limit=5)
    assert len(after) == 5
    assert {r["suggested"] for r in after} <= {"negative", "neutral", "positive"}
    unsure = [r["uncertainty"] for r in after]
    assert unsure == sorted(unsure, reverse=True) and all(0 <= u <= 1 for u in unsure)


def test_saved_labels_keep_history_join_training_and_raise_the_version(partly_labelled):
    with open_db(partly_labelled) as db:
        first, second = (r["row_id"] for r in labelling.rows_to_label(db, "tiny", limit=2))
        test_rows = examples.load_examples(db, "tiny").test
        version = labelling.save_labels(db, "tiny", {first: " Positive ", second: "negative"})
        assert version == ingest.get_dataset(db, "tiny").label_version == 1
        stored = dict(
            db.execute(
                "select rowid, label from tiny where rowid in (?, ?)", [first, second]
            ).fetchall()
        )
        assert stored == {first: "positive", second: "negative"}  # the class's own spelling
        split = {
            r
            for (r,) in db.execute(
                "select devmode_split from tiny where rowid in (?, ?)", [first, second]
            )
        }
        assert split == {"train"}
        assert examples.load_examples(db, "tiny").test == test_rows  # the same test rows
        # saving the same labels again changes nothing
        assert labelling.save_labels(db, "tiny", {first: "positive"}) == 1
        # two people label the same row: the later save wins, both are in the history
        assert labelling.save_labels(db, "tiny", {first: "neutral"}) == 2
        changes = label_history(db, "tiny", first)
        assert [(c["old_label"], c["new_label"], c["source"]) for c in changes] == [
            (None, "positive", "edit"),  # the file's blank cell, kept as it was
            ("positive", "neutral", "edit"),
        ]


@pytest.mark.parametrize(
    "edits, allow_new, expected",
    [
        ({"first": "  "}, False, "blank label; expected one of negative, neutral, positive"),
        ({"first": "bullish"}, False, "'bullish', which is not one of the dataset's classes"),
        ({"first": "positive", 99999: "positive"}, False, "has no row 99999"),
    ],
)
def test_bad_labels_are_refused_and_nothing_is_saved(partly_labelled, edits, allow_new, expected):
    with open_db(partly_labelled) as db:
        first = labelling.rows_to_label(db, "tiny", limit=1)[0]["row_id"]
        edits = {first if k == "first" else k: v for k, v in edits.items()}
        with pytest.raises(labelling.LabelRefused, match=expected):
            labelling.save_labels(db, "tiny", edits, allow_new_classes=allow_new)
        assert ingest.get_dataset(db, "tiny").label_version == 0
        assert label_history(db, "tiny") == []
        assert len(labelling.unlabelled_rows(db, "tiny")) == 12


def test_a_new_class_is_saved_when_allowed(partly_labelled):
    with open_db(partly_labelled) as db:
        first = labelling.rows_to_label(db, "tiny", limit=1)[0]["row_id"]
        labelling.save_labels(db, "tiny", {first: "mixed"}, allow_new_classes=True)
        assert "mixed" in labelling.classes(db, "tiny")


def test_the_first_labels_of_a_mostly_unlabelled_set_get_held_out_rows(db_path, tmp_path):
    rows = [
        {"text": "shares rose", "label": "positive"},
        {"text": "shares fell", "label": "negative"},
    ]
    rows += [{"text": f"{w} {i}", "label": ""} for i, w in enumerate(["good", "bad"] * 15)]
    _store(db_path, tmp_path, "fresh", rows)
    with open_db(db_path) as db:
        todo = labelling.rows_to_label(db, "fresh")
        labelling.save_labels(
            db,
            "fresh",
            {r["row_id"]: "positive" if "good" in r["text"] else "negative" for r in todo},
        )
        data = examples.load_examples(db, "fresh")
    assert data.validation and data.test  # drawn from the new labels, within each class
    examples.check_data(data)


def test_a_retrained_run_reports_its_gain_on_the_same_test_rows(partly_labelled, tiny_model_dir):
    first = _train(partly_labelled, tiny_model_dir, epochs=1)
    assert first.comparison is None and reports.gain_text(first) is None
    with open_db(partly_labelled) as db:
        todo = labelling.rows_to_label(db, "tiny")
        truth = {r["text"]: r["label"] for r in tiny_rows(12, seed=7)}
        labelling.save_labels(db, "tiny", {r["row_id"]: truth[r["text"]] for r in todo})
    second = _train(partly_labelled, tiny_model_dir, epochs=3)
    assert second.comparison["run_id"] == first.id
    assert second.comparison["n"] == second.test["n"] == first.test["n"]
    assert second.label_version == 1 and first.label_version == 0
    # the earlier model, scored again on the same rows, gets the score its own run reported
    assert second.comparison["accuracy"] == pytest.approx(first.test["accuracy"])
    text = reports.gain_text(second)
    assert f"Gain over run {first.id} on the same {first.test['n']} test rows" in text
    models = [r["model"] for r in reports.before_after(second)]
    assert f"previous model (run {first.id}), same test rows" in models
    shown = run_cli(partly_labelled, "runs", "show", second.id)
    assert shown.exit_code == 0 and "Gain over run" in shown.output


@pytest.fixture
def tweets(partly_labelled, tmp_path):
    """A second labelled set whose classes are named differently."""
    names = {"positive": "Bullish", "negative": "Bearish", "neutral": "Neutral"}
    rows = [{"text": r["text"], "label": names[r["label"]]} for r in tiny_rows(30, seed=3)]
    _store(partly_labelled, tmp_path, "tweets", rows)
    return partly_labelled


def test_an_out_of_domain_test_needs_every_class_mapped_and_stores_nothing_otherwise(
    tweets, tiny_model_dir
):
    trained = _train(tweets, tiny_model_dir)
    with open_db(tweets) as db:
        with pytest.raises(
            out_of_domain.LabelMapRefused, match="map to none of the model's classes .*: Bullish"
        ):
            out_of_domain.add_test(db, trained.id, "tweets", {"Bearish": "negative"})
        with pytest.raises(out_of_domain.LabelMapRefused, match="classes the model does not have"):
            out_of_domain.add_test(db, trained.id, "tweets", {"Bearish": "down"})
        assert out_of_domain.tests_for_run(db, trained.id) == {}
    with pytest.raises(out_of_domain.LabelMapRefused, match="THEIR_CLASS=MODEL_CLASS"):
        out_of_domain.parse_label_map(["Bearish"])

    result = run_cli(
        tweets,
        "runs",
        "test",
        trained.id,
        "tweets",
        "--map",
        "Bearish=negative",
        "--map",
        "Bullish=positive",
    )
    assert result.exit_code == 0, result.output
    assert "out-of-domain" in result.output and "Bearish → negative" in result.output
    with open_db(tweets) as db:
        found = out_of_domain.tests_for_run(db, trained.id)["tweets"]
        lines = out_of_domain.report_lines(runs.get_run(db, trained.id), {"tweets": found})
    assert found["rows"] == 30 and found["report"]["n"] == 30
    # Neutral found its class by name, in any case; every pair that differs is shown
    assert found["label_map"] == {
        "Bearish": "negative",
        "Bullish": "positive",
        "Neutral": "neutral",
    }
    assert 0 <= found["distance"] < 1
    assert [line["kind"] for line in lines] == ["in-domain", "out-of-domain"]
    assert lines[1]["accuracy"] == found["report"]["accuracy"]


def test_the_label_command_lists_and_saves(partly_labelled):
    listed = run_cli(partly_labelled, "label", "tiny", "--limit", "3", "--json")
    assert listed.exit_code == 0, listed.output
    import json

    rows = json.loads(listed.output)
    assert len(rows) == 3
    saved = run_cli(partly_labelled, "label", "tiny", "--set", f"{rows[0]['row_id']}=positive")
    assert saved.exit_code == 0 and "label version 1" in saved.output
    blank = run_cli(partly_labelled, "label", "tiny", "--set", f"{rows[1]['row_id']}=")
    assert blank.exit_code == 1 and "blank label" in blank.output
    bad = run_cli(partly_labelled, "label", "tiny", "--set", "x=positive")
    assert bad.exit_code == 2 and "ROW=LABEL" in bad.output


def test_the_monitor_warns_about_text_the_model_was_never_tested_on(news_copy):
    from devmode.models import registry

    with open_db(news_copy) as db:
        model = registry.active_model(db, "sentiment")
        assert out_of_domain.untested_warning(db, model, "tiny") is None  # its training set
        warning = out_of_domain.untested_warning(db, model, "news")
    assert f"(run {model.run_id}) was trained on tiny and never tested on text like news" in warning
    gap, own = map(
        float,
        re.search(r"embeddings is ([\d.]+) \(its own test split: ([\d.]+)\)", warning).groups(),
    )
    assert 0 <= own < 1 and 0 <= gap < 1
    assert f"runs test {model.run_id} news" in warning


def test_the_drift_figure_is_kept_until_the_dataset_grows(news_copy, monkeypatch):
    from devmode.data import ingest
    from devmode.models import registry

    measured = []
    embed = out_of_domain.mean_embeddings
    monkeypatch.setattr(
        out_of_domain, "mean_embeddings", lambda *a: measured.append(1) or embed(*a)
    )
    with open_db(news_copy) as db:
        model = registry.active_model(db, "sentiment")
        first = out_of_domain.untested_warning(db, model, "news")
        assert out_of_domain.untested_warning(db, model, "news") == first and len(measured) == 1
        news = ingest.get_dataset(db, "news")
        stored = db["devmode_drift"].get((model.id, news.id))
        assert stored["rows"] == news.row_count and f"{stored['distance']:.3f}" in first
        # grown by more than 10% (6 rows against 5): measured again, and stored anew
        db.execute("update devmode_drift set rows = 5")
        assert out_of_domain.untested_warning(db, model, "news") == first and len(measured) == 2
        assert db["devmode_drift"].get((model.id, news.id))["rows"] == news.row_count
        # the rule itself: no smaller, at most 10% larger, the same training texts and column
        db.execute("update devmode_drift set rows = 100")
        same = {"text_column": stored["text_column"], "training_sha256": stored["training_sha256"]}
        for rows, holds in ((100, True), (110, True), (111, False), (99, False)):
            found = out_of_domain.stored_drift(db, model.id, news.id, rows, **same)
            assert (found is not None) == holds, rows
        for changed in ({"text_column": "headline"}, {"training_sha256": "0" * 64}):
            assert (
                out_of_domain.stored_drift(db, model.id, news.id, 100, **{**same, **changed})
                is None
            )
        ingest.drop_dataset(db, "news")  # what was worked out from it goes with it
        assert db["devmode_drift"].count == 0
