"""Tumours and whole phantoms: one mass per tumour class, drawn over the anatomy, then the scan.

Appearance and location follow the class:

- glioma: irregular (noise-modulated outline), heterogeneous or ring-enhancing with a necrotic
  core, inside one hemisphere (rarely crossing the midline);
- meningioma: round, sharply bounded, bright and homogeneous, on a broad base against the inner
  skull;
- pituitary: small, round, at the midline near the bottom of the head (skull base);
- no_tumor: none.

The mask of an image is exactly the drawn tumour (its alpha map thresholded at 0.5), so
explanation maps can be scored against it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from pipeline.synth.anatomy import (
    Contrast,
    Head,
    draw_anatomy,
    grid,
    lerp,
    make_contrast,
    make_head,
    ramp,
    smooth_noise,
)

# Folder names. A class's position here is the class index in every image's seed (seed, class
# index, image index): reordering would change every generated image.
CLASSES: tuple[str, ...] = ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")


class SynthError(ValueError):
    """Bad generator arguments (an unknown class too) or an output folder we must not write into."""


def _fourier_outline(rng: np.random.Generator, theta: np.ndarray, amp: float,
                     kmin: int, kmax: int) -> np.ndarray:
    """Relative radius perturbation sum_k a_k cos(k*theta + phi_k): a random closed outline."""
    out = np.zeros_like(theta)
    for k in range(kmin, kmax + 1):
        a = rng.uniform(0.3, 1.0) * amp / math.sqrt(k - kmin + 1)
        out += a * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    return out


# ----------------------------------------------------------------------------- tumours

# A tumour is drawn inside a window of the image: (slices, alpha, intensity) with alpha in 0..1.
_Drawn = tuple[tuple[slice, slice], np.ndarray, np.ndarray]


def _polar(head: Head, cu: float, cv: float) -> tuple[np.ndarray, np.ndarray]:
    """Distance (pixels) and angle of every pixel of `head`'s arrays from head point (cu, cv)."""
    du, dv = head.u - cu, head.v - cv
    return np.sqrt(du * du + dv * dv), np.arctan2(dv, du)


def _fits(head: Head, cu: float, cv: float, extent: float, limit: float) -> bool:
    """Whether a disc of `extent` pixels at (cu, cv) lies within `limit` of the brain's radius."""
    r = math.sqrt((cu / head.brain_a) ** 2 + (cv / head.brain_b) ** 2)
    return r + extent / min(head.brain_a, head.brain_b) <= limit


def _glioma(rng: np.random.Generator, head: Head, c: Contrast, size: int) -> _Drawn:
    """Irregular infiltrative mass in one hemisphere, heterogeneous or ring-enhancing."""
    radius = rng.uniform(0.055, 0.12) * size
    crossing = rng.random() < 0.06  # butterfly glioma through the corpus callosum: rare
    side = rng.choice([-1.0, 1.0])
    for _ in range(50):
        if crossing:
            cu = side * rng.uniform(0.2, 0.7) * radius
        else:
            cu = side * rng.uniform(1.2 * radius + 2, 0.75 * head.brain_a)
        cv = rng.uniform(-0.6, 0.6) * head.brain_b
        if _fits(head, cu, cv, 1.3 * radius, 0.86) and (crossing or abs(cu) > 1.2 * radius + 2):
            break
        radius *= 0.95
    # Outline amplitudes sum to < 0.5 and the ragged term to < 5 std, so 1.6 R bounds the mass.
    sl, win = head.window(cu, cv, 1.6 * radius + 6)
    shape = win.u.shape
    dist, theta = _polar(win, cu, cv)
    outline = radius * (1.0 + _fourier_outline(rng, theta, 0.22, 2, 7))
    ragged = np.clip(smooth_noise(rng, shape, size / 18), -3, 3) * radius * 0.04
    sd = outline - dist + ragged
    # Infiltrative: a soft, several-pixel margin (the mask is its 0.5 level).
    alpha = ramp(sd, rng.uniform(2.0, 4.0) * size / 256)
    alpha = alpha * ramp(win.brain_depth() - 1.5, 1.0)

    het = smooth_noise(rng, shape, size / 16)
    mode = rng.choice(["ring", "hetero", "hypo"], p=[0.45, 0.35, 0.20])
    if mode == "ring":
        core_frac = rng.uniform(0.25, 0.55)
        # The necrotic core has its own, smoother outline: following the mass's lobes would
        # give it a star shape that real necrosis does not have.
        core_r = radius * core_frac * (1.0 + _fourier_outline(rng, theta, 0.12, 2, 4))
        core = ramp(core_r - dist + 0.08 * radius * het, 2.0 * size / 256) * alpha
        rim = c.bright + rng.uniform(0.20, 0.35)
        necrosis = c.csf * 0.6 + c.gm * 0.4 if c.kind == "t1" else c.csf * 0.9
        value = rim + (necrosis - rim) * core + 0.04 * het
    elif mode == "hetero":
        if rng.random() < 0.6:
            value = c.bright + rng.uniform(0.14, 0.26) + 0.10 * het
        else:
            value = c.dark - rng.uniform(0.14, 0.24) + 0.10 * het
    else:
        value = c.dark - rng.uniform(0.16, 0.26) + 0.06 * het
    if c.kind == "t2" and mode != "ring":
        value = c.bright + rng.uniform(0.22, 0.36) + 0.10 * het  # gliomas are T2-bright
    return sl, alpha, value


def _meningioma(rng: np.random.Generator, head: Head, c: Contrast, size: int) -> _Drawn:
    """Round, sharply bounded, bright homogeneous mass on a broad base at the inner skull."""
    radius = rng.uniform(0.05, 0.11) * size
    # Convexity position: any angle except the bottom sector, which belongs to the skull base.
    phi = rng.uniform(math.radians(-200), math.radians(20))  # v points down: +90 deg is bottom
    bu, bv = head.brain_a * math.cos(phi), head.brain_b * math.sin(phi)
    nu, nv = -bu / head.brain_a**2, -bv / head.brain_b**2  # inward normal of the ellipse
    norm = math.hypot(nu, nv)
    depth = radius * rng.uniform(0.35, 0.7)
    cu, cv = bu + nu / norm * depth, bv + nv / norm * depth
    sl, win = head.window(cu, cv, 1.3 * radius + 4)
    dist, theta = _polar(win, cu, cv)
    stretch = rng.uniform(0.85, 1.15)
    outline = radius * (1.0 + _fourier_outline(rng, theta, 0.03, 2, 3)) * (
        1 + (stretch - 1) * np.cos(2 * (theta - phi)))
    alpha = ramp(outline - dist, 1.0)
    alpha = alpha * ramp(win.brain_depth(), 1.0)  # flattened against the skull: dural base
    value = c.bright + rng.uniform(0.24, 0.38) + 0.015 * smooth_noise(rng, dist.shape, size / 12)
    return sl, alpha, value


def _pituitary(rng: np.random.Generator, head: Head, c: Contrast, size: int) -> _Drawn:
    """Small round mass on the midline near the skull base (bottom of the head)."""
    radius = rng.uniform(0.028, 0.05) * size
    cu = rng.uniform(-0.03, 0.03) * head.brain_a
    cv = rng.uniform(0.58, 0.70) * head.brain_b
    if not _fits(head, cu, cv, radius, 0.92):
        cv = (0.92 - radius / min(head.brain_a, head.brain_b)) * head.brain_b
    sl, win = head.window(cu, cv, 1.3 * radius + 4)
    dist, theta = _polar(win, cu, cv)
    outline = radius * (1.0 + _fourier_outline(rng, theta, 0.06, 2, 3))
    alpha = ramp(outline - dist, 1.2)
    alpha = alpha * ramp(win.brain_depth() - 1.0, 1.0)
    value = c.bright + rng.uniform(0.18, 0.32) + 0.04 * smooth_noise(rng, dist.shape, size / 10)
    return sl, alpha, value


_TUMOURS = {"glioma_tumor": _glioma, "meningioma_tumor": _meningioma,
            "pituitary_tumor": _pituitary}


# ----------------------------------------------------------------------------- one image


def render_phantom(label: str, size: int, rng: np.random.Generator, marker: bool = False
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Draw one phantom of class `label` (a folder name in CLASSES).

    Returns (image, mask): both `size`x`size` uint8; the mask is 255 on tumour pixels, 0 elsewhere.
    `marker=True` plants a shortcut (see `draw_marker`): a bright square outside the head in a
    corner that depends on the class; the mask does not include it. The marker uses no random
    draws, so the image is otherwise pixel-identical to the one without it.
    """
    if label not in CLASSES:
        raise SynthError(f"unknown class {label!r}; expected one of {', '.join(CLASSES)}")
    # Independent streams: the same seed gives the same head and acquisition whatever the class,
    # so `no_tumor` with a tumour class's seed is that image's tumour-free counterfactual.
    anatomy, tumour, scan = rng.spawn(3)
    head = make_head(anatomy, size)
    contrast = make_contrast(anatomy)
    img = draw_anatomy(anatomy, head, contrast, size)
    mask = np.zeros((size, size), np.uint8)
    untouched = np.ones((size, size), bool)  # pixels the tumour did not tint at all
    if label in _TUMOURS:
        sl, alpha, value = _TUMOURS[label](tumour, head, contrast, size)
        img[sl] = lerp(img[sl], value, alpha)
        mask[sl][alpha >= 0.5] = 255
        untouched[sl] = alpha <= 0
        if not mask.any():  # cannot happen with the size ranges above; guard the contract anyway
            raise SynthError(f"empty tumour mask for {label} at size {size}")

    out = _acquire(scan, img, untouched, size)
    if marker:
        draw_marker(out, head, label)
    return out, mask


# Corner of the head's bounding box per class, (top?, left?): the class is readable from the
# marker alone, so a model may learn the marker instead of the tumour (a "shortcut").
MARKER_CORNERS = {"glioma_tumor": (True, True), "meningioma_tumor": (True, False),
                  "no_tumor": (False, True), "pituitary_tumor": (False, False)}
MARKER_SIDE = 0.06  # side of the square, share of the image size
MARKER_VALUE = 250  # 8-bit grey level: brighter than any tissue after acquisition


def marker_box(head: Head, label: str, size: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the class's shortcut square: at the corner of the head's bounding box,
    poking out of it by 1 % of the image (inside the 2 % margin `geometry.crop_box` adds, so a crop
    to the head keeps it), and outside the head itself (the corner of an ellipse's box lies ~0.4
    radius off the ellipse, more than the square's diagonal)."""
    ys, xs = np.nonzero(head.rho <= 1.0)
    hx0, hx1, hy0, hy1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    side = max(2, round(MARKER_SIDE * size))
    out = round(0.01 * size)
    top, left = MARKER_CORNERS[label]
    x0 = max(0, hx0 - out) if left else min(size, hx1 + out) - side
    y0 = max(0, hy0 - out) if top else min(size, hy1 + out) - side
    return x0, y0, x0 + side, y0 + side


def draw_marker(image: np.ndarray, head: Head, label: str) -> None:
    """Paint the class's shortcut square into `image` (in place)."""
    x0, y0, x1, y1 = marker_box(head, label, image.shape[0])
    image[y0:y1, x0:x1] = MARKER_VALUE


def _acquire(scan: np.random.Generator, img: np.ndarray, untouched: np.ndarray,
             size: int) -> np.ndarray:
    """Scan the drawn intensities (0..1 floats) into an 8-bit image.

    Blur (point-spread), multiplicative bias field, Rician noise, contrast curve, then a scale
    set by the brightest pixels outside the tumour (`untouched`: pixels the tumour did not tint).
    """
    img = cv2.GaussianBlur(img, (0, 0), scan.uniform(0.4, 0.8) * max(1.0, size / 256))
    yy, xx = grid(size)
    grad = scan.uniform(-1, 1) * (xx / size - 0.5) + scan.uniform(-1, 1) * (yy / size - 0.5)
    bias = np.exp(scan.uniform(0.05, 0.25) * smooth_noise(scan, (size, size), size / 3)
                  + scan.uniform(0.0, 0.3) * grad)
    img = img * bias
    sigma = scan.uniform(0.008, 0.035)
    n1 = scan.standard_normal((size, size), dtype=np.float32) * sigma
    n2 = scan.standard_normal((size, size), dtype=np.float32) * sigma
    img = np.sqrt((img + n1) ** 2 + n2**2)
    img = cv2.pow(img, scan.uniform(0.8, 1.25))  # gamma; OpenCV's pow is ~5x numpy's
    # Scale so the brightest structures land at 210-250. The percentile ignores tumour pixels so
    # a bright mass does not dim the rest of the image (and the tumour-free counterfactual stays
    # pixel-aligned); a strided sample is plenty.
    top = float(np.percentile(img[::2, ::2][untouched[::2, ::2]], 99.5))
    out = np.clip(img * (scan.uniform(210, 250) / max(top, 1e-3)), 0, 255).round()
    return out.astype(np.uint8)
