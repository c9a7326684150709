"""One-vs-rest ROC and precision-recall curves per class (the Overview page), with their areas
as a table (`curve_areas`) and the PR curve's chance level per class (`class_prevalence`); moved
out of `evaluation` so each module stays a readable size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.figures.common import (
    FigureDataError,
    _fmt,
    _num,
    class_color,
    class_name,
    legend_below,
    model_label,
)

# one line style per class besides its colour: classes told apart by colour alone were 18 ΔE
# apart with deuteranopia ("no tumour" and "pituitary"); "dot" is the chance line's
CLASS_DASHES = ["solid", "dash", "dashdot", "longdash", "longdashdot"]


def _curve_figure(curves: Mapping[str, Mapping[str, Any]], kind: str) -> go.Figure:
    names = list(curves)
    if not names:
        raise FigureDataError("no curves to draw")
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[model_label(n) for n in names],
                        shared_yaxes=True, horizontal_spacing=0.05)
    x_key, y_key, score = (("fpr", "tpr", "auc") if kind == "roc"
                           else ("recall", "precision", "ap"))
    class_order: list[str] = []
    for col, name in enumerate(names, start=1):
        block = curves[name].get(kind) if isinstance(curves[name], Mapping) else None
        if not isinstance(block, Mapping) or not block:
            raise FigureDataError(f"curves of {name!r} have no {kind!r} block")
        for cls, c in block.items():
            if cls not in class_order:
                class_order.append(cls)
            xs, ys = c.get(x_key), c.get(y_key)
            if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
                raise FigureDataError(
                    f"{name} {kind} curve of {cls!r}: '{x_key}' and '{y_key}' must be lists of "
                    f"equal length")
            area = _num(c.get(score), f"{name} {cls} {score}")
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="lines", name=class_name(cls), legendgroup=cls,
                showlegend=col == 1,
                line=dict(color=class_color(class_order.index(cls)),
                          dash=CLASS_DASHES[class_order.index(cls) % len(CLASS_DASHES)],
                          shape="hv" if kind == "pr" else "linear"),
                hovertemplate=f"{model_label(name)} {class_name(cls)} ({score.upper()} "
                              f"{_fmt(area)})"
                              f"<br>{x_key} %{{x:.3f}}<br>{y_key} %{{y:.3f}}<extra></extra>",
            ), row=1, col=col)
        if kind == "roc":
            fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance",
                                     legendgroup="chance", showlegend=col == 1,
                                     line=dict(color="gray", dash="dot"), hoverinfo="skip"),
                          row=1, col=col)
    fig.update_xaxes(title="false positive rate" if kind == "roc" else "recall", range=[0, 1])
    fig.update_yaxes(range=[0, 1.02])
    fig.update_yaxes(title="true positive rate" if kind == "roc" else "precision", col=1)
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=50, b=10),
                      legend=legend_below())
    return fig


def curve_areas(curves: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame | None:
    """Each class's ROC AUC and average precision, a column per model: the curves' numbers as
    text (they were only in the charts' hover labels, out of reach of a keyboard or a screen
    reader). None when no model has them."""
    table: dict[str, dict[str, str]] = {}
    for name, c in curves.items():
        for kind, score, what in (("roc", "auc", "ROC AUC"), ("pr", "ap", "average precision")):
            block = c.get(kind) if isinstance(c, Mapping) else None
            for cls, curve in (block.items() if isinstance(block, Mapping) else ()):
                value = curve.get(score) if isinstance(curve, Mapping) else None
                if isinstance(value, int | float) and not isinstance(value, bool):
                    table.setdefault(f"{class_name(cls)}: {what}", {})[model_label(name)] = (
                        f"{value:.3f}")
    return pd.DataFrame.from_dict(table, orient="index").fillna("n/a") if table else None


def roc_figure(curves: Mapping[str, Mapping[str, Any]]) -> go.Figure:
    """One-vs-rest ROC curves per class, one panel per model, with the chance diagonal."""
    return _curve_figure(curves, "roc")


def pr_figure(curves: Mapping[str, Mapping[str, Any]],
              metrics: Mapping[str, Mapping[str, Any]] | None = None) -> go.Figure:
    """One-vs-rest precision-recall curves per class, one panel per model; with `metrics`, a
    dotted line per class at its share of the test images (`class_prevalence`), the precision
    of answering at random: a PR curve's chance level, unlike ROC's not the same for all."""
    fig = _curve_figure(curves, "pr")
    shares = class_prevalence(metrics or {})
    order = [t.legendgroup for t in fig.data if t.showlegend]  # class order, for its colour
    for col, _ in enumerate(curves, start=1):
        for cls, (k, n) in shares.items():
            j = order.index(cls) if cls in order else len(order)
            fig.add_trace(go.Scatter(
                x=[0, 1], y=[k / n] * 2, mode="lines", legendgroup=cls, showlegend=False,
                line=dict(color=class_color(j), dash="dot", width=1),
                hovertemplate=f"{class_name(cls)}: chance level, precision {k / n:.3f} "
                              f"({k} of {n} test images)<extra></extra>",
            ), row=1, col=col)
    return fig


def class_prevalence(metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    """Each class's test images and all test images, (k, n), from the first model's
    `per_class` supports (every model is tested on the same images); {} where unknown."""
    for m in metrics.values():
        per_class = m.get("per_class") if isinstance(m, Mapping) else None
        if not isinstance(per_class, Mapping):
            continue
        support = {c: r.get("support") for c, r in per_class.items() if isinstance(r, Mapping)}
        if support and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                           for v in support.values()):
            n = sum(support.values())
            return {c: (k, n) for c, k in support.items()} if n else {}
    return {}
