"""Naming a model: a model reference, parsed and resolved in one place.

    ref = parse_reference("3")                    # run 3's model
    ref = parse_reference("active-sentiment")     # or active-topic
    ref = parse_reference("base")                 # the base model zero-shot
    chosen = resolve(db, ref, task="sentiment")   # ChosenModel: title, labels, folder
    scorer = ModelCache().scorer(chosen)          # loaded once per process

``base`` is the untrained base model used zero-shot (``zero_shot.py``, the "base" row of every
report): it scores against the labels of the task's active model, or negative / neutral /
positive for sentiment when none is active, with the base model that active model was trained
from (the embedded MiniLM otherwise). A run still training, a deleted model, or a topic model
asked for sentiment is refused with what to do. No torch is imported here until a model loads.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from sqlite_utils import Database

from devmode import jobs
from devmode.errors import DevmodeError
from devmode.models import adapted_bases, registry, runs
from devmode.models.base_models import EMBEDDED_BASE_MODEL

BASE = "base"
ACTIVE_PREFIX = "active-"
REFERENCE_HELP = "a run id (3), active-sentiment, active-topic, or base (the base model zero-shot)"
SENTIMENT_LABELS = ["negative", "neutral", "positive"]
# Models kept loaded per process (a page's side-by-side view, a server's recent models).
CACHED_MODELS = 4


class InvalidReference(DevmodeError):
    """A model reference that names no model that can be used."""


class UnknownModel(InvalidReference):
    """The reference is well formed, but there is no such model (no run, no saved model, its
    folder gone)."""


@dataclass(frozen=True)
class ModelReference:
    kind: str  # "run", "active" or "base"
    run_id: int | None = None
    task: str | None = None  # of an active model

    def __str__(self) -> str:
        if self.kind == "run":
            return str(self.run_id)
        return f"{ACTIVE_PREFIX}{self.task}" if self.kind == "active" else BASE


def parse_reference(text: str | int) -> ModelReference:
    """``3``, ``active-sentiment``, ``active-topic`` or ``base`` (any case, spaces around)."""
    value = str(text).strip().lower()
    if re.fullmatch(r"\d{1,9}", value):
        return ModelReference("run", run_id=int(value))
    if value == BASE:
        return ModelReference("base")
    if value.startswith(ACTIVE_PREFIX) and value[len(ACTIVE_PREFIX) :] in registry.TASKS:
        return ModelReference("active", task=value[len(ACTIVE_PREFIX) :])
    shown = str(text)[:40] + ("…" if len(str(text)) > 40 else "")
    raise InvalidReference(
        f"{shown!r} does not name a model. Expected {REFERENCE_HELP}. See the models with "
        "python -m devmode models list."
    )


def parse_references(text: str, most: int) -> list[ModelReference]:
    """A comma-separated list of references (``3,base``), each once, at most ``most``."""
    found: list[ModelReference] = []
    for part in str(text).split(","):
        if part.strip():
            ref = parse_reference(part)
            if ref not in found:
                found.append(ref)
    if len(found) > most:
        raise InvalidReference(f"At most {most} models at once; found {len(found)}.")
    return found


@dataclass(frozen=True)
class ChosenModel:
    """What a reference names now: enough to load it and to say which model it is."""

    reference: str
    title: str  # "run 3 (phrasebank)", "active sentiment: run 3 (phrasebank)", "base ..."
    labels: list[str]
    model_dir: str | None  # None for the base model zero-shot
    base_model: str
    run_id: int | None = None

    @property
    def key(self) -> tuple:
        """What identifies the loaded model (a promoted model changes ``active-...``)."""
        return (self.model_dir, self.base_model, tuple(self.labels))


def resolve(db: Database, reference: ModelReference | str, task: str | None = None) -> ChosenModel:
    """The model ``reference`` names now. ``task``: what the caller will read its labels as; a
    model whose labels cannot be read as that task's is refused."""
    ref = reference if isinstance(reference, ModelReference) else parse_reference(reference)
    if ref.kind == "base":
        return _base(db, task or "sentiment")
    if ref.kind == "active":
        if task and task != ref.task:
            raise InvalidReference(
                f"{ref} is the {ref.task} model; asked for {task}. Use active-{task}, or leave "
                "the task out."
            )
        model = registry.active_model(db, ref.task)
        if model is None:
            raise InvalidReference(
                f"No model is active for {ref.task}. Promote one on the Fine-tune page's Models "
                f"tab (python -m devmode models promote RUN --as {ref.task}), or name a run."
            )
        chosen = of_model(db, model, f"active {ref.task}: ")
    else:
        chosen = _of_run(db, ref.run_id)
    if task == "sentiment":
        registry.sentiment_map(db, registry.get_model_for_run(db, chosen.run_id))
    return chosen


def _of_run(db: Database, run_id: int) -> ChosenModel:
    try:
        run = runs.get_run(db, run_id, live=True)
    except runs.RunNotFound as e:
        raise UnknownModel(str(e)) from None
    if run.status in jobs.ACTIVE_STATUSES:
        raise InvalidReference(
            f"Run {run_id} is still {run.status} ({run.progress_text()}); its model can be tried "
            "once the run has completed."
        )
    try:
        model = registry.get_model_for_run(db, run_id)
    except registry.ModelNotFound:
        raise UnknownModel(
            f"Run {run_id} ({run.status}) has no saved model: it did not complete, or its model "
            "was deleted. List the models with python -m devmode models list."
        ) from None
    return of_model(db, model, "")


def of_model(db: Database, model: registry.Model, prefix: str = "") -> ChosenModel:
    """What a registered model is, as a reference names it (its folder must be there)."""
    if not Path(model.path).is_dir():
        raise UnknownModel(
            f"Run {model.run_id}'s model folder is gone ({model.path}). Train it again, or "
            "import it from an exported zip."
        )
    return ChosenModel(
        str(model.run_id) if not prefix else f"{ACTIVE_PREFIX}{model.active_as}",
        f"{prefix}run {model.run_id} ({model.dataset})",
        list(model.labels),
        model.path,
        adapted_bases.encoder_of(db, runs.get_run(db, model.run_id).config.base_model),
        model.run_id,
    )


def _base(db: Database, task: str) -> ChosenModel:
    active = registry.active_model(db, task)
    if active is not None:
        base_model = adapted_bases.encoder_of(db, runs.get_run(db, active.run_id).config.base_model)
        labels, whose = list(active.labels), f"the labels of run {active.run_id}"
    elif task == "sentiment":
        base_model, labels, whose = (
            EMBEDDED_BASE_MODEL,
            SENTIMENT_LABELS,
            "negative / neutral / positive",
        )
    else:
        raise InvalidReference(
            f"The base model scores against the labels of the active {task} model, and none is "
            f"active. Promote a {task} model first (python -m devmode models promote RUN --as "
            f"{task})."
        )
    return ChosenModel(
        BASE, f"base ({base_model}, zero-shot over {whose})", labels, None, base_model
    )


class ModelCache:
    """Loaded scorers by what they are, the ``CACHED_MODELS`` most recently used; safe to share
    between threads (a model loads once even when two requests ask at the same time)."""

    def __init__(self, size: int = CACHED_MODELS):
        self.size = size
        self._loaded: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()

    def scorer(self, chosen: ChosenModel):
        with self._lock:
            if chosen.key in self._loaded:
                self._loaded.move_to_end(chosen.key)
                return self._loaded[chosen.key]
            scorer = load(chosen)
            self._loaded[chosen.key] = scorer
            while len(self._loaded) > self.size:
                self._loaded.popitem(last=False)
            return scorer


def load(chosen: ChosenModel):
    """The full-precision ``Scorer`` of a chosen model (the base model zero-shot included); a
    folder that cannot be read (its tokenizer gone, a weight file cut short) is refused."""
    try:
        if chosen.model_dir is None:
            from devmode.models.zero_shot import zero_shot_scorer

            return zero_shot_scorer(chosen.base_model, chosen.labels)
        from devmode.models.inference import load_full

        return load_full(chosen.model_dir, "cpu")
    except (DevmodeError, OSError, ValueError) as e:
        raise UnknownModel(
            f"Could not load {chosen.title}: {str(e)[:300]} Expected a whole model folder "
            "(weights, config and tokenizer files); train the run again or import it from its "
            "zip."
        ) from None


def available(db: Database) -> dict[str, str]:
    """What a person can pick now, reference to title: the active models, the base model
    zero-shot, then each run with a saved model, newest first."""
    found = {}
    for task in registry.TASKS:
        model = registry.active_model(db, task)
        if model is not None:
            found[f"{ACTIVE_PREFIX}{task}"] = f"active {task}: run {model.run_id} ({model.dataset})"
    try:
        found[BASE] = _base(db, "sentiment").title
    except InvalidReference:
        pass
    for model in registry.list_models(db):
        found[str(model.run_id)] = (
            f"run {model.run_id} ({model.dataset}: {', '.join(model.labels)})"
        )
    return found


def resolve_all(db: Database, asked: list[str], task: str | None = None) -> list[ChosenModel]:
    """``resolve`` of each reference, in order."""
    return [resolve(db, ref, task) for ref in asked]
