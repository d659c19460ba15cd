"""Word explanations on a classifier whose labels the words give away (the tiny test model,
trained on ``tiny_rows``): both methods must find those words, weigh whole words, and say why
a text has none."""

import numpy as np
import pytest

from devmode.models.explain import METHODS, Explainer
from devmode.models.inference import load_full


@pytest.fixture(scope="module")
def scorer(word_classifier):
    return load_full(word_classifier, "cpu")


@pytest.mark.parametrize("method", METHODS)
def test_the_words_that_give_the_label_away_weigh_most(scorer, method):
    texts = ["shares shares profit shares", "shares fell shares shares", "steady shares shares"]
    explained = Explainer(scorer, method=method).explain(texts)
    assert [why.label for why in explained] == ["positive", "negative", "neutral"]
    assert [why.top_word_texts(1) for why in explained] == [["profit"], ["fell"], ["steady"]]
    for why in explained:
        assert [w.word for w in why.words] == why.text.split()
        top = why.top_words(1)[0]
        assert top.label == why.label and top.weight > 0
        assert why.text[top.start : top.end] == top.word


def test_a_words_weights_over_the_classes_sum_to_nothing_with_occlusion(scorer):
    (why,) = Explainer(scorer, method="occlusion").explain(["great profit but sales fell"])
    # deleting a word moves probability between classes: what one gains, others lose
    explainer = Explainer(scorer, method="occlusion")
    words = explainer._words(why.text)
    full = explainer.without_words([(why.text, set())])[0]
    for i, word in enumerate(why.words):
        without = explainer.without_words([(why.text, {i})])[0]
        assert np.isclose((full - without).sum(), 0, atol=1e-5)
        # its class is the one its deletion costs most, by that much
        assert word.label == scorer.label_names[int((full - without).argmax())]
        assert word.weight == pytest.approx(float((full - without).max()), abs=1e-5)
    assert len(words.positions) == 5


def test_integrated_gradients_add_up_to_the_change_from_the_baseline(scorer):
    explainer = Explainer(scorer, method="integrated-gradients", steps=48)
    (why,) = explainer.explain(["shares rose on great profit"])
    blank = explainer.without_words([(why.text, set(range(len(why.words))))])[0]
    predicted = scorer.label_names.index(why.label)
    moved = why.probabilities[why.label] - blank[predicted]
    assert sum(why.for_label) == pytest.approx(moved, abs=0.05)
    assert explainer.last_delta < 0.05


def test_texts_with_nothing_to_weigh_get_a_note_and_the_others_are_explained(scorer):
    texts = ["", "\u200b\u200b\u200b", "profit rose", " "]
    explained = Explainer(scorer).explain(texts)
    assert [len(why.words) for why in explained] == [0, 0, 2, 0]
    assert explained[0].note == "The text is empty."
    assert "reads no word" in explained[1].note and explained[2].note is None
    assert explained[1].top_words(5) == []


def test_a_text_longer_than_the_model_reads_is_cut_as_scoring_cuts_it(scorer):
    text = "profit " * 20_000  # 140,000 characters
    (why,) = Explainer(scorer).explain([text])
    assert why.truncated and 0 < len(why.words) <= scorer.max_length
    assert why.label == scorer.score([text]).labels[0]


def test_the_pieces_of_a_word_are_weighed_as_one_word(embedded_base_scorer):
    text = "Unprofitability worsened at Nordea"
    tokens = embedded_base_scorer.tokenizer.tokenize(text)
    assert len(tokens) > 4  # the words are cut into pieces
    (why,) = Explainer(embedded_base_scorer).explain([text])
    assert [w.word for w in why.words] == ["Unprofitability", "worsened", "at", "Nordea"]
    assert sum(why.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
