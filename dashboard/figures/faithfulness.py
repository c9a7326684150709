"""Faithfulness figures of the Explanation-quality page: deletion and insertion curves and
their areas beside random rankings, and ROAD's MoRF / LeRF areas (Rong et al., 2022), from each
model's explanations.json; moved out of `quality` so each module stays a readable size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.figures.common import (
    FigureDataError,
    _fmt,
    _num,
    label_corner,
    legend_below,
    model_color,
    model_label,
)
from dashboard.figures.quality import CENTRE_PATTERN, INTERVAL_COLOR, _expl_value, _paired_bars
from dashboard.figures.table import table_meta


def has_curves(explanations: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether every model's explanations.json has deletion/insertion curves."""
    return bool(explanations) and all(
        isinstance(e.get("curve_fractions"), list) and isinstance(e.get("deletion_curve"), list)
        for e in explanations.values())


def faithfulness_curves_figure(explanations: Mapping[str, Mapping[str, Any]],
                               n_classes: int | None = None) -> go.Figure:
    """Mean deletion and insertion curves of each model's heatmaps against random heatmaps;
    with `n_classes`, a dashed line at 1 / n_classes, the probability of a guess: a curve
    that falls to it has lost the class's evidence, one that stays above has kept some."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=[
        # two lines each: one line ran past the figure's edge at a projector's 911 px
        "Deletion: most relevant<br>pixels removed first",
        "Insertion: most relevant<br>put back first"])
    for col, kind in ((1, "deletion"), (2, "insertion")):
        for i, (name, e) in enumerate(explanations.items()):
            xs = e.get("curve_fractions")
            for suffix, dash, label in (("", "solid", "heatmap"), ("_random", "dot", "random")):
                ys = e.get(f"{kind}_curve{suffix}")
                if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
                    raise FigureDataError(
                        f"{name}: '{kind}_curve{suffix}' must be a list as long as "
                        f"'curve_fractions' ({len(xs) if isinstance(xs, list) else xs!r})")
                auc = _expl_value(e, f"{kind}_auc{suffix}", name)
                fig.add_trace(go.Scatter(
                    x=xs, y=[_num(y, f"{name} {kind} curve") for y in ys], mode="lines",
                    name=f"{model_label(name)} {label}", legendgroup=f"{name}{suffix}",
                    showlegend=col == 1, line=dict(color=model_color(name, i), dash=dash),
                    hovertemplate=f"{model_label(name)} {label} (AUC {_fmt(auc)})"
                                  "<br>%{x:.0%} of pixels: p = %{y:.3f}<extra></extra>",
                ), row=1, col=col)
    if n_classes:
        chance = 1.0 / n_classes
        for col, kind in ((1, "deletion"), (2, "insertion")):
            curves = [(e["curve_fractions"], [_num(y, kind) for y in e[f"{kind}_curve{suffix}"]])
                      for e in explanations.values() for suffix in ("", "_random")]
            fig.add_hline(y=chance, line=dict(color=INTERVAL_COLOR, dash="dash", width=1),
                          annotation_text=f"chance (1/{n_classes})",
                          annotation_position=label_corner(curves, chance), row=1, col=col)
    # a short title per panel: one long one for both overprinted its neighbour at 911 px
    fig.update_xaxes(tickformat=".0%", range=[0, 1])
    fig.update_xaxes(title="share of pixels removed", col=1)
    fig.update_xaxes(title="share put back", col=2)
    fig.update_yaxes(title="probability of the explained class", col=1)
    fig.update_yaxes(range=[0, 1.02])
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=50, b=10),
                      legend=legend_below(), meta=table_meta(  # one name for both panels
                          x="share of pixels removed or put back",
                          y="probability of the explained class"))
    return fig


def faithfulness_figure(explanations: Mapping[str, Mapping[str, Any]]) -> go.Figure:
    """Deletion and insertion AUC of each model's heatmaps next to a random-ranking baseline."""
    fig = _paired_bars(explanations, ("deletion_auc", "insertion_auc"), "_random", "random", [
        "Deletion AUC (lower is better)", "Insertion AUC (higher is better)"])
    fig.update_yaxes(range=[0, 1.12])
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=50, b=10),
                      meta=table_meta(x="bar", y="AUC"))
    return fig


def has_road(explanations: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether some model's explanations.json has ROAD areas (runs explained before ROAD:
    none)."""
    return any(e.get("road_morf_auc") is not None for e in explanations.values())


def road_figure(explanations: Mapping[str, Mapping[str, Any]]) -> go.Figure:
    """Per model, ROAD's mean AUC with the most relevant pixels removed first (MoRF) beside the
    least relevant first (LeRF); each bar pair's gap LeRF − MoRF in the hover and the x label."""
    names = list(explanations)
    morf = [_expl_value(explanations[n], "road_morf_auc", n) for n in names]
    lerf = [_expl_value(explanations[n], "road_lerf_auc", n) for n in names]
    xs = [f"{model_label(n)}<br>gap {_fmt(b - a)}" for n, a, b in zip(names, morf, lerf,
                                                                     strict=True)]
    fig = go.Figure()
    for ys, label, pattern in ((morf, "most relevant removed first (MoRF)", ""),
                               (lerf, "least relevant removed first (LeRF)", CENTRE_PATTERN)):
        fig.add_trace(go.Bar(
            x=xs, y=ys, name=label, text=[_fmt(y) for y in ys], textposition="outside",
            marker_color=[model_color(n, i) for i, n in enumerate(names)],
            marker_pattern_shape=pattern, cliponaxis=False,
            hovertemplate=f"{label}: %{{y:.3f}}<extra></extra>"))
    fig.update_xaxes(tickangle=0)
    fig.update_layout(barmode="group", height=320, margin=dict(l=10, r=10, t=30, b=10),
                      yaxis=dict(range=[0, 1.12], title="mean AUC (probability of the class)"),
                      legend=legend_below(), meta=table_meta(x="model (gap LeRF − MoRF)"))
    return fig
