"""The table of adapted base models (``adapted_bases.py``), created by migration 0019
(``schema.py``). What this creates has shipped: a change to this table is a new migration."""

from __future__ import annotations

from sqlite_utils import Database

TABLE = "devmode_adaptations"


def create_adaptation_table(db: Database) -> None:
    """Adaptations: each a job, and once completed an adapted base (``adapted_bases.py``)."""
    db[TABLE].create(
        {
            "id": int,
            "name": str,  # unique: ``adapted:NAME``
            "base_model": str,  # what it continued from
            "datasets": str,  # JSON: the datasets whose texts it read
            "epochs": int,
            "max_texts": int,
            "learning_rate": float,
            "texts": int,  # how many distinct texts it read (known once it starts)
            "path": str,  # the adapted encoder's folder, once completed
            "status": str,
            "pid": int,
            "cancel_requested": int,
            "error": str,
            "done": int,  # steps done, of ``total``
            "total": int,
            "summary": str,  # JSON: losses, held-out masked-word loss, seconds
            "created_at": str,
            "updated_at": str,
            "started_at": str,
            "finished_at": str,
        },
        pk="id",
        not_null={"name", "base_model", "datasets", "epochs", "max_texts", "status"},
        defaults={"cancel_requested": 0, "done": 0, "total": 0},
    )
    db[TABLE].create_index(["name"], unique=True)
