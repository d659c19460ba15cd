"""Chat sandbox: talk to a model under a context budget and response limits, and see which
limit ended each reply; run the same prompts under several limits side by side. Suites of
prompts with assertions have their own page (/Suites)."""

import pandas as pd
import streamlit as st

from devmode import charts, ui
from devmode.chat import context, conversations, limit_bench, limits, replies
from devmode.errors import DevmodeError
from devmode.ui import chat_view, forms

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
handoff = ui.Handoff("chat")
pending = handoff.take()
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
        forms.fill_form("chat", (current.settings if current else SETTINGS()).form_values())
        st.session_state["chat_loaded"] = conversation_id

    settings = chat_view.settings_form("chat")

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
            handoff.leave(conversation=NEW, notice="Deleted.")
            st.rerun()

# ----------------------------------------------------------------------------------------------
tab_chat, tab_bench = right.tabs(["Chat", "Limit bench"])
ui.page_link(
    "pages/5_Suites.py",
    "Suites: prompts x cases x variants with assertions, run as jobs, compared",
    right,
)

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
        with ui.errors_shown():
            backend = chat_view.chat_backend(settings.backend)
    draft = st.session_state.get("chat_draft", "")
    if settings and backend:
        with ui.errors_shown(warn="As it stands, this message cannot be sent"):
            preview = settings.plan(backend, history, draft or "…")
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
                handoff.leave(conversation=target.id, clear_draft=True)
                st.rerun()

# ----------------------------------------------------------------------------------------------
with tab_bench:
    st.caption(
        "Run the same prompts under several limits, side by side: each cell is a fresh "
        "one-message conversation with the system prompt and pinned context on the left. "
        "Blank cells take the limits on the left."
    )
    st.text_area(
        "Prompts, one per line", limit_bench.DEFAULT_PROMPTS, key="chat_bench_prompts", height=80
    )
    variants = st.data_editor(
        pd.DataFrame(limit_bench.DEFAULT_VARIANT_ROWS),
        num_rows="dynamic",
        key="chat_bench_variants",
        column_config={
            "stop": st.column_config.TextColumn("stop", help=f"Stop sequences, {limits.LIST_HELP}"),
            "banned": st.column_config.TextColumn(
                "banned", help=f"Banned words, {limits.LIST_HELP}"
            ),
        },
        hide_index=True,
    )
    if st.button("Run the bench", key="chat_bench_run", disabled=not (settings and backend)):
        progress = st.progress(0.0, text="Running the bench…")
        with ui.errors_shown():
            st.session_state["chat_bench_rows"] = limit_bench.run_bench(
                backend,
                settings,
                limit_bench.prompts_from_text(st.session_state["chat_bench_prompts"]),
                limit_bench.variants_from_table(variants, settings.limits),
                on_progress=lambda fraction, text: progress.progress(fraction, text=text),
            )
    rows = st.session_state.get("chat_bench_rows")
    if rows:
        st.plotly_chart(charts.bench_figure(rows))
        st.dataframe(pd.DataFrame(rows, columns=list(limit_bench.BENCH_COLUMNS)), hide_index=True)
        st.download_button("Download CSV", limit_bench.rows_as_csv(rows), "limit-bench.csv")
