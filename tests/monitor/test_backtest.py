"""Backtests: a rule evaluated over the scored history without being saved, the same periods a
saved rule raises, volume surges, and what prices did after each fire."""

import json

import pytest

from devmode.data import dates, ingest
from devmode.data.readers import read_upload
from devmode.db import open_db
from devmode.monitor import alerts, backtest, market, trends
from devmode.monitor.monitoring import score_dataset
from tests.conftest import run_cli, write_csv
from tests.price_support import LexiconScorer, closes_after, headline_slice, long_price_file

SPIKE = {"kind": "spike", "threshold": 1.5, "window": 4, "min_volume": 3}


def stored_counts(db):
    return (db["devmode_alert_rules"].count, db["devmode_alert_events"].count)


@pytest.mark.parametrize(
    "settings",
    [
        {"kind": "share_negative", "threshold": 0.3, "min_volume": 3},
        SPIKE,
        {**SPIKE, "ticker": "ABBV", "period": "month", "window": 3},
        {"kind": "volume_spike", "threshold": 2, "window": 6, "stories": True},
    ],
    ids=["share", "spike", "spike-abbv-month", "volume"],
)
def test_a_backtest_fires_on_the_periods_a_saved_rule_raises(wire_db, settings):
    with open_db(wire_db) as db:
        before = stored_counts(db)
        result = backtest.backtest(db, "wire", alerts.RuleSettings(**settings))
        assert stored_counts(db) == before  # nothing saved
        rule = alerts.add_alert_rule(db, "wire", **settings)
        raised = sorted(e["period_start"] for e in alerts.alert_events(db, "wire"))
    fired = [f["period"] for f in result["fires"]]
    assert fired and fired == raised
    assert sum(result["per_year"].values()) == len(fired)
    assert set(result["per_year"]) == {p[:4] for p in fired}
    assert result["rule"]["description"] == rule.describe()
    period = settings.get("period", "week")
    for fire in result["fires"]:
        assert 1 <= len(fire["stories"]) <= backtest.STORIES_PER_FIRE
        end = dates.period_end(period, fire["period"])
        assert all(fire["period"] <= s["date"] < end for s in fire["stories"])
        sentiments = [s["sentiment"] for s in fire["stories"]]
        assert sentiments == sorted(sentiments)  # the most negative first


def test_a_volume_spike_counts_empty_periods_and_copies_once(news_copy, tmp_path):
    """Ten headlines a week and a quiet week with none; then a week of ten more and 30 copies of
    one story, which fires only when copies count; then, after four ordinary weeks, a week of 40
    distinct headlines, which fires either way."""
    texts = iter(sorted({r["text"] for r in headline_slice()}))
    weeks = dates.calendar_periods("week", "2020-01-06", "2020-03-30")  # 13 Mondays
    counts = [10, 10, 10, 10, 0, 10, 10, 10, 10, 10, 10, 10, 40]
    rows = [
        {"date": w, "text": next(texts)}
        for w, n in zip(weeks, counts, strict=True)
        for _ in range(n)
    ]
    rows += [{"date": weeks[7], "text": "Drug maker cuts its outlook, shares fall"}] * 30
    path = write_csv(tmp_path / "surge.csv", rows)
    with open_db(news_copy) as db:
        mapping = ingest.ColumnMapping("text", date="date")
        ingest.insert_upload(db, read_upload(path), "surge", mapping)
        score_dataset(db, "surge", scorer=LexiconScorer())
        volume = {"kind": "volume_spike", "threshold": 3, "window": 4, "min_volume": 1}
        copies = backtest.backtest(db, "surge", alerts.RuleSettings(**volume))
        once = backtest.backtest(db, "surge", alerts.RuleSettings(**volume, stories=True))
        points = alerts.rule_points(db, "surge", alerts.RuleSettings(**volume))
    assert [p["volume"] for p in points] == [*counts[:7], 40, *counts[8:]]
    assert [f["period"] for f in copies["fires"]] == [weeks[7], weeks[12]]
    assert [f["period"] for f in once["fires"]] == [weeks[12]]
    fire = copies["fires"][0]
    assert fire["volume"] == 40 and fire["usual"] == pytest.approx(7.5)
    assert alerts.event_figure(fire, "volume_spike").startswith("40 texts, usually 8 (")


def test_the_cli_backtests_new_settings_and_saved_rules_alike(wire_db):
    flags = ["--kind", "spike", "--threshold", "1.5", "--window", "4", "--min-volume", "3"]
    result = run_cli(wire_db, "alerts", "backtest", "wire", *flags, "--json")
    assert result.exit_code == 0, result.output
    new = json.loads(result.output)
    assert set(new) >= {"rule", "fires", "per_year"}
    assert new["rule"]["kind"] == "spike" and new["fires"]
    assert set(new["fires"][0]) >= {"period", "value", "stories"}
    added = run_cli(wire_db, "alerts", "add", "wire", *flags)
    assert added.exit_code == 0, added.output
    rule_id = added.output.split(":")[0].split()[-1]
    saved = json.loads(run_cli(wire_db, "alerts", "backtest", "--rule", rule_id, "--json").output)
    assert saved["fires"] == new["fires"] and saved["rule"]["id"] == int(rule_id)
    lines = run_cli(wire_db, "alerts", "backtest", "--rule", rule_id)
    assert lines.exit_code == 0 and f"Rule {rule_id}: " in lines.output
    assert f"Fired {len(new['fires'])} times: " in lines.output
    both = run_cli(wire_db, "alerts", "backtest", "wire", "--rule", rule_id, "--kind", "spike")
    assert both.exit_code == 2 and "found DATASET, --kind too" in both.output
    bare = run_cli(wire_db, "alerts", "backtest", "wire")
    assert bare.exit_code == 2 and "--threshold" in bare.output


def test_a_backtest_before_scoring_says_to_score(news_copy, tmp_path):
    path = write_csv(tmp_path / "later.csv", headline_slice()[:20])
    with open_db(news_copy) as db:
        ingest.insert_upload(
            db, read_upload(path), "later", ingest.ColumnMapping("text", date="date")
        )
    result = run_cli(news_copy, "alerts", "backtest", "later", "--threshold", "0.5")
    assert result.exit_code == 1
    assert "Nothing to backtest: no rows of later are scored yet." in result.output
    assert "python -m devmode score later" in result.output and "Traceback" not in result.output


# ----------------------------------------------------------------------------------------------
# Prices


@pytest.fixture
def fires_and_prices(wire_db, tmp_path):
    """ABBV's spike weeks, and a prices dataset in which the week after each one fell 5% and
    every other week rose 0.1% (ABBV, and the same series as the index)."""
    settings = alerts.RuleSettings(**{**SPIKE, "threshold": 1.0}, ticker="ABBV")
    with open_db(wire_db) as db:
        weeks = {f["period"] for f in backtest.backtest(db, "wire", settings)["fires"]}
    closes = closes_after(weeks, "2017-12-25", "2020-07-31")
    path = long_price_file(tmp_path / "closes.csv", {"ABBV": closes, "": closes})
    stored = run_cli(wire_db, "ingest", path, "--name", "closes", "--prices")
    assert stored.exit_code == 0, stored.output
    assert "Stored prices dataset closes: 2 series (index, ABBV)" in stored.output
    return wire_db, settings, weeks


def test_each_fire_gets_its_forward_return_and_the_hit_rate_beats_the_base_rate(fires_and_prices):
    db_path, settings, weeks = fires_and_prices
    with open_db(db_path) as db:
        result = backtest.backtest(db, "wire", settings, backtest.PriceCheck(prices="closes"))
    assert result["prices"]["series"] == "ABBV" and result["prices"]["horizon"] == 1
    returns = [f["forward_return"] for f in result["fires"]]
    assert returns == [pytest.approx(-0.05)] * len(weeks)
    assert result["hit_rate"] == 1.0 and result["hits"] == len(weeks)
    # every week the rule was evaluated on, with a return: only the fire weeks fell
    assert result["base_rate"] == pytest.approx(len(weeks) / result["periods_with_return"])
    assert result["base_rate"] < 0.2
    assert [row["lag"] for row in result["lead_lag"]] == list(range(-5, 6))
    for row in result["lead_lag"]:
        assert row["low"] <= row["corr"] <= row["high"] and row["n"] > 50


def test_the_cli_adds_price_fields_to_the_json(fires_and_prices):
    db_path, _, weeks = fires_and_prices
    flags = ["--kind", "spike", "--threshold", "1.0", "--window", "4", "--min-volume", "3"]
    out = run_cli(db_path, "alerts", "backtest", "wire", *flags, "--ticker", "ABBV",
                  "--prices", "closes", "--horizon", "2", "--drop", "9", "--json")  # fmt: skip
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert {"hit_rate", "base_rate", "lead_lag"} <= set(result)
    assert all("forward_return" in f for f in result["fires"])
    # two weeks after a fall: -5% then +0.1% (or a second fall): below -9% only for back-to-back fires
    assert result["hit_rate"] < 1.0
    lines = run_cli(db_path, "alerts", "backtest", "wire", *flags, "--prices", "closes")
    assert lines.exit_code == 0 and "Prices: index from closes, over 1 week" in lines.output
    assert "hit rate " in lines.output and "against a base rate of " in lines.output
    assert "lag +1: " in lines.output


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--horizon", "400"], "A horizon of 400 weeks is longer than the prices' history"),
        (["--ticker", "ZZZZ"], "has no series for ZZZZ; it has index, ABBV"),
        (["--drop", "0"], "drop"),
    ],
)
def test_bad_price_checks_are_refused_clearly(fires_and_prices, extra, message):
    db_path, _, _ = fires_and_prices
    args = ["alerts", "backtest", "wire", "--threshold", "0.3", "--prices", "closes", *extra]
    out = run_cli(db_path, *args)
    assert out.exit_code != 0 and message in out.output and "Traceback" not in out.output


def test_a_rule_on_all_texts_needs_an_index_series(wire_db, tmp_path):
    path = long_price_file(tmp_path / "one.csv", {"AAPL": {"2019-01-02": 10.0, "2019-01-03": 11.0}})
    assert run_cli(wire_db, "ingest", path, "--name", "one", "--prices").exit_code == 0
    out = run_cli(wire_db, "alerts", "backtest", "wire", "--threshold", "0.3", "--prices", "one")
    assert out.exit_code == 1
    assert "prices dataset 'one' has none (it has AAPL). Pick a ticker" in out.output


# ----------------------------------------------------------------------------------------------
# The figures, by hand


def test_returns_follow_calendar_periods_and_skip_gaps():
    closes = {"2020-01-06": 100.0, "2020-01-13": 110.0, "2020-01-27": 99.0, "2020-02-03": 99.0}
    assert market.period_returns(closes, "week") == {
        "2020-01-13": pytest.approx(0.1),
        "2020-02-03": 0.0,
    }  # 2020-01-27 follows a week with no close: no return
    assert market.forward_returns(closes, "week", 3) == {
        "2020-01-06": pytest.approx(-0.01),
        "2020-01-13": pytest.approx(-0.1),
    }
    months = {"2019-12-01": 50.0, "2020-01-01": 40.0}
    assert market.forward_returns(months, "month", 1) == {"2019-12-01": pytest.approx(-0.2)}
    assert dates.shift_period("month", "2020-01-01", -13) == "2018-12-01"
    assert dates.period_start("week", "2020-01-12") == "2020-01-06"  # a Sunday


def test_correlation_and_its_interval_match_the_textbook():
    import numpy as np

    rng = np.random.default_rng(7)
    xs = rng.normal(size=40)
    ys = 0.5 * xs + rng.normal(size=40)
    found = market.correlation(list(xs), list(ys))
    r = np.corrcoef(xs, ys)[0, 1]
    assert found["corr"] == pytest.approx(r)
    half = 1.959964 / np.sqrt(40 - 3)
    assert found["low"] == pytest.approx(np.tanh(np.arctanh(r) - half))
    assert found["high"] == pytest.approx(np.tanh(np.arctanh(r) + half))
    assert market.correlation([1.0, 2.0], [3.0, 1.0])["corr"] is None  # too few pairs
    assert market.correlation([1.0] * 9, list(range(9)))["corr"] is None  # no spread


def test_lead_lag_finds_the_lag_at_which_sentiment_leads():
    import numpy as np

    weeks = dates.calendar_periods("week", "2019-01-07", "2020-12-28")
    index = np.random.default_rng(3).normal(size=len(weeks))
    points = [
        {"period": w, "sentiment": float(s), "volume": 5} for w, s in zip(weeks, index, strict=True)
    ]
    returns = {
        dates.shift_period("week", w, 2): 0.1 * float(s) for w, s in zip(weeks, index, strict=True)
    }
    rows = {row["lag"]: row for row in market.lead_lag(points, returns, "week")}
    assert rows[2]["corr"] == pytest.approx(1.0)
    assert all(abs(rows[k]["corr"]) < 0.35 for k in rows if k != 2)
    assert rows[2]["n"] == len(weeks)


def test_empty_periods_are_filled_for_counting():
    points = [
        {"period": "2020-01-06", "sentiment": 0.1, "share_negative": 0.2, "volume": 4},
        {"period": "2020-01-27", "sentiment": 0.1, "share_negative": 0.2, "volume": 4},
    ]
    filled = trends.with_empty_periods(points, "week")
    assert [(p["period"], p["volume"]) for p in filled] == [
        ("2020-01-06", 4), ("2020-01-13", 0), ("2020-01-20", 0), ("2020-01-27", 4),
    ]  # fmt: skip


# ----------------------------------------------------------------------------------------------
# The Monitor page


def test_the_monitor_overlays_prices_and_previews_a_rule_before_saving_it(
    fires_and_prices, monkeypatch
):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    db_path, settings, weeks = fires_and_prices
    monkeypatch.setenv("DEVMODE_DB", db_path)
    at = AppTest.from_file(str(ROOT / "pages" / "3_Monitor.py"), default_timeout=60).run()
    at.selectbox(key="monitor_dataset").set_value("wire").run()
    at.selectbox(key="monitor_ticker").set_value("ABBV").run()
    at.selectbox(key="monitor_prices").set_value("closes").run()
    assert not at.exception and not at.error
    charts = {c.proto.spec and json.loads(c.proto.spec)["layout"]["title"]["text"]: c
              for c in at.get("plotly_chart")}  # fmt: skip
    trend = json.loads(charts["Sentiment: wire · ABBV · per week"].proto.spec)
    overlay = next(t for t in trend["data"] if t.get("yaxis") == "y3")
    assert overlay["name"] == "ABBV close (closes)" and len(overlay["x"]) > 100
    lead_lag = json.loads(charts["Sentiment against ABBV close (closes): lead and lag"].proto.spec)
    assert lead_lag["data"][0]["x"] == list(range(-5, 6))

    for name, value in (("kind", "spike"), ("ticker", "ABBV")):
        at.selectbox(key=f"monitor_rule_{name}").set_value(value)
    for name, value in (("threshold", 1.0), ("window", 4), ("min_volume", 3)):
        at.number_input(key=f"monitor_rule_{name}").set_value(value)
    at.selectbox(key="monitor_preview_prices").set_value("closes")
    at.button(key="FormSubmitter:monitor_rule_form-Preview").click().run()
    assert not at.exception and not at.error
    with open_db(db_path) as db:
        assert db["devmode_alert_rules"].count == 0  # a preview stores nothing
    spec = next(
        json.loads(c.proto.spec)
        for c in at.get("plotly_chart")
        if json.loads(c.proto.spec)["layout"]["title"]["text"].startswith("Preview: ")
    )
    marked = next(t for t in spec["data"] if t.get("name") == "would fire")
    assert sorted(marked["x"]) == sorted(weeks)
    shown = " ".join(m.value for m in at.markdown)
    assert f"Fired {len(weeks)} times" in shown and "hit rate 100%" in shown
    table = next(d.value for d in at.dataframe if "forward return" in d.value.columns)
    assert list(table["forward return"]) == ["-5.0%"] * len(weeks)
    at.button(key="FormSubmitter:monitor_rule_form-Add rule").click().run()
    assert not at.exception
    with open_db(db_path) as db:
        raised = sorted(e["period_start"] for e in alerts.alert_events(db, "wire"))
    assert raised == sorted(weeks)
