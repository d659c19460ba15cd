"""Datasets: upload a file, map its columns, check its labels and split, manage what is stored."""

import streamlit as st

from devmode import charts, environment, ui
from devmode.data import ingest, uploads
from devmode.errors import DevmodeError

ui.page_setup(__file__)
st.caption(
    "Upload labelled text (CSV, TSV, JSON, JSONL or Parquet), say which column is the text, the "
    "label, the date and the ticker, and devmode keeps it with a stratified train / validation / "
    "test split whose seed every later run reuses."
)

# A rename or delete picks the dataset to show next; it must be set before the selectbox exists.
if "datasets_select_next" in st.session_state:
    st.session_state["datasets_selected"] = st.session_state.pop("datasets_select_next")

tab_upload, tab_stored = st.tabs(["Upload", "Stored datasets"])

# ----------------------------------------------------------------------------------------------
with tab_upload, ui.page_db() as db:
    uploaded = st.file_uploader("File", type=uploads.UPLOAD_EXTENSIONS, key="datasets_file")
    with st.expander("Reading options"):
        c1, c2 = st.columns(2)
        format_ = c1.selectbox(
            "Format",
            [None, *uploads.FORMATS],
            key="datasets_format",
            format_func=lambda f: "detect" if f is None else f,
        )
        encoding = c2.selectbox(
            "Encoding",
            [None, *uploads.ENCODINGS],
            key="datasets_encoding",
            format_func=lambda e: "detect" if e is None else e,
        )
    if uploaded is not None:
        try:
            upload, sample = ui.read_upload_once(uploaded, format_, encoding)
        except DevmodeError as e:
            st.error(str(e))
        else:
            st.success(upload.describe())
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
                roles = ui.column_roles(
                    ingest.ROLES, upload.columns, suggested.to_dict(), "datasets"
                )
                st.markdown("**Split** (drawn within each label)")
                split = ui.settings_form(ingest.SplitSpec, "datasets_split", columns=4)
                save = st.form_submit_button("Save dataset", type="primary")
            if save:
                progress = st.progress(0.0, text="Storing rows…")
                try:
                    dataset = ingest.insert_upload(
                        db,
                        upload,
                        name,
                        ingest.ColumnMapping(**roles),
                        ingest.SplitSpec(**split),
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
    names = ingest.dataset_names(db)
    if not names:
        st.info("No datasets yet. Upload a file in the *Upload* tab.")
    else:
        ui.keep_choice_valid("datasets_selected", names)
        selected = st.selectbox("Dataset", names, key="datasets_selected")
        dataset = ingest.get_dataset(db, selected)
        stats = ui.dataset_stats(
            environment.db_path(),
            dataset.id,
            dataset.name,
            dataset.updated_at,
            dataset.mapping,
            dataset.split,
        )

        st.caption(dataset.describe_source())
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
            roles = ui.column_roles(
                ingest.ROLES, dataset.columns, dataset.mapping.to_dict(), "datasets_map"
            )
            if st.form_submit_button("Save roles"):
                try:
                    ingest.set_mapping(db, selected, ingest.ColumnMapping(**roles))
                except DevmodeError as e:
                    st.error(str(e))
                else:
                    st.rerun()

        with st.expander("Split"), st.form("datasets_resplit_form"):
            split = ui.settings_form(
                ingest.SplitSpec, "datasets_resplit", columns=4, start=dataset.split
            )
            if st.form_submit_button("Split again"):
                try:
                    ingest.resplit(db, selected, ingest.SplitSpec(**split))
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
