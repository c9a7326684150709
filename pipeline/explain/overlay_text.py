"""What an `explain` overlay is called and what its caption says: pure text, no drawing.

`overlay_bases` gives each input file a stable, distinct overlay name, `overlay_entry` its
explain.json record per model, and `overlay_caption` a captioned overlay's lines. Split from
`explain.batch` so that the names and words can be read and tested without loading a model:
this module imports no TensorFlow (`Explanation` is only a type here).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.data.membership import SEEN_TAGS, SPLIT_WORDS, hides_unlike
from pipeline.explain.agreement import APART_MESSAGE
from pipeline.explain.alarm import OUTSIDE_HEAD_MESSAGE
from pipeline.explain.render import heatmap_stats, outline_words
from pipeline.names import (
    DISCLAIMER,
    NO_TUMOR,
    class_folder_words,
    class_label,
    display_name,
    heatmap_reading,
    percent,
)
from pipeline.sequence import hint_said
from pipeline.series import Slice

if TYPE_CHECKING:
    from pipeline.explain.explainer import Explanation

OVERLAY_NAME_BYTES = 120  # leaves room for ".<model>.<method>.png" under the 255-byte limit



def overlay_note(radiological: bool = False) -> str:
    """The quieter small print under every captioned overlay (explain's, the dashboard's
    download): how to read it, which side is the patient's where the file says so
    (`names.sides_words`), then the disclaimer."""
    return f"{heatmap_reading(radiological)} {DISCLAIMER}"


OVERLAY_NOTE = overlay_note()  # where the patient's sides are not known


def _printable(text: str) -> str:
    """The user's text (a folder's name) with control characters as "_": a picture's caption
    draws one line each, as overlay names are made."""
    return "".join(ch if ch.isprintable() else "_" for ch in text)


def overlay_name(base: str, model: str, method: str) -> str:
    """An overlay's file name in `explain`'s folder: "<base>.<model>.<method>.png" ("+" as
    "p": Grad-CAM++ as "gradcampp"), `base` from `overlay_bases`."""
    return f"{base}.{model}.{method.replace('+', 'p')}.png"


def own_overlays(files: Sequence[Path], out: Path) -> list[Path]:
    """The files among `files` that sit in `out` and are named as `explain`'s overlays are
    (`overlay_name`, for any of `names.MODEL_NAMES`): rerun over a folder holding its own
    `--out` (its way to resume), explain read its overlays as scans ("glioma (99%) [looks like
    a photo of a screen or film]", a review)."""
    from pipeline.names import MODEL_NAMES

    models = "|".join(map(re.escape, MODEL_NAMES))
    named = re.compile(rf".+\.(?:{models})\.[^./]+\.png", re.IGNORECASE)
    root = os.path.realpath(out)
    return [f for f in files
            if named.fullmatch(f.name) and os.path.dirname(os.path.realpath(f)) == root]


def overlay_bases(paths: list[Path | Slice]) -> list[str]:
    """One distinct, stable base name per input for its overlay files (same order as `paths`).

    The base is the file name with its extension (scan.png and scan.jpg differ), control
    characters replaced by "_" and cut to OVERLAY_NAME_BYTES; a slice of a series file
    (`series.Slice`) adds ".slice-<k>". Inputs sharing a base (a/scan.png
    and b/scan.png) get "-" and 8 hex digits of the SHA-1 of their absolute path, so a name does
    not depend on argument order; the same file given twice gets "-2", "-3". Names are compared
    case-folded because macOS and Windows folders are case-insensitive.
    """
    def clean(item: Path | Slice) -> str:
        path = Path(item.path) if isinstance(item, Slice) else Path(item)
        name = _printable(path.name) or "image"
        name = name.encode()[:OVERLAY_NAME_BYTES].decode(errors="ignore")
        return f"{name}.slice-{item.number}" if isinstance(item, Slice) else name

    bases = [clean(p) for p in paths]
    counts = Counter(b.casefold() for b in bases)
    used: set[str] = set()
    out = []
    for path, base in zip(paths, bases, strict=True):
        if counts[base.casefold()] > 1:
            where = path.path if isinstance(path, Slice) else path
            digest = hashlib.sha1(os.fsencode(os.path.abspath(where))).hexdigest()[:8]
            base = f"{base}-{digest}"
        name, k = base, 1
        while name.casefold() in used:
            k += 1
            name = f"{base}-{k}"
        used.add(name.casefold())
        out.append(name)
    return out


def overlay_entry(class_names: list[str], ex: Explanation, i: int, overlay: str,
                  probs: np.ndarray) -> dict[str, Any]:
    """explain.json's record of image `i` of explanation `ex` (one model), with its
    (calibrated) probabilities `probs`."""
    return {
        "predicted": class_names[int(np.argmax(probs))],
        "probs": {c: float(p) for c, p in zip(class_names, probs, strict=True)},
        "target": class_names[int(ex.targets[i])],
        "method": ex.method,
        "layer": ex.layer,
        "heatmap": heatmap_stats(ex.heatmaps[i]),
        "overlay": overlay,
    }


def overlay_caption(model: str, entry: dict[str, Any], in_run_split: str | None = None,
                    in_run_exact: bool | None = None, *, disagree: bool = False,
                    apart: bool = False,
                    may_be_ct: bool | str = False, may_be_t2: bool = False,
                    outline: float | None = None,
                    run: str | None = None,
                    folders: Mapping[str, Sequence[str]] | None = None,
                    true_label: str | None = None,
                    far_models: Sequence[str] | None = None,
                    small: bool = False) -> list[str]:
    """A captioned overlay's lines from its explain.json record (`overlay_entry`): the model's
    answer with its (calibrated) probability as explain prints it, and the method and class the
    heatmap explains, which may not be the answer (--target); what the white line is when the
    overlay outlines its hottest `outline` % (`render.outline_words`); then the answer's
    warnings, the shortcut alarm, whether the models disagree (`disagree`) and whether their
    default heatmaps point at different places (`apart`, `agreement.maps_apart`), as explain
    prints them (an overlay travels without the console's lines; an image that may be CT,
    `may_be_ct`, first (a str: a DICOM code naming another modality than MRI, said in its
    words, `evaluate.flags.not_mri_label`; "header": CT by the header), then one under
    `modality.SMALL_SIDE` px, `small`, then one that may be T2 or FLAIR, `may_be_t2`), and the
    run's split the image is in (`in_run_split`, `data.membership`): a training or validation
    image itself, pixel for pixel (`in_run_exact`), is not called "unlike the training data",
    as in `predict`. `run`: the run's name as the dashboard's reports give it, "<title> (<run
    id>)": the split note names it, not "this run's" (a downloaded overlay travels without the
    page that says which run).
    `folders`: class -> the run's class folders of other names (`discovery.folders_by_class`),
    said beside the answer and the heatmap's class as `explain` prints them, "answers 'no
    tumour' (class folder: Healthy)"; a run whose folders are named as its classes: nothing.
    `true_label`: a test image's known class, said under the answer with whether it is right
    (the Error analysis page's overlays travelled without it, unlike its cards and PDFs).

    >>> overlay_caption("custom_cnn", {"predicted": "no_tumor", "target": "glioma",
    ...                 "probs": {"glioma": 0.3, "no_tumor": 0.7}, "method": "gradcam",
    ...                 "weak": True})
    ["Custom CNN answers 'no tumour' (70%)", "Heatmap: Grad-CAM for 'glioma'",
     'Warning: "no tumour" is no rule-out; weak answer (low confidence)']
    """
    from pipeline.evaluate.flags import (
        FLAG_LABELS,
        far_label,
        not_mri_kind,
        not_mri_label,
        raised_flags,
    )
    from pipeline.explain.methods import METHOD_LABELS, target_words

    method = METHOD_LABELS.get(entry["method"], entry["method"])
    peak = f", hottest at the image's {entry['peak']}" if entry.get("peak") else ""
    def own(label: str) -> str:  # "class folder: Healthy", or ""
        names = [_printable(n) for n in (folders or {}).get(label) or ()]
        return class_folder_words(names) if names else ""

    def named(label: str) -> str:  # "'no tumour' (class folder: Healthy)"
        return f"'{class_label(label)}'" + (f" ({own(label)})" if own(label) else "")

    target = target_words(entry["method"], class_label(entry["target"]), own(entry["target"]))
    # an image that may be no MRI: the dashboard's card hides its answers and the PDF page says
    # "Shown anyway (...)" over them; a captioned overlay travels as far (a clinician's review
    # found a CT slice's "answers 'glioma' (99%)" on one, the warning on a later line)
    hidden = hides_unlike(in_run_split, in_run_exact)  # the run's own image: never "unlike"
    # the models finding the image far unlike theirs: every model's answer is withheld then
    # (`far_models`, the image's; None: this model's own verdict alone)
    far = [] if hidden else list(far_models if far_models is not None
                                 else [model] if entry.get("far") else [])
    # in the card's order (`card_flags.withheld`): a header naming another modality than MRI
    # (the file's own word), colour or photo, CT, then far
    said = [not_mri_label(may_be_ct)] if may_be_ct else []
    looks = [FLAG_LABELS[k] for k in raised_flags(entry) if k in ("photo", "colour")]
    not_mri = said + looks if not_mri_kind(may_be_ct) == "modality" else looks + said
    not_mri += [far_label(far)] if far else []
    lines = [("Shown anyway (" + not_mri[0] + "): " if not_mri else "")
             + f"{display_name(model)} answers {named(entry['predicted'])} "
             f"({percent(entry['probs'][entry['predicted']])})",
             f"Heatmap: {method} {target}{peak}"]
    if true_label is not None:
        lines.insert(1, f"True class (dataset label): {named(true_label)}; the answer is "
                        + ("right" if entry["predicted"] == true_label else "wrong"))
    if outline is not None:  # the line travels with the picture: say what it is
        lines.append(outline_words(outline))
    warnings = [not_mri_label(may_be_ct)] if may_be_ct else []  # first: every answer is moot
    warnings += [FLAG_LABELS["small"]] if small else []  # seen enlarged (`modality.is_small`)
    # the answer is off its ground; not said on CT, colour or a photo (`sequence.hint_said`)
    warnings += [FLAG_LABELS["t2"]] if hint_said(may_be_t2, ct=bool(may_be_ct),
                                                 colour=bool(entry.get("colour")),
                                                 photo=bool(entry.get("photo")),
                                                 far=bool(far)) else []
    # a tinted photo is a colour image too: its warning says both (`flags.SAID_BY`)
    warnings += [FLAG_LABELS[k] for k in raised_flags(entry) if k in ("photo", "colour")]
    if entry["predicted"] == NO_TUMOR:  # as the dashboard's cards order them
        warnings.append(FLAG_LABELS["no_tumour"])
    # "far" says "unlike" and more (`flags.SAID_BY`); neither is said of the run's own image
    warnings += [FLAG_LABELS[k] for k in raised_flags(entry) if k in ("weak", "far", "unlike")
                 and not (hidden and k in ("far", "unlike"))]
    if entry.get("outside_head_flag"):
        warnings.append(OUTSIDE_HEAD_MESSAGE)
    if disagree:
        warnings.append(FLAG_LABELS["disagree"])
    if apart:
        warnings.append(APART_MESSAGE)
    if warnings:
        lines.append("Warning: " + "; ".join(warnings))
    if in_run_split in SEEN_TAGS:
        copy = "" if in_run_exact is not False else "a near copy: "
        split = (f"in the {SPLIT_WORDS[in_run_split]} split of run {run}" if run
                 else SEEN_TAGS[in_run_split])
        lines.append(f"Note: {copy}{split}" + (
            # the dashboard's test-split note says so too: splits keep copies apart, not patients
            " (not trained on; other slices of the same patient may have been)"
            if in_run_split == "test" else " (not a test of the model)"))
    return lines
