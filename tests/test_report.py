"""README figures and results table from a real (smoke) run."""

from __future__ import annotations

from typer.testing import CliRunner

from pipeline.artifacts import open_run
from pipeline.cli import app
from pipeline.report import make_figures, results_table


def test_figures_and_table_from_smoke_run(smoke_run, tmp_path):
    run = open_run(smoke_run)
    paths = make_figures(run, tmp_path)
    names = {p.name for p in paths}
    assert {"confusion_matrices.png", "training_curves.png", "results.md"} <= names
    for p in paths:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    table = results_table(run)
    assert "| Custom CNN |" in table and "| MobileNetV2 |" in table
    metrics = run.read_json("mobilenetv2/metrics.json")
    assert f"{metrics['accuracy']:.3f}" in table


def test_the_confusion_figure_names_classes_as_the_dashboard_does(smoke_run, tmp_path,
                                                                  monkeypatch):
    """Its axes read "no tumor" (the folder name with a space) where every page says "no
    tumour"."""
    import matplotlib.pyplot as plt

    from pipeline.report import confusion_figure

    shown: list[str] = []
    close = plt.close

    def keep_labels(fig=None):  # the figure's tick labels, read before it is closed
        if fig is not None:
            shown.extend(t.get_text() for ax in fig.axes for t in ax.get_yticklabels())
        close(fig)

    monkeypatch.setattr(plt, "close", keep_labels)
    assert confusion_figure(open_run(smoke_run), tmp_path) is not None
    assert "no tumour" in shown and "no tumor" not in shown


def test_figures_cli_on_missing_run_is_one_clear_line(tmp_path):
    result = CliRunner().invoke(app, ["figures", "--artifacts", str(tmp_path), "--out",
                                      str(tmp_path / "f")])
    assert result.exit_code == 2
    assert "no runs yet" in result.output and "Traceback" not in result.output


def test_test_set_description_names_split_and_leakage():
    from types import SimpleNamespace

    from pipeline.report import describe_test_set

    official = SimpleNamespace(manifest={"splits": {"dedupe": True, "official_test": {
        "n": 394, "leaking": 259, "dropped_duplicates_of_test": 301}}})
    text = describe_test_set(official)
    assert "Testing/" in text and "259 of 394" in text and "301 such copies" in text
    # the file a student pastes says what the Overview and the model card say: the recipes were
    # chosen on that folder, so its figures are shift validation, not a clean test (a review)
    assert "(shift validation)" in text and text.endswith("not a clean test")
    dedup = SimpleNamespace(manifest={"splits": {"dedupe": True}})
    assert "no test image has a copy" in describe_test_set(dedup)
    plain = SimpleNamespace(manifest={"splits": {"dedupe": False}})
    assert "not grouped" in describe_test_set(plain)
