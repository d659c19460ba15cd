"""Suites: prompts x cases x variants with assertions on every reply, kept in the database, run
as jobs (a run goes on when you leave the page), each run's grid and report, and two runs
compared. The same suite runs in CI: python -m devmode bench run suite.yaml."""

import pandas as pd
import streamlit as st

from devmode import charts, environment, ui
from devmode.chat import limits
from devmode.errors import DevmodeError
from devmode.suites import files, reports, runner, store, tables
from devmode.suites import suite as suite_model
from devmode.ui import chat_view, forms, suites_view

ui.page_setup(__file__)
st.caption(
    "A suite is prompts × cases × variants with assertions on every reply, kept in the database "
    "and run as a job (it goes on if you leave the page). Blank cells of a variant take the "
    "defaults on the left. Endpoint keys are read from the environment by the run's process. "
    "The same suite runs in CI: python -m devmode bench run suite.yaml."
)

NEW_SUITE = "(new suite)"
RUN_OPTIONS = suite_model.RunOptions
handoff = ui.Handoff("suites")

left_column, right = st.columns([1, 2], gap="large")
with left_column:
    st.markdown("**Defaults for blank cells**")
    if "suite_default_kind" not in st.session_state:
        forms.fill_form("suite_default", limits.ChatSettings().form_values())
    settings = chat_view.settings_form("suite_default")

with right:
    # a suite just saved or run is the one chosen now, its tables as they were edited
    handed = handoff.take()
    if handed.get("notice"):
        st.toast(handed["notice"])
    if handed.get("run"):
        st.session_state["suite_shown_run"] = handed["run"]
    kept = handed.get("suite")
    if kept:
        st.session_state["suite_choice"] = kept
        upload = st.session_state.get("suite_upload")
        st.session_state["suite_loaded"] = (
            ("upload", upload.file_id) if upload else ("choice", kept)
        )
    with ui.page_db() as db:
        names = store.suite_names(db)
    ui.keep_choice_valid("suite_choice", [NEW_SUITE, *names])
    c = st.columns([2, 2])
    choice = c[0].selectbox("Suite", [NEW_SUITE, *names], key="suite_choice")
    uploaded = c[1].file_uploader(
        "Import a suite (devmode YAML or promptfooconfig.yaml)",
        type=["yaml", "yml"],
        key="suite_upload",
    )
    loaded_key = ("upload", uploaded.file_id) if uploaded else ("choice", choice)
    if st.session_state.get("suite_loaded") != loaded_key:
        try:
            if uploaded:
                found = files.read_suite_bytes(uploaded.getvalue(), uploaded.name)
                st.session_state["suite_tables"] = tables.suite_tables(found)
            elif choice == NEW_SUITE:
                st.session_state["suite_tables"] = tables.starter_tables()
            else:
                with ui.page_db() as db:
                    st.session_state["suite_tables"] = tables.suite_tables(
                        store.get_suite(db, choice)
                    )
        except DevmodeError as e:  # shown while that file stays chosen
            st.session_state["suite_problem"] = (loaded_key, f"Could not read the suite: {e}")
            st.session_state.setdefault("suite_tables", tables.starter_tables())
        st.session_state["suite_loaded"] = loaded_key
        st.session_state["suite_version"] = ui.new_token()  # the tables' editors start over
        forms.fill_form("suite", tables.form_values(st.session_state["suite_tables"]))
    start = st.session_state["suite_tables"]
    version = st.session_state["suite_version"]
    problem = st.session_state.get("suite_problem")
    if problem and problem[0] == loaded_key:
        st.error(problem[1])

    st.text_input("Name", key="suite_name", placeholder="bond-basics")
    prompt_rows = st.data_editor(
        pd.DataFrame(tables.filled(start["prompts"], ("id", "text"))),
        num_rows="dynamic",
        key=f"suite_prompts_{version}",
        hide_index=True,
        column_config={
            "id": st.column_config.TextColumn("id", width="small"),
            "text": st.column_config.TextColumn(
                "prompt", width="large", help="Variables in braces: {company}."
            ),
        },
    ).to_dict("records")
    names_used = tables.variables(prompt_rows)
    if names_used:
        st.markdown(f"**Cases**: a row per case, a column per variable ({', '.join(names_used)})")
        case_columns = [tables.CASE_ID, *names_used]
        case_rows = st.data_editor(
            pd.DataFrame(tables.filled(start["cases"], case_columns), columns=case_columns),
            num_rows="dynamic",
            key=f"suite_cases_{version}_{'_'.join(names_used)}",
            hide_index=True,
        ).to_dict("records")
    else:
        case_rows = []
    if start.get("case_extras"):
        st.caption(tables.extras_text(start["case_extras"]))
    st.markdown("**Variants**: the limits and backend of each column")
    variant_rows = st.data_editor(
        pd.DataFrame(tables.filled(start["variants"], tables.VARIANT_COLUMNS)),
        num_rows="dynamic",
        key=f"suite_variants_{version}",
        hide_index=True,
        column_config={
            "backend": st.column_config.SelectboxColumn(
                "backend", options=list(limits.BACKEND_KINDS), help="Blank: the one on the left."
            ),
            "base_url": st.column_config.TextColumn(
                "base_url", help="An endpoint's, e.g. http://127.0.0.1:8000/v1 (devmode serve)."
            ),
            "stop": st.column_config.TextColumn("stop", help=f"Stop sequences, {limits.LIST_HELP}"),
            "banned": st.column_config.TextColumn(
                "banned", help=f"Banned words, {limits.LIST_HELP}"
            ),
        },
    ).to_dict("records")
    st.markdown("**Assertions** on every reply, or on one prompt's")
    check_rows = st.data_editor(
        pd.DataFrame(tables.filled(start["checks"], tables.CHECK_COLUMNS)),
        num_rows="dynamic",
        key=f"suite_checks_{version}",
        hide_index=True,
        column_config={
            "prompt": st.column_config.SelectboxColumn(
                "prompt",
                options=[tables.EVERY_PROMPT, *tables.prompt_ids(prompt_rows)],
                default=tables.EVERY_PROMPT,
            ),
            "type": st.column_config.SelectboxColumn(
                "type", options=tables.CHECK_TYPES, required=True
            ),
            "value": st.column_config.TextColumn(
                "value", help="Text (lists separated by ;), a number, a limit, or a JSON schema."
            ),
            "threshold": st.column_config.NumberColumn("threshold", help="similar: 0 to 1."),
            "which": st.column_config.TextColumn(
                "which", help="stopped-by: the stop sequence or banned word."
            ),
            "model": st.column_config.TextColumn(
                "model", help="classifier: a run id, active-sentiment, active-topic or base."
            ),
        },
    ).to_dict("records")
    c = st.columns(3)
    repeat = forms.setting_input(RUN_OPTIONS.spec("repeat"), "suite_repeat", c[0])
    min_rate = forms.setting_input(RUN_OPTIONS.spec("min_pass_rate"), "suite_min_pass_rate", c[1])
    significance = forms.setting_input(RUN_OPTIONS.spec("significance"), "suite_significance", c[2])
    suite = None
    if settings:
        with ui.errors_shown(warn="As it stands, this suite cannot run"):
            suite = tables.suite_from_tables(
                st.session_state["suite_name"],
                prompt_rows,
                case_rows,
                variant_rows,
                check_rows,
                settings,
                repeat=repeat,
                min_pass_rate=min_rate,
                significance=significance,
                case_extras=start.get("case_extras"),
            )
    c = st.columns(3)
    if c[0].button("Run suite", type="primary", key="suite_run", disabled=suite is None):
        with ui.errors_shown():
            started = runner.start_run(environment.db_path(), suite)
            handoff.leave(
                suite=suite.name,
                run=started.id,
                notice=f"Started run {started.id} of {suite.name}: {suite.size} replies.",
            )
            st.rerun()
    if c[1].button("Save suite", key="suite_save", disabled=suite is None):
        with ui.page_db() as db:
            store.save_suite(db, suite)
        handoff.leave(suite=suite.name, notice=f"Saved {suite.name}.")
        st.rerun()
    if suite is not None:
        c[2].download_button(
            "Export YAML",
            lambda: files.suite_yaml(suite),
            f"{suite.name}.yaml",
            key="suite_export",
        )

    with ui.page_db() as db:
        suite_runs = store.list_runs(db, suite.name) if suite else []
    if suite_runs:
        latest = suite_runs[0]

        @st.fragment(run_every=1 if latest.is_active else None)
        def suite_progress():
            with ui.page_db() as db:
                run = store.get_run(db, latest.id)
            if latest.is_active and not run.is_active:
                st.rerun()  # finished while watched: show its report
            ui.job_panel(
                run,
                cancel_label="Cancel run",
                key="suite_cancel",
                cancel=lambda: ui.with_db(runner.request_cancel, run.id),
            )

        suite_progress()
        labels = store.run_labels(suite_runs)
        ui.keep_choice_valid("suite_shown_run", list(labels))
        shown = st.selectbox("Run", list(labels), format_func=labels.get, key="suite_shown_run")
        with ui.page_db() as db:
            run = store.get_run(db, shown)
            report = reports.run_report(db, shown)
        c = st.columns(2)
        if run.is_resumable and c[0].button("Resume this run", key="suite_resume"):
            with ui.errors_shown():
                runner.resume_run(environment.db_path(), run.id)
                st.rerun()
        if not run.is_active and c[1].button(
            "Rescore this run",
            key="suite_rescore",
            help="Check this run's stored replies again with the suite as it is above, without "
            "asking any chat model; stored as a new run.",
        ):
            with ui.errors_shown():
                rescored = runner.rescore(environment.db_path(), run.id, suite)
                handoff.leave(
                    suite=suite.name,
                    run=rescored.id,
                    notice=f"Run {rescored.id}: run {run.id}'s replies rescored, no model asked.",
                )
                st.rerun()
        grid = pd.DataFrame(reports.grid(report))
        st.dataframe(grid.style.map(suites_view.verdict_colour), hide_index=True, key="suite_grid")
        with st.expander("Each cell: passes out of repeats, interval, pass^k, flaky"):
            st.dataframe(reports.cell_rows(report), hide_index=True, key="suite_cells")
        failures = reports.failure_rows(report)
        if failures:
            st.markdown(f"**{len(failures)} replies failed or never came**, and why")
            st.dataframe(pd.DataFrame(failures), hide_index=True, key="suite_failures")
        elif report["summary"]["replies"]:
            st.success(f"Every reply passed its checks ({report['summary']['replies']}).")
        # each file is made when it is asked for, not on every rerun
        for column, (kind, render) in zip(
            st.columns(len(reports.RENDERERS)), reports.RENDERERS.items(), strict=True
        ):
            column.download_button(
                f"Download {kind.upper()}",
                lambda render=render: render(report),
                f"{report['suite']}-run-{shown}.{kind}",
                key=f"suite_download_{kind}",
            )
        finished = store.finished_runs(suite_runs)
        if len(finished) >= 2:
            st.subheader("Compare runs")
            ids = list(store.run_labels(finished))
            c = st.columns(2)
            # keyed by the newest run: a run that finishes brings the two newest back
            before = c[0].selectbox(
                "Before", ids, index=1, format_func=labels.get, key=f"suite_before_{ids[0]}"
            )
            after = c[1].selectbox(
                "After", ids, index=0, format_func=labels.get, key=f"suite_after_{ids[0]}"
            )
            with ui.page_db() as db:
                diff = reports.compare(
                    reports.run_report(db, before), reports.run_report(db, after)
                )
                points = reports.pass_rates_over_runs(finished, db)
            st.markdown(reports.diff_text(diff))
            if diff["flaky"]:
                st.caption(reports.flaky_text(diff))
            if diff["regressions"] or diff["fixes"]:
                st.dataframe(
                    pd.DataFrame(reports.change_rows(diff)), hide_index=True, key="suite_diff"
                )
            st.dataframe(pd.DataFrame(diff["variants"]), hide_index=True, key="suite_diff_variants")
            st.plotly_chart(charts.suite_pass_rate_figure(points), key="suite_pass_chart")
