"""Playground: type or paste texts, see up to three models side by side (label, a bar per
class, the words that drove it), and load the test rows where the models disagree. The address
holds the view (/Playground?models=3,base&text=...)."""

import streamlit as st

from devmode import ui
from devmode.data import ingest
from devmode.models import playground, references
from devmode.ui import playground_view

ui.page_setup(__file__)
st.caption(
    "Try a model on your own texts: one per line, up to three models side by side. The "
    "highlighted words are the ones that drove each answer (a colour per class, stronger for "
    "more weight). *base* is the base model zero-shot: the untrained model, by similarity to "
    "the label names. The address keeps this view: copy it to show someone the same."
)
handoff = ui.Handoff("playground")
for_texts = handoff.take()
if "texts" in for_texts:
    playground_view.load_texts(for_texts["texts"])

with ui.page_db() as db:
    options = references.available(db)
    labelled = ingest.dataset_names(db, labelled=True)
playground_view.start_from_address(options)
picked = st.multiselect(
    "Models",
    list(options),
    format_func=options.get,
    max_selections=playground.MAX_MODELS,
    key=playground_view.MODELS_KEY,
    help=f"Up to {playground.MAX_MODELS}: {references.REFERENCE_HELP}.",
)
text = st.text_area(
    "Texts, one per line",
    key=playground_view.TEXT_KEY,
    height=120,
    placeholder="Profit fell 20% as costs rose\nThe bank raised its dividend",
)
playground_view.keep_in_address(picked, text)

if not options:
    st.info("No model to try yet. Train one on the **Fine-tune** page.")
elif picked and text.strip():
    with ui.errors_shown():
        texts = playground.texts_from(text)
        with ui.page_db() as db:
            chosen = references.resolve_all(db, picked)
        playground_view.show(texts, playground_view.compare(chosen, texts))

with st.expander(
    "Disagreements: test rows where the models differ",
    expanded=bool(playground_view.disagreements_found()),
):
    if not labelled:
        st.info("No labelled dataset yet: upload one on the **Datasets** page.")
    else:
        dataset = st.selectbox("Labelled dataset", labelled, key="playground_dataset")
        if st.button("Load disagreements", key="playground_disagreements"):
            with ui.errors_shown():
                with ui.page_db() as db:
                    chosen = references.resolve_all(db, picked)
                    rows = playground.disagreements(
                        db, dataset, chosen, playground_view.model_cache()
                    )
                playground_view.keep_disagreements(rows)
                if rows:
                    handoff.leave(texts=playground.texts_of(rows))
                    st.rerun()
                st.info("The models agree on every test row read.")
        if playground_view.disagreements_found():
            st.dataframe(playground_view.disagreements_found(), hide_index=True)
