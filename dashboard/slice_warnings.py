"""The card's warnings about the image itself, not its answers, in plain words: that it is no
MRI (a DICOM header naming another modality, CT, a photo of a screen or film, a colour image),
that it is small, that it may be T2 or FLAIR. Each is the CLI's legend line for its tag as one
sentence (`evaluate.flags.flag_meaning`), said of the card's one model or two. Pure functions;
`dashboard.flags.answer_flags` puts them on the card (and re-exports them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.evaluate.flags import (
    FLAG_LABELS,
    FLAG_MEANINGS,
    ct_header_meaning,
    flag_meaning,
    modality_header_meaning,
    t2_tumours,
)
from pipeline.modality import is_small
from pipeline.names import display_name


def modality_warning(dicom_modality: str, n_models: int = 2) -> str:
    """"This file is not MRI: its DICOM header names the modality ultrasound (US); …": the
    file's own word where its header names an acquisition other than MRI or CT
    (`modality.not_mri_words`, `evaluate.flags.modality_header_meaning`), as a fact, as
    `ct_warning` says a header's CT; "" for any other code."""
    said = modality_header_meaning(dicom_modality, n_models)
    return f"This file is not MRI: {said}." if said else ""


# the CLI's legend line for "[may be CT, not MRI]", as one sentence beside an answer
CT_WARNING = f"This slice {FLAG_LABELS['ct']}: {FLAG_MEANINGS['ct']}."


def ct_warning(sartaj: bool = False, n_models: int = 2, header: bool = False) -> str:
    """`CT_WARNING`, in the Sartaj data's words for a run trained on it, said of `n_models`;
    where the file's DICOM header said CT (`header`), as a fact (`ct_header_meaning`)."""
    if header:
        return f"This slice is CT, not MRI: {ct_header_meaning(sartaj, n_models)}."
    return f"This slice {FLAG_LABELS['ct']}: {flag_meaning('ct', sartaj, n_models)}."


def small_warning(image_size: str | None, n_models: int = 2,
                  input_sides: Sequence[int] = ()) -> str | None:
    """"Small image (32 × 32 pixels): …", the CLI's "[small image …]" legend as a card's
    sentence, for an image ("WxH", `names.size_label`) that `modality.is_small` calls small
    beside the models' `input_sides`; None otherwise. A 32 px thumbnail got "glioma 94%" with
    no word of its size (a presenter's review)."""
    try:
        w, h = (int(v) for v in str(image_size).split("x"))
    except ValueError:
        return None
    if not is_small(np.zeros((h, w, 0)), input_sides):
        return None
    return f"Small image ({w} × {h} pixels): {flag_meaning('small', n_models=n_models)}."


def t2_warning(sartaj: bool = False, n_models: int = 2,
               measured: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The CLI's legend line for "[may be T2 or FLAIR, not T1]" as a card's sentence, then what
    the run measured (flags.json's "models", `measured`: " On this run's test images 44 tumours
    lay on slices that may be T2 or FLAIR, not T1: Custom CNN named 43% of them right …",
    `evaluate.flags.t2_tumours`), where it did."""
    words = t2_tumours(measured or {}, {m: display_name(m) for m in measured or {}})
    return (f"This slice {FLAG_LABELS['t2']}: {flag_meaning('t2', sartaj, n_models)}."
            + (f" On this run's test images {words}." if words else ""))


# and for "[looks like a photo of a screen or film]"
PHOTO_WARNING = f"This image {FLAG_LABELS['photo']}: {FLAG_MEANINGS['photo']}."


def photo_warning(n_models: int = 2) -> str:
    """`PHOTO_WARNING` said of `n_models` models ("what the model sees" for one)."""
    return f"This image {FLAG_LABELS['photo']}: {flag_meaning('photo', n_models=n_models)}."


COLOUR_WARNING = ("This is a colour image, and MRI slices are greyscale: it may not be an MRI "
                  "slice at all. If it is not, no answer or heatmap here means anything.")
