"""Feed and webhook addresses: checked, shown masked, and fetched within a deadline that holds
over the whole exchange, TLS included. Real servers on 127.0.0.1."""

import socket
import threading
import time

import pytest

from devmode import addresses
from tests.net_support import LocalServer, Route


@pytest.mark.parametrize(
    "url,shown",
    [
        ("https://hooks.slack.com/services/T000/B000/XXXX", "https://hooks.slack.com/services/…"),
        ("https://example.com/hook?token=abc", "https://example.com/hook…"),
        ("https://example.com/markets.rss", "https://example.com/markets.rss"),
        ("http://desk:hunter2@host:8080/a/b", "http://host:8080/a/…"),
        ("https://example.com", "https://example.com"),
        ("https://h/hook;token=SECRET", "https://h/…"),  # a parameter in the first segment
        ("https://api.telegram.org/bot123:ABC/sendMessage", "https://api.telegram.org/…"),
        ("https://webhook.site/0f8e3b2a-1c4d-4e5f-8a9b-0c1d2e3f4a5b", "https://webhook.site/…"),
        ("https://h/a%2Fb/c", "https://h/…"),
        ("http://[abc/x", "http://…"),  # not an address at all: it raised before
        ("not an address", "…"),
    ],
)
def test_a_masked_address_shows_its_host_and_a_plain_first_segment_only(url, shown):
    assert addresses.mask(url) == shown


@pytest.mark.parametrize(
    "url,phrase",
    [
        ("ftp://example.com/feed", "is an http:// or https:// address"),
        ("http://desk:hunter2@example.com/hook", "carries a user name or password"),
        ("http://example.com/services/café", "spaces, control or non-ASCII characters"),
        ("http://example.com/a b", "spaces, control or non-ASCII characters"),
        ("http://[x/", "is not a well-formed address"),
        ("http://example.com:abc/", "is not a well-formed address"),
    ],
)
def test_an_address_that_cannot_work_is_refused_without_its_secret(url, phrase):
    with pytest.raises(addresses.InvalidAddress, match=phrase) as refused:
        addresses.check_address(url, what="webhook")
    assert "hunter2" not in str(refused.value)


@pytest.fixture
def trickling_tls():
    """A server that answers a TLS hello with a record header promising 16 KB, then sends a
    byte every 0.2 s: every read returns in time, so only a deadline over the whole exchange
    ends it."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return

            def trickle(conn=conn):
                try:
                    conn.recv(65536)
                    conn.sendall(b"\x16\x03\x03\x40\x00")
                    for _ in range(100):
                        conn.sendall(b"\x00")
                        time.sleep(0.2)
                except OSError:
                    pass
                finally:
                    conn.close()

            threading.Thread(target=trickle, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield f"https://127.0.0.1:{server.getsockname()[1]}/feed.rss"
    server.close()


def test_the_deadline_holds_over_a_tls_handshake_that_trickles(trickling_tls):
    """TLS took the watched socket over, so shutting it did nothing: an https:// feed or
    webhook could hold the watcher for as long as it liked."""
    started = time.monotonic()
    with pytest.raises(addresses.FetchFailed, match="within 1 s") as late:
        addresses.fetch(trickling_tls, timeout=1.0, max_bytes=1024)
    assert late.value.reason == "late" and time.monotonic() - started < 3


@pytest.fixture
def server():
    s = LocalServer()
    yield s
    s.close()


def test_redirects_go_to_http_on_the_same_host_and_a_post_only_by_307(server):
    port = server.httpd.server_address[1]
    server.routes["/in"] = Route()
    server.routes["/moved"] = Route(status=307, location="/in")
    server.routes["/gone"] = Route(status=301, location="/in")
    server.routes["/away"] = Route(status=307, location=f"http://localhost:{port}/in")
    server.routes["/bad-port"] = Route(status=307, location="http://127.0.0.1:abc/in")
    post = {"data": b"{}", "timeout": 5, "max_bytes": 1024, "same_host": True}
    assert addresses.fetch(server.url("/moved"), **post).status == 200
    assert server.posts("/in") == [{}]  # the body went with it
    for path, phrase in (
        ("/gone", "a POST is not turned into a GET"),
        ("/away", "a redirect to another host is not followed"),
        ("/bad-port", "not an address that may be followed"),
    ):
        with pytest.raises(addresses.FetchFailed, match=phrase):
            addresses.fetch(server.url(path), **post)
    assert len(server.posts("/in")) == 1
