"""Fixtures the monitor's tests share: real dated headlines, scored."""

import pytest

from devmode.data import ingest
from devmode.data.readers import read_upload
from devmode.db import open_db
from devmode.monitor.monitoring import score_dataset
from tests.conftest import copy_database, write_csv
from tests.price_support import LexiconScorer, headline_slice


@pytest.fixture(scope="session")
def scored_wire_db(trained_news_db, tmp_path_factory):
    """The session's news database with "wire": the shared headlines of AAPL and ABBV since
    2018 (about 800, dated, with tickers), scored by a word list."""
    folder = tmp_path_factory.mktemp("wire")
    path = copy_database(trained_news_db, folder)
    csv_path = write_csv(folder / "wire.csv", headline_slice())
    with open_db(path) as db:
        ingest.insert_upload(
            db,
            read_upload(csv_path),
            "wire",
            ingest.ColumnMapping("text", date="date", ticker="ticker"),
        )
        score_dataset(db, "wire", scorer=LexiconScorer())
    return path


@pytest.fixture
def wire_db(scored_wire_db, tmp_path):
    return copy_database(scored_wire_db, tmp_path / "copy")
