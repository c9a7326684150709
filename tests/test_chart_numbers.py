"""Every chart's numbers as a table under it (`figures.figure_table`, `charts.numbers`): a screen
reader reads nothing of a plotly picture, so an accessibility review found the charts had no text
alternative, and a student had no exact values."""

from __future__ import annotations

import json
from pathlib import Path

import plotly.graph_objects as go
import pytest
from plotly.subplots import make_subplots
from streamlit.testing.v1 import AppTest

from dashboard import figures as F

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "artifacts" / "runs" / "20261204-234844-8cf044"


def test_bars_with_intervals_lines_and_a_hidden_trace():
    fig = go.Figure([
        go.Bar(name="Custom CNN", x=["Accuracy", "Balanced acc."], y=[0.9, 0.8],
               error_y={"array": [0.02, 0.0], "arrayminus": [0.03, 0.0]}),
        go.Scatter(name="<b>MobileNetV2</b> (T = 0.80)", x=["Accuracy"], y=[0.95]),
        go.Scatter(name="hidden", x=[1], y=[2], visible=False)])
    fig.update_layout(yaxis_title="score (95% CI)")
    table = F.figure_table(fig)
    assert list(table.columns) == ["series", "x", "score (95% CI)", "interval low",
                                   "interval high"]
    assert table["series"].tolist() == ["Custom CNN", "Custom CNN", "MobileNetV2 (T = 0.80)"]
    assert table.iloc[0][["interval low", "interval high"]].tolist() == [0.87, 0.92]
    # a point drawn without a bar has no interval; a trace without error bars neither
    assert table.iloc[1][["interval low", "interval high"]].isna().all()
    assert table.iloc[2][["interval low", "interval high"]].isna().all()
    assert F.chart_name(fig) == "score (95% CI)"


def test_panels_are_named_by_their_titles_and_a_heatmap_by_its_cells():
    fig = make_subplots(rows=1, cols=2, subplot_titles=["Precision", "Recall<br>(test)"])
    for col, ys in ((1, [0.5, 0.6]), (2, [0.7, 0.8])):
        fig.add_trace(go.Bar(name="Custom CNN", x=["glioma", "pituitary"], y=ys), 1, col)
    table = F.figure_table(fig)
    assert list(table.columns) == ["panel", "x", "y"]  # one series: not a column
    assert table["panel"].tolist() == ["Precision"] * 2 + ["Recall (test)"] * 2
    assert table["y"].tolist() == [0.5, 0.6, 0.7, 0.8]
    assert F.chart_name(fig) == "Precision, Recall (test)"
    cm = go.Figure(go.Heatmap(z=[[5, 1], [2, 7]], x=["glioma", "no tumour"],
                              y=["glioma", "no tumour"]))
    cm.update_layout(title="Custom CNN", xaxis_title="predicted", yaxis_title="true")
    cells = F.figure_table(cm)
    assert list(cells.columns) == ["true", "predicted", "value"]
    assert cells.values.tolist() == [["glioma", "glioma", 5], ["glioma", "no tumour", 1],
                                     ["no tumour", "glioma", 2], ["no tumour", "no tumour", 7]]
    assert F.chart_name(cm) == "Custom CNN"
    assert F.figure_table(go.Figure()).empty


@pytest.mark.skipif(not RUN.is_dir(), reason="the shipped main-split run is not here")
def test_the_shipped_charts_tables_hold_their_numbers():
    """Read against the run's own files: a confusion matrix's counts, the robustness chart's
    accuracies per model panel (its legend's line sample left out of the panel's name)."""
    cm = json.loads((RUN / "custom_cnn" / "confusion_matrix.json").read_text())
    cells = F.figure_table(F.confusion_figure(cm))
    assert cells["value"].sum() == sum(map(sum, cm["matrix"]))
    rob = json.loads((RUN / "robustness.json").read_text())
    table = F.figure_table(F.robustness_figure(rob))
    assert table["panel"].str.startswith(("Custom CNN (unshifted", "MobileNetV2 (unshifted")).all()
    assert set(table["series"]) == {"mild", "moderate", "severe"}
    assert len(table) == 2 * 3 * 9  # two models, three severities, nine shifts


def test_a_page_s_chart_has_its_numbers_in_a_closed_expander_named_after_it():
    def page() -> None:
        import plotly.graph_objects as go

        from dashboard import charts

        def build() -> go.Figure:
            fig = go.Figure(go.Bar(name="a", x=["glioma"], y=[0.5]))
            fig.update_layout(title="Recall", yaxis_title="recall")
            return fig

        def curve() -> go.Figure:
            fig = go.Figure(go.Scatter(name="ROC", x=list(range(40)), y=list(range(40))))
            fig.update_layout(xaxis_title="false positive rate", yaxis_title="recall")
            return fig

        charts.chart(build, key="recall_fig", fix="")
        charts.chart(go.Figure, key="empty_fig", fix="")  # nothing drawn: no table
        charts.chart(curve, key="curve_fig", fix="")

    at = AppTest.from_function(page, default_timeout=60)
    at.run()
    assert not at.exception
    assert [e.label for e in at.expander] == ["Numbers of the chart: Recall",
                                              "Numbers of the chart: recall by false positive rate"]
    assert not any(e.proto.expanded for e in at.expander)
    # a short table is an HTML table, which a screen reader reads cell by cell (st.dataframe's
    # grid shows it nothing but a toolbar); a curve's 40 points a grid, downloadable as CSV
    [short] = at.table
    assert short.value.to_dict("records") == [{"x": "glioma", "recall": 0.5}]
    [long] = at.dataframe
    assert len(long.value) == 40 > charts_rows()
    assert "40 rows: the table's toolbar downloads them as CSV." in [c.value for c in at.caption]


def charts_rows() -> int:
    from dashboard.charts import NUMBERS_ROWS

    return NUMBERS_ROWS


def test_review_fixes_measures_tags_whiskers_references_and_counts():
    """A review of the tables: accuracies sat under "loss" (panels with their own y titles),
    "<br>" was read aloud, an invisible whisker trace made duplicate rows "series 7", chance
    lines made rows, and counts read "110.0000"."""
    import pandas as pd

    from dashboard.charts import styled

    fig = make_subplots(rows=1, cols=2, subplot_titles=["Loss", "Accuracy"])
    fig.add_trace(go.Scatter(name="train", x=[1, 2], y=[3.9, 3.6]), 1, 1)
    fig.add_trace(go.Scatter(name="train", x=[1, 2], y=[0.25, 0.5]), 1, 2)
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], hoverinfo="skip"), 1, 2)  # a reference line
    fig.update_yaxes(title="loss", col=1)
    fig.update_yaxes(title="accuracy", col=2)
    fig.update_xaxes(title="epoch")
    table = F.figure_table(fig)
    assert list(table.columns) == ["panel", "measure", "epoch", "value"]
    assert table.values.tolist() == [["Loss", "loss", 1, 3.9], ["Loss", "loss", 2, 3.6],
                                     ["Accuracy", "accuracy", 1, 0.25],
                                     ["Accuracy", "accuracy", 2, 0.5]]
    bars = go.Figure([go.Bar(x=["Custom CNN<br>heatmap", "Custom CNN<br>random"], y=[0.8, 0.03]),
                      go.Scatter(x=["Custom CNN<br>heatmap"], y=[0.8], mode="markers",
                                 marker={"opacity": 0},
                                 error_y={"array": [0.04], "arrayminus": [0.05]})])
    rows = F.figure_table(bars)
    assert rows["x"].tolist() == ["Custom CNN heatmap", "Custom CNN random"]  # one row each
    assert "series" not in rows  # only generated names: no column
    assert rows.iloc[0][["interval low", "interval high"]].tolist() == [0.75, 0.84]
    assert rows.iloc[1][["interval low", "interval high"]].isna().all()
    counts = pd.DataFrame({"true": ["glioma"], "value": [110.0], "share": [0.25]})
    html = styled(counts).to_html()
    assert ">110<" in html and "110.0" not in html and ">0.2500<" in html


def test_a_chart_named_by_its_page_and_a_label_disputed_by_a_copy():
    """ROC and PR had the same table name (their panels'); an exact image whose copy in the
    run is labelled otherwise (the dataset holds the same slice as a glioma and a meningioma)
    gets no true class, so no answer is marked wrong for the dataset's doing."""
    import numpy as np

    from pipeline.data.membership import Membership, perceptual_hash, pixel_digest

    def page() -> None:
        import plotly.graph_objects as go

        from dashboard import charts

        charts.chart(lambda: go.Figure(go.Scatter(x=[0, 1], y=[0, 1])), key="roc", fix="",
                     name="ROC curves")

    at = AppTest.from_function(page, default_timeout=60)
    at.run()
    assert [e.label for e in at.expander] == ["Numbers of the chart: ROC curves"]
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    b = np.clip(a.astype(int) + 1, 0, 255).astype(np.uint8)  # the same slice, re-exported
    c = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    report = {"splits": {"train": [perceptual_hash(x).hex() for x in (a, c)],
                         "test": [perceptual_hash(b).hex()]},
              "pixels": {"train": [pixel_digest(a), pixel_digest(c)], "test": [pixel_digest(b)]}}
    splits = {"train": [{"label": "glioma"}, {"label": "pituitary"}],
              "test": [{"label": "meningioma"}]}
    found = Membership(report)
    assert found.label(found.find(a), splits) is None  # its copy is a meningioma
    assert found.label(found.find(c), splits) == "pituitary"
    assert found.label(found.find(a), {**splits, "test": [{"label": "glioma"}]}) == "glioma"


def test_numbers_only_a_hover_shows_and_untitled_axes_get_names():
    """A review: per-class support, images per reliability bin, "k of n", the robustness
    chart's strength and tumour sensitivity and the training phase were in hover labels only;
    untitled axes made columns "x" and "y"; a shared axis titled on its first panel only left
    the second panel's rows an empty "measure"."""
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=["A", "B"])
    for col in (1, 2):
        fig.add_trace(go.Bar(name="m", x=["glioma", "pituitary"], y=[0.5, 0.25 * col],
                             meta=F.table_meta(support=[139, 135])), 1, col)
    fig.update_yaxes(title="accuracy (shifted)", col=1)
    table = F.figure_table(fig)
    assert list(table.columns) == ["panel", "x", "accuracy (shifted)", "support"]
    assert table["support"].tolist() == [139, 135, 139, 135]
    fig.update_layout(meta=F.table_meta(x="class", y="score"))  # the builder's names win
    assert list(F.figure_table(fig).columns) == ["panel", "class", "score", "support"]


@pytest.mark.skipif(not RUN.is_dir(), reason="the shipped main-split run is not here")
def test_the_shipped_charts_hover_numbers_match_the_run_files():
    metrics = {m: json.loads((RUN / m / "metrics.json").read_text())
               for m in ("custom_cnn", "mobilenetv2")}
    cnn = metrics["custom_cnn"]
    per_class = F.figure_table(F.per_class_figure(metrics))
    assert list(per_class.columns) == ["panel", "series", "class", "score", "support"]
    assert per_class["support"].sum() == 2 * 3 * cnn["n"]  # two models, three panels
    tumour = F.figure_table(F.tumour_figure(metrics)).set_index(["series", "metric"])
    row = tumour.loc[("Custom CNN", "Sensitivity: tumours found")]
    tvn = cnn["tumor_vs_no_tumor"]
    assert (row["images right"], row["of"]) == (tvn["tp"], tvn["n_tumor"])
    bins = F.figure_table(F.reliability_figure({"custom_cnn": cnn}))
    # before and after calibration, every test image in one bin of each
    assert bins.groupby("series")["images"].sum().tolist() == [cnn["n"]] * 2
    rob = F.figure_table(F.robustness_figure(json.loads((RUN / "robustness.json").read_text())))
    assert {"shift", "strength", "tumour sensitivity"} <= set(rob.columns)
    assert "measure" not in rob  # both panels share the first's axis title
    assert rob["strength"].astype(bool).all() and rob["tumour sensitivity"].astype(bool).all()
