"""``python -m devmode classify``: texts in, labels (and the words behind them) out."""

import json

import pytest

from tests.conftest import run_cli


def test_classify_reads_arguments_or_standard_input_and_prints_lines_or_json(news_db):
    plain = run_cli(news_db, "classify", "up good", "down awful")
    assert plain.exit_code == 0, plain.output
    lines = plain.stdout.splitlines()
    assert len(lines) == 2 and lines[0].endswith("up good") and lines[1].endswith("down awful")
    label, probability = lines[0].split()[:2]
    assert label in ("negative", "neutral", "positive") and 0 < float(probability) <= 1

    piped = run_cli(news_db, "classify", "--json", input="up good\n\n  \ndown awful\n")
    assert piped.exit_code == 0, piped.output
    rows = json.loads(piped.stdout)
    assert [r["text"] for r in rows] == ["up good", "down awful"]
    assert [r["label"] for r in rows] == [line.split()[0] for line in lines]
    assert set(rows[0]["probabilities"]) == {"negative", "neutral", "positive"}
    assert sum(rows[0]["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert "Skipped 2 blank lines" in piped.stderr and "words" not in rows[0]


def test_classify_explain_gives_each_word_its_weight_and_class(news_db):
    result = run_cli(news_db, "classify", "up good", "flat steady sales", "--explain", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    for row in rows:
        assert [w["word"] for w in row["words"]] == row["text"].split()
        assert all(set(w) == {"word", "weight", "class"} for w in row["words"])
        assert all(w["class"] in row["probabilities"] and w["weight"] >= 0 for w in row["words"])
    plain = run_cli(news_db, "classify", "up good", "--explain")
    assert "top words:" in plain.stdout


def test_the_model_and_task_are_chosen_by_name(news_db):
    by_run = json.loads(run_cli(news_db, "classify", "up good", "--model", "1", "--json").stdout)
    active = json.loads(run_cli(news_db, "classify", "up good", "--json").stdout)
    assert by_run == active
    base = run_cli(news_db, "classify", "up good", "--model", "base", "--json")
    assert base.exit_code == 0, base.output
    assert set(json.loads(base.stdout)[0]["probabilities"]) == {"negative", "neutral", "positive"}


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (["--model", "99"], None, "No run with id 99"),
        (["--model", "run-3"], None, "does not name a model"),
        (["--task", "topic"], None, "No model is active for topic"),
        ([""], None, "Text 1 is empty"),
        ([], "up\n" * 100_001, "more than 100,000 lines"),
        ([], "\n\n", "Standard input held no text"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(news_db, args, stdin, message):
    texts = [] if stdin is not None or args[:1] == [""] else ["up good"]
    result = run_cli(news_db, "classify", *texts, *args, input=stdin)
    assert result.exit_code == 1 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_texts_with_nothing_to_read_are_classified_and_say_why_no_word_is_weighed(news_db):
    texts = ["\U0001f4c9\U0001f4c9", "\u200b\u200b", "up " * 40_000]
    result = run_cli(news_db, "classify", *texts, "--explain", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [len(r["text"]) for r in rows] == [len(t) for t in texts]
    assert rows[1]["words"] == [] and all(r["label"] for r in rows)


def test_a_model_folder_without_its_tokenizer_is_refused_clearly(news_copy):
    from pathlib import Path

    from devmode.db import open_db
    from devmode.models import registry

    with open_db(news_copy) as db:
        folder = Path(registry.get_model_for_run(db, 1).path)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        (folder / name).unlink(missing_ok=True)
    result = run_cli(news_copy, "classify", "up good", "--model", "1")
    assert result.exit_code == 1 and "Could not load run 1 (tiny)" in result.output
    assert "Expected a whole model folder" in result.output and "Traceback" not in result.output
