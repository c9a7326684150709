"""Each model's default explanation (method and layer), chosen by the pointing game on the run's
VALIDATION images that have a tumour box (never test images), recorded in
`<run>/explain_choice.json` with the table behind it.

`choose_defaults` scores every registered method at each candidate layer (the model's recorded
Grad-CAM layer and the deepest layer of each of the two finer resolutions below it,
`layers.stage_layers`); slow methods only at the recorded layer, to keep the cost bounded.
`default_explanation` is what the CLI's `explain` and the dashboard read: the recorded choice
when the run has one, else Grad-CAM at the manifest's layer. It imports no TensorFlow.

Each model's entry also records the centre-of-head baseline on the same images
(`pointing_game_centre`, as explain-eval's: the pointing game of a map always peaking at the
head's centre, `metrics.head_centre_hit`); it is shown beside the choice, never a candidate.

Each model's entry carries how it was scored (images, folders, seed, rule, time): choosing
again for some models keeps the other models' entries, so no file-level field could describe
them all. Files written before that hold those fields at file level (`recorded_choices` moves
them into the entries it keeps).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import run_files
from pipeline.artifacts import (
    ArtifactError,
    crop_head,
    ensure_writable,
    open_run,
    read_json,
    utc_now,
    write_json_atomic,
)
from pipeline.names import Progress

CHOICE_FILE = run_files.EXPLAIN_CHOICE
# Validation images with a box scored per candidate: the main split's 352 and the official
# run's 345 (all of them). On 48 the pointing game is uncertain by +-0.11 (Wilson 95 %), more
# than most gaps between the candidates; on 350 by +-0.04.
CHOOSE_MAX_IMAGES = 400
# Two candidates' pointing games on the same images differ significantly below this p-value
# (McNemar's exact test): on 350 images, gaps of a few images are noise, and the candidates
# within them differ most in how much of the map lies in the box (energy 0.17 to 0.54 on the
# custom CNN of 2026-12-05 at pointing 0.81-0.85), the second localisation target.
TIE_P = 0.05
FALLBACK_METHOD = "gradcam"
# how the centre-of-head baseline (`pointing_game_centre`) is named where the choice is shown
CENTRE_BASELINE = "baseline, a map always peaking at the head's centre"
RULE = ("highest pointing game on validation images with a box; candidates whose pointing game "
        "is not significantly below the best's (McNemar's exact test on the same images, "
        f"p >= {TIE_P}) count as tied, and of those the highest energy in box wins; then fast "
        "before slow methods, then registry order")


def default_explanation(run_path: str | Path, model: str, manifest_layer: str | None
                        ) -> tuple[str, str | None]:
    """(method, layer) a model is explained with by default: the run's recorded choice
    (`explain_choice.json`) when present and readable, else (Grad-CAM, `manifest_layer`)."""
    from pipeline.explain.methods import METHODS  # the registry: no TensorFlow at import

    path = Path(run_path) / CHOICE_FILE
    if path.is_file():
        try:
            entry = read_json(path)["models"][model]
            if entry["method"] in METHODS:
                return entry["method"], entry["layer"] or manifest_layer
        except (ArtifactError, KeyError, TypeError):
            pass  # a damaged or partial file: today's default, never a crash
    return FALLBACK_METHOD, manifest_layer


# How a choice was scored: per model since explain-choose can score some models and keep the
# others (files of earlier versions: at file level, for every model alike).
SCORING_FIELDS = ("rule", "data_dir", "masks_dir", "max_images", "seed", "created")


def recorded_choices(run_path: str | Path) -> tuple[dict[str, dict[str, Any]], str | None]:
    """The model entries of the run's `explain_choice.json` (each with its `SCORING_FIELDS`,
    copied from the file level of an older file), and why none could be read: (entries, None);
    ({}, None) without a file; ({}, reason) for a file that is damaged or not a choice file,
    which `default_explanation` ignores too, so nothing readable is lost by replacing it."""
    path = Path(run_path) / CHOICE_FILE
    if not path.exists():
        return {}, None
    try:
        data = read_json(path)
    except ArtifactError as exc:
        return {}, str(exc)
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        return {}, f"{CHOICE_FILE} holds no \"models\" table"
    old = {k: data[k] for k in SCORING_FIELDS if k in data}
    # an entry that is not a table is no choice (default_explanation skips it too)
    return {m: {**old, **e} for m, e in models.items() if isinstance(e, dict)}, None


def _val_records(run: Any, masks_root: Path, max_images: int, seed: int
                 ) -> list[dict[str, str]]:
    """Up to `max_images` validation records with a mask file, balanced over labels."""
    from pipeline.explain.masks import find_mask
    from pipeline.explain.quality import _pick

    val = [r for r in read_json(run.path / run_files.SPLITS).get("val", [])
           if r.get("label") in run.class_names and r["label"] != "no_tumor"
           and find_mask(masks_root, r["path"])]  # no tumour, no box to point at
    if not val:
        raise ValueError(f"run {run.run_id}: no validation image has a mask under {masks_root}")
    return _pick(val, max_images, seed)


def _score(ex: Any, layer: str | None, method: str, x: np.ndarray, targets: np.ndarray,
           masks: list[np.ndarray], batch: int = 16) -> dict[str, Any]:
    """Pointing game, energy in box and hottest box-sized region in box (`top_in_mask`) of one
    (method, layer) on prepared images, through the model's one `Explainer` (its compiled
    graphs are reused across the table)."""
    from pipeline.explain.metrics import energy_in_mask, is_empty, pointing_game, top_in_mask

    heat = np.concatenate([ex(x[i : i + batch], method=method, layer=layer,
                              target=[int(t) for t in targets[i : i + batch]]).heatmaps
                           for i in range(0, len(x), batch)])
    hits = [pointing_game(h, m) for h, m in zip(heat, masks, strict=True)]
    # an empty map puts nothing in the box: 0, as explain-eval scores it (`scoring`), not left
    # out of the mean, or a candidate whose maps are mostly empty would win on the few others
    energy = [0.0 if is_empty(h) else energy_in_mask(h, m) for h, m in zip(heat, masks,
                                                                             strict=True)]
    top = [0.0 if is_empty(h) else top_in_mask(h, m) for h, m in zip(heat, masks, strict=True)]
    return {"method": method, "layer": layer, "n": len(x),
            "pointing_game": float(np.mean(hits)),
            "energy_in_mask": float(np.nanmean(energy)) if np.isfinite(energy).any() else None,
            "top_in_mask": float(np.nanmean(top)) if np.isfinite(top).any() else None,
            "hits": hits}


def centre_baseline(decoded: Sequence[tuple[Any, np.ndarray, np.ndarray]], size: int,
                    crop: bool) -> float:
    """The centre-of-head baseline's pointing game on (record, image, box in the model's
    frame) triples: the share whose head centroid, in the model's frame, lies in the box
    (`metrics.head_centre_hit`, explain-eval's `centre_hit`)."""
    from pipeline.explain.masks import head_mask_in_frame
    from pipeline.explain.metrics import head_centre_hit

    hits = [head_centre_hit(head_mask_in_frame(img, size, crop), box)
            for _, img, box in decoded]
    return float(np.mean(hits))


def select(table: list[dict[str, Any]], fast: Sequence[bool]) -> dict[str, Any]:
    """The chosen row of a scored table (rows with `hits`, `pointing_game`, `energy_in_mask`;
    `fast[i]`: row i's method is a fast one), by `RULE`. Each row gains `p_vs_best` and
    `tied_with_best`; `hits` are dropped from the rows (the file keeps the rates)."""
    from pipeline.evaluate.comparison import mcnemar_exact

    order = {id(r): (f, -i) for i, (r, f) in enumerate(zip(table, fast, strict=True))}
    top = max(table, key=lambda r: (r["pointing_game"], r["energy_in_mask"] or 0.0,
                                    *order[id(r)]))
    for r in table:
        r["p_vs_best"] = round(mcnemar_exact(r["hits"], top["hits"])["p_value"], 4)
        r["tied_with_best"] = r is top or (r["pointing_game"] <= top["pointing_game"]
                                           and r["p_vs_best"] >= TIE_P)
    tied = [r for r in table if r["tied_with_best"]]
    best = max(tied, key=lambda r: (r["energy_in_mask"] or 0.0, *order[id(r)]))
    for r in table:
        del r["hits"]
    return best


def choose_defaults(run_dir: str | Path, data_dir: str | Path | None = None,
                    masks_dir: str | Path | None = None, max_images: int = CHOOSE_MAX_IMAGES,
                    models: Sequence[str] | None = None, seed: int = 0,
                    progress: Progress | None = None,
                    say: Callable[[str], None] | None = None,
                    replace: bool = False) -> dict[str, Any]:
    """Score every method x candidate layer per model on validation images with a box, write
    `<run>/explain_choice.json` (atomically) and return it. Models not scored now keep their
    recorded entries; a damaged file is replaced (`say` tells). Masks default to the dataset's
    boxes folder (`masks.boxes_dir`), else `<data>/masks`; paths are recorded relative to the
    project. `replace`: else a model's choice made on more images than `max_images` is
    refused (ValueError), as the CLI refuses it (`pipeline.measured`)."""
    from pipeline import geometry, images
    from pipeline.explain.explainer import Explainer
    from pipeline.explain.layers import default_layer, stage_layers
    from pipeline.explain.masks import (
        BOXES_ENV,
        BOXES_SUFFIX,
        default_masks_dir,
        find_mask,
        prepare_mask,
        read_mask,
    )
    from pipeline.explain.methods import REGISTRY
    from pipeline.explain.quality import _shown_path
    from pipeline.measured import refuse_smaller

    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    run = open_run(run_dir)
    ensure_writable(run.path, "run folder")
    data = run.dataset_root(data_dir)  # ArtifactError naming --run-data when it moved
    masks_root = Path(masks_dir) if masks_dir is not None else default_masks_dir(data)
    if not masks_root.is_dir():  # a given folder as given; the default named by its rule, not
        # by this machine's absolute path (the run's recorded dataset folder)
        if masks_dir is not None:
            raise ValueError(f"masks folder {masks_root} does not exist")
        raise ValueError(f"no tumour masks beside the run's dataset ({data.name}): neither "
                         f"{data.name}{BOXES_SUFFIX}/masks next to it (or ${BOXES_ENV}) nor "
                         f"{data.name}/masks exists; pass the masks folder with --masks DIR")
    names = list(models) if models else run.model_names
    for m in names:
        run.model_info(m)  # unknown names fail before any work
        if not replace:
            refuse_smaller(run.path / CHOICE_FILE, ("n_images",), max_images,
                           f"{m}'s default explanation in {CHOICE_FILE}", within=("models", m))
    recs = _val_records(run, masks_root, max_images, seed)
    decoded = []
    for r in recs:
        try:
            decoded.append((r, images.read_image(data / r["path"]),
                            read_mask(find_mask(masks_root, r["path"]))))
        except (images.ImageError, OSError):
            continue  # an unreadable image or mask is left out; n_images says how many counted
    scoring = {"rule": RULE, "data_dir": _shown_path(data), "masks_dir": _shown_path(masks_root),
               "max_images": max_images, "seed": seed}
    scored: dict[str, dict[str, Any]] = {}
    for name in names:
        t0 = time.perf_counter()
        info = run.model_info(name)
        size, crop = int(info["image_size"]), crop_head(info)
        keep = [(rec, img, prepare_mask(mask, img, size, crop)) for rec, img, mask in decoded]
        keep = [k for k in keep if k[2].any()]  # a box cropped away scores nothing
        x = np.stack([geometry.prepare_image(img, size, crop=crop) for _, img, _ in keep])
        targets = np.array([run.class_names.index(r["label"]) for r, _, _ in keep])
        masks = [m for _, _, m in keep]
        model = run.load_model(name)
        base = info.get("gradcam_layer") or default_layer(model)
        ex = Explainer(model, base)
        layers = stage_layers(model, base, 3)
        jobs = [(m, layer) for m, spec in REGISTRY.items()
                for layer in ((layers if spec.cost == "fast" else [base]) if spec.needs_layer
                              else [None])]
        table = []
        for k, (method, layer) in enumerate(jobs):
            if progress:
                progress(f"choose {name}", k, len(jobs))
            table.append(_score(ex, layer, method, x, targets, masks))
        best = select(table, [REGISTRY[r["method"]].cost == "fast" for r in table])
        chance = float(np.mean([m.mean() for m in masks]))
        scored[name] = {"method": best["method"], "layer": best["layer"],
                        "pointing_game": best["pointing_game"],
                        "energy_in_mask": best["energy_in_mask"],
                        "n_images": len(x), "chance": chance,
                        "pointing_game_centre": centre_baseline(keep, size, crop), **scoring,
                        "seconds": round(time.perf_counter() - t0, 1), "created": utc_now(),
                        "images": [r["path"] for r, _, _ in keep],
                        "candidate_layers": layers, "table": table}
    # read only now: a choice written meanwhile for another model (a second explain-choose
    # --model job) is kept too
    kept, damage = recorded_choices(run.path)
    if damage and say:
        say(f"{damage}: replaced; no earlier choice is kept")
    merged = {**kept, **scored}
    order = [m for m in run.model_names if m in merged] + [m for m in merged
                                                           if m not in run.model_names]
    out: dict[str, Any] = {"run_id": run.run_id, "split": "val",
                           "target": "the image's true class",
                           "models": {m: merged[m] for m in order}}
    write_json_atomic(run.path / CHOICE_FILE, out, allow_nan=False)
    return out
