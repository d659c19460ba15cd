"""Prices set beside sentiment: a series' close per period, each period's forward return, the
share of periods followed by a fall, and how the sentiment index leads or lags returns.

    closes = period_closes(db, "stocks", "AAPL", "week")     # {"2020-03-09": 61.2, ...}
    forward = forward_returns(closes, "week", horizon=1)     # {"2020-03-09": -0.031, ...}
    lead_lag(points, period_returns(closes, "week"), "week") # [{"lag": -5, "corr": ...}, ...]

A period's close is the last close inside it. The return of a period is its close over the
previous period's; the forward return of period t over N periods is close(t + N) / close(t) - 1.
Periods are calendar periods: a period with no close has no return, and neither has the one
after it (nothing is carried over a gap).
"""

from __future__ import annotations

import math
from typing import Any

from sqlite_utils import Database

from devmode.data import dates, prices
from devmode.errors import DevmodeError

# Lags of the lead/lag correlation: k > 0 pairs the sentiment of period t with the return of
# period t + k (sentiment leading prices).
LAGS = range(-5, 6)
# Pairs below this give no correlation (its interval needs n > 3).
MIN_PAIRS = 5
# The normal quantile of a two-sided 95% interval.
Z95 = 1.959964


class PriceHistoryTooShort(DevmodeError):
    """The horizon reaches past the prices' history."""


def period_closes(db: Database, name: str, ticker: str, period: str) -> dict[str, float]:
    """{period start: the last close inside it}, oldest first."""
    out: dict[str, float] = {}
    for day, close in prices.closes(db, name, ticker):
        out[dates.period_start(period, day)] = close  # oldest first: the last one wins
    return out


def forward_returns(closes: dict[str, float], period: str, horizon: int) -> dict[str, float]:
    """{period start: close(t + horizon) / close(t) - 1} where both closes exist."""
    out = {}
    for start, close in closes.items():
        later = closes.get(dates.shift_period(period, start, horizon))
        if later is not None:
            out[start] = later / close - 1
    return out


def period_returns(closes: dict[str, float], period: str) -> dict[str, float]:
    """{period start: close(t) / close(t - 1) - 1} where both closes exist."""
    return {
        start: close / earlier - 1
        for start, close in closes.items()
        if (earlier := closes.get(dates.shift_period(period, start, -1))) is not None
    }


def check_horizon(closes: dict[str, float], period: str, horizon: int, name: str) -> None:
    """Refuse a horizon that no period's forward return fits in."""
    if not closes:
        raise PriceHistoryTooShort(f"Prices dataset {name!r} has no closes for this series.")
    first, last = min(closes), max(closes)
    span = len(dates.calendar_periods(period, first, last))
    if horizon >= span:
        raise PriceHistoryTooShort(
            f"A horizon of {horizon} {period}s is longer than the prices' history: {name!r} "
            f"covers {span} {period}s ({first} to {last}). Expected a horizon below {span}; "
            "use a shorter one, or store a longer price history."
        )


def correlation(xs: list[float], ys: list[float]) -> dict[str, Any]:
    """Pearson's r of the pairs with its 95% interval (Fisher's z: atanh(r) +- 1.96 /
    sqrt(n - 3)); ``corr`` None below ``MIN_PAIRS`` pairs or when a side does not vary."""
    n = len(xs)
    empty = {"corr": None, "low": None, "high": None, "n": n}
    if n < MIN_PAIRS:
        return empty
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx <= 0 or syy <= 0:
        return empty
    r = max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))
    if abs(r) == 1.0:
        return {"corr": r, "low": r, "high": r, "n": n}
    z, half = math.atanh(r), Z95 / math.sqrt(n - 3)
    return {"corr": r, "low": math.tanh(z - half), "high": math.tanh(z + half), "n": n}


def lead_lag(
    points: list[dict[str, Any]], returns: dict[str, float], period: str
) -> list[dict[str, Any]]:
    """For each lag k in ``LAGS``: the correlation of the sentiment index of period t with
    the return of period t + k, over the periods that have both, with its interval and n."""
    index = {p["period"]: p["sentiment"] for p in points if p.get("sentiment") is not None}
    rows = []
    for lag in LAGS:
        pairs = [
            (s, returns[later])
            for start, s in index.items()
            if (later := dates.shift_period(period, start, lag)) in returns
        ]
        rows.append({"lag": lag, **correlation([s for s, _ in pairs], [r for _, r in pairs])})
    return rows


def price_fields(
    fires: list[dict[str, Any]],
    points: list[dict[str, Any]],
    closes: dict[str, float],
    *,
    period: str,
    horizon: int,
    drop: float,
    min_volume: int = 1,
) -> dict[str, Any]:
    """What prices add to a backtest: ``forward_return`` on each fire (None without closes),
    the ``hit_rate`` (the share of fires with a forward return that fell by ``drop`` percent
    or more), the ``base_rate`` (the same share over every period the rule was evaluated on:
    those with at least ``min_volume`` texts), and ``lead_lag``."""
    forward = forward_returns(closes, period, horizon)
    fall = -drop / 100
    for fire in fires:
        fire["forward_return"] = forward.get(fire["period"])
    measured = [f["forward_return"] for f in fires if f["forward_return"] is not None]
    base = [
        forward[p["period"]] for p in points if p["volume"] >= min_volume and p["period"] in forward
    ]
    return {
        "hit_rate": _share_fallen(measured, fall),
        "hits": sum(r <= fall for r in measured),
        "fires_with_return": len(measured),
        "base_rate": _share_fallen(base, fall),
        "periods_with_return": len(base),
        "lead_lag": lead_lag(points, period_returns(closes, period), period),
    }


def _share_fallen(returns: list[float], fall: float) -> float | None:
    return sum(r <= fall for r in returns) / len(returns) if returns else None


def overlay(
    db: Database, name: str, ticker: str | None, period: str, points: list[dict[str, Any]]
) -> dict[str, Any]:
    """What the Monitor draws with a sentiment trend: ``series`` (``[{"period", "close"}]``
    of the ticker's closes, or the index's for all texts), its ``label``, and ``lead_lag``."""
    series = prices.series_ticker(prices.get_price_set(db, name), ticker)
    closes = period_closes(db, name, series, period)
    return {
        "series": [{"period": p, "close": c} for p, c in closes.items()],
        "label": f"{series or 'index'} close ({name})",
        "lead_lag": lead_lag(points, period_returns(closes, period), period),
    }
