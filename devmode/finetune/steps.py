"""One training step, and how the loop runs it: chosen once, before the loop.

    step = TrainingStep(model, optimizer, config, class_weights, fgm, device, use_bf16)
    runner = StepRunner.choose(step, config, train_set, pad_id, steps_per_epoch, device, processes)
    runner.start_epoch(batches)
    for indices in batches:
        runner.run(indices)            # eager, a replayed CUDA graph, or a compiled step
    runner.loss_sum                    # the summed loss, still on the device

The loop itself (``training.py``) never asks which of the three it is: ``StepRunner`` holds
that choice, the fallback to eager steps when a capture fails, and the notes that say why.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from devmode.finetune.step_graphs import (
    MAX_DEVICE_TEXT_BYTES,
    GraphCaptureFailed,
    StepGraphs,
    graphs_supported,
)
from devmode.models.classifier import Encoded, TextClassifier, autocast, collate
from devmode.models.config import TrainConfig

# torch.compile's backend for compile_step (the tests trace with "aot_eager": no code generation).
COMPILER = "inductor"


class FGM:
    """Fast Gradient Method (Miyato et al. 2017): after the normal backward pass, move the
    batch's word-embedding vectors ``epsilon`` along the loss gradient, and add the loss there.

    It perturbs the embedding layer's output through a forward hook, so it works whether the
    embedding matrix trains or is frozen (``freeze_embeddings``).
    """

    def __init__(self, model: TextClassifier, epsilon: float):
        self.epsilon = epsilon
        self.delta: torch.Tensor | None = None
        self.output: torch.Tensor | None = None
        model.encoder.get_input_embeddings().register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if self.delta is not None:
            return output + self.delta
        if torch.is_grad_enabled():
            if not output.requires_grad:
                output.requires_grad_(True)  # a frozen matrix: make its output a leaf with a .grad
            else:
                output.retain_grad()
            self.output = output
        return output

    def attack(self) -> None:
        """Call after ``loss.backward()``: the next forward pass sees perturbed embeddings."""
        grad = self.output.grad if self.output is not None else None
        if grad is not None:
            self.delta = (self.epsilon * grad / (torch.linalg.vector_norm(grad) + 1e-12)).detach()
        self.output = None

    def restore(self) -> None:
        self.delta = None


class TrainingStep:
    """One step on a batch: forward, backward (twice with FGM), clip, optimizer step; returns the
    loss, still on the device. ``StepRunner`` calls it eagerly; ``StepGraphs`` captures it.

    :param in_graph: the step is captured in a CUDA graph: autocast then keeps no cache of bf16
        weight copies (it would be filled once at capture and go stale as the weights train)
    :param expand_mask: hand the encoder its attention mask in the prepared 4-D form, which it
        uses as it is, with no host-side checks (what a captured or compiled step needs)
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        config: TrainConfig,
        class_weights: torch.Tensor | None,
        fgm: FGM | None,
        device: torch.device,
        use_bf16: bool,
        in_graph: bool = False,
        expand_mask: bool = False,
    ):
        self.model, self.optimizer, self.fgm = model, optimizer, fgm
        self.class_weights = class_weights
        self.label_smoothing = config.label_smoothing
        self.max_grad_norm = config.max_grad_norm
        self.device, self.use_bf16, self.cache = device, use_bf16, not in_graph
        self.expand_mask = expand_mask
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.compiled = False

    def compile(self) -> None:
        """Compile the forward pass and loss with torch.compile (AOTAutograd compiles their
        backward too); clipping and the optimizer step stay eager (fused AdamW on CUDA)."""
        self.loss = torch.compile(self.loss, mode=compile_mode(self.device), backend=COMPILER)
        self.compiled = True

    def loss(self, input_ids, attention_mask, labels) -> torch.Tensor:
        with autocast(self.device, self.use_bf16, cache=self.cache):
            logits = self.model(input_ids, attention_mask, expand_mask=self.expand_mask).float()
        return F.cross_entropy(
            logits, labels, weight=self.class_weights, label_smoothing=self.label_smoothing
        )

    def __call__(self, input_ids, attention_mask, labels, update: bool = True) -> torch.Tensor:
        if self.compiled and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs are done
        loss = self.loss(input_ids, attention_mask, labels)
        loss.backward()
        if self.fgm:
            self.fgm.attack()
            self.loss(input_ids, attention_mask, labels).backward()
            self.fgm.restore()
        if update:
            if self.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(self.trainable, self.max_grad_norm)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()


class StepRunner:
    """How every training step of a run runs, chosen once before the loop (``choose``):

    - eagerly: ``collate`` the batch on the host, then ``TrainingStep``;
    - as CUDA graphs (``cuda_graphs`` on a GPU): ``StepGraphs`` keeps the texts on the device and
      replays one captured step per batch width; AdamW's first step, which makes its moments,
      runs eagerly, and a failed capture falls back to eager steps for the rest of the run;
    - compiled (``compile_step``): the graphs' few static shapes, through torch.compile.
    """

    def __init__(self, step: TrainingStep, train_set: Encoded, pad_id: int, graphs=None):
        self.step, self.train_set, self.pad_id = step, train_set, pad_id
        self.graphs: StepGraphs | None = graphs
        self.loss_sum = graphs.loss_sum if graphs else torch.zeros((), device=step.device)
        self.notes: list[str] = []

    @classmethod
    def choose(
        cls,
        step: TrainingStep,
        config: TrainConfig,
        train_set: Encoded,
        pad_id: int,
        steps_per_epoch: int,
        graphs_off: str | None,
    ) -> StepRunner:
        """The runner ``config`` asks for; ``graphs_off`` says why CUDA graphs cannot be used
        (``why_no_graphs``), None when they can."""
        notes = []
        if graphs_off and config.cuda_graphs and step.device.type == "cuda":
            notes.append(f"CUDA graphs off: {graphs_off}")
        graphs = None
        if config.compile_step:
            step.compile()
            notes.append(f"training step compiled with torch.compile ({compile_mode(step.device)})")
        if graphs_off is None or config.compile_step:
            # a compiled step gets the graphs' static shapes and its texts from the device too,
            # but runs them through the library instead of a capture
            step.expand_mask = graphs_supported(_encoder_of(step.model)) is None
            graphs = StepGraphs(
                train_set,
                pad_id,
                config.batch_size,
                steps_per_epoch,
                step,
                step.device,
                capture=graphs_off is None,
            )
        runner = cls(step, train_set, pad_id, graphs)
        runner.notes = notes
        return runner

    @property
    def captured(self) -> int:
        """Training steps captured as CUDA graphs (one per batch width)."""
        return len(self.graphs.graphs) if self.graphs else 0

    def start_epoch(self, batches: Sequence[np.ndarray]) -> None:
        if self.graphs:
            self.graphs.start_epoch(batches)

    def run(self, indices: np.ndarray) -> None:
        """Train on one batch; its loss is added to ``loss_sum``."""
        graphs = self.graphs
        # AdamW makes its moments on its first step, which must not be captured (each replay
        # would zero them again): that step runs eagerly
        if graphs and (self.step.optimizer.state or not graphs.capture):
            try:
                graphs.step(indices)
                return
            except GraphCaptureFailed as e:
                self.notes.append(f"CUDA graphs off after a failed capture: {e}")
                self.graphs, self.step.expand_mask = None, False
        self.loss_sum += self.step(*collate(self.train_set, indices, self.pad_id, self.step.device))
        if self.graphs:
            self.graphs.skip()


def _encoder_of(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model).encoder  # under DDP, the wrapped model's


def why_no_graphs(config, device, world_size, encoder, train_set) -> str | None:
    """None when training steps can be CUDA graphs, else the reason (kept in the run's notes)."""
    if not config.cuda_graphs:
        return "cuda_graphs is off"
    if device.type != "cuda":
        return "not on a CUDA device"
    if world_size > 1:
        return "several processes train together (DDP)"
    if config.optimizer != "adamw":
        return f"the {config.optimizer} step is not captured; use adamw"
    unsupported = graphs_supported(encoder)
    if unsupported:
        return unsupported
    if StepGraphs.device_bytes(train_set) > MAX_DEVICE_TEXT_BYTES:
        return "the padded training texts are too large to keep on the GPU"
    return None


def make_capturable(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Let a (fused) AdamW's ``step()`` be captured in a CUDA graph: its learning rate becomes a
    tensor on the device (``set_lr`` fills it in place). Call it after ``load_state_dict``,
    which brings back the saved groups' settings."""
    for group in optimizer.param_groups:
        group["capturable"] = True
        if not isinstance(group["lr"], torch.Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), device=device)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate: ``lr`` times the group's ``lr_scale`` (layer-wise decay,
    ``stability.layer_groups``). A tensor learning rate (CUDA graphs) is filled in place, since
    a captured step reads it from the same memory every time."""
    for group in optimizer.param_groups:
        scaled = lr * group.get("lr_scale", 1.0)
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(scaled)
        else:
            group["lr"] = scaled


def compile_mode(device: torch.device) -> str:
    """torch.compile's mode for a training step: reduce-overhead (CUDA graphs) on CUDA."""
    return "reduce-overhead" if device.type == "cuda" else "default"
