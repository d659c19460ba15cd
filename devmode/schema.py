"""devmode's tables, kept by named migrations (sqlite-utils' ``Migrations``): each one runs
once per database, in name order, when ``db.open_db`` finds it pending. Add a new one at the
end; never edit one that has shipped. Newer ones call a ``*_table(s).py`` module beside the code
that uses the tables (the trend rollup's SQL lives in ``monitor/rollup.py``).
"""

from __future__ import annotations

from sqlite_utils import Database, Migrations

from devmode.data.price_tables import create_price_tables
from devmode.finetune.drift_table import create_drift_table
from devmode.finetune.evaluation_tables import create_evaluation_tables
from devmode.models.adapted_table import create_adaptation_table
from devmode.monitor.brief_table import add_brief_columns
from devmode.monitor.rollup import create_health_rollup, fill_trend_days, trend_triggers

migrations = Migrations("devmode")

# The tables that hold what was worked out from a dataset's rows (by its id): dropping the
# dataset deletes its rows there too, so a later dataset of that name starts clean. (Alert
# rules, scoring jobs, feed items and out-of-domain results keep theirs.) A migration that adds
# such a table adds it here.
DERIVED_FROM_DATASET = (
    "devmode_predictions",
    "devmode_trend_days",
    "devmode_health_days",
    "devmode_story_rows",
    "devmode_mentions",
    "devmode_label_suggestions",
    "devmode_label_history",
    "devmode_review_jobs",
    "devmode_drift",
)
# The tables that hold what was worked out with a model (by its ``devmode_models.id``):
# deleting the model deletes its rows there (an id can be used again).
DERIVED_FROM_MODEL = ("devmode_reasons", "devmode_drift")


@migrations(name="0001_datasets")
def _create_datasets(db: Database) -> None:
    db["devmode_datasets"].create(
        {
            "id": int,
            "name": str,  # also the name of the table holding the rows
            "source": str,  # file name or "hf:<id>" the rows came from
            "format": str,
            "encoding": str,
            "delimiter": str,
            "size_bytes": int,
            "sha256": str,  # of the uploaded bytes: a run records it to prove which data it saw
            "row_count": int,
            "columns": str,  # JSON list, in file order
            "text_column": str,
            "label_column": str,
            "date_column": str,
            "ticker_column": str,
            "split_seed": int,
            "split_fractions": str,  # JSON [train, validation, test]
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"name", "row_count", "columns", "created_at", "updated_at"},
    )
    db["devmode_datasets"].create_index(["name"], unique=True)


@migrations(name="0002_runs")
def _create_runs(db: Database) -> None:
    db["devmode_runs"].create(
        {
            "id": int,
            "dataset": str,
            "dataset_sha256": str,  # of the data the run trained on: a changed dataset is refused
            "split_seed": int,
            "config": str,  # JSON of TrainConfig
            "status": str,  # one of runs.RUN_STATUSES
            "pid": int,  # of the worker process while it runs
            "cancel_requested": int,
            "error": str,
            "step": int,
            "total_steps": int,
            "epoch": int,
            "device": str,
            "precision": str,
            "versions": str,  # JSON: python, torch, transformers, devmode
            "baseline": str,  # JSON: {"zero_shot": report, "majority": report} on the test split
            "validation": str,  # JSON report of the best epoch
            "test": str,  # JSON report of the fine-tuned model on the test split
            "best_epoch": int,
            "train_seconds": float,
            "samples_per_second": float,
            "model_dir": str,
            "created_at": str,
            "started_at": str,
            "finished_at": str,
            "heartbeat_at": str,
        },
        pk="id",
        not_null={"dataset", "config", "status", "created_at"},
        defaults={"cancel_requested": 0},
    )
    db["devmode_run_metrics"].create(
        {
            "id": int,
            "run_id": int,
            "step": int,
            "epoch": int,
            "name": str,
            "value": float,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("run_id", "devmode_runs", "id")],
    )
    db["devmode_run_metrics"].create_index(["run_id", "name", "step"])
    db["devmode_models"].create(
        {
            "id": int,
            "run_id": int,
            "dataset": str,
            "labels": str,  # JSON list, in the model's class order
            "path": str,
            "active_as": str,  # 'sentiment' | 'topic' | NULL: at most one model per task
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("run_id", "devmode_runs", "id")],
    )
    db["devmode_models"].create_index(["run_id"], unique=True)


@migrations(name="0003_monitor")
def _create_monitor(db: Database) -> None:
    db["devmode_predictions"].create(
        {
            "dataset_id": int,
            "task": str,  # sentiment | topic
            "row_id": int,  # rowid in the dataset's table
            "model_id": int,  # devmode_models.id: a new active model re-scores the row
            "label": str,
            "probabilities": str,  # JSON, in the model's label order
            "sentiment": float,  # P(positive) - P(negative); sentiment task only
            "is_negative": int,
            "date": str,  # 'YYYY-MM-DD' read from the dataset's date column; NULL if unreadable
            "ticker": str,
            "created_at": str,
        },
        pk=("dataset_id", "task", "row_id"),
    )
    db["devmode_predictions"].create_index(["dataset_id", "task", "date"])
    db["devmode_predictions"].create_index(["dataset_id", "task", "ticker", "date"])
    db["devmode_sentiment_maps"].create(
        {"model_id": int, "label": str, "polarity": str}, pk=("model_id", "label")
    )


@migrations(name="0004_alerts")
def _create_alerts(db: Database) -> None:
    db["devmode_alert_rules"].create(
        {
            "id": int,
            "dataset_id": int,
            "kind": str,  # share_negative | spike (z-score of the share negative)
            "period": str,  # day | week | month
            "threshold": float,  # a share (0.6) or a z-score (2.0)
            "window": int,  # spike: earlier periods the z-score compares against
            "min_volume": int,  # periods with fewer texts never alert
            "ticker": str,  # NULL: all texts
            "created_at": str,
        },
        pk="id",
    )
    db["devmode_alert_events"].create(
        {
            "id": int,
            "rule_id": int,
            "period_start": str,
            "value": float,  # the share negative, or the z-score
            "share_negative": float,
            "volume": int,
            "created_at": str,
            "acknowledged_at": str,
        },
        pk="id",
        foreign_keys=[("rule_id", "devmode_alert_rules", "id")],
    )
    db["devmode_alert_events"].create_index(["rule_id", "period_start"], unique=True)


@migrations(name="0005_topics_and_score_jobs")
def _topics_and_score_jobs(db: Database) -> None:
    """Trends by topic, faster trends, alert rules per topic, scoring as a background job. A
    sentiment prediction carries its row's topic label (kept in step by both scorings): a trend
    per topic reads one covering index, never the table itself or a join of a million rows."""
    predictions = db["devmode_predictions"]
    predictions.add_column("topic", str)
    db.execute(
        """update devmode_predictions set topic = (
               select t.label from devmode_predictions t where t.dataset_id =
               devmode_predictions.dataset_id and t.task = 'topic' and t.row_id = devmode_predictions.row_id)
           where task = 'sentiment'"""
    )
    for columns in (["dataset_id", "task", "date"], ["dataset_id", "task", "ticker", "date"]):
        db.execute(f"drop index if exists idx_devmode_predictions_{'_'.join(columns)}")
    covered = ["date", "sentiment", "is_negative"]
    predictions.create_index(["dataset_id", "task", *covered])
    predictions.create_index(["dataset_id", "task", "ticker", *covered, "topic"])
    predictions.create_index(["dataset_id", "task", "topic", *covered])
    db["devmode_alert_rules"].add_column("topic", str)
    db["devmode_score_jobs"].create(
        {
            "id": int,
            "dataset_id": int,
            "dataset": str,  # the name when the job was made, for messages
            "tasks": str,  # JSON list: sentiment, topic
            "status": str,  # queued | running | completed | failed | cancelled | interrupted
            "pid": int,
            "task": str,  # the task being scored now
            "rows_done": int,  # of the task being scored now
            "rows_total": int,
            "cancel_requested": int,
            "summary": str,  # JSON: per task, what ScoreSummary said
            "error": str,
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        defaults={"rows_done": 0, "rows_total": 0, "cancel_requested": 0},
    )
    db["devmode_score_jobs"].create_index(["dataset_id", "id"])


@migrations(name="0006_chat")
def _create_chat(db: Database) -> None:
    """Chat sandbox conversations: their settings, and every message with the settings it was
    sent under and, for replies, which limit ended them and the figures. Never an API key."""
    db["devmode_conversations"].create(
        {
            "id": int,
            "title": str,
            "settings": str,  # JSON: chat.ChatSettings as last used (backend, context, limits)
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"title", "settings", "created_at", "updated_at"},
    )
    db["devmode_chat_messages"].create(
        {
            "id": int,
            "conversation_id": int,
            "position": int,  # 0, 1, 2 ... in the conversation
            "role": str,  # user | assistant
            "content": str,  # as shown (masked words masked)
            "settings": str,  # JSON: chat.ChatSettings this exchange was sent under
            "context": str,  # JSON: the parts sent (kind, role, tokens, status), user rows only
            "report": str,  # JSON: chat.Reply's figures (stopped_by, detail, tokens, times)
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("conversation_id", "devmode_conversations", "id")],
        not_null={"conversation_id", "position", "role", "content", "created_at"},
    )
    db["devmode_chat_messages"].create_index(["conversation_id", "position"], unique=True)


@migrations(name="0007_job_times")
def _job_times(db: Database) -> None:
    """Scoring jobs get the start and finish stamps of training runs (one runner: jobs.py)."""
    db["devmode_score_jobs"].add_column("started_at", str)
    db["devmode_score_jobs"].add_column("finished_at", str)


@migrations(name="0008_sources_and_deliveries")
def _sources_and_deliveries(db: Database) -> None:
    """Feeds and watched folders that append to a dataset, the watcher that polls them, and
    alerts that reach people: channels per rule and a log of every delivery."""
    db["devmode_sources"].create(
        {
            "id": int,
            "kind": str,  # feed | folder
            "location": str,  # the feed's URL or the folder's absolute path
            "dataset": str,  # the dataset it appends to (created on the first poll)
            "every_seconds": int,
            "title": str,  # the feed's own title, once read
            "state": str,  # JSON: the feed's ETag and Last-Modified, or the folder's files taken
            "created_at": str,
            "last_poll_at": str,
            "last_ok_at": str,
            "last_added": int,
            "total_added": int,
            "last_error": str,  # NULL after a poll that worked
            "last_note": str,  # what a poll that worked still wants said (items without dates)
            "failures": int,  # polls failed in a row: the back-off grows with it
            "next_poll_at": str,
        },
        pk="id",
        not_null={"kind", "location", "dataset", "every_seconds", "created_at"},
        defaults={"total_added": 0, "failures": 0, "state": "{}"},
    )
    db["devmode_source_items"].create(
        {
            "dataset_id": int,
            "key": str,  # guid or link, else a hash of the normalised text and date
            "row_id": int,  # rowid in the dataset's table
            "source_id": int,
            "seen_at": str,
        },
        pk=("dataset_id", "key"),
    )
    db["devmode_watchers"].create(
        {
            "id": int,
            "status": str,  # jobs.STATUSES
            "pid": int,
            "cancel_requested": int,
            "passes": int,
            "summary": str,  # JSON: what the latest pass did
            "error": str,
            "created_at": str,
            "updated_at": str,
            "started_at": str,
            "finished_at": str,
        },
        pk="id",
        defaults={"cancel_requested": 0, "passes": 0, "summary": "{}"},
    )
    events = db["devmode_alert_events"]
    events.add_column("usual", float)  # spike: the mean share negative of the window
    events.add_column("band_high", float)  # the share negative above which the rule fires
    db["devmode_alert_channels"].create(
        {
            "id": int,
            "rule_id": int,
            "kind": str,  # webhook | email
            "target": str,  # the URL or the address
            "format": str,  # webhook: slack (Slack and Teams) | json
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("rule_id", "devmode_alert_rules", "id")],
        not_null={"rule_id", "kind", "target", "created_at"},
    )
    db["devmode_alert_deliveries"].create(
        {
            "id": int,
            "event_id": int,
            "channel_id": int,
            "status": str,  # pending | sending | delivered | failed
            "attempts": int,
            "last_error": str,
            "next_attempt_at": str,
            "claimed_at": str,
            "delivered_at": str,
            "created_at": str,
        },
        pk="id",
        defaults={"attempts": 0},
        not_null={"event_id", "channel_id", "status", "created_at"},
    )
    db["devmode_alert_deliveries"].create_index(["event_id", "channel_id"], unique=True)
    db["devmode_alert_deliveries"].create_index(["status", "next_attempt_at"])
    db["devmode_settings"].create(
        {"name": str, "value": str, "updated_at": str}, pk="name", not_null={"value"}
    )


@migrations(name="0009_stories_and_watchlist")
def _stories_and_watchlist(db: Database) -> None:
    """Stories: near-duplicate texts (syndicated, re-posted) collapsed into the first of them;
    a sentiment prediction says whether its row repeats an earlier story (``repeat``), covered
    by the trend index so that counting stories costs no table reads. A watchlist: the tickers
    texts are about when the data has no ticker column, found by cashtag and name."""
    db["devmode_story_rows"].create(
        {"dataset_id": int, "row_id": int, "story_id": int},  # story_id: the story's first row
        pk=("dataset_id", "row_id"),
    )
    db["devmode_story_rows"].create_index(["dataset_id", "story_id"])
    predictions = db["devmode_predictions"]
    predictions.add_column("repeat", int)
    db.execute(
        "drop index if exists idx_devmode_predictions_dataset_id_task_date_sentiment_is_negative"
    )
    predictions.create_index(["dataset_id", "task", "date", "sentiment", "is_negative", "repeat"])
    db["devmode_watchlist"].create(
        {"ticker": str, "name": str, "aliases": str, "created_at": str},  # aliases: JSON list
        pk="ticker",
    )
    db["devmode_mentions"].create(
        {"dataset_id": int, "ticker": str, "row_id": int}, pk=("dataset_id", "ticker", "row_id")
    )
    db["devmode_mentions"].create_index(["dataset_id", "row_id"])
    db["devmode_alert_rules"].add_column("stories", int)  # 1: count each story once


@migrations(name="0010_trend_rollup")
def _trend_rollup(db: Database) -> None:
    """Trends over months of feeds: ``devmode_trend_days`` (see ``rollup.SCOPES``), filled from
    the predictions already stored and kept by triggers from here on."""
    db.execute(
        """create table devmode_trend_days (
               dataset_id integer not null, scope text not null, value text not null,
               day text not null, n integer not null, total float not null,
               negative integer not null, story_n integer not null, story_total float not null,
               story_negative integer not null,
               primary key (dataset_id, scope, value, day)
           ) without rowid"""
    )
    fill_trend_days(db)
    trend_triggers(db, on=True)


@migrations(name="0011_label_review")
def _label_review(db: Database) -> None:
    """Label review: the suggestions a review makes, the history of every label changed (the
    original is never lost), and a label version per dataset that runs record (the file's hash
    stays the file's: it finds the published figures)."""
    db["devmode_datasets"].add_column("label_version", int, not_null_default=0)
    db["devmode_runs"].add_column("label_version", int, not_null_default=0)
    db["devmode_label_suggestions"].create(
        {
            "id": int,
            "dataset_id": int,
            "row_id": int,  # the rowid of the row in the dataset's table
            "label_column": str,  # the column reviewed: another one's suggestions are not shown
            "given": str,  # its label when reviewed
            "suggested": str,
            "confidence": float,  # the model's probability for the suggestion
            "given_probability": float,  # and for the label the row had
            "rank": int,  # 1 = most suspect
            "mode": str,  # quick | thorough
            "status": str,  # open | accepted | rejected
            "reviewed_at": str,
            "decided_at": str,
        },
        pk="id",
        not_null={"dataset_id", "row_id", "given", "suggested", "status", "reviewed_at"},
    )
    db["devmode_label_suggestions"].create_index(["dataset_id", "status", "rank"])
    db["devmode_label_history"].create(
        {
            "id": int,
            "dataset_id": int,
            "row_id": int,
            "old_label": str,
            "new_label": str,
            "source": str,  # review | edit
            "suggestion_id": int,
            "label_version": int,  # the dataset's label version this change made
            "changed_at": str,
        },
        pk="id",
        not_null={"dataset_id", "row_id", "new_label", "source", "label_version", "changed_at"},
    )
    db["devmode_label_history"].create_index(["dataset_id", "row_id"])


@migrations(name="0012_label_gain_and_out_of_domain")
def _label_gain_and_out_of_domain(db: Database) -> None:
    """A run's gain over the previous model on its own test rows, and the out-of-domain tests
    added to its report (another labelled dataset, with a label map when names differ)."""
    db["devmode_runs"].add_column("comparison", str)  # JSON: the previous run's model, same rows
    # why a row is suspect: model (confident learning) or duplicate (a near-copy labelled
    # otherwise, whose row id is duplicate_of)
    db["devmode_label_suggestions"].add_column("reason", str, not_null_default="model")
    db["devmode_label_suggestions"].add_column("duplicate_of", int)
    db["devmode_out_of_domain"].create(
        {
            "id": int,
            "run_id": int,
            "dataset": str,  # the dataset tested on, by name when it was tested
            "dataset_id": int,
            "label_version": int,  # its labels then
            "label_map": str,  # JSON: its class -> the model's class, where they differ
            "rows": int,
            "report": str,  # JSON: accuracy, macro-F1, per class, confusion matrix
            "distance": float,  # between its mean embedding and the training set's
            "tested_at": str,
        },
        pk="id",
        not_null={"run_id", "dataset", "dataset_id", "rows", "report", "tested_at"},
    )
    db["devmode_out_of_domain"].create_index(["run_id", "dataset_id"], unique=True)
    db["devmode_review_jobs"].create(  # a label review in a worker process (review_jobs.KIND)
        {
            **{"id": int, "dataset_id": int, "dataset": str, "mode": str, "base_model": str},
            **{"status": str, "pid": int, "cancel_requested": int, "error": str},
            "done": int,  # progress, in the units the review reports
            "total": int,
            "suggestions": int,  # stored when it completes
            **{"created_at": str, "updated_at": str, "started_at": str, "finished_at": str},
        },
        pk="id",
        not_null={"dataset_id", "dataset", "mode", "base_model", "status", "created_at"},
        defaults={"cancel_requested": 0, "done": 0, "total": 0},
    )
    db["devmode_review_jobs"].create_index(["dataset_id", "id"])


@migrations(name="0013_suites")
def _suites(db: Database) -> None:
    """Prompt suites (chat/suites): the suites people keep, each run of one with the suite as it
    ran, and one row per reply (cell x repeat) with its checks."""
    db["devmode_suites"].create(
        {"id": int, "name": str, "spec": str, "created_at": str, "updated_at": str},
        pk="id",
        not_null={"name", "spec", "created_at", "updated_at"},
    )
    db["devmode_suites"].create_index(["name"], unique=True)
    db["devmode_suite_runs"].create(  # a run of a suite (suites.store.KIND)
        {
            **{"id": int, "suite_id": int, "suite": str, "spec": str},  # spec: as it ran
            **{"status": str, "pid": int, "cancel_requested": int, "error": str},
            "done": int,  # replies stored so far, of total
            "total": int,
            "summary": str,  # JSON, when it finishes: cells, passed, failed, errors
            **{"created_at": str, "updated_at": str, "started_at": str, "finished_at": str},
        },
        pk="id",
        not_null={"suite_id", "suite", "spec", "status", "created_at"},
        defaults={"cancel_requested": 0, "done": 0, "total": 0},
    )
    db["devmode_suite_runs"].create_index(["suite_id", "id"])
    db["devmode_suite_results"].create(
        {
            **{"id": int, "run_id": int, "cell": str, "repeat": int},
            **{"prompt_id": str, "case_id": str, "variant": str, "prompt": str},
            **{"text": str, "stopped_by": str, "which": str, "detail": str},
            **{"prompt_tokens": int, "completion_tokens": int},
            **{"first_token_s": float, "total_s": float},
            "outcome": str,  # pass | fail | error (the reply never came: endpoint down)
            "checks": str,  # JSON: [{assertion, passed, reason}]
            "created_at": str,
        },
        pk="id",
        not_null={"run_id", "cell", "repeat", "variant", "outcome", "checks", "created_at"},
    )
    db["devmode_suite_results"].create_index(["run_id", "cell", "repeat"], unique=True)


@migrations(name="0014_masked_feed_addresses")
def _masked_feed_addresses(db: Database) -> None:
    """A dataset a feed created recorded the feed's whole address as its source, and showed it
    (an address may carry a token): keep only what ``addresses.mask`` shows. The source itself
    keeps the whole address, which it needs."""
    from devmode.addresses import mask

    for row in db["devmode_datasets"].rows_where("format = 'feed'", select="id, source"):
        db["devmode_datasets"].update(row["id"], {"source": mask(row["source"])})


@migrations(name="0015_reasons")
def _reasons(db: Database) -> None:
    """The words behind a scored text, by model and text SHA-256 (``monitor/reasons.py``)."""
    db["devmode_reasons"].create(
        {
            "model_id": int,
            "text_sha256": str,
            "label": str,
            "top_words": str,  # JSON: the words that pushed most toward the label
            "words": str,  # JSON: [{word, weight, class}] of every word
            "created_at": str,
        },
        pk=("model_id", "text_sha256"),
        not_null={"model_id", "text_sha256", "top_words", "words", "created_at"},
    )


@migrations(name="0016_evaluations")
def _evaluations(db: Database) -> None:
    """k-fold evaluations, out-of-fold predictions (``finetune/evaluation_tables.py``)."""
    create_evaluation_tables(db)


@migrations(name="0017_model_health")
def _model_health(db: Database) -> None:
    """Each prediction's top-class probability and its daily sums (``monitor/rollup.py``)."""
    create_health_rollup(db)


@migrations(name="0018_drift")
def _drift(db: Database) -> None:
    """The Monitor's drift figures, kept per model and dataset (``finetune/drift_table.py``)."""
    create_drift_table(db)


@migrations(name="0019_adaptations")
def _adaptations(db: Database) -> None:
    """Adapted base models and their jobs (``models/adapted_table.py``)."""
    create_adaptation_table(db)


@migrations(name="0020_prices_and_briefs")
def _prices_and_briefs(db: Database) -> None:
    """Prices datasets (``data/price_tables.py``) and alert briefs (``monitor/brief_table.py``)."""
    create_price_tables(db)
    add_brief_columns(db)
