"""Do the warnings catch the errors? How often the test answers each flag marks were right.

The CLI and the dashboard warn beside an answer when it is weak (confidence below the model's
validation threshold, `calibration.low_confidence`), when the image is unlike the model's
training data (the OOD score above its validation threshold, `pipeline.ood`) and when the models
disagree. A warning earns its place if the answers it marks are wrong far more often than the
others. This module measures that on the run's test split and writes `flags.json`; on a run
tested on another source (the official `Testing/` folder) that is shift validation: how far the
warnings can be trusted off the training distribution. `ood` writes it, since the OOD flags of
the test images exist only there; the other two come from `predictions.csv` and
`calibration.json`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import artifacts, run_files
from pipeline.calibration import LOW_CONFIDENCE_ACCURACY, read_low_confidence
from pipeline.evaluate.predictions_file import expected_rows, read_predictions
from pipeline.modality import SMALL_SIDE, not_mri_words
from pipeline.names import NO_TUMOR, display_name, model_words
from pipeline.ood import FAR, FAR_MARGIN

FILE = run_files.FLAGS
# the order tables show them in; "any" is the three answer warnings above it, "t2" the per-image
# hint (`pipeline.sequence`), measured apart
FLAGS = ("weak", "unlike", "disagree", "any", "t2")
FLAG_LABELS = {  # what the warnings say, in the words the dashboard uses beside an answer
    # per image (`modality.looks_like_photo`); said instead of "colour" when both are raised
    "photo": "looks like a photo of a screen or film",
    "colour": "a colour image, not a greyscale MRI",  # per image; not audited in flags.json
    "weak": "weak answer (low confidence)",
    "far": "far unlike the training data",  # `ood.FAR`: said instead of "unlike" (SAID_BY)
    "unlike": "unlike the training data",
    "disagree": "the models disagree",
    "ct": "may be CT, not MRI",
    "modality": "not MRI by its DICOM header",  # per image; a tag names it: `not_mri_label`
    "t2": "may be T2 or FLAIR, not T1",  # per image (`pipeline.sequence`, a learnt hint)
    "small": f"small image (under {SMALL_SIDE} px)",  # per image (`modality.is_small`)
    # every "no tumour" answer: never a rule-out (the caution itself: NO_TUMOUR_CAUTION)
    "no_tumour": "\"no tumour\" is no rule-out",
    "any": "any of these",
}
# One sentence each, for the CLI's legend below flagged answers, in `names.model_words`' fields
# ("the {models} {were}"): `flag_meaning` says them of a run's one model or two
_FLAG_TEMPLATES = {
    # the dashboard's card warning is this sentence too (`dashboard.flags.PHOTO_WARNING`)
    "photo": "the image has a colour tint, as a phone photo of a monitor or of a film on a "
             "lightbox has, where an MRI export is grey; answers on photographs are unreliable "
             "(glare, moire, perspective and the frame change what the {models} {see}): export "
             "the image from the viewer instead, in greyscale (an export through a colour map "
             "is tinted too, and the {models} saw only grey slices); and if it is not an MRI "
             "slice at all, no answer means anything",
    "colour": "MRI slices are greyscale, so this may not be an MRI slice at all, and then no "
              "answer means anything",
    "weak": "the model is so unsure that, on validation images, its answers this unsure were "
            f"right less than {LOW_CONFIDENCE_ACCURACY:.0%} of the time",
    # (the dashboard's card warning says it too: `dashboard.flags.answer_flags`)
    # (said of any run: how noise and real slices fared is the shipped runs' record, README)
    "far": f"the model's out-of-distribution score is over {FAR_MARGIN:g} times the most unusual "
           "validation image's: it may not be a brain MRI slice at all, and then no answer "
           "means anything",
    "unlike": "the model's out-of-distribution score is above its validation threshold, so its "
              "validation accuracy does not vouch for the answer",
    "disagree": "the two models give different answers, so at least one of them is wrong",
    # per image: `predict` tags the image (`not_mri_label`); the card: `modality_header_meaning`
    "modality": "its DICOM header names another kind of imaging than MRI (the tag names it); "
                "the {models} {were} made for brain MRI, so {their} answers say nothing of it",
    # per image, not per model: `predict` tags the image (`modality.looks_like_ct`, a hint)
    # (the dashboard's card warning is this sentence too: `dashboard.flags.CT_WARNING`)
    # (said of any run; `SARTAJ_MEANINGS` for a run trained on the Sartaj data: `flag_meaning`)
    "ct": "a thick white skull ring right against the brain, as on CT, or a DICOM header that "
          "says CT; the {models} {were} made for MRI, so an answer on a CT slice says nothing "
          "of it (the ring is a rough check: it can miss CT, and now and then flag an MRI "
          "slice; a DICOM header that names CT or MR decides instead)",
    # per image: `predict` tags the image (`modality.is_small`); the dashboard's card says it
    "small": f"the image is under {SMALL_SIDE} pixels on its longer side, so the {{models}} "
             "{see} it enlarged, with less detail than {they} learnt from: an answer may be "
             "wrong while sounding as sure as on a full-size slice; if it is a reduced copy "
             "(a thumbnail, a screenshot), export the slice at its full size",
    # per image: `predict` tags the image (`pipeline.sequence.looks_like_t2`, a learnt hint)
    "t2": "it seems to show bright fluid, or FLAIR's grey contrast, as T2 and FLAIR slices do, "
          "or its DICOM header's echo or inversion time is theirs; a model's answers hold only "
          "on the kinds of slice it learnt from (the look is a learnt check: it can miss such "
          "a slice, and now and then flag a T1 one)",
}
# What a warning means on a run trained on the Sartaj data (`known_data.trained_on_sartaj`),
# whose no-tumour folder holds CT slices; on any other run that would be a claim about data we
# never saw (a review, 2026-12-06)
_SARTAJ_TEMPLATES = {
    "ct": "a thick white skull ring right against the brain, as on CT, or a DICOM header "
          "that says CT; the {models} {were} trained on MRI, and {their} no-tumour class holds "
          "CT slices, so a CT slice is usually called \"no tumour\" whatever it shows (the "
          "ring is a rough check: it can miss CT, and now and then flag an MRI slice; a DICOM "
          "header that names CT or MR decides instead)",
    # labels.csv: 18 of Training/'s 2475 tumour slices are T2 or FLAIR by our eye, none a glioma,
    # against 161 of its 395 no-tumour slices; Testing/: README, "T2 and FLAIR slices"
    "t2": "it seems to show bright fluid, or FLAIR's grey contrast, as T2 and FLAIR slices do, "
          "or its DICOM header's echo or inversion time is theirs; the {models} learnt tumours "
          "mostly from contrast-enhanced T1 slices (in {their} training data nearly every T2 or "
          "FLAIR slice is \"no tumour\"), so on such a slice a tumour is often called \"no "
          "tumour\" or meningioma (the look is a learnt check: it can miss such a slice, and "
          "now and then flag a T1 one)",
}


def flag_meaning(kind: str, sartaj: bool = False, n_models: int = 2) -> str:
    """What warning `kind` means (`FLAG_MEANINGS`' keys), in its Sartaj wording for a run
    trained on that data, said of `n_models` models ("the model was made for MRI" for one)."""
    text = (_SARTAJ_TEMPLATES.get(kind) if sartaj else None) or _FLAG_TEMPLATES[kind]
    return text.format(**model_words(n_models))


def ct_header_meaning(sartaj: bool = False, n_models: int = 2) -> str:
    """What the "ct" warning means where a DICOM header said CT (`modality.may_be_ct`): the
    scanner's word, not a look, so said as a fact (the card's `dashboard.flags.ct_warning`);
    in the Sartaj data's words for a run trained on it."""
    why = ("trained on MRI, and {their} no-tumour class holds CT slices, so a CT slice is "
           "usually called \"no tumour\" whatever it shows" if sartaj else
           "made for MRI, so an answer on a CT slice says nothing of it")
    return ("its DICOM header names the scanner CT; the {models} {were} " + why).format(
        **model_words(n_models))


def modality_header_meaning(dicom_modality: str, n_models: int = 2) -> str:
    """"its DICOM header names the modality ultrasound (US); the models are made for brain MRI,
    so their answers say nothing of it": a header naming another acquisition than MRI or CT
    (`modality.not_mri_words`) as the file's own fact (the card's warning); "" otherwise."""
    return ("its DICOM header names the modality {words}; the {models} {are} made for brain "
            "MRI, so {their} answers say nothing of it").format(
        words=words, are="is" if n_models == 1 else "are", **model_words(n_models)) if (
        words := not_mri_words(dicom_modality)) else ""


def not_mri_kind(ct: bool | str) -> str:
    """An image's "not MRI" kind from `may_be_ct` or a code naming another acquisition
    (`inference.ct_said`, rows' `not_mri_modality`): "modality", "ct" (truthy), or ""."""
    return "modality" if isinstance(ct, str) and not_mri_words(ct) else "ct" if ct else ""


def not_mri_label(ct: bool | str) -> str:
    """The tag of `not_mri_kind(ct)`, which predict's and explain's lines and captions say
    first: "not MRI: ultrasound (US) by its DICOM header", "may be CT, not MRI", or ""."""
    if not_mri_kind(ct) == "modality":
        return f"not MRI: {not_mri_words(str(ct))} by its DICOM header"
    return FLAG_LABELS["ct"] if ct else ""


# the sentences for two models, the default pair (the dashboard's card warnings quote them)
FLAG_MEANINGS = {k: flag_meaning(k) for k in _FLAG_TEMPLATES}
SARTAJ_MEANINGS = {k: flag_meaning(k, sartaj=True) for k in _SARTAJ_TEMPLATES}

# What a warning still says when the answers it marks are right at least as often as the rest
# (the OOD flag on the reference runs: 100% of 9 flagged against 89%): worded per warning, in
# `names.model_words`' fields (`not_singling_out` fills them for the report's models)
FLAG_NOT_WRONG = {
    "weak": "It says the model is unsure, not that the answer is wrong.",
    "unlike": "It says the image is unusual, not that the answer is wrong.",
    "disagree": "It says the models differ, not which answer is wrong.",
    "any": "Together they say something about the image or the {models}, not that the answer "
           "is wrong.",
    "t2": "It says the slice is not of the kind the tumour classes were learnt from, not that "
          "the answer is wrong.",
}

# Said beside every "no tumour" answer, whatever its confidence (a clinician's review,
# 2026-12-05: a missed tumour read as reassurance is the dangerous error, and the custom CNN's
# commonest one): the class is "looks like this dataset's no-tumour folder", not "normal".
NO_TUMOUR_CAUTION = ("a 'no tumour' answer cannot rule a tumour out: it means the slice looks "
                     "most like the training data's no-tumour images, not that the brain is "
                     "normal")
# the same on a run trained on the Sartaj data, whose no-tumour folder holds CT slices
SARTAJ_NO_TUMOUR_CAUTION = ("a 'no tumour' answer cannot rule a tumour out: it means the slice "
                            "looks most like the training data's no-tumour images (a folder that "
                            "includes CT slices), not that the brain is normal")


def no_tumour_caution(sartaj: bool = False) -> str:
    """The caution beside every "no tumour" answer: the Sartaj wording for a run trained on it."""
    return SARTAJ_NO_TUMOUR_CAUTION if sartaj else NO_TUMOUR_CAUTION


def no_tumour_record(record: dict | None, name: str) -> str:
    """" On this run's test images, 71% of Custom CNN's 'no tumour' answers were right, and
    it called 29 of 415 tumours 'no tumour'." from model `name`'s metrics.json
    `tumor_vs_no_tumor`; "" when not measured."""
    r = record or {}
    fn, n_tumour, tn = r.get("fn"), r.get("n_tumor"), r.get("tn")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (fn, n_tumour, tn)):
        return ""
    said = fn + tn
    right = (f"{tn / said:.0%} of {name}'s 'no tumour' answers were right, and it"
             if said else name)
    return f" On this run's test images, {right} called {fn} of {n_tumour} tumours 'no tumour'."


def far_label(models: Sequence[str]) -> str:
    """"far unlike Custom CNN's training data": why an image's answers are withheld when these
    models find it far unlike theirs (`ood.FAR`). A card folds every answer when one model
    does, so the table, the PDF and each overlay say whose verdict it was (a review: one
    model's far verdict read as both's)."""
    names = " and ".join(f"{display_name(m)}'s" for m in models)
    return f"far unlike {names} training data" if names else FLAG_LABELS["far"]


# A warning not said beside another that says it and more: a tinted photo is a colour image too
SAID_BY = {"colour": "photo", "unlike": "far"}


def raised_flags(answer: Mapping[str, Any]) -> list[str]:
    """The warnings (`FLAG_MEANINGS` keys, in its order) raised on one answer, less those
    another raised one says (`SAID_BY`): what the CLI tags and the dashboard's card say."""
    raised = [k for k in FLAG_MEANINGS if answer.get(k)]
    return [k for k in raised if SAID_BY.get(k) not in raised]


# A pixel is coloured when its channels differ by more than COLOUR_SPREAD grey levels; an image
# is a colour image when more than COLOUR_SHARE of its pixels are. Every one of the Sartaj
# dataset's 3264 images has no such pixel (measured 2026-12-05); a coloured annotation
# (a burnt-in arrow or label) covers far less than 5 % of a slice.
COLOUR_SPREAD = 24
COLOUR_SHARE = 0.05


# The verdict is taken on the decoded file, every pixel up to this many a side (a larger image
# is sampled with a stride, never averaged): on each model's shrunk input, averaging turned
# colour noise grey, so one file was "a colour image" for MobileNetV2 (224 px) and not for the
# custom CNN (128 px), and a colour strip padded to a square fell under the share.
COLOUR_SIDE = 512


def is_colour(image: np.ndarray) -> bool:
    """Whether a decoded image (H, W, 3; 0-255) is a colour image, which an MRI slice is not (a
    photo, a screenshot, random colour noise): one verdict per file, whatever the model."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] < 3:
        return False
    step = max(1, -(-max(image.shape[:2]) // COLOUR_SIDE))
    sample = image[::step, ::step, :3].astype(np.int16)
    spread = sample.max(axis=-1) - sample.min(axis=-1)
    return bool((spread > COLOUR_SPREAD).mean() > COLOUR_SHARE)


def answer_flags(probs: np.ndarray, weak_below: float | None, unlike: np.ndarray | None,
                 colour: Sequence[bool] | None = None,
                 photo: Sequence[bool] | None = None) -> dict[str, list[bool | None]]:
    """The per-answer warnings for a batch of (calibrated) `probs` (N, classes): "weak" (the top
    probability below `weak_below`, `calibration.low_confidence`), "unlike" and "far" (from
    `unlike`, one OOD level per image, `ood.OodModel.levels`: truthy is unlike, `ood.FAR` far;
    a bool works as LIKE / UNLIKE) and, given each file's `is_colour` verdict, "colour" (and its
    `modality.looks_like_photo` verdict, "photo"); None where
    the run does not measure it (`weak_below` or `unlike` None). `predict` and `explain` both
    use it, so their warnings cannot drift apart."""
    probs = np.asarray(probs)
    n = len(probs)
    out = {"weak": [None] * n if weak_below is None
           else [bool(c < weak_below) for c in probs.max(axis=1)],
           "unlike": [None] * n if unlike is None else [bool(u) for u in unlike],
           "far": [None] * n if unlike is None else [int(u) >= FAR for u in unlike]}
    if colour is not None:
        out["colour"] = [bool(c) for c in colour]
    if photo is not None:
        out["photo"] = [bool(c) for c in photo]
    return out


def flag_split(correct: np.ndarray, flagged: np.ndarray) -> dict[str, Any]:
    """How one flag splits a model's test answers: how many it marks, the accuracy of the
    answers it marks and of the rest, and the share of all errors it marks (None where a group
    is empty)."""
    correct = np.asarray(correct, bool)
    flagged = np.asarray(flagged, bool)
    if correct.shape != flagged.shape:
        raise ValueError(f"{correct.shape[0]} answers but {flagged.shape[0]} flags")
    errors = ~correct

    def mean(x: np.ndarray) -> float | None:
        return round(float(x.mean()), 4) if x.size else None

    return {"n": int(correct.size), "flagged": int(flagged.sum()),
            "share_flagged": mean(flagged),
            "accuracy_flagged": mean(correct[flagged]),
            "accuracy_unflagged": mean(correct[~flagged]),
            "errors_flagged": mean(flagged[errors])}


def audit(predictions: Mapping[str, Mapping[str, Mapping[str, Any]]],
          low_below: Mapping[str, float],
          unlike: Mapping[str, Mapping[str, bool]],
          t2: Mapping[str, bool] | None = None) -> dict[str, dict[str, Any]]:
    """Per model, `flag_split` of each flag over the test images every input covers.

    `predictions`: per model, `read_predictions`; `low_below`: per model, the weak-answer
    threshold; `unlike`: per model, {path: flagged by the OOD score}; `t2`: {path: may be T2 or
    FLAIR} (`sequence.files_flags`), None where the hint cannot run. A model without a
    threshold or an OOD score simply has no row for that flag; "disagree" needs two models.
    """
    models = list(predictions)
    common = set.intersection(*(set(p) for p in predictions.values())) if models else set()
    out: dict[str, dict[str, Any]] = {}
    for m in models:
        paths = sorted(common & set(unlike[m]) if m in unlike else common)
        rows = [predictions[m][p] for p in paths]
        correct = np.array([r["correct"] for r in rows], bool)
        flags: dict[str, np.ndarray] = {}
        if m in low_below:
            flags["weak"] = np.array([r["confidence"] < low_below[m] for r in rows], bool)
        if m in unlike:
            flags["unlike"] = np.array([bool(unlike[m][p]) for p in paths], bool)
        if len(models) > 1:
            flags["disagree"] = np.array(
                [len({predictions[o][p]["predicted"] for o in models}) > 1 for p in paths], bool)
        if flags:
            flags["any"] = np.any(np.stack(list(flags.values())), axis=0)
        if t2 is not None and all(p in t2 for p in paths):
            flags["t2"] = np.array([bool(t2[p]) for p in paths], bool)
        out[m] = {k: flag_split(correct, f) for k, f in flags.items()}
        if "t2" in flags:  # what the hint warns of: tumours on such slices go unrecognised
            tumour = np.array([r["true"] != NO_TUMOR for r in rows], bool)
            out[m]["t2"]["tumours"] = flag_split(correct[tumour], flags["t2"][tumour])
    return out


def audit_run(run_dir: str | Path, unlike: Mapping[str, Mapping[str, bool]],
              t2: Mapping[str, bool] | None = None) -> dict[str, Any]:
    """`audit` of a run's test split from its files and the given OOD flags and T2/FLAIR hints
    (`sequence.files_flags`); writes `flags.json` and returns it. Models without
    `predictions.csv` are left out."""
    run = artifacts.open_run(run_dir)
    preds = {m: read_predictions(run.path / m / run_files.PREDICTIONS,
                                 expected_rows(run.path, m)) for m in run.model_names
             if (run.path / m / run_files.PREDICTIONS).is_file()}
    if not preds:
        raise artifacts.ArtifactError(f"run {run.run_id} has no predictions.csv: evaluate it "
                                      "first")
    official = bool(run.manifest.get("config", {}).get("official_test"))
    report = {
        "split": "test", "run_id": run.run_id, "created": artifacts.utc_now(),
        "shift_validation": official,  # tested on another source: the official Testing folder
        "rule": "weak: calibrated confidence below the model's validation threshold "
                "(calibration.json); unlike: OOD score above its validation threshold "
                "(ood.json); disagree: the models' answers differ; any: one of these three; "
                "t2: the image may be T2 or FLAIR, not T1 (pipeline.sequence)",
        "models": audit(preds, read_low_confidence(run.path), unlike, t2),
    }
    artifacts.write_json_atomic(run.path / FILE, report)
    return report


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.0%}"


def flag_summary(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """One line per model for the CLI: each flag's count and accuracy flagged / not."""
    return "; ".join(f"{k} {r['flagged']}/{r['n']}: {_pct(r['accuracy_flagged'])} / "
                     f"{_pct(r['accuracy_unflagged'])}" for k, r in rows.items())


def flag_table(report: Mapping[str, Any], display: Mapping[str, str] | None = None
               ) -> list[dict[str, Any]]:
    """Rows for a table (model, flag, test answers flagged, accuracy flagged / not, errors
    flagged) from a `flags.json` object, flags in `FLAGS` order; entries that are not what
    `audit` writes (a damaged or foreign file) are skipped."""
    rows = []
    for m, k, r in _rows(report):
        rows.append({"model": (display or {}).get(m, m), "warning": FLAG_LABELS[k],
                     "answers flagged": f"{r['flagged']} of {r['n']}",
                     "right when flagged": _pct(r.get("accuracy_flagged")),
                     "right otherwise": _pct(r.get("accuracy_unflagged")),
                     "errors flagged": _pct(r.get("errors_flagged"))})
    return rows



def audit_caption(report: Mapping[str, Any]) -> str:
    """What `flag_table`'s figures are, in words (the Overview's caption and results.md's)."""
    where = ("the official Testing folder, another source than training: shift validation, "
             "how far the warnings hold off the training distribution"
             if report.get("shift_validation") else "the run's test split")
    return ("The warnings shown beside each answer on the Predict page, applied to the test "
            f"answers ({where}). A useful warning marks answers that are right far less often "
            "than the rest; \"errors flagged\" is the share of the model's wrong answers that "
            "carried it. \"Any of these\" is the three answer warnings; \"may be T2 or FLAIR\" "
            "is a hint about the image, measured apart.")

def t2_tumours(models: Mapping[str, Any], display: Mapping[str, str]) -> str:
    """"44 tumours lay on slices that may be T2 or FLAIR, not T1: Custom CNN named 43% of them right
    (77% of the other tumours), MobileNetV2 41% (77%)": what the hint warns of, from
    flags.json's "models" (`audit`'s `t2` rows), for the models in `display` (name -> shown);
    "" where not measured."""
    said, n = [], None
    for m, name in display.items():
        entry = models.get(m) if isinstance(models, Mapping) else None
        row = entry.get("t2") if isinstance(entry, Mapping) else None
        r = row.get("tumours") if isinstance(row, Mapping) else None
        if not isinstance(r, Mapping) or not isinstance(r.get("flagged"), int):
            continue
        hit, rest = r.get("accuracy_flagged"), r.get("accuracy_unflagged")
        if not all(isinstance(v, int | float) for v in (hit, rest)):
            continue
        n = r["flagged"]
        said.append(f"{name} named {hit:.0%} of them right ({rest:.0%} of the other tumours)"
                    if not said else f"{name} {hit:.0%} ({rest:.0%})")
    if not said:
        return ""
    return (f"{n} tumour{'s' * (n != 1)} lay on slices that {FLAG_LABELS['t2']}: "
            f"{', '.join(said)}")


def _rows(report: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(model, flag, row) for every row `audit` would write, flags in `FLAGS` order within a
    model; a damaged or foreign entry is skipped."""
    models = report.get("models") if isinstance(report, Mapping) else None
    out = []
    for m, flags in (models.items() if isinstance(models, Mapping) else ()):
        for k in FLAGS:
            r = flags.get(k) if isinstance(flags, Mapping) else None
            if (isinstance(r, Mapping) and isinstance(r.get("flagged"), int)
                    and isinstance(r.get("n"), int)):
                out.append((m, k, r))
    return out


def not_singling_out(report: Mapping[str, Any], display: Mapping[str, str] | None = None
                     ) -> list[str]:
    """A sentence per warning whose flagged answers were right at least as often as the others,
    for some model: such a warning does not single out wrong answers on these images, with each
    such model's figures and what the warning does say (`FLAG_NOT_WRONG`, of the report's one
    model or several)."""
    found: dict[str, list[str]] = {}
    words = model_words(len({m for m, _, _ in _rows(report)}))
    for m, k, r in _rows(report):
        # with `display`, only the run's own models: a name from a foreign file is not text
        # for a caption (Markdown)
        name = m if display is None else display.get(m)
        hit, rest = r.get("accuracy_flagged"), r.get("accuracy_unflagged")
        if name and isinstance(hit, int | float) and isinstance(rest, int | float) and (
                hit >= rest):
            found.setdefault(k, []).append(
                f"{name}: {_pct(hit)} of its {r['flagged']} flagged "
                f"answers right, {_pct(rest)} of the others")
    return [f"The warning \"{FLAG_LABELS[k]}\" does not single out wrong answers here: flagged "
            f"answers were right at least as often as the rest ({'; '.join(found[k])}). "
            + FLAG_NOT_WRONG[k].format(**words) for k in FLAGS if k in found]
