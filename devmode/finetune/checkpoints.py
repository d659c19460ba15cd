"""Epoch checkpoints of a training run: small, written in the background, never half-written.

    checkpoints = Checkpoints(run_folder)
    state, best_weights = checkpoints.load(model, optimizer, device)   # (None, None): fresh run
    ...
    checkpoints.save(model, optimizer, state, best_weights)  # back once copied off the GPU
    checkpoints.wait()                                        # the last write is on disk

A checkpoint holds what training changes and nothing else: the trainable weights (frozen ones,
such as the word embeddings, are the base model's and come from it again on resume), the
optimizer state and the loop's counters. The tensors are copied to the CPU at once; a thread
writes them while the next epoch trains, which matters on a GPU, where writing a checkpoint
can take longer than the epoch. Files are written under a temporary name and renamed, so a
process killed mid-write leaves the previous checkpoint whole.

Files in the run folder: ``last.pt`` (the latest epoch), ``best.pt`` (the best epoch's weights,
kept only while ``last.pt`` holds a worse epoch) and ``last.json`` (where ``last.pt`` stands,
readable without loading any weights).
"""

from __future__ import annotations

import copy
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from devmode.errors import DevmodeError


class CheckpointMismatch(DevmodeError):
    """A checkpoint's weights do not belong to the model being resumed."""


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the parameters that train (the rest stay as the base model has them)."""
    names = {name for name, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items() if k in names}


def load_trainable(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Load weights saved by ``trainable_state`` (or a whole state dict) into ``model``.

    Refuses weights of another model: unknown names, or a trainable parameter left out.
    """
    outcome = model.load_state_dict(weights, strict=False)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    missing = sorted(trainable & set(outcome.missing_keys))
    if outcome.unexpected_keys or missing:
        raise CheckpointMismatch(
            "The checkpoint does not match this model: "
            f"unknown weights {outcome.unexpected_keys[:3]}, missing trainable weights "
            f"{missing[:3]}. Expected a checkpoint of the same run and settings; start a new "
            "run instead of resuming this one."
        )


def to_cpu(value: Any) -> Any:
    """A copy of ``value`` (an optimizer state dict, say) with every tensor on the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return copy.deepcopy(value)


def atomic_save(value: Any, path: Path) -> None:
    """``torch.save`` under a temporary name, then rename: the file is whole or absent."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(value, tmp)
    os.replace(tmp, path)


def atomic_write_text(text: str, path: Path) -> None:
    """``text`` under a temporary name, then rename: a kill mid-write leaves the old file (a
    plain write left an empty ``last.json`` that a resume could not read)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def checkpoint_position(checkpoint_dir: str | os.PathLike) -> dict[str, Any] | None:
    """Where a run's last checkpoint stands (epoch, step, best_epoch), without loading weights."""
    brief = Path(checkpoint_dir) / "last.json"
    return json.loads(brief.read_text()) if brief.is_file() else None


class Checkpoints:
    """A run folder's checkpoints, and the one background write that may be under way."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.last = self.folder / "last.pt"
        self.best = self.folder / "best.pt"
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        # the running weight average of the last checkpoint (``stability.WeightAverage``)
        self.average: dict[str, torch.Tensor] | None = None

    def load(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device
    ) -> tuple[dict[str, Any] | None, dict[str, torch.Tensor] | None]:
        """Restore the last checkpoint into ``model`` and ``optimizer``: (loop state, the best
        epoch's weights), or (None, None) when there is none."""
        if not self.last.is_file():
            return None, None
        saved = torch.load(self.last, map_location=device, weights_only=False)
        load_trainable(model, saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        self.average = saved.get("average")
        state = saved["state"]
        if state["best_epoch"] == state["epoch"]:
            best = trainable_state(model)
        elif self.best.is_file():
            best = torch.load(self.best, map_location="cpu")
        else:
            best = None
        return state, best

    def save(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        state: dict[str, Any],
        best_weights: dict[str, torch.Tensor] | None,
        after: Callable[[], None] = lambda: None,
        average: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Checkpoint the epoch that just ended; returns once the tensors are on the CPU.

        ``best.pt`` is written (before ``last.pt`` moves on to a worse epoch) only when the best
        epoch is not the latest; once it is, ``best.pt`` goes. ``after`` runs in the writer
        thread once everything is on disk (tests use it to see the order). ``average``, the
        running weight average, goes into ``last.pt`` itself: it always matches its epoch.
        """
        snapshot = {
            "model": trainable_state(model),
            "optimizer": to_cpu(optimizer.state_dict()),
            "state": copy.deepcopy(state),
            "average": average,
        }
        best_is_latest = state["best_epoch"] == state["epoch"]
        brief = {"epoch": state["epoch"], "step": state["step"], "best_epoch": state["best_epoch"]}
        self.wait()

        def write() -> None:
            self.folder.mkdir(parents=True, exist_ok=True)
            if not best_is_latest and best_weights is not None and not self.best.is_file():
                atomic_save(best_weights, self.best)  # last.pt is about to stop holding them
            atomic_save(snapshot, self.last)
            atomic_write_text(json.dumps(brief), self.last.with_suffix(".json"))
            if best_is_latest:
                self.best.unlink(missing_ok=True)  # last.pt holds the best weights now
            after()

        def run() -> None:
            try:
                write()
            except BaseException as e:  # handed to the training thread by wait()
                self._error = e

        self._thread = threading.Thread(target=run, name="devmode-checkpoint", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Block until the write under way (if any) is on disk; re-raise what it failed with."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
