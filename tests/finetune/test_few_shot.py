"""Few-shot runs: SetFit on a handful of rows per class, saved as a devmode classifier with the
same run bookkeeping, report and registry as a fine-tune."""

import numpy as np
import pytest

from devmode.data import examples, ingest, readers, splits
from devmode.db import open_db
from devmode.finetune import reports, worker
from devmode.models import methods, registry, runs
from devmode.models.config import InvalidConfig, TrainConfig
from devmode.models.scorers import load_scorer
from tests.conftest import tiny_config, tiny_rows, write_csv


def _store(db_path, tmp_path, name, rows):
    upload = readers.read_upload(write_csv(tmp_path / f"{name}.csv", rows))
    with open_db(db_path) as db:
        ingest.insert_upload(
            db,
            upload,
            name,
            ingest.ColumnMapping("text", "label"),
            splits.SplitSpec(0.6, 0.2, 0.2),
        )


def test_a_few_shot_run_trains_reports_and_registers_like_a_fine_tune(
    db_path, tmp_path, tiny_model_dir
):
    rows = [{"text": r["text"], "label": r["label"]} for r in tiny_rows(30)]  # 10 a class
    _store(db_path, tmp_path, "small", rows)
    with open_db(db_path) as db:
        data = examples.load_examples(db, "small")
        counts = ingest.dataset_stats(db, "small").label_counts
        assert "fewer than 64 labelled rows: negative (10)" in methods.few_shot_offer(counts)
        queued = runs.create_run(db, "small", tiny_config(tiny_model_dir, method="few-shot"))
    assert worker.execute_run(db_path, queued.id) == "completed"
    with open_db(db_path) as db:
        done = runs.get_run(db, queued.id)
        model = registry.get_model_for_run(db, done.id)
        progress = runs.metrics_for_run(db, done.id)
    assert done.config.method == "few-shot" and done.test["n"] == len(data.test)
    assert done.baseline["zero_shot"] and done.validation["accuracy"] is not None
    assert {m["name"] for m in progress} >= {"train_loss", "eval_macro_f1"}
    assert "few-shot (SetFit)" in [row["model"] for row in reports.before_after(done)]
    assert "epoch 1/1" in done.status_line(progress)  # one pass over the pairs
    # the saved classifier scores the test texts as the run's report says it does
    scores = load_scorer(model.path, precision="fp32").score([t for t, _ in data.test])
    truth = [label for _, label in data.test]
    accuracy = np.mean([p == t for p, t in zip(scores.labels, truth, strict=True)])
    assert accuracy == pytest.approx(done.test["accuracy"])


def test_the_encoder_trains_at_the_runs_max_length(tiny_model_dir, tiny_data, monkeypatch):
    """SetFit's own max_length setting does not reach the encoder's pair training; the run's
    does."""
    import setfit

    from devmode.finetune.few_shot import train_few_shot

    loaded = []
    original = setfit.SetFitModel.from_pretrained

    def keep(*args, **kwargs):
        loaded.append(original(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(setfit.SetFitModel, "from_pretrained", keep)
    config = tiny_config(tiny_model_dir, method="few-shot", max_length_tokens=12)
    train_few_shot(config, tiny_data)
    assert loaded[0].model_body.max_seq_length == 12


def test_the_converted_classifier_gives_setfits_own_probabilities(tiny_model_dir, tiny_data):
    from setfit import SetFitModel

    from devmode.finetune.few_shot import as_text_classifier
    from devmode.models.classifier import encode, predict_probabilities

    model = SetFitModel.from_pretrained(str(tiny_model_dir))
    texts = [t for t, _ in tiny_data.train]
    y = [tiny_data.labels.index(label) for _, label in tiny_data.train]
    model.model_head.fit(model.model_body.encode(texts), y)
    classifier, tokenizer = as_text_classifier(model, len(tiny_data.labels))
    ours = predict_probabilities(
        classifier,
        encode(tokenizer, tiny_data.test, tiny_data.labels, 64),
        16,
        tokenizer.pad_token_id,
        __import__("torch").device("cpu"),
        False,
    )
    theirs = model.predict_proba([t for t, _ in tiny_data.test]).numpy()
    assert np.allclose(ours, theirs, atol=1e-4)


def test_few_shot_refuses_a_class_it_cannot_pair_and_settings_it_does_not_use(
    db_path, tmp_path, tiny_model_dir
):
    rows = [{"text": r["text"], "label": r["label"]} for r in tiny_rows(30)]
    rows += [{"text": "shares flat", "label": "mixed"}] * 3  # one row in train, after the split
    _store(db_path, tmp_path, "lonely", rows)
    with open_db(db_path) as db:
        with pytest.raises(
            examples.InvalidTrainingData,
            match=r"at least 2 in the training split; found \{'mixed': 1\}",
        ):
            runs.create_run(db, "lonely", tiny_config(tiny_model_dir, method="few-shot"))
        assert runs.list_runs(db) == []
    with pytest.raises(InvalidConfig, match="few-shot.*lora"):
        TrainConfig(method="few-shot", lora=True)
