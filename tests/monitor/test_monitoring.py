import json

import pytest

from devmode.db import open_db
from devmode.finetune import worker
from devmode.models import registry, runs
from devmode.monitor import alerts, monitoring, trends
from devmode.monitor.monitoring import (
    NoActiveModel,
    parse_date,
    score_dataset,
)
from devmode.monitor.rollup import trend_triggers
from devmode.monitor.trends import NoDateColumn, sentiment_trend
from tests.conftest import FakeScorer, store_tiny_dataset, tiny_config, wait_for_job

# Dates that are refused (read as no date, and said so) rather than misread.
UNREADABLE_DATES = [
    "05/22/2020",  # day/month order is not guessed
    "2020-02-30",
    "yesterday",
    20201332,  # eight digits that are no date: not August 1970
    "Fri, 31 Feb 2020 10:00:00 GMT",
]


@pytest.mark.parametrize("value", UNREADABLE_DATES)
def test_unreadable_dates_are_no_date(value):
    assert parse_date(value) is None


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
        ("1590105600", "2020-05-22"),  # ... kept as text by a JSON column that also holds strings
        ("1590105600.25", "2020-05-22"),
        (1590105600000, "2020-05-22"),  # epoch milliseconds
        ("1590105600000", "2020-05-22"),
        ("20200522", "2020-05-22"),  # eight digits stay YYYYMMDD
        (20200522, "2020-05-22"),  # a number written YYYYMMDD (JSON, Parquet), not 1970-08-22
        (20200522.0, "2020-05-22"),
        (20201332, None),  # eight digits that are no date: unreadable, not August 1970
        ("Fri, 22 May 2020 23:30:00 -0400", "2020-05-22"),  # RFC 2822, as feeds write it
        ("22 May 2020 10:00:00 GMT", "2020-05-22"),
        ("Fri, 31 Feb 2020 10:00:00 GMT", None),
        ("05/22/2020", None),  # day/month order is not guessed
        ("2020-02-30", None),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_date(value, expected):
    assert parse_date(value) == expected


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


def _every_trend(db, dataset: str = "news") -> dict:
    """Each period, scope and story setting: the rollup's answer and the predictions' own."""
    from devmode.data import ingest

    found = {}
    record = ingest.get_dataset(db, dataset)
    for period in trends.PERIODS:
        for ticker, topic in ((None, None), ("A", None), ("B", None), (None, "x"), (None, "y")):
            for stories in (False, True):
                key = (period, ticker, topic, stories)
                rolled = sentiment_trend(
                    db, dataset, period=period, ticker=ticker, topic=topic, stories=stories
                )
                direct = trends._trend_from_rows(db, record, period, ticker, topic, stories=stories)
                found[key] = (rolled, direct)
    return found


def assert_rollup_matches_rows(db, dataset: str = "news") -> None:
    from devmode.data import ingest

    record = ingest.get_dataset(db, dataset)
    for column in ("ticker", "topic"):
        counted = db.execute(  # dated or not
            f"""select {column}, count(*) from devmode_predictions where dataset_id = ? and
                task = 'sentiment' and {column} is not null group by 1 order by 2 desc, 1""",
            [record.id],
        ).fetchall()
        assert trends._scored_values(db, dataset, column) == [value for value, _ in counted]
        if column == "topic":
            dated = db.execute(
                """select topic, count(*) from devmode_predictions where dataset_id = ? and
                   task = 'sentiment' and topic is not null and date is not null
                   group by 1 order by 2 desc, 1""",
                [record.id],
            ).fetchall()
            by_topic = trends.sentiment_by_topic(db, dataset)
            assert [(t["topic"], t["volume"]) for t in by_topic] == dated
        split = trends.trend_by(db, dataset, column, period="week")
        for value in {row["value"] for row in split}:
            scope = {"ticker": value} if column == "ticker" else {"topic": value}
            direct = trends._trend_from_rows(
                db, record, "week", scope.get("ticker"), scope.get("topic")
            )
            assert [(r["period"], r["volume"]) for r in split if r["value"] == value] == [
                (p["period"], p["volume"]) for p in direct
            ], (column, value)
    for key, (rolled, direct) in _every_trend(db, dataset).items():
        assert [(p["period"], p["volume"]) for p in rolled] == [
            (p["period"], p["volume"]) for p in direct
        ], key
        for r, d in zip(rolled, direct, strict=True):
            assert r["sentiment"] == pytest.approx(d["sentiment"]), key
            assert r["share_negative"] == pytest.approx(d["share_negative"]), key


def test_the_trend_rollup_follows_every_write(news_db, tiny_model_dir):
    """The daily rollup answers as the predictions themselves do after scoring, a topic copy,
    story marks, a re-scoring by a new model, deleted rows, a rebuilt rollup (the migration's
    fill) and a dropped dataset whose id is used again."""
    from devmode.data import ingest
    from devmode.data.readers import read_upload
    from tests.conftest import NEWS_ROWS, write_csv

    with open_db(news_db) as db:
        score_dataset(db, "news", scorer=FakeScorer())
        assert db["devmode_trend_days"].count > 0
        assert_rollup_matches_rows(db)
        db.execute(
            "update devmode_predictions set topic = case row_id % 2 when 0 then 'x' else 'y' end"
        )
        db.execute("update devmode_predictions set repeat = 1 where row_id in (2, 3)")
        assert_rollup_matches_rows(db)
        assert sentiment_trend(db, "news", period="month", stories=True)[0]["volume"] == 2
        run = runs.create_run(db, "tiny", tiny_config(tiny_model_dir, epochs=1, seed=3))
    worker.execute_run(news_db, run.id)
    with open_db(news_db) as db:
        registry.promote(db, run.id, "sentiment")
        score_dataset(db, "news", scorer=FakeScorer(flip=True))  # upserts every row
        assert_rollup_matches_rows(db)
        db.execute("delete from devmode_predictions where row_id = 1")
        assert_rollup_matches_rows(db)
        before = db["devmode_trend_days"].count_where("n > 0")  # emptied days stay, at 0
        db.execute("drop table devmode_trend_days")
        trend_triggers(db, on=False)
        db.execute("delete from _sqlite_migrations where name = '0010_trend_rollup'")
    with open_db(news_db) as db:  # the migration runs again and fills the rollup
        assert db["devmode_trend_days"].count_where("n > 0") == before
        assert_rollup_matches_rows(db)
        dataset_id = ingest.get_dataset(db, "news").id
        ingest.drop_dataset(db, "news")
        assert not db["devmode_trend_days"].count_where("dataset_id = ?", [dataset_id])
        assert not db["devmode_predictions"].count_where("dataset_id = ?", [dataset_id])
        again = ingest.insert_upload(
            db,
            read_upload(write_csv(db_dir(news_db) / "again.csv", NEWS_ROWS[:2])),
            "news",
            ingest.ColumnMapping("text", date="date", ticker="ticker"),
        )
        assert again.id == dataset_id  # SQLite gives the freed id out again
        assert sentiment_trend(db, "news") == []
        score_dataset(db, "news", scorer=FakeScorer())
        assert sum(p["volume"] for p in sentiment_trend(db, "news")) == 2
        assert_rollup_matches_rows(db)


def db_dir(db_path):
    from pathlib import Path

    return Path(db_path).parent


def test_scoring_is_incremental_and_follows_the_active_model(news_db, tiny_model_dir):
    with open_db(news_db) as db:
        first = FakeScorer()
        score_dataset(db, "news", scorer=first)
        again = FakeScorer()
        summary = score_dataset(db, "news", scorer=again)
        assert (summary.scored, summary.already_scored, again.calls) == (0, 6, 0)
        run = runs.create_run(db, "tiny", tiny_config(tiny_model_dir, epochs=1, seed=3))
    worker.execute_run(news_db, run.id)
    with open_db(news_db) as db:
        registry.promote(db, run.id, "sentiment")
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
        model = registry.active_model(db, "sentiment")
        db["devmode_models"].update(model.id, {"labels": '["bad", "meh", "good"]'})
        with pytest.raises(registry.NotSentimentLike, match="map-sentiment"):
            score_dataset(db, "news", scorer=FakeScorer())
        with pytest.raises(registry.NotSentimentLike, match="unknown"):
            registry.set_sentiment_map(db, model.run_id, ["awful"], ["good"])
        assert registry.set_sentiment_map(db, model.run_id, ["bad"], ["good"]) == {
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
    points = json.loads(run("trends", "news", "--json", "--ticker", "B").output)
    assert [(p["period"], p["volume"]) for p in points] == [("2020-05-18", 1), ("2020-05-25", 1)]
    refused = run("models", "map-sentiment", "1", "--negative", "nope", "--positive", "positive")
    assert refused.exit_code == 1 and "unknown ['nope']" in refused.output


def test_an_empty_trend_says_why(news_db, tmp_path):
    """Rows scored with dates that cannot be read: the trend used to say 'score them first'."""
    from click.testing import CliRunner

    from devmode.cli import cli
    from devmode.data import ingest
    from devmode.data.readers import read_upload
    from tests.conftest import write_csv

    rows = [{"text": f"flat {i}", "date": d} for i, d in enumerate(["someday", "soon", "later"])]
    with open_db(news_db) as db:
        ingest.insert_upload(
            db,
            read_upload(write_csv(tmp_path / "vague.csv", rows)),
            "vague",
            ingest.ColumnMapping("text", date="date"),
        )
        assert "No rows of vague are scored yet" in trends.why_no_trend(db, "vague")
        score_dataset(db, "vague", scorer=FakeScorer())
    answer = CliRunner().invoke(cli, ["--db", news_db, "trends", "vague"]).output
    assert "3 rows of vague are scored, but none has a date that could be read" in answer
    assert "(e.g. 'someday', 'soon', 'later')" in answer and "20200522" in answer
    assert "score them first" not in answer.lower()
    with open_db(news_db) as db:
        score_dataset(db, "news", scorer=FakeScorer())
        assert trends.why_no_trend(db, "news", ticker="ZZZ") == (
            "No scored, dated rows of news for ticker ZZZ."
        )


def test_texts_behind_a_point_and_tickers(news_db):
    with open_db(news_db) as db:
        score_dataset(db, "news", scorer=FakeScorer())
        assert trends.scored_tickers(db, "news") == ["A", "B"]
        texts = trends.texts_in_period(db, "news", period="week", start="2020-05-18")
        assert [(t["date"], t["ticker"], t["text"]) for t in texts] == [
            ("2020-05-18", "A", "down bad"),
            ("2020-05-20", "B", "down awful"),
            ("2020-05-20", "A", "up good"),
        ]
        assert texts[0]["label"] == "negative" and texts[0]["sentiment"] == pytest.approx(-0.7)
        only_b = trends.texts_in_period(db, "news", period="month", start="2020-05-01", ticker="B")
        assert [t["text"] for t in only_b] == ["down awful", "flat steady"]


def test_trend_figure_has_the_index_its_rolling_mean_and_volume():
    from devmode.charts import trend_figure

    points = [
        {"period": f"2020-0{m}-01", "sentiment": s, "share_negative": 0.5, "volume": v}
        for m, s, v in [(1, 0.5, 1), (2, -0.5, 3), (3, 0.0, 4)]
    ]
    fig = trend_figure(points, "S", rolling=2)
    assert [t.name for t in fig.data] == ["texts", "sentiment index", "rolling mean (2)"]
    assert list(fig.data[0].y) == [1, 3, 4]
    assert list(fig.data[2].y) == pytest.approx([0.5, (0.5 - 1.5) / 4, (-1.5 + 0) / 7])
    # no range slider (it drew every trace again); the range buttons stay
    assert not fig.layout.xaxis.rangeslider.visible
    assert [b.label for b in fig.layout.xaxis.rangeselector.buttons] == ["3m", "1y", "5y", "all"]
    assert list(fig.layout.yaxis.range) == pytest.approx([-0.65, 0.65])


def test_the_index_axis_fits_the_data():
    from devmode.charts import index_range, trend_figure

    # the Guardian/CNBC headlines' index moves between about -0.25 and -0.1
    assert index_range([-0.25, -0.1, None]) == pytest.approx([-0.3, -0.05])
    assert index_range([0.9, 0.95]) == pytest.approx([0.85, 1.0])  # never past -1..1
    assert index_range([]) == [-1.0, 1.0]
    points = [{"period": "2020-01-06", "sentiment": -0.2, "share_negative": 0.4, "volume": 3}]
    wall = trend_figure(points, "S", wall=True)
    assert wall.layout.font.size == 20 and wall.layout.xaxis.rangeselector.buttons == ()


def test_monitor_page_scores_and_draws_the_trend(news_db, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    monkeypatch.setenv("DEVMODE_DB", news_db)
    at = AppTest.from_file(str(ROOT / "pages" / "3_Monitor.py"), default_timeout=60).run()
    assert not at.exception
    assert any("No rows of news are scored yet" in i.value for i in at.info)
    with open_db(news_db) as db:
        temperature = registry.active_model(db, "sentiment").temperature
    assert temperature != 1.0  # the tiny run was calibrated on its validation split
    shown = " ".join(c.value for c in at.caption) + " ".join(m.value for m in at.markdown)
    assert f"scoring at temperature {temperature:.2f}" in shown
    at.button(key="monitor_score").click().run()  # starts a real worker process
    assert not at.exception and not at.error
    assert wait_for_job(news_db).status == "completed"
    at.run()
    done = at.success[0].value
    assert "Scoring job 1 completed" in done and "sentiment: 6 rows scored" in done
    assert "'someday'" in done
    assert chart_title(at) == "Sentiment: news · per week"
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "Model health: news · all texts · per week" in titles
    assert any(c.value.startswith("Estimated accuracy on live text") for c in at.caption)
    assert len(at.dataframe[0].value) >= 1
    at.selectbox(key="monitor_ticker").set_value("B").run()
    assert chart_title(at) == "Sentiment: news · B · per week"


def test_monitor_page_says_what_to_do_without_a_model(db_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    monkeypatch.setenv("DEVMODE_DB", db_path)
    at = AppTest.from_file(str(ROOT / "pages" / "3_Monitor.py"), default_timeout=30).run()
    assert not at.exception
    assert "No sentiment model is active yet" in at.info[0].value


def chart_title(at) -> str:
    return json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["title"]["text"]


def weekly_points(shares, volume=10):
    """Trend points of consecutive weeks with the given shares of negative texts."""
    import datetime as dt

    monday = dt.date(2020, 1, 6)
    return [
        {
            "period": (monday + dt.timedelta(weeks=i)).isoformat(),
            "sentiment": 0.0,
            "share_negative": share,
            "volume": volume,
        }
        for i, share in enumerate(shares)
    ]


@pytest.mark.parametrize(
    "kind,threshold,shares,expected",
    [
        ("share_negative", 0.6, [0.2, 0.7, 0.5, 0.9], ["2020-01-13", "2020-01-27"]),
        # a spike: well above the previous 3 weeks' spread; a high week among high weeks is not
        ("spike", 2.0, [0.2, 0.25, 0.2, 0.6, 0.62, 0.6, 0.61], ["2020-01-27"]),
    ],
)
def test_rules_flag_the_right_periods(news_db, monkeypatch, kind, threshold, shares, expected):
    monkeypatch.setattr(
        trends,
        "sentiment_trend",
        lambda db, name, period, ticker, topic, stories=False: weekly_points(shares),
    )
    with open_db(news_db) as db:
        rule = alerts.add_alert_rule(
            db, "news", kind=kind, threshold=threshold, window=3, min_volume=5
        )
        assert alerts.count_events(db, rule.id) == len(expected)  # evaluated when added
        assert alerts.evaluate_alerts(db, "news") == []  # incremental: nothing twice
        events = alerts.alert_events(db, "news")
        assert [e["period_start"] for e in events] == sorted(expected, reverse=True)
        assert events[0]["rule"] == rule.describe()
        alerts.acknowledge_alert(db, events[0]["id"])
        assert len(alerts.alert_events(db, "news")) == len(expected) - 1
        assert len(alerts.alert_events(db, "news", include_acknowledged=True)) == len(expected)


def test_small_periods_never_alert(news_db, monkeypatch):
    monkeypatch.setattr(
        trends,
        "sentiment_trend",
        lambda db, name, period, ticker, topic, stories=False: weekly_points([0.9], volume=2),
    )
    with open_db(news_db) as db:
        rule = alerts.add_alert_rule(db, "news", kind="share_negative", threshold=0.5, min_volume=3)
        assert alerts.count_events(db, rule.id) == 0 and alerts.evaluate_alerts(db, "news") == []


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"kind": "share_negative", "threshold": 1.5}, "a share between 0 and 1"),
        ({"kind": "spike", "threshold": 2, "window": 2}, "window of at least 3"),
        ({"kind": "model_health", "threshold": 80}, "a share between 0 and 1, e.g. 0.8"),
        (
            {"kind": "model_health", "threshold": 0.8, "ticker": "A"},
            "watches the model's estimated accuracy over all",
        ),
        ({"kind": "model_health", "threshold": 0.8}, "none are scored yet. Score the dataset"),
        ({"kind": "panic", "threshold": 0.5}, "kind must be one of"),
        (
            {"kind": "share_negative", "threshold": 0.5, "min_volume": 0},
            "min_volume must be at least 1",
        ),
    ],
)
def test_impossible_rules_are_refused(news_db, settings, message):
    with open_db(news_db) as db:
        with pytest.raises(Exception, match=message):
            alerts.add_alert_rule(db, "news", **settings)


def test_scoring_raises_alerts_and_the_cli_lists_and_acknowledges_them(news_db):
    from click.testing import CliRunner

    from devmode.cli import cli
    from devmode.db import summary

    def run(*args):
        return CliRunner().invoke(cli, ["--db", news_db, *args])

    added = run("alerts", "add", "news", "--threshold", "0.5", "--min-volume", "2")
    assert added.exit_code == 0 and "0 alerts in the data scored so far" in added.output
    with open_db(news_db) as db:
        summary_ = score_dataset(db, "news", scorer=FakeScorer())
        assert summary_.new_alerts == 1  # the week of 2020-05-18: 2 of 3 negative
        assert summary(db)["open_alerts"] == 1
    listed = run("alerts", "list", "news").output
    assert "week of 2020-05-18: 67% negative of 3 texts" in listed
    alert_id = listed.split()[0]
    assert run("alerts", "ack", alert_id).output == f"Acknowledged alert {alert_id}.\n"
    assert run("alerts", "list", "news").output == "No open alerts.\n"
    assert run("alerts", "ack", "999").exit_code == 1


def test_monitor_page_marks_and_lists_alerts(news_db, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    with open_db(news_db) as db:
        alerts.add_alert_rule(db, "news", kind="share_negative", threshold=0.5, min_volume=2)
        score_dataset(db, "news", scorer=FakeScorer())
    monkeypatch.setenv("DEVMODE_DB", news_db)
    at = AppTest.from_file(str(ROOT / "pages" / "3_Monitor.py"), default_timeout=60).run()
    assert not at.exception
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    alert_trace = next(t for t in spec["data"] if t.get("name") == "alert")
    assert alert_trace["x"] == ["2020-05-18"]
    assert any(
        "Week of 2020-05-18" in m.value and "67% negative of 3 texts" in m.value
        for m in at.markdown
    )
    at.button(
        key=next(b.key for b in at.button if b.key and b.key.startswith("monitor_open_"))
    ).click().run()
    assert at.selectbox(key="monitor_drill").value == "2020-05-18"
    at.button(
        key=next(b.key for b in at.button if b.key and b.key.startswith("monitor_ack_"))
    ).click().run()
    assert not at.exception
    assert any("No open alerts." in c.value for c in at.caption)


def test_epoch_numbers_in_a_json_date_column_that_also_holds_strings(news_copy, tmp_path):
    """SQLite keeps such a column's numbers as text ('1590192000'), which read as no date."""
    from devmode.data import ingest
    from devmode.data.readers import read_upload

    path = tmp_path / "mixed.json"
    rows = [
        {"text": "up on the day", "date": "2020-05-22"},
        {"text": "down on the day", "date": 1590192000},  # 23 May, epoch seconds
        {"text": "flat on the day", "date": 1590278400000},  # 24 May, epoch milliseconds
    ]
    path.write_text(json.dumps(rows))
    with open_db(news_copy) as db:
        ingest.insert_upload(
            db, read_upload(path), "mixed", ingest.ColumnMapping("text", date="date")
        )
        summary = score_dataset(db, "mixed", scorer=FakeScorer())
        days = sentiment_trend(db, "mixed", period="day")
    assert summary.unparseable_dates == 0
    assert [p["period"] for p in days] == ["2020-05-22", "2020-05-23", "2020-05-24"]
