"""One image's class probabilities as a small table (Predict and Error-analysis cards).

A markdown table, not a plotly chart: the cards are where speed matters most, and the first
plotly chart a browser session draws loads plotly's script (measured with `bench
--dashboard-only`: the first upload took 1.78 s with a chart per card, 1.39 s without).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from dashboard.figures.common import FigureDataError, class_name, model_label
from pipeline.names import percent


def probability_table(probs: Mapping[str, Sequence[float]], class_names: Sequence[str],
                      by_class: bool = False) -> str:
    """Markdown: one row per model, one column per class, each model's top class in bold
    (wide and two rows high: it spans the card above the images). `by_class`: one row per
    class, one column per model instead, narrow enough for a card half the page wide."""
    cells: dict[str, list[str]] = {}
    for name, p in probs.items():
        values = np.asarray(p, dtype=float).ravel()
        if values.shape != (len(class_names),):
            raise FigureDataError(f"{name} gives {values.shape[0]} probabilities for "
                                  f"{len(class_names)} classes {list(class_names)}")
        top = int(np.argmax(values))
        cells[model_label(name)] = [f"**{percent(v)}**" if k == top else percent(v)
                                    for k, v in enumerate(values)]
    shown = [class_name(c) for c in class_names]
    if by_class:
        rows = [f"| {c} | " + " | ".join(col[k] for col in cells.values()) + " |"
                for k, c in enumerate(shown)]
        header = "| probability | " + " | ".join(cells) + " |"
        return "\n".join([header, "|---|" + "---:|" * len(cells), *rows])
    rows = [f"| {m} | " + " | ".join(col) + " |" for m, col in cells.items()]
    header = "| probability | " + " | ".join(shown) + " |"
    return "\n".join([header, "|---|" + "---:|" * len(class_names), *rows])
