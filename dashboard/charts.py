"""One way for a page to draw a chart from an artifact: a figure, or a warning in its place.

Figures come from the pure builders of `dashboard.figures`; when the artifact data does not have
the shape a builder needs (`FigureDataError`), the page shows why and how to fix it instead.
Kept apart from `dashboard.views`, which imports TensorFlow: pages without models stay light.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from dashboard import figures as F


def chart(build: Callable[..., Any], *args: Any, key: str, fix: str,
          caption: str | None = None, width: int | str = "stretch", **kwargs: Any) -> bool:
    """Draw `build(*args, **kwargs)` under widget `key`, then `caption` if given, with the
    dashboard's text sizes (`figures.readable`); `width` in pixels, or "stretch".

    On `FigureDataError` a warning ending in `fix` stands in place of the chart (and the caption,
    which explains a chart that is not there). Returns whether the chart was drawn.
    """
    try:
        fig = build(*args, **kwargs)
    except F.FigureDataError as exc:
        st.warning(f"Cannot draw this chart: {exc}. {fix}", icon=":material/warning:")
        return False
    st.plotly_chart(F.readable(fig), key=key, width=width, config={"displaylogo": False})
    if caption:
        st.caption(caption)
    return True
