"""Read an uploaded file (or a Hugging Face dataset) as rows, streamed in batches.

    upload = read_upload("sentences.csv")           # or bytes, or a file-like object
    upload.format, upload.encoding, upload.columns  # detected: 'csv', 'utf-8', ['text', 'label']
    for rows, fraction_done in upload.batches(5000):
        ...

Formats: CSV (comma, semicolon or pipe delimited), TSV, JSON (an array of objects), JSONL (one
object per line) and Parquet. Encodings: UTF-8, UTF-8 with BOM, cp1252 and latin-1. Every
problem is an ``InvalidUpload`` that says what was expected, what was found and what to do.

Only a JSON array is read whole (it is one value); every other format streams, so memory stays
bounded however many rows the file has.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import decimal
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import IO, Any

from devmode import environment
from devmode.errors import DevmodeError

FORMATS = ("csv", "tsv", "json", "jsonl", "parquet")
# File name endings an upload widget offers (the content decides the format; these are hints).
UPLOAD_EXTENSIONS = ("csv", "tsv", "tab", "txt", "json", "jsonl", "ndjson", "parquet", "pq")
# Encodings tried in this order when none is given; latin-1 decodes any byte, so it is last.
ENCODINGS = ("utf-8-sig", "utf-8", "cp1252", "latin-1")
# How much of the file format and encoding detection look at.
SNIFF_BYTES = 1 << 20
# Delimiters a CSV may use, in order of preference when the sniffer cannot decide.
CSV_DELIMITERS = (",", ";", "|", "\t")
# Characters refused in column names: they quote or end SQL identifiers and statements.
SQL_METACHARACTERS = set("\"'`[];")
MAX_COLUMN_NAME_LENGTH = 128
# A single CSV field may be a whole article; the csv module's default cap is 128 KB.
csv.field_size_limit(64 * 1024 * 1024)

_EXTENSION_FORMATS = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# The ASCII unit separator: never in real text, so a one-column file splits on nothing.
_SINGLE_COLUMN = "\x1f"
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]+")


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


# ----------------------------------------------------------------------------------------------
# Entry points


def read_upload(
    source: str | Path | bytes | IO[bytes],
    *,
    filename: str | None = None,
    format: str | None = None,
    encoding: str | None = None,
    max_bytes: int | None = None,
) -> Upload:
    """Detect the format, encoding and columns of an uploaded file; raise ``InvalidUpload`` if unusable.

    :param source: a path, the file's bytes, or a binary file-like object (such as Streamlit's
        ``UploadedFile``)
    :param filename: the name the person gave the file; its extension is a hint for the format
    :param format: one of ``FORMATS`` to skip detection (a wrong one is reported, not guessed past)
    :param encoding: a Python codec name to skip detection
    :param max_bytes: refuse larger files; defaults to ``environment.max_upload_bytes()``
    """
    opener, size, name = _opener(source, filename)
    limit = environment.max_upload_bytes() if max_bytes is None else max_bytes
    if size > limit:
        raise InvalidUpload(
            f"{name} is {_human_size(size)}; the upload limit is {_human_size(limit)}. "
            "Split the file into smaller parts, or raise the limit with DEVMODE_MAX_UPLOAD_MB."
        )
    if size == 0:
        raise InvalidUpload(
            f"{name} is empty (0 bytes). Expected a CSV, TSV, JSON, JSONL or Parquet file with a "
            "header row and at least one data row. Check that you picked the right file."
        )
    if format is not None and format not in FORMATS:
        raise InvalidUpload(
            f"Unknown format {format!r}. Expected one of {', '.join(FORMATS)}, "
            "or leave it out to detect the format from the file."
        )
    if encoding is not None:
        try:
            encoding = codecs.lookup(encoding).name
        except LookupError:
            raise InvalidUpload(
                f"Unknown encoding {encoding!r}. Expected a codec name such as utf-8, cp1252 or "
                "latin-1, or leave it out to detect the encoding."
            ) from None
    with opener() as fp:
        head = fp.read(SNIFF_BYTES)
    sha256 = _sha256(opener)
    hinted = format or _EXTENSION_FORMATS.get(Path(name).suffix.lower())

    if head.startswith(b"PAR1"):
        if format is not None and format != "parquet":
            raise InvalidUpload(
                f"{name} is a Parquet file, but format {format!r} was asked for. "
                "Pick format parquet, or leave the format to be detected."
            )
        return _parquet_upload(opener, name, size, sha256)
    if hinted == "parquet":
        raise InvalidUpload(
            f"{name} is named or marked as Parquet, but it does not start with the Parquet "
            f"magic bytes 'PAR1' (found {head[:4]!r}). Export it again as Parquet, or pick the "
            "format it really has."
        )
    encoding = encoding or _detect_encoding(head, name)
    text = _decode_head(head, encoding, name, is_whole_file=len(head) == size)
    _refuse_binary(text, name)
    stripped = text.lstrip()
    if not stripped:
        raise InvalidUpload(
            f"{name} holds only white space. Expected a header row and at least one data row."
        )
    if hinted in ("json", "jsonl") or (format is None and stripped[0] in "[{"):
        return _json_upload(opener, name, size, sha256, encoding, stripped, hinted)
    return _delimited_upload(opener, name, size, sha256, encoding, text, format)


def read_hf_dataset(dataset_id: str, *, config_name: str | None = None, split: str = "train"):
    """Open a Hugging Face dataset (a hub id when online, or a local folder/script) as an ``Upload``.

    ``ClassLabel`` columns come back as their names ("positive"), not their integer ids.
    """
    import datasets  # imported here: it is slow to import and only the CLI's hf: path needs it

    try:
        ds = datasets.load_dataset(dataset_id, config_name, split=split)
    except Exception as e:  # the library raises many types: network, missing split, bad script
        raise InvalidUpload(
            f"Could not load the Hugging Face dataset {dataset_id!r} (split {split!r}): "
            f"{type(e).__name__}: {e}. Check the id, config and split; downloading from the hub "
            "needs the internet, so offline, export the data to a file and ingest that."
        ) from e
    if len(ds) == 0:
        raise InvalidUpload(f"The Hugging Face dataset {dataset_id!r} split {split!r} has no rows.")
    class_labels = {
        name: feature
        for name, feature in ds.features.items()
        if isinstance(feature, datasets.ClassLabel)
    }
    columns = list(ds.column_names)
    _check_column_names(columns, f"hf:{dataset_id}")

    def batches(batch_size: int) -> Iterator[tuple[list[Row], float]]:
        done = 0
        for batch in ds.iter(batch_size=batch_size):
            for name, feature in class_labels.items():
                batch[name] = [None if v is None else feature.int2str(v) for v in batch[name]]
            rows = [
                {c: _cell(v) for c, v in zip(columns, values, strict=True)}
                for values in zip(*(batch[c] for c in columns), strict=True)
            ]
            done += len(rows)
            yield rows, done / len(ds)

    fingerprint = getattr(ds, "_fingerprint", "") or dataset_id
    return Upload(
        source=f"hf:{dataset_id}" + (f"/{config_name}" if config_name else "") + f"[{split}]",
        format="hf",
        columns=columns,
        size_bytes=int(ds.data.nbytes),
        sha256=hashlib.sha256(
            f"{dataset_id}:{config_name}:{split}:{fingerprint}".encode()
        ).hexdigest(),
        _batches=batches,
    )


# ----------------------------------------------------------------------------------------------
# Detection


def _opener(source, filename: str | None):
    """Return (a function opening a fresh binary stream, size in bytes, display name)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise InvalidUpload(
                f"No file at {path}. Expected the path of a CSV, TSV, JSON, JSONL or Parquet file."
            )
        return (lambda: open(path, "rb")), path.stat().st_size, base_name(filename or path.name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "getvalue"):
        data = source.getvalue()
    else:
        data = source.read()
    name = base_name(filename or getattr(source, "name", None) or "the upload")
    return (lambda: io.BytesIO(data)), len(data), name


def base_name(filename: str) -> str:
    """The last part of a file name as a person's browser or shell gave it (``../../x.csv`` and
    ``C:\\data\\x.csv`` are ``x.csv``): it is shown and stored as text, never used as a path."""
    return PureWindowsPath(str(filename)).name or "the upload"


def _sha256(opener) -> str:
    digest = hashlib.sha256()
    with opener() as fp:
        for chunk in iter(lambda: fp.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _detect_encoding(head: bytes, name: str) -> str:
    if (
        head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        or head[:200].count(b"\x00") > 20
    ):
        raise InvalidUpload(
            f"{name} looks like UTF-16 text (or a binary file); devmode reads UTF-8, cp1252 and "
            "latin-1. Save the file again as 'CSV UTF-8' (Excel: File > Save As > CSV UTF-8)."
        )
    if b"\x00" in head:
        raise InvalidUpload(
            f"{name} contains NUL bytes, so it is not a text file (found a binary file). "
            "Expected a CSV, TSV, JSON, JSONL or Parquet file; export the data to one of those."
        )
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError as e:
        if _UTF8_MULTIBYTE.search(head[: e.start]) or _UTF8_MULTIBYTE.search(head[e.end :]):
            line = head[: e.start].count(b"\n") + 1
            raise InvalidUpload(
                f"{name} mixes encodings: most of it is UTF-8, but line {line} has the byte "
                f"{head[e.start : e.start + 1].hex(' ').upper()} (0x{head[e.start]:02X}) that is not "
                "valid UTF-8. Expected one encoding for the whole file. Save the file again as "
                "UTF-8, or pass the encoding it really has (e.g. --encoding cp1252)."
            ) from None
    try:
        head.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def _decode_head(head: bytes, encoding: str, name: str, *, is_whole_file: bool) -> str:
    try:
        return codecs.getincrementaldecoder(encoding)().decode(head, final=is_whole_file)
    except UnicodeDecodeError as e:
        raise _decode_error(name, encoding, head, e) from None


def _decode_error(name: str, encoding: str, data: bytes, e: UnicodeDecodeError) -> InvalidUpload:
    line = data[: e.start].count(b"\n") + 1
    return InvalidUpload(
        f"{name} is not valid {encoding}: line {line} has the byte 0x{data[e.start]:02X} that "
        f"{encoding} cannot decode. Expected text in one encoding. Save the file again as UTF-8, "
        "or pass the encoding it really has (e.g. --encoding cp1252)."
    )


def _refuse_binary(text: str, name: str) -> None:
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r")
    if controls > max(3, len(text) // 100):
        raise InvalidUpload(
            f"{name} does not look like text: {controls} of its first {len(text)} characters are "
            "control characters (found a binary file). Expected a CSV, TSV, JSON, JSONL or "
            "Parquet file; export the data to one of those."
        )


def _check_column_names(columns: list[str], name: str) -> None:
    """Refuse column names that are empty, repeated, reserved, or carry SQL metacharacters."""
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


# ----------------------------------------------------------------------------------------------
# Delimited text (CSV, TSV)


def _delimited_upload(opener, name, size, sha256, encoding, head_text, format) -> Upload:
    """CSV or TSV. ``format`` given explicitly fixes the delimiter; otherwise it is sniffed."""
    first_line = head_text.lstrip("\r\n").splitlines()[0]
    if format == "tsv":
        delimiter = "\t"
    elif format == "csv":
        delimiter = ","
        if first_line.count(",") == 0 and any(d in first_line for d in ";|"):
            delimiter = _sniff_delimiter(head_text)  # csv covers semicolons and pipes too
    elif not any(d in first_line for d in CSV_DELIMITERS):
        delimiter = _SINGLE_COLUMN  # one column: commas inside the text are not delimiters
    else:
        delimiter = _sniff_delimiter(head_text)
    header = next(csv.reader([first_line], delimiter=delimiter), [])
    if len(header) == 1:
        for other in CSV_DELIMITERS:
            if other != delimiter and len(first_line.split(other)) > 1:
                expected = (
                    "tab-separated values"
                    if delimiter == "\t"
                    else f"{delimiter!r}-separated values"
                )
                raise InvalidUpload(
                    f"{name}: expected {expected}, but the header line has no {delimiter!r}; "
                    f"it looks {other!r}-separated ({first_line[:80]!r}). Pick the format that "
                    "matches the file (csv for commas, semicolons or pipes; tsv for tabs), or "
                    "leave the format to be detected."
                )
    header = [h.strip() for h in header]
    _check_column_names(header, name)
    format = "tsv" if delimiter == "\t" else "csv"

    def batches(batch_size: int) -> Iterator[tuple[list[Row], float]]:
        with opener() as raw:
            counter = _CountingReader(raw)
            text = io.TextIOWrapper(counter, encoding=encoding, newline="")
            reader = csv.reader(text, delimiter=delimiter)
            try:
                next(reader)  # the header, already parsed
                batch: list[Row] = []
                count = 0
                for values in reader:
                    if not values or (
                        len(values) == 1 and not values[0].strip() and len(header) > 1
                    ):
                        continue  # blank line
                    if len(values) != len(header):
                        raise InvalidUpload(
                            f"{name}: line {reader.line_num} has {len(values)} fields, but the "
                            f"header has {len(header)} ({', '.join(header)}). Expected every row "
                            f"to have {len(header)} fields. Quote text that contains "
                            f"{_delimiter_name(delimiter)}, or fix that row, and upload again."
                        )
                    batch.append(
                        {h: (v if v != "" else None) for h, v in zip(header, values, strict=True)}
                    )
                    count += 1
                    if len(batch) >= batch_size:
                        yield batch, counter.fraction(size)
                        batch = []
                if batch:
                    yield batch, 1.0
                if count == 0:
                    raise InvalidUpload(
                        f"{name} has a header row ({', '.join(header)}) but no data rows. "
                        "Expected at least one row below the header."
                    )
            except UnicodeDecodeError as e:
                raise InvalidUpload(
                    f"{name} is not valid {encoding}: near line {reader.line_num + 1}, "
                    f"{e.reason} ({e.object[e.start : e.start + 1].hex().upper()}). Expected text in "
                    "one encoding. Save the file again as UTF-8, or pass the encoding it really has "
                    "(e.g. --encoding cp1252)."
                ) from None
            except csv.Error as e:
                raise InvalidUpload(
                    f"{name}: line {reader.line_num} could not be read as {format.upper()} ({e}). "
                    "Check the quoting on that line and upload again."
                ) from None

    shown_delimiter = None if delimiter == _SINGLE_COLUMN else delimiter
    upload = Upload(name, format, header, size, sha256, encoding, shown_delimiter, batches)
    upload.preview(1)  # fail now, not halfway through an insert, when there are no data rows
    return upload


def _sniff_delimiter(text: str) -> str:
    """The delimiter that splits the header and the first rows into the same number of fields.

    Judged on the header first: a delimiter must appear there to count (csv.Sniffer, which looks
    at character frequencies everywhere, is fooled by a ';' inside a quoted sentence).
    """
    header_line = text.lstrip("\r\n").splitlines()[0]
    best, best_score = ",", (-1, 0)
    for delimiter in CSV_DELIMITERS:
        rows = list(_take(csv.reader(io.StringIO(text), delimiter=delimiter), 51))
        if len(rows) > 50:
            rows = rows[:50]  # the last row read may be cut off by the end of the sample
        elif len(rows) > 1 and not text.endswith(("\n", "\r")):
            rows = rows[:-1]
        width = len(rows[0]) if rows else 0
        if delimiter not in header_line or width < 2:
            continue
        consistent = sum(1 for r in rows[1:] if len(r) == width or not r)
        score = (consistent, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _delimiter_name(delimiter: str) -> str:
    return {"\t": "tabs", ",": "commas", ";": "semicolons", "|": "pipes"}.get(
        delimiter, repr(delimiter)
    )


class _CountingReader(io.RawIOBase):
    """A binary stream that counts the bytes read through it, for progress bars."""

    def __init__(self, raw):
        self.raw, self.bytes_read = raw, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        self.bytes_read += len(data)
        return len(data)

    def fraction(self, size: int) -> float:
        return min(1.0, self.bytes_read / size) if size else 1.0


# ----------------------------------------------------------------------------------------------
# JSON and JSONL


def _json_upload(opener, name, size, sha256, encoding, head_text, hinted) -> Upload:
    """A JSON array is read whole; one object per line streams as JSONL.

    A file named .json that starts with '{' is parsed whole too, so that a single wrapped object
    ({"data": [...]}) is explained rather than stored as one odd row; if it turns out to hold
    several objects, one per line, it is JSONL after all.
    """
    if hinted == "jsonl" or (head_text[0] == "{" and hinted != "json"):
        return _jsonl_upload(opener, name, size, sha256, encoding)
    with opener() as fp:
        data = fp.read()
    try:
        records = json.loads(data.decode(encoding))
    except UnicodeDecodeError as e:
        raise _decode_error(name, encoding, data, e) from None
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and head_text[0] == "{":
            return _jsonl_upload(opener, name, size, sha256, encoding)
        raise InvalidUpload(
            f"{name} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}. Expected an "
            'array of objects ([{"text": ..., "label": ...}, ...]) or one object per line '
            "(JSONL). Fix the file and upload again."
        ) from None
    if isinstance(records, dict):
        lists = [k for k, v in records.items() if isinstance(v, list)]
        hint = f" Its key {lists[0]!r} holds a list: save that list on its own." if lists else ""
        raise InvalidUpload(
            f"{name} holds one JSON object, not a table. Expected an array of objects, one per "
            f"row, or JSONL with one object per line.{hint}"
        )
    if not isinstance(records, list) or not records:
        raise InvalidUpload(
            f"{name} holds {'an empty array' if records == [] else type(records).__name__}; "
            "expected an array with at least one object, one per row."
        )
    columns: dict[str, None] = {}
    for i, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise InvalidUpload(
                f"{name}: item {i} of the array is {type(record).__name__} {str(record)[:60]!r}; "
                'expected every item to be an object such as {"text": ..., "label": ...}.'
            )
        columns.update(dict.fromkeys(record))
    header = list(columns)
    _check_column_names(header, name)

    def batches(batch_size: int) -> Iterator[tuple[list[Row], float]]:
        for start in range(0, len(records), batch_size):
            chunk = records[start : start + batch_size]
            yield (
                [{c: _cell(r.get(c)) for c in header} for r in chunk],
                (start + len(chunk)) / len(records),
            )

    return Upload(name, "json", header, size, sha256, encoding, None, batches)


def _jsonl_upload(opener, name, size, sha256, encoding) -> Upload:
    def records(limit: int | None = None) -> Iterator[tuple[dict, int, float]]:
        with opener() as raw:
            counter = _CountingReader(raw)
            text = io.TextIOWrapper(counter, encoding=encoding)
            line_no = 0
            try:
                for line_no, line in enumerate(text, start=1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise InvalidUpload(
                            f"{name}: line {line_no} is not valid JSON ({e.msg}, column {e.colno}). "
                            "Expected one JSON object per line. Fix that line and upload again."
                        ) from None
                    if not isinstance(record, dict):
                        raise InvalidUpload(
                            f"{name}: line {line_no} is {type(record).__name__}, not an object. "
                            'Expected one object such as {"text": ..., "label": ...} per line.'
                        )
                    yield record, line_no, counter.fraction(size)
            except UnicodeDecodeError as e:
                raise InvalidUpload(
                    f"{name} is not valid {encoding} near line {line_no + 1} ({e.reason}). "
                    "Save the file again as UTF-8, or pass the encoding it really has."
                ) from None

    first = [r for r, _, _ in _take(records(), 100)]
    if not first:
        raise InvalidUpload(f"{name} has no JSON objects. Expected one object per line.")
    header = list(dict.fromkeys(k for r in first for k in r))
    _check_column_names(header, name)

    def batches(batch_size: int) -> Iterator[tuple[list[Row], float]]:
        known = list(header)
        batch: list[Row] = []
        for record, line_no, fraction in records():
            new = [k for k in record if k not in known]
            if new:
                _check_column_names(known + new, f"{name} line {line_no}")
                known.extend(new)
            batch.append({k: _cell(v) for k, v in record.items()})
            if len(batch) >= batch_size:
                yield batch, fraction
                batch = []
        if batch:
            yield batch, 1.0

    return Upload(name, "jsonl", header, size, sha256, encoding, None, batches)


def _take(iterator, n):
    for i, item in enumerate(iterator):
        if i >= n:
            return
        yield item


# ----------------------------------------------------------------------------------------------
# Parquet


def _parquet_upload(opener, name, size, sha256) -> Upload:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with opener() as fp:
            metadata = pq.ParquetFile(fp).metadata
            header = list(metadata.schema.names)
            num_rows = metadata.num_rows
    except (pa.ArrowException, OSError) as e:
        raise InvalidUpload(
            f"{name} starts like a Parquet file but cannot be read ({e}). It may be truncated; "
            "export it again."
        ) from None
    _check_column_names(header, name)
    if num_rows == 0:
        raise InvalidUpload(
            f"{name} has columns ({', '.join(header)}) but no rows. Expected at least one row."
        )

    def batches(batch_size: int) -> Iterator[tuple[list[Row], float]]:
        done = 0
        with opener() as fp:
            try:
                for record_batch in pq.ParquetFile(fp).iter_batches(batch_size=batch_size):
                    rows = [{k: _cell(v) for k, v in r.items()} for r in record_batch.to_pylist()]
                    done += len(rows)
                    yield rows, done / num_rows
            except (pa.ArrowException, OSError) as e:
                raise InvalidUpload(
                    f"{name}: Parquet data after row {done} cannot be read ({e}). Export it again."
                ) from None

    return Upload(name, "parquet", header, size, sha256, None, None, batches)


# ----------------------------------------------------------------------------------------------
# Helpers


def _cell(value: Any) -> Any:
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


def _human_size(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size} bytes"
