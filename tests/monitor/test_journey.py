"""An analyst tunes an alert in chromium: score dated headlines, preview a spike rule on their
history, add prices and see them beside sentiment with the lead/lag chart, save the rule with a
brief, publish a negative week through a local feed (the chart moves by itself), receive the
alert with its brief on a local webhook, and open the wall display. The brief's backend is a local endpoint that answers with a fixed, valid brief,
so the journey does not hang on what the 135M model writes; the tiny test model scores."""

import random

from devmode.db import open_db
from devmode.monitor import alerts, backtest
from tests.browser_support import (
    StreamlitApp,
    assert_healthy,
    choose,
    click,
    expand,
    open_page,
    settle,
    type_into,
    visible_text,
    wait_for_text,
)
from tests.conftest import scored_rows, wait_for
from tests.journey_support import texts_by_polarity
from tests.net_support import LocalServer, Route, chat_reply, rss
from tests.price_support import closes_after, long_price_file, store_headlines, week_of

SPIKE = {"kind": "spike", "threshold": 1.0, "window": 4, "min_volume": 3}


def test_an_analyst_previews_a_rule_sets_prices_beside_it_and_gets_a_briefed_alert(
    browser, news_copy, tmp_path
):
    rows = store_headlines(news_copy, tmp_path)  # not scored yet: the journey scores them
    _, stress = texts_by_polarity(news_copy)
    weeks = sorted({week_of(r["date"]) for r in rows})
    falling = set(random.Random(5).sample(weeks, len(weeks) // 6))
    closes = closes_after(falling, weeks[0], "2020-07-31")
    prices_file = long_price_file(tmp_path / "index.csv", {"": closes})

    first_new = len(rows) + 1  # the feed's rows follow the upload's
    ids = list(range(first_new, first_new + len(stress)))
    brief = f"- {' '.join(stress)} [{', '.join(map(str, ids))}]"
    server = LocalServer()
    server.routes["/markets.rss"] = Route(rss([]))
    server.routes["/hook"] = Route()
    server.routes["/v1/chat/completions"] = chat_reply(brief)
    try:
        with StreamlitApp(news_copy) as app:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})

            # 1. score the dated headlines
            open_page(page, app.url("Monitor"))
            choose(page, "Dataset", "wire")
            click(page, "Score new rows")
            wait_for(lambda: scored_rows(news_copy, "wire") == len(rows), timeout=180,
                     what="scoring the headlines")  # fmt: skip
            open_page(page, app.url("Monitor"))
            choose(page, "Dataset", "wire")
            wait_for_text(page, "Sentiment: wire · per week")

            # 2. preview a spike rule: its past fires on the chart, nothing saved
            with open_db(news_copy) as db:
                expected = backtest.backtest(db, "wire", alerts.RuleSettings(**SPIKE))["fires"]
            assert expected, "the spike rule fires nowhere in the history"
            fill_spike_rule(page)
            click(page, "Preview")
            wait_for_text(page, f"Fired {len(expected)} time")
            assert "Rule (not saved): share negative 1 standard deviations" in visible_text(page)
            page.get_by_text(f"Fired {len(expected)} time").first.scroll_into_view_if_needed()
            page.wait_for_timeout(1000)  # plotly draws a chart once it is in view
            marks = traces(page, "Preview: ")["would fire"]["x"]
            assert sorted(marks) == sorted(f["period"] for f in expected)
            with open_db(news_copy) as db:
                assert db["devmode_alert_rules"].count == 0

            # 3. a prices dataset: the overlay and the lead/lag chart
            open_page(page, app.url("Datasets"))
            page.get_by_text("Prices", exact=True).click()
            settle(page)
            page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(prices_file)
            wait_for_text(page, "Read index.csv")
            settle(page)
            type_into(page, "Prices dataset name", "closes")
            click(page, "Save prices")
            wait_for_text(page, "Saved prices dataset closes: 1 series (index)")
            open_page(page, app.url("Monitor"))
            choose(page, "Dataset", "wire")
            choose(page, "Overlay prices", "closes")
            wait_for_text(page, "Sentiment against index close (closes): lead and lag")
            page.get_by_text("Sentiment against index").first.scroll_into_view_if_needed()
            page.wait_for_timeout(1000)
            overlay = traces(page, "Sentiment: wire")["index close (closes)"]
            assert overlay["yaxis"] == "y3" and len(overlay["x"]) > 100

            # 4. save the rule with a brief, delivered to a local webhook
            fill_spike_rule(page)
            expand(page, "Brief with each alert")
            type_into(page, "Brief by", server.url("/v1"))
            type_into(page, "Model", "fixed")
            click(page, "Add rule")
            with open_db(news_copy) as db:
                (rule,) = alerts.list_alert_rules(db, "wire")
                raised = {e["period_start"] for e in alerts.alert_events(db, "wire")}
            assert rule.settings.brief == server.url("/v1")
            assert raised == {f["period"] for f in expected}  # what the preview showed
            expand(page, "Deliver alerts: webhook or e-mail")
            type_into(page, "Webhook URL or e-mail address", server.url("/hook"))
            choose(page, "Webhook body", "json")
            click(page, "Deliver this rule's alerts")
            expand(page, "Alert rules")  # the rule's channels are listed under it
            wait_for_text(page, f"webhook {server.url('/hook')} (json)")

            # 5. a negative week arrives through a local feed
            server.routes["/markets.rss"] = Route(rss(feed_items(stress, "2020-06-22")))
            expand(page, "Live sources: feeds and folders")
            type_into(page, "Feed URL or folder", server.url("/markets.rss"))
            type_into(page, "Into dataset", "wire")
            type_into(page, "Poll every (seconds)", "5", role="spinbutton")
            click(page, "Add source")
            click(page, "Start watching")
            wait_for_text(page, "Watching since")

            # 6. untouched, the chart moves to the new week; the alert reaches the webhook with
            # its brief
            for _ in range(240):
                if "2020-06-22" in traces(page, "Sentiment: wire")["sentiment index"]["x"]:
                    break
                page.wait_for_timeout(500)
            assert "2020-06-22" in traces(page, "Sentiment: wire")["sentiment index"]["x"], (
                "the page did not redraw with the feed's week"
            )
            wait_for(lambda: server.posts("/hook"), timeout=180, what="the alert's delivery")
            (alert,) = server.posts("/hook")
            assert alert["alert"]["period_start"] == "2020-06-22"
            assert alert["brief"] == [{"text": " ".join(stress), "stories": ids}]
            assert {s["id"] for s in alert["stories"]} == set(ids)
            asked = next(r for r in server.requests if r["path"] == "/v1/chat/completions")
            assert all(str(i) in asked["body"]["messages"][-1]["content"] for i in ids)
            assert_healthy(page)

            # the wall display: the same trend, the open alerts, no widgets
            open_page(page, app.url("Monitor") + "?kiosk=1&dataset=wire")
            wait_for_text(page, "wire · per week")
            wait_for_text(page, "Most negative stories")
            widgets = page.locator(
                "[data-testid=stButton], [data-testid=stSelectbox], [data-testid=stTextInput], "
                "[data-testid=stNumberInput], [data-testid=stCheckbox], [data-testid=stToggle]"
            )
            assert widgets.count() == 0
            assert not page.locator("[data-testid=stSidebar]").is_visible()
            open_page(page, app.url("Monitor"))
            expand(page, "Live sources: feeds and folders")
            click(page, "Stop watching")
    finally:
        server.close()


def fill_spike_rule(page) -> None:
    """The rule form: a weekly spike of 1 standard deviation over 4 weeks, 3 texts at least."""
    expand(page, "Alert rules")
    choose(page, "Kind", "spike")
    type_into(page, "Threshold", "1", role="spinbutton")
    type_into(page, "Window (spikes)", "4", role="spinbutton")
    type_into(page, "Minimum texts", "3", role="spinbutton")


def traces(page, title: str) -> dict[str, dict]:
    """{name: {x, yaxis}} of the traces of the chart whose title holds ``title``, read from
    plotly's own data (plotly draws a chart once it has been in view)."""
    found = page.evaluate(
        """(title) => {
            for (const plot of document.querySelectorAll('.js-plotly-plot')) {
                const layout = plot._fullLayout || {};
                if (!String((layout.title || {}).text || '').includes(title)) continue;
                return plot.data.map(t => ({name: t.name, x: t.x, yaxis: t.yaxis || 'y'}));
            }
            return [];
        }""",
        title,
    )
    return {t["name"]: t for t in found}


def feed_items(texts: list[str], monday: str) -> list[dict]:
    import datetime as dt

    day = dt.date.fromisoformat(monday)
    return [
        {
            "title": text,
            "link": f"http://example.com/negative/{i}",
            "guid": f"urn:negative:{i}",
            "published": dt.datetime(day.year, day.month, day.day, 9, i, tzinfo=dt.UTC),
        }
        for i, text in enumerate(texts)
    ]
