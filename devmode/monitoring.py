"""Monitoring: score dated text with the active models, keep the predictions, read sentiment trends.

    $ python -m devmode score headlines
    $ python -m devmode trends headlines --period month --ticker AAPL

    summary = score_dataset(db, "headlines", on_progress=print)   # incremental: new rows only
    points = sentiment_trend(db, "headlines", period="week")      # index, share negative, volume

Predictions live in ``devmode_predictions``, one row per (dataset, task, row). A row is scored
again only when the active model for the task has changed. Scoring writes whole chunks in one
transaction each, so a killed job leaves no half-written chunk and resumes where it stopped.

The sentiment index of a text is P(positive) - P(negative), after the model's labels are mapped
to negative / neutral / positive (automatically when they are named so).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database
from sqlite_utils.db import quote_identifier

from devmode import ingest, models
from devmode.db import utc_now
from devmode.errors import DevmodeError

POLARITIES = ("negative", "neutral", "positive")
PERIODS = ("day", "week", "month")
# Rows scored and written per transaction: a kill loses at most one chunk's work.
CHUNK_ROWS = 2048
# Label names read as a polarity without asking (compared in lower case).
_POLARITY_NAMES = {
    "negative": "negative",
    "neg": "negative",
    "bearish": "negative",
    "neutral": "neutral",
    "neu": "neutral",
    "positive": "positive",
    "pos": "positive",
    "bullish": "positive",
}
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%d.%m.%Y", "%Y%m%d")


class NoActiveModel(DevmodeError):
    """No model is active for the task, so there is nothing to score with."""


class NotSentimentLike(DevmodeError):
    """The model's labels cannot be read as negative / neutral / positive without a mapping."""


class NoDateColumn(DevmodeError):
    """The dataset has no date column, so there is no time to trend over."""


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
# Dates


def parse_date(value: Any) -> str | None:
    """The calendar date of ``value`` as 'YYYY-MM-DD', or None when it cannot be read.

    ISO dates and timestamps keep the calendar date they were written in (a headline stamped
    '2020-05-22 23:30:00-04:00' was published on the 22nd where it was published); an epoch
    number is read as UTC. Ambiguous day/month orders such as 03/04/2020 are not guessed.
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if 0 < value < 32503680000:  # seconds between 1970 and 3000
            return dt.datetime.fromtimestamp(value, dt.UTC).date().isoformat()
        return None
    text = str(value).strip()
    match = re.match(
        r"^(\d{4})-(\d{2})-(\d{2})(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?\s*(?:Z|[+-]\d{2}:?\d{2})?$",
        text,
    )
    if match:
        try:
            return dt.date(*map(int, match.groups())).isoformat()
        except ValueError:
            return None
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    return None


# ----------------------------------------------------------------------------------------------
# Labels


def sentiment_map(db: Database, model: models.Model) -> dict[str, str]:
    """The model's labels as polarities: from a stored mapping, or from their names."""
    stored = db["devmode_sentiment_maps"].rows_where("model_id = ?", [model.id])
    mapping = {row["label"]: row["polarity"] for row in stored}
    if mapping:
        return mapping
    guessed = {label: _POLARITY_NAMES.get(label.strip().lower()) for label in model.labels}
    if all(guessed.values()) and {"negative", "positive"} <= set(guessed.values()):
        return guessed
    raise NotSentimentLike(
        f"The labels of run {model.run_id}'s model ({', '.join(model.labels)}) do not read as "
        "negative / neutral / positive, so a sentiment index cannot be computed. Map them, e.g. "
        f"python -m devmode models map-sentiment {model.run_id} --negative LABEL --positive LABEL "
        "(other labels count as neutral), or make a sentiment model active."
    )


def set_sentiment_map(
    db: Database, run_id: int, negative: list[str], positive: list[str]
) -> dict[str, str]:
    """Store which of a model's labels are negative and positive; the rest are neutral."""
    model = models.get_model_for_run(db, run_id)
    unknown = sorted(set(negative + positive) - set(model.labels))
    if unknown or not negative or not positive or set(negative) & set(positive):
        raise NotSentimentLike(
            f"Expected at least one negative and one positive label, none in both, all among the "
            f"model's labels ({', '.join(model.labels)}); found negative={negative}, "
            f"positive={positive}" + (f", unknown {unknown}" if unknown else "") + "."
        )
    mapping = {
        label: "negative" if label in negative else "positive" if label in positive else "neutral"
        for label in model.labels
    }
    with db.atomic():
        db["devmode_sentiment_maps"].delete_where("model_id = ?", [model.id])
        db["devmode_sentiment_maps"].insert_all(
            {"model_id": model.id, "label": k, "polarity": v} for k, v in mapping.items()
        )
    return mapping


# ----------------------------------------------------------------------------------------------
# Scoring


def require_active_model(db: Database, task: str) -> models.Model:
    """The task's active model; ``NoActiveModel`` with what to do when there is none."""
    model = models.active_model(db, task)
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
    :raises NoActiveModel, NotSentimentLike:
    """
    dataset = ingest.get_dataset(db, dataset_name)
    model = require_active_model(db, task)
    polarity = sentiment_map(db, model) if task == "sentiment" else None
    if scorer is None:
        from devmode.scoring import load_scorer

        scorer = load_scorer(model.path)
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
    to_do = db.execute(f"select count(*) {pending_sql}", args).fetchone()[0]
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
                "date": date,
                "ticker": None if ticker is None else str(ticker),
                "topic": topics.get(row_id),
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
            if task == "topic":  # sentiment rows carry their row's topic, for fast trends
                db.conn.executemany(
                    "update devmode_predictions set topic = ? where dataset_id = ? and "
                    "task = 'sentiment' and row_id = ?",
                    [(r["label"], dataset.id, r["row_id"]) for r in records],
                )
        done += len(chunk)
        if on_progress:
            on_progress(done, to_do)
    new_alerts = 0 if cancelled or task != "sentiment" else len(evaluate_alerts(db, dataset.name))
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


# ----------------------------------------------------------------------------------------------
# Trends


def sentiment_trend(
    db: Database,
    dataset_name: str,
    *,
    period: str = "week",
    ticker: str | None = None,
    topic: str | None = None,
) -> list[dict[str, Any]]:
    """Per period: the mean sentiment index, the share of negative texts and the volume.

    Rows ``{"period": "2020-05-18", "sentiment": 0.12, "share_negative": 0.31, "volume": 42}``,
    oldest first; a week starts on Monday, a month on its first day. Periods with no texts are
    absent (a chart shows the gap). ``topic`` keeps the texts the active topic model put there.

    Sums per day come first, straight from a covering index in date order; only the few thousand
    days are then put into weeks or months (a million rows: well under half a second).
    """
    dataset = _dated_dataset(db, dataset_name, period)
    where, args = _scope_sql(dataset.id, ticker, topic)
    rows = db.execute(
        f"""select {_bucket_sql(period, "day")} as period, sum(total) / sum(n),
                   1.0 * sum(negative) / sum(n), sum(n)
            from (select date as day, sum(sentiment) as total, sum(is_negative) as negative,
                         count(*) as n
                  from devmode_predictions where {where} group by date)
            group by 1 order by 1""",
        args,
    ).fetchall()
    return [{"period": p, "sentiment": s, "share_negative": n, "volume": v} for p, s, n, v in rows]


def sentiment_by_topic(
    db: Database, dataset_name: str, *, ticker: str | None = None
) -> list[dict[str, Any]]:
    """Per topic (the active topic model's label): sentiment index, share negative and volume.

    Rows without a topic prediction are left out; an empty list when no topic model has scored.
    """
    dataset = ingest.get_dataset(db, dataset_name)
    where, args = _scope_sql(dataset.id, ticker, None)
    # With a ticker, the unary + keeps SQLite from walking the topic index for the grouping
    # (every row) instead of the ticker index that already holds the topic (a few thousand).
    topic = "+topic" if ticker else "topic"
    rows = db.execute(
        f"""select topic, avg(sentiment), avg(is_negative), count(*) from devmode_predictions
            where {where} and {topic} is not null group by {topic}
            order by count(*) desc, topic""",
        args,
    ).fetchall()
    return [{"topic": t, "sentiment": s, "share_negative": n, "volume": v} for t, s, n, v in rows]


def _scope_sql(
    dataset_id: int, ticker: str | None, topic: str | None, table: str = "devmode_predictions"
) -> tuple[str, list[Any]]:
    """WHERE clause (and its arguments) for a dataset's dated sentiment predictions."""
    where = f"{table}.dataset_id = ? and {table}.task = 'sentiment' and {table}.date is not null"
    args: list[Any] = [dataset_id]
    for column, value in (("ticker", ticker), ("topic", topic)):
        if value:
            where += f" and {table}.{column} = ?"
            args.append(value)
    return where, args


def texts_in_period(
    db: Database,
    dataset_name: str,
    *,
    period: str,
    start: str,
    ticker: str | None = None,
    topic: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """The scored texts behind one point of a trend, most negative first.

    :param start: the period's first day, as ``sentiment_trend`` gives it ('2020-05-18')
    """
    dataset = _dated_dataset(db, dataset_name, period)
    where, args = _scope_sql(dataset.id, ticker, topic, table="p")
    rows = db.execute(
        f"""select p.date, p.ticker, p.topic, t.{quote_identifier(dataset.mapping.text)}, p.label,
                   p.sentiment
            from devmode_predictions p join {quote_identifier(dataset.name)} t on t.rowid = p.row_id
            where {where} and p.date >= ? and p.date < ?
            order by p.sentiment, p.date limit {int(limit)}""",
        [*args, start, _period_end(period, start)],
    ).fetchall()
    return [
        {"date": d, "ticker": tk, "topic": tp, "text": tx, "label": lb, "sentiment": se}
        for d, tk, tp, tx, lb, se in rows
    ]


def scored_tickers(db: Database, dataset_name: str) -> list[str]:
    """Tickers with scored texts, most texts first."""
    return _scored_values(db, dataset_name, "ticker")


def scored_topics(db: Database, dataset_name: str) -> list[str]:
    """Topics the active topic model gave to sentiment-scored texts, most texts first."""
    return _scored_values(db, dataset_name, "topic")


def _scored_values(db: Database, dataset_name: str, column: str) -> list[str]:
    dataset = ingest.get_dataset(db, dataset_name)
    return [
        row[0]
        for row in db.execute(
            f"select {column} from devmode_predictions where dataset_id = ? and "
            f"task = 'sentiment' and {column} is not null group by 1 order by count(*) desc, 1",
            [dataset.id],
        )
    ]


def _dated_dataset(db: Database, dataset_name: str, period: str) -> ingest.Dataset:
    if period not in PERIODS:
        raise DevmodeError(f"period must be one of {', '.join(PERIODS)}; found {period!r}.")
    dataset = ingest.get_dataset(db, dataset_name)
    if not dataset.mapping.date:
        raise NoDateColumn(
            f"Dataset {dataset.name!r} has no date column, so it has no trend over time. Map its "
            "date column on the Datasets page (or python -m devmode datasets map NAME "
            "--date-column COLUMN)."
        )
    return dataset


def _period_end(period: str, start: str) -> str:
    """The first day after the period that begins on ``start`` ('YYYY-MM-DD')."""
    first = dt.date.fromisoformat(start)
    if period == "day":
        return (first + dt.timedelta(days=1)).isoformat()
    if period == "week":
        return (first + dt.timedelta(days=7)).isoformat()
    return (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1).isoformat()


def _bucket_sql(period: str, column: str = "date") -> str:
    """SQL for the first day of ``column``'s period (weeks start on Monday)."""
    return {
        "day": column,
        "week": f"date({column}, '-' || ((cast(strftime('%w', {column}) as integer) + 6) % 7) || ' days')",
        "month": f"strftime('%Y-%m-01', {column})",
    }[period]


# ----------------------------------------------------------------------------------------------
# Alerts

ALERT_KINDS = ("share_negative", "spike")


@dataclass(frozen=True)
class AlertRule:
    id: int
    dataset_id: int
    kind: str
    period: str
    threshold: float
    window: int
    min_volume: int
    ticker: str | None
    created_at: str
    topic: str | None = None

    def describe(self) -> str:
        scope = (
            " and ".join(
                f"{name} {value}"
                for name, value in (("ticker", self.ticker), ("topic", self.topic))
                if value
            )
            or "all texts"
        )
        if self.kind == "share_negative":
            what = f"share negative above {self.threshold:.0%}"
        else:
            what = f"share negative {self.threshold:g} standard deviations above the previous {self.window} {self.period}s"
        texts = "text" if self.min_volume == 1 else "texts"
        return f"{what} in a {self.period} ({scope}, at least {self.min_volume} {texts})"


def add_alert_rule(
    db: Database,
    dataset_name: str,
    *,
    kind: str,
    threshold: float,
    period: str = "week",
    window: int = 8,
    min_volume: int = 5,
    ticker: str | None = None,
    topic: str | None = None,
) -> AlertRule:
    """Store a rule; it is evaluated now and after every scoring of the dataset."""
    dataset = _dated_dataset(db, dataset_name, period)
    if kind not in ALERT_KINDS:
        raise DevmodeError(f"kind must be one of {', '.join(ALERT_KINDS)}; found {kind!r}.")
    if kind == "share_negative" and not 0 < threshold < 1:
        raise DevmodeError(
            f"A share_negative threshold is a share between 0 and 1, e.g. 0.6; found {threshold}."
        )
    if kind == "spike" and not (threshold > 0 and window >= 3):
        raise DevmodeError(
            f"A spike rule needs a threshold above 0 (standard deviations, e.g. 2) and a window of "
            f"at least 3 periods; found threshold {threshold}, window {window}."
        )
    if min_volume < 1:
        raise DevmodeError(f"min_volume must be at least 1; found {min_volume}.")
    rule_id = (
        db["devmode_alert_rules"]
        .insert(
            {
                "dataset_id": dataset.id,
                "kind": kind,
                "period": period,
                "threshold": float(threshold),
                "window": int(window),
                "min_volume": int(min_volume),
                "ticker": ticker or None,
                "topic": topic or None,
                "created_at": utc_now(),
            }
        )
        .last_pk
    )
    return AlertRule(**db["devmode_alert_rules"].get(rule_id))


def list_alert_rules(db: Database, dataset_name: str) -> list[AlertRule]:
    dataset = ingest.get_dataset(db, dataset_name)
    return [
        AlertRule(**r)
        for r in db["devmode_alert_rules"].rows_where("dataset_id = ?", [dataset.id], order_by="id")
    ]


def delete_alert_rule(db: Database, rule_id: int) -> None:
    with db.atomic():
        db["devmode_alert_events"].delete_where("rule_id = ?", [rule_id])
        db["devmode_alert_rules"].delete(rule_id)


def evaluate_alerts(db: Database, dataset_name: str) -> list[dict[str, Any]]:
    """Check every rule of the dataset against its trend; store and return the new events.

    An event is kept once per rule and period, so evaluating again only adds periods that are
    new (or newly over the line after more texts were scored).
    """
    new = []
    for rule in list_alert_rules(db, dataset_name):
        points = sentiment_trend(
            db, dataset_name, period=rule.period, ticker=rule.ticker, topic=rule.topic
        )
        for i, point in enumerate(points):
            if point["volume"] < rule.min_volume:
                continue
            value = _rule_value(rule, points[:i], point)
            if value is None or value <= rule.threshold:
                continue
            event = {
                "rule_id": rule.id,
                "period_start": point["period"],
                "value": value,
                "share_negative": point["share_negative"],
                "volume": point["volume"],
                "created_at": utc_now(),
            }
            if db["devmode_alert_events"].count_where(
                "rule_id = ? and period_start = ?", [rule.id, point["period"]]
            ):
                continue
            db["devmode_alert_events"].insert(event)
            new.append(event)
    return new


def _rule_value(
    rule: AlertRule, earlier: list[dict[str, Any]], point: dict[str, Any]
) -> float | None:
    if rule.kind == "share_negative":
        return point["share_negative"]
    history = [p["share_negative"] for p in earlier if p["volume"] >= rule.min_volume][
        -rule.window :
    ]
    if len(history) < rule.window:
        return None  # not enough history to say what is normal
    mean = sum(history) / len(history)
    spread = (sum((x - mean) ** 2 for x in history) / (len(history) - 1)) ** 0.5
    return (point["share_negative"] - mean) / max(
        spread, 0.02
    )  # a floor: flat history is not infinitely calm


def alert_events(
    db: Database, dataset_name: str, *, include_acknowledged: bool = False
) -> list[dict[str, Any]]:
    """Events of the dataset's rules, newest period first, each with its rule's description."""
    rules = {r.id: r for r in list_alert_rules(db, dataset_name)}
    if not rules:
        return []
    where = f"rule_id in ({', '.join('?' * len(rules))})"
    if not include_acknowledged:
        where += " and acknowledged_at is null"
    events = db["devmode_alert_events"].rows_where(
        where, list(rules), order_by="period_start desc, id desc"
    )
    return [
        {
            **e,
            "rule": rules[e["rule_id"]].describe(),
            "period": rules[e["rule_id"]].period,
            "ticker": rules[e["rule_id"]].ticker,
            "topic": rules[e["rule_id"]].topic,
        }
        for e in events
    ]


def acknowledge_alert(db: Database, event_id: int) -> None:
    if not db["devmode_alert_events"].count_where("id = ?", [event_id]):
        raise DevmodeError(
            f"No alert with id {event_id}. List them with python -m devmode alerts list DATASET."
        )
    db["devmode_alert_events"].update(event_id, {"acknowledged_at": utc_now()})
