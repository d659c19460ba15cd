import csv
import hashlib
from pathlib import Path

import pytest

from devmode.db import open_db

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
PHRASEBANK_ALLAGREE = SHARED_DATA / "financial_phrasebank" / "sentences_allagree.csv"
TOPIC_TRAIN = SHARED_DATA / "twitter_financial_news_topic" / "train.csv"
HEADLINES = SHARED_DATA / "dated_headlines" / "headlines.csv"


def read_slice(path: Path, n: int, step: int = 1) -> list[dict[str, str]]:
    """Every ``step``-th row of a shared CSV, ``n`` rows in all (a slice that spans the labels)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return rows[::step][:n]


@pytest.fixture(scope="session")
def phrasebank_rows():
    """60 Financial PhraseBank (all-agree) rows, spread over the file so all three labels occur."""
    return read_slice(PHRASEBANK_ALLAGREE, 60, step=37)


@pytest.fixture(scope="session")
def headline_rows():
    return read_slice(HEADLINES, 60, step=151)


@pytest.fixture(scope="session")
def topic_rows():
    return read_slice(TOPIC_TRAIN, 60, step=271)


@pytest.fixture
def db_path(tmp_path):
    path = tmp_path / "devmode.db"
    with open_db(path):
        pass
    return str(path)


@pytest.fixture
def db(db_path):
    with open_db(db_path) as database:
        yield database


def file_digest(path) -> str:
    """sha256 of the main database file, read after every connection to it is closed."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_csv(path: Path, rows: list[dict], delimiter: str = ",", encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as f:
        writer = csv.DictWriter(
            f, fieldnames=list(rows[0]), delimiter=delimiter, lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
    return path
