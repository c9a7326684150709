"""Explanation quality on plain arrays: localisation (pointing game and its centre-of-head
baseline, energy in mask, hottest mask-sized region in mask),
faithfulness (deletion / insertion against a random map; ROAD with noisy linear imputation) and
the model-randomisation sanity check.

No Explainer here: metrics take heatmaps, masks and a `predict_fn`, so they test on toy arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import keras
import numpy as np
from scipy import stats

# the shortcut alarm's rule lives in `alarm` (no TensorFlow there)
from pipeline.explain.alarm import OUTSIDE_HEAD_ALARM, SHORTCUT_TOP
from pipeline.explain.imputation import NOISE, noisy_linear_impute
from pipeline.explain.masks import mask_like
from pipeline.explain.render import check_heatmap, resize_heatmap
from pipeline.names import DELETION_STEPS

BASELINES = ("blur", "black")
# ROAD's removal shares. The paper steps 10 % to 90 % by 10; every other level halves the cost
# (each level is one sparse solve per order: ~0.05-0.6 s at 224 px for a CAM's blob-shaped
# removals, up to seconds for scattered pixel-saliency removals on 2 busy cores).
ROAD_FRACTIONS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)


def pointing_game(heatmap: np.ndarray, mask: np.ndarray) -> bool:
    """True when the heatmap's maximum lies inside the (non-zero) mask.

    The mask is resized (nearest) to the heatmap when their sizes differ. An empty mask has no
    target to point at and raises ValueError. An empty heatmap (no positive value) has no peak
    and misses: argmax would otherwise "point" at its first pixel.
    """
    hm = check_heatmap(heatmap)
    m = mask_like(mask, hm.shape)
    if not m.any():
        raise ValueError("pointing game needs a non-empty mask")
    if is_empty(hm):
        return False
    return bool(m.flat[int(np.argmax(hm))])


def head_centre_hit(head_mask: np.ndarray, mask: np.ndarray) -> bool:
    """True when the head's centroid lies inside the (non-zero) tumour mask: the pointing game
    of a map whose peak is always at the centre of the head, a baseline stronger than the
    mask's area share (tumours sit inside the head, many near its middle).

    `head_mask` is non-zero on the head; the tumour mask is resized (nearest) to it when their
    sizes differ. An empty head mask (no head found) falls back on the frame's centre. An empty
    tumour mask raises ValueError, as in `pointing_game`.
    """
    head = mask_like(head_mask, np.asarray(head_mask).shape[:2])
    m = mask_like(mask, head.shape)
    if not m.any():
        raise ValueError("the centre baseline needs a non-empty mask")
    ys, xs = np.nonzero(head)
    if ys.size:
        cy, cx = int(round(float(ys.mean()))), int(round(float(xs.mean())))
    else:
        cy, cx = (head.shape[0] - 1) // 2, (head.shape[1] - 1) // 2
    return bool(m[cy, cx])


def is_empty(heatmap: np.ndarray) -> bool:
    """True when the heatmap has no positive evidence anywhere (e.g. Grad-CAM whose every
    location is cut by the ReLU): it explains nothing and points nowhere."""
    return not bool(np.any(np.asarray(heatmap) > 0))


def energy_in_mask(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share of the heatmap's total (non-negative) energy inside the mask, in [0, 1].

    NaN for an all-zero heatmap (no energy to share out).
    """
    inside, outside = _split_energy(heatmap, mask)
    return float("nan") if inside + outside <= 0 else inside / (inside + outside)


def _split_energy(heatmap: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(energy inside `mask`, energy outside it) of the non-negative heatmap. Each share is its
    part over their sum, so it lies in [0, 1] and is exactly 0 with nothing on that side: the
    outside share used to be 1 minus the inside one, from float32 sums taken in different orders,
    and an all-inside map's came out as -1.2e-07 (a review read it in explain.json)."""
    hm = np.clip(check_heatmap(heatmap), 0.0, None).astype(np.float64)
    m = mask_like(mask, hm.shape)
    return float(hm[m].sum()), float(hm[~m].sum())


def top_in_mask(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share of the heatmap's hottest pixels, as many as the mask has, that lie inside the mask
    (zero-valued pixels count as misses), in [0, 1]; a random map scores the mask's area share.

    Unlike `energy_in_mask` it depends only on the pixels' order, so a sharper contrast curve
    (the map squared, say) cannot raise it. NaN for an empty mask or an all-zero heatmap.
    """
    hm = np.clip(check_heatmap(heatmap), 0.0, None).ravel()
    m = mask_like(mask, heatmap.shape).ravel()
    k = int(m.sum())
    if k == 0 or hm.max() <= 0:
        return float("nan")
    top = np.argpartition(-hm, k - 1)[:k]  # the k hottest (ties broken arbitrarily)
    return float((m[top] & (hm[top] > 0)).mean())  # a pixel without evidence is never "hot"


def energy_outside_head(heatmap: np.ndarray, head_mask: np.ndarray) -> float:
    """Share of the heatmap's (non-negative) energy outside the head, in [0, 1].

    `head_mask` is non-zero on the head, in the heatmap's frame (resized nearest when sizes
    differ). NaN for an all-zero heatmap.
    """
    inside, outside = _split_energy(heatmap, head_mask)
    return float("nan") if inside + outside <= 0 else outside / (inside + outside)


def top_outside_head(heatmap: np.ndarray, head_mask: np.ndarray, top: float = SHORTCUT_TOP
                     ) -> float:
    """Share of the heat in the heatmap's hottest `top` share of pixels that lies outside the
    head, in [0, 1] (the shortcut alarm's measure). `head_mask` as in `energy_outside_head`.
    NaN for a flat zero map (no hottest region).

    The region's pixels count by their heat, not one each: a focused map (a sharp peak, the
    rest at or near 0) has a "hottest 10 %" made mostly of pixels with almost no evidence, and
    counting them alike judged the frame's geometry instead of the map. Before 2026-12-05 they
    counted alike, and 32 of 64 of the shipped custom CNN's plain Grad-CAMs per run were flagged,
    most with their peak on the tumour (e.g. the peak at 1.0, the region's edge at 0.0025 of it).
    """
    hm = check_heatmap(heatmap)
    if not 0 < top <= 1:
        raise ValueError(f"top must be in (0, 1], got {top}")
    if hm.max() <= 0:
        return float("nan")
    region = (hm >= np.quantile(hm, 1.0 - top)) & (hm > 0)
    heat = hm[region].astype(np.float64)
    outside = ~mask_like(head_mask, hm.shape)[region]
    return float(heat[outside].sum() / heat.sum())


def outside_head_flag(share: float | None) -> bool:
    """The shortcut alarm for one heatmap: its `top_outside_head` exceeds OUTSIDE_HEAD_ALARM."""
    return share is not None and bool(np.isfinite(share)) and share > OUTSIDE_HEAD_ALARM


def random_heatmap(shape: tuple[int, int], seed: int = 0, cells: int = 7) -> np.ndarray:
    """A smooth random map in [0, 1]: uniform noise on a `cells` x `cells` grid, upsampled.

    Used as the faithfulness baseline: it has blobs like a CAM at the last conv layer, so a real
    heatmap must beat a map of the same coarseness, not just pixel noise.
    """
    rng = np.random.default_rng(seed)
    coarse = rng.random((cells, cells)).astype(np.float32)
    fine = cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    fine += rng.random(shape).astype(np.float32) * 1e-3  # break ties between equal pixels
    lo, hi = float(fine.min()), float(fine.max())
    return (fine - lo) / (hi - lo + 1e-7)


def baseline_image(image: np.ndarray, baseline: str = "blur") -> np.ndarray:
    """What "removed" pixels become: a heavy Gaussian blur of the image, or black."""
    img = np.asarray(image, dtype=np.float32)
    if baseline == "black":
        return np.zeros_like(img)
    if baseline == "blur":
        # sigma = 1/10 of the side: wipes out tumour-sized detail but keeps the head's outline
        sigma = max(img.shape[0], img.shape[1]) / 10.0
        return cv2.GaussianBlur(img, (0, 0), sigma)
    raise ValueError(f"unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}")


def deletion_insertion(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    heatmap: np.ndarray,
    target: int,
    steps: int = DELETION_STEPS,
    baseline: str = "blur",
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Deletion and insertion curves (Petsiuk et al., 2018) for one image.

    Pixels are ranked by the heatmap (resized to the image), most relevant first. Deletion
    replaces the top k/steps share with the baseline and tracks the target probability (lower
    AUC = more faithful); insertion starts from the baseline and puts the top pixels back (higher
    AUC = more faithful). All 2 * (steps + 1) images go through `predict_fn` in one call;
    `predict_fn` maps (N, H, W, 3) 0-255 images to (N, C) probabilities.
    Returns (deletion_curve, insertion_curve, deletion_auc, insertion_auc); curves have
    steps + 1 points at fractions 0, 1/steps, ..., 1.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got shape {img.shape}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    h, w = img.shape[:2]
    base = baseline_image(img, baseline)
    rank = _relevance_rank(heatmap, (h, w))
    counts = np.round(np.linspace(0, h * w, steps + 1)).astype(np.int64)
    top = rank[None, :, :] < counts[:, None, None]  # (steps + 1, H, W)
    top = top[..., None]
    deleted = np.where(top, base[None], img[None])
    inserted = np.where(top, img[None], base[None])
    probs = np.asarray(predict_fn(np.concatenate([deleted, inserted]).astype(np.float32)))
    if probs.ndim != 2 or probs.shape[0] != 2 * (steps + 1):
        raise ValueError(f"predict_fn returned shape {probs.shape}, expected "
                         f"({2 * (steps + 1)}, C)")
    if not 0 <= target < probs.shape[1]:
        raise ValueError(f"target class {target} out of range 0..{probs.shape[1] - 1}")
    curve = probs[:, int(target)].astype(np.float64)
    deletion, insertion = curve[: steps + 1], curve[steps + 1 :]
    dx = 1.0 / steps
    return deletion, insertion, float(np.trapezoid(deletion, dx=dx)), float(
        np.trapezoid(insertion, dx=dx)
    )


def _relevance_rank(heatmap: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(H, W) rank of each pixel by the heatmap resized to `hw`, 0 = most relevant; equal values
    in a fixed random order (raster order would always take the top rows first)."""
    h, w = hw
    hm = resize_heatmap(check_heatmap(heatmap), (h, w))
    tie = np.random.default_rng(0).random(h * w)
    order = np.lexsort((tie, -hm.ravel()))
    rank = np.empty(h * w, dtype=np.int64)
    rank[order] = np.arange(h * w)
    return rank.reshape(h, w)


def road(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    heatmap: np.ndarray,
    target: int,
    fractions: tuple[float, ...] = ROAD_FRACTIONS,
    noise: float = NOISE,
    seed: int = 0,
) -> dict[str, Any]:
    """ROAD, remove and debias (Rong et al., 2022): the target probability after replacing a
    share of pixels by noisy linear imputation (`imputation.noisy_linear_impute`), removing the
    most relevant pixels first (MoRF: a faithful map drops fast, low area) or the least relevant
    first (LeRF: a faithful map keeps the answer, high area).

    Curves start at share 0 (the image itself) and have one point per `fractions` entry (each in
    (0, 1)); areas are trapezoids over [0, max fraction] divided by that range (a mean
    probability, comparable across fraction grids). All images go through `predict_fn` at once.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got shape {img.shape}")
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.size == 0 or np.any((fr <= 0) | (fr >= 1)) or np.any(np.diff(fr) <= 0):
        raise ValueError(f"fractions must increase strictly inside (0, 1), got {fractions}")
    h, w = img.shape[:2]
    rank = _relevance_rank(heatmap, (h, w))
    counts = np.round(fr * h * w).astype(np.int64)
    batch = [img]
    for k, c in enumerate(counts):  # MoRF: the c most relevant pixels go
        batch.append(noisy_linear_impute(img, rank < c, noise, seed + k))
    for k, c in enumerate(counts):  # LeRF: the c least relevant pixels go
        batch.append(noisy_linear_impute(img, rank >= h * w - c, noise, seed + 1000 + k))
    probs = np.asarray(predict_fn(np.stack(batch).astype(np.float32)))
    if probs.ndim != 2 or probs.shape[0] != len(batch):
        raise ValueError(f"predict_fn returned shape {probs.shape}, expected ({len(batch)}, C)")
    if not 0 <= target < probs.shape[1]:
        raise ValueError(f"target class {target} out of range 0..{probs.shape[1] - 1}")
    p = probs[:, int(target)].astype(np.float64)
    x = np.concatenate([[0.0], fr])
    morf = np.concatenate([p[:1], p[1 : 1 + len(fr)]])
    lerf = np.concatenate([p[:1], p[1 + len(fr) :]])
    span = float(x[-1])
    return {"fractions": x.tolist(), "morf_curve": morf.tolist(), "lerf_curve": lerf.tolist(),
            "morf_auc": float(np.trapezoid(morf, x) / span),
            "lerf_auc": float(np.trapezoid(lerf, x) / span)}


def _reseed(obj: Any, seeds: Any) -> Any:
    """Copy of a layer config with a fresh integer seed in every seeded initializer."""
    if isinstance(obj, dict):
        out = {k: _reseed(v, seeds) for k, v in obj.items()}
        if "class_name" in obj and isinstance(obj.get("config"), dict) and "seed" in obj["config"]:
            out["config"] = {**out["config"], "seed": next(seeds)}
        return out
    if isinstance(obj, list):
        return [_reseed(v, seeds) for v in obj]
    return obj


def randomize_model(model: keras.Model, seed: int = 0, top_layers: int | None = None
                    ) -> keras.Model:
    """A copy of `model` with re-initialised weights (model-randomisation sanity check).

    `top_layers=None` randomises every layer (full randomisation); `top_layers=k` randomises the
    k weighted layers nearest the output and keeps the trained weights below (one step of the
    cascading randomisation of Adebayo et al., 2018). Each initializer gets its own seed derived
    from `seed`, so the result is reproducible without touching the global random state.
    """
    seeds = iter(range(seed * 100_003 + 1, seed * 100_003 + 1_000_000))

    def fresh(layer: keras.layers.Layer) -> keras.layers.Layer:
        return layer.__class__.from_config(_reseed(layer.get_config(), seeds))

    clone = keras.models.clone_model(model, clone_function=fresh)
    if top_layers is not None:
        if top_layers < 0:
            raise ValueError(f"top_layers must be >= 0, got {top_layers}")
        weighted = [layer.name for layer in model.layers if layer.weights]
        keep = weighted[: max(0, len(weighted) - top_layers)]
        for name in keep:
            clone.get_layer(name).set_weights(model.get_layer(name).get_weights())
    return clone


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (flattened; resized to `a` if shapes differ).

    NaN when either map is constant (no ranking to compare).
    """
    x = check_heatmap(a)
    y = resize_heatmap(check_heatmap(b), x.shape)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x.ravel(), y.ravel()).statistic)
