"""devmode's OpenAI-compatible endpoint for the embedded chat model.

    $ python -m devmode serve --port 8000
    >>> client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="not-needed")
    >>> client.chat.completions.create(model="smollm2", messages=[...], stream=True)

``GET /v1/models`` and ``POST /v1/chat/completions``, whole or streamed as server-sent events,
with ``usage``. Stop sequences are enforced by the sandbox's own watcher (``chat.ReplyStream``),
so ``finish_reason`` is "length" at ``max_tokens`` (or ``max_completion_tokens``) and "stop"
otherwise. Beyond the OpenAI fields it reads ``top_k``; it accepts presence and frequency
penalties but the embedded model does not apply them. One reply at a time (the model runs on
the CPU): a request waits for the one before it. With an API key configured, requests without
it get 401; without one the server is open, which is why it listens on 127.0.0.1 unless told
otherwise. Built on the standard library's HTTP server: right for a sandbox, a team's tools on
one machine and tests, not for the open internet.
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devmode.chat.context import ChatInputError, ContextPlan
from devmode.chat.limits import BackendSpec, ChatLimits
from devmode.chat.replies import ReplyStream

# The model name the endpoint serves (any name is accepted in requests): the one an endpoint
# backend asks for by default, so the sandbox talks to `serve` with no settings changed.
MODEL_ID = BackendSpec.spec("model").default
# A request may wait this long for the model and generate for this long in all.
REQUEST_TIMEOUT_S = 300.0
# Limit the body of a request, so a stray upload cannot fill the memory.
MAX_BODY_BYTES = 8 * 1024 * 1024
FINISH_REASONS = {"max_tokens": "length"}  # everything else ends as "stop"


class BadRequest(Exception):
    """What the client sent cannot be answered; becomes a 400 with the message."""


class ChatServer(ThreadingHTTPServer):
    """The HTTP server: ``ChatServer(("127.0.0.1", 8000), backend).serve_forever()``.

    :param api_key: when set, every request must carry ``Authorization: Bearer <api_key>``
    :param log: called with one line per request (no message text, no key)
    """

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        backend,
        *,
        api_key: str | None = None,
        log: Callable[[str], None] = lambda line: None,
    ):
        super().__init__(address, _Handler)
        self.backend = backend
        self.api_key = api_key
        self.log = log

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"


def limits_from_request(body: dict[str, Any]) -> ChatLimits:
    """The request's sampling fields as ``ChatLimits`` (ChatLimits' defaults where absent)."""
    stop = body.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    values = {
        "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens"),
        "stop": tuple(stop),
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "top_k": body.get("top_k"),
        "presence_penalty": body.get("presence_penalty"),
        "frequency_penalty": body.get("frequency_penalty"),
        "seed": body.get("seed"),
        "timeout_s": REQUEST_TIMEOUT_S,
    }
    try:
        return ChatLimits(**{k: v for k, v in values.items() if v is not None})
    except (ChatInputError, TypeError) as e:
        raise BadRequest(str(e)) from None


def messages_from_request(body: dict[str, Any]) -> list[dict[str, str]]:
    """The chat messages, with content given as text or as a list of text parts."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list of {role, content} objects.")
    out = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant"):
            raise BadRequest(
                f"messages[{i}].role must be system, user or assistant; found {role!r}."
            )
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise BadRequest(f"messages[{i}].content must be text; found {type(content).__name__}.")
        out.append({"role": role, "content": content})
    return out


class _Handler(BaseHTTPRequestHandler):
    server: ChatServer
    protocol_version = "HTTP/1.0"  # one response per connection: a stream ends when it closes

    def log_message(self, format, *args):  # the server's own log line is written by _done
        pass

    # -- routes ------------------------------------------------------------------------------

    def do_GET(self):
        if not self._authorized():
            return
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "devmode"}
            self._json(200, {"object": "list", "data": [model]})
        else:
            self._error(404, f"No route {self.path}. Use /v1/models or /v1/chat/completions.")

    def do_POST(self):
        if not self._authorized():
            return
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"No route {self.path}. Use /v1/chat/completions.")
            return
        start = time.perf_counter()
        try:
            body = self._body()
            messages = messages_from_request(body)
            limits = limits_from_request(body)
            stream = ReplyStream(self.server.backend, ContextPlan.from_messages(messages), limits)
        except (BadRequest, ChatInputError) as e:
            self._error(400, str(e))
            return
        answer = self._stream if body.get("stream") else self._whole
        try:
            answer(stream, body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away; closing the stream freed the model
        reply = stream.reply
        self.server.log(
            f"POST /v1/chat/completions {reply.stopped_by if reply else 'client gone'} "
            f"{(reply.completion_tokens or 0) if reply else 0} tokens "
            f"{time.perf_counter() - start:.2f} s"
        )

    # -- answers -----------------------------------------------------------------------------

    def _whole(self, stream: ReplyStream, body: dict[str, Any]) -> None:
        text = "".join(stream)
        reply = stream.reply
        if reply.failed:
            self._error(503 if reply.stopped_by == "timeout" else 400, reply.detail)
            return
        self._json(
            200,
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model") or MODEL_ID,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": FINISH_REASONS.get(reply.stopped_by, "stop"),
                    }
                ],
                "usage": self._usage(reply, text),
            },
        )

    def _stream(self, stream: ReplyStream, body: dict[str, Any]) -> None:
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        model = body.get("model") or MODEL_ID
        started = False

        def chunk(delta: dict[str, Any], finish: str | None = None, usage=None) -> bytes:
            choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
            data = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
            }
            if usage:
                data["usage"] = usage
            return f"data: {json.dumps(data)}\n\n".encode()

        def begin() -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(chunk({"role": "assistant", "content": ""}))

        text = []
        for piece in stream:
            if not started:
                begin()  # headers wait for the first text: an early failure can still be a 400
                started = True
            text.append(piece)
            self.wfile.write(chunk({"content": piece}))
            self.wfile.flush()
        reply = stream.reply
        if not started:
            if reply.failed:
                self._error(503 if reply.stopped_by == "timeout" else 400, reply.detail)
                return
            begin()
        self.wfile.write(chunk({}, FINISH_REASONS.get(reply.stopped_by, "stop")))
        if (body.get("stream_options") or {}).get("include_usage"):
            self.wfile.write(chunk({}, usage=self._usage(reply, "".join(text))))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    # -- helpers -----------------------------------------------------------------------------

    def _usage(self, reply, text: str) -> dict[str, int]:
        completion = reply.completion_tokens
        if completion is None:
            completion = self.server.backend.count_tokens(text)
        prompt = reply.prompt_tokens or 0
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _authorized(self) -> bool:
        expected = self.server.api_key
        if not expected:
            return True
        given = self.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            return True
        self._error(401, "Incorrect or missing API key.", kind="invalid_api_key")
        return False

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise BadRequest(f"The request body is {length:,} bytes; at most {MAX_BODY_BYTES:,}.")
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadRequest(f"The request body is not JSON: {e}.") from None
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object.")
        return body

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._json(status, {"error": {"message": message, "type": kind, "code": status}})
        self.server.log(f"{self.command} {self.path} {status} {message}")
