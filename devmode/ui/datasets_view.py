"""The Datasets page's helpers: column roles, an upload read once per file, a dataset's checks
counted again only when it changes, labelling; and files uploaded for code that reads paths."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from devmode import environment
from devmode.db import open_db
from devmode.errors import DevmodeError
from devmode.ui import Handoff


def column_roles(
    roles: tuple[str, ...],
    columns: list[str],
    current: dict[str, str | None],
    prefix: str,
    *,
    required: tuple[str, ...] = ("text",),
    unset: str = "— none —",
) -> dict[str, str | None]:
    """A select per role (text, label, date, ticker), starting at ``current``; every role but
    the ``required`` may be left ``unset`` (None). Returns ``{role: column or None}``."""
    chosen = {}
    for container, role in zip(st.columns(len(roles)), roles, strict=True):
        choices = ([None] if role not in required else []) + list(columns)
        index = choices.index(current.get(role)) if current.get(role) in choices else 0
        chosen[role] = container.selectbox(
            role.capitalize(),
            choices,
            index=index,
            key=f"{prefix}_{role}",
            format_func=lambda c: unset if c is None else c,
        )
    return chosen


def read_upload_once(uploaded, format_: str | None, encoding: str | None):
    """(upload, its first 200 rows) for a ``st.file_uploader`` file: detected once per file
    and reading options, and kept in session state for the reruns that follow."""
    from devmode.data import readers

    key = (uploaded.file_id, format_, encoding)
    cached = st.session_state.get("datasets_upload_cache")
    if not cached or cached[0] != key:
        upload = readers.read_upload(
            uploaded, filename=uploaded.name, format=format_, encoding=encoding
        )
        cached = (key, upload, upload.preview(200))
        st.session_state["datasets_upload_cache"] = cached
    return cached[1], cached[2]


def stats_of(dataset):
    """A stored dataset's checks (``ingest.DatasetStats``), counted again only when it changes."""
    return dataset_stats(
        environment.db_path(),
        dataset.id,
        dataset.name,
        dataset.updated_at,
        dataset.mapping,
        dataset.split,
    )


@st.cache_data(show_spinner="Counting rows, gaps and labels…", max_entries=64)
def dataset_stats(db_path: str, dataset_id: int, name: str, updated_at: str, mapping, split):
    """A dataset's checks, counted again only when what they depend on changes (a million rows
    take seconds): the arguments after ``name`` are the cache's key."""
    from devmode.data import ingest

    with open_db(db_path) as db:
        return ingest.dataset_stats(db, name)


@st.cache_data(show_spinner="Asking the model which rows it is least sure of…", max_entries=16)
def rows_to_label(db_path: str, name: str, model_run_id: int | None, row_count: int):
    """The dataset's unlabelled rows, least sure first: ranked again only when the model or the
    rows change (the arguments after ``name`` are the cache's key)."""
    from devmode.labels import labelling

    with open_db(db_path) as db:
        return labelling.rows_to_label(db, name)


def save_label_edits(name: str, rows: list, key: str, allow_new_key: str) -> None:
    """Callback of the labelling table: save what was just typed or ticked, at once."""
    from devmode.labels import labelling

    edits = labelling.edited_labels(rows, st.session_state[key]["edited_rows"])
    if not edits:
        return
    try:
        with open_db(environment.db_path()) as db:
            version = labelling.save_labels(
                db, name, edits, allow_new_classes=st.session_state.get(allow_new_key, False)
            )
    except DevmodeError as e:
        Handoff("datasets").leave(labelling_error=str(e))
    else:
        Handoff("datasets").leave(
            labelling_saved=f"Saved {len(edits)} label{'s' * (len(edits) > 1)}; {name} is at label version {version}."
        )


@st.cache_data(show_spinner="Comparing the texts with the model's training set…", max_entries=32)
def untested_warning(db_path: str, model_run_id: int, dataset: str, row_count: int):
    """The Monitor's drift warning, worked out again only when the model or the rows change."""
    from devmode.finetune import out_of_domain
    from devmode.models import registry

    with open_db(db_path) as db:
        model = registry.get_model_for_run(db, model_run_id)
        return out_of_domain.untested_warning(db, model, dataset)


@contextmanager
def uploaded_file(uploaded) -> Iterator[str]:
    """The path of a private temporary copy of a ``st.file_uploader`` file, for code that reads
    paths (zip archives); removed afterwards. The person's file name is not used for it."""
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="devmode-upload-")
    try:
        path = os.path.join(folder, "upload.bin")
        with open(path, "wb") as out:
            out.write(uploaded.getbuffer())
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)
