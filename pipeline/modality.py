"""Does a slice look like CT rather than MRI? A rough, explainable hint (no learning, ~2 ms).

Why: the dataset's no-tumour class holds CT slices (73 of its 3264 images are CT, labelled by eye
on 2026-12-05: 60 of them in no_tumor, 10 in meningioma, 3 in glioma), so the models call a CT
slice "no tumour", confidently, and the "unlike the training data" score learnt CT as normal.

The physics: on CT at a brain window the skull is the brightest structure, clipped to white,
and a thick band right against the brain. On MRI cortical bone gives no signal: a bright outer
band, when there is one, is scalp fat, thinner, with a dark band (the bone) between it and the
brain. Measured inside the head's silhouette on the grey image shrunk to SIDE px:

- `rim_thickness`: the bright outer band's mean thickness, as a share of the head's radius;
- `rim_saturation`: the share of that band clipped white (grey >= WHITE);
- `inside_ratio`: the median grey just inside the band over the brain's median (CT: about 1 or
  more, the brain lies against the bone; MRI: below 1, the dark bone band).

`looks_like_ct` needs all three over `RULE`, whose thresholds were chosen on the dataset's
Training/ folder only. Measured (README, "CT slices"): Training/ 32 of 36 CT found, no false alarm
among 2834 MRI slices; Testing/ 33 of 37 and none among 357 (34 of its 37 CT images are copies of
Training/ ones: 3 of 3 without a copy). It misses CT shown at a wide window (bone not clipped),
and a contrast boost with clipping on export raises false alarms (11 of 3191 MRI at x1.15): a
hint ("may be CT"), never a verdict, and never a reason to change an answer.

A photograph of a screen or film (`looks_like_photo`): users photograph a viewer's monitor, or a
film on a lightbox, with a phone instead of exporting the image, and the models answered such
photos as confidently as exports. MRI exports are grey (R = G = B); a phone photo of a screen is
not: the screen's white point, the room's light and the camera's white balance tint it.
`photo_tint` is that tint, measured on the lit pixels (dark ones carry too little colour) as the
median of a channel difference (R - G, G - B, R - B; the largest): a median, so that a coloured
annotation or a logo (a few per cent of the pixels) and JPEG's chroma noise (no direction)
leave it at 0.
Measured (README, "Photos of a screen or film"): every one of the dataset's 3264 images has a
tint of exactly 0.0; synthetic screen photos (`synth.photo`) of 40 of its Testing/ images: 40 of
40 found from a per-channel gain of 1.5-3 % up (strength 0.1), 32 of 40 at half that.
A photo turned grey (a phone's black-and-white mode) shows no tint: this check cannot see it,
and the "unlike the training data" score is then the only warning (it missed 18 of 40 such
close-ups).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# A slice whose grey levels span at most this (0.5th to 99.5th percentile, of 255) shows nothing to
# classify, yet the models answered a white square "no tumour (97%)". Every one of the dataset's
# 3264 images spans 92 or more (measured 2026-12-06); a scanner's padding slice spans 0.
BLANK_SPREAD = 8
# the end of every "nothing to classify" refusal: a blank file, a series of blank slices
# (`images.blank_failure` tells them from unreadable files by it)
BLANK_WHY = "(almost all one grey level): nothing in it to classify"
BLANK_REASON = f"a blank image {BLANK_WHY}"
SIDE = 256  # the long side features are measured at: thresholds are in this frame's pixels
WHITE = 250  # grey level counted as clipped white
RULE = {"rim_saturation": 0.40, "rim_thickness": 0.040, "inside_ratio": 0.90}
# DICOM Modality codes that settle `may_be_ct` without the pixels (DICOM PS3.3 C.7.3.1.1.1)
DICOM_CT, DICOM_MR = "CT", "MR"
# The other codes of that list whose file holds an acquired image of another kind than MRI or
# CT, in plain words (`not_mri_words`): the header says the file is no MRI, and the models
# answer whatever they are shown. Left out on purpose, so that they warn of nothing: OT (other)
# and SC (secondary capture), which exports, screenshots and conversions of MRI often carry;
# codes of objects that are no image (SR, PR, KO, SEG, REG, RTSTRUCT, ...); retired codes (MA
# and MS were MR); and any code not listed.
NOT_MRI_MODALITIES = {
    "PT": "PET", "NM": "nuclear medicine", "CR": "computed radiography X-ray",
    "DX": "digital radiography X-ray", "RG": "radiographic X-ray", "MG": "mammography",
    "BMD": "bone densitometry X-ray", "XA": "X-ray angiography", "RF": "X-ray fluoroscopy",
    "IO": "intra-oral dental X-ray", "PX": "panoramic dental X-ray",
    "RTIMAGE": "radiotherapy X-ray image", "US": "ultrasound", "IVUS": "intravascular ultrasound",
    "OP": "eye photograph", "OPT": "eye tomography", "IVOCT": "intravascular optical tomography",
    "XC": "external camera photograph", "ES": "endoscopy", "GM": "microscopy",
    "SM": "slide microscopy", "DG": "diaphanography", "TG": "thermography",
}
# An MR header's echo or inversion time from which the slice is T2-weighted or FLAIR, not T1
# (`t2_by_times`): T1-weighted spin echo uses an echo time of about 10-20 ms and MPRAGE 2-4 ms,
# T2 80-120 ms; FLAIR nulls fluid with an inversion time of about 2000-2800 ms, where T1-FLAIR
# uses 700-1000 ms and STIR about 150 ms (textbook values, e.g. Bitar et al., RadioGraphics 2006)
T2_ECHO_MS, FLAIR_INVERSION_MS = 80.0, 1500.0
_NAN = {k: float("nan") for k in RULE}
PHOTO_LIT = 24  # a pixel counts for the tint from this grey level: a dark one has no colour
PHOTO_TINT = 2.5  # grey levels between the channels' medians from which an image is tinted
PHOTO_SIDE = 256  # measured on every pixel up to this many a side (a stride beyond: <10 ms)
# Under this many pixels on its longer side (and under every model's input side, `is_small`)
# an image is "small": the models see it enlarged, with less detail than they learnt from. The
# official run's 394 `Testing/` images shrunk to a shorter side of 96 px kept their accuracy
# (custom CNN / MobileNetV2 0.736 / 0.749 against 0.749 / 0.749); at 64 px it fell to 0.701 /
# 0.726, at 32 px to 0.609 / 0.622, while their mean confidence fell only from 0.86 / 0.89 to
# 0.81 / 0.80 (2026-12-07; README, "Small images").
# No image of the Sartaj dataset is under 167 px.
SMALL_SIDE = 96


def _grey(image: np.ndarray) -> np.ndarray:
    """`image` (grey or RGB, uint8) as uint8 grey, long side SIDE."""
    g = np.asarray(image)
    if g.ndim == 3:
        g = cv2.cvtColor(np.ascontiguousarray(g[..., :3]).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    g = np.clip(g, 0, 255).astype(np.uint8)
    h, w = g.shape
    scale = SIDE / max(h, w)
    return cv2.resize(g, (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA)


def _head(g: np.ndarray) -> np.ndarray | None:
    """The head's filled silhouette: brighter than the frame's background (its 20th percentile,
    robust to a bright frame or text), opened to cut thin attachments (holder, table, text),
    largest component; None when there is none."""
    b = max(2, int(0.02 * min(g.shape)))
    border = np.concatenate([g[:b].ravel(), g[-b:].ravel(), g[:, :b].ravel(), g[:, -b:].ravel()])
    bg = float(np.percentile(border, 20))
    level = bg + max(8.0, 0.12 * (float(np.percentile(g, 99)) - bg))
    m = cv2.morphologyEx((g > level).astype(np.uint8), cv2.MORPH_OPEN,
                         cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n < 2:
        return None
    biggest = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    contours, _ = cv2.findContours(biggest, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(biggest)
    cv2.drawContours(filled, contours, -1, 1, thickness=-1)
    return filled.astype(bool)


def ct_features(image: np.ndarray) -> dict[str, float]:
    """The three features (module docstring); NaN where one cannot be measured (no head, or
    fewer than 20 pixels of bright rim or of the band inside it)."""
    g = _grey(image)
    head = _head(g)
    if head is None or head.sum() < 500:
        return dict(_NAN)
    depth = cv2.distanceTransform(np.pad(head.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    radius = float(np.sqrt(head.sum() / np.pi))
    interior = depth > 0.25 * radius
    if interior.sum() < 100:
        return dict(_NAN)
    brain = float(np.median(g[interior]))
    top = float(np.percentile(g[head], 99.5))
    bright = head & (g >= brain + 0.6 * (top - brain))
    rim = bright & (depth <= 0.15 * radius)  # the bright part of the head's outer ring
    contours, _ = cv2.findContours(head.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    perimeter = max(1.0, sum(cv2.arcLength(c, True) for c in contours))
    out = dict(_NAN)
    out["rim_thickness"] = float(rim.sum() / perimeter / radius)
    if rim.sum() >= 20:
        out["rim_saturation"] = float((g[rim] >= WHITE).mean())
        edge = float(np.percentile(depth[rim], 90))  # the band's inner edge
        band = head & ~bright & (depth > edge) & (depth <= edge + 0.05 * radius)
        if band.sum() >= 20:
            out["inside_ratio"] = float(np.median(g[band]) / max(brain, 1.0))
    return out


def looks_like_ct(image: np.ndarray) -> bool:
    """Whether the slice looks like CT: every feature at or over its `RULE` threshold (a NaN
    never raises it)."""
    f = ct_features(image)
    return all(f[k] >= v for k, v in RULE.items())


def may_be_ct(image: np.ndarray, dicom_modality: str = "") -> bool:
    """The "may be CT, not MRI" verdict on a slice: a DICOM file's header decides when it names
    CT, MR or another acquisition (`dicom.modality`, `DICOM_CT` / `DICOM_MR`,
    `NOT_MRI_MODALITIES`, whose own warning then speaks, `not_mri_words`): the scanner wrote
    it, where the pixel check (`looks_like_ct`) misses CT shown at a wide window and now and
    then flags an MRI slice; any other file, or a header naming none of them (OT, SC, none), is
    judged by its pixels."""
    if dicom_modality in (DICOM_CT, DICOM_MR) or not_mri_words(dicom_modality):
        return dicom_modality == DICOM_CT
    return looks_like_ct(image)


def not_mri_words(dicom_modality: str) -> str:
    """"ultrasound (US)": a DICOM Modality code (`dicom.modality`) naming an acquisition other
    than MRI or CT (`NOT_MRI_MODALITIES`) in plain words, its code after them; "" for any other
    code (MR, CT, OT, SC, an object that is no image, an unknown code) or none."""
    name = NOT_MRI_MODALITIES.get(dicom_modality or "")
    return f"{name} ({dicom_modality})" if name else ""


def t2_by_times(echo_ms: float | None, inversion_ms: float | None) -> bool:
    """Whether an MR header's times say T2-weighted or FLAIR: an echo time of `T2_ECHO_MS` or
    more, or an inversion time of `FLAIR_INVERSION_MS` or more. Never the other way: a short
    echo is T1's, but also proton density's and T2*'s, so it leaves the slice to the learnt
    hint (`pipeline.sequence`)."""
    return bool((echo_ms or 0.0) >= T2_ECHO_MS or (inversion_ms or 0.0) >= FLAIR_INVERSION_MS)


def is_blank(image: np.ndarray) -> bool:
    """Whether `image` (grey or RGB, uint8) is almost all one grey level: its 0.5th to 99.5th
    percentiles at most `BLANK_SPREAD` apart (a review's black square with a small grey patch
    was called "one flat grey level", untrue of it), so no anatomy to classify (an empty
    padding slice of a series, a white or black square)."""
    g = np.asarray(image)
    if g.ndim == 3:  # structure in any channel counts
        g = np.maximum(np.maximum(g[..., 0], g[..., 1]), g[..., 2]) if g.shape[2] >= 3 else (
            g.max(axis=2))
    # every pixel: a subsample could step over a thin bright line
    lo, hi = _percentiles(g, (0.5, 99.5))
    return bool(hi - lo <= BLANK_SPREAD)


def photo_tint(image: np.ndarray) -> float:
    """The colour tint of `image` (H, W, 3 uint8; a grey image: 0.0): over its lit pixels (grey
    level `PHOTO_LIT` or more), the median difference between two channels, the largest of the
    three pairs, in grey levels."""
    im = np.asarray(image)
    if im.ndim != 3 or im.shape[-1] < 3:
        return 0.0
    step = max(1, -(-max(im.shape[:2]) // PHOTO_SIDE))
    px = im[::step, ::step, :3].reshape(-1, 3)
    lit = px[px.mean(axis=1) >= PHOTO_LIT].astype(np.int16)
    if len(lit) < 100:
        return 0.0
    # per pixel, then the median: a label's pixels are a minority of the differences, however
    # strong its colour (the channels' own medians moved by 2 levels for a 4 % red label)
    gaps = [np.median(lit[:, a] - lit[:, b]) for a, b in ((0, 1), (1, 2), (0, 2))]
    return float(np.max(np.abs(gaps)))


def is_small(image: np.ndarray, sides: Sequence[int] = ()) -> bool:
    """Whether `image` (H × W, any channels) is under `SMALL_SIDE` pixels on its longer side and
    under every model input side in `sides` (their `image_size`): every model then sees it
    enlarged. A run whose models read 64 px does not call an 80 px image small, nor does any
    run a 95 × 400 strip, which is padded to a square and shrunk (a review)."""
    return max(np.shape(image)[:2]) < min((SMALL_SIDE, *sides))


def looks_like_photo(image: np.ndarray) -> bool:
    """Whether `image` looks like a photograph of a screen or film: tinted (`photo_tint` at
    `PHOTO_TINT` or more), where an MRI export is grey. A hint for a warning, never a refusal."""
    return photo_tint(image) >= PHOTO_TINT


def _percentiles(g: np.ndarray, q: tuple[float, float]) -> tuple[float, float]:
    """`np.percentile(g, q)` (its default linear method, value for value); for uint8 from the
    grey-level histogram: every slice of a series is checked, and sorting a 512 px slice's
    pixels took 8 ms where the histogram takes under 1 ms."""
    if g.dtype != np.uint8 or g.size == 0:
        lo, hi = np.percentile(g, q)
        return float(lo), float(hi)
    below = np.bincount(g.ravel(), minlength=256).cumsum()  # pixels at or below each level
    n = int(below[-1])
    virtual = (n - 1) * (np.asarray(q, dtype=np.float64) / 100)  # numpy's 'linear' rule
    prev = np.floor(virtual)
    gamma = virtual - prev
    # the value of rank r in sorted order: the first level with more than r pixels at or below
    a = np.searchsorted(below, prev.astype(np.int64), side="right").astype(np.float64)
    b = np.searchsorted(below, np.minimum(prev + 1, n - 1).astype(np.int64),
                        side="right").astype(np.float64)
    d = b - a
    v = np.where(gamma >= 0.5, b - d * (1 - gamma), a + d * gamma)  # numpy's _lerp
    return float(v[0]), float(v[1])
