"""The CUDA-graph training step: what it computes is checked on the CPU, capture on CUDA."""

import numpy as np
import pytest
import torch

from devmode.finetune import steps
from devmode.finetune.step_graphs import WIDTH_MULTIPLE, StepGraphs, round_width
from devmode.finetune.steps import TrainingStep
from devmode.finetune.training import bucketed_batches, train
from devmode.models.classifier import (
    TextClassifier,
    collate,
    encode,
    expanded_attention_mask,
    load_encoder,
)
from devmode.models.config import InvalidConfig, TrainConfig
from tests.conftest import tiny_config

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_round_width_pads_to_a_multiple_within_the_limit():
    assert [round_width(n, 100) for n in (1, 16, 17, 95, 99)] == [16, 16, 32, 96, 100]
    assert WIDTH_MULTIPLE == 16


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_expanded_mask_matches_the_2d_mask(tiny_model_dir, implementation):
    """The 4-D mask (what graphs hand the encoder) gives the same hidden states as a 2-D one."""
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(tiny_model_dir, attn_implementation=implementation).eval()
    input_ids = torch.tensor([[2, 5, 6, 3, 0, 0], [2, 7, 8, 9, 10, 3]])
    mask = (input_ids != 0).long()
    expanded = expanded_attention_mask(mask, implementation, torch.float32)
    assert expanded.shape == (2, 1, 1, 6)
    with torch.no_grad():
        plain = encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
        prepared = encoder(input_ids=input_ids, attention_mask=expanded).last_hidden_state
    real = mask.bool()
    torch.testing.assert_close(prepared[real], plain[real], rtol=1e-5, atol=1e-5)


def _model_and_optimizer(tiny_model_dir, seed=0):
    torch.manual_seed(seed)
    encoder, tokenizer = load_encoder(str(tiny_model_dir))
    model = TextClassifier(encoder, 3, "mean", dropout=0.0)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    # SGD, not AdamW: the attention key bias has a true gradient of zero (softmax ignores a
    # constant per query), and Adam would blow its rounding noise up into different updates
    return model, tokenizer, torch.optim.SGD(model.parameters(), lr=0.5)


def _step_fn(model, optimizer, expand_mask=False):
    """The loop's own step (no clipping, so that SGD's updates stay comparable)."""
    return TrainingStep(
        model,
        optimizer,
        TrainConfig(max_grad_norm=0.0),
        class_weights=None,
        fgm=None,
        device=torch.device("cpu"),
        use_bf16=False,
        in_graph=False,
        expand_mask=expand_mask,
    )


def test_graph_body_trains_exactly_like_the_plain_step(tiny_model_dir, tiny_data):
    """Device-side gather, rounded widths, filler rows and the 4-D mask change nothing: the
    same batches give the same losses and the same weights as padded batches from ``collate``."""
    labels = ["negative", "neutral", "positive"]
    plain, tokenizer, plain_opt = _model_and_optimizer(tiny_model_dir)
    graphed, _, graphed_opt = _model_and_optimizer(tiny_model_dir)
    encoded = encode(tokenizer, tiny_data.train, labels, 32)
    batch_size = 8
    batches = bucketed_batches(encoded.lengths, batch_size, seed=1, epoch=0)
    assert len(batches[-1]) < batch_size or any(len(b) < batch_size for b in batches)
    steps = StepGraphs(
        encoded,
        tokenizer.pad_token_id,
        batch_size,
        len(batches),
        _step_fn(graphed, graphed_opt, expand_mask=True),
        torch.device("cpu"),
        capture=False,
    )
    steps.start_epoch(batches)
    plain_step = _step_fn(plain, plain_opt)
    plain_losses, graphed_losses = [], []
    for indices in batches:
        input_ids, attention_mask, y = collate(
            encoded, indices, tokenizer.pad_token_id, torch.device("cpu")
        )
        plain_losses.append(plain_step(input_ids, attention_mask, y).item())
        before = steps.loss_sum.item()
        assert steps.step(indices)
        graphed_losses.append(steps.loss_sum.item() - before)
    np.testing.assert_allclose(graphed_losses, plain_losses, rtol=1e-4, atol=1e-5)
    for (name, a), b in zip(plain.named_parameters(), graphed.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
    assert steps.cursor.item() == len(batches)


def test_skip_keeps_the_cursor_with_the_batches(tiny_model_dir, tiny_data):
    model, tokenizer, optimizer = _model_and_optimizer(tiny_model_dir)
    encoded = encode(tokenizer, tiny_data.train, ["negative", "neutral", "positive"], 32)
    batches = bucketed_batches(encoded.lengths, 8, seed=1, epoch=0)
    steps = StepGraphs(
        encoded, 0, 8, len(batches), _step_fn(model, optimizer), torch.device("cpu"), capture=False
    )
    steps.start_epoch(batches)
    steps.skip()
    steps.step(batches[1])
    assert steps.cursor.item() == 2
    steps.start_epoch(batches)
    assert steps.cursor.item() == 0


def test_cpu_training_notes_nothing_about_graphs(tiny_model_dir, tiny_data):
    result = train(tiny_config(tiny_model_dir, epochs=1), tiny_data)
    assert result.step_graphs == 0 and result.notes == []


@requires_cuda
def test_cuda_graphs_train_as_well_as_eager_steps(tiny_model_dir, tiny_data):
    graphed = train(
        tiny_config(
            tiny_model_dir, epochs=4, device="cuda", cuda_graphs=True, average_last_epochs=0
        ),
        tiny_data,
    )
    eager = train(
        tiny_config(
            tiny_model_dir, epochs=4, device="cuda", cuda_graphs=False, average_last_epochs=0
        ),
        tiny_data,
    )
    assert graphed.notes == [] and graphed.step_graphs >= 1
    assert eager.step_graphs == 0
    assert graphed.test["accuracy"] >= 0.9 and eager.test["accuracy"] >= 0.9


@requires_cuda
def test_a_compiled_step_trains_on_cuda(tiny_model_dir, tiny_data):
    torch._dynamo.reset()
    result = train(
        tiny_config(
            tiny_model_dir, epochs=4, device="cuda", compile_step=True, average_last_epochs=0
        ),
        tiny_data,
    )
    assert result.notes == ["training step compiled with torch.compile (reduce-overhead)"]
    assert result.test["accuracy"] >= 0.9


@requires_cuda
def test_cuda_graphs_with_fgm_and_class_weights(tiny_model_dir, tiny_data):
    result = train(
        tiny_config(
            tiny_model_dir,
            epochs=4,
            device="cuda",
            cuda_graphs=True,
            adversarial="fgm",
            class_weights=True,
        ),
        tiny_data,
    )
    assert result.notes == [] and result.step_graphs >= 1
    assert result.test["accuracy"] >= 0.9


def test_a_compiled_step_trains_like_the_eager_loop(tiny_model_dir, tiny_data, monkeypatch):
    """compile_step runs the loop's step through torch.compile on the graphs' static shapes.
    Traced with aot_eager (dynamo and AOTAutograd, no code generation: seconds, not minutes),
    it learns the same model as eager steps."""
    monkeypatch.setattr(steps, "COMPILER", "aot_eager")
    torch._dynamo.reset()
    settings = dict(epochs=3, dropout=0.0, optimizer="sgd", learning_rate=0.05)
    losses = {True: [], False: []}

    def run(compile_step):
        def keep(progress):
            if "eval_loss" in progress.metrics:
                losses[compile_step].append(progress.metrics["eval_loss"])

        config = tiny_config(tiny_model_dir, compile_step=compile_step, **settings)
        return train(config, tiny_data, on_progress=keep)

    compiled, eager = run(True), run(False)
    assert compiled.notes == [
        "training step compiled with torch.compile (default)",
        "weights averaged over epochs 2 to 3",
    ]
    assert compiled.step_graphs == 0 and compiled.steps == eager.steps
    assert len(losses[True]) == 3
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-3)
    assert compiled.test["accuracy"] == eager.test["accuracy"] > 0.6  # chance is 1/3


def test_cuda_graphs_and_compile_step_are_not_both_on():
    with pytest.raises(InvalidConfig, match="Use one of them"):
        TrainConfig(cuda_graphs=True, compile_step=True)
