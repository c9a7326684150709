"""explain-eval's images and tumour masks, decoded once, and what its masks amounted to.

Each mask is fitted to its image's pixel grid here (`masks.fit_mask`: resized when it has the
image's aspect ratio, refused otherwise), so every model prepares image and mask alike, and a
refusal is recorded once, not once per model. The counts kept say truly why no image was
scored for localisation (`no_localisation`) and how many masks look inverted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pipeline import images
from pipeline.explain.masks import MOSTLY_MASK, find_mask, fit_mask, read_mask

# One decoded image: its record ({"path", "label"}), the RGB image, its mask in the image's
# pixel grid (None: no mask file, or one that could not be used).
Decoded = tuple[dict[str, str], np.ndarray, np.ndarray | None]


def decode(chosen: list[dict[str, str]], data: Path, masks_root: Path, stats: Counter[str],
           read: Mapping[str, np.ndarray] | None = None
           ) -> tuple[list[Decoded], list[dict[str, str]]]:
    """(decoded images with their masks, failures as {path, error}). `stats` counts the mask
    files "read" and "unreadable", those "resized" to their image, "refused" (unreadable, or of
    another aspect ratio) and "mostly" mask (over MOSTLY_MASK of the image: probably inverted,
    tumour 0 and background 255). `read`: images already decoded ({record path: image},
    `external.with_overlap`), not read again."""
    decoded: list[Decoded] = []
    failed: list[dict[str, str]] = []
    for rec in chosen:
        img = (read or {}).get(rec["path"])
        if img is None:
            try:
                img = images.read_image(data / rec["path"])
            except (images.ImageError, OSError) as exc:
                failed.append({"path": rec["path"], "error": str(exc)})
                continue
        mask = None
        mpath = find_mask(masks_root, rec["path"]) if masks_root.is_dir() else None
        if mpath is not None:
            mask, error = _fitted_mask(mpath, img, stats)
            if error:
                failed.append({"path": rec["path"], "error": f"mask: {error}"})
        decoded.append((rec, img, mask))
    return decoded, failed


def _fitted_mask(path: Path, img: np.ndarray, stats: Counter[str]
                 ) -> tuple[np.ndarray | None, str | None]:
    """(the mask at `path` in `img`'s pixel grid, None) or (None, why it cannot be used)."""
    try:
        raw = read_mask(path)
    except (images.ImageError, OSError) as exc:
        stats["unreadable"] += 1
        stats["refused"] += 1
        return None, str(exc)
    stats["read"] += 1
    try:
        mask, resized = fit_mask(raw, img.shape)
    except ValueError as exc:
        stats["refused"] += 1
        return None, str(exc)
    stats["resized"] += resized
    stats["mostly"] += bool(np.count_nonzero(mask) > MOSTLY_MASK * mask.size)
    return mask, None


def usable_masks(stats: Counter[str]) -> int:
    """How many of the mask files `decode` met are in use (found, not refused)."""
    return stats["read"] + stats["unreadable"] - stats["refused"]


def no_localisation(stats: Counter[str], failed: list[dict[str, str]], masks_shown: str) -> str:
    """Why no image was scored for localisation, truly: no mask file under `masks_shown`, none
    usable (how many, and the first reason), or only empty masks. "No evaluated image has a
    non-empty tumour mask" was said when seven masks had all been refused for their size."""
    found = stats["read"] + stats["unreadable"]
    if not found:
        return f"no masks found under {masks_shown}"
    if not usable_masks(stats):
        why = next((f["error"].removeprefix("mask: ") for f in failed
                    if f["error"].startswith("mask: ")), "")
        return f"none of the {found} mask file(s) found could be used" + (
            f", e.g. {why}" if why else "")
    return "no evaluated image has a non-empty tumour mask"
