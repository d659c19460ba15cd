"""Fine-tune: train a classifier on a labelled dataset, watch it live, read the before/after report,
and promote the model."""

import streamlit as st

from devmode import charts, environment, jobs, ui
from devmode.data import ingest, readers
from devmode.finetune import adaptation, evaluations, out_of_domain, reports, worker
from devmode.models import adapted_bases, archives, config, exports, methods, registry, runs
from devmode.ui import datasets_view, forms

ui.page_setup(__file__)
handoff = ui.Handoff("fine_tune")
st.caption(
    "Turn a labelled dataset into a classifier: the run trains in its own process (a reload "
    "re-attaches to it), keeps the epoch with the best validation macro-F1, and is judged on the "
    "dataset's held-out test split against the untrained base model."
)

with ui.page_db() as db:
    labelled = ingest.dataset_names(db, labelled=True)
    all_runs = runs.list_runs(db)
    ready_bases = adapted_bases.ready(db)

tab_new, tab_runs, tab_evaluations, tab_models = st.tabs(
    ["New run", "Runs", "Evaluations", "Models"]
)

# ----------------------------------------------------------------------------------------------
with tab_new:
    if not labelled:
        st.info(
            "No labelled dataset yet. Upload one on the **Datasets** page and map its label column."
        )
    else:
        dataset = st.selectbox("Dataset", labelled, key="train_dataset")
        with ui.page_db() as db:
            chosen = ingest.get_dataset(db, dataset)
        counts = datasets_view.stats_of(chosen).label_counts
        if methods.few_shot_offer(counts):
            st.info(f"{methods.few_shot_offer(counts)} Choose *few-shot* as the method below.")
        if ready_bases:
            st.caption(
                f"Adapted base models (type one as the base model): {', '.join(ready_bases)}."
            )
        with st.form("train_form"):
            settings = forms.settings_form(config.TrainConfig, "train")
            c = st.columns([1, 1, 1, 1])
            start = c[0].form_submit_button("Start training", type="primary")
            estimate = c[1].form_submit_button(
                "Estimate with k folds",
                help="Train these settings k times, each on all folds but one, and test each on "
                "the fold it never saw: accuracy and macro-F1 with a 95% interval, and every "
                "row's out-of-fold prediction. Takes k runs' time.",
            )
            folds = c[2].number_input(
                "Folds (k)",
                evaluations.MIN_FOLDS,
                evaluations.MAX_FOLDS,
                evaluations.DEFAULT_FOLDS,
                key="train_folds",
            )
            fold_seed = c[3].number_input(
                "Fold seed",
                min_value=evaluations.MIN_FOLD_SEED,
                max_value=evaluations.MAX_FOLD_SEED,
                value=evaluations.DEFAULT_FOLD_SEED,
                key="train_fold_seed",
                help="Two evaluations compare only on the same folds: the same k and seed.",
            )
        if estimate:
            with ui.errors_shown():
                found = evaluations.start_evaluation(
                    environment.db_path(),
                    dataset,
                    config.TrainConfig(**settings),
                    folds=int(folds),
                    fold_seed=int(fold_seed),
                )
                st.session_state["train_selected_evaluation"] = found.id
                st.success(
                    f"Started evaluation {found.id} ({found.folds} folds). Follow it in the "
                    "**Evaluations** tab; reloading the page is safe."
                )
        if start:
            with ui.errors_shown():
                run = worker.start_run(
                    environment.db_path(), dataset, config.TrainConfig(**settings)
                )
                st.session_state["train_selected_run"] = run.id
                st.success(
                    f"Started run {run.id}. Follow it in the **Runs** tab; reloading the page is safe."
                )
                with ui.page_db() as db:
                    all_runs = runs.list_runs(db)

# ----------------------------------------------------------------------------------------------
with tab_runs:
    if not all_runs:
        st.info("No runs yet. Start one in the *New run* tab.")
    else:
        labels = runs.run_labels(all_runs)
        ui.keep_choice_valid("train_selected_run", list(labels))
        run_id = st.selectbox("Run", list(labels), key="train_selected_run", format_func=labels.get)
        with ui.page_db() as db:
            selected = runs.get_run(db, run_id, live=True)

        @st.fragment(run_every=2 if selected.is_active else None)
        def live_panel():
            with ui.page_db() as db:
                run = runs.get_run(db, run_id, live=True)
                metrics = runs.metrics_for_run(db, run_id)
            if selected.is_active and not run.is_active:
                st.rerun()  # finished while watched: redraw the whole page with the report
            st.markdown(run.status_line(metrics))

            def cancel():
                ui.with_db(runs.request_cancel, run_id)
                st.toast(f"Cancelling run {run_id} after its current step…")

            ui.job_panel(run, cancel_label="Cancel run", key="train_cancel", cancel=cancel)
            if metrics:
                c = st.columns(2)
                c[0].plotly_chart(charts.training_figure(metrics), key=f"train_loss_chart_{run_id}")
                c[1].plotly_chart(
                    charts.validation_figure(metrics), key=f"train_val_chart_{run_id}"
                )

        live_panel()

        if selected.is_resumable:
            if st.button("Resume from the last checkpoint", key="train_resume"):
                with ui.errors_shown():
                    worker.resume_run(environment.db_path(), selected.id)
                    st.rerun()

        if selected.baseline or selected.test:
            st.subheader("Before vs after")
            st.plotly_chart(
                charts.before_after_figure(reports.before_after(selected)),
                key="train_before_after",
            )
            st.dataframe(reports.before_after_table(selected), hide_index=True)
            if reports.references_for(selected.dataset_sha256):
                st.caption(
                    "Published figures come from the papers' own splits and are a reference line, not a like-for-like score."
                )
            if reports.gain_text(selected):
                st.success(reports.gain_text(selected))
            if reports.caveat_text(selected):
                st.warning(reports.caveat_text(selected))
        if selected.is_completed:
            st.subheader("Test sets: in-domain and out-of-domain")
            with ui.page_db() as db:
                tests = out_of_domain.tests_for_run(db, selected.id)
                others = ingest.dataset_names(db, labelled=True)
            st.dataframe(
                out_of_domain.report_lines(selected, tests),
                hide_index=True,
                column_config={
                    "drift": st.column_config.NumberColumn(
                        "drift",
                        help="Cosine distance between the mean embeddings of this set "
                        "and the training split's texts.",
                        format="%.3f",
                    )
                },
            )
            with st.form("train_ood_form"):
                c = st.columns([1, 2])
                other = c[0].selectbox("Another labelled dataset", others, key="train_ood_dataset")
                label_map = c[1].text_input(
                    "Label map (their class=the model's class, comma-separated)",
                    key="train_ood_map",
                    placeholder="Bearish=negative, Bullish=positive, Neutral=neutral",
                    help="Classes spelled the same (in any case) map by themselves.",
                )
                if st.form_submit_button("Test on it"):
                    with ui.errors_shown():
                        with (
                            ui.page_db() as db,
                            st.spinner(f"Scoring every labelled row of {other}…"),
                        ):
                            out_of_domain.add_test(
                                db, selected.id, other, out_of_domain.parse_label_map(label_map)
                            )
                        st.rerun()
        if selected.test:
            c = st.columns([1, 1])
            c[0].plotly_chart(charts.confusion_figure(selected.test), key="train_confusion")
            c[1].markdown("**Per class** (test split)")
            c[1].dataframe(selected.test["per_class"], hide_index=True)
            if reports.calibration_text(selected):
                st.markdown("**Calibration**")
                st.caption(reports.calibration_text(selected))
                if not selected.test["calibration"].get("note"):
                    st.plotly_chart(
                        charts.reliability_figure(selected.test["calibration"]),
                        key="train_reliability",
                    )
            st.markdown("**Most confident mistakes**")
            st.dataframe(selected.test.get("mistakes", []), hide_index=True)
            st.caption(selected.describe_training())

        with st.expander("Settings of this run"):
            st.json(selected.config.to_dict())

        if len(all_runs) > 1:
            st.subheader("Compare runs")
            chosen = st.multiselect(
                "Runs",
                list(labels),
                default=list(labels)[:2],
                format_func=runs.run_labels(all_runs, status=False).get,
                key="train_compare",
            )
            if len(chosen) >= 2:
                with ui.page_db() as db:
                    compared = runs.get_runs(db, chosen)
                st.dataframe(reports.compare_table(compared), hide_index=True)

# ----------------------------------------------------------------------------------------------
with tab_evaluations:
    with ui.page_db() as db:
        all_evaluations = evaluations.list_evaluations(db)
    if not all_evaluations:
        st.info(
            "No evaluations yet. *Estimate with k folds* in the *New run* tab trains the settings "
            "on k folds of the dataset: a score with an interval instead of one split's."
        )
    else:
        named = reports.evaluation_labels(all_evaluations)
        ui.keep_choice_valid("train_selected_evaluation", list(named))
        evaluation_id = st.selectbox(
            "Evaluation", list(named), key="train_selected_evaluation", format_func=named.get
        )
        with ui.page_db() as db:
            shown = evaluations.get_evaluation(db, evaluation_id, live=True)

        @st.fragment(run_every=2 if shown.is_active else None)
        def evaluation_panel():
            with ui.page_db() as db:
                now = evaluations.get_evaluation(db, evaluation_id, live=True)
            if shown.is_active and not now.is_active:
                st.rerun()  # finished while watched: redraw with the summary

            def cancel():
                ui.with_db(evaluations.request_cancel, evaluation_id)
                st.toast(f"Cancelling evaluation {evaluation_id} after its current step…")

            ui.job_panel(
                now, cancel_label="Cancel evaluation", key="train_eval_cancel", cancel=cancel
            )
            if now.fold_results:
                st.dataframe(reports.fold_table(now), hide_index=True)

        evaluation_panel()
        if shown.is_resumable and st.button("Resume the evaluation", key="train_eval_resume"):
            with ui.errors_shown():
                evaluations.resume_evaluation(environment.db_path(), evaluation_id)
                st.rerun()
        if shown.summary:
            st.markdown(
                f"**{shown.folds}-fold estimate** on {shown.rows:,} labelled rows of "
                f"{shown.dataset} (fold seed {shown.fold_seed}); intervals corrected for the "
                "folds' overlapping training sets (Nadeau and Bengio)."
            )
            st.dataframe(reports.evaluation_table(shown), hide_index=True)
            st.caption(reports.pooled_calibration_text(shown))
            st.plotly_chart(
                charts.reliability_figure(
                    shown.summary["pooled"],
                    title="Reliability (out-of-fold predictions)",
                    scaled="each fold's temperature",
                ),
                key="train_eval_reliability",
            )
        completed = reports.evaluation_labels(all_evaluations, completed_only=True)
        if len(completed) > 1:
            st.subheader("Compare two evaluations")
            c = st.columns(2)
            first = c[0].selectbox(
                "A", list(completed), index=1, key="train_eval_a", format_func=completed.get
            )
            second = c[1].selectbox(
                "B (against A)", list(completed), key="train_eval_b", format_func=completed.get
            )
            with ui.errors_shown():
                with ui.page_db() as db:
                    compared = evaluations.compare(db, first, second)
                st.dataframe(reports.comparison_rows(compared), hide_index=True)
                st.caption(
                    f"Paired over the same {compared['folds']} folds: B minus A, its 95% interval "
                    "and two-sided p-value (Nadeau and Bengio's corrected resampled t-test)."
                )

# ----------------------------------------------------------------------------------------------
with tab_models:
    # an import chose the model to show; set before the selectbox exists, on the next run
    handed = handoff.take()
    if "model" in handed:
        st.session_state["train_model_run"] = handed["model"]
        st.toast(handed["notice"])
    with ui.page_db() as db:
        table = registry.model_rows(db)
        model_runs = registry.model_run_ids(db)
    if not model_runs:
        st.info("No models yet: every completed run saves one here.")
    else:
        st.dataframe(table, hide_index=True)
        model_run = st.selectbox("Model of run", model_runs, key="train_model_run")
        c = st.columns(4)
        for column, task in zip(c[:2], registry.TASKS, strict=True):
            if column.button(f"Make active {task} model", key=f"train_promote_{task}"):
                with ui.page_db() as db:
                    registry.promote(db, model_run, task)
                st.rerun()

        fmt = c[2].selectbox(
            "Export as", exports.FORMATS, key="train_export_format", help=exports.FORMAT_HELP
        )

        def export(run_id=model_run, fmt=fmt):
            """Built when the file is asked for, in memory (its own connection: the request may
            come on another thread)."""
            with ui.page_db() as db:
                return exports.export_bytes(db, run_id, fmt)

        c[2].download_button(
            "Export",
            export,
            exports.download_name(model_run, fmt),
            key="train_export",
            icon=":material/download:",
        )
        confirm = c[3].checkbox("Confirm delete", key="train_confirm_delete")
        if c[3].button("Delete model", disabled=not confirm, key="train_delete"):
            with ui.page_db() as db:
                registry.delete_model(db, model_run)
            st.rerun()
    with st.expander("Import a model archive"):
        st.caption(
            "A zip written by *Export* (as zip) or `python -m devmode models export`, here or on "
            "another machine (e.g. a model trained on a GPU box). It becomes a completed run."
        )
        archive = st.file_uploader("Model archive", type=["zip"], key="train_import_file")
        if archive is not None and st.button("Import", key="train_import"):
            with ui.errors_shown():
                with ui.page_db() as db, datasets_view.uploaded_file(archive) as path:
                    imported = archives.import_zip(
                        db,
                        path,
                        environment.files_dir(environment.db_path()),
                        max_bytes=environment.max_upload_bytes(),
                        name=readers.base_name(archive.name),
                    )
                handoff.leave(model=imported.run_id, notice=imported.describe_import(archive.name))
                st.rerun()

    st.subheader("Base models")
    st.caption(
        "Fine-tuning starts from a base encoder: the embedded all-MiniLM-L6-v2, or one adapted "
        "to your text by continuing its masked-word pre-training on datasets you have (the "
        "monitored headlines, tweets; labels are ignored). Pick an adapted base in *New run* "
        "as its base model, `adapted:NAME`."
    )
    with ui.page_db() as db:
        bases = adapted_bases.list_adaptations(db)
        all_names = ingest.dataset_names(db)
    if bases:
        st.dataframe(reports.adapted_rows(bases), hide_index=True)

        @st.fragment(run_every=2 if adapted_bases.any_active(bases) else None)
        def adaptation_panel():
            with ui.page_db() as db:
                working = adapted_bases.active(db)
            for now in working:
                ui.job_panel(
                    now,
                    cancel_label=f"Cancel {now.reference}",
                    key=f"train_adapt_cancel_{now.id}",
                    cancel=lambda job=now: ui.with_db(
                        jobs.request_cancel, adapted_bases.KIND, job.id
                    ),
                )

        adaptation_panel()
        c = st.columns(2)
        doomed = c[0].selectbox(
            "Adapted base", reports.adapted_names(bases), key="train_adapted_delete_name"
        )
        if c[1].button("Delete adapted base", key="train_adapted_delete"):
            with ui.errors_shown(), ui.page_db() as db:
                adapted_bases.delete_adaptation(environment.db_path(), db, doomed)
                st.rerun()
    with st.form("train_adapt_form"):
        chosen_sets = st.multiselect(
            "Datasets whose texts to read", all_names, key="train_adapt_sets"
        )
        adapt_name = st.text_input("Name", key="train_adapt_name", placeholder="news")
        adapt_settings = forms.settings_form(adapted_bases.AdaptSettings, "train_adapt")
        if st.form_submit_button("Adapt"):
            with ui.errors_shown():
                adaptation.start_adaptation(
                    environment.db_path(),
                    chosen_sets,
                    adapt_name,
                    adapted_bases.AdaptSettings(**adapt_settings),
                )
                st.rerun()  # the table shows it, with its progress; a reload is safe
