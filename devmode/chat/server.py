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
which is why it listens on 127.0.0.1 unless told otherwise. What it shares with the
classifiers' ``/predict`` (errors, bodies, the key, the server) is ``devmode/serving.py``.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from devmode.chat.context import ChatInputError, ContextPlan
from devmode.chat.limits import BackendSpec, ChatLimits
from devmode.chat.replies import Reply, ReplyStream
from devmode.serving import (
    RequestError,
    Server,
    Strict,
    bearer_check,
    build_app,
    describe_validation,
    field_path,
    read_json,
)

# The model name the endpoint serves (any name is accepted in requests): the one an endpoint
# backend asks for by default, so the sandbox talks to `serve` with no settings changed.
MODEL_ID = BackendSpec.spec("model").default
# A request may wait this long for the model and generate for this long in all.
REQUEST_TIMEOUT_S = 300.0
FINISH_REASONS = {"max_tokens": "length"}  # everything else ends as "stop"
ROUTES_HELP = "Use GET /v1/models or POST /v1/chat/completions."


# ----------------------------------------------------------------------------------------------
# What a request may hold


class TextPart(Strict):
    type: Literal["text"] = "text"
    text: StrictStr


class Message(Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: StrictStr | list[TextPart]

    def as_chat(self) -> dict[str, str]:
        text = (
            self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        )
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(Strict):
    include_usage: StrictBool = False


class ChatRequest(Strict):
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


def describe_chat_validation(error: ValidationError) -> tuple[str, str | None]:
    """The first problem of a chat request, as a sentence that names the field, and the field."""
    first = error.errors()[0]
    loc, path = field_path(first)
    if loc == ("messages",) and first["type"] in ("too_short", "list_type", "missing"):
        return "'messages' must be a non-empty list of {role, content} objects.", "messages"
    if len(loc) == 3 and loc[0] == "messages" and loc[2] == "role":
        found = first.get("input")
        return f"{path} must be system, developer, user or assistant; found {found!r}.", path
    return describe_validation(error)


# ----------------------------------------------------------------------------------------------
# The app


def chat_routes(
    backend, authorize: Callable[[Request], None], log: Callable[[str], None] = lambda line: None
) -> tuple[list[Route], Callable[[], None]]:
    """The chat routes serving ``backend``, and what stops its model thread."""
    model = _ModelThread()

    async def models(request: Request) -> Response:
        authorize(request)
        model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "devmode"}
        return JSONResponse({"object": "list", "data": [model]})

    async def chat_completions(request: Request) -> Response:
        authorize(request)
        start = time.perf_counter()
        body = await read_json(request, "a chat request")
        try:
            chat = ChatRequest.model_validate(body)
        except ValidationError as e:
            raise RequestError(400, *describe_chat_validation(e)) from None
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

    routes = [
        Route("/v1/models", models, methods=["GET"]),
        Route("/models", models, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/chat/completions", chat_completions, methods=["POST"]),
    ]
    return routes, model.close


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


class ChatServer(Server):
    """The HTTP server: ``ChatServer(("127.0.0.1", 8000), backend).serve_forever()``; ``routes``
    adds others beside the chat routes (``serve``'s classifiers: ``models/predict.py``).

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
        routes: list[Route] | None = None,
        routes_help: str = "",
        on_shutdown: list[Callable[[], None]] | None = None,
    ):
        self.backend = backend
        chat, stop_model = chat_routes(backend, bearer_check(api_key), log)
        app = build_app(
            chat + list(routes or []),
            routes_help=" ".join(filter(None, [ROUTES_HELP, routes_help])),
            log=log,
        )
        super().__init__(address, app, [stop_model, *(on_shutdown or [])])
