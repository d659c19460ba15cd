"""One reader per format: delimited text (CSV, TSV), JSON, JSONL and Parquet. Each makes an
``uploads.Upload`` whose ``batches`` streams the rows (only a JSON array, one value, is read
whole). ``readers.read_upload`` picks the reader.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from devmode.data.uploads import InvalidUpload, Row, Upload, cell, check_column_names, decode_error

# Delimiters a CSV may use, in order of preference when the sniffer cannot decide.
CSV_DELIMITERS = (",", ";", "|", "\t")
# The ASCII unit separator: never in real text, so a one-column file splits on nothing.
SINGLE_COLUMN = "\x1f"
# A single CSV field may be a whole article; the csv module's default cap is 128 KB.
csv.field_size_limit(64 * 1024 * 1024)


# ----------------------------------------------------------------------------------------------
# Delimited text (CSV, TSV)


def delimited_upload(opener, name, size, sha256, encoding, head_text, format) -> Upload:
    """CSV or TSV. ``format`` given explicitly fixes the delimiter; otherwise it is sniffed."""
    first_line = next(line for line in head_text.splitlines() if line.strip())  # the header
    if format == "tsv":
        delimiter = "\t"
    elif format == "csv":
        delimiter = ","
        if first_line.count(",") == 0 and any(d in first_line for d in ";|"):
            delimiter = _sniff_delimiter(head_text)  # csv covers semicolons and pipes too
    elif not any(d in first_line for d in CSV_DELIMITERS):
        delimiter = SINGLE_COLUMN  # one column: commas inside the text are not delimiters
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
    check_column_names(header, name)
    format = "tsv" if delimiter == "\t" else "csv"

    def batches(batch_size: int) -> Iterator[tuple[list[Row], float]]:
        with opener() as raw:
            counter = _CountingReader(raw)
            text = io.TextIOWrapper(counter, encoding=encoding, newline="")
            reader = csv.reader(text, delimiter=delimiter)
            try:
                for values in reader:  # the header, already parsed (after any blank lines)
                    if any(v.strip() for v in values):
                        break
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

    shown_delimiter = None if delimiter == SINGLE_COLUMN else delimiter
    upload = Upload(name, format, header, size, sha256, encoding, shown_delimiter, batches)
    upload.preview(1)  # fail now, not halfway through an insert, when there are no data rows
    return upload


def _sniff_delimiter(text: str) -> str:
    """The delimiter that splits the header and the first rows into the same number of fields.

    Judged on the header first: a delimiter must appear there to count (csv.Sniffer, which looks
    at character frequencies everywhere, is fooled by a ';' inside a quoted sentence).
    """
    header_line = next(line for line in text.splitlines() if line.strip())
    best, best_score = ",", (-1, 0)
    for delimiter in CSV_DELIMITERS:
        rows = list(_take(csv.reader(io.StringIO(text), delimiter=delimiter), 51))
        while rows and not any(cell.strip() for cell in rows[0]):
            rows.pop(0)  # blank lines before the header
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


def json_upload(opener, name, size, sha256, encoding, head_text, hinted) -> Upload:
    """A JSON array is read whole; one object per line streams as JSONL.

    A file named .json that starts with '{' is parsed whole too, so that a single wrapped object
    ({"data": [...]}) is explained rather than stored as one odd row; if it turns out to hold
    several objects, one per line, it is JSONL after all.
    """
    if hinted == "jsonl" or (head_text[0] == "{" and hinted != "json"):
        return jsonl_upload(opener, name, size, sha256, encoding)
    with opener() as fp:
        data = fp.read()
    try:
        records = json.loads(data.decode(encoding))
    except UnicodeDecodeError as e:
        raise decode_error(name, encoding, data, e) from None
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and head_text[0] == "{":
            return jsonl_upload(opener, name, size, sha256, encoding)
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
    check_column_names(header, name)

    def batches(batch_size: int) -> Iterator[tuple[list[Row], float]]:
        for start in range(0, len(records), batch_size):
            chunk = records[start : start + batch_size]
            yield (
                [{c: cell(r.get(c)) for c in header} for r in chunk],
                (start + len(chunk)) / len(records),
            )

    return Upload(name, "json", header, size, sha256, encoding, None, batches)


def jsonl_upload(opener, name, size, sha256, encoding) -> Upload:
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
    check_column_names(header, name)

    def batches(batch_size: int) -> Iterator[tuple[list[Row], float]]:
        known = list(header)
        batch: list[Row] = []
        for record, line_no, fraction in records():
            new = [k for k in record if k not in known]
            if new:
                check_column_names(known + new, f"{name} line {line_no}")
                known.extend(new)
            batch.append({k: cell(v) for k, v in record.items()})
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


def parquet_upload(opener, name, size, sha256) -> Upload:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with opener() as fp:
            parquet = pq.ParquetFile(fp)
            # the top-level columns: a list, struct or map column has leaves named 'element',
            # 'key' or 'value' inside it, which are not columns of the table
            header = list(parquet.schema_arrow.names)
            num_rows = parquet.metadata.num_rows
    except (pa.ArrowException, OSError) as e:
        raise InvalidUpload(
            f"{name} starts like a Parquet file but cannot be read ({e}). It may be truncated; "
            "export it again."
        ) from None
    check_column_names(header, name)
    if num_rows == 0:
        raise InvalidUpload(
            f"{name} has columns ({', '.join(header)}) but no rows. Expected at least one row."
        )

    def batches(batch_size: int) -> Iterator[tuple[list[Row], float]]:
        done = 0
        with opener() as fp:
            try:
                for record_batch in pq.ParquetFile(fp).iter_batches(batch_size=batch_size):
                    rows = [{k: cell(v) for k, v in r.items()} for r in record_batch.to_pylist()]
                    done += len(rows)
                    yield rows, done / num_rows
            except (pa.ArrowException, OSError) as e:
                raise InvalidUpload(
                    f"{name}: Parquet data after row {done} cannot be read ({e}). Export it again."
                ) from None

    return Upload(name, "parquet", header, size, sha256, None, None, batches)
