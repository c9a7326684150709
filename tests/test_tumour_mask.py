"""The auxiliary tumour-mask task (pipeline/tumour_mask.py): its targets, its loss, and a guided
trainer that learns it without changing the saved model."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import tumour_mask
from pipeline.config import ModelConfig
from pipeline.transplant import DONOR, NEITHER, RECIPIENT


def _regions() -> tuple[np.ndarray, np.ndarray]:
    """32 px evidence regions: a donor's box (rows/cols 8-15), a recipient's and an unboxed
    tumour image's head (all of it), with their roles."""
    allowed = np.zeros((3, 32, 32), "float32")
    allowed[0, 8:16, 8:16] = 1.0
    allowed[1:] = 1.0
    return allowed, np.array([DONOR, RECIPIENT, NEITHER], "int32")


def test_targets_are_the_box_for_donors_empty_for_no_tumour_and_unweighted_otherwise():
    allowed, role = _regions()
    target, weight = (np.asarray(t) for t in tumour_mask.targets(allowed, role, (4, 4)))
    assert target.shape == (3, 4, 4)
    expected = np.zeros((4, 4))
    expected[1, 1] = 1.0  # the 8 px box is one 8 px cell of the 4 x 4 map
    np.testing.assert_allclose(target[0], expected, atol=1e-6)
    assert target[1].max() == 0.0  # no tumour: nothing to draw, though its region is the head
    assert target[2].max() == 0.0
    np.testing.assert_array_equal(weight, [1.0, 1.0, 0.0])


def test_loss_is_the_weighted_mean_of_each_maps_cross_entropy():
    target = np.zeros((2, 2, 2), "float32")
    target[0, 0, 0] = 1.0
    logits = np.zeros((2, 2, 2, 1), "float32")
    logits[1] = 3.0  # the second map is sure of a tumour everywhere
    both = float(tumour_mask.loss(logits, target, np.array([1.0, 1.0], "float32")))
    second = np.log1p(np.exp(3.0))  # -log(1 - sigmoid(3)) at every pixel
    np.testing.assert_allclose(both, (np.log(2.0) + second) / 2, rtol=1e-5)
    first = float(tumour_mask.loss(logits, target, np.array([1.0, 0.0], "float32")))
    np.testing.assert_allclose(first, np.log(2.0), rtol=1e-5)
    assert float(tumour_mask.loss(logits, target, np.zeros(2, "float32"))) == 0.0


def _trainer(segment: float):
    from pipeline.fit import _compile
    from pipeline.guidance import GuidedTrainer
    from pipeline.models import build_model

    mc = ModelConfig(image_size=32, width=4, depth=3, guidance=1.0, segment=segment,
                     learning_rate=1e-2)
    built = build_model("custom_cnn", 3, mc, augment=False)
    trainer = GuidedTrainer(built.model, built.gradcam_layer, mc.guidance, augment=[], seed=0,
                            segment=mc.segment)
    _compile(trainer, mc, mc.learning_rate, 3)
    return built, trainer


def _data() -> tuple[np.ndarray, ...]:
    """Donors with a bright square 'tumour' at one of two places, recipients without one."""
    rng = np.random.default_rng(0)
    x = np.zeros((12, 32, 32, 3), "uint8")
    x[:, 4:28, 4:28] = 80
    allowed = np.ones((12, 32, 32), "uint8")
    role = np.full(12, RECIPIENT, "int32")
    y = np.zeros((12, 3), "float32")
    y[:, 2] = 1.0
    for i in range(8):
        r, c = (6, 6) if i % 2 else (18, 18)
        x[i, r:r + 8, c:c + 8] = 200
        allowed[i] = 0
        allowed[i, r:r + 8, c:c + 8] = 1
        role[i] = DONOR
        y[i] = np.eye(3)[i % 2]
    x = (x + rng.integers(0, 10, x.shape)).astype("uint8")
    return x, allowed, y, role


def test_a_segmenting_trainer_learns_the_box_and_saves_the_plain_classifier():
    from pipeline.guidance import guided_dataset

    built, trainer = _trainer(segment=1.0)
    x, allowed, y, role = _data()
    ds = guided_dataset(x, allowed, y, 12, 0, role)
    logs = trainer.fit(ds, epochs=40, verbose=0).history
    assert logs["mask_loss"][-1] < 0.6 * logs["mask_loss"][0]
    # the head, not part of the model, draws each donor's tumour where it is
    fmap, _ = trainer.features(x.astype("float32"))
    drawn = np.asarray(trainer.mask_head(fmap))[..., 0]
    for i in range(8):
        peak = np.unravel_index(np.argmax(drawn[i]), drawn[i].shape)
        box = np.asarray(tumour_mask.targets(allowed[i:i + 1].astype("float32"),
                                             role[i:i + 1], drawn.shape[1:])[0])[0]
        assert box[peak] > 0, f"image {i}: the drawn peak {peak} is outside its box"
    assert not any("tumour_mask_head" in w.path for w in built.model.weights)
    assert len(trainer.trainable_weights) == len(built.model.trainable_weights) + 2


def test_segment_without_guidance_with_mixup_or_for_a_transfer_model_is_refused(tmp_path):
    from pipeline.config import profile
    from pipeline.train import train_run

    with pytest.raises(ValueError, match="segment needs guidance"):
        ModelConfig(segment=1.0)
    with pytest.raises(ValueError, match="segment needs guidance"):
        ModelConfig(guidance=1.0, segment=1.0, mixup=0.2)
    with pytest.raises(ValueError, match="segment must be >= 0"):
        ModelConfig(guidance=1.0, segment=-1.0)
    cfg = profile("smoke")
    cfg.models["mobilenetv2"].guidance = 1.0
    cfg.models["mobilenetv2"].segment = 1.0
    with pytest.raises(ValueError, match="segment is for from-scratch models"):
        train_run(cfg, tmp_path / "no-such-data", tmp_path / "out", ["mobilenetv2"])


def test_without_segment_the_trainer_has_no_mask_head():
    _, trainer = _trainer(segment=0.0)
    assert trainer.mask_head is None
    assert "mask_loss" not in [m.name for m in trainer.metrics]
