"""The model's estimated accuracy on live text: the mean top-class probability per period, kept
in step with every write by its rollup, and filled for rows scored before it existed."""

import json

import numpy as np
import pytest

from devmode.db import open_db
from devmode.monitor import health
from devmode.monitor.monitoring import score_dataset
from devmode.monitor.trends import bucket_sql

# How sure the scorer below is, by a text's second word: the estimate can be checked by hand.
SURE = {"bad": 0.9, "good": 0.7, "awful": 0.5, "steady": 0.6, "great": 0.95, "sales": 0.4}


class WordScorer:
    """Probabilities whose top class is the first word's and whose size is the second's."""

    label_names = ["negative", "neutral", "positive"]

    def score(self, texts):
        from devmode.models.inference import Scores

        rows = []
        for text in texts:
            first, second = text.split()[:2]
            top = {"down": 0, "flat": 1, "up": 2}[first]
            sure = SURE[second]
            row = [(1 - sure) / 2] * 3
            row[top] = sure
            rows.append(row)
        probabilities = np.array(rows, dtype=np.float32)
        labels = [self.label_names[int(p.argmax())] for p in probabilities]
        return Scores(labels, probabilities, self.label_names)


def direct_health(db, period="week"):
    """The estimate summed from the predictions themselves, not the rollup."""
    return db.execute(
        f"""select {bucket_sql(period)}, avg(confidence), count(*) from devmode_predictions
            where task = 'sentiment' and date is not null group by 1 order by 1"""
    ).fetchall()


def test_the_estimate_is_the_mean_top_probability_of_each_period(news_db):
    with open_db(news_db) as db:
        score_dataset(db, "news", scorer=WordScorer())
        points = health.health_trend(db, "news", period="week")
    # NEWS_ROWS: the week of 2020-05-18 holds "down bad", "up good", "down awful"; the next
    # week "flat steady"; the week of 2020-06-01 "up great"; "flat sales" has no readable date
    assert [p["period"] for p in points] == ["2020-05-18", "2020-05-25", "2020-06-01"]
    assert [p["volume"] for p in points] == [3, 1, 1]
    expected = [(0.9 + 0.7 + 0.5) / 3, 0.6, 0.95]
    assert [p["estimated_accuracy"] for p in points] == pytest.approx(expected, abs=1e-5)
    line = health.health_summary(points)
    assert "0.95 in the latest period (1 text)" in line
    assert "lowest 0.60 in the period of 2020-05-25" in line


def test_the_health_rollup_follows_rescoring_deletes_and_a_dropped_dataset(news_db):
    from devmode.data import ingest

    with open_db(news_db) as db:
        score_dataset(db, "news", scorer=WordScorer())
        db.execute("update devmode_predictions set confidence = 0.3 where row_id = 1")
        for period in ("day", "week", "month"):
            rolled = health.health_trend(db, "news", period=period)
            assert [
                (p["period"], pytest.approx(p["estimated_accuracy"]), p["volume"]) for p in rolled
            ] == direct_health(db, period)
        db.execute("delete from devmode_predictions where row_id = 2")
        assert [p["volume"] for p in health.health_trend(db, "news")] == [2, 1, 1]
        ingest.drop_dataset(db, "news")
        assert db[health.HEALTH_TABLE].count == 0


def test_rows_scored_before_the_estimate_existed_get_their_confidence(tmp_path):
    from devmode.schema import migrations

    path = tmp_path / "old.db"
    from sqlite_utils import Database

    db = Database(path)
    migrations.apply(db, stop_before="0017_model_health")
    db["devmode_predictions"].insert_all(
        [
            {
                "dataset_id": 1,
                "task": "sentiment",
                "row_id": i,
                "probabilities": json.dumps(p),
                "date": "2020-05-18",
            }
            for i, p in enumerate([[0.2, 0.7, 0.1], [0.05, 0.05, 0.9]])
        ]
    )
    migrations.apply(db)
    confidence = [r["confidence"] for r in db["devmode_predictions"].rows_where(order_by="row_id")]
    assert confidence == pytest.approx([0.7, 0.9])
    assert list(db[health.HEALTH_TABLE].rows) == [
        {"dataset_id": 1, "day": "2020-05-18", "n": 2, "confidence_total": pytest.approx(1.6)}
    ]


def test_a_model_health_rule_fires_in_the_weeks_the_estimate_falls_below_its_line(news_db):
    from devmode.monitor import alerts, delivery
    from tests.conftest import run_cli
    from tests.net_support import LocalServer, Route

    with open_db(news_db) as db:
        score_dataset(db, "news", scorer=WordScorer())  # weeks at 0.70, 0.60 and 0.95
    added = run_cli(
        news_db,
        *("alerts", "add", "news", "--kind", "model_health", "--threshold", "0.65"),
        *("--min-volume", "1"),
    )
    assert added.exit_code == 0, added.output
    listed = run_cli(news_db, "alerts", "list", "news").output
    assert "week of 2020-05-25: estimated accuracy 60% on 1 text" in listed
    assert "estimated accuracy below 65% in a week" in listed
    assert "2020-05-18" not in listed and "2020-06-01" not in listed
    with open_db(news_db) as db:  # its own line: the sentiment chart marks nothing
        assert alerts.marked_periods(alerts.alert_events(db, "news"), "week", None, None) == []
    receiver = LocalServer()
    receiver.routes["/hook"] = Route()
    try:
        with open_db(news_db) as db:
            rule = alerts.list_alert_rules(db, "news")[0]
            delivery.add_channel(db, rule.id, webhook=receiver.url("/hook"), format="json")
            db.execute("update devmode_predictions set confidence = 0.2 where row_id = 5")
            fired = alerts.evaluate_alerts(db, "news")
            assert [e["period_start"] for e in fired] == ["2020-06-01"]
            assert [r.status for r in delivery.deliver_due(db)] == ["delivered"]
            message = delivery.build_message(db, fired[0]["id"])
    finally:
        receiver.close()
    (sent,) = receiver.posts("/hook")
    assert sent["alert"]["value"] == pytest.approx(0.2) and sent["alert"]["band_high"] == 0.65
    assert "estimated accuracy 20% on 1 text under the rule's line of 65%" in message.text()
    assert message.stories == [] and "Texts behind a point" in message.text()
