"""Predictor: the compiled forward pass matches Keras, and files stream through in chunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.artifacts import open_run
from pipeline.predict import Predictor, predict_files

pytestmark = pytest.mark.slow  # uses the trained smoke run


def test_compiled_forward_matches_the_keras_model(smoke_run: Path):
    predictor = Predictor(open_run(smoke_run))
    for name, model in predictor.models.items():
        size = predictor.image_size(name)
        x = np.random.default_rng(1).uniform(0, 255, (5, size, size, 3)).astype("float32")
        want = np.asarray(model(x, training=False))
        got = predictor.predict_arrays(name, x, batch_size=2)  # batches of 2, 2 and 1
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_files_are_predicted_in_chunks_with_the_same_results(smoke_run: Path, synth_data: Path,
                                                             tmp_path: Path):
    files = sorted((synth_data / "Testing").rglob("*.png"))[:7]
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    paths = [*files[:3], bad, *files[3:]]
    predictor = Predictor(open_run(smoke_run))
    whole, whole_bad = predict_files(predictor, paths)
    chunked, chunked_bad = predict_files(predictor, paths, chunk=3)
    assert [r["path"] for r in chunked] == [str(p) for p in files]  # order kept
    assert [p for p, _ in chunked_bad] == [p for p, _ in whole_bad] == [str(bad)]
    for a, b in zip(whole, chunked, strict=True):
        for m in a["models"]:
            assert a["models"][m]["label"] == b["models"][m]["label"]
            for c, v in a["models"][m]["probs"].items():
                assert abs(v - b["models"][m]["probs"][c]) < 1e-5
    # the same answers as preparing and predicting each decoded image on its own
    from pipeline.images import read_image

    alone = predictor.predict_images([read_image(p) for p in files])
    for i, row in enumerate(chunked):
        for m, probs in alone.items():
            got = [row["models"][m]["probs"][c] for c in predictor.class_names]
            np.testing.assert_allclose(got, probs[i], atol=1e-5)
