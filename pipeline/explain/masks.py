"""Tumour masks in the model's frame: the head box, a mask prepared like its image, mask files.

A mask is drawn in its image's own pixel grid (docs/architecture.md, synthetic phantoms), so it
must go through the same crop, padding and resize as the image before it is compared with a
heatmap at the model's input size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline import images
from pipeline.names import IMAGE_EXTS


def mask_like(mask: Any, shape: tuple[int, int]) -> np.ndarray:
    """`mask` (2-D, or 3-D reduced over channels) as a bool array of `shape`, non-zero = inside;
    resized with nearest neighbours when its size differs."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m.max(axis=2)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (h, w), got shape {np.asarray(mask).shape}")
    m = m > 0
    if m.shape != shape:
        m = cv2.resize(m.astype(np.uint8), (shape[1], shape[0]),
                       interpolation=cv2.INTER_NEAREST) > 0
    return m


def head_box(img: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the region `images.crop_to_head` keeps from `img`.

    The box comes from `images.crop_box`, which `crop_to_head` itself crops to, so masks follow
    the image's crop exactly, even if its method changes.
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"head_box takes (H, W, 3) uint8 images, got {img.shape} {img.dtype}")
    return images.crop_box(img)


def prepare_mask(mask: np.ndarray, image: np.ndarray, size: int, crop: bool) -> np.ndarray:
    """Bring a tumour mask into the model's frame: the same crop, padding and resize as
    `images.prepare_image(image, size, crop)`. Returns a (size, size) bool array."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m.max(axis=2)
    if m.shape != image.shape[:2]:
        raise ValueError(f"mask shape {m.shape} differs from its image's {image.shape[:2]}")
    m = (m > 0).astype(np.float32)
    if crop:
        x0, y0, x1, y1 = head_box(image)
        m = m[y0:y1, x0:x1]
    m = images.pad_to_square(m)
    m = cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA)
    out = m >= 0.5
    if not out.any() and m.max() > 0:  # a tiny lesion must not vanish when downscaled
        out = m >= m.max() / 2
    return out


def find_mask(masks_dir: Path, rel: str) -> Path | None:
    """The mask of image `rel`: `masks_dir/rel`, or the same stem with another image extension."""
    direct = masks_dir / rel
    if direct.is_file():
        return direct
    stem = (masks_dir / rel).with_suffix("")
    for ext in sorted(IMAGE_EXTS):
        for cand in (stem.with_suffix(ext), stem.with_suffix(ext.upper())):
            if cand.is_file():
                return cand
    return None
