"""Fine-tune: train a classifier on a labelled dataset, watch it live, read the before/after report,
and promote the model."""

import tempfile
from pathlib import Path

import streamlit as st

from devmode import charts, config, ingest, models, readers, reports, runs, ui, worker
from devmode.errors import DevmodeError

ui.page_setup("Fine-tune", ":material/model_training:")
st.title("Fine-tune")
st.caption(
    "Turn a labelled dataset into a classifier: the run trains in its own process (a reload "
    "re-attaches to it), keeps the epoch with the best validation macro-F1, and is judged on the "
    "dataset's held-out test split against the untrained base model."
)

DEFAULTS = config.TrainConfig("x")
# The form, section by section: (TrainConfig field, label, choices or (min, max), help).
FORM = [
    (
        None,
        [
            ("epochs", "Epochs", (1, 1000), None),
            ("batch_size", "Batch size", (1, 65536), None),
            ("learning_rate", "Learning rate", (1e-7, 0.9), "Peak, reached after warmup."),
            ("max_length_tokens", "Max length (tokens)", (8, 8192), "Longer texts are truncated."),
        ],
    ),
    (
        "Optimizer and schedule",
        [
            (
                "optimizer",
                "Optimizer",
                config.OPTIMIZERS,
                "AdamW (fused on CUDA) or SGD with momentum.",
            ),
            ("momentum", "Momentum (SGD)", (0.0, 0.999), None),
            (
                "schedule",
                "Schedule",
                config.SCHEDULES,
                "How the learning rate decays after warmup.",
            ),
            ("warmup_fraction", "Warmup fraction", (0.0, 0.99), None),
            ("weight_decay", "Weight decay", (0.0, 0.99), None),
            ("max_grad_norm", "Gradient clipping (0 = off)", (0.0, 100.0), None),
        ],
    ),
    (
        "Regularisation and robustness",
        [
            ("dropout", "Dropout", (0.0, 0.9), None),
            (
                "early_stopping_patience",
                "Early stopping patience (epochs, 0 = off)",
                (0, 100),
                "Stop when validation macro-F1 has not improved for this many epochs; the best epoch is kept.",
            ),
            ("class_weights", "Class weights (for imbalance)", None, None),
            (
                "label_smoothing",
                "Label smoothing",
                (0.0, 0.99),
                "Spread this share of each target over the other classes.",
            ),
            (
                "adversarial",
                "Adversarial training",
                config.ADVERSARIAL,
                "fgm: perturb the word embeddings along the gradient each step.",
            ),
            ("adversarial_epsilon", "Adversarial epsilon", (0.01, 100.0), None),
        ],
    ),
    (
        "What to train",
        [
            (
                "freeze_embeddings",
                "Keep word embeddings fixed",
                None,
                "Half of all-MiniLM-L6-v2's weights: training is faster and unseen words keep their meaning.",
            ),
            (
                "freeze",
                "Freeze",
                config.FREEZE_MODES,
                "none: train all; top_layers: only the top N layers and the head; head_only.",
            ),
            ("train_top_layers", "Top layers to train", (1, 100), None),
            (
                "pooling",
                "Pooling",
                config.POOLINGS,
                "mean: how all-MiniLM-L6-v2 was trained; cls: BERT's way.",
            ),
            (
                "lora",
                "LoRA adapters (peft)",
                None,
                "Train small adapters instead of the encoder's weights.",
            ),
            ("lora_rank", "LoRA rank", (1, 1024), None),
            ("lora_alpha", "LoRA alpha", (1, 4096), None),
        ],
    ),
    (
        "Hardware and logging",
        [
            ("device", "Device", config.DEVICES, None),
            ("precision", "Precision", config.PRECISIONS, "auto: bf16 on CUDA, fp32 on the CPU."),
            (
                "cuda_graphs",
                "CUDA graphs",
                None,
                "Replay each step as one CUDA graph (GPU, AdamW): less launch overhead. Not yet measured on a GPU.",
            ),
            ("eval_batch_size", "Eval batch size", (1, 65536), None),
            ("seed", "Seed", (0, 2**31 - 1), None),
            ("log_every_steps", "Log every (steps)", (1, 10000), None),
        ],
    ),
]


def config_input(container, field, label, spec, help):
    """One widget for one TrainConfig field, defaulting to TrainConfig's own default."""
    default = getattr(DEFAULTS, field)
    key = f"train_{field}"
    if isinstance(default, bool):
        return container.checkbox(label, default, key=key, help=help)
    if isinstance(default, str):
        return container.selectbox(label, spec, index=spec.index(default), key=key, help=help)
    low, high = spec
    number_format = "%.0e" if field == "learning_rate" else None
    value = container.number_input(
        label, low, high, default, key=key, help=help, format=number_format
    )
    return type(default)(value)


def fmt_seconds(seconds):
    if seconds is None:
        return "estimating…"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


with ui.page_db() as db:
    runs.reconcile(db)
    labelled = [d for d in ingest.list_datasets(db) if d.mapping.label]
    all_runs = runs.list_runs(db)

tab_new, tab_runs, tab_models = st.tabs(["New run", "Runs", "Models"])

# ----------------------------------------------------------------------------------------------
with tab_new:
    if not labelled:
        st.info(
            "No labelled dataset yet. Upload one on the **Datasets** page and map its label column."
        )
    else:
        with st.form("train_form"):
            c = st.columns(2)
            dataset = c[0].selectbox("Dataset", [d.name for d in labelled], key="train_dataset")
            settings = {
                "base_model": c[1].text_input(
                    "Base model",
                    DEFAULTS.base_model,
                    key="train_base_model",
                    help="The embedded all-MiniLM-L6-v2, a local Hugging Face model folder, or a hub id (online only).",
                )
            }
            for section, fields in FORM:
                box = st.expander(section) if section else st.container()
                columns = box.columns(len(fields) if section is None else 3)
                for i, (field, label, spec, help_text) in enumerate(fields):
                    settings[field] = config_input(
                        columns[i % len(columns)], field, label, spec, help_text
                    )
            start = st.form_submit_button("Start training", type="primary")
        if start:
            try:
                with ui.page_db() as db:
                    run = runs.create_run(db, config.TrainConfig(dataset=dataset, **settings))
                worker.start_job(config.db_path(), run.id)
            except DevmodeError as e:
                st.error(str(e))
            else:
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
        ids = [r.id for r in all_runs]
        ui.keep_choice_valid("train_selected_run", ids)
        labels = {r.id: f"run {r.id} · {r.dataset} · {r.status}" for r in all_runs}
        run_id = st.selectbox("Run", ids, key="train_selected_run", format_func=labels.get)
        selected = next(r for r in all_runs if r.id == run_id)

        @st.fragment(run_every=2 if selected.is_active else None)
        def live_panel():
            with ui.page_db() as db:
                runs.reconcile(db)
                run = runs.get_run(db, run_id)
                metrics = runs.metrics_for_run(db, run_id)
            if selected.is_active and not run.is_active:
                st.rerun()  # finished while watched: redraw the whole page with the report
            status_line = f"**{run.status}** · step {run.step:,}/{run.total_steps:,} · epoch {run.epoch}/{run.config.epochs}"
            if run.is_active:
                speeds = [m["value"] for m in metrics if m["name"] == "samples_per_second"]
                status_line += (
                    f" · about {fmt_seconds(run.eta_seconds(speeds[-1] if speeds else None))} left"
                )
            st.markdown(status_line)
            if run.is_active or run.total_steps:
                st.progress(run.fraction_done, text=f"{run.fraction_done:.0%}")
            if run.error:
                (st.warning if run.status == "interrupted" else st.error)(run.error)
            if metrics:
                c = st.columns(2)
                c[0].plotly_chart(charts.training_figure(metrics), key=f"train_loss_chart_{run_id}")
                c[1].plotly_chart(
                    charts.validation_figure(metrics), key=f"train_val_chart_{run_id}"
                )
            if run.is_active:
                if st.button("Cancel run", key="train_cancel"):
                    with ui.page_db() as db:
                        runs.request_cancel(db, run_id)
                    st.toast(f"Cancelling run {run_id} after its current step…")

        live_panel()

        if selected.status in ("interrupted", "cancelled", "failed"):
            if st.button("Resume from the last checkpoint", key="train_resume"):
                try:
                    worker.start_job(config.db_path(), selected.id)
                except DevmodeError as e:
                    st.error(str(e))
                else:
                    st.rerun()

        if selected.baseline or selected.test:
            st.subheader("Before vs after")
            rows = reports.before_after(selected)
            st.plotly_chart(charts.before_after_figure(rows), key="train_before_after")
            st.dataframe(
                [
                    {
                        "model": r["model"],
                        "accuracy": r["accuracy"],
                        "macro-F1": r["macro_f1"],
                        "kind": r["kind"],
                    }
                    for r in rows
                ],
                hide_index=True,
            )
            if reports.references_for(selected.dataset_sha256):
                st.caption(
                    "Published figures come from the papers' own splits and are a reference line, not a like-for-like score."
                )
        if selected.test:
            c = st.columns([1, 1])
            c[0].plotly_chart(charts.confusion_figure(selected.test), key="train_confusion")
            c[1].markdown("**Per class** (test split)")
            c[1].dataframe(selected.test["per_class"], hide_index=True)
            st.markdown("**Most confident mistakes**")
            st.dataframe(selected.test.get("mistakes", []), hide_index=True)
            st.caption(
                f"Trained {selected.train_seconds or 0:.0f} s on {selected.device} ({selected.precision}), "
                f"{selected.samples_per_second or 0:,.0f} samples/s; versions {selected.versions}."
            )

        with st.expander("Settings of this run"):
            st.json(selected.config.to_dict())

        if len(all_runs) > 1:
            st.subheader("Compare runs")
            chosen = st.multiselect(
                "Runs", ids, default=ids[:2], format_func=labels.get, key="train_compare"
            )
            if len(chosen) >= 2:
                table = reports.compare_runs(
                    [next(r for r in all_runs if r.id == i) for i in chosen]
                )
                st.dataframe(
                    [
                        {
                            "setting": row["setting"],
                            **{
                                f"run {i}": str(v)
                                for i, v in zip(chosen, row["values"], strict=True)
                            },
                        }
                        for row in table
                    ],
                    hide_index=True,
                )

# ----------------------------------------------------------------------------------------------
with tab_models:
    # an import chose the model to show; set before the selectbox exists, on the next run
    if "train_model_next" in st.session_state:
        st.session_state["train_model_run"] = st.session_state.pop("train_model_next")
        st.toast(st.session_state.pop("train_model_notice", ""))
    with ui.page_db() as db:
        registry = models.list_models(db)
    if not registry:
        st.info("No models yet: every completed run saves one here.")
    else:
        by_run = {r.id: r for r in all_runs}
        st.dataframe(
            [
                {
                    "run": m.run_id,
                    "dataset": m.dataset,
                    "labels": ", ".join(m.labels),
                    "active as": m.active_as or "",
                    "test accuracy": (by_run[m.run_id].test or {}).get("accuracy")
                    if m.run_id in by_run
                    else None,
                    "created": m.created_at[:16],
                }
                for m in registry
            ],
            hide_index=True,
        )
        model_run = st.selectbox(
            "Model of run", [m.run_id for m in registry], key="train_model_run"
        )
        c = st.columns(4)
        for column, task in zip(c[:2], models.TASKS, strict=True):
            if column.button(f"Make active {task} model", key=f"train_promote_{task}"):
                with ui.page_db() as db:
                    models.promote(db, model_run, task)
                st.rerun()
        if c[2].button("Prepare zip export", key="train_export"):
            with ui.page_db() as db:
                path = models.export_zip(
                    db, model_run, Path(tempfile.mkdtemp()) / f"devmode-run-{model_run}.zip"
                )
            st.session_state["train_export_bytes"] = (model_run, path.read_bytes())
        export = st.session_state.get("train_export_bytes")
        if export and export[0] == model_run:
            c[2].download_button(
                "Download zip", export[1], f"devmode-run-{model_run}.zip", key="train_download"
            )
        confirm = c[3].checkbox("Confirm delete", key="train_confirm_delete")
        if c[3].button("Delete model", disabled=not confirm, key="train_delete"):
            with ui.page_db() as db:
                models.delete_model(db, model_run)
            st.rerun()
    with st.expander("Import a model archive"):
        st.caption(
            "A zip written by *Prepare zip export* or `python -m devmode models export`, here or on "
            "another machine (e.g. a model trained on a GPU box). It becomes a completed run."
        )
        archive = st.file_uploader("Model archive", type=["zip"], key="train_import_file")
        if archive is not None and st.button("Import", key="train_import"):
            try:
                with ui.page_db() as db, ui.uploaded_file(archive) as path:
                    imported = models.import_zip(
                        db,
                        path,
                        config.files_dir(config.db_path()),
                        max_bytes=config.max_upload_bytes(),
                        name=readers.base_name(archive.name),
                    )
            except DevmodeError as e:
                st.error(str(e))
            else:
                st.session_state["train_model_next"] = imported.run_id
                st.session_state["train_model_notice"] = (
                    f"Imported {archive.name} as run {imported.run_id} "
                    f"({', '.join(imported.labels)})."
                )
                st.rerun()
