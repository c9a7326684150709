"""Drawing heatmaps: colour maps, overlays on the image, PNG bytes, and a heatmap's summary.

Every heatmap is a 2-D float map, nominally in [0, 1]; NaN counts as 0. `render_overlay` is the
plain overlay the dashboard shows beside its own captions; `captioned_overlay` is the same
overlay enlarged, with a caption strip (what it shows, a colour scale, a disclaimer) for use
outside the dashboard (a slide, a report): what `explain` writes unless --bare.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.names import HEATMAP_ALPHA

# captioned overlays: the image's shorter side at least this (128 px custom CNN, 224 px
# MobileNetV2 are too small for a slide), and the strip's sizes at that width (scaled with it)
CAPTION_MIN_SIDE = 448
# `explain --size`'s largest side: a 4K slide's height is 2160, and one 4096-square overlay is
# about 50 MB in memory while it is drawn (a typo of 40960 would have asked for 5 GB)
CAPTION_MAX_SIDE = 4096
CAPTION_BACKGROUND = (255, 255, 255)
CAPTION_INK = (34, 34, 34)
CAPTION_NOTE_INK = (90, 90, 90)  # the disclaimer: quieter, still about 7:1 on white
CAPTION_TEXT_PX = 15  # the caption's text at CAPTION_MIN_SIDE wide (explain --size's help)
_PAD, _TEXT, _NOTE, _SCALE_H, _TICK = 10, CAPTION_TEXT_PX, 12, 10, 3  # pixels at that width
# Every heatmap's colour map (dashboard, PDF, `explain`, legends). Viridis, not jet: its
# lightness rises steadily from low to high, so the hottest place is the brightest for everyone.
# Jet is brightest in the middle (lightness 13 / 91 / 26 at 0 / 0.5 / 1), and with
# deuteranopia or protanopia its red peak turned dark olive, darker than the yellow around it,
# so the peak read as a hole (an accessibility review, 2026-12-05).
HEATMAP_COLORMAP = "viridis"
# words for its two ends, wherever a caption names them
HEATMAP_LOW_HIGH = ("dark purple", "yellow")
# The outline (`top_region`) never takes in a pixel under this on the 0..1 colour scale: below it
# the colour is the scale's darkest tenth, and what ranks such pixels is noise, not evidence
OUTLINE_FLOOR = 0.1


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
    heatmap: np.ndarray, colormap: str = HEATMAP_COLORMAP, size: tuple[int, int] | None = None
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


def peak_words(heatmap: np.ndarray) -> str | None:
    """Where a heatmap's hottest point is, in words ("upper left", "centre"), by thirds of the
    picture; None for an empty map. The overlay's text equivalent for a screen reader, and for
    anyone who cannot tell its colours apart."""
    hm = np.asarray(heatmap, np.float32)
    if hm.ndim != 2 or not hm.size or not np.isfinite(hm).any() or np.nanmax(hm) <= 0:
        return None
    y, x = np.unravel_index(int(np.nanargmax(hm)), hm.shape)
    row = ("upper", "middle", "lower")[min(2, 3 * y // hm.shape[0])]
    col = ("left", "centre", "right")[min(2, 3 * x // hm.shape[1])]
    if row == "middle":
        return "centre" if col == "centre" else f"middle {col}"
    return f"{row} {col}" if col != "centre" else f"{row} centre"


def top_region(heatmap: np.ndarray, top_percent: float) -> np.ndarray:
    """Boolean mask of the `top_percent` % highest heatmap pixels (ties may add a few more),
    less every pixel under `OUTLINE_FLOOR`; empty for a flat map (no place is hotter).

    Why the floor: a focused map has far fewer than `top_percent` % of its pixels with any heat,
    so the rest of its "hottest 10 %" was pixels ranked by noise at almost none. The shipped
    custom CNN's plain Grad-CAM is 0 on over half of 28 of 40 Testing/ images (shipped
    Testing/ run, `explain --method gradcam --outline 10`); 27 had over 5 % of that region under
    0.05 (up to 83 %), a median 46 % of it outside the head, and the white line circled black
    corners whose heat was 0.0003-0.02.
    """
    if not 0 < top_percent <= 100:
        raise ValueError(f"top percent must be in (0, 100], got {top_percent}")
    hm = check_heatmap(heatmap)
    if hm.max() <= hm.min():  # a flat map has no "most relevant" region
        return np.zeros(hm.shape, bool)
    threshold = max(float(np.percentile(hm, 100.0 - top_percent)), OUTLINE_FLOOR)
    return hm >= threshold


def outline_words(top_percent: float) -> str:
    """What the white line of `render_overlay(outline_top_percent=...)` is, for a caption or a
    legend beside it (the one home of that wording)."""
    return (f"White line: around the map's hottest {top_percent:g}% of pixels, leaving out "
            f"any under {OUTLINE_FLOOR:g} on the colour scale; not the tumour's outline.")


def render_overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    alpha: float = HEATMAP_ALPHA,
    colormap: str = HEATMAP_COLORMAP,
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


def captioned_overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    lines: Sequence[str],
    note: str = "",
    alpha: float = HEATMAP_ALPHA,
    colormap: str = HEATMAP_COLORMAP,
    outline_top_percent: float | None = None,
    min_side: int = CAPTION_MIN_SIDE,
) -> np.ndarray:
    """`render_overlay` enlarged to at least `min_side` px on its shorter side, over a caption
    strip: `lines` (each wrapped to the width), a colour scale in `colormap` (0 low .. 1 high),
    then `note` in smaller, quieter type; (H + strip, W, 3) uint8.

    The image is enlarged bicubically before the blend and the heatmap bilinearly from its own
    size, so the map stays smooth (enlarging the blended overlay would blur its outline too).
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got shape {img.shape}")
    h, w = img.shape[:2]
    scale = max(1.0, min_side / min(h, w))
    big = (round(h * scale), round(w * scale))
    if big != (h, w):
        img = cv2.resize(np.clip(img, 0, 255).astype(np.uint8), (big[1], big[0]),
                         interpolation=cv2.INTER_CUBIC)
    overlay = render_overlay(img, heatmap, alpha=alpha, colormap=colormap,
                             outline_top_percent=outline_top_percent)
    return np.concatenate([overlay, caption_strip(big[1], lines, note, colormap)], axis=0)


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's own font at `size` px (no system font needed); loaded once per size: loading
    costs more than drawing a caption."""
    return ImageFont.load_default(size=size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, width: float) -> list[str]:
    """`text` split at spaces into lines no wider than `width` (a single longer word keeps a
    line of its own)."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def caption_strip(width: int, lines: Sequence[str], note: str = "", colormap: str = HEATMAP_COLORMAP
                  ) -> np.ndarray:
    """The strip under a captioned overlay, `width` px wide: `lines` in `CAPTION_INK`, a colour
    scale of `colormap` with ticks at 0, 0.5 and 1 ("0 low", "1 high"), `note` in
    `CAPTION_NOTE_INK`, all wrapped to the width; (H, width, 3) uint8 on `CAPTION_BACKGROUND`."""
    pad, size = _caption_sizes(width)[:2]
    font = _font(size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    body = [part for line in lines for part in _wrap(measure, line, font, width - 2 * pad)]
    step = round(1.3 * size)
    canvas = Image.new("RGB", (width, pad + step * len(body) + pad // 2), CAPTION_BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for k, line in enumerate(body):
        draw.text((pad, pad + step * k), line, fill=CAPTION_INK, font=font)
    return np.concatenate([np.asarray(canvas), _scale_and_note(width, note, colormap)], axis=0)


def _caption_sizes(width: int) -> tuple[int, ...]:
    """(pad, text, note text, scale height, tick) in pixels for a strip `width` px wide."""
    unit = width / CAPTION_MIN_SIDE
    return tuple(max(1, round(v * unit)) for v in (_PAD, _TEXT, _NOTE, _SCALE_H, _TICK))


@functools.lru_cache(maxsize=8)
def _scale_and_note(width: int, note: str, colormap: str) -> np.ndarray:
    """The strip's lower part, the same under every overlay of a batch: the colour scale with
    its ticks and numbers, then `note` wrapped. Drawn once (text costs more than the rest of
    a captioned overlay); read-only."""
    pad, _, small, scale_h, tick = _caption_sizes(width)
    font = _font(small)
    inner = width - 2 * pad
    step = round(1.3 * small)
    notes = _wrap(ImageDraw.Draw(Image.new("RGB", (1, 1))), note, font, inner)
    notes_top = scale_h + tick + step + pad // 2
    canvas = Image.new("RGB", (width, notes_top + step * len(notes) + pad), CAPTION_BACKGROUND)
    ramp = np.tile(np.linspace(0, 1, inner, dtype=np.float32), (scale_h, 1))
    canvas.paste(Image.fromarray(heatmap_to_rgb(ramp, colormap)), (pad, 0))
    draw = ImageDraw.Draw(canvas)
    for value, label in ((0.0, "0 low"), (0.5, "0.5"), (1.0, "1 high")):
        x = pad + round(value * (inner - 1))
        draw.line([(x, scale_h), (x, scale_h + tick - 1)], fill=CAPTION_INK)
        w = draw.textlength(label, font=font)
        left = min(max(x - w / 2, pad), width - pad - w)  # the end labels stay inside
        draw.text((left, scale_h + tick), label, fill=CAPTION_INK, font=font)
    for k, line in enumerate(notes):
        draw.text((pad, notes_top + step * k), line, fill=CAPTION_NOTE_INK, font=font)
    out = np.asarray(canvas).copy()
    out.flags.writeable = False  # shared by every call: nobody draws on it
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
