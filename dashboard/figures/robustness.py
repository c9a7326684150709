"""The robustness figure of the Overview page, from a run's robustness.json: accuracy per shift and
severity per model, against that model's clean accuracy (shift validation, not a clean test).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.figures.common import (
    TOP_WITH_LEGEND,
    FigureDataError,
    _fmt,
    _num,
    legend_above,
    model_color,
    model_label,
)
from dashboard.figures.table import table_meta
from pipeline.intervals import share_interval

# mild → severe: cyan, pink, olive, each darker on white, every one at least 3:1 against both
# Streamlit themes' backgrounds (`THEME_BACKGROUNDS`), and at least `SEVERITY_APART` (CIE76 ΔE,
# `color_difference`) from the models' colours (`MODEL_COLORS`, the clean lines) and from each
# other: the former amber, red and purple were 15, 33 and 39 from the custom CNN's orange and
# MobileNetV2's blue (the former severe #990000 was 2.1:1 on the dark theme)
SEVERITY_COLORS = ["#0891b2", "#db2777", "#4d7c0f"]
SEVERITY_APART = 60
DEFAULT_SEVERITIES = ["mild", "moderate", "severe"]


def _models(robustness: Mapping[str, Any]) -> Mapping[str, Any]:
    models = robustness.get("models") if isinstance(robustness, Mapping) else None
    if not isinstance(models, Mapping) or not models:
        raise FigureDataError(f"robustness.json needs a non-empty 'models' dict, got {models!r}")
    return models


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _shift_names(robustness: Mapping[str, Any], models: Mapping[str, Any]) -> list[str]:
    """Shifts in the file's order; shifts only some models have are added after them."""
    names = list(_dict(robustness.get("shifts")))
    for m in models.values():
        names += [n for n in _dict(_dict(m).get("shifts")) if n not in names]
    if not names:
        raise FigureDataError("robustness.json lists no shifts")
    return names


def _row(model: Mapping[str, Any], shift: str, k: int) -> Mapping[str, Any]:
    """Severity `k` of `shift` for one model; an empty dict when it is missing (a gap)."""
    rows = _dict(model.get("shifts")).get(shift)
    return _dict(rows[k]) if isinstance(rows, list) and k < len(rows) else {}


# The y axis spans at least 20 points: zoomed to a robust model's bars (all within 3 points) a
# one-image move (0.2 points of 490) looked like a large one
MIN_SPAN = 0.2


def _zoomed_range(values: list[float]) -> list[float]:
    """A y range around `values` with some padding, never below 0 and never narrower than
    `MIN_SPAN` (widened downwards): on a 0-1 axis every bar looked like 0.9 and the 5-point
    band was a hairline."""
    lo, hi = min(values), max(values)
    pad = max(0.02, 0.15 * (hi - lo))
    lo, hi = lo - pad, hi + pad
    return [max(0.0, min(lo, hi - MIN_SPAN)), hi]


def _level(robustness: Mapping[str, Any], shift: str, row: Mapping[str, Any]) -> str:
    """A row's strength as words, "Gaussian σ / longer side = 0.008", from the parameter
    robustness.json records for the shift; the bare level where it has none."""
    level = row.get("level")
    if not isinstance(level, int | float) or isinstance(level, bool):
        return "level ?"
    parameter = _dict(_dict(robustness.get("shifts")).get(shift)).get("parameter")
    return f"{parameter if isinstance(parameter, str) else 'level'} = {level:.3g}"


def _clean_accuracy(name: str, model: Any) -> float:
    if not isinstance(model, Mapping) or not isinstance(model.get("clean"), Mapping):
        raise FigureDataError(f"robustness of {name!r} has no 'clean' scores")
    clean = _num(model["clean"].get("accuracy"), f"{name} clean accuracy")
    if math.isnan(clean):
        raise FigureDataError(f"robustness of {name!r} has no clean accuracy")
    return clean


def clean_title(name: str, index: int, clean: float) -> str:
    """A panel's title: the model and, on a second line, "(— unshifted 0.949)" ("clean" read
    as the opposite of "not a clean test" beside it: a review, 2026-12-06), the dash in the
    clean line's colour; above the plot, where no bar reaches it (on one line, at a projector's
    911 px, the two panels' titles ran into each other)."""
    return (f"{model_label(name)}<br>(<span style='color:{model_color(name, index)}'><b>—</b>"
            f"</span> unshifted {clean:.3f})")


def robustness_figure(robustness: Mapping[str, Any]) -> go.Figure:
    """One panel per model: bars of accuracy per shift, one colour per severity; a solid line
    at the model's clean accuracy and a dotted one 5 points below it (the issue's target band).
    The shared y axis is zoomed to the bars and lines, so it does not start at 0. The clean
    accuracy is written in the panel's title, in the line's colour (`clean_title`): a label on
    the line was covered by the bars of shifts that score above it.

    Missing shifts or severities are gaps (NaN); a model without a clean accuracy, or values
    that are not numbers, raise FigureDataError.
    """
    models = _models(robustness)
    shifts = _shift_names(robustness, models)
    severities = robustness.get("severities")
    if not isinstance(severities, list) or not severities:
        severities = DEFAULT_SEVERITIES
    cleans = [_clean_accuracy(name, m) for name, m in models.items()]
    fig = make_subplots(rows=1, cols=len(models), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[clean_title(name, i, clean) for i, (name, clean)
                                        in enumerate(zip(models, cleans, strict=True))])
    labels = [s.replace("_", " ") for s in shifts]
    shown: list[float] = []  # every bar value and line, for an axis zoomed to the data
    for col, (i, (name, m)) in enumerate(enumerate(models.items()), start=1):
        clean = cleans[i]
        for k, sev in enumerate(severities):
            rows = [_row(m, s, k) for s in shifts]
            ys = [_num(r.get("accuracy"), f"{name} {s} {sev} accuracy")
                  for r, s in zip(rows, shifts, strict=True)]
            shown += [y for y in ys if not math.isnan(y)]
            custom = [[_level(robustness, s, r), _fmt(_num(r.get("tumor_sensitivity"),
                                                           f"{name} {s} {sev} sensitivity"))]
                      for r, s in zip(rows, shifts, strict=True)]
            fig.add_trace(go.Bar(
                x=labels, y=ys, name=str(sev), legendgroup=str(sev), showlegend=col == 1,
                marker_color=SEVERITY_COLORS[k % len(SEVERITY_COLORS)], customdata=custom,
                meta=table_meta(**{"strength": [c[0] for c in custom],
                                   "tumour sensitivity": [c[1] for c in custom]}),
                hovertemplate=(f"{model_label(name)} · %{{x}} ({sev}: %{{customdata[0]}})"
                               f"<br>accuracy %{{y:.3f}} (unshifted {clean:.3f})"
                               "<br>tumour sensitivity %{customdata[1]}<extra></extra>"),
            ), row=1, col=col)
        fig.add_hline(y=clean, line=dict(color=model_color(name, i), width=2), row=1, col=col)
        fig.add_hline(y=clean - 0.05, line=dict(color="gray", width=1, dash="dot"), row=1,
                      col=col)
        shown += [clean, clean - 0.05]
    fig.update_layout(barmode="group", height=400,
                      margin=dict(l=10, r=10, t=TOP_WITH_LEGEND, b=10),
                      legend=legend_above("severity"))
    fig.update_yaxes(range=_zoomed_range(shown))  # never narrower than MIN_SPAN
    # short: "accuracy on shifted test images" was cut to "uracy on…" at every window size
    fig.update_yaxes(title="accuracy (shifted)", col=1)
    fig.update_layout(meta=table_meta(x="shift"))
    return fig


# --------------------------------------------------------------------------- the section's words


def levels_table(robustness: Mapping[str, Any]) -> pd.DataFrame | None:
    """A row per shift: what it imitates, its parameter and the parameter's value at each
    severity, as robustness.json records them (the one place a run says how strong "severe"
    was); None when the file records no levels (older runs)."""
    severities = robustness.get("severities")
    if not isinstance(severities, list) or not severities:
        severities = DEFAULT_SEVERITIES
    rows = []
    for name, spec in _dict(robustness.get("shifts")).items():
        levels = _dict(spec).get("levels")
        if not isinstance(levels, list):
            continue
        rows.append({"shift": name.replace("_", " "),
                     "imitates": str(_dict(spec).get("description", "")),
                     "parameter": str(_dict(spec).get("parameter", "")),
                     **{str(sev): (f"{v:.3g}" if isinstance(v, int | float) else "?")
                        for sev, v in zip(severities, levels, strict=False)}})
    return pd.DataFrame(rows) if rows else None


def _noise(clean: float, n: int) -> float:
    """Half the width, in points, of the 95% Wilson interval of an accuracy on n images."""
    lo, hi = share_interval(round(clean * n), n)
    return 100 * (hi - lo) / 2


def _n_images(robustness: Mapping[str, Any]) -> int | None:
    n = robustness.get("n_images")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def noise_sentence(robustness: Mapping[str, Any]) -> str | None:
    """How much one image moves a bar, and how far a model's clean accuracy is itself uncertain
    (its 95% Wilson interval on these images): differences of that size are within noise."""
    n = _n_images(robustness)
    if n is None:
        return None
    models = _models(robustness)
    parts = [f"±{_noise(_clean_accuracy(m, models[m]), n):.1f} points for {model_label(m)}"
             for m in models]
    return (f"One test image = {100 / n:.2f} points of accuracy. The unshifted accuracy is itself "
            f"uncertain by about {', '.join(parts)} (95% Wilson interval on {n} images), so "
            "differences of about that size are within noise.")


def severe_drops_sentence(robustness: Mapping[str, Any], most: int = 4) -> str | None:
    """The largest accuracy drops at the strongest severity (the last one), beyond noise (the
    model's clean-accuracy interval, `noise_sentence`), largest first: "MobileNetV2, blur at
    Gaussian σ / longer side = 0.008: 0.949 → 0.767 (−18.2 points)". Without the image count
    every drop counts; None then when there is none."""
    models = _models(robustness)
    severities = robustness.get("severities")
    if not isinstance(severities, list) or not severities:
        severities = DEFAULT_SEVERITIES
    k, n = len(severities) - 1, _n_images(robustness)
    drops = []
    for name, m in models.items():
        clean = _clean_accuracy(name, m)
        noise = _noise(clean, n) / 100 if n else 0.0
        for shift in _shift_names(robustness, models):
            row = _row(m, shift, k)
            acc = _num(row.get("accuracy"), f"{name} {shift} {severities[k]} accuracy")
            if not math.isnan(acc) and clean - acc > noise:
                drops.append((clean - acc, name, shift, row, clean, acc))
    if not drops:
        return (f"At the {severities[k]} level no shift lowers accuracy by more than the noise "
                "above.") if n else None
    drops.sort(key=lambda d: -round(d[0], 9))  # equal drops (to rounding) in the file's order
    listed = [f"{model_label(name)}, {shift.replace('_', ' ')} at "
              f"{_level(robustness, shift, row)}: {clean:.3f} → {acc:.3f} "
              f"(−{100 * drop:.1f} points)" for drop, name, shift, row, clean, acc in drops[:most]]
    extra = len(drops) - most
    more = (f" {extra} more {'drop' if extra == 1 else 'drops'} there "
            f"{'exceeds' if extra == 1 else 'exceed'} the noise." if extra > 0 else "")
    return f"At the {severities[k]} level the largest drops are: {'; '.join(listed)}.{more}"
