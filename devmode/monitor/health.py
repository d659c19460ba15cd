"""The model's health on live text: how accurate the active sentiment model probably is on the
unlabelled texts it scored, period by period.

    health_trend(db, "headlines", period="week")
    # [{"period": "2020-05-18", "estimated_accuracy": 0.87, "volume": 42}, ...]

The estimate is the mean of each text's top-class probability. With calibrated probabilities
(a run's temperature, ``models/calibration.py``) a text scored 0.9 is right about 9 times in 10,
so the mean over a period is its expected accuracy: the accuracy estimate of NannyML's
confidence-based performance estimation (CBPE), written here because the ``nannyml`` package
pins plotly < 6. It needs no labels, and falls when the model meets text it is unsure about.
It cannot see a model that is confidently wrong: the drift figure, beside it, says when the
texts are unlike the training set. ``benchmarks/live_health.py`` measures both cases.

Each prediction stores its top-class probability (``confidence``); ``devmode_health_days``
sums them per dataset and day, kept by triggers beside the trend rollup (``rollup.py``).
"""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from devmode.monitor import trends
from devmode.monitor.rollup import HEALTH_TABLE


def health_trend(
    db: Database, dataset_name: str, *, period: str = trends.DEFAULT_PERIOD
) -> list[dict[str, Any]]:
    """Per period, oldest first: the estimated accuracy (mean top-class probability) of the
    active sentiment model's predictions over all the dataset's dated texts, and how many."""
    dataset = trends.dated_dataset(db, dataset_name, period)
    rows = db.execute(
        f"""select {trends.bucket_sql(period, "day")} as period,
                   sum(confidence_total) / sum(n), sum(n)
            from {HEALTH_TABLE} where dataset_id = ? and day > ''
            group by 1 having sum(n) > 0 order by 1""",
        [dataset.id],
    ).fetchall()
    return [
        {"period": period, "estimated_accuracy": float(estimate), "volume": int(volume)}
        for period, estimate, volume in rows
    ]


def health_summary(points: list[dict[str, Any]]) -> str | None:
    """'Estimated accuracy on live text: 0.91 in the latest week (42 texts), lowest 0.84 in
    the week of 2020-03-09.' or None without points."""
    if not points:
        return None
    latest = points[-1]
    lowest = min(points, key=lambda p: p["estimated_accuracy"])
    texts = "text" if latest["volume"] == 1 else "texts"
    line = (
        f"Estimated accuracy on live text (mean calibrated confidence): "
        f"{latest['estimated_accuracy']:.2f} in the latest period ({latest['volume']:,} {texts})"
    )
    if lowest is not latest:
        line += f", lowest {lowest['estimated_accuracy']:.2f} in the period of {lowest['period']}"
    return line + "."
