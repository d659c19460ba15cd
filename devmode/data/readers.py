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
import hashlib
import io
import re
from collections.abc import Iterator
from pathlib import Path, PureWindowsPath
from typing import IO

from devmode import environment
from devmode.data import formats
from devmode.data.uploads import (
    FORMATS,
    InvalidUpload,
    Row,
    Upload,
    cell,
    check_column_names,
    decode_error,
    human_size,
)

# How much of the file format and encoding detection look at.
SNIFF_BYTES = 1 << 20

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
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]+")


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
            f"{name} is {human_size(size)}; the upload limit is {human_size(limit)}. "
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
        return formats.parquet_upload(opener, name, size, sha256)
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
        return formats.json_upload(opener, name, size, sha256, encoding, stripped, hinted)
    return formats.delimited_upload(opener, name, size, sha256, encoding, text, format)


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
    check_column_names(columns, f"hf:{dataset_id}")

    def batches(batch_size: int) -> Iterator[tuple[list[Row], float]]:
        done = 0
        for batch in ds.iter(batch_size=batch_size):
            for name, feature in class_labels.items():
                batch[name] = [None if v is None else feature.int2str(v) for v in batch[name]]
            rows = [
                {c: cell(v) for c, v in zip(columns, values, strict=True)}
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
        raise decode_error(name, encoding, head, e) from None


def _refuse_binary(text: str, name: str) -> None:
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r")
    if controls > max(3, len(text) // 100):
        raise InvalidUpload(
            f"{name} does not look like text: {controls} of its first {len(text)} characters are "
            "control characters (found a binary file). Expected a CSV, TSV, JSON, JSONL or "
            "Parquet file; export the data to one of those."
        )
