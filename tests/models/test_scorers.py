import numpy as np
import pytest
import torch

from devmode.models import calibration, classifier, inference
from devmode.models.base_models import InvalidBaseModel
from devmode.models.scorers import load_scorer
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def trained_dir(tiny_model_dir, tmp_path_factory):
    from devmode.data.examples import TrainData
    from devmode.finetune.training import train
    from tests.conftest import tiny_rows

    path = tmp_path_factory.mktemp("model") / "run-1"
    train(
        tiny_config(tiny_model_dir, epochs=4, early_stopping_patience=0),
        TrainData.from_rows(tiny_rows()),
        output_dir=path,
    )
    return path


@pytest.fixture(scope="module")
def hf_classifier_dir(tiny_model_dir, tmp_path_factory):
    """A plain Hugging Face sequence classifier folder, as FinBERT and friends are shipped."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    path = tmp_path_factory.mktemp("hf-classifier")
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(
        tiny_model_dir,
        num_labels=3,
        id2label={0: "negative", 1: "neutral", 2: "positive"},
        label2id={"negative": 0, "neutral": 1, "positive": 2},
    )
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(path)
    return path


TEXTS = [
    "shares rose",
    "",
    "loss fell awful bad bad bad loss",
    "sales steady",
    "good profit great rose",
] * 7


def test_devmode_model_scores_like_its_training_evaluation(trained_dir):
    scorer = load_scorer(trained_dir)
    seen = []
    scores = scorer.score(TEXTS, on_progress=lambda done, total: seen.append((done, total)))
    assert scores.label_names == ["negative", "neutral", "positive"]
    assert scores.probabilities.shape == (len(TEXTS), 3)
    assert np.allclose(scores.probabilities.sum(1), 1, atol=1e-5)
    model, tokenizer, card = classifier.load_classifier(trained_dir)
    examples = [(t, "neutral") for t in TEXTS]
    encoded = classifier.encode(tokenizer, examples, card["labels"], 128)
    logits = classifier.predict_logits(
        model, encoded, 64, tokenizer.pad_token_id, torch.device("cpu"), False
    )
    expected = calibration.softmax(logits, card["temperature"])  # as the run's report scores
    assert np.allclose(scores.probabilities, expected, atol=1e-5)
    assert seen[-1] == (len(TEXTS), len(TEXTS))
    assert scores.labels[4] == "positive" and scores.labels[2] == "negative"


def test_results_come_back_in_input_order(trained_dir):
    scorer = load_scorer(trained_dir)
    forward = scorer.score(TEXTS)
    backward = scorer.score(TEXTS[::-1])
    assert np.allclose(forward.probabilities, backward.probabilities[::-1], atol=1e-5)


def test_stopping_leaves_unscored_rows_empty(trained_dir, monkeypatch):
    monkeypatch.setattr(inference, "CPU_TOKENS_PER_BATCH", 16)
    calls = []
    scores = load_scorer(trained_dir).score(
        TEXTS, should_stop=lambda: calls.append(1) or len(calls) > 2
    )
    scored = [label for label in scores.labels if label is not None]
    assert 0 < len(scored) < len(TEXTS)
    assert np.isnan(
        scores.probabilities[[i for i, lab in enumerate(scores.labels) if lab is None]]
    ).all()


def test_hugging_face_classifier_matches_the_pipeline(hf_classifier_dir):
    from transformers import pipeline

    scores = load_scorer(hf_classifier_dir).score(TEXTS)
    assert scores.label_names == ["negative", "neutral", "positive"]
    classify = pipeline(
        "text-classification", model=str(hf_classifier_dir), device="cpu", top_k=None
    )
    for text, row in zip(TEXTS, scores.probabilities, strict=True):
        by_label = {r["label"]: r["score"] for r in classify([text])[0]}
        assert [by_label[name] for name in scores.label_names] == pytest.approx(
            row.tolist(), abs=1e-5
        )


def test_token_budget_batches():
    lengths = np.array([3, 50, 7, 7, 20, 2, 50, 9])
    batches = classifier.token_budget_batches(lengths, budget=60)
    assert sorted(np.concatenate(batches).tolist()) == list(range(8))
    assert all(len(b) * lengths[b].max() <= 60 or len(b) == 1 for b in batches)
    assert [len(b) for b in batches] == [5, 1, 1, 1]  # 5 x 9 tokens, then 20 and 50 alone


def test_a_folder_that_is_not_a_classifier_is_explained(tmp_path):
    with pytest.raises(InvalidBaseModel, match="neither devmode_model.json"):
        load_scorer(tmp_path)


def test_a_base_model_folder_without_its_tokenizer_is_refused(tiny_model_dir, tmp_path):
    """transformers 5 would build an empty tokenizer from the config alone, and training would
    read every word as [UNK]; every model load goes through one tokenizer loader that refuses."""
    import shutil

    from devmode.models.classifier import load_encoder

    folder = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_model_dir, folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(InvalidBaseModel, match="has no tokenizer files"):
        load_encoder(str(folder))
