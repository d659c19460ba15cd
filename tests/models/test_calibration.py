"""Temperature scaling and the expected calibration error: on logits whose true temperature is
known, and on a trained model whose folder carries its temperature to every scorer."""

import json

import numpy as np
import pytest

from devmode.models import calibration
from devmode.models.classifier import MODEL_CARD


def sampled(temperature: float, rows: int = 20_000, seed: int = 0):
    """Logits, and labels drawn from softmax(logits / temperature): a model whose calibrated
    temperature is ``temperature`` by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(rows, 3))
    probabilities = calibration.softmax(logits, temperature).astype(np.float64)
    labels = np.array([rng.choice(3, p=p / p.sum()) for p in probabilities])
    return logits, labels


@pytest.mark.parametrize("truth", [0.5, 1.0, 2.5])
def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_at(truth):
    logits, labels = sampled(truth)
    assert calibration.fit_temperature(logits, labels) == pytest.approx(truth, rel=0.05)


def test_scaling_an_over_confident_model_lowers_its_calibration_error_and_keeps_its_labels():
    logits, labels = sampled(2.5)
    fit, check = slice(0, 10_000), slice(10_000, None)
    temperature = calibration.fit_temperature(logits[fit], labels[fit])
    report = calibration.calibration_report(logits[check], labels[check], temperature)
    assert report["ece_before"] > 0.1  # raw logits are twice as sure as they should be
    assert report["ece_after"] < 0.02
    assert report["bins"] == 15 and report["rows"] == 10_000
    before = calibration.softmax(logits[check])
    after = calibration.softmax(logits[check], temperature)
    assert (before.argmax(1) == after.argmax(1)).all()
    assert np.allclose(after.sum(1), 1, atol=1e-5)


def test_reliability_bins_hold_every_row_once_and_report_confidence_and_accuracy():
    probabilities = np.array([[0.95, 0.05], [0.91, 0.09], [0.55, 0.45], [0.2, 0.8], [0.5, 0.5]])
    labels = np.array([0, 1, 0, 1, 1])
    bins = calibration.reliability_bins(probabilities, labels, bins=10)
    assert sum(b["rows"] for b in bins) == 5
    top = next(b for b in bins if b["low"] == pytest.approx(0.9))
    assert top["rows"] == 2 and top["confidence"] == pytest.approx(0.93)
    assert top["accuracy"] == 0.5  # one of the two sure rows is wrong
    # by hand: |0.5-0.93|*2 + |1-0.55| + |1-0.8| + |0-0.5| (a tie predicts class 0), over 5
    expected = (0.86 + 0.45 + 0.2 + 0.5) / 5
    assert calibration.expected_calibration_error(probabilities, labels, 10) == pytest.approx(
        expected
    )


@pytest.mark.parametrize("labels", [[1, 1, 1, 1], [0], []], ids=["one class", "one row", "none"])
def test_a_validation_split_of_one_class_cannot_fit_a_temperature(labels):
    logits = np.zeros((len(labels), 3))
    with pytest.raises(calibration.CalibrationNotPossible) as caught:
        calibration.fit_temperature(logits, np.array(labels, dtype=int))
    message = str(caught.value)
    assert "at least two classes" in message and "Split the dataset again" in message


def test_a_run_fits_its_temperature_reports_it_and_every_scorer_uses_it(word_classifier):
    from devmode.models.scorers import load_scorer

    card = json.loads((word_classifier / MODEL_CARD).read_text())
    temperature = card["temperature"]
    assert calibration.MIN_TEMPERATURE < temperature < calibration.MAX_TEMPERATURE
    assert temperature != 1.0
    texts = ["up good shares", "down awful", "flat steady sales", "shares"]
    scorer = load_scorer(word_classifier, precision="fp32")
    assert scorer.temperature == temperature
    expected = calibration.softmax(scorer.raw_scores(texts), temperature)
    assert np.allclose(scorer.score(texts).probabilities, expected, atol=1e-5)


def test_the_int8_scorer_divides_by_the_same_temperature(word_classifier, tmp_path, monkeypatch):
    import shutil

    from devmode.models import quantized
    from devmode.models.scorers import load_scorer

    folder = tmp_path / "model"
    shutil.copytree(word_classifier, folder)
    texts = ["up good shares", "down awful", "flat steady sales", "shares up"] * 5
    # whatever this CPU would choose, keep the int8 form: its temperature is what is checked
    monkeypatch.setattr(
        quantized,
        "_compared",
        lambda *args: {"agreement": 1.0, "agreement_by_part": {}, "texts_per_s": 1e9},
    )
    monkeypatch.setattr(quantized, "cpu_has_native_bf16", lambda: False)
    assert quantized.build_int8(folder, texts)["precision"] == "int8"
    small = quantized.load_int8(folder)
    full = load_scorer(folder, precision="fp32")
    assert small.temperature == full.temperature != 1.0
    assert np.allclose(small.score(texts).probabilities, full.score(texts).probabilities, atol=0.05)


def test_a_folder_without_a_temperature_scores_at_one(word_classifier, tmp_path):
    import shutil

    from devmode.models.scorers import load_scorer

    folder = tmp_path / "old"
    shutil.copytree(word_classifier, folder)
    card = json.loads((folder / MODEL_CARD).read_text())
    del card["temperature"]  # a model saved before runs were calibrated
    (folder / MODEL_CARD).write_text(json.dumps(card))
    assert calibration.stored_temperature(folder) == 1.0
    assert load_scorer(folder, precision="fp32").temperature == 1.0
