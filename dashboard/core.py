"""Dashboard logic without Streamlit: data in, data out, so it can be tested and reused.

Pages call these functions with objects the cached loaders in `dashboard.state` provide (a run's
manifest facts and missing files are in `dashboard.runinfo`). Nothing here writes files; uploads
stay in memory, and the only files read are inside a run folder or inside the run's own dataset
folder (paths taken from the run's artifacts, never from the user).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from pipeline.data.membership import Seen, seen_note
from pipeline.evaluate.flags import is_colour
from pipeline.images import (
    MAX_DECODE_SIDE,
    ImageError,
    decode_slices,
)
from pipeline.modality import looks_like_photo, may_be_ct
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
    if skipped := int(info.get("not_dicom") or 0):  # a PACS export's README.TXT and the like
        notes.append(f"{skipped} other file{'s' if skipped > 1 else ''} in the zip, not DICOM, "
                     f"{'were' if skipped > 1 else 'was'} skipped")
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
