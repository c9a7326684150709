"""Tumour masks in the model's frame: the head box, a mask prepared like its image, mask files.

A mask is drawn in its image's own pixel grid (docs/architecture.md, synthetic phantoms), so it
must go through the same crop, padding and resize as the image before it is compared with a
heatmap at the model's input size.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline import geometry, images
from pipeline.names import IMAGE_EXTS, size_label


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


# A mask marking more than this share of its image is almost surely inverted (255 outside the
# tumour): explain-eval counts and warns; the largest real boxes cover a few percent.
MOSTLY_MASK = 0.5
# Aspect ratios this close (relative) count as equal: a mask drawn at half size may round.
ASPECT_TOLERANCE = 0.01


def fit_mask(mask: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, bool]:
    """(`mask` in an image of `shape`'s pixel grid, whether it was resized). A mask of another
    size with the image's aspect ratio is resized by nearest neighbour (as `mask_like`: 1
    inside, 0 outside); another aspect ratio is a ValueError naming both sizes as WxH."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m.max(axis=2)
    (h, w), (ih, iw) = m.shape[:2], tuple(shape[:2])
    if (h, w) == (ih, iw):
        return m, False
    if h and w and abs((w / h) / (iw / ih) - 1) <= ASPECT_TOLERANCE:
        inside = (m > 0).astype(np.uint8)  # cv2 resizes neither bool nor int64
        return cv2.resize(inside, (iw, ih), interpolation=cv2.INTER_NEAREST), True
    raise ValueError(f"mask is {size_label(w, h)} pixels, its image {size_label(iw, ih)}: another "
                     "aspect ratio cannot be resized; save the mask at its image's pixel size")


def head_box(img: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the region `geometry.crop_to_head` keeps from `img`.

    The box comes from `geometry.crop_box`, which `crop_to_head` itself crops to, so masks follow
    the image's crop exactly, even if its method changes.
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"head_box takes (H, W, 3) uint8 images, got {img.shape} {img.dtype}")
    return geometry.crop_box(img)


def prepare_mask(mask: np.ndarray, image: np.ndarray, size: int, crop: bool) -> np.ndarray:
    """Bring a tumour mask into the model's frame: the same crop, padding and resize as
    `geometry.prepare_image(image, size, crop)`. Returns a (size, size) bool array. A mask of
    another size is first fitted to its image (`fit_mask`)."""
    m, _ = fit_mask(mask, image.shape)
    m = (m > 0).astype(np.float32)
    if crop:
        x0, y0, x1, y1 = head_box(image)
        m = m[y0:y1, x0:x1]
    m = geometry.pad_to_square(m)
    m = cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA)
    out = m >= 0.5
    if not out.any() and m.max() > 0:  # a tiny lesion must not vanish when downscaled
        out = m >= m.max() / 2
    return out


def head_mask_in_frame(image: np.ndarray, size: int, crop: bool) -> np.ndarray:
    """(size, size) bool: the head region in the model's input frame.

    The head's silhouette is found on the full-resolution image (`geometry.head_mask`) and goes
    through the same crop, padding and resize as the image (`prepare_mask`): finding it on the
    small prepared image instead would let blur and the morphological close merge nearby
    off-head structures into the head.
    """
    img = np.asarray(image)
    return prepare_mask(geometry.head_mask(img).astype(np.uint8), img, size, crop)


def find_mask(masks_dir: Path, rel: str) -> Path | None:
    """The mask of image `rel`: `masks_dir/rel`, or the same stem with another image extension
    (`a/scan (1).jpg` -> `a/scan (1).png`; only the last suffix is replaced, so `x.1.jpg` ->
    `x.1.png`)."""
    direct = masks_dir / rel
    if direct.is_file():
        return direct
    stem = direct.name[: len(direct.name) - len(direct.suffix)] if direct.suffix else direct.name
    for ext in sorted(IMAGE_EXTS):
        for cand in (direct.with_name(stem + ext), direct.with_name(stem + ext.upper())):
            if cand.is_file():
                return cand
    return None


def no_mask_message(masks_dir: Path, rel: str, n_images: int) -> str:
    """The one line explain-eval fails with when a masks folder the user named matches none of
    `n_images` images: where the mask of one of them (`rel`) was looked for, and what the folder
    holds instead, so a `_mask.png` suffix or an extra `Testing/` level shows at once."""
    want = Path(rel)
    stem = want.name[: len(want.name) - len(want.suffix)] if want.suffix else want.name
    looked = (masks_dir / want.parent / stem).as_posix()
    holds, n = [], 0
    for dirpath, dirnames, filenames in os.walk(masks_dir):
        dirnames.sort()
        for name in sorted(filenames):
            if Path(name).suffix.lower() in IMAGE_EXTS and not name.startswith("."):
                n += 1
                if len(holds) < 3:
                    holds.append((Path(dirpath) / name).relative_to(masks_dir).as_posix())
    found = (f"the folder holds {n} image file(s), e.g. {', '.join(holds)}" if n else
             "the folder holds no image files")
    return (f"no mask in {masks_dir} for any of the {n_images} image(s): for {rel} it looked for "
            f"{looked}.<any image extension>; {found}. A mask has its image's relative path and "
            "file name (only the extension may differ)")


def read_mask(path: Path) -> np.ndarray:
    """A mask file as (H, W) uint8 (channels reduced by max); ImageError/OSError if unreadable."""
    return images.read_image(path).max(axis=2)


# beside a boxes folder's masks/: one row per box, with the class of the collection the box came
# from (the Sartaj boxes: `figshare_class`) next to the dataset folder's (`folder_class`)
BOX_TABLE = "boxes.csv"
SOURCE_CLASS, FOLDER_CLASS = "figshare_class", "folder_class"


def box_source_classes(masks_dir: Path) -> dict[str, str]:
    """Image path (relative to the dataset) -> its class in the boxes' source collection, for
    the boxed images whose source class differs from their dataset folder's (the Sartaj data's
    label noise: 14 "pituitary" images are figshare meningiomas, the boxes' README). Classes as
    the runs name them (`canonical_label`); {} without a `BOX_TABLE` that names both classes."""
    import csv

    from pipeline.data.discovery import canonical_label

    try:
        with (masks_dir.parent / BOX_TABLE).open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    out = {}
    for r in rows:
        source, folder = r.get(SOURCE_CLASS), r.get(FOLDER_CLASS)
        if not (source and folder and r.get("path")):
            continue
        # as classes, not spellings: "pituitary" and "pituitary_tumor" are one class
        source, folder = canonical_label(source) or source, canonical_label(folder) or folder
        if source != folder:
            out[r["path"]] = source
    return out


BOXES_ENV = "BRAIN_MRI_BOXES"
# a dataset's tumour boxes live in `<dataset><BOXES_SUFFIX>/masks` beside it (`boxes_dir`)
BOXES_SUFFIX = "-boxes"


def boxes_dir(data_dir: str | Path | None) -> Path | None:
    """Where the tumour-box masks of a dataset live, if anywhere: `$BRAIN_MRI_BOXES` when set
    (a masks folder mirroring the dataset's relative paths), else `<dataset>-boxes/masks` next to
    the dataset (the layout of `brain-tumor-mri-sartaj-boxes/`). None when that folder is absent:
    boxes are optional everywhere."""
    import os

    env = os.environ.get(BOXES_ENV)
    if env:
        cand = Path(env).expanduser()
    elif data_dir:
        d = Path(data_dir)
        cand = d.parent / f"{d.name}{BOXES_SUFFIX}" / "masks"
    else:
        return None
    return cand if cand.is_dir() else None


def default_masks_dir(data_dir: str | Path) -> Path:
    """Where explain-eval and explain-choose look for masks when none are given: the dataset's
    boxes folder (`boxes_dir`) if there is one, else `<data_dir>/masks` (the synthetic
    phantoms' layout), which may not exist."""
    return boxes_dir(data_dir) or Path(data_dir) / "masks"
