"""The Python API as a notebook calls it (README "From Python"): what `predict_files` and a
`Predictor` are handed, and the one-line refusals of what they cannot use (a review of the API)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.artifacts import open_run
from pipeline.images import ImageError, read_image
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


def test_predict_images_takes_a_pillow_image_as_read_image_reads_its_file(
        predictor: Predictor, synth_data: Path):
    """A Pillow image in the list was refused: "expected a numpy array, got PngImageFile"."""
    scan = _scan(synth_data)
    want = predictor.predict_images([read_image(scan)])["custom_cnn"]
    with Image.open(scan) as im:
        np.testing.assert_allclose(predictor.predict_images([im])["custom_cnn"], want,
                                   atol=1e-6)


def test_what_is_no_image_is_refused_by_its_place_saying_what_it_is(predictor: Predictor,
                                                                     synth_data: Path):
    scan = _scan(synth_data)
    image = read_image(scan)
    with pytest.raises(ImageError, match=r"^image 2: expected a numpy array or a Pillow "
                                         r"image, got None$"):
        predictor.predict_images([image, None])
    with pytest.raises(ImageError, match=rf"^image 1: .* got the file name "
                                         rf"'{re.escape(str(scan))}': read the file with "
                                         r"pipeline\.images\.read_image\(path\)$"):
        predictor.predict_images([scan, image])


def test_one_pillow_image_alone_is_one_image_and_a_file_name_or_none_is_refused_in_one_line(
        predictor: Predictor, synth_data: Path):
    """A Pillow image, a Path or None alone raised a bare TypeError ("'PngImageFile' object is
    not iterable"), and a str was read as its letters ("image 1: ... got str" of its first)."""
    scan = _scan(synth_data)
    want = predictor.predict_images([read_image(scan)])["custom_cnn"]
    with Image.open(scan) as im:
        np.testing.assert_allclose(predictor.predict_images(im)["custom_cnn"], want, atol=1e-6)
    for name in (scan, str(scan)):
        with pytest.raises(ImageError, match=rf"^image 1: .* got the file name "
                                             rf"'{re.escape(str(scan))}': read the file"):
            predictor.predict_images(name)
    with pytest.raises(ImageError, match=r"^image 1: .* got None$"):
        predictor.predict_images(None)


def test_explainer_for_refuses_another_model_of_the_run(smoke_run: Path):
    """`explainer_for(run, "mobilenetv2", <the custom CNN>)` built an explainer with
    MobileNetV2's method and layer without a word (a review of the Python API)."""
    from pipeline.artifacts import ArtifactError
    from pipeline.explain.defaults import explainer_for

    run = open_run(smoke_run)
    cnn = run.load_model("custom_cnn")
    with pytest.raises(ArtifactError, match=r"mobilenetv2 takes inputs of shape \(\d+, \d+, 3\) "
                                            r"but its manifest says image_size \d+"):
        explainer_for(run, "mobilenetv2", cnn)
    assert explainer_for(run, "custom_cnn", cnn).model is cnn
