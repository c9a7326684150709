"""What the "unlike the training data" score (`pipeline.ood`) is fitted and measured on.

The run's splits (`split_features`), foreign images made offline (`foreign_images`: noise,
gradients, photos, phantoms) and shifted copies of the test split (`shifted_features`: every
robustness shift of `pipeline.evaluate.robustness` at its middle severity, drawn as
`robustness_run` draws them with its default seed, so they are the same copies whose accuracy
robustness.json reports). A shifted copy is still a brain MRI: its AUROC says how far the score
sees a scanner-like change, not whether it should flag it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.names import Progress, no_progress

if TYPE_CHECKING:
    from pipeline.ood import FeatureExtractor

FOREIGN_MAX = 24  # foreign images per kind: what every real run's splits (hundreds) get
FOREIGN_MIN = 8
SHIFT_SEVERITY = 1  # index into robustness.SEVERITIES: the middle one ("moderate")
SHIFT_SEED = 0  # robustness_run's default seed: the copies robustness.json's accuracies are of


def shift_info() -> dict[str, Any]:
    """ood.json's "shifts": what `shift_auroc` and `shift_flagged` mean and which copies."""
    from pipeline.evaluate.robustness import SEVERITIES, SHIFTS

    severity = SEVERITIES[SHIFT_SEVERITY]
    return {
        "definition": f"shift_auroc: AUROC of the score for telling the test images from copies "
                      f"of them under each robustness shift at its {severity} severity "
                      "(0.5: the score does not see the shift; 1.0: every shifted copy scores "
                      "above every test image); shift_flagged: share of the shifted copies "
                      "above the threshold (test_flagged: the same share of the test images)",
        "severity": severity, "seed": SHIFT_SEED,
        "levels": {n: s.levels[SHIFT_SEVERITY] for n, s in SHIFTS.items()}}


def foreign_count(n_split: int) -> int:
    """Foreign images per kind to set against a split of `n_split` images: as many, rounded up
    to even (two photo sources), within [FOREIGN_MIN, FOREIGN_MAX]. An AUROC is no more precise
    than its smaller side, so a smoke run's 16 test images do not need 24 of each kind; the
    bound saves a fifth of the fit on small runs (tests, the benchmark's latency run)."""
    return int(min(FOREIGN_MAX, max(FOREIGN_MIN, n_split + n_split % 2)))


def foreign_images(n: int = FOREIGN_MAX, size: int = 256, seed: int = 0
                   ) -> dict[str, list[np.ndarray]]:
    """Images no MRI classifier should trust, made offline: noise, gradients, photos, phantoms.

    Photos are scikit-learn's two sample images (a temple, a flower), cut into tiles; phantoms
    are this project's synthetic brains (brain-like, but from a source the models never saw).
    """
    from sklearn.datasets import load_sample_images

    from pipeline.synth import render_phantom

    rng = np.random.default_rng(seed)
    noise = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]
    ramps = []
    for _ in range(n):
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size] / size
        g = (np.cos(angle) * xx + np.sin(angle) * yy)
        g = (255 * (g - g.min()) / max(float(np.ptp(g)), 1e-9)).astype(np.uint8)
        ramps.append(np.repeat(g[:, :, None], 3, axis=2))
    photos = []
    for img in load_sample_images().images:
        h, w = img.shape[:2]
        for _ in range(n // 2):
            y, x = rng.integers(0, h - size), rng.integers(0, w - size)
            photos.append(np.ascontiguousarray(img[y:y + size, x:x + size]))
    labels = ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor")
    phantoms = []
    for i in range(n):
        gray, _ = render_phantom(labels[i % 4], size, np.random.default_rng(seed + i))
        phantoms.append(np.repeat(np.asarray(gray)[:, :, None], 3, axis=2).astype(np.uint8))
    return {"noise": noise, "gradients": ramps, "photos": photos, "phantoms": phantoms}


def split_features(predictor: Any, model: str, records: Sequence[Any],
                   extract: FeatureExtractor, progress: Progress = no_progress,
                   chunk: int = 128) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Features (one array per layer of `extract`), class indices and relative paths of a
    split's readable records, decoded `chunk` at a time."""
    from pipeline import images

    classes = list(predictor.class_names)
    feats: list[list[np.ndarray]] = [[] for _ in extract.layers]
    labels: list[int] = []
    rels: list[str] = []
    for start in range(0, len(records), chunk):
        part = records[start:start + chunk]
        batch, ys, kept = [], [], []
        for r in part:
            try:
                x = predictor.prepare(model, images.read_image(r.path))
                y = classes.index(r.label)
            except (images.ImageError, ValueError):
                continue  # unreadable or unknown-label images are simply not used here
            batch.append(x)
            ys.append(y)
            kept.append(r.rel)
        if batch:
            out = extract(np.stack(batch))
            for k, f in enumerate(out if isinstance(out, list) else [out]):
                feats[k].append(f)
            labels += ys
            rels += kept
        progress(f"{model}: features", min(start + chunk, len(records)), len(records))
    return [np.concatenate(f) for f in feats], np.asarray(labels), rels


def shifted_features(predictor: Any, records: Sequence[Any],
                     extracts: Mapping[str, tuple[FeatureExtractor, int]],
                     progress: Progress = no_progress) -> dict[str, dict[str, np.ndarray]]:
    """Per model and shift, the features (of layer number `i` of that model's `(extract, i)`)
    of the readable test `records` shifted at `SHIFT_SEVERITY`. An image is decoded and shifted
    once for all models; its number in the split seeds its shift, as in `robustness_run`."""
    from pipeline import images
    from pipeline.evaluate.robustness import CHUNK, SHIFTS, apply_shift

    feats: dict[str, dict[str, list[np.ndarray]]] = {
        m: {s: [] for s in SHIFTS} for m in extracts}
    for start in range(0, len(records), CHUNK):
        batch = []
        for key in range(start, min(start + CHUNK, len(records))):
            try:
                batch.append((key, images.read_image(records[key].path)))
            except images.ImageError:
                continue  # as in split_features: the test scores leave it out too
        for name in SHIFTS if batch else ():
            shifted = [apply_shift(im, name, SHIFT_SEVERITY, SHIFT_SEED, key)
                       for key, im in batch]
            for m, (extract, i) in extracts.items():
                out = extract(np.stack([predictor.prepare(m, im) for im in shifted]))
                feats[m][name].append(out[i] if isinstance(out, list) else out)
        progress("OOD: shifted test images", min(start + CHUNK, len(records)), len(records))
    return {m: {s: np.concatenate(f) if f else np.zeros((0, 0)) for s, f in per.items()}
            for m, per in feats.items()}
