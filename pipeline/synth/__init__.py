"""Synthetic axial brain-MRI phantoms: the embedded default dataset, with ground-truth tumour masks.

Each image is drawn from scratch with numpy/OpenCV: a head ellipse with scalp, skull and CSF
rings, a parenchyma with grey/white-matter texture, sulci, ventricles and a midline fissure, then
(for tumour classes) one mass whose appearance and location follow the class:

- glioma: irregular (noise-modulated outline), heterogeneous or ring-enhancing with a necrotic
  core, inside one hemisphere (rarely crossing the midline);
- meningioma: round, sharply bounded, bright and homogeneous, on a broad base against the inner
  skull;
- pituitary: small, round, at the midline near the bottom of the head (skull base);
- no_tumor: none.

Nuisance factors (head size/shape/pose, skull thickness, texture, ventricles, contrast type,
noise, bias field, gamma) are drawn per image independently of the class, so a classifier that
works has to look at the mass. The mask of an image is exactly the drawn tumour (its alpha map
thresholded at 0.5), so explanation maps can be scored against it.

Every image has its own generator seeded by (seed, class, index): the output does not depend on
thread scheduling or on `test_fraction`, and the same seed gives byte-identical PNGs (on one
machine; OpenCV's SIMD resize may differ in the last bit across CPUs).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.names import Progress
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

GENERATOR = "brain-mri-xai synth"
VERSION = "1.0"
CLASSES: tuple[str, ...] = ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")
SPLITS: tuple[str, ...] = ("Training", "Testing")
MIN_SIZE = 64
MAX_SIZE = 2048
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]



class SynthError(ValueError):
    """Bad generator arguments or an output folder we must not write into."""


# ----------------------------------------------------------------------------- small helpers


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


def render_phantom(label: str, size: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Draw one phantom of class `label` (a folder name in CLASSES).

    Returns (image, mask): both `size`x`size` uint8; the mask is 255 on tumour pixels, 0 elsewhere.
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

    # Acquisition: blur (point-spread), multiplicative bias field, Rician noise, contrast curve.
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
    return out.astype(np.uint8), mask


# ----------------------------------------------------------------------------- dataset


def _check_args(per_class: int, size: int, seed: int, test_fraction: float) -> None:
    if int(per_class) != per_class or per_class < 1:
        raise SynthError(f"per_class must be an integer >= 1, got {per_class!r}")
    if int(size) != size or not MIN_SIZE <= size <= MAX_SIZE:
        raise SynthError(f"size must be an integer in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")
    if int(seed) != seed or seed < 0:
        raise SynthError(f"seed must be an integer >= 0, got {seed!r}")
    if not 0.0 <= test_fraction < 1.0:
        raise SynthError(f"test_fraction must be in [0, 1), got {test_fraction!r}")


def _is_synth_output(out: Path) -> bool:
    try:
        meta = json.loads((out / "synth.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("generator") == GENERATOR


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise SynthError(f"output path {out} exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not _is_synth_output(out):
            raise SynthError(f"refusing to write into {out}: the folder is not empty and is not "
                             "a previous synth output (no synth.json from this generator)")
        if not overwrite:
            raise SynthError(f"{out} already holds synthetic phantoms; pass overwrite=True "
                             "(--overwrite) to replace them")
        # Remove only what a previous synth run writes; anything else the user put there stays.
        for name in (*SPLITS, "masks"):
            if (out / name).is_dir():
                shutil.rmtree(out / name)
        for name in ("README.txt", "synth.json"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _n_test(per_class: int, test_fraction: float) -> int:
    n = int(round(per_class * test_fraction))
    if test_fraction > 0 and per_class >= 2:
        n = min(max(n, 1), per_class - 1)  # both splits non-empty whenever that is possible
    return n


def _readme(params: dict[str, Any]) -> str:
    return (
        "SYNTHETIC MRI PHANTOMS - NOT REAL PATIENT DATA\n"
        "\n"
        "Every image in this folder was drawn by a program (pipeline/synth.py of brain-mri-xai).\n"
        "They imitate axial brain MRI slices for teaching, testing and explanation benchmarks;\n"
        "they are not medical images and say nothing about real tumours. Research and teaching\n"
        "only, not for diagnosis.\n"
        "\n"
        f"generator: {params['generator']} version {params['version']}\n"
        f"seed: {params['seed']}   size: {params['size']} px   per class: {params['per_class']}"
        f"   test fraction: {params['test_fraction']}\n"
        "\n"
        "Layout: Training/<class>/ and Testing/<class>/ hold grayscale PNGs; masks/ mirrors that\n"
        "tree with one binary mask per image (255 = tumour pixel, 0 = not; all zero for\n"
        "no_tumor). synth.json lists all parameters. Regenerate with:\n"
        f"  python -m pipeline synth OUT_DIR --per-class {params['per_class']} "
        f"--size {params['size']} --seed {params['seed']} "
        f"--test-fraction {params['test_fraction']}\n"
    )


def generate(out_dir: str | Path, per_class: int, size: int = 256, seed: int = 0,
             test_fraction: float = 0.2, progress: Progress | None = None,
             overwrite: bool = False, workers: int | None = None) -> dict[str, Any]:
    """Write `per_class` phantoms per class (Kaggle-style layout) plus masks, README and params.

    Images of class c go to `Training/c/` or `Testing/c/` (the last round(per_class *
    test_fraction) indices are test); the mask of `X/c/name.png` is `masks/X/c/name.png`.
    Returns a summary: parameters, counts per split and class, and the written paths.
    Raises SynthError on bad arguments or when `out_dir` must not be written into.
    """
    _check_args(per_class, size, seed, test_fraction)
    per_class, size, seed = int(per_class), int(size), int(seed)
    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)

    n_test = _n_test(per_class, test_fraction)
    width = max(4, len(str(per_class - 1)))
    jobs: list[tuple[int, int, Path, Path]] = []
    counts: dict[str, dict[str, int]] = {split: {} for split in SPLITS}
    for ci, label in enumerate(CLASSES):
        for split in SPLITS:
            (out / split / label).mkdir(parents=True, exist_ok=True)
            (out / "masks" / split / label).mkdir(parents=True, exist_ok=True)
            counts[split][label] = 0
        for i in range(per_class):
            split = "Testing" if i >= per_class - n_test else "Training"
            name = f"{label}_{i:0{width}d}.png"
            jobs.append((ci, i, out / split / label / name, out / "masks" / split / label / name))
            counts[split][label] += 1

    params: dict[str, Any] = {
        "generator": GENERATOR, "version": VERSION, "seed": seed, "size": size,
        "per_class": per_class, "test_fraction": test_fraction, "classes": list(CLASSES),
        "image_format": "png, 8-bit grayscale", "mask_format": "png, uint8 0/255",
        "rng": "default_rng((seed, class_index, image_index)).spawn(3): anatomy, tumour, scan",
        "counts": counts, "complete": False,
    }
    # Written first (complete=false) so an interrupted run is still recognised and replaceable.
    (out / "synth.json").write_text(json.dumps(params, indent=2) + "\n")

    def work(job: tuple[int, int, Path, Path]) -> None:
        ci, i, img_path, mask_path = job
        rng = np.random.default_rng((seed, ci, i))
        image, mask = render_phantom(CLASSES[ci], size, rng)
        for path, arr in ((img_path, image), (mask_path, mask)):
            if not cv2.imwrite(str(path), arr, _PNG_PARAMS):
                raise SynthError(f"could not write {path}")

    total = len(jobs)
    if progress:
        progress("synth phantoms", 0, total)
    n_workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        futures = [pool.submit(work, job) for job in jobs]
        for done, fut in enumerate(as_completed(futures), start=1):
            fut.result()
            if progress:
                progress("synth phantoms", done, total)

    params["complete"] = True
    (out / "README.txt").write_text(_readme(params))
    (out / "synth.json").write_text(json.dumps(params, indent=2) + "\n")
    return {
        **{k: params[k] for k in ("generator", "version", "seed", "size", "per_class",
                                  "test_fraction", "classes", "counts")},
        "n_images": total,
        "paths": {"root": str(out), "masks": str(out / "masks"),
                  "readme": str(out / "README.txt"), "params": str(out / "synth.json")},
    }
