"""The heatmaps' colour scale as a small picture with numbers (Predict and Error-analysis cards).

A picture, not a plotly colour bar: the cards are where speed matters (see `predictions`), and
the cards count one picture for it (so does the benchmark's page watcher). Every heatmap is min-max
normalised per image, so 0 is the map's own lowest relevance and 1 its highest: the numbers
compare places within one map, never two maps.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.explain.render import HEATMAP_LOW_HIGH, heatmap_to_rgb
from pipeline.names import sides_words

LEGEND_TICKS = (0.0, 0.5, 1.0)
# What a clinician misread (review, 2026-12-05): a yellow spot as "something found" (every map
# is stretched to its own maximum, even for a class at 0 %), and "right" as the patient's right.


def legend_caption(radiological: bool = False) -> str:
    """The colour scale's caption on a card: what the colours mean, how the hottest place is
    named, and which side is the patient's (`names.sides_words`: radiological for a NIfTI
    slice, whose file says so; the picture's own otherwise)."""
    return (f"Heatmap colour: relevance for the explained class, from 0 (low, "
            f"{HEATMAP_LOW_HIGH[0]}) to 1 (high, {HEATMAP_LOW_HIGH[1]}), normalised per image: "
            "every map has a brightest spot, even where the evidence is weak. It is not a "
            "lesion map. Where it is hottest is named by thirds of the picture (\"upper left\", "
            "\"centre\"), so a peak near a third's edge can get either name. "
            + sides_words(radiological))


LEGEND_CAPTION = legend_caption()  # a picture whose patient's sides are not known
# the width the cards show it at, about one picture's (they stretch it over a column that
# wide); drawn at twice that, so its numbers stay sharp on high-density screens
LEGEND_WIDTH = 300
# ticks and numbers in a mid grey on a transparent background: Streamlit's light theme is
# white and its dark one #0e1117, and this grey reads on both (4.5:1 on white, 4.2:1 on the
# dark one: no grey reaches 4.5:1 on both); the picture was a white box on the dark theme
LEGEND_INK = (118, 118, 118)
# heights at LEGEND_WIDTH: strip, tick, gap, font (13 px numbers were about 8 px tall on a
# projector at 150 %: a lecturer's review)
_STRIP, _TICK, _GAP, _FONT = 12, 4, 2, 16


def tick_label(value: float) -> str:
    return f"{value:g}"


def colour_legend(width: int = 2 * LEGEND_WIDTH, ticks: tuple[float, ...] = LEGEND_TICKS
                  ) -> np.ndarray:
    """(H, width, 4) uint8 RGBA, transparent around the strip: the colour strip, low (left) to
    high (right), with a tick and its number under it at each of `ticks` (fractions of the
    scale), in `LEGEND_INK`."""
    unit = width / LEGEND_WIDTH
    strip_h, tick_h, gap, size = (round(v * unit) for v in (_STRIP, _TICK, _GAP, _FONT))
    font = ImageFont.load_default(size=size)  # Pillow's own font: no system font needed
    margin = _margin(width)
    strip = heatmap_to_rgb(np.tile(np.linspace(0, 1, width - 2 * margin, dtype=np.float32),
                                   (strip_h, 1)))
    # transparent pixels of the ink's own colour: anti-aliased text edges fade in alpha only,
    # with no dark fringe from blending into transparent black
    canvas = Image.new("RGBA", (width, strip_h + tick_h + gap + round(1.25 * size)),
                       (*LEGEND_INK, 0))
    canvas.paste(Image.fromarray(strip).convert("RGBA"), (margin, 0))
    draw = ImageDraw.Draw(canvas)
    # an outline in the ink: the strip's dark purple end vanished into the dark theme
    draw.rectangle([(margin, 0), (width - margin - 1, strip_h - 1)], outline=LEGEND_INK,
                   width=max(1, round(unit)))
    for value in ticks:
        x = tick_x(value, width)
        draw.line([(x, strip_h), (x, strip_h + tick_h - 1)], fill=LEGEND_INK,
                  width=max(1, round(unit)))
        label = tick_label(value)
        w = draw.textlength(label, font=font)
        left = min(max(x - w / 2, 0), width - w)
        draw.text((left, strip_h + tick_h + gap), label, fill=LEGEND_INK, font=font)
    return np.asarray(canvas)


def _margin(width: int) -> int:
    """Room left of and right of the strip for half a number."""
    return round(12 * width / LEGEND_WIDTH)


def tick_x(value: float, width: int = 2 * LEGEND_WIDTH) -> int:
    """The column of a legend `width` pixels wide where `value` (0..1) sits on the strip."""
    margin = _margin(width)
    return margin + round(value * (width - 2 * margin - 1))
