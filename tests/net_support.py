"""Real HTTP servers on 127.0.0.1 for the tests: a feed server whose files change between
polls, and a webhook receiver that records what it was sent and answers as scripted."""

from __future__ import annotations

import http.server
import json
import threading
import time
from dataclasses import dataclass, field
from email.utils import format_datetime
from xml.sax.saxutils import escape


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/rss+xml; charset=utf-8"
    delay: float = 0.0  # seconds before answering (a server that hangs)
    etag: str | None = None  # answer 304 to a request that already has it
    statuses: list[int] = field(default_factory=list)  # POST: answered in turn, then 200
    location: str | None = None  # a redirect: answer ``status`` (30x) with this Location
    trickle_s: float = 0.0  # send the headers, then the body a byte every this many seconds
    reply: bytes | None = None  # POST: answer with this body (``content_type``), not "ok"


class LocalServer:
    """``server.routes["/feed.xml"] = Route(rss(...))``; ``server.url("/feed.xml")``. A route
    may also be a function that returns the ``Route`` for each request."""

    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.requests: list[dict] = []  # method, path, headers, body (JSON when it parses)
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                owner._answer(self, None)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                owner._answer(self, self.rfile.read(length))

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def posts(self, path: str) -> list:
        """Bodies POSTed to ``path`` and answered 2xx, in order."""
        return [r["body"] for r in self.requests if r["path"] == path and r["answered"] < 300]

    def _answer(self, handler, body: bytes | None) -> None:
        route = self.routes.get(handler.path)
        if callable(route):  # a route that answers each request its own way
            route = route()
        record = {
            "method": handler.command,
            "path": handler.path,
            "headers": dict(handler.headers),
            "body": _json_or_bytes(body),
            "answered": 404,
        }
        self.requests.append(record)
        if route is None:
            handler.send_error(404)
            return
        if route.delay:
            time.sleep(route.delay)
        if route.location:
            record["answered"] = route.status
            handler.send_response(route.status)
            handler.send_header("Location", route.location)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if body is not None:
            record["answered"] = route.statuses.pop(0) if route.statuses else 200
            answer = b"ok" if route.reply is None else route.reply
            try:
                handler.send_response(record["answered"])
                if route.reply is not None:
                    handler.send_header("Content-Type", route.content_type)
                handler.send_header("Content-Length", str(len(answer)))
                handler.end_headers()
                handler.wfile.write(answer)
            except OSError:  # the client gave up (a timeout test)
                record["answered"] = 599
            return
        if route.etag and handler.headers.get("If-None-Match") == route.etag:
            record["answered"] = 304
            handler.send_response(304)
            handler.end_headers()
            return
        record["answered"] = route.status
        handler.send_response(route.status)
        handler.send_header("Content-Type", route.content_type)
        handler.send_header("Content-Length", str(len(route.body)))
        if route.etag:
            handler.send_header("ETag", route.etag)
        handler.end_headers()
        try:
            if route.trickle_s:
                for i in range(len(route.body)):
                    handler.wfile.write(route.body[i : i + 1])
                    handler.wfile.flush()
                    time.sleep(route.trickle_s)
            else:
                handler.wfile.write(route.body)
        except OSError:  # the client gave up (a timeout test)
            pass

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _json_or_bytes(body: bytes | None):
    if body is None:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body


def rss(items: list[dict], title: str = "Local Markets") -> bytes:
    """An RSS 2.0 document; an item's keys: title, link, guid, description, published (a
    datetime, or a ready string)."""
    parts = []
    for item in items:
        fields = []
        for key, tag in (("title", "title"), ("link", "link"), ("guid", "guid")):
            if item.get(key):
                fields.append(f"<{tag}>{escape(item[key])}</{tag}>")
        if item.get("description"):
            fields.append(f"<description>{escape(item['description'])}</description>")
        published = item.get("published")
        if published is not None:
            text = published if isinstance(published, str) else format_datetime(published)
            fields.append(f"<pubDate>{text}</pubDate>")
        parts.append(f"<item>{''.join(fields)}</item>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>http://example.com/</link>"
        f"<description>test feed</description>{''.join(parts)}</channel></rss>"
    ).encode()


def atom(items: list[dict], title: str = "Local Atom") -> bytes:
    entries = "".join(
        f"<entry><title>{escape(i['title'])}</title><id>{escape(i['id'])}</id>"
        f'<link href="{escape(i["link"])}"/><updated>{i["updated"]}</updated></entry>'
        for i in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>{escape(title)}</title><id>urn:test</id><updated>2020-05-22T00:00:00Z</updated>"
        f"{entries}</feed>"
    ).encode()


def chat_reply(text: str, *, delay: float = 0.0) -> Route:
    """An OpenAI-compatible chat endpoint's answer (POST .../chat/completions, streamed as
    server-sent events) that says ``text``, after ``delay`` seconds."""
    chunk = {"id": "1", "object": "chat.completion.chunk", "created": 0, "model": "fixed"}
    events = [
        {**chunk, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]},
        {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return Route(reply=body.encode(), content_type="text/event-stream", delay=delay)
