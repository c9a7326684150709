"""Figures and tables of explanation quality (the Explanation-quality page): localisation,
the randomised-weights sanity check and the shortcut alarm, the summary and the per-image
results, from each model's explanations.json (faithfulness: `faithfulness`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.figures.common import (
    FigureDataError,
    _fmt,
    _num,
    class_name,
    model_color,
    model_label,
    text_color_on,
)
from dashboard.figures.table import table_meta
from dashboard.layer_names import method_layer_option
from pipeline.explain import METHOD_LABELS  # the registry's labels; no TensorFlow import
from pipeline.explain.alarm import OUTSIDE_HEAD_MESSAGE

# the pointing game's 95 % interval whiskers: a mid grey that reads on Streamlit's light (white)
# and dark (#0e1117) backgrounds alike, at least 3:1 on each; the former #374151 was nearly
# invisible on the dark one. LOCALISATION_CAPTION names it.
INTERVAL_COLOR = "#6b7280"
INTERVAL_WORDS = "grey whiskers"
# the two baselines' bars: both grey, the centre's hatched so they differ without colour
REFERENCE_COLOR = "#9ca3af"
RANDOM_WORDS = "random location (box area share)"
CENTRE_WORDS = "centre of head"
CENTRE_PATTERN = "/"
LOCALISATION_CAPTION = (
    "Does the heatmap point at the tumour? Pointing game: share of images whose hottest pixel "
    "lies inside the tumour box; energy: share of the heatmap's total weight inside it (it "
    "changes when the map's contrast is drawn differently); hottest region: of the heatmap's "
    "hottest pixels, as many as the box covers, the share inside it (it does not). Boxes are "
    "rectangles around the tumour, so some healthy tissue counts as inside. Plain grey bars, "
    f"{RANDOM_WORDS}: what a heatmap placed at random would score. Hatched grey bar, "
    f"{CENTRE_WORDS} (pointing game): a map whose peak is always at the centre of the head; "
    "it knows nothing of the image beyond the head's outline, so a heatmap should beat it "
    "clearly. On the heatmap bars, " + INTERVAL_WORDS + ": the 95% interval of the pointing "
    "game on this many images.")
# The sanity check's reading line: |rank correlation| below it reads "the map depends on what
# the model learned". Adebayo et al. (2018) give no number; 0.3 is this project's rule of
# thumb, Cohen's (1988) conventional boundary between a small and a medium correlation.
SANITY_READING_LIMIT = 0.3


def _pct(value: float) -> str:
    """A share as the percent axis reads it: "87.5%", "0%"; "n/a" when undefined."""
    if math.isnan(value):
        return "n/a"
    text = f"{value:.1%}"
    return text.replace(".0%", "%")


def wrap_label(label: str) -> str:
    """A tick label broken at its spaces (plotly's line break), so it needs no rotation."""
    return label.replace(" ", "<br>")


def method_label(method: str) -> str:
    """A method as the Predict page names it ("gradcam++" -> "Grad-CAM++"); unknown ids as is."""
    return METHOD_LABELS.get(method, method)


def quality_summary(explanations: Mapping[str, Mapping[str, Any]],
                    recorded_layers: Mapping[str, str | None]) -> pd.DataFrame:
    """The page's table: per model (column) the explanation method and layer as the Predict
    page names them, the technical layer name in brackets, and the counts behind the figures.

    `recorded_layers` holds each model's Grad-CAM layer from the manifest, which is called
    "last conv block" like on the Predict page.
    """
    def layer(name: str, e: Mapping[str, Any]) -> str:
        raw = e.get("layer")
        if not raw:
            return "-"
        return method_layer_option(str(e.get("method", "")), str(raw), recorded_layers.get(name))

    return pd.DataFrame({model_label(m): {
        "method": method_label(str(e.get("method", "?"))),
        "layer": layer(m, e),
        "images": e.get("n", "?"), "with a tumour mask or box": e.get("n_localisation", "?"),
        # faithfulness and sanity cost hundreds of model calls per image: measured on a sample
        "faithfulness and sanity on": e.get("n_faithfulness", e.get("n", "?")),
        "masks from": short_folder(e.get("masks_dir"), e.get("data_dir")),
        "explained class": "true class" if e.get("target_mode", "true") == "true" else
                           str(e.get("target_mode")),
        OUTSIDE_HEAD_MESSAGE: (
            f"{e['n_outside_head_flagged']} ({e['outside_head_alarm_rate']:.0%})"
            if isinstance(e.get("outside_head_alarm_rate"), (int, float)) else "not measured"),
        # older runs did not count empty maps: "not measured", not 0
        "empty heatmaps (no evidence shown)": e.get("n_empty_heatmaps", "not measured"),
        # the explained images are a sample (boxed ones first), not the test split
        ACCURACY_ROW: (f"{e['accuracy']:.1%} of {e.get('n', '?')}"
                       if isinstance(e.get("accuracy"), float) else "?"),
    } for m, e in explanations.items()}).astype(str)


# short enough for the table's first column at 1280 px ("…images (nc" was cut there: a
# review); the caption under the table says it is not the run's test accuracy
ACCURACY_ROW = "accuracy on the explained images"


def short_folder(folder: str | None, data_dir: str | None) -> str:
    """A recorded folder as the summary shows it: from the dataset's parent folder on
    ("…/brain-tumor-mri-sartaj-boxes/masks"), when it lies there; the full path was cut off in
    the table at 1280 px. "-" for none."""
    if not folder:
        return "-"
    if data_dir:
        parent = PurePosixPath(data_dir.replace("\\", "/")).parent
        path = PurePosixPath(folder.replace("\\", "/"))
        if str(parent) not in ("", ".") and path.is_relative_to(parent):
            return "…/" + path.relative_to(parent).as_posix()
    return folder


# explanations.json's per-image row keys in the order and words the page shows them: the image
# and its classes first (they were the 22nd column, off-screen), then localisation, the shortcut
# alarm, faithfulness and the technical rest. Keys not listed follow, underscores as spaces.
ROW_COLUMNS = {
    "path": "image",
    "label": "true class",
    "predicted": "answer",
    "correct": "answer correct",
    "target": "explained class",
    "p_target": "probability of the explained class",
    "pointing_hit": "pointing game hit",
    "centre_hit": "centre of head in mask",
    "energy_in_mask": "energy in tumour mask",
    "top_in_mask": "hottest tumour-sized region in mask",
    "mask_fraction": "tumour mask's share of the image",
    "outside_head_flag": "shortcut alarm",
    "top_outside_head": "heat outside head (hottest 10%)",
    "energy_outside_head": "energy outside head",
    "empty_heatmap": "empty heatmap",
    "faithfulness_scored": "faithfulness scored",
    "deletion_auc": "deletion AUC",
    "deletion_auc_random": "deletion AUC, random heatmap",
    "insertion_auc": "insertion AUC",
    "insertion_auc_random": "insertion AUC, random heatmap",
    "road_morf_auc": "ROAD AUC, most relevant first",
    "road_lerf_auc": "ROAD AUC, least relevant first",
    "sanity_rank_correlation": "correlation with randomised weights' heatmap",
    "peak": "hottest point (y, x as shares)",
    "target_rule": "explained class chosen by",
    "image_size": "image size (pixels)",
}


# the row keys measured against the tumour's mask, whose header names what the mask is
REGION_KEYS = ("centre_hit", "energy_in_mask", "top_in_mask", "mask_fraction")


def per_image_table(rows: list[Mapping[str, Any]], class_names: list[str],
                    region: str = "mask") -> pd.DataFrame:
    """explanations.json's per-image `rows` as the page's table: the image and its true class
    first, classes as people read them ("no tumour", not index 2), plain headers
    (`ROW_COLUMNS`). Every key of the rows is kept, renamed; an index outside `class_names`
    stays a number, so nothing is hidden. `region`: what the masks are, "box" for tumour boxes
    (`runinfo.masks_are_boxes`: the real runs'), "mask" for the tumour's own pixels."""
    def header(key: str) -> str:
        words = ROW_COLUMNS.get(key, key.replace("_", " "))
        return words.replace("mask", region) if key in REGION_KEYS else words

    def shown(key: str, value: Any) -> Any:
        if key == "label" and isinstance(value, str):  # the folder's name, "no_tumor"
            return class_name(value)
        if (key in ("target", "predicted") and isinstance(value, int)
                and not isinstance(value, bool) and 0 <= value < len(class_names)):
            return class_name(class_names[value])
        return value

    keys = [k for k in ROW_COLUMNS if any(k in r for r in rows)]
    keys += list(dict.fromkeys(k for r in rows for k in r if k not in ROW_COLUMNS))
    return pd.DataFrame([[shown(k, r.get(k)) for k in keys] for r in rows],
                        columns=[header(k) for k in keys])


def _expl_value(expl: Mapping[str, Any], key: str, name: str) -> float:
    return _num(expl.get(key), f"{name} {key}")


def localisation_figure(explanations: Mapping[str, Mapping[str, Any]]) -> go.Figure:
    """Pointing game, energy inside the tumour mask and, where every model's explanations.json
    records it, the hottest mask-sized region inside the mask, each beside its chance level.

    Chance = what a heatmap placed at random would score (the mean mask area); a model is only
    localising if its bar clearly exceeds its grey one. The pointing game also has, where the
    file records `pointing_game_centre` (explained since 2026-12-05), a hatched grey bar: a
    map always peaking at the head's centre. Pointing game carries its 95 % interval
    (`pointing_game_ci`) where the file has one. The third panel exists because energy
    depends on the map's contrast curve and the others only on the order of its pixels; runs
    explained before it was measured show two panels.
    """
    keys = ["pointing_game", "energy_in_mask"]
    # two short lines each: on one line, three panels' titles overprinted one another in a
    # narrow window
    titles = ["Pointing game: peak<br>inside the tumour box",
              "Heatmap energy inside<br>the tumour box"]
    # key presence, not value: a model without masks has None (drawn as missing)
    if explanations and all("top_in_mask" in e for e in explanations.values()):
        keys.append("top_in_mask")
        titles.append("Hottest box-sized region<br>inside the tumour box")
    fig = _paired_bars(explanations, tuple(keys), "_chance", "random<br>location", titles,
                       second={"pointing_game": ("_centre", "centre<br>of head")},
                       first_row_alone=len(keys) == 3)
    # Scores are often a few percent: scale to the data (from zero) so they stay readable,
    # with room above the tallest bar for its label (it ran into the panel's title)
    for axis, top in _bar_tops(fig).items():
        fig.update_layout({axis: dict(range=[0, top * 1.18])})
    fig.update_layout(height=760 if len(keys) == 3 else 360,
                      margin=dict(l=10, r=10, t=80, b=10), meta=table_meta(x="bar", y="share"))
    return fig


def _bar_tops(fig: go.Figure) -> dict[str, float]:
    """Per y-axis of `fig` ("yaxis", "yaxis2", ...), the highest bar or whisker end (> 0)."""
    tops: dict[str, float] = {}
    for trace in fig.data:
        ys = [float(y) for y in (trace.y or ()) if y is not None and math.isfinite(float(y))]
        if trace.error_y is not None and trace.error_y.array is not None:
            ys += [y + float(e) for y, e in zip(ys, trace.error_y.array, strict=False)]
        axis = "yaxis" + (trace.yaxis or "y")[1:]
        if ys:
            tops[axis] = max(tops.get(axis, 0.0), *ys)
    return {axis: top for axis, top in tops.items() if top > 0}


def _paired_bars(explanations: Mapping[str, Mapping[str, Any]], keys: tuple[str, ...],
                 suffix: str, reference: str, titles: list[str],
                 second: Mapping[str, tuple[str, str]] | None = None,
                 first_row_alone: bool = False) -> go.Figure:
    """One panel per key: per model its score and, in grey, the `key + suffix` reference; a
    `key + "_ci"` interval in the file adds a whisker to the model's bar (traces after the bars).

    `second` maps a key to (suffix, label) of a second reference, a hatched grey bar after the
    first, for the models whose file has that key (older files: no bar); its panel is wider.
    `first_row_alone`: the first panel over the full width, the others in a row below (three
    panels in a row turned every bar's label on its side at laptop widths).
    """
    second = second or {}
    extra = {key: [n for n, e in explanations.items() if key + second[key][0] in e]
             for key in keys if key in second}
    widths = [1.5 if extra.get(key) else 1.0 for key in keys]
    if first_row_alone:
        below = len(keys) - 1
        # room between the rows for the first row's turned labels and the second's two-line
        # titles at the projector's font size (at 0.22 they overprinted at 911 px)
        fig = make_subplots(rows=2, cols=below, subplot_titles=titles, vertical_spacing=0.3,
                            horizontal_spacing=0.1,
                            specs=[[{"colspan": below}, *[None] * (below - 1)],
                                   [{} for _ in range(below)]])
        places = [(1, 1), *[(2, c) for c in range(1, below + 1)]]
    else:
        fig = make_subplots(rows=1, cols=len(keys),
                            horizontal_spacing=0.1 if len(keys) < 3 else 0.07,
                            subplot_titles=titles,
                            column_widths=[w / sum(widths) for w in widths])
        places = [(1, c) for c in range(1, len(keys) + 1)]
    whiskers = []
    for col, key in enumerate(keys, start=1):
        for i, (name, e) in enumerate(explanations.items()):
            ys = [_expl_value(e, key, name), _expl_value(e, key + suffix, name)]
            xs = [f"{model_label(name)}<br>heatmap", f"{model_label(name)}<br>{reference}"]
            if name in extra.get(key, ()):
                ys.append(_expl_value(e, key + second[key][0], name))
                xs.append(f"{model_label(name)}<br>{second[key][1]}")
            ci = _interval(e.get(key + "_ci"), f"{name} {key}_ci")
            colors = [model_color(name, i)] + [REFERENCE_COLOR] * (len(ys) - 1)
            fig.add_trace(go.Bar(
                x=xs, y=ys, marker_color=colors, showlegend=False,
                marker_pattern_shape=["", "", CENTRE_PATTERN][:len(ys)],
                text=[_fmt(y) for y in ys],
                # a whisker would cross a label above the bar: the label goes inside it, in
                # black or white, whichever reads better on the bar (the theme's dark grey
                # was hard to read on orange)
                textposition=["inside" if ci else "outside"] + ["outside"] * (len(ys) - 1),
                insidetextanchor="middle",
                insidetextfont=dict(color=[text_color_on(c) for c in colors]),
                hovertemplate="%{x}: %{y:.3f}<extra></extra>", cliponaxis=False,
            ), row=places[col - 1][0], col=places[col - 1][1])
            if ci:
                whiskers.append((places[col - 1], xs[0], ys[0], ci))
    for (row, col), x, y, (lo, hi) in whiskers:
        fig.add_trace(go.Scatter(
            x=[x], y=[y], mode="markers", marker=dict(size=1, opacity=0), showlegend=False,
            error_y=dict(type="data", symmetric=False, array=[hi - y], arrayminus=[y - lo],
                         color=INTERVAL_COLOR, thickness=2, width=6),
            hovertemplate=f"95% interval {lo:.2f}-{hi:.2f}<extra></extra>",
        ), row=row, col=col)
    return fig


def _interval(ci: Any, what: str) -> tuple[float, float] | None:
    """A `[lo, hi]` interval from an artifact, or None when the file has none (older runs)."""
    if ci is None:
        return None
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        raise FigureDataError(f"{what} should be [low, high], got {ci!r}")
    lo, hi = (_num(v, what) for v in ci)
    return lo, hi


def sanity_figure(explanations: Mapping[str, Mapping[str, Any]]) -> go.Figure:
    """Rank correlation between heatmaps of the trained and a weight-randomised model."""
    names = list(explanations)
    ys = [_expl_value(explanations[n], "sanity_rank_correlation", n) for n in names]
    fig = go.Figure(go.Bar(
        x=[model_label(n) for n in names], y=ys,
        marker_color=[model_color(n, i) for i, n in enumerate(names)],
        text=[_fmt(y) for y in ys], textposition="outside",
        hovertemplate="%{x}: %{y:.3f}<extra></extra>",
    ))
    fig.add_hline(y=0, line=dict(color="gray", width=1))
    # the reading band: inside it the map depends on the learned weights (a rule of thumb)
    for y in (-SANITY_READING_LIMIT, SANITY_READING_LIMIT):
        fig.add_hline(y=y, line=dict(color=INTERVAL_COLOR, dash="dash", width=1))
    fig.update_layout(height=300, yaxis=dict(range=[-1.05, 1.12], title="Spearman correlation"),
                      margin=dict(l=10, r=10, t=30, b=10), meta=table_meta(x="model"))
    return fig


def shortcut_figure(explanations: Mapping[str, Mapping[str, Any]]) -> go.Figure:
    """Per model, the share of images flagged "evidence mostly outside the head" and the mean
    share of heatmap energy outside the head."""
    names = list(explanations)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=[
        # the rule itself is in the page's caption and each run's explanations.json (this said
        # "> half the energy", the former rule, after the rule changed)
        "Images flagged by<br>the shortcut alarm",
        "Mean heatmap energy<br>outside the head"])
    for col, key in ((1, "outside_head_alarm_rate"), (2, "energy_outside_head")):
        ys = [_expl_value(explanations[n], key, n) for n in names]
        fig.add_trace(go.Bar(
            # names wrapped at spaces and never rotated: rotated, they overlapped each other
            x=[wrap_label(model_label(n)) for n in names], y=ys,
            marker_color=[model_color(n, i) for i, n in enumerate(names)],
            # labels in percent like the axis (they were fractions: 0.875 on a % axis)
            text=[_pct(y) for y in ys], textposition="outside", showlegend=False,
            hovertemplate="%{x}: %{y:.1%}<extra></extra>", cliponaxis=False,
        ), row=1, col=col)
    fig.update_yaxes(range=[0, 1.12], tickformat=".0%")
    fig.update_xaxes(tickangle=0)
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=50, b=10),
                      meta=table_meta(x="model", y="share"))
    return fig
