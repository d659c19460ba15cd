"""int8 scoring: the model exported to ONNX and quantised, checked against full precision, used
on the CPU only when it agrees, and its agreement shown with the model."""

import json
from pathlib import Path

import numpy as np
import pytest

from devmode.db import open_db
from devmode.models import int8, quantized, registry, scorers
from devmode.models.scorers import load_scorer

pytest.importorskip("onnxruntime")

CHECK = [
    "shares rose on good profit",
    "loss widened as sales fell",
    "flat steady sales",
    "awful quarter for the movie",
    "great profit and shares rose",
    "bad loss",
] * 20


@pytest.fixture
def model_dir(news_copy):
    with open_db(news_copy) as db:
        return registry.active_model(db, "sentiment").path


def test_build_checks_the_int8_model_against_full_precision(model_dir, monkeypatch):
    card = quantized.build_int8(model_dir, CHECK)
    assert card["check_texts"] == len(CHECK)
    assert 0.0 <= card["agreement"] <= 1.0
    assert card["used"] == (card["agreement"] >= int8.MIN_AGREEMENT)
    assert int8.int8_card(model_dir) == card
    chosen = load_scorer(model_dir)
    assert chosen.precision == ("int8" if card["used"] else "fp32")
    full = load_scorer(model_dir, precision="fp32")
    small = quantized.load_int8(model_dir)
    a, b = full.score(CHECK), small.score(CHECK)
    assert small.precision == "int8" and b.label_names == a.label_names
    agreement = float((a.probabilities.argmax(1) == b.probabilities.argmax(1)).mean())
    assert agreement == pytest.approx(card["agreement"])
    assert np.allclose(b.probabilities.sum(1), 1.0, atol=1e-5)
    assert np.abs(a.probabilities - b.probabilities).max() < 0.2  # int8, not another model


def test_scoring_builds_the_check_once_and_the_registry_shows_it(news_copy):
    with open_db(news_copy) as db:
        model = registry.active_model(db, "sentiment")
        assert int8.int8_card(model.path) is None
        assert registry.model_rows(db)[0]["CPU scoring"] == "not checked yet"
        texts = scorers.check_texts(db, model.dataset)
        assert 0 < len(texts) <= int8.CHECK_TEXTS  # the tiny dataset's test and validation texts
        scorer = scorers.model_scorer(db, model, "news")
        card = int8.int8_card(model.path)
        assert card["check_texts"] == len(texts)
        assert scorer.precision == ("int8" if card["used"] else "fp32")
        shown = registry.model_rows(db)[0]["CPU scoring"]
        assert f"{card['agreement']:.1%} of {len(texts):,} texts" in shown
        before = (Path(model.path) / int8.INT8_CARD).stat().st_mtime_ns
        scorers.model_scorer(db, model, "news")
        assert (Path(model.path) / int8.INT8_CARD).stat().st_mtime_ns == before  # checked once


def test_a_failed_build_is_recorded_and_scoring_stays_in_full_precision(news_copy, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("cannot export this encoder")

    monkeypatch.setattr(quantized, "build_int8", broken)
    with open_db(news_copy) as db:
        model = registry.active_model(db, "sentiment")
        scorer = scorers.model_scorer(db, model, "news")
        assert scorer.precision == "fp32"
        card = json.loads((Path(model.path) / int8.INT8_CARD).read_text())
        assert not card["used"] and "cannot export this encoder" in card["error"]
        assert "could not be built" in registry.model_rows(db)[0]["CPU scoring"]
