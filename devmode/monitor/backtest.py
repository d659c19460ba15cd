"""What a rule would have raised over the history already scored, without storing anything:
the periods it fires on with their figures and top stories, the count per year, and, against a
prices dataset, what the price did next.

    $ python -m devmode alerts backtest headlines --kind spike --threshold 2 --prices stocks --json
    $ python -m devmode alerts backtest --rule 3

    result = backtest(db, "headlines", RuleSettings(kind="spike", threshold=2))
    result["fires"]     # [{"period": "2020-03-09", "value": 2.6, "stories": [...]}, ...]

The fires are the ones the watcher would store as events (``alerts.rule_fires`` decides both),
so a rule saved after its preview raises exactly the periods the preview showed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from sqlite_utils import Database

from devmode.data import prices
from devmode.errors import DevmodeError
from devmode.monitor import alerts, market, trends
from devmode.specs import Settings, setting

# Stories listed with each fire (the most negative first, as the alert's message lists them).
STORIES_PER_FIRE = 3
STORY_KEYS = ("id", "date", "text", "sentiment", "link")
# The rule's settings a backtest takes (how an alert is delivered changes nothing it shows).
RULE_OPTIONS = tuple(s.name for s in alerts.RuleSettings.specs() if not s.name.startswith("brief"))


class NothingToBacktest(DevmodeError):
    """The dataset has no scored, dated rows in the rule's scope."""


@dataclass(frozen=True)
class PriceCheck(Settings):
    """What a backtest sets against prices."""

    error = DevmodeError

    prices: str | None = setting(
        None,
        "A prices dataset: each fire gains its forward return, and the result the hit rate "
        "against the base rate and the lead/lag of sentiment and returns. The rule's ticker's "
        "series, or the index for a rule on all texts.",
        label="Prices",
    )
    horizon: int = setting(
        1, "Periods ahead a fire's forward return is measured over.", minimum=1, label="Horizon"
    )
    drop: float = setting(
        2.0,
        "A fall of at least this many percent over the horizon is a hit.",
        above=0,
        maximum=100,
        label="Drop (%)",
    )


def backtest(
    db: Database,
    dataset_name: str,
    settings: alerts.RuleSettings,
    check: PriceCheck | None = None,
    *,
    stories: int = STORIES_PER_FIRE,
) -> dict[str, Any]:
    """``{"rule", "periods", "fires", "per_year"}``, plus the price fields when ``check`` names
    a prices dataset (``market.price_fields``)."""
    return _backtest(db, dataset_name, settings, check, stories=stories)[0]


def _backtest(
    db: Database,
    dataset_name: str,
    settings: alerts.RuleSettings,
    check: PriceCheck | None = None,
    *,
    stories: int = STORIES_PER_FIRE,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(``backtest``'s result, the rule's trend it read)."""
    series = closes = None
    if check and check.prices:  # the prices first: a wrong series is named before any work
        price_set = prices.get_price_set(db, check.prices)
        series = prices.series_ticker(price_set, settings.ticker)
        closes = market.period_closes(db, price_set.name, series, settings.period)
        market.check_horizon(closes, settings.period, check.horizon, price_set.name)
    points = alerts.rule_points(db, dataset_name, settings)
    if not points:
        raise NothingToBacktest(_why_nothing(db, dataset_name, settings))
    fires = [
        {
            "period": fire.point["period"],
            **{k: v for k, v in fire.event_values().items() if k != "period_start"},
            "stories": _stories(db, dataset_name, settings, fire.point["period"], stories),
        }
        for fire in alerts.rule_fires(settings, points)
    ]
    result: dict[str, Any] = {
        "rule": {"dataset": dataset_name, "description": _describe(settings), **settings.shown()},
        "periods": len(points),
        "first_period": points[0]["period"],
        "last_period": points[-1]["period"],
        "fires": fires,
        "per_year": dict(sorted(Counter(f["period"][:4] for f in fires).items())),
    }
    if check and check.prices:
        result["prices"] = {**asdict(check), "prices": price_set.name, "series": series or "index"}
        result.update(
            market.price_fields(
                fires,
                points,
                closes,
                period=settings.period,
                horizon=check.horizon,
                drop=check.drop,
                min_volume=settings.min_volume,
            )
        )
    return result, points


@dataclass(frozen=True)
class Preview:
    """A backtest as the Monitor's rule form shows it: the result, the rule's trend to draw
    (``health`` when it watches the model), the summary and a row per fire."""

    result: dict[str, Any]
    points: list[dict[str, Any]]
    health: bool
    title: str
    lines: list[str]
    rows: list[dict[str, Any]]

    @property
    def fired(self) -> list[str]:
        return fired_periods(self.result)


def preview(
    db: Database, dataset_name: str, settings: alerts.RuleSettings, check: PriceCheck | None = None
) -> Preview:
    """``backtest`` with what a page draws of it."""
    result, points = _backtest(db, dataset_name, settings, check)  # the trend read once
    s = settings
    return Preview(
        result=result,
        points=[p for p in points if s.kind == "model_health" or p["volume"]],
        health=s.kind == "model_health",
        title="Preview: " + trends.describe_scope(dataset_name, s.ticker, s.topic, s.period),
        lines=summary_lines(result),
        rows=fire_rows(result),
    )


def backtest_rule(db: Database, rule_id: int, check: PriceCheck | None = None) -> dict[str, Any]:
    """``backtest`` of a saved rule, on its own dataset."""
    rule = alerts.get_rule(db, rule_id)
    dataset = db["devmode_datasets"].get(rule.dataset_id)["name"]
    result = backtest(db, dataset, rule.settings, check)
    result["rule"]["id"] = rule.id
    return result


def _why_nothing(db: Database, dataset: str, settings: alerts.RuleSettings) -> str:
    scored = db.execute(
        """select count(*) from devmode_predictions where task = 'sentiment' and dataset_id =
           (select id from devmode_datasets where lower(name) = lower(?))""",
        [dataset],
    ).fetchone()[0]
    if not scored:
        return (
            f"Nothing to backtest: no rows of {dataset} are scored yet. Score the dataset first "
            f"(python -m devmode score {dataset}), then backtest the rule."
        )
    why = trends.why_no_trend(db, dataset, ticker=settings.ticker, topic=settings.topic)
    return (
        f"Nothing to backtest: {why} Pick a ticker or topic with scored texts (python -m devmode "
        f"trends {dataset} --by ticker lists them)."
    )


def _describe(settings: alerts.RuleSettings) -> str:
    return alerts.AlertRule(0, 0, settings, "").describe()


def _stories(
    db: Database, dataset: str, settings: alerts.RuleSettings, start: str, limit: int
) -> list[dict[str, Any]]:
    """The period's top stories (none for a model-health rule: it is about the model)."""
    if settings.kind == "model_health" or limit < 1:
        return []
    rows = trends.texts_in_period(
        db,
        dataset,
        period=settings.period,
        start=start,
        ticker=settings.ticker,
        topic=settings.topic,
        stories=settings.stories,
        limit=limit,
    )
    return [{k: row[k] for k in STORY_KEYS} for row in rows]


def fired_periods(result: dict[str, Any]) -> list[str]:
    """The periods a chart marks."""
    return [f["period"] for f in result["fires"]]


def fire_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """A table row per fire: the period, what the rule measured, its top story and, with
    prices, the forward return."""
    kind = result["rule"]["kind"]
    rows = []
    for fire in result["fires"]:
        row = {
            "period": fire["period"],
            "figure": alerts.event_figure(fire, kind),
            "value": round(fire["value"], 3),
            "top story": fire["stories"][0]["text"] if fire["stories"] else "",
        }
        if "hit_rate" in result:
            ret = fire["forward_return"]
            row["forward return"] = "-" if ret is None else f"{ret:+.1%}"
        rows.append(row)
    return rows


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The backtest as a person reads it: what was tested, how often it fired and when, and
    what prices did."""
    rule = result["rule"]
    fires = result["fires"]
    period = rule["period"]
    saved = f"Rule {rule['id']}" if "id" in rule else "Rule (not saved)"
    lines = [
        f"{saved}: {rule['description']} on {rule['dataset']}; {result['periods']:,} {period}s "
        f"from {result['first_period']} to {result['last_period']}.",
        f"Fired {len(fires)} time{'s' if len(fires) != 1 else ''}"
        + (": " + ", ".join(f"{y} {n}" for y, n in result["per_year"].items()) if fires else "")
        + ".",
    ]
    if "hit_rate" in result:
        p = result["prices"]
        lines.append(
            f"Prices: {p['series']} from {p['prices']}, over {p['horizon']} {period}"
            f"{'s' if p['horizon'] != 1 else ''}, a fall of {p['drop']:g}% or more: hit rate "
            f"{_share(result['hit_rate'])} ({result['hits']} of {result['fires_with_return']} "
            f"fires with a return) against a base rate of {_share(result['base_rate'])} "
            f"({result['periods_with_return']:,} {period}s)."
        )
    return lines


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"
