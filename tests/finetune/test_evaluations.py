"""k-fold evaluations on the tiny model: folds, out-of-fold predictions, the summary, cancel and
resume, comparisons, deletion, and the inputs they refuse."""

import json

import numpy as np
import pytest

from devmode import jobs
from devmode.db import open_db
from devmode.finetune import evaluations
from devmode.finetune.evaluations import EvaluationNotPossible
from tests.conftest import store_tiny_dataset, tiny_config, wait_for_evaluation

FOLDS = 3


@pytest.fixture(scope="session")
def evaluated(tmp_path_factory, tiny_model_dir):
    """A database holding the tiny dataset and two completed evaluations on the same folds
    (epochs 3, then 1): made once for the tests that only read them."""
    folder = tmp_path_factory.mktemp("evaluated")
    db_path = str(folder / "devmode.db")
    store_tiny_dataset(db_path, folder)
    for epochs in (3, 1):
        with open_db(db_path) as db:
            found = evaluations.create_evaluation(
                db, "tiny", tiny_config(tiny_model_dir, epochs=epochs), folds=FOLDS, fold_seed=7
            )
        assert evaluations.execute_evaluation(db_path, found.id) == jobs.COMPLETED
    return db_path


def labelled(db_path):
    from devmode.data import examples

    with open_db(db_path) as db:
        return examples.labelled_rows(db, "tiny")


def test_every_labelled_row_is_predicted_once_by_the_model_of_the_fold_that_held_it_out(evaluated):
    rows = labelled(evaluated)
    labels = [label for _, _, label in rows]
    assigned = evaluations.assign_folds(labels, FOLDS, 7)
    with open_db(evaluated) as db:
        evaluation = evaluations.get_evaluation(db, 1)
        predictions = evaluations.out_of_fold(db, 1)
    assert evaluation.status == "completed" and evaluation.rows == len(rows) == 90
    assert [p["row_id"] for p in predictions] == [r[0] for r in rows]
    assert [p["fold"] for p in predictions] == assigned.tolist()
    assert [p["label"] for p in predictions] == labels
    for p in predictions:
        assert sum(p["probabilities"]) == pytest.approx(1, abs=1e-4)
    # the stored fold figures are those of the stored predictions
    for record in evaluation.fold_results:
        held = [p for p in predictions if p["fold"] == record["fold"]]
        assert record["rows_test"] == len(held)
        assert record["accuracy"] == pytest.approx(
            np.mean([p["predicted"] == p["label"] for p in held])
        )
        assert record["rows_train"] == 90 - len(held)
    # the words give the label away: every fold learns it (chance is 1/3)
    assert min(r["accuracy"] for r in evaluation.fold_results) >= 0.8


def test_the_summary_gives_each_metric_with_an_interval_and_the_pooled_calibration(evaluated):
    with open_db(evaluated) as db:
        evaluation = evaluations.get_evaluation(db, 1)
    summary = evaluation.summary
    for name in ("accuracy", "macro_f1"):
        estimate = summary[name]
        scores = [r[name] for r in evaluation.fold_results]
        assert estimate["mean"] == pytest.approx(np.mean(scores)) and estimate["folds"] == FOLDS
        assert estimate["low"] <= estimate["mean"] <= estimate["high"]
    pooled = summary["pooled"]
    assert pooled["rows"] == 90 and pooled["bins"] == 15
    assert 0 <= pooled["ece_after"] <= 1 and 0 <= pooled["ece_before"] <= 1
    assert sum(b["rows"] for b in pooled["reliability_after"]) == 90


def test_folds_are_stratified_and_the_same_for_the_same_seed():
    labels = ["a"] * 20 + ["b"] * 10 + ["c"] * 6
    assigned = evaluations.assign_folds(labels, 3, 42)
    for fold in range(3):
        held = [labels[i] for i in range(len(labels)) if assigned[i] == fold]
        assert held.count("a") in (6, 7) and held.count("b") in (3, 4) and held.count("c") == 2
    assert (evaluations.assign_folds(labels, 3, 42) == assigned).all()
    ids = list(range(len(labels)))
    digest = evaluations.folds_digest(ids, labels, assigned)
    assert digest == evaluations.folds_digest(ids, labels, evaluations.assign_folds(labels, 3, 42))
    assert digest != evaluations.folds_digest(ids, labels, evaluations.assign_folds(labels, 3, 1))


def test_a_folds_test_rows_are_neither_trained_nor_validated_on():
    rows = [(i, f"text {i}", "ab"[i % 2]) for i in range(40)]
    assigned = evaluations.assign_folds([r[2] for r in rows], 4, 0)
    data, held = evaluations.fold_data(rows, assigned, 2, 0)
    test = {text for text, _ in data.test}
    assert test == {rows[i][1] for i in held} == {r[1] for r in rows if assigned[r[0]] == 2}
    assert not test & {text for text, _ in data.train + data.validation}
    assert {label for _, label in data.validation} == {"a", "b"}
    assert len(data.train) + len(data.validation) + len(data.test) == 40


@pytest.mark.parametrize(
    ("labels", "folds", "expected"),
    [
        (["a", "b"] * 10, 1, "--folds must be a whole number from 2 to 20; found 1"),
        (["a", "b"] * 10, 50, "found 50"),
        (["a"] * 20, 5, "at least two classes; found ['a']"),
        (
            ["a"] * 20 + ["b"] * 6,
            5,
            "5 folds need at least 10 labelled rows of every class (each fold holds some out, "
            "and the rest must train and validate); found {'b': 6}. Fewer folds fit: use --folds 3",
        ),
        (["a"] * 20 + ["b"] * 3, 2, "found {'b': 3}. Fewer folds fit: label more rows"),
    ],
    ids=["one fold", "too many folds", "one class", "a scarce class", "far too few"],
)
def test_folds_the_rows_cannot_make_are_refused_with_what_would_work(labels, folds, expected):
    with pytest.raises(EvaluationNotPossible) as caught:
        evaluations.check_folds(labels, folds)
    assert expected in str(caught.value)


@pytest.mark.parametrize("seed", [-1, 2**32], ids=["negative", "too large"])
def test_a_fold_seed_the_shuffle_cannot_take_is_refused(seed):
    with pytest.raises(EvaluationNotPossible, match="--fold-seed must be a whole number from 0"):
        evaluations.check_folds(["a", "b"] * 10, 2, seed)


def test_a_refused_evaluation_stores_nothing(tiny_db, tiny_model_dir):
    with open_db(tiny_db) as db, pytest.raises(EvaluationNotPossible):
        evaluations.create_evaluation(
            db, "tiny", tiny_config(tiny_model_dir), folds=20, fold_seed=1
        )
    with open_db(tiny_db) as db:
        assert db[evaluations.KIND.table].count == 0


def test_a_cancelled_evaluation_keeps_its_finished_folds_and_resumes_to_the_same_figures(
    tiny_db, tiny_model_dir, evaluated
):
    with open_db(tiny_db) as db:
        found = evaluations.create_evaluation(
            db, "tiny", tiny_config(tiny_model_dir, epochs=3), folds=FOLDS, fold_seed=7
        )
    calls = []

    def stop_in_the_second_fold() -> bool:
        calls.append(1)
        with open_db(tiny_db) as db:
            return len(evaluations.get_evaluation(db, found.id).fold_results) == 1

    status = evaluations.execute_evaluation(tiny_db, found.id, should_stop=stop_in_the_second_fold)
    assert status == jobs.CANCELLED
    with open_db(tiny_db) as db:
        cancelled = evaluations.get_evaluation(db, found.id)
        assert len(evaluations.out_of_fold(db, found.id)) == cancelled.fold_results[0]["rows_test"]
    assert [r["fold"] for r in cancelled.fold_results] == [0]
    first_model = cancelled.fold_results[0]["model_dir"]
    assert evaluations.execute_evaluation(tiny_db, found.id) == jobs.COMPLETED
    with open_db(tiny_db) as db:
        resumed = evaluations.get_evaluation(db, found.id)
        assert len(evaluations.out_of_fold(db, found.id)) == 90
        again = evaluations.get_evaluation(db, 1)  # the same recipe, run without a break
    assert resumed.fold_results[0] == cancelled.fold_results[0]
    assert resumed.fold_results[0]["model_dir"] == first_model
    assert resumed.folds_digest == again.folds_digest
    with open_db(evaluated) as db:
        uninterrupted = evaluations.get_evaluation(db, 1)
    assert resumed.summary["accuracy"]["mean"] == pytest.approx(
        uninterrupted.summary["accuracy"]["mean"], abs=1e-9
    )


def test_two_recipes_on_the_same_folds_are_compared_pair_by_pair(evaluated):
    with open_db(evaluated) as db:
        compared = evaluations.compare(db, 1, 2)
        first, second = evaluations.get_evaluation(db, 1), evaluations.get_evaluation(db, 2)
    assert compared["folds"] == FOLDS and compared["settings"] == {"epochs": [3, 1]}
    accuracy = compared["metrics"]["accuracy"]
    assert accuracy["first"] == first.summary["accuracy"]["mean"]
    difference = accuracy["difference"]
    assert difference["mean"] == pytest.approx(
        second.summary["accuracy"]["mean"] - first.summary["accuracy"]["mean"]
    )
    assert 0 <= difference["p_value"] <= 1 and difference["low"] <= difference["high"]


def test_evaluations_on_other_folds_or_datasets_or_unfinished_are_not_compared(
    evaluated, tmp_path, tiny_model_dir
):
    from devmode.db import backup

    copy = str(backup(evaluated, tmp_path / "copy"))
    store_tiny_dataset(copy, tmp_path, name="other")
    with open_db(copy) as db:
        other_seed = evaluations.create_evaluation(
            db, "tiny", tiny_config(tiny_model_dir), folds=FOLDS, fold_seed=8
        )
        other_data = evaluations.create_evaluation(
            db, "other", tiny_config(tiny_model_dir), folds=FOLDS, fold_seed=7
        )
    evaluations.execute_evaluation(copy, other_seed.id)
    evaluations.execute_evaluation(copy, other_data.id)
    with open_db(copy) as db:
        with pytest.raises(EvaluationNotPossible, match="not tested on the same folds"):
            evaluations.compare(db, 1, other_seed.id)
        with pytest.raises(EvaluationNotPossible, match="needs the same rows"):
            evaluations.compare(db, 1, other_data.id)
        queued = evaluations.create_evaluation(
            db, "tiny", tiny_config(tiny_model_dir), folds=FOLDS, fold_seed=7
        )
        with pytest.raises(EvaluationNotPossible, match=f"Evaluation {queued.id} is queued"):
            evaluations.compare(db, 1, queued.id)


def test_rows_relabelled_after_the_folds_were_drawn_stop_the_evaluation(tiny_db, tiny_model_dir):
    with open_db(tiny_db) as db:
        found = evaluations.create_evaluation(
            db, "tiny", tiny_config(tiny_model_dir), folds=FOLDS, fold_seed=7
        )
        db.execute("update tiny set label = 'neutral' where rowid = 1 and label != 'neutral'")
        db.execute("update tiny set label = 'positive' where rowid = 2 and label != 'positive'")
    with pytest.raises(EvaluationNotPossible, match="changed after evaluation"):
        evaluations.execute_evaluation(tiny_db, found.id)
    with open_db(tiny_db) as db:
        failed = evaluations.get_evaluation(db, found.id)
    assert failed.status == "failed" and "Start a new evaluation" in failed.error


def test_a_worker_evaluates_in_the_background_and_delete_waits_for_it_to_stop(
    tiny_db, tiny_model_dir
):
    found = evaluations.start_evaluation(
        tiny_db, "tiny", tiny_config(tiny_model_dir, epochs=40), folds=FOLDS, fold_seed=7
    )
    folder = evaluations.KIND.folder(tiny_db, found.id)
    with pytest.raises(jobs.JobAlreadyRunning, match="cancel it first"):
        evaluations.delete_evaluation(tiny_db, found.id)
    with open_db(tiny_db) as db:
        evaluations.request_cancel(db, found.id)
    stopped = wait_for_evaluation(tiny_db, found.id)
    assert stopped.status == "cancelled", stopped.error
    assert (folder / "worker.log").is_file()
    evaluations.delete_evaluation(tiny_db, found.id)
    with open_db(tiny_db) as db:
        assert db[evaluations.KIND.table].count == 0
        assert db["devmode_evaluation_predictions"].count == 0
    assert not folder.exists()


def test_a_finished_evaluation_is_stored_as_json_a_script_can_read(evaluated):
    with open_db(evaluated) as db:
        record = evaluations.get_evaluation(db, 1).to_dict()
    again = json.loads(json.dumps(record))
    assert again["config"]["epochs"] == 3 and again["folds"] == FOLDS
    assert set(again["summary"]) >= {"accuracy", "macro_f1", "pooled"}
