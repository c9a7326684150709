"""Image arrays handed to the Python API: pixels mapped as a file of their kind is read, and bad
arrays refused in one line (a review: a 0-1 float slice was read as black, a 12-bit one as
white, and a blank or 2×2 array got an answer)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import geometry
from pipeline.artifacts import ArtifactError, open_run
from pipeline.images import ImageError, read_image
from pipeline.pixels import array_to_uint8

pytestmark = pytest.mark.slow  # most use the trained smoke run


def _slice(seed: int = 0) -> np.ndarray:
    """A head-like uint8 slice: a bright disc with texture on black."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:96, :96]
    disc = ((yy - 48) ** 2 + (xx - 48) ** 2) < 36 ** 2
    img = np.where(disc, rng.integers(60, 230, (96, 96)), 0).astype(np.uint8)
    return np.repeat(img[:, :, None], 3, axis=2)


def test_float_pixels_within_0_1_are_scaled_not_read_as_black():
    img = _slice()
    np.testing.assert_array_equal(array_to_uint8(img / 255.0), img)
    np.testing.assert_array_equal(array_to_uint8(img.astype(np.float32)), img)  # 0-255 floats
    np.testing.assert_array_equal(geometry.prepare_image(img / 255.0, 64),
                                  geometry.prepare_image(img, 64))
    # resampling's overshoot and undershoot keep a 0-1 slice a 0-1 slice (a review: one pixel
    # at 1.009 after a cubic resize made the whole slice black; one at -1e-6 stretched it)
    over = img / 255.0 * 1.009
    assert np.abs(array_to_uint8(over).astype(int) - img).max() <= 3
    under = img / 255.0
    under[0, 0, 0] = -1e-6
    np.testing.assert_array_equal(array_to_uint8(under), img)


def test_a_high_bit_array_maps_as_the_same_16_bit_file_does(tmp_path: Path):
    twelve_bit = _slice()[:, :, 0].astype(np.uint16) * 16  # 0-3680, as a 12-bit MRI
    path = tmp_path / "slice16.png"
    Image.fromarray(twelve_bit).save(path)
    from_file = read_image(path)
    assert from_file.max() == 255  # the file path scales: the array must match it
    np.testing.assert_array_equal(geometry.as_rgb_uint8(twelve_bit), from_file)
    # signed values (CT's Hounsfield units, z-scores) are mapped from their range, not clipped
    signed = geometry.as_rgb_uint8(twelve_bit.astype(np.int32) - 1000)
    assert signed.min() == 0 and signed.max() == 255


def test_integer_pixels_within_0_255_are_kept_and_nan_only_arrays_refused():
    img = _slice()
    np.testing.assert_array_equal(array_to_uint8(img.astype(np.int64)), img)
    with pytest.raises(ImageError, match="no finite pixel"):
        array_to_uint8(np.full((16, 16), np.nan))


def test_predictor_takes_arrays_as_it_takes_files(smoke_run: Path, synth_data: Path):
    from pipeline.predict import Predictor

    predictor = Predictor(str(smoke_run), models="custom_cnn")  # a path, one model's name
    assert list(predictor.models) == ["custom_cnn"]
    img = read_image(sorted((synth_data / "Testing").rglob("*.png"))[0])
    want = predictor.predict_images([img])["custom_cnn"]
    for same in (img / 255.0, img[:, :, 0], img):  # 0-1 floats, grey, one array alone
        np.testing.assert_allclose(predictor.predict_images(same)["custom_cnn"], want,
                                   atol=1e-5)
    batch = predictor.predict_images(np.stack([img, img]))["custom_cnn"]  # (N, H, W, 3)
    np.testing.assert_allclose(batch, np.repeat(want, 2, axis=0), atol=1e-5)
    assert predictor.describe(want, "custom_cnn").probs == predictor.describe(
        want[0], "custom_cnn").probs


def test_predictor_refuses_arrays_the_cli_refuses_as_files(smoke_run: Path, synth_data: Path):
    from pipeline.predict import Predictor

    predictor = Predictor(open_run(smoke_run), models=["custom_cnn"])
    img = read_image(sorted((synth_data / "Testing").rglob("*.png"))[0])
    with pytest.raises(ImageError, match=r"^image 2: 2×2 image is too small"):
        predictor.predict_images([img, np.full((2, 2), 128, np.uint8)])
    with pytest.raises(ImageError, match=r"^image 1: a blank image"):
        predictor.predict_images([np.full((64, 64, 3), 90, np.uint8)])
    prepared = predictor.prepare("custom_cnn", img)[None]
    with pytest.raises(ValueError, match="raw 0-255 pixels, got values within 0-1"):
        predictor.predict_arrays("custom_cnn", prepared / 255.0)
    with pytest.raises(ValueError, match="no model 'CustomCNN' in this Predictor; it has "
                                         "custom_cnn"):
        predictor.predict_arrays("CustomCNN", prepared)


def test_the_explainer_refuses_0_1_pixels(smoke_run: Path):
    from pipeline.explain.explainer import Explainer

    run = open_run(smoke_run)
    model = run.load_model("custom_cnn")
    size = int(run.model_info("custom_cnn")["image_size"])
    x = geometry.prepare_image(_slice(), size)[None].astype(np.float32)
    assert Explainer(model)(x).heatmaps.shape == (1, size, size)
    with pytest.raises(ValueError, match="explainer takes raw 0-255 pixels"):
        Explainer(model)(x / 255.0)


def test_a_missing_model_of_a_run_outside_the_project_is_named(smoke_run: Path,
                                                                tmp_path: Path):
    copy = tmp_path / "elsewhere" / "copied-run"
    shutil.copytree(smoke_run, copy)
    (copy / "custom_cnn" / "model.keras").unlink()
    run = open_run(copy)  # the other model still serves
    with pytest.raises(ArtifactError, match=r"^model file missing: custom_cnn/model.keras of "
                                            r"run copied-run$"):
        run.load_model("custom_cnn")


def test_runs_predictors_and_explainers_say_what_they_are_in_a_notebook(smoke_run: Path):
    """A notebook printed `<pipeline.predict.Predictor object at 0x7f...>` (a review): each now
    names its run, models and, for an explainer, its default method and layer."""
    from pipeline.explain.defaults import explainer_for
    from pipeline.predict import Predictor

    run = open_run(smoke_run)
    assert repr(run) == (f"<Run {run.run_id}: models custom_cnn, mobilenetv2; classes "
                         f"{', '.join(run.class_names)}>")
    assert repr(Predictor(run, "mobilenetv2")) == (
        f"<Predictor of run {run.run_id}: mobilenetv2>")
    raw = Predictor(run, "custom_cnn", calibrated=False)
    assert repr(raw) == f"<Predictor of run {run.run_id}: custom_cnn, raw softmax>"
    ex = explainer_for(run, "custom_cnn", raw.models["custom_cnn"])
    assert repr(ex) == (f"<Explainer of {raw.models['custom_cnn'].name}: {ex.method} at "
                        f"{ex.layer}>")
