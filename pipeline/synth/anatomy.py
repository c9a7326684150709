"""Head model, tissue contrast and the tumour-free anatomy of one synthetic axial MRI slice.

A head is an egg-shaped ellipse in a frame rotated with it (`Head`); rings of scalp, skull and CSF
surround a parenchyma with grey/white-matter texture, sulci, deep nuclei, ventricles, a midline
fissure and a few vessels (`draw_anatomy`). Tissue intensities come from a T1- or T2-like
`Contrast`. Everything is drawn from the generator passed in, in a fixed order of draws: changing
that order changes every image (see the determinism contract in docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

# ----------------------------------------------------------------------------- small helpers


@lru_cache(maxsize=8)
def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (y, x) as float32, cached: every image of one size shares them."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Smooth random field of `shape` with blobs about `cell` pixels wide, mean 0 and std 1.

    Upsampling a small random grid is far cheaper than filtering full-size white noise and gives
    the same kind of band-limited field. Bicubic up to a third of the cell, then bilinear: the
    linear kinks are a few pixels apart and invisible, and the two steps are ~3x faster than
    one large bicubic zoom. Callers give cells relative to the image size, so a 128 px and a
    256 px phantom look alike.
    """
    h, w = shape
    cell = max(float(cell), 1.5)
    small = rng.standard_normal((math.ceil(h / cell) + 1, math.ceil(w / cell) + 1),
                                dtype=np.float32)
    step = int(min(4, max(1, cell // 3)))
    field = cv2.resize(small, (math.ceil(w / step), math.ceil(h / step)),
                       interpolation=cv2.INTER_CUBIC)
    if step > 1:
        field = cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR)
    return (field - field.mean()) / (field.std() + 1e-6)


def ramp(d: np.ndarray, width: float) -> np.ndarray:
    """Soft inside-indicator of a signed distance `d` (pixels, > 0 inside): anti-aliased edges."""
    return np.clip(0.5 + d / max(width, 1e-3), 0.0, 1.0)


def lerp(base: np.ndarray, value: np.ndarray | float, alpha: np.ndarray) -> np.ndarray:
    """Blend `value` over `base` with opacity `alpha` (0 keeps base, 1 gives value)."""
    return base + (value - base) * alpha



# ----------------------------------------------------------------------------- head anatomy


@dataclass
class Head:
    """Geometry of one head, in a frame rotated with the head (u: left-right, v: top-bottom).

    The arrays may cover the whole image or a window of it (see `window`); the scalars always
    describe the whole head.
    """

    u: np.ndarray  # pixels from the head centre along its left-right axis
    v: np.ndarray  # pixels from the head centre along its front-back axis (down = +)
    rho: np.ndarray  # normalised elliptic radius (1 = outer scalp edge)
    cx: float  # head centre in image pixels
    cy: float
    angle: float  # rotation of the head frame (radians)
    a: float  # outer half-width (pixels)
    b: float  # outer half-height (pixels)
    scalp_rho: float  # rho of the scalp's inner edge (outer skull table)
    bone_rho: float  # rho of the skull's inner edge
    brain_rho: float  # rho of the brain surface
    scale: float  # pixels per unit rho, for converting rho distances to pixels

    @property
    def brain_a(self) -> float:
        """Half-width of the brain surface (pixels)."""
        return self.a * self.brain_rho

    @property
    def brain_b(self) -> float:
        """Half-height of the brain surface (pixels)."""
        return self.b * self.brain_rho

    def brain_depth(self) -> np.ndarray:
        """Approximate distance (pixels) inside the brain surface; negative outside."""
        return (self.brain_rho - self.rho) * self.scale

    def window(self, cu: float, cv: float, extent: float) -> tuple[tuple[slice, slice], Head]:
        """The square of half-side `extent` around head point (cu, cv): image slices and a view.

        Tumours are drawn only there; that is most of the speed-up over full-image maths.
        """
        ca, sa = math.cos(self.angle), math.sin(self.angle)
        x = self.cx + cu * ca - cv * sa
        y = self.cy + cu * sa + cv * ca
        h, w = self.u.shape
        y0, y1 = max(0, int(y - extent)), min(h, int(math.ceil(y + extent)) + 1)
        x0, x1 = max(0, int(x - extent)), min(w, int(math.ceil(x + extent)) + 1)
        sl = (slice(y0, y1), slice(x0, x1))
        return sl, dataclasses.replace(self, u=self.u[sl], v=self.v[sl], rho=self.rho[sl])


def make_head(rng: np.random.Generator, size: int) -> Head:
    """Draw one head (centre, size, shape, tilt, scalp/skull/CSF thickness) in a `size` px image.

    Its arrays cover the whole image; `Head.window` gives views of a part of it.
    """
    yy, xx = grid(size)
    s = float(size)
    cx = s / 2 + rng.uniform(-0.04, 0.04) * s
    cy = s / 2 + rng.uniform(-0.04, 0.04) * s
    b = rng.uniform(0.40, 0.46) * s
    a = b * rng.uniform(0.76, 0.90)
    ang = math.radians(rng.uniform(-12, 12))
    dx, dy = xx - cx, yy - cy
    u = dx * math.cos(ang) + dy * math.sin(ang)
    v = -dx * math.sin(ang) + dy * math.cos(ang)
    # Egg shape: one end a little narrower than the other, as a real skull is.
    egg = rng.uniform(-0.10, 0.10)
    a_eff = a * (1.0 + egg * np.clip(v / b, -1.0, 1.0))
    # A faint coarse field keeps the outline from being a perfect ellipse.
    wobble = 1.0 + 0.008 * smooth_noise(rng, (size, size), s / 4)
    rho = np.sqrt((u / a_eff) ** 2 + (v / b) ** 2) * wobble
    scale = (a + b) / 2
    scalp = rng.uniform(0.015, 0.032) * s
    bone = rng.uniform(0.012, 0.030) * s
    csf = rng.uniform(0.004, 0.010) * s
    return Head(u=u, v=v, rho=rho.astype(np.float32), cx=cx, cy=cy, angle=ang, a=a, b=b,
                 scalp_rho=1.0 - scalp / scale, bone_rho=1.0 - (scalp + bone) / scale,
                 brain_rho=1.0 - (scalp + bone + csf) / scale, scale=scale)


@dataclass
class Contrast:
    """Tissue intensities (0..1) for one image: T1-like (dark CSF) or T2-like (bright CSF)."""

    kind: str
    wm: float
    gm: float
    csf: float
    scalp: float
    bone: float

    @property
    def bright(self) -> float:
        """The brighter normal parenchyma (white matter on T1, grey matter on T2)."""
        return max(self.wm, self.gm)

    @property
    def dark(self) -> float:
        """The darker normal parenchyma."""
        return min(self.wm, self.gm)


def make_contrast(rng: np.random.Generator) -> Contrast:
    """Draw tissue intensities: T1-like for 70% of images, T2-like for the rest."""
    if rng.random() < 0.7:
        return Contrast("t1", wm=rng.uniform(0.50, 0.58), gm=rng.uniform(0.39, 0.46),
                         csf=rng.uniform(0.08, 0.16), scalp=rng.uniform(0.75, 0.92),
                         bone=rng.uniform(0.04, 0.10))
    return Contrast("t2", wm=rng.uniform(0.30, 0.38), gm=rng.uniform(0.44, 0.52),
                     csf=rng.uniform(0.80, 0.92), scalp=rng.uniform(0.50, 0.70),
                     bone=rng.uniform(0.03, 0.08))


def draw_anatomy(rng: np.random.Generator, head: Head, c: Contrast, size: int) -> np.ndarray:
    """Head without tumour: scalp, skull, CSF rim, parenchyma, sulci, ventricles, midline."""
    # Each step draws from `rng` in turn: reordering the steps would change every image.
    img = _draw_coverings(rng, head, c, size)
    tissue = _draw_parenchyma(rng, head, c, size)
    _draw_nuclei(rng, head, c, tissue)
    vv, vh = _draw_ventricles(rng, head, c, tissue, size)
    tissue = _draw_fissure(rng, head, c, tissue, size, vv, vh)
    _draw_vessels(rng, head, c, tissue, size)
    return lerp(img, tissue, ramp(head.brain_depth(), 1.2))


def _draw_coverings(rng: np.random.Generator, head: Head, c: Contrast, size: int) -> np.ndarray:
    """Scalp, skull and CSF rim, outside in; the brain is blended over them at the end."""
    rho, px = head.rho, head.scale
    s = float(size)
    full = (size, size)
    img = np.zeros(full, np.float32)
    tex = smooth_noise(rng, full, s / 25)
    img = lerp(img, c.scalp * (1 + 0.06 * tex), ramp((1.0 - rho) * px, 1.2))
    img = lerp(img, c.bone * (1 + 0.3 * np.abs(tex)), ramp((head.scalp_rho - rho) * px, 1.0))
    return lerp(img, c.csf, ramp((head.bone_rho - rho) * px, 1.0))


def _draw_parenchyma(rng: np.random.Generator, head: Head, c: Contrast, size: int) -> np.ndarray:
    """Grey and white matter with sulci, over the whole image (`draw_anatomy` masks it)."""
    px = head.scale
    s = float(size)
    full = (size, size)
    # White matter inside a ribbon of cortex. Noise on the boundary at the scale of a gyrus
    # (about 1/18 of the head) gives the folded look; a coarser field varies its depth.
    rel = head.rho / head.brain_rho
    folds = smooth_noise(rng, full, s / rng.uniform(14, 20))
    coarse = smooth_noise(rng, full, s / 5)
    fine = smooth_noise(rng, full, s / 50)
    wm_edge = rng.uniform(0.83, 0.90) - rel + 0.055 * folds + 0.03 * coarse
    wm_frac = ramp(wm_edge * px, 2.5 * s / 256)
    tissue = c.gm + (c.wm - c.gm) * wm_frac
    tissue = tissue * (1 + rng.uniform(0.015, 0.035) * fine + 0.02 * coarse)
    # Sulci: zero crossings of a smooth field are winding lines; keep them in the cortex ribbon
    # and make them run into the grey matter between white-matter fingers.
    sulcal = smooth_noise(rng, full, s / rng.uniform(16, 24))
    in_cortex = np.clip((rel - 0.70) / 0.12, 0, 1) * (1 - wm_frac)
    sulci = np.exp(-((sulcal / rng.uniform(0.12, 0.22)) ** 2)) * in_cortex
    return lerp(tissue, c.csf, sulci * rng.uniform(0.45, 0.8))


def _draw_nuclei(rng: np.random.Generator, head: Head, c: Contrast, tissue: np.ndarray) -> None:
    """Deep grey nuclei either side of the ventricles, drawn into `tissue` in place."""
    # Structures smaller than the head are drawn in a window around them only: full-image maths
    # for a small blob would waste most of the time of `draw_anatomy`.
    for side in (-1.0, 1.0):
        nu = side * head.brain_a * rng.uniform(0.28, 0.36)
        nv = head.brain_b * rng.uniform(-0.05, 0.12)
        ra = head.brain_a * rng.uniform(0.10, 0.14)
        rb = head.brain_b * rng.uniform(0.14, 0.20)
        sl, w = head.window(nu, nv, 1.1 * max(ra, rb) + 2)
        r = ((w.u - nu) / ra) ** 2 + ((w.v - nv) / rb) ** 2
        tissue[sl] = lerp(tissue[sl], c.gm, ramp((1.0 - r) * 6.0, 2.0) * 0.7)


def _draw_ventricles(rng: np.random.Generator, head: Head, c: Contrast, tissue: np.ndarray,
                     size: int) -> tuple[float, float]:
    """Lateral ventricles, drawn into `tissue` in place: two banana-shaped cavities bowing outwards.

    Their size varies (atrophy). Returns (centre, half-length) along the head's v axis, which
    the midline fissure must avoid.
    """
    vw = head.brain_a * rng.uniform(0.05, 0.12)
    vh = head.brain_b * rng.uniform(0.22, 0.34)
    vgap = head.brain_a * rng.uniform(0.03, 0.07)
    vv = head.brain_b * rng.uniform(-0.15, 0.05)
    bow = rng.uniform(0.4, 1.4)
    # The cavity needs |t| < 1.2 and |u| < vgap + 4.7 vw even with the boundary noise.
    sl, w = head.window(0.0, vv, math.hypot(vgap + 4.8 * vw, 1.25 * vh) + 3)
    vnoise = np.clip(smooth_noise(rng, w.u.shape, float(size) / 20), -3, 3)
    t = (w.v - vv) / vh
    # Narrower towards the back; clipped so the far ends of the frame never divide by ~0.
    taper = vw * np.clip(1.0 - 0.35 * t, 0.3, None)
    centre_u = vgap + vw + bow * vw * t**2
    part = tissue[sl]
    for side in (-1.0, 1.0):
        r = ((side * w.u - centre_u) / taper) ** 2 + t**2
        cavity = ramp((1.0 - r + 0.12 * vnoise) * vw, 1.0)
        part = lerp(part, c.csf, cavity)
        if rng.random() < 0.4:  # choroid plexus: small bright dot in the trigone (all classes)
            r2 = ((side * w.u - centre_u) ** 2 + (w.v - vv - 0.6 * vh) ** 2) / (0.35 * vw) ** 2
            part = lerp(part, c.bright + 0.2, ramp((1.0 - r2) * 2.0, 1.0) * 0.8)
    tissue[sl] = part
    return vv, vh


def _draw_fissure(rng: np.random.Generator, head: Head, c: Contrast, tissue: np.ndarray,
                  size: int, vv: float, vh: float) -> np.ndarray:
    """Interhemispheric fissure: a thin CSF line on the midline, front and back of the ventricles.

    `vv` and `vh` are the ventricles' centre and half-length along v (`_draw_ventricles`).
    """
    s = float(size)
    away = np.clip((np.abs(head.v - vv) - vh * 1.05) / (0.1 * head.brain_b), 0, 1)
    fissure = np.exp(-((head.u / (rng.uniform(0.8, 1.6) * max(1.0, s / 256))) ** 2)) * away
    return lerp(tissue, c.csf, fissure * 0.85)


def _draw_vessels(rng: np.random.Generator, head: Head, c: Contrast, tissue: np.ndarray,
                  size: int) -> None:
    """Small vessels, drawn into `tissue` in place: a few bright dots anywhere in the brain.

    Every class has them, so a bright dot is no evidence of a tumour.
    """
    s = float(size)
    for _ in range(rng.integers(0, 4)):
        pu = rng.uniform(-0.7, 0.7) * head.brain_a
        pv = rng.uniform(-0.7, 0.7) * head.brain_b
        rr = rng.uniform(0.8, 1.8) * max(1.0, s / 256)
        sl, w = head.window(pu, pv, rr + 3)
        d = rr - np.sqrt((w.u - pu) ** 2 + (w.v - pv) ** 2)
        tissue[sl] = lerp(tissue[sl], c.bright + 0.25, ramp(d, 1.0) * 0.7)
