"""Do the warnings catch the errors? (pipeline/evaluate/flags.py): the split each flag makes of a
model's test answers, read from real predictions.csv files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.evaluate.flags import (
    audit,
    audit_run,
    flag_split,
    flag_table,
    not_singling_out,
    read_predictions,
)
from pipeline.evaluate.run import write_predictions_csv

CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]


def test_flag_split_counts_accuracy_on_each_side_and_errors_caught():
    correct = np.array([1, 1, 1, 0, 0, 1, 0, 1], bool)
    flagged = np.array([0, 0, 0, 1, 1, 1, 0, 0], bool)
    r = flag_split(correct, flagged)
    assert (r["n"], r["flagged"]) == (8, 3)
    assert r["share_flagged"] == 0.375
    assert r["accuracy_flagged"] == round(1 / 3, 4)  # 1 of the 3 flagged answers was right
    assert r["accuracy_unflagged"] == 0.8  # 4 of 5
    assert r["errors_flagged"] == round(2 / 3, 4)  # 2 of the 3 errors carried the flag


def test_flag_split_with_an_empty_side_says_none_and_refuses_mismatched_lengths():
    r = flag_split(np.ones(4, bool), np.zeros(4, bool))
    assert r["accuracy_flagged"] is None and r["errors_flagged"] is None
    assert r["accuracy_unflagged"] == 1.0
    with pytest.raises(ValueError, match="4 answers but 3 flags"):
        flag_split(np.ones(4, bool), np.zeros(3, bool))


def _write(path: Path, rels: list[str], y: list[int], probs: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_predictions_csv(path, rels, np.array(y), probs.argmax(1), probs, CLASSES)


def _probs(rows: list[tuple[int, float]]) -> np.ndarray:
    """One row per image: the predicted class gets `conf`, the rest share what is left."""
    out = np.zeros((len(rows), 4))
    for i, (k, conf) in enumerate(rows):
        out[i] = (1 - conf) / 3
        out[i, k] = conf
    return out


def test_audit_of_real_prediction_files(tmp_path: Path):
    rels = [f"Testing/x/=img{i}.jpg" for i in range(5)]  # "=": stored formula-neutralised
    y = [0, 1, 2, 3, 0]
    cnn = _probs([(0, 0.9), (2, 0.5), (2, 0.95), (3, 0.6), (1, 0.4)])  # wrong on 1 and 4
    mnv2 = _probs([(0, 0.99), (1, 0.97), (2, 0.9), (3, 0.99), (0, 0.8)])  # all right
    _write(tmp_path / "cnn.csv", rels, y, cnn)
    _write(tmp_path / "mnv2.csv", rels, y, mnv2)
    preds = {"cnn": read_predictions(tmp_path / "cnn.csv"),
             "mnv2": read_predictions(tmp_path / "mnv2.csv")}
    assert set(preds["cnn"]) == set(rels)  # paths come back as they were, not neutralised
    unlike = {"cnn": {rels[0]: False, rels[1]: True, rels[2]: False, rels[3]: False,
                      rels[4]: True}}
    got = audit(preds, {"cnn": 0.7, "mnv2": 0.85}, unlike)
    cnn_rows = got["cnn"]
    assert cnn_rows["weak"]["flagged"] == 3  # 0.5, 0.6, 0.4 < 0.7
    assert cnn_rows["weak"]["accuracy_flagged"] == round(1 / 3, 4)
    assert cnn_rows["unlike"]["flagged"] == 2 and cnn_rows["unlike"]["accuracy_flagged"] == 0.0
    assert cnn_rows["unlike"]["errors_flagged"] == 1.0
    assert cnn_rows["disagree"]["flagged"] == 2  # images 1 and 4
    assert cnn_rows["any"]["flagged"] == 3 and cnn_rows["any"]["accuracy_unflagged"] == 1.0
    # the model without an OOD score has no "unlike" row; nothing is invented for it
    assert set(got["mnv2"]) == {"weak", "disagree", "any"}
    assert got["mnv2"]["weak"]["flagged"] == 1 and got["mnv2"]["weak"]["accuracy_flagged"] == 1.0
    table = flag_table({"models": got}, {"cnn": "Custom CNN"})
    first = table[0]
    assert first["model"] == "Custom CNN" and first["answers flagged"] == "3 of 5"
    assert (first["right when flagged"], first["right otherwise"]) == ("33%", "100%")


def test_a_damaged_predictions_file_is_one_clear_error(tmp_path: Path):
    from pipeline.artifacts import ArtifactError

    path = tmp_path / "predictions.csv"
    path.write_text("path,true,predicted,p_a,p_b,correct\nx.jpg,a,a,0.9,oops,1\n")
    with pytest.raises(ArtifactError, match=r"predictions.csv at line 2 .*To fix: run python "
                       r"-m pipeline evaluate --run"):
        read_predictions(path)
    path.write_text("path,true,p_a,p_b,correct\nx.jpg,a,0.9,0.1,1\n")  # no "predicted"
    with pytest.raises(ArtifactError, match="predictions.csv at line 2"):
        read_predictions(path)


@pytest.mark.parametrize("cut", ["torn row", "whole rows"])
def test_a_predictions_file_cut_short_is_named_not_counted(smoke_run, tmp_path, cut):
    """A copy or sync stopped mid-file left a header, some rows and a torn one: its counts were
    used as the run's (review 4, finding 2). Both readers (ood's audit, the dashboard's Error
    analysis) now name the file and the command that rebuilds it."""
    from dashboard.error_frames import parse_predictions
    from pipeline.artifacts import ArtifactError, open_run
    from pipeline.evaluate.flags import audit_run, expected_rows

    run = tmp_path / "runs" / "copy"
    shutil.copytree(smoke_run, run, ignore=shutil.ignore_patterns("*.keras", "*.npz"))
    path = run / "custom_cnn" / "predictions.csv"
    whole = path.read_bytes()
    n = expected_rows(run, "custom_cnn")
    assert n == len(json.loads((run / "splits.json").read_text())["test"]) == (
        whole.count(b"\n") - 1)
    assert read_predictions(path, n)  # the whole file reads
    if cut == "torn row":
        path.write_bytes(whole[:250])  # header, a row, and a row cut mid-number
        assert not whole[:250].endswith(b"\n")
        said = "its last row is cut short (no line end)"
    else:
        path.write_bytes(b"".join(whole.splitlines(keepends=True)[:3]))
        said = f"2 rows where the run's test split has {n} images"
    fix = f"To fix: run python -m pipeline evaluate --run {run}"
    with pytest.raises(ArtifactError) as caught:
        audit_run(run, {})  # what `ood` runs after refitting
    assert said in str(caught.value) and fix in str(caught.value)
    assert "custom_cnn/predictions.csv" in str(caught.value)
    with pytest.raises(ArtifactError, match=re.escape(said)):
        parse_predictions(path.read_text(), open_run(run).class_names, "p.csv", n)
    # metrics.json gone: the test split's size in splits.json still tells
    (run / "custom_cnn" / "metrics.json").unlink()
    assert expected_rows(run, "custom_cnn") == n


def test_flag_table_skips_what_audit_would_not_write():
    damaged = {"models": {"cnn": {"weak": {"flagged": "3"}, "any": [1]}, "x": 5}}
    assert flag_table(damaged) == []
    assert flag_table({"models": "nothing"}) == []


def test_a_warning_that_does_not_single_out_errors_says_so():
    """On the reference runs the OOD flag marked answers that were right more often than the
    rest (100% of 9 against 89%): the table alone read as "flagged = likely wrong"."""
    right = np.array([True] * 9 + [True] * 424 + [False] * 57)  # 9 flagged, all right
    unlike = np.arange(490) < 9
    weak = np.arange(490) >= 440  # the last 50, all wrong: this flag marks errors
    report = {"models": {"cnn": {"unlike": flag_split(right, unlike),
                                 "weak": flag_split(right, weak)},
                         "mnv2": {"unlike": flag_split(right, ~unlike)}}}
    said = not_singling_out(report, {"cnn": "Custom CNN", "mnv2": "MobileNetV2"})
    # cnn: 9 of 9 right against 424 of 481 = 88%; mnv2's flag marks the errors (88% < 100%)
    assert said == ['The warning "unlike the training data" does not single out wrong answers '
                    "here: flagged answers were right at least as often as the rest (Custom "
                    "CNN: 100% of its 9 flagged answers right, 88% of the others). It says the "
                    "image is unusual, not that the answer is wrong."]
    # a tie counts (at least as often); a model the run does not have is left out
    tie = {"models": {"cnn": {"weak": {"n": 4, "flagged": 2, "accuracy_flagged": 0.5,
                                       "accuracy_unflagged": 0.5}},
                      "[x](http://e)": {"weak": {"n": 4, "flagged": 2, "accuracy_flagged": 1.0,
                                                 "accuracy_unflagged": 0.5}}}}
    (only,) = not_singling_out(tie, {"cnn": "Custom CNN"})
    assert "Custom CNN: 50% of its 2 flagged answers right, 50% of the others" in only
    assert "http" not in only and only.endswith("not that the answer is wrong.")
    assert not_singling_out({"models": {"cnn": {"weak": {"n": 4, "flagged": 0,
                                                         "accuracy_flagged": None,
                                                         "accuracy_unflagged": 0.5}}}}) == []
    assert not_singling_out({"models": "nothing"}) == []


@pytest.mark.slow
def test_audit_run_writes_flags_json_that_matches_the_run_s_files(smoke_run: Path,
                                                                  tmp_path: Path):
    run = tmp_path / smoke_run.name
    shutil.copytree(smoke_run, run)
    preds = {m: read_predictions(run / m / "predictions.csv")
             for m in ("custom_cnn", "mobilenetv2")}
    rels = sorted(preds["custom_cnn"])
    unlike = {"custom_cnn": {r: i % 2 == 0 for i, r in enumerate(rels)}}
    report = audit_run(run, unlike)
    assert json.loads((run / "flags.json").read_text())["models"] == report["models"]
    assert report["shift_validation"] is False  # the smoke run is tested on its own split
    rows = report["models"]["custom_cnn"]
    right = np.array([preds["custom_cnn"][r]["correct"] for r in rels])
    flagged = np.array([unlike["custom_cnn"][r] for r in rels])
    assert rows["unlike"] == flag_split(right, flagged)
    said = {r: {preds[m][r]["predicted"] for m in preds} for r in rels}
    assert rows["disagree"]["flagged"] == sum(len(s) > 1 for s in said.values())


def test_a_colour_image_is_judged_on_the_file_not_on_a_model_s_shrunk_input():
    """Colour noise of 2000 px was "a colour image" for MobileNetV2 (224 px) and not for the
    custom CNN (128 px): area shrinking averaged its colours to grey."""
    import cv2

    from pipeline.evaluate.flags import is_colour

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (2000, 2000, 3), dtype=np.uint8)
    assert is_colour(noise)
    shrunk = cv2.resize(noise, (128, 128), interpolation=cv2.INTER_AREA)
    assert not is_colour(shrunk)  # what the old per-model verdict saw
    strip = np.zeros((300, 4000, 3), np.uint8)
    strip[..., 0] = 200  # a red strip: colour over all of it, not 7 % of a padded square
    assert is_colour(strip)
    grey = np.repeat(rng.integers(0, 256, (600, 600, 1), dtype=np.uint8), 3, axis=-1)
    assert not is_colour(grey)
    marked = grey.copy()
    marked[:100, :100] = (255, 255, 0)  # a coloured label over 2.8 % of a slice: still an MRI
    assert not is_colour(marked)
    assert not is_colour(grey[..., 0])  # single channel


def test_a_box_hit_of_another_class_s_heatmap_is_not_called_finding_the_tumour() -> None:
    """The error gallery explains the predicted class by default: a wrong "no tumour" answer's
    heatmap on the tumour read "Peak inside the tumour box: yes", which a student counted as the
    model finding the tumour (the quality page scores the true class)."""
    from dashboard.flags import box_hit_words

    assert box_hit_words(True, "glioma", "glioma") == "Peak inside the tumour box: **yes**"
    assert box_hit_words(False, "glioma", None, "the box") == "Peak inside the box: **no**"
    wrong = box_hit_words(True, "no_tumor", "glioma")
    assert wrong.startswith("Peak inside the tumour box: **yes**, for the heatmap of "
                            "'no tumour', not of the true class")
    assert "does not mean the model recognised it" in wrong
    missed = box_hit_words(False, "meningioma", "glioma")
    assert missed == ("Peak inside the tumour box: **no**, for the heatmap of 'meningioma', "
                      "not of the true class")


def test_a_card_s_warnings_are_summed_up_in_one_line_by_kind() -> None:
    """Six warning boxes of equal weight on a card stopped being read (a clinician's review):
    the card leads with one line naming their kinds, in the boxes' order, each kind once."""
    from dashboard.flags import CT_WARNING, Flag, answer_flags, summary_line

    classes = ["glioma", "meningioma", "no_tumor", "pituitary"]
    probs = {"custom_cnn": np.array([[0.4, 0.3, 0.2, 0.1]]),
             "mobilenetv2": np.array([[0.1, 0.1, 0.5, 0.3]])}
    said = answer_flags(probs, 0, {"custom_cnn": 0.6, "mobilenetv2": 0.6},
                        {"custom_cnn": True, "mobilenetv2": False}, {}, classes, ct=True)
    assert said[0] == CT_WARNING and all(isinstance(f, Flag) for f in said)
    assert summary_line(said) == (
        "6 warnings: may be CT, not MRI · \"no tumour\" is no rule-out (MobileNetV2) · the "
        "models disagree · unlike the training data (Custom CNN) · weak answer ×2 (Custom CNN, "
        "MobileNetV2)")
    calm = answer_flags({"custom_cnn": np.array([[0.97, 0.01, 0.01, 0.01]])}, 0,
                        {"custom_cnn": 0.6}, {}, {}, classes)
    assert calm == [] and summary_line(calm) == "0 warnings"
    assert summary_line(["a plain sentence"]) == "1 warning"


def test_an_image_s_warnings_are_its_training_split_note_answers_and_heatmaps() -> None:
    """One list for the card's line and the Predict page's summary: a training or validation
    image's split note counts, a test image's does not; the kinds are named in the line."""
    from dashboard.flags import Flag, image_warnings, summary_line

    weak = Flag("Weak answer from Custom CNN.", "weak", ["custom_cnn"])
    empty = Flag("MobileNetV2: the heatmap is empty.", "empty", ["mobilenetv2"])
    for split, counted in (("train", True), ("val", True), ("test", False), ("", False)):
        got = image_warnings([weak], [empty], "This image is in this run's split.", split)
        assert got == ["This image is in this run's split."] * counted + [weak, empty]
    assert image_warnings([], []) == []
    assert summary_line(image_warnings([weak], [empty], "note", "val")) == (
        "3 warnings: in this run's validation split · weak answer (Custom CNN) · empty heatmap "
        "(MobileNetV2)")


def test_a_summary_counts_what_it_lists_in_the_split_note_s_words() -> None:
    """A reviewer read "3 warnings: the run has met this image · weak answer (Custom CNN,
    MobileNetV2)": two items for a count of three, and other words than the note's box ("in
    this run's training split"). A kind said twice now says so, and the note keeps its words."""
    from dashboard.flags import Flag, image_warnings, summary_line
    from pipeline.data.membership import seen_note

    weak = [Flag(f"Weak answer from {m}.", "weak", [m]) for m in ("custom_cnn", "mobilenetv2")]
    line = summary_line(image_warnings(weak, [], seen_note("train", 0, True), "train", True))
    assert line == ("3 warnings: in this run's training split · weak answer ×2 (Custom CNN, "
                    "MobileNetV2)")
    assert "in this run's training split" in seen_note("train", 0, True)
    near = summary_line(image_warnings([], [], seen_note("val", 3, False), "val", False))
    assert near == "1 warning: a near copy in this run's validation split"
    assert seen_note("val", 3, False).startswith("A near copy of this image is in this run's "
                                                 "validation split")
    # a sentence without a kind is counted and said as one
    assert summary_line([weak[0], "a plain sentence"]) == (
        "2 warnings: weak answer (Custom CNN) · 1 other")


def test_a_card_leads_with_no_mri_or_unlike_for_every_model() -> None:
    """Colour noise got "models agree" with a check mark (a lecturer's review): an image that
    may be no MRI, or that every model finds unlike its training data, leads with that."""
    from dashboard.flags import (
        COLOUR_WARNING,
        CT_WARNING,
        PHOTO_WARNING,
        answer_flags,
        leading_flags,
    )

    classes = ["glioma", "meningioma", "no_tumor", "pituitary"]
    sure = np.array([[0.97, 0.01, 0.01, 0.01]])
    probs = {"custom_cnn": sure, "mobilenetv2": sure}
    low = {"custom_cnn": 0.5, "mobilenetv2": 0.5}
    models = list(probs)

    def lead(unlike, **kw):  # noqa: ANN001, ANN003
        return leading_flags(answer_flags(probs, 0, low, unlike, {}, classes, **kw), models)

    both = {"custom_cnn": True, "mobilenetv2": True}
    assert lead({}, colour=True) == [COLOUR_WARNING]
    assert lead({}, ct=True) == [CT_WARNING]
    # a tinted photo of a screen says so instead of "a colour image", and leads as that did
    assert lead({}, colour=True, photo=True) == [PHOTO_WARNING]
    said = lead(both)
    assert [f.kind for f in said] == ["unlike", "unlike"]
    assert lead({"custom_cnn": True, "mobilenetv2": False}) == []  # one model: no lead
    assert lead({"custom_cnn": True, "mobilenetv2": None}) == []  # one not measured: neither
    assert lead({}) == []


def test_a_training_image_s_note_says_what_to_do_instead() -> None:
    """A lecturer demoed Testing/ images that were training images of the default run: the note
    says to draw test images, or to pick an official-testing run when one is loaded."""
    from dashboard.flags import seen_advice

    both = seen_advice("train", True, ["`Official · 1f09da`"])
    assert both == ("To show answers on images the models never trained on, use \"Draw test "
                    "images\" above (images of this run's test split); or, for images of the "
                    "dataset's own Testing/ folder, pick the run `Official · 1f09da` in the "
                    "sidebar, whose test split is that folder.")
    assert "pick the run" not in seen_advice("val", True, [])  # no such run loaded
    assert "Draw test images" not in seen_advice("train", False, ["`x`"])  # no picker
    assert seen_advice("train", False, []) == ""
    assert seen_advice("test", True, ["`x`"]) == ""  # a test image needs no other


def test_the_probability_note_takes_its_figures_from_the_run_s_files() -> None:
    """The cards showed temperature-sharpened percentages (T 0.61-0.63 on the official-testing
    run, whose test ECE they raised from 0.07-0.08 to 0.12-0.15) without a word (h64's review):
    one line says what they are, with the figures of the shipped runs' own files."""
    from dashboard.calibration_line import calibration_note
    from pipeline.names import display_name

    root = Path(__file__).resolve().parents[1] / "artifacts" / "runs"
    for run in sorted(p for p in root.iterdir() if (p / "calibration.json").is_file()):
        manifest = json.loads((run / "manifest.json").read_text())
        temps = {m: e["temperature"] for m, e in json.loads(
            (run / "calibration.json").read_text())["models"].items()}
        tests = {m: json.loads((run / m / "metrics.json").read_text()) for m in temps}
        other = bool(manifest["splits"].get("official_test"))
        line = calibration_note(temps, tests, other)
        assert line.startswith("Percentages temperature-scaled on validation images like the "
                               "training data: they run high on other sources. Custom CNN T = ")
        for m, t in temps.items():  # each model's figures together, its name once
            assert line.count(display_name(m)) == 1
            assert (f"{display_name(m)} T = {t:.2f}, ECE {tests[m]['ece']:.3f} "
                    f"({tests[m]['ece_uncalibrated']:.3f} unscaled)") in line
        assert line.endswith("ECE on the official Testing/ folder, another source." if other
                             else "ECE on test images of the same source.")
        # two lines under a card at 1280 px hold about 270 characters (Chromium, measured;
        # the browser test checks the lines themselves)
        assert len(line) <= 260, len(line)
    assert calibration_note({"custom_cnn": None}, {}) == ""  # nothing scaled: nothing to say
    # no test figures: the temperatures alone, and no word of an ECE
    assert calibration_note({"custom_cnn": 0.5}, {"custom_cnn": None}).endswith(
        "run high on other sources. Custom CNN T = 0.50.")


def test_the_ct_and_no_tumour_warnings_state_the_sartaj_data_s_facts_only_on_its_runs(
        capsys) -> None:
    """"their no-tumour class holds CT slices" was said beside every CT-looking upload and in
    predict's legend, on a student's yes/no run too (a review, 2026-12-06): a fact of the
    shipped runs' data, said now only for a run whose manifest names that data."""
    from dashboard.flags import CT_WARNING, answer_flags, ct_warning
    from pipeline.cli.common import warning_legend
    from pipeline.evaluate.flags import SARTAJ_MEANINGS, SARTAJ_NO_TUMOUR_CAUTION
    from pipeline.known_data import SARTAJ_FINGERPRINTS, trained_on_sartaj

    classes = ["no_tumor", "tumor"]
    probs = {"custom_cnn": np.array([[0.9, 0.1]]), "mobilenetv2": np.array([[0.8, 0.2]])}
    own = answer_flags(probs, 0, {}, {}, {}, classes, ct=True)
    shipped = answer_flags(probs, 0, {}, {}, {}, classes, ct=True, sartaj=True)
    assert own[0] == CT_WARNING and "CT slices" not in " ".join(own)
    assert shipped[0] == ct_warning(True) and SARTAJ_MEANINGS["ct"] in shipped[0]
    assert SARTAJ_NO_TUMOUR_CAUTION in shipped[1]
    warning_legend({"ct", "no_tumor"}, answered=True)
    own_legend = capsys.readouterr().err
    warning_legend({"ct", "no_tumor"}, answered=True, sartaj=True)
    shipped_legend = capsys.readouterr().err
    assert "CT slices" not in own_legend and "CT slices" in shipped_legend
    # a run names its dataset by content (the manifest's fingerprint), not by folder name
    fingerprint = next(iter(SARTAJ_FINGERPRINTS))
    assert trained_on_sartaj({"data": {"fingerprint": fingerprint}})
    assert trained_on_sartaj({"fingerprint": fingerprint})  # the manifest's "data" alone
    assert not trained_on_sartaj({"data": {"dir": "/x/brain-tumor-mri-sartaj", "layout":
                                           "sartaj", "fingerprint": "0" * 64}})
    assert not trained_on_sartaj(None) and not trained_on_sartaj({"data": None})
    # the shipped runs are named so (their pages read as before)
    import json
    from pathlib import Path

    for manifest in (Path(__file__).parents[1] / "artifacts" / "runs").glob("*/manifest.json"):
        assert trained_on_sartaj(json.loads(manifest.read_text())), manifest.parent.name


# "they", "their", "the models": the plural a one-model run's sentences must not have
PLURAL = re.compile(r"\b(the models|their|they)\b", re.IGNORECASE)


def test_a_one_model_run_s_warnings_and_split_notes_speak_of_one_model(capsys) -> None:
    """A MobileNetV2-only run's legend said "the models learnt from this image…, so their
    answer shows what they learnt" and "the models were made for MRI" (a review, 2026-12-06):
    the sentences now follow the number of models answering, from one template each; two
    models (and every caller that does not say) read as before."""
    from dashboard.core import Upload
    from pipeline.cli.common import warning_legend
    from pipeline.data.membership import SEEN_MEANINGS, Seen, seen_meaning, seen_note
    from pipeline.evaluate.flags import FLAG_MEANINGS, SARTAJ_MEANINGS, flag_meaning

    # two models: the sentences of before, word for word
    assert SEEN_MEANINGS["train"] == (
        "the models learnt from this image (or a copy of it), so their answer shows what they "
        "learnt, not how they do on new images")
    assert "the models were made for MRI" in FLAG_MEANINGS["ct"]
    assert "the models were trained on MRI, and their no-tumour class" in SARTAJ_MEANINGS["ct"]
    for kind in FLAG_MEANINGS:
        assert flag_meaning(kind) == flag_meaning(kind, n_models=2) == FLAG_MEANINGS[kind]
    # one model: none of the plural ("disagree" is only ever said of two)
    for sartaj in (False, True):
        for kind in set(FLAG_MEANINGS) - {"disagree"}:
            assert not PLURAL.search(flag_meaning(kind, sartaj, 1)), (kind, sartaj)
    assert "the model was made for MRI" in flag_meaning("ct", n_models=1)
    assert "the model was trained on MRI, and its no-tumour class" in flag_meaning("ct", True, 1)
    assert "what the model sees" in flag_meaning("photo", n_models=1)
    assert seen_meaning("train", 1) == ("the model learnt from this image (or a copy of it), so "
                                        "its answer shows what it learnt, not how it does on new "
                                        "images")
    assert seen_note("val", 0, True, n_models=1) == (
        "This image is in this run's validation split: the model did not learn from it, but its "
        "training was stopped and calibrated on it, so its answer is not a clean test.")
    assert seen_note("train", 3, False, 1).startswith("A near copy of this image is in this run's "
                                                      "training split: the model learnt from "
                                                      "that copy, so its answer")
    # the legend predict and explain print, every line at once
    every = set(FLAG_MEANINGS) - {"disagree"} | {"no_tumor"}
    warning_legend(every, {"train", "val", "test"}, n_models=1)
    one = capsys.readouterr().err
    assert "the model learnt from this image" in one and not PLURAL.search(one), one
    warning_legend(every, {"train", "val", "test"})
    two = capsys.readouterr().err
    assert all(SEEN_MEANINGS[s] in two for s in SEEN_MEANINGS)
    # the tags as printed: a near copy's tag had no line of its own (a review)
    from pipeline.data.membership import seen_tag

    warning_legend(set(), {seen_tag("val", False)}, answered=False)
    near = capsys.readouterr().err
    assert near == f"[a near copy in this run's validation split]: {SEEN_MEANINGS['val']}.\n"
    warning_legend(set(), {seen_tag("val", True), seen_tag("val", False)}, answered=False)
    assert capsys.readouterr().err == (
        "[in this run's validation split], [a near copy in this run's validation split]: "
        f"{SEEN_MEANINGS['val']}.\n")
    # the dashboard's split note on an upload (the Predict page passes the run's model count)
    upload = Upload("a.png", "0" * 64)
    upload.mark_seen(Seen("train", 0, True), {}, n_models=1)
    assert upload.seen == seen_note("train", 0, True, 1) and not PLURAL.search(upload.seen)
    upload.mark_seen(Seen("train", 0, True), {})
    assert upload.seen == seen_note("train", 0, True) and "the models learnt" in upload.seen


def test_a_one_model_run_s_overview_says_what_its_warnings_say_of_one_model() -> None:
    """"Together they say something about the image or the models" under a one-model run's
    table of warnings: the sentence now follows the models of the run's flags.json."""
    row = {"n": 10, "flagged": 2, "accuracy_flagged": 1.0, "accuracy_unflagged": 0.5}
    one = not_singling_out({"models": {"cnn": {"any": row}}}, {"cnn": "Custom CNN"})
    assert len(one) == 1 and one[0].endswith("about the image or the model, not that the "
                                             "answer is wrong.")
    two = not_singling_out({"models": {"cnn": {"any": row}, "mnv2": {"any": row}}})
    assert two[0].endswith("about the image or the models, not that the answer is wrong.")


def test_the_cards_ct_and_photo_warnings_speak_of_the_run_s_one_model() -> None:
    """On a one-model run the card's CT and photo warnings said "the models were made for MRI"
    and "what the models see" (helper-81 noticed); they follow the card's model count now, and
    two models' cards read exactly as before."""
    from dashboard.flags import CT_WARNING, PHOTO_WARNING, answer_flags

    classes = ["glioma", "meningioma", "no_tumor", "pituitary"]
    p = np.array([[0.7, 0.1, 0.1, 0.1]])
    one = {"mobilenetv2": p}
    two = {"custom_cnn": p, "mobilenetv2": p}
    for probs, said_of in ((one, "the model "), (two, "the models ")):
        ct = answer_flags(probs, 0, {}, {}, {}, classes, ct=True)[0]
        photo = answer_flags(probs, 0, {}, {}, {}, classes, photo=True, colour=True)[0]
        assert f"{said_of}was made for MRI" in ct or f"{said_of}were made for MRI" in ct
        assert f"what {said_of}" in photo
    assert answer_flags(two, 0, {}, {}, {}, classes, ct=True)[0] == CT_WARNING
    assert answer_flags(two, 0, {}, {}, {}, classes, photo=True)[0] == PHOTO_WARNING
    one_ct = answer_flags(one, 0, {}, {}, {}, classes, ct=True)[0]
    assert "the models" not in one_ct and "the model was made for MRI" in one_ct
