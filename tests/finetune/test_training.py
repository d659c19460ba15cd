import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from devmode.data.examples import InvalidTrainingData, TrainData
from devmode.finetune import checkpoints, evaluation, steps, training
from devmode.finetune.evaluation import classification_report
from devmode.finetune.training import OutOfMemory, bucketed_batches, lr_at, train
from devmode.models import classifier
from devmode.models.base_models import InvalidBaseModel
from devmode.models.classifier import load_classifier
from devmode.models.config import InvalidConfig, TrainConfig
from tests.conftest import tiny_config, tiny_rows

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_train_reports_progress_and_learns(tiny_model_dir, tiny_data, tmp_path):
    seen = []
    result = train(
        tiny_config(tiny_model_dir, epochs=4, early_stopping_patience=0),
        tiny_data,
        output_dir=tmp_path / "m",
        on_progress=seen.append,
    )
    steps = [p.step for p in seen if "train_loss" in p.metrics]
    assert steps == list(range(1, result.steps + 1))
    assert result.steps == 4 * math.ceil(len(tiny_data.train) / 8)
    assert all(math.isfinite(p.metrics["train_loss"]) for p in seen if "train_loss" in p.metrics)
    evals = [p for p in seen if "eval_macro_f1" in p.metrics]
    assert [p.epoch for p in evals] == [1, 2, 3, 4]
    assert result.status == "completed" and result.device == "cpu" and result.precision == "fp32"
    assert result.labels == ["negative", "neutral", "positive"]
    # the words give the label away: a working loop gets (nearly) all of the test split right
    assert result.test["accuracy"] >= 0.8  # chance is 1/3
    assert result.test["n"] == len(tiny_data.test)
    assert np.array(result.test["confusion_matrix"]).sum() == len(tiny_data.test)
    assert result.samples_per_second > 0
    # the temperature is fitted on the validation split and judged on the test split
    fitted = result.test["calibration"]
    assert fitted["temperature"] == result.temperature and fitted["note"] is None
    assert fitted["fitted_on"] == len(tiny_data.validation) and fitted["rows"] == result.test["n"]
    assert 0 <= fitted["ece_after"] <= 1 and 0 <= fitted["ece_before"] <= 1
    assert sum(b["rows"] for b in fitted["reliability_after"]) == len(tiny_data.test)


def test_a_validation_split_of_one_class_leaves_the_model_uncalibrated_and_says_why(
    tiny_model_dir, tiny_data, tmp_path
):
    one_class = [(text, label) for text, label in tiny_data.validation if label == "neutral"]
    data = TrainData(tiny_data.train, one_class, tiny_data.test, tiny_data.labels)
    result = train(tiny_config(tiny_model_dir, epochs=1), data, output_dir=tmp_path / "m")
    assert result.status == "completed" and result.temperature == 1.0
    note = result.test["calibration"]["note"]
    assert "at least two classes" in note and "class neutral" in note
    assert load_classifier(tmp_path / "m")[2]["temperature"] == 1.0


def test_saved_model_loads_and_predicts_the_same(tiny_model_dir, tiny_data, tmp_path):
    result = train(tiny_config(tiny_model_dir, epochs=2), tiny_data, output_dir=tmp_path / "m")
    model, tokenizer, card = load_classifier(tmp_path / "m")
    assert card["labels"] == result.labels and card["train_config"]["epochs"] == 2
    assert not (tmp_path / "m.partial").exists()
    encoded = classifier.encode(tokenizer, tiny_data.test, card["labels"], 32)
    probabilities = classifier.predict_probabilities(
        model, encoded, 16, tokenizer.pad_token_id, torch.device("cpu"), False
    )
    report = classification_report(card["labels"], encoded.labels.numpy(), probabilities)
    assert report["accuracy"] == pytest.approx(result.test["accuracy"])


def test_cancel_stops_without_saving(tiny_model_dir, tiny_data, tmp_path):
    calls = []
    result = train(
        tiny_config(tiny_model_dir),
        tiny_data,
        output_dir=tmp_path / "m",
        should_stop=lambda: calls.append(1) or len(calls) >= 3,
    )
    assert result.status == "cancelled" and result.steps == 3
    assert result.output_dir is None and not (tmp_path / "m").exists()


def test_early_stopping_keeps_the_best_epoch(tiny_model_dir, tiny_data):
    # a learning rate this small changes nothing measurable: no epoch beats the first
    result = train(
        tiny_config(
            tiny_model_dir,
            epochs=10,
            learning_rate=1e-12,
            early_stopping_patience=2,
            average_last_epochs=0,  # averaging, the default, trains every epoch
        ),
        tiny_data,
    )
    assert result.epochs_run == 3 and result.best_epoch == 1
    averaged = train(tiny_config(tiny_model_dir, epochs=4, learning_rate=1e-12), tiny_data)
    assert averaged.epochs_run == 4 and averaged.notes == ["weights averaged over epochs 2 to 4"]


def test_resume_from_checkpoint_matches_an_uninterrupted_run(tiny_model_dir, tiny_data, tmp_path):
    config = tiny_config(tiny_model_dir, epochs=3, dropout=0.0, early_stopping_patience=0)
    straight = train(config, tiny_data, checkpoint_dir=tmp_path / "a")
    steps_per_epoch = math.ceil(len(tiny_data.train) / 8)
    count = []
    stopped = train(
        config,
        tiny_data,
        checkpoint_dir=tmp_path / "b",
        should_stop=lambda: count.append(1) or len(count) > steps_per_epoch + 1,
    )
    assert stopped.status == "cancelled"
    assert checkpoints.checkpoint_position(tmp_path / "b") == {
        "epoch": 1,
        "step": steps_per_epoch,
        "best_epoch": 1,
    }
    resumed = train(config, tiny_data, checkpoint_dir=tmp_path / "b")
    assert resumed.steps == straight.steps
    assert resumed.test["confusion_matrix"] == straight.test["confusion_matrix"]
    assert resumed.validation["macro_f1"] == pytest.approx(straight.validation["macro_f1"])


@pytest.mark.parametrize(
    "freeze,frozen,trained",
    [
        (
            "head_only",
            ["encoder.embeddings", "encoder.encoder.layer.0", "encoder.encoder.layer.1"],
            ["head"],
        ),
        (
            "top_layers",
            ["encoder.embeddings", "encoder.encoder.layer.0"],
            ["encoder.encoder.layer.1", "head"],
        ),
    ],
)
def test_layer_freezing(tiny_model_dir, tiny_data, freeze, frozen, trained):
    config = tiny_config(tiny_model_dir, freeze=freeze, train_top_layers=1, epochs=1)
    encoder, _ = classifier.load_encoder(config.base_model)
    model = classifier.TextClassifier(encoder, 3)
    training.freeze_layers(model, config)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(not any(n.startswith(f) for n in names) for f in frozen)
    assert all(any(n.startswith(t) for n in names) for t in trained)
    assert train(config, tiny_data).status == "completed"


def test_lora_trains_adapters_and_saves_plain_weights(tiny_model_dir, tiny_data, tmp_path):
    config = tiny_config(tiny_model_dir, lora=True, lora_rank=4, epochs=2)
    encoder, _ = classifier.load_encoder(config.base_model)
    model = classifier.TextClassifier(encoder, 3)
    training.add_lora(model, config)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable if n.startswith("encoder."))
    result = train(config, tiny_data, output_dir=tmp_path / "m")
    assert result.status == "completed"
    loaded, _, _ = load_classifier(tmp_path / "m")  # no peft needed to load
    assert not any("lora" in n for n, _ in loaded.named_parameters())


def test_every_lora_adapter_receives_a_gradient(tiny_model_dir):
    """BERT's pooler is a ``dense`` layer that neither pooling uses: an adapter there would
    never get a gradient (an error under DDP), so LoRA adapts the layer stack only."""
    config = tiny_config(tiny_model_dir, lora=True, lora_rank=4)
    encoder, _ = classifier.load_encoder(config.base_model)
    assert encoder.pooler is not None
    model = classifier.TextClassifier(encoder, 3)
    training.add_lora(model, config)
    ids = torch.tensor([[2, 5, 7, 9], [2, 6, 3, 0]])
    model(ids, (ids > 0).long()).logsumexp(-1).sum().backward()
    silent = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert silent == []
    adapted = {n for n, _ in model.named_parameters() if "lora_" in n}
    assert adapted and not [n for n in adapted if "pooler" in n]
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in adapted} == {
        "query",
        "key",
        "value",
        "dense",
    }


@pytest.mark.parametrize(
    "overrides",
    [
        {"adversarial": "fgm", "adversarial_epsilon": 0.5},
        {"class_weights": True},
        {"optimizer": "sgd", "learning_rate": 0.05, "schedule": "cosine"},
        {"pooling": "cls", "schedule": "constant", "max_grad_norm": 0.0},
    ],
)
def test_training_options_run_and_learn(tiny_model_dir, tiny_data, overrides):
    result = train(tiny_config(tiny_model_dir, epochs=4, **overrides), tiny_data)
    assert result.status == "completed"
    assert result.test["accuracy"] > 0.5  # chance is 1/3


@pytest.mark.parametrize("frozen", [True, False])
def test_fgm_perturbs_the_embeddings_along_the_gradient_and_restores(tiny_model_dir, frozen):
    encoder, _ = classifier.load_encoder(str(tiny_model_dir))
    encoder.get_input_embeddings().weight.requires_grad = not frozen
    model = classifier.TextClassifier(encoder, 3).eval()
    fgm = steps.FGM(model, epsilon=1.0)
    ids, mask = torch.tensor([[2, 5, 7, 3]]), torch.ones(1, 4, dtype=torch.long)
    clean = model(ids, mask)
    loss = F.cross_entropy(clean, torch.tensor([0]))
    loss.backward()
    fgm.attack()
    assert torch.linalg.vector_norm(fgm.delta).item() == pytest.approx(1.0, rel=1e-4)
    with torch.no_grad():
        attacked = model(ids, mask)
    # a step along the gradient raises the loss
    assert F.cross_entropy(attacked, torch.tensor([0])).item() > loss.item()
    fgm.restore()
    with torch.no_grad():
        assert torch.allclose(model(ids, mask), clean)


def test_word_embeddings_are_frozen_by_default(tiny_model_dir):
    encoder, _ = classifier.load_encoder(str(tiny_model_dir))
    model = classifier.TextClassifier(encoder, 3)
    training.freeze_layers(model, TrainConfig(base_model=str(tiny_model_dir)))
    assert not model.encoder.get_input_embeddings().weight.requires_grad
    assert model.encoder.embeddings.position_embeddings.weight.requires_grad


def test_a_half_precision_checkpoint_trains_and_saves_in_fp32(tiny_model_dir, tiny_data, tmp_path):
    """Many hub models are stored in fp16 or bf16, and transformers 5 keeps a file's dtype;
    AdamW on fp16 weights would lose most updates, so training loads fp32 master weights."""
    import shutil

    from transformers import AutoModel

    half = tmp_path / "half"
    shutil.copytree(tiny_model_dir, half)
    AutoModel.from_pretrained(half).half().save_pretrained(half)
    assert next(AutoModel.from_pretrained(half).parameters()).dtype == torch.float16
    encoder, _ = classifier.load_encoder(str(half))
    assert {p.dtype for p in encoder.parameters()} == {torch.float32}
    result = train(tiny_config(half, epochs=4), tiny_data, output_dir=tmp_path / "m")
    assert result.test["accuracy"] > 0.6
    model, _, _ = load_classifier(tmp_path / "m")
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_class_weights_favour_rare_classes():
    encoded = classifier.Encoded(
        ids=[[1]] * 4, labels=torch.tensor([0, 0, 0, 1]), lengths=np.ones(4, int)
    )
    weights = training.class_weight_tensor(encoded, 2, torch.device("cpu"))
    assert weights.tolist() == pytest.approx([4 / 6, 2.0])


@pytest.mark.parametrize(
    "rows,message",
    [
        ([r for r in tiny_rows() if r["label"] == "positive"], "has 1 class"),
        (
            tiny_rows() + [{"text": "odd", "label": "rare", "split": "train"}],
            "fewer than 3 rows, too few to appear in train, validation and test: 'rare' (1)",
        ),
        (
            tiny_rows() + [{"text": " ", "label": "positive", "split": "train"}],
            "1 train rows have a blank text",
        ),
        (
            [{**r, "split": "train"} if r["split"] == "validation" else r for r in tiny_rows()],
            "0 validation",
        ),
        (
            [r for r in tiny_rows() if not (r["label"] == "neutral" and r["split"] == "train")],
            "labels the training split never shows: ['neutral']",
        ),
        (
            tiny_rows() + [{"text": "\u200b\u200d\ufeff", "label": "positive", "split": "train"}],
            "1 train rows have a blank text (empty, spaces, or only invisible characters",
        ),
        (
            tiny_rows()
            + [
                {"text": f"up {i}", "label": label, "split": split}
                for i, (label, split) in enumerate(
                    [("Positive", "train")] * 3 + [("positive ", "validation")] * 3
                )
            ],
            "differ only in case or surrounding spaces, so they would train as separate "
            "classes: 'positive' (30 rows) / 'Positive' (3 rows) / 'positive ' (3 rows)",
        ),
    ],
)
def test_bad_data_is_refused_before_training(rows, message, tiny_model_dir):
    with pytest.raises(InvalidTrainingData, match=re.escape(message)):
        train(tiny_config(tiny_model_dir), TrainData.from_rows(rows))


@pytest.mark.parametrize(
    "field,value",
    [
        ("epochs", 0),
        ("learning_rate", 0),
        ("learning_rate", 3.0),
        ("batch_size", 0),
        ("dropout", 1.0),
        ("optimizer", "adam"),
        ("freeze", "bottom"),
        ("max_length_tokens", 4),
        ("warmup_fraction", 1.0),
    ],
)
def test_impossible_settings_are_refused(field, value):
    with pytest.raises(InvalidConfig, match=f"{field} must be"):
        TrainConfig(**{field: value})


def test_lora_and_freezing_together_are_refused():
    with pytest.raises(InvalidConfig, match="lora already freezes"):
        TrainConfig(lora=True, freeze="head_only")


def test_config_round_trips_through_a_dict():
    config = TrainConfig(epochs=2, lora=True)
    assert TrainConfig.from_dict({**config.to_dict(), "field_from_the_future": 1}) == config


def test_a_folder_that_is_not_a_model_is_explained(tmp_path, tiny_data):
    with pytest.raises(InvalidBaseModel, match="has no config.json"):
        train(TrainConfig(base_model=str(tmp_path)), tiny_data)


def test_out_of_memory_is_explained(monkeypatch, tiny_model_dir, tiny_data):
    def boom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(training, "_train", boom)
    with pytest.raises(OutOfMemory, match="batch_size=4 or max_length_tokens=64"):
        train(tiny_config(tiny_model_dir, max_length_tokens=128), tiny_data)


def test_learning_rate_schedules():
    config = TrainConfig(learning_rate=0.5, warmup_fraction=0.1)
    assert [round(lr_at(s, 100, config) * 2, 3) for s in (0, 4, 9, 10, 55, 99)] == [
        0.1,
        0.5,
        1.0,
        1.0,
        0.5,
        0.011,
    ]
    cosine = TrainConfig(learning_rate=0.5, warmup_fraction=0.0, schedule="cosine")
    assert [round(lr_at(s, 100, cosine) * 2, 3) for s in (0, 50, 100)] == [1.0, 0.5, 0.0]
    assert lr_at(70, 100, TrainConfig(learning_rate=0.5, schedule="constant")) == 0.5


def test_bucketed_batches_cover_every_example_once_with_little_padding():
    lengths = np.random.default_rng(0).integers(5, 120, size=1000)
    batches = bucketed_batches(lengths, 32, seed=1, epoch=0)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert padded / lengths.sum() < 1.1  # random batches pad about 1.7x here
    assert [b.tolist() for b in batches] == [
        b.tolist() for b in bucketed_batches(lengths, 32, 1, 0)
    ]
    assert [b.tolist() for b in batches] != [
        b.tolist() for b in bucketed_batches(lengths, 32, 1, 1)
    ]


def test_classification_report_by_hand():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    report = classification_report(
        ["a", "b"], np.array([0, 1, 1, 1]), probabilities, ["w", "x", "y", "z"]
    )
    assert report["accuracy"] == 0.75
    assert report["confusion_matrix"] == [[1, 0], [1, 2]]
    assert report["per_class"][1] == {
        "label": "b",
        "precision": 1.0,
        "recall": 2 / 3,
        "f1": 0.8,
        "support": 3,
    }
    assert report["mistakes"] == [{"text": "y", "label": "b", "predicted": "a", "confidence": 0.7}]


def test_baselines(tiny_model_dir, tiny_data):
    majority = evaluation.majority_report(tiny_data)
    assert majority["predicts"] in tiny_data.labels and majority["accuracy"] == pytest.approx(1 / 3)
    zero = evaluation.zero_shot_report(tiny_config(tiny_model_dir), tiny_data)
    assert zero["n"] == len(tiny_data.test) and 0 <= zero["accuracy"] <= 1


@requires_cuda
def test_bf16_training_on_cuda(tiny_model_dir, tiny_data):
    result = train(tiny_config(tiny_model_dir, epochs=4, device="cuda"), tiny_data)
    assert (result.device, result.precision) == ("cuda", "bf16")
    assert result.test["accuracy"] >= 0.9
