"""A devmode classifier as a Hugging Face custom model: this file is copied, as it is, into
every folder ``models export --format hf`` writes (as ``modeling_devmode.py``), and the
folder's ``config.json`` names its classes in ``auto_map``, as Hugging Face documents for
custom models. So

    pipeline("text-classification", model=FOLDER, trust_remote_code=True)

loads the encoder, devmode's pooling (the mean of the token vectors, or the raw first-token
vector: ``BertForSequenceClassification``'s dense + tanh pooler would not give devmode's
numbers) and its head, and gives devmode's labels. It imports only torch and transformers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class DevmodeClassifierConfig(PretrainedConfig):
    """The encoder's own config (``encoder``), the pooling, and the labels (``id2label``)."""

    model_type = "devmode-classifier"

    def __init__(
        self, encoder: dict | None = None, pooling: str = "mean", normalize: bool = False, **kwargs
    ):
        super().__init__(**kwargs)
        self.encoder = dict(encoder or {})
        self.pooling = pooling
        self.normalize = normalize


class DevmodeClassifierForSequenceClassification(PreTrainedModel):
    """Encoder, pooling, a linear head: logits over ``config.id2label``."""

    config_class = DevmodeClassifierConfig
    base_model_prefix = "devmode"

    def __init__(self, config: DevmodeClassifierConfig):
        super().__init__(config)
        encoder_config = AutoConfig.for_model(**config.encoder)
        self.encoder = AutoModel.from_config(encoder_config)
        self.head = nn.Linear(encoder_config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:  # the saved weights replace these
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(mean=0.0, std=0.02)
            if module.bias is not None:
                module.bias.data.zero_()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.config.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        if self.config.normalize:
            pooled = F.normalize(pooled, dim=-1)
        logits = self.head(pooled)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)
