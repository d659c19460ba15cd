"""Plotly figures built from plain rows; no Streamlit here, so tests can read the traces.

fig = label_distribution_figure(stats.label_counts)
st.plotly_chart(fig)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from devmode.data import dates

# One colour per split, the same on every chart.
SPLIT_COLOURS = {"train": "#4C78A8", "validation": "#F58518", "test": "#54A24B"}


def label_distribution_figure(
    label_counts: list[dict[str, Any]], title: str = "Labels by split"
) -> go.Figure:
    """Stacked horizontal bars: one bar per label, one segment per split, largest label on top.

    :param label_counts: rows like ``{"label": "neutral", "split": "train", "count": 1108}``
    """
    totals: dict[str, int] = {}
    for row in label_counts:
        totals[row["label"]] = totals.get(row["label"], 0) + row["count"]
    labels = sorted(totals, key=lambda lab: totals[lab])  # plotly draws the first category lowest
    fig = go.Figure()
    for split, colour in SPLIT_COLOURS.items():
        counts = {r["label"]: r["count"] for r in label_counts if r["split"] == split}
        fig.add_bar(
            name=split,
            y=labels,
            x=[counts.get(lab, 0) for lab in labels],
            orientation="h",
            marker_color=colour,
            hovertemplate="%{y}: %{x:,} rows in " + split + "<extra></extra>",
        )
    fig.update_layout(
        title=title,
        barmode="stack",
        xaxis_title="rows",
        height=max(260, 60 + 28 * len(labels)),
        margin=dict(l=10, r=10, t=50, b=40),
        legend=dict(orientation="h", y=-0.2, traceorder="normal"),
    )
    return fig


def training_figure(metrics: list[dict[str, Any]], title: str = "Training") -> go.Figure:
    """Train loss per log step and validation loss per epoch on one axis, the learning rate on a
    second: the three curves a person watches during a run.

    :param metrics: long-format rows ``{"step", "epoch", "name", "value"}`` (runs.metrics_for_run)
    """
    fig = go.Figure()
    series = _series(metrics)
    if "train_loss" in series:
        x, y = series["train_loss"]
        fig.add_scatter(x=x, y=y, name="train loss", mode="lines", line=dict(color="#4C78A8"))
    if "eval_loss" in series:
        x, y = series["eval_loss"]
        fig.add_scatter(
            x=x, y=y, name="validation loss", mode="lines+markers", line=dict(color="#F58518")
        )
    if "learning_rate" in series:
        x, y = series["learning_rate"]
        fig.add_scatter(
            x=x,
            y=y,
            name="learning rate",
            mode="lines",
            yaxis="y2",
            line=dict(color="#BAB0AC", dash="dot"),
        )
    fig.update_layout(
        title=title,
        xaxis_title="step",
        yaxis_title="loss",
        height=320,
        yaxis2=dict(
            title="learning rate", overlaying="y", side="right", showgrid=False, exponentformat="e"
        ),
        margin=dict(l=10, r=10, t=50, b=40),
        legend=dict(orientation="h", y=-0.25),
    )
    return fig


def validation_figure(metrics: list[dict[str, Any]], title: str = "Validation") -> go.Figure:
    """Validation accuracy and macro-F1 after each epoch."""
    series = _series(metrics, by="epoch")
    fig = go.Figure()
    for name, label, colour in [
        ("eval_accuracy", "accuracy", "#54A24B"),
        ("eval_macro_f1", "macro-F1", "#E45756"),
    ]:
        if name in series:
            x, y = series[name]
            fig.add_scatter(x=x, y=y, name=label, mode="lines+markers", line=dict(color=colour))
    fig.update_layout(
        title=title,
        xaxis_title="epoch",
        yaxis=dict(title="score", range=[0, 1]),
        height=320,
        xaxis=dict(dtick=1),
        margin=dict(l=10, r=10, t=50, b=40),
        legend=dict(orientation="h", y=-0.25),
    )
    return fig


def confusion_figure(
    report: dict[str, Any], title: str = "Confusion matrix (test split)"
) -> go.Figure:
    """Heatmap of true (rows) against predicted (columns) labels, each cell with its count."""
    labels = report["labels"]
    matrix = report["confusion_matrix"]
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=labels,
            y=labels,
            colorscale="Blues",
            showscale=False,
            text=matrix,
            texttemplate="%{text}",
            hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>",
        )
    )
    size = max(300, 60 + 40 * len(labels))
    fig.update_layout(
        title=title,
        xaxis_title="predicted",
        yaxis_title="true",
        height=size,
        yaxis=dict(autorange="reversed"),
        margin=dict(l=10, r=10, t=50, b=40),
    )
    return fig


def reliability_figure(
    calibration: dict[str, Any], title: str = "Reliability (test split)", scaled: str = ""
) -> go.Figure:
    """The reliability diagram before and after temperature scaling (``calibration``: its
    ``reliability_before``/``_after`` bins and ECEs): each confidence bin's accuracy against
    its mean confidence (on the diagonal, a probability means what it says), each point sized
    by its rows. ``scaled`` names the scaled line (default: its temperature)."""
    scaled = scaled or f"T = {calibration['temperature']:.2f}"
    fig = go.Figure()
    fig.add_scatter(
        x=[0, 1], y=[0, 1], mode="lines", name="calibrated", line=dict(color="#999", dash="dot")
    )
    for key, name, colour in (
        ("reliability_before", f"raw (ECE {calibration['ece_before']:.3f})", "#E45756"),
        ("reliability_after", f"{scaled} (ECE {calibration['ece_after']:.3f})", "#4C78A8"),
    ):
        bins = calibration[key]
        most = max([b["rows"] for b in bins] or [1])
        fig.add_scatter(
            x=[b["confidence"] for b in bins],
            y=[b["accuracy"] for b in bins],
            mode="lines+markers",
            name=name,
            line=dict(color=colour),
            marker=dict(size=[6 + 14 * b["rows"] / most for b in bins]),
            customdata=[b["rows"] for b in bins],
            hovertemplate="confidence %{x:.2f}: accuracy %{y:.2f} (%{customdata} rows)"
            "<extra></extra>",
        )
    fig.update_layout(
        title=title,
        xaxis=dict(title="confidence (top class)", range=[0, 1.02]),
        yaxis=dict(title="accuracy", range=[0, 1.02]),
        height=340,
        margin=dict(l=10, r=10, t=50, b=40),
        legend=dict(orientation="h", y=-0.3),
    )
    return fig


def health_figure(points: list[dict[str, Any]], title: str) -> go.Figure:
    """The model's estimated accuracy on live text per period (``monitor/health.py``): a low
    line under the sentiment chart, on the same periods."""
    fig = go.Figure(
        go.Scatter(
            x=[p["period"] for p in points],
            y=[p["estimated_accuracy"] for p in points],
            mode="lines+markers",
            line=dict(color="#54A24B"),
            customdata=[p["volume"] for p in points],
            hovertemplate="%{x}: estimated accuracy %{y:.2f} (%{customdata} texts)<extra></extra>",
            name="estimated accuracy",
        )
    )
    low = min([p["estimated_accuracy"] for p in points] or [0.5])
    fig.update_layout(
        title=title,
        yaxis=dict(title="est. accuracy", range=[max(0.0, min(low - 0.05, 0.8)), 1.0]),
        height=220,
        margin=dict(l=10, r=10, t=40, b=30),
        showlegend=False,
    )
    return fig


def before_after_figure(
    rows: list[dict[str, Any]], title: str = "Test split: before vs after"
) -> go.Figure:
    """Grouped bars of accuracy and macro-F1 for baselines, the fine-tuned model and published figures."""
    names = [r["model"] for r in rows]
    fig = go.Figure()
    for metric, colour in [("accuracy", "#4C78A8"), ("macro_f1", "#E45756")]:
        fig.add_bar(
            name=metric.replace("_", "-").replace("macro-f1", "macro-F1"),
            x=names,
            y=[r.get(metric) for r in rows],
            marker_color=colour,
            text=[f"{r[metric]:.3f}" if r.get(metric) is not None else "" for r in rows],
            textposition="outside",
        )
    fig.update_layout(
        title=title,
        barmode="group",
        yaxis=dict(range=[0, 1.1], title="score"),
        height=340,
        margin=dict(l=10, r=10, t=50, b=40),
        legend=dict(orientation="h", y=-0.3),
    )
    return fig


def _series(metrics: list[dict[str, Any]], by: str = "step") -> dict[str, tuple[list, list]]:
    out: dict[str, tuple[list, list]] = {}
    for row in metrics:
        xs, ys = out.setdefault(row["name"], ([], []))
        xs.append(row[by])
        ys.append(row["value"])
    return out


def trend_figure(
    points: list[dict[str, Any]],
    title: str = "Sentiment",
    rolling: int = 4,
    alerts: Sequence[str] = (),
    *,
    period: str | None = None,
    wall: bool = False,
    preview: Sequence[str] = (),
    prices: Sequence[dict[str, Any]] = (),
    prices_label: str = "close",
) -> go.Figure:
    """The sentiment index per period with its rolling mean, and the volume as bars beneath;
    range buttons (3 months to all) zoom into years of data, as does dragging.

    The index axis fits the data: an index that moves between -0.25 and -0.1 fills the chart
    instead of a sliver of -1..1. There is no range slider: it drew every trace a second time.

    :param points: ``monitoring.sentiment_trend`` rows (period, sentiment, share_negative, volume)
    :param rolling: periods in the rolling mean (weighted by volume)
    :param alerts: period starts that raised an alert, marked on the index line
    :param period: day, week or month: the lines break where periods have no texts (without it,
        they join the points there are)
    :param wall: for a screen across a room: large type, no buttons
    :param preview: period starts a rule being previewed would have fired on (hollow marks)
    :param prices: ``[{"period", "close"}]`` on a third axis, labelled ``prices_label``
    """
    smooth = _rolling_mean(points, rolling)
    lines_x, index_y, smooth_y, hover = _with_gaps(points, smooth, period)
    fig = go.Figure()
    fig.add_bar(
        x=[p["period"] for p in points],
        y=[p["volume"] for p in points],
        name="texts",
        yaxis="y2",
        marker_color="rgba(150,150,150,0.35)",
        hovertemplate="%{x}: %{y} texts<extra></extra>",
    )
    fig.add_scatter(
        x=lines_x,
        y=index_y,
        name="sentiment index",
        mode="lines+markers",
        line=dict(color="#4C78A8", width=1),
        marker=dict(size=4),
        customdata=hover,
        hovertemplate="%{x}: index %{y:+.3f}, %{customdata[0]:.0%} negative of %{customdata[1]}<extra></extra>",
    )
    fig.add_scatter(
        x=lines_x,
        y=smooth_y,
        name=f"rolling mean ({rolling})",
        mode="lines",
        line=dict(color="#E45756", width=2.5),
    )
    by_period = {p["period"]: p for p in points}
    for periods, name, symbol, colour in (
        (alerts, "alert", "triangle-down", "#D62728"),
        (preview, "would fire", "triangle-down-open", "#FF7F0E"),  # a rule being previewed
    ):
        marked = [by_period[a] for a in periods if a in by_period]
        if marked:
            fig.add_scatter(
                x=[p["period"] for p in marked],
                y=[p["sentiment"] for p in marked],
                name=name,
                mode="markers",
                marker=dict(symbol=symbol, size=13, color=colour, line_width=2),
                customdata=[p["share_negative"] for p in marked],
                hovertemplate=f"{name} %{{x}}: %{{customdata:.0%}} negative<extra></extra>",
            )
    if prices:
        fig.add_scatter(
            x=[p["period"] for p in prices],
            y=[p["close"] for p in prices],
            name=prices_label,
            yaxis="y3",
            mode="lines",
            line=dict(color="#54A24B", width=1.5, dash="dot"),
            hovertemplate="%{x}: close %{y:,.2f}<extra></extra>",
        )
    spans = ((3, "3m", "month"), (1, "1y", "year"), (5, "5y", "year"))
    buttons = [dict(count=n, label=t, step=u, stepmode="backward") for n, t, u in spans]
    buttons.append(dict(step="all", label="all"))
    fig.update_layout(
        title=dict(text=title, y=0.98),
        height=600 if wall else 440,
        font=dict(size=20) if wall else None,
        # large type needs room for its tick labels, and the title a line above the legend
        margin=dict(l=110, r=90, t=150, b=70) if wall else dict(l=10, r=10, t=90, b=10),
        yaxis=dict(
            title="P(positive) - P(negative)",
            range=index_range([p["sentiment"] for p in points] + smooth),
            zeroline=True,
        ),
        yaxis2=dict(
            title="texts", overlaying="y", side="right", showgrid=False, rangemode="tozero"
        ),
        xaxis=dict(
            type="date",
            rangeslider=dict(visible=False),
            rangeselector=None if wall else dict(buttons=buttons),
        ),
        legend=dict(orientation="h", x=1, xanchor="right", y=1.12 if wall else 1.16),
    )
    if prices:  # a third axis, right, shifted clear of the texts' axis
        right = dict(overlaying="y", side="right", anchor="free", autoshift=True, showgrid=False)
        fig.update_layout(yaxis3=dict(title=prices_label, **right))
    return fig


def lead_lag_figure(rows: list[dict[str, Any]], title: str) -> go.Figure:
    """The correlation of the sentiment index of period t with the return of period t + lag,
    per lag, with its 95% interval: bars right of 0 are sentiment leading prices."""
    shown = [r for r in rows if r["corr"] is not None]
    fig = go.Figure()
    fig.add_bar(
        x=[r["lag"] for r in shown],
        y=[r["corr"] for r in shown],
        marker_color=["#4C78A8" if r["low"] > 0 or r["high"] < 0 else "#BAB0AC" for r in shown],
        error_y=dict(
            type="data",
            symmetric=False,
            array=[r["high"] - r["corr"] for r in shown],
            arrayminus=[r["corr"] - r["low"] for r in shown],
        ),
        hovertext=[f"{r['n']} pairs, 95% [{r['low']:+.2f}, {r['high']:+.2f}]" for r in shown],
    )
    fig.update_layout(
        title=title,
        height=300,
        margin=dict(l=10, r=10, t=50, b=10),
        xaxis=dict(title="lag (periods): < 0 prices lead, > 0 sentiment leads", dtick=1),
        yaxis=dict(title="correlation", range=[-1, 1], zeroline=True),
        showlegend=False,
    )
    return fig


def index_range(values: Sequence[float | None], *, margin: float = 0.15) -> list[float]:
    """A sentiment axis that fits ``values`` with a margin (at least 0.05 each side), inside
    -1..1: [-0.27, -0.08] for an index between -0.25 and -0.1."""
    present = [v for v in values if v is not None]
    if not present:
        return [-1.0, 1.0]
    low, high = min(present), max(present)
    pad = max(0.05, (high - low) * margin)
    return [max(-1.0, low - pad), min(1.0, high + pad)]


def _with_gaps(
    points: list[dict[str, Any]], smooth: list[float | None], period: str | None
) -> tuple[list, list, list, list]:
    """x, index, rolling mean and hover data for the lines, with a break (None) wherever the
    next point does not start the period after the last: plotly draws no line across it."""
    x, index, mean, hover = [], [], [], []
    for i, (point, smoothed) in enumerate(zip(points, smooth, strict=True)):
        gap = dates.period_end(period, points[i - 1]["period"]) if period and i else None
        if gap and point["period"] > gap:
            x.append(gap)
            index.append(None)
            mean.append(None)
            hover.append([None, None])
        x.append(point["period"])
        index.append(point["sentiment"])
        mean.append(smoothed)
        hover.append([point["share_negative"], point["volume"]])
    return x, index, mean, hover


def _rolling_mean(points: list[dict[str, Any]], window: int) -> list[float | None]:
    out = []
    for i in range(len(points)):
        recent = points[max(0, i - window + 1) : i + 1]
        volume = sum(p["volume"] for p in recent)
        out.append(sum(p["sentiment"] * p["volume"] for p in recent) / volume if volume else None)
    return out


def topic_figure(rows: list[dict[str, Any]], title: str = "Sentiment by topic") -> go.Figure:
    """One bar per topic: its sentiment index, coloured by the share of negative texts.

    :param rows: ``monitoring.sentiment_by_topic`` rows (topic, sentiment, share_negative, volume)
    """
    ordered = sorted(rows, key=lambda r: r["sentiment"])
    fig = go.Figure(
        go.Bar(
            x=[r["sentiment"] for r in ordered],
            y=[r["topic"] for r in ordered],
            orientation="h",
            marker=dict(
                color=[r["share_negative"] for r in ordered],
                colorscale="Reds",
                cmin=0,
                cmax=1,
                colorbar=dict(title="negative"),
            ),
            customdata=[[r["share_negative"], r["volume"]] for r in ordered],
            hovertemplate="%{y}: index %{x:+.3f}, %{customdata[0]:.0%} negative of %{customdata[1]} texts<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        height=max(260, 26 * len(ordered) + 120),
        margin=dict(l=10, r=10, t=50, b=10),
        xaxis=dict(title="P(positive) - P(negative)", range=[-1, 1], zeroline=True),
    )
    return fig


# ----------------------------------------------------------------------------------------------
# Chat sandbox

CONTEXT_COLOURS = {
    "system": "#4C78A8",
    "pinned": "#72B7B2",
    "history": "#F58518",
    "prompt": "#54A24B",
}


def context_figure(rows: list[dict[str, Any]], budget_tokens: int) -> go.Figure:
    """Where the context budget goes: a bar of what is sent, part by part, a bar of what was
    dropped or cut to fit, and a line at the budget.

    :param rows: ``chat.plan_rows(plan)``
    """
    fig = go.Figure()
    for row in rows:
        sent = row["status"] != "dropped"
        fig.add_bar(
            y=["sent" if sent else "dropped"],
            x=[row["tokens"]],
            name=row["part"],
            orientation="h",
            marker_color=CONTEXT_COLOURS.get(row["kind"], "#999999"),
            marker_pattern_shape="" if row["status"] == "kept" else "/",
            opacity=1.0 if sent else 0.45,
            hovertemplate=f"{row['part']} ({row['status']}): %{{x}} tokens<extra></extra>",
            showlegend=False,
        )
    fig.add_vline(x=budget_tokens, line_dash="dash", annotation_text=f"budget {budget_tokens}")
    fig.update_layout(
        title="Context: tokens sent and dropped",
        barmode="stack",
        height=190,
        margin=dict(l=10, r=10, t=40, b=10),
        xaxis_title="tokens",
        yaxis=dict(categoryorder="array", categoryarray=["dropped", "sent"]),
    )
    return fig


STOP_COLOURS = {
    "end": "#54A24B",
    "max_tokens": "#4C78A8",
    "stop_sequence": "#72B7B2",
    "banned_word": "#E45756",
    "timeout": "#F58518",
    "context_overflow": "#B279A2",
    "api_error": "#9D755D",
    "refused": "#BAB0AC",
}


def bench_figure(rows: list[dict[str, Any]]) -> go.Figure:
    """The limit bench: completion tokens per prompt and variant, coloured by the limit that
    ended each reply.

    :param rows: ``chat.run_bench`` rows
    """
    prompts = list(dict.fromkeys(r["prompt"] for r in rows))
    fig = go.Figure()
    for reason in dict.fromkeys(r["stopped_by"] for r in rows):
        chosen = [r for r in rows if r["stopped_by"] == reason]
        fig.add_bar(
            x=[
                [f"prompt {prompts.index(r['prompt']) + 1}" for r in chosen],
                [r["variant"] for r in chosen],
            ],
            y=[r["completion_tokens"] or 0 for r in chosen],
            name=reason,
            marker_color=STOP_COLOURS.get(reason, "#999999"),
            hovertemplate="%{x}: %{y} tokens<extra>" + reason + "</extra>",
        )
    fig.update_layout(
        title="Limit bench: tokens generated, coloured by the limit that ended the reply",
        yaxis_title="completion tokens",
        legend_title="stopped by",
        margin=dict(l=10, r=10, t=50, b=10),
        height=320,
    )
    return fig


def suite_pass_rate_figure(points: list[dict[str, Any]]) -> go.Figure:
    """Pass rate per variant over a suite's runs (``reports.pass_rates_over_runs``)."""
    fig = go.Figure()
    for variant in dict.fromkeys(p["variant"] for p in points):
        mine = [p for p in points if p["variant"] == variant]
        fig.add_scatter(
            x=[f"run {p['run']}" for p in mine],
            y=[p["pass_rate"] for p in mine],
            mode="lines+markers",
            name=variant,
            hovertemplate="%{x}: %{y:.0%}<extra>" + variant + "</extra>",
        )
    fig.update_layout(
        title="Pass rate per variant, run by run",
        yaxis=dict(title="pass rate", tickformat=".0%", range=[-0.05, 1.05]),
        xaxis=dict(type="category"),
        legend_title="variant",
        margin=dict(l=10, r=10, t=50, b=10),
        height=300,
    )
    return fig


# A class's colour in the Playground's bars and highlighted words: the polarities by name, any
# other label by its place among the model's labels.
CLASS_COLOURS = {"negative": "#d62728", "neutral": "#7f7f7f", "positive": "#2ca02c"}
OTHER_CLASS_COLOURS = ["#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def class_colour(label: str, labels: Sequence[str]) -> str:
    """The colour of class ``label`` among ``labels``."""
    if label.lower() in CLASS_COLOURS:
        return CLASS_COLOURS[label.lower()]
    others = [x for x in labels if x.lower() not in CLASS_COLOURS]
    at = others.index(label) if label in others else 0
    return OTHER_CLASS_COLOURS[at % len(OTHER_CLASS_COLOURS)]


def probability_figure(probabilities: dict[str, float], title: str = "") -> go.Figure:
    """A bar per class with its probability, the predicted class first."""
    labels = list(probabilities)
    ordered = sorted(labels, key=lambda label: -probabilities[label])
    fig = go.Figure(
        go.Bar(
            x=[probabilities[label] for label in ordered],
            y=ordered,
            orientation="h",
            marker_color=[class_colour(label, labels) for label in ordered],
            text=[f"{probabilities[label]:.0%}" for label in ordered],
            textposition="auto",
        )
    )
    fig.update_layout(
        title=title or None,
        height=60 + 28 * len(labels),
        margin={"l": 10, "r": 10, "t": 30 if title else 10, "b": 10},
        xaxis={"range": [0, 1], "tickformat": ".0%"},
        yaxis={"autorange": "reversed"},
    )
    return fig
