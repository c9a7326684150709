"""Head geometry: find the head in a decoded image, crop to it, pad to square, resize.

`prepare_image(img, size, crop)` is the one preparation every consumer (training, prediction,
explanations, dashboard) applies, with the model's `image_size` and `crop_head` from the manifest.
`crop_box` is the head's box (`crop_to_head` keeps exactly it; tumour masks follow it,
`pipeline.explain.masks`), `head_mask` its filled silhouette (the shortcut alarm). Input arrays come
from `pipeline.images` (decoding); bad arrays raise its `ImageError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from pipeline.images import MIN_SIDE, ImageError, on_black, pil_to_rgb
from pipeline.pixels import array_to_uint8


def as_rgb_uint8(img: Any) -> np.ndarray:
    """`img` as H×W×3 uint8: grey repeated, other dtypes `pixels.array_to_uint8`, RGBA
    composited on black and a Pillow image converted, as decoding reads a file (a review: an
    RGBA PNG's array, its alpha dropped, got another answer than the file); ImageError for
    anything that is no image."""
    if isinstance(img, Image.Image):
        try:
            return pil_to_rgb(img)
        except Exception as exc:  # its file closed before it was loaded: a bare AssertionError
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise ImageError(f"cannot read the Pillow image ({why}); an image whose file is "
                             "closed must be loaded first (img.load() inside the with)") from None
    if not isinstance(img, np.ndarray):
        raise ImageError(_not_an_image(img))
    shape = img.shape
    if img.ndim == 3 and shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ImageError(f"expected an H×W×3 image array, got shape {shape}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ImageError(f"expected a non-empty image array, got shape {shape}")
    if img.dtype != np.uint8:
        if not np.issubdtype(img.dtype, np.number) or np.issubdtype(img.dtype, np.complexfloating):
            raise ImageError(f"expected a numeric image array, got dtype {img.dtype}")
        img = array_to_uint8(img)
    if img.shape[2] == 4:
        img = on_black(img)
    return np.ascontiguousarray(img)


def _not_an_image(obj: Any) -> str:
    """Why `obj`, handed over as an image, is none, in one line (a file's name: how to read it)."""
    want = "expected a numpy array or a Pillow image"
    if isinstance(obj, (str, Path)):
        return (f"{want}, got the file name {str(obj)!r}: read the file with "
                "pipeline.images.read_image(path)")
    return f"{want}, got {'None' if obj is None else type(obj).__name__}"


# A bright blob whose box covers less of the image is no head (a label, a speck): the image is
# left uncropped. Every image of the Sartaj dataset has its head's box over 23 % of the image.
# 10 % left a slice shown small on a large black canvas (a viewer's export) uncropped, and both
# models then misread 5-7 of 8 such test slices; at 2 % all 16 answers were right (a review's
# 1024 px canvases, heads at 2.6-5.9 %), and no dataset image and none of the OOD score's
# foreign images (seeds 0 and 1) is cropped differently, so the shipped runs' figures stand.
HEAD_MIN_AREA = 0.02


# A bright line along an edge, within this share of the image from it and bright over at least
# `FRAME_FILL` of its length, with such a line along all four edges, is a frame drawn round the
# slice (a viewer's export, a screenshot), not head: a 2-3 px white border made the whole image
# "the head" for the shortcut alarm (an explanation review), so a heatmap on the border read as
# inside it. Only `head_mask` drops it: the crop stays the one the shipped models were trained
# with (dropping frames there too changed the crop of 27 of the 3264 Sartaj images, 2026-12-07).
# The head masks of 24 Sartaj images change, each from the whole image to the head; none of
# 408 tight centre crops (tissue to every edge) changes.
FRAME_DEPTH = 0.08
FRAME_FILL = 0.95


def _edge_lines(fill: np.ndarray, depth: int) -> int:
    """How many lines from the start of `fill` (each line's bright share) are frame lines: a
    band of lines bright over `FRAME_FILL` of their length that ends within `depth` lines. A
    band running on past `depth` is tissue filling the image, not a thin frame (a review: a
    tightly zoomed slice lost a quarter of its head to the frame rule)."""
    n = 0
    while n < min(depth, len(fill)) and fill[n] >= FRAME_FILL:
        n += 1
    return n if n < min(depth, len(fill)) else 0


def _drop_frame(mask: np.ndarray) -> np.ndarray:
    """`mask` (H×W uint8, 0/255) without the frame lines along its edges: from each edge inwards,
    the lines bright over `FRAME_FILL` of their length, up to `FRAME_DEPTH` of the image."""
    h, w = mask.shape
    rows, cols = (mask > 0).mean(axis=1), (mask > 0).mean(axis=0)
    dh, dw = max(1, int(h * FRAME_DEPTH)), max(1, int(w * FRAME_DEPTH))
    top, bottom = _edge_lines(rows, dh), _edge_lines(rows[::-1], dh)
    left, right = _edge_lines(cols, dw), _edge_lines(cols[::-1], dw)
    if not (top and bottom and left and right):  # a frame goes round; a head touches edges
        return mask
    out = mask.copy()
    out[:top] = 0
    out[h - bottom:] = 0
    out[:, :left] = 0
    out[:, w - right:] = 0
    return out


def _head_contour(img: np.ndarray, drop_frame: bool = False) -> np.ndarray | None:
    """The head's outline in `img` (H×W×3 uint8): the largest bright blob's external contour, or
    None when nothing sensible is found (tiny, blank or flat image, or a blob whose box covers
    under `HEAD_MIN_AREA` of it); `drop_frame`: without a frame round the image.

    Method: gray, 5×5 Gaussian blur, Otsu threshold (at least 10 so near-black noise never counts),
    frame lines along the edges dropped if asked (`_drop_frame`), a morphological close to join
    the skull ring, then the largest external contour.
    """
    h, w = img.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        return None
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    if int(gray.max()) - int(gray.min()) < 10:
        return None
    blur = cv2.GaussianBlur(gray, (5, 5), 0)
    otsu, _ = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    _, mask = cv2.threshold(blur, max(float(otsu) * 0.5, 10.0), 255, cv2.THRESH_BINARY)
    if drop_frame:
        mask = _drop_frame(mask)
    k = max(3, (min(h, w) // 64) | 1)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    largest = max(contours, key=cv2.contourArea)
    _, _, bw, bh = cv2.boundingRect(largest)
    if bw * bh < HEAD_MIN_AREA * h * w:
        return None
    return largest


def crop_box(img: np.ndarray, margin: float = 0.02) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the head in `img`: the bounding box of the largest bright blob, plus
    a small margin. `crop_to_head` keeps exactly `img[y0:y1, x0:x1]`, and masks drawn on the
    image follow the same box (`pipeline.explain.masks`).

    The blob is `_head_contour`'s (threshold, close, largest contour). When nothing sensible is
    found (blank or flat image, or the contour's box covers less than `HEAD_MIN_AREA` of the
    image) the box is the whole image.
    """
    img = as_rgb_uint8(img)
    h, w = img.shape[:2]
    contour = _head_contour(img)
    if contour is None:
        return 0, 0, w, h
    x, y, bw, bh = cv2.boundingRect(contour)
    pad = int(round(margin * max(h, w)))
    return max(0, x - pad), max(0, y - pad), min(w, x + bw + pad), min(h, y + bh + pad)


def head_mask(img: np.ndarray) -> np.ndarray:
    """(H, W) bool: the head's silhouette in `img` (the filled outline `crop_box` boxes, but
    without a frame drawn round the image: `FRAME_DEPTH`).

    Pass the *prepared* image (`prepare_image`'s output) to get the head region in the model's
    input frame, after the crop and resize the model sees. Where no head is found (blank or flat
    image) the whole image counts as head, as `crop_box` keeps the whole image there, so nothing
    is ever called "outside the head" on an image without a recognisable head.
    """
    img = as_rgb_uint8(img)
    h, w = img.shape[:2]
    contour = _head_contour(img, drop_frame=True)
    if contour is None:
        return np.ones((h, w), bool)
    out = np.zeros((h, w), np.uint8)
    cv2.drawContours(out, [contour], -1, 1, thickness=cv2.FILLED)
    return out > 0


def crop_to_head(img: np.ndarray, margin: float = 0.02) -> np.ndarray:
    """Crop to the head: `img[y0:y1, x0:x1]` for the box of `crop_box(img, margin)`.

    An image where no head is found comes back unchanged (as H×W×3 uint8).
    """
    img = as_rgb_uint8(img)
    x0, y0, x1, y1 = crop_box(img, margin)
    if (x0, y0, x1, y1) == (0, 0, img.shape[1], img.shape[0]):
        return img
    return np.ascontiguousarray(img[y0:y1, x0:x1])


def pad_to_square(img: np.ndarray) -> np.ndarray:
    """Pad with black (centred) so both sides are equal; MRI backgrounds are black already."""
    h, w = img.shape[:2]
    if h == w:
        return img
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    return cv2.copyMakeBorder(img, top, side - h - top, left, side - w - left,
                              cv2.BORDER_CONSTANT, value=(0, 0, 0))


def prepare_image(img: np.ndarray, size: int, crop: bool = True) -> np.ndarray:
    """Optional head crop, pad to square (keeps the aspect ratio), resize to size×size×3 uint8.

    Every consumer (training, prediction, explanations, dashboard) calls this with the model's
    `image_size` and `crop_head` from the manifest, so an image is prepared exactly as in training.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_SIDE:
        raise ImageError(f"size must be an integer >= {MIN_SIDE}, got {size!r}")
    img = as_rgb_uint8(img)
    if crop:
        img = crop_to_head(img)
    img = pad_to_square(img)
    side = img.shape[0]
    interp = cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR
    out = cv2.resize(img, (int(size), int(size)), interpolation=interp)
    return np.ascontiguousarray(out, dtype=np.uint8)


def prepare_for(img: np.ndarray, specs: Sequence[tuple[int, bool]]) -> list[np.ndarray]:
    """`[prepare_image(img, size, crop) for size, crop in specs]`, pixel for pixel, with the head
    found once for all the cropped ones (a run's two models both crop: half the work)."""
    img = as_rgb_uint8(img)
    head = crop_to_head(img) if any(crop for _, crop in specs) else None
    return [prepare_image(head if crop else img, size, crop=False) for size, crop in specs]
