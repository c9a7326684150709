"""Tests for pipeline.explain: heatmaps, overlays, quality metrics, explain-eval and its CLI.

Most tests use tiny functional Keras models built here. One of them, `two_colour_model`, has
hand-set weights so the right answer is known: class 0 looks only at red pixels, class 1 only at
green ones, so a correct explanation of class 0 must peak on the red square.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from pipeline import explain as E

S = 64  # input side of the tiny models


# ------------------------------------------------------------------------------------ fixtures


def two_colour_model(size: int = S) -> keras.Model:
    """Class 0 = mean of the red channel, class 1 = mean of the green channel (hand-set weights).

    The "gradcam_target" 1x1 conv copies red to channel 0 and green to channel 1; the head is
    global average pooling and a scaled identity Dense with softmax.
    """
    inp = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="preprocess")(inp)
    conv = keras.layers.Conv2D(2, 1, activation="relu", name="gradcam_target")
    x = keras.layers.GlobalAveragePooling2D(name="gap")(conv(x))
    dense = keras.layers.Dense(2, activation="softmax", name="predictions")
    model = keras.Model(inp, dense(x), name="two_colour")
    k = np.zeros((1, 1, 3, 2), np.float32)
    k[0, 0, 0, 0] = 1.0  # channel 0 <- red
    k[0, 0, 1, 1] = 1.0  # channel 1 <- green
    conv.set_weights([k, np.zeros(2, np.float32)])
    dense.set_weights([np.eye(2, dtype=np.float32) * 20.0, np.zeros(2, np.float32)])
    return model


def two_colour_image(red_big: bool = True, size: int = S) -> np.ndarray:
    """Black image, a red square top-left and a green square bottom-right (the bigger wins)."""
    img = np.zeros((size, size, 3), np.uint8)
    r, g = (16, 10) if red_big else (10, 16)
    img[4 : 4 + r, 4 : 4 + r, 0] = 255
    img[size - 4 - g : size - 4, size - 4 - g : size - 4, 1] = 255
    return img


def tiny_cnn(num_classes: int = 3, size: int = S, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3), name="image")
    x = keras.layers.RandomFlip("horizontal", name="aug_flip")(inp)
    x = keras.layers.Rescaling(1.0 / 255.0)(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(x)
    x = keras.layers.MaxPooling2D(name="p1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name="tiny")


def random_images(n: int, size: int = S, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype(np.uint8)


def peak_yx(hm: np.ndarray) -> tuple[int, int]:
    y, x = np.unravel_index(int(np.argmax(hm)), hm.shape)
    return int(y), int(x)


# ------------------------------------------------------------------------------ layers, API


def test_conv_layers_last_first_and_skip_preprocessing() -> None:
    names = E.conv_layers(tiny_cnn())
    assert names == ["c2", "p1", "c1"]  # augmentation/rescaling before the first conv left out
    assert E.default_layer(tiny_cnn()) == "c2"
    assert E.default_layer(two_colour_model()) == "gradcam_target"


def test_shapes_ranges_and_default_target_for_every_method() -> None:
    model = tiny_cnn()
    ex = E.Explainer(model)
    x = random_images(3)
    expected_probs = model.predict(x.astype(np.float32), verbose=0)
    for method in E.METHODS:
        res = ex(x, method=method)
        assert res.heatmaps.shape == (3, S, S) and res.heatmaps.dtype == np.float32
        assert np.isfinite(res.heatmaps).all()
        assert res.heatmaps.min() >= 0.0 and res.heatmaps.max() <= 1.0
        assert res.probs.shape == (3, 3)
        np.testing.assert_allclose(res.probs, expected_probs, atol=1e-5)
        np.testing.assert_array_equal(res.targets, expected_probs.argmax(axis=1))
        assert res.method == method
        assert res.layer == (None if method == "smoothgrad" else "c2")


@pytest.mark.parametrize("method", [n for n, m in E.REGISTRY.items() if m.class_specific])
def test_target_choice_points_at_the_right_square(method: str) -> None:
    """Class 0 reads red (top-left square), class 1 reads green (bottom-right square); every
    class-specific method (all registered ones: a class-agnostic one says so and is left out)."""
    np.random.seed(0)  # SmoothGrad's noise comes from numpy's global generator
    ex = E.Explainer(two_colour_model())
    # On this toy model a background pixel's gradient is on in ~half the noisy samples and the
    # square's in all; 40 samples make "on in every sample" by luck (2**-40) impossible.
    ex.smooth_samples = 40
    img = two_colour_image(red_big=True)
    red = img[..., 0] > 0
    green = img[..., 1] > 0
    default = ex(img[None], method=method)
    assert default.targets.tolist() == [0]  # bigger red square -> red class predicted
    assert red[peak_yx(default.heatmaps[0])]
    as_green = ex(img[None], method=method, target=1)
    assert as_green.targets.tolist() == [1]
    assert green[peak_yx(as_green.heatmaps[0])]
    # a per-image list of targets
    both = ex(np.stack([img, img]), method=method, target=[0, 1])
    assert both.targets.tolist() == [0, 1]
    assert red[peak_yx(both.heatmaps[0])] and green[peak_yx(both.heatmaps[1])]


def test_gradcam_matches_tf_keras_vis_reference() -> None:
    """Our compiled Grad-CAM agrees with tf-keras-vis' Gradcam on a softmax-free clone."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    model = tiny_cnn(seed=3)
    x = random_images(2, seed=5).astype(np.float32)
    ours = E.Explainer(model)(x, target=[1, 2]).heatmaps
    # tf-keras-vis' own upsampling (scipy zoom) aligns pixels differently from tf.image.resize,
    # so compare the CAM itself: take its low-resolution map and resize it our way.
    low = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)(
        CategoricalScore([1, 2]), x, penultimate_layer="c2", seek_penultimate_conv_layer=False,
        expand_cam=False, normalize_cam=False)
    assert low.shape == (2, S // 2, S // 2)
    ref = tf.image.resize(np.asarray(low)[..., None], (S, S), method="bilinear")[..., 0].numpy()
    lo, span = ref.min(axis=(1, 2), keepdims=True), np.ptp(ref, axis=(1, 2), keepdims=True)
    expected = np.divide(ref - lo, span, out=np.zeros_like(ref), where=span > 0)  # flat -> 0
    assert expected.max() == pytest.approx(1.0)  # at least one map is not degenerate
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    # the user's model was not modified by either
    assert model.get_layer("predictions").activation.__name__ == "softmax"


@pytest.mark.parametrize("targets", [[1, 2], [0, 0]])
def test_compiled_gradcam_plus_plus_matches_tf_keras_vis(targets: list[int]) -> None:
    """Our compiled Grad-CAM++ against tf-keras-vis' GradcamPlusPlus (which computed it before)
    with the same shifted score: the same low-resolution map once both are min-max normalised
    (tf-keras-vis' exp(score) factor only rescales it), for predicted and other classes."""
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus

    model = tiny_cnn(seed=3)
    x = random_images(2, seed=5).astype(np.float32)
    ex = E.Explainer(model)
    ours = ex(x, method="gradcam++", target=targets).heatmaps
    onehot = tf.one_hot(targets, ex.num_classes)
    low = GradcamPlusPlus(ex.scores_model(), clone=False)(
        lambda out: tf.reduce_sum(out * onehot, axis=-1)
        - tf.stop_gradient(tf.reduce_max(out, axis=-1)), x,
        penultimate_layer="c2", seek_penultimate_conv_layer=False, expand_cam=False,
        normalize_cam=False)
    ref = tf.image.resize(np.asarray(low)[..., None], (S, S), method="bilinear")[..., 0].numpy()
    lo, span = ref.min(axis=(1, 2), keepdims=True), np.ptp(ref, axis=(1, 2), keepdims=True)
    expected = np.divide(ref - lo, span, out=np.zeros_like(ref), where=span > 0)
    assert expected.max() == pytest.approx(1.0)  # at least one map is not degenerate
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    # and it is not Grad-CAM under another name
    assert np.abs(ours - ex(x, target=targets).heatmaps).max() > 0.05


def test_layer_choice_and_errors_name_the_bad_value() -> None:
    ex = E.Explainer(tiny_cnn())
    x = random_images(1)
    assert ex(x, layer="c1").layer == "c1"
    with pytest.raises(ValueError, match=r"layer 'nope' not found.*valid: c2, p1, c1"):
        ex(x, layer="nope")
    with pytest.raises(ValueError, match=r"layer 'nope' not found"):
        E.Explainer(tiny_cnn(), layer="nope")
    with pytest.raises(ValueError, match=r"unknown method 'lime'"):
        ex(x, method="lime")
    with pytest.raises(ValueError, match=r"expected image batch \(N, 64, 64, 3\), got \(64, 64\)"):
        ex(np.zeros((S, S)))
    with pytest.raises(ValueError, match=r"got \(1, 32, 32, 3\)"):
        ex(np.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match=r"target class 7 out of range 0..2"):
        ex(x, target=7)
    with pytest.raises(ValueError, match=r"target has 2 entries for a batch of 1"):
        ex(x, target=[0, 1])


def test_explainer_is_thread_safe_and_deterministic() -> None:
    """Cold start from several threads at once (graphs built while others call), then the
    results must equal serial ones."""
    ex = E.Explainer(tiny_cnn())
    x = random_images(2, seed=9)
    methods = ["gradcam", "gradcam++", "scorecam", "gradcam", "gradcam++", "scorecam"]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(methods))

    def work(i: int, method: str) -> None:
        try:
            barrier.wait()
            results[i] = ex(x, method=method).heatmaps
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, m)) for i, m in enumerate(methods)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, method in enumerate(methods):
        np.testing.assert_allclose(results[i], ex(x, method=method).heatmaps, atol=1e-5)


def test_graph_is_built_once_per_layer() -> None:
    ex = E.Explainer(tiny_cnn())
    gradcam = E.REGISTRY["gradcam"]
    x = random_images(1)
    ex(x)
    fn = gradcam.graph(ex, "c2")
    ex(random_images(4, seed=1))  # another batch size must not rebuild or retrace
    assert gradcam.graph(ex, "c2") is fn
    assert list(ex._cache) == [("gradcam", "c2")]
    ex(x, layer="c1")
    assert set(ex._cache) == {("gradcam", "c2"), ("gradcam", "c1")}
    assert fn.experimental_get_tracing_count() == 1
    ex(x, method="gradcam++")
    ex(x, method="gradcam++", layer="c1")
    assert {("gradcam++", "c2"), ("gradcam++", "c1")} <= set(ex._cache) and len(ex._cache) == 4


def test_tf_function_gradient_flows() -> None:
    """Guards the compiled path: the class score must reach the feature map (non-zero CAM)."""
    ex = E.Explainer(two_colour_model())
    res = ex(two_colour_image()[None], target=0)
    assert res.heatmaps[0].max() == pytest.approx(1.0, abs=1e-3)
    assert isinstance(E.REGISTRY["gradcam"].graph(ex, "gradcam_target"),
                      tf.types.experimental.GenericFunction)


def test_method_registry_names_labels_and_derived_lists() -> None:
    mirrors = ("hirescam-mirror", "layercam-mirror", "layercam-fusion-mirror")
    layer_methods = ("gradcam", "hirescam", "layercam", "fusion", "layercam-fusion",
                     "gradcam++", *mirrors, "scorecam")
    assert (*layer_methods, "smoothgrad") == E.METHODS
    assert layer_methods == E.LAYER_METHODS
    assert E.METHOD_LABELS == {
        "gradcam": "Grad-CAM",
        "hirescam": "HiResCAM",
        "layercam": "LayerCAM",
        "fusion": "Multi-layer Grad-CAM (fusion)",
        "layercam-fusion": "Multi-layer LayerCAM (fusion)",
        "gradcam++": "Grad-CAM++",
        "hirescam-mirror": "HiResCAM, mirror-averaged",
        "layercam-mirror": "LayerCAM, mirror-averaged",
        "layercam-fusion-mirror": "Multi-layer LayerCAM (fusion), mirror-averaged",
        "scorecam": "Score-CAM",
        "smoothgrad": "SmoothGrad (pixel saliency)",
    }
    for name, method in E.REGISTRY.items():
        assert method.name == name and method.cost in ("fast", "slow")
        assert E.get_method(name) is method
        # its own words, not its parent's: the dashboard's help lists every method by them
        assert "summary" in vars(type(method)) and method.summary
    with pytest.raises(ValueError, match=r"unknown method 'lime'; choose one of gradcam, "):
        E.get_method("lime")


def test_a_new_method_is_one_class_and_one_registry_entry(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """The Explainer looks methods up by name: registering a class is all a method needs."""
    from pipeline.explain import methods

    class Centre(methods.Method):
        name, label, needs_layer = "centre", "Centre (test)", False
        summary = "always the middle pixel"

        def __call__(self, explainer: E.Explainer, x: np.ndarray, targets: np.ndarray,
                     layer: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            probs = explainer.predict(x)
            hm = np.zeros(x.shape[:3], np.float32)
            hm[:, x.shape[1] // 2, x.shape[2] // 2] = 1.0
            return hm, probs, np.where(targets < 0, probs.argmax(axis=1), targets)

    monkeypatch.setitem(methods.REGISTRY, "centre", Centre())
    res = E.Explainer(tiny_cnn())(random_images(2), method="centre", target=1)
    assert res.method == "centre" and res.layer is None
    assert res.targets.tolist() == [1, 1] and res.heatmaps[0, S // 2, S // 2] == 1.0
    # the dashboard's help on its method box describes it with the others (it was hand-written)
    assert methods.methods_in_words().endswith("; Centre (test): always the middle pixel")


def test_a_class_agnostic_method_names_no_class_in_captions(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """A method whose map ignores the target (Eigen-CAM, say) declares `class_specific = False`:
    captions then say its map is the same for every class instead of "for 'glioma'", which
    would claim it explains that class. Every registered method follows its target (the test
    above checks each), so each keeps the class in its caption."""
    from pipeline.explain import methods
    from pipeline.explain.overlay_text import overlay_caption

    class Agnostic(methods.Method):
        name, label, needs_layer, class_specific = "agnostic", "Agnostic (test)", False, False
        summary = "the same map whatever the class"

    monkeypatch.setitem(methods.REGISTRY, "agnostic", Agnostic())
    assert all(m.class_specific for n, m in E.REGISTRY.items() if n != "agnostic")
    entry = {"predicted": "glioma", "target": "glioma", "probs": {"glioma": 0.9, "no_tumor": 0.1}}
    agnostic = overlay_caption("custom_cnn", {**entry, "method": "agnostic"})[1]
    assert agnostic == "Heatmap: agnostic (class-agnostic: the same map for every class)"
    assert "glioma" not in agnostic
    assert overlay_caption("custom_cnn", {**entry, "method": "gradcam"})[1] == (
        "Heatmap: Grad-CAM for 'glioma'")
    # the dashboard's card and report page say the same (views.explained)
    from types import SimpleNamespace

    from dashboard.views import explained
    shown = SimpleNamespace(method="agnostic", target=0, layer=None, layer_words=None)
    assert explained(shown, ["glioma"])[1] == "(class-agnostic: the same map for every class)"
    assert explained(SimpleNamespace(**{**vars(shown), "method": "gradcam"}),
                     ["glioma"])[1] == "for 'glioma'"
    # an older run's method the registry no longer knows keeps the class, as every method did
    assert methods.target_words("eigencam-2025", "glioma") == "for 'glioma'"


@pytest.mark.slow
@pytest.mark.parametrize("name,size", [("custom_cnn", 64), ("mobilenetv2", 96)])
def test_every_method_on_registry_models_also_after_save_and_load(
    name: str, size: int, tmp_path: Path
) -> None:
    from pipeline.config import ModelConfig
    from pipeline.models import build_model

    built = build_model(name, 4, ModelConfig(image_size=size, width=8, depth=3), weights="none")
    path = tmp_path / "model.keras"
    built.model.save(path)
    loaded = keras.saving.load_model(path, compile=False, safe_mode=True)
    x = random_images(2, size=size, seed=2)
    before = E.Explainer(built.model, built.gradcam_layer)
    after = E.Explainer(loaded, built.gradcam_layer)
    assert after.layer == built.gradcam_layer
    after.smooth_samples = 4  # SmoothGrad's cost is linear in samples; 4 suffice for shapes
    for method in E.METHODS:
        res = after(x, method=method, target=[0, 3])
        assert res.heatmaps.shape == (2, size, size)
        assert res.heatmaps.min() >= 0.0 and res.heatmaps.max() <= 1.0
        assert res.targets.tolist() == [0, 3]
    np.testing.assert_allclose(after(x).heatmaps, before(x).heatmaps, atol=1e-4)
    np.testing.assert_allclose(after(x).probs, before(x).probs, atol=1e-5)


# ------------------------------------------------------------------------------ rendering


def test_render_overlay_blends_resizes_and_outlines() -> None:
    img = np.full((100, 120, 3), 80, np.uint8)
    hm = np.zeros((10, 12), np.float32)
    hm[2:5, 3:6] = 1.0
    assert np.array_equal(E.render_overlay(img, hm, alpha=0.0), img)
    full = E.render_overlay(img, hm, alpha=1.0)
    assert np.array_equal(full, E.heatmap_to_rgb(hm, size=(100, 120)))
    half = E.render_overlay(img, hm, alpha=0.4)
    assert half.shape == (100, 120, 3) and half.dtype == np.uint8
    assert not np.array_equal(half, img)
    outlined = E.render_overlay(img, hm, alpha=0.4, outline_top_percent=5)
    white = np.all(outlined == 255, axis=2)
    assert white.any() and not np.all(half == 255, axis=2).any()
    ys, xs = np.nonzero(white)  # the contour surrounds the hot block (rows 20-50, cols 30-60)
    assert ys.min() >= 10 and ys.max() <= 60 and xs.min() >= 20 and xs.max() <= 70
    with pytest.raises(ValueError, match="unknown colormap 'nope'"):
        E.render_overlay(img, hm, colormap="nope")
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\], got 1.5"):
        E.render_overlay(img, hm, alpha=1.5)
    with pytest.raises(ValueError, match=r"image must be \(H, W, 3\), got shape \(100, 120\)"):
        E.render_overlay(img[..., 0], hm)


def test_heatmap_to_rgb_colours_low_and_high_differently() -> None:
    hm = np.array([[0.0, 1.0]], np.float32)
    rgb = E.heatmap_to_rgb(hm, "jet")
    assert rgb.shape == (1, 2, 3)
    assert rgb[0, 0, 2] > rgb[0, 0, 0]  # jet: low = blue
    assert rgb[0, 1, 0] > rgb[0, 1, 2]  # high = red


def _lightness(rgb: np.ndarray) -> np.ndarray:
    """CIE L* (0-100) of sRGB uint8 colours."""
    c = rgb.astype(np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    y = lin @ np.array([0.2126, 0.7152, 0.0722])
    return np.where(y > 216 / 24389, 116 * np.cbrt(y) - 16, y * 24389 / 27)


def _deuteranopia(rgb: np.ndarray) -> np.ndarray:
    """sRGB colours as seen with deuteranopia (Machado et al., 2009, severity 1), on linear RGB."""
    m = np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                  [-0.011820, 0.042940, 0.968881]])
    c = rgb.astype(np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    out = np.clip(lin @ m.T, 0, 1)
    return np.round(255 * np.where(out <= 0.0031308, 12.92 * out,
                                   1.055 * out ** (1 / 2.4) - 0.055)).astype(np.uint8)


def test_the_heatmap_colours_get_lighter_from_low_to_high_also_for_colour_blind_eyes() -> None:
    """With jet the peak (red) was darker than the middle (yellow), and with deuteranopia a
    dark olive: the hottest place read as a hole. Every page's map must rise in lightness."""
    ramp = E.heatmap_to_rgb(np.linspace(0, 1, 256, dtype=np.float32)[None, :])[0]
    for seen in (ramp, _deuteranopia(ramp)):
        light = _lightness(seen)
        assert np.all(np.diff(light) > -1.0)  # never darker by more than rounding
        assert light[-1] - light[0] > 60 and np.argmax(light) >= 250  # the peak is the lightest


def test_the_tumour_box_colour_is_none_of_the_heatmap_s() -> None:
    """The box was green, the colour of viridis' upper middle: it must stand out on any map."""
    from dashboard.views import BOX_COLOUR

    ramp = E.heatmap_to_rgb(np.linspace(0, 1, 256, dtype=np.float32)[None, :])[0].astype(int)
    assert np.min(np.abs(ramp - np.array(BOX_COLOUR)).sum(axis=1)) > 200


def test_to_png_round_trips() -> None:
    img = random_images(1, size=20)[0]
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(E.to_png(img), np.uint8), 1),
                           cv2.COLOR_BGR2RGB)
    assert np.array_equal(decoded, img)
    grey = cv2.imdecode(np.frombuffer(E.to_png(np.eye(5, dtype=np.float32)), np.uint8), 0)
    assert grey[0, 0] == 255 and grey[0, 1] == 0
    with pytest.raises(ValueError, match="got shape"):
        E.to_png(np.zeros((2, 2, 2, 2)))


def test_heatmap_stats() -> None:
    hm = np.zeros((11, 21), np.float32)
    hm[5, 20] = 1.0
    st = E.heatmap_stats(hm)
    assert st["peak"] == [0.5, 1.0]
    assert st["spread"] == pytest.approx(0.0)
    assert st["area_above_half"] == pytest.approx(1 / hm.size)
    flat = E.heatmap_stats(np.ones((8, 8)))
    assert flat["spread"] == pytest.approx(1.0) and flat["area_above_half"] == 1.0
    assert flat["centroid"] == pytest.approx([0.5, 0.5])


# -------------------------------------------------------------------------------- metrics


def test_pointing_game_and_energy() -> None:
    hm = np.zeros((10, 10), np.float32)
    hm[2, 3] = 1.0
    hm[7, 7] = 0.5
    mask = np.zeros((10, 10), np.uint8)
    mask[1:4, 2:5] = 255
    assert E.pointing_game(hm, mask) is True
    assert E.pointing_game(hm, 255 - mask) is False
    assert E.energy_in_mask(hm, mask) == pytest.approx(1.0 / 1.5)
    # mask at another resolution is resized (nearest) to the heatmap
    big = cv2.resize(mask, (40, 40), interpolation=cv2.INTER_NEAREST)
    assert E.pointing_game(hm, big) is True
    with pytest.raises(ValueError, match="non-empty mask"):
        E.pointing_game(hm, np.zeros_like(mask))
    assert np.isnan(E.energy_in_mask(np.zeros((10, 10)), mask))


def test_the_centre_baseline_points_at_the_head_s_centroid() -> None:
    """A map peaking at the head's centre hits a box there, misses one elsewhere; an
    off-centre head moves the point with it, and a frame with no head falls back on its
    centre. The summary's `pointing_game_centre` is the share of boxed rows it hits."""
    from pipeline.explain.scoring import _image_row, _summary

    head = np.zeros((20, 20), bool)
    head[2:13, 4:17] = True  # centroid (7, 10)
    centre_box = np.zeros((20, 20), np.uint8)
    centre_box[7, 10] = 255  # that one pixel
    far_box = np.zeros((20, 20), np.uint8)
    far_box[15:19, 0:4] = 255
    frame_centre = np.zeros((20, 20), np.uint8)
    frame_centre[9, 9] = 1
    assert E.head_centre_hit(head, centre_box) is True
    assert E.head_centre_hit(head, far_box) is False
    assert E.head_centre_hit(head, frame_centre) is False  # the head's centre, not the frame's
    assert E.head_centre_hit(np.zeros((20, 20), bool), frame_centre) is True
    # a box at another resolution is resized (nearest) to the head mask, as in pointing_game
    big = cv2.resize(centre_box, (80, 80), interpolation=cv2.INTER_NEAREST)
    assert E.head_centre_hit(head, big) is True
    with pytest.raises(ValueError, match="non-empty mask"):
        E.head_centre_hit(head, np.zeros((20, 20), np.uint8))

    def predict(x: np.ndarray) -> np.ndarray:
        p = x.mean(axis=(1, 2, 3)) / 255.0
        return np.stack([p, 1.0 - p], axis=1)

    image = np.full((20, 20, 3), 100, np.uint8)
    hm = np.zeros((20, 20), np.float32)
    hm[16, 1] = 1.0  # the map itself points at the far box: its hit is not the baseline's
    rows = [_image_row(predict, image, hm, hm, np.array([0.6, 0.4]), 0, m, 4, "blur", 0,
                       head)[0] for m in (centre_box, far_box, far_box, None)]
    assert [r["centre_hit"] for r in rows] == [True, False, False, None]
    assert [r["pointing_hit"] for r in rows] == [False, True, True, None]
    summary = _summary(rows)
    assert summary["pointing_game_centre"] == pytest.approx(1 / 3)  # unboxed rows left out
    assert summary["pointing_game"] == pytest.approx(2 / 3)


def test_top_in_mask_ranks_pixels_and_ignores_the_contrast_curve() -> None:
    rng = np.random.default_rng(0)
    hm = rng.random((20, 20)).astype(np.float32) * 0.5
    mask = np.zeros((20, 20), np.uint8)
    mask[2:6, 3:8] = 1  # 20 pixels
    hm[2:6, 3:7] += 0.6  # 16 of them are among the 20 hottest; the other 4 hottest are outside
    hm[10, 10:14] = 0.99
    assert E.top_in_mask(hm, mask) == pytest.approx(16 / 20)
    # a sharper curve moves energy into the box but not the hottest region
    assert E.top_in_mask(hm ** 3, mask) == pytest.approx(16 / 20)
    assert E.energy_in_mask(hm ** 3, mask) > E.energy_in_mask(hm, mask) + 0.1
    # a random map scores about the mask's area share (chance)
    noise = np.mean([E.top_in_mask(rng.random((20, 20)), mask) for _ in range(200)])
    assert noise == pytest.approx(20 / 400, abs=0.02)
    assert np.isnan(E.top_in_mask(np.zeros((20, 20)), mask))
    assert np.isnan(E.top_in_mask(hm, np.zeros_like(mask)))


def test_an_empty_heatmap_points_nowhere() -> None:
    """An all-zero map (Grad-CAM cut to nothing by its ReLU) has no peak: argmax would say
    pixel (0, 0) and "hit" a mask that covers the corner."""
    from pipeline.explain.scoring import _image_row, _summary

    empty = np.zeros((10, 10), np.float32)
    corner = np.zeros((10, 10), np.uint8)
    corner[:3, :3] = 1
    assert E.is_empty(empty) and not E.is_empty(np.pad(np.ones((1, 1)), 2))
    assert E.pointing_game(empty, corner) is False
    stats = E.heatmap_stats(empty)
    assert stats["empty"] is True and stats["peak"] is None
    hm = empty.copy()
    hm[1, 1] = 1.0
    assert E.heatmap_stats(hm)["peak"] == [pytest.approx(1 / 9)] * 2
    assert E.pointing_game(hm, corner) is True

    def predict(x: np.ndarray) -> np.ndarray:
        p = x.mean(axis=(1, 2, 3)) / 255.0
        return np.stack([p, 1.0 - p], axis=1)

    image = np.full((10, 10, 3), 100, np.uint8)
    head = np.ones((10, 10), bool)
    rows = [_image_row(predict, image, h, hm, np.array([0.6, 0.4]), 0, corner, 4, "blur", 0,
                       head)[0] for h in (empty, hm)]
    assert [r["empty_heatmap"] for r in rows] == [True, False]
    # the empty map misses and puts nothing in the box; it is not left out of the mean
    assert rows[0]["pointing_hit"] is False and rows[0]["energy_in_mask"] == 0.0
    assert rows[0]["top_in_mask"] == 0.0
    assert rows[1]["energy_in_mask"] == pytest.approx(1.0)
    assert rows[1]["top_in_mask"] == pytest.approx(1 / 9)  # one hot pixel of the 9 in the box
    for r in rows:
        r.update(path="x.png", label="a", correct=True)
    summary = _summary(rows)
    assert summary["n_empty_heatmaps"] == 1
    assert summary["energy_in_mask"] == pytest.approx(0.5)
    assert summary["top_in_mask"] == pytest.approx(1 / 18)
    assert summary["top_in_mask_chance"] == pytest.approx(9 / 100)
    assert summary["pointing_game"] == pytest.approx(0.5)
    lo, hi = summary["pointing_game_ci"]  # 1 hit of 2: Wilson's interval is wide, about 0.5
    assert 0.0 < lo < 0.2 and 0.8 < hi < 1.0 and lo + hi == pytest.approx(1.0)


def test_deletion_insertion_on_a_known_predictor() -> None:
    """The 'model' only looks at the top-left quadrant's brightness: deleting it first must
    drop the score faster than deleting the bottom-right first or a random order."""
    calls = []

    def predict(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        p = x[:, :16, :16].mean(axis=(1, 2, 3)) / 255.0
        return np.stack([p, 1.0 - p], axis=1)

    img = np.full((32, 32, 3), 200.0, np.float32)
    good = np.zeros((32, 32), np.float32)
    good[:16, :16] = 1.0
    bad = good[::-1, ::-1].copy()
    d, ins, dauc, iauc = E.deletion_insertion(predict, img, good, 0, steps=8, baseline="black")
    assert calls == [18]  # one batched call
    assert d.shape == ins.shape == (9,)
    assert d[0] == pytest.approx(200 / 255) and d[-1] == pytest.approx(0.0)
    assert ins[0] == pytest.approx(0.0) and ins[-1] == pytest.approx(200 / 255)
    _, _, dauc_bad, iauc_bad = E.deletion_insertion(predict, img, bad, 0, steps=8,
                                                    baseline="black")
    _, _, dauc_rnd, _ = E.deletion_insertion(predict, img, E.random_heatmap((32, 32), 1), 0,
                                             steps=8, baseline="black")
    assert dauc < dauc_rnd < dauc_bad
    assert iauc > iauc_bad
    with pytest.raises(ValueError, match="unknown baseline 'grey'"):
        E.deletion_insertion(predict, img, good, 0, baseline="grey")


def test_deletion_of_a_real_heatmap_beats_random_on_the_two_colour_model() -> None:
    model = two_colour_model()
    ex = E.Explainer(model)
    img = two_colour_image()
    hm = ex(img[None], target=0).heatmaps[0]
    _, _, dauc, iauc = E.deletion_insertion(ex.predict, img, hm, 0, baseline="black")
    rnd = [E.deletion_insertion(ex.predict, img, E.random_heatmap((S, S), s), 0,
                                baseline="black") for s in range(3)]
    assert dauc < min(r[2] for r in rnd)
    assert iauc > max(r[3] for r in rnd)


def test_randomize_model_reinitialises_reproducibly() -> None:
    model = tiny_cnn(seed=1)
    w_before = [w.copy() for w in model.get_weights()]
    r1 = E.randomize_model(model, seed=3)
    r2 = E.randomize_model(model, seed=3)
    r3 = E.randomize_model(model, seed=4)
    assert [layer.name for layer in r1.layers] == [layer.name for layer in model.layers]
    k = model.get_layer("c2").get_weights()[0]
    assert not np.allclose(r1.get_layer("c2").get_weights()[0], k)
    np.testing.assert_array_equal(r1.get_layer("c2").get_weights()[0],
                                  r2.get_layer("c2").get_weights()[0])
    assert not np.allclose(r1.get_layer("c2").get_weights()[0],
                           r3.get_layer("c2").get_weights()[0])
    for a, b in zip(model.get_weights(), w_before, strict=True):  # original untouched
        np.testing.assert_array_equal(a, b)
    cascade = E.randomize_model(model, seed=3, top_layers=1)  # only the Dense head
    np.testing.assert_array_equal(cascade.get_layer("c2").get_weights()[0], k)
    assert not np.allclose(cascade.get_layer("predictions").get_weights()[0],
                           model.get_layer("predictions").get_weights()[0])


def test_spearman() -> None:
    a = np.arange(100, dtype=np.float32).reshape(10, 10)
    assert E.spearman(a, a) == pytest.approx(1.0)
    assert E.spearman(a, -a) == pytest.approx(-1.0)
    assert np.isnan(E.spearman(a, np.ones((10, 10))))


# ----------------------------------------------------------------------- masks and eval


def test_prepare_mask_follows_the_head_crop() -> None:
    """A red lesion drawn into the image lands where the prepared mask says it is."""
    from pipeline import geometry

    img = np.zeros((200, 160, 3), np.uint8)
    cv2.ellipse(img, (90, 110), (50, 70), 0, 0, 360, (120, 120, 120), -1)  # off-centre head
    mask = np.zeros((200, 160), np.uint8)
    cv2.circle(mask, (110, 80), 12, 255, -1)
    img[mask > 0] = (255, 0, 0)
    x0, y0, x1, y1 = E.head_box(img)
    assert x0 > 20 and y0 > 20 and x1 < 160 and y1 < 200  # the black border was cropped
    prepared = geometry.prepare_image(img, 64, crop=True)
    lesion = (prepared[..., 0] > 180) & (prepared[..., 1] < 80)
    pm = E.prepare_mask(mask, img, 64, crop=True)
    assert pm.shape == (64, 64) and pm.dtype == bool
    iou = (pm & lesion).sum() / (pm | lesion).sum()
    assert iou > 0.7
    uncropped = E.prepare_mask(mask, img, 64, crop=False)
    assert (uncropped & lesion).sum() / (uncropped | lesion).sum() < 0.5
    # another aspect ratio is refused, sizes as WxH (the image is 160 wide, 200 high)
    with pytest.raises(ValueError, match=r"mask is 10x10 pixels, its image 160x200"):
        E.prepare_mask(np.zeros((10, 10)), img, 64, crop=True)
    # the same ratio at half size is resized: the same lesion as the full-size mask
    half = cv2.resize(mask, (80, 100), interpolation=cv2.INTER_NEAREST)
    again = E.prepare_mask(half, img, 64, crop=True)
    assert (again & pm).sum() / (again | pm).sum() > 0.7


def _check_explanations_json(data: dict, n_max: int) -> None:
    keys = ("pointing_game", "energy_in_mask", "deletion_auc", "deletion_auc_random",
            "insertion_auc", "insertion_auc_random", "sanity_rank_correlation", "n", "method",
            "layer", "n_localisation", "pointing_game_chance", "pointing_game_centre",
            "deletion_curve",
            "insertion_curve", "deletion_curve_random", "insertion_curve_random", "rows")
    for key in keys:
        assert key in data, key
    # up to n_max scored in full, then every other image with a mask for localisation only
    assert 0 < data["n_faithfulness"] <= min(n_max, data["n"])
    assert len(data["rows"]) == data["n"]
    assert sum(r["faithfulness_scored"] for r in data["rows"]) == data["n_faithfulness"]
    assert data["n_localisation"] > 0  # phantoms have masks
    assert 0.0 <= data["pointing_game"] <= 1.0
    assert 0.0 < data["pointing_game_chance"] < 0.2
    assert 0.0 <= data["pointing_game_centre"] <= 1.0
    # each row's decoded size; the boxed rows' sizes counted (commonest first)
    sizes = data["localisation_image_sizes"]
    assert sum(sizes.values()) == data["n_localisation"]
    assert list(sizes.values()) == sorted(sizes.values(), reverse=True)
    boxed = [r["image_size"] for r in data["rows"] if r["pointing_hit"] is not None]
    assert {s: boxed.count(s) for s in set(boxed)} == sizes
    assert all(re.fullmatch(r"\d+x\d+", r["image_size"]) for r in data["rows"])
    for key in ("deletion_auc", "insertion_auc", "deletion_auc_random", "insertion_auc_random"):
        assert 0.0 <= data[key] <= 1.0
    assert -1.0 <= data["sanity_rank_correlation"] <= 1.0
    assert len(data["deletion_curve"]) == data["steps"] + 1
    # ROAD beside deletion/insertion, and the shortcut alarm's rule
    assert data["road_fractions"] == [0.0, *E.ROAD_FRACTIONS]
    assert len(data["road_morf_curve"]) == len(data["road_lerf_curve"]) == 6
    for key in ("road_morf_auc", "road_lerf_auc"):
        assert 0.0 <= data[key] <= 1.0
    assert data["road_lerf_minus_morf"] == pytest.approx(
        data["road_lerf_auc"] - data["road_morf_auc"], abs=1e-9)
    assert "hottest 10%" in data["outside_head_rule"]
    row = data["rows"][0]
    for key in ("path", "label", "target", "pointing_hit", "energy_in_mask", "deletion_auc",
                "road_morf_auc", "road_lerf_auc", "top_outside_head", "outside_head_flag"):
        assert key in row


@pytest.mark.slow
def test_explain_eval_on_the_smoke_run(smoke_run: Path) -> None:
    results = E.explain_eval(smoke_run, max_images=8, steps=5, replace=True)
    from pipeline.artifacts import open_run

    run = open_run(smoke_run)
    assert set(results) == set(run.model_names)
    for name in run.model_names:
        data = json.loads((smoke_run / name / "explanations.json").read_text())
        _check_explanations_json(data, 8)
        assert data["layer"] == run.model_info(name)["gradcam_layer"]


@pytest.mark.slow
def test_explain_eval_without_masks_reports_why(smoke_run: Path, tmp_path: Path) -> None:
    # a masks folder the user names that matches no image is an error (a naming mistake),
    # saying where it looked
    with pytest.raises(ValueError, match="no mask in .* it looked for"):
        E.explain_eval(smoke_run, masks_dir=tmp_path, max_images=4, steps=4,
                       models=["custom_cnn"], replace=True)
    # no masks where they are looked for by default: scored without localisation, and said
    from pipeline.artifacts import open_run

    shutil.copytree(smoke_run, tmp_path / "run")  # explain-eval writes into the run
    data = tmp_path / "data"
    shutil.copytree(open_run(smoke_run).data_dir, data,
                    ignore=shutil.ignore_patterns("masks"))
    res = E.explain_eval(tmp_path / "run", data_dir=data, max_images=4, steps=4,
                         models=["custom_cnn"], replace=True)["custom_cnn"]
    assert res["pointing_game"] is None and res["energy_in_mask"] is None
    assert res["pointing_game_ci"] is None
    assert "no masks found" in res["localisation_reason"]
    assert res["deletion_auc"] is not None and res["sanity_rank_correlation"] is not None


@pytest.mark.slow
def test_cli_explain_and_explain_eval(smoke_run: Path, tmp_path: Path) -> None:
    import shutil

    from typer.testing import CliRunner

    from pipeline.artifacts import open_run
    from pipeline.cli import app

    run = open_run(smoke_run)
    test = json.loads((smoke_run / "splits.json").read_text())["test"]
    imgs = [str(run.data_dir / r["path"]) for r in test[:2]]
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(app, ["explain", "--run", str(smoke_run), "--out", str(out),
                              "--method", "gradcam", "--outline", "10", *imgs])
    assert res.exit_code == 0, res.output
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 2 * len(run.model_names)
    report = json.loads((out / "explain.json").read_text())
    assert len(report["images"]) == 2
    for row in report["images"]:
        assert set(row["models"]) == set(run.model_names)
        for m in row["models"].values():
            assert m["predicted"] in run.class_names
            assert 0 <= m["heatmap"]["peak"][0] <= 1
    decoded = cv2.imdecode(np.fromfile(out / pngs[0], np.uint8), 1)
    assert decoded is not None and decoded.ndim == 3

    bad = runner.invoke(app, ["explain", "--run", str(smoke_run), "--out", str(out),
                              "--method", "lime", imgs[0]])
    assert bad.exit_code == 2 and "unknown --method 'lime'" in bad.output
    bad = runner.invoke(app, ["explain", "--run", str(smoke_run), "--out", str(out),
                              "--target", "banana", imgs[0]])
    assert bad.exit_code == 2 and "unknown --target 'banana'" in bad.output
    missing = runner.invoke(app, ["explain", "--run", str(smoke_run), "--out",
                                  str(tmp_path / "out-missing"), "--model", "custom_cnn",
                                  imgs[0], str(tmp_path / "no.png")])
    assert missing.exit_code == 1

    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)  # explain-eval writes into the run: never the fixture
    # a quick check on fewer images than the run's file was measured on replaced it silently:
    # it must be asked for
    n = json.loads((run_dir / "custom_cnn" / "explanations.json").read_text())
    n = n.get("n_faithfulness", n["n"])
    kept = runner.invoke(app, ["explain-eval", "--run", str(run_dir), "--max-images",
                               str(n - 1), "--model", "custom_cnn"])
    assert kept.exit_code == 2 and f"was measured on {n} images" in kept.output, kept.output
    assert "--replace" in kept.output
    res = runner.invoke(app, ["explain-eval", "--run", str(run_dir), "--max-images", "4",
                              "--steps", "4", "--model", "custom_cnn", "--replace"])
    assert res.exit_code == 0, res.output
    assert "custom_cnn/explanations.json" in res.output
    data = json.loads((run_dir / "custom_cnn" / "explanations.json").read_text())
    _check_explanations_json(data, 4)
    bad = runner.invoke(app, ["explain-eval", "--run", str(run_dir), "--model", "resnet"])
    assert bad.exit_code == 2 and "resnet" in bad.output
    bad = runner.invoke(app, ["explain-eval", "--run", str(run_dir), "--model", "custom_cnn",
                              "--max-images", "2", "--layer", "nope", "--replace"])
    assert bad.exit_code == 2 and "layer 'nope' not found" in bad.output
    res = runner.invoke(app, ["explain-eval", "--run", str(run_dir), "--model", "custom_cnn",
                              "--max-images", "2", "--steps", "2", "--layer", "block2_relu2",
                              "--json", "--replace"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["custom_cnn"]["layer"] == "block2_relu2"


# -------------------------------------------------------------- behaviour on phantoms


def _phantom_set(per_class: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray, list]:
    """Tumour (1) vs no tumour (0) phantoms, balanced: three no-tumour images per tumour class
    image. Rendered at 128 px in memory, prepared like training data (head crop + resize), with
    masks prepared the same way."""
    from pipeline import geometry
    from pipeline.synth import CLASSES, render_phantom

    xs, ys, masks = [], [], []
    for ci, label in enumerate(CLASSES):
        tumour = label != "no_tumor"
        for i in range(per_class * (1 if tumour else 3)):
            img, mask = render_phantom(label, 128, np.random.default_rng((seed, ci, i)))
            rgb = np.repeat(img[..., None], 3, axis=2)
            xs.append(geometry.prepare_image(rgb, size, crop=True))
            ys.append(int(tumour))
            masks.append(E.prepare_mask(mask, rgb, size, crop=True) if tumour else None)
    return np.stack(xs), np.array(ys), masks


def _max_pool_cnn(size: int) -> keras.Model:
    """Three conv layers and a global MAX pool: learns "is there a mass anywhere" within a test's
    time budget. (The registry's GAP-headed custom CNN needed ~100 s and 600 images to reach
    0.7 validation accuracy here, too slow for a test; explain-eval covers registry models.)"""
    inp = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255.0)(inp)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="gradcam_target")(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    out = keras.layers.Dense(2, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name="maxpool_cnn")


@pytest.fixture(scope="module")
def trained_phantom_model() -> tuple[keras.Model, np.ndarray, np.ndarray, list]:
    """A small CNN trained (~45 s on 2 busy cores) to tell tumour from no-tumour phantoms."""
    size = 64
    x_train, y_train, _ = _phantom_set(60, seed=1, size=size)
    x_test, y_test, masks = _phantom_set(15, seed=2, size=size)
    keras.utils.set_random_seed(0)
    model = _max_pool_cnn(size)
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    model.fit(x_train.astype(np.float32), y_train, epochs=15, batch_size=16, verbose=0)
    return model, x_test, y_test, masks


def test_the_progress_bar_ends_full_when_fewer_further_images_came_than_estimated() -> None:
    """explain-eval's bar ended at 141/156 (a review): the further images' count is an estimate
    (those whose mask cannot be used drop out). It ends full now, on what was done."""
    model = tiny_cnn()
    x = random_images(2, seed=5).astype(np.float32)
    box = np.zeros((S, S), bool)
    box[4:9, 4:9] = True
    calls: list[tuple[int, int]] = []
    more = iter([(x[:1], np.array([0]), [box], [np.ones((S, S), bool)])])
    E.explain_model(model, x, np.array([0, 1]), [box, None], steps=2,
                    progress=lambda label, done, total: calls.append((done, total)),
                    more=more, n_more=3)
    assert calls[-1][0] == calls[-1][1] == 3 * 2 + 1, calls  # 7 steps done: 7 of 7
    assert all(d <= t for d, t in calls)


@pytest.mark.slow
def test_trained_model_points_at_the_tumour(trained_phantom_model: tuple) -> None:
    """Behaviour: a model that learned the phantoms looks at the mass. The Grad-CAM peak falls
    inside the tumour mask for most correctly classified tumour images (chance ~ 2 %), deletion
    beats a random ranking, and re-initialising the weights destroys the map."""
    model, x, y, masks = trained_phantom_model
    res = E.explain_model(model, x, y, masks, method="gradcam", steps=10, baseline="blur")
    assert res["accuracy"] > 0.6
    assert res["n_localisation_correct"] >= 8
    assert res["pointing_game_chance"] < 0.05
    assert res["pointing_game_correct"] > 0.5
    assert res["pointing_game_correct"] > 10 * res["pointing_game_chance"]
    assert res["energy_in_mask"] > 3 * res["energy_in_mask_chance"]
    tumour_rows = [r for r in res["rows"] if r["pointing_hit"] is not None and r["correct"]]
    dele = np.array([r["deletion_auc"] for r in tumour_rows])
    dele_random = np.array([r["deletion_auc_random"] for r in tumour_rows])
    assert dele.mean() < dele_random.mean()
    assert np.mean(dele < dele_random) > 0.6
    assert res["sanity_rank_correlation"] < 0.5
    # the randomised model's heatmaps do not find the tumour
    rnd = E.explain_model(E.randomize_model(model, seed=1), x, y, masks, steps=2)
    assert rnd["pointing_game"] < res["pointing_game"]


@pytest.mark.data
def test_head_box_and_overlay_on_real_images(real_data: Path) -> None:
    """On real JPEGs the crop is located exactly, a mask follows it, and overlays render."""
    from pipeline import geometry, images

    files = [sorted((real_data / "Training" / c).glob("*.jpg"))[0]
             for c in ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")]
    ex = E.Explainer(tiny_cnn(num_classes=4))
    for f in files:
        img = images.read_image(f)
        x0, y0, x1, y1 = E.head_box(img)
        assert np.array_equal(img[y0:y1, x0:x1], geometry.crop_to_head(img))
        # a mask covering the left half of the crop stays (about) the left half after prepare
        mask = np.zeros(img.shape[:2], np.uint8)
        mask[y0:y1, x0 : x0 + (x1 - x0) // 2] = 1
        pm = E.prepare_mask(mask, img, S, crop=True)
        prepared = geometry.prepare_image(img, S, crop=True)
        side = max(x1 - x0, y1 - y0)
        share = ((x1 - x0) // 2) / side  # padding to square keeps the aspect ratio
        assert abs(pm.mean() - share * (y1 - y0) / side) < 0.05
        res = ex(prepared[None], method="gradcam")
        overlay = E.render_overlay(img, res.heatmaps[0], outline_top_percent=10)
        assert overlay.shape == img.shape


def test_gradient_cams_match_their_definitions():
    """Grad-CAM, HiResCAM and LayerCAM against numpy on a model whose feature map has the
    input's size (so no resizing hides a difference)."""
    import keras
    import tensorflow as tf

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    fmap_layer = keras.layers.Activation("relu", name="conv_relu")(x)
    pooled = keras.layers.GlobalAveragePooling2D()(fmap_layer)
    out = keras.layers.Dense(3, activation="softmax", name="predictions")(pooled)
    model = keras.Model(inputs, out)
    ex = E.Explainer(model, "conv_relu")
    img = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    fm = ex.feature_model("conv_relu")
    with tf.GradientTape() as tape:
        fmap, logits, _ = fm([tf.constant(img)], training=False)
        chosen = tf.argmax(logits, axis=-1)
        total = tf.reduce_sum(tf.gather(logits, chosen, axis=1, batch_dims=1))
    f, g = fmap.numpy(), tape.gradient(total, fmap).numpy()
    expected = {
        "gradcam": np.maximum((f * g.mean(axis=(1, 2), keepdims=True)).sum(-1), 0),
        "hirescam": np.maximum((f * g).sum(-1), 0),
        "layercam": np.maximum((f * np.maximum(g, 0)).sum(-1), 0),
    }
    for method, cam in expected.items():
        lo = cam.min(axis=(1, 2), keepdims=True)
        span = cam.max(axis=(1, 2), keepdims=True) - lo
        want = np.divide(cam - lo, span, out=np.zeros_like(cam), where=span > 0)
        got = ex(img, method=method).heatmaps
        np.testing.assert_allclose(got, want, atol=1e-4, err_msg=method)


def test_smoothgrad_matches_a_plain_gradient_tape_loop() -> None:
    """Our batched, compiled SmoothGrad equals its definition computed one noisy copy at a
    time in eager mode: mean |d score / d input| over copies with noise std = level x the
    image's range, max over channels, min-max per image."""
    from pipeline.explain.smoothgrad import smoothgrad_noise

    model = tiny_cnn(num_classes=3)
    ex = E.Explainer(model)
    ex.smooth_samples, ex.smooth_noise = 5, 0.15
    x = random_images(3, seed=4).astype(np.float32)
    got = ex(x, method="smoothgrad", target=[0, 2, 1])
    assert got.layer is None and got.targets.tolist() == [0, 2, 1]
    noise = smoothgrad_noise(5, (S, S))
    scores = ex.scores_model()
    for i, t in enumerate([0, 2, 1]):
        sigma = 0.15 * (x[i].max() - x[i].min())
        total = np.zeros((S, S, 3), np.float64)
        for k in range(5):
            xi = tf.constant(x[i : i + 1] + noise[k : k + 1] * sigma)
            with tf.GradientTape() as tape:
                tape.watch(xi)
                score = scores([xi], training=False)[0, t]
            total += np.abs(tape.gradient(score, xi).numpy()[0])
        sal = (total / 5).max(axis=-1)
        want = (sal - sal.min()) / (sal.max() - sal.min())
        np.testing.assert_allclose(got.heatmaps[i], want, atol=1e-4)
    # deterministic (fixed noise), and batching does not change an image's map
    again = ex(x[1:2], method="smoothgrad", target=2).heatmaps[0]
    np.testing.assert_allclose(again, got.heatmaps[1], atol=1e-5)
    # more noise, another map: the noise level is really applied
    ex.smooth_noise = 0.5
    assert np.abs(ex(x, method="smoothgrad", target=[0, 2, 1]).heatmaps
                  - got.heatmaps).max() > 0.05


def test_stage_layers_one_per_resolution_and_fusion_is_the_geometric_mean() -> None:
    """Fusion reads the chosen layer and the deepest layer of each finer resolution, and equals
    the geometric mean of those layers' normalised Grad-CAMs (LayerCAMs for layercam-fusion; all
    at the input's size here, so no resizing hides a difference)."""
    inputs = keras.Input((16, 16, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="a")(inputs)
    b = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="b")(a)
    c = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="c")(b)
    pad = keras.layers.ZeroPadding2D(1, name="pad")(c)
    d = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="d")(pad)
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(d))
    model = keras.Model(inputs, out)
    from pipeline.explain.layers import stage_layers

    assert stage_layers(model, "d") == ["d", "c", "b"]  # 4, 8, 16 px; the padding is skipped
    assert stage_layers(model, "d", n=2) == ["d", "c"]
    assert stage_layers(model, "b") == ["b"]  # nothing finer below
    with pytest.raises(ValueError, match="'nope' not found"):
        stage_layers(model, "nope")

    flat = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(b)))
    ex = E.Explainer(flat, "b")
    x = random_images(2, size=16, seed=1)
    got = ex(x, method="fusion", target=[0, 1]).heatmaps
    # "b" and "a" have the same resolution, so fusion of "b" reads "b" alone: its Grad-CAM
    np.testing.assert_allclose(got, ex(x, method="gradcam", target=[0, 1]).heatmaps,
                               atol=1e-3)
    two = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(c)))
    ex2 = E.Explainer(two, "c")
    for fusion, single in (("fusion", "gradcam"), ("layercam-fusion", "layercam")):
        fused = ex2(x, method=fusion, target=[0, 1]).heatmaps
        cams = [ex2(x, method=single, target=[0, 1], layer=n).heatmaps for n in ("c", "b")]
        # (untrained weights: a layer's map may be flat for a class; the deepest's empties it)
        evidence = cams[0].max(axis=(1, 2), keepdims=True) > 0
        cams = [np.where(m.max(axis=(1, 2), keepdims=True) > 0, m, 1.0) for m in cams]
        geo = np.sqrt((cams[0] + 1e-6) * (cams[1] + 1e-6))
        lo, hi = geo.min(axis=(1, 2), keepdims=True), geo.max(axis=(1, 2), keepdims=True)
        want = np.where(evidence, (geo - lo) / np.maximum(hi - lo, 1e-12), 0.0)
        np.testing.assert_allclose(fused, want, atol=2e-3)
    # the two fusions differ on this model: each really fuses its own method's maps
    assert np.abs(ex2(x, method="fusion", target=[0, 1]).heatmaps
                  - ex2(x, method="layercam-fusion", target=[0, 1]).heatmaps).max() > 0.05
    # no evidence for a class at the deepest layer: the fused map is empty, as that layer's is
    # (a flat deepest map counted as ones, and the finer layer alone drew a full map)
    dense = two.layers[-1]
    kernel, bias = dense.get_weights()
    kernel[:, 2] = -np.abs(kernel[:, 2]) - 0.1  # every channel of "c" speaks against class 2
    kernel[:, 0] = np.abs(kernel[:, 0]) + 0.1  # and for class 0
    dense.set_weights([kernel, bias])
    ex3 = E.Explainer(two, "c")
    for fusion, single in (("fusion", "gradcam"), ("layercam-fusion", "layercam"),
                           ("layercam-fusion-mirror", "layercam")):
        assert not ex3(x, method=single, target=2, layer="c").heatmaps.any()
        assert ex3(x, method=single, target=2, layer="b").heatmaps.max() > 0  # "b" is not flat
        assert not ex3(x, method=fusion, target=2).heatmaps.any(), fusion
        assert ex3(x, method=fusion, target=0).heatmaps.max() > 0  # another class keeps its map


def test_noisy_linear_imputation_solves_the_neighbour_average_equations() -> None:
    """Without noise every filled pixel is the weighted mean of its 8 neighbours (1/6 direct,
    1/12 diagonal), kept pixels are untouched, and a linear ramp is filled exactly."""
    from pipeline.explain.imputation import noisy_linear_impute

    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (20, 24, 3))
    gone = np.zeros((20, 24), bool)
    gone[5:12, 6:15] = True
    gone[0, 0] = gone[19, 23] = True  # corners: fewer neighbours
    out = noisy_linear_impute(img, gone, noise=0.0).astype(np.float64)
    np.testing.assert_allclose(out[~gone], img[~gone], atol=1e-3)
    pad = np.pad(out, ((1, 1), (1, 1), (0, 0)))
    wsum = np.pad(np.ones((20, 24)), 1)
    num, den = np.zeros_like(out), np.zeros((20, 24))
    for dy, dx, w in ((-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
                      (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12)):
        num += w * pad[1 + dy : 21 + dy, 1 + dx : 25 + dx]
        den += w * wsum[1 + dy : 21 + dy, 1 + dx : 25 + dx]
    np.testing.assert_allclose(out[gone], (num / den[..., None])[gone], atol=1e-2)
    ramp = np.repeat(np.tile(np.arange(24.0) * 10, (20, 1))[..., None], 3, axis=2)
    np.testing.assert_allclose(noisy_linear_impute(ramp, gone[:, :] & (np.arange(24) > 0),
                                                   noise=0.0)[5:12, 6:15], ramp[5:12, 6:15],
                               atol=1e-3)
    noisy = noisy_linear_impute(img, gone, noise=0.01, seed=1)
    assert 0.5 < float(np.std(noisy[gone] - out[gone])) < 5  # std 0.01 x range ~ 2.5
    with pytest.raises(ValueError, match="at least one kept pixel"):
        noisy_linear_impute(img, np.ones((20, 24), bool))


def test_road_morf_falls_and_lerf_holds_for_the_right_map() -> None:
    """On the two-colour model, the map on the red square (class 0's evidence): removing it
    first (MoRF) kills class 0, removing it last (LeRF) keeps it; a map on the green square
    does the opposite."""
    model = two_colour_model()
    predict = E.Explainer(model).predict
    img = two_colour_image(red_big=True).astype(np.float32)
    right = np.zeros((S, S), np.float32)
    right[4:20, 4:20] = 1.0
    wrong = np.zeros((S, S), np.float32)
    wrong[S - 14 : S - 4, S - 14 : S - 4] = 1.0
    good = E.road(predict, img, right, target=0)
    bad = E.road(predict, img, wrong, target=0)
    assert good["fractions"] == [0.0, 0.1, 0.3, 0.5, 0.7, 0.9]
    assert len(good["morf_curve"]) == len(good["lerf_curve"]) == 6
    assert good["morf_curve"][0] == good["lerf_curve"][0] > 0.5  # the image itself
    assert good["morf_auc"] < bad["morf_auc"] - 0.2
    assert good["lerf_auc"] > good["morf_auc"] + 0.2
    with pytest.raises(ValueError, match="fractions"):
        E.road(predict, img, right, target=0, fractions=(0.5, 1.0))


def test_compiled_scorecam_matches_tf_keras_vis() -> None:
    """Our compiled Score-CAM against tf-keras-vis' Scorecam (the implementation it replaced)
    with the same channel cap, one image at a time: the same map up to interpolation details."""
    from tf_keras_vis.scorecam import Scorecam

    model = tiny_cnn(num_classes=3, seed=3)
    ex = E.Explainer(model, "c2")
    ex.scorecam_max_channels = 8  # of 16: the std-based channel choice is exercised
    x = random_images(3, seed=5).astype(np.float32)
    got = ex(x, method="scorecam", target=[0, 1, 2])
    assert got.targets.tolist() == [0, 1, 2] and got.heatmaps.shape == (3, S, S)
    vis = Scorecam(ex.scores_model(), clone=False)
    for i, t in enumerate([0, 1, 2]):
        ref = np.asarray(vis(lambda out, t=t: out[:, t], x[i : i + 1], penultimate_layer="c2",
                             seek_penultimate_conv_layer=False, max_N=8))[0]
        ref = (ref - ref.min()) / (ref.max() - ref.min())
        assert np.corrcoef(ref.ravel(), got.heatmaps[i].ravel())[0, 1] > 0.95
        assert np.abs(ref - got.heatmaps[i]).mean() < 0.05


@pytest.mark.parametrize(("bad", "why"), [
    (lambda x: np.full_like(x, np.nan), "takes finite pixel values, got NaN or infinite ones$"),
    (lambda x: np.where(x > 200, np.inf, x), "takes finite pixel values"),
    (lambda x: x + 300, r"takes raw 0-255 pixels, got values from 300 to \d+$"),
    (lambda x: x - 50, r"takes raw 0-255 pixels, got values from -50 to \d+$"),
])
def test_the_explainer_refuses_pixels_no_image_has(bad, why: str) -> None:
    """All-NaN, infinite and out-of-range batches got heatmaps peaking at 1.0 and answers."""
    ex = E.Explainer(tiny_cnn())
    x = random_images(1).astype(np.float32)
    assert x.min() == 0
    for call in (ex, ex.predict):
        with pytest.raises(ValueError, match=f"^tiny's explainer {why}"):
            call(bad(x))


def test_the_explainer_takes_road_s_imputed_images_and_a_blank_one() -> None:
    """ROAD's noisy imputation leaves pixels a few levels outside 0-255 in the batches it
    scores through `Explainer.predict`; a deletion curve ends on a blank image."""
    from pipeline.explain.imputation import noisy_linear_impute

    img = np.zeros((S, S, 3), np.float32)
    img[16:48, 16:48] = 255
    removed = np.zeros((S, S), bool)
    removed[10:54, 10:54] = True
    road = noisy_linear_impute(img, removed, seed=0)[None]
    assert road.min() < 0  # what the slack is for
    ex = E.Explainer(tiny_cnn())
    for x in (road, np.zeros((1, S, S, 3), np.float32)):
        assert ex.predict(x).shape == (1, 3) and ex(x).heatmaps.shape == (1, S, S)
