"""Levers that narrow the spread between seeds of a fine-tuning run: layer-wise learning-rate
decay, fresh top layers, and the average of the last epochs' weights.

    groups = layer_groups(model, decay=0.9)        # parameter groups, each with its lr_scale
    reinit_top_layers(model, 1)                    # the top layer starts from fresh weights
    average = WeightAverage(first_epoch=3)         # the loop adds each late epoch's weights

Each follows a paper on small-data BERT fine-tuning: Howard and Ruder 2018 (ULMFiT's
discriminative rates) and Sun et al. 2019 for the decay, Zhang et al. 2021 ("Revisiting
Few-sample BERT Fine-tuning") for re-initialising, Izmailov et al. 2018 (SWA) for averaging.
Which of them earns a place in the default recipe is measured, not assumed: docs/benchmarks.md.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from devmode.models.base_models import InvalidBaseModel


def encoder_layers(encoder: nn.Module) -> nn.ModuleList:
    """The encoder's stack of transformer layers (BERT: encoder.layer; DistilBERT: transformer.layer)."""
    depth = getattr(encoder.config, "num_hidden_layers", None)
    for module in encoder.modules():
        if isinstance(module, nn.ModuleList) and len(module) == depth:
            return module
    raise InvalidBaseModel(
        f"Could not find the layer stack of {type(encoder).__name__} (a list of its "
        f"num_hidden_layers={depth} layers), which the layer-wise settings need. With this "
        "model use layer_lr_decay=1 (0.9 is the default), reinit_top_layers=0 and freeze=none "
        "or head_only."
    )


def layer_depths(model: nn.Module) -> dict[int, int]:
    """Each trainable parameter's depth, by ``id``: 0 for the embeddings (and anything else of
    the encoder below the layers), i + 1 for layer i, and depth + 1 for the head."""
    layers = encoder_layers(model.encoder)
    top = len(layers) + 1
    depths = {id(p): 0 for p in model.encoder.parameters()}
    for i, layer in enumerate(layers):
        depths.update({id(p): i + 1 for p in layer.parameters()})
    for name, parameter in model.named_parameters():
        if not name.startswith("encoder."):
            depths[id(parameter)] = top
    return depths


def layer_groups(model: nn.Module, weight_decay: float, decay: float) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: per depth, weights with decay and biases and LayerNorms
    without; each group's ``lr_scale`` is ``decay ** (top - depth)``, so the head learns at the
    full rate and each layer below at ``decay`` times the one above (``set_lr`` applies it)."""
    encoder_trains = any(p.requires_grad for p in model.encoder.parameters())
    depths = layer_depths(model) if decay != 1.0 and encoder_trains else {}
    top = max(depths.values(), default=0)
    groups: dict[tuple[int, bool], list[nn.Parameter]] = {}
    for parameter in model.parameters():
        if parameter.requires_grad:
            key = (depths.get(id(parameter), top), parameter.ndim >= 2)
            groups.setdefault(key, []).append(parameter)
    return [
        {
            "params": params,
            "weight_decay": weight_decay if decayed else 0.0,
            "lr_scale": decay ** (top - depth),
        }
        for (depth, decayed), params in sorted(
            groups.items(), key=lambda kv: (-kv[0][0], not kv[0][1])
        )
    ]


def reinit_top_layers(model: nn.Module, count: int) -> None:
    """Give the top ``count`` encoder layers fresh weights, drawn as the model's own
    initialisation draws them (normal with the config's ``initializer_range``; LayerNorms 1
    and 0), from the run's seed."""
    if not count:
        return
    layers = encoder_layers(model.encoder)
    if count > len(layers):
        raise InvalidBaseModel(
            f"reinit_top_layers={count}, but the base model has {len(layers)} layers. Use at "
            f"most {len(layers)} (1 or 2 is usual)."
        )
    std = getattr(model.encoder.config, "initializer_range", 0.02)
    for layer in layers[-count:]:
        for module in layer.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


class WeightAverage:
    """The running mean of the trainable weights at the end of each epoch from ``first_epoch``
    (1-based; ``TrainConfig.first_averaged_epoch``) on. Kept as a state dict like the best
    epoch's weights, so a checkpoint saves it in the same slot and a resumed run goes on
    averaging."""

    def __init__(self, first_epoch: int):
        self.first_epoch = first_epoch

    def add(
        self, average: dict[str, torch.Tensor] | None, weights: dict[str, torch.Tensor], epoch: int
    ) -> dict[str, torch.Tensor] | None:
        """The average after epoch ``epoch`` (1-based) ended with ``weights``."""
        if epoch < self.first_epoch:
            return average
        seen = epoch - self.first_epoch  # epochs already in ``average``
        if average is None or seen == 0:
            return {name: value.detach().clone() for name, value in weights.items()}
        return {
            name: average[name] + (weights[name].detach() - average[name]) / (seen + 1)
            for name in average
        }
