"""What every figure shares: model and class colours, model and class names, `FigureDataError`,
and the checks that turn artifact values into numbers or text.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pipeline.names import class_label, display_name

MODEL_COLORS = {"custom_cnn": "#f97316", "mobilenetv2": "#2563eb"}
# Colour-blind friendly qualitative palette (Okabe-Ito) for classes.
CLASS_PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442"]
_FALLBACK_MODEL_COLORS = ["#16a34a", "#9333ea", "#dc2626", "#0891b2"]


# Top margin of a figure with panel titles and `legend_above`: titles, then the legend above them
TOP_WITH_LEGEND = 90


def legend_above(title: str | None = None) -> dict[str, Any]:
    """A horizontal legend above the panels (their titles between), for charts whose category
    labels turn on narrow screens: a legend below them was drawn over the labels, cutting the
    first panel's ("rician noi", "meningio" at 1024 px with the sidebar open). Use with a top
    margin of `TOP_WITH_LEGEND`."""
    return dict(orientation="h", yanchor="bottom", y=1.14, x=0, title=title)


class FigureDataError(ValueError):
    """An artifact dict does not have the shape a figure needs."""


def model_label(name: str) -> str:
    """Human name of a model folder name (`mobilenetv2` -> `MobileNetV2`)."""
    return display_name(name)


def class_name(label: str) -> str:
    """A class label as every page shows it (`no_tumor` -> `no tumour`): `names.class_label`."""
    return class_label(label)


def model_color(name: str, index: int = 0) -> str:
    """Stable colour of a model; unknown models get a fallback by position."""
    return MODEL_COLORS.get(name, _FALLBACK_MODEL_COLORS[index % len(_FALLBACK_MODEL_COLORS)])


def class_color(index: int) -> str:
    return CLASS_PALETTE[index % len(CLASS_PALETTE)]


def _num(value: Any, what: str) -> float:
    """A finite-or-NaN float from an artifact value; None becomes NaN (metric undefined)."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise FigureDataError(f"{what} should be a number, got {value!r}")
    return float(value)


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else (
        f"{value:.{digits}f}")
