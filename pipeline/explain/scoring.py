"""Explanation quality of one model on prepared images: every metric of `metrics.py`, per image
and aggregated (the keys and rows of explanations.json).

`explain_model` explains each image with the model and with a weight-randomised copy (sanity),
then scores each heatmap for localisation (tumour mask), faithfulness (deletion / insertion
against a random heatmap; ROAD MoRF / LeRF) and the shortcut alarm (heat outside the head).
Images passed as `more` (chunks of further images with a mask) are only explained and scored
for localisation and the shortcut alarm: a heatmap costs milliseconds, faithfulness a few
hundred model calls, and a few dozen boxes leave the pointing game uncertain by +-0.15. It
takes arrays only: which images, for which class, and where the file goes is `quality.py`'s job
(explain-eval).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import keras
import numpy as np

from pipeline import geometry
from pipeline.explain.explainer import Explainer
from pipeline.explain.methods import get_method
from pipeline.explain.metrics import (
    OUTSIDE_HEAD_ALARM,
    ROAD_FRACTIONS,
    SHORTCUT_TOP,
    deletion_insertion,
    energy_in_mask,
    energy_outside_head,
    head_centre_hit,
    is_empty,
    outside_head_flag,
    pointing_game,
    random_heatmap,
    randomize_model,
    road,
    spearman,
    top_in_mask,
    top_outside_head,
)
from pipeline.explain.render import heatmap_stats
from pipeline.intervals import share_interval
from pipeline.names import DELETION_STEPS, Progress

# one chunk of `more` images: (images (k, S, S, 3), targets (k,), masks (k x (S, S) or None),
# head masks (k x (S, S)))
Chunk = tuple[np.ndarray, np.ndarray, Sequence[np.ndarray | None], Sequence[np.ndarray]]


def _nanmean(values: Sequence[float | None]) -> float | None:
    arr = np.array([v for v in values if v is not None], dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else None


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def explain_model(
    model: keras.Model,
    images_: np.ndarray,
    targets: np.ndarray,
    masks: Sequence[np.ndarray | None],
    method: str = "gradcam",
    layer: str | None = None,
    steps: int = DELETION_STEPS,
    baseline: str = "blur",
    seed: int = 0,
    batch: int = 16,
    progress: Progress | None = None,
    label: str = "explain-eval",
    head_masks: Sequence[np.ndarray] | None = None,
    road_fractions: Sequence[float] = ROAD_FRACTIONS,
    more: Iterable[Chunk] = (),
    n_more: int = 0,
) -> dict[str, Any]:
    """All explanation-quality metrics of one model on prepared images (N, S, S, 3).

    `targets`: the class explained per image; `masks`: (S, S) bool tumour masks or None (no mask
    known or no tumour); `head_masks`: (S, S) bool head regions in the same frame for the
    shortcut alarm (default: found on the prepared images themselves). `more`: further
    (images, targets, masks, head masks) chunks (about `n_more` images in all, for progress),
    scored for localisation and the shortcut alarm only (their rows' faithfulness and sanity
    are None, `faithfulness_scored` False). Returns the aggregate keys of explanations.json
    plus per-image `rows` (without paths), the images first, then `more`'s in order; `n`
    counts every row, `n_faithfulness` the images.
    """
    n = len(images_)
    if n == 0:
        raise ValueError("no images to evaluate")
    if head_masks is None:
        head_masks = [geometry.head_mask(np.asarray(im)) for im in images_]
    explainer = Explainer(model, layer)
    random_explainer = Explainer(randomize_model(model, seed), explainer.layer)
    done = 0

    def tick(k: int) -> None:
        nonlocal done
        done += k
        if progress:  # explain + random-model explain + metrics per image; one step per `more`
            progress(label, done, 3 * n + n_more)

    tick(0)
    heatmaps, prob, rheat = _explain_batches(explainer, random_explainer, images_, targets,
                                             method, batch, tick)

    rows: list[dict[str, Any]] = []
    curves: list[tuple[np.ndarray, ...]] = []
    for i in range(n):
        row, curve = _image_row(explainer.predict, images_[i], heatmaps[i], rheat[i], prob[i],
                                int(targets[i]), masks[i], steps, baseline, seed * 7919 + i,
                                head_masks[i], tuple(road_fractions))
        rows.append(row)
        curves.append(curve)
        tick(1)
    for xb, tb, mb, hb in more:
        rows.extend(_localisation_rows(explainer, xb, tb, mb, hb, method, batch))
        tick(len(xb))
    if progress and done != 3 * n + n_more:  # `n_more` was an estimate: the bar ends full
        progress(label, done, done)  # (it stopped at 141/156 when fewer masks were usable)
    del_curves, ins_curves, del_rand, ins_rand, morf, lerf = zip(*curves, strict=True)
    return {
        "method": method,
        "layer": explainer.layer if get_method(method).needs_layer else None,
        "n": len(rows),
        "n_faithfulness": n,
        **_summary(rows),
        "curve_fractions": np.linspace(0.0, 1.0, steps + 1).tolist(),
        "deletion_curve": np.mean(del_curves, axis=0).tolist(),
        "insertion_curve": np.mean(ins_curves, axis=0).tolist(),
        "deletion_curve_random": np.mean(del_rand, axis=0).tolist(),
        "insertion_curve_random": np.mean(ins_rand, axis=0).tolist(),
        "road_fractions": [0.0, *map(float, road_fractions)],
        "road_morf_curve": np.mean(morf, axis=0).tolist(),
        "road_lerf_curve": np.mean(lerf, axis=0).tolist(),
        "road_imputation": "noisy linear (Rong et al. 2022), exact sparse solve",
        "baseline": baseline,
        "steps": steps,
        "rows": rows,
    }


def _explain_batches(
    explainer: Explainer, random_explainer: Explainer, images_: np.ndarray, targets: np.ndarray,
    method: str, batch: int, tick: Callable[[int], None],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(heatmaps, probs) of the model and the heatmaps of its randomised copy, `batch` images
    at a time; `tick(k)` after each batch with k = 2 explanations per image."""
    heat, probs, rand_heat = [], [], []
    for i in range(0, len(images_), batch):
        xb, tb = images_[i : i + batch], [int(t) for t in targets[i : i + batch]]
        ex = explainer(xb, method=method, target=tb)
        heat.append(ex.heatmaps)
        probs.append(ex.probs)
        rand_heat.append(random_explainer(xb, method=method, target=tb).heatmaps)
        tick(2 * len(xb))
    return np.concatenate(heat), np.concatenate(probs), np.concatenate(rand_heat)


def _image_row(
    predict: Callable[[np.ndarray], np.ndarray], image: np.ndarray, heatmap: np.ndarray,
    random_model_heatmap: np.ndarray,
    probs: np.ndarray, target: int, mask: np.ndarray | None, steps: int, baseline: str,
    noise_seed: int, head_mask: np.ndarray, road_fractions: tuple[float, ...] = ROAD_FRACTIONS,
) -> tuple[dict[str, Any], tuple[np.ndarray, ...]]:
    """One image's row of explanations.json, and its (deletion, insertion, deletion_random,
    insertion_random, ROAD MoRF, ROAD LeRF) curves; "random" = a smooth random heatmap seeded
    with `noise_seed`."""
    d, ins, dauc, iauc = deletion_insertion(predict, image, heatmap, target, steps, baseline)
    rd = road(predict, image, heatmap, target, road_fractions, seed=noise_seed)
    noise = random_heatmap(heatmap.shape, seed=noise_seed)
    dr, ir, dauc_r, iauc_r = deletion_insertion(predict, image, noise, target, steps, baseline)
    row = _located_row(heatmap, probs, target, mask, head_mask) | {
        "deletion_auc": dauc,
        "insertion_auc": iauc,
        "deletion_auc_random": dauc_r,
        "insertion_auc_random": iauc_r,
        "road_morf_auc": rd["morf_auc"],
        "road_lerf_auc": rd["lerf_auc"],
        "sanity_rank_correlation": _finite(spearman(heatmap, random_model_heatmap)),
        "faithfulness_scored": True,
    }
    return row, (d, ins, dr, ir, np.array(rd["morf_curve"]), np.array(rd["lerf_curve"]))


# the keys only fully scored images have values for (`more` images: None)
FAITHFULNESS_KEYS = ("deletion_auc", "insertion_auc", "deletion_auc_random",
                     "insertion_auc_random", "road_morf_auc", "road_lerf_auc",
                     "sanity_rank_correlation")


def _localisation_rows(explainer: Explainer, images_: np.ndarray, targets: np.ndarray,
                       masks: Sequence[np.ndarray | None], head_masks: Sequence[np.ndarray],
                       method: str, batch: int) -> list[dict[str, Any]]:
    """Rows of images scored for localisation and the shortcut alarm only."""
    rows = []
    for i in range(0, len(images_), batch):
        tb = [int(t) for t in targets[i : i + batch]]
        ex = explainer(images_[i : i + batch], method=method, target=tb)
        for j, (heat, probs) in enumerate(zip(ex.heatmaps, ex.probs, strict=True)):
            rows.append(_located_row(heat, probs, tb[j], masks[i + j], head_masks[i + j])
                        | dict.fromkeys(FAITHFULNESS_KEYS) | {"faithfulness_scored": False})
    return rows


def _located_row(heatmap: np.ndarray, probs: np.ndarray, target: int, mask: np.ndarray | None,
                 head_mask: np.ndarray) -> dict[str, Any]:
    """The answer, localisation and shortcut-alarm keys of an image's row."""
    has_mask = mask is not None and bool(np.any(mask))
    empty = is_empty(heatmap)
    outside = _finite(energy_outside_head(heatmap, head_mask))
    top_out = _finite(top_outside_head(heatmap, head_mask))
    return {
        "target": target,
        "predicted": int(np.argmax(probs)),
        "p_target": float(probs[target]),
        "correct": bool(int(np.argmax(probs)) == target),
        "pointing_hit": pointing_game(heatmap, mask) if has_mask else None,
        # the baseline of a map always peaking at the head's centre (the chance bar's stronger
        # twin): the box's area share undersells how often the middle of the head is tumour
        "centre_hit": head_centre_hit(head_mask, mask) if has_mask else None,
        # an empty map puts no evidence in the box: 0, not "undefined", so that a model whose
        # maps are mostly empty cannot score on the few that are not
        "energy_in_mask": (0.0 if empty else _finite(energy_in_mask(heatmap, mask)))
        if has_mask else None,
        # the hottest mask-sized region's share in the mask: energy_in_mask's rank-only twin
        "top_in_mask": (0.0 if empty else _finite(top_in_mask(heatmap, mask)))
        if has_mask else None,
        "mask_fraction": float(np.mean(mask)) if has_mask else None,
        "energy_outside_head": outside,
        "top_outside_head": top_out,
        "outside_head_flag": outside_head_flag(top_out),
        "peak": heatmap_stats(heatmap)["peak"],
        "empty_heatmap": empty,
    }


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The aggregate keys of explanations.json, from the per-image rows (order kept stable):
    localisation, accuracy and the shortcut alarm over every row, faithfulness and sanity over
    the fully scored ones."""
    loc = [r for r in rows if r["pointing_hit"] is not None]
    loc_correct = [r for r in loc if r["correct"]]
    sanity = [r["sanity_rank_correlation"] for r in rows]
    return {
        "n_localisation": len(loc),
        "pointing_game": _nanmean([float(r["pointing_hit"]) for r in loc]),
        # Wilson 95 % interval: a few dozen boxed images leave the share uncertain by +-0.15
        "pointing_game_ci": share_interval(sum(bool(r["pointing_hit"]) for r in loc), len(loc)),
        "pointing_game_correct": _nanmean([float(r["pointing_hit"]) for r in loc_correct]),
        "n_localisation_correct": len(loc_correct),
        "pointing_game_chance": _nanmean([r["mask_fraction"] for r in loc]),
        "pointing_game_centre": _nanmean([float(r["centre_hit"]) for r in loc]),
        "energy_in_mask": _nanmean([r["energy_in_mask"] for r in loc]),
        "energy_in_mask_chance": _nanmean([r["mask_fraction"] for r in loc]),
        "top_in_mask": _nanmean([r["top_in_mask"] for r in loc]),
        "top_in_mask_chance": _nanmean([r["mask_fraction"] for r in loc]),
        "deletion_auc": _nanmean([r["deletion_auc"] for r in rows]),
        "deletion_auc_random": _nanmean([r["deletion_auc_random"] for r in rows]),
        "insertion_auc": _nanmean([r["insertion_auc"] for r in rows]),
        "insertion_auc_random": _nanmean([r["insertion_auc_random"] for r in rows]),
        # ROAD: MoRF area low and LeRF area high = faithful; the gap summarises both
        "road_morf_auc": _nanmean([r["road_morf_auc"] for r in rows]),
        "road_lerf_auc": _nanmean([r["road_lerf_auc"] for r in rows]),
        "road_lerf_minus_morf": _nanmean([r["road_lerf_auc"] - r["road_morf_auc"]
                                          for r in rows if r["road_morf_auc"] is not None]),
        "sanity_rank_correlation": _nanmean(sanity),
        "sanity_abs_rank_correlation": _nanmean([abs(v) if v is not None else None
                                                 for v in sanity]),
        "accuracy": _nanmean([float(r["correct"]) for r in rows]),
        "n_empty_heatmaps": sum(bool(r.get("empty_heatmap")) for r in rows),
        # shortcut alarm: share of images whose heatmap is mostly outside the head
        "energy_outside_head": _nanmean([r["energy_outside_head"] for r in rows]),
        "top_outside_head": _nanmean([r["top_outside_head"] for r in rows]),
        "n_outside_head_flagged": sum(bool(r["outside_head_flag"]) for r in rows),
        "outside_head_alarm_rate": _nanmean([float(r["outside_head_flag"]) for r in rows]),
        "outside_head_threshold": OUTSIDE_HEAD_ALARM,
        "outside_head_rule": f"more than {OUTSIDE_HEAD_ALARM:.0%} of the heat in the hottest "
                             f"{SHORTCUT_TOP:.0%} of the heatmap outside the head",
    }
