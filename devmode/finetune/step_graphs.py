"""Training steps replayed as CUDA graphs: one launch per step instead of about a thousand.

    steps = StepGraphs(encoded, pad_id, batch_size, steps_per_epoch, run_step, device, capture=True)
    steps.start_epoch(batches)            # this epoch's batch order goes to the GPU once
    for indices in batches:
        steps.step(indices)               # gather rows, forward, backward, clip, AdamW: one replay

Why: a small encoder such as all-MiniLM-L6-v2 needs about a millisecond of GPU work for a
batch of 32 sentences, but eager PyTorch takes several milliseconds to launch that work's
kernels from Python, so the GPU mostly waits. A captured graph replays the same kernels with
the CPU out of the way. What graphs ask in return, and how this module meets it:

- **Static shapes.** A batch is padded to its longest text rounded up to ``WIDTH_MULTIPLE``
  tokens (one graph per width, a handful in all) and always to ``batch_size`` rows: a short
  batch gets filler rows whose label (-100) the loss ignores, so its loss and gradient are those
  of the short batch.
- **Static memory.** The training texts are padded once and kept on the GPU; the epoch's batch
  order is copied there at the start of the epoch, and each replay gathers its rows by a cursor
  that lives on the GPU too. Nothing moves from the host per step.
- **No host synchronisation inside a step.** The attention mask is handed to the encoder in
  its 4-D form (transformers would otherwise ask the GPU whether ``mask.all()``), AdamW is fused
  and capturable with its learning rate in a tensor, and autocast's weight cache is off.
- **Optimizer state first.** AdamW creates its moments on its first step; were that inside a
  capture, every replay would zero them again. The caller runs the first step eagerly.

With ``capture=False`` the same gather-and-step body runs without a capture: on the CPU that is
how the tests check, without a GPU, that it computes what the plain loop computes, and it is
how a ``torch.compile``-d step (``compile_step``) gets the same few static shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

# Batch widths are rounded up to a multiple of this many tokens: fewer widths mean fewer graphs
# to capture, and a few more padded tokens cost nothing on a GPU that is waiting for launches.
WIDTH_MULTIPLE = 16
# The padded training texts live on the GPU; above this size, train without graphs instead.
MAX_DEVICE_TEXT_BYTES = 2 * 1024**3
# The label of filler rows: ``F.cross_entropy`` ignores it.
IGNORE_LABEL = -100
# Attention implementations that accept a prepared 4-D mask (flash attention does not).
GRAPH_ATTENTION = ("sdpa", "eager")


class GraphCaptureFailed(RuntimeError):
    """A step could not be captured (the model did something a graph cannot hold)."""


def round_width(length: int, limit: int) -> int:
    """``length`` rounded up to a multiple of ``WIDTH_MULTIPLE``, but never past ``limit``."""
    return min(-(-length // WIDTH_MULTIPLE) * WIDTH_MULTIPLE, limit)


def graphs_supported(encoder: torch.nn.Module) -> str | None:
    """None when the encoder's steps can be captured, else why not (for the run's log)."""
    implementation = getattr(encoder.config, "_attn_implementation", None)
    if implementation not in GRAPH_ATTENTION:
        return f"attention implementation {implementation!r} takes no 4-D mask"
    return None


class StepGraphs:
    """The training set on the device, and one captured training step per batch width.

    :param run_step: ``run_step(input_ids, attention_mask, labels, update)`` does the forward and
        backward passes and, when ``update``, clipping and the optimizer step; it returns the
        loss (a 0-d tensor). With ``update=False`` it leaves the weights as they were (the
        warm-up before a capture).
    :param capture: capture CUDA graphs (on CUDA); False runs the same body eagerly.
    """

    def __init__(
        self,
        encoded,
        pad_id: int,
        batch_size: int,
        steps_per_epoch: int,
        run_step: Callable[..., torch.Tensor],
        device: torch.device,
        *,
        capture: bool,
    ):
        self.batch_size = batch_size
        self.run_step = run_step
        self.device = device
        self.capture = capture
        n = len(encoded.ids)
        self.text_lengths = encoded.lengths  # on the host: which graph a batch needs
        self.full_width = max(1, int(encoded.lengths.max()))  # the widest batch: no rounding up
        ids = np.full((n + 1, self.full_width), pad_id, dtype=np.int64)
        for row, seq in enumerate(encoded.ids):
            ids[row, : len(seq)] = seq
        # the filler row: the first token of a real text ([CLS]) alone, label ignored
        ids[n, 0] = encoded.ids[0][0]
        self.filler = n
        self.ids = torch.from_numpy(ids).to(device)
        self.lengths = torch.from_numpy(np.append(encoded.lengths, 1)).to(device)
        self.labels = torch.cat(
            [encoded.labels, torch.tensor([IGNORE_LABEL], dtype=torch.long)]
        ).to(device)
        self.positions = torch.arange(self.full_width, device=device)
        # this epoch's batches as rows of indices, and which row the next step takes
        self.order = torch.full((steps_per_epoch, batch_size), n, dtype=torch.long, device=device)
        self.cursor = torch.zeros(1, dtype=torch.long, device=device)
        self.loss_sum = torch.zeros((), device=device)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}

    @staticmethod
    def device_bytes(encoded) -> int:
        """What the padded training texts would take on the device."""
        return (len(encoded.ids) + 1) * int(encoded.lengths.max()) * 8

    def start_epoch(self, batches: Sequence[np.ndarray]) -> None:
        """Send the epoch's batch order to the device (one copy) and rewind the cursor."""
        order = np.full(tuple(self.order.shape), self.filler, dtype=np.int64)
        for row, indices in enumerate(batches):
            order[row, : len(indices)] = indices
        self.order.copy_(torch.from_numpy(order))
        self.cursor.zero_()

    def step(self, indices: np.ndarray) -> bool:
        """Train on the next batch of the epoch (``indices``); its loss is added to
        ``loss_sum``. Returns True (the batch is done).

        The first batch of a new width is captured first, which raises ``GraphCaptureFailed``
        if the model cannot be captured; nothing has trained on the batch then.
        """
        width = round_width(int(self.text_lengths[indices].max()), self.full_width)
        if not self.capture:
            self._body(width, update=True)
            return True
        graph = self.graphs.get(width)
        if graph is None:
            try:
                graph = self._capture(width)
            except Exception as e:  # noqa: BLE001 - any capture error means: train eagerly
                torch.cuda.synchronize()
                raise GraphCaptureFailed(f"{type(e).__name__}: {e}") from e
            self.graphs[width] = graph
        graph.replay()
        return True

    def skip(self) -> None:
        """Move the cursor past a batch that was trained without the graphs."""
        self.cursor += 1

    def _body(self, width: int, *, update: bool) -> None:
        index = self.order.index_select(0, self.cursor).view(-1)
        input_ids = self.ids.index_select(0, index)[:, :width]
        attention_mask = (
            self.positions[:width] < self.lengths.index_select(0, index)[:, None]
        ).long()
        labels = self.labels.index_select(0, index)
        loss = self.run_step(input_ids, attention_mask, labels, update)
        if update:
            self.loss_sum += loss
            self.cursor += 1

    def _capture(self, width: int) -> torch.cuda.CUDAGraph:
        # a warm-up pass on a side stream first, as PyTorch asks: cuBLAS handles, autograd's
        # lazy state and kernel caches are made outside the capture (the weights do not move)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._body(width, update=False)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._body(width, update=True)
        return graph
