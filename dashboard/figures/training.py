"""The training-curves figure of the Overview page (a run's `<model>/history.json`): loss and
accuracy per epoch, the kept epoch, where fine-tuning starts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.figures.common import FigureDataError, _num, model_color, model_label


def _history_series(history: Mapping[str, Any], name: str) -> dict[str, list]:
    epochs = history.get("epochs") if isinstance(history, Mapping) else None
    if not isinstance(epochs, list) or not epochs:
        raise FigureDataError(f"history of {name!r} has no 'epochs' list")
    out: dict[str, list] = {k: [] for k in
                            ("epoch", "phase", "loss", "val_loss", "accuracy", "val_accuracy")}
    for i, row in enumerate(epochs):
        if not isinstance(row, Mapping):
            raise FigureDataError(f"history of {name!r}: epoch entry {i} is {row!r}")
        out["epoch"].append(row.get("epoch", i + 1))
        out["phase"].append(row.get("phase", "train"))
        for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
            out[key].append(_num(row.get(key), f"{name} epoch {i + 1} {key}"))
    return out


def training_curves_figure(histories: Mapping[str, Mapping[str, Any]]) -> go.Figure:
    """Loss and accuracy per epoch; solid = train, dashed = validation; star = best epoch."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["Loss", "Accuracy"],
                        horizontal_spacing=0.08)
    last_epoch = 1
    for i, (name, hist) in enumerate(histories.items()):
        s = _history_series(hist, name)
        last_epoch = max([last_epoch, *(e for e in s["epoch"] if isinstance(e, (int, float)))])
        color = model_color(name, i)
        label = model_label(name)
        for col, key in ((1, "loss"), (2, "accuracy")):
            for split, dash in (("", "solid"), ("val_", "dash")):
                fig.add_trace(go.Scatter(
                    x=s["epoch"], y=s[split + key], mode="lines+markers",
                    name=f"{label} {'validation' if split else 'train'}",
                    legendgroup=f"{name}{split}", showlegend=col == 1,
                    line=dict(color=color, dash=dash), marker=dict(size=4),
                    customdata=s["phase"],
                    hovertemplate=f"{label} {'val' if split else 'train'} {key}"
                                  "<br>epoch %{x} (%{customdata}): %{y:.3f}<extra></extra>",
                ), row=1, col=col)
        best = hist.get("best_epoch")
        if best in s["epoch"]:
            j = s["epoch"].index(best)
            fig.add_trace(go.Scatter(
                x=[best], y=[s["val_loss"][j]], mode="markers", name=f"{label} best epoch",
                marker=dict(symbol="star", size=14, color=color), legendgroup=f"{name}best",
                hovertemplate=f"{label} best epoch %{{x}}<extra></extra>",
            ), row=1, col=1)
        # The epoch where fine-tuning starts: curves often jump there, so mark it.
        for j in range(1, len(s["phase"])):
            if s["phase"][j] != s["phase"][j - 1]:
                for col in (1, 2):
                    fig.add_vline(x=s["epoch"][j] - 0.5, line=dict(color=color, dash="dot",
                                                                   width=1), row=1, col=col)
                fig.add_annotation(x=s["epoch"][j] - 0.5, y=1, yref="y domain", row=1, col=1,
                                   text=f"{label}: {s['phase'][j]}", showarrow=False,
                                   font=dict(size=10, color=color), xanchor="left")
    # Whole epochs only, about ten ticks at most.
    fig.update_xaxes(title="epoch", tick0=1, dtick=max(1, math.ceil(last_epoch / 10)))
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=50, b=10),
                      legend=dict(orientation="h", y=-0.2))
    return fig
