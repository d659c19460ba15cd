"""Chat sandbox: talk to a model under a context budget and response limits, and see which
limit ended each reply; run the same prompts under several limits side by side."""

import pandas as pd
import streamlit as st

from devmode import charts, chat, conversations, ui
from devmode.errors import DevmodeError

ui.page_setup("Chat sandbox", ":material/chat:")
st.title("Chat sandbox")
st.caption(
    "Chat with the embedded SmolLM2-135M-Instruct (no set-up) or any OpenAI-compatible endpoint. "
    "The context is assembled under a token budget (what does not fit is dropped, oldest turns "
    "first); each reply says which limit ended it, with tokens and timings. Conversations are "
    "kept in the database."
)

NEW = 0  # the "new conversation" choice
DEFAULTS = chat.ChatSettings()


def settings_to_widgets(settings: chat.ChatSettings) -> None:
    """Show a conversation's settings in the widgets (called before they are drawn)."""
    limits, backend = settings.limits, settings.backend
    st.session_state.update(
        {
            "chat_backend_kind": backend.kind,
            "chat_base_url": backend.base_url,
            "chat_model": backend.model,
            "chat_key_name": backend.api_key_name,
            "chat_precision": backend.precision,
            "chat_system": settings.system_prompt,
            "chat_pinned": chat.documents_as_text(settings.pinned),
            "chat_budget": settings.budget_tokens,
            "chat_max_tokens": limits.max_tokens,
            "chat_stop": chat.stop_sequences_as_text(limits.stop),
            "chat_banned": ", ".join(limits.banned),
            "chat_banned_action": limits.banned_action,
            "chat_temperature": limits.temperature,
            "chat_top_p": limits.top_p,
            "chat_top_k": limits.top_k,
            "chat_presence": limits.presence_penalty,
            "chat_frequency": limits.frequency_penalty,
            "chat_seed": "" if limits.seed is None else str(limits.seed),
            "chat_timeout": limits.timeout_s,
        }
    )


def settings_from_widgets() -> chat.ChatSettings:
    """The settings the widgets show (ChatInputError says what is wrong with them)."""
    state = st.session_state
    seed = state["chat_seed"].strip()
    if seed and not seed.isdigit():
        raise chat.ChatInputError(f"The seed must be a whole number or empty; found {seed!r}.")
    return chat.ChatSettings(
        system_prompt=state["chat_system"],
        pinned=chat.documents_from_text(state["chat_pinned"]),
        budget_tokens=int(state["chat_budget"]),
        limits=chat.ChatLimits(
            max_tokens=int(state["chat_max_tokens"]),
            stop=chat.stop_sequences_from_text(state["chat_stop"]),
            banned=chat.words_from_text(state["chat_banned"]),
            banned_action=state["chat_banned_action"],
            temperature=state["chat_temperature"],
            top_p=state["chat_top_p"],
            top_k=int(state["chat_top_k"]),
            presence_penalty=state["chat_presence"],
            frequency_penalty=state["chat_frequency"],
            seed=int(seed) if seed else None,
            timeout_s=state["chat_timeout"],
        ),
        backend=chat.BackendSpec(
            kind=state["chat_backend_kind"],
            base_url=state["chat_base_url"].strip(),
            model=state["chat_model"].strip(),
            api_key_name=state["chat_key_name"].strip(),
            precision=state["chat_precision"],
        ),
    )


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
ids = [NEW] + [c.id for c in saved]
titles = {NEW: "New conversation"}
titles.update({c.id: f"{c.title or 'untitled'} · {c.message_count} messages" for c in saved})
# the open conversation is kept in the address (?conversation=3): a reload or a link reopens it
if "chat_conversation" not in st.session_state:
    asked = st.query_params.get("conversation", "")
    st.session_state["chat_conversation"] = int(asked) if asked.isdigit() else NEW
ui.keep_choice_valid("chat_conversation", ids)

left, right = st.columns([1, 2], gap="large")

# ----------------------------------------------------------------------------------------------
with left:
    conversation_id = st.selectbox(
        "Conversation", ids, format_func=titles.get, key="chat_conversation"
    )
    current = next((c for c in saved if c.id == conversation_id), None)
    if current:
        st.query_params["conversation"] = str(current.id)
    else:
        st.query_params.pop("conversation", None)
    if st.session_state.get("chat_loaded") != conversation_id:
        settings_to_widgets(current.settings if current else DEFAULTS)
        st.session_state["chat_loaded"] = conversation_id

    st.radio(
        "Model",
        chat.BACKEND_KINDS,
        key="chat_backend_kind",
        horizontal=True,
        format_func={
            "embedded": "Embedded SmolLM2",
            "endpoint": "OpenAI-compatible endpoint",
        }.get,
    )
    # both groups are always drawn (the idle one disabled): Streamlit forgets the values of
    # widgets that a run does not draw, and switching back should not lose them
    is_endpoint = st.session_state["chat_backend_kind"] == "endpoint"
    st.selectbox(
        "Weights of the embedded model",
        chat.CHAT_PRECISIONS,
        key="chat_precision",
        disabled=is_endpoint,
        help="auto: int8 on a CPU with native bf16 (fastest), bf16 on a GPU, else fp32.",
    )
    with st.expander("Endpoint", expanded=is_endpoint):
        st.text_input(
            "Base URL",
            key="chat_base_url",
            disabled=not is_endpoint,
            placeholder="http://127.0.0.1:8000/v1",
            help="`python -m devmode serve` serves the embedded model here; vLLM, Ollama, LM "
            "Studio and OpenAI work too.",
        )
        st.text_input("Model name", key="chat_model", disabled=not is_endpoint)
        st.text_input(
            "API key: secret or environment variable name",
            key="chat_key_name",
            disabled=not is_endpoint,
            help="The key is read from Streamlit secrets or the environment under this name "
            "when a message is sent; it is never stored or shown.",
        )
        _, found_in = ui.api_key(st.session_state["chat_key_name"].strip())
        st.caption(
            f"Key found in {found_in}."
            if found_in != "nowhere"
            else "No key under that name: fine for a local server that needs none."
        )

    st.text_area("System prompt", key="chat_system", height=80)
    st.text_area(
        "Pinned context",
        key="chat_pinned",
        height=100,
        help="Documents or few-shot examples kept in every request, after the system prompt. "
        "Separate documents with a line holding only ---.",
    )
    st.number_input(
        "Context budget (tokens)",
        16,
        131072,
        key="chat_budget",
        step=64,
        help="System prompt, pinned context, conversation and your message must fit; the "
        "oldest turns are dropped first, then pinned documents are cut.",
    )
    with st.expander("Response limits", expanded=True):
        c = st.columns(2)
        c[0].number_input("Max tokens", 1, 32768, key="chat_max_tokens")
        c[1].number_input("Timeout (s)", 0.5, 3600.0, key="chat_timeout", step=5.0)
        st.text_area(
            "Stop sequences",
            key="chat_stop",
            height=68,
            help="One per line (at most 4); write \\n for a new line.",
        )
        c = st.columns([2, 1])
        c[0].text_input(
            "Banned words or phrases",
            key="chat_banned",
            help="Whole words, any case, separated by commas.",
        )
        c[1].radio(
            "When one appears",
            chat.BANNED_ACTIONS,
            key="chat_banned_action",
            help="block: end the reply there; mask: hide it and go on.",
        )
    with st.expander("Sampling"):
        st.slider("Temperature (0 = greedy)", 0.0, 2.0, key="chat_temperature", step=0.05)
        st.slider("Top-p", 0.01, 1.0, key="chat_top_p", step=0.01)
        c = st.columns(2)
        c[0].number_input("Top-k (embedded)", 0, 1000, key="chat_top_k")
        c[1].text_input("Seed", key="chat_seed", placeholder="random")
        c = st.columns(2)
        c[0].number_input("Presence penalty (endpoint)", -2.0, 2.0, key="chat_presence", step=0.1)
        c[1].number_input("Frequency penalty (endpoint)", -2.0, 2.0, key="chat_frequency", step=0.1)

    try:
        settings = settings_from_widgets()
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
tab_chat, tab_bench = right.tabs(["Chat", "Limit bench"])

with tab_chat:
    with ui.page_db() as db:
        shown = conversations.messages(db, current.id) if current else []
    history = [(m.role, m.content) for m in shown]
    for message in shown:
        with st.chat_message(message.role):
            st.markdown(message.content or "*(no text)*")
            if message.report:
                st.caption(message.summary)
            dropped = [p for p in message.context if p["status"] != "kept"]
            if dropped:
                st.caption(
                    "Context: "
                    + ", ".join(
                        f"{p['kind']} {p['status']} ({p['tokens']} tokens)" for p in dropped
                    )
                )
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
            rows = chat.plan_rows(preview)
            with st.expander(
                f"Context to send: {preview.used_tokens} of {settings.budget_tokens} tokens"
                + (f", {len(preview.dropped)} part(s) dropped or cut" if preview.dropped else ""),
                expanded=bool(preview.dropped),
            ):
                st.plotly_chart(charts.context_figure(rows, settings.budget_tokens))
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
            stream = chat.ReplyStream(backend, plan, settings.limits)
        except DevmodeError as e:
            st.error(f"{e} Your message is kept above.")
        else:
            with st.chat_message("user"):
                st.markdown(prompt)
            with st.chat_message("assistant"):
                st.write_stream(stream)
                reply = stream.reply
                st.caption(chat.describe_reply(reply))
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
        "Prompts, one per line",
        "What is a bond?\nName one risk of holding long-dated bonds.",
        key="chat_bench_prompts",
        height=80,
    )
    variants = st.data_editor(
        pd.DataFrame(
            [
                {"name": "short", "max_tokens": 20, "temperature": 0.0, "banned": "", "stop": ""},
                {
                    "name": "no rates",
                    "max_tokens": 80,
                    "temperature": 0.0,
                    "banned": "rate, rates",
                    "stop": "",
                },
                {
                    "name": "one sentence",
                    "max_tokens": 80,
                    "temperature": 0.0,
                    "banned": "",
                    "stop": ".",
                },
            ]
        ),
        num_rows="dynamic",
        key="chat_bench_variants",
        column_config={
            "stop": st.column_config.TextColumn("stop", help="Stop sequences, separated by ;"),
            "banned": st.column_config.TextColumn("banned", help="Banned words, separated by ,"),
        },
        hide_index=True,
    )
    if st.button("Run the bench", key="chat_bench_run", disabled=not (settings and backend)):
        try:
            columns = [
                chat.variant_from_row(row, settings.limits)
                for row in variants.to_dict("records")
                if any(str(v).strip() not in ("", "nan", "None") for v in row.values())
            ]
            prompts = st.session_state["chat_bench_prompts"].splitlines()
            total = max(1, len([p for p in prompts if p.strip()]) * len(columns))
            progress = st.progress(0.0, text="Running the bench…")
            done = []

            def advance(row):
                done.append(row)
                progress.progress(len(done) / total, text=f"{len(done)} of {total} replies")

            st.session_state["chat_bench_rows"] = chat.run_bench(
                backend,
                settings,
                prompts,
                columns,
                on_row=advance,
            )
        except DevmodeError as e:
            st.error(str(e))
    rows = st.session_state.get("chat_bench_rows")
    if rows:
        st.plotly_chart(charts.bench_figure(rows))
        table = pd.DataFrame(rows, columns=list(chat.BENCH_COLUMNS))
        st.dataframe(table, hide_index=True)
        st.download_button("Download CSV", table.to_csv(index=False), "limit-bench.csv")
