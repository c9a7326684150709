"""Explanation-guided training: the closed-form Grad-CAM penalty, masks that follow augmentation,
and a guided run on phantoms with real mask files."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from pipeline.augment import augmentation_layers
from pipeline.config import ModelConfig
from pipeline.guidance import GuidedTrainer, outside_share
from pipeline.models import build_model


def _gradcam(model: keras.Model, layer: str, x: np.ndarray, cls: np.ndarray,
             score: str = "log_prob") -> np.ndarray:
    """Grad-CAM of log p(cls), or of the explainer's logit, by an explicit GradientTape: the
    definition, no closed form."""
    from pipeline.explain.layers import logits_tensor

    sub = keras.Model(model.input, [model.get_layer(layer).output, logits_tensor(model),
                                    model.output])
    with tf.GradientTape() as tape:
        fmap, logits, probs = sub(tf.constant(x), training=False)
        chosen = (tf.math.log(tf.gather(probs, cls, axis=1, batch_dims=1)) if score == "log_prob"
                  else tf.gather(logits, cls, axis=1, batch_dims=1))
        total = tf.reduce_sum(chosen)
    grads = tape.gradient(total, fmap).numpy()
    alpha = grads.mean(axis=(1, 2))
    return np.maximum(np.einsum("bhwk,bk->bhw", fmap.numpy(), alpha), 0)


@pytest.mark.parametrize("score", ["log_prob", "logit"])  # logit: the map the explainer draws
def test_closed_form_penalty_is_gradcam_share_outside(score):
    built = build_model("custom_cnn", 3, ModelConfig(image_size=32, width=4, depth=3),
                        augment=False)
    model = built.model
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 32, 32, 3)).astype("float32")
    cls = np.array([0, 1, 2, 1])
    allowed = np.zeros((4, 32, 32), "float32")
    allowed[:, 8:24, 4:20] = 1.0  # an off-centre box: 16x16 of the 32x32 input
    cam = _gradcam(model, built.gradcam_layer, x, cls, score)
    cells = cam.shape[1]
    small = allowed.reshape(4, cells, 32 // cells, cells, 32 // cells).mean(axis=(2, 4))
    expected = (cam * (1 - small)).sum(axis=(1, 2)) / (cam.sum(axis=(1, 2)) + 1e-6)
    sub = keras.Model(model.input, [model.get_layer(built.gradcam_layer).output, model.output])
    fmap, probs = sub(x, training=False)
    kernel = model.get_layer("predictions").kernel
    got = outside_share(fmap, probs, np.eye(3)[cls], kernel, allowed, score)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-3, atol=1e-5)
    assert expected.min() > 0 and expected.max() < 1  # not a degenerate case
    other = "logit" if score == "log_prob" else "log_prob"  # the two forms are different maps
    assert not np.allclose(np.asarray(outside_share(fmap, probs, np.eye(3)[cls], kernel,
                                                    allowed, other)), expected, atol=1e-3)
    with pytest.raises(ValueError, match="guidance score"):
        outside_share(fmap, probs, np.eye(3)[cls], kernel, allowed, score="probability")


@pytest.mark.parametrize("score", ["log_prob", "logit"])
def test_an_empty_gradcam_map_costs_the_full_penalty(score):
    """A model can empty its Grad-CAM (all channel evidence negative, cut by the ReLU) instead of
    moving it into the box; that must not count as evidence inside the box."""
    fmap = np.ones((2, 4, 4, 3), "float32")
    kernel = np.array([[-1.0, 1.0], [-1.0, 1.0], [-1.0, 1.0]], "float32")  # class 0: all negative
    y = np.eye(2, dtype="float32")[[0, 1]]
    probs = np.array([[0.5, 0.5], [0.5, 0.5]], "float32")
    allowed = np.zeros((2, 8, 8), "float32")
    allowed[:, :4, :4] = 1.0  # a quarter of the image
    got = np.asarray(outside_share(fmap, probs, y, kernel, allowed, score))
    # class 0's map is empty in both forms (log-prob coefficients y - p = (0.5, -0.5) give
    # channel weights -1): the full penalty; class 1's uniform map has 3/4 outside the box
    np.testing.assert_allclose(got, [1.0, 0.75], atol=1e-4)


def test_geometric_augmentation_moves_the_mask_with_the_image():
    core = build_model("custom_cnn", 2, ModelConfig(image_size=32, width=4, depth=3),
                       augment=False).model
    trainer = GuidedTrainer(core, "gradcam_target", 1.0, augmentation_layers(3, "strong"))
    x = np.zeros((6, 32, 32, 3), "float32")
    x[:, 4:12, 2:10] = 255.0  # a bright square, and the mask exactly on it
    allowed = (x[..., 0] > 0).astype("float32")
    moved = False
    for _ in range(4):
        xa, ma = trainer._augmented(tf.constant(x), tf.constant(allowed))
        bright = np.asarray(xa).mean(axis=-1)
        mask = np.asarray(ma)
        # Wherever the mask is clearly inside, the square is there too (intensity layers change
        # its brightness, erasing may blank parts): compare with the un-erased, dark background.
        inside, outside = mask > 0.9, mask < 0.1
        assert inside.any()
        assert bright[outside].mean() < bright[inside].mean()
        moved |= not np.array_equal(mask > 0.5, allowed > 0.5)
    assert moved  # the geometric layers did transform the mask


@pytest.mark.slow
def test_guided_run_on_phantoms_records_guidance(synth_data, tmp_path):
    from pipeline.artifacts import open_run
    from pipeline.config import profile
    from pipeline.predict import Predictor, predict_files
    from pipeline.schedules import cosine_lr
    from pipeline.train import train_run

    cfg = profile("smoke")
    cfg.masks_dir = str(synth_data / "masks")
    cfg.models["custom_cnn"].guidance = 1.0
    cfg.models["custom_cnn"].augment_strength = "mri"  # every aug layer inside the traced step
    cfg.models["custom_cnn"].guidance_score = "logit"  # the options the shipped recipe leaves off
    cfg.models["custom_cnn"].clip_norm = 1.0
    cfg.models["custom_cnn"].lr_schedule = "cosine"
    cfg.models["custom_cnn"].transplant = 0.5  # composites inside the traced step, too
    cfg.models["custom_cnn"].mixup = 0.2  # and pairs mixed after augmentation
    run = train_run(cfg, synth_data, tmp_path, ["custom_cnn"])
    manifest = json.loads((run / "manifest.json").read_text())
    info = manifest["models"]["custom_cnn"]["guidance"]
    assert info["weight"] == 1.0 and info["layer"] == "gradcam_target"
    assert info["form"] == "Grad-CAM of the true class's logit"
    assert info["transplant"] == 0.5 and info["mixup"] == 0.2
    assert 0 < info["with_tumour_box"] < info["train_images"]  # no-tumour phantoms: head only
    assert not Path(info["masks_dir"]).is_absolute()
    history = json.loads((run / "custom_cnn" / "history.json").read_text())["epochs"]
    assert all(0.0 <= row["outside_share"] <= 1.0 for row in history)
    mc = cfg.models["custom_cnn"]  # each epoch ran at the cosine curve's step for its index
    rate = cosine_lr(mc.learning_rate, mc.epochs)
    assert [row["learning_rate"] for row in history] == pytest.approx(
        [rate(i) for i in range(len(history))], rel=1e-5)
    # The saved model is the plain one: it loads and predicts raw pixels.
    img = next((synth_data / "Testing").rglob("*.png"))
    results, failures = predict_files(Predictor(open_run(run), ["custom_cnn"]), [img])
    assert len(results) == 1 and not failures


def test_cached_views_move_the_mask_with_the_image():
    """Guided fine-tuning caches views of the images; each view's mask must sit on the same
    pixels as its image, through the mirror and the model's own random geometric layers, and
    arrive shrunk to the feature map's size."""
    from pipeline.aug_views import iter_views, shrink_masks

    model = build_model("custom_cnn", 2, ModelConfig(image_size=32, width=4, depth=3),
                        augment=True).model
    x = np.zeros((8, 32, 32, 3), "uint8")
    x[:, 4:14, 2:12] = 255  # a bright square off centre, and the mask exactly on it
    masks = (x[..., 0] > 0).astype("uint8")
    views = list(iter_views(model, x, 5, seed=1, masks=masks))  # at full size
    assert len(views) == 5
    moved = 0
    for v, m in views:
        bright = v.astype("float32").mean(axis=-1)
        assert m.shape == masks.shape and m.dtype == np.float16
        inside, outside = m > 0.9, m < 0.1
        assert bright[inside].mean() > 3 * max(bright[outside].mean(), 1.0)
        moved += not np.array_equal(m > 0.5, masks > 0)
    assert moved >= 3  # the mirror and the random views moved it
    small = list(iter_views(model, x, 5, seed=1, masks=masks, side=(4, 4)))
    assert [s.shape for _, s in small] == [(8, 4, 4)] * 5
    for (_, m), (_, s) in zip(views[:2], small[:2], strict=True):  # the random views differ
        np.testing.assert_allclose(s.astype("float32"),  # between calls (the layers' seeds move)
                                   shrink_masks(m.astype("float32"), (4, 4)).astype("float32"),
                                   atol=2e-3)
    plain = [v for v, m in iter_views(model, x, 2, seed=1)]
    assert all(m is None for _, m in iter_views(model, x, 2, seed=1))
    np.testing.assert_array_equal(plain[1], views[1][0])


@pytest.mark.slow
def test_guided_transfer_fine_tuning_on_phantoms(synth_data, tmp_path):
    """MobileNetV2 is guided in its fine-tuning phase, on cached views with their masks."""
    from pipeline.config import profile
    from pipeline.train import train_run

    cfg = profile("smoke")
    cfg.weights = "none"  # random init is enough to exercise the recipe; no file needed
    cfg.masks_dir = str(synth_data / "masks")
    cfg.models["mobilenetv2"].guidance = 1.0
    run = train_run(cfg, synth_data, tmp_path, ["mobilenetv2"], cache_dir=tmp_path / "c")
    info = json.loads((run / "manifest.json").read_text())["models"]["mobilenetv2"]["guidance"]
    assert info["phases"] == ["finetune"] and info["layer"] == "out_relu"
    assert 0 < info["with_tumour_box"] < info["train_images"]
    history = json.loads((run / "mobilenetv2" / "history.json").read_text())["epochs"]
    fine = [row for row in history if row["phase"] == "finetune"]
    assert fine and all(0.0 <= row["outside_share"] <= 1.0 for row in fine)
    assert all("outside_share" not in row for row in history if row["phase"] == "head")


def test_guidance_refused_for_transfer_models_without_cached_features(synth_data, tmp_path):
    from pipeline.config import profile
    from pipeline.train import train_run

    cfg = profile("smoke")
    cfg.weights = "none"
    cfg.cache_features = False
    cfg.models["mobilenetv2"].guidance = 0.5
    with pytest.raises(ValueError, match="needs cached features"):
        train_run(cfg, synth_data, tmp_path, ["mobilenetv2"], cache_dir=tmp_path / "c")


def test_masks_at_feature_map_size_are_area_shares():
    from pipeline.aug_views import shrink_masks

    masks = np.zeros((300, 28, 28), "uint8")  # more than one chunk of 256
    masks[:, :14, :7] = 1  # the top-left quarter of the top half
    small = shrink_masks(masks, (4, 4))
    assert small.shape == (300, 4, 4) and small.dtype == np.float16
    np.testing.assert_allclose(small[:, :2, 0].astype("float32"), 1.0)
    np.testing.assert_allclose(small[:, 2:, :].astype("float32"), 0.0)
    np.testing.assert_allclose(small.astype("float32").sum(axis=(1, 2)), 16 * 98 / 784)


def test_who_augments_inside_the_model():
    """One rule for `train` and the benchmark's recipe: guided from-scratch training augments
    outside the model (image and mask together), everything else inside."""
    from pipeline.config import TrainConfig
    from pipeline.fit import augment_in_model

    cfg = TrainConfig()
    guided, plain = ModelConfig(guidance=1.0), ModelConfig(guidance=0.0)
    assert not augment_in_model("custom_cnn", guided, cfg)
    assert augment_in_model("custom_cnn", plain, cfg)
    assert augment_in_model("mobilenetv2", guided, cfg)  # its cached views use its own layers
    cfg.cache_features = False
    assert not augment_in_model("mobilenetv2", guided, cfg)
    cfg.augment = False
    assert not augment_in_model("custom_cnn", plain, cfg)


def test_allowed_masks_box_for_boxed_tumours_head_for_the_rest(synth_data):
    from types import SimpleNamespace

    from pipeline.guidance import allowed_masks

    def rec(rel: str) -> SimpleNamespace:
        return SimpleNamespace(path=synth_data / rel, rel=rel)

    tumour = next((synth_data / "Training").glob("glioma*/*.png"))
    healthy = next((synth_data / "Training").glob("no_tumor*/*.png"))
    records = [rec(str(p.relative_to(synth_data))) for p in (tumour, healthy)]
    masks, boxed = allowed_masks(SimpleNamespace(records=records), synth_data / "masks", 64,
                                 crop=True)
    assert masks.shape == (2, 64, 64) and masks.dtype == np.uint8
    assert boxed.tolist() == [True, False]
    assert set(np.unique(masks)) <= {0, 1}
    assert 0 < masks[0].sum() < masks[1].sum()  # a tumour box is smaller than a head


def _first_step_change(clip_norm: float) -> float:
    """Norm of the change of every trainable weight after one guided SGD step (lr 1)."""
    from pipeline.fit import _compile

    mc = ModelConfig(image_size=32, width=4, depth=3, optimizer="sgd", learning_rate=1.0,
                     clip_norm=clip_norm, guidance=1.0)
    built = build_model("custom_cnn", 3, mc, augment=False)
    trainer = GuidedTrainer(built.model, built.gradcam_layer, mc.guidance, augment=[])
    _compile(trainer, mc, mc.learning_rate, 3)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (8, 32, 32, 3)).astype("float32")
    allowed = np.zeros((8, 32, 32), "float32")
    allowed[:, 8:24, 8:24] = 1.0
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 8)]
    before = [w.numpy().copy() for w in built.model.trainable_weights]
    trainer.train_on_batch((x, allowed), y)
    after = [w.numpy() for w in built.model.trainable_weights]
    return float(np.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(after, before, strict=True))))


def test_clip_norm_bounds_each_guided_step():
    # Nesterov SGD's first step moves the weights by 1.9 x lr x gradient, so clipping the
    # gradient's global norm to c bounds the change by 1.9 c. Unclipped, it is far larger.
    assert _first_step_change(0.0) > 0.1
    assert _first_step_change(1e-3) <= 1.9e-3 * 1.001


def test_unknown_guidance_score_is_refused_before_the_mask_pass():
    # refused when the config is built (config_rules), so before any image, mask or model
    with pytest.raises(ValueError, match="guidance_score must be one of log_prob, logit"):
        ModelConfig(guidance=1.0, guidance_score="probability")
