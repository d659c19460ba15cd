"""Epoch checkpoints: only what trains, written in the background, refused for another model."""

import pytest
import torch

from devmode.finetune.checkpoints import (
    CheckpointMismatch,
    Checkpoints,
    checkpoint_position,
    load_trainable,
    trainable_state,
)
from devmode.finetune.training import freeze_layers, make_optimizer
from devmode.models.classifier import TextClassifier, load_encoder
from tests.conftest import tiny_config


def _model(tiny_model_dir, **overrides):
    config = tiny_config(tiny_model_dir, **overrides)
    encoder, _ = load_encoder(str(tiny_model_dir))
    model = TextClassifier(encoder, 3)
    freeze_layers(model, config)
    return model, make_optimizer(model, config, torch.device("cpu"))


def _state(epoch, best_epoch):
    return {"epoch": epoch, "step": 10 * epoch, "best_epoch": best_epoch, "best_f1": 0.5}


def _train_a_step(model, optimizer):
    model(torch.tensor([[2, 5, 3]]), torch.ones(1, 3, dtype=torch.long)).sum().backward()
    optimizer.step()
    optimizer.zero_grad()


def test_checkpoint_holds_the_trainable_weights_only(tiny_model_dir):
    model, _ = _model(tiny_model_dir, freeze="head_only")
    saved = trainable_state(model)
    assert set(saved) == {"head.weight", "head.bias"}
    model, _ = _model(tiny_model_dir, freeze_embeddings=True)
    assert "encoder.embeddings.word_embeddings.weight" not in trainable_state(model)
    assert all(t.device.type == "cpu" for t in trainable_state(model).values())


def test_save_then_load_restores_model_optimizer_and_state(tiny_model_dir, tmp_path):
    model, optimizer = _model(tiny_model_dir)
    _train_a_step(model, optimizer)
    checkpoints = Checkpoints(tmp_path / "run")
    checkpoints.save(model, optimizer, _state(1, 1), best_weights=None)
    checkpoints.wait()
    assert checkpoint_position(tmp_path / "run") == {"epoch": 1, "step": 10, "best_epoch": 1}
    assert not (tmp_path / "run" / "best.pt").exists()  # last.pt holds the best epoch

    fresh, fresh_optimizer = _model(tiny_model_dir)
    state, best = Checkpoints(tmp_path / "run").load(fresh, fresh_optimizer, torch.device("cpu"))
    assert state["epoch"] == 1 and set(best) == set(trainable_state(model))
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, msg=name)
    assert fresh_optimizer.state_dict()["state"].keys() == optimizer.state_dict()["state"].keys()


def test_best_weights_are_kept_while_last_holds_a_worse_epoch(tiny_model_dir, tmp_path):
    model, optimizer = _model(tiny_model_dir)
    checkpoints = Checkpoints(tmp_path)
    best = trainable_state(model)
    checkpoints.save(model, optimizer, _state(1, 1), best)
    _train_a_step(model, optimizer)
    checkpoints.save(model, optimizer, _state(2, 1), best)  # epoch 2 was worse
    checkpoints.wait()
    assert (tmp_path / "best.pt").is_file()
    fresh, fresh_optimizer = _model(tiny_model_dir)
    state, loaded_best = checkpoints.load(fresh, fresh_optimizer, torch.device("cpu"))
    assert state["epoch"] == 2
    torch.testing.assert_close(loaded_best["head.weight"], best["head.weight"])
    checkpoints.save(model, optimizer, _state(3, 3), trainable_state(model))  # a new best
    checkpoints.wait()
    assert not (tmp_path / "best.pt").exists()


def test_save_returns_before_the_file_is_written(tiny_model_dir, tmp_path):
    """The epoch's tensors are copied at once; the write is the thread's, in order."""
    model, optimizer = _model(tiny_model_dir)
    checkpoints = Checkpoints(tmp_path)
    written = []
    checkpoints.save(model, optimizer, _state(1, 1), None, after=lambda: written.append(1))
    _train_a_step(model, optimizer)  # training goes on; the snapshot is already taken
    checkpoints.save(model, optimizer, _state(2, 2), None, after=lambda: written.append(2))
    checkpoints.wait()
    assert written == [1, 2]
    assert not list(tmp_path.glob("*.tmp"))


def test_a_failed_write_is_raised_by_wait(tiny_model_dir, tmp_path):
    model, optimizer = _model(tiny_model_dir)
    blocker = tmp_path / "run"
    blocker.write_text("a file where the run folder should be")
    checkpoints = Checkpoints(blocker)
    checkpoints.save(model, optimizer, _state(1, 1), None)
    with pytest.raises(OSError):
        checkpoints.wait()
    checkpoints.wait()  # reported once


def test_weights_of_another_model_are_refused(tiny_model_dir):
    model, _ = _model(tiny_model_dir)
    with pytest.raises(CheckpointMismatch, match="does not match this model"):
        load_trainable(model, {"head.weight": torch.zeros(3, 16), "adapter.lora_A": torch.zeros(1)})
    with pytest.raises(CheckpointMismatch, match="missing trainable weights"):
        load_trainable(model, {"head.weight": torch.zeros(3, 16)})


def test_the_checkpoints_brief_is_never_seen_half_written(tmp_path, monkeypatch):
    """last.json is written under a temporary name and renamed: a kill while it is written
    (the test of a killed worker once caught it empty) leaves the previous one whole."""
    from devmode.finetune import checkpoints

    brief = tmp_path / "last.json"
    checkpoints.atomic_write_text('{"epoch": 1, "step": 5, "best_epoch": 1}', brief)
    seen = []
    real_replace = checkpoints.os.replace

    def replace(src, dst):  # what a reader sees just before the rename
        seen.append(checkpoints.checkpoint_position(tmp_path))
        real_replace(src, dst)

    monkeypatch.setattr(checkpoints.os, "replace", replace)
    checkpoints.atomic_write_text('{"epoch": 2, "step": 10, "best_epoch": 2}', brief)
    assert seen == [{"epoch": 1, "step": 5, "best_epoch": 1}]
    assert checkpoints.checkpoint_position(tmp_path)["epoch"] == 2
