"""The watcher: feed in, rows scored, alert out to a real webhook receiver; as a pass, from the
command line, and as a background job that is stopped, killed and started again."""

import datetime as dt
import json
import os
import signal
import time

import pytest

from devmode import jobs
from devmode.data import sources
from devmode.db import open_db
from devmode.models import registry
from devmode.monitor import alerts, delivery, watcher
from tests import conftest
from tests.conftest import FakeScorer, scored_rows, wait_for, write_csv
from tests.net_support import Route, rss

UTC = dt.UTC


def headlines(words: list[str], day: int, start: int = 0) -> list[dict]:
    return [
        {
            "title": f"{word} news item {start + i}",
            "link": f"http://example.com/{start + i}",
            "guid": f"urn:item:{start + i}",
            "published": dt.datetime(2020, 5, day, 9, i, tzinfo=UTC),
        }
        for i, word in enumerate(words)
    ]


def make_due(db):
    db.execute("update devmode_sources set next_poll_at = null")


def test_a_pass_polls_scores_alerts_and_delivers_once(news_copy, server):
    calm = headlines(["up", "flat", "up", "flat"], day=18)  # the week of 18 May
    server.routes["/f.rss"] = Route(rss(calm))
    with open_db(news_copy) as db:
        sources.add_source(db, "wire", feed=server.url("/f.rss"))
        model = registry.active_model(db, "sentiment")
    watch = watcher.Watcher(news_copy)
    watch._scorers["sentiment"] = (model.id, FakeScorer())  # words decide, so the alert is sure

    first = watch.run_pass()
    assert (first.polled, first.added, first.scored, first.new_alerts) == (1, 4, 4, 0)
    with open_db(news_copy) as db:
        rule = alerts.add_alert_rule(
            db, "wire", kind="share_negative", threshold=0.5, min_volume=2, period="week"
        )
        delivery.add_channel(db, rule.id, webhook=server.url("/hook"), format="json")
        make_due(db)
    stress = headlines(["down", "down", "down", "up"], day=26, start=10)  # the next week
    server.routes["/f.rss"] = Route(rss(calm + stress))
    second = watch.run_pass()
    assert (second.added, second.scored, second.new_alerts, second.delivered) == (4, 4, 1, 1)
    (body,) = server.posts("/hook")
    assert body["alert"]["period_start"] == "2020-05-25"
    assert body["alert"]["share_negative"] == 0.75
    assert [s["link"] for s in body["stories"][:3]] == [
        "http://example.com/10",
        "http://example.com/11",
        "http://example.com/12",
    ]
    with open_db(news_copy) as db:
        make_due(db)
    third = watch.run_pass()
    assert (third.added, third.scored, third.new_alerts, third.delivered) == (0, 0, 0, 0)
    assert len(server.posts("/hook")) == 1


def run_cli(db_path, *args, check=True):
    """``conftest.run_cli`` (the CLI in this process), checked: no traceback, and exit 0 unless
    ``check`` is off."""
    result = conftest.run_cli(db_path, *args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if check:
        assert result.exit_code == 0, result.stderr
    return result


def test_sources_watch_once_and_alert_commands(news_copy, server):
    server.routes["/f.rss"] = Route(rss(headlines(["bad", "awful", "good", "flat"], day=18)))
    added = run_cli(
        news_copy, "sources", "add", "wire", "--feed", server.url("/f.rss"), "--every", "60"
    )
    assert "Source 1:" in added.stdout and "every 60 s" in added.stdout
    once = run_cli(news_copy, "watch", "--once")  # the real tiny model scores
    assert "Polled 1 sources: 4 new rows, 4 scored, 0 new alerts, 0 delivered." in once.stdout
    listed = json.loads(run_cli(news_copy, "sources", "list", "--json").stdout)
    assert listed[0]["total_added"] == 4 and listed[0]["health"].startswith("OK: 4 new")
    assert "Not watching" in run_cli(news_copy, "sources", "list").stdout
    by_source = run_cli(news_copy, "trends", "wire", "--by", "source", "--json").stdout
    assert {p["value"] for p in json.loads(by_source)} == {"Local Markets"}
    assert json.loads(by_source)[0]["volume"] == 4

    run_cli(news_copy, "alerts", "add", "wire", "--threshold", "0.5")
    notify = run_cli(news_copy, "alerts", "notify", "1", "--webhook", server.url("/hook"))
    assert "Channel 1: rule 1's new alerts go to webhook" in notify.stdout
    rules = run_cli(news_copy, "alerts", "rules", "wire").stdout
    assert "   1  share negative above 50%" in rules and "-> channel 1: webhook" in rules
    assert "No deliveries yet." in run_cli(news_copy, "alerts", "deliveries").stdout

    bad = run_cli(news_copy, "sources", "add", "wire", "--feed", "markets.rss", check=False)
    assert bad.exit_code == 1 and "http:// or https://" in bad.stderr
    bad = run_cli(news_copy, "trends", "wire", "--by", "sector", check=False)
    assert "has no column 'sector'" in bad.stderr
    bad = run_cli(news_copy, "alerts", "notify", "9", "--webhook", "http://x/", check=False)
    assert "No alert rule with id 9" in bad.stderr
    assert "Source 1 removed" in run_cli(news_copy, "sources", "remove", "1").stdout


def test_watching_in_the_background_stop_kill_and_start_again(news_copy, server):
    server.routes["/f.rss"] = Route(rss(headlines(["bad", "good", "flat"], day=18)))
    with open_db(news_copy) as db:
        sources.add_source(
            db, "wire", feed=server.url("/f.rss"), settings=sources.SourceSettings(every=5)
        )
    first = watcher.start_watching(news_copy)
    with open_db(news_copy) as db, pytest.raises(jobs.JobAlreadyRunning):
        watcher.create_watcher(db)  # one watcher at a time

    wait_for(
        lambda: scored_rows(news_copy, "wire") == 3,
        timeout=120,
        what="the watcher to poll and score the feed",
    )
    server.routes["/f.rss"] = Route(rss(headlines(["bad", "good", "flat", "up"], day=19, start=10)))

    def has_four():
        with open_db(news_copy) as db:
            return "wire" in db.table_names() and db["wire"].count == 7

    def has_four_after_two_passes():  # a pass is counted once its rows are scored
        with open_db(news_copy) as db:
            return has_four() and watcher.current_watcher(db).passes >= 2

    wait_for(has_four_after_two_passes, timeout=30, what="the next poll, five seconds later")
    with open_db(news_copy) as db:
        running = watcher.current_watcher(db)
        assert running.id == first.id and running.is_active and running.passes >= 2
        assert running.describe().startswith("Watching since")
    os.kill(running.pid, signal.SIGKILL)
    wait_for(lambda: not jobs.pid_alive(running.pid), timeout=10, what="the kill")
    with open_db(news_copy) as db:
        assert watcher.current_watcher(db).status == jobs.INTERRUPTED
        assert db["wire"].count == 7 and db["devmode_source_items"].count == 7
    again = watcher.start_watching(news_copy)
    assert again.id != first.id
    stop = run_cli(news_copy, "watch", "--stop")
    assert f"Asked watcher {again.id} to stop." in stop.stdout

    def stopped():
        with open_db(news_copy) as db:
            return watcher.current_watcher(db).status == jobs.CANCELLED

    wait_for(stopped, timeout=60, what="the watcher to stop")
    with open_db(news_copy) as db:
        assert "stopped" in watcher.current_watcher(db).describe()
        assert db["wire"].count == 7


SUBMIT_SOURCE = "FormSubmitter:monitor_source_form-Add source"


def test_monitor_page_adds_a_feed_and_watches_it(news_copy, server, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    server.routes["/f.rss"] = Route(rss(headlines(["bad", "good", "flat"], day=18)))
    monkeypatch.setenv("DEVMODE_DB", news_copy)
    at = AppTest.from_file(str(ROOT / "pages" / "3_Monitor.py"), default_timeout=60).run()
    assert not at.exception
    assert "Not watching." in [c.value for c in at.caption]
    at.text_input(key="monitor_source_location").set_value("markets.rss")
    at.text_input(key="monitor_source_dataset").set_value("wire")
    at.button(key=SUBMIT_SOURCE).click().run()  # a bad address is refused, nothing stored
    assert "neither a feed address nor a folder" in at.error[0].value
    at.text_input(key="monitor_source_location").set_value(server.url("/f.rss"))
    at.text_input(key="monitor_source_dataset").set_value("wire")
    at.button(key=SUBMIT_SOURCE).click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value  # the sources table
    assert list(table["dataset"]) == ["wire"] and "Not polled yet" in table["health"][0]
    at.button(key="monitor_watch_start").click().run()  # a real watcher process
    assert not at.exception and not at.error

    wait_for(
        lambda: scored_rows(news_copy, "wire") == 3,
        timeout=120,
        what="the watcher to poll and score the feed",
    )
    at.run()
    assert any("Watching since" in s.value for s in at.success)
    assert at.dataframe[0].value["added"][0] == 3
    at.button(key="monitor_watch_stop").click().run()
    with open_db(news_copy) as db:
        wait_for(lambda: not watcher.current_watcher(db).is_active, timeout=60, what="the stop")


# ----------------------------------------------------------------------------------------------
# Issue 26: no bad source stops the watcher


def _feed(route):
    def add(db, server, tmp_path, monkeypatch):
        server.routes["/bad.rss"] = route
        return sources.add_source(db, "bad", feed=server.url("/bad.rss"))

    return add


def _folder(make):
    def add(db, server, tmp_path, monkeypatch):
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        make(inbox)
        old = time.time() - 10
        for path in inbox.iterdir():
            os.utime(path, (old, old), follow_symlinks=False)
        return sources.add_source(db, "bad", folder=inbox)

    return add


def _gone(db, server, tmp_path, monkeypatch):
    inbox = tmp_path / "gone"
    inbox.mkdir()
    source = sources.add_source(db, "bad", folder=inbox)
    inbox.rmdir()
    return source


def _bug(db, server, tmp_path, monkeypatch):
    """feedparser failing in a way nobody planned for (as its AttributeError once did)."""
    from devmode.data import feeds

    real = feeds.feedparser.parse

    def parse(stream, **kwargs):
        if b"BOOM" in stream.getvalue():
            raise AttributeError("object has no attribute 'version'")
        return real(stream, **kwargs)

    monkeypatch.setattr(feeds.feedparser, "parse", parse)
    return _feed(Route(b"<rss>BOOM</rss>"))(db, server, tmp_path, monkeypatch)


# (kind, how the failing source is made, what its health or notes must say)
SOURCE_FAILURES = [
    ("empty body", _feed(Route(b"")), "empty body"),
    ("stalled body", _feed(Route(rss(headlines(["up"], day=18)), trickle_s=0.3)), "within 1 s"),
    ("HTTP 500", _feed(Route(status=500)), "HTTP 500"),
    ("web page", _feed(Route(b"<html><body>hi</body></html>", content_type="text/html")), "HTML"),
    ("not XML", _feed(Route(b"\x00\x01{")), "not a readable RSS"),
    ("ftp redirect", _feed(Route(status=301, location="ftp://x/feed")), "not ftp://"),
    (
        "unreachable",
        lambda db, *a: sources.add_source(db, "bad", feed="http://127.0.0.1:9/x"),
        "could not be reached",
    ),
    ("a bug", _bug, "failed unexpectedly (AttributeError"),
    ("folder gone", _gone, "is gone"),
    (
        "bad file",
        _folder(lambda d: write_csv(d / "a.csv", [{"price": "1.5", "volume": "9"}])),
        "a.csv was refused",
    ),
    (
        "undecodable name",
        _folder(lambda d: (d / os.fsdecode(b"\xff\xfe.csv")).write_bytes(b"\xff\xfe\x00")),
        "could not be read",
    ),
    ("empty file", _folder(lambda d: (d / "empty.csv").write_bytes(b"")), "empty (0 bytes)"),
]


@pytest.mark.parametrize("kind,make,message", SOURCE_FAILURES, ids=[c[0] for c in SOURCE_FAILURES])
def test_a_failing_source_never_keeps_the_good_one_beside_it_from_its_rows(
    db_path, server, tmp_path, monkeypatch, kind, make, message
):
    server.routes["/good.rss"] = Route(rss(headlines(["up", "down"], day=18)))
    with open_db(db_path) as db:
        bad = make(db, server, tmp_path, monkeypatch)
        good = sources.add_source(db, "good", feed=server.url("/good.rss"))
    summary = watcher.Watcher(db_path, fetch_timeout=1.0).run_pass()
    assert summary.polled == 2 and summary.added == 2
    with open_db(db_path) as db:
        assert db["good"].count == 2 and sources.get_source(db, good.id).last_error is None
        failing = sources.get_source(db, bad.id)
    assert message in failing.health() and message in " ".join(summary.lines + summary.problems)
    if failing.last_error:  # backed off, not due again at once
        assert failing.failures == 1 and failing.next_poll_at > failing.last_poll_at


def test_watch_once_is_refused_beside_a_running_watcher(db_path):
    running = watcher.start_watching(db_path)  # a real watcher process
    try:
        once = run_cli(db_path, "watch", "--once", check=False)
        assert once.exit_code == 1
        assert f"Watcher {running.id} is already watching (process {running.pid})" in once.stderr
    finally:
        with open_db(db_path) as db:
            watcher.stop_watching(db)
        wait_for(lambda: not jobs.pid_alive(running.pid), timeout=60, what="the watcher to stop")


def test_a_watcher_among_rotating_failures_keeps_going_and_loses_no_row(db_path, tmp_path):
    """benchmarks/watcher_faults.py for ten minutes, here for ten seconds: ten sources, three
    failing in rotating ways, seven publishing all along."""
    from tests.fault_support import FaultFarm

    farm = FaultFarm(db_path, tmp_path)
    try:
        report = farm.run(seconds=10, fetch_timeout=1.0)
    finally:
        farm.close()
    assert report.watcher_alive and report.passes >= 3
    assert report.missing() == {}  # every good source got every row
    good = [s for s in report.sources if s["good"]]
    assert len(good) == 7 and all(s["stored"] > 0 and s["failures"] == 0 for s in good)
    bad = {s["dataset"]: s for s in report.sources if not s["good"]}
    for name in ("bad0", "bad1"):
        assert bad[name]["failures"] >= 1 and bad[name]["health"].startswith("Failing")
        assert bad[name]["stored"] == 0 and len(bad[name]["faults"].split(", ")) >= 3
    assert bad["bad_drops"]["stored"] == 0
    assert (
        "was refused" in bad["bad_drops"]["health"]
        or "could not be read" in (bad["bad_drops"]["health"])
    )
