"""Accessibility of the dashboard's charts without a browser: their text's colour in the
viewer's theme (`figures.readable`, `charts.chart`), the faithfulness curves' chance label
placed clear of the curves (`figures.label_corner`), and the heading a page's outline would
skip (`charts.hidden_heading`). The browser measures them in test_a11y_browser.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import figures as F
from dashboard.figures.common import (
    CHART_TEXT,
    LINE_LABEL_GAP,
    LINE_LABEL_SPAN,
    THEME_BACKGROUNDS,
    label_corner,
)

ROOT = Path(__file__).resolve().parents[1]
RUNS = sorted(p for p in (ROOT / "artifacts" / "runs").iterdir() if p.is_dir())
AA_TEXT = 4.5  # WCAG AA's contrast for text


def _explanations(run: Path) -> dict:
    return {p.parent.name: json.loads(p.read_text())
            for p in sorted(run.glob("*/explanations.json"))}


def _shipped_figures() -> list[go.Figure]:
    """Figures of every kind of text: ticks and axis titles, panel titles and a line's label
    (annotations: the training curves' "MobileNetV2: finetune" too), bar values outside their
    bars, a legend title."""
    expl = _explanations(RUNS[0])
    histories = {p.parent.name: json.loads(p.read_text())
                 for p in sorted(RUNS[0].glob("*/history.json"))}
    fig = go.Figure(go.Bar(x=["a"], y=[1.0], text=["1.0"], textposition="outside"))
    fig.update_layout(legend_title_text="models")
    return [F.faithfulness_curves_figure(expl, 4), F.sanity_figure(expl), F.road_figure(expl),
            F.shortcut_figure(expl), F.localisation_figure(expl),
            F.training_curves_figure(histories), fig]


def _text_colours(fig: go.Figure) -> list:
    """The colour of each text of `fig` that stands on the page's background (None: unset, so
    Streamlit's theme colours it)."""
    lay = fig.layout
    axes = [lay[k] for k in lay if k.startswith(("xaxis", "yaxis"))]
    return ([a.tickfont.color for a in axes] + [a.title.font.color for a in axes]
            + [n.font.color for n in lay.annotations] + [lay.legend.title.font.color]
            + [t.outsidetextfont.color for t in fig.data
               if t.type == "bar" and "outside" in str(t.textposition)])


def test_chart_text_meets_aa_on_the_light_theme():
    """On the light theme every text on the page's white is `CHART_TEXT`'s, at 4.5:1 or more;
    Streamlit's own theme grey there was 3.72:1 (an accessibility review)."""
    assert F.contrast("#808495", THEME_BACKGROUNDS["light"]) < AA_TEXT  # the grey it replaces
    assert F.contrast(CHART_TEXT["light"], THEME_BACKGROUNDS["light"]) >= AA_TEXT
    figures = _shipped_figures()
    assert any("finetune" in n.text for n in figures[-2].layout.annotations)  # a phase's label
    for fig in figures:
        colours = _text_colours(F.readable(fig, "light"))
        assert len(colours) >= 4 and set(colours) == {CHART_TEXT["light"]}, colours


@pytest.mark.parametrize("theme", ["dark", None])
def test_the_dark_or_an_unknown_theme_keeps_streamlit_s_colours(theme):
    """The dark theme's own chart text is light and follows a switch of theme at once; an
    unknown theme (a client that did not say) gets no colour that could be the wrong one."""
    for fig in _shipped_figures():
        assert set(_text_colours(F.readable(fig, theme))) == {None}


def test_text_a_builder_coloured_keeps_its_colour():
    fig = go.Figure(go.Bar(x=["a"], y=[1.0], text=["1.0"], textposition="outside",
                           textfont_color="#123456"))
    fig.add_annotation(text="fine-tune", font_color="#2563eb", x=0, y=0)
    F.readable(fig, "light")
    assert fig.layout.annotations[0].font.color == "#2563eb"
    assert fig.data[0].outsidetextfont.color is None  # its textfont's colour stands


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_a_page_s_chart_takes_the_viewer_s_theme(theme):
    """`charts.chart` reads the theme the browser sent (`st.context.theme.type`) and colours
    the chart it sends for it."""
    def page(run: str) -> None:
        import json
        from pathlib import Path

        from dashboard import charts
        from dashboard import figures as F
        expl = {p.parent.name: json.loads(p.read_text())
                for p in sorted(Path(run).glob("*/explanations.json"))}
        charts.chart(F.sanity_figure, expl, key="sanity", fix="")

    at = AppTest.from_function(page, args=(str(RUNS[0]),), default_timeout=60)
    at.context = {"theme": theme}
    at.run()
    assert not at.exception
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["yaxis"]["tickfont"].get("color") == CHART_TEXT.get(theme)


def _in_label(curves: list, y: float, corner: str) -> int:
    """How many of the curves' points (each curve sampled at 101 x) lie in the label's box at
    `corner` of the line at `y`, beyond the strip along the line that its letters leave free."""
    width, height = LINE_LABEL_SPAN
    side, end = corner.split()
    x0 = 1 - width if end == "right" else 0.0
    low, high = ((y + LINE_LABEL_GAP, y + height) if side == "top"
                 else (y - height, y - LINE_LABEL_GAP))
    xs = [k / 100 for k in range(101)]
    return sum(x0 < x < x0 + width and low < yy < high
               for cx, cy in curves for x, yy in zip(xs, np.interp(xs, cx, cy), strict=True))


@pytest.mark.parametrize("run", RUNS, ids=lambda p: p.name)
def test_the_chance_label_stays_clear_of_the_shipped_curves(run: Path):
    """Each panel's "chance (1/4)" sits where no curve passes; on the deletion panel that is
    not the top right, where the curves falling to chance ran through it (seen at 1280 px)."""
    expl = _explanations(run)
    fig = F.faithfulness_curves_figure(expl, 4)
    labels = [a for a in fig.layout.annotations if a.text == "chance (1/4)"]
    assert len(labels) == 2
    for label, kind in zip(labels, ("deletion", "insertion"), strict=True):
        curves = [(e["curve_fractions"], e[f"{kind}_curve{s}"])
                  for e in expl.values() for s in ("", "_random")]
        corner = f"{'top' if label.yanchor == 'bottom' else 'bottom'} {label.xanchor}"
        assert _in_label(curves, 0.25, corner) == 0, (kind, corner)
    assert _in_label([(e["curve_fractions"], e["deletion_curve"]) for e in expl.values()],
                     0.25, "top right") > 0  # where it was: crossed


def test_the_chance_label_keeps_the_top_right_when_it_is_free():
    high = [([0.0, 1.0], [0.9, 0.9])]
    assert label_corner(high, 0.25) == "top right"
    along = [([0.0, 1.0], [0.3, 0.3])]  # a curve just above the line, all along: below it
    assert label_corner(along, 0.25) == "bottom left"


def test_a_hidden_heading_is_a_heading_of_its_level_with_its_text_escaped():
    def page() -> None:
        from dashboard import charts
        charts.hidden_heading("Results <b>")

    at = AppTest.from_function(page, default_timeout=30)
    at.run()
    body = at.markdown[0].value
    assert "<h2 " in body and body.endswith(">Results &lt;b&gt;</h2>")
    assert "clip:rect(0 0 0 0)" in body  # drawn as nothing
