"""MixStyle (layers.MixStyle, ModelConfig.mixstyle): feature statistics mixed between batch
partners in training only; the custom CNN carries it in its graph, transfer models only in the
fine-tuning trainer."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from pipeline.config import ModelConfig
from pipeline.layers import MixStyle
from pipeline.models import GRADCAM_LAYER_CUSTOM, build_model


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis=(1, 2)), x.std(axis=(1, 2))


def test_mixstyle_mixes_each_images_statistics_with_a_partners_and_keeps_its_content():
    rng = np.random.default_rng(0)
    # four images, each with its own per-channel gain and offset (its "style")
    x = (rng.normal(size=(4, 8, 8, 3)) * rng.uniform(0.5, 4, (4, 1, 1, 3))
         + rng.uniform(-5, 5, (4, 1, 1, 3))).astype("float32")
    layer = MixStyle(1.0, alpha=0.1, seed=3)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    np.testing.assert_array_equal(np.asarray(MixStyle(0.0, seed=3)(x, training=True)), x)
    out = np.asarray(layer(x, training=True))
    mu, sig = _stats(x)
    mu_o, sig_o = _stats(out)
    # content: each image normalised over its own statistics is unchanged
    np.testing.assert_allclose((out - mu_o[:, None, None]) / sig_o[:, None, None],
                               (x - mu[:, None, None]) / sig[:, None, None], atol=2e-3)
    # style: each image's mean lies between its own and one partner's, for every channel at
    # one shared weight (lam): solve for lam per image and check one partner fits all channels
    fits = 0
    for i in range(4):
        for j in range(4):
            lam = (mu_o[i] - mu[j]) / np.where(mu[i] == mu[j], 1, mu[i] - mu[j])
            if j == i:
                fits += np.allclose(mu_o[i], mu[i], atol=1e-3)
            elif np.ptp(lam) < 1e-3 and -1e-3 <= lam[0] <= 1 + 1e-3:
                np.testing.assert_allclose(sig_o[i], lam[0] * sig[i] + (1 - lam[0]) * sig[j],
                                           rtol=1e-3)
                fits += 1
    assert fits >= 4 and not np.allclose(mu_o, mu, atol=1e-2)  # something was mixed


def test_custom_cnn_carries_mixstyle_after_two_blocks_and_answers_as_without_it(tmp_path):
    cfg = ModelConfig(image_size=32, width=4, depth=3, mixstyle=0.5)
    model = build_model("custom_cnn", 3, cfg).model
    plain = build_model("custom_cnn", 3, ModelConfig(image_size=32, width=4, depth=3)).model
    styles = [layer.name for layer in model.layers if isinstance(layer, MixStyle)]
    assert styles == ["block1_mixstyle", "block2_mixstyle"]
    for name in (GRADCAM_LAYER_CUSTOM, "block2_relu1", "block1_relu1"):  # explained layers
        assert model.get_layer(name).output.shape == plain.get_layer(name).output.shape
    for layer in plain.layers:  # by name: MixStyle's seed state shifts get_weights' order
        layer.set_weights(model.get_layer(layer.name).get_weights())
    xs = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    # training=False: Keras' random augmentation layers are active by default when called
    out = np.asarray(model(xs, training=False))
    np.testing.assert_allclose(out, np.asarray(plain(xs, training=False)), atol=1e-5)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(loaded(xs, training=False)), out, atol=1e-6)
    with pytest.raises(ValueError, match="mixstyle"):
        ModelConfig(mixstyle=1.5)


def test_styled_trainer_trains_the_models_own_weights():
    from pipeline.fit import _styled

    inp = keras.Input((4, 4, 2))
    top = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(inp)))
    assert _styled(top, []) is top
    trainer = _styled(top, [MixStyle(1.0, seed=0)])
    before = [w.copy() for w in top.get_weights()]
    trainer.compile("adam", "categorical_crossentropy")
    x = np.random.default_rng(2).normal(size=(8, 4, 4, 2)).astype("float32")
    trainer.fit(x, keras.utils.to_categorical(np.arange(8) % 3, 3), epochs=2, verbose=0)
    assert any(not np.allclose(a, b) for a, b in zip(before, top.get_weights(), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("guidance", [0.0, 1.0])
def test_transfer_fine_tuning_with_mixstyle_on_phantoms(synth_data, tmp_path, guidance):
    """MobileNetV2 fine-tunes with MixStyle on its cached activations, guided or not; the saved
    model holds no MixStyle layer (it lives in the trainer only)."""
    from pipeline.config import profile
    from pipeline.train import train_run

    cfg = profile("smoke")
    cfg.weights = "none"
    cfg.masks_dir = str(synth_data / "masks")
    cfg.models["mobilenetv2"].guidance = guidance
    cfg.models["mobilenetv2"].mixstyle = 1.0
    run = train_run(cfg, synth_data, tmp_path, ["mobilenetv2"], cache_dir=tmp_path / "c")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["models"]["mobilenetv2"]["mixstyle"] == 1.0
    history = json.loads((run / "mobilenetv2" / "history.json").read_text())["epochs"]
    assert [row for row in history if row["phase"] == "finetune"]
    saved = keras.saving.load_model(run / "mobilenetv2" / "model.keras", safe_mode=True)
    assert not any(isinstance(layer, MixStyle) for layer in saved.layers)
