"""Models for use outside devmode: a Hugging Face folder the pipeline loads, and ONNX that
onnxruntime runs, each giving devmode's labels on the test split; and the zip as before."""

import json

import numpy as np
import pytest

from devmode.data import ingest
from devmode.db import open_db
from devmode.finetune import worker
from devmode.models import exports, runs
from devmode.models.inference import load_full
from tests.conftest import run_cli, tiny_config


def split_texts(db_path) -> list[str]:
    with open_db(db_path) as db:
        return [r["text"] for r in ingest.iter_rows(db, "tiny", "test", ["text"])]


@pytest.fixture(scope="module")
def runs_of_each_kind(tmp_path_factory, trained_news_db, tiny_model_dir):
    """A copy of the trained news database with a CLS-pooled run (2) and a few-shot run (3)
    beside its mean-pooled run (1)."""
    from devmode.db import backup
    from devmode.environment import files_dir

    folder = tmp_path_factory.mktemp("exports")
    copy = backup(trained_news_db, folder / "copy")
    old, new = str(files_dir(trained_news_db)), str(files_dir(copy))
    with open_db(copy) as db:
        db.execute("update devmode_models set path = replace(path, ?, ?)", [old, new])
        import shutil

        shutil.copytree(old, new, dirs_exist_ok=True)
        cls = runs.create_run(db, "tiny", tiny_config(tiny_model_dir, epochs=1, pooling="cls"))
        few = runs.create_run(
            db,
            "tiny",
            tiny_config(tiny_model_dir, method="few-shot", epochs=1, max_length_tokens=16),
        )
    worker.execute_run(copy, cls.id)
    worker.execute_run(copy, few.id)
    return copy


@pytest.mark.parametrize("run_id, kind", [(1, "mean"), (2, "cls"), (3, "few-shot")])
def test_the_hf_folder_loads_in_the_pipeline_and_gives_devmodes_labels(
    runs_of_each_kind, tmp_path, run_id, kind
):
    from transformers import pipeline

    with open_db(runs_of_each_kind) as db:
        folder = exports.export_model(db, run_id, "hf", tmp_path)
        model_dir = runs.get_run(db, run_id).model_dir
    assert folder.name == f"devmode-run-{run_id}-hf"
    texts = split_texts(runs_of_each_kind)
    ours = load_full(model_dir, "cpu").score(texts)
    classify = pipeline("text-classification", model=str(folder), trust_remote_code=True)
    theirs = classify(texts)
    assert [t["label"] for t in theirs] == ours.labels
    best = ours.probabilities.max(axis=1)
    assert np.allclose([t["score"] for t in theirs], best, atol=1e-4)
    config = json.loads((folder / "config.json").read_text())
    assert config["pooling"] == ("cls" if kind == "cls" else "mean")


def test_the_onnx_model_runs_in_onnxruntime_and_gives_devmodes_labels(runs_of_each_kind, tmp_path):
    import onnxruntime
    from transformers import AutoTokenizer

    with open_db(runs_of_each_kind) as db:
        folder = exports.export_model(db, 1, "onnx", tmp_path / "sentiment-onnx")
        model_dir = runs.get_run(db, 1).model_dir
    texts = split_texts(runs_of_each_kind)
    ours = load_full(model_dir, "cpu").score(texts)
    # the three lines docs/finetune.md shows
    tokenizer = AutoTokenizer.from_pretrained(folder)
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    inputs = tokenizer(texts, padding=True, truncation=True, return_tensors="np")
    (logits,) = session.run(
        ["logits"], {k: inputs[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
    )
    labels = json.loads((folder / "config.json").read_text())["id2label"]
    assert (
        np.mean([labels[str(i)] == t for i, t in zip(logits.argmax(1), ours.labels, strict=True)])
        >= 0.999
    )


def test_export_from_the_cli_and_what_it_refuses(news_copy, tmp_path):
    zipped = run_cli(news_copy, "models", "export", "1", "--to", tmp_path)
    assert zipped.exit_code == 0 and (tmp_path / "devmode-run-1.zip").exists()
    hf = run_cli(news_copy, "models", "export", "1", "--format", "hf", "--to", tmp_path / "m")
    assert hf.exit_code == 0, hf.output
    assert (tmp_path / "m" / "modeling_devmode.py").exists()  # a new folder's name: that folder
    inside = run_cli(news_copy, "models", "export", "1", "--format", "hf", "--to", tmp_path / "m")
    assert inside.exit_code == 0  # a folder that exists: devmode-run-1-hf in it
    assert (tmp_path / "m" / "devmode-run-1-hf" / "config.json").exists()
    again = run_cli(news_copy, "models", "export", "1", "--format", "hf", "--to", tmp_path / "m")
    assert again.exit_code == 1 and "is there already" in again.output
    bad = run_cli(news_copy, "models", "export", "1", "--format", "pt", "--to", tmp_path)
    assert bad.exit_code == 2 and "'pt' is not one of 'zip', 'hf', 'onnx'" in bad.output
    missing = run_cli(news_copy, "models", "export", "9", "--format", "onnx", "--to", tmp_path)
    assert missing.exit_code == 1 and "Run 9 has no saved model" in missing.output
    assert not list(tmp_path.glob("*.partial"))
