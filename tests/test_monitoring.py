import numpy as np
import pytest

from devmode import ingest, models, monitoring, runs, worker
from devmode.db import open_db
from devmode.monitoring import (
    NoActiveModel,
    NoDateColumn,
    NotSentimentLike,
    parse_date,
    score_dataset,
    sentiment_trend,
)
from devmode.readers import read_upload
from devmode.scoring import Scores
from tests.conftest import store_tiny_dataset, tiny_config, write_csv


@pytest.mark.parametrize(
    "value,expected",
    [
        ("2020-05-22", "2020-05-22"),
        ("2020-05-22 23:30:00-04:00", "2020-05-22"),  # the calendar date where it was published
        ("2020-05-22T03:30:00Z", "2020-05-22"),
        ("2020/05/22", "2020-05-22"),
        ("22.05.2020", "2020-05-22"),
        ("20200522", "2020-05-22"),
        (1590105600, "2020-05-22"),  # epoch seconds, UTC
        ("05/22/2020", None),  # day/month order is not guessed
        ("2020-02-30", None),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_date(value, expected):
    assert parse_date(value) == expected


class FakeScorer:
    """Probabilities that follow the words, so the aggregates can be checked by hand."""

    label_names = ["negative", "neutral", "positive"]

    def __init__(self):
        self.calls = 0

    def score(self, texts):
        self.calls += 1
        table = {"down": [0.8, 0.1, 0.1], "flat": [0.1, 0.8, 0.1], "up": [0.1, 0.1, 0.8]}
        probabilities = np.array([table[t.split()[0]] for t in texts], dtype=np.float32)
        return Scores(
            [self.label_names[int(p.argmax())] for p in probabilities],
            probabilities,
            self.label_names,
        )


@pytest.fixture
def news_db(db_path, tmp_path, tiny_model_dir):
    """Dated headlines with tickers, and a completed, promoted sentiment model."""
    rows = [
        {"date": "2020-05-18", "ticker": "A", "text": "down bad"},  # Monday
        {"date": "2020-05-20 10:00:00-04:00", "ticker": "A", "text": "up good"},
        {"date": "2020-05-20", "ticker": "B", "text": "down awful"},
        {"date": "2020-05-25", "ticker": "B", "text": "flat steady"},  # next Monday
        {"date": "2020-06-02", "ticker": "A", "text": "up great"},
        {"date": "someday", "ticker": "A", "text": "flat sales"},
    ]
    path = write_csv(tmp_path / "news.csv", rows)
    store_tiny_dataset(db_path, tmp_path)
    with open_db(db_path) as db:
        ingest.insert_upload(
            db,
            read_upload(path),
            "news",
            ingest.ColumnMapping("text", date="date", ticker="ticker"),
        )
        run = runs.create_run(db, tiny_config(tiny_model_dir, epochs=1))
    worker.execute_run(db_path, run.id)
    with open_db(db_path) as db:
        models.promote(db, run.id, "sentiment")
    return db_path


def test_score_then_trend_by_week_month_and_ticker(news_db):
    with open_db(news_db) as db:
        summary = score_dataset(db, "news", scorer=FakeScorer())
        assert (summary.scored, summary.already_scored) == (6, 0)
        assert (summary.unparseable_dates, summary.date_examples) == (1, ["someday"])
        weekly = sentiment_trend(db, "news", period="week")
        assert [p["period"] for p in weekly] == ["2020-05-18", "2020-05-25", "2020-06-01"]
        assert [p["volume"] for p in weekly] == [3, 1, 1]
        assert weekly[0]["sentiment"] == pytest.approx((-0.7 + 0.7 - 0.7) / 3)
        assert weekly[0]["share_negative"] == pytest.approx(2 / 3)
        monthly = sentiment_trend(db, "news", period="month")
        assert [(p["period"], p["volume"]) for p in monthly] == [
            ("2020-05-01", 4),
            ("2020-06-01", 1),
        ]
        daily_b = sentiment_trend(db, "news", period="day", ticker="B")
        assert [(p["period"], p["share_negative"]) for p in daily_b] == [
            ("2020-05-20", 1.0),
            ("2020-05-25", 0.0),
        ]


def test_scoring_is_incremental_and_follows_the_active_model(news_db, tiny_model_dir):
    with open_db(news_db) as db:
        first = FakeScorer()
        score_dataset(db, "news", scorer=first)
        again = FakeScorer()
        summary = score_dataset(db, "news", scorer=again)
        assert (summary.scored, summary.already_scored, again.calls) == (0, 6, 0)
        run = runs.create_run(db, tiny_config(tiny_model_dir, epochs=1, seed=3))
    worker.execute_run(news_db, run.id)
    with open_db(news_db) as db:
        models.promote(db, run.id, "sentiment")
        summary = score_dataset(db, "news", scorer=FakeScorer())
        assert (summary.scored, summary.model_run_id) == (6, run.id)
        assert db["devmode_predictions"].count == 6


def test_a_stopped_job_keeps_whole_chunks_and_resumes(news_db, monkeypatch):
    monkeypatch.setattr(monitoring, "CHUNK_ROWS", 4)
    with open_db(news_db) as db:
        checks = []
        summary = score_dataset(
            db, "news", scorer=FakeScorer(), should_stop=lambda: checks.append(1) or len(checks) > 1
        )
        assert summary.cancelled and summary.scored == 4
        assert db["devmode_predictions"].count == 4
        rest = score_dataset(db, "news", scorer=FakeScorer())
        assert (rest.scored, rest.already_scored) == (2, 4)


def test_the_real_model_scores_the_dataset(news_db):
    with open_db(news_db) as db:
        progress = []
        summary = score_dataset(
            db, "news", on_progress=lambda done, total: progress.append((done, total))
        )
        assert summary.scored == 6 and progress[-1] == (6, 6)
        labels = {r["label"] for r in db["devmode_predictions"].rows}
        assert labels <= {"negative", "neutral", "positive"}


def test_no_active_model_says_what_to_do(db_path, tmp_path):
    store_tiny_dataset(db_path, tmp_path)
    with (
        open_db(db_path) as db,
        pytest.raises(NoActiveModel, match="models promote RUN --as sentiment"),
    ):
        score_dataset(db, "tiny")


def test_labels_that_are_not_sentiment_need_a_mapping(news_db):
    with open_db(news_db) as db:
        model = models.active_model(db, "sentiment")
        db["devmode_models"].update(model.id, {"labels": '["bad", "meh", "good"]'})
        with pytest.raises(NotSentimentLike, match="map-sentiment"):
            score_dataset(db, "news", scorer=FakeScorer())
        with pytest.raises(NotSentimentLike, match="unknown"):
            monitoring.set_sentiment_map(db, model.run_id, ["awful"], ["good"])
        assert monitoring.set_sentiment_map(db, model.run_id, ["bad"], ["good"]) == {
            "bad": "negative",
            "meh": "neutral",
            "good": "positive",
        }


def test_trend_needs_a_date_column(news_db):
    with open_db(news_db) as db:
        with pytest.raises(NoDateColumn, match="--date-column"):
            sentiment_trend(db, "tiny")
        with pytest.raises(Exception, match="period must be one of"):
            sentiment_trend(db, "news", period="year")


def test_score_and_trends_from_the_cli(news_db):
    from click.testing import CliRunner

    from devmode.cli import cli

    def run(*args):
        return CliRunner().invoke(cli, ["--db", news_db, *args])

    scored = run("score", "news")
    assert scored.exit_code == 0, scored.output
    assert "Scored 6 rows with run 1's model (0 were already scored by it)." in scored.output
    assert "1 rows have a date that could not be read (e.g. 'someday')" in scored.output
    assert "Scored 0 rows" in run("score", "news").output
    table = run("trends", "news", "--period", "month").output.splitlines()
    assert table[0].split() == ["month", "sentiment", "negative", "volume"]
    assert [line.split()[0] for line in table[1:]] == ["2020-05-01", "2020-06-01"]
    assert (
        len(
            json_points := __import__("json").loads(
                run("trends", "news", "--json", "--ticker", "B").output
            )
        )
        == 2
    )
    assert {p["volume"] for p in json_points} == {1}
    refused = run("models", "map-sentiment", "1", "--negative", "nope", "--positive", "positive")
    assert refused.exit_code == 1 and "unknown ['nope']" in refused.output
