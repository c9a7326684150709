"""What `evaluate` prints: its warnings, the table per model on the test split or a folder
(images new to the run first), intervals and verdict, and the cross-validation and robustness
summaries (split out of `cli.eval_cmds`, which parses, calls and hands the result here)."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console

from pipeline.cli.common import (
    as_given,
    err,
    plural,
    report_source,
    shown,
    some_named,
)


def unreadable_line(src: dict) -> str | None:
    """"skipped 9 unreadable images: a.png, b.png, c.png and 6 more" (rich markup) from an
    evaluation's `source`: named, as predict names them ("skipped 9 unreadable image(s)"
    named none, a review of 2026-12-06); None when every image was read."""
    n_bad = src.get("n_unreadable")
    if not n_bad:
        return None
    named = some_named(src.get("unreadable") or [], n_bad)
    return (f"[yellow]skipped {plural(n_bad, 'unreadable image')}[/]"
            + (f": {named}" if named else ""))


def _print_eval_summary(summary: dict, data: Path | None = None) -> None:
    """evaluate's warnings on stderr first (images the run has met, unreadable files), then its
    table (one row per model), accuracy CIs and the verdict. On a folder holding some of the
    run's training or validation images (or copies), the table, CIs and verdict are on the
    images new to the run, each accuracy on all images beside it; on one holding only such
    images, the table is said to be no test and has no verdict. An external folder (`data`) is
    named as the user gave it (without `data`, as the summary records it: relative to the
    project), with how its labels were read (`MODE_WORDS`)."""
    from pipeline.evaluate.external import MODE_WORDS

    src = summary["source"]
    if line := unreadable_line(src):
        err.print(line, highlight=False, soft_wrap=True)
    report_source(src, len(summary["models"]))  # before the figures: a last line is read too late
    if note := summary.get("uncalibrated"):
        err.print(note, highlight=False, markup=False, soft_wrap=True)
    folder = shown(as_given(data)) if data is not None else src.get("data_dir")
    where = ("test split" if src["kind"] == "test"
             else f"{folder} ({MODE_WORDS.get(src['mode'], src['mode'])})")
    fresh, n = summary.get("new_to_run"), summary["n"]
    if fresh is not None and fresh["n"] == 0:
        _eval_table(f"run {summary['run_id']}: {n} images, {where}: every one trained or "
                    "validated on, so no test", summary["models"])
        sys.stdout.write(f"no figures on new images: the run trained or was validated on all "
                         f"{n} images (or copies of them)\n")
        return
    head = summary if fresh is None or fresh["n"] == n else fresh
    if head is summary:
        _eval_table(f"run {summary['run_id']}: {n} images, {where}", summary["models"])
    else:
        _eval_table(f"run {summary['run_id']}: {fresh['n']} image{'s' * (fresh['n'] > 1)} new "
                    f"to the run, {where} "
                    f"(grey rows: all {n}, the {n - fresh['n']} it trained or validated on "
                    "included)", fresh["models"], beside=(n, summary["models"]))
    _print_eval_lines(head)


def _eval_table(title: str, models: dict, beside: tuple[int, dict] | None = None) -> None:
    """One row per model of `models` (`metrics_summary` dicts); `beside`: (n, the models on all
    n images), each model's figures on them in a grey row under its own (a column more did
    not fit 80 columns)."""
    from rich.table import Table

    from pipeline.names import display_name

    table = Table(title=title)
    cols = {"accuracy": "acc", "balanced_accuracy": "bal acc", "macro_f1": "macro F1",
            "roc_auc": "AUC", "ece": "ECE", "sensitivity": "sens", "specificity": "spec"}
    table.add_column("model")
    for head in cols.values():
        table.add_column(head, justify="right")
    for m, met in models.items():
        table.add_row(display_name(m), *["–" if met.get(c) is None else f"{met[c]:.3f}"
                                         for c in cols])
        if beside:
            every = beside[1][m]
            table.add_row(f"  all {beside[0]}", *["–" if every.get(c) is None else
                                                   f"{every[c]:.3f}" for c in cols],
                          style="dim")
    Console().print(table)


def _print_eval_lines(summary: dict) -> None:
    """The lines under evaluate's table, from `summary` (the evaluation's or its `new_to_run`):
    accuracy CIs, distinct-image accuracies, ECE floors, the verdict and, for two models or
    more, their answers pooled (`evaluate.together.line`)."""
    from pipeline.names import display_name

    for m, ci in summary["ci"].items():
        if m != "difference":
            lo, hi = ci["accuracy"]
            sys.stdout.write(f"{display_name(m)} accuracy 95 % CI [{lo:.3f}, {hi:.3f}]\n")
    for m, met in summary["models"].items():  # copies of one slice weigh as one
        if met.get("n_distinct") is not None and met["n_distinct"] < met["n"]:
            sys.stdout.write(f"{display_name(m)}: {met['n_distinct']} distinct images (exact or "
                             f"near copies counted once), accuracy "
                             f"{met['accuracy_distinct']:.3f}\n")
    floors = {display_name(m): met["ece_if_calibrated"] for m, met in summary["models"].items()
              if met.get("ece_if_calibrated") is not None}
    if floors:  # ECE is biased upward on a finite set: say how far
        sys.stdout.write("ECE a perfectly calibrated model would show on these images: "
                         + ", ".join(f"{m} {v:.3f}" for m, v in floors.items()) + "\n")
    sys.stdout.write(summary["verdict"] + "\n")
    if pooled := summary.get("together"):  # the models' answers pooled (`evaluate.together`)
        from pipeline.evaluate.together import line

        sys.stdout.write(line(pooled) + "\n")


def _print_cv_summary(result: dict) -> None:
    """evaluate --folds: mean ± std per model and metric, the pooled verdict, where files are."""
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
    from pipeline.artifacts import shown_path

    # cv.json records the folder relative to the project; said as messages name paths
    sys.stdout.write(f"per-fold runs and cv.json in {shown(shown_path(result['out_dir']))}\n")


def _print_robustness_summary(result: dict) -> None:
    """evaluate --robustness: accuracy per shift at the middle severity (change from the
    unshifted test images) per model, the unshifted row first; ✗ marks a shift more than
    TARGET_DROP below it ("clean" read as the opposite of "not a clean test" beside it)."""
    from rich.table import Table

    from pipeline.evaluate import SEVERITIES, TARGET_DROP
    from pipeline.names import display_name

    mid = SEVERITIES[1]
    table = Table(title=f"robustness of run {result['run_id']}: {result['n_images']} test "
                        f"images, accuracy at the {mid} severity (change from unshifted)")
    table.add_column("shift")
    models = result["models"]
    for m in models:
        table.add_column(display_name(m), justify="right")
    table.add_row("unshifted", *[f"{v['clean']['accuracy']:.3f}" for v in models.values()])
    for shift, spec in result["shifts"].items():
        cells = []
        for m, v in models.items():
            row = v["shifts"][shift][1]
            flag = "" if result["target"]["met"][m][shift] else " ✗"
            cells.append(f"{row['accuracy']:.3f} ({0.0 - row['accuracy_drop']:+.3f}){flag}")
        table.add_row(f"{shift} ({spec['levels'][1]:.3g})", *cells)
    Console().print(table)
    sys.stdout.write(f"✗ = more than {TARGET_DROP * 100:g} points below unshifted. Shift "
                     "validation on shifted copies of the test split: robustness, not a clean "
                     "test. "
                     f"All severities and tumour sensitivity: robustness.json in run "
                     f"{result['run_id']}.\n")
