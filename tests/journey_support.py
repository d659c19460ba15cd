"""What the journeys in chromium share: texts the session's tiny model reads one way or the
other (it is trained anew each session, so they are asked of it, not assumed)."""

from __future__ import annotations

from devmode.db import open_db
from devmode.models import scorers


def texts_by_polarity(db_path) -> tuple[list[str], list[str]]:
    """Three texts the active model reads as not negative and three it reads as negative.
    The tiny model is trained anew each session, so which of its words it calls negative is
    asked of it here rather than assumed: the alert must not hang on one training run."""
    from devmode.models import registry
    from tests.conftest import tiny_rows

    with open_db(db_path) as db:
        model = registry.active_model(db, "sentiment")
        polarity = registry.sentiment_map(db, model)
        scorer = scorers.model_scorer(db, model, texts=0)  # as the watcher scores
    texts = sorted({row["text"] for row in tiny_rows(300, seed=7)}, key=lambda t: (len(t), t))
    labels = scorer.score(texts).labels
    negative = [t for t, label in zip(texts, labels, strict=True) if polarity[label] == "negative"]
    other = [t for t, label in zip(texts, labels, strict=True) if polarity[label] != "negative"]
    calm, stress = _unlike(other), _unlike(negative)
    assert len(calm) == 3 == len(stress), (
        f"the tiny model read {len(negative)} of {len(texts)} texts as negative"
    )
    return calm, stress


def _unlike(texts: list[str], n: int = 3) -> list[str]:
    """The first ``n`` texts no two of which are near-duplicates (one story each)."""
    from devmode.data.near_duplicates import shingles

    chosen: list[str] = []
    for text in texts:
        mine = shingles(text)
        if all(len(mine & shingles(c)) / len(mine | shingles(c)) < 0.3 for c in chosen):
            chosen.append(text)
        if len(chosen) == n:
            break
    return chosen
