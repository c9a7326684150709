"""One way for a page to draw a chart from an artifact: a figure, or a warning in its place, and
its numbers as a table under it (`numbers`); and a heading only a screen reader reads
(`hidden_heading`).

Figures come from the pure builders of `dashboard.figures`; when the artifact data does not have
the shape a builder needs (`FigureDataError`), the page shows why and how to fix it instead.
Kept apart from `dashboard.views`, which imports TensorFlow: pages without models stay light.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import streamlit as st

from dashboard import figures as F


def chart_config(key: str) -> dict[str, Any]:
    """Plotly's options for a chart under widget `key`: its modebar holds only "Download plot as
    a PNG", named after the chart. The full modebar (eight buttons, 224 px) covered the panel
    titles and legends at the top right of charts at 1280 and 911 px (the training curves'
    "Accuracy", the ROC and PR curves' "MobileNetV2", the robustness legend); dragging still
    zooms and a double click resets, without buttons."""
    return {"displaylogo": False, "modeBarButtons": [["toImage"]],
            "toImageButtonOptions": {"format": "png", "filename": key, "scale": 2}}


def chart(build: Callable[..., Any], *args: Any, key: str, fix: str,
          caption: str | None = None, width: int | str = "stretch", name: str = "",
          **kwargs: Any) -> bool:
    """Draw `build(*args, **kwargs)` under widget `key`, then `caption` if given, with the
    dashboard's text sizes and, in the viewer's theme (`st.context.theme.type`), text colour
    (`figures.readable`), a strip at its top left empty for the modebar
    (`figures.modebar_room`); `width` in pixels, or "stretch"; `name` names its numbers'
    table (`numbers`) where the figure's own words would not tell it from another's.

    On `FigureDataError` a warning ending in `fix` stands in place of the chart (and the caption,
    which explains a chart that is not there). Returns whether the chart was drawn.
    """
    try:
        fig = build(*args, **kwargs)
    except F.FigureDataError as exc:
        st.warning(f"Cannot draw this chart: {exc}. {fix}", icon=":material/warning:")
        return False
    # the theme is the browser's as it sent this rerun (None where unknown: AppTest without a
    # context, where Streamlit's theme colours stay)
    fig = F.modebar_room(F.readable(fig, st.context.theme.type))
    st.plotly_chart(fig, key=key, width=width, config=chart_config(key))
    if caption:
        st.caption(caption)
    numbers(fig, key, name)
    return True


NUMBERS_ROWS = 30  # a chart's numbers up to this many rows: an HTML table, else a grid


def styled(table: Any) -> Any:
    """`table` as shown: 4 decimals, whole-number columns (counts) without any ("110", not
    "110.0000": a review), a missing value blank."""
    whole = [c for c in table.select_dtypes("number") if (table[c].dropna() % 1 == 0).all()]
    return table.style.format(na_rep="", precision=4).format("{:.0f}", subset=whole, na_rep="")


def numbers(fig: Any, key: str, name: str = "") -> None:
    """The chart's numbers (`figures.figure_table`) in a closed expander under it, named after
    the chart: a screen reader reads nothing of the picture, and a student wants the values."""
    table = F.figure_table(fig)
    if table.empty:
        return
    name = name or F.chart_name(fig)
    with st.expander(f"Numbers of the chart{': ' + name if name else ''}",
                     icon=":material/table:", key=f"{key}_numbers"):
        # a short table as an HTML table, which a screen reader reads cell by cell (it reads
        # nothing of st.dataframe's grid but its toolbar: checked in Chromium's accessibility
        # tree); a curve's hundreds of points in the grid, whose toolbar downloads them as CSV
        if len(table) <= NUMBERS_ROWS:
            st.table(styled(table), hide_index=True)
        else:
            st.dataframe(table, hide_index=True, key=f"{key}_numbers_table")
            st.caption(f"{len(table)} rows: the table's toolbar downloads them as CSV.")


# The usual "visually hidden" rules: out of the layout and clipped to nothing, but in the page's
# outline, which screen readers read and jump through
_HIDDEN = ("position:absolute;width:1px;height:1px;margin:-1px;padding:0;border:0;"
           "overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap")
# and its element's box out of the flow too: in it, the box took a gap of the page's column
# (16 px) above the next element
_HIDDEN_CLASS = "hidden-heading"
_OUT_OF_FLOW = (f'<style>[data-testid="stElementContainer"]:has(.{_HIDDEN_CLASS})'
                "{position:absolute}</style>")


def hidden_heading(text: str, level: int = 2) -> None:
    """A heading of `level` reading `text` (plain text, escaped) that takes a level the page's
    outline would otherwise skip, drawing nothing: the image cards' titles are h3
    (`views.image_card`) and came straight after the page's h1 on Predict and Error analysis,
    so a screen reader's list of headings jumped a level (an accessibility review)."""
    st.markdown(f'{_OUT_OF_FLOW}<h{level} class="{_HIDDEN_CLASS}" style="{_HIDDEN}">'
                f"{html.escape(text)}</h{level}>", unsafe_allow_html=True)
