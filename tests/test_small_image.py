"""A small image (under `modality.SMALL_SIDE` px on its longer side) is seen enlarged: a
presenter's review uploaded a 32 x 32 thumbnail and got "glioma 94%" from each model with no word
of its size. On the official run's Testing/ images shrunk to 32 px accuracy fell 13-14 points
while the confidence shown barely moved (README, "Small images"). Every surface now says so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.evaluate.flags import FLAG_LABELS, flag_meaning
from pipeline.modality import SMALL_SIDE, is_small


def test_small_is_under_the_limit_and_every_model_s_input_on_the_longer_side():
    assert SMALL_SIDE == 96
    assert is_small(np.zeros((95, 60, 3), np.uint8)) and is_small(np.zeros((60, 95)))
    assert not is_small(np.zeros((96, 96, 3), np.uint8))
    # a strip is padded to a square and shrunk, not enlarged (a review)
    assert not is_small(np.zeros((95, 400, 3), np.uint8))
    # beside the models' inputs: a run reading 64 px sees an 80 px image shrunk
    assert is_small(np.zeros((80, 80)), [128, 224]) and not is_small(np.zeros((80, 80)), [64, 96])
    assert FLAG_LABELS["small"] == "small image (under 96 px)"
    assert "the model sees it enlarged, with less detail than it learnt from" in flag_meaning(
        "small", n_models=1)


def test_the_card_says_the_size_after_the_no_mri_warnings_and_before_the_rest():
    from dashboard import flags
    from dashboard.card_flags import withheld

    probs = {"custom_cnn": np.array([[0.1, 0.1, 0.7, 0.1]]),
             "mobilenetv2": np.array([[0.1, 0.7, 0.1, 0.1]])}
    classes = ["glioma", "meningioma", "no_tumor", "pituitary"]
    said = flags.answer_flags(probs, 0, {}, {}, {}, classes, "40x32", ct=True, t2=False)
    kinds = [f.kind for f in said]
    assert kinds[:2] == ["ct", "small"] and kinds.index("small") < kinds.index("disagree")
    small = said[1]
    assert small.startswith("Small image (40 × 32 pixels): the image is under 96 pixels on "
                            "its longer side, so the models see it enlarged"), small
    assert withheld(said) == flags.FLAG_LABELS["ct"]  # a caution: it hides no answer itself
    assert "small image (under 96 px)" in flags.summary_line(said)
    for size in ("96x96", "512x512", "95x400", None, "odd"):
        assert "small" not in [f.kind for f in flags.answer_flags(probs, 0, {}, {}, {}, classes,
                                                                   size)], size
    beside = flags.answer_flags(probs, 0, {}, {}, {}, classes, "80x80", input_sides=[64, 96])
    assert "small" not in [f.kind for f in beside]  # the models read 64 px: shrunk, not enlarged


def test_about_s_known_limits_say_it():
    from dashboard.about_text import known_limits

    for sartaj in (True, False):
        said = " ".join(known_limits(["glioma", "no_tumor"], sartaj).split())
        assert "An image under 96 pixels a side (a thumbnail) is seen enlarged" in said


def test_an_overlay_caption_says_it_second_to_ct():
    from pipeline.explain.overlay_text import overlay_caption

    entry = {"predicted": "glioma", "target": "glioma", "method": "gradcam",
             "probs": {"glioma": 0.9, "no_tumor": 0.1}, "peak": "centre"}
    lines = overlay_caption("custom_cnn", entry, may_be_ct=True, small=True)
    said = " ".join(lines)
    assert said.index(FLAG_LABELS["ct"]) < said.index(FLAG_LABELS["small"])
    assert FLAG_LABELS["small"] not in " ".join(overlay_caption("custom_cnn", entry))


@pytest.mark.slow
def test_predict_and_explain_tag_a_small_image(smoke_run: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch):
    """predict's line (the image's own last field), its JSON and CSV, explain's line,
    explain.json and the captioned overlay; a 128 px phantom is not small."""
    import csv

    from PIL import Image
    from typer.testing import CliRunner

    from pipeline.cli import app

    manifest = json.loads((smoke_run / "manifest.json").read_text())
    entry = json.loads((smoke_run / "splits.json").read_text())["test"][0]
    source = Image.open(Path(manifest["data"]["dir"]) / entry["path"])
    small, full = tmp_path / "thumb.png", tmp_path / "full.png"
    source.resize((48, 48)).save(small)
    source.save(full)
    tag = f"[{FLAG_LABELS['small']}]"
    printed = CliRunner().invoke(app, ["predict", "--run", str(smoke_run), str(small), str(full)])
    assert printed.exit_code == 0, printed.output
    lines = [ln for ln in printed.stdout.splitlines() if "\t" in ln]
    assert tag in lines[0].split("\t")[-1] and tag not in lines[1], lines
    assert printed.stderr.count(flag_meaning("small")) == 1  # the legend, once
    rows = json.loads(CliRunner().invoke(
        app, ["predict", "--run", str(smoke_run), "--json", str(small), str(full)]).stdout)
    assert [r["small_image"] for r in rows["results"]] == [True, False]
    out = tmp_path / "answers.csv"
    assert CliRunner().invoke(app, ["predict", "--run", str(smoke_run), "--out", str(out),
                                    str(small), str(full)]).exit_code == 0
    with out.open(encoding="utf-8-sig") as fh:
        assert [r["small_image"] for r in csv.DictReader(fh)] == ["1", "0"]
    from pipeline.explain import overlays

    captions: list[list[str]] = []
    real = overlays.overlay_caption
    monkeypatch.setattr(overlays, "overlay_caption",
                        lambda *a, **k: captions.append(real(*a, **k)) or captions[-1])
    folder = tmp_path / "overlays"
    printed = CliRunner().invoke(app, ["explain", "--run", str(smoke_run), "--model",
                                       "custom_cnn", str(small), "--out", str(folder)])
    assert len(captions) == 1 and FLAG_LABELS["small"] in " ".join(captions[0]), captions
    assert printed.exit_code == 0, printed.output
    assert tag in printed.stdout
    row = json.loads((folder / "explain.json").read_text())["images"][0]
    assert row["small_image"] is True



def test_the_card_s_overlay_download_says_it_too(monkeypatch: pytest.MonkeyPatch):
    """The caption under a card's "Overlay PNG" lists the warning (a review removed it and
    every test still passed), beside the model's own input size."""
    import dataclasses

    from helpers import one_card

    from dashboard import views

    results, upload = one_card([0.3, 0.7])  # a 128 px upload; the model reads 32 px
    said: list[bool] = []
    real = views.overlay_caption

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003
        said.append(kwargs.get("small"))
        return real(*args, **kwargs)

    monkeypatch.setattr(views, "overlay_caption", spy)
    card = np.full((320, 320, 3), 128, np.uint8)

    def caption() -> None:
        views.captioned_picture(card, upload, 0, results, ["glioma", "no_tumor"], "custom_cnn")

    caption()
    upload.image = np.zeros((48, 48, 3), np.uint8)  # a thumbnail: shrunk for a 32 px model
    caption()
    result = results.per_model["custom_cnn"][0]
    results.per_model["custom_cnn"][0] = dataclasses.replace(
        result, prepared=np.zeros((128, 128, 3), np.uint8))  # a model reading 128 px
    caption()
    assert said == [False, False, True]
