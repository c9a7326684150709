"""`modality.looks_like_ct`: a CT slice got the tool's most reassuring output (a confident "no
tumour", no warning); the hint finds the dataset's CT slices and leaves its MRI slices alone."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dashboard import flags as dflags
from pipeline.modality import BLANK_REASON, RULE, ct_features, is_blank, looks_like_ct

CT_LIST = Path(__file__).parent / "data" / "ct_slices.txt"


def _head(rim: int, rim_width: int, band: int, band_width: int, white: int = 140) -> np.ndarray:
    """An axial-slice phantom: an outer ring `rim` wide `rim_width`, then a band `band` wide
    `band_width`, then brain (grey 110) with white matter (`white`: CT shows little grey/white
    contrast), on black."""
    g = np.zeros((256, 256), np.uint8)
    centre, axes = (128, 128), np.array([100, 115])
    cv2.ellipse(g, centre, tuple(axes), 0, 0, 360, rim, -1)
    cv2.ellipse(g, centre, tuple(axes - rim_width), 0, 0, 360, band, -1)
    cv2.ellipse(g, centre, tuple(axes - rim_width - band_width), 0, 0, 360, 110, -1)
    cv2.ellipse(g, centre, (55, 70), 0, 0, 360, white, -1)
    noise = np.random.default_rng(0).normal(0, 4, g.shape) * (g > 0)
    return np.clip(g + noise, 0, 255).astype(np.uint8)


def test_a_thick_white_skull_against_the_brain_is_ct_a_dark_bone_band_is_mri():
    ct = _head(rim=255, rim_width=12, band=110, band_width=0, white=115)  # bone on brain
    mri = _head(rim=255, rim_width=12, band=45, band_width=6)  # clipped fat, then dark bone
    assert looks_like_ct(ct) and looks_like_ct(np.dstack([ct] * 3))  # grey or RGB alike
    assert not looks_like_ct(mri)
    f = ct_features(mri)  # rejected for the dark band alone: the rim itself passes
    assert f["rim_saturation"] >= RULE["rim_saturation"]
    assert f["rim_thickness"] >= RULE["rim_thickness"]
    assert f["inside_ratio"] < RULE["inside_ratio"]
    assert not looks_like_ct(_head(rim=200, rim_width=12, band=110, band_width=0,
                                   white=115))  # a skull not clipped white: not CT here
    assert not looks_like_ct(np.zeros((64, 64), np.uint8))  # no head: never raised
    assert all(np.isnan(v) for v in ct_features(np.zeros((64, 64), np.uint8)).values())


def test_the_synthetic_mri_phantoms_are_not_ct(synth_data: Path):
    from pipeline.images import read_image

    files = sorted(synth_data.rglob("*.png"))
    files = [f for f in files if "masks" not in f.parts]
    assert len(files) >= 100
    flagged = [f.name for f in files if looks_like_ct(read_image(f))]
    assert flagged == []


def test_a_ct_hint_comes_first_after_the_colour_warning():
    probs = {"custom_cnn": np.array([[0.05, 0.05, 0.85, 0.05]])}
    classes = ["glioma", "meningioma", "no_tumor", "pituitary"]
    said = dflags.answer_flags(probs, 0, {}, {}, {}, classes, ct=True, colour=True)
    assert said[:2] == [dflags.COLOUR_WARNING, dflags.ct_warning(n_models=1)]  # one model
    assert said[1].startswith("This slice may be CT, not MRI: a thick white skull ring")
    assert dflags.CT_WARNING not in dflags.answer_flags(probs, 0, {}, {}, {}, classes)


def test_the_draw_note_s_counts_are_the_ct_list_s_and_the_dataset_s(real_data: Path):
    """The Predict page's note beside "Draw test images" (a Sartaj run) counts the CT slices
    among the no-tumour images: from the list, over the dataset's folders."""
    from dashboard.about_text import SARTAJ_DRAW_NOTE
    from pipeline.known_data import SARTAJ_NO_TUMOUR_CT

    ct = [line.strip() for line in CT_LIST.read_text().splitlines()
          if line.strip() and not line.startswith("#")]
    folders = {"all": ["Training/no_tumor", "Testing/no_tumor"], "Testing": ["Testing/no_tumor"]}
    for key, names in folders.items():
        n_ct = sum(any(c.startswith(f + "/") for f in names) for c in ct)
        n_all = sum(len(list((real_data / f).glob("*.jpg"))) for f in names)
        assert SARTAJ_NO_TUMOUR_CT[key] == (n_ct, n_all), key
    assert "(60 of the dataset's 500, 29 of `Testing/`'s 105, by our eye)" in SARTAJ_DRAW_NOTE


@pytest.mark.slow
def test_the_dataset_s_ct_slices_are_found_and_its_mri_slices_left_alone(real_data: Path):
    """Measured 2026-12-05 (thresholds chosen on Training/ only): Training/ 32 of 36 CT, no
    MRI flagged of 2834; Testing/ 33 of 37, none of 357. The bounds leave room for a decoder's
    rounding on another machine, not for a real regression."""
    from pipeline.images import read_image

    ct = {line.strip() for line in CT_LIST.read_text().splitlines()
          if line.strip() and not line.startswith("#")}
    assert len(ct) == 73
    found = {"ct": 0, "mri": 0}
    total = {"ct": 0, "mri": 0}
    for path in sorted(real_data.rglob("*.jpg")):
        rel = path.relative_to(real_data).as_posix()
        kind = "ct" if rel in ct else "mri"
        total[kind] += 1
        image = read_image(path)
        found[kind] += looks_like_ct(image)
        assert not is_blank(image), rel  # every image spans 92 grey levels or more
    assert total == {"ct": 73, "mri": 3191}
    assert found["ct"] >= 60, found  # 65 measured
    assert found["mri"] <= 2, found  # 0 measured


def test_a_flat_image_is_blank_and_a_phantom_slice_is_not():
    assert is_blank(np.zeros((64, 64, 3), np.uint8)) and is_blank(np.full((64, 48), 255, np.uint8))
    jitter = np.random.default_rng(0).integers(-3, 4, (64, 64))  # a flat grey, JPEG-like
    assert is_blank(np.clip(128 + jitter, 0, 255).astype(np.uint8))
    assert not is_blank(np.tile(np.linspace(0, 40, 64).astype(np.uint8), (64, 1)))
    line = np.full((8, 104), 30, np.uint8)
    line[:, 7] = 250  # one bright column in an odd place: 1 % of the pixels
    assert not is_blank(line)
    assert not is_blank(_head(rim=255, rim_width=12, band=45, band_width=6))
    # a small patch is blank too, and the reason does not call it one flat level (a review)
    patch = np.zeros((512, 512), np.uint8)
    patch[:10, :10] = 30
    assert is_blank(patch) and "almost all one grey level" in BLANK_REASON


def test_blank_percentiles_from_the_histogram_are_numpys():
    """`is_blank` reads every slice of a series, so its percentiles come from the grey-level
    histogram (a 512 px slice: 8 ms sorted, about 1 ms counted): value for value what
    np.percentile gives, on flat, noisy, speckled and tiny images, and at the threshold."""
    from pipeline.modality import BLANK_SPREAD, _percentiles

    rng = np.random.default_rng(1)
    images = [np.full((1, 1), 9, np.uint8), np.arange(256, dtype=np.uint8).reshape(16, 16)]
    for k in range(400):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        if k % 3 == 0:
            g = rng.integers(0, 256, (h, w))
        elif k % 3 == 1:
            g = rng.normal(128, rng.uniform(0, 6), (h, w))
        else:  # a flat field with a few specks: near the 0.5 % the percentiles cut
            g = np.full((h, w), rng.integers(0, 256))
            g[rng.random((h, w)) < rng.uniform(0, 0.02)] = rng.integers(0, 256)
        images.append(np.clip(g, 0, 255).astype(np.uint8))
    for g in images:
        assert _percentiles(g, (0.5, 99.5)) == tuple(np.percentile(g, [0.5, 99.5]))
    edge = np.zeros((20, 20), np.uint8)
    edge[10:] = BLANK_SPREAD  # a spread of exactly BLANK_SPREAD is blank, one more is not
    assert is_blank(edge) and not is_blank(edge + (edge > 0))


@pytest.mark.slow
def test_a_blank_file_is_refused_not_answered(smoke_run: Path, tmp_path: Path):
    """A white square was answered "no tumour (97%)": `predict` now refuses a blank file in one
    line, and the dashboard's upload says why it has no answer."""
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from dashboard.core import decode_upload
    from pipeline.cli import app

    white, mri = tmp_path / "white.png", tmp_path / "mri.png"
    Image.fromarray(np.full((256, 256), 255, np.uint8)).save(white)
    Image.fromarray(_head(rim=255, rim_width=12, band=45, band_width=6)).save(mri)
    out = CliRunner().invoke(app, ["predict", "--run", str(smoke_run), "--json", str(white),
                                   str(mri)])
    report = json.loads(out.stdout)
    assert [r["path"] for r in report["results"]] == [str(mri)]
    assert [e["path"] for e in report["errors"]] == [str(white)]
    assert report["errors"][0]["error"].endswith(BLANK_REASON)
    upload = decode_upload("white.png", white.read_bytes())
    assert not upload.ok and upload.error == f"white.png: {BLANK_REASON}"


@pytest.mark.slow
def test_predict_tags_a_slice_that_may_be_ct(smoke_run: Path, tmp_path: Path):
    """`predict` gave a CT slice a bare, confident "no_tumor": it now tags the image, says what
    the tag means once, and its JSON carries `may_be_ct`."""
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.evaluate.flags import FLAG_LABELS, FLAG_MEANINGS

    ct, mri = tmp_path / "ct.png", tmp_path / "mri.png"
    Image.fromarray(_head(rim=255, rim_width=12, band=110, band_width=0, white=115)).save(ct)
    Image.fromarray(_head(rim=255, rim_width=12, band=45, band_width=6)).save(mri)
    args = ["predict", "--run", str(smoke_run), str(ct), str(mri)]
    printed = CliRunner().invoke(app, args)
    assert printed.exit_code == 0, printed.output
    lines = [ln for ln in printed.stdout.splitlines() if "\t" in ln]
    tag = f"[{FLAG_LABELS['ct']}]"
    assert [tag in ln for ln in lines] == [True, False]
    assert printed.stderr.count(FLAG_MEANINGS["ct"]) == 1
    rows = json.loads(CliRunner().invoke(app, [*args, "--json"]).stdout)["results"]
    assert [r["may_be_ct"] for r in rows] == [True, False]


@pytest.mark.slow
def test_explain_tags_and_captions_a_slice_that_may_be_ct(smoke_run: Path, tmp_path: Path):
    """`explain` checked nothing of the kind: it now tags the image as `predict` does, its
    explain.json row carries `may_be_ct`, and the captioned overlay leads its warnings with it."""
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.evaluate.flags import FLAG_LABELS, FLAG_MEANINGS
    from pipeline.explain.overlay_text import overlay_caption

    ct, mri = tmp_path / "ct.png", tmp_path / "mri.png"
    Image.fromarray(_head(rim=255, rim_width=12, band=110, band_width=0, white=115)).save(ct)
    Image.fromarray(_head(rim=255, rim_width=12, band=45, band_width=6)).save(mri)
    out = tmp_path / "out"
    printed = CliRunner().invoke(app, ["explain", "--run", str(smoke_run), "--model",
                                       "custom_cnn", str(ct), str(mri), "--out", str(out)])
    assert printed.exit_code == 0, printed.output
    tag = f"[{FLAG_LABELS['ct']}]"
    lines = [ln for ln in printed.stdout.splitlines() if "\t" in ln]
    assert [tag in ln for ln in lines] == [True, False]
    assert printed.stderr.count(FLAG_MEANINGS["ct"]) == 1
    rows = json.loads((out / "explain.json").read_text())["images"]
    assert [r["may_be_ct"] for r in rows] == [True, False]
    entry = rows[0]["models"]["custom_cnn"]
    warning = [ln for ln in overlay_caption("custom_cnn", entry, may_be_ct=True)
               if ln.startswith("Warning: ")]
    assert warning and warning[0].startswith(f"Warning: {FLAG_LABELS['ct']}")


def test_the_pages_do_not_say_ct_goes_unwarned():
    """The uploader's caption and About still said a CT slice is called "no tumour" "with no
    warning" after the cards began to say it may be CT."""
    from dashboard.about_text import CT_NOTE

    assert "no warning" not in CT_NOTE and "may be CT" in CT_NOTE
