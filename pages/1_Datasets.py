"""Datasets: upload a file, map its columns, check its labels and split, manage what is stored."""

import streamlit as st

from devmode import charts, config, ingest, readers, ui
from devmode.errors import DevmodeError

ui.page_setup("Datasets", ":material/table:")
st.title("Datasets")
st.caption(
    "Upload labelled text (CSV, TSV, JSON, JSONL or Parquet), say which column is the text, the "
    "label, the date and the ticker, and devmode keeps it with a stratified train / validation / "
    "test split whose seed every later run reuses."
)

NONE = None
UPLOAD_TYPES = ["csv", "tsv", "tab", "txt", "json", "jsonl", "ndjson", "parquet", "pq"]


def role_select(container, label, options, default, key, optional=True):
    choices = ([NONE] if optional else []) + list(options)
    index = choices.index(default) if default in choices else 0
    return container.selectbox(
        label, choices, index=index, key=key, format_func=lambda c: "— none —" if c is None else c
    )


def mapping_inputs(columns, current, prefix):
    """Four selects, one per role, defaulting to ``current``; returns the chosen mapping."""
    cols = st.columns(4)
    chosen = {
        role: role_select(
            col,
            role.capitalize(),
            columns,
            getattr(current, role),
            f"{prefix}_{role}",
            optional=role != "text",
        )
        for col, role in zip(cols, ingest.ROLES, strict=True)
    }
    return ingest.ColumnMapping(**chosen)


def split_inputs(prefix, current=None):
    current = current or ingest.SplitSpec()
    cols = st.columns(4)
    train = cols[0].number_input("Train", 0.0, 1.0, current.train, 0.05, key=f"{prefix}_train")
    validation = cols[1].number_input(
        "Validation", 0.0, 1.0, current.validation, 0.05, key=f"{prefix}_validation"
    )
    test = cols[2].number_input("Test", 0.0, 1.0, current.test, 0.05, key=f"{prefix}_test")
    seed = cols[3].number_input("Seed", 0, 2**31 - 1, current.seed, 1, key=f"{prefix}_seed")
    return train, validation, test, int(seed)


@st.cache_data(show_spinner="Counting rows, gaps and labels…", max_entries=64)
def stats_of(db_path, dataset_id, name, mapping, split, updated_at):
    """Counting a million rows takes seconds; redo it only when what it depends on changes."""
    with ui.page_db() as db:
        return ingest.dataset_stats(db, name)


def read_uploaded(uploaded, format_, encoding):
    """Detect once per file and reading options; reruns reuse the answer."""
    key = (uploaded.file_id, format_, encoding)
    cached = st.session_state.get("datasets_upload_cache")
    if not cached or cached[0] != key:
        upload = readers.read_upload(
            uploaded, filename=uploaded.name, format=format_, encoding=encoding
        )
        cached = (key, upload, upload.preview(200))
        st.session_state["datasets_upload_cache"] = cached
    return cached[1], cached[2]


# A rename or delete picks the dataset to show next; it must be set before the selectbox exists.
if "datasets_select_next" in st.session_state:
    st.session_state["datasets_selected"] = st.session_state.pop("datasets_select_next")

tab_upload, tab_stored = st.tabs(["Upload", "Stored datasets"])

# ----------------------------------------------------------------------------------------------
with tab_upload, ui.page_db() as db:
    uploaded = st.file_uploader("File", type=UPLOAD_TYPES, key="datasets_file")
    with st.expander("Reading options"):
        c1, c2 = st.columns(2)
        format_ = c1.selectbox(
            "Format",
            [None, *readers.FORMATS],
            key="datasets_format",
            format_func=lambda f: "detect" if f is None else f,
        )
        encoding = c2.selectbox(
            "Encoding",
            [None, *readers.ENCODINGS],
            key="datasets_encoding",
            format_func=lambda e: "detect" if e is None else e,
        )
    if uploaded is not None:
        try:
            upload, sample = read_uploaded(uploaded, format_, encoding)
        except DevmodeError as e:
            st.error(str(e))
        else:
            details = [upload.format.upper()]
            if upload.encoding:
                details.append(f"encoding {upload.encoding}")
            if upload.delimiter:
                details.append(f"delimiter {upload.delimiter!r}")
            st.success(
                f"Read **{upload.source}** ({upload.size_bytes:,} bytes): {', '.join(details)}; "
                f"{len(upload.columns)} columns."
            )
            st.markdown("**Preview** (first rows)")
            st.dataframe(sample[:20], hide_index=True)
            suggested = ingest.suggest_mapping(upload.columns, sample)
            with st.form("datasets_save_form"):
                name = st.text_input(
                    "Dataset name",
                    ingest.suggest_name(uploaded.name),
                    key="datasets_name",
                    help="Letters, digits and underscores; it becomes a table name.",
                )
                st.markdown("**Column roles** (suggested from names and values)")
                mapping = mapping_inputs(upload.columns, suggested, "datasets")
                st.markdown("**Split** (drawn within each label)")
                fractions = split_inputs("datasets_split")
                save = st.form_submit_button("Save dataset", type="primary")
            if save:
                progress = st.progress(0.0, text="Storing rows…")
                try:
                    dataset = ingest.insert_upload(
                        db,
                        upload,
                        name,
                        mapping,
                        ingest.SplitSpec(*fractions[:3], seed=fractions[3]),
                        on_progress=lambda n, f: progress.progress(f, text=f"{n:,} rows stored"),
                    )
                except DevmodeError as e:
                    progress.empty()
                    st.error(str(e))
                else:
                    progress.progress(1.0, text=f"{dataset.row_count:,} rows stored")
                    st.session_state["datasets_selected"] = dataset.name
                    st.success(
                        f"Saved dataset **{dataset.name}** ({dataset.row_count:,} rows). "
                        "Open the *Stored datasets* tab to see its labels and split."
                    )

# ----------------------------------------------------------------------------------------------
with tab_stored, ui.page_db() as db:
    stored = ingest.list_datasets(db)
    if not stored:
        st.info("No datasets yet. Upload a file in the *Upload* tab.")
    else:
        names = [d.name for d in stored]
        ui.keep_choice_valid("datasets_selected", names)
        selected = st.selectbox("Dataset", names, key="datasets_selected")
        dataset = ingest.get_dataset(db, selected)
        stats = stats_of(
            config.db_path(),
            dataset.id,
            dataset.name,
            dataset.mapping,
            dataset.split,
            dataset.updated_at,
        )

        st.caption(
            f"From {dataset.source} · {dataset.format} · uploaded {dataset.created_at[:16]} UTC · "
            f"sha256 {dataset.sha256[:12]}…"
        )
        m = st.columns(4)
        m[0].metric("Rows", f"{stats.rows:,}")
        m[1].metric("Empty texts", f"{stats.empty_texts:,}")
        m[2].metric("Duplicate texts", f"{stats.duplicate_texts:,}")
        m[3].metric("Blank labels", f"{stats.blank_labels:,}")
        s = st.columns(4)
        for col, split in zip(s, ingest.SPLITS, strict=False):
            col.metric(split.capitalize(), f"{stats.split_counts[split]:,}")
        s[3].metric("Split seed", dataset.split.seed)

        if stats.label_counts:
            st.plotly_chart(
                charts.label_distribution_figure(
                    stats.label_counts, f"Labels of {dataset.name} by split"
                ),
                key="datasets_label_chart",
            )
        else:
            st.info(
                "No label column is mapped: this dataset can be scored and monitored, not trained on."
            )

        st.markdown("**Rows** (first 50, in file order)")
        st.dataframe(ingest.preview(db, selected, 50), hide_index=True)

        with st.expander("Column roles"), st.form("datasets_map_form"):
            new_mapping = mapping_inputs(dataset.columns, dataset.mapping, "datasets_map")
            if st.form_submit_button("Save roles"):
                try:
                    ingest.set_mapping(db, selected, new_mapping)
                except DevmodeError as e:
                    st.error(str(e))
                else:
                    st.rerun()

        with st.expander("Split"), st.form("datasets_resplit_form"):
            fractions = split_inputs("datasets_resplit", dataset.split)
            if st.form_submit_button("Split again"):
                try:
                    ingest.resplit(
                        db, selected, ingest.SplitSpec(*fractions[:3], seed=fractions[3])
                    )
                except DevmodeError as e:
                    st.error(str(e))
                else:
                    st.rerun()

        with st.expander("Rename or delete"):
            new_name = st.text_input("New name", selected, key="datasets_new_name")
            if st.button("Rename", key="datasets_rename"):
                try:
                    renamed = ingest.rename_dataset(db, selected, new_name)
                except DevmodeError as e:
                    st.error(str(e))
                else:
                    st.session_state["datasets_select_next"] = renamed.name
                    st.rerun()
            confirm = st.checkbox(
                f"Yes, delete {selected} and its {dataset.row_count:,} rows",
                key="datasets_confirm_drop",
            )
            if st.button("Delete", key="datasets_drop", disabled=not confirm, type="secondary"):
                ingest.drop_dataset(db, selected)
                st.session_state.pop("datasets_confirm_drop", None)
                st.rerun()
