"""Shortcut alarm: the share of heatmap energy outside the head, and phantoms with a planted
class-correlated marker that a model learns instead of the anatomy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline import explain as E
from pipeline import geometry


def test_energy_outside_head_on_toy_arrays() -> None:
    head = np.zeros((8, 8), bool)
    head[2:6, 2:6] = True
    inside = np.zeros((8, 8), np.float32)
    inside[3, 3] = 1.0
    corner = np.zeros((8, 8), np.float32)
    corner[0, 0] = 1.0
    assert E.energy_outside_head(inside, head) == 0.0
    assert E.energy_outside_head(corner, head) == 1.0
    flat = np.ones((8, 8), np.float32)
    assert E.energy_outside_head(flat, head) == pytest.approx(1 - 16 / 64)
    assert np.isnan(E.energy_outside_head(np.zeros((8, 8)), head))
    # a head mask of another size is resized to the heatmap
    assert E.energy_outside_head(corner, np.kron(head, np.ones((4, 4), bool))) == 1.0
    assert E.outside_head_flag(0.51) and not E.outside_head_flag(0.5)
    # all the heat inside: exactly 0 outside and 1 inside, never -1.2e-07 (float32 sums of the
    # two parts in different orders: 29 of 200 such maps went negative)
    big_head = np.zeros((224, 224), bool)
    big_head[10:200, 5:210] = True
    for seed in range(20):
        hm = np.random.default_rng(seed).random((224, 224)).astype(np.float32) * big_head
        assert E.energy_outside_head(hm, big_head) == 0.0
        assert E.energy_in_mask(hm, big_head) == 1.0
    assert not E.outside_head_flag(None) and not E.outside_head_flag(float("nan"))
    assert E.OUTSIDE_HEAD_ALARM == 0.5


def test_top_outside_head_reads_the_hottest_region_not_the_spread() -> None:
    """A map whose hottest 10 % sits in a corner outside the head is flagged even when most of
    its (broad, low) energy is inside, the case the energy share missed; a map hot on the head
    is not flagged even when its low spill covers the border."""
    head = np.zeros((20, 20), bool)
    head[4:16, 4:16] = True  # 144 of 400 pixels: 36 %
    corner = np.full((20, 20), 0.3, np.float32)
    corner[:4, :] = 1.0  # a hot band above the head: 20 % of the map
    assert E.energy_outside_head(corner, head) < 0.8
    assert E.top_outside_head(corner, head) == 1.0 and E.outside_head_flag(1.0)
    centre = np.full((20, 20), 0.5, np.float32)
    centre[6:14, 6:14] = 1.0  # 16 % of the map, on the head
    assert E.energy_outside_head(centre, head) > 0.5  # the spill alone is "mostly outside"
    assert E.top_outside_head(centre, head) == 0.0
    assert not E.outside_head_flag(E.top_outside_head(centre, head))
    assert np.isnan(E.top_outside_head(np.zeros((20, 20)), head))
    assert E.top_outside_head(corner, np.kron(head, np.ones((2, 2), bool))) == 1.0  # resized
    assert E.SHORTCUT_TOP == 0.10
    with pytest.raises(ValueError, match="top"):
        E.top_outside_head(corner, head, top=0)


@pytest.mark.parametrize("floor", [0.0, 0.0025])
def test_top_outside_head_judges_a_focused_map_by_its_heat(floor: float) -> None:
    """A sharp map whose evidence covers less than the top 10 %, the rest at 0 or a faint
    floor (0.25 % of the peak, as a shipped custom CNN's Grad-CAM of a pituitary tumour has),
    is judged by where its heat is: a peak on the head is not flagged however much of the frame
    lies outside the head, and the same peak in a corner is. When the region's pixels counted
    one each, the first map was flagged (its region was nearly the whole frame)."""
    head = np.zeros((20, 20), bool)
    head[8:16, 8:16] = True  # 64 of 400 pixels: most of the frame is outside the head
    on_head = np.full((20, 20), floor, np.float32)
    on_head[11:13, 11:13] = 1.0  # 4 pixels = 1 % of the frame, all on the head
    on_head[12, 12] = 2.0
    assert E.top_outside_head(on_head, head) < 0.2
    assert not E.outside_head_flag(E.top_outside_head(on_head, head))
    off_head = np.full((20, 20), floor, np.float32)
    off_head[0:2, 0:2] = 1.0  # the same peak in a corner
    assert E.top_outside_head(off_head, head) > 0.9
    assert E.outside_head_flag(E.top_outside_head(off_head, head))


def test_head_mask_is_the_crop_blob_and_whole_image_without_a_head() -> None:
    from pipeline.synth import render_phantom

    img, _ = render_phantom("no_tumor", 128, np.random.default_rng(0))
    rgb = np.repeat(img[..., None], 3, axis=2)
    hm = geometry.head_mask(rgb)
    ys, xs = np.nonzero(hm)
    x0, y0, x1, y1 = geometry.crop_box(rgb, margin=0.0)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)
    assert 0.4 < hm.mean() < 0.8 and not hm[0, 0] and hm[64, 64]
    assert geometry.head_mask(np.zeros((32, 32, 3), np.uint8)).all()
    frame = E.head_mask_in_frame(rgb, 64, crop=True)
    assert frame.shape == (64, 64) and frame.dtype == bool and not frame[0, 0] and frame[32, 32]


def test_a_frame_round_the_slice_is_not_head_and_a_map_on_it_is_flagged() -> None:
    """A 3 px white border round a slice (a viewer's export) made the head mask the whole image,
    so a heatmap on the border read as all inside the head (an explanation review). The frame is
    left out of the mask now; the crop is the one the models were trained with, unchanged."""
    from pipeline.synth import render_phantom

    img, _ = render_phantom("no_tumor", 128, np.random.default_rng(0))
    rgb = np.repeat(img[..., None], 3, axis=2)
    framed = rgb.copy()
    framed[:3], framed[-3:], framed[:, :3], framed[:, -3:] = 255, 255, 255, 255
    mask = geometry.head_mask(framed)
    assert not mask[:3].any() and not mask[-3:].any() and not mask[:, :3].any()
    assert (mask == geometry.head_mask(rgb)).mean() > 0.98  # the same head (the blur may differ)
    assert geometry.crop_box(framed) == (0, 0, 128, 128)  # as before: the crop keeps the frame
    on_frame = np.zeros((128, 128), np.float32)
    on_frame[:3] = 1.0
    assert E.outside_head_flag(E.top_outside_head(on_frame, geometry.head_mask(framed)))
    # tissue to every edge (a tightly zoomed slice) is no frame: the review of this rule found
    # a quarter of such a head cut away
    zoomed = np.full((128, 128, 3), 140, np.uint8)
    zoomed[::7] = 90  # some structure, bright to every edge
    assert geometry.head_mask(zoomed).mean() > 0.95
    # a head that touches edges but has no frame round it keeps its outline
    tight = rgb[20:108, 10:118]
    ys, xs = np.nonzero(geometry.head_mask(tight))
    assert xs.min() == 0 or ys.min() == 0 or xs.max() == 107 or ys.max() == 87
    assert geometry.head_mask(tight).mean() > 0.5


def test_marker_is_outside_the_head_inside_the_crop_and_class_specific() -> None:
    from pipeline.synth import CLASSES, render_phantom

    corners = set()
    outside = []
    for ci, label in enumerate(CLASSES):
        for i in range(6):
            plain, mask = render_phantom(label, 128, np.random.default_rng((5, ci, i)))
            marked, mask2 = render_phantom(label, 128, np.random.default_rng((5, ci, i)),
                                           marker=True)
            assert np.array_equal(mask, mask2)  # the marker is not tumour
            diff = marked != plain
            ys, xs = np.nonzero(diff)
            assert diff.sum() > 0 and (marked[diff] == 250).all()
            corners.add((ci, ys.mean() < 64, xs.mean() < 64))
            rgb = np.repeat(marked[..., None], 3, axis=2)
            # the crop keeps the marker, and the head mask leaves it out
            x0, y0, x1, y1 = geometry.crop_box(rgb)
            assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1
            outside.append(1 - geometry.head_mask(rgb)[diff].mean())
    assert len({c[1:] for c in corners}) == 4 and len(corners) == 4  # one corner per class
    assert np.mean(outside) > 0.9


def test_generate_with_marker_records_it(tmp_path: Path) -> None:
    from pipeline.synth import generate

    generate(tmp_path / "m", per_class=2, size=64, seed=1, marker=True, workers=1)
    generate(tmp_path / "p", per_class=2, size=64, seed=1, workers=1)
    assert json.loads((tmp_path / "m" / "synth.json").read_text())["marker"] is True
    assert "marker" not in json.loads((tmp_path / "p" / "synth.json").read_text())
    a = (tmp_path / "m" / "Training" / "glioma_tumor" / "glioma_tumor_0000.png").read_bytes()
    b = (tmp_path / "p" / "Training" / "glioma_tumor" / "glioma_tumor_0000.png").read_bytes()
    assert a != b


# ------------------------------------------------------------ the alarm on trained models

SIZE = 64  # model input side (smoke profile of the custom CNN)
RENDER = 128  # phantoms are drawn at this size, then head-cropped and resized like training


def _phantoms(per_class: int, seed: int, marker: bool) -> tuple[np.ndarray, np.ndarray, list]:
    """Four-class phantoms prepared like training data, labels, and head masks in the frame."""
    from pipeline.synth import CLASSES, render_phantom

    xs, ys, heads = [], [], []
    for ci, label in enumerate(CLASSES):
        for i in range(per_class):
            img, _ = render_phantom(label, RENDER, np.random.default_rng((seed, ci, i)),
                                    marker=marker)
            rgb = np.repeat(img[..., None], 3, axis=2)
            xs.append(geometry.prepare_image(rgb, SIZE, crop=True))
            ys.append(ci)
            heads.append(E.head_mask_in_frame(rgb, SIZE, crop=True))
    return np.stack(xs), np.array(ys), heads


def _shortcut_scores(marker: bool, seed: int = 0,
                     methods: tuple[str, ...] = ("gradcam", "layercam", "layercam-fusion")
                     ) -> dict[str, float]:
    """Test accuracy and, per method, the share of test heatmaps the alarm flags (and the share
    whose energy is mostly outside the head, the former rule) for a smoke-sized registry custom
    CNN trained on phantoms with or without the shortcut marker (same recipe otherwise)."""
    import keras

    from pipeline.config import ModelConfig
    from pipeline.models import build_model

    x_train, y_train, _ = _phantoms(80, seed=11 + seed, marker=marker)
    x_test, y_test, heads = _phantoms(15, seed=50 + seed, marker=marker)
    keras.utils.set_random_seed(seed)
    built = build_model("custom_cnn", 4, ModelConfig(image_size=SIZE, width=8, depth=3),
                        augment=False)  # flips would move the marker to another class's corner
    model = built.model
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(x_train.astype(np.float32), y_train, epochs=25, batch_size=16, verbose=0)
    explainer = E.Explainer(model, built.gradcam_layer)
    out: dict[str, float] = {}
    for method in methods:
        ex = explainer(x_test, method=method)
        pairs = list(zip(ex.heatmaps, heads, strict=True))
        out[method] = float(np.mean([E.outside_head_flag(E.top_outside_head(h, m))
                                     for h, m in pairs]))
        out[f"{method}_energy_rule"] = float(np.mean([E.energy_outside_head(h, m) > 0.5
                                                      for h, m in pairs]))
    out["accuracy"] = float(np.mean(ex.probs.argmax(axis=1) == y_test))
    return out


@pytest.mark.slow
def test_shortcut_alarm_fires_on_marker_models_and_not_on_clean_ones() -> None:
    """The alarm (more than half of the heat in the hottest 10 % outside the head) on models
    trained with and without the class-coded corner marker, 60 test phantoms each.

    Measured over 3 seeds (README, "Shortcut alarm", 2026-12-05): LayerCAM and multi-layer
    LayerCAM flag 100 % of marker models' images and 0 % of clean ones' (targets >= 90 % /
    <= 5 % met); Grad-CAM flags 100 % and 53.3 % (clean not met: this recipe's clean models
    reach only 50-60 % accuracy, and their 16 x 16 Grad-CAMs often peak on the dark frame); the
    former energy rule flagged 58.9 % of the marker models' Grad-CAMs. This test checks seed 0.
    """
    marked = _shortcut_scores(marker=True)
    plain = _shortcut_scores(marker=False)
    print(f"\nshortcut alarm: with marker {marked}; without {plain}")
    assert marked["accuracy"] > 0.9  # the marker alone tells the class
    assert marked["layercam"] >= 0.9 and plain["layercam"] <= 0.05
    assert marked["layercam-fusion"] >= 0.9 and plain["layercam-fusion"] <= 0.05
    assert marked["gradcam"] >= 0.9
    assert marked["gradcam"] > marked["gradcam_energy_rule"]  # the new rule catches more


def test_cli_synth_marker_flag_plants_the_marker_and_says_so(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    res = CliRunner().invoke(app, ["synth", str(tmp_path / "m"), "--per-class", "2", "--size",
                                   "64", "--seed", "1", "--marker", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "with the shortcut marker" in res.output
    assert json.loads((tmp_path / "m" / "synth.json").read_text())["marker"] is True
    readme = (tmp_path / "m" / "README.txt").read_text()
    assert "pipeline/synth/ " in readme and "pipeline/synth.py" not in readme
    assert "--seed 1 --test-fraction 0.2 --marker" in readme


@pytest.mark.slow
def test_the_dashboards_alarm_reads_the_head_in_the_frame_the_model_saw(smoke_run: Path,
                                                                         synth_data: Path) -> None:
    """A card's "outside the head" share is measured on the head as cropped for the model
    (`crop_head`), as explain-eval measures it: a review passed crop=False at the call and no
    test noticed (on 10 `Testing/` images the share moved by 17 points on average)."""
    from dashboard import core, inference
    from pipeline.artifacts import crop_head, open_run
    from pipeline.explain import Explainer
    from pipeline.images import read_image
    from pipeline.predict import Predictor

    run = open_run(smoke_run)
    predictor = Predictor(run)
    explainers = {m: Explainer(model) for m, model in predictor.models.items()}
    # a wide black border: the crop drops it, so the head fills the frame the model sees
    files = sorted((synth_data / "Testing").rglob("*.png"))[:3]
    images = [np.pad(read_image(p), ((80, 80), (120, 120), (0, 0))) for p in files]
    uploads = [core.Upload(p.name, f"alarm-{p.name}", im)
               for p, im in zip(files, images, strict=True)]
    results = inference.explain(run, predictor, explainers, uploads,
                                inference.Settings(method="gradcam"))
    assert not results.errors
    checked = 0
    for m, rs in results.per_model.items():
        assert crop_head(run.model_info(m))  # the smoke models crop, or nothing is tested
        for r, image in zip(rs, images, strict=True):
            head = E.head_mask_in_frame(image, r.heatmap.shape[0], True)
            uncropped = E.head_mask_in_frame(image, r.heatmap.shape[0], False)
            if float(r.heatmap.max()) > 0 and E.top_outside_head(r.heatmap, head) != \
                    E.top_outside_head(r.heatmap, uncropped):
                assert r.outside_head == pytest.approx(E.top_outside_head(r.heatmap, head))
                checked += 1
    assert checked  # at least one map where the two frames give different shares
