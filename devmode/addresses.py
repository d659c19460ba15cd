"""Web addresses that come from outside (feed and webhook URLs): checked when they are added,
shown masked, and fetched within bounds.

    url = check_address(text, what="webhook")      # http(s), a host, no user:password@
    mask(url)          # 'https://hooks.slack.com/services/…': safe to print, log and show
    answer = fetch(url, timeout=20, max_bytes=MAX)  # status, headers, body

A webhook's address is itself the secret (Slack's ``/services/T.../B.../x...``, a
``?token=``), and a feed's may carry one too: devmode stores the address whole and shows only
its scheme, host, port and first path segment. An address with user info (``user:pass@host``)
is refused: urllib would read ``user:pass@host`` as the host name, so it can never work, and
the password would be printed wherever the address is.

``fetch`` holds its deadline over the whole exchange, not one read at a time: a server that
sends its headers, then a byte every two seconds, is cut off when the deadline passes. It
follows redirects only to http(s) addresses, and with ``same_host`` only to the same host and
port (a webhook that redirects elsewhere would hand the alert to a stranger).
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message

from devmode.data.uploads import human_size
from devmode.errors import DevmodeError

SCHEMES = ("http", "https")
# What a masked address shows in place of the rest of its path, its query and its fragment.
MASK = "…"
# What an address is written in (RFC 3986: printable ASCII, no spaces).
_PRINTABLE_ASCII = re.compile(r"^[\x21-\x7e]+$")
# A path segment (or scheme) that reads as a name, not as a token.
_PLAIN = re.compile(r"^[A-Za-z0-9._-]{1,32}$")


class InvalidAddress(DevmodeError):
    """An address that cannot be used: not http(s), no host, or user info in it."""


class FetchFailed(DevmodeError):
    """No usable answer: ``reason`` is ``unreachable``, ``late``, ``too_big`` or ``redirect``.
    The message never holds the address (the caller adds it, masked)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Message
    body: bytes


def check_address(url: str, *, what: str = "address", example: str = "") -> str:
    """``url`` stripped, when it is an http(s) address with a host and no user info, written in
    the characters an address may hold (no spaces, control or non-ASCII characters)."""
    url = (url or "").strip()
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        raise InvalidAddress(
            f"The {what} {mask(url)} is not a well-formed address (its host or port cannot be "
            "read). Copy it again from where it came from."
        ) from None
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        hint = f" {example}" if example else ""
        raise InvalidAddress(
            f"A {what} is an http:// or https:// address; found {mask(url)!r}.{hint}"
        )
    if "@" in parts.netloc:
        raise InvalidAddress(
            f"The {what} {mask(url)} carries a user name or password (user:pass@host), which "
            "cannot be sent that way. Put the credential in the path or the query instead, as "
            "webhook services do (https://hooks.example.com/services/<token> or ?token=...)."
        )
    if not _PRINTABLE_ASCII.match(url):
        raise InvalidAddress(
            f"The {what} {mask(url)} holds spaces, control or non-ASCII characters, which an "
            "address cannot carry as they are. Percent-encode them (a space is %20), or copy the "
            "address again from where it came from."
        )
    return url


def mask(url: str | None) -> str:
    """The address with only its scheme, host, port and first path segment showing:
    ``https://hooks.slack.com/services/T0/B0/x`` -> ``https://hooks.slack.com/services/…``.

    User info is dropped whole. The first segment is shown only when it reads as a plain name
    (letters, digits, ``._-``, at most 32 characters); one that may be a token itself (Telegram's
    ``/bot123:ABC...``, a UUID, ``;token=``, percent-encoded text) is masked too. Anything that
    is not an address with a host is masked whole, but for its scheme."""
    text = str(url or "").strip()
    try:
        parts = urllib.parse.urlsplit(text)
        scheme, host, port = parts.scheme, parts.hostname, parts.port
    except ValueError:
        scheme, host, port = text.partition("://")[0] if "://" in text else "", None, None
    if not scheme or not host or not _PLAIN.match(scheme):
        return f"{scheme}://{MASK}" if scheme and _PLAIN.match(scheme) else (MASK if text else "")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    segments = parts.path.split("/")
    first = segments[1] if len(segments) > 1 else ""
    rest = "/".join(segments[2:]) or parts.query or parts.fragment
    shown = f"{scheme}://{netloc}"
    if first and not _PLAIN.match(first):
        return f"{shown}/{MASK}"
    if first or rest:
        shown += f"/{first}"
    if rest:
        shown += ("/" if len(segments) > 2 else "") + MASK
    return shown


def fetch(
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    same_host: bool = False,
) -> Answer:
    """GET (or POST ``data`` to) ``url``: the answer's status, headers and body, whatever the
    status (a 304 or a 500 is an answer too).

    :param timeout: seconds for the whole exchange: connecting, the TLS handshake, the headers
        and every byte of the body
    :param max_bytes: a body over this raises ``FetchFailed`` (read no further than that)
    :param same_host: follow redirects only to the same host and port
    :raises FetchFailed: its message never holds the address, which may carry a secret
    """
    try:
        check_address(url)  # an address stored before the checks (user:pass@) is refused too
    except InvalidAddress as e:
        raise FetchFailed(str(e), "invalid") from None
    watchdog = _Watchdog(timeout)
    request = urllib.request.Request(
        url, data=data, headers=headers or {}, method="POST" if data is not None else "GET"
    )
    opener = urllib.request.build_opener(
        _Redirects(url, same_host),
        _Handler(watchdog),
        _SecureHandler(watchdog),
    )
    try:
        with watchdog:
            try:
                with opener.open(request, timeout=timeout) as response:
                    return Answer(response.status, response.headers, _read(response, max_bytes))
            except urllib.error.HTTPError as e:
                with e:
                    return Answer(e.code, e.headers, b"")
    except FetchFailed:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        if watchdog.fired or isinstance(reason, TimeoutError) or isinstance(e, TimeoutError):
            raise FetchFailed(watchdog.late(), "late") from None
        # an OSError says why in words of its own; other errors may quote the address
        why = reason.strerror if isinstance(reason, OSError) and reason.strerror else None
        why = why or (str(reason) if isinstance(reason, str) else type(reason).__name__)
        raise FetchFailed(f"it could not be reached ({why})", "unreachable") from None


def _read(response, max_bytes: int) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchFailed(_too_big(int(declared), max_bytes), "too_big")
    chunks, size = [], 0
    while chunk := response.read1(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise FetchFailed(_too_big(size, max_bytes, at_least=True), "too_big")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_big(size: int, limit: int, *, at_least: bool = False) -> str:
    over = "over " if at_least else ""
    return f"the answer is {over}{human_size(size)}; at most {human_size(limit)} is read"


class _Watchdog:
    """Shuts the exchange's connections when the deadline passes, which ends any read in
    progress: a per-read timeout would let a server that trickles bytes hold on for ever.

    It keeps a duplicate of each TCP socket (a second descriptor of the same connection): TLS
    takes the original over when it wraps it, and shutting the duplicate down shuts the
    connection, handshake included.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.fired = False
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.timer = threading.Timer(max(seconds, 0.0), self._fire)
        self.timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.cancel()
        with self.lock:
            for sock in self.sockets:
                sock.close()
            self.sockets.clear()
        if self.fired and exc[0] is None:  # the body ended because the socket was shut
            raise FetchFailed(self.late(), "late")

    def late(self) -> str:
        return f"no whole answer within {self.seconds:g} s"

    def remaining(self) -> float:
        """Seconds left, for a connection's own timeout (at least a little, never 0: that
        would make the socket non-blocking)."""
        return max(self.deadline - time.monotonic(), 0.01)

    def connect(self, create, address, timeout, *rest) -> socket.socket:
        """``create(address, timeout, ...)`` within the time left, watched."""
        sock = create(address, min(timeout, self.remaining()), *rest)
        with self.lock:
            self.sockets.append(sock.dup())
            if self.fired:
                _shut(self.sockets[-1])
        return sock

    def _fire(self) -> None:
        with self.lock:
            self.fired = True
            for sock in self.sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _watched(connection_class, watchdog: _Watchdog):
    """``connection_class`` whose connections the watchdog can shut."""

    def make(host, **kwargs):
        connection = connection_class(host, **kwargs)
        create = connection._create_connection
        connection._create_connection = lambda *a: watchdog.connect(create, *a)
        return connection

    return make


class _Handler(urllib.request.HTTPHandler):
    def __init__(self, watchdog: _Watchdog):
        super().__init__()
        self.watchdog = watchdog

    def http_open(self, req):
        return self.do_open(_watched(http.client.HTTPConnection, self.watchdog), req)


class _SecureHandler(urllib.request.HTTPSHandler):
    def __init__(self, watchdog: _Watchdog):
        super().__init__()
        self.watchdog = watchdog

    def https_open(self, req):
        return self.do_open(
            _watched(http.client.HTTPSConnection, self.watchdog), req, context=self._context
        )


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Redirects to well-formed http(s) addresses only, and with ``same_host`` to the first
    address's host and port only. A POST is redirected only by 307 or 308, and sent again as a
    POST, as those codes ask: 301, 302 and 303 would turn it into a GET without its body,
    which a receiver could answer 200 to without ever seeing the alert."""

    def __init__(self, url: str, same_host: bool):
        super().__init__()
        self.origin = _host_port(url)
        self.same_host = same_host

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = newurl.partition(":")[0].lower()
        problem = None
        if scheme not in SCHEMES:
            problem = f"only http:// and https:// redirects are followed, not {scheme}://"
        else:
            try:
                check_address(newurl)
            except InvalidAddress:
                problem = "it is not an address that may be followed"
        if problem is None and self.same_host and _host_port(newurl) != self.origin:
            problem = "a redirect to another host is not followed"
        if problem is None and req.data is not None and code not in (307, 308):
            problem = "a POST is not turned into a GET; update the address to where it moved"
        if problem:
            fp.close()
            raise FetchFailed(
                f"it redirected (HTTP {code}) to {mask(newurl)}: {problem}", "redirect"
            )
        if req.data is not None:
            return urllib.request.Request(
                newurl,
                data=req.data,
                headers=dict(req.header_items()),
                origin_req_host=req.origin_req_host,
                method=req.get_method(),
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _host_port(url: str) -> tuple[str | None, int | None]:
    parts = urllib.parse.urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return (parts.hostname or "").lower(), parts.port or default
