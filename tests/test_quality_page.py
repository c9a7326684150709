"""The Explanation-quality page's figures and sentences (a student's review, 2026-12-05): the
pointing game's centre-of-head baseline, ROAD, what deletion's "removed" means, the chance line,
the sanity check's n and reading line, box naming, and what the boxes cover.

Figures and sentences are pure functions of explanations.json-shaped dicts; `box_facts` reads a
real splits list and a real masks folder written here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dashboard import figures as F
from dashboard import runinfo
from dashboard.figures import quality_text as T
from dashboard.figures.quality import (
    ACCURACY_ROW,
    CENTRE_PATTERN,
    SANITY_READING_LIMIT,
    short_folder,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(ROOT.glob("artifacts/runs/*/*/explanations.json"))


def _expl(**more) -> dict:
    """One model's explanations.json keys the page reads (a 4-class run, 64 faithfulness images)."""
    return {"n": 80, "n_faithfulness": 64, "n_localisation": 40, "method": "gradcam",
            "layer": "gradcam_target", "pointing_game": 0.8, "pointing_game_chance": 0.03,
            "pointing_game_ci": [0.65, 0.9], "energy_in_mask": 0.4,
            "energy_in_mask_chance": 0.03, "deletion_auc": 0.3, "deletion_auc_random": 0.45,
            "insertion_auc": 0.7, "insertion_auc_random": 0.5, "road_morf_auc": 0.27,
            "road_lerf_auc": 0.71, "road_fractions": [0.0, 0.1, 0.3, 0.5, 0.7, 0.9],
            "sanity_rank_correlation": 0.1, "accuracy": 0.875, "baseline": "blur", "steps": 20,
            "curve_fractions": [0.0, 0.5, 1.0], "deletion_curve": [0.9, 0.3, 0.2],
            "deletion_curve_random": [0.9, 0.6, 0.2], "insertion_curve": [0.2, 0.7, 0.9],
            "insertion_curve_random": [0.2, 0.5, 0.9], **more}


def _bars(fig, col: int = 1) -> list:
    axis = "x" if col == 1 else f"x{col}"
    return [t for t in fig.data if t.type == "bar" and t.xaxis == axis]


# ------------------------------------------------------------------------- localisation


def test_the_pointing_game_has_a_centre_of_head_bar_beside_the_random_one():
    expl = {"custom_cnn": _expl(pointing_game_centre=0.234),
            "mobilenetv2": _expl(pointing_game=0.9, pointing_game_centre=0.25)}
    fig = F.localisation_figure(expl)
    cnn, mobile = _bars(fig, 1)
    assert list(cnn.y) == [0.8, 0.03, 0.234]  # heatmap, random location, centre of head
    assert list(mobile.y) == [0.9, 0.03, 0.25]
    assert list(cnn.x) == ["Custom CNN<br>heatmap", "Custom CNN<br>random<br>location",
                           "Custom CNN<br>centre<br>of head"]
    # both baselines grey; the centre's hatched, so the two differ without colour
    assert cnn.marker.color[1] == cnn.marker.color[2] != cnn.marker.color[0]
    assert list(cnn.marker.pattern.shape) == ["", "", CENTRE_PATTERN]
    # the other panels keep one baseline each, and the pointing panel is the widest
    assert all(len(b.y) == 2 for b in _bars(fig, 2))
    widths = [fig.layout[f"xaxis{k}"].domain for k in ("", "2")]
    assert widths[0][1] - widths[0][0] > widths[1][1] - widths[1][0]
    # three panels: the pointing game alone over the full width on a first row (in a third of
    # a laptop's width its six bars' labels turned on their side), and room above the tallest
    # bar for its label (it ran into the panel's title)
    three = F.localisation_figure({m: {**e, "top_in_mask": 0.5, "top_in_mask_chance": 0.03}
                                   for m, e in expl.items()})
    assert tuple(three.layout.xaxis.domain) == (0.0, 1.0)
    assert three.layout.yaxis.domain[0] > three.layout.yaxis2.domain[1]
    assert three.layout.yaxis.range[1] >= 1.15 * max(list(cnn.y) + list(mobile.y))
    assert [len(b.y) for b in _bars(three, 1)] == [3, 3] and len(_bars(three, 3)) == 2
    assert json.loads(fig.to_json())["data"]


def test_an_explanations_json_without_the_centre_still_draws():
    """Files explained before 2026-12-05 have no `pointing_game_centre`: no bar, no error; a
    model whose file has it keeps its bar beside one whose file does not."""
    old = F.localisation_figure({"custom_cnn": _expl(), "mobilenetv2": _expl()})
    assert [len(b.y) for b in _bars(old, 1)] == [2, 2]
    mixed = F.localisation_figure({"custom_cnn": _expl(pointing_game_centre=0.2),
                                   "mobilenetv2": _expl()})
    assert [len(b.y) for b in _bars(mixed, 1)] == [3, 2]
    assert T.centre_sentence({"m": _expl()}) is None
    # a model without boxes has None: drawn as missing, not zero
    none = F.localisation_figure({"m": _expl(pointing_game=None, pointing_game_chance=None,
                                             pointing_game_centre=None)})
    assert all(math.isnan(v) for v in _bars(none, 1)[0].y)


def test_titles_and_caption_say_box_and_name_both_baselines():
    fig = F.localisation_figure({"m": _expl(top_in_mask=0.6, top_in_mask_chance=0.03,
                                            pointing_game_centre=0.2)})
    titles = [a.text.replace("<br>", " ") for a in fig.layout.annotations]
    assert titles == ["Pointing game: peak inside the tumour box",
                      "Heatmap energy inside the tumour box",
                      "Hottest box-sized region inside the tumour box"]
    caption = F.LOCALISATION_CAPTION
    assert "Boxes are rectangles around the tumour, so some healthy tissue counts as inside" \
        in caption
    assert "random location (box area share)" in caption and "centre of head" in caption


def test_centre_sentence_quotes_share_and_count_per_model():
    same = {"custom_cnn": _expl(pointing_game_centre=0.234, n_localisation=342),
            "mobilenetv2": _expl(pointing_game_centre=0.234, n_localisation=342)}
    text = T.centre_sentence(same)
    assert "23% (80 of 342)" in text and "Custom CNN" not in text  # said once when equal
    assert "3%" in text  # the random location beside it
    differ = {"custom_cnn": _expl(pointing_game_centre=0.0, n_localisation=28),
              "mobilenetv2": _expl(pointing_game_centre=0.5, n_localisation=28)}
    assert "Custom CNN: 0% (0 of 28), MobileNetV2: 50% (14 of 28)" in T.centre_sentence(differ)


def test_class_pointing_sentence_counts_each_true_class_s_hits():
    """A student's question: is the heatmap as good for every tumour type? The overall pointing
    game hid that the shipped custom CNN hit 60 % of boxed gliomas and 94 % of meningiomas."""
    rows = ([{"label": "glioma", "pointing_hit": h} for h in (True, False, False)]
            + [{"label": "meningioma", "pointing_hit": True}]
            + [{"label": "no_tumor", "pointing_hit": None}])  # no box: not scored
    text = T.class_pointing_sentence({"custom_cnn": _expl(rows=rows),
                                      "mobilenetv2": _expl(rows=rows[3:])})
    assert text.startswith("Heatmap peak in the box, by the image's true class: ")
    assert ("Custom CNN: glioma 1 of 3 (33%), meningioma 1 of 1 (100%); "
            "MobileNetV2: meningioma 1 of 1 (100%)") in text
    drawn = T.class_pointing_sentence({"custom_cnn": _expl(rows=rows)}, "mask")  # phantoms
    assert drawn.startswith("Heatmap peak in the mask, by the image's true class: ")
    assert "no tumour" not in text
    assert T.class_pointing_sentence({"custom_cnn": _expl()}) is None  # an older file: no rows
    assert T.class_pointing_sentence({"custom_cnn": _expl(rows=rows[4:])}) is None


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_shipped_files_draw_with_their_centre_baseline(path: Path):
    """The shipped explanations.json files were re-measured with the centre baseline: it is the
    share of their boxed rows whose `centre_hit` is true, and the figure draws it."""
    e = json.loads(path.read_text())
    boxed = [r["centre_hit"] for r in e["rows"] if r["pointing_hit"] is not None]
    assert len(boxed) == e["n_localisation"] > 0
    assert e["pointing_game_centre"] == pytest.approx(np.mean(boxed))
    assert list(_bars(F.localisation_figure({e["model"]: e}), 1)[0].y)[2] == \
        pytest.approx(e["pointing_game_centre"])


# ------------------------------------------------------------------- the summary table


def test_summary_names_the_accuracy_s_images_and_shortens_the_masks_folder():
    expl = {"custom_cnn": _expl(masks_dir="../shared/data/brain-tumor-mri-sartaj-boxes/masks",
                                data_dir="../shared/data/brain-tumor-mri-sartaj")}
    table = F.quality_summary(expl, {"custom_cnn": "gradcam_target"})
    assert table.loc[ACCURACY_ROW, "Custom CNN"] == "87.5% of 80"
    # as short as the table's other row names, so that a 1280 px window shows it whole (the
    # caption under the table says that it is not the run's test accuracy)
    assert "explained images" in ACCURACY_ROW
    assert len(ACCURACY_ROW) <= max(len(str(r)) for r in table.index if r != ACCURACY_ROW)
    assert "model accuracy on them" not in table.index
    assert table.loc["masks from", "Custom CNN"] == "…/brain-tumor-mri-sartaj-boxes/masks"
    # inside the dataset, elsewhere, or none
    assert short_folder("data/sartaj/masks", "data/sartaj") == "…/sartaj/masks"
    assert short_folder("/elsewhere/masks", "../shared/data/x") == "/elsewhere/masks"
    assert short_folder(None, "x") == "-" and short_folder("masks", None) == "masks"


# ------------------------------------------------------------------------ faithfulness


def test_faithfulness_caption_reads_baseline_step_and_n_from_the_files():
    caption = T.faithfulness_caption({"m": _expl()}, 4)
    assert "Removed = replaced by a blurred copy" in caption
    assert "5% of the pixels at a time (20 steps)" in caption and "n = 64" in caption
    assert "1/4 = 0.25" in caption
    black = T.faithfulness_caption({"m": _expl(baseline="black", steps=10, n_faithfulness=32)})
    assert "Removed = set to black" in black and "10% of the pixels" in black
    assert "n = 32" in black and "chance" not in black  # no curves, no chance line
    two = T.faithfulness_caption({"custom_cnn": _expl(), "mobilenetv2": _expl(n_faithfulness=8)})
    assert "n = Custom CNN: 64, MobileNetV2: 8" in two
    assert "not recorded" in T.faithfulness_caption({"m": _expl(baseline=None, steps=None)})


def test_baseline_words_cover_every_baseline_explain_eval_knows():
    from pipeline.explain import BASELINES

    assert set(T.BASELINE_WORDS) == set(BASELINES)


@pytest.mark.parametrize("n_classes", [4, 2])
def test_curves_mark_chance_at_one_over_the_number_of_classes(n_classes: int):
    fig = F.faithfulness_curves_figure({"m": _expl()}, n_classes)
    lines = [sh for sh in fig.layout.shapes if sh.y0 == sh.y1]
    assert len(lines) == 2 and {sh.y0 for sh in lines} == {1 / n_classes}  # both panels
    assert f"chance (1/{n_classes})" in [a.text for a in fig.layout.annotations]
    assert not F.faithfulness_curves_figure({"m": _expl()}).layout.shapes  # not asked: none


def test_road_figure_and_caption():
    expl = {"custom_cnn": _expl(), "mobilenetv2": _expl(road_morf_auc=0.34, road_lerf_auc=0.8)}
    assert F.has_road(expl) and not F.has_road({"m": _expl(road_morf_auc=None)})
    fig = F.road_figure(expl)
    morf, lerf = fig.data
    assert list(morf.y) == [0.27, 0.34] and list(lerf.y) == [0.71, 0.8]
    assert "MoRF" in morf.name and "LeRF" in lerf.name
    assert list(morf.x) == ["Custom CNN<br>gap 0.440", "MobileNetV2<br>gap 0.460"]
    caption = T.road_caption(expl)
    assert "noisy linear imputation" in caption and "Rong et al. 2022" in caption
    assert "10%, 30%, 50%, 70%, 90%" in caption and "n = 64" in caption
    assert "larger the gap LeRF − MoRF, the more faithful" in caption
    with pytest.raises(F.FigureDataError, match="road_lerf_auc"):
        F.road_figure({"m": _expl(road_lerf_auc="high")})


# ---------------------------------------------------------------------------- sanity


def test_sanity_caption_states_n_full_randomisation_and_the_reading_line():
    caption = T.sanity_caption({"m": _expl()})
    assert "n = 64" in caption and "full randomisation" in caption
    assert f"±{SANITY_READING_LIMIT:g}" in caption and "rule of thumb" in caption
    assert "Adebayo et al. (2018)" in caption and "no numeric threshold" in caption
    fig = F.sanity_figure({"m": _expl()})
    dashed = sorted(sh.y0 for sh in fig.layout.shapes if sh.line.dash == "dash")
    assert dashed == [-SANITY_READING_LIMIT, SANITY_READING_LIMIT]
    inside = {"custom_cnn": _expl(sanity_rank_correlation=0.27)}
    assert T.sanity_reading(inside) is None
    beyond = {**inside, "mobilenetv2": _expl(sanity_rank_correlation=-0.34)}
    reading = T.sanity_reading(beyond)
    assert reading.startswith("MobileNetV2: -0.34") and "Custom CNN" not in reading
    # images of opposite signs cancel in the mean: the mean size is read too (the shipped
    # main run's custom CNN: mean 0.27, 0.32 ignoring sign)
    signs = {"custom_cnn": _expl(sanity_rank_correlation=0.27, sanity_abs_rank_correlation=0.316)}
    assert T.sanity_reading(signs).startswith("Custom CNN: 0.32 ignoring sign (mean 0.27)")


def test_the_sanity_copy_is_fully_randomised():
    """What the caption says: every weight of the copy explain-eval compares with differs from
    the model's (`randomize_model` with its default, as `explain_model` calls it)."""
    import keras

    from pipeline.explain import randomize_model

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    x = keras.layers.BatchNormalization()(x)
    out = keras.layers.Dense(4, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    for w in model.weights:  # trained-looking: nothing at its initial value
        w.assign(np.random.default_rng(1).normal(size=w.shape).astype("float32") + 3.0)
    copy = randomize_model(model)
    assert len(copy.weights) == len(model.weights)
    assert not any(np.allclose(np.asarray(a), np.asarray(b))
                   for a, b in zip(model.weights, copy.weights, strict=True))


# ------------------------------------------------------------------ what boxes cover


def test_box_coverage_sentence_from_counts():
    expl = {"custom_cnn": _expl(n_localisation=28, localisation_image_sizes={"512x512": 28}),
            "mobilenetv2": _expl(n_localisation=28, localisation_image_sizes={"512x512": 28})}
    text = T.box_coverage_sentence(expl, 289, "figshare", (1942, 1981))
    assert text.startswith("Only 28 of the test split's 289 tumour images have a box, all "
                           "512x512 pixels, and every box comes from a match with the figshare "
                           "collection, the collection 1942 of the 1981 (98%) training tumour "
                           "images were matched to.")
    assert "do not show how the maps behave" in text
    # no source known: no claim about one; several sizes: none named
    plain = T.box_coverage_sentence({"m": _expl(n_localisation=28, localisation_image_sizes={
        "512x512": 20, "256x256": 8})}, 289)
    assert "figshare" not in plain and "pixels" not in plain
    assert T.box_coverage_sentence({"m": _expl(n_localisation=289)}, 289) is None  # all boxed
    assert T.box_coverage_sentence({"m": _expl(n_localisation=0)}, 289) is None


def test_box_facts_count_test_tumours_and_boxed_training_tumours(tmp_path: Path):
    masks = tmp_path / "boxes" / "masks"
    splits = {"train": [{"path": f"Training/glioma/{i}.jpg", "label": "glioma"} for i in range(4)]
              + [{"path": "Training/no_tumor/n.jpg", "label": "no_tumor"}],
              "test": [{"path": "Testing/glioma/t.jpg", "label": "glioma"},
                       {"path": "Testing/pituitary/p.jpg", "label": "pituitary"},
                       {"path": "Testing/no_tumor/n.jpg", "label": "no_tumor"}]}
    assert runinfo.box_facts(splits, masks) == runinfo.BoxFacts(tumour_test=2)  # no folder
    for i in range(3):  # 3 of the 4 training tumours have a box (stem + .png)
        out = masks / "Training" / "glioma" / f"{i}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8), 255, np.uint8)).save(out)
    assert runinfo.box_facts(splits, masks).source is None  # no boxes.csv: no claim
    (masks.parent / "boxes.csv").write_text("path,figshare_class,folder_class\n")
    facts = runinfo.box_facts(splits, masks)
    assert facts == runinfo.BoxFacts(tumour_test=2, source="figshare", train_boxed=(3, 4))


def test_the_recorded_masks_folder_is_found_from_a_clone(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    """explanations.json names its masks relative to the project that measured it
    (../shared/...): from another checkout that path misses, and the page said nothing of the
    boxes' source; the run's dataset's boxes folder with the same names is used instead."""
    from pipeline.explain.masks import BOXES_ENV

    monkeypatch.delenv(BOXES_ENV, raising=False)
    data = tmp_path / "shared" / "data" / "sartaj"
    masks = tmp_path / "shared" / "data" / "sartaj-boxes" / "masks"
    data.mkdir(parents=True)
    masks.mkdir(parents=True)
    project, clone = tmp_path / "project", tmp_path / "exp" / "s1" / "clone"
    project.mkdir()
    clone.mkdir(parents=True)
    recorded = "../shared/data/sartaj-boxes/masks"
    assert runinfo.masks_folder(recorded, project, None) == project / recorded
    assert runinfo.masks_folder(recorded, clone, None) is None  # no dataset to look beside
    assert runinfo.masks_folder(recorded, clone, data) == masks
    # another folder of that dataset's boxes is not taken for the one recorded
    assert runinfo.masks_folder("../shared/data/other/masks", clone, data) is None
    assert runinfo.masks_folder(None, project, data) is None


def test_external_results_table_reads_each_file_as_written():
    from dashboard.figures.external import BASELINES, POINTING, external_table

    assert external_table({}) is None and external_table({"custom_cnn": []}) is None
    table = external_table({"mobilenetv2": [_expl(
        method="layercam-fusion", n_localisation=8, pointing_game=1.0,
        pointing_game_ci=[0.68, 1.0], pointing_game_centre=0.0, n_outside_head_flagged=0,
        source={"folder": "ext2", "overlap_with_training": {"n_exact": 0}})],
        "custom_cnn": [_expl(pointing_game=None, n_localisation=0, source={"name": "x"}),
                       _expl(source={"folder": "ext3", "overlap_with_training": {
                           "checked": True, "n_seen": 3, "n_new": 5}})]})
    first, second, third = table.to_dict("records")
    assert first["Model"] == "MobileNetV2" and first["Method"] == "Multi-layer LayerCAM (fusion)"
    assert first[POINTING] == "1.00 (8 of 8, 0.68–1.00)"
    assert first["Images (with a mask)"] == "80 (8)"
    assert first[BASELINES] == "0.00 / 0.03"  # the centre of the head, then chance
    assert first["Energy in mask"] == "0.40" and first["Flagged outside the head"] == 0
    assert first["Copies of training images"] == "none"
    # no mask, no pointing; an older file without the overlap check says so
    assert second[POINTING] == "–" and second["Folder"] == "x"
    assert second[BASELINES] == "– / 0.03"
    assert second["Copies of training images"] == "not checked"
    # twelve columns on one line each were 1409 px wide at 1280 px: figures that belong
    # together share a column, so the wrapping table fits in ten
    assert len(table.columns) == 10
    # the check of exact and near copies (`n_seen`) is read as the byte check was
    assert third["Copies of training images"] == "3 (not held out)"


def test_masks_are_boxes_on_the_real_runs_and_the_tumour_itself_on_the_phantoms():
    """The per-image table said "mask" on runs whose masks are the Sartaj tumour boxes."""
    # as the shipped runs' explanations.json record them
    assert runinfo.masks_are_boxes("../shared/data/brain-tumor-mri-sartaj-boxes/masks",
                                   "../shared/data/brain-tumor-mri-sartaj")
    assert runinfo.masks_are_boxes("D:\\data\\sartaj-boxes\\masks", "D:\\data\\sartaj")
    # the phantoms' own masks (`<dataset>/masks`), another dataset's boxes, nothing recorded
    assert not runinfo.masks_are_boxes("data/synth/masks", "data/synth")
    assert not runinfo.masks_are_boxes("../data/other-boxes/masks", "../data/sartaj")
    assert not runinfo.masks_are_boxes(None, "data/synth")
    assert not runinfo.masks_are_boxes("masks", "")
    # any folder whose boxes.csv names the collection its boxes came from ($BRAIN_MRI_BOXES)
    facts = runinfo.BoxFacts(tumour_test=2, source="figshare")
    assert runinfo.masks_are_boxes("/anywhere/masks", "data/sartaj", facts)
    assert not runinfo.masks_are_boxes("data/synth/masks", "data/synth",
                                       runinfo.BoxFacts(tumour_test=2))


def test_the_choice_table_of_a_shipped_run_marks_its_default_best_first():
    """explain_choice.json's candidates as the quality page shows them: every scored row,
    best pointing game first, the recorded choice marked once with its own figure."""
    import json
    from pathlib import Path

    from dashboard.figures.choice import CHOSEN, choice_caption, choice_table

    root = Path(__file__).resolve().parents[1] / "artifacts" / "runs" / "20261204-234844-8cf044"
    choices = json.loads((root / "explain_choice.json").read_text())["models"]
    for entry in choices.values():
        table = choice_table(entry, "gradcam_target")
        assert table is not None and len(table) == len(entry["table"])
        shown = [float(x.rstrip("%")) for x in table["pointing game"]]
        assert shown == sorted(shown, reverse=True)
        chosen = table[table[""] == CHOSEN]
        assert len(chosen) == 1
        assert chosen["pointing game"].iloc[0] == f"{entry['pointing_game']:.1%}"
        assert f"Chosen on {entry['n_images']} validation images" in choice_caption(entry)
        # a fusion row names its layer as the deepest of those fused, as the card does
        for row, (_, shown_row) in zip(sorted(entry["table"], key=lambda r: -r["pointing_game"]),
                                       table.iterrows(), strict=True):
            assert shown_row["layer"].startswith("stages fused; deepest: ") == (
                "fusion" in row["method"]), (row, shown_row["layer"])
    assert choice_table({"method": "gradcam"}) is None  # chosen before tables were kept
    assert choice_table({"table": [{"method": "gradcam", "pointing_game": "x"}]}) is None
