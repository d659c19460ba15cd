"""Alert rules on a dataset's sentiment trend, their evaluation after every scoring, and the
events they raise.

    $ python -m devmode alerts add headlines --kind spike --threshold 2 --window 8

    rule = add_alert_rule(db, "headlines", RuleSettings(kind="spike", threshold=2))  # evaluated
    evaluate_alerts(db, "headlines")        # after scoring: new events, once per rule and period
    alert_events(db, "headlines")           # open events, newest period first

A rule's settings (``RuleSettings``) are defined once, with their bounds and help: the CLI's
``alerts add`` options and the Monitor page's form are made from them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlite_utils import Database

from devmode import addresses
from devmode.data import ingest
from devmode.db import utc_now
from devmode.errors import DevmodeError
from devmode.monitor import health, trends
from devmode.monitor.rollup import HEALTH_TABLE
from devmode.specs import Settings, setting

ALERT_KINDS = ("share_negative", "spike", "volume_spike", "model_health")
# Kinds that compare a period with the ``window`` periods before it.
WINDOW_KINDS = ("spike", "volume_spike")
# A spike needs this many earlier periods to say what is normal.
MIN_SPIKE_WINDOW = 3
# The smallest spread a spike is measured against: flat history is not infinitely calm.
MIN_SPREAD = 0.02
# The rule form's section for the brief's settings.
BRIEF = "Brief with each alert"
EMBEDDED_BRIEF = "embedded"
# A brief holds the alert back at most this long, however it is set.
MAX_BRIEF_TIMEOUT_S = 120.0


class InvalidAlertRule(DevmodeError):
    """A rule that cannot work; the message says which setting and what would."""


# Settings stored as NULL by rules made before briefs existed: they take their defaults.
BRIEF_DEFAULTS = ("brief_api_key_env", "brief_timeout")


class AlertNotFound(DevmodeError):
    """No alert has that id."""


@dataclass(frozen=True)
class RuleSettings(Settings):
    """What a rule watches and when it fires."""

    error = InvalidAlertRule

    kind: str = setting(
        "share_negative",
        "share_negative: the share of negative texts is above the threshold; spike: it is that "
        "many standard deviations above the previous periods; volume_spike: the number of texts "
        "(or stories) is that many standard deviations above the previous periods'; "
        "model_health: the model's estimated accuracy on the texts it scored falls below the "
        "threshold.",
        choices=ALERT_KINDS,
        label="Kind",
    )
    threshold: float = setting(
        0.5,
        "A share (0.6) for share_negative, a z-score (2) for spike and volume_spike, an "
        "accuracy (0.8) for model_health.",
        above=0,
        label="Threshold",
    )
    period: str = setting(
        trends.DEFAULT_PERIOD, "The trend's period.", choices=trends.PERIODS, label="Period"
    )
    window: int = setting(
        8,
        "spike, volume_spike: periods of history to compare with.",
        minimum=1,
        label="Window (spikes)",
    )
    min_volume: int = setting(
        5, "Ignore periods with fewer texts.", minimum=1, label="Minimum texts"
    )
    ticker: str | None = setting(
        None, "Only texts filed under this ticker (default: all).", label="Ticker"
    )
    topic: str | None = setting(
        None, "Only texts of this topic (active topic model; default: all).", label="Topic"
    )
    stories: bool = setting(
        False,
        "Count each story once: copies syndicated across feeds or re-posted are not counted again.",
        label="Count stories",
    )
    brief: str | None = setting(
        None,
        "Send a brief with each alert: 2-4 bullet points on its top stories, each citing them, "
        "written by 'embedded' (the embedded SmolLM2) or an OpenAI-compatible endpoint's URL "
        "(e.g. http://127.0.0.1:8000/v1), and checked before it goes out (default: none).",
        label="Brief by",
        section=BRIEF,
    )
    brief_model: str | None = setting(
        None,
        "The model the brief's endpoint serves (a URL needs it).",
        label="Model",
        section=BRIEF,
    )
    brief_api_key_env: str = setting(
        "OPENAI_API_KEY",
        "The environment variable holding the brief endpoint's API key (the key is never stored).",
        label="API key variable",
        section=BRIEF,
    )
    brief_timeout: float = setting(
        10.0,
        "Seconds the brief may take; past them the alert goes out with its stories alone.",
        above=0,
        maximum=MAX_BRIEF_TIMEOUT_S,
        unit="s",
        label="Brief timeout",
        section=BRIEF,
    )

    def check_together(self) -> None:
        if self.kind in ("share_negative", "model_health") and not self.threshold < 1:
            example = "0.6" if self.kind == "share_negative" else "0.8"
            raise InvalidAlertRule(
                f"A {self.kind} threshold is a share between 0 and 1, e.g. {example}; found "
                f"{self.threshold}."
            )
        if self.kind == "model_health" and (self.ticker or self.topic or self.stories):
            raise InvalidAlertRule(
                "A model_health rule watches the model's estimated accuracy over all of the "
                "dataset's texts; found a ticker, topic or stories setting. Drop it (health is "
                "not kept per ticker or topic)."
            )
        if self.brief:
            self._check_brief()
        if self.kind in WINDOW_KINDS and self.window < MIN_SPIKE_WINDOW:
            raise InvalidAlertRule(
                f"A {self.kind} rule needs a threshold above 0 (standard deviations, e.g. 2) and a "
                f"window of at least {MIN_SPIKE_WINDOW} periods; found threshold "
                f"{self.threshold}, window {self.window}."
            )

    def _check_brief(self) -> None:
        if self.kind == "model_health":
            raise InvalidAlertRule(
                "A model_health alert is about the model, not about stories, so it has no "
                "brief. Drop --brief, or brief a rule on the texts (share_negative, spike, "
                "volume_spike)."
            )
        if self.brief == EMBEDDED_BRIEF:
            return
        try:
            addresses.check_address(self.brief, what="brief endpoint")
        except addresses.InvalidAddress as e:
            raise InvalidAlertRule(
                f"{e} Expected 'embedded' or an OpenAI-compatible endpoint such as "
                "http://127.0.0.1:8000/v1."
            ) from None
        if not (self.brief_model or "").strip():
            raise InvalidAlertRule(
                f"A brief from {addresses.mask(self.brief)} needs the model it serves: add "
                "--brief-model NAME (e.g. smollm2 for python -m devmode serve)."
            )

    def shown(self) -> dict[str, Any]:
        """The settings as a message or a JSON body carries them: the brief endpoint's address
        masked (it may hold a token)."""
        values = asdict(self)
        if self.brief and self.brief != EMBEDDED_BRIEF:
            values["brief"] = addresses.mask(self.brief)
        return values

    def describe_brief(self) -> str:
        """'a brief by the embedded model', or by smollm2 at http://127.0.0.1:8000/…"""
        if not self.brief:
            return ""
        by = (
            "the embedded model"
            if self.brief == EMBEDDED_BRIEF
            else f"{self.brief_model} at {addresses.mask(self.brief)}"
        )
        return f"a brief by {by}"


class Delivery:
    """The statuses of an event's delivery to one channel: queued with the event (``PENDING``),
    claimed by one watcher (``SENDING``), then ``DELIVERED`` or, after the last try, ``FAILED``.
    Declared here because an event queues its deliveries in the transaction that stores it;
    ``delivery.py`` sends them."""

    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"
    UNFINISHED = (PENDING, SENDING)


@dataclass(frozen=True)
class AlertRule:
    """A stored rule: its settings, on one dataset."""

    id: int
    dataset_id: int
    settings: RuleSettings
    created_at: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AlertRule:
        stored = {k: v for k, v in row.items() if v is not None or k not in BRIEF_DEFAULTS}
        settings = RuleSettings.from_stored({**stored, "stories": bool(row.get("stories"))})
        return cls(row["id"], row["dataset_id"], settings, row["created_at"])

    def label(self) -> str:
        """'Rule 3: share negative above 60% in a week (...)': the rule in a select."""
        return f"Rule {self.id}: {self.describe()}"

    def describe(self) -> str:
        s = self.settings
        scope = (
            " and ".join(
                f"{name} {value}"
                for name, value in (("ticker", s.ticker), ("topic", s.topic))
                if value
            )
            or "all texts"
        )
        if s.kind == "share_negative":
            what = f"share negative above {s.threshold:.0%}"
        elif s.kind == "model_health":
            what = f"estimated accuracy below {s.threshold:.0%}"
        elif s.kind == "volume_spike":
            what = (
                f"{'stories' if s.stories else 'texts'} {s.threshold:g} standard deviations above "
                f"the previous {s.window} {s.period}s' count"
            )
        else:
            what = (
                f"share negative {s.threshold:g} standard deviations above the previous "
                f"{s.window} {s.period}s"
            )
        texts = "text" if s.min_volume == 1 else "texts"
        counted = "stories" if s.stories else texts
        return f"{what} in a {s.period} ({scope}, at least {s.min_volume} {counted})"


def add_alert_rule(
    db: Database, dataset_name: str, settings: RuleSettings | None = None, **values: Any
) -> AlertRule:
    """Store a rule; it is evaluated now and after every scoring of the dataset.

    :param values: the settings as keywords, instead of ``settings`` (``kind="spike", ...``)
    """
    settings = settings or RuleSettings.from_dict(values)
    dataset = trends.dated_dataset(db, dataset_name, settings.period)
    if settings.kind == "model_health" and not db[HEALTH_TABLE].count_where(
        "dataset_id = ? and n > 0 and day > ''", [dataset.id]
    ):
        raise InvalidAlertRule(
            f"A model_health rule reads the model's confidence on {dataset.name}'s scored texts, "
            f"and none are scored yet. Score the dataset first (python -m devmode score "
            f"{dataset.name}), then add the rule."
        )
    values = asdict(settings)
    values.update(ticker=settings.ticker or None, topic=settings.topic or None)
    with db.atomic():  # the rule and what it raises over the data scored so far, or neither
        rule_id = (
            db["devmode_alert_rules"]
            .insert({"dataset_id": dataset.id, **values, "created_at": utc_now()})
            .last_pk
        )
        rule = AlertRule.from_row(db["devmode_alert_rules"].get(rule_id))
        _evaluate_rule(db, dataset_name, rule)
    return rule


def count_events(db: Database, rule_id: int) -> int:
    """How many alerts the rule has raised (acknowledged ones included)."""
    return db["devmode_alert_events"].count_where("rule_id = ?", [rule_id])


class RuleNotFound(DevmodeError):
    """No alert rule has that id."""


def get_rule(db: Database, rule_id: int) -> AlertRule:
    row = next(db["devmode_alert_rules"].rows_where("id = ?", [rule_id]), None)
    if row is None:
        raise RuleNotFound(
            f"No alert rule with id {rule_id}. See a dataset's rules with python -m devmode "
            "alerts rules DATASET."
        )
    return AlertRule.from_row(row)


def list_alert_rules(db: Database, dataset_name: str) -> list[AlertRule]:
    dataset = ingest.get_dataset(db, dataset_name)
    return [
        AlertRule.from_row(r)
        for r in db["devmode_alert_rules"].rows_where("dataset_id = ?", [dataset.id], order_by="id")
    ]


def delete_alert_rule(db: Database, rule_id: int) -> None:
    """Delete a rule with its events, channels and delivery log."""
    with db.atomic():
        db.execute(
            "delete from devmode_alert_deliveries where event_id in "
            "(select id from devmode_alert_events where rule_id = ?)",
            [rule_id],
        )
        db["devmode_alert_channels"].delete_where("rule_id = ?", [rule_id])
        db["devmode_alert_events"].delete_where("rule_id = ?", [rule_id])
        db["devmode_alert_rules"].delete(rule_id)


def evaluate_alerts(db: Database, dataset_name: str) -> list[dict[str, Any]]:
    """Check every rule of the dataset against its trend; store and return the new events.

    An event is kept once per rule and period, so evaluating again only adds periods that are
    new (or newly over the line after more texts were scored).
    """
    new = []
    with db.atomic():  # one evaluation at a time: an event is never stored twice
        for rule in list_alert_rules(db, dataset_name):
            new += _evaluate_rule(db, dataset_name, rule)
    return new


def _evaluate_rule(db: Database, dataset_name: str, rule: AlertRule) -> list[dict[str, Any]]:
    """The rule's new events over the dataset's trend, stored, each queued for delivery on the
    rule's channels (in the same transaction: an event is delivered once or not at all)."""
    new = []
    for fire in rule_fires(rule.settings, rule_points(db, dataset_name, rule.settings)):
        if db["devmode_alert_events"].count_where(
            "rule_id = ? and period_start = ?", [rule.id, fire.point["period"]]
        ):
            continue
        stamp = utc_now()
        event = {"rule_id": rule.id, **fire.event_values(), "created_at": stamp}
        event["id"] = db["devmode_alert_events"].insert(event).last_pk
        db.execute(
            """insert or ignore into devmode_alert_deliveries
                   (event_id, channel_id, status, attempts, next_attempt_at, created_at)
               select ?, id, ?, 0, ?, ? from devmode_alert_channels where rule_id = ?""",
            [event["id"], Delivery.PENDING, stamp, stamp, rule.id],
        )
        new.append(event)
    return new


@dataclass(frozen=True)
class Fire:
    """A period over a rule's line: the point, what the rule measured there, and its band."""

    point: dict[str, Any]
    value: float
    usual: float | None
    band_high: float | None

    def event_values(self) -> dict[str, Any]:
        """The event's stored figures."""
        return {
            "period_start": self.point["period"],
            "value": self.value,
            "share_negative": self.point.get("share_negative"),  # None for model_health
            "volume": self.point["volume"],
            "usual": self.usual,
            "band_high": self.band_high,
        }


def rule_points(db: Database, dataset_name: str, settings: RuleSettings) -> list[dict[str, Any]]:
    """The trend a rule reads, oldest first, up to tomorrow (a period that starts later raises
    nothing); for a volume spike, with the empty periods in between as volume 0."""
    s = settings
    if s.kind == "model_health":
        trend = health.health_trend(db, dataset_name, period=s.period)
    else:
        trend = trends.sentiment_trend(
            db, dataset_name, period=s.period, ticker=s.ticker, topic=s.topic, stories=s.stories
        )
    points = trends.current_points(trend)
    return trends.with_empty_periods(points, s.period) if s.kind == "volume_spike" else points


def rule_fires(settings: RuleSettings, points: list[dict[str, Any]]) -> list[Fire]:
    """Every period of ``points`` (``rule_points``) the rule fires on, oldest first: what the
    watcher stores as events and what a backtest lists."""
    out = []
    for i, point in enumerate(points):
        if point["volume"] < settings.min_volume:
            continue
        earlier = points[:i]
        value = rule_value(settings, earlier, point)
        if value is None or not fires(settings, value):
            continue
        out.append(Fire(point, value, *rule_band(settings, earlier)))
    return out


def rule_value(
    settings: RuleSettings, earlier: list[dict[str, Any]], point: dict[str, Any]
) -> float | None:
    """What the rule compares with its threshold at ``point``: the share negative, its
    z-score against the ``window`` earlier periods (None until there are that many), the
    volume's z-score, or the estimated accuracy."""
    if settings.kind == "share_negative":
        return point["share_negative"]
    if settings.kind == "model_health":
        return point["estimated_accuracy"]
    history = _history(settings, earlier)
    if history is None:
        return None  # not enough history to say what is normal
    mean, spread = history
    return (point[_measure(settings)] - mean) / spread


def rule_band(
    settings: RuleSettings, earlier: list[dict[str, Any]]
) -> tuple[float | None, float | None]:
    """(the usual share negative, the share above which the rule fires) before a period: for
    a spike, the window's mean and mean + threshold x spread (for a volume spike, in texts);
    for a share, (None, threshold); for model health, (None, threshold): the line it fires
    below."""
    if settings.kind in ("share_negative", "model_health"):
        return None, settings.threshold
    history = _history(settings, earlier)
    if history is None:
        return None, None
    mean, spread = history
    return mean, mean + settings.threshold * spread


def fires(settings: RuleSettings, value: float) -> bool:
    """Whether ``value`` is over the rule's line: above it, or for model health below it."""
    if settings.kind == "model_health":
        return value < settings.threshold
    return value > settings.threshold


def _measure(settings: RuleSettings) -> str:
    """The point's figure a spike rule watches."""
    return "volume" if settings.kind == "volume_spike" else "share_negative"


def _history(settings: RuleSettings, earlier: list[dict[str, Any]]) -> tuple[float, float] | None:
    """The mean and spread of the window's share negative (at least ``MIN_SPREAD``), or of its
    volume: every period counts, the empty ones as 0, and the spread is at least the square
    root of the mean (counts of independent arrivals vary that much by chance) and at least 1."""
    volume = settings.kind == "volume_spike"
    history: list[float] = []
    for p in reversed(earlier):  # newest first, stopping at the window: O(window) per period
        if len(history) == settings.window:
            break
        if volume or p["volume"] >= settings.min_volume:
            history.append(p[_measure(settings)])
    if len(history) < settings.window:
        return None
    mean = sum(history) / len(history)
    spread = (sum((x - mean) ** 2 for x in history) / (len(history) - 1)) ** 0.5
    if volume:
        return mean, max(spread, mean**0.5, 1.0)
    return mean, max(spread, MIN_SPREAD)


def alert_events(
    db: Database, dataset_name: str, *, include_acknowledged: bool = False
) -> list[dict[str, Any]]:
    """Events of the dataset's rules, newest period first, each with its rule's description,
    period, ticker and topic, and ``summary``: the line a person reads about it."""
    rules = {r.id: r for r in list_alert_rules(db, dataset_name)}
    if not rules:
        return []
    where = f"rule_id in ({', '.join('?' * len(rules))})"
    if not include_acknowledged:
        where += " and acknowledged_at is null"
    events = db["devmode_alert_events"].rows_where(
        where, list(rules), order_by="period_start desc, id desc"
    )
    out = []
    for e in events:
        rule = rules[e["rule_id"]]
        event = {
            **e,
            "rule": rule.describe(),
            "kind": rule.settings.kind,
            "period": rule.settings.period,
            "ticker": rule.settings.ticker,
            "topic": rule.settings.topic,
        }
        event["summary"] = describe_event(event)
        out.append(event)
    return out


def describe_event(event: dict[str, Any]) -> str:
    """'**Week of 2020-05-18** · AAPL: 67% negative of 3 texts — share negative above 50% ...'"""
    scope = "".join(f" · {x}" for x in (event["ticker"], event["topic"]) if x)
    return (
        f"**{event['period'].capitalize()} of {event['period_start']}**{scope}: "
        f"{event_figure(event, event['kind'])} — {event['rule']}"
    )


def event_figure(event: dict[str, Any], kind: str) -> str:
    """What an event of a rule of ``kind`` measured: '67% negative of 3 texts', or 'estimated
    accuracy 71% on 42 texts'."""
    texts = "text" if event["volume"] == 1 else "texts"
    if kind == "model_health":
        return f"estimated accuracy {event['value']:.0%} on {event['volume']:,} {texts}"
    if kind == "volume_spike":
        usual = f", usually {event['usual']:,.0f}" if event.get("usual") is not None else ""
        return f"{event['volume']:,} {texts}{usual} ({event['share_negative']:.0%} negative)"
    return f"{event['share_negative']:.0%} negative of {event['volume']:,} {texts}"


def marked_periods(
    events: list[dict[str, Any]], period: str, ticker: str | None, topic: str | None
) -> list[str]:
    """The starts of the periods a sentiment trend of this period, ticker and topic should
    mark (a model_health alert is not one of them)."""
    return [
        e["period_start"]
        for e in events
        if e["period"] == period
        and e["ticker"] == ticker
        and e["topic"] == topic
        and e["kind"] != "model_health"  # not a sentiment event: its own line, not this chart
    ]


def acknowledge_alert(db: Database, event_id: int) -> None:
    if not db["devmode_alert_events"].count_where("id = ?", [event_id]):
        raise AlertNotFound(
            f"No alert with id {event_id}. List them with python -m devmode alerts list DATASET."
        )
    db["devmode_alert_events"].update(event_id, {"acknowledged_at": utc_now()})
