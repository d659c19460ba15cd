"""The stored split: fractions of each label's rows for train / validation / test and the seed
that draws them, in SQL, so the same file and seed give the same split anywhere.

    split = SplitSpec.from_text("0.8,0.1,0.1", seed=7)     # as a command line types it
    assign_split(db, "phrasebank", "label", split)
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlite_utils import Database
from sqlite_utils.db import quote_identifier

from devmode.errors import DevmodeError
from devmode.specs import Settings, setting

# The column devmode adds to every dataset table: 'train', 'validation', 'test', or NULL for rows
# that cannot be used for training (blank label).
SPLIT_COLUMN = "devmode_split"
SPLITS = ("train", "validation", "test")


class InvalidSplit(DevmodeError):
    """Split fractions or seed that cannot make a train / validation / test split."""


@dataclass(frozen=True)
class SplitSpec(Settings):
    """Fractions of each label's rows for train / validation / test, and the shuffle seed."""

    error = InvalidSplit

    train: float = setting(
        0.8, "Share of each label's rows to train on.", minimum=0, maximum=1, step=0.05
    )
    validation: float = setting(
        0.1, "Share that picks the best epoch.", minimum=0, maximum=1, step=0.05
    )
    test: float = setting(
        0.1, "Share held out for the honest score.", minimum=0, maximum=1, step=0.05
    )
    seed: int = setting(
        42,
        "Seed of the shuffle: the same file and seed give the same split anywhere.",
        minimum=0,
    )

    def check_together(self) -> None:
        parts = (self.train, self.validation, self.test)
        if abs(sum(parts) - 1) > 1e-6 or self.train <= 0:
            raise InvalidSplit(
                f"Split fractions must be between 0 and 1, add up to 1, and leave rows to train "
                f"on; found train {self.train}, validation {self.validation}, test {self.test} "
                f"(sum {sum(parts):g}). Use e.g. 0.8 / 0.1 / 0.1."
            )

    @property
    def fractions(self) -> list[float]:
        return [self.train, self.validation, self.test]

    @property
    def fractions_text(self) -> str:
        """The fractions as ``from_text`` reads them: "0.8,0.1,0.1"."""
        return ",".join(f"{f:g}" for f in self.fractions)

    @classmethod
    def from_text(cls, fractions: str, seed: int | None = None) -> SplitSpec:
        """A split from train,validation,test fractions typed as one text ("0.8,0.1,0.1")."""
        try:
            parts = tuple(float(p) for p in fractions.split(","))
        except ValueError:
            parts = ()
        if len(parts) != 3:
            raise InvalidSplit(
                f"--split expects three fractions for train,validation,test such as 0.8,0.1,0.1; "
                f"found {fractions!r}."
            )
        return cls(*parts, **({} if seed is None else {"seed": seed}))


def is_filled(column: str) -> str:
    quoted = quote_identifier(column)
    return f"{quoted} is not null and trim({quoted}) != ''"


def assign_split(db: Database, name: str, label: str | None, split: SplitSpec) -> None:
    """Stratified split in SQL: within each label, rows ordered by a seeded hash of their rowid.

    Each label keeps round(n * test) rows for test and round(n * validation) for validation, so
    every class is represented in proportion, and the same seed gives the same rows anywhere.
    Rows with a blank label get NULL: they cannot be trained or evaluated on.
    """
    table = quote_identifier(name)
    split_column = quote_identifier(SPLIT_COLUMN)
    partition = f"partition by {quote_identifier(label)}" if label else ""
    where = f"where {is_filled(label)}" if label else ""
    db.execute(f"update {table} set {split_column} = null")
    db.execute(
        f"""
        with ranked as (
            select rowid as rid,
                   row_number() over (
                       {partition} order by devmode_shuffle_key(:seed, rowid)
                   ) as position,
                   count(*) over ({partition}) as n
            from {table} {where}
        )
        update {table} set {split_column} = (
            select case
                when position <= cast(n * :test + 0.5 as integer) then 'test'
                when position <= cast(n * :test + 0.5 as integer)
                                 + cast(n * :validation + 0.5 as integer) then 'validation'
                else 'train' end
            from ranked where ranked.rid = {table}.rowid
        )
        where rowid in (select rid from ranked)
        """,
        {"seed": split.seed, "test": split.test, "validation": split.validation},
    )
