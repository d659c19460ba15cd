"""Domain adaptation: masked-word training on a dataset's texts makes an adapted base in the
registry, which runs and evaluations train from and which cannot be deleted from under them.
On the tiny BERT and the real CLI; the embedded model's gain is measured with `evaluations compare`
(docs/benchmarks.md)."""

import json
from pathlib import Path

import pytest
import torch

from devmode.db import open_db
from devmode.finetune import adaptation
from devmode.models import adapted_bases, runs
from devmode.models.config import TrainConfig
from tests.conftest import run_cli, store_texts, store_tiny_dataset, tiny_rows, tiny_train_args


@pytest.fixture(scope="module")
def adapted(tmp_path_factory, tiny_model_dir):
    """A database with the tiny labelled dataset, 300 unlabelled texts, and adapted:tiny."""
    folder = tmp_path_factory.mktemp("adapted")
    db_path = str(folder / "devmode.db")
    store_tiny_dataset(db_path, folder)
    store_texts(db_path, folder, "texts", 300)
    result = run_cli(
        db_path, "adapt", "texts", "--name", "tiny", "--base-model", tiny_model_dir,
        "--epochs", "3", "--learning-rate", "5e-3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return db_path


def test_adapt_stores_a_base_that_read_the_texts(adapted, tiny_model_dir):
    from transformers import AutoModel

    with open_db(adapted) as db:
        found = adapted_bases.by_name(db, "tiny")
    assert found.status == "completed"
    assert found.datasets == ["texts"]
    assert found.texts == 300
    summary = found.summary
    # it learnt: the masked-word loss fell from its first log to its last, and a held-out
    # loss was measured (a random guess over the tiny vocabulary is ln 18 = 2.9)
    losses = [loss for _, loss in summary["losses"]]
    assert losses[-1] < losses[0]
    assert 0 < summary["held_out_loss"] < 2.9
    before = AutoModel.from_pretrained(tiny_model_dir)
    after = AutoModel.from_pretrained(found.path)
    moved = [
        name
        for (name, a), (_, b) in zip(
            before.state_dict().items(), after.state_dict().items(), strict=True
        )
        if not torch.equal(a, b)
    ]
    assert "embeddings.word_embeddings.weight" in moved
    assert "encoder.layer.1.output.dense.weight" in moved
    assert not any(name.startswith("pooler") for name in moved)  # kept as it was
    listed = run_cli(adapted, "models", "list")
    assert "adapted:tiny" in listed.output
    assert "base, from texts (completed, held-out masked-word loss" in listed.output


def test_the_masked_positions_loss_is_the_librarys_full_one(tiny_model_dir):
    from transformers import AutoTokenizer, BertForMaskedLM, DataCollatorForLanguageModeling

    torch.manual_seed(0)
    model = BertForMaskedLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.5)
    batch = collator([tokenizer(r["text"]) for r in tiny_rows(16)])
    full = model(**batch).loss
    hidden = model.bert(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    masked = batch["labels"] != -100
    head = adaptation._head_of(model)
    ours = torch.nn.functional.cross_entropy(head(hidden[masked]), batch["labels"][masked])
    assert ours.item() == pytest.approx(full.item(), rel=1e-5)


def test_a_run_trains_from_the_adapted_base_and_keeps_its_name(adapted, tmp_path):
    result = run_cli(adapted, "train", "tiny", *tiny_train_args("adapted:tiny"), "--epochs", "2")
    assert result.exit_code == 0, result.output
    with open_db(adapted) as db:
        run = runs.list_runs(db)[0]
        assert run.status == "completed"
        assert run.config.base_model == "adapted:tiny"
        assert run.test["accuracy"] > 0.5  # chance is 1/3


def test_an_evaluation_trains_its_folds_from_the_adapted_base(adapted):
    result = run_cli(
        adapted, "evaluations", "run", "tiny", "--folds", "2",
        *tiny_train_args("adapted:tiny"), "--epochs", "1", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with open_db(adapted) as db:
        row = db["devmode_evaluations"].get(int(json.loads(result.stdout)["id"]))
    assert row["status"] == "completed"
    assert json.loads(row["config"])["base_model"] == "adapted:tiny"


def test_delete_is_refused_while_a_run_waits_on_the_base(adapted, tmp_path, tiny_model_dir):
    copy = tmp_path / "copy.db"
    with open_db(adapted) as db:
        db.conn.execute("vacuum into ?", [str(copy)])
    # the copy's base lives in the original's files folder: a second base for this test
    result = run_cli(
        copy, "adapt", "texts", "--name", "second", "--base-model", tiny_model_dir,
        "--epochs", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with open_db(copy) as db:
        queued = runs.create_run(
            db, "tiny", TrainConfig(base_model="adapted:second", freeze_embeddings=False)
        )
        path = adapted_bases.by_name(db, "second").path
    refused = run_cli(copy, "models", "delete", "adapted:second", "--yes")
    assert refused.exit_code == 1
    assert f"adapted:second is the base of run {queued.id} (queued)" in refused.output
    assert "Cancel them first" in refused.output
    assert "Traceback" not in refused.output
    with open_db(copy) as db:
        assert adapted_bases.by_name(db, "second").is_completed  # untouched
    cancelled = run_cli(copy, "runs", "cancel", queued.id)
    assert cancelled.exit_code == 0
    deleted = run_cli(copy, "models", "delete", "adapted:second", "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert "adapted:second" not in run_cli(copy, "models", "list").output
    assert not Path(path).exists()
    # a run of the deleted base cannot be started, and says why
    again = run_cli(copy, "train", "tiny", "--base-model", "adapted:second")
    assert again.exit_code == 1
    assert "No adapted base named 'second'" in again.output


@pytest.mark.parametrize(
    "arguments,message",
    [
        (["few", "--name", "x"], "needs at least 200 distinct texts to learn from; few holds 10"),
        (["missing", "--name", "x"], "missing"),
        (["texts", "--name", "bad name!"], "--name must be 1 to 64 letters"),
        (["texts", "--name", "tiny"], "An adapted base named 'tiny' already exists"),
        (["texts", "--name", "x", "--epochs", "0"], "epochs must be from 1 to 100"),
        (["texts", "--name", "x", "--base-model", "adapted:tiny"], "Adapt from a base model"),
        (["texts"], "Name the datasets to read and the base to make"),
    ],
)
def test_bad_adaptations_are_refused_and_store_nothing(
    adapted, tmp_path, tiny_model_dir, arguments, message
):
    copy = tmp_path / "copy.db"
    with open_db(adapted) as db:
        db.conn.execute("vacuum into ?", [str(copy)])
    store_texts(copy, tmp_path, "few", 10)
    with open_db(copy) as db:
        before = db["devmode_adaptations"].count
    result = run_cli(copy, "adapt", *arguments)
    assert result.exit_code in (1, 2)
    assert message in result.output
    assert "Traceback" not in result.output
    with open_db(copy) as db:
        assert db["devmode_adaptations"].count == before


def test_a_base_without_its_tokenizer_is_refused_before_anything_is_stored(
    adapted, tmp_path, tiny_model_dir
):
    import shutil

    broken = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_model_dir, broken)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (broken / name).unlink(missing_ok=True)
    copy = tmp_path / "copy.db"
    with open_db(adapted) as db:
        db.conn.execute("vacuum into ?", [str(copy)])
    result = run_cli(copy, "adapt", "texts", "--name", "x", "--base-model", broken)
    assert result.exit_code == 1
    assert "has no tokenizer files" in result.output
    with open_db(copy) as db:
        assert db["devmode_adaptations"].count == 1  # adapted:tiny only


def test_a_base_that_read_the_test_rows_is_refused_by_evaluations_and_marked_on_runs(
    adapted, tmp_path, tiny_model_dir
):
    copy = tmp_path / "copy.db"
    with open_db(adapted) as db:
        db.conn.execute("vacuum into ?", [str(copy)])
    result = run_cli(
        copy, "adapt", "texts", "tiny", "--name", "leaky", "--base-model", tiny_model_dir,
        "--epochs", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    refused = run_cli(copy, "evaluations", "run", "tiny", "--base-model", "adapted:leaky")
    assert refused.exit_code == 1
    distinct = len({r["text"] for r in tiny_rows()})
    assert (
        f"adapted:leaky read {distinct} of the texts of 'tiny' while it adapted" in refused.output
    )
    trained = run_cli(copy, "train", "tiny", *tiny_train_args("adapted:leaky"), "--epochs", "1")
    assert trained.exit_code == 0, trained.output
    assert "Caveat: its base, adapted:leaky, read" in trained.output
