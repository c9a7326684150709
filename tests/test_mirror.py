"""Mirror-averaged methods (`pipeline.explain.mirror`): a base method's map of the image averaged
with its map of the mirrored image, flipped back; on real (tiny) Keras models."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from test_explain import random_images, tiny_cnn

from pipeline import explain as E
from pipeline.explain.base import minmax_per_sample
from pipeline.explain.mirror import Mirrored

MIRRORED = [n for n, m in E.REGISTRY.items() if isinstance(m, Mirrored)]
S = 64


def sided_model() -> keras.Model:
    """Class 0 = brightness of the image's left half, class 1 = of its right half (hand-set
    weights): mirroring an image swaps its answer."""
    inp = keras.Input((S, S, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255.0)(inp)
    c1 = keras.layers.Conv2D(1, 1, activation="relu", name="c1")
    x = keras.layers.MaxPooling2D(name="p1")(c1(x))
    c2 = keras.layers.Conv2D(1, 1, activation="relu", name="c2")
    x = c2(x)
    half = S // 4  # of the pooled map's width
    left = keras.layers.GlobalAveragePooling2D()(keras.layers.Cropping2D(((0, 0), (0, half)))(x))
    right = keras.layers.GlobalAveragePooling2D()(keras.layers.Cropping2D(((0, 0), (half, 0)))(x))
    dense = keras.layers.Dense(2, activation="softmax", name="predictions")
    model = keras.Model(inp, dense(keras.layers.Concatenate()([left, right])), name="sided")
    c1.set_weights([np.full((1, 1, 3, 1), 1 / 3, np.float32), np.zeros(1, np.float32)])
    c2.set_weights([np.ones((1, 1, 1, 1), np.float32), np.zeros(1, np.float32)])
    dense.set_weights([np.eye(2, dtype=np.float32) * 20.0, np.zeros(2, np.float32)])
    return model


def sided_images() -> np.ndarray:
    """A bigger square on the left and a smaller one on the right; the second image mirrored."""
    img = np.zeros((S, S, 3), np.uint8)
    img[10:30, 4:24] = 255
    img[40:50, 44:54] = 255
    return np.stack([img, img[:, ::-1]])


def test_three_mirrored_methods_each_twin_of_a_registered_fast_cam() -> None:
    assert MIRRORED == ["hirescam-mirror", "layercam-mirror", "layercam-fusion-mirror"]
    for name in MIRRORED:
        spec = E.REGISTRY[name]
        base = E.REGISTRY[name.removesuffix("-mirror")]
        assert type(spec.base) is type(base) and name == f"{base.name}-mirror"
        assert (spec.needs_layer, spec.cost, spec.class_specific) == (
            base.needs_layer, base.cost, base.class_specific)


@pytest.mark.parametrize("name", MIRRORED)
def test_a_mirrored_map_is_its_base_s_two_maps_averaged(name: str) -> None:
    """The class explained in the mirror is the one resolved on the original image: this model
    answers differently for some mirrored images, so a "predicted class" target passed on as -1
    would explain another class there."""
    ex = E.Explainer(sided_model(), "c2")
    x = sided_images()
    base = name.removesuffix("-mirror")
    plain = ex(x, method=base)
    flipped = x[:, :, ::-1]
    assert plain.targets.tolist() == [0, 1]
    assert ex.predict(flipped).argmax(axis=1).tolist() == [1, 0]  # the case that matters
    twin = ex(flipped, method=base, target=[int(t) for t in plain.targets])
    res = ex(x, method=name)
    np.testing.assert_array_equal(res.targets, plain.targets)
    np.testing.assert_allclose(res.probs, plain.probs, atol=1e-6)  # the original image's
    expected = minmax_per_sample((plain.heatmaps + twin.heatmaps[:, :, ::-1]) / 2).numpy()
    np.testing.assert_allclose(res.heatmaps, expected, atol=1e-5)
    assert res.method == name and res.layer == ex.layer


@pytest.mark.parametrize("name", MIRRORED)
def test_mirroring_the_image_mirrors_the_map(name: str) -> None:
    """What the averaging buys: the map no longer depends on which side of the coarse feature
    grid the image meets (its base's does: checked on the same images)."""
    ex = E.Explainer(tiny_cnn(seed=3))
    x = random_images(4, seed=2)
    target = [int(t) for t in ex.predict(x).argmax(axis=1)]
    mirrored = ex(x, method=name, target=target).heatmaps
    of_flipped = ex(x[:, :, ::-1], method=name, target=target).heatmaps
    np.testing.assert_allclose(of_flipped, mirrored[:, :, ::-1], atol=1e-5)
    base = name.removesuffix("-mirror")
    plain = ex(x, method=base, target=target).heatmaps
    plain_flipped = ex(x[:, :, ::-1], method=base, target=target).heatmaps
    assert np.abs(plain_flipped - plain[:, :, ::-1]).max() > 0.05


def test_the_dashboard_names_the_layers_a_mirrored_fusion_fuses() -> None:
    from dashboard.inference import fused_stages

    ex = E.Explainer(tiny_cnn())
    fused = fused_stages(ex, "c2", "layercam-fusion")
    assert fused == 2  # c2 and the finer c1
    assert fused_stages(ex, "c2", "layercam-fusion-mirror") == fused
    assert fused_stages(ex, "c2", "hirescam-mirror") == 0


def test_the_dashboard_works_out_a_layer_s_words_once_per_explainer(monkeypatch) -> None:
    """Every rerun of the Predict page asked Keras for each of ~190 layer-menu options and
    walked the model for the fusion's stages: 0.08 s a rerun (yappi, 2026-12-07). The words
    are worked out once per explainer; a new explainer (another run) has its own."""
    import dashboard.inference as inf
    from pipeline.explain import layers

    walks: list[str] = []
    real = layers.stage_layers
    monkeypatch.setattr(layers, "stage_layers",
                        lambda model, layer, n=3: walks.append(layer) or real(model, layer, n))
    ex = E.Explainer(tiny_cnn())
    asked: list[str] = []
    get_layer = ex.model.get_layer
    monkeypatch.setattr(ex.model, "get_layer", lambda name: asked.append(name) or get_layer(name))
    first = [inf.layer_text(ex, n) for n in ex.valid_layers]
    assert [inf.layer_text(ex, n) for n in ex.valid_layers] == first
    assert sorted(asked) == sorted(ex.valid_layers)  # once each
    assert inf.fused_stages(ex, "c2", "layercam-fusion") == 2
    assert inf.fused_stages(ex, "c2", "layercam-fusion-mirror") == 2
    assert walks == ["c2"]
    other = E.Explainer(tiny_cnn())
    assert inf.fused_stages(other, "c2", "layercam-fusion") == 2 and walks == ["c2", "c2"]
