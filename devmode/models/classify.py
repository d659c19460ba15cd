"""Classify texts with a named model, and say why: what ``python -m devmode classify`` and the
Playground call.

    texts = read_lines(sys.stdin)                       # at most MAX_LINES, else refused
    rows = classify_texts(scorer, texts, explain=True)  # [{"text", "label", "probabilities",
                                                        #   "words": [{"word", "weight", "class"}]}]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from devmode.errors import DevmodeError

# Texts one call reads from standard input, and the bytes of all of them together.
MAX_LINES = 100_000
MAX_INPUT_BYTES = 256 * 1024 * 1024
# Texts scored (and explained) per batch, so progress shows and memory stays flat.
BATCH = 2_048
EXPLAIN_BATCH = 32
# Words shown as a text's reasons (the Playground, the Monitor, alerts, `classify --explain`).
TOP_WORDS = 5


class TooMuchInput(DevmodeError):
    """More texts, or more bytes, than one classify call reads."""


class EmptyText(DevmodeError):
    """A text with nothing in it."""


def read_lines(lines: Iterable[str], most: int = MAX_LINES) -> tuple[list[str], int]:
    """(texts, blank lines skipped) of ``lines`` (a file or standard input, text mode), refused
    as a whole before anything runs when there are more than ``most`` or over
    ``MAX_INPUT_BYTES``."""
    texts, blank, size = [], 0, 0
    for n, line in enumerate(lines, 1):
        size += len(line)
        if n > most + blank or size > MAX_INPUT_BYTES:
            what = (
                f"more than {most:,} lines"
                if size <= MAX_INPUT_BYTES
                else (f"more than {MAX_INPUT_BYTES // 2**20} MiB")
            )
            raise TooMuchInput(
                f"Standard input holds {what}; classify reads at most {most:,} texts "
                f"({MAX_INPUT_BYTES // 2**20} MiB) a call. Split the input (e.g. split -l "
                f"{most}) and run classify on each part."
            )
        text = line.rstrip("\r\n")
        if text.strip():
            texts.append(text)
        else:
            blank += 1
    return texts, blank


def check_texts(texts: Sequence[str]) -> None:
    """Refuse an empty text, naming which."""
    for i, text in enumerate(texts, 1):
        if not str(text).strip():
            raise EmptyText(
                f"Text {i} is empty. Expected some words to classify; leave it out, or quote "
                "the text you meant."
            )


def classify_texts(
    scorer,
    texts: Sequence[str],
    *,
    explain: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """A row per text, in order: its label and class probabilities, and with ``explain`` the
    weight of each word for the class it pushes toward (``explain.Explainer``)."""
    rows: list[dict[str, Any]] = []
    total = len(texts)
    explainer = None
    if explain:
        from devmode.models.explain import Explainer

        explainer = Explainer(scorer)
    for start in range(0, total, BATCH):
        chunk = list(texts[start : start + BATCH])
        scores = scorer.score(chunk)
        for text, label, probabilities in zip(
            chunk, scores.labels, scores.probabilities, strict=True
        ):
            rows.append(
                {
                    "text": text,
                    "label": label,
                    "probabilities": {
                        name: round(float(p), 6)
                        for name, p in zip(scores.label_names, probabilities, strict=True)
                    },
                }
            )
        if explainer is not None:
            for at in range(0, len(chunk), EXPLAIN_BATCH):
                for row, why in zip(
                    rows[start + at : start + at + EXPLAIN_BATCH],
                    explainer.explain(chunk[at : at + EXPLAIN_BATCH]),
                    strict=True,
                ):
                    row["words"] = [w.to_dict() for w in why.words]
        if on_progress:
            on_progress(len(rows), total)
    return rows


def top_words(row: dict[str, Any], n: int = TOP_WORDS) -> list[str]:
    """The words of an explained row whose class is its label, strongest first."""
    mine = [w for w in row.get("words", []) if w["class"] == row["label"] and w["weight"] > 0]
    return [w["word"] for w in sorted(mine, key=lambda w: -w["weight"])[:n]]
