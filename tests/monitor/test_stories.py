"""Stories (near-duplicates collapsed) and the watchlist (who a text is about without a ticker
column): trends, drill-down and alerts count and split by them."""

import pytest

from devmode.data import ingest
from devmode.data.readers import read_upload
from devmode.db import open_db
from devmode.monitor import alerts, stories, trends, watchlist
from devmode.monitor.monitoring import score_dataset
from tests.conftest import FakeScorer, write_csv

WIRE = [
    # one story, syndicated by two sources with small edits, and re-posted later the same week
    ("down Apple shares slump after weak iPhone sales in China", "2020-05-18", "Wire A"),
    ("down Apple shares slump after weak iPhone sales in China - Reuters", "2020-05-18", "Wire B"),
    ("down Apple shares slump after weak iPhone sales in China", "2020-05-19", "Wire C"),
    # different stories about the same company and about another one
    ("up Apple unveils a new MacBook at its developer conference", "2020-05-19", "Wire A"),
    ("flat $MSFT holds steady ahead of earnings", "2020-05-20", "Wire B"),
    ("down Applebee's closes restaurants", "2020-05-20", "Wire A"),
]


@pytest.fixture
def wire(news_copy, tmp_path):
    rows = [{"text": t, "date": d, "source": s} for t, d, s in WIRE]
    with open_db(news_copy) as db:
        ingest.insert_upload(
            db,
            read_upload(write_csv(tmp_path / "wire.csv", rows)),
            "wire",
            ingest.ColumnMapping("text", date="date"),
        )
    return news_copy


def test_near_duplicates_are_one_story(wire):
    with open_db(wire) as db:
        summary = stories.assign_stories(db, "wire")
        assert (summary.rows, summary.repeats) == (6, 2)
        story_of = dict(db.execute("select row_id, story_id from devmode_story_rows").fetchall())
        assert story_of == {1: 1, 2: 1, 3: 1, 4: 4, 5: 5, 6: 6}
        assert stories.assign_stories(db, "wire").rows == 0  # each row once


def test_trends_and_drill_down_count_stories_once_with_their_sources(wire):
    with open_db(wire) as db:
        score_dataset(db, "wire", scorer=FakeScorer())
        texts = trends.sentiment_trend(db, "wire", period="week")
        stories_only = trends.sentiment_trend(db, "wire", period="week", stories=True)
        assert texts[0]["volume"] == 6 and stories_only[0]["volume"] == 4
        assert texts[0]["share_negative"] == pytest.approx(4 / 6)
        assert stories_only[0]["share_negative"] == pytest.approx(2 / 4)
        drill = trends.texts_in_period(db, "wire", period="week", start="2020-05-18", stories=True)
        assert len(drill) == 4
        apple = drill[0]
        assert apple["text"].startswith("down Apple shares slump") and apple["copies"] == 3
        assert sorted(apple["sources"].split(",")) == ["Wire A", "Wire B", "Wire C"]
        rule = alerts.add_alert_rule(
            db, "wire", kind="share_negative", threshold=0.6, min_volume=1, stories=True
        )
        assert "at least 1 stories" in rule.describe()
        assert alerts.count_events(db, rule.id) == 0  # 50% of stories: under the line
        plain = alerts.add_alert_rule(
            db, "wire", kind="share_negative", threshold=0.6, min_volume=1
        )
        assert [e["rule_id"] for e in alerts.alert_events(db, "wire")] == [plain.id]


def test_the_watchlist_says_who_a_text_is_about(wire):
    with open_db(wire) as db:
        score_dataset(db, "wire", scorer=FakeScorer())
        assert trends.scored_tickers(db, "wire") == []
        watchlist.add_entry(db, "$aapl", name="Apple", aliases=["iPhone maker"])
        watchlist.add_entry(db, "MSFT", name="Microsoft")
        assert [e.describe() for e in watchlist.list_entries(db)] == [
            "$AAPL (Apple, iPhone maker)",
            "$MSFT (Microsoft)",
        ]
        # tagged again when the list changed: Applebee's is not Apple, $MSFT is Microsoft
        assert trends.scored_tickers(db, "wire") == ["AAPL", "MSFT"]
        apple = trends.sentiment_trend(db, "wire", period="week", ticker="AAPL")
        assert apple[0]["volume"] == 4
        by_ticker = trends.trend_by(db, "wire", "ticker", period="week")
        assert {(p["value"], p["volume"]) for p in by_ticker} == {("AAPL", 4), ("MSFT", 1)}
        rule = alerts.add_alert_rule(db, "wire", threshold=0.6, min_volume=1, ticker="AAPL")
        (event,) = [e for e in alerts.alert_events(db, "wire") if e["rule_id"] == rule.id]
        assert event["share_negative"] == pytest.approx(3 / 4)
        watchlist.remove_entry(db, "AAPL")
        assert trends.scored_tickers(db, "wire") == ["MSFT"]
        # new rows are tagged as they are scored
        ingest.append_rows(db, "wire", [{"text": "up Microsoft cloud grows", "date": "2020-05-21"}])
        score_dataset(db, "wire", scorer=FakeScorer())
        assert trends.sentiment_trend(db, "wire", period="week", ticker="MSFT")[0]["volume"] == 2


@pytest.mark.parametrize(
    "ticker, kwargs, expected",
    [
        ("1AB", {}, "is not a ticker"),
        ("AAPL", {"name": "Ap"}, "at least 3 characters"),
    ],
)
def test_bad_watchlist_entries_are_refused(db, ticker, kwargs, expected):
    with pytest.raises(watchlist.InvalidEntry, match=expected):
        watchlist.add_entry(db, ticker, **kwargs)
    assert db["devmode_watchlist"].count == 0


def test_empty_columns_are_left_out_of_tables():
    rows = [{"text": "a", "ticker": None, "topic": ""}, {"text": "b", "ticker": None, "topic": "x"}]
    assert trends.without_empty_columns(rows) == [
        {"text": "a", "topic": ""},
        {"text": "b", "topic": "x"},
    ]
    assert trends.without_empty_columns([]) == []


def test_the_wall_display_shows_chart_tiles_alerts_and_stories_without_widgets(wire, monkeypatch):
    import json

    from streamlit.testing.v1 import AppTest

    from devmode.monitor import wall
    from tests.conftest import ROOT

    with open_db(wire) as db:
        watchlist.add_entry(db, "AAPL", name="Apple")
        watchlist.add_entry(db, "MSFT", name="Microsoft")
        score_dataset(db, "wire", scorer=FakeScorer())
        alerts.add_alert_rule(db, "wire", threshold=0.3, min_volume=1, period="week")
        view = wall.wall_view(db, "wire")
    assert view.title == "wire · per week" and view.marked == ["2020-05-18"]
    assert [(t.ticker, t.volume) for t in view.tiles] == [("AAPL", 2), ("MSFT", 1)]
    assert view.stories_day == "2020-05-20"
    assert "ticker" not in view.stories[0] and "topic" not in view.stories[0]  # empty columns

    monkeypatch.setenv("DEVMODE_DB", wire)
    at = AppTest.from_file(str(ROOT / "pages" / "3_Monitor.py"), default_timeout=60)
    at.query_params["kiosk"] = "1"
    at.query_params["dataset"] = "wire"
    at.run()
    assert not at.exception
    widgets = [at.button, at.selectbox, at.text_input, at.toggle, at.number_input]
    assert all(len(found) == 0 for found in widgets)
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert figure["layout"]["title"]["text"] == "wire · per week"
    assert figure["layout"]["font"]["size"] == 20
    # AAPL's week, each story once: the slump (-0.7) and the MacBook (+0.7)
    assert [(m.label, m.value) for m in at.metric] == [("AAPL", "+0.00"), ("MSFT", "+0.00")]
    assert at.error[0].value.startswith("**Week of 2020-05-18**: 67% negative of 6 texts")
    assert len(at.dataframe[0].value) == 2  # the stories of 20 May, each once


# ----------------------------------------------------------------------------------------------
# Issue 26: the wall asked for what is not there, nine tiles, years without texts


@pytest.mark.parametrize(
    "params,phrases",
    [
        ({"dataset": "nosuch"}, ["No dataset called 'nosuch'", "A wall address looks like"]),
        ({"dataset": "wire", "period": "century"}, ["period must be one of day, week, month"]),
    ],
)
def test_a_wall_address_asking_for_what_is_not_there_gets_a_plain_message(
    wire, monkeypatch, params, phrases
):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    monkeypatch.setenv("DEVMODE_DB", wire)
    at = AppTest.from_file(str(ROOT / "pages" / "3_Monitor.py"), default_timeout=60)
    at.query_params.update({"kiosk": "1", **params})
    at.run()
    assert not at.exception  # it was a traceback with file paths, redrawn every 10 s
    (warning,) = at.warning
    for phrase in phrases:
        assert phrase in warning.value


def test_nine_tiles_wrap_into_rows_the_figures_fit(wire, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from devmode.monitor import wall
    from tests.conftest import ROOT

    tickers = ["AAPL", "MSFT", "AMZN", "GOOG", "META", "NVDA", "TSLA", "NFLX", "INTC"]
    with open_db(wire) as db:
        for ticker in tickers:
            watchlist.add_entry(db, ticker)
        score_dataset(db, "wire", scorer=FakeScorer())
    monkeypatch.setenv("DEVMODE_DB", wire)
    at = AppTest.from_file(str(ROOT / "pages" / "3_Monitor.py"), default_timeout=60)
    at.query_params.update({"kiosk": "1", "dataset": "wire"})
    at.run()
    assert not at.exception and [m.label for m in at.metric] == sorted(tickers)
    tile_columns = [c for c in at.columns if any(child.type == "metric" for child in c)]
    assert len(tile_columns) == 9
    assert all(c.weight >= 1 / wall.TILES_PER_ROW - 1e-9 for c in tile_columns)  # was 1/9


def test_the_trend_line_breaks_across_periods_without_texts():
    import json

    from devmode.charts import trend_figure

    points = [
        {"period": p, "sentiment": s, "share_negative": 0.2, "volume": 3}
        for p, s in (("2009-01-05", 0.1), ("2009-01-12", 0.2), ("2020-03-02", -0.3))
    ]
    figure = json.loads(trend_figure(points, "S", period="week").to_json())
    index = next(t for t in figure["data"] if t["name"] == "sentiment index")
    assert index["y"] == [0.1, 0.2, None, -0.3]  # no line across eleven empty years
    assert index["x"][2] == "2009-01-19"
    mean = next(t for t in figure["data"] if t["name"].startswith("rolling mean"))
    assert mean["y"][2] is None
