"""Explanation commands: `explain` (overlay PNGs + explain.json) and `explain-eval` (quality)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from pipeline.cli.common import (
    _existing_dir,
    _model_list,
    _open_run,
    _report_unreadable,
    _split_models,
    _target_index,
    fail,
    one_line,
    print_json,
    progress_bar,
)

EXPLAIN_METHODS_HELP = "gradcam | gradcam++ | scorecam | smoothgrad"


OVERLAY_NAME_BYTES = 120  # leaves room for ".<model>.<method>.png" under the 255-byte limit


def overlay_bases(paths: list[Path]) -> list[str]:
    """One distinct, stable base name per input for its overlay files (same order as `paths`).

    The base is the file name with its extension (scan.png and scan.jpg differ), control
    characters replaced by "_" and cut to OVERLAY_NAME_BYTES. Inputs sharing a base (a/scan.png
    and b/scan.png) get "-" and 8 hex digits of the SHA-1 of their absolute path, so a name does
    not depend on argument order; the same file given twice gets "-2", "-3". Names are compared
    case-folded because macOS and Windows folders are case-insensitive.
    """
    import hashlib
    import os
    from collections import Counter

    def clean(path: Path) -> str:
        name = "".join(ch if ch.isprintable() else "_" for ch in path.name) or "image"
        return name.encode()[:OVERLAY_NAME_BYTES].decode(errors="ignore")

    bases = [clean(p) for p in paths]
    counts = Counter(b.casefold() for b in bases)
    used: set[str] = set()
    out = []
    for path, base in zip(paths, bases, strict=True):
        if counts[base.casefold()] > 1:
            digest = hashlib.sha1(os.fsencode(os.path.abspath(path))).hexdigest()[:8]
            base = f"{base}-{digest}"
        name, k = base, 1
        while name.casefold() in used:
            k += 1
            name = f"{base}-{k}"
        used.add(name.casefold())
        out.append(name)
    return out


def explain(
    images_: list[Path] = typer.Argument(..., metavar="IMAGE...", help="image files"),
    out: Path = typer.Option(..., "--out", help="folder for overlay PNGs and explain.json"),
    run_: str = typer.Option("latest", "--run", help="run id, run folder or 'latest'"),
    model: str = typer.Option("all", "--model", help="model of the run, comma list, or all"),
    method: str = typer.Option("gradcam", "--method", help=EXPLAIN_METHODS_HELP),
    target: str = typer.Option(None, "--target", help="class name or index to explain "
                               "(default: each model's predicted class)"),
    layer: str = typer.Option(None, "--layer", help="conv layer (default: the run's "
                              "gradcam_layer); one model only"),
    alpha: float = typer.Option(0.4, "--alpha", help="heatmap opacity 0..1"),
    outline: float = typer.Option(None, "--outline", help="outline the top PCT percent of the map"),
    artifacts_dir: Path = typer.Option(Path("artifacts"), "--artifacts", help="artifacts folder"),
) -> None:
    """Overlay PNG per image and model, plus explain.json with predictions and heatmap stats."""
    import numpy as np

    from pipeline import images
    from pipeline.artifacts import ArtifactError, write_json_atomic
    from pipeline.explain import METHODS, Explainer, heatmap_stats, render_overlay, to_png

    if method not in METHODS:
        fail(f"unknown --method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0.0 <= alpha <= 1.0:
        fail(f"--alpha must be between 0 and 1, got {alpha}")
    if outline is not None and not 0 < outline <= 100:
        fail(f"--outline must be a percentage in (0, 100], got {outline}")
    run = _open_run(artifacts_dir, run_)
    names = _model_list(model, run.model_names, run.model_names, what="--model",
                        hint=f"run {run.run_id} has {', '.join(run.model_names)} (or all)")
    if layer is not None and len(names) != 1:
        fail("--layer names a layer of one model; pick that model with --model")
    target_idx = _target_index(target, run.class_names)

    decoded, failures = [], []
    for p in images_:
        try:
            decoded.append((p, images.read_image(p)))
        except images.ImageError as exc:
            failures.append({"path": str(p), "error": str(exc)})
            _report_unreadable(str(p), str(exc))
    if not decoded:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "explain.json", {
            "run_id": run.run_id, "method": method, "target": target, "alpha": alpha,
            "images": [], "errors": failures})
        fail(f"none of the {len(images_)} file(s) is a usable image; nothing to explain", code=1)
    explainers = {}
    for name in names:
        try:
            explainers[name] = Explainer(run.load_model(name),
                                         layer or run.model_info(name).get("gradcam_layer"))
        except (ArtifactError, ValueError) as exc:
            fail(f"{name}: {exc}")
    out.mkdir(parents=True, exist_ok=True)
    bases = overlay_bases([p for p, _ in decoded])
    rows = [{"path": str(p), "overlay_base": base, "models": {}}
            for (p, _), base in zip(decoded, bases, strict=True)]
    with progress_bar(enabled=bool(decoded)) as update:
        for k, (name, explainer) in enumerate(explainers.items()):
            update("explain", k, len(names))
            info = run.model_info(name)
            size, crop = int(info["image_size"]), bool(info.get("crop_head", False))
            x = np.stack([images.prepare_image(img, size, crop=crop) for _, img in decoded])
            try:
                ex = explainer(x, method=method, target=target_idx)
            except ValueError as exc:
                fail(f"{name}: {exc}")
            for i in range(len(decoded)):
                png = out / f"{bases[i]}.{name}.{method.replace('+', 'p')}.png"
                png.write_bytes(to_png(render_overlay(x[i], ex.heatmaps[i], alpha=alpha,
                                                      outline_top_percent=outline)))
                pred = int(np.argmax(ex.probs[i]))
                rows[i]["models"][name] = {
                    "predicted": run.class_names[pred],
                    "probs": {c: float(p) for c, p in zip(run.class_names, ex.probs[i],
                                                          strict=True)},
                    "target": run.class_names[int(ex.targets[i])],
                    "layer": ex.layer,
                    "heatmap": heatmap_stats(ex.heatmaps[i]),
                    "overlay": png.name,
                }
        update("explain", len(names), len(names))
    report = {"run_id": run.run_id, "method": method, "target": target, "alpha": alpha,
              "images": rows, "errors": failures}
    write_json_atomic(out / "explain.json", report)
    for row in rows:
        parts = [f"{m}: {v['predicted']} ({max(v['probs'].values()):.2f}) -> {v['overlay']}"
                 for m, v in row["models"].items()]
        sys.stdout.write(f"{one_line(row['path'])}\t" + "\t".join(parts) + "\n")
    sys.stdout.write(f"wrote {len(rows) * len(names)} overlay(s) and explain.json to "
                     f"{one_line(out)}\n")
    if failures:
        raise typer.Exit(1)


def _fmt(value: object, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def explain_eval_cmd(
    run_: str = typer.Option("latest", "--run", help="run id, run folder or 'latest'"),
    data: Path = typer.Option(None, "--data", help="dataset folder (default: the run's)"),
    masks: Path = typer.Option(None, "--masks", help="tumour masks at the images' relative "
                               "paths, non-zero = tumour (default: DATA/masks)"),
    method: str = typer.Option("gradcam", "--method", help=EXPLAIN_METHODS_HELP),
    max_images: int = typer.Option(64, "--max-images", help="test images per model"),
    model: str = typer.Option("all", "--model", help="model of the run, comma list, or all"),
    steps: int = typer.Option(20, "--steps", help="deletion/insertion steps"),
    baseline: str = typer.Option("blur", "--baseline", help="removed pixels become: blur | black"),
    layer: str = typer.Option(None, "--layer", help="conv layer to explain (default: each "
                              "model's gradcam_layer from the manifest)"),
    artifacts_dir: Path = typer.Option(Path("artifacts"), "--artifacts", help="artifacts folder"),
    as_json: bool = typer.Option(False, "--json", help="print the results as JSON"),
) -> None:
    """Measure explanation quality (localisation, faithfulness, sanity); writes
    <run>/<model>/explanations.json."""
    from rich.table import Table

    from pipeline.artifacts import ArtifactError, open_run, resolve_run
    from pipeline.explain import BASELINES, METHODS, explain_eval

    if method not in METHODS:
        fail(f"unknown --method {method!r}; choose one of {', '.join(METHODS)}")
    if baseline not in BASELINES:
        fail(f"unknown --baseline {baseline!r}; choose one of {', '.join(BASELINES)}")
    if max_images < 1:
        fail(f"--max-images must be at least 1, got {max_images}")
    if not 1 <= steps <= 200:
        fail(f"--steps must be between 1 and 200, got {steps}")
    if data is not None:
        _existing_dir(data, "data folder")
    if masks is not None:
        _existing_dir(masks, "masks folder")
    try:
        run_dir = resolve_run(artifacts_dir, run_)
        names = None if model == "all" else _split_models(model)
        if names:
            run = open_run(run_dir)
            for name in names:
                run.model_info(name)
        with progress_bar() as update:
            results = explain_eval(run_dir, data_dir=data, masks_dir=masks, method=method,
                                   max_images=max_images, progress=update, models=names,
                                   steps=steps, baseline=baseline, layer=layer)
    except (ArtifactError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        print_json({m: {k: v for k, v in r.items() if k != "rows"} for m, r in results.items()})
        return
    table = Table(title=f"explanation quality ({method}), run {run_dir.name}")
    for head in ("model", "n", "pointing (chance)", "energy in mask", "deletion AUC (random)",
                 "insertion AUC (random)", "sanity ρ"):
        table.add_column(head, justify="left" if head == "model" else "right")
    for m, r in results.items():
        table.add_row(
            m, str(r["n"]),
            f"{_fmt(r['pointing_game'], 2)} ({_fmt(r['pointing_game_chance'], 2)})",
            _fmt(r["energy_in_mask"]),
            f"{_fmt(r['deletion_auc'])} ({_fmt(r['deletion_auc_random'])})",
            f"{_fmt(r['insertion_auc'])} ({_fmt(r['insertion_auc_random'])})",
            _fmt(r["sanity_rank_correlation"], 2),
        )
    Console().print(table)
    for m, r in results.items():
        if r.get("localisation_reason"):
            sys.stdout.write(f"{m}: no localisation scores ({r['localisation_reason']})\n")
    sys.stdout.write(f"written: {', '.join(f'{m}/explanations.json' for m in results)} in "
                     f"{run_dir}\n")
