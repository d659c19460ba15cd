"""`python -m devmode serve`: the real openai SDK against the real server on 127.0.0.1."""

import threading

import openai
import pytest

from devmode.chat import backends, context, limits, replies
from devmode.chat.server import ChatServer


@pytest.fixture
def serve(embedded):
    """Start a server on a free port; stop it after the test."""
    servers = []

    def start(**kwargs):
        server = ChatServer(("127.0.0.1", 0), embedded, **kwargs)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def client_for(server, key="not-needed"):
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=60)


QUESTION = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "What is a bond?"},
]


def test_models_and_a_whole_reply_with_usage(serve):
    client = client_for(serve())
    assert [m.id for m in client.models.list()] == ["smollm2"]
    completion = client.chat.completions.create(
        model="smollm2", messages=QUESTION, max_tokens=8, temperature=0
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "length" and choice.message.content.strip()
    assert completion.usage.completion_tokens == 8 and completion.usage.prompt_tokens > 10


def test_a_streamed_reply_ends_before_its_stop_sequence(serve):
    client = client_for(serve())
    free = client.chat.completions.create(
        model="smollm2", messages=QUESTION, max_tokens=30, temperature=0
    )
    text = free.choices[0].message.content
    stop = next(w for w in text.split()[4:] if w.isalpha() and len(w) >= 4)
    pieces, finish, usage = [], None, None
    for event in client.chat.completions.create(
        model="smollm2",
        messages=QUESTION,
        max_tokens=30,
        temperature=0,
        stop=[stop],
        stream=True,
        stream_options={"include_usage": True},
    ):
        if event.choices:
            pieces.append(event.choices[0].delta.content or "")
            finish = event.choices[0].finish_reason or finish
        usage = event.usage or usage
    streamed = "".join(pieces)
    assert streamed == text[: text.index(stop)] and finish == "stop"
    assert 0 < usage.completion_tokens < 30


def test_the_sandbox_reaches_the_server_through_the_sdk(serve):
    server = serve()
    backend = backends.OpenAIBackend(server.base_url, "smollm2")
    plan = context.assemble_context(
        "Be brief.", [], [], "Name a risk of bonds.", budget_tokens=256, count_tokens=len
    )
    reply = replies.respond(backend, plan, limits.ChatLimits(max_tokens=20, temperature=0))
    assert reply.stopped_by == "max_tokens" and reply.detail == "stopped: max tokens (20)"
    assert reply.completion_tokens == 20 and reply.first_token_s < reply.total_s


def test_a_key_is_required_when_one_is_set(serve):
    server = serve(api_key="s3cret")
    with pytest.raises(openai.AuthenticationError):
        client_for(server, "wrong").models.list()
    ok = client_for(server, "s3cret").chat.completions.create(
        model="smollm2", messages=QUESTION, max_tokens=2
    )
    assert ok.usage.completion_tokens == 2


@pytest.mark.parametrize(
    "request_body,phrase",
    [
        ({"messages": []}, "non-empty list"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "role must be"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": 5}, "temperature must"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "ending with the user's"),
    ],
)
def test_bad_requests_are_400_with_what_to_fix(serve, request_body, phrase):
    client = client_for(serve())
    with pytest.raises(openai.BadRequestError, match=phrase):
        client.chat.completions.create(model="smollm2", **request_body)


def test_two_clients_at_once_are_answered_one_after_the_other(serve):
    client = client_for(serve())
    results = []

    def ask():
        results.append(
            client.chat.completions.create(
                model="smollm2", messages=QUESTION, max_tokens=6, temperature=0
            )
            .choices[0]
            .message.content
        )

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 2 and results[0] == results[1]


# ----------------------------------------------------------------------------------------------
# Malformed requests: a 4xx with an OpenAI-style error object, and the server goes on answering

import http.client  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402

USER = [{"role": "user", "content": "hi"}]


def raw_request(server, head: bytes, body: bytes = b"", timeout: float = 10) -> tuple[int, dict]:
    """Send bytes as they are (a request the SDK would never make); the status and JSON body."""
    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(head + body)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.split(b"\r\n\r\n", 1)[1])


def call(server, method: str, path: str, body: bytes | dict | None = None) -> tuple[int, dict]:
    """One request through the standard library's HTTP client: the status and JSON body."""
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=60)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    headers = {"Content-Type": "application/json"} if data is not None else {}
    conn.request(method, "/v1" + path, body=data, headers=headers)
    response = conn.getresponse()
    answer = response.status, json.loads(response.read())
    conn.close()
    return answer


def still_answers(server) -> bool:
    return call(server, "GET", "/models")[0] == 200


FIELD_CASES = [
    (
        {"messages": USER, "max_tokens": 2.5},
        400,
        "max_tokens: input should be a valid integer",
        "max_tokens",
    ),
    ({"messages": USER, "top_k": 2.5}, 400, "top_k: input should be a valid integer", "top_k"),
    ({"messages": USER, "stop": 5}, 400, "stop", "stop"),
    (
        {"messages": [{"role": "user", "content": [{"text": 5}]}]},
        400,
        "messages[0].content",
        "messages[0].content",
    ),
    (
        {"messages": USER, "stream": True, "stream_options": "yes"},
        400,
        "stream_options",
        "stream_options",
    ),
    ({"messages": USER, "max_tokens": 0}, 400, "max_tokens must be from 1", None),
    ({"messages": USER, "temperature": "hot"}, 400, "temperature", "temperature"),
    ({"messages": "hello"}, 400, "'messages' must be a non-empty list", "messages"),
    (
        {"messages": [{"role": "user"}]},
        400,
        "messages[0].content is required",
        "messages[0].content",
    ),
    ({}, 400, "'messages' must be a non-empty list", "messages"),
    ({"messages": USER, "n": 2}, 400, "n must be 1", "n"),  # was silently one choice
]


@pytest.mark.parametrize("body,status,phrase,param", FIELD_CASES)
def test_malformed_fields_are_400_with_the_field_named(serve, body, status, phrase, param):
    server = serve()
    answered, payload = call(server, "POST", "/chat/completions", body)
    assert answered == status
    error = payload["error"]
    assert phrase in error["message"] and error["type"] == "invalid_request_error"
    assert error["param"] == param and error["code"] == status
    assert "Traceback" not in error["message"] and "pydantic" not in error["message"]
    assert still_answers(server)


BODY_CASES = [
    (b"{not json", 400, "not JSON"),
    (b"[1, 2]", 400, "must be a JSON object; found list"),
    (b"", 400, "'messages' must be a non-empty list"),
    (b"\xff\xfe", 400, "not JSON"),
    (
        b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        400,
        "nested too deeply",
    ),  # was 500
]


@pytest.mark.parametrize("content,status,phrase", BODY_CASES)
def test_bodies_that_are_not_a_json_object_are_400(serve, content, status, phrase):
    server = serve()
    answered, payload = call(server, "POST", "/chat/completions", content)
    assert answered == status and phrase in payload["error"]["message"]
    assert still_answers(server)


def test_routes_methods_and_sizes_are_4xx_error_objects(serve, monkeypatch):
    from devmode import serving as served

    server = serve()
    status, missing = call(server, "GET", "/completions")
    assert status == 404 and "/v1/chat/completions" in missing["error"]["message"]
    status, wrong = call(server, "GET", "/chat/completions")
    assert status == 405 and "GET is not allowed" in wrong["error"]["message"]
    monkeypatch.setattr(served, "MAX_BODY_BYTES", 1000)
    big_body = {"messages": [{"role": "user", "content": "x" * 5000}]}
    status, big = call(server, "POST", "/chat/completions", big_body)
    assert status == 413 and "at most 1,000" in big["error"]["message"]
    assert still_answers(server)


BROKEN_LENGTHS = [b"abc", b"-5", b"5, 6"]


@pytest.mark.parametrize("length", BROKEN_LENGTHS)
def test_a_content_length_that_breaks_http_is_a_400_error_object(serve, length):
    """Before, a non-numeric length dropped the connection and a negative one held a thread."""
    server = serve()
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + length + b"\r\n\r\n"
    )
    status, body = raw_request(server, head, b'{"messages": []}')
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    assert "Malformed HTTP request" in body["error"]["message"]
    assert still_answers(server)


def test_clients_that_vanish_mid_stream_leave_the_others_whole(serve):
    """Eight streamed requests queue for the model; three clients close their connection after
    the first piece. The others each get every piece, a finish reason and [DONE]."""
    server = serve()
    body = {"messages": USER, "max_tokens": 8, "temperature": 0, "stream": True}
    results = {}

    def ask(i: int) -> None:
        host, port = server.server_address[:2]
        conn = http.client.HTTPConnection(host, port, timeout=300)
        headers = {"Content-Type": "application/json"}
        conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
        response = conn.getresponse()
        lines = []
        while line := response.readline():
            if line.strip():
                lines.append(line.decode().strip())
            if i < 3 and len(lines) >= 2:
                break  # this client goes away
        conn.close()
        results[i] = lines

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    complete = [results[i] for i in range(3, 8)]
    assert all(lines[-1] == "data: [DONE]" for lines in complete)
    finishes = [
        json.loads(line[6:])["choices"][0]["finish_reason"]
        for lines in complete
        for line in lines
        if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["finish_reason"]
    ]
    assert finishes == ["length"] * 5
    assert still_answers(server)


def test_the_bearer_scheme_is_case_insensitive(serve):
    server = serve(api_key="s3cret")
    host, port = server.server_address[:2]
    answers = {}
    for header in ("bearer s3cret", "BEARER s3cret", "Bearer wrong", "Basic s3cret"):
        conn = http.client.HTTPConnection(host, port, timeout=30)
        conn.request("GET", "/v1/models", headers={"Authorization": header})
        answers[header] = conn.getresponse().status
        conn.close()
    assert answers == {
        "bearer s3cret": 200,
        "BEARER s3cret": 200,
        "Bearer wrong": 401,
        "Basic s3cret": 401,
    }


def test_a_body_shorter_than_its_content_length_times_out(serve, monkeypatch):
    """It used to hold the connection for as long as the client liked."""
    import time

    from devmode import serving as served

    monkeypatch.setattr(served, "BODY_TIMEOUT_S", 1.0)
    server = serve()
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 500\r\n\r\n"
    )
    started = time.monotonic()
    status, body = raw_request(server, head, b'{"messages": [')
    assert status == 408 and "did not arrive within 1 s" in body["error"]["message"]
    assert time.monotonic() - started < 5
    assert still_answers(server)
