"""explain-eval: the measured quality of a run's explanations (`<run>/<model>/explanations.json`).

`explain_model` runs every metric of `metrics.py` for one model on prepared images;
`explain_eval` picks a run's test images and masks, prepares them per model and writes the file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from pipeline import images
from pipeline.artifacts import Run, ensure_writable, open_run, read_json, utc_now, write_json_atomic
from pipeline.explain.explainer import Explainer
from pipeline.explain.layers import conv_layers
from pipeline.explain.masks import find_mask, prepare_mask
from pipeline.explain.methods import get_method
from pipeline.explain.metrics import (
    BASELINES,
    deletion_insertion,
    energy_in_mask,
    pointing_game,
    random_heatmap,
    randomize_model,
    spearman,
)
from pipeline.explain.render import heatmap_stats
from pipeline.names import Progress

# One decoded test image: its splits.json record, the RGB image, its mask (None: no mask file).
Decoded = tuple[dict[str, str], np.ndarray, np.ndarray | None]


def _pick(records: list[dict[str, str]], max_images: int, seed: int) -> list[dict[str, str]]:
    """Up to `max_images` test records, balanced over labels, reproducible for a seed."""
    by_label: dict[str, list[dict[str, str]]] = {}
    for rec in sorted(records, key=lambda r: r["path"]):
        by_label.setdefault(rec["label"], []).append(rec)
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(np.array(v, dtype=object))) for _, v in sorted(by_label.items())]
    out: list[dict[str, str]] = []
    while len(out) < max_images and any(queues):
        for q in queues:
            if q and len(out) < max_images:
                out.append(q.pop(0))
    return out


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
    steps: int = 20,
    baseline: str = "blur",
    seed: int = 0,
    batch: int = 16,
    progress: Progress | None = None,
    label: str = "explain-eval",
) -> dict[str, Any]:
    """All explanation-quality metrics of one model on prepared images (N, S, S, 3).

    `targets`: the class explained per image; `masks`: (S, S) bool tumour masks or None (no mask
    known or no tumour). Returns the aggregate keys of explanations.json plus per-image `rows`
    (without paths).
    """
    n = len(images_)
    if n == 0:
        raise ValueError("no images to evaluate")
    explainer = Explainer(model, layer)
    random_explainer = Explainer(randomize_model(model, seed), explainer.layer)
    done = 0

    def tick(k: int) -> None:
        nonlocal done
        done += k
        if progress:
            progress(label, done, 3 * n)  # explain + random-model explain per image, then metrics

    tick(0)
    heatmaps, prob, rheat = _explain_batches(explainer, random_explainer, images_, targets,
                                             method, batch, tick)

    rows: list[dict[str, Any]] = []
    curves: list[tuple[np.ndarray, ...]] = []
    for i in range(n):
        row, curve = _image_row(explainer.predict, images_[i], heatmaps[i], rheat[i], prob[i],
                                int(targets[i]), masks[i], steps, baseline, seed * 7919 + i)
        rows.append(row)
        curves.append(curve)
        tick(1)
    del_curves, ins_curves, del_rand, ins_rand = zip(*curves, strict=True)
    return {
        "method": method,
        "layer": explainer.layer if get_method(method).needs_layer else None,
        "n": n,
        **_summary(rows),
        "curve_fractions": np.linspace(0.0, 1.0, steps + 1).tolist(),
        "deletion_curve": np.mean(del_curves, axis=0).tolist(),
        "insertion_curve": np.mean(ins_curves, axis=0).tolist(),
        "deletion_curve_random": np.mean(del_rand, axis=0).tolist(),
        "insertion_curve_random": np.mean(ins_rand, axis=0).tolist(),
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
    noise_seed: int,
) -> tuple[dict[str, Any], tuple[np.ndarray, ...]]:
    """One image's row of explanations.json, and its (deletion, insertion, deletion_random,
    insertion_random) curves; "random" = a smooth random heatmap seeded with `noise_seed`."""
    d, ins, dauc, iauc = deletion_insertion(predict, image, heatmap, target, steps, baseline)
    noise = random_heatmap(heatmap.shape, seed=noise_seed)
    dr, ir, dauc_r, iauc_r = deletion_insertion(predict, image, noise, target, steps, baseline)
    has_mask = mask is not None and bool(np.any(mask))
    row = {
        "target": target,
        "predicted": int(np.argmax(probs)),
        "p_target": float(probs[target]),
        "correct": bool(int(np.argmax(probs)) == target),
        "pointing_hit": pointing_game(heatmap, mask) if has_mask else None,
        "energy_in_mask": _finite(energy_in_mask(heatmap, mask)) if has_mask else None,
        "mask_fraction": float(np.mean(mask)) if has_mask else None,
        "deletion_auc": dauc,
        "insertion_auc": iauc,
        "deletion_auc_random": dauc_r,
        "insertion_auc_random": iauc_r,
        "sanity_rank_correlation": _finite(spearman(heatmap, random_model_heatmap)),
        "peak": heatmap_stats(heatmap)["peak"],
    }
    return row, (d, ins, dr, ir)


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The aggregate keys of explanations.json, from the per-image rows (order kept stable)."""
    loc = [r for r in rows if r["pointing_hit"] is not None]
    loc_correct = [r for r in loc if r["correct"]]
    sanity = [r["sanity_rank_correlation"] for r in rows]
    return {
        "n_localisation": len(loc),
        "pointing_game": _nanmean([float(r["pointing_hit"]) for r in loc]),
        "pointing_game_correct": _nanmean([float(r["pointing_hit"]) for r in loc_correct]),
        "n_localisation_correct": len(loc_correct),
        "pointing_game_chance": _nanmean([r["mask_fraction"] for r in loc]),
        "energy_in_mask": _nanmean([r["energy_in_mask"] for r in loc]),
        "energy_in_mask_chance": _nanmean([r["mask_fraction"] for r in loc]),
        "deletion_auc": _nanmean([r["deletion_auc"] for r in rows]),
        "deletion_auc_random": _nanmean([r["deletion_auc_random"] for r in rows]),
        "insertion_auc": _nanmean([r["insertion_auc"] for r in rows]),
        "insertion_auc_random": _nanmean([r["insertion_auc_random"] for r in rows]),
        "sanity_rank_correlation": _nanmean(sanity),
        "sanity_abs_rank_correlation": _nanmean([abs(v) if v is not None else None
                                                 for v in sanity]),
        "accuracy": _nanmean([float(r["correct"]) for r in rows]),
    }


def explain_eval(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    masks_dir: str | Path | None = None,
    method: str = "gradcam",
    max_images: int = 64,
    progress: Progress | None = None,
    models: Sequence[str] | None = None,
    steps: int = 20,
    baseline: str = "blur",
    seed: int = 0,
    layer: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Measure each model's explanations on the run's test split; write
    `<run>/<model>/explanations.json` and return {model: results}.

    Images come from `data_dir` (default: the manifest's data folder) at the test split's
    relative paths; masks from `masks_dir` (default `<data_dir>/masks`) at the same relative
    paths, non-zero = tumour. Each image is explained for its TRUE class (as in the pointing game
    literature); localisation uses the images with a non-empty mask and is null, with a reason,
    when there are none (real data). `layer` overrides the manifest's `gradcam_layer` (it must
    exist in every selected model).
    """
    get_method(method)  # unknown names fail here, before any work
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}")
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    run = open_run(run_dir)
    ensure_writable(run.path, "run folder")
    data, masks_root = _folders(run, data_dir, masks_dir)
    chosen = _pick(_test_records(run), max_images, seed)
    names = list(models) if models else run.model_names
    for name in names:
        run.model_info(name)  # unknown names fail here, before any work
    # Decode each image and mask once; every model prepares them at its own size.
    decoded, failed, n_masks = _decode(chosen, data, masks_root)
    if not decoded:
        raise ValueError(f"none of the {len(chosen)} test images could be read from {data}")

    results: dict[str, dict[str, Any]] = {}
    for name in names:
        t0 = time.perf_counter()
        res = _explain_run_model(run, name, decoded, failed, method, layer, steps, baseline,
                                 seed, progress)
        if res["n_localisation"] == 0:
            reason = (f"no masks found under {masks_root}" if n_masks == 0 else
                      "no test image has a non-empty tumour mask")
            res["localisation_reason"] = reason
        out = {
            "run_id": run.run_id,
            "model": name,
            **{k: v for k, v in res.items() if k != "rows"},
            "target_mode": "true",
            "data_dir": str(data),
            "masks_dir": str(masks_root) if n_masks else None,
            "n_failed": len(failed),
            "failed": failed[:20],
            "seconds": round(time.perf_counter() - t0, 2),
            "created": utc_now(),
            "rows": res["rows"],
        }
        write_json_atomic(run.path / name / "explanations.json", out)
        results[name] = out
    return results


def _folders(run: Run, data_dir: str | Path | None, masks_dir: str | Path | None
             ) -> tuple[Path, Path]:
    """(data folder, masks folder): the given ones or the manifest's data folder and its
    `masks/`; a missing data folder, or a given masks folder that is missing, is an error."""
    data = Path(data_dir) if data_dir is not None else run.data_dir
    if data is None or not data.is_dir():
        raise ValueError(f"data folder {data} not found; pass data_dir (--data)")
    masks_root = Path(masks_dir) if masks_dir is not None else data / "masks"
    if masks_dir is not None and not masks_root.is_dir():
        raise ValueError(f"masks folder {masks_root} does not exist")
    return data, masks_root


def _test_records(run: Run) -> list[dict[str, str]]:
    """The run's test split records whose label is one of its classes."""
    splits = read_json(run.path / "splits.json")
    test = [r for r in splits.get("test", []) if r.get("label") in run.class_names]
    if not test:
        raise ValueError(f"run {run.run_id} has no test images with known labels in splits.json")
    return test


def _decode(chosen: list[dict[str, str]], data: Path, masks_root: Path
            ) -> tuple[list[Decoded], list[dict[str, str]], int]:
    """(decoded images with their masks, failures as {path, error}, number of masks read)."""
    decoded: list[Decoded] = []
    failed: list[dict[str, str]] = []
    n_masks = 0
    for rec in chosen:
        try:
            img = images.read_image(data / rec["path"])
        except (images.ImageError, OSError) as exc:
            failed.append({"path": rec["path"], "error": str(exc)})
            continue
        mask = None
        mpath = find_mask(masks_root, rec["path"]) if masks_root.is_dir() else None
        if mpath is not None:
            try:
                mask = images.read_image(mpath).max(axis=2)
                n_masks += 1
            except (images.ImageError, OSError) as exc:
                failed.append({"path": str(mpath), "error": f"mask: {exc}"})
        decoded.append((rec, img, mask))
    return decoded, failed, n_masks


def _explain_run_model(
    run: Run, name: str, decoded: list[Decoded], failed: list[dict[str, str]], method: str,
    layer: str | None, steps: int, baseline: str, seed: int, progress: Progress | None,
) -> dict[str, Any]:
    """`explain_model` for one of the run's models on the decoded images, prepared at its size;
    rows get their path and label. Masks that cannot be prepared are appended to `failed`."""
    info = run.model_info(name)
    size, crop = int(info["image_size"]), bool(info.get("crop_head", False))
    x = np.stack([images.prepare_image(img, size, crop=crop) for _, img, _ in decoded])
    targets = np.array([run.class_names.index(rec["label"]) for rec, _, _ in decoded])
    masks: list[np.ndarray | None] = []
    for rec, img, mask in decoded:
        if mask is None:
            masks.append(None)
            continue
        try:
            masks.append(prepare_mask(mask, img, size, crop))
        except ValueError as exc:
            failed.append({"path": rec["path"], "error": f"mask: {exc}"})
            masks.append(None)
    model = run.load_model(name)
    use_layer = layer or info.get("gradcam_layer")
    if layer is None and use_layer not in conv_layers(model):
        use_layer = None  # recorded layer missing: fall back to the default rather than fail
    if not get_method(method).needs_layer:
        use_layer = None
    res = explain_model(model, x, targets, masks, method=method, layer=use_layer, steps=steps,
                        baseline=baseline, seed=seed, progress=progress,
                        label=f"explain-eval {name}")
    for row, (rec, _, _) in zip(res["rows"], decoded, strict=True):
        row["path"] = rec["path"]
        row["label"] = rec["label"]
    return res
