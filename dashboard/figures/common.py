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


# The dashboard's two themes' page backgrounds (.streamlit/config.toml's [theme.light] and
# [theme.dark] backgroundColor; a test holds them equal): what a figure's marks must contrast
# with (WCAG's 3:1 for graphics), whichever theme the viewer has. The dark one was Streamlit's
# default (#0e1117), not the theme the dashboard sets.
THEME_BACKGROUNDS = {"light": "#ffffff", "dark": "#0b1220"}

# Text sizes of every figure (px). Streamlit's theme draws plotly's ticks, legends, bar labels
# and hover labels at 12 px: too small on a projector (a lecturer's review). `readable` sets
# them; `charts.chart` applies it to every figure a page draws.
FONT_SIZE = 15
TITLE_FONT_SIZE = 17

# Chart text (ticks, axis, legend and colour-bar titles, panel titles and labels, bar values
# outside their bars) per theme of the viewer, whose theme type the page is drawn for
# (`charts.chart`). Streamlit's own is its theme's grey: #808495 on the light theme, 3.72:1 on
# white, under WCAG AA's 4.5:1 for text (an accessibility review); the dark theme's is light
# (15:1 on its background) and follows a switch of theme at once, so it is kept. A mid grey, not
# the theme's near-black ink: switching the theme in the app menu does not redraw the page, and
# until the next rerun the light theme's chart text stands on the dark background, where this
# grey still reads (3.9:1) and near-black would vanish.
CHART_TEXT = {"light": "#6b7280"}

# Top margin of a figure with panel titles and `legend_above`: the legend (its title on a line of
# its own), then the panels' titles of up to two lines, at `FONT_SIZE`
TOP_WITH_LEGEND = 115


def readable(fig: Any, theme: str | None = None) -> Any:
    """`fig` (a plotly Figure, changed in place and returned) with the dashboard's text sizes:
    `FONT_SIZE` for ticks, axis titles, legends, bar and cell labels and hover labels,
    `TITLE_FONT_SIZE` for the figure's title; annotations (panel titles, labels) at least
    `FONT_SIZE`. Streamlit's theme sets each of these itself, so the base font alone is not
    enough. `theme`: the viewer's theme type ("light", "dark", None if unknown), whose
    `CHART_TEXT` colour the chart's text takes (`_text_color`)."""
    fig.update_layout(font_size=FONT_SIZE, legend_font_size=FONT_SIZE,
                      legend_title_font_size=FONT_SIZE, hoverlabel_font_size=FONT_SIZE,
                      title_font_size=TITLE_FONT_SIZE)
    fig.update_xaxes(tickfont_size=FONT_SIZE, title_font_size=FONT_SIZE)
    fig.update_yaxes(tickfont_size=FONT_SIZE, title_font_size=FONT_SIZE)
    for note in fig.layout.annotations:
        note.font.size = max(note.font.size or 0, FONT_SIZE)
    for trace in fig.data:
        if "colorbar" in trace:  # a heatmap's colour scale: its own tick labels
            trace.colorbar.tickfont.size = FONT_SIZE
        if trace.type == "heatmap":  # the cells' numbers (a confusion matrix's counts)
            trace.textfont.size = FONT_SIZE
    color = CHART_TEXT.get(theme or "")
    return _text_color(fig, color) if color else fig


def _text_color(fig: Any, color: str) -> Any:
    """`fig` (changed in place and returned) with its text on the page's background in `color`:
    every place Streamlit's theme colours itself, so the base font's colour is not enough. Text
    a builder coloured keeps its colour, and so does text on a mark (inside a bar, in a
    heatmap's cell), whose colour plotly picks against the mark's."""
    fig.update_xaxes(tickfont_color=color, title_font_color=color)
    fig.update_yaxes(tickfont_color=color, title_font_color=color)
    fig.update_layout(legend_title_font_color=color)
    for note in fig.layout.annotations:
        if note.font.color is None:
            note.font.color = color
    for trace in fig.data:
        if "colorbar" in trace:
            trace.colorbar.tickfont.color = color
            trace.colorbar.title.font.color = color
        if (trace.type == "bar" and trace.outsidetextfont.color is None
                and trace.textfont.color is None):
            trace.outsidetextfont.color = color
    return fig


# Height (px) of the strip every chart keeps empty at its top for plotly's modebar (one
# "Download plot as a PNG" button, 26 px tall at the top-right corner: `charts.chart_config`).
# Even that one button covered the end of half-width charts' panel titles at 911 px.
MODEBAR_ROOM = 28


def modebar_room(fig: Any) -> Any:
    """`fig` (changed in place and returned) `MODEBAR_ROOM` px taller, the room added to its top
    margin, so that nothing is drawn where the modebar appears: panel titles and the plot move
    down with the margin, and a legend or title placed from the figure's top edge
    (`legend_above`) is moved below the strip. A figure without a set height (plotly's 450 px)
    gets one."""
    height = fig.layout.height or 450
    fig.update_layout(height=height + MODEBAR_ROOM,
                      margin_t=(fig.layout.margin.t or 0) + MODEBAR_ROOM)
    for part in (fig.layout.legend, fig.layout.title):
        if part.yref == "container" and part.y is not None:
            # y is a share of the container: the same distance from the top edge plus the strip
            part.y = 1 - ((1 - part.y) * height + MODEBAR_ROOM) / (height + MODEBAR_ROOM)
    return fig


def legend_above(title: str | None = None) -> dict[str, Any]:
    """A horizontal legend above the panels (their titles between), for charts whose category
    labels turn on narrow screens: a legend below them was drawn over the labels, cutting the
    first panel's ("rician noi", "meningio" at 1024 px with the sidebar open). Use with a top
    margin of `TOP_WITH_LEGEND`. Placed from the figure's top edge, not the plot's: at a share
    of the plot's height above it, it met two-line panel titles at the projector's font size."""
    return dict(orientation="h", yref="container", yanchor="top", y=1, x=0, title=title)


def legend_below() -> dict[str, Any]:
    """A horizontal legend at the bottom of the figure, below the x axis' title, the plot
    shrinking to make room: a legend at a fixed share of the plot's height below it (y=-0.2)
    ran into the axis' title and tick labels once the text was `FONT_SIZE`."""
    return dict(orientation="h", yref="container", yanchor="bottom", y=0, x=0)


# A short label on a line across a panel of x 0-1, y 0-1 (the faithfulness curves' "chance
# (1/4)"), in data units: its 12 characters at `FONT_SIZE` take about a quarter of a half-page
# panel's width at 1280 px and a third at 911 px, and a tenth of its height.
LINE_LABEL_SPAN = (0.35, 0.1)
# and the strip along the line where a curve passes between the line and the label's letters
# (the box's padding and the ascent above them: about 4 px of a half-page panel's 230)
LINE_LABEL_GAP = 0.02
# where it may go along its line, the first free one taken: top right is where it always was
LABEL_CORNERS = ("top right", "top left", "bottom left", "bottom right")


def label_corner(curves: list[tuple[list[float], list[float]]], y: float) -> str:
    """Where a horizontal line at `y` keeps its label (`LINE_LABEL_SPAN`) clear of `curves`
    ((xs, ys) each, x in 0-1), as plotly's `annotation_position`: the first of `LABEL_CORNERS`
    that no curve passes through, else the one the fewest curve points fall in. At "top right"
    the deletion curves, which fall to chance as pixels go, ran through "chance (1/4)" (a
    review at 1280 px)."""
    width, height = LINE_LABEL_SPAN

    def hits(corner: str) -> int:
        side, end = corner.split()
        xs = np.linspace(1 - width, 1, 50) if end == "right" else np.linspace(0, width, 50)
        low, high = ((y + LINE_LABEL_GAP, y + height) if side == "top"
                     else (y - height, y - LINE_LABEL_GAP))
        return sum(int(np.sum((ys > low) & (ys < high)))
                   for ys in (np.interp(xs, cx, cy) for cx, cy in curves))

    return min(LABEL_CORNERS, key=hits)  # the first of equals: top right when all are free


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


def _luminance(color: str) -> float:
    """WCAG relative luminance of a "#rrggbb" colour."""
    def channel(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(int(color[k:k + 2], 16)) for k in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two "#rrggbb" colours (1 to 21; text wants 4.5 or more)."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _lab(color: str) -> tuple[float, float, float]:
    """CIELAB (D65) of a "#rrggbb" colour."""
    def channel(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(int(color[k:k + 2], 16)) for k in (1, 3, 5))
    xyz = ((0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047, 0.2126 * r + 0.7152 * g + 0.0722 * b,
           (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883)
    fx, fy, fz = (t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116 for t in xyz)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def color_difference(a: str, b: str) -> float:
    """How far apart two "#rrggbb" colours look: CIE76 ΔE, the distance in CIELAB (about 2.3 is
    just noticeable; the robustness chart's amber and the custom CNN's orange were 15 apart)."""
    return math.dist(_lab(a), _lab(b))


def text_color_on(background: str) -> str:
    """Black or white, whichever contrasts more with `background`."""
    return max(("#000000", "#ffffff"), key=lambda c: contrast(c, background))
