"""The Playground's Streamlit side: models kept loaded for the process, answers cached per
text and model, the address that holds the view, and words highlighted by class."""

from __future__ import annotations

import html
from collections.abc import Sequence

import streamlit as st

from devmode import charts
from devmode.models import playground, references
from devmode.models.references import ChosenModel

MODELS_KEY = "playground_models"
TEXT_KEY = "playground_text"
DISAGREEMENTS_KEY = "playground_disagreements_found"


@st.cache_resource(show_spinner=False)
def model_cache() -> references.ModelCache:
    """One cache of loaded models for the whole server (every session shares it)."""
    return references.ModelCache()


@st.cache_data(max_entries=256, show_spinner="Explaining…")
def _compare(_chosen: tuple[ChosenModel, ...], keys: tuple, texts: tuple[str, ...]):
    return playground.compare(model_cache(), list(_chosen), list(texts))


def compare(chosen: Sequence[ChosenModel], texts: Sequence[str]):
    """``playground.compare``, cached by what the models are and the texts."""
    return _compare(tuple(chosen), tuple(c.key for c in chosen), tuple(texts))


def start_from_address(options: dict[str, str]) -> None:
    """The first run of a session takes the models and texts from the address
    (``?models=3,base&text=...``); later runs keep what the widgets hold."""
    if MODELS_KEY not in st.session_state:
        asked = [m.strip() for m in st.query_params.get("models", "").split(",")]
        st.session_state[MODELS_KEY] = [m for m in asked if m in options][
            : playground.MAX_MODELS
        ] or list(options)[:1]
    if TEXT_KEY not in st.session_state:
        st.session_state[TEXT_KEY] = st.query_params.get("text", "")


def keep_in_address(models: Sequence[str], text: str) -> None:
    """The address holds the view: opening it in a new tab shows the same."""
    st.query_params["models"] = ",".join(models)
    st.query_params["text"] = text


def keep_disagreements(rows: Sequence[dict]) -> None:
    """The disagreements found, shown until others are found (every rerun, not just the next)."""
    st.session_state[DISAGREEMENTS_KEY] = list(rows)


def disagreements_found() -> list[dict]:
    return st.session_state.get(DISAGREEMENTS_KEY, [])


def load_texts(texts: Sequence[str]) -> None:
    """Put ``texts`` in the text box (before it is drawn: call, then rerun)."""
    st.session_state[TEXT_KEY] = "\n".join(texts)


def highlighted(text: str, answer: playground.Answer, labels: Sequence[str]) -> str:
    """The text as HTML, each weighed word on its class's colour, stronger for more weight."""
    strongest = max((w.weight for w in answer.words), default=0.0) or 1.0
    parts, at = [], 0
    for w in answer.words:
        parts.append(html.escape(text[at : w.start]))
        alpha = max(0.0, min(1.0, w.weight / strongest))
        colour = charts.class_colour(w.label, labels)
        parts.append(
            f"<span title='{html.escape(w.label)} {w.weight:+.3f}' style='background:"
            f"{colour}{int(alpha * 0.85 * 255):02x};border-radius:3px;padding:0 2px'>"
            f"{html.escape(text[w.start : w.end])}</span>"
        )
        at = w.end
    parts.append(html.escape(text[at:]))
    return "<div style='line-height:1.9'>" + "".join(parts) + "</div>"


def show_answer(text: str, answer: playground.Answer, key: str) -> None:
    """One model's answer for one text: label, bars, highlighted words, top words."""
    labels = list(answer.probabilities)
    st.markdown(f"**{answer.model}**: {answer.label} ({answer.probabilities[answer.label]:.0%})")
    st.plotly_chart(charts.probability_figure(answer.probabilities), key=key)
    st.markdown(highlighted(text, answer, labels), unsafe_allow_html=True)
    if answer.note:
        st.caption(answer.note)
    else:
        st.caption("Top words: " + (", ".join(answer.top_words) or "none for this label"))


def show(texts: Sequence[str], answers) -> None:
    """Every text, its models side by side."""
    for i, (text, row) in enumerate(zip(texts, answers, strict=True)):
        st.markdown(f"##### {i + 1}. {html.escape(text[:200])}")
        for column, (m, answer) in zip(st.columns(len(row)), enumerate(row), strict=True):
            with column:
                show_answer(text, answer, key=f"playground_bars_{i}_{m}")
