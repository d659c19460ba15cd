"""The levers that narrow the seed spread: layer-wise learning-rate decay, fresh top layers and
the average of the last epochs' weights, on the tiny BERT."""

import pytest
import torch

from devmode.finetune import stability, steps
from devmode.finetune.training import build_model, make_optimizer, train
from devmode.models.base_models import InvalidBaseModel
from devmode.models.classifier import load_classifier
from devmode.models.config import InvalidConfig, TrainConfig
from tests.conftest import tiny_config


def test_layer_decay_gives_each_layer_its_share_of_the_rate(tiny_model_dir):
    config = tiny_config(tiny_model_dir, layer_lr_decay=0.5)
    model, _ = build_model(config, 3)
    optimizer = make_optimizer(model, config, torch.device("cpu"))
    steps.set_lr(optimizer, 1e-3)
    rate = {}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            rate[id(parameter)] = group["lr"]
    named = dict(model.named_parameters())
    # the head: full rate; the top layer (of 2): half; the one below: a quarter; embeddings: 1/8
    assert rate[id(named["head.weight"])] == pytest.approx(1e-3)
    assert rate[id(named["encoder.encoder.layer.1.attention.self.query.weight"])] == pytest.approx(
        5e-4
    )
    assert rate[id(named["encoder.encoder.layer.0.output.dense.weight"])] == pytest.approx(2.5e-4)
    assert rate[id(named["encoder.embeddings.word_embeddings.weight"])] == pytest.approx(1.25e-4)
    # weight decay still skips biases and LayerNorms
    for group in optimizer.param_groups:
        assert all(p.ndim >= 2 for p in group["params"]) == (group["weight_decay"] > 0)
    # every trainable parameter is in exactly one group
    grouped = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)


def test_without_decay_the_groups_are_the_two_of_before(tiny_model_dir):
    config = tiny_config(tiny_model_dir, layer_lr_decay=1.0)
    model, _ = build_model(config, 3)
    groups = make_optimizer(model, config, torch.device("cpu")).param_groups
    assert [(g["weight_decay"], g["lr_scale"]) for g in groups] == [
        (config.weight_decay, 1.0),
        (0.0, 1.0),
    ]


def test_a_frozen_encoder_needs_no_layer_stack(tiny_model_dir, monkeypatch):
    # head_only trains the head alone: the default decay has no layers to spread over
    config = tiny_config(tiny_model_dir, freeze="head_only")
    model, _ = build_model(config, 3)
    monkeypatch.setattr(model.encoder.config, "num_hidden_layers", 7)  # a stack not to be found
    groups = make_optimizer(model, config, torch.device("cpu")).param_groups
    assert {g["lr_scale"] for g in groups} == {1.0}
    # a trained encoder whose stack cannot be found: the message says which setting to change
    trained = tiny_config(tiny_model_dir)
    model, _ = build_model(trained, 3)
    monkeypatch.setattr(model.encoder.config, "num_hidden_layers", 7)
    with pytest.raises(InvalidBaseModel, match=r"layer_lr_decay=1 \(0.9 is the default\)"):
        make_optimizer(model, trained, torch.device("cpu"))


def test_reinit_gives_the_top_layer_fresh_weights_and_leaves_the_rest(tiny_model_dir):
    plain, _ = build_model(tiny_config(tiny_model_dir), 3)
    fresh, _ = build_model(tiny_config(tiny_model_dir, reinit_top_layers=1), 3)
    before, after = dict(plain.named_parameters()), dict(fresh.named_parameters())
    top = "encoder.encoder.layer.1.attention.self.query"
    below = "encoder.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(before[f"{top}.weight"], after[f"{top}.weight"])
    assert torch.count_nonzero(after[f"{top}.bias"]) == 0
    assert torch.equal(before[below], after[below])
    norm = after["encoder.encoder.layer.1.output.LayerNorm.weight"]
    assert torch.equal(norm, torch.ones_like(norm))
    # drawn from the run's seed: the same seed, the same fresh weights
    torch.manual_seed(7)
    again, _ = build_model(tiny_config(tiny_model_dir, reinit_top_layers=1), 3)
    torch.manual_seed(7)
    same, _ = build_model(tiny_config(tiny_model_dir, reinit_top_layers=1), 3)
    assert torch.equal(
        dict(again.named_parameters())[f"{top}.weight"],
        dict(same.named_parameters())[f"{top}.weight"],
    )


def test_reinit_of_more_layers_than_the_model_has_is_explained(tiny_model_dir):
    with pytest.raises(InvalidBaseModel, match="has 2 layers. Use at most 2"):
        build_model(tiny_config(tiny_model_dir, reinit_top_layers=3), 3)


def test_the_weight_average_is_the_mean_of_the_last_epochs():
    average = stability.WeightAverage(TrainConfig(epochs=5).first_averaged_epoch)
    weights = [{"w": torch.tensor([float(e)])} for e in range(1, 6)]
    kept = None
    for epoch, w in enumerate(weights, start=1):
        kept = average.add(kept, w, epoch)
        if epoch < 3:
            assert kept is None
    assert kept["w"].item() == pytest.approx((3 + 4 + 5) / 3)


@pytest.mark.parametrize("planned,first", [(5, 3), (3, 2), (2, 2), (1, 1)])
def test_a_short_run_averages_all_but_its_first_epoch(planned, first):
    config = TrainConfig(epochs=planned, average_last_epochs=3)
    average = stability.WeightAverage(config.first_averaged_epoch)
    kept = None
    for epoch in range(1, planned + 1):
        kept = average.add(kept, {"w": torch.tensor([float(epoch)])}, epoch)
    assert average.first_epoch == first
    assert kept["w"].item() == pytest.approx(sum(range(first, planned + 1)) / (planned - first + 1))


def test_the_stable_recipe_is_the_default_and_older_stored_configs_keep_theirs():
    # measured in docs/benchmarks.md (issue 30): same 5-fold accuracy, a third of the seed spread
    assert (TrainConfig().layer_lr_decay, TrainConfig().average_last_epochs) == (0.9, 3)
    assert TrainConfig(epochs=1).average_last_epochs == 3  # a 1-epoch run averages its one epoch
    stored = {k: v for k, v in TrainConfig().to_dict().items() if k != "layer_lr_decay"}
    del stored["average_last_epochs"]  # a run stored before these settings existed ran without
    old = TrainConfig.from_stored(stored)
    assert (old.layer_lr_decay, old.average_last_epochs) == (1.0, 0)
    assert TrainConfig.from_stored(TrainConfig().to_dict()).average_last_epochs == 3
    # few-shot has its own loop: the fine-tune defaults are not a clash, a chosen value is
    assert TrainConfig(method="few-shot").method == "few-shot"
    assert TrainConfig(method="few-shot", layer_lr_decay=1.0, average_last_epochs=0)


def test_an_averaged_run_saves_the_average_and_resumes_into_the_same(
    tiny_model_dir, tiny_data, tmp_path
):
    config = tiny_config(tiny_model_dir, epochs=5, average_last_epochs=3, dropout=0.0)
    straight = train(
        config, tiny_data, output_dir=tmp_path / "model", checkpoint_dir=tmp_path / "a"
    )
    assert straight.status == "completed"
    assert straight.epochs_run == 5  # early stopping is off while averaging
    assert straight.best_epoch == 5
    assert "weights averaged over epochs 3 to 5" in straight.notes
    assert straight.test["accuracy"] > 0.5  # chance is 1/3
    # stopped during epoch 5 (epochs 3 and 4 are in the checkpoint's average) and resumed
    count = []
    stopped = train(
        config,
        tiny_data,
        checkpoint_dir=tmp_path / "b",
        should_stop=lambda: count.append(1) or len(count) > straight.steps - 2,
    )
    assert stopped.status == "cancelled"
    resumed = train(
        config, tiny_data, output_dir=tmp_path / "resumed", checkpoint_dir=tmp_path / "b"
    )
    a, _, _ = load_classifier(tmp_path / "model")
    b, _, _ = load_classifier(tmp_path / "resumed")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.allclose(x, y, atol=1e-5), name
    assert resumed.test["confusion_matrix"] == straight.test["confusion_matrix"]


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"reinit_top_layers": 1, "freeze": "head_only"}, "so they must train"),
        ({"reinit_top_layers": 2, "freeze": "top_layers", "train_top_layers": 1}, "must train"),
        ({"reinit_top_layers": 1, "lora": True}, "must train"),
        ({"layer_lr_decay": 0.0}, "layer_lr_decay must be"),
        ({"early_stopping_patience": 2}, "Set average_last_epochs=0 to stop early"),
        ({"layer_lr_decay": 1.5}, "layer_lr_decay must be"),
        ({"method": "few-shot", "layer_lr_decay": 0.8}, "only the fine-tune loop has"),
        ({"method": "few-shot", "average_last_epochs": 2}, "only the fine-tune loop has"),
    ],
)
def test_settings_that_cannot_work_together_are_refused(settings, message):
    with pytest.raises(InvalidConfig, match=message):
        TrainConfig(**settings)
