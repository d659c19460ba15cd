"""What an upload is, whatever its format: its columns, a way to read its rows in batches, and
the rules every column name and value must meet to become part of a SQLite table.

``readers.read_upload`` detects a file's format and encoding and makes an ``Upload``;
``formats.py`` reads each format.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from devmode.errors import DevmodeError

FORMATS = ("csv", "tsv", "json", "jsonl", "parquet")
# File name endings an upload widget offers (the content decides the format; these are hints).
UPLOAD_EXTENSIONS = ("csv", "tsv", "tab", "txt", "json", "jsonl", "ndjson", "parquet", "pq")
# Encodings tried in this order when none is given; latin-1 decodes any byte, so it is last.
ENCODINGS = ("utf-8-sig", "utf-8", "cp1252", "latin-1")
# Characters refused in column names: they quote or end SQL identifiers and statements.
SQL_METACHARACTERS = set("\"'`[];")
MAX_COLUMN_NAME_LENGTH = 128
# SQLite's limit on a table's columns, less the split column devmode adds to every dataset.
MAX_COLUMNS = sqlite3.connect(":memory:").getlimit(sqlite3.SQLITE_LIMIT_COLUMN) - 1


class InvalidUpload(DevmodeError):
    """The file cannot be read as a table of rows; the message says why and what to do."""


Row = dict[str, Any]


@dataclass
class Upload:
    """A readable source of rows whose format, encoding and columns are known.

    ``batches()`` can be called more than once; each call reads the source from the start.
    ``columns`` is what the header (or first JSON objects) declares; a JSONL file may add keys
    further down, which ingest adds as columns.
    """

    source: str
    format: str
    columns: list[str]
    size_bytes: int
    sha256: str
    encoding: str | None = None
    delimiter: str | None = None
    _batches: Callable[[int], Iterator[tuple[list[Row], float]]] = field(repr=False, default=None)

    def batches(self, batch_size: int = 5000) -> Iterator[tuple[list[Row], float]]:
        """Yield ``(rows, fraction_done)`` with at most ``batch_size`` rows each."""
        return self._batches(batch_size)

    def describe(self) -> str:
        """What was read, for a person: 'Read **a.csv** (1,024 bytes): CSV, encoding utf-8; 2 columns.'"""
        details = [self.format.upper()]
        if self.encoding:
            details.append(f"encoding {self.encoding}")
        if self.delimiter:
            details.append(f"delimiter {self.delimiter!r}")
        return (
            f"Read **{self.source}** ({self.size_bytes:,} bytes): {', '.join(details)}; "
            f"{len(self.columns)} columns."
        )

    def preview(self, n: int = 20) -> list[Row]:
        """The first ``n`` rows (reads only as far as it needs)."""
        out: list[Row] = []
        for rows, _ in self.batches(min(n, 1000)):
            out.extend(rows)
            if len(out) >= n:
                break
        return out[:n]


def check_column_names(columns: list[str], name: str) -> None:
    """Refuse column names that are empty, repeated, reserved, or carry SQL metacharacters."""
    if len(columns) > MAX_COLUMNS:
        raise InvalidUpload(
            f"{name} has {len(columns):,} columns; a dataset can have at most {MAX_COLUMNS:,} "
            "(SQLite's limit). Keep the columns you need (the text, its label, a date, a "
            "ticker, a few more) and upload that."
        )
    problems = []
    seen: dict[str, str] = {}
    for position, column in enumerate(columns, start=1):
        shown = repr(column)
        if column is None or not str(column).strip():
            problems.append(f"column {position} has no name")
            continue
        if len(column) > MAX_COLUMN_NAME_LENGTH:
            problems.append(f"column {position} has a name of {len(column)} characters")
        bad = sorted(SQL_METACHARACTERS.intersection(column))
        if bad or any(ord(ch) < 32 for ch in column):
            what = " ".join(bad) if bad else "control characters"
            problems.append(f"column {shown} contains {what}")
        if column.lower().startswith("devmode_"):
            problems.append(f"column {shown} starts with 'devmode_', which devmode reserves")
        key = column.strip().lower()  # SQLite column names ignore case
        if key in seen:
            problems.append(f"columns {seen[key]!r} and {shown} are the same name")
        seen[key] = column
    if problems:
        raise InvalidUpload(
            f"{name} has column names devmode cannot store: {'; '.join(problems)}. Expected "
            "distinct names of letters, digits, spaces and simple punctuation, without quotes, "
            "brackets, backticks or semicolons. Rename those columns in the header and upload again."
        )


def cell(value: Any) -> Any:
    """Turn a parsed value into something SQLite stores faithfully."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str, ensure_ascii=False)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, float) and value != value:  # NaN: pandas' and Arrow's "missing"
        return None
    return value


def decode_error(name: str, encoding: str, data: bytes, e: UnicodeDecodeError) -> InvalidUpload:
    line = data[: e.start].count(b"\n") + 1
    return InvalidUpload(
        f"{name} is not valid {encoding}: line {line} has the byte 0x{data[e.start]:02X} that "
        f"{encoding} cannot decode. Expected text in one encoding. Save the file again as UTF-8, "
        "or pass the encoding it really has (e.g. --encoding cp1252)."
    )


def human_size(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size} bytes"
