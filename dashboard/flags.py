"""The warnings beside an answer, in plain words, without Streamlit: weak answers, images unlike
the training data, "no tumour" answers (never a rule-out), disagreement, and how often
test answers with the same warning were right (`flags.json`); and the heatmaps' flags (evidence
outside the head, empty maps) as a short label per overlay and one note per card. Pure
functions, tested directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from dashboard.slice_warnings import (  # the card's warnings about the image itself
    COLOUR_WARNING,
    ct_warning,
    modality_warning,
    photo_warning,
    small_warning,
    t2_warning,
)
from dashboard.slice_warnings import CT_WARNING as CT_WARNING  # re-exported, as before
from dashboard.slice_warnings import PHOTO_WARNING as PHOTO_WARNING
from pipeline.calibration import LOW_CONFIDENCE_ACCURACY
from pipeline.data.membership import seen_tag
from pipeline.evaluate.flags import (
    FLAG_LABELS,
    flag_meaning,
    no_tumour_caution,
    no_tumour_record,
    not_mri_kind,
)
from pipeline.explain.agreement import APART_MESSAGE
from pipeline.explain.alarm import OUTSIDE_HEAD_MESSAGE, SHORTCUT_TOP, outside_share_words
from pipeline.names import NO_TUMOR, class_label, display_name
from pipeline.ood import FAR
from pipeline.sequence import hint_said


class ShiftedAccuracy(NamedTuple):
    """A model's accuracy on shifted copies of its test images (`robustness.json`): the mean
    over every shift at the middle severity, the unshifted accuracy (None if not recorded) and
    the worst shift's at that severity."""

    mean: float
    clean: float | None
    worst: float

    def words(self) -> str:
        """"at moderate strength averaged 73% (unshifted 75%, worst 70%)": "kept 73%" read as a
        share kept, a mean hid the worst shift (reviews, 2026-12-06), the severity went unsaid."""
        clean = f"unshifted {self.clean:.0%}, " if self.clean is not None else ""
        return f"at moderate strength averaged {self.mean:.0%} ({clean}worst {self.worst:.0%})"


def middle_severity_accuracy(report: Mapping[str, Any]) -> dict[str, ShiftedAccuracy | None]:
    """Per model, its accuracy over every shift at the middle severity of `robustness.json`
    (mean and worst), with its unshifted accuracy."""
    out: dict[str, ShiftedAccuracy | None] = {}
    for model, entry in (report.get("models") or {}).items():
        accs = []
        for rows in (entry.get("shifts") or {}).values():
            if isinstance(rows, list) and len(rows) >= 2:
                acc = rows[len(rows) // 2].get("accuracy")
                if isinstance(acc, (int, float)):
                    accs.append(float(acc))
        clean = (entry.get("clean") or {}).get("accuracy")
        clean = float(clean) if isinstance(clean, (int, float)) and not isinstance(
            clean, bool) else None
        out[model] = ShiftedAccuracy(float(np.mean(accs)), clean, min(accs)) if accs else None
    return out


# Tumour sensitivity this much lower on test images of other pixel sizes than on the training
# split's commonest size (metrics.json `by_size`) is a source shortcut worth a warning.
SIZE_GAP = 0.10


def size_gap(by_size: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """(sensitivity at the commonest size, at other sizes) when the second is more than SIZE_GAP
    below the first; None otherwise, or when either was not measured."""
    groups = by_size or {}
    common = (groups.get("common_size") or {}).get("sensitivity")
    other = (groups.get("other_sizes") or {}).get("sensitivity")
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (common, other))
    return (float(common), float(other)) if ok and common - other > SIZE_GAP else None


class Flag(str):
    """A warning sentence (it is the str) that knows its kind (a key of `FLAG_LABELS`, or
    "no_tumour") and the models it is about, for the card's one-line summary (`summary_line`):
    a clinician stopped reading warnings of equal weight on nearly every card. `label`: the
    summary's words for this one flag, where they depend on more than its kind (the split
    note's split)."""

    kind: str
    models: tuple[str, ...]
    label: str | None

    def __new__(cls, sentence: str, kind: str, models: Sequence[str] = (),
                label: str | None = None) -> Flag:
        flag = super().__new__(cls, sentence)
        flag.kind, flag.models, flag.label = kind, tuple(models), label
        return flag


# the summary's words per kind: the CLI's tags, shorter where the models follow in brackets;
# and the kinds that are no answer's: the split note, the heatmaps' flags
SUMMARY_LABELS = {**FLAG_LABELS, "weak": "weak answer",
                  "outside_head": "evidence outside the head", "empty": "empty heatmap",
                  "apart": APART_MESSAGE}
# the splits whose note is a warning: the models learnt from, or were tuned on, the image (a
# test image's note is none: it flagged every image drawn from the test split)
WARNING_SPLITS = ("train", "val")


def seen_advice(split: str, can_draw: bool, official_runs: Sequence[str] = ()) -> str:
    """What to do instead, said after a training or validation image's split note: draw test
    images (`can_draw`: the page's sample picker works), or, for the dataset's own test folder,
    pick a loaded run whose test split that folder is (`official_runs`: their labels as the
    sidebar shows them, already safe to render). "" for another split, or with neither way.
    A lecturer's natural demo images (`Testing/`) were mostly training images of the default
    run, and the note said so without saying what to do (a review, 2026-12-06)."""
    if split not in WARNING_SPLITS:
        return ""
    ways = ["use \"Draw test images\" above (images of this run's test split)"] if can_draw else []
    if official_runs:
        runs = " or ".join(official_runs)
        ways.append(f"for images of the dataset's own Testing/ folder, pick the run {runs} in "
                    "the sidebar, whose test split is that folder")
    if not ways:
        return ""
    return f"To show answers on images the models never trained on, {'; or, '.join(ways)}."


def image_warnings(answers: Sequence[str], heatmaps: Sequence[str] = (), seen_note: str = "",
                   seen_split: str = "", seen_exact: bool | None = True) -> list[str]:
    """Every warning of one image, the one list its card sums up (`summary_line`) and the
    Predict page's summary table, CSV and flag filter count: a training or validation image's
    split note (`seen_note`, `seen_split`; `seen_exact` False for a changed copy), then its
    answers' flags, then its heatmaps'. The card counted its answers' flags alone while the
    table counted all three."""
    # the summary names the split note as its box says it (`seen_tag`'s words): "the run has
    # met this image" read as another fact than "in this run's training split" (a review)
    seen = ([Flag(seen_note, "seen", label=seen_tag(seen_split, seen_exact).strip("[]"))]
            if seen_note and seen_split in WARNING_SPLITS else [])
    return [*seen, *answers, *heatmaps]


# the kinds that say the image may be no brain MRI at all (or, a photo of a screen or film, no
# MRI export; "modality": its DICOM header names another kind of imaging, `modality_warning`):
# its card has no agreement badge, and its answers and heatmaps are folded behind
# "Show the answers anyway". "photo" replaces "colour" on a tinted photo, which led the card
# as a colour image before the photo check existed. "far": a model finds it far unlike its
# training data (`ood.FAR`), as pure noise is: it got "no tumour (78%)" beside a mere "unlike"
NOT_MRI_KINDS = ("modality", "colour", "ct", "photo", "far")


def leading_flags(answers: Sequence[str], models: Sequence[str]) -> list[str]:
    """The warnings a card leads with, in place of its agreement badge: the image may be no
    brain MRI (`NOT_MRI_KINDS`), or every model in `models` finds it unlike its training data.
    Two models agreeing on colour noise got a "models agree" badge with a check mark, which
    reads as reassurance to a room (a lecturer's review, 2026-12-06)."""
    kinds = [getattr(f, "kind", "") for f in answers]
    unlike = {m for f, k in zip(answers, kinds, strict=True) if k == "unlike" for m in f.models}
    every = bool(models) and set(models) <= unlike
    return [f for f, k in zip(answers, kinds, strict=True)
            if k in NOT_MRI_KINDS or (every and k == "unlike")]


def summary_line(flags: Sequence[str]) -> str:
    """"4 warnings: may be CT, not MRI · the models disagree · weak answer ×2 (Custom CNN,
    MobileNetV2)": the kinds in the order the sentences come, each once, with the models it
    concerns and, where a kind has more than one sentence, how many: the count is the sum of
    what the line lists (a reviewer counted "3 warnings" over two items). Plain strings (not
    `Flag`) count but add no words."""
    kinds: dict[str, list[str]] = {}  # kind (or a flag's own label) -> its models
    counts: dict[str, int] = {}
    for flag in flags:
        if isinstance(flag, Flag):
            key = flag.label or SUMMARY_LABELS.get(flag.kind, flag.kind)
            counts[key] = counts.get(key, 0) + 1
            kinds.setdefault(key, []).extend(
                display_name(m) for m in flag.models
                if display_name(m) not in kinds.get(key, []))
    n = len(flags)
    words = " · ".join(k + (f" ×{counts[k]}" if counts[k] > 1 else "")
                       + (f" ({', '.join(ms)})" if ms else "") for k, ms in kinds.items())
    plain = n - sum(counts.values())  # sentences without a kind: counted, said as such
    if words and plain:
        words += f" · {plain} other{'s' if plain > 1 else ''}"
    return f"{n} warning{'s' if n != 1 else ''}" + (f": {words}" if words else "")


def answer_flags(probs: Mapping[str, np.ndarray], i: int, low_below: Mapping[str, float | None],
                 unlike: Mapping[str, int | None],
                 shifted_accuracy: Mapping[str, ShiftedAccuracy | float | None],
                 class_names: Sequence[str] = (), image_size: str | None = None,
                 by_size: Mapping[str, Mapping[str, Any] | None] | None = None,
                 flag_accuracy: Mapping[str, Mapping[str, Any]] | None = None,
                 colour: bool = False,
                 tumour_records: Mapping[str, Mapping[str, Any] | None] | None = None,
                 ct: bool | str = False, photo: bool = False, sartaj: bool = False,
                 t2: bool = False, input_sides: Sequence[int] = ()) -> list[str]:
    """Plain-words warnings about image i's answers: a DICOM header naming another kind of
    imaging than MRI (`ct` its code, `inference.ct_said`; the file's own word, first), a tinted
    photo of a screen or film (`photo`, `modality.looks_like_photo`; it says what the colour
    warning would, which it replaces), a colour image (`colour`: MRI slices are greyscale,
    `evaluate.flags.is_colour`), a slice that may be CT (`ct`, `modality.may_be_ct`; "header":
    its DICOM header says so), one that may be T2 or FLAIR (`t2`, `pipeline.sequence`; with how
    its test answers fared, from `flag_accuracy`), weak confidence (below the model's validation
    threshold), an image unlike the model's training data (`unlike`: per model its
    `ood.OodModel.levels` level; with the model's accuracy on shifted copies of its test split,
    when measured) or far unlike it (`ood.FAR`), every "no tumour" answer (it cannot rule a
    tumour out; with how often the model's test answers "no tumour" were right, from
    `tumour_records`: per model, metrics.json's `tumor_vs_no_tumor`; and, for an image whose
    pixel size (`image_size`, "WxH") is not the training split's commonest, how many fewer
    tumours the model found at other sizes when that is clearly fewer, `by_size`), and
    disagreement between the models. `flag_accuracy` (flags.json's "models", when measured) adds
    how often the weak test answers were right. For images unlike the training data it
    does not: the flagged test images were real MRI of another source, right about as often as
    the others, and said beside a photo or noise that read as reassurance. `sartaj`: a run
    trained on the Sartaj data (`known_data.trained_on_sartaj`): warnings may say its facts."""
    # In order of what should change a reader's mind most (a clinician's review, 2026-12-05:
    # warnings of equal weight on nearly every card stop being read): not an MRI (a model's
    # "far unlike" among them), "no tumour" is no rule-out, the models disagree, then per model
    # unlike the training data and weak.
    n_models = len(probs) or 2  # the card's models: "the model" for a one-model run
    # first, a DICOM header naming another modality than MRI (`ct` its code): the file's word
    flags = ([Flag(modality_warning(ct, n_models), "modality")]
             if not_mri_kind(ct) == "modality" else [])
    flags += ([Flag(photo_warning(n_models), "photo")] if photo  # `evaluate.flags.SAID_BY`
              else [Flag(COLOUR_WARNING, "colour")] if colour else [])
    if not_mri_kind(ct) == "ct":  # `may_be_ct`: a hint, worded as one, or ("header") a fact
        flags.append(Flag(ct_warning(sartaj, n_models, header=ct == "header"), "ct"))
    lead = len(flags)  # a model's "far unlike" goes here, with the other "may be no MRI" ones
    measured = flag_accuracy or {}
    far = any((u or 0) >= FAR for u in unlike.values())  # `ood.FAR`: no MRI to have a sequence
    if (small := small_warning(image_size, n_models, input_sides)) is not None:  # enlarged
        flags.append(Flag(small, "small"))
    if hint_said(t2, ct=ct, colour=colour, photo=photo, far=far):  # `pipeline.sequence`'s
        flags.append(Flag(t2_warning(sartaj, n_models, measured), "t2"))
    fars: list[str] = []
    unlikes: list[str] = []
    weaks: list[str] = []

    def on_test(model: str, flag: str, what: str) -> str:
        acc = _measured(measured, model, flag, "accuracy_flagged")
        if acc is None:
            return ""
        rest = _measured(measured, model, flag, "accuracy_unflagged")
        rest = f" ({rest:.0%} otherwise)" if rest is not None else ""
        return f" Its test answers {what} were right {acc:.0%} of the time{rest}."

    none_said: list[str] = []
    none_models: list[str] = []  # the models answering "no tumour": one caution for all
    none_record = ""
    for model, p in probs.items():
        name = display_name(model)
        gap = size_gap((by_size or {}).get(model))
        size = ((by_size or {}).get(model) or {}).get("size")
        said = class_names[int(np.argmax(p[i]))] if len(class_names) == p.shape[1] else None
        if said == NO_TUMOR:
            none_said.append(name)
            none_models.append(model)
            none_record += no_tumour_record((tumour_records or {}).get(model), name) + (
                f" This image is not {size} like most of {name}'s training tumours: on such "
                f"test images it found {gap[1]:.0%} of the tumours (against {gap[0]:.0%} at "
                f"{size})." if gap and image_size and size and image_size != size else "")
        conf = float(np.max(p[i]))
        t = low_below.get(model)
        if t is not None and conf < t:
            weaks.append(Flag(f"Weak answer from {name}: {conf:.0%} confidence; on "
                              f"validation images its answers below {t:.0%} were right less "
                              f"than {LOW_CONFIDENCE_ACCURACY:.0%} of the time."
                              + on_test(model, "weak", "this weak"), "weak", [model]))
        if (unlike.get(model) or 0) >= FAR:  # `ood.FAR`: said instead of "unlike"
            fars.append(Flag(f"This image is far unlike {name}'s training data: "
                             f"{flag_meaning('far', sartaj, 1)}.", "far", [model]))
        elif unlike.get(model):
            acc = shifted_accuracy.get(model)
            # the shifted copies' accuracy as a best case, not as comfort: beside a chest
            # X-ray, "it was 88% accurate" read as reassurance (a review, 2026-12-05)
            said = (acc.words() if isinstance(acc, ShiftedAccuracy)
                    else f"averaged {acc:.0%}" if acc is not None else "")
            where = (" Its accuracy on copies of its own test images made blurrier, noisier or "
                     f"otherwise shifted {said}, but stronger shifts and images of another kind "
                     "or source can fare far worse." if said else "")
            # Not "treat with caution": on the shipped runs the flagged test answers were as
            # often right as the others. What holds is that validation does not cover it.
            # "brain MRI slice", not "axial": the training data hold coronal and sagittal ones.
            unlikes.append(Flag(f"This image is unlike {name}'s training data, so its "
                                f"validation accuracy does not vouch for this answer.{where} "
                                "If it is not a brain MRI slice, the answer means nothing.",
                                "unlike", [model]))
    if none_said:
        say = "says" if len(none_said) == 1 else "say"
        flags.append(Flag(f"{' and '.join(none_said)} {say} no tumour: "
                          f"{no_tumour_caution(sartaj)}."
                          + none_record, "no_tumour", none_models))
    labels = {int(np.argmax(p[i])) for p in probs.values()}
    if len(probs) > 1 and len(labels) > 1:
        flags.append(Flag("The models disagree: at least one of them is wrong."
                          + _disagreement_record(probs, measured), "disagree"))
    # far before "no tumour is no rule-out" too: the CSV's warnings put the caution first
    return flags[:lead] + fars + flags[lead:] + unlikes + weaks


def _disagreement_record(probs: Mapping[str, np.ndarray],
                         measured: Mapping[str, Mapping[str, Any]]) -> str:
    """How often each model was right on the test images where the models disagreed."""
    right = [f"{display_name(m)} {acc:.0%}" for m in probs
             if (acc := _measured(measured, m, "disagree", "accuracy_flagged")) is not None]
    if not right:
        return ""
    return (" On the test images where they disagreed, each was right: "
            + ", ".join(right) + ".")


def _measured(measured: Mapping[str, Any], model: str, flag: str, key: str) -> float | None:
    """flags.json's `key` for a model's warning, or None where absent or not a number."""
    entry = measured.get(model)
    r = entry.get(flag) if isinstance(entry, Mapping) else None
    v = r.get(key) if isinstance(r, Mapping) else None
    return float(v) if isinstance(v, float | int) and not isinstance(v, bool) else None


# --------------------------------------------------------------------------- heatmap flags
# An overlay's column is narrow (a third of the card, a sixth of the page in the Error page's
# grid): a flag there is a short label, and its explanation is said once per card, below the
# images.


def outside_label(share: float) -> str:
    """The shortcut alarm's short label under one overlay."""
    return f"Outside the head {share:.0%}"


def outside_help(share: float, alarm: float) -> str:
    """The label's tooltip: what the number means for this one heatmap."""
    return (f"{OUTSIDE_HEAD_MESSAGE.capitalize()}: in this heatmap, "
            f"{outside_share_words(share)} (alarm above {alarm:.0%}). See the note below the "
            "images.")


def outside_note(shares: Mapping[str, float], alarm: float) -> str:
    """The shortcut alarm explained once for a card, naming each flagged model's share."""
    which = ", ".join(f"{display_name(m)} {s:.0%}" for m, s in shares.items())
    return (f"{OUTSIDE_HEAD_MESSAGE.capitalize()} ({which} of the heat in the heatmap's "
            f"hottest {SHORTCUT_TOP:.0%}; alarm above {alarm:.0%}). The model may rely on "
            "something other than the anatomy, such as text, borders or markers.")


EMPTY_LABEL = "Empty heatmap"


def empty_help(method: str, target: str) -> str:
    """The empty-heatmap label's tooltip (`target` as people read it)."""
    return f"{method} finds no positive evidence for '{target}' at this layer."


def empty_note(models: Sequence[str]) -> str:
    """Empty heatmaps explained once for a card."""
    which = ", ".join(display_name(m) for m in models)
    return (f"Empty heatmap ({which}): the method finds no positive evidence for the explained "
            "class at this layer, so the map shows nothing (try another method or layer).")


class PointingRecord(NamedTuple):
    """A model's default heatmaps on its run's test images with a tumour mask, per true class
    (`quality_text.class_pointing_counts`), and what the masks are ("box", or "mask" for drawn
    tumours such as the phantoms')."""

    counts: Mapping[str, tuple[int, int]]
    region: str = "box"


def pointing_record_words(record: PointingRecord | None, explained: str
                          ) -> tuple[str, str] | None:
    """(caption, tooltip) under a default heatmap of class `explained`: how often this model's
    default heatmaps of that class peaked in the tumour's {region} on the run's test images.
    The overall pointing game hid that the custom CNN's glioma maps miss far more often (75 of
    124 on the main split, against 95 of 101 meningiomas). None without a record."""
    if record is None or explained not in record.counts:
        return None
    hits, n = record.counts[explained]
    shown = class_label(explained)
    return (f"Test record of these heatmaps for '{shown}': peak in the {record.region} "
            f"{hits} of {n} times ({hits / n:.0%})",
            f"How often this model's default heatmap of '{shown}' peaked inside the tumour "
            f"{record.region} on this run's test images of that class with a known "
            f"{record.region} (the Explanation quality page says which; on the Sartaj data "
            "figshare T1-contrast slices): a record of other images, nothing about this one. "
            "Where it is low, read this map with more care; where it is high, this map can "
            "still miss.")


def box_hit_words(hit: bool, explained: str, true_label: str | None,
                  box: str = "the tumour box") -> str:
    """The card's "Peak inside the tumour box" line (markdown). When the heatmap explains
    another class than the image's true one (a wrong answer's, by default), a hit says where
    that wrong answer's evidence lies: a student counted it as the model finding the tumour."""
    line = f"Peak inside {box}: **{'yes' if hit else 'no'}**"
    if true_label is None or explained == true_label:
        return line
    shown = class_label(explained)
    return (f"{line}, for the heatmap of '{shown}', not of the true class"
            + (": a heatmap on the tumour does not mean the model recognised it"
               if hit else ""))
