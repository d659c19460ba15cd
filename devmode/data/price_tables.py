"""The prices datasets' tables (``prices.py`` reads and writes them); migration 0020 creates
them. What the migration calls here has shipped: a change to these tables is a new migration."""

from __future__ import annotations

from sqlite_utils import Database

SETS_TABLE = "devmode_price_sets"
PRICES_TABLE = "devmode_prices"


def create_price_tables(db: Database) -> None:
    """A record per prices dataset, and its closes: one per (ticker, day)."""
    db[SETS_TABLE].create(
        {
            "id": int,
            "name": str,
            "source": str,
            "format": str,
            "sha256": str,
            "size_bytes": int,
            "row_count": int,
            "tickers": str,  # JSON list, '' for the index series
            "first_day": str,
            "last_day": str,
            "notes": str,  # JSON list: what was read past (repeats, blank cells, gaps)
            "created_at": str,
        },
        pk="id",
        not_null={"name", "source", "sha256", "row_count", "tickers", "created_at"},
    )
    db.execute(f"create unique index {SETS_TABLE}_name on {SETS_TABLE} (name collate nocase)")
    db.execute(
        f"""create table {PRICES_TABLE} (
               set_id integer not null, ticker text not null, day text not null,
               close float not null, primary key (set_id, ticker, day)
           ) without rowid"""
    )
