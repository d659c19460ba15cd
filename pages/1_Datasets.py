"""Datasets: upload a file, map its columns, check its labels and split, manage what is stored."""

import streamlit as st

from devmode import charts, environment, ui
from devmode.data import ingest, prices, splits, suggestions, uploads
from devmode.errors import DevmodeError
from devmode.labels import corrections, labelling, review, review_jobs
from devmode.ui import datasets_view, forms

ui.page_setup(__file__)
st.caption(
    "Upload labelled text (CSV, TSV, JSON, JSONL or Parquet), say which column is the text, the "
    "label, the date and the ticker, and devmode keeps it with a stratified train / validation / "
    "test split whose seed every later run reuses."
)

# What the last run left for this one: a rename or delete picks the dataset to show next (set
# before the selectbox exists); a labelling decision leaves its outcome to show.
handoff = ui.Handoff("datasets")
handed = handoff.take()
if "select" in handed:
    st.session_state["datasets_selected"] = handed["select"]

tab_upload, tab_stored = st.tabs(["Upload", "Stored datasets"])

# ----------------------------------------------------------------------------------------------
with tab_upload, ui.page_db() as db:
    uploaded = st.file_uploader("File", type=uploads.UPLOAD_EXTENSIONS, key="datasets_file")
    holds = st.radio(
        "The file holds",
        ["Texts", "Prices"],
        horizontal=True,
        key="datasets_kind",
        help="Prices: a date and closing prices, long (date, ticker, close) or wide (a column "
        "per ticker). The Monitor sets them beside sentiment; alerts are backtested against them.",
    )
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
        with ui.errors_shown():
            upload, sample = datasets_view.read_upload_once(uploaded, format_, encoding)
            st.success(upload.describe())
            st.markdown("**Preview** (first rows)")
            st.dataframe(sample[:20], hide_index=True)
            if holds == "Prices":
                with st.form("datasets_prices_form"):
                    name = st.text_input(
                        "Prices dataset name",
                        ingest.suggest_name(uploaded.name),
                        key="datasets_prices_name",
                    )
                    chosen = datasets_view.column_roles(
                        prices.PRICE_ROLES,
                        upload.columns,
                        {},
                        "datasets_prices",
                        required=(),
                        unset="detect",
                    )
                    save_prices = st.form_submit_button("Save prices", type="primary")
                if save_prices:
                    with ui.errors_shown():
                        stored = prices.store_prices(
                            db,
                            upload,
                            name,
                            date_column=chosen["date"],
                            ticker_column=chosen["ticker"],
                            price_column=chosen["price"],
                        )
                        st.success(f"Saved prices dataset {stored.describe()}.")
                        for note in stored.notes:
                            st.caption(f"Note: {note}.")
            else:
                suggested = suggestions.suggest_mapping(upload.columns, sample)
                with st.form("datasets_save_form"):
                    name = st.text_input(
                        "Dataset name",
                        ingest.suggest_name(uploaded.name),
                        key="datasets_name",
                        help="Letters, digits and underscores; it becomes a table name.",
                    )
                    st.markdown("**Column roles** (suggested from names and values)")
                    roles = datasets_view.column_roles(
                        ingest.ROLES, upload.columns, suggested.to_dict(), "datasets"
                    )
                    st.markdown("**Split** (drawn within each label)")
                    split = forms.settings_form(splits.SplitSpec, "datasets_split", columns=4)
                    save = st.form_submit_button("Save dataset", type="primary")
                if save:
                    progress = st.progress(0.0, text="Storing rows…")
                    try:
                        dataset = ingest.insert_upload(
                            db,
                            upload,
                            name,
                            ingest.ColumnMapping(**roles),
                            splits.SplitSpec(**split),
                            on_progress=lambda n, f: progress.progress(
                                f, text=f"{n:,} rows stored"
                            ),
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
    for price_set in prices.list_price_sets(db):
        c = st.columns([6, 1])
        c[0].caption(f"Prices · {price_set.describe()} · from {price_set.source}")
        if c[1].button("Delete", key=f"datasets_prices_delete_{price_set.id}"):
            prices.drop_price_set(db, price_set.name)
            st.rerun()
    if not names:
        st.info("No datasets yet. Upload a file in the *Upload* tab.")
    else:
        ui.keep_choice_valid("datasets_selected", names)
        selected = st.selectbox("Dataset", names, key="datasets_selected")
        dataset = ingest.get_dataset(db, selected)
        stats = datasets_view.stats_of(dataset)

        st.caption(dataset.describe_source())
        m = st.columns(4)
        m[0].metric("Rows", f"{stats.rows:,}")
        m[1].metric("Empty texts", f"{stats.empty_texts:,}")
        m[2].metric("Duplicate texts", f"{stats.duplicate_texts:,}")
        m[3].metric("Blank labels", f"{stats.blank_labels:,}")
        s = st.columns(4)
        for col, split in zip(s, splits.SPLITS, strict=False):
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

        if dataset.mapping.label:
            with st.expander("Review labels: find the ones that look wrong"):
                st.caption(
                    "Every labelled row is judged by models that never saw it: 5 folds over the "
                    "base model's vectors (quick, seconds) or 5 fine-tunes (thorough, about 10 "
                    "minutes a 2,000-row set on a CPU; it runs on if you leave the page). "
                    "Confident learning (cleanlab) ranks the rows most likely mislabelled, and "
                    "near-copies labelled two ways are listed too. Accepting a suggestion "
                    "relabels the row; the old label stays in the history."
                )
                c = st.columns([2, 1])
                mode = c[0].radio("Mode", review.MODES, horizontal=True, key="datasets_review_mode")
                if c[1].button("Find suspect labels", key="datasets_review"):
                    with ui.errors_shown():
                        review_jobs.start_review(environment.db_path(), selected, mode=mode)
                review_now = review_jobs.latest_review(db, selected)

                @st.fragment(run_every=1 if review_now and review_now.is_active else None)
                def review_panel():
                    with ui.page_db() as db:
                        job = review_jobs.latest_review(db, selected)
                    if job is None:
                        return
                    if review_now.is_active and not job.is_active:
                        st.rerun()  # finished while watched: show its suggestions
                    ui.job_panel(
                        job,
                        cancel_label="Cancel review",
                        key="datasets_review_cancel",
                        cancel=lambda: ui.with_db(review_jobs.request_cancel, job.id),
                    )

                review_panel()
                suggestions = corrections.open_suggestions(db, selected)
                if suggestions:
                    st.markdown(
                        f"**{len(suggestions):,} suggestions**, most suspect first: tick "
                        "*accept* (relabel the row) or *reject* (keep its label), then apply."
                    )
                    decided = st.data_editor(
                        corrections.decision_table(suggestions),
                        key=f"datasets_suggestions_{dataset.label_version}",
                        hide_index=True,
                        column_order=(
                            "accept",
                            "reject",
                            "text",
                            "label",
                            "suggested",
                            "confidence",
                            "reason",
                            "id",
                        ),
                        column_config={
                            "accept": st.column_config.CheckboxColumn(
                                "accept", default=False, width="small"
                            ),
                            "reject": st.column_config.CheckboxColumn(
                                "reject", default=False, width="small"
                            ),
                            "confidence": st.column_config.ProgressColumn(
                                "confidence", min_value=0.0, max_value=1.0, format="%.2f"
                            ),
                        },
                        disabled=("text", "label", "suggested", "confidence", "reason", "id"),
                    )
                    if st.button("Apply decisions", key="datasets_apply", type="primary"):
                        accept, reject = corrections.decisions(decided)
                        with ui.errors_shown():
                            version = corrections.decide(db, selected, accept=accept, reject=reject)
                            handoff.leave(
                                labelling_saved=f"{len(accept)} accepted, {len(reject)} "
                                f"rejected; {selected} is at label version {version}."
                            )
                            st.rerun()
                else:
                    st.caption("No open suggestions: press *Find suspect labels*.")

            with st.expander("Label rows: the model's least sure first", expanded=True):
                model = labelling.current_model(db, selected)
                pool = datasets_view.rows_to_label(
                    environment.db_path(),
                    selected,
                    model.run_id if model else None,
                    dataset.row_count,
                )
                todo = labelling.drop_labelled(db, selected, pool, 50)
                if not todo:
                    st.caption(f"Every row of {selected} with a text has a label.")
                else:
                    st.caption(
                        (
                            f"Suggestions from run {model.run_id}'s model, the rows it is least "
                            "sure of first. "
                            if model
                            else "No model is trained on this dataset yet: rows in file order. "
                        )
                        + "Type a label, or tick *keep* where the suggestion is right: each "
                        "row is saved at once, into the training split."
                    )
                    st.data_editor(
                        todo,
                        key=f"datasets_labelling_{dataset.label_version}",
                        hide_index=True,
                        column_order=(
                            "keep",
                            "label",
                            "text",
                            "suggested",
                            "uncertainty",
                            "row_id",
                        ),
                        column_config={
                            "keep": st.column_config.CheckboxColumn(
                                "keep", default=False, width="small"
                            ),
                            "label": st.column_config.TextColumn("label"),
                            "uncertainty": st.column_config.ProgressColumn(
                                "unsure", min_value=0.0, max_value=1.0, format="%.2f"
                            ),
                        },
                        disabled=("text", "suggested", "uncertainty", "row_id"),
                        on_change=datasets_view.save_label_edits,
                        args=(
                            selected,
                            todo,
                            f"datasets_labelling_{dataset.label_version}",
                            "datasets_new_class",
                        ),
                    )
                    st.checkbox(
                        "Allow new classes (labels no row has yet)", key="datasets_new_class"
                    )
                if st.button("Retrain with my labels", key="datasets_retrain", type="primary"):
                    with ui.errors_shown():
                        started = labelling.retrain(environment.db_path(), selected)
                        st.success(
                            f"Run {started.id} is training on label version "
                            f"{started.label_version}; its report will show the gain over the "
                            "previous model on the same test rows."
                        )
                        ui.page_link("pages/2_Fine_tune.py", "Follow it on Fine-tune")
            if "labelling_error" in handed:
                st.error(handed["labelling_error"])
            if "labelling_saved" in handed:
                st.success(handed["labelling_saved"])

        with st.expander("Column roles"), st.form("datasets_map_form"):
            roles = datasets_view.column_roles(
                ingest.ROLES, dataset.columns, dataset.mapping.to_dict(), "datasets_map"
            )
            if st.form_submit_button("Save roles"):
                with ui.errors_shown():
                    ingest.set_mapping(db, selected, ingest.ColumnMapping(**roles))
                    st.rerun()

        with st.expander("Split"), st.form("datasets_resplit_form"):
            split = forms.settings_form(
                splits.SplitSpec, "datasets_resplit", columns=4, start=dataset.split
            )
            if st.form_submit_button("Split again"):
                with ui.errors_shown():
                    ingest.resplit(db, selected, splits.SplitSpec(**split))
                    st.rerun()

        with st.expander("Rename or delete"):
            new_name = st.text_input("New name", selected, key="datasets_new_name")
            if st.button("Rename", key="datasets_rename"):
                with ui.errors_shown():
                    renamed = ingest.rename_dataset(db, selected, new_name)
                    handoff.leave(select=renamed.name)
                    st.rerun()
            confirm = st.checkbox(
                f"Yes, delete {selected} and its {dataset.row_count:,} rows",
                key="datasets_confirm_drop",
            )
            if st.button("Delete", key="datasets_drop", disabled=not confirm, type="secondary"):
                ingest.drop_dataset(db, selected)
                st.session_state.pop("datasets_confirm_drop", None)
                st.rerun()
