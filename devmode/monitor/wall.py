"""What the wall display (the Monitor's ``?kiosk=1``) shows: the index chart, open alerts, the
most negative stories of the latest day and a tile per watchlist entry, from one read.

    view = wall_view(db)                       # the busiest watched dataset, per week
    view = wall_view(db, "wire", period="day")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlite_utils import Database

from devmode.data import dates, ingest, sources
from devmode.monitor import alerts, trends, watchlist

# Stories listed under "most negative today", and alerts shown.
WALL_STORIES = 8
WALL_ALERTS = 5
# Tiles side by side: at the wall's 3rem type, more than five cut their figures short.
TILES_PER_ROW = 5
# What a wall address may say, for a message when it asks for what is not there.
ADDRESS_HELP = (
    "A wall address looks like /Monitor?kiosk=1&dataset=NAME&period=week (period: "
    f"{', '.join(trends.PERIODS)}; without dataset, the busiest watched one)."
)


@dataclass(frozen=True)
class Tile:
    """One watchlist entry (or ticker) at a glance: its latest period against the one before."""

    ticker: str
    period: str | None
    sentiment: float | None
    change: float | None  # against the period before
    share_negative: float | None
    volume: int

    def value_text(self) -> str:
        return "no texts" if self.sentiment is None else f"{self.sentiment:+.2f}"

    def change_text(self) -> str | None:
        return None if self.change is None else f"{self.change:+.2f}"

    def caption(self) -> str:
        if self.sentiment is None:
            return "nothing scored yet"
        return f"{self.share_negative:.0%} negative of {self.volume:,} · {self.period}"


@dataclass(frozen=True)
class Wall:
    dataset: str
    period: str
    points: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    stories: list[dict[str, Any]]
    stories_day: str | None
    tiles: list[Tile] = field(default_factory=list)
    marked: list[str] = field(default_factory=list)  # periods with an alert, for the chart

    @property
    def title(self) -> str:
        return trends.describe_scope(self.dataset, None, None, self.period)


def tile_rows(tiles: list[Tile]) -> list[list[Tile]]:
    """The tiles in rows of at most ``TILES_PER_ROW``."""
    return [tiles[i : i + TILES_PER_ROW] for i in range(0, len(tiles), TILES_PER_ROW)]


def default_dataset(db: Database) -> str | None:
    """The dataset a wall shows unless told: the latest-updated one a source feeds, else the
    latest-updated dated one."""
    dated = [d for d in ingest.list_datasets(db) if d.mapping.date]
    if not dated:
        return None
    fed = {source.dataset.lower() for source in sources.list_sources(db)}
    return max(dated, key=lambda d: (d.name.lower() in fed, d.updated_at)).name


def wall_view(
    db: Database,
    dataset: str | None = None,
    *,
    period: str = trends.DEFAULT_PERIOD,
    stories: bool = True,
) -> Wall | None:
    """Everything the wall shows, or None when there is no dated dataset yet."""
    dataset = dataset or default_dataset(db)
    if dataset is None:
        return None
    points = trends.sentiment_trend(db, dataset, period=period, stories=stories)
    events = alerts.alert_events(db, dataset)
    day = points and _latest_day(db, dataset)
    worst = (
        trends.without_empty_columns(
            trends.texts_in_period(
                db, dataset, period="day", start=day, stories=stories, limit=WALL_STORIES
            ),
            leave_out=("id",),  # a row id says nothing across a room
        )
        if day
        else []
    )
    return Wall(
        dataset=ingest.get_dataset(db, dataset).name,
        period=period,
        points=points,
        alerts=events[:WALL_ALERTS],
        stories=worst,
        stories_day=day or None,
        tiles=_tiles(db, dataset, period, stories),
        marked=alerts.marked_periods(events, period, None, None),
    )


def _latest_day(db: Database, dataset: str) -> str | None:
    """The latest day with scored texts, leaving out texts dated after tomorrow."""
    dataset_id = ingest.get_dataset(db, dataset).id
    return db.execute(
        "select max(date) from devmode_predictions where dataset_id = ? and task = 'sentiment' "
        "and date <= ?",
        [dataset_id, dates.horizon()],
    ).fetchone()[0]


def _tiles(db: Database, dataset: str, period: str, stories: bool) -> list[Tile]:
    """A tile per watchlist entry (data without a ticker column), else per busiest ticker."""
    if watchlist.uses_watchlist(ingest.get_dataset(db, dataset)):
        tickers = [e.ticker for e in watchlist.list_entries(db)]
    else:
        tickers = trends.scored_tickers(db, dataset)[: trends.MAX_SPLIT_VALUES]
    tiles = []
    for ticker in tickers:
        points = trends.current_points(
            trends.sentiment_trend(db, dataset, period=period, ticker=ticker, stories=stories)
        )
        if not points:
            tiles.append(Tile(ticker, None, None, None, None, 0))
            continue
        last = points[-1]
        change = last["sentiment"] - points[-2]["sentiment"] if len(points) > 1 else None
        tiles.append(
            Tile(
                ticker,
                last["period"],
                last["sentiment"],
                change,
                last["share_negative"],
                last["volume"],
            )
        )
    return tiles
