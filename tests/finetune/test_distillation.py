"""Ensembles distilled into one model, on the tiny BERT: soft targets, teachers trained per run
(and so per fold), an evaluation's fold models as teachers, and the refusals."""

import json

import numpy as np
import pytest

from devmode.db import open_db
from devmode.finetune import distillation
from devmode.finetune.training import train
from devmode.models import runs
from devmode.models.config import InvalidConfig, TrainConfig
from tests.conftest import (
    run_cli,
    store_tiny_dataset,
    tiny_config,
    tiny_rows,
    tiny_train_args,
    write_csv,
)


def test_one_hot_soft_targets_train_exactly_as_the_labels_do(tiny_model_dir, tiny_data):
    config = tiny_config(tiny_model_dir, epochs=2, dropout=0.0)
    plain = train(config, tiny_data)
    hard = np.zeros((len(tiny_data.train), len(tiny_data.labels)))
    hard[np.arange(len(hard)), [tiny_data.labels.index(y) for _, y in tiny_data.train]] = 1.0
    soft = distillation.SoftTargets(hard, [], np.zeros((0, len(tiny_data.labels))))
    same = train(config, tiny_data, soft=soft)
    assert same.test["confusion_matrix"] == plain.test["confusion_matrix"]
    assert same.validation["macro_f1"] == pytest.approx(plain.validation["macro_f1"])
    assert same.temperature == pytest.approx(plain.temperature, rel=1e-4)


def test_the_targets_mix_the_label_with_the_teachers_mean(word_classifier, tiny_data):
    texts = ["good profit", "awful loss"]
    one = distillation.teacher_probabilities([word_classifier], texts, tiny_data.labels)
    two = distillation.teacher_probabilities(
        [word_classifier, word_classifier], texts, tiny_data.labels
    )
    assert np.allclose(one, two)
    assert np.allclose(one.sum(1), 1.0)
    targets = distillation.soft_targets([word_classifier], tiny_data, texts)
    assert targets.texts == texts
    assert np.allclose(targets.unlabelled, one)
    first_label = tiny_data.labels.index(tiny_data.train[0][1])
    assert targets.train[0, first_label] >= distillation.LABEL_WEIGHT
    assert np.allclose(targets.train.sum(1), 1.0)


def test_unlabelled_texts_never_include_a_validation_or_test_text(tiny_data):
    test_text = tiny_data.test[0][0]
    kept = distillation.usable_texts(
        [test_text, " " + test_text + " ", "new text", "new text", "", "  "], tiny_data
    )
    assert kept == ["new text"]


def test_a_run_trains_its_teachers_then_the_student(tiny_model_dir, tiny_data, tmp_path):
    seen = []
    config = tiny_config(tiny_model_dir, epochs=2, distil_teachers=2)
    result = distillation.train_distilled(
        config,
        tiny_data,
        output_dir=tmp_path / "model",
        checkpoint_dir=tmp_path / "checkpoints",
        on_progress=seen.append,
        unlabelled=["good great profit", "fell loss awful", tiny_data.test[0][0]],
    )
    assert result.status == "completed"
    assert result.test["accuracy"] > 0.5  # chance is 1/3
    assert "distilled from 2 teachers and 2 unlabelled texts" in result.notes
    steps = [p.step for p in seen]
    assert steps == sorted(steps)  # one progress bar for teachers and student
    assert {p.total_steps for p in seen} == {steps[-1]}
    assert any("teacher_train_loss" in p.metrics for p in seen)
    assert (tmp_path / "checkpoints" / distillation.TARGETS_FILE).is_file()
    assert not list((tmp_path / "checkpoints").glob("teacher-*"))  # the targets replace them
    card = json.loads((tmp_path / "model" / "devmode_model.json").read_text())
    assert card["train_config"]["distil_teachers"] == 2  # what the run was asked for


def test_a_cancelled_distillation_resumes_at_the_first_unfinished_teacher(
    tiny_model_dir, tiny_data, tmp_path
):
    config = tiny_config(tiny_model_dir, epochs=2, distil_teachers=2)
    steps_per_run = 2 * -(-len(tiny_data.train) // 8)
    seen = []
    stopped = distillation.train_distilled(
        config,
        tiny_data,
        checkpoint_dir=tmp_path,
        on_progress=seen.append,
        should_stop=lambda: len(seen) > steps_per_run + 2,  # inside the second teacher
    )
    assert stopped.status == "cancelled"
    assert (tmp_path / "teacher-1" / "model").is_dir()
    assert not (tmp_path / "teacher-2" / "model").exists()
    assert distillation.started(tmp_path)
    resumed = []
    done = distillation.train_distilled(
        config, tiny_data, checkpoint_dir=tmp_path, on_progress=resumed.append
    )
    assert done.status == "completed"
    # teacher 1 was not trained again: the resumed run reported no step of it
    assert min(p.step for p in resumed) > steps_per_run


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_model_dir):
    """The tiny dataset, a finished 2-fold evaluation of it, and a dataset of other labels."""
    folder = tmp_path_factory.mktemp("distil")
    db_path = str(folder / "devmode.db")
    store_tiny_dataset(db_path, folder)
    other = [
        {"text": r["text"], "label": "up" if r["label"] == "positive" else "down"}
        for r in tiny_rows()
    ]
    assert (
        run_cli(
            db_path, "ingest", write_csv(folder / "other.csv", other), "--name", "other"
        ).exit_code
        == 0
    )
    result = run_cli(
        db_path, "evaluations", "run", "tiny", "--folds", "2",
        *tiny_train_args(tiny_model_dir), "--epochs", "2", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return db_path, json.loads(result.stdout)["id"]


def test_train_distils_from_an_evaluations_fold_models(evaluated, tiny_model_dir):
    db_path, evaluation_id = evaluated
    result = run_cli(
        db_path, "train", "tiny", *tiny_train_args(tiny_model_dir), "--epochs", "2",
        "--distil-from", evaluation_id,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Caveat: its teachers, evaluation" in result.output
    with open_db(db_path) as db:
        run = runs.list_runs(db)[0]
    assert run.status == "completed"
    assert run.config.distil_from == evaluation_id
    assert "trained on these test rows" in run.test["caveat"]


@pytest.mark.parametrize(
    "arguments,message",
    [
        (["train", "other", "--distil-from", "{id}"], "is of 'tiny', not 'other'"),
        (["train", "tiny", "--distil-from", "999"], "No evaluation with id 999"),
        (
            ["evaluations", "run", "tiny", "--folds", "2", "--distil-from", "{id}"],
            "Evaluate distillation with --distil-teachers N",
        ),
        (["train", "tiny", "--distil-texts", "other"], "but no teachers are set"),
        (["train", "tiny", "--distil-teachers", "2", "--distil-from", "{id}"], "Use one of them"),
        (["train", "tiny", "--distil-teachers", "2", "--distil-texts", "nope"], "nope"),
    ],
)
def test_teachers_that_cannot_teach_are_refused_before_a_run_is_stored(
    evaluated, arguments, message
):
    db_path, evaluation_id = evaluated
    with open_db(db_path) as db:
        before = db["devmode_runs"].count, db["devmode_evaluations"].count
    result = run_cli(db_path, *[a.format(id=evaluation_id) for a in arguments])
    assert result.exit_code in (1, 2)
    assert message in result.output
    assert "Traceback" not in result.output
    with open_db(db_path) as db:
        assert (db["devmode_runs"].count, db["devmode_evaluations"].count) == before


def test_teachers_of_another_label_set_are_refused(evaluated, tmp_path):
    db_path, evaluation_id = evaluated
    copy = tmp_path / "copy.db"
    with open_db(db_path) as db:
        db.conn.execute("vacuum into ?", [str(copy)])
        # the dataset's labels were renamed after the evaluation (as a label correction would)
    with open_db(copy) as db:
        db.execute("update tiny set label = 'upbeat' where label = 'positive'")
        db.conn.commit()
    result = run_cli(copy, "train", "tiny", "--distil-from", evaluation_id)
    assert result.exit_code == 1
    assert "was of the labels negative, neutral, positive" in result.output
    assert "now has negative, neutral, upbeat" in result.output


def test_few_shot_cannot_distil():
    with pytest.raises(InvalidConfig, match="only the fine-tune loop has"):
        TrainConfig(method="few-shot", distil_teachers=2)


def test_an_evaluation_trains_each_folds_teachers_on_that_fold(evaluated, tiny_model_dir):
    db_path, _ = evaluated
    result = run_cli(
        db_path, "evaluations", "run", "tiny", "--folds", "2", *tiny_train_args(tiny_model_dir),
        "--epochs", "1", "--distil-teachers", "1", "--distil-texts", "other", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["status"] == "completed"
    assert [r["fold"] for r in found["fold_results"]] == [0, 1]
    assert found["config"]["distil_teachers"] == 1
