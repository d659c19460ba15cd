"""Ensembles distilled into one model: several teachers' averaged probabilities become the
targets a student of the same size trains on, on the training texts and on unlabelled ones
(Hinton et al. 2015). Scoring costs one model; the accuracy comes nearer the ensemble's.

    $ python -m devmode train phrasebank --distil-teachers 3 --distil-texts headlines
    $ python -m devmode train phrasebank --distil-from 4      # evaluation 4's fold models teach

    result = train_distilled(config, data, output_dir="models/7", unlabelled=texts)

Teachers are either trained here, ``distil_teachers`` of them with the run's settings and
seeds seed + 1, seed + 2, ... on the run's own training split (so inside ``evaluations run``
they see only the fold's training part), or the fold models of a finished evaluation
(``distil_from``). The student's target on a labelled text is ``LABEL_WEIGHT`` of its label and
the rest the teachers' mean calibrated probabilities; on an unlabelled text, the teachers' mean
alone. Unlabelled texts that are also validation or test texts are left out.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from devmode.data.examples import TrainData
from devmode.errors import DevmodeError
from devmode.models.config import TrainConfig

if TYPE_CHECKING:
    from devmode.finetune import training

# The share of a labelled text's target that is its label (the rest is the teachers').
LABEL_WEIGHT = 0.5
# Unlabelled texts a student reads at most (each costs a training step's share every epoch).
MAX_UNLABELLED = 20_000
TARGETS_FILE = "teacher_targets.npz"


class DistillationNotPossible(DevmodeError):
    """The teachers cannot teach this run: another dataset, other labels, or none finished."""


@dataclasses.dataclass(frozen=True)
class SoftTargets:
    """What the student trains on beyond its labelled rows: a target distribution for every
    training row (in order) and for each extra unlabelled text."""

    train: np.ndarray  # (len(data.train), classes)
    texts: list[str]
    unlabelled: np.ndarray  # (len(texts), classes)


def started(checkpoint_dir: str | Path) -> bool:
    """Whether a distilled run in ``checkpoint_dir`` got as far as a teacher's checkpoint or
    the teachers' targets (so starting it again is a resume)."""
    folder = Path(checkpoint_dir)
    return (folder / TARGETS_FILE).is_file() or any(folder.glob("*/last.json"))


def usable_texts(texts: list[str], data: TrainData) -> list[str]:
    """Distinct unlabelled texts that are not validation or test texts (a student must not
    read, even unlabelled, the rows it is judged on), at most ``MAX_UNLABELLED``."""
    held = {text.strip() for text, _ in data.validation + data.test}
    found = dict.fromkeys(t.strip() for t in texts if t and t.strip() and t.strip() not in held)
    return list(found)[:MAX_UNLABELLED]


def teacher_probabilities(model_dirs: list[str | Path], texts: list[str], labels: list[str]):
    """The teachers' mean calibrated probabilities on ``texts``, columns in ``labels``' order."""
    from devmode.models.scorers import load_scorer

    total = np.zeros((len(texts), len(labels)))
    for model_dir in model_dirs:
        scores = load_scorer(model_dir, precision="fp32").score(texts)
        if sorted(scores.label_names) != sorted(labels):
            raise DistillationNotPossible(
                f"The teacher in {model_dir} knows the labels {', '.join(scores.label_names)}; "
                f"this run's are {', '.join(labels)}. Teachers must have the same labels: "
                "distil from an evaluation of this dataset and label set."
            )
        order = [scores.label_names.index(label) for label in labels]
        total += scores.probabilities[:, order]
    return total / len(model_dirs)


def soft_targets(teachers: list[str | Path], data: TrainData, unlabelled: list[str]) -> SoftTargets:
    texts = [t for t, _ in data.train]
    mean = teacher_probabilities(teachers, texts + unlabelled, data.labels)
    hard = np.zeros((len(texts), len(data.labels)))
    hard[np.arange(len(texts)), [data.labels.index(label) for _, label in data.train]] = 1.0
    mixed = LABEL_WEIGHT * hard + (1 - LABEL_WEIGHT) * mean[: len(texts)]
    return SoftTargets(mixed, unlabelled, mean[len(texts) :])


def train_distilled(
    config: TrainConfig,
    data: TrainData,
    *,
    output_dir=None,
    checkpoint_dir=None,
    on_progress: Callable[[training.Progress], None] = lambda p: None,
    should_stop: Callable[[], bool] = lambda: False,
    teachers: list[str | Path] | None = None,
    unlabelled: list[str] = (),
) -> training.TrainResult:
    """Train ``config.distil_teachers`` teachers (or use the model folders in ``teachers``), then
    the student on their targets. Progress counts the teachers' steps and the student's as one
    job. With a ``checkpoint_dir`` the teachers' targets are kept there, so a resumed run
    trains no teacher twice."""
    from devmode.finetune import training

    unlabelled = usable_texts(list(unlabelled), data)
    count = len(teachers) if teachers else config.distil_teachers
    per_run = math.ceil(len(data.train) / config.batch_size) * config.epochs
    student_steps = math.ceil((len(data.train) + len(unlabelled)) / config.batch_size)
    trained_here = 0 if teachers else count
    grand_total = trained_here * per_run + student_steps * config.epochs

    def shifted(offset: int, prefix: str) -> Callable[[training.Progress], None]:
        def report(p: training.Progress) -> None:
            metrics = {f"{prefix}{k}": v for k, v in p.metrics.items()}
            on_progress(training.Progress(p.step + offset, grand_total, p.epoch, metrics))

        return report

    folder = Path(checkpoint_dir) if checkpoint_dir else None
    saved = folder / TARGETS_FILE if folder else None
    if saved and saved.is_file():
        stored = np.load(saved, allow_pickle=False)
        targets = SoftTargets(stored["train"], list(stored["texts"]), stored["unlabelled"])
    else:
        targets = _teach(config, data, folder, teachers, unlabelled, shifted, should_stop, per_run)
        if targets is None:
            return _cancelled(config, data)
    student = dataclasses.replace(config, distil_teachers=0, distil_from=0, distil_texts=None)
    result = training.train(
        student,
        data,
        output_dir=output_dir,
        checkpoint_dir=folder / "student" if folder else None,
        on_progress=shifted(trained_here * per_run, ""),
        should_stop=should_stop,
        soft=targets,
    )
    if result.output_dir:
        record_settings(Path(result.output_dir), config)
    result.notes.append(
        f"distilled from {count} teacher{'s' * (count != 1)}"
        + (f" and {len(targets.texts):,} unlabelled texts" if targets.texts else "")
    )
    return result


def _teach(config, data, folder, teachers, unlabelled, shifted, should_stop, per_run):
    """The targets from ``teachers``' folders, or from teachers trained here (None: cancelled).
    A teacher trained here is saved in the run's checkpoint folder once complete, so a resumed
    run starts at the first teacher that has no model yet."""
    import shutil
    import tempfile

    from devmode.finetune import training

    if teachers:
        return soft_targets(teachers, data, unlabelled)
    with tempfile.TemporaryDirectory(prefix="devmode-teachers-") as scratch:
        home = folder or Path(scratch)
        dirs = []
        for i in range(config.distil_teachers):
            model_dir = home / f"teacher-{i + 1}" / "model"
            if not model_dir.is_dir():  # saved whole or not at all (training.save_atomically)
                teacher = dataclasses.replace(
                    config,
                    distil_teachers=0,
                    distil_from=0,
                    distil_texts=None,
                    seed=config.seed + 1 + i,
                )
                result = training.train(
                    teacher,
                    data,
                    output_dir=model_dir,
                    checkpoint_dir=home / f"teacher-{i + 1}",
                    on_progress=shifted(i * per_run, "teacher_"),
                    should_stop=should_stop,
                )
                if result.status != "completed":
                    return None
            dirs.append(model_dir)
        targets = soft_targets(dirs, data, unlabelled)
        if folder:
            _save_targets(folder, targets)
            for i in range(config.distil_teachers):  # the targets are all a resume needs now
                shutil.rmtree(folder / f"teacher-{i + 1}", ignore_errors=True)
        return targets


def record_settings(model_dir: Path, config: TrainConfig) -> None:
    """The saved student's card names the settings the run was given (its teachers included),
    not the plain ones the student's own loop ran with."""
    import json
    import os

    from devmode.models.base_models import MODEL_CARD

    card_path = model_dir / MODEL_CARD
    card = json.loads(card_path.read_text())
    card["train_config"] = config.to_dict()
    tmp = card_path.with_name(card_path.name + ".tmp")
    tmp.write_text(json.dumps(card, indent=2))
    os.replace(tmp, card_path)


def _save_targets(folder: Path, targets: SoftTargets) -> None:
    saved = folder / TARGETS_FILE
    tmp = saved.with_name("partial-" + saved.name)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(tmp, train=targets.train, texts=np.array(targets.texts), unlabelled=targets.unlabelled)
    tmp.replace(saved)


def trainer(db, config: TrainConfig, dataset: str) -> Callable[..., training.TrainResult]:
    """What trains ``config`` on ``dataset``: the fine-tune loop, SetFit's, or the fine-tune
    loop distilled from its teachers (an evaluation's fold models, or teachers it trains), with
    the unlabelled texts of ``distil_texts``."""
    from devmode.finetune import training

    if config.method == "few-shot":
        from devmode.finetune.few_shot import train_few_shot

        return train_few_shot
    if not (config.distil_teachers or config.distil_from):
        return training.train
    teachers = None
    if config.distil_from:
        teachers = evaluation_teachers(db, config.distil_from, dataset)
    texts: list[str] = []
    if config.distil_texts:
        from devmode.finetune.out_of_domain import sample_texts

        texts = sample_texts(db, config.distil_texts, MAX_UNLABELLED)
    return functools.partial(train_distilled, teachers=teachers, unlabelled=texts)


def evaluation_teachers(db, evaluation_id: int, dataset: str) -> list[str]:
    """The fold models of evaluation ``evaluation_id``, refused unless it finished on
    ``dataset`` with the labels the dataset has now."""
    import json

    from devmode.data import examples

    # read from the evaluations' tables (evaluations.py imports this module)
    row = next(db["devmode_evaluations"].rows_where("id = ?", [evaluation_id]), None)
    if row is None:
        raise DistillationNotPossible(
            f"No evaluation with id {evaluation_id}. See them with python -m devmode "
            "evaluations list."
        )
    if row["dataset"] != dataset:
        raise DistillationNotPossible(
            f"Evaluation {evaluation_id} is of {row['dataset']!r}, not {dataset!r}: its fold "
            f"models learnt other rows and labels. Distil from an evaluation of {dataset!r} "
            f"(python -m devmode evaluations run {dataset}), or use --distil-teachers 3."
        )
    if row["status"] != "completed":
        raise DistillationNotPossible(
            f"Evaluation {evaluation_id} is {row['status']}; only a completed one has every "
            "fold's model. Wait for it, or resume it."
        )
    theirs = sorted(
        label
        for (label,) in db.execute(
            "select distinct label from devmode_evaluation_predictions where evaluation_id = ?",
            [evaluation_id],
        )
    )
    ours = sorted({label for _, _, label in examples.labelled_rows(db, dataset)})
    if theirs != ours:
        raise DistillationNotPossible(
            f"Evaluation {evaluation_id} was of the labels {', '.join(theirs)}; {dataset!r} now "
            f"has {', '.join(ours)}. Its fold models cannot teach these labels: evaluate the "
            "dataset again, then distil from that evaluation."
        )
    dirs = [r["model_dir"] for r in json.loads(row["fold_results"] or "[]")]
    missing = [d for d in dirs if not Path(d).is_dir()]
    if missing:
        raise DistillationNotPossible(
            f"Evaluation {evaluation_id}'s fold models are gone ({missing[0]}). Evaluate again."
        )
    return dirs


def check_teachers(db, config: TrainConfig, dataset: str) -> None:
    """Refuse, before a run is stored, teachers or texts it could not use."""
    if config.distil_from:
        evaluation_teachers(db, config.distil_from, dataset)
    if config.distil_texts:
        from devmode.data import ingest

        ingest.get_dataset(db, config.distil_texts)


def _cancelled(config: TrainConfig, data: TrainData) -> training.TrainResult:
    from devmode.finetune import training

    return training.TrainResult(
        status="cancelled",
        steps=0,
        epochs_run=0,
        best_epoch=None,
        validation=None,
        test=None,
        labels=data.labels,
        device=config.device,
        precision=config.precision,
        train_seconds=0.0,
        samples_per_second=0.0,
        output_dir=None,
    )
