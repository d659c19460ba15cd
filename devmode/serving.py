"""What devmode's HTTP endpoints share (``serve``: the chat model's OpenAI-compatible routes and
the classifiers' ``/predict``): errors as OpenAI-style objects, bodies read within a size and a
deadline, the API key, and the server itself (Starlette under uvicorn, on a socket bound first).

    server = Server(("127.0.0.1", 0), routes, api_key="k", routes_help="Use POST /predict.")
    threading.Thread(target=server.serve_forever).start()
    ...
    server.shutdown(); server.server_close()

A malformed request of any kind gets a 4xx with ``{"error": {"message", "type", "param",
"code"}}`` and the server goes on answering; even a request that breaks HTTP itself (a
``Content-Length`` that is not a number) gets one. With an API key configured, requests without
it get 401; without one the server is open, which is why it listens on 127.0.0.1 unless told
otherwise.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import socket
import threading
from collections.abc import Callable
from typing import Any

import h11
import uvicorn
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

# Limit the body of a request, so a stray upload cannot fill the memory.
MAX_BODY_BYTES = 8 * 1024 * 1024
# Seconds the whole body may take to arrive (a Content-Length longer than what is sent would
# otherwise hold the connection for ever).
BODY_TIMEOUT_S = 30.0


class Strict(BaseModel):
    """A request body's model: types as declared (no "3" for 3), unknown fields ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)


class RequestError(Exception):
    """A request that cannot be answered: its status, message and the field at fault."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")
        self.headers = headers


def error_body(
    status: int, message: str, param: str | None = None, kind: str | None = None
) -> dict:
    """An OpenAI-style error object."""
    kind = kind or ("invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


_TYPE_TAG = re.compile(r"^(str|int|float|bool|list\[.*\]|[A-Z]\w*)$")


def field_path(error: dict[str, Any]) -> tuple[tuple, str]:
    """(loc, "messages[0].role"): where a pydantic error is, as a person names the field (a
    union's errors name the member type they tried, "stop.str", which is left out)."""
    loc = tuple(part for part in error["loc"] if isinstance(part, int) or not _TYPE_TAG.match(part))
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    return loc, path


def describe_validation(error: ValidationError) -> tuple[str, str | None]:
    """The first problem of a request body, as a sentence that names the field, and the field."""
    first = error.errors()[0]
    _, path = field_path(first)
    if first["type"] == "missing":
        return f"{path} is required.", path
    message = first["msg"][0].lower() + first["msg"][1:]
    return f"{path}: {message}; found {first.get('input')!r}.", path


def bearer_check(api_key: str | None) -> Callable[[Request], None]:
    """A function that raises 401 unless the request carries ``Authorization: Bearer KEY``
    (nothing is checked without a key)."""

    def authorize(request: Request) -> None:
        if not api_key:
            return
        scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
        # the scheme is case-insensitive (RFC 9110); the key is compared in constant time
        matches = hmac.compare_digest(given.strip().encode(), api_key.encode())
        if scheme.lower() != "bearer" or not matches:
            raise RequestError(401, "Incorrect or missing API key.", kind="invalid_api_key")

    return authorize


async def read_json(request: Request, expected: str = "a JSON object") -> dict[str, Any]:
    """The request's JSON object, read up to ``MAX_BODY_BYTES`` within ``BODY_TIMEOUT_S``."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise RequestError(
            413, f"The request body is {int(declared):,} bytes; at most {MAX_BODY_BYTES:,}."
        )
    data = bytearray()
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            async for chunk in request.stream():
                data += chunk
                if len(data) > MAX_BODY_BYTES:
                    raise RequestError(413, f"The request body is over {MAX_BODY_BYTES:,} bytes.")
    except TimeoutError:
        raise RequestError(
            408,
            f"The request body did not arrive within {BODY_TIMEOUT_S:g} s ({len(data):,} bytes "
            "came). Check that Content-Length matches the body sent.",
        ) from None
    try:
        body = json.loads(bytes(data) or b"{}")  # no body at all: nothing given, not null
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(400, f"The request body is not JSON: {e}.") from None
    except RecursionError:
        raise RequestError(
            400, f"The request body is nested too deeply to read; expected {expected}."
        ) from None
    if not isinstance(body, dict):
        raise RequestError(
            400, f"The request body must be a JSON object; found {type(body).__name__}."
        )
    return body


def build_app(
    routes: list[Route], *, routes_help: str, log: Callable[[str], None] = lambda line: None
) -> Starlette:
    """The Starlette app of ``routes``, every failure answered as an error object."""

    async def on_error(request: Request, exc: Exception) -> Response:
        headers = None
        if isinstance(exc, RequestError):
            status, message, param, kind = exc.status, exc.message, exc.param, exc.kind
            headers = exc.headers
        elif isinstance(exc, HTTPException):
            status, param, kind = exc.status_code, None, None
            message = {
                404: f"No route {request.url.path}. {routes_help}",
                405: f"{request.method} is not allowed on {request.url.path}. {routes_help}",
            }.get(status, str(exc.detail))
        else:
            status, message, param, kind = (
                500,
                f"The server failed: {type(exc).__name__}.",
                None,
                None,
            )
        log(f"{request.method} {request.url.path} {status} {message}")
        # a body that never came whole leaves the connection unusable: close it
        if status == 408:
            headers = {**(headers or {}), "Connection": "close"}
        return JSONResponse(
            error_body(status, message, param, kind), status_code=status, headers=headers
        )

    return Starlette(
        routes=routes,
        exception_handlers={RequestError: on_error, HTTPException: on_error, Exception: on_error},
    )


class _JSONErrorsProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, answering a request that breaks HTTP itself (a
    ``Content-Length`` that is not a number, a negative one) with an error object instead of
    plain text."""

    def send_400_response(self, msg: str) -> None:
        data = json.dumps(error_body(400, f"Malformed HTTP request: {msg}")).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=data),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()


class Server:
    """An HTTP server of ``app``: the socket is bound when the server is made (port 0 picks a
    free one: ``base_url`` says which); ``serve_forever`` runs uvicorn on it until
    ``shutdown``, which then calls each of ``on_shutdown``."""

    def __init__(
        self,
        address: tuple[str, int],
        app: Starlette,
        on_shutdown: list[Callable[[], None]] | None = None,
    ):
        self.socket = socket.create_server(address)
        self.server_address = self.socket.getsockname()
        self.app = app
        self.on_shutdown = on_shutdown or []
        config = uvicorn.Config(
            app,
            http=_JSONErrorsProtocol,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        self.uvicorn = uvicorn.Server(config)
        self._stopped = threading.Event()
        self._stopped.set()  # not serving yet

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def serve_forever(self) -> None:
        self._stopped.clear()
        try:
            self.uvicorn.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop ``serve_forever`` (called from another thread) and wait until it has."""
        self.uvicorn.should_exit = True
        self._stopped.wait(timeout)
        for stop in self.on_shutdown:
            stop()

    def server_close(self) -> None:
        self.socket.close()
