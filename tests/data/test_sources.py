"""Feeds and watched folders: rows appended once, health recorded, failures backed off, nothing
stored lost or duplicated. Feeds come from a real HTTP server on 127.0.0.1."""

import datetime as dt
import os
import time

import pytest

from devmode.data import feeds, ingest, sources
from devmode.db import open_db
from devmode.monitor.monitoring import parse_date
from tests.conftest import ROOT, FakeScorer, run_cli, write_csv
from tests.net_support import LocalServer, Route, atom, rss

NY = dt.timezone(dt.timedelta(hours=-4))


def items(n: int, start: int = 0) -> list[dict]:
    return [
        {
            "title": f"Headline number {i}",
            "link": f"http://example.com/story/{i}",
            "guid": f"urn:story:{i}",
            "description": f"<p>Summary of <b>story</b> {i}</p>",
            "published": dt.datetime(2020, 5, 22, 23, 30, tzinfo=NY) + dt.timedelta(minutes=i),
        }
        for i in range(start, start + n)
    ]


@pytest.fixture
def server():
    s = LocalServer()
    yield s
    s.close()


def table_rows(db, name):
    return list(db[name].rows_where(order_by="rowid"))


def test_feed_items_become_rows_once_however_often_polled(db, server):
    server.routes["/markets.rss"] = Route(rss(items(3), title="Wire &amp; Co"))
    source = sources.add_source(db, "wire", feed=server.url("/markets.rss"))
    assert sources.due_sources(db)[0].id == source.id  # a new source is due at once
    first = sources.poll_source(db, source.id)
    assert (first.added, first.seen, first.error) == (3, 3, None)
    rows = table_rows(db, "wire")
    assert [r["text"] for r in rows] == [f"Headline number {i}" for i in range(3)]
    assert rows[0]["link"] == "http://example.com/story/0"
    assert rows[0]["description"] == "Summary of story 0"  # markup stripped
    assert rows[0]["source"] == "Wire & Co"
    # the raw published string is kept: 23:30 at -04:00 is the 22nd where it was published
    assert parse_date(rows[0]["date"]) == "2020-05-22"
    dataset = ingest.get_dataset(db, "wire")
    assert (dataset.mapping.text, dataset.mapping.date, dataset.row_count) == ("text", "date", 3)
    digest = dataset.sha256

    for _ in range(100):
        assert sources.poll_source(db, source.id).added == 0
    assert db["wire"].count == 3 and ingest.get_dataset(db, "wire").sha256 == digest

    server.routes["/markets.rss"] = Route(rss(items(2, start=2) + items(1), title="Wire &amp; Co"))
    again = sources.poll_source(db, source.id)
    assert (again.added, again.seen) == (1, 3)  # only story 3 is new
    assert db["wire"].count == 4 and ingest.get_dataset(db, "wire").row_count == 4
    assert ingest.get_dataset(db, "wire").sha256 != digest  # a run trained before sees the change
    health = sources.get_source(db, source.id)
    assert (health.total_added, health.last_added, health.failures) == (4, 1, 0)
    assert health.title == "Wire & Co" and health.health().startswith("OK: 1 new")


def test_keys_guid_then_link_then_text_and_date(db, server):
    same_story = {"title": "Fed raises rates", "published": "Fri, 22 May 2020 10:00:00 GMT"}
    server.routes["/a.rss"] = Route(
        rss(
            [
                {**same_story, "guid": "urn:g-1", "link": "http://a/1"},
                {
                    "title": "Linked only",
                    "link": "http://a/2",
                    "published": "Fri, 22 May 2020 11:00:00 GMT",
                },
                {
                    "title": "  Neither   guid nor link ",
                    "published": "Fri, 22 May 2020 12:00:00 GMT",
                },
            ]
        )
    )
    # a second feed into the same dataset re-posts two of them
    server.routes["/b.atom"] = Route(
        atom(
            [
                {
                    "title": "Fed raises rates",
                    "id": "urn:g-1",
                    "link": "http://b/1",
                    "updated": "2020-05-22T10:00:00Z",
                }
            ]
        )
    )
    server.routes["/c.rss"] = Route(
        rss([{"title": "neither guid NOR link", "published": "Fri, 22 May 2020 12:00:00 GMT"}])
    )
    ids = [
        sources.add_source(db, "wire", feed=server.url(path)).id
        for path in ("/a.rss", "/b.atom", "/c.rss")
    ]
    added = [sources.poll_source(db, i).added for i in ids]
    assert added == [3, 0, 0]
    assert db["devmode_source_items"].count == 3
    keys = {r["key"] for r in db["devmode_source_items"].rows}
    assert {"id:urn:g-1", "id:http://a/2"} <= keys


def test_markup_titles_and_items_without_dates_or_titles(db, server):
    server.routes["/f.rss"] = Route(
        rss(
            [
                {"title": "<b>Stocks</b> &amp; <i>bonds</i>  rally", "guid": "1"},
                {"title": "", "description": "", "guid": "2"},
                {"title": "Dated", "guid": "3", "published": "2020-05-22T23:30:00-04:00"},
            ]
        )
    )
    source = sources.add_source(db, "wire", feed=server.url("/f.rss"))
    result = sources.poll_source(db, source.id)
    assert result.added == 2
    rows = table_rows(db, "wire")
    assert rows[0]["text"] == "Stocks & bonds rally"
    assert parse_date(rows[0]["date"]) == dt.datetime.now(dt.UTC).date().isoformat()
    assert parse_date(rows[1]["date"]) == "2020-05-22"
    health = sources.get_source(db, source.id).health()
    assert "1 item had no date: dated when first seen" in health
    assert "1 item had no title or summary: skipped" in health


@pytest.mark.parametrize(
    "route, expected",
    [
        (None, "HTTP 404"),
        (
            Route(b"<!DOCTYPE html><html><body>Markets</body></html>", content_type="text/html"),
            "web page (HTML)",
        ),
        (
            Route(b"\x00\x01 this is not xml {", content_type="application/xml"),
            "not a readable RSS or Atom feed",
        ),
        (Route(rss(items(1)), delay=2.0), "did not answer within 0.5 s"),
        (Route(rss(items(40))), "larger than a feed may be (the answer is 9.7 KB; at most 4.0 KB"),
        # issue 26: each of these used to stop the watcher, hold it, or pass as "OK: 0 new"
        (Route(b""), "answered with an empty body"),
        (Route(rss(items(1)), trickle_s=0.2), "did not answer within 0.5 s"),
        (Route(rss(items(3))[:120]), "is not a readable RSS or Atom feed (<unknown>:1:"),
        (Route(status=302, location="ftp://example.com/feed.xml"), "not ftp://"),
        (Route(status=500), "HTTP 500"),
    ],
    ids=["404", "html", "malformed", "timeout", "enormous", "empty", "stall", "cut", "ftp", "500"],
)
def test_a_failing_feed_is_recorded_backed_off_and_loses_nothing(
    db, server, monkeypatch, route, expected
):
    server.routes["/f.rss"] = Route(rss(items(2)))
    source = sources.add_source(
        db, "wire", feed=server.url("/f.rss"), settings=sources.SourceSettings(every=60)
    )
    assert sources.poll_source(db, source.id).added == 2
    before = table_rows(db, "wire")
    monkeypatch.setattr(feeds, "MAX_FEED_BYTES", 4096)
    if route is None:
        del server.routes["/f.rss"]
    else:
        server.routes["/f.rss"] = route
    waits = []
    for _ in range(3):
        started = time.monotonic()
        result = sources.poll_source(db, source.id, timeout=0.5)
        assert time.monotonic() - started < 1.5  # the deadline holds over the whole answer
        assert expected in result.error and result.added == 0
        health = sources.get_source(db, source.id)
        poll = dt.datetime.fromisoformat(health.last_poll_at)
        waits.append((dt.datetime.fromisoformat(health.next_poll_at) - poll).total_seconds())
    assert waits == pytest.approx([60, 120, 240], abs=1)  # backs off instead of hammering
    assert health.failures == 3 and health.health().startswith("Failing (3 polls in a row")
    assert expected in health.health()
    assert sources.due_sources(db) == []
    assert table_rows(db, "wire") == before
    server.routes["/f.rss"] = Route(rss(items(3)))
    assert sources.poll_source(db, source.id).added == 1
    assert sources.get_source(db, source.id).failures == 0


def test_unchanged_feed_answers_304(db, server):
    server.routes["/f.rss"] = Route(rss(items(2)), etag='"v1"')
    source = sources.add_source(db, "wire", feed=server.url("/f.rss"))
    sources.poll_source(db, source.id)
    result = sources.poll_source(db, source.id)
    assert result.added == 0 and result.notes == ["Unchanged (HTTP 304)."]
    assert server.requests[-1]["answered"] == 304


def test_a_poll_killed_before_commit_stores_nothing(db_path, server, monkeypatch):
    server.routes["/f.rss"] = Route(rss(items(5)))
    with open_db(db_path) as db:
        source = sources.add_source(db, "wire", feed=server.url("/f.rss"))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as a kill lands between the rows and the commit

    monkeypatch.setattr(sources, "_record_success", killed)
    with open_db(db_path) as db, pytest.raises(KeyboardInterrupt):
        sources.poll_source(db, source.id)
    with open_db(db_path) as db:
        assert "wire" not in db.table_names() and db["devmode_source_items"].count == 0
    monkeypatch.undo()
    with open_db(db_path) as db:
        assert sources.poll_source(db, source.id).added == 5
        assert db["wire"].count == 5 and db["devmode_source_items"].count == 5


def test_folder_takes_settled_files_once(db, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    source = sources.add_source(db, "drops", folder=inbox)
    first = [
        {"headline": "Shares rose after results", "date": "2020-05-22"},
        {"headline": "Shares fell on guidance", "date": "2020-05-23"},
    ]
    path = write_csv(inbox / "monday.csv", first)
    (inbox / "notes.md").write_text("not data")
    (inbox / "tuesday.csv.part").write_text("headline,date\nhalf")
    result = sources.poll_source(db, source.id)
    assert result.added == 0 and "1 file still being written" in result.notes[0]
    old = time.time() - 10
    os.utime(path, (old, old))
    assert sources.poll_source(db, source.id).added == 2
    dataset = ingest.get_dataset(db, "drops")
    assert (dataset.mapping.text, dataset.mapping.date) == ("headline", "date")
    assert [r["source"] for r in table_rows(db, "drops")] == ["monday.csv", "monday.csv"]
    assert sources.poll_source(db, source.id).added == 0  # unchanged: not read again
    write_csv(path, [*first, {"headline": "Shares flat", "date": "2020-05-24"}])
    os.utime(path, (old + 1, old + 1))
    assert sources.poll_source(db, source.id).added == 1  # changed: only the new row
    bad = inbox / "broken.jsonl"
    bad.write_text('{"headline": "ok", "date": "2020-05-25"}\n{"headline": oops\n')
    os.utime(bad, (old, old))
    result = sources.poll_source(db, source.id)
    assert result.added == 0 and "broken.jsonl could not be read" in result.notes[0]
    assert db["drops"].count == 3


def test_a_folder_file_without_the_text_column_is_refused_on_its_own(db, tmp_path):
    """Before, one bad file stored nothing at all, unnamed, and when it sorted first its
    columns became the dataset's."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    source = sources.add_source(db, "drops", folder=inbox)
    old = time.time() - 10
    write_csv(inbox / "a_bad.csv", [{"price": "101.5", "volume": "2000"}])  # sorts first
    write_csv(
        inbox / "b_good.csv", [{"headline": "Shares rose sharply today", "date": "2020-05-22"}]
    )
    for name in ("a_bad.csv", "b_good.csv"):
        os.utime(inbox / name, (old, old))
    result = sources.poll_source(db, source.id)
    assert result.error is None and result.added == 1
    assert "a_bad.csv was refused: it has no column of text" in " ".join(result.notes)
    assert ingest.get_dataset(db, "drops").mapping.text == "headline"
    write_csv(inbox / "c.csv", [{"title": "Another one", "date": "2020-05-23"}])
    write_csv(inbox / "d.csv", [{"headline": "Bonds fell on the news", "date": "2020-05-23"}])
    for name in ("c.csv", "d.csv"):
        os.utime(inbox / name, (old, old))
    result = sources.poll_source(db, source.id)
    assert result.added == 1 and "c.csv was refused: it has no 'headline' column" in result.notes[0]
    assert [r["headline"] for r in table_rows(db, "drops")] == [
        "Shares rose sharply today",
        "Bonds fell on the news",
    ]
    assert "c.csv was refused" in sources.get_source(db, source.id).health()
    assert sources.poll_source(db, source.id).notes == []  # refused files wait until they change


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"feed": "ftp://example.com/x"}, "http:// or https://"),
        ({"feed": "markets.rss"}, "http:// or https://"),
        ({"folder": "/no/such/folder"}, "is not a folder"),
        ({}, "Give one of"),
    ],
)
def test_bad_sources_are_refused(db, kwargs, expected):
    with pytest.raises(sources.InvalidSource, match=expected):
        sources.add_source(db, "wire", **kwargs)
    with pytest.raises(ingest.InvalidDatasetName):
        sources.add_source(db, "devmode_x", feed="http://example.com/a.rss")
    with pytest.raises(sources.InvalidSource, match="from 5 to 86400 seconds"):
        sources.SourceSettings(every=1)
    assert db["devmode_sources"].count == 0


# ----------------------------------------------------------------------------------------------
# Issue 26: feeds and folders from a careless colleague or a stranger


def test_a_truncated_feed_says_it_is_malformed_and_keeps_what_it_read(db, server):
    whole = rss(items(3))
    server.routes["/f.rss"] = Route(whole[: whole.index(b"<item>", whole.index(b"<item>") + 1)])
    source = sources.add_source(db, "wire", feed=server.url("/f.rss"))
    result = sources.poll_source(db, source.id)
    assert result.error is None and result.added == 1
    assert "The feed is malformed" in result.notes[0] and "1 item could be read" in result.notes[0]
    assert "malformed" in sources.get_source(db, source.id).health()


def test_an_item_dated_ahead_is_kept_flagged_and_never_the_latest(news_copy, server):
    """A 2099 item used to become the dataset's latest day on the wall."""

    from devmode.monitor import monitoring, trends, wall

    dated = [("up", "Fri, 22 May 2020 10:00:00 GMT"), ("down", "Sat, 23 May 2020 10:00:00 GMT")]
    dated.append(("flat", "Thu, 01 Jan 2099 10:00:00 GMT"))
    server.routes["/f.rss"] = Route(
        rss(
            [
                {"title": f"{w} item {i}", "guid": f"g{i}", "published": d}
                for i, (w, d) in enumerate(dated)
            ]
        )
    )
    with open_db(news_copy) as db:
        source = sources.add_source(db, "wire", feed=server.url("/f.rss"))
        result = sources.poll_source(db, source.id)
        assert result.added == 3 and db["wire"].count == 3  # kept
        assert "1 item of Local Markets dated more than a day ahead (the latest 2099-01-01)" in (
            " ".join(result.notes)
        )
        monitoring.score_dataset(db, "wire", scorer=FakeScorer())
        view = wall.wall_view(db, "wire", period="day")
    assert view.stories_day == "2020-05-23" and view.points[-1]["period"] == "2099-01-01"
    summary = trends.trend_summary(view.points)
    assert summary["latest_period"] == "2020-05-23" and summary["periods"] == 3


def test_feed_addresses_with_user_info_are_refused_and_tokens_never_shown(db, server):
    with pytest.raises(sources.InvalidSource, match="user name or password") as refused:
        sources.add_source(db, "wire", feed="https://desk:hunter2@example.com/feed.rss")
    assert "hunter2" not in str(refused.value)
    server.routes["/feeds/private.rss?token=s3cr3t"] = Route(status=404)
    source = sources.add_source(db, "wire", feed=server.url("/feeds/private.rss?token=s3cr3t"))
    assert source.location.endswith("?token=s3cr3t")  # stored whole
    result = sources.poll_source(db, source.id)
    with pytest.raises(sources.InvalidSource, match="already brings") as twice:
        sources.add_source(db, "wire", feed=server.url("/feeds/private.rss?token=s3cr3t"))
    shown = [result.error, source.to_dict()["location"], str(sources.health_rows(db))]
    shown.append(str(twice.value))
    assert "HTTP 404" in result.error and "/feeds/…" in result.error
    assert all("s3cr3t" not in text for text in shown)


def test_folder_files_that_cannot_be_taken_are_named_and_the_rest_go_on(db, tmp_path):
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    inbox.mkdir()
    outside.mkdir()
    source = sources.add_source(db, "drops", folder=inbox)
    old = time.time() - 10
    write_csv(outside / "secret.csv", [{"headline": "Not for this dataset at all", "date": "x"}])
    (inbox / "link.csv").symlink_to(outside / "secret.csv")
    (inbox / "empty.csv").write_bytes(b"")
    undecodable = os.fsdecode(b"caf\xe9.csv")  # a name written on another system
    write_csv(
        inbox / undecodable, [{"headline": "Shares rose after the results", "date": "2020-05-22"}]
    )
    for name in ("empty.csv", undecodable):
        os.utime(inbox / name, (old, old))
    result = sources.poll_source(db, source.id)
    notes = " ".join(result.notes)
    assert result.error is None and result.added == 1
    assert "link.csv links to a file outside the folder: skipped" in notes
    assert "empty.csv is empty (0 bytes): skipped until it changes" in notes
    assert "still being written" not in notes  # it used to wait for ever
    assert [r["source"] for r in table_rows(db, "drops")] == ["caf\ufffd.csv"]
    assert db["drops"].count == 1


def test_a_feed_answering_an_empty_body_leaves_the_good_one_beside_it_whole(db_path, server):
    """The empty body used to raise AttributeError out of the watcher, unrecorded, so the
    source stayed due and every restart died after 0 passes."""

    server.routes["/empty.rss"] = Route(b"")
    server.routes["/good.rss"] = Route(rss(items(2)))
    with open_db(db_path) as db:
        bad = sources.add_source(db, "wire", feed=server.url("/empty.rss"))
        sources.add_source(db, "wire", feed=server.url("/good.rss"))
    first = run_cli(db_path, "watch", "--once")
    assert first.exit_code == 0 and first.exception is None, first.output
    assert "Polled 2 sources: 2 new rows" in first.stdout and "empty body" in first.stdout
    again = run_cli(db_path, "watch", "--once")  # recorded and backed off: not due at once
    assert again.exit_code == 0 and "Polled 0 sources" in again.stdout
    with open_db(db_path) as db:
        assert db["wire"].count == 2
        failing = sources.get_source(db, bad.id)
        assert "empty body" in failing.last_error and failing.failures == 1
        assert failing.next_poll_at > failing.last_poll_at


def test_a_feed_whose_body_is_a_local_path_is_not_read_as_that_file(db, server, tmp_path):
    """feedparser opens bytes that look like a path: a feed could make the watcher read a
    local file (or hang on /dev/zero)."""
    local = tmp_path / "local.rss"
    local.write_bytes(rss(items(2)))
    server.routes["/f.rss"] = Route(str(local).encode(), content_type="text/plain")
    source = sources.add_source(db, "wire", feed=server.url("/f.rss"))
    result = sources.poll_source(db, source.id)
    assert result.added == 0 and "not a readable RSS or Atom feed" in result.error
    assert "wire" not in db.table_names()


def test_a_file_the_dataset_refuses_leaves_the_good_file_beside_it_stored(db, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    source = sources.add_source(db, "drops", folder=inbox)
    write_csv(
        inbox / "a_good.csv", [{"headline": "Shares rose after results", "date": "2020-05-22"}]
    )
    (inbox / "b_nul.jsonl").write_text(
        '{"headline": "Shares \\u0000 fell", "date": "2020-05-23"}\n'
    )
    old = time.time() - 10
    for path in inbox.iterdir():
        os.utime(path, (old, old))
    result = sources.poll_source(db, source.id)
    assert result.error is None and result.added == 1
    assert "b_nul.jsonl was refused" in result.notes[0] and "NUL character" in result.notes[0]
    assert [r["headline"] for r in table_rows(db, "drops")] == ["Shares rose after results"]


def test_a_feed_dataset_made_before_the_masking_no_longer_shows_its_token(db_path):
    with open_db(db_path) as db:
        ingest.create_empty(
            db, "wire", feeds.FEED_COLUMNS, feeds.FEED_MAPPING, source="x", format="feed"
        )
        db["devmode_datasets"].update(1, {"source": "https://h/feeds/rss?token=s3cr3t"})
        db.execute("delete from _sqlite_migrations where name = '0014_masked_feed_addresses'")
    with open_db(db_path) as db:  # the migration runs again, as on an older database
        assert ingest.get_dataset(db, "wire").source == "https://h/feeds/…"


def test_the_monitor_guide_says_which_addresses_and_folders_a_source_may_name():
    readme = " ".join((ROOT / "docs" / "monitor.md").read_text().split())
    assert "loopback and the local network included" in readme
    assert "any folder the devmode process can read" in readme
    assert "the password gate is what keeps strangers from adding sources" in readme
