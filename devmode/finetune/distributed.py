"""Training on several processes (GPUs, nodes) through Hugging Face Accelerate.

    $ accelerate launch --num_processes 4 -m devmode train phrasebank --epochs 5
    $ torchrun --nproc_per_node 2 -m devmode train phrasebank          # the same, without accelerate's CLI

A process launched that way sees ``WORLD_SIZE`` > 1. Every process trains on its share of each
epoch's batches, Accelerate's DistributedDataParallel averages the gradients, and only the main
process (rank 0) talks to the database, evaluates for the record, checkpoints and saves. The
others follow: same data, same seed, same decisions (stop, early stop) agreed by all-reduce.
Without a launcher, ``Cluster`` is a single process and every call is a no-op.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any


def is_launched() -> bool:
    """Whether this process is one of several started by accelerate launch / torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class Cluster:
    """This process's place among its peers, and the few collective steps training needs."""

    def __init__(self) -> None:
        self.accelerator = None
        if is_launched():
            import torch
            from accelerate import Accelerator

            # mixed precision stays with the training loop's own autocast; without CUDA the
            # processes talk over gloo on the CPU (Accelerate needs to be told so)
            self.accelerator = Accelerator(mixed_precision="no", cpu=not torch.cuda.is_available())
        self.world_size = self.accelerator.num_processes if self.accelerator else 1
        self.rank = self.accelerator.process_index if self.accelerator else 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, default):
        """Accelerate's device for this process (cuda:LOCAL_RANK, or the CPU), else ``default``."""
        return self.accelerator.device if self.accelerator else default

    def prepare(self, model, optimizer):
        """Wrap for data parallelism (DDP); a single process gets them back unchanged."""
        if self.accelerator is None:
            return model, optimizer
        return self.accelerator.prepare(model, optimizer)

    def steps_per_epoch(self, n_batches: int) -> int:
        return math.ceil(n_batches / self.world_size)

    def shard(self, batches: list) -> list:
        """This process's batches: every ``world_size``-th one, the list first padded with its own
        start so that all processes take the same number of steps (DDP needs that)."""
        if self.world_size == 1:
            return batches
        padded = (
            batches + batches[: self.steps_per_epoch(len(batches)) * self.world_size - len(batches)]
        )
        return padded[self.rank :: self.world_size]

    def any(self, flag: bool) -> bool:
        """True on every process if it is true on any (an all-reduce: call it on all of them)."""
        if self.accelerator is None:
            return bool(flag)
        import torch

        tensor = torch.tensor([1.0 if flag else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(tensor, reduction="sum").item() > 0)

    def agree_to_stop(self, should_stop, is_log_step: bool) -> bool:
        """Whether to stop now: ``should_stop()`` asked on every step of a lone process; several
        must agree, which costs a collective, so they ask on log steps only."""
        if self.world_size > 1 and not is_log_step:
            return False
        return self.any(should_stop())

    def broadcast(self, value: Any) -> Any:
        """The main process's ``value``, on every process."""
        if self.accelerator is None:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value], from_process=0)[0]

    def wait(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()


@functools.cache
def cluster() -> Cluster:
    """The one ``Cluster`` of this process (Accelerate's state is process-wide)."""
    return Cluster()
