"""RSS and Atom feeds, fetched within bounds and read with feedparser.

    batch = fetch_feed("https://example.com/markets.rss", state={}, timeout=20)

A feed item becomes a row ``{text: title, date: the raw published string, link, description:
summary, source: the feed's title}``; the date keeps its own zone's calendar date because the
raw string is stored (feedparser's parsed times are in UTC). An item with no date is dated when
first seen. The fetch is a conditional GET (an unchanged feed answers 304 and costs no
parsing), held to ``FETCH_TIMEOUT_S`` over the whole answer and ``MAX_FEED_BYTES``, and follows
redirects to http(s) addresses only. Messages name the feed by its masked address.
"""

from __future__ import annotations

import html
import io
import urllib.parse
from html.parser import HTMLParser
from typing import Any

import feedparser

from devmode import __version__, addresses
from devmode.data import ingest
from devmode.data.polling import Batch, Group, PollFailed, item_key, plural
from devmode.db import utc_now

# A feed larger than this is refused (a runaway or wrong URL), never read into memory whole.
MAX_FEED_BYTES = 20 * 1024 * 1024
# Seconds a feed may take to answer, all of it (a server that trickles bytes is cut off too).
FETCH_TIMEOUT_S = 20.0
# Columns of a dataset a feed creates, and their roles.
FEED_COLUMNS = ["text", "date", "link", "description", "source"]
FEED_MAPPING = ingest.ColumnMapping(text="text", date="date")
# feedparser's complaints that do not mean the XML is broken (a charset declared wrongly).
_HARMLESS = (feedparser.ThingsNobodyCaresAboutButMe,)


def fetch_feed(url: str, state: dict[str, Any], *, timeout: float = FETCH_TIMEOUT_S) -> Batch:
    """Fetch and parse the feed at ``url``; ``state`` holds the ETag and Last-Modified of the
    last fetch."""
    shown = addresses.mask(url)
    headers = {
        "User-Agent": f"devmode/{__version__} (+feed watcher)",
        "Accept": "application/rss+xml, application/atom+xml, application/xml, text/xml, */*",
        **({"If-None-Match": state["etag"]} if state.get("etag") else {}),
        **({"If-Modified-Since": state["modified"]} if state.get("modified") else {}),
    }
    try:
        answer = addresses.fetch(url, timeout=timeout, max_bytes=MAX_FEED_BYTES, headers=headers)
    except addresses.FetchFailed as e:
        raise PollFailed(_fetch_problem(e, shown, timeout)) from None
    if answer.status == 304:
        return Batch([], dict(state), notes=["Unchanged (HTTP 304)."])
    if not 200 <= answer.status < 300:
        raise PollFailed(f"The feed answered HTTP {answer.status} ({shown}).")
    body = answer.body
    if not body.strip():
        raise PollFailed(
            f"The feed answered with an empty body ({shown}). Expected an RSS or Atom document; "
            "it is tried again later."
        )
    content_type = answer.headers.get("Content-Type", "")
    # a stream, never bytes: feedparser opens bytes that look like a path (/etc/hosts) as a file;
    # relative links resolve against the host only (the path or query may carry a token)
    parsed = feedparser.parse(
        io.BytesIO(body),
        response_headers={"content-type": content_type, "content-location": _origin(url)},
    )
    problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
    broken = problem is not None and not isinstance(problem, _HARMLESS)
    if not parsed.entries and (broken or not parsed.get("version")):
        head = body[:512].lstrip().lower()
        if "html" in content_type.lower() or head.startswith((b"<!doctype html", b"<html")):
            raise PollFailed(
                f"{shown} answered with a web page (HTML), not an RSS or Atom feed. Expected the "
                "feed's own address: look for an RSS link on that page."
            )
        raise PollFailed(
            f"{shown} is not a readable RSS or Atom feed ({problem or 'no RSS or Atom elements'}). "
            "Expected an XML document with <rss> or <feed> at its root."
        )
    new_state = {
        k: v
        for k, v in (
            ("etag", answer.headers.get("ETag")),
            ("modified", answer.headers.get("Last-Modified")),
        )
        if v
    }
    title = plain_text(parsed.feed.get("title")) or None
    batch = feed_batch(parsed.entries, title or shown, new_state, title)
    if broken:
        batch.notes.insert(
            0,
            f"The feed is malformed ({problem}): {plural(len(parsed.entries), 'item')} could be "
            "read; items after the break may be missing.",
        )
    return batch


def _fetch_problem(e: addresses.FetchFailed, shown: str, timeout: float) -> str:
    if e.reason == "late":
        return f"The feed did not answer within {timeout:g} s ({shown}); it is tried again later."
    if e.reason == "too_big":
        return (
            f"{shown} is larger than a feed may be ({e}). Expected a feed of recent items; check "
            "the address."
        )
    if e.reason == "invalid":
        return f"{e} Remove this source and add it again."
    return f"The feed {shown} failed: {e}."


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/"


def feed_batch(entries, feed_title: str, state: dict[str, Any], title: str | None) -> Batch:
    """Feed entries (feedparser's) as one group of keyed rows."""
    first_seen = utc_now()
    items, undated, untitled = [], 0, 0
    for entry in entries:
        text = plain_text(entry.get("title")) or plain_text(entry.get("summary"))[:300]
        if not text:
            untitled += 1
            continue
        published = entry.get("published") or entry.get("updated") or entry.get("created")
        if not published:
            undated += 1
        link = entry.get("link") or None
        row = {
            "text": text,
            "date": published or first_seen,
            "link": link,
            "description": plain_text(entry.get("summary")) or None,
            "source": feed_title,
        }
        items.append((item_key(entry.get("id") or link, text, published), row))
    notes = []
    if undated:
        notes.append(f"{plural(undated, 'item')} had no date: dated when first seen.")
    if untitled:
        notes.append(f"{plural(untitled, 'item')} had no title or summary: skipped.")
    group = Group(feed_title, FEED_COLUMNS, FEED_MAPPING, items)
    return Batch([group], state, title, notes)


class _TextOnly(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def plain_text(value: Any) -> str:
    """Markup stripped, entities decoded, white space collapsed: '<b>Fed</b> &amp; rates' -> 'Fed & rates'."""
    if not value:
        return ""
    parser = _TextOnly()
    parser.feed(str(value))
    parser.close()
    return " ".join(html.unescape("".join(parser.parts)).split())
