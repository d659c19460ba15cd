"""A model for use outside devmode: ``models export RUN --format zip|hf|onnx --to PATH``.

- ``zip``: devmode's archive (``archives.py``), which ``models import`` reads back;
- ``hf``: a Hugging Face folder that ``transformers.pipeline("text-classification",
  model=PATH, trust_remote_code=True)`` loads (``hf_remote_code.py``, copied in);
- ``onnx``: ``model.onnx`` (fp32; inputs ``input_ids`` and ``attention_mask``, output
  ``logits``) with the tokenizer files and ``config.json``'s ``id2label``, for ``onnxruntime``.

Each is written beside its destination and renamed into place: a reader never sees half of one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sqlite_utils import Database

from devmode.errors import DevmodeError
from devmode.models import archives
from devmode.models.registry import get_model_for_run

FORMATS = ("zip", "hf", "onnx")
FORMAT_HELP = (
    "zip: devmode's archive (models import reads it back); hf: a folder transformers.pipeline "
    "loads (trust_remote_code=True); onnx: model.onnx and the tokenizer, for onnxruntime."
)
REMOTE_CODE = "modeling_devmode.py"
ONNX_FILE = "model.onnx"


class CannotExport(DevmodeError):
    """The model cannot be written in that format."""


def export_model(db: Database, run_id: int, format: str, destination: str | Path) -> Path:
    """Write run ``run_id``'s model as ``format`` to ``destination`` (a folder that exists
    gets ``devmode-run-ID.zip``, ``devmode-run-ID-hf`` or ``devmode-run-ID-onnx`` in it)."""
    if format not in FORMATS:
        raise CannotExport(f"format must be one of {', '.join(FORMATS)}; found {format!r}.")
    if format == "zip":
        return archives.export_zip(db, run_id, destination)
    model = get_model_for_run(db, run_id)
    target = Path(destination)
    if target.is_dir():
        target = target / f"devmode-run-{run_id}-{format}"
    if target.exists():
        raise CannotExport(
            f"{target} is there already. Expected a new folder's name; remove it or name another."
        )
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        (write_hf if format == "hf" else write_onnx)(Path(model.path), partial)
        partial.replace(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def export_bytes(db: Database, run_id: int, format: str) -> bytes:
    """The export as one zip file in memory (a download): the archive itself, or the ``hf`` or
    ``onnx`` folder zipped, with nothing left on disk."""
    if format == "zip":
        return archives.export_bytes(db, run_id)
    import io
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory() as tmp:
        folder = export_model(db, run_id, format, tmp)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(folder.rglob("*")):
                if file.is_file():
                    archive.write(file, Path(folder.name) / file.relative_to(folder))
        return out.getvalue()


def download_name(run_id: int, format: str) -> str:
    """The file name of ``export_bytes``' zip."""
    return (
        archives.archive_name(run_id) if format == "zip" else f"devmode-run-{run_id}-{format}.zip"
    )


def write_hf(model_dir: Path, folder: Path) -> None:
    """A devmode classifier folder as a Hugging Face custom model."""
    import torch
    from safetensors.torch import save_file

    from devmode.models import hf_remote_code
    from devmode.models.classifier import fold_temperature, load_classifier

    model, tokenizer, card = load_classifier(model_dir)
    fold_temperature(model, float(card.get("temperature") or 1.0))  # the pipeline's softmax
    folder.mkdir(parents=True)
    labels = card["labels"]
    config = {
        "architectures": ["DevmodeClassifierForSequenceClassification"],
        "model_type": hf_remote_code.DevmodeClassifierConfig.model_type,
        "auto_map": {
            "AutoConfig": f"{Path(REMOTE_CODE).stem}.DevmodeClassifierConfig",
            "AutoModelForSequenceClassification": (
                f"{Path(REMOTE_CODE).stem}.DevmodeClassifierForSequenceClassification"
            ),
        },
        "encoder": model.encoder.config.to_dict(),
        "pooling": card["pooling"],
        "normalize": bool(card.get("normalize", False)),
        "id2label": {str(i): label for i, label in enumerate(labels)},
        "label2id": {label: i for i, label in enumerate(labels)},
        "max_length_tokens": card["max_length_tokens"],
        "devmode_base_model": card.get("base_model"),
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    shutil.copyfile(hf_remote_code.__file__, folder / REMOTE_CODE)
    weights = {
        **{f"encoder.{k}": v for k, v in model.encoder.state_dict().items()},
        **{f"head.{k}": v for k, v in model.head.state_dict().items()},
    }
    save_file(
        {k: v.detach().to(torch.float32).contiguous() for k, v in weights.items()},
        folder / "model.safetensors",
        metadata={"format": "pt"},
    )
    tokenizer.model_max_length = card["max_length_tokens"]  # the pipeline cuts where devmode does
    tokenizer.save_pretrained(folder)


def write_onnx(model_dir: Path, folder: Path) -> None:
    """The classifier as fp32 ONNX with its tokenizer and labels."""
    from devmode.models.classifier import fold_temperature
    from devmode.models.inference import load_full
    from devmode.models.quantized import onnx_file

    full = load_full(model_dir, "cpu")
    folder.mkdir(parents=True)
    if full.temperature != 1.0:  # the logits come out scaled: a softmax of them is calibrated
        fold_temperature(full.model, full.temperature)
    onnx_file(full.model, full.tokenizer, folder / ONNX_FILE)
    full.tokenizer.model_max_length = full.max_length
    full.tokenizer.save_pretrained(folder)
    (folder / "config.json").write_text(
        json.dumps(
            {
                "id2label": {str(i): label for i, label in enumerate(full.label_names)},
                "label2id": {label: i for i, label in enumerate(full.label_names)},
                "max_length_tokens": full.max_length,
                "inputs": ["input_ids", "attention_mask"],
                "outputs": ["logits"],
            },
            indent=2,
        )
    )
