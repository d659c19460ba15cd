import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from devmode.cli import cli
from tests.conftest import HEADLINES, PHRASEBANK_ALLAGREE, tiny_train_args, write_csv

CLI_REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def run(db_path, *args, input=None):
    result = CliRunner().invoke(cli, ["--db", db_path, *map(str, args)], input=input)
    return result


def all_commands(group=cli, prefix=()):
    for name, command in group.commands.items():
        path = (*prefix, name)
        if command.hidden:
            continue  # internal (the worker entry point)
        if isinstance(command, click.Group):
            yield from all_commands(command, path)
        else:
            yield " ".join(path), command


COMMANDS = dict(all_commands())


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name):
    assert COMMANDS[name].help, f"{name} has no help text"
    result = CliRunner().invoke(cli, [*name.split(), "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_is_in_the_cli_reference_with_an_example(name):
    reference = CLI_REFERENCE.read_text()
    assert re.search(rf"python -m devmode (--db \S+ )?{re.escape(name)}\b", reference), (
        f"docs/cli.md has no example of `python -m devmode {name}`"
    )


def test_ingest_show_map_split_rename_drop(db_path):
    result = run(db_path, "ingest", PHRASEBANK_ALLAGREE, "--name", "phrasebank", "--seed", "7")
    assert result.exit_code == 0, result.output
    assert "Stored 2,259 rows as dataset 'phrasebank'." in result.output
    assert "negative 303, neutral 1,386, positive 570" in result.output

    listed = json.loads(run(db_path, "datasets", "list", "--json").output)
    assert [(d["name"], d["rows"], d["split"]) for d in listed] == [
        ("phrasebank", 2259, {"fractions": [0.8, 0.1, 0.1], "seed": 7})
    ]
    table = run(db_path, "datasets", "list").output
    assert "phrasebank" in table and "2,259" in table

    shown = run(db_path, "datasets", "show", "phrasebank", "--rows", "2").output
    assert "train 1,807 / validation 226 / test 226" in shown
    assert len([line for line in shown.splitlines() if line.startswith("{")]) == 2

    resplit = run(
        db_path, "datasets", "split", "phrasebank", "--split", "0.6,0.2,0.2", "--seed", "1"
    )
    assert resplit.exit_code == 0 and "fractions 0.6/0.2/0.2, seed 1" in resplit.output

    remapped = run(db_path, "datasets", "map", "phrasebank", "--no-label")
    assert remapped.exit_code == 0 and "roles:   text=text\n" in remapped.output

    assert run(db_path, "datasets", "rename", "phrasebank", "pb").exit_code == 0
    refused = run(db_path, "datasets", "drop", "pb", input="n\n")
    assert refused.exit_code == 1 and "Aborted" in refused.output
    assert run(db_path, "datasets", "drop", "pb", "--yes").output == "Dropped dataset 'pb'.\n"
    assert "No datasets yet" in run(db_path, "datasets", "list").output


def test_ingest_unlabelled_headlines_with_explicit_roles(db_path):
    result = run(
        db_path, "ingest", HEADLINES, "--name", "news", "--no-label", "--date-column", "timestamp"
    )
    assert result.exit_code == 0, result.output
    assert "roles:   text=text, date=timestamp, ticker=ticker" in result.output


def test_ingest_hugging_face_id_from_a_local_folder(db_path, tmp_path, topic_rows):
    folder = tmp_path / "topics"
    folder.mkdir()
    write_csv(folder / "train.csv", topic_rows)
    result = run(db_path, "ingest", f"hf:{folder}", "--hf-split", "train")
    assert result.exit_code == 0, result.output
    assert "Stored 60 rows as dataset 'topics'." in result.output
    assert f"from hf:{folder}[train]" in result.output


def test_unknown_dataset_is_a_clean_error(db_path):
    result = run(db_path, "datasets", "show", "nope")
    assert result.exit_code == 1
    assert result.output.startswith("Error: No dataset called 'nope'. There are no datasets yet.")


def test_db_comes_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "env.db"
    monkeypatch.setenv("DEVMODE_DB", str(path))
    result = CliRunner().invoke(cli, ["datasets", "list"])
    assert result.exit_code == 0 and path.exists()


def test_python_dash_m_runs_the_cli(db_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "devmode", "--db", db_path, "datasets", "list"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "No datasets yet" in out.stdout


def test_every_train_config_field_has_a_cli_option():
    import dataclasses

    from devmode.models.config import TrainConfig

    options = {p.name for p in COMMANDS["train"].params}
    assert {f.name for f in dataclasses.fields(TrainConfig)} - {"dataset"} <= options


def test_train_runs_models_from_the_cli(db_path, tmp_path, tiny_model_dir):
    from tests.conftest import tiny_rows

    path = write_csv(
        tmp_path / "tiny.csv", [{"text": r["text"], "label": r["label"]} for r in tiny_rows(90)]
    )
    assert run(db_path, "ingest", path, "--name", "tiny", "--split", "0.6,0.2,0.2").exit_code == 0
    args = [*tiny_train_args(tiny_model_dir), "--log-every-steps", "7"]
    result = run(db_path, "train", "tiny", "--epochs", "3", *args)
    assert result.exit_code == 0, result.output
    assert "step 7/21 epoch 1 train_loss=" in result.output
    assert "Run 1 on tiny: completed" in result.output
    assert re.search(r"majority class \(\w+\)\s+accuracy 0\.333", result.output)
    assert re.search(r"fine-tuned \(best epoch \d\)\s+accuracy (0\.[89]|1\.0)", result.output)

    second = run(db_path, "train", "tiny", "--epochs", "1", "--lora", *args)
    assert second.exit_code == 0, second.output
    listed = run(db_path, "runs", "list").output
    assert "   2 completed    tiny" in listed and "   1 completed    tiny" in listed
    compared = run(db_path, "runs", "compare", "1", "2").output
    assert re.search(r"epochs\s+3\s+1", compared) and re.search(r"lora\s+False\s+True", compared)
    assert re.search(r"test accuracy\s+\S+\s+\S+ \([+-]\d\.\d{3}\)", compared)
    shown = json.loads(run(db_path, "runs", "show", "2", "--json").output)
    assert shown["config"]["lora"] is True and shown["status"] == "completed"

    assert "run 1" in run(db_path, "models", "list").output
    assert run(db_path, "models", "promote", "1", "--as", "sentiment").exit_code == 0
    assert "[active sentiment]" in run(db_path, "models", "list").output
    exported = run(db_path, "models", "export", "1", "--to", tmp_path)
    assert exported.exit_code == 0 and (tmp_path / "devmode-run-1.zip").exists()
    assert run(db_path, "models", "delete", "2", "--yes").output == "Deleted the model of run 2.\n"

    refused = run(db_path, "runs", "resume", "1")
    assert (
        refused.exit_code == 1
        and "only interrupted, cancelled or failed runs resume" in refused.output
    )
    assert run(db_path, "runs", "cancel", "1").output == "Run 1: completed.\n"


def test_train_refuses_impossible_settings_before_starting(db_path):
    result = run(db_path, "train", "nope", "--learning-rate", "2")
    assert result.exit_code == 1 and "learning_rate must be above 0 and below 1" in result.output
    result = run(db_path, "train", "nope")
    assert result.exit_code == 1 and "No dataset called 'nope'" in result.output


def test_unknown_run_is_a_clean_error(db_path):
    result = run(db_path, "runs", "show", "9")
    assert result.exit_code == 1
    assert (
        result.output
        == "Error: No run with id 9. List the runs with python -m devmode runs list.\n"
    )


# ----------------------------------------------------------------------------------------------
# chat, conversations, chat-bench, serve (through devmode's own endpoint: one model load)


def test_chat_saves_continues_exports_and_deletes(db_path, chat_server, tmp_path):
    url = chat_server.base_url
    first = run(
        db_path, "chat", "What is a bond?", "--base-url", url, "--max-tokens", "8",
        "--temperature", "0", "--save",
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    assert "stopped: max tokens (8) · prompt" in first.output
    assert "Saved in conversation 1." in first.output
    # continuing keeps the saved settings (endpoint, 8 tokens) and changes what is given
    second = run(db_path, "chat", "And a share?", "--conversation", "1", "--max-tokens", "5")
    assert second.exit_code == 0, second.output
    assert "stopped: max tokens (5)" in second.output
    assert "4 messages" in run(db_path, "conversations", "list").output
    out = tmp_path / "c.json"
    assert run(db_path, "conversations", "export", "1", "--to", out).exit_code == 0
    exported = json.loads(out.read_text())
    assert [m["role"] for m in exported["messages"]] == ["user", "assistant"] * 2
    assert exported["settings"]["backend"]["base_url"] == url
    assert exported["settings"]["limits"]["max_tokens"] == 5
    shown = run(db_path, "conversations", "show", "1").output
    assert "# What is a bond?" in shown and "> stopped: max tokens (8)" in shown
    assert run(db_path, "conversations", "rename", "1", "Bonds").exit_code == 0
    assert "Bonds" in run(db_path, "conversations", "list").output
    assert run(db_path, "conversations", "delete", "1", "--yes").exit_code == 0
    assert "No saved conversations" in run(db_path, "conversations", "list").output


def test_chat_bench_tabulates_every_prompt_under_every_variant(db_path, chat_server, tmp_path):
    out = tmp_path / "bench.json"
    result = run(
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
    unreachable = run(
        db_path, "chat", "hi", "--base-url", "http://127.0.0.1:9/v1", "--timeout", "5"
    )
    assert (
        unreachable.exit_code == 1 and "could not reach http://127.0.0.1:9/v1" in unreachable.output
    )
    banned = run(
        db_path, "chat", "Guaranteed?", "--banned", "guaranteed", "--base-url", "http://x:1/v1"
    )
    assert banned.exit_code == 1 and "contains the banned word 'guaranteed'" in banned.output
    missing = run(db_path, "conversations", "show", "99")
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
    assert "k-123" not in log and "POST /v1/chat/completions" in log
