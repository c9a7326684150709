"""Command line: `python -m pipeline COMMAND --help`; each command is a thin stage wrapper."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import typer
from rich import progress as rich_progress
from rich.console import Console

from pipeline.names import DEFAULT_MODELS, Progress

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Brain-tumour MRI classifiers with explanations. Research/teaching only, not diagnosis.",
)
err = Console(stderr=True)


def one_line(text: object) -> str:
    """User-controlled text (file names, decoder messages) as one printable line.

    Control characters (a newline or a terminal escape sequence in a file name) are shown as
    Python escapes, so one message stays one line and cannot drive the terminal.
    """
    s = str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in s)


def shown(text: object) -> str:
    """`one_line(text)` with rich markup escaped: a file called `[/].png` is printed, not parsed."""
    from rich.markup import escape

    return escape(one_line(text))


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {shown(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Progress]:
    """Yield a callback `update(description, done, total)` drawing a rich progress bar on stderr."""
    if not enabled:
        yield lambda desc, done, total: None
        return
    with rich_progress.Progress(
        rich_progress.TextColumn("{task.description}"), rich_progress.BarColumn(),
        rich_progress.MofNCompleteColumn(), rich_progress.TimeElapsedColumn(),
        console=err, transient=False,
    ) as prog:
        tasks: dict[str, int] = {}

        def update(desc: str, done: int, total: int) -> None:
            if desc not in tasks:
                tasks[desc] = prog.add_task(desc, total=total)
            prog.update(tasks[desc], completed=done, total=total)

        yield update


def print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _existing_dir(path: Path, what: str) -> Path:
    if not path.exists():
        fail(f"{what} {path} does not exist")
    if not path.is_dir():
        fail(f"{what} {path} is not a folder")
    return path


# Commands live below, one section per stage. Keep them thin: parse, call the stage, print.

# --- data (audit, synth) ---

@app.command()
def audit(
    data_dir: Path = typer.Argument(..., help="Dataset folder (Kaggle, Nickparvar, flat, yes/no)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Count images; find unreadable files, exact/near duplicates, leakage, label conflicts."""
    from pipeline.data import DatasetError, discover
    from pipeline.data import audit as run_audit

    _existing_dir(data_dir, "data folder")
    try:
        ds = discover(data_dir)
        with progress_bar(enabled=err.is_terminal) as update:
            report = run_audit(ds, progress=update)
    except DatasetError as exc:
        fail(str(exc))
    if as_json:
        print_json(report)
    else:
        _print_audit(report)


def _print_audit(r: dict) -> None:
    from rich.table import Table

    out = Console(highlight=False)
    out.print(f"[bold]{shown(r['root'])}[/]: layout {r['layout']}, {r['n_images']} images, "
              f"classes {', '.join(r['classes'])}")
    counts = Table(title="Images per split and class")
    counts.add_column("split")
    for c in r["classes"]:
        counts.add_column(c, justify="right")
    counts.add_column("total", justify="right")
    for split, row in r["counts"].items():
        counts.add_row(split, *(str(row.get(c, 0)) for c in r["classes"]), str(sum(row.values())))
    out.print(counts)
    sizes = ", ".join(f"{s['size']} ({s['count']})" for s in r["sizes"][:5])
    out.print(f"sizes: {r['n_distinct_sizes']} distinct; most common {sizes}")
    out.print("modes: " + ", ".join(f"{m} ({n})" for m, n in r["modes"].items()))
    bad = r["unreadable"]
    out.print(f"unreadable: {len(bad)}" + ("" if bad else " ✓"))
    for rel in bad[:20]:
        # Reasons start with the bare file name; the relative path tells same-named files apart.
        reason, name = r["unreadable_reasons"][rel], rel.rsplit("/", 1)[-1]
        reason = reason[len(name) + 2:] if reason.startswith(f"{name}: ") else reason
        out.print(f"  [red]✗[/] {shown(rel)}: {shown(reason)}", soft_wrap=True)
    if len(bad) > 20:
        out.print(f"  … and {len(bad) - 20} more (see --json)")
    dup = Table(title="Duplicates")
    dup.add_column("check")
    dup.add_column("found", justify="right")
    dup.add_row("exact duplicate groups (same bytes)", str(r["exact_duplicate_groups"]))
    dup.add_row("  of which span Training/Testing", str(r["cross_split_duplicate_groups"]))
    dup.add_row("test images with an exact copy in training", str(r["cross_split_duplicates"]))
    dup.add_row("exact groups spanning classes (label conflicts)",
                str(r["cross_class_duplicates"]))
    dup.add_row("near-duplicate groups", str(r["near_duplicate_groups"]))
    dup.add_row("test images with an exact or near copy in training",
                str(r["cross_split_near_duplicates"]))
    dup.add_row("near-duplicate groups spanning classes",
                str(r["cross_class_near_duplicate_groups"]))
    dup.add_row("largest duplicate group", str(r["largest_duplicate_group"]))
    out.print(dup)
    out.print(f"near duplicates: {r['near_duplicate_method']}")
    for kind in ("cross_split", "cross_class"):
        for group in r["examples"][kind][:3]:
            out.print(f"  e.g. {kind.replace('_', '-')}: " + " = ".join(map(shown, group[:4])))
    out.print(f"done in {r['seconds']} s")


@app.command()
def synth(
    out_dir: Path = typer.Argument(..., help="Folder to create (Training/, Testing/, masks/)."),
    per_class: int = typer.Option(..., "--per-class", help="Images per class (train + test)."),
    size: int = typer.Option(256, "--size", help="Image side in pixels (>= 64)."),
    seed: int = typer.Option(0, "--seed", help="Same seed -> byte-identical images."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share put in Testing/."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous synth output."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Write synthetic axial MRI phantoms (4 classes) with a ground-truth tumour mask per image."""
    from pipeline.synth import SynthError, generate

    if per_class < 1:
        fail(f"--per-class must be >= 1, got {per_class}")
    if size < 64:
        fail(f"--size must be >= 64, got {size}")
    try:
        with progress_bar(enabled=not quiet) as update:
            summary = generate(out_dir, per_class, size=size, seed=seed,
                               test_fraction=test_fraction, progress=update, overwrite=overwrite)
    except SynthError as exc:
        fail(str(exc))
    n_train = sum(summary["counts"]["Training"].values())
    n_test = sum(summary["counts"]["Testing"].values())
    typer.echo(f"wrote {summary['n_images']} phantoms ({n_train} train, {n_test} test, "
               f"{size}px, seed {seed}) with masks to {out_dir}")


# --- training (train, run, predict) ---

MODEL_HELP = "custom_cnn, mobilenetv2, efficientnetb0, or all (= custom_cnn + mobilenetv2)"


def _model_list(model: str) -> list[str]:
    from pipeline.models import MODEL_NAMES

    if model == "all":
        return list(DEFAULT_MODELS)
    names = [m.strip() for m in model.split(",") if m.strip()]
    bad = [m for m in names if m not in MODEL_NAMES]
    if bad or not names:
        fail(f"unknown model {', '.join(bad) or model!r}; choose from {MODEL_HELP}")
    return names


def _build_config(profile_name: str, config: Path | None, image_size: int | None,
                  epochs: int | None, weights: str | None, official_test: bool | None,
                  models: list[str]):
    from pipeline.config import load_config, profile

    try:
        cfg = profile(profile_name)
        if config is not None:
            cfg = load_config(config, base=cfg)
    except ValueError as exc:
        fail(str(exc))
    for name in models:
        mc = cfg.models.setdefault(name, type(next(iter(cfg.models.values())))())
        if image_size is not None:
            if image_size < 32:
                fail(f"--image-size must be at least 32, got {image_size}")
            mc.image_size = image_size
        if epochs is not None:
            if epochs < 1:
                fail(f"--epochs must be at least 1, got {epochs}")
            mc.epochs = epochs
    if weights is not None:
        cfg.weights = weights
    if official_test is not None:
        cfg.official_test = official_test
    return cfg


def _train_and_evaluate(cfg, data: Path | None, out: Path, models: list[str],
                        resume: str | None, evaluate: bool) -> Path:
    from pipeline.artifacts import ArtifactError
    from pipeline.data import DatasetError
    from pipeline.models import WeightsError
    from pipeline.train import train_run

    with progress_bar() as update:
        try:
            run_dir = train_run(cfg, data, out, models, resume=resume, progress=update,
                                say=lambda m: err.print(m, highlight=False))
        except (DatasetError, WeightsError, ArtifactError, ValueError) as exc:
            fail(str(exc))
    err.print(f"[green]run complete:[/] {run_dir}")
    if evaluate:
        _evaluate_after_training(run_dir)
    return run_dir


def _evaluate_after_training(run_dir: Path) -> None:
    try:
        from pipeline.evaluate import evaluate_run
    except ImportError:  # evaluation module not available in this build
        return
    with progress_bar() as update:
        try:
            evaluate_run(run_dir, progress=update)
        except Exception as exc:  # the run is complete and kept; report and go on
            err.print(f"[yellow]evaluation failed:[/] {type(exc).__name__}: {exc}")
            return
    err.print(f"[green]evaluation written to[/] {run_dir}")


@app.command()
def train(
    data: Path = typer.Option(None, "--data", help="dataset folder (any supported layout)"),
    model: str = typer.Option("all", "--model", help=MODEL_HELP),
    out: Path = typer.Option(Path("artifacts"), "--out", help="artifacts folder"),
    profile_name: str = typer.Option("full", "--profile", help="smoke | quick | full"),
    image_size: int = typer.Option(None, "--image-size", help="input side in pixels"),
    epochs: int = typer.Option(None, "--epochs", help="max epochs (head phase for transfer)"),
    weights: str = typer.Option(None, "--weights", help="auto | imagenet | none | PATH"),
    official_test: bool = typer.Option(None, "--official-test/--split-test",
                                       help="use the dataset's Testing/ folder as test split"),
    resume: str = typer.Option(None, "--resume", help="continue an interrupted run by id"),
    config: Path = typer.Option(None, "--config", help="JSON config overriding the profile"),
    evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate", help="evaluate at the end"),
) -> None:
    """Train models and write a self-describing run folder (evaluated at the end)."""
    models = _model_list(model)
    if resume is None:
        if data is None:
            fail("--data is required (or --resume RUN_ID)")
        _existing_dir(data, "data folder")
    cfg = _build_config(profile_name, config, image_size, epochs, weights, official_test, models)
    _train_and_evaluate(cfg, data, out, models, resume, evaluate)


@app.command()
def run(
    data: Path = typer.Option(None, "--data", help="dataset folder; default: synthetic phantoms"),
    out: Path = typer.Option(Path("artifacts"), "--out", help="artifacts folder"),
    profile_name: str = typer.Option("quick", "--profile", help="smoke | quick | full"),
    synth_dir: Path = typer.Option(Path("data/synthetic"), "--synth-dir",
                                   help="where the synthetic default dataset is generated"),
    per_class: int = typer.Option(150, "--per-class", help="synthetic images per class"),
    weights: str = typer.Option(None, "--weights", help="auto | imagenet | none | PATH"),
) -> None:
    """Synthesise data when none is given, train both models, evaluate: make demo's first half."""
    models = list(DEFAULT_MODELS)
    if data is None:
        from pipeline.synth import generate

        if not (synth_dir / "synth.json").is_file():
            err.print(f"generating synthetic phantoms in {synth_dir} ...")
            with progress_bar() as update:
                try:
                    generate(synth_dir, per_class=per_class, seed=0, progress=update)
                except ValueError as exc:
                    fail(str(exc))
        data = synth_dir
    _existing_dir(data, "data folder")
    cfg = _build_config(profile_name, None, None, None, weights, None, models)
    run_dir = _train_and_evaluate(cfg, data, out, models, None, True)
    try:
        from pipeline.explain import explain_eval
    except ImportError:
        return
    with progress_bar() as update:
        try:
            # 32 test images keep the demo's first start short; explain-eval can redo it.
            explain_eval(run_dir, max_images=32, progress=update)
        except Exception as exc:  # explanations are extra; the run stays complete
            err.print(f"[yellow]explanation quality not computed:[/] {exc}")


@app.command()
def predict(
    images_: list[Path] = typer.Argument(..., metavar="IMAGE...", help="image files"),
    run_: str = typer.Option("latest", "--run", help="run id, run folder or 'latest'"),
    artifacts_dir: Path = typer.Option(Path("artifacts"), "--artifacts", help="artifacts folder"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Predict each image with every model of a run. Unusable files: one line each, exit 1."""
    from pipeline.artifacts import ArtifactError, open_run, resolve_run
    from pipeline.predict import Predictor, predict_files

    try:
        predictor = Predictor(open_run(resolve_run(artifacts_dir, run_)))
    except ArtifactError as exc:
        fail(str(exc))
    results, failures = predict_files(predictor, images_)
    for path, reason in failures:
        # ImageError messages already start with the file name; do not print it twice.
        line = reason if reason.startswith(f"{path}: ") else f"{path}: {reason}"
        err.print(f"[red]cannot read[/] {shown(line)}", highlight=False, soft_wrap=True)
    if as_json:
        print_json({"run": predictor.run.run_id, "results": results,
                    "errors": [{"path": p, "error": r} for p, r in failures]})
    else:
        for row in results:
            parts = [f"{m}: {v['label']} ({max(v['probs'].values()):.2f})"
                     for m, v in row["models"].items()]
            flag = "" if row["agree"] else "  [models disagree]"
            sys.stdout.write(f"{one_line(row['path'])}\t" + "\t".join(parts) + flag + "\n")
    if failures:
        raise typer.Exit(1)


# --- evaluation (evaluate, tune) ---


def _print_eval_summary(summary: dict) -> None:
    from rich.table import Table

    from pipeline.names import display_name

    src = summary["source"]
    where = "test split" if src["kind"] == "test" else f"{src['data_dir']} ({src['mode']})"
    table = Table(title=f"run {summary['run_id']}: {summary['n']} images, {where}")
    cols = {"accuracy": "acc", "balanced_accuracy": "bal acc", "macro_f1": "macro F1",
            "roc_auc": "AUC", "ece": "ECE", "sensitivity": "sens", "specificity": "spec"}
    table.add_column("model")
    for head in cols.values():
        table.add_column(head, justify="right")
    for m, met in summary["models"].items():
        table.add_row(display_name(m), *["–" if met.get(c) is None else f"{met[c]:.3f}"
                                         for c in cols])
    Console().print(table)
    for m, ci in summary["ci"].items():
        if m != "difference":
            lo, hi = ci["accuracy"]
            sys.stdout.write(f"{display_name(m)} accuracy 95 % CI [{lo:.3f}, {hi:.3f}]\n")
    sys.stdout.write(summary["verdict"] + "\n")
    if src.get("n_unreadable"):
        err.print(f"[yellow]skipped {src['n_unreadable']} unreadable image(s)[/]")
    overlap = src.get("overlap_with_training") or {}
    if overlap.get("n_exact"):
        err.print(f"[yellow]warning:[/] {overlap['n_exact']} of these images are exact copies of "
                  "the run's training/validation images; their scores are not independent")
    if src.get("skipped_classes"):
        err.print(f"[yellow]skipped classes the run does not know:[/] {src['skipped_classes']}")


def _print_cv_summary(result: dict) -> None:
    from rich.table import Table

    from pipeline.names import display_name

    table = Table(title=f"{result['folds']}-fold cross-validation of run {result['run_id']} "
                        f"({result['n_images']} images)")
    cols = {"accuracy": "acc", "balanced_accuracy": "bal acc", "macro_f1": "macro F1",
            "roc_auc": "AUC", "ece": "ECE"}
    table.add_column("model (mean ± std)")
    for head in cols.values():
        table.add_column(head, justify="right")
    for m, stats_ in result["summary"].items():
        cells = ["–" if stats_[c]["mean"] is None else
                 f"{stats_[c]['mean']:.3f} ± {stats_[c]['std']:.3f}" for c in cols]
        table.add_row(display_name(m), *cells)
    Console().print(table)
    if result["pooled_out_of_fold"].get("verdict"):
        sys.stdout.write("pooled out-of-fold: " + result["pooled_out_of_fold"]["verdict"] + "\n")
    sys.stdout.write(f"per-fold runs and cv.json in {result['out_dir']}\n")


@app.command()
def evaluate(
    run_: str = typer.Option("latest", "--run", help="run id, run folder or 'latest'"),
    artifacts_dir: Path = typer.Option(Path("artifacts"), "--artifacts", help="artifacts folder"),
    data: Path = typer.Option(None, "--data", help="evaluate on this folder (any layout) "
                              "instead of the run's test split"),
    name: str = typer.Option(None, "--name", help="name of an external evaluation (default: "
                             "the folder's name); files go to <run>/<model>/external/NAME/"),
    data_root: Path = typer.Option(None, "--data-root",
                                   help="where the run's own dataset is now, if it moved"),
    folds: int = typer.Option(None, "--folds", help="K-fold cross-validation: retrain every "
                              "model of the run K times with its config on its dataset"),
    cv_model: str = typer.Option(None, "--model", help="with --folds: only these models "
                                 "(comma-separated; default: all of the run's)"),
    n_boot: int = typer.Option(2000, "--n-boot", help="bootstrap resamples for the CIs"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Metrics, calibration, curves and a paired model comparison for a run (no retraining)."""
    from pipeline.artifacts import ArtifactError, resolve_run
    from pipeline.data import DatasetError
    from pipeline.evaluate import EvaluationError, cross_validate, evaluate_run

    if n_boot < 100:
        fail(f"--n-boot must be at least 100, got {n_boot}")
    if data is not None:
        _existing_dir(data, "data folder")
    if data_root is not None:
        _existing_dir(data_root, "--data-root folder")
    if cv_model is not None and folds is None:
        fail("--model only applies to cross-validation (--folds K)")
    if folds is not None and (folds < 2 or data is not None or name is not None):
        fail(f"--folds must be at least 2, got {folds}" if folds < 2 else
             "--folds cross-validates on the run's own dataset; it cannot be combined with "
             "--data/--name (use --data-root if the dataset moved)")
    try:
        run_dir = resolve_run(artifacts_dir, run_)
        with progress_bar() as update:
            if folds is not None:
                cv_models = [m.strip() for m in cv_model.split(",") if m.strip()] \
                    if cv_model else None
                summary = cross_validate(run_dir, folds, data_root=data_root, progress=update,
                                         say=lambda m: err.print(m, highlight=False),
                                         models=cv_models)
            else:
                summary = evaluate_run(run_dir, data_dir=data, name=name, progress=update,
                                       data_root=data_root, n_boot=n_boot)
    except (EvaluationError, DatasetError, ArtifactError) as exc:
        fail(str(exc))
    if as_json:
        print_json(summary)
    elif folds is not None:
        _print_cv_summary(summary)
    else:
        _print_eval_summary(summary)


@app.command()
def tune(
    data: Path = typer.Option(..., "--data", help="dataset folder (any supported layout)"),
    model: str = typer.Option(..., "--model", help="custom_cnn, mobilenetv2 or efficientnetb0"),
    budget: int = typer.Option(8, "--budget", help="number of trials (configurations trained)"),
    out: Path = typer.Option(Path("artifacts"), "--out",
                             help="artifacts folder; results go to OUT/tune/MODEL-TIMESTAMP/"),
    profile_name: str = typer.Option("quick", "--profile",
                                     help="smoke | quick | full: epochs, image size, data cap"),
    config: Path = typer.Option(None, "--config", help="JSON config overriding the profile"),
    epochs: int = typer.Option(None, "--epochs", help="max epochs per trial (head phase)"),
    weights: str = typer.Option(None, "--weights", help="auto | imagenet | none | PATH"),
    algorithm: str = typer.Option("random", "--algorithm", help="random | bayesian (KerasTuner)"),
    seed: int = typer.Option(None, "--seed", help="search seed (default: the config's seed)"),
    as_json: bool = typer.Option(False, "--json", help="print results.json"),
) -> None:
    """Bounded hyper-parameter search, selected on validation accuracy (never the test split)."""
    from pipeline.data import DatasetError
    from pipeline.models import MODEL_NAMES, WeightsError
    from pipeline.tune import TuneError, results_markdown
    from pipeline.tune import tune as run_tune

    _existing_dir(data, "data folder")
    if model not in MODEL_NAMES:
        fail(f"unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}")
    if budget < 1:
        fail(f"--budget must be at least 1 trial, got {budget}")
    cfg = _build_config(profile_name, config, None, epochs, weights, None, [model])
    try:
        with progress_bar() as update:
            result = run_tune(data, model, budget, out, cfg=cfg, algorithm=algorithm, seed=seed,
                              progress=update, say=lambda m: err.print(m, highlight=False))
    except (TuneError, DatasetError, WeightsError) as exc:
        fail(str(exc))
    if as_json:
        print_json(result)
    else:
        sys.stdout.write(results_markdown(result))
        sys.stdout.write(f"results: {result['out_dir']}\n")

# --- explanations (explain, explain-eval) ---

EXPLAIN_METHODS_HELP = "gradcam | gradcam++ | scorecam | smoothgrad"


def _target_index(target: str | None, class_names: list[str]) -> int | None:
    """A --target given as a class name or index -> index (None = each image's prediction)."""
    if target is None:
        return None
    if target in class_names:
        return class_names.index(target)
    if target.isdigit() and int(target) < len(class_names):
        return int(target)
    fail(f"unknown --target {target!r}; choose a class name ({', '.join(class_names)}) "
         f"or an index 0..{len(class_names) - 1}")


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


@app.command()
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
    from pipeline.artifacts import ArtifactError, open_run, resolve_run, write_json_atomic
    from pipeline.explain import METHODS, Explainer, heatmap_stats, render_overlay, to_png

    if method not in METHODS:
        fail(f"unknown --method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0.0 <= alpha <= 1.0:
        fail(f"--alpha must be between 0 and 1, got {alpha}")
    if outline is not None and not 0 < outline <= 100:
        fail(f"--outline must be a percentage in (0, 100], got {outline}")
    try:
        run = open_run(resolve_run(artifacts_dir, run_))
    except ArtifactError as exc:
        fail(str(exc))
    names = run.model_names if model == "all" else [m.strip() for m in model.split(",")]
    unknown = [m for m in names if m not in run.model_names]
    if unknown or not names:
        fail(f"unknown --model {', '.join(unknown) or model!r}; run {run.run_id} has "
             f"{', '.join(run.model_names)} (or all)")
    if layer is not None and len(names) != 1:
        fail("--layer names a layer of one model; pick that model with --model")
    target_idx = _target_index(target, run.class_names)

    decoded, failures = [], []
    for p in images_:
        try:
            decoded.append((p, images.read_image(p)))
        except images.ImageError as exc:
            failures.append({"path": str(p), "error": str(exc)})
            # ImageError messages already start with the file name; do not print it twice.
            # shown(): a name is user text, never rich markup, and stays on one line.
            line = str(exc) if str(exc).startswith(f"{p}: ") else f"{p}: {exc}"
            err.print(f"[red]cannot read[/] {shown(line)}", highlight=False, soft_wrap=True)
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


@app.command("explain-eval")
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
        names = None if model == "all" else [m.strip() for m in model.split(",") if m.strip()]
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


# --- benchmarks and figures (bench, figures) ---


@app.command()
def figures(
    run_: str = typer.Option("latest", "--run", help="run id, run folder or 'latest'"),
    artifacts_dir: Path = typer.Option(Path("artifacts"), "--artifacts", help="artifacts folder"),
    out: Path = typer.Option(Path("docs/figures"), "--out", help="where the PNGs and table go"),
) -> None:
    """Render the README's confusion matrices, training curves and results table from a run."""
    from pipeline.artifacts import ArtifactError, open_run, resolve_run
    from pipeline.report import make_figures

    try:
        run = open_run(resolve_run(artifacts_dir, run_))
    except ArtifactError as exc:
        fail(str(exc))
    for path in make_figures(run, out):
        sys.stdout.write(f"{path}\n")


@app.command()
def bench(
    quick: bool = typer.Option(False, "--quick", help="tiny synthetic data, 1-3 epochs, few "
                               "repeats: a minute or two (CI)"),
    data: Path = typer.Option(None, "--data", help="dataset folder (required without --quick; "
                              "--quick defaults to synthetic phantoms)"),
    out: Path = typer.Option(Path("artifacts/bench"), "--out",
                             help="folder for <UTC date>[-quick].json and .md"),
    run_: str = typer.Option(None, "--run", help="existing run (id, folder or latest) for the "
                             "latency and dashboard parts; default: a short run trained here"),
    artifacts_dir: Path = typer.Option(Path("artifacts"), "--artifacts",
                                       help="artifacts folder --run is looked up in"),
    model: str = typer.Option("all", "--model", help="custom_cnn, mobilenetv2 or all"),
    target: str = typer.Option(None, "--target", help="val accuracy targets, e.g. "
                               "'mobilenetv2=0.8,custom_cnn=0.7' (default 0.80/0.70; quick 0.35)"),
    max_minutes: float = typer.Option(None, "--max-minutes", help="wall-clock cap per training "
                                      "recipe (default 40; quick 1.5)"),
    repeats: int = typer.Option(None, "--repeats", help="timed single-image calls for Grad-CAM "
                                "and prediction (default 30; quick 5)"),
    uploads: int = typer.Option(None, "--uploads", help="browser uploads timed (default 7; "
                                "quick 3)"),
    dashboard: bool = typer.Option(True, "--dashboard/--no-dashboard",
                                   help="measure the dashboard in chromium"),
) -> None:
    """Training speed vs the naive recipe, explanation latency vs the floor, prediction,
    dashboard and memory, in one run; writes a JSON and a Markdown report."""
    from pipeline.artifacts import ArtifactError, resolve_run
    from pipeline.bench import MODELS, BenchError, BenchOptions, parse_targets, run_bench

    if data is not None:
        _existing_dir(data, "data folder")
    elif not quick:
        fail("--data is required for a full benchmark (or use --quick for synthetic data)")
    models = MODELS if model == "all" else tuple(m.strip() for m in model.split(",") if m.strip())
    bad = [m for m in models if m not in MODELS]
    if bad or not models:
        fail(f"unknown --model {', '.join(bad) or model!r}; choose custom_cnn, mobilenetv2 "
             "or all")
    if max_minutes is not None and max_minutes <= 0:
        fail(f"--max-minutes must be positive, got {max_minutes}")
    for flag, value in (("--repeats", repeats), ("--uploads", uploads)):
        if value is not None and value < 1:
            fail(f"{flag} must be at least 1, got {value}")
    try:
        targets = parse_targets(target, models)
        run_dir = resolve_run(artifacts_dir, run_) if run_ is not None else None
    except (BenchError, ArtifactError) as exc:
        fail(str(exc))
    opts = BenchOptions(out_dir=out, quick=quick, data_dir=data, run_dir=run_dir, models=models,
                        targets=targets, max_minutes=max_minutes, repeats=repeats,
                        uploads=uploads, dashboard=dashboard,
                        command="python -m pipeline bench " + " ".join(sys.argv[2:]))
    try:
        with progress_bar() as update:
            result = run_bench(opts, progress=update,
                               say=lambda m: err.print(f"[dim]{shown(m)}[/]", highlight=False))
    except (BenchError, ArtifactError, ValueError) as exc:
        fail(str(exc))
    for key, g in result.report["goals_check"].items():
        value = g["value"] if g["value"] is not None else (
            f">= {g['lower_bound']} (lower bound)" if g.get("lower_bound") is not None else "-")
        err.print(f"{key}: {value} (goal {g['goal']}, met: {g['met']})", highlight=False)
    sys.stdout.write(f"{result.json_path}\n{result.md_path}\n")


def main() -> None:
    """Entry point of `python -m pipeline`: Ctrl-C prints one line and exits with 130."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
