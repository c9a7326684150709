"""Unit tests of dashboard.figures with hand-made dicts in the docs/architecture.md formats."""

from __future__ import annotations

import json
import math

import numpy as np
import plotly.graph_objects as go
import pytest

from dashboard import figures as F
from dashboard.figures.common import THEME_BACKGROUNDS
from dashboard.flags import SIZE_GAP

CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]


def _metrics(acc: float) -> dict:
    per_class = {c: {"precision": acc - 0.01 * i, "recall": acc - 0.02 * i, "f1": acc - 0.015 * i,
                     "support": 10 + i} for i, c in enumerate(CLASSES)}
    return {
        "accuracy": acc, "balanced_accuracy": acc - 0.01, "macro_f1": acc - 0.02,
        "weighted_f1": acc - 0.015, "per_class": per_class, "ece": 0.05,
        "reliability": [
            {"lower": 0.0, "upper": 0.5, "confidence": 0.4, "accuracy": 0.3, "count": 4},
            {"lower": 0.5, "upper": 0.8, "confidence": 0.0, "accuracy": 0.0, "count": 0},
            {"lower": 0.8, "upper": 1.0, "confidence": 0.9, "accuracy": 0.85, "count": 36},
        ],
        "roc_auc": 0.95, "pr_auc": {"macro": 0.9, "glioma": 0.88},
        "tumor_vs_no_tumor": {"sensitivity": 0.97, "specificity": None},
        "n": 46, "top_confusions": [],
    }


METRICS = {"custom_cnn": _metrics(0.8), "mobilenetv2": _metrics(0.9)}
COMPARISON = {"models": ["custom_cnn", "mobilenetv2"], "n": 46,
              "ci": {"custom_cnn": {"accuracy": [0.7, 0.88], "macro_f1": [0.65, 0.85]},
                     "mobilenetv2": {"accuracy": [0.82, 0.95]}}}


def _trace_values(fig, attr: str) -> list:
    return [list(getattr(t, attr)) for t in fig.data]


def test_confusion_counts_and_row_normalised():
    cm = {"labels": ["a", "b", "c"], "matrix": [[3, 1, 0], [0, 0, 0], [2, 2, 4]]}
    labels, counts = F.confusion_values(cm)
    assert labels == ["a", "b", "c"]
    assert counts.tolist() == [[3, 1, 0], [0, 0, 0], [2, 2, 4]]
    _, norm = F.confusion_values(cm, normalise=True)
    np.testing.assert_allclose(norm[0], [0.75, 0.25, 0])
    np.testing.assert_allclose(norm[1], [0, 0, 0])  # class without images: zeros, not NaN
    np.testing.assert_allclose(norm[2], [0.25, 0.25, 0.5])

    fig = F.confusion_figure(cm, normalise=True, title="CNN")
    heat = fig.data[0]
    assert heat.type == "heatmap"
    assert heat.text[0] == ["75%", "25%", "0%"]
    assert fig.layout.yaxis.autorange == "reversed"
    assert F.confusion_figure(cm).data[0].text[2] == ["2", "2", "4"]


@pytest.mark.parametrize("bad, message", [
    ({"labels": ["a", "b"], "matrix": [[1, 2, 3]]}, "shape"),
    ({"labels": [], "matrix": []}, "labels"),
    ({"labels": ["a"], "matrix": [["x"]]}, "not numeric"),
    ({"labels": ["a"], "matrix": [[-1]]}, "negative"),
    ([1, 2], "labels"),
])
def test_confusion_rejects_malformed(bad, message):
    with pytest.raises(F.FigureDataError, match=message):
        F.confusion_figure(bad)


def test_per_class_figure_has_one_bar_per_model_and_measure():
    fig = F.per_class_figure(METRICS)
    assert len(fig.data) == 6  # 2 models x precision/recall/F1
    assert list(fig.data[0].x) == ["glioma", "meningioma", "no tumour", "pituitary"]
    assert fig.data[0].y[0] == pytest.approx(0.8)
    assert [t.showlegend for t in fig.data].count(True) == 2
    with pytest.raises(F.FigureDataError, match="per_class"):
        F.per_class_figure({"m": {"accuracy": 1.0}})


def test_metrics_table_shows_values_and_cis():
    table = F.metrics_table(METRICS, COMPARISON)
    assert list(table.columns) == ["Custom CNN", "MobileNetV2"]
    assert table.loc["Accuracy", "Custom CNN"] == "0.800  [0.700, 0.880]"
    assert table.loc["Macro F1", "MobileNetV2"] == "0.880"  # no CI given for it
    assert table.loc["PR AUC (macro)", "Custom CNN"] == "0.900"  # dict with "macro"
    # named by what they count (a review read "Tumour specificity" as per tumour type)
    assert table.loc["Specificity: no-tumour found", "Custom CNN"] == "n/a"
    assert table.loc["Test images", "MobileNetV2"] == "46"
    # the first column shows about 40 characters at 1280 px with the sidebar open:
    # "Specificity (no-tumour slices called no tumour)" was cut to "…called no tumo"
    assert max(len(label) for label in table.index) <= 30, list(table.index)


def test_interval_words_follow_the_runs_method():
    """The caption names how the run's intervals were made: runs evaluated before 2026-12-06
    bootstrapped accuracy as well, newer ones use Wilson's interval for it."""
    from pipeline.evaluate.comparison import ci_method

    assert "bootstrap" in F.interval_words({"ci_method": "percentile bootstrap, 2000 paired "
                                                          "resamples of the images, seed 0"})
    assert "Wilson" not in F.interval_words({})
    new = F.interval_words({"ci_method": ci_method(2000, 0)})
    assert "Wilson score for accuracy" in new and "bootstrap for macro-F1" in new


def test_ci_figure_error_bars_match_interval():
    fig = F.ci_figure(METRICS, COMPARISON)
    cnn = fig.data[0]
    assert list(cnn.x) == ["Accuracy", "Balanced acc.", "Macro F1"]
    assert cnn.error_y.array[0] == pytest.approx(0.08)
    assert cnn.error_y.arrayminus[0] == pytest.approx(0.10)
    assert cnn.error_y.array[1] == 0.0  # no CI known: no whisker, not a fake one
    with pytest.raises(F.FigureDataError, match="CI|interval"):
        F.ci_figure(METRICS, {"ci": {"custom_cnn": {"accuracy": [0.1]}}})


def test_ci_figure_axis_is_zoomed_to_the_intervals():
    lo, hi = F.ci_figure(METRICS, COMPARISON).layout.yaxis.range
    assert lo <= 0.65 and hi >= 0.95  # every whisker inside
    assert hi - lo < 0.5  # not the 0-1 axis that hid the intervals
    lo, hi = F.ci_figure({"m": _metrics(0.9)}, {"ci": {"m": {"accuracy": [0.895, 0.905]}}}
                         ).layout.yaxis.range
    assert 0.85 < lo < 0.88 and 0.905 < hi < 0.95  # narrow intervals: a narrow axis


def test_mcnemar_sentence_counts_images_in_singular_and_plural():
    comparison = {**COMPARISON, "agreement": 0.75,
                  "mcnemar": {"b": 1, "c": 3, "p_value": 0.625}}
    pair = ["custom_cnn", "mobilenetv2"]
    said = F.mcnemar_sentence(comparison, pair)
    assert said.startswith("McNemar exact test on 46 paired test images: 1 image only "
                           "Custom CNN got right, 3 only MobileNetV2 got right, p = 0.625.")
    assert "1 images" not in said and said.endswith("agree on 75.0% of the images.")
    said = F.mcnemar_sentence({"n": 1, "mcnemar": {"b": 0, "c": 1}}, pair)
    assert said == ("McNemar exact test on 1 paired test image: 0 images only Custom CNN got "
                    "right, 1 only MobileNetV2 got right. ")
    assert "? images only" in F.mcnemar_sentence({"mcnemar": {}}, pair)


def test_ood_caption_explains_shifted_rows_only_when_there_are_some():
    def report(shifted: bool) -> dict:
        e = {"test_flagged": 0.05, "auroc": {"noise": 1.0}, "flagged": {"noise": 1.0}}
        if shifted:
            e.update(shift_auroc={"gamma": 0.6}, shift_flagged={"gamma": 0.1})
        return {"models": {"custom_cnn": e}}

    with_shifts = F.ood_caption(F.ood_table(report(True)))
    assert "Foreign:" in with_shifts and "Shifted:" in with_shifts
    without = F.ood_caption(F.ood_table(report(False)))
    assert "Foreign:" in without and "hifted" not in without


def test_tumour_figure():
    fig = F.tumour_figure(METRICS)
    assert fig.data[1].y[0] == pytest.approx(0.97)
    assert math.isnan(fig.data[1].y[1])
    assert list(fig.data[1].error_y.array) == [0.0, 0.0]  # no counts, no interval to draw
    assert list(fig.data[1].text) == ["0.970", "n/a"]
    with pytest.raises(F.FigureDataError, match="tumor_vs_no_tumor"):
        F.tumour_figure({"m": {}})


def test_tumour_figure_gives_counts_and_wilson_intervals():
    """Sensitivity and specificity bars had no counts and no uncertainty: 71 of 75 and 386 of
    415 looked equally sure. Each bar says "k of n" and has its Wilson 95% whiskers."""
    metrics = {"custom_cnn": {"tumor_vs_no_tumor": {
        "sensitivity": 17 / 26, "specificity": 1.0, "tp": 17, "n_tumor": 26, "tn": 26,
        "n_no_tumor": 26}}}
    bar = F.tumour_figure(metrics).data[0]
    # Wilson 95% by the closed form: 17 of 26 -> 0.4622-0.8059; 26 of 26 -> 0.8713-1
    assert bar.y[0] + bar.error_y.array[0] == pytest.approx(0.8059, abs=1e-4)
    assert bar.y[0] - bar.error_y.arrayminus[0] == pytest.approx(0.4622, abs=1e-4)
    assert bar.error_y.array[1] == pytest.approx(0.0, abs=1e-12)
    assert bar.y[1] - bar.error_y.arrayminus[1] == pytest.approx(0.8713, abs=1e-4)
    assert list(bar.text) == ["0.654<br>17 of 26", "1.000<br>26 of 26"]
    assert bar.customdata[0] == " (17 of 26)<br>95% interval 0.462–0.806"
    # the bars are named as the metrics table's rows: one home for the words
    assert list(bar.x) == [label for _, label, _ in F.evaluation.TUMOUR_ROWS]


def test_per_class_ticks_carry_each_class_s_test_images():
    fig = F.per_class_figure(METRICS)  # supports 10, 11, 12, 13 in both models
    assert list(fig.layout.xaxis.ticktext) == [
        "glioma<br>n = 10", "meningioma<br>n = 11", "no tumour<br>n = 12", "pituitary<br>n = 13"]
    assert list(fig.layout.xaxis3.tickvals) == ["glioma", "meningioma", "no tumour", "pituitary"]
    odd = json.loads(json.dumps(METRICS))
    odd["mobilenetv2"]["per_class"]["glioma"]["support"] = 99  # models disagree: no count
    assert F.per_class_figure(odd).layout.xaxis.ticktext[0] == "glioma"


def test_pr_figure_draws_each_class_s_chance_level():
    curves = {"custom_cnn": _curves(), "mobilenetv2": _curves()}
    assert len(F.pr_figure(curves).data) == 8  # without metrics: the curves only
    fig = F.pr_figure(curves, METRICS)
    assert F.class_prevalence(METRICS)["no_tumor"] == (12, 46)  # 10 + 11 + 12 + 13 images
    chance = [t for t in fig.data if t.line.dash == "dot"]
    assert len(chance) == 8  # a line per class per panel
    no_tumour = next(t for t in chance if t.legendgroup == "no_tumor")
    assert list(no_tumour.y) == [12 / 46] * 2
    curve = next(t for t in fig.data if t.name == "no tumour")
    assert no_tumour.line.color == curve.line.color  # in the class's colour
    assert "(12 of 46 test images)" in no_tumour.hovertemplate
    assert F.class_prevalence({"m": {"per_class": {"a": {"support": "x"}}}}) == {}


def test_training_curves_marks_best_epoch_and_phase_change():
    hist = {"epochs": [
        {"epoch": 1, "phase": "head", "loss": 1.2, "accuracy": 0.5, "val_loss": 1.1,
         "val_accuracy": 0.55},
        {"epoch": 2, "phase": "head", "loss": 0.9, "accuracy": 0.6, "val_loss": 0.95,
         "val_accuracy": 0.6},
        {"epoch": 3, "phase": "finetune", "loss": 0.7, "accuracy": 0.7, "val_loss": 0.8,
         "val_accuracy": 0.7},
    ], "best_epoch": 3}
    cnn = {"epochs": [{"epoch": 1, "phase": "train", "loss": 1.0, "accuracy": 0.4,
                       "val_loss": 1.0, "val_accuracy": 0.4}], "best_epoch": 1}
    fig = F.training_curves_figure({"custom_cnn": cnn, "mobilenetv2": hist})
    names = [t.name for t in fig.data]
    assert "MobileNetV2 validation" in names and "Custom CNN train" in names
    star = next(t for t in fig.data if t.name == "MobileNetV2 best epoch")
    assert list(star.x) == [3] and list(star.y) == [0.8]
    # one dotted line per panel where fine-tuning starts
    assert [s.x0 for s in fig.layout.shapes] == [2.5, 2.5]
    assert "finetune" in fig.layout.annotations[-1].text
    with pytest.raises(F.FigureDataError, match="epochs"):
        F.training_curves_figure({"m": {"epochs": []}})
    with pytest.raises(F.FigureDataError, match="val_loss"):
        F.training_curves_figure({"m": {"epochs": [{"loss": 1, "val_loss": "x"}]}})


def _epoch(epoch: int, phase: str, loss: float, val_loss: float, share: float | None = None
           ) -> dict:
    row = {"epoch": epoch, "phase": phase, "loss": loss, "accuracy": 0.5, "val_loss": val_loss,
           "val_accuracy": 0.5}
    return row if share is None else {**row, "outside_share": share}


GUIDED_MANIFEST = {  # the shipped recipes' shape: guided CNN, MobileNetV2 guided in fine-tuning
    "class_names": CLASSES,
    "config": {"augment": True, "class_weights": True, "models": {
        "custom_cnn": {"dropout": 0.3, "augment_strength": "mri", "label_smoothing": 0.1},
        "mobilenetv2": {"dropout": 0.2, "augment_strength": "light", "label_smoothing": 0.1}}},
    "models": {"custom_cnn": {"guidance": {"weight": 3.0, "phases": ["train"], "erase": 0.5}},
               "mobilenetv2": {"guidance": {"weight": 2.0, "phases": ["finetune"]}}}}
GUIDED_HISTORIES = {
    "custom_cnn": {"best_epoch": 2, "epochs": [_epoch(1, "train", 2.5, 1.2, 0.6),
                                               _epoch(2, "train", 1.6, 0.5, 0.3),
                                               _epoch(3, "train", 1.7, 0.6, 0.35)]},
    "mobilenetv2": {"best_epoch": 4, "epochs": [_epoch(1, "head", 0.9, 0.8),
                                                _epoch(2, "head", 0.6, 0.7),
                                                _epoch(3, "finetune", 2.1, 0.6, 0.7),
                                                _epoch(4, "finetune", 1.0, 0.4, 0.3)]}}


def test_training_curves_name_their_axes():
    fig = F.training_curves_figure(GUIDED_HISTORIES)
    assert fig.layout.yaxis.title.text == "loss (lower is better)"
    assert fig.layout.yaxis2.title.text == "accuracy"


def test_the_loss_caption_says_what_only_training_adds():
    """Training loss sat at 1.6 against a validation loss of 0.5 with nothing saying why: the
    guidance penalty (weight x outside_share), augmentation, dropout and class weights are
    training's only, and the penalty starting at fine-tuning makes MobileNetV2's loss jump."""
    cnn, mnv2, last = F.loss_gap_sentences(GUIDED_HISTORIES, GUIDED_MANIFEST)
    assert cnn.startswith("Custom CNN's training loss adds the explanation-guidance penalty, "
                          "3 × the share")
    # 3 x 0.3 of the loss at epoch 2
    assert "at the kept epoch (2) the penalty is about 0.90 of the training loss's 1.60" in cnn
    assert ("computed on augmented images (mri), with dropout on (0.3 at the head), class "
            "weights and copies with the tumour erased (50% of boxed tumour images)") in cnn
    # the jump: 0.6 at the last head epoch, 2.1 at the first guided one, 2 x 0.7 of it penalty
    assert "from fine-tuning on (epoch 3), so it jumps there (0.60 → 2.10, of which the " \
           "penalty is about 1.40)" in mnv2
    assert "at the kept epoch (4) the penalty is about 0.60 of the training loss's 1.00" in mnv2
    assert "erased" not in mnv2
    # smoothing 0.1 over 4 classes: targets 0.925 and 3 x 0.025, entropy
    # -(0.925 ln 0.925 + 3 x 0.025 ln 0.025) = 0.0721 + 0.2767 = 0.349
    assert last.endswith("compare the curves' shapes, not their levels. Both include label "
                         "smoothing (0.1), so neither can go below 0.35.")
    assert F.smoothing_floor(0.1, 4) == pytest.approx(0.3488, abs=1e-4)
    assert F.smoothing_floor(0.0, 4) == 0.0
    # only the model whose kept epoch is its last gets the "longer training" sentence
    assert F.last_epoch_sentences(GUIDED_HISTORIES) == [
        "MobileNetV2's kept epoch (4) is the last one run: longer training might still help."]


def test_the_loss_caption_says_nothing_it_cannot_read():
    plain = {"class_names": CLASSES, "config": {"augment": False, "models": {
        "custom_cnn": {"dropout": 0.0}}}, "models": {"custom_cnn": {}}}
    histories = {"custom_cnn": GUIDED_HISTORIES["custom_cnn"]}
    assert F.loss_gap_sentences(histories, plain) == []  # nothing training-only to name
    plain["config"]["models"]["custom_cnn"]["dropout"] = 0.5
    first, _ = F.loss_gap_sentences(histories, plain)
    assert first == "Custom CNN's training loss is computed with dropout on (0.5 at the head)."
    # an older run's manifest without blocks, a damaged history: no sentence, no crash
    assert F.loss_gap_sentences({"custom_cnn": {"epochs": "x"}}, GUIDED_MANIFEST) == []
    assert F.loss_gap_sentences(histories, {"config": []}) == []
    assert F.last_epoch_sentences({"m": {"epochs": [], "best_epoch": None}}) == []


def test_the_shipped_runs_loss_captions_quote_their_own_files():
    """Each shipped run's caption quotes the penalty its history.json records at the kept
    epoch (weight from the manifest x outside_share), and says "longer training might still
    help" exactly for the models whose kept epoch is their last."""
    from pathlib import Path

    runs = sorted((Path(__file__).resolve().parents[1] / "artifacts" / "runs").glob(
        "*/manifest.json"))
    if not runs:
        pytest.skip("no shipped runs")
    for path in runs:
        manifest = json.loads(path.read_text())
        histories = {m: json.loads((path.parent / m / "history.json").read_text())
                     for m in manifest["models"]}
        text = " ".join(F.loss_gap_sentences(histories, manifest))
        for m, hist in histories.items():
            row = next(r for r in hist["epochs"] if r["epoch"] == hist["best_epoch"])
            weight = manifest["models"][m]["guidance"]["weight"]
            assert (f"at the kept epoch ({hist['best_epoch']}) the penalty is about "
                    f"{weight * row['outside_share']:.2f} of the training loss's "
                    f"{row['loss']:.2f}") in text
        last = [m for m, h in histories.items() if h["best_epoch"] == h["epochs"][-1]["epoch"]]
        assert [s.split("'s kept")[0] for s in F.last_epoch_sentences(histories)] == [
            F.model_label(m) for m in last]


def _curves() -> dict:
    return {
        "roc": {c: {"fpr": [0, 0.1, 1], "tpr": [0, 0.8, 1], "auc": 0.9} for c in CLASSES},
        "pr": {c: {"precision": [1, 0.8, 0.5], "recall": [0, 0.7, 1], "ap": 0.8}
               for c in CLASSES},
    }


def test_roc_and_pr_figures():
    curves = {"custom_cnn": _curves(), "mobilenetv2": _curves()}
    roc = F.roc_figure(curves)
    # 4 classes + chance line per model
    assert len(roc.data) == 10
    assert [t.name for t in roc.data[:5]] == ["glioma", "meningioma", "no tumour", "pituitary",
                                              "chance"]
    assert roc.data[0].line.color == roc.data[5].line.color  # class colour stable across panels
    pr = F.pr_figure(curves)
    assert len(pr.data) == 8 and pr.data[0].line.shape == "hv"
    bad = {"m": {"roc": {"a": {"fpr": [0, 1], "tpr": [0], "auc": 0.5}}}}
    with pytest.raises(F.FigureDataError, match="equal length"):
        F.roc_figure(bad)
    with pytest.raises(F.FigureDataError, match="'pr'"):
        F.pr_figure({"m": {"roc": {}}})


def test_curves_are_told_apart_without_colour_and_their_areas_are_text():
    """Classes differed by colour only ("no tumour" and "pituitary" 18 ΔE apart with
    deuteranopia), and the AUCs were only in hover labels."""
    curves = {"custom_cnn": _curves(), "mobilenetv2": _curves()}
    roc = F.roc_figure(curves)
    dashes = [t.line.dash for t in roc.data[:4]]
    assert len(set(dashes)) == 4 and "dot" not in dashes  # "dot": the chance line
    areas = F.curve_areas(curves)
    assert list(areas.columns) == ["Custom CNN", "MobileNetV2"]
    first = next(iter(curves["custom_cnn"]["roc"]))
    want = f"{curves['custom_cnn']['roc'][first]['auc']:.3f}"
    assert areas.loc[f"{F.class_name(first)}: ROC AUC", "Custom CNN"] == want
    assert any(i.endswith(": average precision") for i in areas.index)
    assert F.curve_areas({"m": {}}) is None


def test_reliability_skips_empty_bins():
    pts = F.reliability_points(METRICS["custom_cnn"]["reliability"])
    assert [p["count"] for p in pts] == [4, 36]
    fig = F.reliability_figure(METRICS)
    assert fig.data[0].name == "perfect calibration"
    assert list(fig.data[1].x) == [0.4, 0.9]
    assert "ECE 0.050" in fig.data[1].name
    with pytest.raises(F.FigureDataError, match="list of bins"):
        F.reliability_figure({"m": {"reliability": "oops"}})


def test_reliability_shows_before_and_after_calibration():
    calibrated = {**METRICS["mobilenetv2"], "temperature": 1.8, "ece_uncalibrated": 0.12,
                  "reliability_uncalibrated": [
                      {"confidence": 0.95, "accuracy": 0.8, "count": 40}]}
    fig = F.reliability_figure({"custom_cnn": METRICS["custom_cnn"], "mobilenetv2": calibrated})
    names = [d.name for d in fig.data]
    assert len(names) == 4  # diagonal, custom CNN, MobileNetV2 before and after
    assert names[2] == "MobileNetV2 before calibration (ECE 0.120)"
    assert fig.data[2].line.dash == "dash" and list(fig.data[2].x) == [0.95]
    assert "T = 1.80" in names[3] and list(fig.data[3].x) == [0.4, 0.9]
    # no temperature (an uncalibrated run): one curve, whatever else the file holds
    plain = {**calibrated, "temperature": None}
    assert len(F.reliability_figure({"mobilenetv2": plain}).data) == 2
    with pytest.raises(F.FigureDataError, match="temperature"):
        F.reliability_figure({"m": {**calibrated, "temperature": "hot"}})


def test_reliability_before_calibration_reads_on_the_dark_theme():
    """The curve before calibration was drawn at opacity 0.55: MobileNetV2's blue sank into the
    dark background. It is told apart by its dash and hollow markers, at full strength."""
    from dashboard.figures.calibration import BEFORE_MARKER

    calibrated = {**METRICS["mobilenetv2"], "temperature": 1.8, "ece_uncalibrated": 0.12,
                  "reliability_uncalibrated": [
                      {"confidence": 0.95, "accuracy": 0.8, "count": 40}]}
    fig = F.reliability_figure({"mobilenetv2": calibrated})
    before, after = fig.data[1], fig.data[2]
    assert "before calibration" in before.name and "before" not in after.name
    blue = F.model_color("mobilenetv2")
    assert before.line.color == before.marker.color == before.marker.line.color == blue
    assert before.opacity in (None, 1.0) and before.line.dash == "dash"
    assert before.marker.symbol == BEFORE_MARKER and before.marker.line.width >= 2
    assert after.marker.symbol in (None, "circle") and after.line.dash is None
    assert F.contrast(blue, DARK_BG) >= 3 and F.contrast(blue, LIGHT_BG) >= 3


def test_ece_floor_sentences():
    cnn = {**METRICS["custom_cnn"], "ece": 0.049,
           "ece_if_calibrated": {"mean": 0.028, "p95": 0.043, "draws": 4000}}
    mnv = {**METRICS["mobilenetv2"], "ece": 0.03,
           "ece_if_calibrated": {"mean": 0.022, "p95": 0.034, "draws": 4000}}
    first, second = F.ece_floor_sentences({"custom_cnn": cnn, "mobilenetv2": mnv})
    assert first.startswith("Custom CNN: ECE 0.049. A perfectly calibrated model")
    assert "about 0.028 on 46 images (above 0.043 only 5% of the time)" in first
    assert first.endswith("the model is miscalibrated.")  # 0.049 > p95
    assert second.endswith("no miscalibration detectable beyond chance.")  # 0.030 < p95
    # runs evaluated before the floor existed (or on no images): no sentence, no error
    assert F.ece_floor_sentences(METRICS) == []
    empty = {**cnn, "ece_if_calibrated": {"mean": None, "p95": None, "draws": 0}}
    assert F.ece_floor_sentences({"custom_cnn": empty}) == []


def test_probability_table():
    table = F.probability_table({"custom_cnn": [0.1, 0.2, 0.3, 0.4],
                                 "mobilenetv2": np.array([0.7, 0.1, 0.1, 0.1])}, CLASSES)
    lines = table.splitlines()
    # the class as every page shows it (`names.class_label`): the table said "no tumor" while
    # the captions said "no_tumor"
    assert lines[0] == "| probability | glioma | meningioma | no tumour | pituitary |"
    assert lines[2] == "| Custom CNN | 10% | 20% | 30% | **40%** |"  # the top class in bold
    assert lines[3] == "| MobileNetV2 | **70%** | 10% | 10% | 10% |" and len(lines) == 4
    with pytest.raises(F.FigureDataError, match="3 probabilities for 4 classes"):
        F.probability_table({"m": [0.2, 0.3, 0.5]}, CLASSES)
    # a card half the page wide (the Error page's grid): one row per class instead
    narrow = F.probability_table({"custom_cnn": [0.1, 0.2, 0.3, 0.4],
                                  "mobilenetv2": np.array([0.7, 0.1, 0.1, 0.1])}, CLASSES,
                                 by_class=True).splitlines()
    assert narrow[0] == "| probability | Custom CNN | MobileNetV2 |"
    assert narrow[2:] == ["| glioma | 10% | **70%** |", "| meningioma | 20% | 10% |",
                          "| no tumour | 30% | 10% |", "| pituitary | **40%** | 10% |"]


def test_figures_name_classes_as_every_page_does():
    from pipeline.names import class_label

    shown = [class_label(c) for c in CLASSES]
    assert "no tumour" in shown and F.class_name("no_tumor") == "no tumour"
    fig = F.confusion_figure({"labels": CLASSES, "matrix": np.eye(4).tolist()})
    assert list(fig.data[0].x) == shown and list(fig.data[0].y) == shown
    assert F.confusion_values({"labels": CLASSES, "matrix": np.eye(4).tolist()})[0] == CLASSES
    assert list(F.per_class_figure(METRICS).data[0].x) == shown
    assert [t.name for t in F.roc_figure({"custom_cnn": _curves()}).data[:4]] == shown


def test_colour_legend_has_numbered_ticks():
    """The colour scale beside the overlays had no numbers: a reader could not tell what a
    colour means. The legend carries 0 / 0.5 / 1 under its strip, and its caption the words."""
    from dashboard.figures.legend import tick_x
    from pipeline.explain.render import heatmap_to_rgb

    legend = F.colour_legend()
    h, w, _ = legend.shape
    assert w == 2 * F.LEGEND_WIDTH and legend.dtype == np.uint8  # twice its shown width
    # the strip: the heatmaps' own colours, opaque, lowest at the 0 tick, highest at the 1 tick
    # (just inside its outline, in the ink: its dark end vanished into the dark theme)
    from dashboard.figures.legend import LEGEND_INK

    gradient = heatmap_to_rgb(np.linspace(0, 1, tick_x(1.0) - tick_x(0.0) + 1)[None, :])[0]
    np.testing.assert_array_equal(legend[6, tick_x(0.0) + 3], [*gradient[3], 255])
    np.testing.assert_array_equal(legend[6, tick_x(1.0) - 3], [*gradient[-4], 255])
    assert np.abs(gradient[3].astype(int) - heatmap_to_rgb(np.zeros((1, 1)))[0, 0]).max() <= 3
    for edge in (legend[0, tick_x(0.5)], legend[6, tick_x(0.0)], legend[6, tick_x(1.0)]):
        np.testing.assert_array_equal(edge, [*LEGEND_INK, 255])
    between = legend[:, tick_x(0.25), 3]  # a column with no tick: strip, then transparent
    strip = int(np.flatnonzero(between == 0)[0])  # its first transparent row
    below = legend[strip:, :, 3]  # ticks and their numbers: the opaque pixels under the strip

    def ink(x0: int, x1: int) -> int:
        return int((below[:, max(x0, 0):x1] > 128).sum())

    half = round(0.06 * w)  # about the width of "0.5"
    for value in (0.0, 0.5, 1.0):
        x = tick_x(value)
        assert ink(x - half, x + half + 1) >= 40, value  # a tick (16 px) and a number
    for value in (0.25, 0.75):  # nothing written between the ticks
        assert ink(tick_x(value) - half, tick_x(value) + half) == 0, value
    # "0.5" is wider than "0": three characters against one
    assert ink(tick_x(0.5) - half, tick_x(0.5) + half) > 1.5 * ink(0, tick_x(0.0) + half)
    assert "0 (low" in F.LEGEND_CAPTION and "1 (high" in F.LEGEND_CAPTION
    assert "normalised per image" in F.LEGEND_CAPTION
    # the peak's words are thirds of the picture: two models' peaks either side of a third's
    # edge read as different places to a clinician ("centre" and "middle right")
    assert "thirds of the picture" in F.LEGEND_CAPTION


# Streamlit's two themes: the legend, whiskers and curves must read on both
LIGHT_BG, DARK_BG = THEME_BACKGROUNDS["light"], THEME_BACKGROUNDS["dark"]


def test_colour_legend_reads_on_light_and_dark_theme():
    """The legend was drawn on white: a white box on the dark theme. Around the strip it is
    transparent now, its ticks and numbers a grey that contrasts with both backgrounds."""
    from dashboard.figures.legend import LEGEND_INK, tick_x

    legend = F.colour_legend()
    assert legend.shape[2] == 4  # RGBA
    alpha = legend[..., 3]
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0  # corners: the page shows through
    between = alpha[:, tick_x(0.25)]
    strip = int(np.flatnonzero(between == 0)[0])
    assert (between[strip:] == 0).all()  # under the strip, no background at all
    # every pixel drawn under the strip is the ink, its text edges faded in alpha only: no
    # white, and no dark fringe from blending into transparent black
    drawn = legend[strip:][alpha[strip:] > 0]
    assert len(drawn) > 50 and (drawn[:, :3] == LEGEND_INK).all()
    ink = "#{:02x}{:02x}{:02x}".format(*LEGEND_INK)
    for background in (LIGHT_BG, DARK_BG):
        assert F.contrast(ink, background) >= 4, (ink, background)


FRACTIONS = [0.0, 0.5, 1.0]
EXPL = {
    "custom_cnn": {"pointing_game": 0.6, "pointing_game_chance": 0.1, "energy_in_mask": 0.4,
                   "energy_in_mask_chance": 0.1, "deletion_auc": 0.2, "deletion_auc_random": 0.4,
                   "insertion_auc": 0.7, "insertion_auc_random": 0.5,
                   "sanity_rank_correlation": 0.1, "n": 20, "method": "gradcam",
                   "layer": "gradcam_target", "curve_fractions": FRACTIONS,
                   "deletion_curve": [0.9, 0.2, 0.1], "deletion_curve_random": [0.9, 0.5, 0.1],
                   "insertion_curve": [0.1, 0.8, 0.9], "insertion_curve_random": [0.1, 0.4, 0.9]},
    "mobilenetv2": {"pointing_game": None, "pointing_game_chance": None, "energy_in_mask": None,
                    "energy_in_mask_chance": None, "deletion_auc": 0.3,
                    "deletion_auc_random": 0.35, "insertion_auc": 0.8,
                    "insertion_auc_random": 0.6, "sanity_rank_correlation": -0.2, "n": 20,
                    "method": "gradcam", "layer": "out_relu", "curve_fractions": FRACTIONS,
                    "deletion_curve": [0.8, 0.3, 0.2], "deletion_curve_random": [0.8, 0.6, 0.2],
                    "insertion_curve": [0.2, 0.7, 0.8], "insertion_curve_random": [0.2, 0.5, 0.8]},
}


def test_explanation_quality_figures():
    loc = F.localisation_figure(EXPL)
    assert list(loc.data[0].y) == [0.6, 0.1]  # pointing game beside its chance level
    assert list(loc.data[2].y) == [0.4, 0.1]  # energy beside its chance level
    assert all(math.isnan(v) for v in loc.data[1].y)  # no masks: shown as missing, not zero
    assert len(loc.layout.annotations) == 2  # runs explained before top_in_mask: two panels
    newer = {"custom_cnn": {**EXPL["custom_cnn"], "top_in_mask": 0.55, "top_in_mask_chance": 0.1},
             "mobilenetv2": {**EXPL["mobilenetv2"], "top_in_mask": None,
                             "top_in_mask_chance": None}}
    newer["custom_cnn"]["pointing_game_ci"] = [0.45, 0.8]
    loc3 = F.localisation_figure(newer)
    whisker = loc3.data[-1]  # the 95 % interval, on the heatmap's bar only, after the bars
    assert list(whisker.x) == ["Custom CNN<br>heatmap"] and list(whisker.y) == [0.6]
    assert list(whisker.error_y.array) == [pytest.approx(0.2)]
    assert list(whisker.error_y.arrayminus) == [pytest.approx(0.15)]
    assert loc3.data[0].textposition == ("inside", "outside")  # its label clear of the whisker
    assert len(loc.data) == 4 and {t.type for t in loc.data} == {"bar"}  # no interval: none
    # titles on two short lines: on one, the three overprinted one another in a narrow window
    titles = [a.text for a in loc3.layout.annotations]
    assert titles[2] == "Hottest box-sized region<br>inside the tumour box"
    assert all(len(line) <= 24 for t in titles for line in t.split("<br>")), titles
    assert list(loc3.data[4].y) == [0.55, 0.1]  # beside its chance level
    assert all(math.isnan(v) for v in loc3.data[5].y)
    assert list(loc3.data[0].y) == [0.6, 0.1]  # the other panels unchanged
    faith = F.faithfulness_figure(EXPL)
    assert list(faith.data[0].y) == [0.2, 0.4]
    assert list(faith.data[3].y) == [0.8, 0.6]
    sanity = F.sanity_figure(EXPL)
    assert list(sanity.data[0].y) == [0.1, -0.2]
    titles = [a.text for a in F.shortcut_figure(EXPL).layout.annotations]
    assert titles[0] == "Images flagged by<br>the shortcut alarm", titles  # not a stale rule
    with pytest.raises(F.FigureDataError, match="deletion_auc"):
        F.faithfulness_figure({"m": {"deletion_auc": "high"}})
    with pytest.raises(F.FigureDataError, match="pointing_game_ci"):
        F.localisation_figure({"m": {**EXPL["custom_cnn"], "pointing_game_ci": 0.7}})


def test_quality_summary_names_method_and_layer_like_the_predict_page():
    """The page showed raw ids ("gradcam++", "layercam-fusion", "gradcam_target")."""
    expl = {"custom_cnn": {**EXPL["custom_cnn"], "method": "gradcam++",
                           "outside_head_alarm_rate": 0, "n_outside_head_flagged": 0},
            "mobilenetv2": {**EXPL["mobilenetv2"], "method": "layercam-fusion",
                            "layer": "block_13_expand_relu"}}
    table = F.quality_summary(expl, {"custom_cnn": "gradcam_target",
                                     "mobilenetv2": "out_relu"})
    assert list(table.columns) == ["Custom CNN", "MobileNetV2"]
    assert table.loc["method"].tolist() == ["Grad-CAM++", "Multi-layer LayerCAM (fusion)"]
    # plain words first, the technical name (what --layer takes) in brackets; a name that
    # has no plain words but its own spaced out, once
    # a fusion method's layer is the deepest it fuses, as the card says ("3 stages fused")
    assert table.loc["layer"].tolist() == ["last conv block (gradcam_target)",
                                           "stages fused; deepest: block_13_expand_relu"]
    assert "layer (technical name)" not in table.index
    # a rate of exactly 0 is stored as the integer 0: measured, not "not measured"
    assert table.loc["evidence mostly outside the head"].tolist() == ["0 (0%)", "not measured"]
    assert F.method_label("lime") == "lime"  # an id the registry does not know: shown as is


def test_shortcut_figure_labels_read_like_its_percent_axis():
    expl = {m: {**e, "outside_head_alarm_rate": rate, "energy_outside_head": energy}
            for (m, e), rate, energy in zip(EXPL.items(), (0.875, 0), (0.1234, None),
                                            strict=True)}
    fig = F.shortcut_figure(expl)
    assert fig.layout.yaxis.tickformat == ".0%"
    assert list(fig.data[0].text) == ["87.5%", "0%"]  # not 0.875 on a percent axis
    assert list(fig.data[1].text) == ["12.3%", "n/a"]
    # model names wrapped and never rotated: rotated they overlapped
    assert list(fig.data[0].x) == ["Custom<br>CNN", "MobileNetV2"]
    assert fig.layout.xaxis.tickangle == 0 and fig.layout.xaxis2.tickangle == 0


def test_labels_inside_bars_contrast_with_the_bar():
    """The pointing game's label sits inside its bar (a whisker is above it): it was dark grey on
    orange; now black or white, whichever reads better, at least WCAG's 4.5:1."""
    expl = {m: {**e, "pointing_game": 0.6, "pointing_game_chance": 0.1,
                "pointing_game_ci": [0.4, 0.8], "energy_in_mask": 0.4,
                "energy_in_mask_chance": 0.1} for m, e in EXPL.items()}
    fig = F.localisation_figure(expl)
    for bar in fig.data[:2]:  # pointing game, both models
        assert bar.textposition[0] == "inside"
        inside, colour = bar.insidetextfont.color[0], bar.marker.color[0]
        assert F.contrast(inside, colour) >= 4.5, (inside, colour)
    assert F.contrast("#000000", "#ffffff") == pytest.approx(21)
    assert F.text_color_on(F.model_color("custom_cnn")) == "#000000"  # orange: black text
    assert F.text_color_on(F.model_color("mobilenetv2")) == "#ffffff"  # blue: white text


def test_pointing_game_interval_reads_on_both_themes_and_caption_names_it():
    """The 95 % interval whiskers were #374151, nearly invisible on the dark theme, and the
    caption called them "black lines"."""
    from dashboard.figures.quality import INTERVAL_COLOR, INTERVAL_WORDS, LOCALISATION_CAPTION

    expl = {m: {**e, "pointing_game": 0.6, "pointing_game_chance": 0.1,
                "pointing_game_ci": [0.4, 0.8], "energy_in_mask": 0.4,
                "energy_in_mask_chance": 0.1} for m, e in EXPL.items()}
    whiskers = [t for t in F.localisation_figure(expl).data if t.error_y.array is not None]
    assert len(whiskers) == 2 and {t.error_y.color for t in whiskers} == {INTERVAL_COLOR}
    for background in (LIGHT_BG, DARK_BG):
        assert F.contrast(INTERVAL_COLOR, background) >= 3, background
    # the caption names them as they look: grey (channels close together), not black
    r, g, b = (int(INTERVAL_COLOR[k:k + 2], 16) for k in (1, 3, 5))
    assert max(r, g, b) - min(r, g, b) <= 32 and 80 <= r <= 180
    assert "grey" in INTERVAL_WORDS and INTERVAL_WORDS in LOCALISATION_CAPTION
    assert "black" not in LOCALISATION_CAPTION


def test_per_image_table_reads_like_the_page():
    """The per-image results were explanations.json's raw rows: classes as indices 0-3,
    snake_case headers and the image's path in the 22nd column, off-screen."""
    from dashboard.figures.quality import per_image_table

    rows = [{"target": 2, "predicted": 0, "p_target": 0.2, "correct": False,
             "pointing_hit": None, "energy_in_mask": None, "top_outside_head": 0.7,
             "outside_head_flag": True, "peak": [0.5, 0.25], "faithfulness_scored": True,
             "path": "Testing/no_tumor/a.png", "label": "no_tumor", "target_rule": "true",
             "new_measure": 1.5},
            {"target": 3, "predicted": 7, "p_target": 0.9, "correct": True,
             "pointing_hit": True, "energy_in_mask": 0.4, "top_outside_head": 0.1,
             "outside_head_flag": False, "peak": [0.1, 0.2], "faithfulness_scored": False,
             "path": "Testing/pituitary/b.png", "label": "pituitary", "target_rule": "true"}]
    table = per_image_table(rows, CLASSES)
    assert list(table.columns[:5]) == ["image", "true class", "answer", "answer correct",
                                       "explained class"]
    assert table["image"].tolist() == ["Testing/no_tumor/a.png", "Testing/pituitary/b.png"]
    assert table["true class"].tolist() == ["no tumour", "pituitary"]
    assert table["explained class"].tolist() == ["no tumour", "pituitary"]
    assert table["answer"].tolist() == ["glioma", 7]  # an index the run lacks: kept as is
    # every key kept, under its plain header; unknown keys last, underscores as spaces
    assert len(table.columns) == len(rows[0])
    assert {"pointing game hit", "energy in tumour mask", "heat outside head (hottest 10%)",
            "shortcut alarm", "hottest point (y, x as shares)"} <= set(table.columns)
    assert table.columns[-1] == "new measure" and table["new measure"].tolist()[0] == 1.5
    assert not any("_" in c for c in table.columns)
    assert table["heat outside head (hottest 10%)"].tolist() == [0.7, 0.1]
    assert table["pointing game hit"].tolist()[1] is True
    # on tumour boxes (the real runs) the mask's columns say so; every other header stays
    boxed = per_image_table(rows, CLASSES, region="box")
    assert "energy in tumour box" in boxed.columns and "energy in tumour mask" not in boxed.columns
    assert [c.replace("box", "mask") for c in boxed.columns] == list(table.columns)


def test_faithfulness_curves():
    assert F.has_curves(EXPL)
    assert not F.has_curves({"m": {"deletion_auc": 0.2}})
    fig = F.faithfulness_curves_figure(EXPL)
    # per panel and model: heatmap (solid) and random (dotted)
    assert len(fig.data) == 8
    first = fig.data[0]
    assert first.name == "Custom CNN heatmap" and list(first.y) == [0.9, 0.2, 0.1]
    assert fig.data[1].line.dash == "dot" and list(fig.data[1].y) == [0.9, 0.5, 0.1]
    insertion = [t for t in fig.data if t.xaxis == "x2"]
    assert list(insertion[0].y) == [0.1, 0.8, 0.9]
    bad = {"m": {**EXPL["custom_cnn"], "insertion_curve": [0.1, 0.2]}}
    with pytest.raises(F.FigureDataError, match="insertion_curve"):
        F.faithfulness_curves_figure(bad)


def _robustness() -> dict:
    def rows(acc: float) -> list:
        return [{"severity": sev, "level": lvl, "accuracy": acc - d, "tumor_sensitivity": 0.9,
                 "accuracy_drop": d, "tumor_sensitivity_drop": 0.0}
                for sev, lvl, d in (("mild", 1.2, 0.01), ("moderate", 1.5, 0.04),
                                    ("severe", 2.0, 0.2))]
    return {"severities": ["mild", "moderate", "severe"],
            "shifts": {"gamma": {"levels": [1.2, 1.5, 2.0]}, "jpeg": {"levels": [50, 25, 10]}},
            "models": {m: {"clean": {"accuracy": acc, "tumor_sensitivity": 0.95},
                           "shifts": {"gamma": rows(acc), "jpeg": rows(acc)}}
                       for m, acc in (("custom_cnn", 0.8), ("mobilenetv2", 0.9))}}


def test_robustness_figure():
    rob = _robustness()
    fig = F.robustness_figure(rob)
    assert len(fig.data) == 6  # 2 models x 3 severities
    assert [t.name for t in fig.data[:3]] == ["mild", "moderate", "severe"]
    assert list(fig.data[0].x) == ["gamma", "jpeg"]
    assert list(fig.data[1].y) == pytest.approx([0.76, 0.76])
    assert list(fig.data[5].y) == pytest.approx([0.7, 0.7])  # MobileNetV2, severe
    assert [t.showlegend for t in fig.data].count(True) == 3
    # per panel: the clean accuracy (solid) and 5 points below it (dotted)
    assert sorted(round(s.y0, 6) for s in fig.layout.shapes) == [0.75, 0.8, 0.85, 0.9]
    titles = [a.text for a in fig.layout.annotations]
    assert titles[1].startswith("MobileNetV2<br>(") and titles[1].endswith("unshifted 0.900)")
    # a 400 px chart with turned labels: a longer axis title was cut ("uracy on shifted…")
    assert len(fig.layout.yaxis.title.text) <= 20


def test_robustness_clean_label_is_where_no_bar_covers_it():
    """"clean 0.949" sat on the line, at its left end, under the bars of shifts scoring above
    it. It is in the panel's title now, above the plot, in the clean line's colour."""
    rob = _robustness()
    for m in rob["models"].values():  # a shift scoring above clean, as bias field did
        m["shifts"]["gamma"][0]["accuracy"] = m["clean"]["accuracy"] + 0.05
    fig = F.robustness_figure(rob)
    top = fig.layout.yaxis.domain[1]
    labels = [a for a in fig.layout.annotations if "unshifted" in a.text]
    assert len(labels) == 2
    for a, (i, name) in zip(labels, enumerate(rob["models"]), strict=True):
        # in paper coordinates at the top of the plot, anchored above it: not in the data
        assert a.xref == "paper" and a.yref == "paper" and a.y >= top and a.yanchor == "bottom"
        assert F.model_color(name, i) in a.text  # the dash beside it in the line's colour
    lines = [s for s in fig.layout.shapes if s.line.dash is None]  # the solid clean lines
    assert all(s.label.text in (None, "") for s in lines) and not [
        a for a in fig.layout.annotations if a.yref not in (None, "paper")]


def test_charts_with_turning_category_labels_keep_their_legend_above_the_panels():
    """At 1024 px with the sidebar open the category labels turn, and a legend below the plot
    was drawn over the first panel's ("rician noi", "meningio"): it is above the panel titles,
    hung from the figure's top edge (at a share of the plot's height above it, it met the
    two-line panel titles at the projector's font size)."""
    from dashboard.figures.common import TOP_WITH_LEGEND

    for fig in (F.per_class_figure(METRICS), F.robustness_figure(_robustness())):
        titles = [a for a in fig.layout.annotations if a.yref == "paper"]
        legend = fig.layout.legend
        assert (legend.yref, legend.yanchor, legend.y) == ("container", "top", 1)
        assert max(a.y for a in titles) >= fig.layout.yaxis.domain[1]
        assert fig.layout.margin.t == TOP_WITH_LEGEND  # room for the legend and the titles
        # the legend's two lines and two lines of panel title at the projector's font size
        assert TOP_WITH_LEGEND >= 4 * 1.3 * F.FONT_SIZE


def test_robustness_severities_read_on_both_themes_and_darken_with_severity():
    """The "severe" bars' dark red was 2.1:1 on the dark theme (a lecturer's review, on a
    projector): every severity's colour is at least 3:1 (WCAG, graphics) on both themes, and
    on white they still darken from mild to severe."""
    from dashboard.figures.common import _luminance

    fig = F.robustness_figure(_robustness())
    colours: dict[str, str] = {}
    for trace in fig.data:
        if trace.type == "bar":
            colours.setdefault(trace.name, trace.marker.color)
    assert list(colours) == ["mild", "moderate", "severe"]
    for background in THEME_BACKGROUNDS.values():
        for severity, colour in colours.items():
            assert F.contrast(colour, background) >= 3, (severity, colour, background)
    lums = [_luminance(c) for c in colours.values()]
    assert lums == sorted(lums, reverse=True) and len(set(colours.values())) == 3


def test_robustness_severities_stand_apart_from_the_model_colours_and_each_other():
    """The "mild" bars' amber sat next to the custom CNN's orange clean line (CIE76 ΔE 15), its
    "moderate" red 33 from it and "severe" purple 39 from MobileNetV2's blue."""
    from dashboard.figures.common import MODEL_COLORS, color_difference
    from dashboard.figures.robustness import SEVERITY_APART

    assert color_difference("#d97706", MODEL_COLORS["custom_cnn"]) == pytest.approx(15, abs=1)
    assert color_difference("#ffffff", "#ffffff") == 0
    fig = F.robustness_figure(_robustness())
    bars = {t.marker.color for t in fig.data if t.type == "bar"}
    lines = {s.line.color for s in fig.layout.shapes if s.line.color != "gray"}
    assert lines == set(MODEL_COLORS.values()) and len(bars) == 3
    for bar in bars:
        for other in lines | (bars - {bar}):
            assert color_difference(bar, other) >= SEVERITY_APART, (bar, other)


def test_readable_sets_every_text_of_every_figure_to_the_projector_size():
    """Plotly's text was 12 px (Streamlit's theme), too small on a projector: ticks, axis and
    legend text, hover labels, cell labels and annotations are at least `FONT_SIZE`."""
    from dashboard.figures.common import FONT_SIZE, TITLE_FONT_SIZE, readable

    cm = {"labels": ["glioma", "no_tumor"], "matrix": [[3, 1], [0, 4]]}
    figures = [F.per_class_figure(METRICS), F.robustness_figure(_robustness()),
               F.ci_figure(METRICS), F.confusion_figure(cm, title="Custom CNN"),
               F.localisation_figure(EXPL)]
    for fig in figures:
        before = fig.to_json()
        assert readable(fig) is fig and fig.to_json() != before
        layout = fig.layout
        assert layout.font.size == layout.legend.font.size == FONT_SIZE
        assert layout.hoverlabel.font.size == FONT_SIZE and layout.title.font.size == (
            TITLE_FONT_SIZE)
        axes = [a for k in layout if k.startswith(("xaxis", "yaxis")) for a in [layout[k]]]
        assert axes and all(a.tickfont.size == a.title.font.size == FONT_SIZE for a in axes)
        assert all(a.font.size >= FONT_SIZE for a in layout.annotations)
        assert all(t.textfont.size == FONT_SIZE for t in fig.data if t.type == "heatmap")


def test_charts_keep_a_strip_for_the_modebar_above_every_title_and_legend():
    """Plotly's modebar (eight buttons, 224 px at the top right) covered panel titles and
    legends: the training curves' "Accuracy" and ROC/PR's "MobileNetV2" at 1280 px, the
    robustness legend and half-width quality charts' titles at 911 px. Charts keep only the PNG
    download, and `MODEBAR_ROOM` px at their top where nothing else is drawn."""
    from dashboard.charts import chart_config
    from dashboard.figures.common import MODEBAR_ROOM, modebar_room

    config = chart_config("robustness_fig")
    assert config["modeBarButtons"] == [["toImage"]]  # one 26 px button: the strip's height
    assert config["toImageButtonOptions"]["filename"] == "robustness_fig"  # not newplot.png
    assert MODEBAR_ROOM >= 26
    cm = {"labels": ["glioma", "no_tumor"], "matrix": [[3, 1], [0, 4]]}
    for fig in [F.robustness_figure(_robustness()), F.per_class_figure(METRICS),
                F.confusion_figure(cm, title="Custom CNN"), F.localisation_figure(EXPL),
                F.ci_figure(METRICS), go.Figure()]:
        height, top = fig.layout.height or 450, fig.layout.margin.t or 0
        plot = height - top - (fig.layout.margin.b or 0)
        legend = fig.layout.legend
        top_px = (1 - legend.y) * height if legend.yref == "container" and legend.y else None
        assert modebar_room(fig) is fig
        assert fig.layout.height == height + MODEBAR_ROOM
        assert fig.layout.margin.t == top + MODEBAR_ROOM
        # the plot keeps its height: panel titles (above the plot) move down with it
        assert fig.layout.height - fig.layout.margin.t - (fig.layout.margin.b or 0) == plot
        if top_px is not None:  # a legend placed from the top edge moves below the strip
            moved = (1 - fig.layout.legend.y) * fig.layout.height
            assert moved == pytest.approx(top_px + MODEBAR_ROOM)
        elif legend.yref == "container":  # a legend at the bottom edge stays there
            assert fig.layout.legend.y == 0


def test_robustness_axis_is_zoomed_to_the_bars_and_lines():
    """A 0-1 axis drew every bar at about 0.9 and the 5-point band as a hairline."""
    fig = F.robustness_figure(_robustness())
    lo, hi = fig.layout.yaxis.range
    bars = [y for t in fig.data for y in t.y]
    lines = [s.y0 for s in fig.layout.shapes]
    assert lo < min(bars) and hi > max(bars + lines)  # no bar's value or line cut
    assert min(bars) - lo >= 0.02 and hi - max(lines) >= 0.02  # padded
    assert lo > 0.4 and hi - lo < 0.5  # zoomed, not from 0
    # a shift that ruins accuracy still shows, and the axis never goes below 0
    rob = _robustness()
    rob["models"]["custom_cnn"]["shifts"]["gamma"][2]["accuracy"] = 0.01
    assert F.robustness_figure(rob).layout.yaxis.range[0] == 0.0


def test_robustness_axis_never_makes_one_image_look_large():
    """Zoomed to bars within a point of each other, the axis was 6 points tall and a
    one-image move (0.2 points of 490) filled a tenth of it: the axis spans 20 points at least."""
    rob = _robustness()
    for m in rob["models"].values():
        for rows in m["shifts"].values():
            for r in rows:
                r["accuracy"] = m["clean"]["accuracy"] - 0.004
    lo, hi = F.robustness_figure(rob).layout.yaxis.range
    assert hi - lo == pytest.approx(F.robustness.MIN_SPAN)
    assert hi > 0.9  # widened downwards: the top bars and lines keep their room


def test_robustness_words_say_one_image_the_noise_and_the_severe_drops():
    rob = _robustness()
    assert F.noise_sentence(rob) is None  # no image count: nothing to weigh a move by
    rob["n_images"] = 490
    rob["shifts"]["gamma"]["parameter"] = "gamma exponent"
    rob["models"]["custom_cnn"]["shifts"]["jpeg"][2]["accuracy"] = 0.79  # within noise
    rob["models"]["mobilenetv2"]["shifts"]["jpeg"][2]["accuracy"] = 0.5
    # Wilson 95% on 490 images by the closed form: accuracy 0.8 (392 right) -> ±3.5 points,
    # 0.9 (441 right) -> ±2.7 points; one image = 100 / 490 = 0.20 points
    assert F.noise_sentence(rob) == (
        "One test image = 0.20 points of accuracy. The unshifted accuracy is itself uncertain by "
        "about ±3.5 points for Custom CNN, ±2.7 points for MobileNetV2 (95% Wilson interval on "
        "490 images), so differences of about that size are within noise.")
    assert F.severe_drops_sentence(rob) == (
        "At the severe level the largest drops are: MobileNetV2, jpeg at level = 2: "
        "0.900 → 0.500 (−40.0 points); Custom CNN, gamma at gamma exponent = 2: 0.800 → 0.600 "
        "(−20.0 points); MobileNetV2, gamma at gamma exponent = 2: 0.900 → 0.700 (−20.0 "
        "points).")
    assert F.severe_drops_sentence(rob, most=1).endswith(
        "(−40.0 points). 2 more drops there exceed the noise.")
    assert F.severe_drops_sentence(rob, most=2).endswith(
        "(−20.0 points). 1 more drop there exceeds the noise.")
    for m in rob["models"].values():  # nothing beyond noise
        for rows in m["shifts"].values():
            rows[2]["accuracy"] = m["clean"]["accuracy"] - 0.01
    assert F.severe_drops_sentence(rob) == ("At the severe level no shift lowers accuracy by "
                                            "more than the noise above.")
    # the hover names the parameter and its value at each severity
    fig = F.robustness_figure(rob)
    assert fig.data[2].customdata[0][0] == "gamma exponent = 2"
    assert "(severe: %{customdata[0]})" in fig.data[2].hovertemplate
    table = F.levels_table(rob)
    assert table.set_index("shift").loc["gamma"][["parameter", "mild", "moderate", "severe"]
                                                 ].tolist() == ["gamma exponent", "1.2", "1.5",
                                                                "2"]
    assert F.levels_table({"models": {}}) is None


def test_robustness_figure_missing_parts():
    rob = _robustness()
    # a shift only one model has, and a severity missing: gaps, not errors
    rob["models"]["custom_cnn"]["shifts"]["blur"] = [{"accuracy": 0.7}]
    del rob["models"]["mobilenetv2"]["shifts"]["jpeg"][2]
    del rob["severities"]
    fig = F.robustness_figure(rob)
    assert list(fig.data[0].x) == ["gamma", "jpeg", "blur"]
    assert fig.data[0].y[2] == pytest.approx(0.7)
    assert math.isnan(fig.data[1].y[2])  # custom_cnn has no moderate blur
    assert math.isnan(fig.data[3].y[2])  # mobilenetv2 has no blur at all
    assert math.isnan(fig.data[5].y[1])  # mobilenetv2 has no severe jpeg
    rob["models"]["mobilenetv2"]["shifts"]["gamma"][0]["tumor_sensitivity"] = None
    F.robustness_figure(rob)  # an undefined sensitivity is shown as n/a
    for bad, message in [
        ({}, "models"), ({"models": {}}, "models"), ("oops", "models"),
        ({"models": {"m": {"clean": {"accuracy": 0.9}, "shifts": {}}}}, "no shifts"),
        ({"models": {"m": {"shifts": {"gamma": []}}}}, "'m' has no 'clean'"),
        ({"models": {"m": {"clean": {}, "shifts": {"gamma": []}}}}, "clean accuracy"),
        ({"models": {"m": {"clean": {"accuracy": 0.9}, "shifts": {"gamma": [
            {"accuracy": "high"}]}}}}, "gamma mild accuracy"),
    ]:
        with pytest.raises(F.FigureDataError, match=message):
            F.robustness_figure(bad)


def test_figures_serialise_to_json():
    """Streamlit sends figures as plotly JSON: every builder's output must serialise."""
    figs = [F.confusion_figure({"labels": CLASSES, "matrix": np.eye(4).tolist()}),
            F.per_class_figure(METRICS), F.ci_figure(METRICS, COMPARISON),
            F.tumour_figure(METRICS), F.reliability_figure(METRICS),
            F.roc_figure({"m": _curves()}), F.sanity_figure(EXPL),
            F.faithfulness_curves_figure(EXPL), F.localisation_figure(EXPL),
            F.robustness_figure(_robustness())]
    for fig in figs:
        assert json.loads(fig.to_json())["data"]


def test_model_label_and_colours():
    assert F.model_label("mobilenetv2") == "MobileNetV2"
    assert F.model_label("efficient_net") == "efficient_net"  # unknown: shown as named
    assert F.model_color("custom_cnn") != F.model_color("mobilenetv2")
    assert F.model_color("x", 0) != F.model_color("y", 1)


def test_copies_sentence():
    old = {"custom_cnn": {"accuracy": 0.9}}  # evaluated before `copies` existed
    assert F.copies_sentence(old) is None
    no_copies = {"custom_cnn": {"accuracy": 0.9, "copies": {
        "n_images": 10, "n_groups": 10, "images_in_copies": 0, "accuracy": 0.9}}}
    assert F.copies_sentence(no_copies) is None  # plain accuracy already counts slices once
    copies = {"n_images": 394, "n_groups": 282, "images_in_copies": 150, "accuracy": 0.648}
    metrics = {"custom_cnn": {"accuracy": 0.657, "copies": copies},
               "mobilenetv2": {"accuracy": 0.777, "copies": {**copies, "accuracy": 0.767}}}
    text = F.copies_sentence(metrics)
    assert text.startswith("The 394 test images are 282 distinct slices")
    assert ("Custom CNN 0.648 (every image counted: 0.657); MobileNetV2 0.767 (every image "
            "counted: 0.777)") in text
    with pytest.raises(F.FigureDataError, match="copies accuracy"):
        F.copies_sentence({"custom_cnn": {"accuracy": 0.9,
                                          "copies": {**copies, "accuracy": "high"}}})


def test_size_group_table_and_gaps():
    old = {"custom_cnn": {"accuracy": 0.9}}  # a run evaluated before the breakdown existed
    assert F.size_group_table(old) is None and F.size_gaps(old) == []
    by_size = {"size": "512x512",
               "common_size": {"n": 32, "accuracy": 0.875, "sensitivity": 1.0,
                               "specificity": None},
               "other_sizes": {"n": 362, "accuracy": 0.577, "sensitivity": 0.95 - SIZE_GAP,
                               "specificity": 0.771}}
    close = {**by_size, "other_sizes": {**by_size["other_sizes"], "sensitivity": 0.95}}
    metrics = {"custom_cnn": {"by_size": by_size}, "mobilenetv2": {"by_size": close}}
    table = F.size_group_table(metrics)
    assert table.shape == (4, 6)
    first = table.iloc[0].to_dict()
    assert first == {"model": "Custom CNN", "images": "512x512 (training's commonest size)",
                     "n": "32", "accuracy": "0.875", "tumour sensitivity": "1.000",
                     "specificity": "n/a"}
    gaps = F.size_gaps(metrics)  # 1.0 - 0.85 is over the gap; 1.0 - 0.95 is not
    assert len(gaps) == 1 and gaps[0].startswith("Custom CNN finds 85% of the tumours")
    bad = {"custom_cnn": {"by_size": {**by_size, "other_sizes": {"accuracy": "high"}}}}
    with pytest.raises(F.FigureDataError, match="other_sizes accuracy"):
        F.size_group_table(bad)


def test_the_comparison_says_by_how_much_and_a_tie_is_no_sameness():
    """A student could not answer "by how much" (the paired interval was in comparison.json
    only), and a tie read "there is no difference to test" though 32 images each way were
    answered right by one model alone."""
    tie = {"models": ["custom_cnn", "mobilenetv2"], "n": 394,
           "table": {"custom_cnn": {"accuracy": 0.749}, "mobilenetv2": {"accuracy": 0.749}},
           "mcnemar": {"p_value": 1.0, "b": 32, "c": 32},
           "verdict": "an older file's sentence",
           "difference": {"models": ["custom_cnn", "mobilenetv2"], "accuracy": 0.0},
           "ci": {"difference": {"accuracy": [-0.041, 0.041]}}}
    said = F.comparison_verdict(tie)
    assert "equally accurate overall (74.9 %)" in said and "no difference to test" not in said
    # the discordant count, when McNemar's record has it: README's sentence is what figures write
    assert said.endswith("each gets 32 images right that the other gets wrong.")
    unknown = F.comparison_verdict({**tie, "mcnemar": {"p_value": 1.0}})
    assert unknown.endswith("each may still get right images the other gets wrong.")
    same = F.comparison_verdict({**tie, "mcnemar": {"p_value": 1.0, "b": 0, "c": 0}})
    assert same.endswith("neither gets an image right that the other gets wrong.")
    assert F.comparison_verdict({"verdict": "an older file's sentence"}) == (
        "an older file's sentence")  # no figures to word it again
    ahead = {**tie, "difference": {"models": ["custom_cnn", "mobilenetv2"],
                                   "accuracy": -0.0612},
             "ci": {"difference": {"accuracy": [-0.0939, -0.0306]}}}
    assert F.difference_sentence(ahead) == (
        "Accuracy, MobileNetV2 minus Custom CNN: +6.1 points (95% paired bootstrap interval "
        "+3.1 to +9.4).")
    assert F.difference_sentence({"difference": {}}) is None


def test_a_temperature_that_made_calibration_worse_is_said():
    """On the official Testing/ run the temperature raised ECE from 0.068 to 0.124; the legend
    said "before calibration" and nothing said it got worse."""
    worse = {"custom_cnn": {"ece": 0.124, "ece_uncalibrated": 0.068},
             "mobilenetv2": {"ece": 0.035, "ece_uncalibrated": 0.067},
             "old": {"ece": 0.05}}  # calibrated before the "before" figure existed
    said = F.scaling_worse_sentences(worse)
    assert len(said) == 1 and said[0].startswith(
        "On these test images temperature scaling made Custom CNN's calibration worse "
        "(ECE 0.068 before, 0.124 after)")


def test_every_headline_figure_is_defined_in_the_glossary():
    """ECE, McNemar, bootstrap, balanced accuracy, macro-F1 and PR AUC were used on the pages
    and defined nowhere (a student's review)."""
    terms = [term.casefold() for term, _ in F.GLOSSARY]
    for _, label in F.HEADLINE_METRICS:
        base = label.split(" (")[0].casefold()
        assert any(base in term for term in terms), label
    for word in ("mcnemar", "bootstrap", "temperature", "sensitivity"):
        assert any(word in term for term in terms), word
    md = F.glossary_markdown()
    assert md.count("\n- **") == len(F.GLOSSARY) - 1 and md.startswith("- **Accuracy**")
