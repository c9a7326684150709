"""A user's own dataset (review h72): patient folders, unreadable files, label conflicts, too few
classes, the dataset's own test folder, the size cue on balanced data and an interrupted run."""

from __future__ import annotations

import numpy as np

from pipeline.data.auditing import size_cue

# --------------------------------------------------------------------------- the size cue


def test_a_size_that_carries_nothing_scores_chance():
    """Leave-one-out scored 0.03 against a chance of 0.25 on balanced data (review h72): taking
    an image out made its own class the minority of its size."""
    labels, sizes = [], []
    for c in ("glioma", "meningioma", "no_tumor", "pituitary"):
        labels += [c] * 12
        sizes += ["512x512"] * 10 + ["256x256"] * 2
    cue = size_cue(labels, sizes)
    for key in ("classes", "tumour_vs_no_tumour"):
        assert cue[key]["balanced_accuracy"] == cue[key]["chance"], cue
        assert not cue[key]["warn"]
    rng = np.random.default_rng(0)  # random sizes: around chance, never far below it
    for _ in range(20):
        noise = size_cue(labels, [str(s) for s in rng.integers(0, 3, len(labels))])
        assert noise["classes"]["balanced_accuracy"] >= 0.25 - 0.15, noise


def test_the_size_cue_still_finds_a_size_that_tells_classes_apart():
    # Two tumour types share one size, no-tumour images have another: size tells no tumour
    # apart (and glioma from meningioma not at all).
    labels = ["glioma"] * 4 + ["meningioma"] * 4 + ["no_tumor"] * 4
    cue = size_cue(labels, ["512x512"] * 8 + ["200x200"] * 4)
    assert cue["classes"] == {"accuracy": 0.6667, "balanced_accuracy": 0.6667,
                              "majority_accuracy": 0.3333, "chance": 0.3333, "warn": True}
    assert cue["tumour_vs_no_tumour"] == {"accuracy": 1.0, "balanced_accuracy": 1.0,
                                          "majority_accuracy": 0.6667, "chance": 0.5,
                                          "warn": True}
    # Every size unique: no vote to learn from, the commonest label overall.
    lone = size_cue(["a", "a", "a", "b"], ["1", "2", "3", "4"])
    assert lone["classes"]["balanced_accuracy"] == 0.5 and not lone["classes"]["warn"]
    assert lone["tumour_vs_no_tumour"] is None
