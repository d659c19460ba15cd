"""Monitoring: score dated text with the active models and keep the predictions: dates read
from the text's date column, model labels read as sentiment polarities, and incremental,
chunk-atomic scoring.

    $ python -m devmode score headlines

    summary = score_dataset(db, "headlines", on_progress=print)   # incremental: new rows only

Trends over the predictions are ``trends.py``; alert rules, evaluated after every scoring, are
``alerts.py``.

Predictions live in ``devmode_predictions``, one row per (dataset, task, row). A row is scored
again only when the active model for the task has changed. Scoring writes whole chunks in one
transaction each, so a killed job leaves no half-written chunk and resumes where it stopped.

The sentiment index of a text is P(positive) - P(negative), after the model's labels are mapped
to negative / neutral / positive (automatically when they are named so).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from sqlite_utils import Database
from sqlite_utils.db import quote_identifier

from devmode.data import ingest
from devmode.data.dates import parse_date
from devmode.db import utc_now
from devmode.errors import DevmodeError
from devmode.models import registry, scorers
from devmode.monitor import alerts, stories, watchlist

# Rows scored and written per transaction: a kill loses at most one chunk's work.
CHUNK_ROWS = 2048


class NoActiveModel(DevmodeError):
    """No model is active for the task, so there is nothing to score with."""


@dataclass(frozen=True)
class ScoreSummary:
    scored: int  # rows scored by this call
    already_scored: int  # rows skipped: scored before by the same model
    unparseable_dates: int  # rows whose date could not be read (scored, but left out of trends)
    date_examples: list[str]  # a few of those values, to show a person
    model_run_id: int
    cancelled: bool = False
    new_alerts: int = 0  # alert events that this scoring raised


# ----------------------------------------------------------------------------------------------
# Scoring


def describe_active_models(db: Database) -> str:
    """Which models the Monitor scores with, for a person."""
    sentiment = registry.active_model(db, "sentiment")
    topic = registry.active_model(db, "topic")
    text = (
        f"Active sentiment model: run {sentiment.run_id} ({', '.join(sentiment.labels)}), "
        f"trained on {sentiment.dataset}, scoring at temperature {sentiment.temperature:.2f}"
        f"{'' if sentiment.temperature != 1 else ' (not calibrated)'}. "
        if sentiment
        else "No sentiment model is active. "
    )
    if topic:
        return text + f"Active topic model: run {topic.run_id} ({len(topic.labels)} topics)."
    return text + (
        "No topic model is active: promote one on the Fine-tune page to follow sentiment by topic."
    )


def require_active_model(db: Database, task: str) -> registry.Model:
    """The task's active model; ``NoActiveModel`` with what to do when there is none."""
    model = registry.active_model(db, task)
    if model is None:
        raise NoActiveModel(
            f"No {task} model is active. Train one on the Fine-tune page (or python -m devmode "
            f"train DATASET) and promote it: python -m devmode models promote RUN --as {task}."
        )
    return model


def score_dataset(
    db: Database,
    dataset_name: str,
    *,
    task: str = "sentiment",
    scorer=None,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ScoreSummary:
    """Score the rows of ``dataset_name`` that the task's active model has not scored yet.

    :param scorer: a loaded ``scoring.Scorer`` for the active model (loaded here when None)
    :param on_progress: ``(rows_done, rows_to_do)`` after every chunk
    :raises NoActiveModel, registry.NotSentimentLike:
    """
    dataset = ingest.get_dataset(db, dataset_name)
    model = require_active_model(db, task)
    polarity = registry.sentiment_map(db, model) if task == "sentiment" else None
    table = quote_identifier(dataset.name)
    role = dataset.mapping
    select = ", ".join(  # qualified: the predictions table has a date and a ticker too
        f"t.{quote_identifier(col)} as {alias}" if col else f"null as {alias}"
        for col, alias in ((role.text, "text"), (role.date, "date"), (role.ticker, "ticker"))
    )
    pending_sql = f"""
        from {table} t left join devmode_predictions p
          on p.dataset_id = :dataset and p.task = :task and p.row_id = t.rowid
        where p.row_id is null or p.model_id != :model"""
    args = {"dataset": dataset.id, "task": task, "model": model.id}
    stories.assign_stories(db, dataset.name)  # repeats are marked as they are scored
    matcher = watchlist.Matcher(watchlist.list_entries(db)) if not role.ticker else None
    to_do = db.execute(f"select count(*) {pending_sql}", args).fetchone()[0]
    if scorer is None:
        scorer = scorers.model_scorer(db, model, dataset.name, to_do)
    already = dataset.row_count - to_do
    done = unparseable = 0
    examples: list[str] = []
    cancelled = False
    while True:
        if should_stop and should_stop():
            cancelled = True
            break
        chunk = db.execute(
            f"select t.rowid, {select} {pending_sql} order by t.rowid limit {CHUNK_ROWS}",
            args,
        ).fetchall()
        if not chunk:
            break
        scores = scorer.score([row[1] for row in chunk])
        topics = _topics_of_rows(db, dataset.id, chunk[0][0], chunk[-1][0]) if polarity else {}
        repeats = stories.repeats_of_rows(db, dataset.id, chunk[0][0], chunk[-1][0])
        stamp = utc_now()
        records = []
        for (row_id, _, raw_date, ticker), label, probabilities in zip(
            chunk, scores.labels, scores.probabilities, strict=True
        ):
            date = parse_date(raw_date)
            if raw_date is not None and date is None:
                unparseable += 1
                if len(examples) < 5:
                    examples.append(str(raw_date))
            record = {
                "dataset_id": dataset.id,
                "task": task,
                "row_id": row_id,
                "model_id": model.id,
                "label": label,
                "probabilities": json.dumps([round(float(p), 6) for p in probabilities]),
                "confidence": round(float(max(probabilities)), 6),  # for health.py
                "date": date,
                "ticker": None if ticker is None else str(ticker),
                "topic": topics.get(row_id),
                "repeat": repeats.get(row_id),
                "created_at": stamp,
                "sentiment": None,
                "is_negative": None,
            }
            if polarity:
                p = dict(zip(scores.label_names, map(float, probabilities), strict=True))
                record["sentiment"] = sum(
                    v for k, v in p.items() if polarity[k] == "positive"
                ) - sum(v for k, v in p.items() if polarity[k] == "negative")
                record["is_negative"] = int(polarity[label] == "negative")
            records.append(record)
        with db.atomic():  # a whole chunk or nothing
            db["devmode_predictions"].upsert_all(records, pk=("dataset_id", "task", "row_id"))
            if matcher:  # who each text is about, from the watchlist
                watchlist.tag_rows(db, dataset.id, [(row[0], row[1]) for row in chunk], matcher)
            if task == "topic":  # sentiment rows carry their row's topic, for fast trends
                db.conn.executemany(
                    "update devmode_predictions set topic = ? where dataset_id = ? and "
                    "task = 'sentiment' and row_id = ?",
                    [(r["label"], dataset.id, r["row_id"]) for r in records],
                )
        done += len(chunk)
        if on_progress:
            on_progress(done, to_do)
    new_alerts = (
        0 if cancelled or task != "sentiment" else len(alerts.evaluate_alerts(db, dataset.name))
    )
    return ScoreSummary(done, already, unparseable, examples, model.run_id, cancelled, new_alerts)


def _topics_of_rows(db: Database, dataset_id: int, first: int, last: int) -> dict[int, str]:
    """Topic labels already predicted for the rows ``first``..``last`` of the dataset."""
    return dict(
        db.execute(
            "select row_id, label from devmode_predictions where dataset_id = ? and "
            "task = 'topic' and row_id between ? and ?",
            [dataset_id, first, last],
        ).fetchall()
    )
