"""`modality.looks_like_photo`: a phone photo of an MRI on a monitor (or of a film on a lightbox)
passed every input check and got a confident answer; the tint such a photo has, and an MRI export
has not, now brings a warning beside every answer, in the CLI, its JSON and the dashboard."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_modality import _head

from dashboard import flags as dflags
from pipeline.evaluate.flags import FLAG_LABELS, FLAG_MEANINGS, SAID_BY, is_colour, raised_flags
from pipeline.modality import PHOTO_TINT, looks_like_photo, photo_tint
from pipeline.synth.photo import TINTS, screen_photo

CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]


def _slice() -> np.ndarray:
    """A grey axial phantom with a clipped scalp and a dark bone band: MRI, not CT."""
    return _head(rim=255, rim_width=12, band=45, band_width=6)


def _jpeg_rgb(rgb: np.ndarray, quality: int = 75) -> np.ndarray:
    """`rgb` through a colour (YCbCr 4:2:0) JPEG and back, as a viewer's export may be."""
    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def test_a_grey_slice_has_no_tint_and_a_tinted_one_has():
    grey = _slice()
    rgb = np.dstack([grey] * 3)
    assert photo_tint(grey) == 0.0 and photo_tint(rgb) == 0.0
    assert photo_tint(_jpeg_rgb(rgb)) < PHOTO_TINT / 2  # a colour JPEG of grey: rounding only
    for gains in TINTS.values():  # a few per cent per channel is enough
        tinted = np.clip(rgb * (1 + 0.1 * (np.asarray(gains) - 1)), 0, 255).astype(np.uint8)
        assert looks_like_photo(tinted), gains
    marked = rgb.copy()
    marked[20:60, 20:60] = (255, 0, 0)  # a red label: a few per cent of the pixels
    assert is_colour(marked) is False and photo_tint(marked) == 0.0
    noise = np.random.default_rng(0).integers(-20, 21, rgb.shape)  # chroma noise, no direction
    assert not looks_like_photo(np.clip(rgb + noise, 0, 255).astype(np.uint8))
    assert photo_tint(np.zeros((64, 64, 3), np.uint8)) == 0.0  # nothing lit: nothing measured


def test_a_synthetic_screen_photo_is_found_unless_turned_grey():
    grey = _slice()
    for k, tint in enumerate(TINTS):
        for film in (False, True):
            photo = screen_photo(grey, np.random.default_rng(k), 0.2, tint, film=film)
            assert photo.shape == (480, 640, 3) and looks_like_photo(photo), (tint, film)
            assert not is_colour(photo) or film  # the old check saw none of the screen ones
    # a photo turned grey keeps no tint: this check cannot see it (README, "Photos of a screen")
    assert not looks_like_photo(screen_photo(grey, np.random.default_rng(0), 0.5, None))


def test_the_photo_warning_replaces_the_colour_one_where_both_are_raised():
    probs = {"custom_cnn": np.array([[0.85, 0.05, 0.05, 0.05]])}
    said = dflags.answer_flags(probs, 0, {}, {}, {}, CLASSES, colour=True, photo=True)
    assert said[0] == dflags.photo_warning(n_models=1) and dflags.COLOUR_WARNING not in said
    assert said[0].startswith("This image looks like a photo of a screen or film: the image "
                              "has a colour tint")
    assert "export the image from the viewer instead" in said[0]
    # a colour-mapped export trips the check too (a review's "hot" map): the advice fits it
    assert "in greyscale (an export through a colour map is tinted too" in said[0]
    # it replaces the colour warning, so it keeps its point: a rainbow gradient tripped it
    assert said[0].endswith("if it is not an MRI slice at all, no answer means anything."), said
    # and the T2/FLAIR hint is about MRI sequences: not said of a colour image or a photo (it
    # fired on colour noise and a gradient)
    for kind in ({"colour": True}, {"photo": True}, {"colour": True, "photo": True}):
        with_t2 = dflags.answer_flags(probs, 0, {}, {}, {}, CLASSES, t2=True, **kind)
        assert not any("T2" in f for f in with_t2), (kind, with_t2)
    assert any("T2" in f for f in dflags.answer_flags(probs, 0, {}, {}, {}, CLASSES, t2=True))
    assert dflags.answer_flags(probs, 0, {}, {}, {}, CLASSES, colour=True)[0] == (
        dflags.COLOUR_WARNING)
    assert dflags.photo_warning(n_models=1) not in dflags.answer_flags(probs, 0, {}, {}, {},
                                                                        CLASSES)
    assert SAID_BY == {"colour": "photo", "unlike": "far"}
    assert raised_flags({"colour": True, "photo": True, "weak": True}) == ["photo", "weak"]
    assert raised_flags({"colour": True, "photo": False}) == ["colour"]
    from pipeline.explain.overlay_text import overlay_caption  # explain's captioned overlays

    entry = {"predicted": "glioma", "target": "glioma", "method": "gradcam",
             "probs": {"glioma": 0.9, "no_tumor": 0.1}, "colour": True, "photo": True}
    warning = [ln for ln in overlay_caption("custom_cnn", entry) if ln.startswith("Warning: ")]
    assert warning == [f"Warning: {FLAG_LABELS['photo']}"]


def _write(tmp_path: Path) -> tuple[Path, Path]:
    photo, mri = tmp_path / "photo.jpg", tmp_path / "mri.png"
    img = screen_photo(_slice(), np.random.default_rng(3), 0.3, "blue")
    cv2.imwrite(str(photo), img[..., ::-1])
    cv2.imwrite(str(mri), _slice())
    return photo, mri


@pytest.mark.slow
def test_predict_and_explain_warn_on_a_screen_photo(smoke_run: Path, tmp_path: Path):
    """`predict` answered a phone photo of a screen with no warning of its kind: it now tags
    each model's answer, says once what the tag means, and its JSON carries `photo`; `explain`
    says it alike and its explain.json carries it too."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    photo, mri = _write(tmp_path)
    args = ["predict", "--run", str(smoke_run), str(photo), str(mri)]
    printed = CliRunner().invoke(app, args)
    assert printed.exit_code == 0, printed.output
    tag = f"[{FLAG_LABELS['photo']}]"
    lines = [ln for ln in printed.stdout.splitlines() if "\t" in ln]
    assert [ln.count(tag) for ln in lines] == [2, 0]  # beside both models' answers
    assert f"[{FLAG_LABELS['colour']}]" not in printed.stdout  # said by the photo tag
    assert printed.stderr.count(FLAG_MEANINGS["photo"]) == 1
    rows = json.loads(CliRunner().invoke(app, [*args, "--json"]).stdout)["results"]
    assert [[m["photo"] for m in r["models"].values()] for r in rows] == [[True] * 2, [False] * 2]
    out = tmp_path / "out"
    printed = CliRunner().invoke(app, ["explain", "--run", str(smoke_run), "--model",
                                       "custom_cnn", str(photo), str(mri), "--out", str(out)])
    assert printed.exit_code == 0, printed.output
    lines = [ln for ln in printed.stdout.splitlines() if "\t" in ln]
    assert [tag in ln for ln in lines] == [True, False]
    assert printed.stderr.count(FLAG_MEANINGS["photo"]) == 1
    rows = json.loads((out / "explain.json").read_text())["images"]
    assert [r["models"]["custom_cnn"]["photo"] for r in rows] == [True, False]


@pytest.mark.slow
def test_the_dataset_is_not_called_a_photo_and_its_screen_photos_are(real_data: Path):
    """Measured 2026-12-06: every one of the 3264 images has a tint of exactly 0 (R = G = B once
    decoded), so none is flagged; screen photos (`synth.photo`, strength 0.2, the three tints)
    of 40 of its Testing/ images: 40 of 40 found."""
    from pipeline.images import read_image

    files = sorted(real_data.rglob("*.jpg"))
    assert len(files) == 3264
    tints = [photo_tint(read_image(f)) for f in files]
    assert sum(t >= PHOTO_TINT for t in tints) == 0, max(tints)
    testing = [f for f in files if f.relative_to(real_data).parts[0] == "Testing"]
    picked = [testing[i] for i in np.random.default_rng(37).choice(len(testing), 40,
                                                                  replace=False)]
    found = sum(looks_like_photo(screen_photo(read_image(f), np.random.default_rng(i), 0.2,
                                              list(TINTS)[i % 3]))
                for i, f in enumerate(picked))
    assert found >= 38, found  # 40 measured
