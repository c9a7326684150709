"""Robustness benchmark: a run's test split under MRI-realistic shifts (shift validation, never
a clean test). Each shift is a pure function `(img, level, rng) -> img` on a decoded H×W×3 uint8
image, applied BEFORE the model's own preparation (`Predictor.prepare`), as another scanner or
export would have made the file; shape, dtype and grayness are kept. An image gets the same random
draws at all three severities (`apply_shift`), so the severities differ only in strength.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from pipeline import artifacts, images, run_files
from pipeline.evaluate.external import EvaluationError
from pipeline.evaluate.metrics import tumor_vs_no_tumor
from pipeline.evaluate.run import _test_split_target
from pipeline.names import Progress, display_name, no_progress

SEVERITIES = ("mild", "moderate", "severe")
CHUNK = 48  # test images decoded at a time: memory stays bounded on any split size
TARGET_DROP = 0.05  # the target (reported, not tuned to): middle severity within 5 points
TARGET_RULE = f"accuracy at the {SEVERITIES[1]} severity within {TARGET_DROP:.2f} of clean"


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def bias_field(img: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field exp(level·f), f a bicubic 4×4 random surface in [-1, 1]."""
    h, w = img.shape[:2]
    f = cv2.resize(rng.standard_normal((4, 4)), (w, h), interpolation=cv2.INTER_CUBIC)
    f /= max(float(np.abs(f).max()), 1e-6)
    return _to_uint8(img * np.exp(level * f)[:, :, None])


def gamma(img: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Gamma (contrast) change by the exponent `level` or 1/`level` (darker or brighter)."""
    g = level if rng.random() < 0.5 else 1.0 / level
    return _to_uint8(255.0 * (img / 255.0) ** g)


def rician_noise(img: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Rician noise, |x + n1 + i·n2| with n1, n2 ~ N(0, σ), σ = `level` × 255 (magnitude MRI)."""
    s = level * 255.0
    n1, n2 = rng.standard_normal((2, *img.shape[:2], 1))  # same on every channel: gray stays gray
    return _to_uint8(np.sqrt((img + s * n1) ** 2 + (s * n2) ** 2))


def blur(img: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur with σ = `level` × the longer side (thicker slices, smoothing filters)."""
    return cv2.GaussianBlur(img, (0, 0), sigmaX=level * max(img.shape[:2]))


def low_resolution(img: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Acquired at `level` × the resolution (area-averaged), then upsampled back (bilinear)."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w * level)), max(1, round(h * level))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def jpeg(img: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Re-exported as JPEG at quality `level`."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[:, :, ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, int(level)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])


def rotate_flip(img: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Left-right flip with probability 1/2 (display convention), rotated by ±`level` degrees."""
    flip, sign = rng.random() < 0.5, 1.0 if rng.random() < 0.5 else -1.0
    h, w = img.shape[:2]
    src = np.ascontiguousarray(img[:, ::-1]) if flip else img
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), sign * level, 1.0)
    return cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def crop_pad(img: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Other field of view: each edge moves in (crop) or out (black pad) by ≤ `level` × side,
    then the frame is resampled to the original shape (a slight stretch, as other pixel sizes)."""
    h, w = img.shape[:2]
    d = np.round(rng.uniform(-1.0, 1.0, 4) * level * np.array([h, h, w, w])).astype(int)
    pad, cut = np.maximum(-d, 0), np.maximum(d, 0)
    out = cv2.copyMakeBorder(img, *map(int, pad), cv2.BORDER_CONSTANT, value=(0, 0, 0))
    out = out[cut[0]:out.shape[0] - cut[1], cut[2]:out.shape[1] - cut[3]]
    return cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA)


_LABELS = ("L", "R", "A", "P", "+", "1.5T", "3T", "ID 40{}7{}", "SE {} IM 1{}", "TR 4{}00 TE {}0",
           "2019-0{}-1{}", "FOV 2{}0mm", "W {}00 L {}0")


def burnt_in_text(img: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Burnt-in annotations (two lines of scanner text or markers) in `level` of the 4 corners."""
    h, w = img.shape[:2]
    out, font, pad = np.ascontiguousarray(img.copy()), cv2.FONT_HERSHEY_SIMPLEX, int(0.02 * h)
    scale = 0.045 * h / 22.0  # HERSHEY_SIMPLEX is ~22 px tall at scale 1
    thick, shade = max(1, round(scale * 1.5)), int(rng.integers(200, 256))
    corners = rng.permutation(4)  # drawn whatever the level: corners nest across severities
    texts = [[_LABELS[k].format(*rng.integers(1, 10, 2)) for k in rng.integers(0, len(_LABELS), 2)]
             for _ in range(4)]
    for c in corners[:int(level)]:  # 0, 1: top left, right; 2, 3: bottom left, right
        for line, text in enumerate(texts[c]):
            (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
            x = pad if c % 2 == 0 else w - tw - pad
            y = pad + th + line * th * 8 // 5 if c < 2 else h - pad - line * th * 8 // 5
            cv2.putText(out, text, (x, y), font, scale, (shade,) * 3, thick, cv2.LINE_AA)
    return out


class Shift(NamedTuple):
    """One shift: its function, its three severity levels and what the level means."""

    fn: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
    levels: tuple[float, float, float]
    parameter: str
    description: str


SHIFTS: dict[str, Shift] = {
    "bias_field": Shift(bias_field, (0.1, 0.25, 0.4), "log-amplitude of the field",
                        "smooth multiplicative intensity bias field (coil inhomogeneity)"),
    "gamma": Shift(gamma, (1.2, 1.5, 2.0), "gamma exponent (or its inverse)",
                   "gamma/contrast change (other window or export curve)"),
    "rician_noise": Shift(rician_noise, (0.02, 0.05, 0.1), "noise σ / 255",
                          "Rician noise of a magnitude image (lower SNR)"),
    "blur": Shift(blur, (0.002, 0.004, 0.008), "Gaussian σ / longer side",
                  "Gaussian blur (thicker slices, smoothing)"),
    "low_resolution": Shift(low_resolution, (0.5, 1 / 3, 0.25), "resolution factor",
                            "lower acquisition resolution, upsampled back"),
    "jpeg": Shift(jpeg, (50, 25, 10), "JPEG quality", "JPEG re-export at lower quality"),
    "rotate_flip": Shift(rotate_flip, (5, 10, 20), "rotation in degrees",
                         "left-right flip (p = 1/2) and rotation"),
    "crop_pad": Shift(crop_pad, (0.05, 0.1, 0.2), "max edge shift / side",
                      "different crop or black padding (field of view)"),
    "burnt_in_text": Shift(burnt_in_text, (1, 2, 4), "corners with text",
                           "burnt-in text or markers in the corners"),
}


def apply_shift(img: np.ndarray, name: str, severity: int, seed: int, key: int) -> np.ndarray:
    """Shift `name` at severity index 0-2 on image number `key`, seeded by (seed, name, key)."""
    shift = SHIFTS[name]
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), key])
    return shift.fn(img, float(shift.levels[severity]), rng)


def _scores(y: np.ndarray, probs: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Accuracy and tumour sensitivity (any tumour class called any tumour class)."""
    tvn = tumor_vs_no_tumor(y, probs, class_names)
    return {"accuracy": float(np.mean(probs.argmax(axis=1) == y)),
            "tumor_sensitivity": tvn["sensitivity"] if tvn else None}


def _model_summary(model: str, y: np.ndarray, probs: dict, class_names: list[str]
                   ) -> dict[str, Any]:
    """Clean scores and, per shift and severity, the scores and their drop from clean."""
    clean = _scores(y, np.concatenate(probs["clean"]), class_names)
    shifts: dict[str, list] = {name: [] for name in SHIFTS}
    for name, k in (c for c in probs if c != "clean"):
        s = _scores(y, np.concatenate(probs[(name, k)]), class_names)
        shifts[name].append({"severity": SEVERITIES[k], "level": SHIFTS[name].levels[k], **s, **{
            f"{m}_drop": None if clean[m] is None or s[m] is None else clean[m] - s[m]
            for m in clean}})
    return {"display_name": display_name(model), "clean": clean, "shifts": shifts}


def _predict_conditions(predictor: Any, records: list, keys: list[int], seed: int,
                        progress: Progress) -> tuple[np.ndarray, dict, list[str]]:
    """(labels, {model: {condition: [probs per chunk]}}, unreadable files); CHUNK images are
    decoded at a time, once each, and go through every condition."""
    conditions = ["clean", *[(n, k) for n in SHIFTS for k in range(len(SEVERITIES))]]
    probs: dict = {m: {c: [] for c in conditions} for m in predictor.models}
    y, failed, desc = [], [], "robustness: test images × conditions"
    total = len(keys) * len(conditions)
    progress(desc, 0, total)
    for start in range(0, len(keys), CHUNK):
        batch = []
        chunk = keys[start:start + CHUNK]
        for key in chunk:
            try:
                batch.append((key, images.read_image(records[key].path)))
                y.append(predictor.class_names.index(records[key].label))
            except images.ImageError:
                failed.append(records[key].rel)
        for i, cond in enumerate(conditions if batch else []):
            imgs = [im if cond == "clean" else apply_shift(im, *cond, seed, key)
                    for key, im in batch]
            for m in predictor.models:
                x = np.stack([predictor.prepare(m, im) for im in imgs])
                probs[m][cond].append(predictor.predict_arrays(m, x))
            progress(desc, start * len(conditions) + (i + 1) * len(chunk), total)
    return np.asarray(y, dtype=np.int64), probs, failed


def _together_summary(run: Any, y: np.ndarray, probs: dict) -> dict[str, Any] | None:
    """The models' pooled answer (`evaluate.together`, with the run's pool temperature) scored
    as a model is, per condition; None for one model."""
    from pipeline.evaluate import together

    if len(probs) < 2:
        return None
    t = together.read_temperature(run.path)
    pooled = {c: [together.combine({m: np.concatenate(p[c]) for m, p in probs.items()}, t)]
              for c in next(iter(probs.values()))}
    return {**_model_summary(together.KEY, y, pooled, run.class_names),
            "display_name": together.LABEL, "models": list(probs), "temperature": t}


def stratified_keys(labels: list[str], n: int, seed: int) -> list[int]:
    """`n` of the indices of `labels`, seeded, as evenly over the labels as they allow (each
    label's own order shuffled, then one of each in turn), sorted. A plain random subset of 8
    held no no-tumour image, so its "unshifted" tumour figures were all there was (a review)."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for k, label in enumerate(labels):
        by_label.setdefault(label, []).append(k)
    queues = [list(rng.permutation(v)) for _, v in sorted(by_label.items())]
    picked: list[int] = []
    while len(picked) < min(n, len(labels)):
        for q in queues:
            if q and len(picked) < n:
                picked.append(int(q.pop(0)))
    return sorted(picked)


def robustness_run(run_dir: str | Path, progress: Progress | None = None,
                   max_images: int | None = None, seed: int = 0,
                   data_root: str | Path | None = None) -> dict[str, Any]:
    """Predict the run's test split clean and under every shift × severity with every model;
    write `<run>/robustness.json` (docs/architecture.md) and return its content.

    `max_images` takes a seeded subset spread over the classes (`stratified_keys`; the same
    images for every condition);
    `data_root` is where the run's dataset is now, if it moved.
    """
    from pipeline.predict import Predictor  # Keras only once a model is loaded

    started = time.monotonic()
    if max_images is not None and max_images < 1:
        raise EvaluationError(f"max_images must be at least 1, got {max_images}")
    try:
        run = artifacts.open_run(run_dir)
        artifacts.ensure_writable(run.path, "run folder")
    except artifacts.ArtifactError as exc:
        raise EvaluationError(str(exc)) from exc
    target = _test_split_target(run, data_root)
    keys = list(range(len(target.records)))  # an image's number in the split seeds its shifts
    if max_images is not None and max_images < len(keys):
        keys = stratified_keys([r.label for r in target.records], max_images, seed)
    predictor = Predictor(run)
    y, probs, failed = _predict_conditions(predictor, target.records, keys, seed,
                                           progress or no_progress)
    if not len(y):
        raise EvaluationError(f"none of the {len(keys)} test images could be read")
    models = {m: _model_summary(m, y, probs[m], run.class_names) for m in run.model_names}
    pooled = _together_summary(run, y, probs)
    result = {
        "schema_version": 1, "run_id": run.run_id, "created": artifacts.utc_now(),
        "note": "shift validation: shifted copies of the test split; robustness, not a clean test",
        "split": "test", "data_dir": target.source["data_dir"], "seed": seed,
        "max_images": max_images, "n_test": len(target.records), "n_images": len(y),
        "n_unreadable": len(failed), "unreadable": failed[:20], "class_names": run.class_names,
        "severities": list(SEVERITIES),
        "shifts": {n: {"levels": list(s.levels), "parameter": s.parameter, "description":
                       s.description, "function": s.fn.__name__} for n, s in SHIFTS.items()},
        "models": models,
        "target": {"rule": TARGET_RULE, "met": {m: {
            n: round(rows[1]["accuracy_drop"], 9) <= TARGET_DROP for n, rows in v["shifts"].items()}
            for m, v in models.items()}},
        "seconds": round(time.monotonic() - started, 1),
        **({} if pooled is None else {"together": pooled}),
    }
    artifacts.write_json_atomic(run.path / run_files.ROBUSTNESS, result, allow_nan=False)
    return result
