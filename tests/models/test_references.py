"""Model references: parsed in one place, resolved to what they name now, refused with what to
do."""

import pytest

from devmode.data import ingest, readers, splits
from devmode.db import open_db
from devmode.finetune import worker
from devmode.models import references, registry, runs
from devmode.models.references import InvalidReference, parse_reference, resolve
from tests.conftest import tiny_config, tiny_rows, write_csv


@pytest.mark.parametrize(
    "text, shown",
    [("3", "3"), (" Active-Sentiment ", "active-sentiment"), ("active-topic", "active-topic"),
     ("BASE", "base"), (7, "7")],
)  # fmt: skip
def test_a_reference_is_a_run_an_active_model_or_the_base(text, shown):
    assert str(parse_reference(text)) == shown


@pytest.mark.parametrize("text", ["", "run 3", "active-", "active-mood", "-1", "3.5", "x" * 500])
def test_anything_else_is_refused_with_what_was_expected(text):
    with pytest.raises(InvalidReference, match="Expected a run id .3., active-sentiment") as e:
        parse_reference(text)
    assert len(str(e.value)) < 300


def test_a_list_keeps_each_model_once_and_at_most_three():
    assert [str(r) for r in references.parse_references("3, base,3", 3)] == ["3", "base"]
    with pytest.raises(InvalidReference, match="At most 3 models"):
        references.parse_references("1,2,3,4", 3)


def test_resolved_models_say_which_they_are(news_db):
    with open_db(news_db) as db:
        active = resolve(db, "active-sentiment")
        run = resolve(db, "1")
        base = resolve(db, "base")
    assert active.title == "active sentiment: run 1 (tiny)" and active.model_dir == run.model_dir
    assert run.title == "run 1 (tiny)" and run.labels == ["negative", "neutral", "positive"]
    # base scores against the active sentiment model's labels, with its base model
    assert base.model_dir is None and base.labels == active.labels
    assert base.base_model == run.base_model and "zero-shot" in base.title


def test_what_cannot_be_tried_is_refused_with_what_to_do(news_db, tiny_model_dir):
    with open_db(news_db) as db:
        queued = runs.create_run(db, "tiny", tiny_config(tiny_model_dir, epochs=1))
        with pytest.raises(InvalidReference, match=f"Run {queued.id} is still queued"):
            resolve(db, str(queued.id))
        with pytest.raises(InvalidReference, match="No run with id 99"):
            resolve(db, "99")
        with pytest.raises(InvalidReference, match="No model is active for topic"):
            resolve(db, "active-topic")
        with pytest.raises(InvalidReference, match="none is active"):
            resolve(db, "base", task="topic")
        with pytest.raises(InvalidReference, match="is the sentiment model; asked for topic"):
            resolve(db, "active-sentiment", task="topic")
        registry.delete_model(db, 1)
        with pytest.raises(InvalidReference, match="Run 1 .completed. has no saved model"):
            resolve(db, "1")


def train_topic_model(db_path, tmp_path, tiny_model_dir) -> int:
    """A finished run whose labels are topics (earnings, macro)."""
    names = {"positive": "earnings", "negative": "macro", "neutral": "macro"}
    rows = [{"text": r["text"], "label": names[r["label"]]} for r in tiny_rows(60)]
    path = write_csv(tmp_path / "topics.csv", rows)
    with open_db(db_path) as db:
        ingest.insert_upload(
            db,
            readers.read_upload(path),
            "topics",
            ingest.ColumnMapping("text", "label"),
            splits.SplitSpec(0.6, 0.2, 0.2),
        )
        run = runs.create_run(db, "topics", tiny_config(tiny_model_dir, epochs=1))
    worker.execute_run(db_path, run.id)
    return run.id


def test_a_topic_model_is_refused_for_sentiment(news_db, tmp_path, tiny_model_dir):
    run_id = train_topic_model(news_db, tmp_path, tiny_model_dir)
    with open_db(news_db) as db:
        assert resolve(db, str(run_id)).labels == ["earnings", "macro"]
        with pytest.raises(registry.NotSentimentLike, match="do not read as"):
            resolve(db, str(run_id), task="sentiment")


def test_the_cache_loads_a_model_once(news_db):
    with open_db(news_db) as db:
        chosen = resolve(db, "1")
    cache = references.ModelCache(size=1)
    first = cache.scorer(chosen)
    assert cache.scorer(chosen) is first
    assert first.score(["up good"]).label_names == chosen.labels
