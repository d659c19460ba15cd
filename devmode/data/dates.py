"""Dates as people and feeds write them, read as the calendar date where they were written.

parse_date("Fri, 22 May 2020 23:30:00 -0400")   # '2020-05-22'
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from typing import Any

_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%d.%m.%Y", "%Y%m%d")
# Digits alone, as a JSON number kept as text: 9-10 are epoch seconds (with an optional
# fraction), 12-13 epoch milliseconds. 8 digits stay YYYYMMDD (read by _DATE_FORMATS).
_EPOCH_TEXT = re.compile(r"^(?:\d{9,10}(?:\.\d+)?|\d{12,13})$")


def parse_date(value: Any) -> str | None:
    """The calendar date of ``value`` as 'YYYY-MM-DD', or None when it cannot be read.

    ISO dates and timestamps, and RFC 2822 dates ('Fri, 22 May 2020 23:30:00 -0400', as RSS
    feeds and e-mail write them), keep the calendar date they were written in (a headline
    stamped 23:30 at -04:00 was published on the 22nd where it was published). A number is a
    date written YYYYMMDD when it reads as one (20200522), else epoch seconds, or epoch
    milliseconds for 12 or 13 digits, read as UTC; so are digits alone in a text (a JSON column
    that also holds strings keeps its numbers as text): 9 or 10 are seconds, 12 or 13
    milliseconds.
    Ambiguous day/month orders such as 03/04/2020 are not guessed.
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number_date(value)
    text = str(value).strip()
    if _EPOCH_TEXT.match(text):  # a number kept as text (a JSON column that also holds strings)
        return _number_date(float(text))
    if re.match(r"^(?:[A-Za-z]{3},\s*)?\d{1,2}\s+[A-Za-z]{3}\s+\d{4}", text):  # RFC 2822
        try:  # 'Fri, 22 May 2020 23:30:00 -0400': the date where it was written, as ISO's are
            return email.utils.parsedate_to_datetime(text).date().isoformat()
        except (TypeError, ValueError):
            return None
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


def _number_date(value: int | float) -> str | None:
    """A number's date: YYYYMMDD when it reads as one, else epoch seconds (up to the year 3000),
    else epoch milliseconds (12 or 13 digits), read as UTC."""
    if value != value:  # NaN
        return None
    if value == int(value) and 19000101 <= value <= 21001231:
        return _compact_date(value)  # 8 digits are a date, not a second of August 1970
    if 0 < value < 32503680000:  # seconds between 1970 and 3000
        return dt.datetime.fromtimestamp(value, dt.UTC).date().isoformat()
    if 1e11 <= value < 1e13:  # milliseconds (12 or 13 digits), as JavaScript writes them
        return dt.datetime.fromtimestamp(value / 1000, dt.UTC).date().isoformat()
    return None


def horizon(today: dt.date | None = None) -> str:
    """The last day that is not 'ahead': tomorrow (UTC), as 'YYYY-MM-DD'. A text dated later
    (a typo, a feed's wrong clock) is kept but left out of the latest day and period."""
    today = today or dt.datetime.now(dt.UTC).date()
    return (today + dt.timedelta(days=1)).isoformat()


def period_end(period: str, start: str) -> str:
    """The first day after the day, week or month that begins on ``start`` ('YYYY-MM-DD')."""
    first = dt.date.fromisoformat(start)
    if period == "day":
        return (first + dt.timedelta(days=1)).isoformat()
    if period == "week":
        return (first + dt.timedelta(days=7)).isoformat()
    return (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1).isoformat()


def period_start(period: str, day: str) -> str:
    """The first day of the day, week (from Monday) or month ``day`` falls in, as
    ``trends.bucket_sql`` gives it."""
    date = dt.date.fromisoformat(day)
    if period == "week":
        return (date - dt.timedelta(days=date.weekday())).isoformat()
    return date.replace(day=1).isoformat() if period == "month" else date.isoformat()


def shift_period(period: str, start: str, steps: int) -> str:
    """The start of the period ``steps`` periods after (negative: before) the one beginning on
    ``start``."""
    date = dt.date.fromisoformat(start)
    if period == "month":
        years, month = divmod(date.month - 1 + steps, 12)
        return dt.date(date.year + years, month + 1, 1).isoformat()
    return (date + dt.timedelta(days=steps * (7 if period == "week" else 1))).isoformat()


def days_between(first: str, last: str) -> int:
    """Days from ``first`` to ``last`` ('YYYY-MM-DD')."""
    return (dt.date.fromisoformat(last) - dt.date.fromisoformat(first)).days


def calendar_periods(period: str, first: str, last: str) -> list[str]:
    """The starts of every day, week or month from the one beginning on ``first`` to the one
    beginning on ``last`` (both starts, as ``trends.bucket_sql`` gives them), in order."""
    out = []
    while first <= last:
        out.append(first)
        first = period_end(period, first)
    return out


def _compact_date(value: int | float) -> str | None:
    """The date a number written YYYYMMDD stands for (20200522, as JSON or Parquet keep such a
    column), or None when it is no date (20201332)."""
    try:
        return dt.datetime.strptime(str(int(value)), "%Y%m%d").date().isoformat()
    except ValueError:
        return None
