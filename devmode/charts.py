"""Plotly figures built from plain rows; no Streamlit here, so tests can read the traces.

fig = label_distribution_figure(stats.label_counts)
st.plotly_chart(fig)
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

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
