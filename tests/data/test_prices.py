"""Prices datasets: a real wide file (plotly's stocks), long files and an index, and the bad
files people have: gaps, repeated or clashing dates, zero and negative prices, unknown tickers."""

import json

import pytest

from devmode.data import prices
from devmode.data.readers import read_upload
from devmode.db import open_db
from tests.conftest import run_cli, write_csv
from tests.price_support import long_price_file, plotly_stocks


def test_plotly_stocks_is_read_as_six_weekly_series(db_path, tmp_path):
    path = plotly_stocks(tmp_path / "stocks.csv")
    out = run_cli(db_path, "ingest", path, "--name", "stocks", "--prices")
    assert out.exit_code == 0, out.output
    assert "Stored prices dataset stocks: 6 series (AAPL, AMZN, FB, GOOG, MSFT, NFLX)" in out.output
    assert "2018-01-01 to 2019-12-30, 630 closes" in out.output
    # no text is about these tickers yet: said, and the prices are kept
    assert "no scored text is about AAPL, AMZN, FB, GOOG, MSFT, NFLX yet" in out.output
    with open_db(db_path) as db:
        stored = prices.get_price_set(db, "stocks")
        assert not stored.has_index
        aapl = prices.closes(db, "stocks", "AAPL")
    assert aapl[0] == ("2018-01-01", 1.0) and len(aapl) == 105
    assert aapl[1] == ("2018-01-08", pytest.approx(1.0119428342857142))
    listed = json.loads(run_cli(db_path, "datasets", "list", "--json").output)
    assert listed[0]["name"] == "stocks" and listed[0]["prices"][0] == "AAPL"
    dropped = run_cli(db_path, "datasets", "drop", "stocks", "--yes")
    assert dropped.exit_code == 0 and "Dropped prices dataset 'stocks'" in dropped.output
    with open_db(db_path) as db:
        assert db["devmode_prices"].count == 0 and prices.list_price_sets(db) == []


def test_a_long_file_keeps_an_index_for_rows_without_a_ticker(db_path, tmp_path):
    rows = [
        {"Day": "2020-03-02", "Symbol": "AAPL", "Adj Close": "$298.81", "Volume": "1,000"},
        {"Day": "2020-03-02", "Symbol": "", "Adj Close": "3,090.23", "Volume": "9"},
        {"Day": "2020-03-03", "Symbol": "AAPL", "Adj Close": "289.32", "Volume": "1,200"},
        {"Day": "2020-03-03", "Symbol": "AAPL", "Adj Close": "289.32", "Volume": "1,200"},
        {"Day": "2020-03-04", "Symbol": "AAPL", "Adj Close": "NA", "Volume": ""},
    ]
    path = write_csv(tmp_path / "long.csv", rows)
    with open_db(db_path) as db:
        stored = prices.store_prices(db, read_upload(path), "mixed")
        assert stored.tickers == ["", "AAPL"] and stored.has_index
        assert prices.closes(db, "mixed", "") == [("2020-03-02", 3090.23)]
        assert prices.closes(db, "mixed", "AAPL")[0] == ("2020-03-02", 298.81)
    assert stored.notes == [
        "1 blank cell read as days without a price",
        "1 row repeated an earlier close, kept once",
    ]


def test_one_close_column_without_a_ticker_is_the_index(db_path, tmp_path):
    rows = [{"date": f"2020-01-{d:02d}", "close": 100 + d} for d in (2, 3, 6, 28)]
    path = write_csv(tmp_path / "index.csv", rows)
    out = run_cli(db_path, "ingest", path, "--name", "spx", "--prices")
    assert out.exit_code == 0, out.output
    assert "spx: 1 series (index)" in out.output
    assert "note: the longest gap is 22 days (index after 2020-01-06)" in out.output


@pytest.mark.parametrize(
    "rows,message",
    [
        (
            [{"date": "2020-01-02", "close": "10"}, {"date": "2020-01-02", "close": "11"}],
            "row 2 gives the index a second close on 2020-01-02 (11; an earlier row gave 10)",
        ),
        (
            [{"date": "2020-01-02", "close": "10"}, {"date": "2020-01-03", "close": "0"}],
            "row 2 has a close of 0 in 'close'. A closing price is above 0",
        ),
        (
            [{"date": "2020-01-02", "close": "-4.5"}],
            "row 1 has a close of -4.5 in 'close'",
        ),
        (
            [{"date": "2020-01-02", "close": "10"}, {"date": "last week", "close": "11"}],
            "row 2 has the date 'last week' in 'date', which cannot be read",
        ),
        (
            [{"date": "2020-01-02", "close": "10"}, {"date": "2020-01-03", "close": "ten"}],
            "row 2 has 'ten' in 'close', which is not a price",
        ),
        (
            [{"date": "2020-01-02", "close": "101,25"}],
            "row 1 has '101,25' in 'close', which is not a price. Expected a number such as "
            "101.25 (a decimal point; commas only between thousands",
        ),
        ([{"when": "soon", "what": "x"}], "No date column found among when, what"),
        ([{"date": "2020-01-02", "note": "x"}], "No column of prices found"),
        ([{"date": "2020-01-02", "close": ""}], "has no prices: every cell"),
    ],
    ids=[
        "clash",
        "zero",
        "negative",
        "date",
        "text",
        "decimal-comma",
        "no-date",
        "no-price",
        "blank",
    ],
)
def test_bad_price_files_are_refused_and_nothing_is_stored(db_path, tmp_path, rows, message):
    path = write_csv(tmp_path / "bad.csv", rows)
    out = run_cli(db_path, "ingest", path, "--name", "bad", "--prices")
    assert out.exit_code == 1 and message in out.output, out.output
    assert "Traceback" not in out.output
    with open_db(db_path) as db:
        assert prices.list_price_sets(db) == [] and db["devmode_prices"].count == 0


def test_a_long_file_needs_its_close_named(db_path, tmp_path):
    rows = [{"date": "2020-01-02", "ticker": "A", "open": 1, "high": 2}]
    path = write_csv(tmp_path / "ohlc.csv", rows)
    out = run_cli(db_path, "ingest", path, "--name", "ohlc", "--prices")
    assert "found 2 numeric columns (open, high). Pass the close as --price-column" in out.output
    named = run_cli(db_path, "ingest", path, "--name", "ohlc", "--prices", "--price-column", "high")
    assert named.exit_code == 0 and "ohlc: 1 series (A)" in named.output
    wrong = run_cli(db_path, "ingest", path, "--name", "x", "--prices", "--price-column", "shut")
    assert "The price column 'shut' is not in the file" in wrong.output


def test_prices_share_the_datasets_names(db_path, tmp_path):
    path = long_price_file(tmp_path / "p.csv", {"A": {"2020-01-02": 1.0}})
    assert run_cli(db_path, "ingest", path, "--name", "p", "--prices").exit_code == 0
    again = run_cli(db_path, "ingest", path, "--name", "P", "--prices")
    assert again.exit_code == 1 and "A prices dataset 'P' already exists" in again.output
    text = run_cli(db_path, "ingest", path, "--name", "p2", "--prices", "--text-column", "x")
    assert text.exit_code == 2 and "A prices file has no --text-column" in text.output
    texts = write_csv(tmp_path / "t.csv", [{"text": "hello there", "date": "2020-01-02"}])
    clash = run_cli(db_path, "ingest", texts, "--name", "P", "--no-label")
    assert clash.exit_code == 1 and "A prices dataset 'P' already exists" in clash.output


def test_the_datasets_page_stores_a_prices_file(db_path, tmp_path, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    monkeypatch.setenv("DEVMODE_DB", db_path)
    path = plotly_stocks(tmp_path / "stocks.csv")
    at = AppTest.from_file(str(ROOT / "pages" / "1_Datasets.py"), default_timeout=60).run()
    at.radio(key="datasets_kind").set_value("Prices")
    at.file_uploader(key="datasets_file").set_value(
        ("stocks.csv", Path(path).read_bytes(), "text/csv")
    )
    at.run()
    at.text_input(key="datasets_prices_name").set_value("weekly")
    at.button(key="FormSubmitter:datasets_prices_form-Save prices").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Saved prices dataset weekly: 6 series" in at.success[-1].value
    assert any("Prices · weekly: 6 series" in c.value for c in at.caption)
    with open_db(db_path) as db:
        assert prices.get_price_set(db, "weekly").row_count == 630
