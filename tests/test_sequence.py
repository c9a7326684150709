"""`pipeline.sequence`: the "may be T2 or FLAIR" hint. The shipped models recognised few of the
tumours on such slices of the official Testing/ folder (they learnt tumours from T1 slices);
the hint finds such slices, says why when it cannot run, and its stored record is what it does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline import sequence
from pipeline.sequence import fit as seqfit


def test_the_fitted_rule_is_the_scaled_logistic_regression_it_was_fitted_as():
    rng = np.random.default_rng(0)
    y = np.arange(200) % 5 == 0
    x = rng.normal(0, 1, (200, 6)) * [1, 5, 0.1, 1, 1, 1] + [0, 40, 3, 0, 0, 0]
    x[y, 0] += 2.5  # one feature carries the label
    counted = np.arange(200) % 2 == 0
    fitted = seqfit.fit_linear(x, y, counted)
    probe = sequence.Probe(fitted["coef"], fitted["intercept"], fitted["threshold"], 128)
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ref = make_pipeline(StandardScaler(), LogisticRegression(C=fitted["C"], max_iter=5000))
    ref.fit(x, y)
    np.testing.assert_allclose(probe.scores(x), ref.predict_proba(x)[:, 1], atol=1e-9)
    assert fitted["C"] in seqfit.C_GRID
    assert np.abs(fitted["coef"] * x.std(axis=0)).argmax() == 0  # the informative feature
    flagged = probe.scores(x) >= probe.threshold
    assert flagged[y].mean() > 0.5 > flagged[~y].mean()


def test_the_labels_file_reads_every_row(tmp_path: Path):
    labels = seqfit.read_labels()
    assert len(labels) == 955  # Training/'s 561 images not 512 x 512 and Testing/'s 394
    assert set(labels.values()) == {"T1", "T2", "FLAIR", "CT", "unsure"}
    assert sum(k.startswith("Testing/") for k in labels) == 394
    f = tmp_path / "l.csv"
    f.write_text("# a comment\npath,sequence\nTesting/a b.jpg,T2\n", encoding="utf-8")
    assert seqfit.read_labels(f) == {"Testing/a b.jpg": "T2"}


def test_without_imagenet_weights_the_hint_is_unavailable_and_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty Keras cache
    monkeypatch.delenv("BRAIN_MRI_WEIGHTS", raising=False)
    sequence._extractor.cache_clear()
    try:
        why = sequence.unavailable()
        assert why and "ImageNet weights" in why
        assert sequence.looks_like_t2([np.zeros((64, 64, 3), np.uint8)]) is None
        assert sequence.flags_prepared(np.zeros((1, 128, 128, 3), np.uint8)) is None
    finally:
        sequence._extractor.cache_clear()


def _weights() -> None:
    if sequence.unavailable():
        pytest.skip(f"the hint cannot run here: {sequence.unavailable()}")


@pytest.mark.slow
@pytest.mark.data
def test_the_stored_testing_record_is_what_the_shipped_probe_does(real_data: Path):
    """probe.json's Testing/ record (found, false alarms, AUC) recomputed from the labels and
    the images: the figures the README quotes."""
    _weights()
    from pipeline.images import read_image

    stored = json.loads(sequence.PROBE_FILE.read_text(encoding="utf-8"))
    labels = seqfit.read_labels()
    rated = sorted(r for r in labels if r.startswith("Testing/"))
    x = np.stack([sequence.prepare(read_image(real_data / r)) for r in rated])
    scores = sequence.scores_prepared(x)
    flags = sequence.flags_prepared(x)
    assert flags == [bool(s >= stored["threshold"]) for s in scores]
    got = seqfit.record(np.array(flags), scores, [labels[r] for r in rated])
    assert got == stored["testing"]
    assert got["found"] >= 0.7 * got["t2_flair"] and got["false_alarms"] <= 0.1 * got["t1"]
    # one slice at a time, decoded as the dashboard does, gives the batch's verdicts
    some = [rated[i] for i in np.flatnonzero(flags)[:2]] + [rated[i] for i in
                                                           np.flatnonzero(~np.array(flags))[:2]]
    assert sequence.looks_like_t2([read_image(real_data / r) for r in some]) == [
        True, True, False, False]


@pytest.mark.data
def test_either_weights_file_gives_the_same_features(real_data: Path, monkeypatch, tmp_path):
    """The Keras cache's .h5 (found first) and $BRAIN_MRI_WEIGHTS' .weights.h5 are the same
    weights: the hint must not depend on which one a machine has."""
    _weights()
    import os

    env = os.environ.get("BRAIN_MRI_WEIGHTS")
    if not env or not Path(env).is_file():
        pytest.skip("BRAIN_MRI_WEIGHTS is not set to a weights file")
    from pipeline.images import read_image

    x = np.stack([sequence.prepare(read_image(p)) for p in
                  sorted((real_data / "Testing" / "no_tumor").glob("*.jpg"))[:4]])
    first = sequence.features(x)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # only $BRAIN_MRI_WEIGHTS left
    sequence._extractor.cache_clear()
    try:
        np.testing.assert_allclose(sequence.features(x), first, rtol=1e-4, atol=1e-5)
    finally:
        sequence._extractor.cache_clear()
