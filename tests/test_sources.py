"""Feeds and watched folders: rows appended once, health recorded, failures backed off, nothing
stored lost or duplicated. Feeds come from a real HTTP server on 127.0.0.1."""

import datetime as dt
import os
import time

import pytest
from conftest import write_csv
from net_support import LocalServer, Route, atom, rss

from devmode.data import ingest, sources
from devmode.db import open_db
from devmode.monitor.monitoring import parse_date

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
        (Route(rss(items(40))), "a feed may be at most"),
    ],
    ids=["404", "html", "malformed", "timeout", "enormous"],
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
    monkeypatch.setattr(sources, "MAX_FEED_BYTES", 4096)
    if route is None:
        del server.routes["/f.rss"]
    else:
        server.routes["/f.rss"] = route
    waits = []
    for _ in range(3):
        result = sources.poll_source(db, source.id, timeout=0.5)
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


def test_folder_file_without_the_text_column_is_refused_whole(db, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    source = sources.add_source(db, "drops", folder=inbox)
    old = time.time() - 10
    write_csv(inbox / "a.csv", [{"headline": "Shares rose sharply today", "date": "2020-05-22"}])
    os.utime(inbox / "a.csv", (old, old))
    assert sources.poll_source(db, source.id).added == 1
    write_csv(inbox / "b.csv", [{"title": "Another one", "date": "2020-05-23"}])
    os.utime(inbox / "b.csv", (old, old))
    result = sources.poll_source(db, source.id)
    assert "has no 'headline' column" in result.error
    assert db["drops"].count == 1


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
