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
    sequence._build.cache_clear()
    try:
        why = sequence.unavailable()
        assert why and "ImageNet weights" in why
        assert sequence.looks_like_t2([np.zeros((64, 64, 3), np.uint8)]) is None
        assert sequence.flags_prepared(np.zeros((1, 128, 128, 3), np.uint8)) is None
        other = tmp_path / "mine.weights.h5"  # weights of someone's own, not ImageNet's
        other.write_bytes(b"not the ImageNet file")
        monkeypatch.setenv("BRAIN_MRI_WEIGHTS", str(other))
        sequence._build.cache_clear()
        assert "are not the ImageNet file it was fitted with" in sequence.unavailable()
        assert sequence.may_be_t2(np.zeros((64, 64, 3), np.uint8)) is None
    finally:
        sequence._build.cache_clear()


def _weights() -> None:
    sequence._build.cache_clear()  # another test may have left it built without weights
    if sequence.unavailable():
        pytest.skip(f"the hint cannot run here: {sequence.unavailable()}")



def test_two_threads_asking_at_once_build_the_network_once(monkeypatch):
    """The dashboard's warm-up thread builds the hint while a page asks `unavailable()`: with
    lru_cache alone both built it (0.8 s each, twice the memory for a moment)."""
    _weights()
    import threading
    import time

    import keras

    real, built = keras.applications.MobileNetV2, []

    def slow_build(*args, **kwargs):
        built.append(1)
        time.sleep(0.5)  # the window in which the other thread asks
        return real(*args, **kwargs)

    monkeypatch.setattr(keras.applications, "MobileNetV2", slow_build)
    sequence._build.cache_clear()
    try:
        answers: list = []
        threads = [threading.Thread(target=lambda: answers.append(sequence.unavailable()))
                   for _ in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert answers == [None, None] and len(built) == 1
    finally:
        sequence._build.cache_clear()

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
    sequence._build.cache_clear()
    try:
        np.testing.assert_allclose(sequence.features(x), first, rtol=1e-4, atol=1e-5)
    finally:
        sequence._build.cache_clear()


def run_without_far(smoke_run: Path, artifacts: Path) -> Path:
    """A copy of the smoke run in the artifacts folder `artifacts` (its `latest`) whose OOD
    scores have no far level: real MRI may be far unlike the phantoms the smoke run learnt
    (`ood.FAR`), and no T2 hint is given on a far image, so the hint's tests use this copy."""
    import shutil

    from pipeline.ood import OodModel

    run = Path(shutil.copytree(smoke_run, artifacts / "runs" / smoke_run.name))
    (artifacts / "latest").write_text(smoke_run.name)
    for m in ("custom_cnn", "mobilenetv2"):
        score = OodModel.load(run / m / "ood.npz")
        score.far = None
        score.save(run / m / "ood.npz")
    return run


def _two_slices(real_data: Path) -> list[Path]:
    """A Testing/ glioma we read as T2 that the probe flags, and a T1 one it leaves alone."""
    from pipeline.images import read_image

    labels = seqfit.read_labels()
    t2 = [real_data / r for r, s in sorted(labels.items())
          if s == "T2" and r.startswith("Testing/glioma")]
    t1 = [real_data / r for r, s in sorted(labels.items())
          if s == "T1" and r.startswith("Testing/glioma")]
    flagged = sequence.looks_like_t2([read_image(p) for p in t2[:4]])
    kept = sequence.looks_like_t2([read_image(p) for p in t1[:4]])
    return [t2[flagged.index(True)], t1[kept.index(False)]]


@pytest.mark.slow
@pytest.mark.data
def test_predict_and_explain_tag_a_slice_that_may_be_t2_or_flair(smoke_run: Path,
                                                                  real_data: Path,
                                                                  tmp_path: Path):
    """The shipped models called most of Testing/'s T2 and FLAIR gliomas "no tumour" or
    meningioma with nothing said of it: predict and explain now tag such a slice, say once
    what the tag means, and carry `may_be_t2` in their JSON; the overlay's caption says it."""
    _weights()
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.evaluate.flags import FLAG_LABELS, flag_meaning
    from pipeline.explain.overlay_text import overlay_caption

    smoke_run = run_without_far(smoke_run, tmp_path / "artifacts")
    files = [str(p) for p in _two_slices(real_data)]
    tag, meaning = f"[{FLAG_LABELS['t2']}]", flag_meaning("t2")
    printed = CliRunner().invoke(app, ["predict", "--run", str(smoke_run), *files])
    assert printed.exit_code == 0, printed.output
    lines = [ln for ln in printed.stdout.splitlines() if "\t" in ln]
    assert [tag in ln for ln in lines] == [True, False]
    assert printed.stderr.count(meaning) == 1  # a phantom run: the wording for any data
    rows = json.loads(CliRunner().invoke(app, ["predict", "--run", str(smoke_run), *files,
                                               "--json"]).stdout)["results"]
    assert [r["may_be_t2"] for r in rows] == [True, False]
    out = tmp_path / "out"
    printed = CliRunner().invoke(app, ["explain", "--run", str(smoke_run), "--model",
                                       "custom_cnn", *files, "--out", str(out)])
    assert printed.exit_code == 0, printed.output
    lines = [ln for ln in printed.stdout.splitlines() if "\t" in ln]
    assert [tag in ln for ln in lines] == [True, False]
    assert printed.stderr.count(meaning) == 1
    rows = json.loads((out / "explain.json").read_text())["images"]
    assert [r["may_be_t2"] for r in rows] == [True, False]
    caption = overlay_caption("custom_cnn", rows[0]["models"]["custom_cnn"], may_be_t2=True)
    assert any(ln.startswith("Warning: ") and FLAG_LABELS["t2"] in ln for ln in caption)


@pytest.mark.slow
def test_predict_says_when_the_hint_cannot_run(smoke_run: Path, tmp_path: Path):
    """Without ImageNet weights no slice can be marked: predict says so in one note instead of
    leaving its silence to be read as "T1", and still answers."""
    import os
    import subprocess
    import sys

    from PIL import Image

    from pipeline.evaluate.flags import FLAG_LABELS

    img = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(img)
    env = {k: v for k, v in os.environ.items() if k != "BRAIN_MRI_WEIGHTS"}
    env["KERAS_HOME"] = str(tmp_path / "empty")
    done = subprocess.run([sys.executable, "-m", "pipeline", "predict", "--run", str(smoke_run),
                           str(img), "--json"], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    notes = [ln for ln in done.stderr.splitlines() if ln.startswith("note: ")]
    assert any(f"\"{FLAG_LABELS['t2']}\"" in n and "ImageNet weights" in n for n in notes), notes
    assert json.loads(done.stdout)["results"][0]["may_be_t2"] is None


def test_the_card_says_it_with_how_such_test_answers_fared():
    """The card's sentence is the legend's, then the run's record on its test images
    (flags.json's `t2` rows), after a CT hint and before everything else."""
    from dashboard.flags import CT_WARNING, answer_flags, t2_warning
    from pipeline.evaluate.flags import flag_meaning

    probs = {"custom_cnn": np.array([[0.1, 0.7, 0.1, 0.1]]),
             "mobilenetv2": np.array([[0.1, 0.1, 0.7, 0.1]])}
    classes = ["glioma", "meningioma", "no_tumor", "pituitary"]
    row = {"n": 394, "flagged": 90, "accuracy_flagged": 0.6778, "accuracy_unflagged": 0.7697,
           "tumours": {"n": 289, "flagged": 44, "accuracy_flagged": 0.4318,
                       "accuracy_unflagged": 0.7714}}
    measured = {"custom_cnn": {"t2": row},
                "mobilenetv2": {"t2": {**row, "tumours": {**row["tumours"],
                                                          "accuracy_flagged": 0.4091}}}}
    # beside a CT hint it is not said: "may be T2 or FLAIR" contradicted "may be CT" (a
    # clinician's review, 2026-12-07), as it is not said on a colour image or a photo
    said = answer_flags(probs, 0, {}, {}, {}, classes, flag_accuracy=measured, ct=True, t2=True,
                        sartaj=True)
    assert said[0] == CT_WARNING.replace(flag_meaning("ct"), flag_meaning("ct", True))
    assert not any("T2" in f for f in said)
    said = answer_flags(probs, 0, {}, {}, {}, classes, flag_accuracy=measured, t2=True,
                        sartaj=True)
    assert said[0] == t2_warning(True, 2, measured) == t2_warning(True) + (
        " On this run's test images 44 tumours lay on slices that may be T2 or FLAIR, not T1: "
        "Custom CNN named 43% of them right (77% of the other tumours), MobileNetV2 41% (77%).")
    # unmeasured: the sentence alone
    assert t2_warning(measured={"custom_cnn": {"t2": {"n": 3}}}) == t2_warning()
    assert "mostly from contrast-enhanced T1 slices" in t2_warning(True)
    assert not any("T2" in f for f in answer_flags(probs, 0, {}, {}, {}, classes))


def test_flags_json_measures_the_hint_apart_and_on_the_tumours():
    """flags.json's `t2` row: how the answers on slices it marks fared, all of them and the
    tumours' (what it warns of); "any" stays the three answer warnings."""
    from pipeline.evaluate.flags import FLAGS, audit, flag_table

    def row(true: str, predicted: str) -> dict:
        return {"true": true, "predicted": predicted, "confidence": 0.9,
                "correct": true == predicted}

    preds = {"custom_cnn": {"a": row("glioma", "no_tumor"), "b": row("glioma", "glioma"),
                            "c": row("no_tumor", "no_tumor"), "d": row("glioma", "glioma")}}
    t2 = {"a": True, "b": False, "c": True, "d": False}
    got = audit(preds, {"custom_cnn": 0.95}, {}, t2)["custom_cnn"]
    assert got["t2"]["flagged"] == 2 and got["t2"]["accuracy_flagged"] == 0.5
    assert got["t2"]["tumours"] == {"n": 3, "flagged": 1, "share_flagged": 0.3333,
                                    "accuracy_flagged": 0.0, "accuracy_unflagged": 1.0,
                                    "errors_flagged": 1.0}
    assert got["any"] == got["weak"]  # one model, no OOD score: "any" is the weak flag alone
    assert "t2" not in audit(preds, {}, {}, None)["custom_cnn"]  # the hint could not run
    assert "t2" not in audit(preds, {}, {}, {"a": True})["custom_cnn"]  # not every image
    table = flag_table({"models": {"custom_cnn": got}})
    assert [r["warning"] for r in table][-1] == "may be T2 or FLAIR, not T1"
    assert FLAGS.index("t2") == len(FLAGS) - 1


SHIPPED = ("20261204-234844-8cf044", "20261204-234901-1f09da")


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.parametrize("run_id", SHIPPED)
def test_the_shipped_runs_t2_rows_are_what_the_hint_does(run_id: str, real_data: Path):
    """The shipped flags.json's `t2` rows (added on 2026-12-07 beside the OOD rows measured
    before) recomputed from the runs' predictions.csv and the test images; results.md and the
    Overview say the tumours' record in these words."""
    _weights()
    from pipeline import run_files
    from pipeline.artifacts import open_run
    from pipeline.evaluate import flags
    from pipeline.names import display_name
    from pipeline.results_md import warnings_section

    run = open_run(Path(__file__).resolve().parents[1] / "artifacts" / "runs" / run_id)
    preds = {m: flags.read_predictions(run.path / m / run_files.PREDICTIONS,
                                       flags.expected_rows(run.path, m))
             for m in run.model_names}
    rels = sorted(next(iter(preds.values())))
    rows = flags.audit(preds, {}, {}, sequence.files_flags(real_data, rels))
    stored = json.loads((run.path / flags.FILE).read_text())["models"]
    assert {m: stored[m]["t2"] for m in stored} == {m: rows[m]["t2"] for m in rows}
    words = flags.t2_tumours(stored, {m: display_name(m) for m in run.model_names})
    assert words.startswith(f"{stored['custom_cnn']['t2']['tumours']['flagged']} tumours lay")
    assert f"On these test images {words}." in warnings_section(run)


def test_a_series_is_checked_once_when_decoded_not_on_every_rerun(monkeypatch):
    """The Predict page makes every slice of a series a `slice_view` on every rerun: the hint
    (12 ms a slice alone) is found for all slices in one batch when the file is decoded, and a
    slice view reads it."""
    import io

    from PIL import Image

    from dashboard import core

    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (64, 64), np.uint8)) for _ in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "TIFF", save_all=True, append_images=frames[1:])
    upload = core.decode_upload("stack.tif", buf.getvalue())
    assert upload.slices is not None and len(upload.slices) == 3
    want = sequence.looks_like_t2(upload.slices) or [None] * 3
    assert upload.slice_t2 == want and upload.t2 == want[0]

    def no_network(*_: object) -> None:
        raise AssertionError("the hint ran again on a rerun")

    monkeypatch.setattr(core, "looks_like_t2", no_network)
    monkeypatch.setattr(core, "may_be_t2", no_network)
    assert [upload.slice_view(k).t2 for k in range(3)] == want


@pytest.mark.slow
def test_predict_gives_no_t2_hint_on_a_slice_that_may_be_ct(smoke_run: Path, synth_data: Path,
                                                            monkeypatch, tmp_path: Path):
    """"may be T2 or FLAIR, not T1" beside "may be CT, not MRI" contradicted it (a clinician's
    review, 2026-12-07): predict's answers, JSON and CSV leave the hint out there, as the
    dashboard's card does."""
    from pipeline import modality
    from pipeline.artifacts import open_run
    from pipeline.predict import Predictor, predict_files

    monkeypatch.setattr(sequence, "flags_prepared", lambda x: [True] * len(x))
    files = sorted((synth_data / "Testing").rglob("*.png"))[:2]
    predictor = Predictor(open_run(smoke_run), models=["custom_cnn"])
    rows, _ = predict_files(predictor, files)
    assert [r["may_be_ct"] for r in rows] == [False, False]
    assert [r["may_be_t2"] for r in rows] == [True, True]
    monkeypatch.setattr(modality, "looks_like_ct", lambda image: True)
    rows, _ = predict_files(predictor, files)
    assert [(r["may_be_ct"], r["may_be_t2"]) for r in rows] == [(True, False), (True, False)]
    # explain's rows (its JSON, console line) and its captioned overlays, the dashboard's
    # overlay downloads too (a review of the first fix found them still saying both)
    from pipeline.evaluate.flags import FLAG_LABELS
    from pipeline.explain import Explainer
    from pipeline.explain.overlay_text import overlay_caption
    from pipeline.explain.overlays import write_overlays
    from pipeline.images import read_image

    monkeypatch.setattr(sequence, "looks_like_t2", lambda images: [True] * len(images))
    run = open_run(smoke_run)
    explainers = {"custom_cnn": Explainer(run.load_model("custom_cnn"))}
    rows = write_overlays(run, explainers, [(p, read_image(p)) for p in files],
                          tmp_path, method=None, target=None, alpha=0.5, outline=None)
    assert [(r["may_be_ct"], r["may_be_t2"]) for r in rows] == [(True, False), (True, False)]
    entry = rows[0]["models"]["custom_cnn"]
    both = overlay_caption("custom_cnn", entry, may_be_ct=True, may_be_t2=True)
    assert any(FLAG_LABELS["ct"] in ln for ln in both)
    assert not any(FLAG_LABELS["t2"] in ln for ln in both)
    assert any(FLAG_LABELS["t2"] in ln for ln in overlay_caption("custom_cnn", entry,
                                                                   may_be_t2=True))
