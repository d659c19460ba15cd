"""The daily rollups: ``devmode_trend_days`` kept in step with the predictions by triggers,
and the one-pass fill a bulk load uses with them off (migration 0010, ``schema.py``, creates
the table and calls both); ``devmode_health_days``, the daily sums of each prediction's
top-class probability behind the model's estimated accuracy (``health.py``; migration 0017).
What the migrations call here has shipped: a change to these tables is a new migration."""

from __future__ import annotations

from sqlite_utils import Database

# The trend rollup: sums per (dataset, day) of every sentiment prediction (day '': no date), overall
# (scope '') and per ticker and per topic, for all texts and for stories only (rows that do not
# repeat an earlier story). Triggers keep it in step with devmode_predictions in the same
# transaction as each write (a scoring chunk, a topic copy, a story mark), whatever makes it;
# a trend then reads a few thousand days instead of millions of rows. A dataset's rows are not
# subtracted once its record is gone (ingest.drop_dataset removes its rollup whole).
SCOPES = (
    ("''", "''", "1"),
    ("'ticker'", "{r}.ticker", "{r}.ticker is not null"),
    ("'topic'", "{r}.topic", "{r}.topic is not null"),
)


def day_sql(row: str, sign: str) -> str:
    """Statements adding (sign '+') or taking away (sign '-') ``row``'s prediction (``new``
    or ``old``) to or from the rollup, for each scope it belongs to."""
    r = row
    statements = []
    for scope, value, present in SCOPES:
        story = f"({r}.repeat is not 1)"
        statements.append(
            f"""insert into devmode_trend_days
                select {r}.dataset_id, {scope}, {value.format(r=r)}, coalesce({r}.date, ''), {sign}1,
                       {sign}coalesce({r}.sentiment, 0), {sign}coalesce({r}.is_negative, 0),
                       {sign}{story}, {sign}{story} * coalesce({r}.sentiment, 0),
                       {sign}{story} * coalesce({r}.is_negative, 0)
                where {r}.task = 'sentiment' and {present.format(r=r)}
                  and exists (select 1 from devmode_datasets where id = {r}.dataset_id)
                on conflict do update set n = n + excluded.n, total = total + excluded.total,
                   negative = negative + excluded.negative, story_n = story_n + excluded.story_n,
                   story_total = story_total + excluded.story_total,
                   story_negative = story_negative + excluded.story_negative;"""
        )
    return "\n".join(statements)


def fill_trend_days(db: Database) -> None:
    """Sum every stored sentiment prediction into ``devmode_trend_days`` in one pass (the
    migration's fill, and a bulk load's with the triggers off)."""
    for scope, value, present in SCOPES:
        db.execute(
            f"""insert into devmode_trend_days
                select dataset_id, {scope}, {value.format(r="p")}, coalesce(date, ''), count(*),
                       sum(coalesce(sentiment, 0)), sum(coalesce(is_negative, 0)),
                       sum(repeat is not 1), sum((repeat is not 1) * coalesce(sentiment, 0)),
                       sum((repeat is not 1) * coalesce(is_negative, 0))
                from devmode_predictions p
                where task = 'sentiment' and {present.format(r="p")}
                group by 1, 2, 3, 4"""
        )


def trend_triggers(db: Database, *, on: bool) -> None:
    """Create (``on``) or drop the triggers that keep ``devmode_trend_days`` in step."""
    columns = "sentiment, is_negative, date, ticker, topic, repeat, task, dataset_id"
    for name, event, body in (
        ("insert", "insert", day_sql("new", "+")),
        ("delete", "delete", day_sql("old", "-")),
        ("update", f"update of {columns}", day_sql("old", "-") + day_sql("new", "+")),
    ):
        db.execute(f"drop trigger if exists devmode_trend_days_{name}")
        if on:
            db.execute(
                f"""create trigger devmode_trend_days_{name} after {event} on devmode_predictions
                    begin {body} end"""
            )


HEALTH_TABLE = "devmode_health_days"


def _health_day_sql(row: str, sign: str) -> str:
    return f"""insert into {HEALTH_TABLE}
                   select {row}.dataset_id, coalesce({row}.date, ''), {sign}1, {sign}{row}.confidence
                   where {row}.task = 'sentiment' and {row}.confidence is not null
                     and exists (select 1 from devmode_datasets where id = {row}.dataset_id)
               on conflict do update set n = n + excluded.n,
                   confidence_total = confidence_total + excluded.confidence_total;"""


def create_health_rollup(db: Database) -> None:
    """Migration 0017: each prediction's top-class probability (filled for the rows stored
    before, from their probabilities), the daily sums, and the triggers that keep them."""
    db["devmode_predictions"].add_column("confidence", float)
    db.execute(
        """update devmode_predictions
           set confidence = (select max(value) from json_each(probabilities))
           where task = 'sentiment' and json_valid(probabilities)"""
    )
    db.execute(
        f"""create table {HEALTH_TABLE} (
               dataset_id integer not null, day text not null, n integer not null,
               confidence_total float not null, primary key (dataset_id, day)
           ) without rowid"""
    )
    db.execute(
        f"""insert into {HEALTH_TABLE}
            select dataset_id, coalesce(date, ''), count(*), sum(confidence)
            from devmode_predictions
            where task = 'sentiment' and confidence is not null group by 1, 2"""
    )
    for name, event, body in (
        ("insert", "insert", _health_day_sql("new", "+")),
        ("delete", "delete", _health_day_sql("old", "-")),
        (
            "update",
            "update of confidence, date, task, dataset_id",
            _health_day_sql("old", "-") + _health_day_sql("new", "+"),
        ),
    ):
        db.execute(
            f"""create trigger {HEALTH_TABLE}_{name} after {event} on devmode_predictions
                begin {body} end"""
        )
