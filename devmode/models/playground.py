"""What the Playground shows: texts through up to three models side by side, each answer with
its class probabilities and the words behind it, and the rows where the models disagree.

    chosen = [references.resolve(db, r) for r in ("3", "base")]
    answers = compare(cache, chosen, ["Profit fell", "Sales rose"])   # [text][model] -> Answer
    rows = disagreements(db, "phrasebank", chosen, cache)             # test rows they differ on
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlite_utils import Database

from devmode.data import ingest
from devmode.errors import DevmodeError
from devmode.models.classify import TOP_WORDS
from devmode.models.references import ChosenModel, ModelCache

# At most this many models side by side, texts at once, and characters a text.
MAX_MODELS = 3
MAX_TEXTS = 20
MAX_TEXT_CHARS = 5_000
# Test rows read to find disagreements, and how many are shown.
DISAGREEMENT_ROWS = 2_000
DISAGREEMENTS_SHOWN = 20


class TooManyTexts(DevmodeError):
    """More texts than the Playground shows at once."""


@dataclass(frozen=True)
class Answer:
    """One model's answer for one text."""

    model: str  # the model's title
    label: str
    probabilities: dict[str, float]
    words: list  # explain.WordWeight, in text order
    top_words: list[str]
    note: str | None  # why no word is weighed, when none is


def texts_from(text: str) -> list[str]:
    """The non-blank lines of what was pasted, each cut at ``MAX_TEXT_CHARS``; more than
    ``MAX_TEXTS`` is refused."""
    texts = [line.strip()[:MAX_TEXT_CHARS] for line in str(text).splitlines() if line.strip()]
    if len(texts) > MAX_TEXTS:
        raise TooManyTexts(
            f"The Playground shows at most {MAX_TEXTS} texts at once; found {len(texts)} lines. "
            "Keep the ones to show, or classify many with python -m devmode classify."
        )
    return texts


def compare(
    cache: ModelCache, chosen: Sequence[ChosenModel], texts: Sequence[str]
) -> list[list[Answer]]:
    """Each text's answer from each model (explained by the default method)."""
    from devmode.models.explain import Explainer

    by_model = []
    for model in chosen:
        explained = Explainer(cache.scorer(model)).explain(list(texts))
        by_model.append(
            [
                Answer(
                    model.title,
                    why.label,
                    why.probabilities,
                    why.words,
                    [w.word for w in why.top_words(TOP_WORDS)],
                    why.note,
                )
                for why in explained
            ]
        )
    return [list(answers) for answers in zip(*by_model, strict=True)] if by_model else []


def disagreements(
    db: Database,
    dataset_name: str,
    chosen: Sequence[ChosenModel],
    cache: ModelCache,
    limit: int = DISAGREEMENTS_SHOWN,
) -> list[dict[str, str]]:
    """Rows of the dataset's test split on which the chosen models give different labels, as
    ``{"text", "label", <model title>: its label, ...}``: where one model is right and another
    wrong, the best material for a demo."""
    if len(chosen) < 2:
        raise DevmodeError("Pick two models or more to see where they disagree.")
    dataset = ingest.get_dataset(db, dataset_name)
    if not dataset.mapping.label:
        raise DevmodeError(
            f"{dataset.name} has no label column; pick a labelled dataset (its test split)."
        )
    text, label = dataset.mapping.text, dataset.mapping.label
    rows = [
        r
        for r in ingest.iter_rows(db, dataset.name, "test", [text, label])
        if r[text] and str(r[text]).strip()
    ][:DISAGREEMENT_ROWS]
    if not rows:
        raise DevmodeError(
            f"{dataset.name} has no test rows. Split it with a test fraction on the Datasets page."
        )
    texts = [str(r[text]) for r in rows]
    labels = [cache.scorer(model).score(texts).labels for model in chosen]
    found = []
    for i, row in enumerate(rows):
        given = [labels[m][i] for m in range(len(chosen))]
        if len(set(given)) > 1:
            found.append(
                {"text": texts[i], "label": str(row[label])}
                | {model.title: given[m] for m, model in enumerate(chosen)}
            )
            if len(found) >= limit:
                break
    return found


def texts_of(rows: Sequence[dict[str, str]]) -> list[str]:
    """The texts of ``disagreements``' rows, to show them side by side."""
    return [row["text"] for row in rows]
