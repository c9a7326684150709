"""Static figures and results.md for the README, generated from a run's artifacts.

matplotlib renders PNGs headless with no browser; the dashboard's plotly figures would need
a Chrome-driven exporter (kaleido) for the same job. `results_markdown` is the whole results.md
(`figures` writes it, the dashboard's Overview offers it); its sections live in results_md.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline import run_files
from pipeline.artifacts import ArtifactError, Run
from pipeline.evaluate.comparison import verdict_of
from pipeline.names import SHIFT_VALIDATION_NOTE, class_label, display_name


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # headless: never open a window
    import matplotlib.pyplot as plt

    return plt


def _optional(run: Run, rel: str) -> Any | None:
    try:
        return run.read_json(rel)
    except ArtifactError:
        return None


def confusion_figure(run: Run, out: Path) -> Path | None:
    """Both models' confusion matrices side by side, row-normalised with counts written in."""
    mats = {m: _optional(run, f"{m}/confusion_matrix.json") for m in run.model_names}
    mats = {m: v for m, v in mats.items() if v}
    if not mats:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(mats), figsize=(5.2 * len(mats), 4.6), squeeze=False)
    for ax, (model, cm) in zip(axes[0], mats.items(), strict=True):
        counts = np.asarray(cm["matrix"], dtype=float)
        rows = counts.sum(axis=1, keepdims=True)
        norm = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        labels = [class_label(str(label)) for label in cm["labels"]]  # "no tumour", as shown
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{display_name(model)} (n={int(counts.sum())})")
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center",
                        color="white" if norm[i, j] > 0.5 else "black", fontsize=10)
    fig.tight_layout()
    path = out / "confusion_matrices.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def training_curves_figure(run: Run, out: Path) -> Path | None:
    """Loss and accuracy per epoch, train vs validation, both models; phases marked."""
    hists = {m: _optional(run, f"{m}/history.json") for m in run.model_names}
    hists = {m: h["epochs"] for m, h in hists.items() if h and h.get("epochs")}
    if not hists:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for colour, (model, rows) in zip(colours, hists.items(), strict=False):
        ep = [r["epoch"] for r in rows]
        for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
            ax.plot(ep, [r[key] for r in rows], color=colour, ls="--", alpha=0.7,
                    label=f"{display_name(model)} train")
            ax.plot(ep, [r[f"val_{key}"] for r in rows], color=colour,
                    label=f"{display_name(model)} validation")
        switch = next((r["epoch"] for r in rows if r["phase"] == "finetune"), None)
        if switch:
            for ax in axes:
                ax.axvline(switch - 0.5, color=colour, lw=0.8, ls=":")
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = out / "training_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def results_table(run: Run) -> str:
    """A Markdown table of the headline test metrics with 95 % CIs and the McNemar verdict."""
    comp = _optional(run, run_files.COMPARISON) or {}
    lines = ["| model | accuracy (95 % CI) | macro-F1 (95 % CI) | balanced acc. | "
             "tumour sensitivity | specificity | ECE | train time |",
             "|---|---|---|---|---|---|---|---|"]
    for model in run.model_names:
        met = _optional(run, f"{model}/metrics.json")
        if not met:
            continue
        ci = comp.get("ci", {}).get(model, {})
        tvn = met.get("tumor_vs_no_tumor") or {}

        def fmt(key: str, met: dict = met, ci: dict = ci) -> str:
            lo_hi = ci.get(key)
            base = f"{met[key]:.3f}"
            return f"{base} ({lo_hi[0]:.3f}–{lo_hi[1]:.3f})" if lo_hi else base

        sens, spec = tvn.get("sensitivity"), tvn.get("specificity")
        secs = run.model_info(model).get("train_seconds")
        lines.append(
            f"| {display_name(model)} | {fmt('accuracy')} | {fmt('macro_f1')} | "
            f"{met['balanced_accuracy']:.3f} | {'' if sens is None else f'{sens:.3f}'} | "
            f"{'' if spec is None else f'{spec:.3f}'} | {met.get('ece', float('nan')):.3f} | "
            f"{'' if secs is None else f'{secs / 60:.1f} min'} |")
    n = comp.get("n")
    if n:
        lines.append("")
        lines.append(f"Test images: {n} ({describe_test_set(run)}). "
                     f"{verdict_of(comp) or ''}")
    return "\n".join(lines) + "\n"


def describe_test_set(run: Run) -> str:
    """One phrase saying what the test split is and how leakage was handled, from the manifest."""
    sp = run.manifest.get("splits") or {}
    official = sp.get("official_test")
    if isinstance(official, dict):
        text = "the dataset's own Testing/ folder"
        if official.get("leaking") is not None:
            text += (f"; {official['leaking']} of {official.get('n', '?')} had an exact or near "
                     f"copy in Training/")
            if sp.get("dedupe", True) and official.get("dropped_duplicates_of_test"):
                text += (f", so {official['dropped_duplicates_of_test']} such copies were left "
                         "out of training")
        return f"{text}; {SHIFT_VALIDATION_NOTE}"
    if sp.get("dedupe"):
        return ("a stratified split that keeps exact and near duplicates together, so no test "
                "image has a copy in training or validation")
    return "a stratified random split (duplicates not grouped)"


def make_figures(run: Run, out_dir: str | Path) -> list[Path]:
    """Write confusion_matrices.png, training_curves.png and results.md (`results_markdown`)
    into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [p for p in (confusion_figure(run, out), training_curves_figure(run, out)) if p]
    from pipeline.results_md import results_markdown

    table = out / "results.md"
    table.write_text(results_markdown(run))
    written.append(table)
    return written
