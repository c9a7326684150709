"""Dashboard logic without Streamlit: data in, data out, so it can be tested and reused.

Pages call these functions with objects the cached loaders in `dashboard.state` provide (a run's
manifest facts and missing files are in `dashboard.runinfo`). Nothing here writes files; uploads
stay in memory, and the only files read are inside a run folder or inside the run's own dataset
folder (paths taken from the run's artifacts, never from the user).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pandas as pd

from pipeline.csv_safe import to_csv
from pipeline.data.membership import Seen, seen_note
from pipeline.evaluate.flags import is_colour
from pipeline.evaluate.together import qualifiers as pooled_words
from pipeline.images import (
    MAX_DECODE_SIDE,
    ImageError,
    decode_slices,
)
from pipeline.modality import looks_like_photo, may_be_ct
from pipeline.names import TOGETHER_COLUMN, TOGETHER_LABEL, class_label, display_name, percent
from pipeline.sequence import looks_like_t2, may_be_t2
from pipeline.series import blank_note

MAX_UPLOADS = 24  # one batch; more would make a presenter wait and the page unreadable
# Decoded uploads are cached per server, so they are kept small: Pillow formats are shrunk while
# decoding (images.MAX_DECODE_SIDE), DICOM after. MRI slices are far smaller (Sartaj: <= 1 k px).
MAX_SIDE = MAX_DECODE_SIDE
# Several sessions decode at once on one server: a lower cap than the CLI's 50 megapixels bounds
# each decode (an RGBA image is held at 4 bytes per pixel while it is shrunk).
UPLOAD_MAX_PIXELS = 25_000_000
# Slices of a series (multi-frame DICOM, zip of .dcm) are kept smaller: up to dicom.MAX_SLICES
# of them are cached per upload, and the models see at most 224 px.
SERIES_MAX_SIDE = 512


# --------------------------------------------------------------------------- user text


def literal(text: object) -> str:
    """`text` as a Markdown code span, shown verbatim wherever Streamlit renders Markdown.

    File names, folder names and messages quoting them are the user's, not ours: a file called
    `![t](http://host/track.png).png` made the browser fetch that URL, and `:red[...]`, KaTeX,
    links and `**fake verdicts**` rendered too. Inside a code span nothing is parsed; the fence is
    longer than any run of backticks in the text, and line breaks become spaces.
    """
    s = " ".join(str(text).splitlines()) or " "
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s[0] in "` " or s[-1] in "` " else ""
    return f"{fence}{pad}{s}{pad}{fence}"


# --------------------------------------------------------------------------- uploads


@dataclass
class Upload:
    """One uploaded (or sampled) file: either a decoded image or a friendly error.

    A multi-frame DICOM or a zipped DICOM series also has `slices` (in order); `image` is then
    its first slice until `slice_view` picks one. Nothing else of a DICOM file is kept: no
    patient, institution, date or UID attribute ever reaches an Upload.
    """

    name: str
    digest: str  # sha256 of the bytes (of the pixels, for a slice): keys caches
    image: np.ndarray | None = None
    error: str | None = None
    true_label: str | None = None  # the dataset's label: a drawn test image's, an own upload's
    note: str | None = None  # what decoding changed: transparency flattened, frames dropped
    slices: list[np.ndarray] | None = None  # a series' slices (None: a single image)
    # How reports name it instead of its file name, which can identify a patient: "upload 3"
    # (its number in the upload list), "test split <path in the dataset>"; set by the page.
    # Last, so that Upload(name, digest, image) keeps meaning what it did.
    ref: str = ""
    # A long series' slices are evenly spaced ones of `total` (dicom.MAX_SLICES): each one's
    # place in the file, 1-based, so that "slice 3 of 100" names the real one (not "2 of 64").
    positions: list[int] | None = None
    total: int = 0
    # a colour image (`evaluate.flags.is_colour`), judged on the file as decoded, before any
    # shrinking for display (averaging greys colour noise): one verdict for both models
    colour: bool = False
    # a slice that may be CT, not MRI (`modality.may_be_ct`, on the decoded file; a DICOM
    # header naming CT, MR or another modality, `modality`, settles it): a hint
    ct: bool = False
    # a tinted photo of a screen or film (`modality.looks_like_photo`, on the decoded file)
    photo: bool = False
    # may be T2 or FLAIR, not T1 (`pipeline.sequence`, a learnt hint; None: it cannot run here);
    # a series' for every slice, found once when decoded (in one batch: 12 ms a slice alone, and
    # `slice_view` runs for every slice on every rerun)
    t2: bool | None = None
    slice_t2: list[bool | None] | None = None
    # where the run met it before (`flags.seen_note`: training, validation or test split), set by
    # the Predict page for uploads; "" when not found or the run cannot tell
    seen: str = ""
    seen_split: str = ""  # that split's name ("train", "val", "test"), "" when not found
    seen_exact: bool = False  # that split's image pixel for pixel, not a changed copy
    # what to do instead, after a training or validation image's note (`flags.seen_advice`,
    # Markdown): said on its card only, not in the reports
    seen_advice: str = ""
    # the patient's right is on the picture's left, as the file says (a NIfTI volume's slices,
    # `images.decode_slices`' info["radiological"]): the card's reading notes say so
    radiological: bool = False
    modality: str = ""  # a DICOM file's Modality code (`dicom.modality`), every slice's
    slice_modality: list[str] | None = None  # each slice's, a zip of several series' own

    @property
    def ok(self) -> bool:
        return self.image is not None

    def mark_seen(self, seen: Seen | None, advice: Mapping[str, str], n_models: int = 2) -> None:
        """Say where the run met this image (`seen`: `Membership.find`'s answer, None when not
        found or not looked up), with `advice` per split (`flags.seen_advice`): a single
        upload's and each slice of a series the same way; of the run's `n_models` models ("the
        model learnt from this image" for a run of one)."""
        self.seen = seen_note(seen.split, seen.distance, seen.exact, n_models) if seen else ""
        self.seen_split = seen.split if seen else ""
        self.seen_exact = bool(seen and seen.exact)
        self.seen_advice = advice.get(seen.split, "") if seen else ""

    def slice_numbers(self) -> list[int]:
        """Each analysed slice's number in its file, 1-based: 1..n, or the evenly spaced places
        of a long series' analysed slices (the slider, table and card all use these)."""
        assert self.slices is not None
        n = len(self.slices)
        return (list(self.positions) if self.positions and self.total > n
                else list(range(1, n + 1)))

    def slice_view(self, k: int) -> Upload:
        """Slice k (0-based) as an Upload of its own, keyed by the hash of its pixels."""
        assert self.slices is not None
        img = self.slices[k]
        where = f"slice {self.slice_numbers()[k]} of {max(self.total, len(self.slices))}"
        code = self.slice_modality[k] if self.slice_modality else self.modality
        return Upload(f"{self.name} · {where}", pixel_digest(img), image=img,
                      true_label=self.true_label, ref=f"{self.ref} · {where}" if self.ref else "",
                      colour=is_colour(img), ct=may_be_ct(img, code),
                      photo=looks_like_photo(img),
                      t2=self.slice_t2[k] if self.slice_t2 else None,
                      radiological=self.radiological, modality=code)


def pixel_digest(image: np.ndarray) -> str:
    """SHA-256 of an array's shape and pixels: the cache key of a slice (never a name)."""
    h = hashlib.sha256(str(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def decode_upload(name: str, data: bytes, true_label: str | None = None) -> Upload:
    """Decode one file in memory; any failure becomes a message instead of an exception."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        slices, info = decode_slices(data, name, max_pixels=UPLOAD_MAX_PIXELS)
    except ImageError as exc:
        return Upload(name, digest, error=str(exc), true_label=true_label)
    except Exception as exc:  # a decoder bug must cost one file, never the page
        return Upload(name, digest, true_label=true_label,
                      error=f"{name}: could not be read as an image ({type(exc).__name__})")
    code = str(info.get("modality") or "")  # a DICOM header's CT or MR settles "may be CT"
    if len(slices) > 1:
        slices = [limit_size(im, SERIES_MAX_SIDE) for im in slices]
        indices = info.get("indices")
        # each slice's own header (a zip of several series), else the file's: its modality,
        # and T2 or FLAIR by its echo or inversion time first (`dicom.t2_header`)
        codes = info.get("slice_modality") or [code] * len(slices)
        by_times = info.get("slice_t2_header") or [bool(info.get("t2_header"))] * len(slices)
        t2 = [True if h else t for h, t in zip(
            by_times, looks_like_t2(slices) or [None] * len(slices), strict=True)]
        return Upload(name, digest, image=slices[0], true_label=true_label,
                      note=decode_note(info), slices=slices,
                      positions=[int(i) + 1 for i in indices] if indices else None,
                      total=int(info.get("frames") or len(slices)), colour=is_colour(slices[0]),
                      ct=may_be_ct(slices[0], codes[0]), photo=looks_like_photo(slices[0]),
                      t2=t2[0], slice_t2=t2, radiological=bool(info.get("radiological")),
                      modality=code, slice_modality=codes)
    return Upload(name, digest, image=limit_size(slices[0]), true_label=true_label,
                  note=decode_note(info), colour=is_colour(slices[0]),
                  ct=may_be_ct(slices[0], code), photo=looks_like_photo(slices[0]),
                  t2=True if info.get("t2_header") else may_be_t2(slices[0]),
                  radiological=bool(info.get("radiological")),
                  modality=code)


def decode_note(info: dict[str, Any]) -> str | None:
    """What decoding did to a file that a viewer should know, in plain words (None: nothing)."""
    notes = []
    if str(info.get("mode", "")) in ("RGBA", "LA", "La", "RGBa", "PA") or info.get("alpha"):
        notes.append("its transparency was flattened onto black")
    frames = int(info.get("frames") or 1)
    slices = int(info.get("slices") or 1)
    # a TIFF's pages or a zip's DICOM slices left out, (place, reason); blank ones, places
    unreadable = list(info.get("unreadable") or ())
    blank = list(info.get("blank") or ())
    unit = "page" if info.get("format") == "TIFF" else "slice"
    if slices > 1:
        spaced = ", evenly spaced" if frames > slices + len(unreadable) + len(blank) else ""
        kept = f"{slices} of its {frames} slices{spaced}" if frames > slices else (
            f"its {slices} slices")
        notes.append(f"{kept} are analysed; choose the slice to show with its slider")
        if int(info.get("series") or 1) > 1:  # a study's export: T1, T2, a localiser ...
            notes.append(f"it holds {info['series']} series, shown one after another, each "
                         "in slice order (each slice's answers are its own)")
    elif frames > 1:
        notes.append(f"only the first of its {frames} frames is shown and analysed"
                     if not unreadable and not blank else
                     f"only one of its {frames} {unit}s could be "
                     f"{'read' if not blank else 'analysed'}")
    if unreadable:  # one damaged page or slice file no longer costs the others
        place, reason = unreadable[0]
        more = f" and {len(unreadable) - 1} more" if len(unreadable) > 1 else ""
        notes.append(f"{unit} {place}{more} could not be read ({literal(str(reason))}) and "
                     f"{'are' if more else 'is'} left out")
    if int(info.get("volumes") or 1) > 1:  # a 4-D NIfTI (fMRI, diffusion)
        notes.append(f"only the first of its {info['volumes']} volumes is analysed")
    if blank:  # padding slices outside the head: nothing to classify, no answer
        notes.append(blank_note(unit, blank, frames))
    reduced = float(info.get("reduced_by") or 1)
    if reduced > 1:
        notes.append(f"it was shrunk {reduced:g}x while decoding (it is very large)")
    lead = "A series: " if slices > 1 else "This file was adapted: "
    return (lead + "; ".join(notes) + ".") if notes else None


def limit_size(image: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """Shrink (area interpolation) so the longer side is at most `max_side`; else unchanged."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


# the head's box the models crop to, dashed on the card's "Original": a presenter pointing from
# the original to a heatmap was off, as the overlays show only that box (a review, 2026-12-06)
FRAME_COLOUR = (230, 230, 230)
# (no " · " in it: that separates a model's caption from its method, and tests find them so)
ORIGINAL_FRAMED = "Original (dashed: the part the models see)"


def square_for_display(image: np.ndarray, side: int) -> np.ndarray:
    """`image` centred on a black square (its whole content, aspect kept), resized to
    `side`×`side`: every picture of an image card gets the same displayed size, so the
    original and the overlays line up and so do their captions."""
    h, w = image.shape[:2]
    n = max(h, w)
    if h != w:
        top, left = (n - h) // 2, (n - w) // 2
        image = cv2.copyMakeBorder(image, top, n - h - top, left, n - w - left,
                                   cv2.BORDER_CONSTANT, value=0)
    if n == side:
        return image
    return cv2.resize(image, (side, side),
                      interpolation=cv2.INTER_AREA if n > side else cv2.INTER_CUBIC)


def original_for_display(image: np.ndarray, crop: bool, side: int) -> tuple[np.ndarray, bool]:
    """The card's "Original" (`square_for_display`, `side` square) and whether the head's box
    the models crop to (`geometry.crop_box`) is dashed on it: when they crop (`crop`) and the
    box is not the whole image. The overlays show only that box, so the two are told apart at a
    glance."""
    from pipeline.geometry import crop_box

    out = square_for_display(image, side)
    h, w = image.shape[:2]
    box = crop_box(image)
    if not crop or box == (0, 0, w, h):
        return out, False
    n = max(h, w)
    scale, top, left = side / n, (n - h) // 2, (n - w) // 2
    x0, y0, x1, y1 = (round((v + o) * scale)
                      for v, o in zip(box, (left, top, left, top), strict=True))
    x1, y1 = min(x1, side - 1), min(y1, side - 1)
    out = out.copy()
    dash = 6
    for a, b, fixed, along_x in ((x0, x1, y0, True), (x0, x1, y1, True), (y0, y1, x0, False),
                                 (y0, y1, x1, False)):
        for start in range(a, b, 2 * dash):
            end = min(start + dash, b)
            p, q = ((start, fixed), (end, fixed)) if along_x else ((fixed, start), (fixed, end))
            cv2.line(out, p, q, FRAME_COLOUR, 1)
    return out, True


def decode_uploads(files: Iterable[tuple[str, bytes]]) -> list[Upload]:
    """Decode several files; each keeps its place in the list whether it worked or not."""
    return [decode_upload(name, data) for name, data in files]


# --------------------------------------------------------------------------- predictions


def agreement(probs: Mapping[str, np.ndarray]) -> np.ndarray:
    """(N,) bool: all models predict the same class for the image."""
    preds = [np.asarray(p).argmax(axis=1) for p in probs.values()]
    if not preds:
        return np.zeros(0, dtype=bool)
    return np.all([p == preds[0] for p in preds], axis=0)


def predictions_frame(refs: Sequence[str], probs: Mapping[str, np.ndarray],
                      class_names: Sequence[str],
                      true_labels: Sequence[str | None] | None = None,
                      digests: Sequence[str] | None = None,
                      warnings: Sequence[Sequence[str]] | None = None,
                      together: np.ndarray | None = None,
                      withheld: Sequence[str] | None = None,
                      failed: Sequence[tuple[int, str, str, str]] = (),
                      together_weak_below: float | None = None) -> pd.DataFrame:
    """One row per image: each model's predicted class, confidence and probabilities (with
    `together`, (N, C) from `evaluate.together`, the models' pooled answer as "averaged_*"
    columns after them, "averaged_weak" below `together_weak_below`, as `predict`'s), and with
    `warnings` (per image, the sentences beside its answers and heatmaps) their count and text,
    so that a table read away from the page keeps them. `withheld`: per image, why its card
    hides the answers (`card_flags.withheld`), an `answers_withheld` column before them (a
    review's spreadsheet read noise's "no_tumor 0.81" as an answer). `failed`: (good images
    before it, ref, digest, error) per unreadable file: a row in its place with only its
    `error` (a review's 5 uploads left 3 rows, no trace of the others).

    The `image` column holds `refs` (`Upload.ref`: "upload 3", a slice's number), never a file
    name: this frame is the downloadable CSV, and names can identify a patient. `digests`: a
    short SHA-256 per image (`sha256` column) that matches a row to its file without its name.
    """
    rows = []
    agree = agreement(probs)
    for i, ref in enumerate(refs):
        row: dict[str, Any] = {"image": ref}
        if digests is not None:
            row["sha256"] = digests[i]
        if true_labels is not None:
            row["true"] = true_labels[i] or ""
        if withheld is not None:
            row["answers_withheld"] = withheld[i]
        named = {**probs, **({TOGETHER_COLUMN: together} if together is not None else {})}
        for model, p in named.items():
            k = int(np.argmax(p[i]))
            row[f"{model}_predicted"] = class_names[k]
            row[f"{model}_confidence"] = round(float(p[i][k]), 4)
            for c, v in zip(class_names, p[i], strict=True):
                row[f"{model}_p_{c}"] = round(float(v), 4)
        if together is not None and together_weak_below is not None:
            row[f"{TOGETHER_COLUMN}_weak"] = bool(together[i].max() < together_weak_below)
        row["models_agree"] = bool(agree[i])
        if warnings is not None:
            row["n_warnings"] = len(warnings[i])
            row["warnings"] = " | ".join(warnings[i])
        rows.append(row)
    for before, ref, digest, error in sorted(failed, key=lambda f: f[0], reverse=True):
        rows.insert(before, {"image": ref, **({"sha256": digest} if digests is not None else {}),
                             "error": error})  # in upload order
    # counts stay whole numbers where an error row leaves them blank (not "5.0")
    return pd.DataFrame(rows).astype({"n_warnings": "Int64"} if warnings and failed else {})


def analysis_note(n_files: int, seconds: float, earlier: Sequence[float | None]) -> str:
    """How long the good images took, for the caption over the cards. `earlier`: per good
    image, None when (part of) it was explained in this run, else the seconds it took when it
    was explained before (its results came from the result store: a restored upload, a rerun
    for the opacity): such an image is said to be analysed earlier, never "in 0.00 s"."""
    n = len(earlier)
    done = f"{n} of {n_files} file(s)"
    again = [s for s in earlier if s is not None]
    # "on this server": the store is shared, and a new session's first upload of an image
    # someone had analysed read as an analysis the reader never made (a review)
    if n and len(again) == n:
        return (f"{done} analysed earlier on this server (it took {sum(again):.2f} s then) and "
                "shown again from memory")
    note = f"{done} analysed in {seconds:.2f} s"
    if again:
        note += f" ({len(again)} of them analysed earlier on this server, shown again from memory)"
    return note


def agreement_note(agree: Sequence[bool], n_models: int,
                   hidden: Sequence[bool] | None = None) -> str:
    """How many of the good images the models answer alike, for the caption over the cards:
    "the models agree on 3 of 4"; "" for a one-model run, which has no one to agree with (its
    agreement column is all True, and "4 agreement(s)" read as a claim). `hidden`: per image,
    its answers are folded away (`card_flags.withheld`: it may be no MRI); those are not
    counted, and said apart (colour noise counted among "the models agree on 6 of 6", a
    presenter's review)."""
    if n_models < 2:
        return ""
    hidden = list(hidden) if hidden is not None else [False] * len(agree)
    shown = [bool(a) for a, h in zip(agree, hidden, strict=True) if not h]
    n_hidden = len(agree) - len(shown)
    why = f"{n_hidden} image{'s' if n_hidden > 1 else ''}' answers" if n_hidden > 1 else \
        "1 image's answers"
    if n_hidden and not shown:
        return f"no agreement counted ({why} hidden: may not be brain MRI)"
    note = f"the models agree on {sum(shown)} of {len(shown)}"
    return note + (f" shown ({why} hidden: may not be brain MRI)" if n_hidden else "")


# The downloads' encoding: UTF-8 with a byte-order mark. Excel opens a CSV without one in the
# machine's legacy code page, so a run title or a dataset path with "é" showed as "Ã©";
# `pandas.read_csv` drops the mark by itself, and Python's csv module reads it with
# `encoding="utf-8-sig"`. Only the dashboard's downloads: the CLI's CSVs are appended to
# and resumed, where a mark in the middle of a file would be a stray character.
CSV_ENCODING = "utf-8-sig"


def to_csv_bytes(frame: pd.DataFrame, notes: Mapping[str, str] | None = None) -> bytes:
    """The frame as CSV for download (`CSV_ENCODING`); text cells neutralised against
    spreadsheet formulas. `notes` (column -> text: `runinfo.report_notes`) become last columns,
    the same on every row, so that the file opens as it is in pandas and spreadsheets (no
    comment lines)."""
    frame = frame.assign(**{k: " ".join(str(v).splitlines()) for k, v in (notes or {}).items()})
    rows = frame.astype(object).where(frame.notna(), "").itertuples(index=False)
    return to_csv(list(frame.columns), rows).encode(CSV_ENCODING)


def verdict_line(probs: Mapping[str, np.ndarray], i: int, class_names: Sequence[str],
                 true_label: str | None = None, together: np.ndarray | None = None,
                 together_weak_below: float | None = None) -> str:
    """Short text: what each model says about image i, marked right/wrong if the truth is known;
    with `together` ((N, C), `evaluate.together`), the models' pooled answer last, said weak
    below `together_weak_below` (its validation threshold; each model's weak answers have
    their own warning under the line) and when it is neither model's answer."""
    parts = []
    named = {**probs, **({TOGETHER_LABEL: together} if together is not None else {})}
    for model, p in named.items():
        k = int(np.argmax(p[i]))
        said = (pooled_words(probs, p, i, together_weak_below)  # weak, neither model's answer
                if model == TOGETHER_LABEL else "")
        mark = (" :green[✓ right]" if class_names[k] == true_label else " :red[✗ wrong]"
                ) if true_label else ""
        # Classes as likely as the answer at the precision shown: the arg-max picked one of
        # them, which a reader must not take for a decision (a 44% / 44% tie was an answer).
        ties = [class_label(class_names[j]) for j in np.argsort(-p[i]) if j != k
                and round(100 * float(p[i][j])) == round(100 * float(p[i][k]))]
        tie = f", tied with {' and '.join(f'**{c}**' for c in ties)}" if ties else ""
        parts.append(f"{display_name(model)}: **{class_label(class_names[k])}** "
                     f"({percent(p[i][k])}{tie}{said}){mark}")
    return " · ".join(parts)

