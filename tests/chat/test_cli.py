"""The chat commands: chat, conversations, chat-bench, and serve (asked by the openai SDK).

chat and chat-bench go through devmode's own endpoint, so the model loads once."""

import json

from tests.conftest import run_cli


def test_chat_saves_continues_exports_and_deletes(db_path, chat_server, tmp_path):
    url = chat_server.base_url
    first = run_cli(
        db_path, "chat", "What is a bond?", "--base-url", url, "--max-tokens", "8",
        "--temperature", "0", "--save",
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    assert "stopped: max tokens (8) · prompt" in first.output
    assert "Saved in conversation 1." in first.output
    # continuing keeps the saved settings (endpoint, 8 tokens) and changes what is given
    second = run_cli(db_path, "chat", "And a share?", "--conversation", "1", "--max-tokens", "5")
    assert second.exit_code == 0, second.output
    assert "stopped: max tokens (5)" in second.output
    assert "4 messages" in run_cli(db_path, "conversations", "list").output
    out = tmp_path / "c.json"
    assert run_cli(db_path, "conversations", "export", "1", "--to", out).exit_code == 0
    exported = json.loads(out.read_text())
    assert [m["role"] for m in exported["messages"]] == ["user", "assistant"] * 2
    assert exported["settings"]["backend"]["base_url"] == url
    assert exported["settings"]["limits"]["max_tokens"] == 5
    shown = run_cli(db_path, "conversations", "show", "1").output
    assert "# What is a bond?" in shown and "> stopped: max tokens (8)" in shown
    assert run_cli(db_path, "conversations", "rename", "1", "Bonds").exit_code == 0
    assert "Bonds" in run_cli(db_path, "conversations", "list").output
    assert run_cli(db_path, "conversations", "delete", "1", "--yes").exit_code == 0
    assert "No saved conversations" in run_cli(db_path, "conversations", "list").output


def test_chat_bench_tabulates_every_prompt_under_every_variant(db_path, chat_server, tmp_path):
    out = tmp_path / "bench.json"
    result = run_cli(
        db_path, "chat-bench", "What is a bond?", "What is a share?",
        "--base-url", chat_server.base_url,
        "--variant", "name=short,max_tokens=4,temperature=0",
        "--variant", "name=strict,max_tokens=20,banned=share",
        "--json", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [(r["prompt"], r["variant"], r["stopped_by"]) for r in rows] == [
        ("What is a bond?", "short", "max_tokens"),
        ("What is a bond?", "strict", rows[1]["stopped_by"]),
        ("What is a share?", "short", "max_tokens"),
        ("What is a share?", "strict", "refused"),
    ]
    assert rows[1]["stopped_by"] in ("end", "max_tokens", "banned_word")
    assert rows[0]["completion_tokens"] == 4 and "banned word 'share'" in rows[3]["detail"]
    assert "refused" in result.output and "short" in result.output


def test_chat_failures_are_clean_messages(db_path):
    unreachable = run_cli(
        db_path, "chat", "hi", "--base-url", "http://127.0.0.1:9/v1", "--timeout", "5"
    )
    assert (
        unreachable.exit_code == 1 and "could not reach http://127.0.0.1:9/v1" in unreachable.output
    )
    banned = run_cli(
        db_path, "chat", "Guaranteed?", "--banned", "guaranteed", "--base-url", "http://x:1/v1"
    )
    assert banned.exit_code == 1 and "contains the banned word 'guaranteed'" in banned.output
    missing = run_cli(db_path, "conversations", "show", "99")
    assert missing.exit_code == 1 and "There is no conversation 99" in missing.output
    assert "Traceback" not in unreachable.output + banned.output + missing.output


def test_serve_answers_the_openai_sdk(db_path, tmp_path):
    """`python -m devmode serve` as a person starts it, asked by the real openai SDK."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import openai

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DEVMODE_DB": db_path, "SERVE_KEY": "k-123"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devmode",
            "serve",
            "--port",
            str(port),
            "--api-key-env",
            "SERVE_KEY",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="k-123", max_retries=0
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                models = client.models.list()
                break
            except openai.APIConnectionError:
                assert server.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.5)
        assert [m.id for m in models] == ["smollm2"]
        reply = client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=3
        )
        assert reply.usage.completion_tokens <= 3 and reply.choices[0].message.content
    finally:
        server.terminate()
        log = server.communicate(timeout=30)[1]
    assert f"at http://127.0.0.1:{port}/v1 (API key required)" in log
    assert "The model runs " in log and " weights, " in log  # the kernels picked at load
    assert "k-123" not in log and "POST /v1/chat/completions" in log
