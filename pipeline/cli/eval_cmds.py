"""Commands that read a run: `predict`, `evaluate` (metrics, external data, cross-validation) and
`figures`."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer

from pipeline import run_files
from pipeline.cli.class_folders import answer_words, legend_line
from pipeline.cli.common import (
    RUN_DATA_HELP,
    _existing_dir,
    _model_list,
    _open_run,
    _split_models,
    artifacts_option,
    err,
    fail,
    far_tag,
    keep_larger,
    one_line,
    pooled_part,
    print_json,
    progress_bar,
    renamed,
    report_gaps,
    report_unavailable_hints,
    run_ref,
    say,
    shown,
    warning_legend,
    warning_tags,
)
from pipeline.cli.eval_output import (
    _print_cv_summary,
    _print_eval_summary,
    _print_robustness_summary,
)
from pipeline.cli.unreadable import report_inputs, unanswered, unreadable_report
from pipeline.intervals import N_BOOT
from pipeline.known_data import trained_on_sartaj


def predict(
    images_: list[Path] = typer.Argument(..., metavar="IMAGE...", help="image files or folders"),
    run_: str = typer.Option("latest", "--run", help="run id, run folder or 'latest'"),
    artifacts_dir: Path = artifacts_option(),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    out: Path = typer.Option(None, "--out", help="write a CSV here instead of printing: "
                             "streams in chunks, and a rerun skips rows already written"),
    shard: str = typer.Option(None, "--shard", help="i/n: only every n-th file from position "
                              "i (split a large folder over n jobs)"),
    model: str = typer.Option("all", "--model", help="model of the run, comma list, or all "
                              "(as explain takes it)"),
) -> None:
    """Predict each image with the models of a run. Unusable files: one line each, exit 1. A
    series' blank slices are left out with one note per series (exit 0 if the rest are
    answered); a blank file is said to be blank, exit 1."""
    from pipeline.artifacts import ArtifactError
    from pipeline.predict import Predictor, predict_files
    from pipeline.stream import parse_shard, scan_inputs, select_shard

    if as_json and out is not None:  # --json was silently ignored
        fail("--json prints the answers; --out writes them to a CSV: choose one")
    try:
        i, n = parse_shard(shard) if shard else (0, 1)
    except ValueError as exc:
        fail(str(exc))
    inputs = scan_inputs(images_)
    report_inputs(inputs)
    paths = select_shard(inputs.files, (i, n))
    if shard and inputs.files and not paths:  # it printed nothing and exited 0 (a review)
        err.print(f"note: shard {shown(shard)} holds none of the {len(inputs.files)} file(s)",
                  highlight=False, soft_wrap=True)
    run = _open_run(artifacts_dir, run_)
    names = _model_list(model, run.model_names, run.model_names, what="--model",
                        hint=f"run {run.run_id} has {', '.join(run.model_names)} (or all)")
    try:
        predictor = Predictor(run, models=names)
    except ArtifactError as exc:
        fail(str(exc))
    report_gaps(predictor.missing_checks(run_ref(artifacts_dir, run_)))
    report_unavailable_hints()
    if out is not None:
        _predict_to_csv(predictor, paths, out)
        return
    seen: set[str] = set()  # the warnings and splits printed, for the legend
    splits: set[str] = set()
    from pipeline.data.discovery import folders_by_class

    folders = folders_by_class(run.manifest)  # "Healthy" for no_tumor: said beside it

    def each(rows: list[dict], bad: list[tuple[str, str]]) -> None:
        for path, reason in bad:
            report(path, reason)
        if not as_json:  # the answers as they come, not after the last file
            _print_answers(rows, seen, splits, folders)
            sys.stdout.flush()

    # a bar where someone watches: the answers themselves stream to stdout
    try:
        with progress_bar(bar=err.is_terminal) as update, unreadable_report() as report:
            results, failures = predict_files(predictor, paths, progress=update, each=each)
    except KeyboardInterrupt:
        if not as_json:  # the lines printed so far are the answers so far
            raise
        # a review's SIGTERM after 25 s left an empty stdout and "interrupted" alone
        err.print("interrupted: --json prints the answers once every file is done, so none "
                  "were printed; --out FILE.csv keeps each row as it is done, and the same "
                  "command continues it", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    if as_json:
        from pipeline.images import blank_failure

        # a series' blank slices are left out, not errors (the CSV keeps a row for each)
        blank = [p for p, r in failures if blank_failure(r) == "slice"]
        print_json({"run": predictor.run.run_id, "results": results,
                    "errors": [{"path": p, "error": r} for p, r in failures
                               if blank_failure(r) != "slice"],
                    "blank_slices": blank,
                    # the run's class folders of other names: {"no_tumor": ["Healthy"]}
                    **({"class_folder_names": folders} if folders else {})})
    else:
        if line := legend_line(folders, seen):
            err.print(line, highlight=False, markup=False, soft_wrap=True)
        warning_legend(seen, splits, answered=bool(results),
                       sartaj=trained_on_sartaj(run.manifest),
                       n_models=len(run.model_names))  # the run's, as About's
    if unanswered(failures):
        raise typer.Exit(1)


def _print_answers(results: list[dict], seen: set[str], splits: set[str],
                   folders: Mapping[str, list[str]] | None = None) -> None:
    """One line per image: each model's answer with its warnings in brackets (the dashboard's
    words), and its class folder when the run's has another name (`folders`,
    `discovery.folders_by_class`: "no_tumor (class folder: Healthy)"); the warnings, classes
    and the run's splits tagged are added to `seen` and `splits`, for the legend printed once
    at the end (`legend_line`, `warning_legend`). After the models', the answer they give
    together ("averaged: ...", `evaluate.together`), for two models or more."""
    from pipeline.data.membership import SEEN_TAGS, hides_unlike, seen_tag
    from pipeline.evaluate.flags import FLAG_LABELS, not_mri_kind, not_mri_label
    from pipeline.names import NO_TUMOR, percent

    for row in results:
        split = row.get("in_run_split")
        # an image the models trained or were validated on, pixel for pixel, is not "unlike
        # the training data", whatever the score says (the JSON and CSV keep the score's flag);
        # the tag says why. A changed copy keeps the warning (`membership.hides_unlike`).
        own = hides_unlike(split, row.get("in_run_exact"))
        parts = [f"{m}: {answer_words(v['label'], folders or {}, seen)} "
                 f"({percent(max(v['probs'].values()))})"
                 + warning_tags({**v, "unlike": False, "far": False} if own else v, seen)
                 for m, v in row["models"].items()]
        parts += pooled_part(row, folders, seen)  # `evaluate.together`: the answers pooled
        # the image's own tags in a last field: after the last model's answer they read as
        # that model's warnings
        if any(v["label"] == NO_TUMOR for v in row["models"].values()):
            seen.add(NO_TUMOR)  # the legend says once that it rules nothing out
        tags = []
        # first: it makes every answer on the line moot (a header naming another modality
        # than MRI, `evaluate.flags.not_mri_label`, else "may be CT")
        if kind := not_mri_kind(not_mri := row.get("not_mri_modality") or row.get("may_be_ct")):
            tags.append(f"[{not_mri_label(not_mri)}]")
            seen.add(kind)
        tags += far_tag(row, own)  # so does one model's far verdict (the card withholds all)
        if row.get("small_image"):  # `modality.is_small`: the models saw it enlarged
            tags.append(f"[{FLAG_LABELS['small']}]")
            seen.add("small")
        if row.get("may_be_t2"):  # `pipeline.sequence`: a learnt hint
            tags.append(f"[{FLAG_LABELS['t2']}]")
            seen.add("t2")
        if not row["agree"] and len(row["models"]) > 1:
            tags.append(f"[{FLAG_LABELS['disagree']}]")
            seen.add("disagree")
        if split in SEEN_TAGS:  # one of the run's own images: its answer may be no test
            tags.append(tag := seen_tag(split, row.get("in_run_exact")))
            splits.add(tag)  # the legend explains each tag printed
        sys.stdout.write("\t".join([one_line(row["path"]), *parts, *([" ".join(tags)] if tags
                                                                    else [])]) + "\n")


def _predict_to_csv(predictor: Any, paths: list[Path], out: Path) -> None:
    """predict --out: stream into the CSV with a progress bar; unusable files one line each."""
    from pipeline.artifacts import ArtifactError, ensure_writable
    from pipeline.stream import stream_to_csv

    if out.is_dir():  # was an IsADirectoryError traceback
        fail(f"--out {shown(str(out))} is a folder: give the CSV file's path (e.g. "
             f"{shown(str(out / 'predictions.csv'))})")
    try:
        ensure_writable(out.parent, "output folder")
        with progress_bar() as update:
            summary = stream_to_csv(predictor, paths, out, progress=update)
    except (ArtifactError, ValueError) as exc:
        fail(str(exc))
    except OSError as exc:  # a full disk: a traceback before; every row so far is kept
        fail(f"cannot write to {out}: {exc.strerror or exc}; the rows written so far are "
             "kept: free some space and run the same command again to continue", code=1)
    except KeyboardInterrupt:
        err.print(f"interrupted: the rows written so far are in {shown(str(out))}; run the "
                  "same command again to continue", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    with unreadable_report() as report:
        for path, reason in summary["failed"]:
            report(path, reason)
    if summary["columns_left_out"]:  # continued as begun, so its rows stay one table
        err.print(f"note: {shown(str(out))} was begun by an earlier predict: its rows go on "
                  f"without the columns {', '.join(summary['columns_left_out'])} (a new "
                  "--out file has them)", highlight=False, soft_wrap=True)
    sys.stdout.write(f"wrote {summary['written']} row(s) to {one_line(out)}"
                     f" ({summary['already_done']} already there)\n")
    if unanswered(summary["failed"]):
        raise typer.Exit(1)


def evaluate(
    run_: str = typer.Option("latest", "--run", help="run id, run folder or 'latest'"),
    artifacts_dir: Path = artifacts_option(),
    data: Path = typer.Option(None, "--data", help="another dataset to evaluate on instead "
                              "of the run's test split (an external evaluation): "
                              "Training/Testing or class folders (one per class, or yes/no), "
                              "images inside; the run's own dataset moved? --run-data"),
    name: str = typer.Option(None, "--name", help="name of an external evaluation (default: "
                             "the folder's name); files go to <run>/<model>/external/NAME/"),
    run_data: Path = typer.Option(None, "--run-data", help=RUN_DATA_HELP),
    data_root: Path = typer.Option(None, "--data-root", hidden=True),  # --run-data's old name
    folds: int = typer.Option(None, "--folds", help="K-fold cross-validation: retrain every "
                              "model of the run K times with its config on its dataset"),
    cv_model: str = typer.Option(None, "--model", help="with --folds: only these models "
                                 "(comma-separated; default: all of the run's)"),
    # the default in words: rich read "[default: 2000]" as markup and printed nothing of it
    n_boot: int = typer.Option(None, "--n-boot", help="bootstrap resamples for the intervals "
                               "of macro-F1 and of the models' difference (default "
                               f"{N_BOOT}; accuracy's is Wilson's, without resampling)"),
    robustness: bool = typer.Option(False, "--robustness", help="robustness benchmark: the test "
                                    "split under MRI-realistic shifts, three severities each "
                                    "(shift validation, not a clean test); writes "
                                    "<run>/robustness.json"),
    max_images: int = typer.Option(None, "--max-images", help="with --robustness: a seeded "
                                   "random subset of at most N test images"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    replace: bool = typer.Option(False, "--replace", help="with --robustness --max-images: "
                                 "overwrite a robustness.json measured on more images"),
) -> None:
    """Metrics, calibration, curves and a paired model comparison for a run (no retraining)."""
    from pipeline.artifacts import ArtifactError, resolve_run
    from pipeline.data import DatasetError
    from pipeline.evaluate import EvaluationError, cross_validate, evaluate_run, robustness_run
    from pipeline.locks import run_writer

    data_root = renamed(run_data, data_root, "--run-data", "--data-root")
    _check_evaluate_options(n_boot, data, data_root, folds, name, cv_model)
    if n_boot is not None and (robustness or folds is not None):
        fail("--n-boot sets the bootstrap of the metrics' intervals; --robustness and --folds "
             "do not bootstrap")
    _check_robustness_options(robustness, max_images, data, name, folds, cv_model)
    if replace and not (robustness and max_images is not None):
        fail("--replace overwrites a robustness.json measured on more images: it goes with "
             "--robustness --max-images")
    try:
        run_dir = resolve_run(artifacts_dir, run_)
        with run_writer(run_dir, "evaluate"):  # one writer per run (locks)
            if robustness and max_images is not None and not replace:
                keep_larger(run_dir / run_files.ROBUSTNESS, ("n_images",), max_images,
                            run_files.ROBUSTNESS, "pass --replace to overwrite it")
            with progress_bar() as update:
                if robustness:
                    summary = robustness_run(run_dir, progress=update, max_images=max_images,
                                             data_root=data_root)
                elif folds is not None:
                    cv_models = _split_models(cv_model) if cv_model else None
                    summary = cross_validate(run_dir, folds, data_root=data_root, progress=update,
                                             say=say, models=cv_models)
                else:
                    summary = evaluate_run(run_dir, data_dir=data, name=name, progress=update,
                                           data_root=data_root, n_boot=n_boot or N_BOOT)
    except (EvaluationError, DatasetError, ArtifactError) as exc:
        fail(str(exc))
    if as_json:
        print_json(summary)
    elif robustness:
        _print_robustness_summary(summary)
    elif folds is not None:
        _print_cv_summary(summary)
    else:
        _print_eval_summary(summary, data)


def _check_evaluate_options(n_boot: int | None, data: Path | None, data_root: Path | None,
                            folds: int | None, name: str | None, cv_model: str | None) -> None:
    """Fail in one line on evaluate options out of range, missing folders or a bad combination
    (--model without --folds; --folds with --data or --name)."""
    if n_boot is not None and n_boot < 100:
        fail(f"--n-boot must be at least 100, got {n_boot}")
    if data is not None:
        _existing_dir(data, "data folder")
    if data_root is not None:
        _existing_dir(data_root, "--run-data folder")
    if cv_model is not None and folds is None:
        fail("--model only applies to cross-validation (--folds K)")
    if folds is not None and (folds < 2 or data is not None or name is not None):
        fail(f"--folds must be at least 2, got {folds}" if folds < 2 else
             "--folds cross-validates on the run's own dataset; it cannot be combined with "
             "--data/--name (use --run-data if the run's dataset moved)")


def _check_robustness_options(robustness: bool, max_images: int | None, data: Path | None,
                              name: str | None, folds: int | None, cv_model: str | None) -> None:
    """Fail in one line on --max-images without --robustness or below 1, and on --robustness
    with --data/--name/--folds/--model (it shifts the run's own test split)."""
    if max_images is not None and not robustness:
        fail("--max-images only applies to the robustness benchmark (--robustness)")
    # options that were taken and ignored (a review): refused as --max-images is
    if name is not None and data is None:
        fail("--name names an external evaluation: give it with --data")
    if max_images is not None and max_images < 1:
        fail(f"--max-images must be at least 1, got {max_images}")
    if robustness and (data is not None or name is not None or folds is not None
                       or cv_model is not None):
        fail("--robustness shifts the run's own test split; it cannot be combined with "
             "--data/--name/--folds/--model (use --run-data if the run's dataset moved)")


def figures(
    run_: str = typer.Option("latest", "--run", help="run id, run folder or 'latest'"),
    artifacts_dir: Path = artifacts_option(),
    out: Path = typer.Option(Path("docs/figures"), "--out", help="where the PNGs and table go"),
    replace: bool = typer.Option(False, "--replace", help="overwrite another run's figures in "
                                 "--out (refused without it)"),
) -> None:
    """Render the README's confusion matrices, training curves and results.md from a run.

    results.md names the run, its test set (main split, or the official Testing/ folder: shift
    validation), the date and the interval methods; then the test table and, where the run has
    them, robustness, the warnings' record and each `evaluate --data` folder's figures. The
    dashboard's Overview offers the same file ("Results as Markdown"). A model whose
    metrics.json or confusion_matrix.json is missing or damaged: one error line each, with
    the fix, and the exit code is 1 (the files are written, but not citable); its row in
    results.md says so for metrics.json, the confusion figure leaves it out for
    confusion_matrix.json. A missing or damaged history.json: a warning line naming it,
    and the training curves say which model they leave out (only training writes the file). A
    damaged comparison.json, robustness.json or flags.json: a warning line naming it and its
    fix, which results.md's last section repeats.

    --out holds one run's figures: a folder holding another run's is refused in one line
    unless --replace (running figures again for the same run overwrites them)."""
    from pipeline.artifacts import ArtifactError, ensure_writable
    from pipeline.report import figure_problems, history_problems, make_figures
    from pipeline.results_md import section_problems

    run = _open_run(artifacts_dir, run_)
    try:
        ensure_writable(out, "output folder")  # a read-only place: one line, not a traceback
    except ArtifactError as exc:
        fail(str(exc))
    ref = run_ref(artifacts_dir, run_)
    try:
        written = make_figures(run, out, ref, replace=replace)
    except ValueError as exc:  # another run's figures there
        fail(str(exc))
    for path in written:
        sys.stdout.write(f"{path}\n")
    sys.stdout.write(f"from run {run.run_id}\n")
    for line in history_problems(run).values():  # curves without a model, said
        err.print(f"warning: {line}", highlight=False, markup=False, soft_wrap=True)
    for line in section_problems(run, ref).values():  # a section dropped, said
        err.print(f"warning: {line}", highlight=False, markup=False, soft_wrap=True)
    problems = figure_problems(run, ref)
    for line in problems.values():  # a model left out silently read as a complete table
        err.print(f"error: {line}", highlight=False, markup=False, soft_wrap=True)
    if problems:
        fail(f"results.md and the figures leave out what the {len(problems)} file(s) above "
             "hold: fix them and run figures again", 1)
