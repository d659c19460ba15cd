"""Monitor: score dated headlines with the active sentiment model and watch the trend."""

import streamlit as st

from devmode import charts, ingest, models, monitoring, ui
from devmode.errors import DevmodeError

ui.page_setup("Monitor", ":material/monitoring:")
st.title("Monitor")
st.caption(
    "Score dated text with the active sentiment model and follow the sentiment index "
    "(P(positive) − P(negative)) over time, overall or per ticker; open any point to read the "
    "texts behind it."
)

with ui.page_db() as db:
    dated = [d for d in ingest.list_datasets(db) if d.mapping.date]
    active = models.active_model(db, "sentiment")

if active is None:
    st.info(
        "No sentiment model is active yet. Train one on the **Fine-tune** page (for example on "
        "Financial PhraseBank) and press *Make active sentiment model* in its *Models* tab."
    )
if not dated:
    st.info(
        "No dataset with a date column yet. Upload dated text on the **Datasets** page, e.g. "
        "`../shared/data/dated_headlines/headlines.csv`, and map its date column."
    )
if active is None or not dated:
    st.stop()

names = [d.name for d in dated]
ui.keep_choice_valid("monitor_dataset", names)
c = st.columns([2, 1, 1, 1])
dataset = c[0].selectbox("Dataset", names, key="monitor_dataset")
period = c[1].selectbox("Period", monitoring.PERIODS, index=1, key="monitor_period")
st.caption(
    f"Active sentiment model: run {active.run_id} ({', '.join(active.labels)}), trained on {active.dataset}."
)

if c[3].button("Score new rows", type="primary", key="monitor_score"):
    progress = st.progress(0.0, text="Scoring…")
    try:
        with ui.page_db() as db:
            summary = monitoring.score_dataset(
                db,
                dataset,
                on_progress=lambda done, total: progress.progress(
                    done / max(total, 1), text=f"{done:,} of {total:,} rows scored"
                ),
            )
    except DevmodeError as e:
        progress.empty()
        st.error(str(e))
    else:
        progress.progress(1.0, text=f"{summary.scored:,} rows scored")
        st.success(
            f"Scored {summary.scored:,} new rows ({summary.already_scored:,} were already scored by this model)."
        )
        if summary.unparseable_dates:
            st.warning(
                f"{summary.unparseable_dates:,} rows have a date that could not be read (e.g. "
                f"{', '.join(map(repr, summary.date_examples))}). They are scored but left out of the trend. "
                "Expected dates like 2020-05-22 or 2020-05-22 11:38:00-04:00."
            )

with ui.page_db() as db:
    tickers = monitoring.scored_tickers(db, dataset)
    ticker = c[2].selectbox(
        "Ticker",
        [None, *tickers],
        key="monitor_ticker",
        format_func=lambda t: "all" if t is None else t,
    )
    points = monitoring.sentiment_trend(db, dataset, period=period, ticker=ticker)

if not points:
    st.info(f"No scored rows in **{dataset}** yet. Press *Score new rows*.")
    st.stop()

label = f"{dataset}" + (f" · {ticker}" if ticker else "") + f" · per {period}"
st.plotly_chart(charts.trend_figure(points, f"Sentiment: {label}"), key="monitor_trend")
m = st.columns(3)
m[0].metric("Texts", f"{sum(p['volume'] for p in points):,}")
m[1].metric("Periods", f"{len(points):,}")
m[2].metric("Latest index", f"{points[-1]['sentiment']:+.3f}", help=f"{points[-1]['period']}")

st.subheader("Texts behind a point")
starts = [p["period"] for p in points]
worst = min(points, key=lambda p: p["sentiment"])["period"]
start = st.selectbox(
    f"{period.capitalize()} starting",
    starts[::-1],
    index=starts[::-1].index(worst),
    key="monitor_drill",
)
with ui.page_db() as db:
    texts = monitoring.texts_in_period(db, dataset, period=period, start=start, ticker=ticker)
st.dataframe(texts, hide_index=True)
