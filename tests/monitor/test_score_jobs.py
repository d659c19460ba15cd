"""Scoring as a job: topic then sentiment, progress in SQLite, cancel, interrupted and resumed."""

import json

import pytest

from devmode import jobs
from devmode.db import open_db
from devmode.finetune import worker
from devmode.jobs import JobAlreadyRunning
from devmode.models import registry, runs, scorers
from devmode.monitor import alerts, monitoring, score_jobs, trends
from tests.conftest import FakeScorer, tiny_config, wait_for_job


class FakeTopicScorer(FakeScorer):
    """Topic by the second word, so trends per topic can be checked by hand."""

    label_names = ["earnings", "macro"]

    def score(self, texts):
        self.calls += 1
        import numpy as np

        from devmode.models.inference import Scores

        macro = {"awful", "steady"}
        probabilities = np.array(
            [[0.1, 0.9] if t.split()[1] in macro else [0.9, 0.1] for t in texts], dtype=np.float32
        )
        return Scores(
            [self.label_names[int(p.argmax())] for p in probabilities],
            probabilities,
            self.label_names,
        )


def promote_topic_model(db_path, tiny_model_dir):
    """A second finished run, made the active topic model (the fixture's is the sentiment one)."""
    with open_db(db_path) as db:
        run = runs.create_run(db, "tiny", tiny_config(tiny_model_dir, epochs=1, seed=7))
    worker.execute_run(db_path, run.id)
    with open_db(db_path) as db:
        registry.promote(db, run.id, "topic")


@pytest.mark.parametrize("topic_first", [True, False])
def test_trends_by_topic_whichever_model_scores_first(news_db, tiny_model_dir, topic_first):
    promote_topic_model(news_db, tiny_model_dir)
    with open_db(news_db) as db:
        order = [("topic", FakeTopicScorer()), ("sentiment", FakeScorer())]
        for task, scorer in order if topic_first else order[::-1]:
            monitoring.score_dataset(db, "news", task=task, scorer=scorer)
        assert trends.scored_topics(db, "news") == ["earnings", "macro"]
        macro = trends.sentiment_trend(db, "news", period="week", topic="macro")
        # "down awful" (2020-05-20, B) and "flat steady" (2020-05-25, B)
        assert [(p["period"], p["volume"], p["share_negative"]) for p in macro] == [
            ("2020-05-18", 1, 1.0),
            ("2020-05-25", 1, 0.0),
        ]
        assert trends.sentiment_trend(db, "news", period="week", ticker="A", topic="macro") == []
        by_topic = {r["topic"]: r for r in trends.sentiment_by_topic(db, "news")}
        assert by_topic["macro"]["volume"] == 2 and by_topic["earnings"]["volume"] == 3
        assert by_topic["macro"]["sentiment"] == pytest.approx((-0.7 + 0.0) / 2)
        texts = trends.texts_in_period(db, "news", period="week", start="2020-05-18", topic="macro")
        assert [(t["text"], t["topic"]) for t in texts] == [("down awful", "macro")]


def test_an_alert_rule_per_topic(news_db, tiny_model_dir):
    promote_topic_model(news_db, tiny_model_dir)
    with open_db(news_db) as db:
        rule = alerts.add_alert_rule(
            db, "news", kind="share_negative", threshold=0.5, min_volume=1, topic="macro"
        )
        assert "topic macro" in rule.describe()
        monitoring.score_dataset(db, "news", task="topic", scorer=FakeTopicScorer())
        summary = monitoring.score_dataset(db, "news", scorer=FakeScorer())
        assert summary.new_alerts == 1
        (event,) = alerts.alert_events(db, "news")
        assert (event["period_start"], event["topic"], event["volume"]) == (
            "2020-05-18",
            "macro",
            1,
        )


def test_a_job_scores_topic_then_sentiment_in_a_worker_process(news_db, tiny_model_dir):
    promote_topic_model(news_db, tiny_model_dir)
    with open_db(news_db) as db:
        job = score_jobs.create_job(db, "news")
        assert job.tasks == ["topic", "sentiment"] and job.status == "queued"
    score_jobs.start_job(news_db, job.id)
    job = wait_for_job(news_db)
    assert job.status == "completed", job.error
    assert (job.summary["topic"]["scored"], job.summary["sentiment"]["scored"]) == (6, 6)
    assert job.summary["sentiment"]["unparseable_dates"] == 1
    with open_db(news_db) as db:
        assert db["devmode_predictions"].count_where("task = 'sentiment' and topic is null") == 0


def test_a_cancelled_job_keeps_whole_chunks_and_resumes(news_db, monkeypatch):
    monkeypatch.setattr(monitoring, "CHUNK_ROWS", 2)
    monkeypatch.setattr(jobs, "CANCEL_POLL_SECONDS", 0)

    class CancelAfterFirstChunk(FakeScorer):
        def score(self, texts):
            if self.calls == 0:
                with open_db(news_db) as db:
                    score_jobs.request_cancel(db, 1)
            return super().score(texts)

    monkeypatch.setattr(scorers, "load_scorer", lambda path: CancelAfterFirstChunk())
    with open_db(news_db) as db:
        job = score_jobs.create_job(db, "news")
    assert score_jobs.execute_job(news_db, job.id).status == "cancelled"
    with open_db(news_db) as db:
        assert db["devmode_predictions"].count == 2
        assert score_jobs.get_job(db, job.id).summary["sentiment"]["scored"] == 2
    monkeypatch.setattr(scorers, "load_scorer", lambda path: FakeScorer())
    resumed = score_jobs.execute_job(news_db, job.id)
    assert resumed.status == "completed" and resumed.summary["sentiment"]["scored"] == 6


def test_a_dead_worker_leaves_the_job_interrupted_and_one_job_at_a_time(news_db):
    with open_db(news_db) as db:
        job = score_jobs.create_job(db, "news")
        db["devmode_score_jobs"].update(job.id, {"status": "running", "pid": 2**22 + 12345})
        with pytest.raises(JobAlreadyRunning):
            db["devmode_score_jobs"].update(job.id, {"pid": None})  # running, pid not yet known
            score_jobs.create_job(db, "news")
        db["devmode_score_jobs"].update(job.id, {"pid": 2**22 + 12345})
        assert score_jobs.reconcile(db) == [job.id]
        job = score_jobs.get_job(db, job.id)
        assert job.status == "interrupted" and "Resume it" in job.error


def test_a_job_is_refused_before_it_starts_without_a_sentiment_mapping(news_db):
    with open_db(news_db) as db:
        model = registry.active_model(db, "sentiment")
        db["devmode_models"].update(model.id, {"labels": json.dumps(["up", "down"])})
        with pytest.raises(registry.NotSentimentLike):
            score_jobs.create_job(db, "news")
        assert db["devmode_score_jobs"].count == 0


def test_the_cli_scores_in_the_foreground_and_the_background(news_db):
    from click.testing import CliRunner

    from devmode.cli import cli

    def run(*args):
        return CliRunner().invoke(cli, ["--db", news_db, *args])

    started = run("score", "news", "--background")
    assert started.exit_code == 0 and "Scoring job 1 started" in started.output
    assert wait_for_job(news_db).status == "completed"
    again = run("score", "news")
    assert again.exit_code == 0 and "Scored 0 rows" in again.output
    nothing = run("score", "news", "--cancel")
    assert nothing.exit_code == 1 and "No scoring job is running on news" in nothing.output
