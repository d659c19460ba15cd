"""How a saved model scores, decided in this one place: on a CPU, its int8 form when that form
was checked and gives the full model's label often enough (``quantized.py``), else full
precision (``inference.py``); bf16 on a CUDA GPU that has it. Importing this module loads no
torch (the CLI and the pages import it); loading a scorer does.

    scorer = load_scorer("devmode_files/models/run-3")    # any classifier folder
    scorer = model_scorer(db, registry.active_model(db, "sentiment"), "headlines", 5000)
                                     # a job of 2,000 texts or more checks the forms once first
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlite_utils import Database
from sqlite_utils.db import quote_identifier

from devmode.data import ingest
from devmode.data.splits import is_filled
from devmode.models import int8

if TYPE_CHECKING:
    from devmode.models.inference import Scorer


def load_scorer(model_dir: str | Path, device: str = "auto", precision: str = "auto") -> Scorer:
    """Load a devmode classifier folder, or any ``AutoModelForSequenceClassification`` folder.

    :param precision: ``auto``: on a CPU, what the model's check chose (``quantized.py``): its
        int8 form or bf16 when that gave full precision's labels on at least 99% of texts and
        ran faster, else fp32; ``fp32``: never int8 or bf16
    """
    import torch

    from devmode.models.inference import load_full

    path = Path(model_dir)
    on_cpu = device == "cpu" or not torch.cuda.is_available()
    if on_cpu and precision == "auto":
        card = int8.int8_card(path)
        if card and not int8.made_here(card):
            card = None  # chosen on another kind of CPU: fp32 until model_scorer checks again
        if card and card["used"] and int8.available():
            from devmode.models.quantized import load_int8

            return load_int8(path)
        if card and card.get("precision") == "bf16":
            return load_full(path, device, bf16=True)
    return load_full(path, device)


def model_scorer(
    db: Database, model, scoring: str | None = None, texts: int | None = None
) -> Scorer:
    """The ``Scorer`` of a registered model (``registry.Model``: its ``path`` and the ``dataset``
    it was trained on). On a CPU the form it scores in is chosen once first
    (``quantized.py``), on texts of the data it was trained on and of ``scoring``, the dataset
    it is about to score (``check_texts``); a failed build is recorded and scoring stays in
    full precision.

    :param texts: how many texts the caller is about to score. Fewer than
        ``int8.CHECK_TEXTS``: the form chosen before if any, else fp32, without choosing
        (timing each form on the check set would take longer than the job: 12 s against 2 s
        for 200 headlines on 2 cores). ``CHECK_TEXTS`` or more, or None: choose first.
    """
    from devmode.models import quantized

    if (texts is None or texts >= int8.CHECK_TEXTS) and quantized.needs_check(model.path):
        try:
            quantized.build_int8(model.path, check_texts(db, model.dataset, scoring))
        except Exception as e:  # an encoder ONNX cannot export: full precision it is
            int8.record_failure(model.path, f"{type(e).__name__}: {e}")
    return load_scorer(model.path)


def check_texts(db: Database, trained_on: str, scoring: str | None = None) -> dict[str, list[str]]:
    """Texts a model's scoring forms are checked on (``quantized.py``), in two parts that must
    each keep fp32's labels: ``own``, up to half the check set from the test, then validation,
    split of the dataset it was trained on, and ``scored``, the rest from ``scoring``, the
    dataset it is about to score, spread over its rows. A form that keeps its labels only on
    the sentences it was trained near is not kept for texts unlike them (int8 gave 99.9% on
    PhraseBank sentences and 98.4% on headlines, docs/benchmarks.md). Empty parts are left
    out."""
    own: list[str] = []
    try:
        dataset = ingest.get_dataset(db, trained_on) if trained_on else None
    except ingest.NoSuchDataset:
        dataset = None
    if dataset is not None:
        wanted = int8.CHECK_TEXTS // 2 if scoring and scoring != trained_on else int8.CHECK_TEXTS
        for split in ("test", "validation"):
            for row in ingest.iter_rows(db, dataset.name, split, [dataset.mapping.text]):
                if len(own) >= wanted:
                    break
                if row[dataset.mapping.text]:
                    own.append(str(row[dataset.mapping.text]))
    parts = {"own": own, "scored": _spread_texts(db, scoring, int8.CHECK_TEXTS - len(own))}
    return {name: texts for name, texts in parts.items() if texts}


def _spread_texts(db: Database, name: str | None, wanted: int) -> list[str]:
    """Up to ``wanted`` filled texts of dataset ``name``, spread evenly over its rows (every
    ``step``-th row, picked by SQLite: a dataset of millions is not read through)."""
    if not name or wanted <= 0:
        return []
    try:
        dataset = ingest.get_dataset(db, name)
    except ingest.NoSuchDataset:
        return []
    column = dataset.mapping.text
    step = max(1, dataset.row_count // wanted)
    rows = db.execute(
        f"""select {quote_identifier(column)} from {quote_identifier(dataset.name)}
            where (rowid - 1) % ? = 0 and {is_filled(column)} order by rowid limit ?""",
        [step, wanted],
    )
    return [str(text) for (text,) in rows]
