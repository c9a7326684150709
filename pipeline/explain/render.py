"""Drawing heatmaps: colour maps, overlays on the image, PNG bytes, and a heatmap's summary.

Every heatmap is a 2-D float map, nominally in [0, 1]; NaN counts as 0.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np


def _colormap_code(name: str) -> int:
    code = getattr(cv2, f"COLORMAP_{name.upper()}", None)
    if not isinstance(code, int):
        valid = sorted(k[9:].lower() for k in dir(cv2) if k.startswith("COLORMAP_"))
        raise ValueError(f"unknown colormap {name!r}; choose one of {', '.join(valid)}")
    return code


def check_heatmap(heatmap: Any) -> np.ndarray:
    """A heatmap as a 2-D float32 array with NaN replaced by 0; ValueError unless 2-D, non-empty."""
    hm = np.asarray(heatmap, dtype=np.float32)
    if hm.ndim != 2 or min(hm.shape) == 0:
        raise ValueError(f"heatmap must be 2-D (h, w), got shape {hm.shape}")
    return np.nan_to_num(hm, nan=0.0)


def resize_heatmap(heatmap: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """`heatmap` bilinearly resized to `hw` = (height, width); unchanged when already that size."""
    if heatmap.shape == hw:
        return heatmap
    return cv2.resize(heatmap, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)


def heatmap_to_rgb(
    heatmap: np.ndarray, colormap: str = "jet", size: tuple[int, int] | None = None
) -> np.ndarray:
    """Colour a [0, 1] heatmap with an OpenCV colour map; (H, W, 3) uint8 RGB.

    `size` = (height, width) to resize to first; values outside [0, 1] are clipped.
    """
    hm = check_heatmap(heatmap)
    if size is not None:
        hm = resize_heatmap(hm, (int(size[0]), int(size[1])))
    u8 = np.round(np.clip(hm, 0.0, 1.0) * 255).astype(np.uint8)
    bgr = cv2.applyColorMap(u8, _colormap_code(colormap))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def top_region(heatmap: np.ndarray, top_percent: float) -> np.ndarray:
    """Boolean mask of the `top_percent` % highest heatmap pixels (ties may add a few more)."""
    if not 0 < top_percent <= 100:
        raise ValueError(f"top percent must be in (0, 100], got {top_percent}")
    hm = check_heatmap(heatmap)
    threshold = np.percentile(hm, 100.0 - top_percent)
    region = hm >= threshold
    if hm.max() <= 0:  # a flat zero map has no "most relevant" region
        region[:] = False
    return region


def render_overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    alpha: float = 0.4,
    colormap: str = "jet",
    outline_top_percent: float | None = None,
) -> np.ndarray:
    """Blend a coloured heatmap over an RGB uint8 image; (H, W, 3) uint8.

    The heatmap is resized to the image. `alpha` is the heatmap's opacity (0 = image only).
    `outline_top_percent` draws the contour of the top-k % heatmap region in white.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got shape {img.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    img = np.clip(img, 0, 255).astype(np.uint8)
    hw = (img.shape[0], img.shape[1])
    hm = resize_heatmap(check_heatmap(heatmap), hw)
    colour = heatmap_to_rgb(hm, colormap)
    out = cv2.addWeighted(img, 1.0 - alpha, colour, alpha, 0.0)
    if outline_top_percent is not None:
        region = top_region(hm, outline_top_percent).astype(np.uint8)
        contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        thickness = max(1, round(min(hw) / 150))
        cv2.drawContours(out, contours, -1, (255, 255, 255), thickness, lineType=cv2.LINE_AA)
    return out


def to_png(arr: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3) RGB or (H, W) grey uint8 array (floats in [0, 1] are scaled)."""
    a = np.asarray(arr)
    if a.dtype != np.uint8:
        if a.dtype.kind == "f" and a.size and float(np.nanmax(a)) <= 1.0:
            a = a * 255.0
        a = np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR)
    elif a.ndim != 2:
        raise ValueError(f"to_png takes (H, W, 3) or (H, W) arrays, got shape {a.shape}")
    ok, buf = cv2.imencode(".png", a)
    if not ok:
        raise ValueError(f"PNG encoding failed for an array of shape {a.shape}")
    return buf.tobytes()


def heatmap_stats(heatmap: np.ndarray) -> dict[str, Any]:
    """Summary of one heatmap for JSON reports.

    `empty` = no positive value anywhere (then `peak` is None: there is nothing to point at);
    `peak` = (y, x) of the maximum as fractions of height/width; `area_above_half` = share of
    pixels above 0.5; `spread` = Shannon entropy of the map seen as a distribution, divided by its
    maximum (0 = one hot pixel, 1 = perfectly flat); `centroid` = energy-weighted (y, x).
    """
    hm = np.clip(check_heatmap(heatmap), 0.0, None)
    h, w = hm.shape
    py, px = np.unravel_index(int(np.argmax(hm)), hm.shape)
    total = float(hm.sum())
    if total > 0:
        p = hm.ravel() / total
        nz = p[p > 0]
        spread = float(-(nz * np.log(nz)).sum() / math.log(hm.size)) if hm.size > 1 else 0.0
        ys, xs = np.mgrid[0:h, 0:w]
        centroid = [float((ys * hm).sum() / total / max(h - 1, 1)),
                    float((xs * hm).sum() / total / max(w - 1, 1))]
    else:
        spread, centroid = 1.0, [0.5, 0.5]
    return {
        "empty": total == 0,
        "peak": [float(py / max(h - 1, 1)), float(px / max(w - 1, 1))] if total > 0 else None,
        "peak_value": float(hm.max()),
        "mean": float(hm.mean()),
        "area_above_half": float((hm > 0.5).mean()),
        "spread": spread,
        "centroid": centroid,
    }
