"""Tumour transplants (pipeline/transplant.py): composites appended to a batch, labelled and
boxed as the donor, blended at the recipient's brightness; and a guided step that uses them."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from pipeline.config import ModelConfig
from pipeline.transplant import DONOR, NEITHER, RECIPIENT, roles, transplant


def _one_eager_epoch(trainer: keras.Model, ds) -> tuple[np.ndarray, dict]:
    """The labels the loss saw in a one-batch epoch (eager, so they can be read), and the
    history."""
    seen: list[np.ndarray] = []
    real = trainer.compute_loss

    def spy(x=None, y=None, y_pred=None, sample_weight=None, **kw):
        seen.append(np.asarray(y))
        return real(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, **kw)

    trainer.compute_loss = spy
    trainer.run_eagerly = True
    logs = trainer.fit(ds, epochs=1, verbose=0).history
    trainer.compute_loss = real
    (labels,) = seen
    return labels, logs


def _batch() -> tuple[np.ndarray, ...]:
    """A donor (dim head, bright 8x8 'tumour' with its box), a no-tumour recipient (brighter
    head) and an image of a third kind, 32 px."""
    x = np.zeros((3, 32, 32, 3), "float32")
    x[:, 4:28, 4:28] = np.array([60.0, 120.0, 90.0])[:, None, None, None]  # heads: donor 60,
    # recipient 120
    x[0, 12:20, 12:20] = 150.0  # the donor's tumour
    allowed = np.zeros((3, 32, 32), "float32")
    allowed[0, 10:22, 10:22] = 1.0  # the donor's box
    allowed[1:, 4:28, 4:28] = 1.0  # heads for the rest
    y = np.eye(3, dtype="float32")[[0, 2, 1]]  # glioma, no_tumor, meningioma
    role = np.array([DONOR, RECIPIENT, NEITHER], "int32")
    weight = np.array([1.0, 3.0, 2.0], "float32")
    return x, allowed, y, role, weight


def test_roles_mark_boxed_images_as_donors_and_no_tumour_images_as_recipients():
    got = roles(np.array([True, False, False]), ["glioma", "no_tumor", "glioma"], "no_tumor")
    assert got.tolist() == [DONOR, RECIPIENT, NEITHER]


def test_a_composite_is_the_recipient_with_the_donors_tumour_and_label():
    x, allowed, y, role, weight = _batch()
    out_x, out_m, out_y, out_w = (np.asarray(a) for a in transplant(
        x, allowed, y, role, 1.0, keras.random.SeedGenerator(0), weight))
    assert out_x.shape == (4, 32, 32, 3)  # the originals stay, one composite appended
    np.testing.assert_array_equal(out_x[:3], x)
    comp = out_x[3]
    np.testing.assert_array_equal(out_y[3], y[0])  # labelled as the donor
    np.testing.assert_array_equal(out_m[3], allowed[0])  # evidence belongs in the donor's box
    assert out_w[3] == weight[0]  # and weighed as the donor's class
    # The tumour arrives at the recipient's brightness (donor head 60 -> recipient 120: gain 2,
    # then clipped to 255), the head far from the box is the recipient's own.
    assert comp[16, 16, 0] == pytest.approx(255.0)
    assert comp[5, 5, 0] == pytest.approx(120.0)


@pytest.mark.parametrize("rate,keep", [(0.0, [DONOR, RECIPIENT, NEITHER]),
                                       (1.0, [NEITHER, RECIPIENT, NEITHER]),
                                       (1.0, [DONOR, NEITHER, NEITHER])])
def test_no_composite_without_rate_donor_or_recipient(rate, keep):
    x, allowed, y, _, weight = _batch()
    out_x, _, out_y, out_w = transplant(x, allowed, y, np.array(keep, "int32"), rate,
                                        keras.random.SeedGenerator(0), weight)
    assert np.asarray(out_x).shape[0] == 3 and np.asarray(out_y).shape[0] == 3
    assert np.asarray(out_w).shape == (3,)


def test_a_guided_step_trains_on_the_composites():
    from pipeline.fit import _compile
    from pipeline.guidance import GuidedTrainer, guided_dataset
    from pipeline.models import build_model

    mc = ModelConfig(image_size=32, width=4, depth=3, guidance=1.0, transplant=1.0)
    built = build_model("custom_cnn", 3, mc, augment=False)
    trainer = GuidedTrainer(built.model, built.gradcam_layer, mc.guidance, augment=[],
                            transplant=mc.transplant, seed=0)
    _compile(trainer, mc, mc.learning_rate, 3)
    x, allowed, y, role, _ = _batch()
    ds = guided_dataset(x.astype("uint8"), allowed.astype("uint8"), y, 3, 0, role)
    (inputs, _labels), = list(ds)
    assert len(inputs) == 3  # pixels, allowed region, roles
    labels, logs = _one_eager_epoch(trainer, ds)
    assert labels.shape[0] == 4  # three images plus the composite
    assert np.isfinite(logs["loss"][0])


def test_the_blend_ramps_across_the_box_edge():
    from pipeline.transplant import _soft

    box = np.zeros((1, 32, 32), "float32")
    box[0, 10:22, 10:22] = 1.0
    alpha = np.asarray(_soft(box))[0]
    assert alpha[16, 16] == pytest.approx(1.0) and alpha[16, 2] == 0.0
    ramp = alpha[16, 6:14]  # across the left edge: rising, never a step from 0 to 1
    assert np.all(np.diff(ramp) >= 0) and 0 < ramp[3] < 1 and 0 < ramp[4] < 1


def test_transplant_is_refused_without_guidance_and_outside_0_1():
    with pytest.raises(ValueError, match="needs guidance"):
        ModelConfig(transplant=0.5)
    with pytest.raises(ValueError, match="probability"):
        ModelConfig(guidance=1.0, transplant=1.5)


def test_transplant_for_a_transfer_model_is_refused_before_the_data_is_read(tmp_path):
    from pipeline.config import profile
    from pipeline.train import train_run

    cfg = profile("smoke")
    cfg.models["mobilenetv2"].transplant = 0.5
    missing = tmp_path / "no-such-data"  # reading it would fail differently
    with pytest.raises(ValueError, match="transplant is for from-scratch models"):
        train_run(cfg, missing, tmp_path / "out", ["mobilenetv2"])
    assert not list((tmp_path / "out").rglob("run.json"))  # no run was started


def _lateral_batch() -> tuple[np.ndarray, ...]:
    """`_batch` with the donor's tumour and box moved to the left hemisphere, clear of the
    midline, and a right hemisphere a little brighter than the left (70 against 60)."""
    x, allowed, y, role, weight = _batch()
    x[0, 4:28, 16:28] = 70.0
    x[0, 12:20, 12:20] = 60.0  # no tumour at the centre any more
    x[0, 8:14, 6:12] = 150.0
    allowed[0] = 0.0
    allowed[0, 7:15, 5:13] = 1.0
    return x, allowed, y, role, weight


def test_an_erased_copy_has_the_other_hemisphere_in_the_box_and_no_tumour_label():
    from pipeline.transplant import erase

    x, allowed, y, role, weight = _lateral_batch()
    out_x, out_m, out_y, out_w = (np.asarray(a) for a in erase(
        x, allowed, y, role, 1.0, keras.random.SeedGenerator(0), 2, weight))
    assert out_x.shape == (4, 32, 32, 3)  # the originals stay, one copy of the donor appended
    np.testing.assert_array_equal(out_x[:3], x)
    clean = out_x[3]
    assert clean[10, 8, 0] == pytest.approx(70.0)  # the tumour's place, from the right side
    assert clean[20, 20, 0] == pytest.approx(70.0)  # far from the box: the donor's own
    assert clean[:, :, 0].max() < 150.0  # nothing of the tumour is left
    np.testing.assert_array_equal(out_y[3], np.eye(3)[2])  # labelled no tumour
    head = np.zeros((32, 32))
    head[4:28, 4:28] = 1.0
    np.testing.assert_array_equal(out_m[3], head)  # evidence belongs anywhere in the head
    assert out_w[3] == weight[1]  # weighed as the batch's no-tumour images


@pytest.mark.parametrize("rate,lateral,keep", [(1.0, False, [DONOR, RECIPIENT, NEITHER]),
                                               (0.0, True, [DONOR, RECIPIENT, NEITHER]),
                                               (1.0, True, [NEITHER, RECIPIENT, NEITHER])])
def test_no_erased_copy_across_the_midline_without_rate_or_box(rate, lateral, keep):
    from pipeline.transplant import erase

    x, allowed, y, _, weight = _lateral_batch() if lateral else _batch()
    out_x, _, out_y, out_w = erase(x, allowed, y, np.array(keep, "int32"), rate,
                                   keras.random.SeedGenerator(0), 2, weight)
    assert np.asarray(out_x).shape[0] == 3 and np.asarray(out_y).shape[0] == 3
    assert np.asarray(out_w).shape == (3,)


def test_a_guided_step_trains_on_transplants_and_erased_copies_together():
    from pipeline.fit import _compile
    from pipeline.guidance import GuidedTrainer, guided_dataset
    from pipeline.models import build_model

    mc = ModelConfig(image_size=32, width=4, depth=3, guidance=1.0, transplant=1.0, erase=1.0)
    built = build_model("custom_cnn", 3, mc, augment=False)
    trainer = GuidedTrainer(built.model, built.gradcam_layer, mc.guidance, augment=[],
                            transplant=mc.transplant, seed=0, erase=mc.erase, no_tumor=2)
    _compile(trainer, mc, mc.learning_rate, 3)
    x, allowed, y, role, _ = _lateral_batch()
    ds = guided_dataset(x.astype("uint8"), allowed.astype("uint8"), y, 3, 0, role)
    labels, logs = _one_eager_epoch(trainer, ds)
    # three images, the transplant (the donor's glioma label) and the erased copy (no tumour);
    # the transplant is not erased again
    assert labels.shape[0] == 5
    assert sorted(labels[3:].argmax(1).tolist()) == [0, 2]
    assert np.isfinite(logs["loss"][0])


def test_erase_is_refused_without_guidance_or_no_tumour_class():
    from pipeline.guidance import GuidedTrainer
    from pipeline.models import build_model

    with pytest.raises(ValueError, match="erase needs guidance"):
        ModelConfig(erase=0.5)
    with pytest.raises(ValueError, match="erase must be a probability"):
        ModelConfig(guidance=1.0, erase=-0.1)
    mc = ModelConfig(image_size=32, width=4, depth=3, guidance=1.0, erase=0.5)
    built = build_model("custom_cnn", 3, mc, augment=False)
    with pytest.raises(ValueError, match="no-tumour class index"):
        GuidedTrainer(built.model, built.gradcam_layer, 1.0, augment=[], erase=0.5)


def test_mixup_blends_pairs_with_their_labels_weights_and_united_regions():
    from pipeline.transplant import mixup

    x, allowed, y, _, weight = _batch()
    layer = keras.layers.MixUp(alpha=0.4, seed=3)
    out_x, out_a, out_y, out_w = (np.asarray(t) for t in mixup(layer, x, allowed, y, weight))
    assert out_x.shape == x.shape and out_y.shape == y.shape and out_w.shape == (3,)
    np.testing.assert_allclose(out_y.sum(1), 1.0, atol=1e-6)  # still a distribution
    blended = 0
    for i in range(3):  # the three images have three different labels: y names the partner
        lam = out_y[i, y[i].argmax()]
        others = [j for j in range(3) if j != i and out_y[i, y[j].argmax()] > 1e-6]
        j = others[0] if others else i
        blended += j != i
        np.testing.assert_allclose(out_x[i], lam * x[i] + (1 - lam) * x[j], atol=1e-3)
        np.testing.assert_allclose(out_w[i], lam * weight[i] + (1 - lam) * weight[j], atol=1e-5)
        np.testing.assert_array_equal(out_a[i], np.maximum(allowed[i], allowed[j]))
    assert blended >= 2  # a permutation of three moves at least two images


def _guided_trainer(**option: float) -> keras.Model:
    """A compiled GuidedTrainer of a tiny custom CNN (32 px, 3 classes) with one option on."""
    from pipeline.fit import _compile
    from pipeline.guidance import GuidedTrainer
    from pipeline.models import build_model

    mc = ModelConfig(image_size=32, width=4, depth=3, guidance=1.0, **option)
    built = build_model("custom_cnn", 3, mc, augment=False)
    trainer = GuidedTrainer(built.model, built.gradcam_layer, mc.guidance, augment=[],
                            seed=0, **option)
    _compile(trainer, mc, mc.learning_rate, 3)
    return trainer


def test_a_guided_step_trains_on_mixed_images():
    from pipeline.guidance import guided_dataset

    trainer = _guided_trainer(mixup=0.4)
    x, allowed, y, _, _ = _batch()
    ds = guided_dataset(x.astype("uint8"), allowed.astype("uint8"), y, 3, 0)
    labels, logs = _one_eager_epoch(trainer, ds)
    assert labels.shape == (3, 3) and labels.max(1).min() < 1.0  # soft labels: pairs blended
    assert np.isfinite(logs["loss"][0])
    # compiled, as training runs: the draws and blends trace into the graph
    trainer.run_eagerly = False
    assert np.isfinite(trainer.fit(ds, epochs=1, verbose=0).history["loss"][0])


@pytest.mark.parametrize("option,bad,why", [("mixup", 1.5, "a Beta parameter"),
                                            ("smooth_lesion", 2.0, "a probability")])
def test_option_is_refused_without_guidance_out_of_range_or_for_a_transfer_model(
        tmp_path, option, bad, why):
    from pipeline.config import profile
    from pipeline.train import train_run

    with pytest.raises(ValueError, match=f"{option} needs guidance"):
        ModelConfig(**{option: 0.2})
    with pytest.raises(ValueError, match=f"{option} must be {why}"):
        ModelConfig(guidance=1.0, **{option: bad})
    cfg = profile("smoke")
    setattr(cfg.models["mobilenetv2"], option, 0.2)
    with pytest.raises(ValueError, match=f"{option} is for from-scratch models"):
        train_run(cfg, tmp_path / "no-such-data", tmp_path / "out", ["mobilenetv2"])


def _ring_batch() -> tuple[np.ndarray, ...]:
    """A boxed tumour image (head 60, a bright rim around a dark core in its box) and a
    no-tumour image, 64 px."""
    x = np.zeros((2, 64, 64, 3), "float32")
    x[:, 8:56, 8:56] = 60.0
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 32, xx - 32)
    x[0][(r >= 7) & (r < 10)] = 200.0  # the rim
    x[0][r < 7] = 20.0  # the necrotic core
    allowed = np.zeros((2, 64, 64), "float32")
    allowed[0, 21:43, 21:43] = 1.0  # the box
    allowed[1, 8:56, 8:56] = 1.0  # the head
    return x, allowed, np.array([DONOR, RECIPIENT], "int32")


def test_a_smoothed_lesion_is_a_bright_blob_without_its_rim_and_the_rest_unchanged():
    from pipeline.transplant import LESION_LEVEL, _box_ellipse, smooth_lesion

    x, allowed, role = _ring_batch()
    out = np.asarray(smooth_lesion(x, allowed, role, 1.0, keras.random.SeedGenerator(0)))
    assert out.shape == x.shape
    np.testing.assert_array_equal(out[1], x[1])  # no box: untouched
    far = np.ones((64, 64), bool)
    far[16:48, 16:48] = False  # beyond the box and its blended edge
    np.testing.assert_array_equal(out[0][far], x[0][far])
    core, rim = out[0, 30:35, 30:35, 0], out[0, 32, 23, 0]
    assert x[0, 32, 32, 0] == 20.0 and core.min() > 60.0  # the dark core is gone: brighter
    # than the head, as a FLAIR lesion
    assert core.std() < 0.1 * x[0, 25:40, 25:40, 0].std()  # and smooth: no rim inside it
    assert abs(float(rim) - float(core.mean())) < 0.5 * (200.0 - 20.0)
    head = float(x[0][x[0].mean(-1) > 8].mean())
    assert LESION_LEVEL[0] * head * 0.6 < core.mean() < min(255.0, LESION_LEVEL[1] * head * 1.6)
    ellipse = np.asarray(_box_ellipse(allowed))
    assert ellipse[0, 32, 32] == 1 and ellipse[0, 21, 21] == 0  # inscribed: no box corners
    assert ellipse[0, 21, 32] == 1 and ellipse[0, 20, 32] == 0
    assert not np.asarray(_box_ellipse(np.zeros((1, 64, 64), "float32"))).any()  # no box


def test_no_smoothed_lesion_without_rate_or_box():
    from pipeline.transplant import smooth_lesion

    x, allowed, role = _ring_batch()
    out = smooth_lesion(x, allowed, role, 0.0, keras.random.SeedGenerator(0))
    np.testing.assert_array_equal(np.asarray(out), x)
    out = smooth_lesion(x, allowed, np.array([NEITHER, RECIPIENT], "int32"), 1.0,
                        keras.random.SeedGenerator(0))
    np.testing.assert_array_equal(np.asarray(out), x)


def test_a_guided_step_trains_on_smoothed_lesions():
    from pipeline.guidance import guided_dataset

    trainer = _guided_trainer(smooth_lesion=1.0)
    x, allowed, y, role, _ = _batch()
    x[0, 15:17, 15:17] = 0.0  # a dark core in the donor's tumour
    ds = guided_dataset(x.astype("uint8"), allowed.astype("uint8"), y, 3, 0, role)
    seen: list[np.ndarray] = []
    real = trainer.compute_loss

    def spy(x=None, **kw):
        seen.append(np.asarray(x))
        return real(x=x, **kw)

    trainer.compute_loss = spy
    labels, logs = _one_eager_epoch(trainer, ds)
    assert labels.shape[0] == 3  # in place: no image appended
    assert np.isfinite(logs["loss"][0])
    (trained,) = seen
    donor = int(np.argmin(trained[:, 5, 5, 0]))  # the batch is shuffled: the donor's head is 60
    assert trained[donor, 5, 5, 0] == 60.0
    assert trained[donor, 16, 16, 0] > 60.0  # its dark core is now part of a bright blob
    for i in {0, 1, 2} - {donor}:  # the rest as they were (each known by its head's level)
        np.testing.assert_array_equal(trained[i], x[1 if trained[i, 5, 5, 0] == 120.0 else 2])
