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
from pipeline.artifacts import ArtifactError, Run, shown_path
from pipeline.evaluate.comparison import verdict_of
from pipeline.gaps import fix_command, to_fix
from pipeline.names import SHIFT_VALIDATION_NOTE, class_label, display_name

# what results_table reads from each metrics.json: a missing or non-numeric one is named
TABLE_KEYS = ("accuracy", "macro_f1", "balanced_accuracy")
# what the training curves read from each epoch of a history.json
CURVE_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")
# the files `make_figures` writes into its folder, all from one run
CONFUSION_PNG, CURVES_PNG = "confusion_matrices.png", "training_curves.png"
RESULTS_MD = "results.md"
FIGURE_FILES = (CONFUSION_PNG, CURVES_PNG, RESULTS_MD)
PNG_RUN_KEY = "Run"  # the PNG text chunk naming the run a figure was drawn from


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


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _damage(met: Any) -> str | None:
    """What makes a metrics.json unusable for the table (None: usable)."""
    if not isinstance(met, dict):
        return f"expected a JSON object, got {type(met).__name__}"
    for key in TABLE_KEYS:
        if key not in met:
            return f"no '{key}'"
        if not _number(met[key]):
            return f"'{key}' is not a number (got {met[key]!r})"
    if met.get("ece") is not None and not _number(met["ece"]):
        return f"'ece' is not a number (got {met['ece']!r})"
    return None


def _matrix_damage(cm: Any) -> str | None:
    """What makes a confusion_matrix.json unusable for the figure (None: usable)."""
    try:
        counts = np.asarray(cm["matrix"], dtype=float)
        labels = list(cm["labels"])
    except (KeyError, TypeError, ValueError) as exc:
        return f"no usable 'matrix' and 'labels' ({type(exc).__name__})"
    if counts.shape != (len(labels), len(labels)) or not np.isfinite(counts).all():
        return f"'matrix' is not {len(labels)} x {len(labels)} finite counts"
    return None


def _history_damage(hist: Any) -> str | None:
    """What makes a history.json unusable for the training curves (None: usable)."""
    rows = hist.get("epochs") if isinstance(hist, dict) else None
    if not isinstance(rows, list) or not rows:
        return "no 'epochs' list" if isinstance(hist, dict) else \
            f"expected a JSON object, got {type(hist).__name__}"
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            return f"epoch entry {i} is not a JSON object"
        bad = next((k for k in CURVE_KEYS if not _number(row.get(k))), None)
        if bad:
            return f"epoch entry {i} has no number '{bad}'"
    return None


def history_problems(run: Run) -> dict[str, str]:
    """{run-relative file: one line} for each model's missing or damaged history.json, which
    the training curves leave out (the figure says so under its panels). Only training writes
    the file, since the first version of `train`, in the same atomic step as the model: no
    finished run lacks it by age, and no command rebuilds it, so `figures` warns and goes on
    (the citable table does not read it)."""
    out = {}
    for m in run.model_names:
        rel = f"{m}/{run_files.HISTORY}"
        try:
            why = _history_damage(run.read_json(rel))
        except ArtifactError as exc:
            why, problem = None, str(exc)
        else:
            problem = f"damaged file {shown_path(run.path / rel)}: {why}" if why else ""
        if problem:
            out[rel] = (f"{problem}; {display_name(m)} is left out of the training curves. "
                        "Only training writes it: restore it from a copy of the run, or "
                        "train a new run")
    return out


def figure_problems(run: Run, run_ref: str | None = None) -> dict[str, str]:
    """{run-relative file: one line naming it, what is wrong and the command that rebuilds it}
    for each model's metrics.json and confusion_matrix.json that is missing or damaged: the
    table and the figure leave such a model out, and say so (`figures` exits non-zero)."""
    command = (f"python -m pipeline evaluate --run {run_ref}" if run_ref
               else fix_command(run, "evaluate"))
    out = {}
    for m in run.model_names:
        for rel, check in ((f"{m}/{run_files.METRICS}", _damage),
                           (f"{m}/{run_files.CONFUSION}", _matrix_damage)):
            try:
                why = check(run.read_json(rel))
            except ArtifactError as exc:
                out[rel] = to_fix(exc, command)
                continue
            if why:
                out[rel] = to_fix(f"damaged file {shown_path(run.path / rel)}: {why}", command)
    return out


def _save(fig: Any, path: Path, run: Run) -> None:
    """The PNG, with the run it was drawn from in a text chunk (`figures_in` reads it)."""
    fig.savefig(path, dpi=110, metadata={PNG_RUN_KEY: run.run_id})


def _png_run(path: Path) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as img:
            run_id = getattr(img, "text", {}).get(PNG_RUN_KEY)
    except (OSError, ValueError):
        return None
    return run_id if isinstance(run_id, str) else None


def figures_in(out: Path) -> dict[str, str | None]:
    """{file name: the run it was made from, None when unknown} for each of `FIGURE_FILES`
    already in `out`. A PNG names its run in a text chunk; one drawn before it did goes with
    the run its folder's results.md names (`results_md.run_of`)."""
    from pipeline.results_md import run_of

    try:
        md_run = run_of((out / RESULTS_MD).read_text(errors="replace"))
    except OSError:
        md_run = None
    found: dict[str, str | None] = {}
    for name in FIGURE_FILES:
        path = out / name
        if path.exists():
            found[name] = md_run if name == RESULTS_MD else (_png_run(path) or md_run)
    return found


def other_runs_figures(run: Run, out: Path) -> str | None:
    """Why `make_figures` must not write `run`'s figures into `out` without `replace`: the
    folder already holds figures of another run, or files it cannot tie to one (None: it
    holds none, or only `run`'s). Two `figures` runs into one folder, for two runs, silently
    left the second run's files in place of the first's."""
    from pipeline.results_md import run_of, title_line

    own = {run.run_id, run_of(title_line(run.run_id))}  # as results.md can spell it
    others = {name: r for name, r in figures_in(out).items() if r not in own}
    if not others:
        return None
    by_run: dict[str | None, list[str]] = {}
    for name, r in others.items():
        by_run.setdefault(r, []).append(name)
    held = "; ".join(", ".join(names) + (f" of run {r}" if r else " of an unknown run")
                     for r, names in by_run.items())
    return (f"{out} already holds {held}; this is run {run.run_id}: pass "
            "--replace to overwrite them, or choose another --out")


def confusion_figure(run: Run, out: Path) -> Path | None:
    """Both models' confusion matrices side by side, row-normalised with counts written in;
    a model whose file is missing or damaged is left out (`figure_problems` says it)."""
    mats = {m: _optional(run, f"{m}/{run_files.CONFUSION}") for m in run.model_names}
    mats = {m: v for m, v in mats.items() if v and _matrix_damage(v) is None}
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
    path = out / CONFUSION_PNG
    _save(fig, path, run)
    plt.close(fig)
    return path


def training_curves_figure(run: Run, out: Path) -> Path | None:
    """Loss and accuracy per epoch, train vs validation, both models; phases marked. A model
    whose history.json is missing or damaged is left out, and a line under the panels names
    it (`history_problems` says why); None when no model has a usable one."""
    hists = {m: _optional(run, f"{m}/{run_files.HISTORY}") for m in run.model_names}
    left_out = [m for m, h in hists.items() if _history_damage(h) is not None]
    hists = {m: h["epochs"] for m, h in hists.items() if m not in left_out}
    if not hists:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4 if left_out else 4))
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for colour, (model, rows) in zip(colours, hists.items(), strict=False):
        ep = [r["epoch"] for r in rows]
        for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
            ax.plot(ep, [r[key] for r in rows], color=colour, ls="--", alpha=0.7,
                    label=f"{display_name(model)} train")
            ax.plot(ep, [r[f"val_{key}"] for r in rows], color=colour,
                    label=f"{display_name(model)} validation")
        switch = next((r["epoch"] for r in rows if r.get("phase") == "finetune"), None)
        if switch:
            for ax in axes:
                ax.axvline(switch - 0.5, color=colour, lw=0.8, ls=":")
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="lower right")
    if left_out:  # the picture itself says it is not the whole run
        fig.text(0.5, 0.01, "Not drawn: " + ", ".join(display_name(m) for m in left_out)
                 + f" ({run_files.HISTORY} missing or damaged)", ha="center", fontsize=9)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
    else:
        fig.tight_layout()
    path = out / CURVES_PNG
    _save(fig, path, run)
    plt.close(fig)
    return path


def results_table(run: Run, run_ref: str | None = None) -> str:
    """A Markdown table of the headline test metrics with 95 % CIs and the McNemar verdict.
    A model whose metrics.json is missing or damaged keeps its row, which says so and how to
    fix it (`figure_problems`; `run_ref`: how the fix names the run, default `gaps.run_arg`)."""
    comp = _optional(run, run_files.COMPARISON) or {}
    problems = figure_problems(run, run_ref)
    lines = ["| model | accuracy (95 % CI) | macro-F1 (95 % CI) | balanced acc. | "
             "tumour sensitivity | specificity | ECE | train time |",
             "|---|---|---|---|---|---|---|---|"]
    for model in run.model_names:
        problem = problems.get(f"{model}/{run_files.METRICS}")
        if problem:  # in place of the row: a missing row read as a complete table
            cell = " ".join(problem.split()).replace("|", "\\|")
            lines.append(f"| {display_name(model)} | {cell} |" + " |" * 6)
            continue
        met = run.read_json(f"{model}/{run_files.METRICS}")
        ci = comp.get("ci", {}).get(model, {}) if isinstance(comp.get("ci"), dict) else {}
        tvn = met.get("tumor_vs_no_tumor") if isinstance(met.get("tumor_vs_no_tumor"), dict) \
            else {}

        def fmt(key: str, met: dict = met, ci: Any = ci) -> str:
            lo_hi = ci.get(key) if isinstance(ci, dict) else None
            base = f"{met[key]:.3f}"
            if not (isinstance(lo_hi, list) and len(lo_hi) == 2 and all(map(_number, lo_hi))):
                return base  # no interval, or a damaged one: the figure stands without it
            return f"{base} ({lo_hi[0]:.3f}–{lo_hi[1]:.3f})"

        sens, spec = (v if _number(v) else None
                      for v in (tvn.get("sensitivity"), tvn.get("specificity")))
        secs = run.model_info(model).get("train_seconds")
        secs = secs if _number(secs) else None
        ece = met["ece"] if _number(met.get("ece")) else float("nan")
        lines.append(
            f"| {display_name(model)} | {fmt('accuracy')} | {fmt('macro_f1')} | "
            f"{met['balanced_accuracy']:.3f} | {'' if sens is None else f'{sens:.3f}'} | "
            f"{'' if spec is None else f'{spec:.3f}'} | {ece:.3f} | "
            f"{'' if secs is None else f'{secs / 60:.1f} min'} |")
    n = comp.get("n")
    if n:
        try:
            verdict = verdict_of(comp) or ""
        except (TypeError, ValueError, KeyError):  # a damaged comparison.json: no verdict
            verdict = ""
        lines.append("")
        lines.append(f"Test images: {n} ({describe_test_set(run)}). {verdict}")
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


def make_figures(run: Run, out_dir: str | Path, run_ref: str | None = None,
                 replace: bool = False) -> list[Path]:
    """Write confusion_matrices.png, training_curves.png and results.md (`results_markdown`)
    into out_dir; `figure_problems` and `history_problems` say what they leave out. A folder
    holding another run's figures is refused (ValueError, `other_runs_figures`) unless
    `replace`; `run`'s own are overwritten. Every file of `FIGURE_FILES` not written this time
    (a figure with nothing to draw) is removed: the folder never mixes two runs' files."""
    out = Path(out_dir)
    if not replace and (refusal := other_runs_figures(run, out)):
        raise ValueError(refusal)
    out.mkdir(parents=True, exist_ok=True)
    written = [p for p in (confusion_figure(run, out), training_curves_figure(run, out)) if p]
    from pipeline.results_md import results_markdown

    table = out / RESULTS_MD
    table.write_text(results_markdown(run, run_ref))
    written.append(table)
    for name in set(FIGURE_FILES) - {p.name for p in written}:
        (out / name).unlink(missing_ok=True)
    return written
