"""The Python API as a notebook calls it (README "From Python"): what `predict_files` and a
`Predictor` are handed, and the one-line refusals of what they cannot use (a review of the API)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.artifacts import open_run
from pipeline.images import read_image
from pipeline.predict import Predictor, predict_files

pytestmark = pytest.mark.slow  # uses the trained smoke run


@pytest.fixture(scope="module")
def predictor(smoke_run: Path) -> Predictor:
    return Predictor(open_run(smoke_run), models="custom_cnn")


def _scan(synth_data: Path) -> Path:
    return sorted((synth_data / "Testing").rglob("*.png"))[0]


def test_predict_files_takes_one_file_name_as_one_file(predictor: Predictor, synth_data: Path):
    """A str was read as a list of its letters: one failure per character."""
    scan = _scan(synth_data)
    want, _ = predict_files(predictor, [scan])
    for one in (str(scan), scan):
        rows, failures = predict_files(predictor, one)
        assert failures == [] and [r["path"] for r in rows] == [str(scan)]
        assert rows[0]["models"] == want[0]["models"]


@pytest.mark.parametrize(("bad", "why"), [
    (lambda x: np.full_like(x, np.nan), "takes finite pixel values, got NaN or infinite ones$"),
    (lambda x: np.where(x > 60, np.inf, x), "takes finite pixel values"),
    (lambda x: x + 300, r"takes raw 0-255 pixels, got values from 300 to \d+$"),
    (lambda x: x - 50, r"takes raw 0-255 pixels, got values from -50 to \d+$"),
    (lambda x: x.astype(np.int32) * 2, r"takes raw 0-255 pixels, got values from 0 to \d+$"),
])
def test_predict_arrays_refuses_pixels_no_prepared_image_has(predictor: Predictor,
                                                             synth_data: Path, bad, why: str):
    """All-NaN, infinite and out-of-range batches got confident answers."""
    x = predictor.prepare("custom_cnn", read_image(_scan(synth_data)))[None].astype(np.float32)
    assert x.min() == 0 and predictor.predict_arrays("custom_cnn", x).shape == (
        1, len(predictor.class_names))
    with pytest.raises(ValueError, match=f"^custom_cnn {why}"):
        predictor.predict_arrays("custom_cnn", bad(x))


def test_a_blank_prepared_batch_is_still_answered(predictor: Predictor):
    """Deletion curves end on a blank image; `predict_images` refuses blank images itself."""
    size = predictor.image_size("custom_cnn")
    for level in (0, 255):
        probs = predictor.predict_arrays("custom_cnn", np.full((1, size, size, 3), level))
        assert probs.shape == (1, len(predictor.class_names)) and np.isfinite(probs).all()
