"""Fixtures the monitor's tests share: real dated headlines, scored."""

import pytest

from devmode.db import open_db
from devmode.monitor.monitoring import score_dataset
from tests.conftest import copy_database
from tests.net_support import LocalServer, Route
from tests.price_support import LexiconScorer, store_headlines


@pytest.fixture(scope="session")
def scored_wire_db(trained_news_db, tmp_path_factory):
    """The session's news database with "wire": the shared headlines of AAPL and ABBV since
    2018 (about 800, dated, with tickers), scored by a word list."""
    folder = tmp_path_factory.mktemp("wire")
    path = copy_database(trained_news_db, folder)
    store_headlines(path, folder)
    with open_db(path) as db:
        score_dataset(db, "wire", scorer=LexiconScorer())
    return path


@pytest.fixture
def wire_db(scored_wire_db, tmp_path):
    return copy_database(scored_wire_db, tmp_path / "copy")


@pytest.fixture
def server():
    """A local HTTP server with a webhook receiver at /hook."""
    s = LocalServer()
    s.routes["/hook"] = Route()
    yield s
    s.close()
