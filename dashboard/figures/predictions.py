"""The figure of one image's prediction (Predict and Error-analysis cards)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from dashboard.figures.common import FigureDataError, model_color, model_label


def probability_figure(probs: Mapping[str, Sequence[float]],
                       class_names: Sequence[str]) -> go.Figure:
    """Horizontal bars of each model's class probabilities for one image."""
    fig = go.Figure()
    for i, (name, p) in enumerate(probs.items()):
        values = np.asarray(p, dtype=float).ravel()
        if values.shape != (len(class_names),):
            raise FigureDataError(f"{name} gives {values.shape[0]} probabilities for "
                                  f"{len(class_names)} classes {list(class_names)}")
        fig.add_trace(go.Bar(
            y=list(class_names), x=values, orientation="h", name=model_label(name),
            marker_color=model_color(name, i), text=[f"{v:.0%}" for v in values],
            textposition="outside", cliponaxis=False,
            hovertemplate=f"{model_label(name)}<br>%{{y}}: %{{x:.1%}}<extra></extra>",
        ))
    fig.update_xaxes(range=[0, 1.15], tickformat=".0%")
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(barmode="group", height=90 + 45 * len(class_names),
                      margin=dict(l=10, r=10, t=10, b=10), legend=dict(orientation="h", y=-0.25))
    return fig
