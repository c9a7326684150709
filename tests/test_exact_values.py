"""Stored figures checked against values worked out by hand (a test-suite review, 2026-12-07,
planted one-line bugs in them: each survived every test, which checked only orderings or
rough behaviour). Each test names the bug it catches."""

from __future__ import annotations

import numpy as np

from pipeline.evaluate.metrics import tumor_vs_no_tumor


def test_the_ood_score_is_the_mahalanobis_distance_to_the_nearest_class_mean():
    """Caught: the mean over class means instead of the nearest (d2.mean)."""
    from pipeline.ood import OodModel

    model = OodModel(mean=np.zeros(2), components=np.eye(2),
                     class_means=np.array([[0.0, 0.0], [10.0, 0.0]]),
                     precision=np.diag([1.0, 0.25]), threshold=1.0)
    # (1, 2) from (0, 0): 1 + 4/4 = 2; from (10, 0): 81 + 1 = 82
    np.testing.assert_allclose(model.score(np.array([[10.0, 0.0], [1.0, 2.0]])),
                               [0.0, np.sqrt(2.0)])


def test_the_ood_covariance_is_pooled_within_the_classes():
    """Caught: the covariance centred on the overall mean, not on each class's own: two
    classes 100 apart then looked like one spread-out class, and every score shrank."""
    from pipeline.ood import fit

    corners = np.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    x = np.concatenate([corners, corners + [100.0, 0.0]])
    y = np.array([0] * 4 + [1] * 4)
    model = fit(x, y, x, dims=2)
    # within-class variance 8 / (8 - 2) per axis (plus the 1e-3 ridge): 1 step is 0.866 sd
    assert abs(float(model.score(np.array([[101.0, 0.0]]))[0]) - np.sqrt(0.75)) < 0.002


def test_near_duplicates_are_at_most_the_threshold_apart_inclusive():
    """Caught: `d < threshold` (the rule is "at most 28 of 256 bits")."""
    from pipeline.data.duplicates import NEAR_DUPLICATE_THRESHOLD, near_pairs

    assert NEAR_DUPLICATE_THRESHOLD == 28
    base = bytes(32)
    at = bytes([0xFF, 0xFF, 0xFF, 0xF0]) + bytes(28)  # 28 bits set
    beyond = bytes([0xFF, 0xFF, 0xFF, 0xF8]) + bytes(28)  # 29
    assert near_pairs([base, at, beyond]) == [(0, 1, 28), (1, 2, 1)]


def test_ppv_and_npv_are_what_their_names_say():
    """Caught: NPV as tn / (tn + fp), which is specificity again."""
    classes = ["glioma", "no_tumor"]
    # predicted: 3 tumours right, 1 missed; 2 no-tumour right, 2 called tumour
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    pred = np.array([0, 0, 0, 1, 1, 1, 0, 0])
    probs = np.eye(2)[pred] * 0.8 + 0.1
    got = tumor_vs_no_tumor(y, probs, classes)
    assert (got["tp"], got["fn"], got["tn"], got["fp"]) == (3, 1, 2, 2)
    assert got["ppv"] == 3 / 5 and got["npv"] == 2 / 3
    assert got["sensitivity"] == 3 / 4 and got["specificity"] == 2 / 4


def test_the_pooled_answers_sensitivity_ranks_by_the_tumour_probability():
    """Caught: ranking by P(no tumour) instead of 1 - P(no tumour)."""
    from pipeline.evaluate.together import summary

    classes = ["glioma", "no_tumor"]
    p_no = np.array([0.1, 0.15, 0.5, 0.95] + [0.9] * 9 + [0.2])  # 4 tumours, 10 without
    y = np.array([0] * 4 + [1] * 10)
    p = np.stack([1 - p_no, p_no], axis=1)
    got = summary(y, {"a": p, "b": p}, classes)  # one model twice: the pool is its answer
    # at most 1 of 10 no-tumour slices called tumour: threshold 0.5 on P(tumour) finds 3 of 4
    assert got["sensitivity_at_specificity"]["sensitivity"] == 0.75


def test_weak_answers_are_those_strictly_below_the_threshold():
    """Caught: `conf <= threshold`, which counted the threshold's own answer weak, unlike the
    rule that marks answers weak everywhere else."""
    from pipeline.calibration import low_confidence

    conf = np.array([0.5, 0.6, 0.7, 0.8])
    probs = np.stack([conf, 1 - conf], axis=1)
    y = np.array([1, 1, 0, 0])  # the two least confident wrong, the others right
    got = low_confidence(probs, y, target=0.9)
    assert got["low_confidence_below"] == 0.7
    assert (got["low_confidence_n"], got["low_confidence_accuracy"]) == (2, 0.0)


def test_the_gamma_shift_darkens_some_images_and_brightens_others():
    """Caught: a gamma that always darkened (`g = level`)."""
    from pipeline.evaluate.robustness import gamma

    img = np.full((8, 8, 3), 128, np.uint8)
    means = {float(gamma(img, 1.5, np.random.default_rng(s)).mean()) for s in range(20)}
    assert min(means) < 128 < max(means)


def test_the_bias_field_level_is_its_largest_log_gain():
    """Caught: the field's normalisation dropped (the level no longer its log-amplitude)."""
    from pipeline.evaluate.robustness import bias_field

    img = np.full((64, 64, 3), 100, np.uint8)
    for seed in range(5):
        out = bias_field(img, 0.3, np.random.default_rng(seed)).astype(float)
        assert abs(float(np.abs(np.log(out / 100.0)).max()) - 0.3) < 0.01
