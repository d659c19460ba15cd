"""devmode's OpenAI-compatible endpoint for the embedded chat model, on Starlette and uvicorn.

    $ python -m devmode serve --port 8000
    >>> client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="not-needed")
    >>> client.chat.completions.create(model="smollm2", messages=[...], stream=True)

``GET /v1/models`` and ``POST /v1/chat/completions``, whole or streamed as server-sent events,
with ``usage``. Request bodies are read into typed models (pydantic), so a malformed request of
any kind gets a 4xx with an OpenAI-style error object (``{"error": {"message", "type",
"param", "code"}}``) and the server goes on answering; even a request that breaks HTTP itself
(a ``Content-Length`` that is not a number) gets one.

Stop sequences are enforced by the sandbox's own watcher (``replies.ReplyStream``), so
``finish_reason`` is "length" at ``max_tokens`` (or ``max_completion_tokens``) and "stop"
otherwise. Beyond the OpenAI fields it reads ``top_k``; it accepts presence and frequency
penalties but the embedded model does not apply them. One reply at a time (the model runs on
the CPU): requests queue for the model's one thread, in order; a client that goes away
mid-stream stops its reply at the next token, and one that left while waiting is skipped.
With an API key configured, requests without it get 401; without one the server is open,
which is why it listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import queue
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import h11
import uvicorn
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from devmode.chat.context import ChatInputError, ContextPlan
from devmode.chat.limits import BackendSpec, ChatLimits
from devmode.chat.replies import Reply, ReplyStream

# The model name the endpoint serves (any name is accepted in requests): the one an endpoint
# backend asks for by default, so the sandbox talks to `serve` with no settings changed.
MODEL_ID = BackendSpec.spec("model").default
# A request may wait this long for the model and generate for this long in all.
REQUEST_TIMEOUT_S = 300.0
# Limit the body of a request, so a stray upload cannot fill the memory.
MAX_BODY_BYTES = 8 * 1024 * 1024
# Seconds the whole body may take to arrive (a Content-Length longer than what is sent would
# otherwise hold the connection for ever).
BODY_TIMEOUT_S = 30.0
FINISH_REASONS = {"max_tokens": "length"}  # everything else ends as "stop"
ROUTES_HELP = "Use GET /v1/models or POST /v1/chat/completions."


# ----------------------------------------------------------------------------------------------
# What a request may hold


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class TextPart(_Strict):
    type: Literal["text"] = "text"
    text: StrictStr


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: StrictStr | list[TextPart]

    def as_chat(self) -> dict[str, str]:
        text = (
            self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        )
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(_Strict):
    include_usage: StrictBool = False


class ChatRequest(_Strict):
    """The fields of an OpenAI chat completion request that devmode reads (others are ignored)."""

    model: StrictStr | None = None
    messages: list[Message] = Field(min_length=1)
    max_tokens: StrictInt | None = None
    max_completion_tokens: StrictInt | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: StrictInt | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: StrictInt | None = None
    n: StrictInt | None = None
    stop: StrictStr | list[StrictStr] | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None

    def limits(self) -> ChatLimits:
        """The request's limits as ``ChatLimits`` (its defaults where a field is absent)."""
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        values = {
            "max_tokens": self.max_completion_tokens or self.max_tokens,
            "stop": stop,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "seed": self.seed,
            "timeout_s": REQUEST_TIMEOUT_S,
        }
        return ChatLimits(**{k: v for k, v in values.items() if v is not None})


class RequestError(Exception):
    """A request that cannot be answered: its status, message and the field at fault."""

    def __init__(
        self, status: int, message: str, param: str | None = None, kind: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")


def error_body(
    status: int, message: str, param: str | None = None, kind: str | None = None
) -> dict:
    """An OpenAI-style error object."""
    kind = kind or ("invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


_TYPE_TAG = re.compile(r"^(str|int|float|bool|list\[.*\]|[A-Z]\w*)$")


def describe_validation(error: ValidationError) -> tuple[str, str | None]:
    """The first problem of a request body, as a sentence that names the field, and the field."""
    first = error.errors()[0]
    # a union's errors name the member type they tried ("stop.str"): a person names the field
    loc = tuple(part for part in first["loc"] if isinstance(part, int) or not _TYPE_TAG.match(part))
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    found = first.get("input")
    if loc == ("messages",) and first["type"] in ("too_short", "list_type", "missing"):
        return "'messages' must be a non-empty list of {role, content} objects.", "messages"
    if len(loc) == 3 and loc[0] == "messages" and loc[2] == "role":
        return f"{path} must be system, developer, user or assistant; found {found!r}.", path
    message = first["msg"][0].lower() + first["msg"][1:]
    if first["type"] == "missing":
        return f"{path} is required.", path
    return f"{path}: {message}; found {found!r}.", path


# ----------------------------------------------------------------------------------------------
# The app


def create_app(
    backend, *, api_key: str | None = None, log: Callable[[str], None] = lambda line: None
) -> Starlette:
    """The Starlette app serving ``backend`` (``ChatServer`` runs it under uvicorn)."""
    model = _ModelThread()

    def authorize(request: Request) -> None:
        if not api_key:
            return
        scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
        # the scheme is case-insensitive (RFC 9110); the key is compared in constant time
        matches = hmac.compare_digest(given.strip().encode(), api_key.encode())
        if scheme.lower() != "bearer" or not matches:
            raise RequestError(401, "Incorrect or missing API key.", kind="invalid_api_key")

    async def models(request: Request) -> Response:
        authorize(request)
        model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "devmode"}
        return JSONResponse({"object": "list", "data": [model]})

    async def chat_completions(request: Request) -> Response:
        authorize(request)
        start = time.perf_counter()
        body = await read_json(request)
        try:
            chat = ChatRequest.model_validate(body)
        except ValidationError as e:
            raise RequestError(400, *describe_validation(e)) from None
        if chat.n not in (None, 1):
            raise RequestError(
                400,
                f"n must be 1: the embedded model gives one choice per request; found {chat.n}. "
                "Send n requests for n replies.",
                "n",
            )
        try:
            stream = ReplyStream(
                backend,
                ContextPlan.from_messages([m.as_chat() for m in chat.messages]),
                chat.limits(),
            )
        except ChatInputError as e:
            raise RequestError(400, str(e)) from None
        pump = _Pump(stream)
        model.submit(pump)
        done = lambda: log(_log_line(stream.reply, start))  # noqa: E731
        if not chat.stream:
            text = await _unless_gone(pump, pump.drain())
            done()
            if stream.reply.failed:
                raise _failure(stream.reply)
            return JSONResponse(_completion(chat, text, stream.reply, backend))
        first = await _unless_gone(pump, pump.next())  # headers wait for the first piece:
        if first is None and stream.reply.failed:  # an early failure can still be an error
            done()
            raise _failure(stream.reply)
        return StreamingResponse(
            _events(chat, pump, first, backend, done),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, RequestError):
            status, message, param, kind = exc.status, exc.message, exc.param, exc.kind
        elif isinstance(exc, HTTPException):
            status, param, kind = exc.status_code, None, None
            message = {
                404: f"No route {request.url.path}. {ROUTES_HELP}",
                405: f"{request.method} is not allowed on {request.url.path}. {ROUTES_HELP}",
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
        close = {"Connection": "close"} if status == 408 else None
        return JSONResponse(
            error_body(status, message, param, kind), status_code=status, headers=close
        )

    app = Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/chat/completions", chat_completions, methods=["POST"]),
        ],
        exception_handlers={RequestError: on_error, HTTPException: on_error, Exception: on_error},
    )
    app.state.model = model
    return app


async def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object, read up to ``MAX_BODY_BYTES``."""
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
            400, "The request body is nested too deeply to read; expected a chat request."
        ) from None
    if not isinstance(body, dict):
        raise RequestError(
            400, f"The request body must be a JSON object; found {type(body).__name__}."
        )
    return body


_DONE = object()  # the end of a reply's pieces


class _Pump:
    """One reply's pieces, handed from the model's thread to the request's coroutine through a
    queue. ``abandon()`` stops the reply at its next token (or before it starts) when the
    client has gone, so the model passes to the next request at once."""

    def __init__(self, stream: ReplyStream):
        self.stream = stream
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.abandoned = False

    def produce(self) -> None:
        """Generate the reply (on the model's thread), handing each piece over."""
        try:
            if not self.abandoned:
                for piece in self.stream:
                    self._hand(piece)
        except BaseException as e:  # noqa: BLE001 - a bug: the request answers 500 with it
            self._hand(e)
        finally:
            self._hand(_DONE)

    def _hand(self, item: object) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the server has stopped: nobody is waiting
            self.abandon()

    async def next(self) -> str | None:
        """The next piece of text, or None when the reply has ended."""
        item = await self.queue.get()
        if item is _DONE:
            self.queue.put_nowait(_DONE)  # and None again if asked again
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    async def drain(self) -> str:
        pieces = []
        while (piece := await self.next()) is not None:
            pieces.append(piece)
        return "".join(pieces)

    def abandon(self) -> None:
        self.abandoned = True
        self.stream.abandon()


class _ModelThread:
    """The one thread that runs the model: replies are generated one after the other, in the
    order they were asked for (the embedded model answers one at a time anyway). Waiting
    requests hold a queue entry, not a thread, so fifty of them cost next to nothing."""

    def __init__(self):
        self.waiting: queue.Queue[_Pump] = queue.Queue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def submit(self, pump: _Pump) -> None:
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="devmode-model", daemon=True)
                self.thread.start()
        self.waiting.put(pump)

    def close(self) -> None:
        """Let the thread end once the replies already asked for are done."""
        self.waiting.put(None)

    def _run(self) -> None:
        while (pump := self.waiting.get()) is not None:
            pump.produce()


async def _unless_gone(pump: _Pump, waiting):
    """``await waiting``; if the request is cancelled meanwhile (its client went away), the
    reply stops too."""
    try:
        return await waiting
    except BaseException:
        pump.abandon()
        raise


async def _events(
    chat: ChatRequest, pump: _Pump, first: str | None, backend, done
) -> AsyncIterator[bytes]:
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    model = chat.model or MODEL_ID

    def chunk(delta: dict[str, Any], finish: str | None = None, usage=None) -> bytes:
        data = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage:
            data["usage"] = usage
        return f"data: {json.dumps(data)}\n\n".encode()

    text = []
    finished = False
    try:
        yield chunk({"role": "assistant", "content": ""})
        piece = first
        while piece is not None:
            text.append(piece)
            yield chunk({"content": piece})
            piece = await pump.next()
        reply = pump.stream.reply
        yield chunk({}, FINISH_REASONS.get(reply.stopped_by, "stop"))
        if chat.stream_options and chat.stream_options.include_usage:
            yield chunk({}, usage=_usage(reply, "".join(text), backend))
        yield b"data: [DONE]\n\n"
        finished = True
    finally:
        if not finished:  # the client went away: stop generating, free the model
            pump.abandon()
        done()


def _completion(chat: ChatRequest, text: str, reply: Reply, backend) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": chat.model or MODEL_ID,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": FINISH_REASONS.get(reply.stopped_by, "stop"),
            }
        ],
        "usage": _usage(reply, text, backend),
    }


def _usage(reply: Reply, text: str, backend) -> dict[str, int]:
    completion = reply.completion_tokens
    if completion is None:
        completion = backend.count_tokens(text)
    prompt = reply.prompt_tokens or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _failure(reply: Reply) -> RequestError:
    return RequestError(503 if reply.stopped_by == "timeout" else 400, reply.detail)


def _log_line(reply: Reply | None, start: float) -> str:
    if reply is None:
        return f"POST /v1/chat/completions client gone {time.perf_counter() - start:.2f} s"
    return (
        f"POST /v1/chat/completions {reply.stopped_by} {reply.completion_tokens or 0} tokens "
        f"{time.perf_counter() - start:.2f} s"
    )


# ----------------------------------------------------------------------------------------------
# The server


class _JSONErrorsProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, answering a request that breaks HTTP itself (a
    ``Content-Length`` that is not a number, a negative one) with an OpenAI-style error object
    instead of plain text."""

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


class ChatServer:
    """The HTTP server: ``ChatServer(("127.0.0.1", 8000), backend).serve_forever()``.

    The socket is bound when the server is made (port 0 picks a free one: ``base_url`` says
    which); ``serve_forever`` runs uvicorn on it until ``shutdown``.

    :param api_key: when set, every request must carry ``Authorization: Bearer <api_key>``
    :param log: called with one line per request (no message text, no key)
    """

    def __init__(
        self,
        address: tuple[str, int],
        backend,
        *,
        api_key: str | None = None,
        log: Callable[[str], None] = lambda line: None,
    ):
        self.backend = backend
        self.socket = socket.create_server(address)
        self.server_address = self.socket.getsockname()
        self.app = create_app(backend, api_key=api_key, log=log)
        config = uvicorn.Config(
            self.app,
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
        self.app.state.model.close()

    def server_close(self) -> None:
        self.socket.close()
