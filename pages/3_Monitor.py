"""Monitor: score dated headlines with the active sentiment model and watch the trend."""

import streamlit as st

from devmode import charts, config, ingest, models, monitoring, score_jobs, ui
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
    active_topic = models.active_model(db, "topic")

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
st.session_state.setdefault("monitor_period", "week")  # widgets below take their value from state
period = c[1].selectbox("Period", monitoring.PERIODS, key="monitor_period")
st.caption(
    f"Active sentiment model: run {active.run_id} ({', '.join(active.labels)}), trained on "
    f"{active.dataset}. "
    + (
        f"Active topic model: run {active_topic.run_id} ({len(active_topic.labels)} topics)."
        if active_topic
        else "No topic model is active: promote one on the Fine-tune page to follow sentiment by topic."
    )
)

with ui.page_db() as db:
    job = score_jobs.latest_job(db, dataset)

if c[3].button("Score new rows", type="primary", key="monitor_score"):
    try:
        with ui.page_db() as db:
            job = score_jobs.create_job(db, dataset)
        score_jobs.start_job(config.db_path(), job.id)
    except DevmodeError as e:
        st.error(str(e))
    else:
        st.rerun()


@st.fragment(run_every=1 if job and job.is_active else None)
def scoring_panel(watched):
    """The dataset's scoring job: live while it runs (it outlives the page), then its summary."""
    with ui.page_db() as db:
        now = score_jobs.latest_job(db, dataset)
    if now is None:
        return
    if now.is_active:
        what = f"Scoring with the {now.task} model" if now.task else "Starting the scoring job"
        st.progress(
            now.fraction_done,
            text=f"{what}: {now.rows_done:,} of {now.rows_total:,} rows (job {now.id}, "
            f"{' then '.join(now.tasks)})",
        )
        if st.button("Cancel scoring", key="monitor_cancel"):
            with ui.page_db() as db:
                score_jobs.request_cancel(db, now.id)
            st.toast("Stopping after the current chunk; whole chunks are kept.")
        return
    if watched and watched.is_active:
        st.rerun()  # it finished while watched: redraw the page with the new scores
    lines = score_jobs.describe_job(now)
    if now.status == "completed":
        st.success(f"Scoring job {now.id} completed. " + " ".join(lines))
    else:
        st.warning(
            f"Scoring job {now.id} is {now.status}"
            + (f": {now.error}" if now.error else ".")
            + " Rows already scored are kept; *Resume scoring* goes on with the rest."
        )
        if st.button("Resume scoring", key="monitor_resume"):
            try:
                score_jobs.start_job(config.db_path(), now.id)
            except DevmodeError as e:
                st.error(str(e))
            else:
                st.rerun()


scoring_panel(job)

with ui.page_db() as db:
    tickers = monitoring.scored_tickers(db, dataset)
    topics = monitoring.scored_topics(db, dataset)
    ticker = c[2].selectbox(
        "Ticker",
        [None, *tickers],
        key="monitor_ticker",
        format_func=lambda t: "all" if t is None else t,
    )
    topic = None
    if topics:
        if st.session_state.get("monitor_topic") not in topics:
            st.session_state["monitor_topic"] = None
        topic = st.selectbox(
            "Topic",
            [None, *topics],
            key="monitor_topic",
            format_func=lambda t: "all topics" if t is None else t,
        )
    points = monitoring.sentiment_trend(db, dataset, period=period, ticker=ticker, topic=topic)
    by_topic = monitoring.sentiment_by_topic(db, dataset, ticker=ticker) if topics else []
    events = monitoring.alert_events(db, dataset)
    rules = monitoring.list_alert_rules(db, dataset)

if not points:
    st.info(f"No scored rows in **{dataset}** for this choice yet. Press *Score new rows*.")
    st.stop()

label = " · ".join(x for x in (dataset, ticker, topic) if x) + f" · per {period}"
marked = [
    e["period_start"]
    for e in events
    if e["period"] == period and e["ticker"] == ticker and e["topic"] == topic
]
st.plotly_chart(
    charts.trend_figure(points, f"Sentiment: {label}", alerts=marked), key="monitor_trend"
)
m = st.columns(3)
m[0].metric("Texts", f"{sum(p['volume'] for p in points):,}")
m[1].metric("Periods", f"{len(points):,}")
m[2].metric("Latest index", f"{points[-1]['sentiment']:+.3f}", help=f"{points[-1]['period']}")
if by_topic:
    st.plotly_chart(
        charts.topic_figure(by_topic, "Sentiment by topic" + (f" · {ticker}" if ticker else "")),
        key="monitor_topics",
    )

st.subheader("Texts behind a point")
starts = [p["period"] for p in points]
if st.session_state.get("monitor_drill") not in starts:  # default: the most negative period
    st.session_state["monitor_drill"] = min(points, key=lambda p: p["sentiment"])["period"]
start = st.selectbox(
    f"{period.capitalize()} starting",
    starts[::-1],
    key="monitor_drill",
)
with ui.page_db() as db:
    texts = monitoring.texts_in_period(
        db, dataset, period=period, start=start, ticker=ticker, topic=topic
    )
st.dataframe(texts, hide_index=True)

# ----------------------------------------------------------------------------------------------
st.subheader("Alerts")


def open_alert(event):
    """Callback: show the alert's period and ticker in the chart and the texts table."""
    st.session_state["monitor_period"] = event["period"]
    st.session_state["monitor_ticker"] = event["ticker"]
    st.session_state["monitor_topic"] = event["topic"]
    st.session_state["monitor_drill"] = event["period_start"]


if events:
    for event in events[:20]:
        c = st.columns([5, 1, 1])
        c[0].markdown(
            f"**{event['period'].capitalize()} of {event['period_start']}**"
            + "".join(f" · {x}" for x in (event["ticker"], event["topic"]) if x)
            + f": {event['share_negative']:.0%} negative of {event['volume']} "
            + ("text" if event["volume"] == 1 else "texts")
            + f" — {event['rule']}"
        )
        c[1].button("Open", key=f"monitor_open_{event['id']}", on_click=open_alert, args=(event,))
        if c[2].button("Acknowledge", key=f"monitor_ack_{event['id']}"):
            with ui.page_db() as db:
                monitoring.acknowledge_alert(db, event["id"])
            st.rerun()
else:
    st.caption("No open alerts." if rules else "No alert rules yet: add one below.")

with st.expander("Alert rules"):
    for rule in rules:
        c = st.columns([6, 1])
        c[0].markdown(f"Rule {rule.id}: {rule.describe()}")
        if c[1].button("Delete", key=f"monitor_delete_rule_{rule.id}"):
            with ui.page_db() as db:
                monitoring.delete_alert_rule(db, rule.id)
            st.rerun()
    with st.form("monitor_rule_form"):
        c = st.columns(3)
        kind = c[0].selectbox(
            "Kind",
            monitoring.ALERT_KINDS,
            key="monitor_rule_kind",
            help="share_negative: the share of negative texts is above the threshold; "
            "spike: it is that many standard deviations above the previous periods.",
        )
        threshold = c[1].number_input("Threshold", 0.01, 100.0, 0.5, key="monitor_rule_threshold")
        rule_period = c[2].selectbox(
            "Period", monitoring.PERIODS, index=1, key="monitor_rule_period"
        )
        c = st.columns(4)
        window = c[0].number_input("Window (spike)", 3, 520, 8, key="monitor_rule_window")
        min_volume = c[1].number_input("Minimum texts", 1, 100000, 5, key="monitor_rule_min_volume")
        rule_topic = c[3].selectbox(
            "Topic",
            [None, *topics],
            key="monitor_rule_topic",
            format_func=lambda t: "all" if t is None else t,
        )
        rule_ticker = c[2].selectbox(
            "Ticker",
            [None, *tickers],
            key="monitor_rule_ticker",
            format_func=lambda t: "all" if t is None else t,
        )
        if st.form_submit_button("Add rule"):
            try:
                with ui.page_db() as db:
                    monitoring.add_alert_rule(
                        db,
                        dataset,
                        kind=kind,
                        threshold=float(threshold),
                        period=rule_period,
                        window=int(window),
                        min_volume=int(min_volume),
                        ticker=rule_ticker,
                        topic=rule_topic,
                    )
                    monitoring.evaluate_alerts(db, dataset)
            except DevmodeError as e:
                st.error(str(e))
            else:
                st.rerun()
