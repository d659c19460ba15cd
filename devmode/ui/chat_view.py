"""The chat models the pages talk to: the embedded model loaded once per process and shared by
every session, endpoints with their keys from Streamlit secrets or the environment."""

from __future__ import annotations

import os

import streamlit as st

from devmode import environment
from devmode.chat import limits
from devmode.errors import DevmodeError
from devmode.ui import forms
from devmode.ui.signin import secret


@st.cache_resource(show_spinner="Loading the embedded chat model (the first time converts it)…")
def embedded_chat_model(cache_dir: str, precision: str):
    """The embedded chat model, loaded once per process and shared by every session (one
    reply at a time: it queues concurrent callers itself). Never mutate what this returns."""
    from devmode.chat import backends

    return backends.EmbeddedBackend.load(cache_dir, precision)


def chat_backend(spec):
    """The backend for a ``limits.BackendSpec``: the cached embedded model, or an endpoint with
    its key from Streamlit secrets or the environment (read here, never stored)."""
    from devmode.chat import backends

    return backends.make_backend(
        spec,
        cache_dir=str(environment.chat_model_dir(environment.db_path())),
        api_key=api_key(spec.api_key_name)[0],
        load_embedded=lambda folder, precision: embedded_chat_model(str(folder), precision),
    )


def api_key(name: str) -> tuple[str | None, str]:
    """(the key, where it was found) for a secret or environment variable called ``name``:
    Streamlit secrets first, then the environment."""
    value = secret(name) if name else None
    if value:
        return value, "Streamlit secrets"
    if name and os.environ.get(name):
        return os.environ[name], "the environment"
    return None, "nowhere"


def key_status(name: str) -> str:
    """A caption saying where the key called ``name`` was found, without showing it."""
    found_in = api_key(name.strip())[1]
    if found_in == "nowhere":
        return "No key under that name: fine for a local server that needs none."
    return f"Key found in {found_in}."


def settings_form(prefix: str) -> limits.ChatSettings | None:
    """The widgets of a chat's settings, keyed ``{prefix}_{field}``: the backend (the embedded
    model, or an endpoint and where its key is), the context (system prompt, pinned documents,
    budget), the response limits and sampling. Returns the settings, or None after showing why
    the values cannot make them. Fill the widgets first (``forms.fill_form(prefix,
    settings.form_values())``)."""
    backend, chat, reply = limits.BackendSpec, limits.ChatSettings, limits.ChatLimits

    def widget(spec, box=None, **options):
        return forms.setting_input(spec, f"{prefix}_{spec.name}", box, **options)

    shown = {"embedded": "Embedded SmolLM2", "endpoint": "OpenAI-compatible endpoint"}
    widget(backend.spec("kind"), format_func=shown.get)
    # both groups are always drawn (the idle one disabled): Streamlit forgets the values of
    # widgets that a run does not draw, and switching back should not lose them
    is_endpoint = st.session_state[f"{prefix}_kind"] == "endpoint"
    widget(backend.spec("precision"), disabled=is_endpoint)
    with st.expander("Endpoint", expanded=is_endpoint):
        for name in ("base_url", "model", "api_key_name"):
            widget(backend.spec(name), disabled=not is_endpoint)
        st.caption(key_status(st.session_state[f"{prefix}_api_key_name"]))
    for name in ("system_prompt", "pinned", "budget_tokens"):
        widget(chat.spec(name))
    with st.expander(limits.RESPONSE_LIMITS, expanded=True):
        c = st.columns(2)
        widget(reply.spec("max_tokens"), c[0])
        widget(reply.spec("timeout_s"), c[1])
        widget(reply.spec("stop"))
        c = st.columns([2, 1])
        widget(reply.spec("banned"), c[0])
        widget(reply.spec("banned_action"), c[1])
    with st.expander(limits.SAMPLING):
        widget(reply.spec("temperature"))
        widget(reply.spec("top_p"))
        for pair in (("top_k", "seed"), ("presence_penalty", "frequency_penalty")):
            c = st.columns(2)
            for box, name in zip(c, pair, strict=True):
                widget(reply.spec(name), box)
    try:
        return chat.from_form(forms.form_values(prefix, chat.form_fields()))
    except DevmodeError as e:
        st.error(str(e))
        return None
