"""Figures and tables of a run's test-split evaluation (the Overview page): confusion matrices,
metrics with confidence intervals (ROC/PR curves: `curves`; training curves: `training`;
calibration: `calibration`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.figures.common import (
    TOP_WITH_LEGEND,
    FigureDataError,
    _fmt,
    _num,
    class_name,
    legend_above,
    legend_below,
    model_color,
    model_label,
)
from dashboard.figures.table import table_meta
from dashboard.flags import size_gap
from pipeline.intervals import WILSON, share_interval

# --------------------------------------------------------------------------- confusion matrix


def confusion_values(cm: Mapping[str, Any],
                     normalise: bool = False) -> tuple[list[str], np.ndarray]:
    """Validated labels and matrix (rows = true class); row-normalised to [0, 1] if asked.

    A class without test images has an all-zero row; normalising keeps it at zero rather than
    dividing by zero.
    """
    labels = cm.get("labels") if isinstance(cm, Mapping) else None
    matrix = cm.get("matrix") if isinstance(cm, Mapping) else None
    if not isinstance(labels, list) or not labels:
        raise FigureDataError(f"confusion matrix needs a non-empty 'labels' list, got {labels!r}")
    try:
        arr = np.asarray(matrix, dtype=float)
    except (TypeError, ValueError) as exc:
        raise FigureDataError(f"confusion 'matrix' is not numeric: {exc}") from exc
    if arr.shape != (len(labels), len(labels)):
        raise FigureDataError(
            f"confusion 'matrix' has shape {arr.shape}, expected {(len(labels), len(labels))} "
            f"for labels {labels}")
    if np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise FigureDataError("confusion 'matrix' holds negative or non-finite counts")
    if normalise:
        sums = arr.sum(axis=1, keepdims=True)
        arr = np.divide(arr, sums, out=np.zeros_like(arr), where=sums > 0)
    return [str(label) for label in labels], arr


def confusion_figure(cm: Mapping[str, Any], normalise: bool = False, title: str = "") -> go.Figure:
    """Heatmap of a confusion matrix: counts, or each true-class row as fractions."""
    labels, arr = confusion_values(cm, normalise)
    labels = [class_name(label) for label in labels]
    text = [[f"{v:.0%}" if normalise else f"{int(round(v))}" for v in row] for row in arr]
    fig = go.Figure(go.Heatmap(
        z=arr, x=labels, y=labels, text=text, texttemplate="%{text}", colorscale="Blues",
        zmin=0, zmax=1 if normalise else None, showscale=False,
        hovertemplate=("true %{y}<br>predicted %{x}<br>"
                       + ("%{z:.1%} of the row" if normalise else "%{z} images")
                       + "<extra></extra>"),
    ))
    fig.update_layout(title=title or None, height=380, margin=dict(l=10, r=10, t=50, b=10))
    fig.update_xaxes(title="predicted", side="bottom", type="category")
    # Rows in reading order (first class on top) as in a printed confusion matrix.
    fig.update_yaxes(title="true", autorange="reversed", type="category")
    return fig


# --------------------------------------------------------------------------- metrics


def per_class_figure(metrics: Mapping[str, Mapping[str, Any]]) -> go.Figure:
    """Precision, recall and F1 per class, one bar group per model, one panel per measure."""
    measures = ["precision", "recall", "f1"]
    fig = make_subplots(rows=1, cols=3, subplot_titles=["Precision", "Recall", "F1"],
                        shared_yaxes=True, horizontal_spacing=0.04)
    for i, (name, m) in enumerate(metrics.items()):
        per_class = m.get("per_class") if isinstance(m, Mapping) else None
        if not isinstance(per_class, Mapping) or not per_class:
            raise FigureDataError(f"metrics of {name!r} have no 'per_class' table")
        classes = list(per_class)
        for col, measure in enumerate(measures, start=1):
            values = [_num(per_class[c].get(measure), f"{name} {c} {measure}") for c in classes]
            support = [per_class[c].get("support", "?") for c in classes]
            fig.add_trace(go.Bar(
                x=[class_name(c) for c in classes], y=values, name=model_label(name),
                legendgroup=name,
                showlegend=col == 1, marker_color=model_color(name, i), customdata=support,
                meta=table_meta(support=support),
                hovertemplate=f"{model_label(name)}<br>%{{x}}: %{{y:.3f}}"
                              "<br>support %{customdata}<extra></extra>",
            ), row=1, col=col)
    ticks = _support_ticks(metrics)
    fig.update_xaxes(tickvals=list(ticks), ticktext=list(ticks.values()))
    fig.update_layout(meta=table_meta(x="class", y="score"))
    fig.update_yaxes(range=[0, 1.05])
    fig.update_layout(barmode="group", height=380,
                      margin=dict(l=10, r=10, t=TOP_WITH_LEGEND, b=10), legend=legend_above())
    return fig


def _support_ticks(metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Each class's tick label with its test images, "glioma<br>n = 139": a recall on 75
    images moves 1.3 points per image, on 141 less than 1. A class whose count the models do
    not agree on keeps its bare name."""
    seen: dict[str, set] = {}
    for m in metrics.values():
        for c, row in (m.get("per_class") or {}).items():
            seen.setdefault(c, set()).add(row.get("support") if isinstance(row, Mapping) else None)
    ticks = {}
    for c, counts in seen.items():
        n = next(iter(counts)) if len(counts) == 1 else None
        known = isinstance(n, int) and not isinstance(n, bool)
        ticks[class_name(c)] = class_name(c) + (f"<br>n = {n}" if known else "")
    return ticks


def _ci(comparison: Mapping[str, Any] | None, model: str,
        metric: str) -> tuple[float, float] | None:
    ci = ((comparison or {}).get("ci") or {}).get(model) or {}
    pair = ci.get(metric)
    if pair is None:
        return None
    if not isinstance(pair, Sequence) or len(pair) != 2:
        raise FigureDataError(f"confidence interval of {model} {metric} should be [lo, hi], "
                              f"got {pair!r}")
    return _num(pair[0], f"{model} {metric} CI low"), _num(pair[1], f"{model} {metric} CI high")


HEADLINE_METRICS = [
    ("accuracy", "Accuracy"),
    ("balanced_accuracy", "Balanced accuracy"),
    ("macro_f1", "Macro F1"),
    ("weighted_f1", "Weighted F1"),
    ("roc_auc", "ROC AUC (macro)"),
    ("pr_auc", "PR AUC (macro)"),
    ("ece", "ECE (lower = better)"),
]


def interval_words(comparison: Mapping[str, Any] | None) -> str:
    """What the headline table's brackets and the interval chart's whiskers are, read from the
    run's comparison.json: runs evaluated before 2026-12-06 bootstrapped accuracy too."""
    method = str((comparison or {}).get("ci_method") or "")
    if method.startswith(f"accuracy: {WILSON}"):
        return "95% intervals (Wilson score for accuracy, bootstrap for macro-F1)"
    return "95% bootstrap confidence intervals"


def _headline_value(metrics: Mapping[str, Any], key: str) -> float:
    value = metrics.get(key)
    # roc_auc / pr_auc may be a per-class dict with a "macro" entry.
    if isinstance(value, Mapping):
        value = value.get("macro", value.get("mean"))
    return _num(value, key)


def metrics_table(metrics: Mapping[str, Mapping[str, Any]],
                  comparison: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Headline metrics (rows) per model (columns) as text, with 95% CIs where known."""
    rows: dict[str, dict[str, str]] = {}
    for key, label in HEADLINE_METRICS:
        row = {}
        for name, m in metrics.items():
            value = _headline_value(m, key)
            cell = _fmt(value)
            ci = _ci(comparison, name, key)
            if ci is not None and not math.isnan(value):
                cell += f"  [{_fmt(ci[0])}, {_fmt(ci[1])}]"
            row[model_label(name)] = cell
        rows[label] = row
    tvn = {name: m.get("tumor_vs_no_tumor") or {} for name, m in metrics.items()}
    # named by what they count, with their counts: "Tumour specificity" read as specificity for
    # a tumour type, and a bare 0.973 as a near-perfect test (a clinician's review, 2026-12-05)
    for key, label, (hit, of) in TUMOUR_ROWS:
        rows[label] = {model_label(n): _fmt(_num(t.get(key), f"{n} {key}")) + _count(t, hit, of)
                       for n, t in tvn.items()}
    rows["Test images"] = {model_label(n): str(m.get("n", "?")) for n, m in metrics.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


# metrics.json `tumor_vs_no_tumor`: key, row label, (hits, out of). Labels short enough for the
# table's first column at 1280 px with the sidebar open ("…called no tumo" was cut there); the
# glossary and the counts beside each value say exactly what is counted.
TUMOUR_ROWS = (
    ("sensitivity", "Sensitivity: tumours found", ("tp", "n_tumor")),
    ("specificity", "Specificity: no-tumour found", ("tn", "n_no_tumor")))


def _count(record: Mapping[str, Any], hit: str, of: str) -> str:
    """"  (386 of 415)" from a tumour-vs-no-tumour record; "" where the counts are missing."""
    k_n = _hits(record, hit, of)
    return f"  ({k_n[0]} of {k_n[1]})" if k_n else ""


def ci_figure(metrics: Mapping[str, Mapping[str, Any]],
              comparison: Mapping[str, Any] | None = None) -> go.Figure:
    """Accuracy and macro F1 per model as points with 95% confidence-interval whiskers."""
    fig = go.Figure()
    shown = [("accuracy", "Accuracy"), ("balanced_accuracy", "Balanced acc."),
             ("macro_f1", "Macro F1")]
    ends: list[float] = []  # every whisker end, for an axis zoomed to the data
    for i, (name, m) in enumerate(metrics.items()):
        xs, ys, plus, minus = [], [], [], []
        for key, label in shown:
            value = _headline_value(m, key)
            if math.isnan(value):
                continue
            ci = _ci(comparison, name, key)
            xs.append(label)
            ys.append(value)
            plus.append(max(ci[1] - value, 0.0) if ci else 0.0)
            minus.append(max(value - ci[0], 0.0) if ci else 0.0)
            ends += [value + plus[-1], value - minus[-1]]
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="markers", name=model_label(name),
            marker=dict(size=12, color=model_color(name, i)),
            error_y=dict(type="data", array=plus, arrayminus=minus, visible=True, thickness=2),
            hovertemplate=f"{model_label(name)}<br>%{{x}} %{{y:.3f}}<extra></extra>",
        ))
    fig.update_layout(scattermode="group", height=320, yaxis_title="score (95% CI)",
                      margin=dict(l=10, r=10, t=30, b=10), legend=legend_below(),
                      meta=table_meta(x="metric"))
    if ends:  # zoomed to the intervals: on a 0-1 axis narrow intervals were invisible
        lo, hi = min(ends), max(ends)
        pad = max(0.01, 0.15 * (hi - lo))
        fig.update_yaxes(range=[max(0.0, lo - pad), min(1.0, hi + pad)])
    return fig


def _hits(record: Mapping[str, Any], hit: str, of: str) -> tuple[int, int] | None:
    """(hits, out of) from a tumour-vs-no-tumour record; None where the counts are missing."""
    a, b = record.get(hit), record.get(of)
    ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (a, b))
    return (a, b) if ok and 0 <= a <= b and b > 0 else None


def tumour_figure(metrics: Mapping[str, Mapping[str, Any]]) -> go.Figure:
    """Tumour-vs-no-tumour sensitivity and specificity per model (the screening view): bars
    with their counts ("386 of 415") and Wilson 95% intervals as whiskers (`share_interval`),
    since 75 no-tumour test images leave a specificity uncertain by several points."""
    fig = go.Figure()
    for i, (name, m) in enumerate(metrics.items()):
        tvn = m.get("tumor_vs_no_tumor")
        if not isinstance(tvn, Mapping):
            raise FigureDataError(f"metrics of {name!r} have no 'tumor_vs_no_tumor' block")
        ys, plus, minus, text, hover = [], [], [], [], []
        hits: list[int | None] = []  # "k of n" in the table (`table_meta`)
        of_n: list[int | None] = []
        for key, _, counts in TUMOUR_ROWS:
            y = _num(tvn.get(key), f"{name} {key}")
            k_n = _hits(tvn, *counts)
            ci = share_interval(*k_n) if k_n else None
            ys.append(y)
            plus.append(max(ci[1] - y, 0.0) if ci and not math.isnan(y) else 0.0)
            minus.append(max(y - ci[0], 0.0) if ci and not math.isnan(y) else 0.0)
            of = f"{k_n[0]} of {k_n[1]}" if k_n else ""
            hits.append(k_n[0] if k_n else None)
            of_n.append(k_n[1] if k_n else None)
            text.append(_fmt(y) + (f"<br>{of}" if of else ""))
            hover.append(f" ({of})<br>95% interval {ci[0]:.3f}–{ci[1]:.3f}" if ci else "")
        fig.add_trace(go.Bar(
            x=[label for _, label, _ in TUMOUR_ROWS], y=ys,
            name=model_label(name), marker_color=model_color(name, i),
            text=text, textposition="inside", insidetextanchor="middle", customdata=hover,
            meta=table_meta(**{"images right": hits, "of": of_n}),
            error_y=dict(type="data", array=plus, arrayminus=minus, visible=True, thickness=2,
                         color="#333"),
            hovertemplate=f"{model_label(name)}<br>%{{x}}: %{{y:.3f}}%{{customdata}}"
                          "<extra></extra>",
        ))
    fig.update_layout(barmode="group", height=320, yaxis=dict(range=[0, 1.05]),
                      yaxis_title="share (95% interval)",
                      margin=dict(l=10, r=10, t=30, b=10), legend=legend_below(),
                      meta=table_meta(x="metric"))
    return fig


def size_group_table(metrics: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame | None:
    """Per model and pixel-size group (`metrics.json` `by_size`): images, accuracy, tumour
    sensitivity and specificity as text; None when no model has the breakdown (older runs)."""
    rows = []
    for name, m in metrics.items():
        groups = m.get("by_size")
        if not groups:
            continue
        size = str(groups.get("size", "?"))
        for key, label in (("common_size", f"{size} (training's commonest size)"),
                           ("other_sizes", "every other size")):
            g = groups.get(key) or {}
            rows.append({"model": model_label(name), "images": label, "n": str(g.get("n", 0)),
                         **{col: _fmt(_num(g.get(k), f"{name} {key} {k}"))
                            for k, col in (("accuracy", "accuracy"),
                                           ("sensitivity", "tumour sensitivity"),
                                           ("specificity", "specificity"))}})
    return pd.DataFrame(rows) if rows else None


def size_gaps(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Plain sentences for models whose tumour sensitivity on other-size images is more than
    `flags.SIZE_GAP` below that on the commonest size."""
    out = []
    for name, m in metrics.items():
        groups = m.get("by_size") or {}
        gap = size_gap(groups)
        if gap:
            common, other = gap
            out.append(f"{model_label(name)} finds {other:.0%} of the tumours in images of other "
                       f"sizes against {common:.0%} at {groups.get('size', '?')}: it may be "
                       "recognising where an image comes from rather than the tumour.")
    return out


def copies_sentence(metrics: Mapping[str, Mapping[str, Any]]) -> str | None:
    """One sentence giving each model's accuracy with exact and near copies counted once
    (`metrics.json` `copies`, written by `evaluate`); None when no model has it (older runs) or
    the test images hold no copies, so the plain figures already count each slice once."""
    parts, counts = [], None
    for name, m in metrics.items():
        copies = m.get("copies") or {}
        if copies.get("accuracy") is None or not copies.get("images_in_copies"):
            continue
        acc = _num(copies["accuracy"], f"{name} copies accuracy")
        plain = _num(m.get("accuracy"), f"{name} accuracy")
        parts.append(f"{model_label(name)} {_fmt(acc)} (every image counted: {_fmt(plain)})")
        counts = (copies.get("n_images", "?"), copies.get("n_groups", "?"))
    if not parts:
        return None
    return (f"The {counts[0]} test images are {counts[1]} distinct slices (exact and near copies "
            "grouped as the splits group them). Accuracy counting each distinct slice once (a "
            "slice with copies scores the share of its copies answered right): "
            f"{'; '.join(parts)}.")
