"""The About page's known limits, for the run shown, without Streamlit: what was measured on the
Sartaj data (its CT slices, its 512x512 collection, its unverified duplicates) only for a run
trained on it (`known_data.trained_on_sartaj`), and the labels from the run's own class names;
a yes/no run's page said "four labels" and "73 CT slices" (a review, 2026-12-06).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.known_data import SARTAJ_CT_SLICES, SARTAJ_NO_TUMOUR_CT
from pipeline.modality import SMALL_SIDE
from pipeline.names import class_label, display_name

_COUNT_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


# beside "Draw test images" on a Sartaj run: about one draw in four was hidden as CT (a review)
_ALL_CT, _TESTING_CT = SARTAJ_NO_TUMOUR_CT["all"], SARTAJ_NO_TUMOUR_CT["Testing"]
SARTAJ_DRAW_NOTE = (f"Some of its no-tumour images are CT ({_ALL_CT[0]} of the dataset's "
                    f"{_ALL_CT[1]}, {_TESTING_CT[0]} of `Testing/`'s {_TESTING_CT[1]}, by our "
                    "eye): a card flags most as \"may be CT, not MRI\" and hides their answers.")


# under the Predict page's uploader: said of any run (`ct_note`: the Sartaj data's words)
CT_HEADER_NOTE = ("A DICOM file whose header names CT or MR is judged by its header instead; "
                  "one naming another kind of imaging (X-ray, ultrasound, PET ...) is said "
                  "not to be MRI.")
CT_NOTE = ("The models were made for MRI: an answer on a CT slice says nothing of it. A card says "
           "when a slice may be CT, but that check is rough: it can miss CT. " + CT_HEADER_NOTE)
SARTAJ_CT_NOTE = ("The training data's no-tumour class holds CT slices, so a CT slice is usually "
                  "called \"no tumour\", confidently. A card says when a slice may be CT, but "
                  "that check is rough: it can miss CT. " + CT_HEADER_NOTE)


def ct_note(sartaj: bool = False) -> str:
    """`CT_NOTE`, or what a run trained on the Sartaj data does with CT (its no-tumour folder
    holds CT slices): said of another run, that was a claim about data it never saw."""
    return SARTAJ_CT_NOTE if sartaj else CT_NOTE


def _why(one: bool) -> str:
    return (f"and tools that show *why* {'it decides' if one else 'they decide'} (Grad-CAM "
            "family heatmaps) and *how far* those explanations can be trusted.")


def model_words(model: str, info: Mapping[str, Any]) -> str:
    """How "What this is" describes one model of the run: how it started, from the manifest's
    `weights` (`runinfo.weights_status`): a transfer model trained without ImageNet weights
    is not "adapted from ImageNet"."""
    from dashboard.runinfo import weights_status

    status = weights_status(model, info)
    if status is None:
        return ("a small CNN trained from scratch" if model == "custom_cnn"
                else f"{display_name(model)} trained from scratch")
    return {"imagenet": f"{display_name(model)} adapted from ImageNet by transfer learning",
            "none": f"{display_name(model)} trained from random weights (no ImageNet)",
            "file": f"{display_name(model)} adapted from a weights file by transfer learning",
            }[status]


def what_this_is(models: Mapping[str, Mapping[str, Any]] | None) -> str:
    """About's "What this is" (Markdown) for the run's models (the manifest's `models`): it
    named the custom CNN and MobileNetV2 whatever the run had, so a run of MobileNetV2 alone
    read as two models. Without a run: the project's two default models, said as a project."""
    if not models:
        return ("**What this is.** Image classifiers for brain MRI slices — by default a small "
                "CNN trained from scratch and MobileNetV2 adapted from ImageNet by transfer "
                f"learning — {_why(False)}")
    parts = [model_words(m, info or {}) for m, info in models.items()]
    if len(parts) == 1:
        return (f"**What this is.** An image classifier for brain MRI slices — {parts[0]} — "
                + _why(True))
    count = _COUNT_WORDS.get(len(parts), str(len(parts))).capitalize()
    listed = ", ".join(parts[:-1]) + f" and {parts[-1]}"
    return (f"**What this is.** {count} image classifiers for brain MRI slices — {listed} — "
            + _why(False))


def labels_sentence(class_names: Sequence[str], n_models: int = 2) -> str:
    """"They always choose one of three labels: glioma, meningioma, no tumour." from the run's
    class names (the one home of the class list), "It always chooses" for a run of one model
    (`n_models`); the generic sentence without a run."""
    they = "It always chooses" if n_models == 1 else "They always choose"
    if not class_names:
        return (f"{they} one of the labels {'it was' if n_models == 1 else 'they were'} "
                "trained on.")
    names = [class_label(c) for c in class_names]
    count = _COUNT_WORDS.get(len(names), str(len(names)))
    return f"{they} one of {count} labels: {', '.join(names)}."


def known_limits(class_names: Sequence[str], sartaj: bool, n_models: int = 2) -> str:
    """The "Known limits" list (Markdown) for a run with `class_names` and `n_models` models
    (one: "The model sees", as "What this is" says "An image classifier"; a one-model run read
    "The models see… They always choose…", a review of 2026-12-06), trained on the Sartaj data
    or not (`sartaj`): only what holds for that run's data. Without a run, the project's
    models: plural."""
    one = n_models == 1
    models = "The model was" if one else "The models were"
    if sartaj:
        source = ("- Trained on a public dataset of single 2-D slices of unknown scanners and "
                  "protocols; real\n  clinical scans (3-D volumes, other sequences, other "
                  "hospitals) look different.\n")
        data = f"""
- Most of the dataset's tumour images are T1 contrast slices exported at 512×512 from one
  collection; its no-tumour images, and many tumour images from other sources, are not. Tumours
  from other scanners or sequences are missed far more often (the model card below has the
  figures). A "no tumour" answer never rules a tumour out, and is least reliable on slices from
  other scanners or sequences.
- The dataset holds few T2 or FLAIR tumour slices (by our reading 18 of its `Training/` folder's
  2475 tumour images, not one a glioma; its `Testing/` folder 33, 18 of them gliomas) while 161
  of `Training/`'s 395 no-tumour images are T2 or FLAIR: on such slices tumours are mostly
  called "no tumour" or meningioma. A card says when a slice may be T2 or FLAIR, but
  that check is learnt: it can miss such a slice, and now and then flag a T1 one.
- The dataset holds {SARTAJ_CT_SLICES} CT slices among its MRI (counted by eye: 60 of the
  no-tumour folder's 500 images, 13 in the tumour folders), so a CT slice is usually called
  "no tumour", confidently; and "no tumour" means "looks most like that folder", not
  "normal". A card says when a slice may be CT, but that check is rough: it can miss CT.
  {CT_HEADER_NOTE}
- Labels were not verified by a radiologist: the Error analysis page marks answers against the
  dataset's folders, and some of its "errors" may be label errors.
- The public dataset contains duplicate and near-duplicate images (the data audit counts them)
  and its labels were not verified by this project; even with de-duplicated splits, accuracy on
  it is likely to overstate performance on new scans.
"""
    else:
        source = ("- Trained on single 2-D slices of this run's dataset; scans from other "
                  "scanners, sequences or\n  hospitals (and 3-D volumes) can look different.\n")
        data = f"""
- Images from other scanners, sequences or sources than the training data's can be answered
  far less accurately than the test figures say. A "no tumour" answer never rules a tumour out:
  it means "looks most like the training data's no-tumour images", not "normal".
- {models} made for MRI: an answer on a CT slice says nothing of it. A card says when a
  slice may be CT, but that check is rough: it can miss CT. {CT_HEADER_NOTE}
- The Error analysis page marks answers against the dataset's folders: where a folder holds a
  wrongly filed image, some of its "errors" are label errors.
- Datasets often hold duplicate and near-duplicate images (`python -m pipeline audit` counts
  them); even with de-duplicated splits, accuracy on one dataset is likely to overstate
  performance on new scans.
"""
    # two models' maps far apart: at least one is off the tumour (`explain.agreement`)
    apart = "" if one else (
        "- When the two models' default heatmaps point at different places, at least one of "
        "them is\n  probably off the tumour, and a card says so; when they agree, both can "
        "still miss.\n"
        "- The answer of both models pooled (last on each card's answer line) is no third "
        "model: when\n  the two disagree it is almost always one side of that disagreement "
        "(pooling can pick a class\n  neither answered, and the line then says so), and no "
        "heatmap explains it;\n  its confidence is not the mean of theirs and can be above "
        "both.\n")
    untested = (": the Sartaj collections do not record patients' ages or treatment" if sartaj
                else "")
    return f"""**Known limits.**
{source}- {"The model sees" if one else "The models see"} one slice as a picture: \
{"it is" if one else "they are"} not told the sequence, contrast, plane or
  the neighbouring slices.
- {labels_sentence(class_names, n_models)} Any
  other finding (metastasis, abscess, lymphoma, demyelination, infarct, haemorrhage,
  post-operative change) is forced into one of them. A label is the dataset's folder, not a
  histological or radiological diagnosis.
{data.lstrip()}- A heatmap shows where a model's evidence came from, not where a tumour is;
  each is stretched to its own brightest spot. A confident prediction with a heatmap on the
  skull or the image border is a warning sign (the shortcut alarm flags only heat outside the
  head, not on the skull or scalp).
{apart}- A percentage is a model's score for a class, not the chance that this patient has a
  tumour: it depends on this dataset's mix of classes, and can be over-confident (the
  reliability diagram on the Overview page).
- Nothing here was checked on children's scans or on operated or treated brains{untested}.
- A card hides the answers on an image far unlike the training data (noise; many photographs,
  not all: the Overview's table says how many), but something shaped like a head scan that is
  no MRI (a drawing, noise inside a head outline) is at most "unlike the training data", as is
  a photograph that is not that far, and its answer is shown.
- An image under {SMALL_SIDE} pixels a side (a thumbnail) is seen enlarged: on the reference
  runs' tests such answers were less often right while sounding as sure; a card says its size.
"""


def demote_headings(markdown: str) -> str:
    """Markdown with every ATX heading one level lower ("# A" -> "## A"), fenced code left
    alone: a document shown inside a page, under the page's own title."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,5} ", line):
            line = "#" + line
        out.append(line)
    return "\n".join(out)
