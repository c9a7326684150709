"""The heatmaps' colour scale as a small picture with numbers (Predict and Error-analysis cards).

A picture, not a plotly colour bar: the cards are where speed matters (see `predictions`), and
the cards count one picture for it (so does the benchmark's page watcher). Every heatmap is min-max
normalised per image, so 0 is the map's own lowest relevance and 1 its highest: the numbers
compare places within one map, never two maps.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.explain.render import heatmap_to_rgb

LEGEND_TICKS = (0.0, 0.5, 1.0)
LEGEND_CAPTION = ("Heatmap colour: relevance for the explained class, from 0 (low, blue) to "
                  "1 (high, red), normalised per image")
# the width the cards show it at, about one picture's (they stretch it over a column that
# wide); drawn at twice that, so its numbers stay sharp on high-density screens
LEGEND_WIDTH = 300
_TEXT = (49, 51, 63)  # Streamlit's text colour
_STRIP, _TICK, _GAP, _FONT = 12, 4, 2, 13  # heights at LEGEND_WIDTH: strip, tick, gap, font


def tick_label(value: float) -> str:
    return f"{value:g}"


def colour_legend(width: int = 2 * LEGEND_WIDTH, ticks: tuple[float, ...] = LEGEND_TICKS
                  ) -> np.ndarray:
    """(H, width, 3) uint8 RGB on white: the colour strip, low (left) to high (right), with a
    tick and its number under it at each of `ticks` (fractions of the scale)."""
    unit = width / LEGEND_WIDTH
    strip_h, tick_h, gap, size = (round(v * unit) for v in (_STRIP, _TICK, _GAP, _FONT))
    font = ImageFont.load_default(size=size)  # Pillow's own font: no system font needed
    margin = _margin(width)
    strip = heatmap_to_rgb(np.tile(np.linspace(0, 1, width - 2 * margin, dtype=np.float32),
                                   (strip_h, 1)))
    canvas = Image.new("RGB", (width, strip_h + tick_h + gap + round(1.25 * size)), "white")
    canvas.paste(Image.fromarray(strip), (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for value in ticks:
        x = tick_x(value, width)
        draw.line([(x, strip_h), (x, strip_h + tick_h - 1)], fill=_TEXT, width=max(1, round(unit)))
        label = tick_label(value)
        w = draw.textlength(label, font=font)
        left = min(max(x - w / 2, 0), width - w)
        draw.text((left, strip_h + tick_h + gap), label, fill=_TEXT, font=font)
    return np.asarray(canvas)


def _margin(width: int) -> int:
    """Room left of and right of the strip for half a number."""
    return round(12 * width / LEGEND_WIDTH)


def tick_x(value: float, width: int = 2 * LEGEND_WIDTH) -> int:
    """The column of a legend `width` pixels wide where `value` (0..1) sits on the strip."""
    margin = _margin(width)
    return margin + round(value * (width - 2 * margin - 1))
