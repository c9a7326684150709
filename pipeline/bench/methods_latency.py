"""Every explanation method's latency on one real image of a run, both models, and the figure
that shows why SmoothGrad is our own (`bench --explain-only`): a few minutes, no training.

Target (issue 17): every method explains one image with both models in at most 1.5 s on 2 cores.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import run_files
from pipeline.bench.latency import both_models, explain_latency
from pipeline.bench.machine import load_average, machine_facts

TARGET_MS = 1500.0  # one image, both models, any method


def explain_methods_bench(run_dir: Path, out_dir: Path, repeats: int = 10,
                          say: Any = None) -> tuple[Path, Path, dict[str, Any]]:
    """Time every method on the run's first test image (prepared per model), write
    `explain-methods/<UTC date>.json` and `.png` under `out_dir` (a subfolder: the full
    benchmark's reports are the `*.json` directly in `out_dir`); returns (json, png, report)."""
    from pipeline import images
    from pipeline.artifacts import open_run, read_json, utc_now, write_json_atomic
    from pipeline.bench.inputs import prepare

    run = open_run(run_dir)
    if run.data_dir is None:
        raise ValueError(f"run {run.run_id}: its data folder is not found")
    rec = read_json(run.path / run_files.SPLITS)["test"][0]
    raw = images.read_image(run.data_dir / rec["path"])
    load, t0 = load_average(), time.perf_counter()
    explain: dict[str, Any] = {}
    for name in run.model_names:
        if say:
            say(f"explanation latency: {name}")
        explain[name] = explain_latency(run.load_model(name), prepare(raw, run.model_info(name)),
                                        run.model_info(name).get("gradcam_layer"), repeats)
    both = both_models(explain)
    report = {"created": utc_now(), "run_id": run.run_id, "image": rec["path"],
              "machine": machine_facts(), "load_average_start": load,
              "load_average_end": load_average(), "seconds": round(time.perf_counter() - t0, 1),
              "explain": explain, "explain_methods": both, "target_ms": TARGET_MS,
              "met": both["slowest_ms"] <= TARGET_MS}
    folder = out_dir / "explain-methods"
    folder.mkdir(parents=True, exist_ok=True)
    stem = report["created"][:10]
    json_path, png_path = folder / f"{stem}.json", folder / f"{stem}.png"
    write_json_atomic(json_path, report, allow_nan=False)
    figure(report, png_path)
    return json_path, png_path, report


def figure(report: dict[str, Any], path: Path) -> None:
    """Left: SmoothGrad per model, ours vs tf-keras-vis (ms, log scale). Right: every method,
    one image through both models, against the 1.5 s target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ex, both = report["explain"], report["explain_methods"]
    models = list(ex)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1, 2]})
    xs = np.arange(len(models))
    ours = [ex[m]["ours_ms"]["smoothgrad"]["p50"] for m in models]
    vis = [ex[m]["tf_keras_vis_smoothgrad_ms"]["p50"] for m in models]
    a.bar(xs - 0.2, vis, 0.4, label="tf-keras-vis Saliency", color="#bbbbbb")
    a.bar(xs + 0.2, ours, 0.4, label="ours (compiled, batched)", color="#d62728")
    for x, o, v in zip(xs, ours, vis, strict=True):
        a.text(x + 0.2, o, f"{o:.0f}", ha="center", va="bottom", fontsize=8)
        a.text(x - 0.2, v, f"{v:.0f}", ha="center", va="bottom", fontsize=8)
    a.set_yscale("log")
    a.set_xticks(xs, models)
    a.set_ylabel("ms per image (p50)")
    a.set_title(f"SmoothGrad, {ex[models[0]]['smooth_samples']} samples")
    a.legend(fontsize=8)
    names = list(both["p50_ms"])
    vals = [both["p50_ms"][n] for n in names]
    b.bar(names, vals, color=["#d62728" if v > report["target_ms"] else "#1f77b4" for v in vals])
    b.axhline(report["target_ms"], color="k", ls="--", lw=1, label="target 1.5 s")
    for i, v in enumerate(vals):
        b.text(i, v, f"{v:.0f}", ha="center", va="bottom", fontsize=8)
    b.set_ylabel("ms, one image, both models (p50)")
    b.set_title("every method, " + " + ".join(models))
    b.tick_params(axis="x", rotation=30)
    b.legend(fontsize=8)
    cores = report["machine"].get("cores_usable")
    fig.suptitle(f"run {report['run_id']}, {cores} cores, load {report['load_average_start'][0]}"
                 " at start (shared machine)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
