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


def _brightness(x: np.ndarray) -> np.ndarray:
    """A "model" whose class-0 probability is the batch images' mean brightness."""
    p = np.asarray(x, float).mean(axis=(1, 2, 3)) / 255.0
    return np.stack([p, 1 - p], axis=1)


def test_deletion_and_insertion_areas_are_trapezoids_over_the_whole_fraction_range():
    """Caught: the step 1 / (steps + 1), which shrank both areas (and the random baseline's
    alike, so every ordering test still held)."""
    from pipeline.explain.metrics import deletion_insertion

    white = np.full((10, 10, 3), 255.0)
    heat = np.random.default_rng(0).random((10, 10))
    dele, ins, d_auc, i_auc = deletion_insertion(_brightness, white, heat, 0, steps=4,
                                                 baseline="black")
    np.testing.assert_allclose(dele, [1, 0.75, 0.5, 0.25, 0])  # 25 of 100 pixels a step
    np.testing.assert_allclose(ins, [0, 0.25, 0.5, 0.75, 1])
    assert (round(d_auc, 6), round(i_auc, 6)) == (0.5, 0.5)


def test_road_areas_are_mean_probabilities():
    """Caught: the areas not divided by the fractions' range (ROAD's are mean probabilities,
    comparable across fraction grids)."""
    from pipeline.explain.metrics import road

    def constant(x: np.ndarray) -> np.ndarray:
        return np.tile([0.3, 0.7], (len(x), 1))

    got = road(constant, np.full((16, 16, 3), 128.0), np.ones((16, 16)), 1)
    assert (round(got["morf_auc"], 6), round(got["lerf_auc"], 6)) == (0.7, 0.7)


def test_the_pointing_game_of_right_answers_counts_only_those():
    """Caught: `pointing_game_correct` over every boxed image, right or wrong."""
    from pipeline.explain.scoring import _summary

    def row(hit: bool | None, correct: bool) -> dict:
        return {"pointing_hit": hit, "correct": correct, "mask_fraction": 0.1,
                "centre_hit": False, "energy_in_mask": 0.5, "top_in_mask": 0.5,
                "deletion_auc": 0.3, "deletion_auc_random": 0.5, "insertion_auc": 0.7,
                "insertion_auc_random": 0.5, "road_morf_auc": 0.3, "road_lerf_auc": 0.6,
                "sanity_rank_correlation": 0.1, "empty_heatmap": False,
                "energy_outside_head": 0.0, "top_outside_head": 0.0, "outside_head_flag": False}

    rows = [row(True, True), row(False, True), row(True, False), row(True, False),
            row(None, True)]  # the last has no box
    got = _summary(rows)
    assert (got["n_localisation"], got["pointing_game"]) == (4, 0.75)
    assert (got["n_localisation_correct"], got["pointing_game_correct"]) == (2, 0.5)
