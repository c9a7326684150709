"""A chart's numbers as a table (`figure_table`), drawn under every chart (`charts.chart`).

A reader who cannot see a chart (a screen reader reads nothing of a plotly figure's picture)
or who wants its exact values gets the same numbers as plain rows: one per point of a line,
bar or marker, one per cell of a heatmap, each named by its panel (a subplot's title) and its
series (the trace's legend name). Generic over the builders' figures, so a new chart gets its
table without code of its own; an accessibility review found the dashboard's charts had none.
"""

from __future__ import annotations

import html
import re
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

_TAG = re.compile(r"<[^>]+>")
TABLE_META = "table"  # the key of a figure's or trace's `meta` the table reads (`table_meta`)


def table_meta(**columns: Any) -> dict[str, Any]:
    """A plotly `meta` for the chart's numbers: on a trace, columns of per-point values shown
    only in its hover or bar text (`support=[...]`: a review found per-class support, images
    per reliability bin and "k of n" missing from the tables); on the layout, names for its
    untitled axes (`x="class"`), whose columns were "x" and "y"."""
    return {TABLE_META: columns}


def _meta(obj: Any) -> dict[str, Any]:
    """The `table_meta` columns of a trace or layout ({} without them)."""
    meta = getattr(obj, "meta", None)
    found = meta.get(TABLE_META) if isinstance(meta, dict) else None
    return found if isinstance(found, dict) else {}


def plain(text: Any) -> str:
    """A plotly label as plain words: its HTML tags (`<br>`, `<b>`, a coloured span) dropped,
    entities decoded, spaces collapsed, a legend's line sample ("—") left out."""
    if text is None:
        return ""
    words = html.unescape(_TAG.sub(" ", str(text).replace("<br>", " "))).split()
    # a lone dash is a legend's line sample drawn in text ("(— unshifted 0.888)"), not a word
    return " ".join(w for w in words if w != "—").replace("( ", "(")


def _axis_title(fig: go.Figure, axis: str) -> str:
    """The title of the figure's first `axis` ("x" or "y") axis that has one, as plain words."""
    for name in sorted(k for k in fig.layout.to_plotly_json() if k.startswith(f"{axis}axis")):
        title = plain(getattr(fig.layout[name].title, "text", None))
        if title:
            return title
    return ""


def _panel(fig: go.Figure, trace: Any) -> str:
    """The subplot title over `trace`'s axes (make_subplots puts each title, in paper
    coordinates, at the middle of its column's domain and the top of its row's); ""
    for a figure of one panel."""
    xa = "xaxis" + str(getattr(trace, "xaxis", None) or "x")[1:]
    ya = "yaxis" + str(getattr(trace, "yaxis", None) or "y")[1:]
    try:
        x0, x1 = fig.layout[xa].domain or (0, 1)
        y0, y1 = fig.layout[ya].domain or (0, 1)
    except (KeyError, ValueError):
        return ""
    if (x0, x1, y0, y1) == (0, 1, 0, 1):
        return ""
    for ann in fig.layout.annotations or ():
        if (ann.xref == "paper" and ann.x is not None and ann.y is not None
                and abs(ann.x - (x0 + x1) / 2) < 1e-6 and abs(ann.y - y1) < 0.05):
            return plain(ann.text)
    return ""


def _values(seq: Any, n: int) -> list[Any]:
    """`seq` as a list of `n` values (None where it has none), labels as plain words (a
    category "Custom CNN<br>heatmap" was read aloud with its tag: a review)."""
    if seq is None:
        return [None] * n
    out = list(np.asarray(seq, dtype=object).ravel()) if not isinstance(seq, str) else [seq]
    out = [plain(v) if isinstance(v, str) else v for v in out]
    return (out + [None] * n)[:n]


def _trace_axis(fig: go.Figure, trace: Any, axis: str) -> str:
    """The name of `trace`'s `axis` ("x" or "y") in the table: the layout's `table_meta` name
    for it, else the axis title as plain words, a shared axis's (`matches`: the robustness
    chart titles only its first panel's, and the second panel's rows had an empty "measure")
    where its own has none ("" without any)."""
    if named := _meta(fig.layout).get(axis):  # the builder's name for the table wins
        return str(named)
    ref = str(getattr(trace, f"{axis}axis", None) or axis)
    title = ""
    for _ in range(2):  # its own axis, then the axis it matches
        try:
            layout_axis = fig.layout[f"{axis}axis{ref[1:]}"]
        except (KeyError, ValueError):
            break
        title = plain(getattr(layout_axis.title, "text", None))
        if title or not getattr(layout_axis, "matches", None):
            break
        ref = str(layout_axis.matches)
    return title


def _points(trace: Any, x_name: str, y_name: str) -> list[dict[str, Any]]:
    """One row per point of a line, marker or bar trace; its error bars as an interval, and
    its `table_meta` columns."""
    n = max(len(trace.x) if trace.x is not None else 0, len(trace.y) if trace.y is not None else 0)
    xs, ys = _values(trace.x, n), _values(trace.y, n)
    rows = [{x_name: x, y_name: y} for x, y in zip(xs, ys, strict=True)]
    err = getattr(trace, "error_y", None)
    if err is not None and err.array is not None and err.visible is not False:
        plus = _values(err.array, n)
        minus = _values(err.arrayminus if err.arrayminus is not None else err.array, n)
        for row, p, m in zip(rows, plus, minus, strict=True):
            y = row[y_name]
            # a point drawn without a bar (a figure with no interval for it) has none
            ok = all(isinstance(v, (int, float)) for v in (y, p, m)) and (p or m)
            row["interval low"] = y - m if ok else None
            row["interval high"] = y + p if ok else None
    for column, values in _meta(trace).items():  # numbers only its hover or text shows
        for row, value in zip(rows, _values(values, n), strict=True):
            row[column] = value
    return rows


def _cells(trace: Any, x_name: str, y_name: str) -> list[dict[str, Any]]:
    """One row per cell of a heatmap: its row and column labels and its value."""
    z = np.asarray(trace.z, dtype=object)
    if z.ndim != 2:
        return []
    ys, xs = _values(trace.y, z.shape[0]), _values(trace.x, z.shape[1])
    return [{y_name: ys[i] if ys[i] is not None else i, x_name: xs[j] if xs[j] is not None else j,
             "value": z[i, j]} for i in range(z.shape[0]) for j in range(z.shape[1])]


def _whisker(trace: Any) -> bool:
    """An invisible marker that only carries error bars over another trace's bar."""
    marker = getattr(trace, "marker", None)
    return (getattr(trace, "error_y", None) is not None and trace.error_y.array is not None
            and marker is not None and marker.opacity == 0)


def chart_name(fig: go.Figure) -> str:
    """A few words naming `fig` for its table's label: its title, else its panels' titles,
    else "<y axis> by <x axis>" ("" when it has none of them)."""
    title = plain(getattr(fig.layout.title, "text", None))
    if title:
        return title
    panels = list(dict.fromkeys(p for t in fig.data if (p := _panel(fig, t))))
    if panels:
        return ", ".join(panels)
    x, y = _axis_title(fig, "x"), _axis_title(fig, "y")
    return f"{y} by {x}" if x and y else y or x


def figure_table(fig: go.Figure) -> pd.DataFrame:
    """The numbers `fig` draws: a row per point (x, y, and an interval where it has error bars)
    or heatmap cell, with its panel and series where the figure has more than one; columns
    named by the axes' titles where every panel shares them, else "value" beside a "measure"
    column naming each row's axis (a review found accuracies under "loss"). Hidden traces and
    reference lines without hover (chance, perfect calibration) are left out; a whisker
    trace's interval joins the bar it stands on. An empty frame for a figure with no data."""
    shown = [t for t in fig.data if getattr(t, "visible", True) is not False
             and getattr(t, "hoverinfo", None) != "skip"]
    names = {a: {_trace_axis(fig, t, a) for t in shown} for a in ("x", "y")}
    x_name = next(iter(names["x"])) if len(names["x"]) == 1 else ""
    y_name = next(iter(names["y"])) if len(names["y"]) == 1 else ""
    measure = not y_name and len(names["y"]) > 1
    x_name, y_name = x_name or "x", y_name or ("value" if measure else "y")
    if x_name == y_name:
        x_name, y_name = f"{x_name} (x)", f"{y_name} (y)"
    rows: list[dict[str, Any]] = []
    for k, trace in enumerate(shown):
        where = {"panel": _panel(fig, trace), "series": plain(trace.name) or f"series {k + 1}"}
        if measure:
            where["measure"] = _trace_axis(fig, trace, "y")
        if trace.type == "heatmap":
            found = _cells(trace, x_name, y_name)
        elif _whisker(trace):
            found = _merge(rows, _points(trace, x_name, y_name), where["panel"], x_name)
        elif getattr(trace, "x", None) is not None or getattr(trace, "y", None) is not None:
            found = _points(trace, x_name, y_name)
        else:
            found = []
        rows += [{**where, **row} for row in found]
    table = pd.DataFrame(rows)
    if "series" in table and table["series"].str.fullmatch(r"series \d+").all():
        table = table.drop(columns="series")  # unnamed traces: numbers, not names
    for column in ("panel", "series", "measure"):  # said only where it tells rows apart
        if column in table and table[column].nunique() <= 1:
            table = table.drop(columns=column)
    return table.round(4)  # as the charts' hover labels show them, not 16 digits


def _merge(rows: list[dict[str, Any]], points: list[dict[str, Any]], panel: str,
           x_name: str) -> list[dict[str, Any]]:
    """A whisker's points' intervals put on the rows of its panel at the same x; the points
    with no such row, to be added as rows of their own."""
    alone = []
    for point in points:
        match = [r for r in rows if r.get("panel") == panel and r.get(x_name) == point[x_name]]
        for row in match:
            row.update({k: point.get(k) for k in ("interval low", "interval high")})
        if not match:
            alone.append(point)
    return alone
