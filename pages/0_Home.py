"""devmode home: what it is, where the data lives, and what is in it."""

import streamlit as st

from devmode import db, environment, ui

ui.page_setup(__file__, heading="devmode")
st.markdown(
    "A workbench for finance analysts: bring your own labelled text, fine-tune a model on it, "
    "watch what the model says about the market over time, and probe a chat model's context "
    "and response limits."
)

with ui.page_db() as connection:
    counts = db.summary(connection)

st.caption(f"Database: `{environment.db_path()}`")
cols = st.columns(5)
cols[0].metric("Datasets", counts["datasets"])
cols[1].metric("Training runs", counts["runs"])
cols[2].metric("Active models", counts["active_models"])
cols[3].metric("Open alerts", counts["open_alerts"])
cols[4].metric("Conversations", counts["conversations"])

st.subheader("Pages")
ui.page_links()
if counts["datasets"] == 0:
    st.info(
        "Start on the **Datasets** page: upload a CSV, TSV, JSON, JSONL or Parquet file of "
        "labelled text, such as Financial PhraseBank."
    )
