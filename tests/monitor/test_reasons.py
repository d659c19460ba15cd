"""The words behind a scored text: found once with the model that scored it, then read back;
never a reason to fail the table or the delivery that shows them."""

import pytest

from devmode.db import open_db
from devmode.models import registry
from devmode.models.inference import load_full
from devmode.monitor import reasons, trends
from devmode.monitor.monitoring import score_dataset
from tests.conftest import FakeScorer


def week_rows(db):
    score_dataset(db, "news", scorer=FakeScorer())  # stored with the active model's id
    return trends.texts_in_period(db, "news", period="week", start="2020-05-18", with_model=True)


def test_texts_get_their_top_words_once_then_from_the_store(news_copy, word_classifier):
    loads = []
    scorer = load_full(word_classifier, "cpu")  # a model whose words are known

    def scorer_for(model):
        loads.append(model.id)
        return scorer

    def broken(model):
        raise AssertionError("explained again instead of read back")

    with open_db(news_copy) as db:
        rows = week_rows(db)
        shown = reasons.with_top_words(db, rows, scorer_for=scorer_for)
        assert [r["text"] for r in shown] == ["down bad", "down awful", "up good"]
        assert [r["top_words"][:1] for r in shown] == [["bad"], ["awful"], ["good"]]
        assert "model_id" not in shown[0] and loads == [registry.active_model(db, "sentiment").id]
        assert reasons.with_top_words(db, rows, scorer_for=broken) == shown
        assert db[reasons.TABLE].count == 3
        registry.delete_model(db, 1)  # the words go with the model
        assert db[reasons.TABLE].count == 0
        assert [r["top_words"] for r in reasons.with_top_words(db, rows)] == [[], [], []]


def test_a_model_that_cannot_explain_leaves_its_rows_without_words(news_copy):
    def broken(model):
        raise RuntimeError("the model folder is unreadable")

    with open_db(news_copy) as db:
        rows = week_rows(db)
        shown = reasons.with_top_words(db, rows, scorer_for=broken)
        assert [r["top_words"] for r in shown] == [[], [], []]
        assert db[reasons.TABLE].count == 0


@pytest.mark.parametrize("limit, explained", [(1, 1), (0, 0)])
def test_only_the_first_rows_are_explained_at_once(news_copy, word_classifier, limit, explained):
    scorer = load_full(word_classifier, "cpu")
    with open_db(news_copy) as db:
        shown = reasons.with_top_words(
            db, week_rows(db), limit=limit, scorer_for=lambda model: scorer
        )
        assert sum(bool(r["top_words"]) for r in shown) == explained
