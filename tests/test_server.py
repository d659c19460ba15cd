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
