"""The two backends (the embedded model and an OpenAI-compatible endpoint), end to end through
``replies.respond``, and the limit bench over them."""

import http.server
import json
import socket
import threading
import time

import pytest

from devmode.chat import backends, limit_bench, replies
from devmode.chat.context import ChatInputError, assemble_context
from devmode.chat.limits import ChatLimits, ChatSettings

# ----------------------------------------------------------------------------------------------
# The embedded model (real SmolLM2 weights, converted once per test session)


def plan_for(backend, prompt, budget=512):
    return assemble_context(
        "You are a concise assistant.",
        [],
        [],
        prompt,
        budget_tokens=budget,
        count_tokens=backend.count_tokens,
        truncate=getattr(backend, "truncate", None),
    )


def test_the_embedded_model_stops_at_max_tokens_and_reports_figures(embedded):
    streamed = []
    reply = replies.respond(
        embedded,
        plan_for(embedded, "What is a bond?"),
        ChatLimits(max_tokens=12, temperature=0),
        on_text=streamed.append,
    )
    assert reply.stopped_by == "max_tokens" and reply.detail == "stopped: max tokens (12)"
    assert reply.completion_tokens == 12 and reply.prompt_tokens > 10
    assert "".join(streamed) == reply.text and len(reply.text.split()) >= 4
    assert 0 < reply.first_token_s < reply.total_s and reply.tokens_per_s > 0
    assert "stopped: max tokens (12)" in replies.describe_reply(reply)
    # the report names the kernels the model runs on: picked by timing at load
    assert reply.engine == embedded.engine and embedded.engine in replies.describe_reply(reply)
    assert embedded.engine.startswith(f"{embedded.decoder.precision} weights, ")


def test_without_a_cache_folder_the_model_loads_from_memory_and_writes_nothing(
    embedded, tmp_path, monkeypatch
):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # temp files would land here
    decoder = embedded.decoder  # the same kernels: another pick would round differently
    uncached = backends.EmbeddedBackend.load(None, decoder.precision, decoder.attention)
    limits = ChatLimits(max_tokens=8, temperature=0)
    assert (
        replies.respond(uncached, plan_for(uncached, "What is a bond?"), limits).text
        == replies.respond(embedded, plan_for(embedded, "What is a bond?"), limits).text
    )
    assert list(tmp_path.iterdir()) == []


def test_the_embedded_model_is_cut_at_a_banned_word(embedded):
    limits = ChatLimits(max_tokens=30, temperature=0)
    free = replies.respond(embedded, plan_for(embedded, "What is a bond?"), limits)
    word = next(
        w.strip(".,")
        for w in free.text.split()[3:]
        if w.strip(".,").isalpha() and len(w.strip(".,")) >= 4
    )
    caught = replies.respond(
        embedded,
        plan_for(embedded, "What is a bond?"),
        ChatLimits(max_tokens=30, temperature=0, banned=(word,)),
    )
    assert caught.stopped_by == "banned_word" and repr(word) in caught.detail
    assert word.lower() not in caught.text.lower().split()
    assert free.text.startswith(caught.text)


# ----------------------------------------------------------------------------------------------
# An OpenAI-compatible endpoint: the real openai SDK against real local HTTP servers


class ScriptedEndpoint(http.server.BaseHTTPRequestHandler):
    """Answers /v1/chat/completions as the server class's ``mode`` says."""

    def log_message(self, *args):
        pass

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up first (the stalling and stop-sequence cases): expected

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        mode = self.server.mode
        self.server.requests.append({"body": body, "auth": self.headers.get("Authorization")})
        if mode == "unauthorized":
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"error": {"message": "Incorrect API key"}}).encode())
            return
        if mode == "stall":
            time.sleep(3)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in ["Yields ", "rose. ", "STOP", " hidden"]:
            chunk = {
                "id": "1",
                "object": "limits.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture
def endpoint():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ScriptedEndpoint)
    server.mode, server.requests = "ok", []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def remote(server, **kwargs):
    return backends.OpenAIBackend(f"http://127.0.0.1:{server.server_port}/v1", "m", **kwargs)


def test_an_endpoint_streams_and_a_stop_sequence_ends_it(endpoint, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    backend = remote(endpoint)
    reply = replies.respond(
        backend, plan_for(backend, "Bonds?"), ChatLimits(stop=("STOP",), seed=3)
    )
    assert reply.text == "Yields rose. " and reply.stopped_by == "stop_sequence"
    sent = endpoint.requests[0]
    assert sent["auth"] == "Bearer sk-test-secret" and sent["body"]["stop"] == ["STOP"]
    assert sent["body"]["seed"] == 3 and sent["body"]["stream"] is True
    assert "sk-test-secret" not in repr(backend)


@pytest.mark.parametrize(
    "mode,stopped_by,phrase",
    [("unauthorized", "api_error", "refused the API key"), ("stall", "timeout", "timeout (1 s)")],
)
def test_endpoint_failures_are_reported_not_raised(endpoint, mode, stopped_by, phrase):
    endpoint.mode = mode
    backend = remote(endpoint)
    reply = replies.respond(backend, plan_for(backend, "Bonds?"), ChatLimits(timeout_s=1))
    assert reply.stopped_by == stopped_by and phrase in reply.detail and reply.text == ""


def test_an_unreachable_endpoint_says_so():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again at once: nothing listens there
    backend = backends.OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m")
    reply = replies.respond(backend, plan_for(backend, "Bonds?"), ChatLimits(timeout_s=5))
    assert reply.stopped_by == "api_error" and "could not reach http://127.0.0.1" in reply.detail


def test_bench_variants_from_text_and_from_a_table_row_read_limits_alike():
    text = limit_bench.parse_variant(
        "name=strict,max_tokens=20,temperature=0,seed=3,banned=risk;loss"
    )
    row = limit_bench.variant_from_row(
        {"name": "strict", "max_tokens": 20.0, "temperature": 0.0, "seed": 3.0, "banned": "risk;loss",
         "stop": float("nan")},
        ChatLimits(),
    )  # fmt: skip
    assert text == row and text.limits.max_tokens == 20 and text.limits.seed == 3
    with pytest.raises(ChatInputError, match="max_tokens must be a number; found 'many'"):
        limit_bench.parse_variant("max_tokens=many")
    with pytest.raises(ChatInputError, match="'colour' is not a limit"):
        limit_bench.parse_variant("colour=red")


@pytest.mark.parametrize(
    "system,pinned,history",
    [
        ("Be brief.", (), []),
        ("Be brief.", ("Doc one: yields rose.", "Doc two: spreads widened.\nA second line."), []),
        ("", (), [("user", "Hi"), ("assistant", "Hello! How can I help?")]),
        ("", ("Only a pinned document.",), [("user", "Hi"), ("assistant", "Hello.")]),
        ("System.", ("A pinned note.",), [("user", "Q1"), ("assistant", "A1"), ("user", "Q2")]),
    ],
)
def test_the_embedded_models_plan_counts_its_prompt_exactly(embedded, system, pinned, history):
    """Through its chat template: the plan's count is the length of what the model reads."""
    plan = ChatSettings(system_prompt=system, pinned=pinned).plan(
        embedded, history, "What is a bond?"
    )
    assert plan.exact and "(exact)" in plan.describe()
    assert plan.used_tokens == len(embedded.prompt_ids(plan.messages()))


def test_a_cut_pinned_document_still_counts_exactly(embedded):
    long = " ".join(f"Clause {i} of the bond's indenture." for i in range(200))
    plan = ChatSettings(system_prompt="Be brief.", pinned=(long,), budget_tokens=200).plan(
        embedded, [], "Summarise."
    )
    assert [p.status for p in plan.parts] == ["kept", "truncated", "kept"]
    assert plan.used_tokens == len(embedded.prompt_ids(plan.messages())) <= 200


def test_an_endpoints_counts_stay_estimates():
    backend = backends.OpenAIBackend("http://127.0.0.1:9/v1", "m")
    plan = ChatSettings().plan(backend, [], "What is a bond?")
    assert not plan.exact and "(estimated)" in plan.describe()


def test_databases_share_one_converted_chat_model_when_told_to(tmp_path, monkeypatch):
    from devmode import environment

    monkeypatch.delenv("DEVMODE_CHAT_MODEL_DIR")
    assert environment.chat_model_dir(tmp_path / "a.db") == tmp_path / "a_files" / "llm"
    monkeypatch.setenv("DEVMODE_CHAT_MODEL_DIR", str(tmp_path / "shared"))
    assert environment.chat_model_dir(tmp_path / "a.db") == tmp_path / "shared"
    assert environment.chat_model_dir(tmp_path / "b.db") == tmp_path / "shared"


def test_two_processes_converting_at_once_leave_one_whole_copy(tmp_path):
    """Two writers of the shared converted model: each saves into a folder of its own; the
    second rename finds the first's copy and keeps it. Nothing half-written stays."""

    class Part:
        def __init__(self, name, started, go):
            self.name, self.started, self.go = name, started, go

        def save_pretrained(self, folder):
            (folder / "config.json").write_text(self.name)
            self.started.set()
            self.go.wait(5)

    folder = tmp_path / "llm" / "model"
    first_started, second_started, go = threading.Event(), threading.Event(), threading.Event()
    writers = [
        threading.Thread(target=backends.save_whole, args=(folder, Part(n, e, go)))
        for n, e in (("first", first_started), ("second", second_started))
    ]
    for writer in writers:
        writer.start()
    assert first_started.wait(5) and second_started.wait(5)  # both are half-way
    assert not folder.exists()
    go.set()
    for writer in writers:
        writer.join(10)
    assert (folder / "config.json").read_text() in {"first", "second"}
    assert [p.name for p in folder.parent.iterdir()] == ["model"]
