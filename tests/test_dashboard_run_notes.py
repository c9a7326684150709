"""What the dashboard says about a run beyond its facts tiles: the images its splits hold and
what was left out (and why), the models it really has, and interrupted runs beside the picker.

The pure functions against the manifests' own figures; the pages (AppTest) against a real
MobileNetV2-only smoke run trained on phantoms with an unreadable file and a label conflict.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import about_text, image_counts, runinfo, state
from pipeline import gaps
from pipeline.interrupted import Interrupted, interrupted_runs

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
TIMEOUT = 240  # a busy 2-core machine


# --------------------------------------------------------------------------- pure


def _facts(n_images, **splits):
    return runinfo.run_facts({"data": {"n_images": n_images}, "splits": splits})


def test_the_images_used_add_up_to_the_folder_with_each_recorded_reason():
    """The Overview's first tile counted every file of the dataset folder (3264 beside splits
    of 2220 + 394 + 394): the splits' sum, and the rest by the reasons the run records."""
    official = _facts(3264, train=2220, val=394, test=394, unreadable_excluded=0, capped_out=0,
                      dropped_duplicates_of_test=256)
    assert image_counts.images_used(official) == 3008
    assert image_counts.left_out_sentence(official) == (
        "The dataset folder holds 3264 image files; this run's splits hold 3008 of them. Left "
        "out of every split: 256 training-folder images that are exact or near copies of "
        "official test images.")
    assert image_counts.used_words(official) == "3264 image files, 3008 of them in the splits"
    messy = _facts(30, train=14, val=3, test=3, unreadable_excluded=5,
                   unreadable=["a/x.jpg", "a/`y`.jpg", "b/z.png", "b/w.png"],
                   label_conflicts_dropped=2, capped_out=3, max_per_class=6)
    said = image_counts.left_out_sentence(messy)
    assert said.startswith("The dataset folder holds 30 image files; this run's splits hold 20 "
                           "of them. Left out of every split: 5 unreadable files: `a/x.jpg`, "
                           "``a/`y`.jpg``, `b/z.png` and 2 more")  # a file name as code
    assert "; 2 label conflicts (the same bytes" in said
    assert "; 3 over the training profile's cap of 6 images a class" in said
    assert "does not record" not in said  # 20 + 5 + 2 + 3 = 30
    # a difference the record does not explain is said to be unrecorded, not guessed at
    gap = image_counts.left_out_sentence(_facts(25, train=14, val=3, test=3,
                                                label_conflicts_dropped=2))
    assert gap.endswith("The run does not record why the other 3 images were left out.")
    everything = _facts(20, train=14, val=3, test=3, unreadable_excluded=0)
    assert image_counts.left_out_sentence(everything) is None
    assert image_counts.used_words(everything) == "20 images"
    assert image_counts.images_used(_facts(20, train=14, val=3)) is None  # no test count


def test_what_this_is_names_the_models_the_run_has():
    """About said "Two image classifiers … a small CNN … and MobileNetV2" for any run."""
    one = about_text.what_this_is({"mobilenetv2": {"weights": "imagenet"}})
    assert one.startswith("**What this is.** An image classifier for brain MRI slices — "
                          "MobileNetV2 adapted from ImageNet by transfer learning — and tools "
                          "that show *why* it decides")
    assert "CNN" not in one and "Two" not in one
    scratch = about_text.what_this_is({"efficientnetb0": {"weights": "none"}})
    assert "EfficientNetB0 trained from random weights (no ImageNet)" in scratch
    both = about_text.what_this_is({"custom_cnn": {}, "mobilenetv2": {"weights": "imagenet"}})
    assert both.startswith("**What this is.** Two image classifiers for brain MRI slices — a "
                           "small CNN trained from scratch and MobileNetV2 adapted from ImageNet")
    assert "by default" in about_text.what_this_is(None)  # no run: the project's defaults


def test_known_limits_follow_the_run_s_model_count():
    """A MobileNetV2-only run's About said "The models see…" and "They always choose…" under
    "An image classifier": the limits now speak of the run's one model."""
    classes = ["glioma", "no_tumor"]
    for sartaj in (True, False):
        one = about_text.known_limits(classes, sartaj, n_models=1)
        assert "- The model sees one slice as a picture: it is not told the sequence" in one
        assert "- It always chooses one of two labels: glioma, no tumour." in one
        assert "The models" not in one and "They " not in one and " they " not in one
        two = about_text.known_limits(classes, sartaj, n_models=2)
        assert "- The models see one slice as a picture: they are not told" in two
        assert "- They always choose one of two labels" in two
        assert about_text.known_limits(classes, sartaj) == two  # no run: the project's models
    assert "- The model was made for MRI" in about_text.known_limits(classes, False, 1)
    # what a percentage is, and the patients nothing was checked on (a clinician's review);
    # why, only where the run's data are known (a phantom or user's run: no Sartaj facts)
    for sartaj in (True, False):
        said = " ".join(about_text.known_limits(classes, sartaj).split())
        assert "not the chance that this patient has a tumour" in said
        assert "checked on children's scans or on operated or treated brains" in said
        assert ("Sartaj collections do not record" in said) is sartaj
    assert about_text.labels_sentence([], 1) == (
        "It always chooses one of the labels it was trained on.")


def test_interrupted_runs_are_named_with_the_commands_for_this_folder(tmp_path, monkeypatch):
    """The picker skips `runs/.tmp-<id>/` folders and nothing said they were there."""
    monkeypatch.delenv("BRAIN_MRI_ARTIFACTS", raising=False)
    assert gaps.out_arg(ROOT / "artifacts") == ""  # the default folder: found by itself
    assert gaps.out_arg(tmp_path) == f" --out {tmp_path}"  # elsewhere: named in full
    one = [Interrupted("20261206-090000-abc123", tmp_path, 12.34, True)]
    assert runinfo.interrupted_words(one, " --out x") == (
        "1 interrupted run not in this list: `20261206-090000-abc123` (12 MB). Continue it in "
        "a terminal with `python -m pipeline train --resume 20261206-090000-abc123 --out x`, "
        "or remove it with `python -m pipeline train --discard 20261206-090000-abc123 --out "
        "x`.")
    never = [Interrupted("a", tmp_path, 0.5, False)]
    assert runinfo.interrupted_words(never) == (
        "1 interrupted run not in this list: `a` (0.5 MB, cannot be continued). Remove it in a "
        "terminal with `python -m pipeline train --discard a`.")
    many = runinfo.interrupted_words([*one, *never])
    assert many.startswith("2 interrupted runs not in this list: ")
    assert "Continue one in a terminal with `python -m pipeline train --resume ID`" in many
    assert runinfo.interrupted_words([]) is None


# --------------------------------------------------------------------------- pages


@pytest.fixture(scope="module")
def one_model_run(synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MobileNetV2-only smoke run on a copy of the phantoms with one unreadable file and one
    image filed under two classes (a label conflict)."""
    from pipeline.config import profile
    from pipeline.train import train_run

    data = tmp_path_factory.mktemp("messy") / "phantoms"
    shutil.copytree(synth_data, data)
    folders = sorted(p for p in (data / "Training").iterdir() if p.is_dir())
    (folders[0] / "broken.jpg").write_bytes(b"not an image")
    first = sorted(folders[1].iterdir())[0]
    shutil.copy(first, folders[2] / f"clash{first.suffix}")
    return train_run(profile("smoke"), data, tmp_path_factory.mktemp("artifacts"),
                     ["mobilenetv2"])


def _app(artifacts: Path, monkeypatch: pytest.MonkeyPatch, page: str = "") -> AppTest:
    monkeypatch.setenv("BRAIN_MRI_ARTIFACTS", str(artifacts))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.slow
def test_overview_and_about_say_what_the_run_used_and_left_out(one_model_run, monkeypatch):
    manifest = json.loads((one_model_run / "manifest.json").read_text())
    splits = manifest["splits"]
    used = splits["train"] + splits["val"] + splits["test"]
    left = {"unreadable_excluded": 1, "label_conflicts_dropped": 2}  # what the fixture made
    assert {k: splits.get(k) for k in left} == left
    assert manifest["data"]["n_images"] == used + 3 + splits["capped_out"]  # all recorded
    at = _app(one_model_run.parent.parent, monkeypatch)
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["Images used"] == str(used)  # what the split tiles add up to
    assert "Images in dataset" not in tiles
    captions = "\n".join(c.value for c in at.caption)
    assert (f"The dataset folder holds {manifest['data']['n_images']} image files; this run's "
            f"splits hold {used} of them. Left out of every split: 1 unreadable file: "
            "`Training/glioma_tumor/broken.jpg`") in captions
    assert "2 label conflicts" in captions and "does not record" not in captions
    about = _app(one_model_run.parent.parent, monkeypatch, "about")
    text = "\n".join(m.value for m in about.markdown)
    assert "An image classifier for brain MRI slices — MobileNetV2" in text
    assert "small CNN" not in text and "Two image classifiers" not in text
    assert "The model sees one slice" in text and "The models see" not in text  # one model
    assert f"{manifest['data']['n_images']} image files, {used} of them in the splits" in text


@pytest.mark.slow
def test_the_run_picker_names_an_interrupted_run_and_its_commands(one_model_run, tmp_path,
                                                                  monkeypatch):
    artifacts = tmp_path / "artifacts"
    shutil.copytree(one_model_run.parent.parent, artifacts)  # the fixture stays as it is
    stopped = artifacts / "runs" / ".tmp-20261206-090000-abc123"
    shutil.copytree(artifacts / "runs" / one_model_run.name, stopped)
    (stopped / "manifest.json").unlink()
    (stopped / "run.json").write_text("{}")  # written last when a run starts: resumable
    assert [r.run_id for r in interrupted_runs(artifacts)] == ["20261206-090000-abc123"]
    at = _app(artifacts, monkeypatch)
    sidebar = "\n".join(c.value for c in at.sidebar.caption)
    # the folder is the default one here ($BRAIN_MRI_ARTIFACTS), as for every "To fix" command
    assert ("1 interrupted run not in this list: `20261206-090000-abc123` (" in sidebar)
    assert ("Continue it in a terminal with `python -m pipeline train --resume "
            "20261206-090000-abc123`, or remove it with `python -m pipeline train --discard "
            "20261206-090000-abc123`.") in sidebar
    assert stopped.is_dir()  # only said: nothing removed
    shutil.rmtree(stopped)
    state.interrupted_note.clear()  # re-scanned every 10 s: now, for the test
    at = _app(artifacts, monkeypatch)
    assert "interrupted" not in "\n".join(c.value for c in at.sidebar.caption)
