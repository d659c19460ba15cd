"""The words behind a scored text, where people already look: the Monitor's texts behind a
point, an alert's stories and what its deliveries carry.

    rows = trends.texts_in_period(db, "wire", period="week", start="2020-05-18")
    rows = with_top_words(db, rows)        # each row gains "top_words": ["fell", "loss", ...]

A text is explained (``models/explain.py``) by the model that scored it, the first time it is
shown or delivered, and the words are stored (``devmode_reasons``, by model and the text's
hash): scoring itself explains nothing, so its speed is unchanged, and a second look costs a
read. A text whose model has been deleted since gets no words; a failure to explain one model's
texts leaves those rows without words and the others with theirs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlite_utils import Database

from devmode.db import utc_now
from devmode.models import references, registry
from devmode.models.classify import TOP_WORDS

TABLE = "devmode_reasons"
# Texts explained at most per call (the rest of a long table waits for a narrower look).
MAX_EXPLAINED = 50
_CACHE = references.ModelCache(size=2)


def text_hash(text: str) -> str:
    return hashlib.sha256(str(text).encode()).hexdigest()


def with_top_words(
    db: Database,
    rows: Sequence[dict[str, Any]],
    *,
    limit: int = MAX_EXPLAINED,
    scorer_for: Callable[[registry.Model], Any] | None = None,
) -> list[dict[str, Any]]:
    """``rows`` (each with ``text`` and the ``model_id`` that scored it) with ``top_words``
    added and ``model_id`` taken out; the first ``limit`` rows are explained when not stored
    yet, the others get what is stored (or nothing)."""
    if scorer_for is None:

        def scorer_for(model: registry.Model):
            return _CACHE.scorer(references.of_model(db, model))

    keys = [(row.get("model_id"), text_hash(row.get("text") or "")) for row in rows]
    known = _stored(db, keys)
    wanted: dict[int, list[int]] = {}
    for i, key in enumerate(keys[:limit]):
        if key not in known and key[0] is not None and (rows[i].get("text") or "").strip():
            wanted.setdefault(key[0], []).append(i)
    for model_id, indexes in wanted.items():
        try:
            model = next(m for m in registry.list_models(db) if m.id == model_id)
        except StopIteration:  # deleted since it scored: no words
            continue
        try:
            known.update(_explain(db, model, [rows[i]["text"] for i in indexes], scorer_for))
        except Exception:  # noqa: BLE001 - those rows go without words; the others keep theirs
            continue
    out = []
    for row, key in zip(rows, keys, strict=True):
        shown = {k: v for k, v in row.items() if k != "model_id"}
        shown["top_words"] = known.get(key, [])
        out.append(shown)
    return out


def _stored(db: Database, keys: list[tuple[int | None, str]]) -> dict[tuple, list[str]]:
    found: dict[tuple, list[str]] = {}
    if TABLE not in db.table_names():
        return found
    for model_id in {m for m, _ in keys if m is not None}:
        hashes = [h for m, h in keys if m == model_id]
        for at in range(0, len(hashes), 500):
            chunk = hashes[at : at + 500]
            for row in db[TABLE].rows_where(
                f"model_id = ? and text_sha256 in ({', '.join('?' * len(chunk))})",
                [model_id, *chunk],
            ):
                found[(model_id, row["text_sha256"])] = json.loads(row["top_words"])
    return found


def _explain(db, model: registry.Model, texts: list[str], scorer_for) -> dict[tuple, list[str]]:
    from devmode.models.explain import Explainer

    explained = Explainer(scorer_for(model)).explain(texts)
    found, rows = {}, []
    for text, why in zip(texts, explained, strict=True):
        words = [w.word for w in why.top_words(TOP_WORDS)]
        found[(model.id, text_hash(text))] = words
        rows.append(
            {
                "model_id": model.id,
                "text_sha256": text_hash(text),
                "label": why.label,
                "top_words": json.dumps(words),
                "words": json.dumps([w.to_dict() for w in why.words]),
                "created_at": utc_now(),
            }
        )
    db[TABLE].insert_all(rows, pk=("model_id", "text_sha256"), replace=True)
    return found
