"""Monitor: score dated headlines with the active sentiment model and watch the trend; feeds
and folders that bring new text by themselves, a watcher, and alerts that reach people."""

import streamlit as st

from devmode import charts, environment, ui
from devmode.data import ingest, prices, sources
from devmode.errors import DevmodeError
from devmode.models import registry
from devmode.monitor import (
    alerts,
    backtest,
    delivery,
    health,
    market,
    monitoring,
    reasons,
    score_jobs,
    trends,
    wall,
    watcher,
    watchlist,
)
from devmode.ui import address, datasets_view, forms

ui.page_setup(__file__)

if address.query_flag("kiosk"):  # the wall display: no widgets, redrawn by itself
    ui.kiosk_chrome()

    @st.fragment(run_every=ui.WALL_REFRESH_S)
    def wall_display():
        try:
            with ui.page_db() as db:
                view = wall.wall_view(
                    db,
                    address.query_text("dataset"),
                    period=address.query_text("period") or trends.DEFAULT_PERIOD,
                )
        except DevmodeError as e:  # a wall address that asks for what is not there
            st.warning(f"{e} {wall.ADDRESS_HELP}")
            return
        if view is None:
            st.info("Nothing to show yet: no dataset with dates. Add a feed on the Monitor page.")
            return
        st.plotly_chart(
            charts.trend_figure(
                view.points, view.title, alerts=view.marked, period=view.period, wall=True
            ),
            key="wall_trend",
            config={"displayModeBar": False},
            theme=None,  # the figure's own large type, readable across a room
        )
        for row in wall.tile_rows(view.tiles):  # a few per row: 3rem figures need the width
            for box, tile in zip(st.columns(wall.TILES_PER_ROW), row, strict=False):
                box.metric(tile.ticker, tile.value_text(), tile.change_text(), border=True)
                box.caption(tile.caption())
        c = st.columns(2)
        c[0].subheader("Open alerts")
        for event in view.alerts:
            c[0].error(event["summary"])
        if not view.alerts:
            c[0].success("No open alerts.")
        c[1].subheader(f"Most negative stories · {view.stories_day or '-'}")
        c[1].dataframe(view.stories, hide_index=True)

    wall_display()
    st.stop()
st.caption(
    "Score dated text with the active sentiment model and follow the sentiment index "
    "(P(positive) − P(negative)) over time, overall or per ticker; open any point to read the "
    "texts behind it."
)

with ui.page_db() as db:
    dated = ingest.dataset_names(db, dated=True)
    active = registry.active_model(db, "sentiment")
    about_models = monitoring.describe_active_models(db)
    watched = sources.health_rows(db)
    entries = watchlist.list_entries(db)


@st.fragment(run_every=ui.LIVE_REFRESH_S)
def watch_panel():
    """The watcher: start or stop it; while it runs, redraw the page when a pass stored rows."""
    with ui.page_db() as db:
        current = watcher.current_watcher(db)
    if current is None or not current.is_active:
        st.caption(current.describe() if current else "Not watching.")
        if st.button("Start watching", type="primary", key="monitor_watch_start"):
            with ui.errors_shown():
                watcher.start_watching(environment.db_path())
                st.rerun()
        return
    st.success(current.describe())
    if st.button("Stop watching", key="monitor_watch_stop"):
        with ui.page_db() as db:
            watcher.stop_watching(db)
        st.toast("The watcher stops after its current pass.")
    if (
        st.session_state.setdefault("monitor_drawn_change", current.changed_at)
        != current.changed_at
    ):
        st.session_state["monitor_drawn_change"] = current.changed_at
        st.rerun()  # new rows or scores: redraw the chart and the alerts


with st.expander("Live sources: feeds and folders", expanded=not dated):
    st.caption(
        "An RSS or Atom feed, or a folder that CSV / JSONL / Parquet files are dropped into, "
        "feeds a dataset by itself while the watcher runs: it polls each source, scores the new "
        "rows with the active models, checks the alert rules and delivers the alerts."
    )
    watch_panel()
    if watched:
        st.dataframe(watched, hide_index=True, key="monitor_sources_table")
    with st.form("monitor_source_form", clear_on_submit=True):
        c = st.columns([3, 2, 1])
        location = c[0].text_input(
            "Feed URL or folder",
            placeholder="https://example.com/markets.rss or /data/inbox",
            key="monitor_source_location",
        )
        into = c[1].text_input(
            "Into dataset",
            help="An existing dataset, or a new name: it is created on the first poll.",
            key="monitor_source_dataset",
        )
        every = forms.setting_input(
            sources.SourceSettings.spec("every"), "monitor_source_every", c[2]
        )
        if st.form_submit_button("Add source"):
            with ui.errors_shown():
                with ui.page_db() as db:
                    added = sources.add_location(
                        db, into, location, sources.SourceSettings(every=every)
                    )
                st.success(f"Source {added.id} added; the watcher polls it at once.")
                st.rerun()
    if watched:
        c = st.columns([3, 1])
        chosen = c[0].selectbox(
            "Source",
            watched,
            format_func=sources.describe_row,
            key="monitor_source_remove_choice",
            label_visibility="collapsed",
        )
        if c[1].button("Remove source", key="monitor_source_remove"):
            with ui.page_db() as db:
                sources.remove_source(db, chosen["id"])
            st.rerun()

with st.expander("Watchlist: who a text is about"):
    st.caption(
        "For data without a ticker column: texts are filed under an entry when they name "
        "its cashtag ($AAPL), its company name or an alias. Trends, alerts and the wall "
        "display (add ?kiosk=1 to this page's address) follow each entry."
    )
    for entry in entries:
        c = st.columns([6, 1])
        c[0].markdown(entry.describe())
        if c[1].button("Remove", key=f"monitor_watchlist_remove_{entry.ticker}"):
            with ui.page_db() as db:
                watchlist.remove_entry(db, entry.ticker)
            st.rerun()
    with st.form("monitor_watchlist_form", clear_on_submit=True):
        c = st.columns([1, 2, 3])
        ticker = c[0].text_input("Ticker", placeholder="AAPL", key="monitor_watchlist_ticker")
        name = c[1].text_input("Company name", placeholder="Apple", key="monitor_watchlist_name")
        aliases = c[2].text_input(
            "Aliases", placeholder="iPhone maker; Apple Inc", key="monitor_watchlist_aliases"
        )
        if st.form_submit_button("Add to watchlist"):
            with ui.errors_shown():
                with ui.page_db() as db:
                    watchlist.add_entry(
                        db, ticker, name=name, aliases=watchlist.split_aliases(aliases)
                    )
                st.rerun()

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

ui.keep_choice_valid("monitor_dataset", dated)
c = st.columns([2, 1, 1, 1])
dataset = c[0].selectbox("Dataset", dated, key="monitor_dataset")
st.session_state.setdefault("monitor_period", trends.DEFAULT_PERIOD)  # widgets read it from state
period = c[1].selectbox("Period", trends.PERIODS, key="monitor_period")
st.caption(about_models)
with ui.page_db() as db:
    scored_rows = ingest.get_dataset(db, dataset).row_count
drift = datasets_view.untested_warning(environment.db_path(), active.run_id, dataset, scored_rows)
if drift:
    st.warning(drift)

with ui.page_db() as db:
    job = score_jobs.latest_job(db, dataset)

if c[3].button("Score new rows", type="primary", key="monitor_score"):
    with ui.errors_shown():
        job = score_jobs.start_scoring(environment.db_path(), dataset)
        st.rerun()


@st.fragment(run_every=1 if job and job.is_active else None)
def scoring_panel(watched):
    """The dataset's scoring job: live while it runs (it outlives the page), then its summary."""
    with ui.page_db() as db:
        now = score_jobs.latest_job(db, dataset)
    if now is None:
        return
    if now.is_active:
        st.progress(now.fraction_done, text=now.progress_text())
        if st.button("Cancel scoring", key="monitor_cancel"):
            with ui.page_db() as db:
                score_jobs.request_cancel(db, now.id)
            st.toast("Stopping after the current chunk; whole chunks are kept.")
        return
    if watched and watched.is_active:
        st.rerun()  # it finished while watched: redraw the page with the new scores
    summary = " ".join(score_jobs.describe_job(now))
    if now.is_completed:
        st.success(f"Scoring job {now.id} completed. {summary}")
    else:
        st.warning(
            f"Scoring job {now.id} is {now.status}"
            + (f": {now.error}" if now.error else ".")
            + " Rows already scored are kept; *Resume scoring* goes on with the rest."
        )
        if st.button("Resume scoring", key="monitor_resume"):
            with ui.errors_shown():
                score_jobs.start_job(environment.db_path(), now.id)
                st.rerun()


scoring_panel(job)

with ui.page_db() as db:
    tickers = trends.scored_tickers(db, dataset)
    topics = trends.scored_topics(db, dataset)
    ticker = c[2].selectbox(
        "Ticker",
        [None, *tickers],
        key="monitor_ticker",
        format_func=lambda t: "all" if t is None else t,
    )
    topic = None
    if topics:
        ui.keep_choice_valid("monitor_topic", [None, *topics])
        topic = st.selectbox(
            "Topic",
            [None, *topics],
            key="monitor_topic",
            format_func=lambda t: "all topics" if t is None else t,
        )
    c2 = st.columns([3, 2])
    stories = c2[0].toggle(
        "Count stories, not copies",
        value=True,
        key="monitor_stories",
        help="The same story syndicated across sources or re-posted is counted once.",
    )
    price_names = prices.price_set_names(db)
    overlay_with = None
    if price_names:
        ui.keep_choice_valid("monitor_prices", [None, *price_names])
        overlay_with = c2[1].selectbox(
            "Overlay prices",
            [None, *price_names],
            key="monitor_prices",
            format_func=lambda n: "none" if n is None else n,
            help="A prices dataset on a second axis: the ticker's closes, or the index for "
            "all texts; the lead/lag of sentiment and returns beneath.",
        )
    points = trends.sentiment_trend(
        db, dataset, period=period, ticker=ticker, topic=topic, stories=stories
    )
    why_empty = "" if points else trends.why_no_trend(db, dataset, ticker=ticker, topic=topic)
    by_topic = trends.sentiment_by_topic(db, dataset, ticker=ticker) if topics else []
    health_points = health.health_trend(db, dataset, period=period)
    events = alerts.alert_events(db, dataset)
    rules = alerts.list_alert_rules(db, dataset)
    channels = delivery.channels_by_rule(db)
    deliveries = delivery.list_deliveries(db, dataset)

if not points:
    st.info(f"{why_empty} Press *Score new rows* to score what is new.")
    st.stop()

overlay = None
if overlay_with:
    with ui.page_db() as db, ui.errors_shown(warn="No price overlay"):
        overlay = market.overlay(db, overlay_with, ticker, period, points)

scope = trends.describe_scope(dataset, ticker, topic, period)
st.plotly_chart(
    charts.trend_figure(
        points,
        f"Sentiment: {scope}",
        alerts=alerts.marked_periods(events, period, ticker, topic),
        period=period,
        prices=overlay["series"] if overlay else (),
        prices_label=overlay["label"] if overlay else "close",
    ),
    key="monitor_trend",
)
if overlay:
    st.plotly_chart(
        charts.lead_lag_figure(
            overlay["lead_lag"], f"Sentiment against {overlay['label']}: lead and lag"
        ),
        key="monitor_lead_lag",
    )
    st.caption(
        "Each bar: the correlation of a period's sentiment index with the price return "
        "*lag* periods later, with its 95% interval; blue bars are the ones whose interval "
        "leaves 0."
    )
if health_points:
    st.plotly_chart(
        charts.health_figure(health_points, f"Model health: {dataset} · all texts · per {period}"),
        key="monitor_health",
    )
    st.caption(health.health_summary(health_points))
summary = trends.trend_summary(points)
m = st.columns(3)
m[0].metric("Texts", f"{summary['texts']:,}")
m[1].metric("Periods", f"{summary['periods']:,}")
m[2].metric("Latest index", f"{summary['latest']:+.3f}", help=summary["latest_period"])
if by_topic:
    st.plotly_chart(
        charts.topic_figure(by_topic, "Sentiment by topic" + (f" · {ticker}" if ticker else "")),
        key="monitor_topics",
    )

st.subheader("Texts behind a point")
starts = trends.period_starts(points)
if st.session_state.get("monitor_drill") not in starts:  # default: the most negative period
    st.session_state["monitor_drill"] = trends.most_negative_period(points)
start = st.selectbox(f"{period.capitalize()} starting", starts, key="monitor_drill")
st.caption("Top words: what made the model read each text as it did (found once, then kept).")
with ui.page_db() as db, st.spinner("Finding the words behind these texts…"):
    texts = trends.texts_in_period(
        db,
        dataset,
        period=period,
        start=start,
        ticker=ticker,
        topic=topic,
        stories=stories,
        with_model=True,
    )
    texts = reasons.with_top_words(db, texts)
st.dataframe(trends.without_empty_columns(texts), hide_index=True)

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
        c[0].markdown(event["summary"])
        c[1].button("Open", key=f"monitor_open_{event['id']}", on_click=open_alert, args=(event,))
        if c[2].button("Acknowledge", key=f"monitor_ack_{event['id']}"):
            with ui.page_db() as db:
                alerts.acknowledge_alert(db, event["id"])
            st.rerun()
else:
    st.caption("No open alerts." if rules else "No alert rules yet: add one below.")

with st.expander("Alert rules"):
    for rule in rules:
        c = st.columns([6, 1])
        c[0].markdown(f"Rule {rule.id}: {rule.describe()}")
        if rule.settings.brief:
            c[0].caption(f"With {rule.settings.describe_brief()}.")
        if c[1].button("Delete", key=f"monitor_delete_rule_{rule.id}"):
            with ui.page_db() as db:
                alerts.delete_alert_rule(db, rule.id)
            st.rerun()
        for channel in channels.get(rule.id, []):
            c = st.columns([6, 1])
            c[0].caption(f"→ {channel.describe()}")
            if c[1].button("Remove", key=f"monitor_remove_channel_{channel.id}"):
                with ui.page_db() as db:
                    delivery.remove_channel(db, channel.id)
                st.rerun()
    with st.form("monitor_rule_form"):
        rule_settings = forms.settings_form(
            alerts.RuleSettings,
            "monitor_rule",
            columns=4,
            options={"ticker": [None, *tickers], "topic": [None, *topics]},
            format_funcs={
                "ticker": lambda t: "all" if t is None else t,
                "topic": lambda t: "all" if t is None else t,
            },
        )
        st.caption("Preview: the periods this rule would have fired on, and what prices did")
        check = forms.settings_form(
            backtest.PriceCheck,
            "monitor_preview",
            columns=3,
            options={"prices": [None, *price_names]},
            format_funcs={"prices": lambda n: "none" if n is None else n},
        )
        c = st.columns([1, 1, 4])
        previewed = c[0].form_submit_button("Preview")
        added = c[1].form_submit_button("Add rule", type="primary")
        if previewed:
            st.session_state.pop("monitor_preview_shown", None)
            with ui.errors_shown(), ui.page_db() as db:
                st.session_state["monitor_preview_shown"] = backtest.preview(
                    db,
                    dataset,
                    alerts.RuleSettings(**rule_settings),
                    backtest.PriceCheck(**check),
                )
        if added:
            with ui.errors_shown():
                with ui.page_db() as db:
                    alerts.add_alert_rule(db, dataset, alerts.RuleSettings(**rule_settings))
                st.session_state.pop("monitor_preview_shown", None)
                st.rerun()
    shown = st.session_state.get("monitor_preview_shown")
    if shown:
        for line in shown.lines:
            st.markdown(line)
        st.plotly_chart(
            charts.health_figure(shown.points, shown.title)
            if shown.health
            else charts.trend_figure(
                shown.points,
                shown.title,
                preview=shown.fired,
                period=shown.result["rule"]["period"],
            ),
            key="monitor_preview_chart",
        )
        st.dataframe(shown.rows, hide_index=True, key="monitor_preview_fires")

if rules:
    with st.expander("Deliver alerts: webhook or e-mail"):
        with st.form("monitor_notify_form", clear_on_submit=True):
            c = st.columns([1, 3, 1])
            rule_id = c[0].selectbox("Rule", rules, format_func=alerts.AlertRule.label)
            target = c[1].text_input(
                "Webhook URL or e-mail address",
                key="monitor_notify_target",
                placeholder="https://hooks.slack.com/services/... or desk@example.com",
            )
            body = c[2].selectbox(
                "Webhook body",
                delivery.WEBHOOK_FORMATS,
                help=delivery.WEBHOOK_FORMAT_HELP,
            )
            if st.form_submit_button("Deliver this rule's alerts"):
                with ui.errors_shown():
                    with ui.page_db() as db:
                        delivery.add_target(db, rule_id.id, target, format=body)
                    st.rerun()
        with st.form("monitor_smtp_form"):
            st.caption("E-mail server (the password stays in an environment variable)")
            smtp = forms.settings_form(delivery.SmtpSettings, "monitor_smtp", columns=3)
            if st.form_submit_button("Save e-mail server"):
                with ui.errors_shown():
                    with ui.page_db() as db:
                        delivery.set_smtp_settings(db, delivery.SmtpSettings(**smtp))
                    st.success("Saved.")

if deliveries:
    st.subheader("Deliveries")
    st.dataframe(deliveries, hide_index=True, key="monitor_deliveries")
