"""Sentiment trends over the stored predictions: by day, week or month, overall or per ticker
and topic, the texts behind a point, and what a chart of them needs.

    $ python -m devmode trends headlines --period month --ticker AAPL

    points = sentiment_trend(db, "headlines", period="week")   # index, share negative, volume

The sentiment index of a text is P(positive) - P(negative) (``monitoring.score_dataset`` stores
it); a period's index is the mean over its texts.
"""

from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Database
from sqlite_utils.db import quote_identifier

from devmode.data import dates, ingest
from devmode.errors import DevmodeError

PERIODS = ("day", "week", "month")
# The period a trend, a chart and an alert rule use unless told otherwise.
DEFAULT_PERIOD = "week"
# Dataset columns of these names hold each text's address and where it came from (feeds write
# both): shown with stories.
LINK_COLUMN = "link"
SOURCE_COLUMN = "source"


class NoDateColumn(DevmodeError):
    """The dataset has no date column, so there is no time to trend over."""


def sentiment_trend(
    db: Database,
    dataset_name: str,
    *,
    period: str = DEFAULT_PERIOD,
    ticker: str | None = None,
    topic: str | None = None,
    stories: bool = False,
) -> list[dict[str, Any]]:
    """Per period: the mean sentiment index, the share of negative texts and the volume.

    Rows ``{"period": "2020-05-18", "sentiment": 0.12, "share_negative": 0.31, "volume": 42}``,
    oldest first; a week starts on Monday, a month on its first day. Periods with no texts are
    absent (a chart shows the gap). ``topic`` keeps the texts the active topic model put there;
    ``ticker`` the texts filed under it (or, without a ticker column, those that mention the
    watchlist entry); ``stories`` counts each story once (``stories.py``).

    One scope (all texts, a ticker column's value, or a topic) is read from the daily rollup
    (``devmode_trend_days``, kept by triggers): a few thousand days whatever the rows, put into
    weeks or months here. A ticker and a topic together, or a watchlist entry, are summed from
    the predictions per day, straight from a covering index in date order.
    """
    dataset = dated_dataset(db, dataset_name, period)
    scope = _rollup_scope(dataset, ticker, topic)
    if scope is None:
        return _trend_from_rows(db, dataset, period, ticker, topic, stories=stories)
    story = "story_" if stories else ""
    rows = db.execute(
        f"""select {bucket_sql(period, "day")} as period, sum({story}total) / sum({story}n),
                   1.0 * sum({story}negative) / sum({story}n), sum({story}n)
            from devmode_trend_days where dataset_id = ? and scope = ? and value = ? and day > ''
            group by 1 having sum({story}n) > 0 order by 1""",
        [dataset.id, *scope],
    ).fetchall()
    return _points(rows)


def _rollup_scope(
    dataset: ingest.Dataset, ticker: str | None, topic: str | None
) -> tuple[str, str] | None:
    """The rollup's (scope, value) for a trend, or None when it keeps no such sums."""
    if ticker and (topic or not dataset.mapping.ticker):
        return None
    if ticker:
        return "ticker", ticker
    return ("topic", topic) if topic else ("", "")


def _trend_from_rows(
    db: Database,
    dataset: ingest.Dataset,
    period: str,
    ticker: str | None,
    topic: str | None,
    *,
    stories: bool = False,
) -> list[dict[str, Any]]:
    """``sentiment_trend`` summed from the predictions themselves."""
    where, args = _scope_sql(dataset, ticker, topic, stories=stories)
    rows = db.execute(
        f"""select {bucket_sql(period, "day")} as period, sum(total) / sum(n),
                   1.0 * sum(negative) / sum(n), sum(n)
            from (select date as day, sum(sentiment) as total, sum(is_negative) as negative,
                         count(*) as n
                  from devmode_predictions where {where} group by date)
            group by 1 order by 1""",
        args,
    ).fetchall()
    return _points(rows)


def _points(rows: list[tuple]) -> list[dict[str, Any]]:
    return [{"period": p, "sentiment": s, "share_negative": n, "volume": v} for p, s, n, v in rows]


def _split_points(rows: list[tuple]) -> list[dict[str, Any]]:
    return [
        {"value": v, "period": p, "sentiment": s, "share_negative": n, "volume": c}
        for v, p, s, n, c in rows
    ]


# Values a split trend shows (the rest are summed under "other").
MAX_SPLIT_VALUES = 10


def trend_by(
    db: Database,
    dataset_name: str,
    column: str,
    *,
    period: str = DEFAULT_PERIOD,
    limit: int = MAX_SPLIT_VALUES,
) -> list[dict[str, Any]]:
    """The trend split by any categorical column: ticker, topic, or one of the dataset's own
    (source, a feed's title, ...). Rows ``{"value", "period", "sentiment", "share_negative",
    "volume"}`` for the ``limit`` values with the most texts, oldest period first."""
    dataset = dated_dataset(db, dataset_name, period)
    if (column == "ticker" and dataset.mapping.ticker) or (
        column == "topic" and column not in dataset.columns
    ):  # the scorer's own columns: summed per day already
        return _split_from_rollup(db, dataset, column, period, limit)
    where, args = _scope_sql(dataset, None, None, table="p")
    if column == "ticker" and not dataset.mapping.ticker and "ticker" not in dataset.columns:
        value = "m.ticker"  # the watchlist entries each text mentions
        join = "join devmode_mentions m on m.dataset_id = p.dataset_id and m.row_id = p.row_id"
    elif column in ("ticker", "topic") and column not in dataset.columns:
        value, join = f"p.{column}", ""
    elif column in dataset.columns:
        value = f"t.{quote_identifier(column)}"
        join = f"join {quote_identifier(dataset.name)} t on t.rowid = p.row_id"
    else:
        raise DevmodeError(
            f"{dataset.name} has no column {column!r}. Expected ticker, topic or one of its "
            f"columns: {', '.join(dataset.columns)}."
        )
    top = [
        row[0]
        for row in db.execute(
            f"""select {value} from devmode_predictions p {join} where {where} and {value} is not null
                group by 1 order by count(*) desc, 1 limit {int(limit)}""",
            args,
        )
    ]
    if not top:
        return []
    rows = db.execute(
        f"""select {value}, {bucket_sql(period, "p.date")}, avg(p.sentiment), avg(p.is_negative),
                   count(*)
            from devmode_predictions p {join}
            where {where} and {value} in (select value from json_each(?))
            group by 1, 2 order by 2, 1""",
        [*args, json.dumps(top)],
    ).fetchall()
    return _split_points(rows)


def _split_from_rollup(
    db: Database, dataset: ingest.Dataset, scope: str, period: str, limit: int
) -> list[dict[str, Any]]:
    """``trend_by`` a ticker column or the topic, from the daily rollup."""
    rows = db.execute(
        f"""with top as (select value from devmode_trend_days where dataset_id = :id and
                         scope = :scope and day > '' group by value having sum(n) > 0
                         order by sum(n) desc, value limit {int(limit)})
            select value, {bucket_sql(period, "day")}, sum(total) / sum(n),
                   1.0 * sum(negative) / sum(n), sum(n)
            from devmode_trend_days where dataset_id = :id and scope = :scope and day > ''
              and value in (select value from top)
            group by 1, 2 having sum(n) > 0 order by 2, 1""",
        {"id": dataset.id, "scope": scope},
    ).fetchall()
    return _split_points(rows)


def sentiment_by_topic(
    db: Database, dataset_name: str, *, ticker: str | None = None
) -> list[dict[str, Any]]:
    """Per topic (the active topic model's label): sentiment index, share negative and volume.

    Rows without a topic prediction or a readable date are left out (as from every trend); an
    empty list when no topic model has scored.
    """
    dataset = ingest.get_dataset(db, dataset_name)
    if not ticker:
        rows = db.execute(
            """select value, sum(total) / sum(n), 1.0 * sum(negative) / sum(n), sum(n)
               from devmode_trend_days where dataset_id = ? and scope = 'topic' and day > ''
               group by 1 having sum(n) > 0 order by 4 desc, 1""",
            [dataset.id],
        ).fetchall()
        return [
            {"topic": t, "sentiment": s, "share_negative": n, "volume": v} for t, s, n, v in rows
        ]
    where, args = _scope_sql(dataset, ticker, None)
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
    dataset: ingest.Dataset,
    ticker: str | None,
    topic: str | None,
    table: str = "devmode_predictions",
    *,
    stories: bool = False,
) -> tuple[str, list[Any]]:
    """WHERE clause (and its arguments) for a dataset's dated sentiment predictions."""
    where = f"{table}.dataset_id = ? and {table}.task = 'sentiment' and {table}.date is not null"
    args: list[Any] = [dataset.id]
    if ticker and not dataset.mapping.ticker:  # the watchlist entry's mentions
        where += (
            f" and {table}.row_id in (select row_id from devmode_mentions where dataset_id = ? "
            "and ticker = ?)"
        )
        args += [dataset.id, ticker]
    elif ticker:
        where += f" and {table}.ticker = ?"
        args.append(ticker)
    if topic:
        where += f" and {table}.topic = ?"
        args.append(topic)
    if stories:
        where += f" and {table}.repeat is not 1"
    return where, args


def texts_in_period(
    db: Database,
    dataset_name: str,
    *,
    period: str,
    start: str,
    ticker: str | None = None,
    topic: str | None = None,
    stories: bool = False,
    limit: int = 200,
    with_model: bool = False,
) -> list[dict[str, Any]]:
    """The scored texts behind one point of a trend, most negative first; ``id`` is the row's
    id in the dataset (what a brief cites).

    :param start: the period's first day, as ``sentiment_trend`` gives it ('2020-05-18')
    :param stories: each story once (its first text), with ``copies`` and its ``sources``
    :param with_model: with the ``model_id`` that scored each (what ``reasons`` needs)
    """
    dataset = dated_dataset(db, dataset_name, period)
    where, args = _scope_sql(dataset, ticker, topic, table="p", stories=stories)
    table = quote_identifier(dataset.name)
    link = f"t.{quote_identifier(LINK_COLUMN)}" if LINK_COLUMN in dataset.columns else "null"
    extra, keys = "", ["date", "ticker", "topic", "text", "label", "sentiment", "link", "id"]
    if with_model:
        extra, keys = ", p.model_id", [*keys, "model_id"]
    if stories:
        source = (
            f"(select group_concat(distinct c.{quote_identifier(SOURCE_COLUMN)}) from "
            f"devmode_story_rows s join {table} c on c.rowid = s.row_id where "
            "s.dataset_id = p.dataset_id and s.story_id = p.row_id)"
            if SOURCE_COLUMN in dataset.columns
            else "null"
        )
        extra += f""", (select count(*) from devmode_story_rows s where s.dataset_id = p.dataset_id
                      and s.story_id = p.row_id), {source}"""
        keys += ["copies", "sources"]
    rows = db.execute(
        f"""select p.date, p.ticker, p.topic, t.{quote_identifier(dataset.mapping.text)}, p.label,
                   p.sentiment, {link}, p.row_id {extra}
            from devmode_predictions p join {table} t on t.rowid = p.row_id
            where {where} and p.date >= ? and p.date < ?
            order by p.sentiment, p.date limit {int(limit)}""",
        [*args, start, dates.period_end(period, start)],
    ).fetchall()
    return [dict(zip(keys, row, strict=True)) for row in rows]


def without_empty_columns(
    rows: list[dict[str, Any]], leave_out: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """The rows less the columns that are empty in every row (no ticker, no topic), and less
    ``leave_out``: a table shows what the data has."""
    keep = [
        k
        for k in (rows[0] if rows else {})
        if k not in leave_out and any(r[k] not in (None, "") for r in rows)
    ]
    return [{k: r[k] for k in keep} for r in rows]


def scored_tickers(db: Database, dataset_name: str) -> list[str]:
    """Tickers with scored texts, most texts first: the ticker column's, or, without one, the
    watchlist entries the texts mention."""
    dataset = ingest.get_dataset(db, dataset_name)
    if dataset.mapping.ticker:
        return _scored_values(db, dataset_name, "ticker")
    return [
        row[0]
        for row in db.execute(
            """select m.ticker from devmode_mentions m join devmode_predictions p
                 on p.dataset_id = m.dataset_id and p.task = 'sentiment' and p.row_id = m.row_id
               where m.dataset_id = ? group by 1 order by count(*) desc, 1""",
            [dataset.id],
        )
    ]


def scored_topics(db: Database, dataset_name: str) -> list[str]:
    """Topics the active topic model gave to sentiment-scored texts, most texts first."""
    return _scored_values(db, dataset_name, "topic")


def _scored_values(db: Database, dataset_name: str, column: str) -> list[str]:
    dataset = ingest.get_dataset(db, dataset_name)
    return [
        row[0]
        for row in db.execute(
            "select value from devmode_trend_days where dataset_id = ? and scope = ? "
            "group by 1 having sum(n) > 0 order by sum(n) desc, 1",
            [dataset.id, column],
        )
    ]


def dated_dataset(db: Database, dataset_name: str, period: str) -> ingest.Dataset:
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


def bucket_sql(period: str, column: str = "date") -> str:
    """SQL for the first day of ``column``'s period (weeks start on Monday)."""
    return {
        "day": column,
        "week": f"date({column}, '-' || ((cast(strftime('%w', {column}) as integer) + 6) % 7) || ' days')",
        "month": f"strftime('%Y-%m-01', {column})",
    }[period]


# Dates devmode reads, for messages about the ones it cannot.
READABLE_DATES = (
    "2020-05-22, 2020-05-22 11:38:00-04:00, 20200522, 22.05.2020 or Fri, 22 May 2020 11:38:00 -0400"
)


def why_no_trend(
    db: Database, dataset_name: str, *, ticker: str | None = None, topic: str | None = None
) -> str:
    """Why a trend came back empty, for a person: nothing scored yet, scored rows whose dates
    could not be read (with examples), or nothing under this ticker or topic."""
    dataset = ingest.get_dataset(db, dataset_name)
    scored, dated = db.execute(
        "select count(*), count(date) from devmode_predictions where dataset_id = ? and "
        "task = 'sentiment'",
        [dataset.id],
    ).fetchone()
    if not scored:
        return f"No rows of {dataset.name} are scored yet."
    if not dated:
        column = quote_identifier(dataset.mapping.date)
        examples = [
            row[0]
            for row in db.execute(
                f"""select t.{column} from devmode_predictions p
                    join {quote_identifier(dataset.name)} t on t.rowid = p.row_id
                    where p.dataset_id = ? and p.task = 'sentiment' and p.date is null
                    and t.{column} is not null limit 3""",
                [dataset.id],
            )
        ]
        shown = f" (e.g. {', '.join(map(repr, examples))})" if examples else ""
        return (
            f"{scored:,} rows of {dataset.name} are scored, but none has a date that could be "
            f"read in its {dataset.mapping.date!r} column{shown}. Expected dates like "
            f"{READABLE_DATES}. Map another date column, or fix the dates and upload again."
        )
    scope = " and ".join(f"{k} {v}" for k, v in (("ticker", ticker), ("topic", topic)) if v)
    return f"No scored, dated rows of {dataset.name} for {scope or 'this choice'}."


# ----------------------------------------------------------------------------------------------
# What a chart of a trend shows beside it


def trend_summary(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Texts in all, periods, and the latest period's index and start, for metrics (periods
    that start after tomorrow, from texts dated ahead, are never the latest)."""
    current = current_points(points)
    return {
        "texts": sum(p["volume"] for p in points),
        "periods": len(points),
        "latest": current[-1]["sentiment"] if current else None,
        "latest_period": current[-1]["period"] if current else None,
    }


def current_points(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points of periods that start by tomorrow: a text dated 2099 is kept in the trend,
    but its period is not the latest."""
    horizon = dates.horizon()
    return [p for p in points if p["period"] <= horizon]


def with_empty_periods(points: list[dict[str, Any]], period: str) -> list[dict[str, Any]]:
    """``points`` with every period between the first and the last: a period with no texts is
    there with volume 0 (and no index or share), as a count of texts needs."""
    if not points:
        return []
    by_start = {p["period"]: p for p in points}
    return [
        by_start.get(start)
        or {"period": start, "sentiment": None, "share_negative": None, "volume": 0}
        for start in dates.calendar_periods(period, points[0]["period"], points[-1]["period"])
    ]


def period_starts(points: list[dict[str, Any]]) -> list[str]:
    """The periods of a trend, newest first (a select's options)."""
    return [p["period"] for p in reversed(points)]


def most_negative_period(points: list[dict[str, Any]]) -> str | None:
    """The start of the period with the lowest sentiment index (the first place to look)."""
    return min(points, key=lambda p: p["sentiment"])["period"] if points else None


def describe_scope(dataset: str, ticker: str | None, topic: str | None, period: str) -> str:
    """'headlines · AAPL · per week': what a trend covers, for its title."""
    return " · ".join(x for x in (dataset, ticker, topic) if x) + f" · per {period}"
