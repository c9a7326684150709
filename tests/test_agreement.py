"""The two-heatmap rule (`pipeline.explain.agreement`): peaks far apart, its record on a run's
boxed test images, and the warning it puts on a Predict card (`card_flags.heatmaps_apart`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.explain import agreement as A

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "artifacts" / "runs").glob("*/"))


def _row(path: str, hit: bool | None, peak: list[float] | None, target: int = 0) -> dict:
    return {"path": path, "pointing_hit": hit, "peak": peak, "target": target}


def test_peaks_are_apart_only_beyond_the_threshold():
    assert A.peak_distance([0.0, 0.0], [0.3, 0.4]) == pytest.approx(0.5)
    assert A.peaks_apart([0.5, 0.5], [0.5, 0.5 + A.PEAKS_APART * 0.9]) is None
    far = A.peaks_apart([0.5, 0.2], [0.5, 0.2 + A.PEAKS_APART * 1.1])
    assert far == pytest.approx(A.PEAKS_APART * 1.1)
    assert A.peaks_apart(None, [0.1, 0.1]) is None  # an empty map has no peak


def test_record_counts_misses_where_the_peaks_are_apart_and_elsewhere():
    a = [_row("1", True, [0.1, 0.1]), _row("2", False, [0.1, 0.1]), _row("3", True, [0.5, 0.5]),
         _row("4", True, [0.5, 0.5]), _row("5", True, [0.5, 0.5], target=1),
         _row("6", None, [0.5, 0.5]), _row("7", True, None)]
    b = [_row("1", True, [0.9, 0.9]), _row("2", True, [0.8, 0.8]), _row("3", False, [0.52, 0.5]),
         _row("4", True, [0.5, 0.55]), _row("5", True, [0.9, 0.9], target=2),
         _row("6", True, [0.5, 0.5]), _row("7", True, [0.5, 0.5]), _row("8", True, [0.1, 0.1])]
    record = A.apart_record({"custom_cnn": {"rows": a}, "mobilenetv2": {"rows": b}})
    # 1 and 2 apart (2 missed by one model), 3 and 4 together (3 missed); 5 explains two
    # classes, 6 has no box, 7 no peak, 8 one model only: left out
    assert record == {"n_apart": 2, "apart_missed": 1, "n_together": 2, "together_missed": 1}
    assert A.apart_record({"custom_cnn": {"rows": a}}) is None  # one model
    assert A.apart_record({"custom_cnn": {}, "mobilenetv2": {"rows": b}}) is None  # older file


def test_sentences_quote_the_distance_and_the_record():
    record = {"n_apart": 41, "apart_missed": 37, "n_together": 301, "together_missed": 45}
    card = A.apart_sentence(0.31, record)
    assert card.startswith("The two heatmaps point at different places") and "31%" in card
    assert "37 of 41" in card and "45 of 301" in card
    assert "37 of 41" not in A.apart_sentence(0.31)  # no record: the rule alone
    page = A.record_sentence(record, "box")
    assert "41 of 342 test images" in page and "37 of 41 times" in page and "45 of 301" in page
    assert page.startswith("The two heatmaps") and "Predict page warns" in page
    assert f"{A.PEAKS_APART:.0%}" in page


@pytest.mark.parametrize("run", SHIPPED, ids=lambda p: p.name)
def test_shipped_runs_record_what_their_explanations_say(run: Path):
    """The record read from the shipped files: peaks apart meant a miss far more often."""
    expl = {m: json.loads((run / m / "explanations.json").read_text())
            for m in ("custom_cnn", "mobilenetv2")}
    record = A.apart_record(expl)
    assert record is not None and record["n_apart"] >= 1
    apart = record["apart_missed"] / record["n_apart"]
    together = record["together_missed"] / record["n_together"]
    assert apart > 0.5 > together


def _results(peaks: list[tuple[int, int]], targets=(0, 0), default=(True, True),
             crop=(True, True), classes=("glioma", "no_tumor")):
    from dashboard import inference

    per_model = {}
    for m, (y, x), t, d, c in zip(("custom_cnn", "mobilenetv2"), peaks, targets, default, crop,
                                  strict=False):
        heat = np.zeros((33, 33), np.float32)
        heat[y, x] = 1.0
        per_model[m] = [inference.ImageResult(
            np.full((33, 33, 3), 90, np.uint8), heat, np.array([0.8, 0.2]), t, "gradcam",
            "conv", crop=c, outside_head=0.0, unlike_training=False, default=d)]
    return inference.Results(per_model, {}, 0.1, class_names=list(classes),
                             apart_record={"n_apart": 4, "apart_missed": 3, "n_together": 20,
                                           "together_missed": 2})


def test_a_card_warns_when_the_default_maps_of_one_tumour_class_peak_apart():
    from dashboard import card_flags, flags

    far = _results([(16, 2), (16, 30)])  # 28 of 32 pixels apart: 0.875 of the frame
    assert card_flags.heatmaps_apart(far, 0) == pytest.approx(28 / 32)
    _, heatmaps = card_flags.image_flags(far, 0)
    flag = next(f for f in heatmaps if f.kind == "apart")
    assert "88%" in flag and "3 of 4" in flag and set(flag.models) == {"custom_cnn", "mobilenetv2"}
    assert A.APART_MESSAGE in flags.summary_line([flag])
    near = _results([(16, 14), (16, 16)])
    assert card_flags.heatmaps_apart(near, 0) is None
    assert not [f for f in card_flags.image_flags(near, 0)[1] if f.kind == "apart"]


@pytest.mark.parametrize("case", [
    {"default": (True, False)},  # a method the user picked: the rule was not measured on it
    {"targets": (0, 1), "classes": ("glioma", "meningioma")},  # two classes explained
    {"targets": (1, 1)},  # "no tumour" has no tumour to point at
    {"crop": (True, False)},  # frames that show different parts of the image
])
def test_no_warning_where_the_rule_was_not_measured(case: dict):
    from dashboard import card_flags

    assert card_flags.heatmaps_apart(_results([(16, 2), (16, 30)], **case), 0) is None


def test_one_model_gets_no_warning():
    from dashboard import card_flags

    assert card_flags.heatmaps_apart(_results([(16, 2)]), 0) is None


@pytest.mark.slow
def test_explain_tags_captions_and_records_default_maps_that_peak_apart(
        smoke_run: Path, synth_data: Path, tmp_path: Path):
    """`explain` applies the rule image by image (explain.json `peaks_apart`), tags the image's
    last field and explains the tag once; a method the user picks is not the default, so the
    rule stays silent."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    files = sorted(synth_data.glob("Testing/*/*.png"))[::3][:16]

    def explain(out: Path, *extra: str) -> tuple[list[dict], object]:
        done = CliRunner().invoke(app, ["explain", "--run", str(smoke_run), "--out", str(out),
                                        "--target", "glioma", *extra, *map(str, files)])
        assert done.exit_code == 0, done.output
        return json.loads((out / "explain.json").read_text())["images"], done

    rows, done = explain(tmp_path / "default")
    lines = {ln.split("\t")[0]: ln for ln in done.stdout.splitlines() if "\t" in ln}
    tag = f"[{A.APART_MESSAGE}]"
    for row in rows:
        peaks = [v["heatmap"]["peak"] for v in row["models"].values()]
        assert {v["target"] for v in row["models"].values()} == {"glioma"}
        far = A.peak_distance(*peaks) if None not in peaks else 0.0
        assert row["peaks_apart"] == (pytest.approx(far) if far > A.PEAKS_APART else None)
        assert (tag in lines[row["path"]].split("\t")[-1]) is (row["peaks_apart"] is not None)
    apart = [r for r in rows if r["peaks_apart"] is not None]
    assert done.stderr.count(A.APART_MEANING) == (1 if apart else 0)
    print(f"{len(apart)} of {len(rows)} phantoms apart")

    picked, done = explain(tmp_path / "picked", "--method", "hirescam")
    assert all(r["peaks_apart"] is None for r in picked) and tag not in done.stdout


def test_an_overlay_caption_carries_the_warning():
    from pipeline.explain.overlay_text import overlay_caption

    entry = {"predicted": "glioma", "target": "glioma", "method": "gradcam",
             "probs": {"glioma": 0.9, "no_tumor": 0.1}}
    assert overlay_caption("custom_cnn", entry, apart=True)[-1] == (
        f"Warning: {A.APART_MESSAGE}")
    assert not any(A.APART_MESSAGE in ln for ln in overlay_caption("custom_cnn", entry))


def test_a_default_heatmap_s_test_record_for_its_class():
    """Under a default heatmap, how often that model's default maps of the class it explains
    found the tumour on the run's test images (the custom CNN's gliomas: 75 of 124 on the main
    split, where the overall figure was 0.80)."""
    from dashboard import flags
    from dashboard.figures.quality_text import class_pointing_counts

    rows = [{"label": "glioma", "pointing_hit": hit} for hit in (True, False, False)] + [
        {"label": "pituitary", "pointing_hit": True}, {"label": "no_tumor", "pointing_hit": None},
        "damaged"]
    counts = class_pointing_counts(rows)
    assert counts == {"glioma": (1, 3), "pituitary": (1, 1)}
    caption, tooltip = flags.pointing_record_words(flags.PointingRecord(counts), "glioma")
    assert caption == ("Test record of these heatmaps for 'glioma': peak in the box 1 of 3 "
                       "times (33%)")
    assert "more care" in tooltip and "tumour box" in tooltip
    drawn = flags.pointing_record_words(flags.PointingRecord(counts, "mask"), "pituitary")
    assert drawn[0].endswith("peak in the mask 1 of 1 times (100%)")
    assert flags.pointing_record_words(flags.PointingRecord(counts), "no_tumor") is None
    assert flags.pointing_record_words(None, "glioma") is None


@pytest.mark.parametrize("run", SHIPPED, ids=lambda p: p.name)
def test_shipped_runs_give_a_record_per_tumour_class(run: Path):
    from dashboard import records
    from pipeline.artifacts import open_run

    found = records.pointing_records(open_run(run))
    assert set(found) == {"custom_cnn", "mobilenetv2"}
    for record in found.values():  # `Testing/`'s boxes: gliomas and pituitary tumours only
        assert record.region == "box" and {"glioma", "pituitary"} <= set(record.counts) <= {
            "glioma", "meningioma", "pituitary"}


def test_the_report_page_carries_the_record_and_the_warning():
    """The PDF page travels without the card: the default map's record for its class and the
    two-heatmap warning go with it."""
    from dashboard import core, flags, inference, views

    results = _results([(16, 2), (16, 30)])
    results.pointing_records = {"custom_cnn": flags.PointingRecord({"glioma": (75, 124)})}
    upload = core.Upload("x.png", "d" * 64, image=np.zeros((64, 64, 3), np.uint8))
    page = views.report_page(upload, 0, results, ["glioma", "no_tumor"], inference.Settings())
    cnn, mnv2 = page.models
    assert cnn.caption.endswith("Test record of these heatmaps for 'glioma': peak in the box 75 of "
                             "124 times (60%)")
    assert "Test record" not in mnv2.caption  # no record for that model
    assert any(getattr(f, "kind", "") == "apart" for f in page.flags)


def test_about_s_known_limits_say_it_for_two_models_only():
    from dashboard.about_text import known_limits

    two = known_limits(["glioma", "no_tumor"], False, 2)
    assert "default heatmaps point at different places" in two and "both can still miss" in two
    assert "different places" not in known_limits(["glioma", "no_tumor"], False, 1)
