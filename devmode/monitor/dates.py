"""Dates as people and feeds write them, read as the calendar date where they were written.

parse_date("Fri, 22 May 2020 23:30:00 -0400")   # '2020-05-22'
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from typing import Any

_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%d.%m.%Y", "%Y%m%d")


def parse_date(value: Any) -> str | None:
    """The calendar date of ``value`` as 'YYYY-MM-DD', or None when it cannot be read.

    ISO dates and timestamps, and RFC 2822 dates ('Fri, 22 May 2020 23:30:00 -0400', as RSS
    feeds and e-mail write them), keep the calendar date they were written in (a headline
    stamped 23:30 at -04:00 was published on the 22nd where it was published). A number is a
    date written YYYYMMDD when it reads as one (20200522), else epoch seconds, read as UTC.
    Ambiguous day/month orders such as 03/04/2020 are not guessed.
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value == int(value) and 19000101 <= value <= 21001231:
            return _compact_date(value)  # 8 digits are a date, not a second of August 1970
        if 0 < value < 32503680000:  # seconds between 1970 and 3000
            return dt.datetime.fromtimestamp(value, dt.UTC).date().isoformat()
        return None
    text = str(value).strip()
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


def _compact_date(value: int | float) -> str | None:
    """The date a number written YYYYMMDD stands for (20200522, as JSON or Parquet keep such a
    column), or None when it is no date (20201332)."""
    try:
        return dt.datetime.strptime(str(int(value)), "%Y%m%d").date().isoformat()
    except ValueError:
        return None
