"""Chat sandbox: talk to a model under a context budget and response limits, and see which
limit ended each reply; run the same prompts under several limits side by side; keep suites
of prompts with assertions, run them as jobs and compare their runs."""

import pandas as pd
import streamlit as st

from devmode import charts, environment, ui
from devmode.chat import bench, context, conversations, limits, replies
from devmode.errors import DevmodeError
from devmode.suites import files, reports, runner, store, tables
from devmode.suites import suite as suite_model

ui.page_setup(__file__)
st.caption(
    "Chat with the embedded SmolLM2-135M-Instruct (no set-up) or any OpenAI-compatible endpoint. "
    "The context is assembled under a token budget (what does not fit is dropped, oldest turns "
    "first); each reply says which limit ended it, with tokens and timings. Conversations are "
    "kept in the database."
)

NEW = 0  # the "new conversation" choice
BACKENDS = limits.BackendSpec
LIMITS = limits.ChatLimits
SETTINGS = limits.ChatSettings

# What the last run asked the next one to do (widgets cannot change once drawn in a run).
pending = st.session_state.pop("chat_pending", {})
if "conversation" in pending:
    st.session_state["chat_conversation"] = pending["conversation"]
    st.session_state["chat_loaded"] = pending["conversation"]
if pending.get("clear_draft"):
    st.session_state["chat_draft"] = ""
if pending.get("notice"):
    st.toast(pending["notice"])

with ui.page_db() as db:
    saved = conversations.list_conversations(db)
titles = conversations.conversation_titles(saved, NEW)
# the open conversation is kept in the address (?conversation=3): a reload or a link reopens it
if "chat_conversation" not in st.session_state:
    asked = st.query_params.get("conversation", "")
    st.session_state["chat_conversation"] = int(asked) if asked.isdigit() else NEW
ui.keep_choice_valid("chat_conversation", list(titles))

left, right = st.columns([1, 2], gap="large")

# ----------------------------------------------------------------------------------------------
with left:
    conversation_id = st.selectbox(
        "Conversation", list(titles), format_func=titles.get, key="chat_conversation"
    )
    with ui.page_db() as db:
        current = conversations.find_conversation(db, conversation_id)
    if current:
        st.query_params["conversation"] = str(current.id)
    else:
        st.query_params.pop("conversation", None)
    if st.session_state.get("chat_loaded") != conversation_id:
        ui.fill_form("chat", (current.settings if current else SETTINGS()).form_values())
        st.session_state["chat_loaded"] = conversation_id

    ui.setting_input(
        BACKENDS.spec("kind"),
        "chat_kind",
        format_func={"embedded": "Embedded SmolLM2", "endpoint": "OpenAI-compatible endpoint"}.get,
    )
    # both groups are always drawn (the idle one disabled): Streamlit forgets the values of
    # widgets that a run does not draw, and switching back should not lose them
    is_endpoint = st.session_state["chat_kind"] == "endpoint"
    ui.setting_input(BACKENDS.spec("precision"), "chat_precision", disabled=is_endpoint)
    with st.expander("Endpoint", expanded=is_endpoint):
        ui.setting_input(BACKENDS.spec("base_url"), "chat_base_url", disabled=not is_endpoint)
        ui.setting_input(BACKENDS.spec("model"), "chat_model", disabled=not is_endpoint)
        ui.setting_input(
            BACKENDS.spec("api_key_name"), "chat_api_key_name", disabled=not is_endpoint
        )
        st.caption(ui.key_status(st.session_state["chat_api_key_name"]))

    ui.setting_input(SETTINGS.spec("system_prompt"), "chat_system_prompt")
    ui.setting_input(SETTINGS.spec("pinned"), "chat_pinned")
    ui.setting_input(SETTINGS.spec("budget_tokens"), "chat_budget_tokens")
    with st.expander(limits.RESPONSE_LIMITS, expanded=True):
        c = st.columns(2)
        ui.setting_input(LIMITS.spec("max_tokens"), "chat_max_tokens", c[0])
        ui.setting_input(LIMITS.spec("timeout_s"), "chat_timeout_s", c[1])
        ui.setting_input(LIMITS.spec("stop"), "chat_stop")
        c = st.columns([2, 1])
        ui.setting_input(LIMITS.spec("banned"), "chat_banned", c[0])
        ui.setting_input(LIMITS.spec("banned_action"), "chat_banned_action", c[1])
    with st.expander(limits.SAMPLING):
        ui.setting_input(LIMITS.spec("temperature"), "chat_temperature")
        ui.setting_input(LIMITS.spec("top_p"), "chat_top_p")
        c = st.columns(2)
        ui.setting_input(LIMITS.spec("top_k"), "chat_top_k", c[0])
        ui.setting_input(LIMITS.spec("seed"), "chat_seed", c[1])
        c = st.columns(2)
        ui.setting_input(LIMITS.spec("presence_penalty"), "chat_presence_penalty", c[0])
        ui.setting_input(LIMITS.spec("frequency_penalty"), "chat_frequency_penalty", c[1])

    try:
        settings = SETTINGS.from_form(ui.form_values("chat", SETTINGS.form_fields()))
    except DevmodeError as e:
        settings = None
        st.error(str(e))

    if current:

        def export(render, conversation_id=current.id):
            """Built when the file is asked for, not on every rerun (its own connection: the
            request may come on another thread)."""
            with ui.page_db() as db:
                return render(db, conversation_id)

        c = st.columns(3)
        c[0].download_button(
            "Export JSON",
            lambda: export(conversations.export_json),
            f"conversation-{current.id}.json",
            icon=":material/download:",
        )
        c[1].download_button(
            "Export Markdown",
            lambda: export(conversations.export_markdown),
            f"conversation-{current.id}.md",
            icon=":material/download:",
        )
        if c[2].button("Delete", key="chat_delete", icon=":material/delete:"):
            with ui.page_db() as db:
                conversations.delete_conversation(db, current.id)
            st.session_state["chat_pending"] = {"conversation": NEW, "notice": "Deleted."}
            st.rerun()

# ----------------------------------------------------------------------------------------------
tab_chat, tab_bench, tab_suites = right.tabs(["Chat", "Limit bench", "Suites"])

with tab_chat:
    with ui.page_db() as db:
        shown = conversations.messages(db, current.id) if current else []
        history = conversations.history(db, current.id) if current else []
    for message in shown:
        with st.chat_message(message.role):
            st.markdown(message.content or "*(no text)*")
            if message.report:
                st.caption(message.summary)
            if message.context_note:
                st.caption(message.context_note)
    if not shown:
        st.info("Type a message below. Try a 20-token limit, a banned word, or a small budget.")

    backend = None
    if settings:
        try:
            backend = ui.chat_backend(settings.backend)
        except DevmodeError as e:
            st.error(str(e))
    draft = st.session_state.get("chat_draft", "")
    if settings and backend:
        try:
            preview = settings.plan(backend, history, draft or "…")
        except DevmodeError as e:
            st.warning(f"As it stands, this message cannot be sent: {e}")
        else:
            rows = context.plan_rows(preview)
            with st.expander(preview.describe(), expanded=bool(preview.dropped)):
                st.plotly_chart(charts.context_figure(rows, preview.budget_tokens))
                st.dataframe(rows, hide_index=True)
                if settings.backend.kind == "endpoint":
                    st.caption(
                        "Token counts for an endpoint are estimates (about 4 characters each)."
                    )

    st.text_area(
        "Message", key="chat_draft", height=90, placeholder="Ask about a market, a filing…"
    )
    if st.button("Send", type="primary", key="chat_send", disabled=not (settings and backend)):
        prompt = st.session_state["chat_draft"]
        try:
            plan = settings.plan(backend, history, prompt)
            stream = replies.ReplyStream(backend, plan, settings.limits)
        except DevmodeError as e:
            st.error(f"{e} Your message is kept above.")
        else:
            with st.chat_message("user"):
                st.markdown(prompt)
            with st.chat_message("assistant"):
                st.write_stream(stream)
                reply = stream.reply
                st.caption(replies.describe_reply(reply))
            if reply.failed:
                st.error(f"{reply.detail}. Your message is kept above; nothing was saved.")
            else:
                with ui.page_db() as db:
                    target = current or conversations.create_conversation(db, settings)
                    conversations.add_exchange(db, target.id, prompt, reply, plan, settings)
                st.session_state["chat_pending"] = {"conversation": target.id, "clear_draft": True}
                st.rerun()

# ----------------------------------------------------------------------------------------------
with tab_bench:
    st.caption(
        "Run the same prompts under several limits, side by side: each cell is a fresh "
        "one-message conversation with the system prompt and pinned context on the left. "
        "Blank cells take the limits on the left."
    )
    st.text_area(
        "Prompts, one per line", bench.DEFAULT_PROMPTS, key="chat_bench_prompts", height=80
    )
    variants = st.data_editor(
        pd.DataFrame(bench.DEFAULT_VARIANT_ROWS),
        num_rows="dynamic",
        key="chat_bench_variants",
        column_config={
            "stop": st.column_config.TextColumn("stop", help="Stop sequences, separated by ;"),
            "banned": st.column_config.TextColumn("banned", help="Banned words, separated by ,"),
        },
        hide_index=True,
    )
    if st.button("Run the bench", key="chat_bench_run", disabled=not (settings and backend)):
        progress = st.progress(0.0, text="Running the bench…")
        try:
            st.session_state["chat_bench_rows"] = bench.run_bench(
                backend,
                settings,
                bench.prompts_from_text(st.session_state["chat_bench_prompts"]),
                bench.variants_from_table(variants, settings.limits),
                on_progress=lambda fraction, text: progress.progress(fraction, text=text),
            )
        except DevmodeError as e:
            st.error(str(e))
    rows = st.session_state.get("chat_bench_rows")
    if rows:
        st.plotly_chart(charts.bench_figure(rows))
        st.dataframe(pd.DataFrame(rows, columns=list(bench.BENCH_COLUMNS)), hide_index=True)
        st.download_button("Download CSV", bench.rows_as_csv(rows), "limit-bench.csv")

# ----------------------------------------------------------------------------------------------
NEW_SUITE = "(new suite)"
RUN_OPTIONS = suite_model.RunOptions

with tab_suites:
    st.caption(
        "A suite is prompts × cases × variants with assertions on every reply, kept in the "
        "database and run as a job (it goes on if you leave the page). Blank cells take the "
        "settings on the left. Endpoint keys are read from the environment by the run's "
        "process. The same suite runs in CI: python -m devmode bench run suite.yaml."
    )
    # a suite just saved or run is the one chosen now, its tables as they were edited
    if st.session_state.get("suite_notice"):
        st.toast(st.session_state.pop("suite_notice"))
    kept = st.session_state.pop("suite_pending", None)
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
        ui.fill_form("suite", tables.form_values(st.session_state["suite_tables"]))
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
        case_rows = st.data_editor(
            pd.DataFrame(tables.filled(start["cases"], names_used), columns=names_used),
            num_rows="dynamic",
            key=f"suite_cases_{version}_{'_'.join(names_used)}",
            hide_index=True,
        ).to_dict("records")
    else:
        case_rows = []
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
            "stop": st.column_config.TextColumn("stop", help="Stop sequences, separated by ;"),
            "banned": st.column_config.TextColumn("banned", help="Banned words, separated by ;"),
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
        },
    ).to_dict("records")
    c = st.columns(3)
    repeat = ui.setting_input(RUN_OPTIONS.spec("repeat"), "suite_repeat", c[0])
    min_rate = ui.setting_input(RUN_OPTIONS.spec("min_pass_rate"), "suite_min_pass_rate", c[1])
    suite = None
    if settings:
        try:
            suite = tables.suite_from_tables(
                st.session_state["suite_name"],
                prompt_rows,
                case_rows,
                variant_rows,
                check_rows,
                settings,
                repeat=repeat,
                min_pass_rate=min_rate,
            )
        except DevmodeError as e:
            st.warning(f"As it stands, this suite cannot run: {e}")
    c = st.columns(3)
    if c[0].button("Run suite", type="primary", key="suite_run", disabled=suite is None):
        try:
            started = runner.start_run(environment.db_path(), suite)
        except DevmodeError as e:
            st.error(str(e))
        else:
            st.session_state["suite_pending"] = suite.name
            st.session_state["suite_notice"] = (
                f"Started run {started.id} of {suite.name}: {suite.size} replies."
            )
            st.rerun()
    if c[1].button("Save suite", key="suite_save", disabled=suite is None):
        with ui.page_db() as db:
            store.save_suite(db, suite)
        st.session_state["suite_pending"] = suite.name
        st.session_state["suite_notice"] = f"Saved {suite.name}."
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
        if run.is_resumable and st.button("Resume this run", key="suite_resume"):
            try:
                runner.resume_run(environment.db_path(), run.id)
            except DevmodeError as e:
                st.error(str(e))
            else:
                st.rerun()
        grid = pd.DataFrame(reports.grid(report))
        st.dataframe(grid.style.map(ui.verdict_colour), hide_index=True, key="suite_grid")
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
            before = c[0].selectbox(
                "Before", ids, index=1, format_func=labels.get, key="suite_before"
            )
            after = c[1].selectbox("After", ids, index=0, format_func=labels.get, key="suite_after")
            with ui.page_db() as db:
                diff = reports.compare(
                    reports.run_report(db, before), reports.run_report(db, after)
                )
                points = reports.pass_rates_over_runs(finished, db)
            st.markdown(reports.diff_text(diff))
            if diff["regressions"] or diff["fixes"]:
                st.dataframe(
                    pd.DataFrame(reports.change_rows(diff)), hide_index=True, key="suite_diff"
                )
            st.dataframe(pd.DataFrame(diff["variants"]), hide_index=True, key="suite_diff_variants")
            st.plotly_chart(charts.suite_pass_rate_figure(points), key="suite_pass_chart")
