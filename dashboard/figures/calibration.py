"""Calibration figures of a run's test-split evaluation (the Overview page): the reliability
diagram, before and after temperature scaling, and ECE set against a calibrated model's floor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go

from dashboard.figures.common import (
    FigureDataError,
    _fmt,
    _num,
    legend_below,
    model_color,
    model_label,
)
from dashboard.figures.table import table_meta

# A curve before calibration: dashed with open markers, at full strength. At opacity 0.55 the
# MobileNetV2 blue sank into the dark theme's background (about 1.9:1); told apart by its dash
# and hollow markers, it keeps the model's colour as is, which reads on white and on #0e1117.
BEFORE_DASH = "dash"
BEFORE_MARKER = "circle-open"


def reliability_points(reliability: Any, name: str = "model") -> list[dict[str, float]]:
    """Non-empty reliability bins as dicts with `confidence`, `accuracy`, `count`."""
    if isinstance(reliability, Mapping) and "bins" in reliability:
        reliability = reliability["bins"]
    if not isinstance(reliability, list):
        raise FigureDataError(f"reliability of {name!r} should be a list of bins, "
                              f"got {type(reliability).__name__}")
    points = []
    for i, b in enumerate(reliability):
        if not isinstance(b, Mapping):
            raise FigureDataError(f"reliability bin {i} of {name!r} is {b!r}")
        count = _num(b.get("count", 0), f"{name} bin {i} count")
        if count <= 0:
            continue  # an empty bin has no accuracy to show
        points.append({
            "confidence": _num(b.get("confidence"), f"{name} bin {i} confidence"),
            "accuracy": _num(b.get("accuracy"), f"{name} bin {i} accuracy"),
            "count": count,
        })
    return points


def reliability_figure(metrics: Mapping[str, Mapping[str, Any]]) -> go.Figure:
    """Reliability diagram: mean confidence vs accuracy per bin; the diagonal is perfect.

    A temperature-scaled model (metrics.json with a `temperature`) also gets its curve before
    calibration (`reliability_uncalibrated`, dashed, same colour), so both can be compared.
    """
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                             line=dict(color="gray", dash="dot"), hoverinfo="skip"))
    for i, (name, m) in enumerate(metrics.items()):
        ece = _fmt(_num(m.get("ece"), f"{name} ece"))
        temperature = m.get("temperature")
        if temperature is not None and m.get("reliability_uncalibrated") is not None:
            before = _fmt(_num(m.get("ece_uncalibrated"), f"{name} ece_uncalibrated"))
            _reliability_trace(fig, name, i, m["reliability_uncalibrated"],
                               f"{model_label(name)} before calibration", f"ECE {before}",
                               before=True)
            t = _fmt(_num(temperature, f"{name} temperature"), 2)
            _reliability_trace(fig, name, i, m.get("reliability"), model_label(name),
                               f"ECE {ece}, T = {t}")
        else:
            _reliability_trace(fig, name, i, m.get("reliability"), model_label(name),
                               f"ECE {ece}")
    fig.update_xaxes(title="mean predicted confidence", range=[0, 1])
    fig.update_yaxes(title="observed accuracy", range=[0, 1.02])
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=30, b=10),
                      legend=legend_below())
    return fig


def _reliability_trace(fig: go.Figure, name: str, index: int, reliability: Any, label: str,
                       details: str, before: bool = False) -> None:
    """One reliability curve of model `name`, `label (details)` in the legend; nothing when
    every bin is empty. A curve `before` calibration is dashed with hollow markers."""
    pts = reliability_points(reliability, name)
    if not pts:
        return
    counts = np.array([p["count"] for p in pts])
    color = model_color(name, index)
    # Marker area follows the number of images in the bin.
    marker = dict(size=6 + 18 * np.sqrt(counts / counts.max()), color=color)
    if before:  # a hollow marker's ring as wide as the line, so it does not fade either
        marker.update(symbol=BEFORE_MARKER, line=dict(color=color, width=2))
    fig.add_trace(go.Scatter(
        x=[p["confidence"] for p in pts], y=[p["accuracy"] for p in pts],
        mode="lines+markers", name=f"{label} ({details})",
        line=dict(color=color, dash=BEFORE_DASH if before else None), marker=marker,
        customdata=counts, meta=table_meta(images=counts),
        hovertemplate=f"{label}<br>confidence %{{x:.2f}}<br>accuracy %{{y:.2f}}"
                      "<br>%{customdata:.0f} images<extra></extra>",
    ))


def ece_floor_sentences(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Per model with `ece_if_calibrated` in metrics.json, its ECE set against what a perfectly
    calibrated model would show on as many images (a finite set inflates ECE); older runs lack
    it and get no sentence."""
    out = []
    for name, m in metrics.items():
        floor = m.get("ece_if_calibrated") or {}
        if floor.get("mean") is None or floor.get("p95") is None:
            continue
        ece = _num(m.get("ece"), f"{name} ece")
        mean = _num(floor["mean"], f"{name} ece_if_calibrated mean")
        p95 = _num(floor["p95"], f"{name} ece_if_calibrated p95")
        verdict = ("more than chance explains: the model is miscalibrated" if ece > p95 else
                   "within what chance alone gives: no miscalibration detectable beyond chance")
        out.append(f"{model_label(name)}: ECE {_fmt(ece)}. A perfectly calibrated model with the "
                   f"same confidences would show about {_fmt(mean)} on {m.get('n', '?')} images "
                   f"(above {_fmt(p95)} only 5% of the time); {_fmt(ece)} is {verdict}.")
    return out


def scaling_worse_sentences(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One sentence per model whose test ECE the temperature made worse (`ece` above
    `ece_uncalibrated`): the legend says "before calibration" and the pages show the scaled
    probabilities, which read as an improvement (a student's review, 2026-12-05: on the
    official Testing/ run 0.068 became 0.124)."""
    out = []
    for name, m in metrics.items():
        after, before = m.get("ece"), m.get("ece_uncalibrated")
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (after, before)) \
                and after > before:
            out.append(f"On these test images temperature scaling made {model_label(name)}'s "
                       f"calibration worse (ECE {_fmt(before)} before, {_fmt(after)} after): a "
                       "temperature fitted on validation images need not carry over to images "
                       "unlike them, and the probabilities the pages show are the scaled ones.")
    return out
