"""`explain-eval`: measure a run's explanation quality and print it as a table.

The command checks its options, refuses (without --replace) to overwrite a larger measurement
or the default's (`cli.common.keep_larger`, `explain.defaults.not_the_default`), runs
`explain.quality.explain_eval` with a progress bar, and prints one column per model. One command
per module, like `calibrate_cmd` and `ood_cmd`; the work itself lives in `pipeline.explain`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from pipeline import run_files
from pipeline.cli.common import (
    METHOD_HELP,
    RUN_DATA_HELP,
    _existing_dir,
    _split_models,
    artifacts_option,
    err,
    fail,
    keep_larger,
    print_json,
    progress_bar,
    report_gaps,
    report_source,
    say,
    shown,
)
from pipeline.explain.alarm import OUTSIDE_HEAD_MESSAGE
from pipeline.names import DELETION_STEPS, EXPLAIN_EVAL_IMAGES

if TYPE_CHECKING:
    from pipeline.artifacts import Run


def explain_eval_cmd(
    run_: str = typer.Option("latest", "--run", help="run id, run folder or 'latest'"),
    data: Path = typer.Option(None, "--data", help="another folder to measure, as evaluate "
                              "--data: Training/Testing, one folder per class, or yes/no, all "
                              "its images (tumour images alone: put them in yes/); a folder "
                              "holding the run's test split is read as the run's own dataset "
                              "(--run-data, the old meaning, kept)"),
    run_data: Path = typer.Option(None, "--run-data", help=RUN_DATA_HELP + "; its test split "
                                  "is measured into explanations.json"),
    masks: Path = typer.Option(None, "--masks", help="tumour masks, one per image at the "
                               "image's relative path and file name, any image extension "
                               "(glioma/scan.jpg -> MASKS/glioma/scan.png; not scan_mask.png); "
                               "the image's pixel size, or its aspect ratio (then resized); "
                               "non-zero = tumour, so save masks as PNG (JPEG artefacts count "
                               "as tumour). Default: the dataset's boxes folder, else "
                               "DATA/masks"),
    out_name: str = typer.Option(None, "--name", help="external folder only: file name under "
                             "<run>/<model>/explanations-external/ (default: "
                             "<folder>-<method>, so each method's result is kept)"),
    method: str = typer.Option(None, "--method", help=METHOD_HELP + " (default: "
                               "each model's default from explain-choose, else gradcam)"),
    max_images: int = typer.Option(EXPLAIN_EVAL_IMAGES, "--max-images", help="images per "
                                   "model scored in full (balanced over labels, images with a "
                                   "mask first)"),
    max_localisation: int = typer.Option(None, "--max-localisation", help="further images "
                                         "with a mask, scored for localisation and the "
                                         "shortcut alarm only (default: all; 0: none)"),
    model: str = typer.Option("all", "--model", help="model of the run, comma list, or all"),
    steps: int = typer.Option(DELETION_STEPS, "--steps", help="deletion/insertion steps"),
    baseline: str = typer.Option("blur", "--baseline", help="removed pixels become: blur | black"),
    layer: str = typer.Option(None, "--layer", help="conv layer to explain (default: each "
                              "model's layer from explain-choose, else its gradcam_layer from "
                              "the manifest)"),
    artifacts_dir: Path = artifacts_option(),
    as_json: bool = typer.Option(False, "--json", help="print the results as JSON"),
    replace: bool = typer.Option(False, "--replace", help="overwrite a run's explanations.json "
                                 "measured on more images than --max-images, or measure "
                                 "another method or layer than the model's default there (or "
                                 "than the --name file's, on an external folder)"),
) -> None:
    """Measure explanation quality (localisation, faithfulness, sanity, shortcut alarm); writes
    <run>/<model>/explanations.json (external folders: explanations-external/<folder>-<method>.json,
    or --name)."""
    from pipeline.artifacts import ArtifactError, open_run, resolve_run
    from pipeline.explain import explain_eval
    from pipeline.explain.defaults import method_at, not_the_default, stale_measurement
    from pipeline.explain.quality import holds_test_split
    from pipeline.locks import run_writer

    _check_explain_eval_options(method, baseline, max_images, steps)
    if max_localisation is not None and max_localisation < 0:
        fail(f"--max-localisation must be 0 or more, got {max_localisation}")
    if data is not None and run_data is not None:
        fail("--data is another folder to measure, --run-data the run's own dataset where it "
             "moved: give one")
    if run_data is not None and out_name is not None:
        fail("--name names an external folder's result (--data); --run-data is the run's own "
             "dataset, measured into explanations.json")
    if data is not None:
        _existing_dir(data, "data folder")
    if run_data is not None:
        _existing_dir(run_data, "--run-data folder")
    if masks is not None:
        _existing_dir(masks, "masks folder")
    try:
        run_dir = resolve_run(artifacts_dir, run_)
        with run_writer(run_dir, "explain-eval"):  # one writer per run (locks)
            names = None if model == "all" else _split_models(model)
            run = open_run(run_dir)
            for name in names or []:
                run.model_info(name)
            if run_data is not None:  # said, never measured as an external folder instead
                if not holds_test_split(run, run_data):
                    fail(f"--run-data {shown(str(run_data))} does not hold run {run.run_id}'s test "
                         "split (not half of its files are there): to measure another folder, "
                         "use --data")
                data = run_data
            # the run's own test split, found by default or given with --data (a checkout where the
            # recorded path does not resolve): explanations.json, which the guards protect
            own = data is None or holds_test_split(run, data)  # (a file look-up per image)
            # explanations.json of an earlier default, which this measurement replaces
            stale = {n: held for n in names or run.model_names
                     if own and (held := stale_measurement(run, n))}
            if not replace and own:
                for name in names or run.model_names:
                    keep_larger(run.path / name / run_files.EXPLANATIONS, ("n_faithfulness", "n"),
                                max_images, f"{name}/explanations.json",
                                "pass --max-images {n} or more, or --replace to overwrite it",
                                instead=not_the_default(run, name, method, layer))
            with progress_bar() as update:
                results = explain_eval(run_dir, data_dir=data, masks_dir=masks, method=method,
                                       max_images=max_images, progress=update, models=names,
                                       steps=steps, baseline=baseline, layer=layer, name=out_name,
                                       max_localisation=max_localisation, replace=replace)
    except (ArtifactError, ValueError) as exc:
        fail(str(exc))
    report_gaps([r["layer_note"] for r in results.values() if r.get("layer_note")])
    for name, held in stale.items():  # what was thrown away, said (a review)
        if name in results:
            now = method_at(results[name]["method"], results[name].get("layer"))
            say(f"note: {name}/explanations.json held {held}, no longer the default: "
                f"replaced by this measurement of {now}")
    first = next(iter(results.values()))
    if first["source"].get("kind") == "external":  # copies of training images, ignored folders
        report_source(first["source"], len(results))
    _report_masks(results)
    if as_json:
        print_json({m: {k: v for k, v in r.items() if k != "rows"} for m, r in results.items()})
    else:
        _print_explain_quality(results, run_dir, run)


def _check_explain_eval_options(method: str | None, baseline: str, max_images: int,
                                steps: int) -> None:
    """Fail in one line on an unknown --method/--baseline or --max-images/--steps out of range."""
    from pipeline.explain import BASELINES, METHODS

    if method is not None and method not in METHODS:
        fail(f"unknown --method {method!r}; choose one of {', '.join(METHODS)}")
    if baseline not in BASELINES:
        fail(f"unknown --baseline {baseline!r}; choose one of {', '.join(BASELINES)}")
    if max_images < 1:
        fail(f"--max-images must be at least 1, got {max_images}")
    if not 1 <= steps <= 200:
        fail(f"--steps must be between 1 and 200, got {steps}")


def _fmt(value: object, digits: int = 3) -> str:
    """A score with `digits` decimals, or "–" when it could not be computed."""
    return "–" if value is None else f"{value:.{digits}f}"


def _print_explain_quality(results: dict[str, dict], run_dir: Path, run: Run) -> None:
    """explain-eval's table (one column per model, named as evaluate's rows are), the two
    default heatmaps' record when both models were measured (`agreement.record_line`), then
    where the files were written."""
    from rich.table import Table

    from pipeline.names import display_name

    methods = ", ".join(f"{display_name(m)}: {r['method']}"
                        + (f" at {r['layer']}" if r.get("layer") else "")
                        for m, r in results.items())
    table = Table(title=f"explanation quality ({methods}), run {run_dir.name}")
    # A row per measure, a column per model: ten columns, one per measure, broke mid-word at
    # 80 columns (piped output, a standard terminal): "custo / m_cnn", "delet / ion".
    table.add_column("measure")
    for m in results:
        table.add_column(display_name(m), justify="right", overflow="fold")
    rows = {
        "images": lambda r: str(r["n"]),
        "with a mask": lambda r: str(r["n_localisation"]),
        "pointing game (chance)": lambda r: (f"{_fmt(r['pointing_game'], 2)} "
                                             f"({_fmt(r['pointing_game_chance'], 2)})"),
        # the Wilson interval the JSON holds: 6 hits of 7 is anything from 0.49 to 0.97
        "  95 % interval": lambda r: ("–" if not r.get("pointing_game_ci") else
                                     f"[{r['pointing_game_ci'][0]:.2f}, "
                                     f"{r['pointing_game_ci'][1]:.2f}]"),
        "energy in mask (chance)": lambda r: (f"{_fmt(r['energy_in_mask'])} "
                                              f"({_fmt(r['energy_in_mask_chance'])})"),
        "deletion AUC (random)": lambda r: (f"{_fmt(r['deletion_auc'])} "
                                            f"({_fmt(r['deletion_auc_random'])})"),
        "insertion AUC (random)": lambda r: (f"{_fmt(r['insertion_auc'])} "
                                             f"({_fmt(r['insertion_auc_random'])})"),
        "ROAD MoRF / LeRF AUC": lambda r: (f"{_fmt(r.get('road_morf_auc'))} / "
                                           f"{_fmt(r.get('road_lerf_auc'))}"),
        "sanity check ρ": lambda r: _fmt(r["sanity_rank_correlation"], 2),
        "outside the head (rate)": lambda r: (f"{r['n_outside_head_flagged']} "
                                              f"({_fmt(r['outside_head_alarm_rate'], 2)})"),
    }
    for name, cell in rows.items():
        table.add_row(name, *[cell(r) for r in results.values()])
    Console().print(table)
    for name, r in results.items():
        m = display_name(name)
        if r.get("localisation_reason"):
            sys.stdout.write(f"{m}: no localisation scores ({r['localisation_reason']})\n")
        else:
            sys.stdout.write(f"{m}: localisation on the {r['n_localisation']} of {r['n']} images "
                             "with a non-empty mask; faithfulness and sanity on "
                             f"{r.get('n_faithfulness', r['n'])}\n")
        if r.get("n_empty_heatmaps"):
            sys.stdout.write(f"{m}: {r['n_empty_heatmaps']} of {r['n']} heatmaps are empty (no "
                             "positive evidence for the explained class); they miss the pointing "
                             "game and put no energy in the box\n")
        if r["n_outside_head_flagged"]:
            sys.stdout.write(f"{m}: {r['n_outside_head_flagged']} of {r['n']} heatmaps flagged: "
                             f"{OUTSIDE_HEAD_MESSAGE} ({r['outside_head_rule']})\n")
    from pipeline.explain.agreement import default_apart_record, record_line

    # do the two default maps peak far apart, and what did that mean here (the Predict page's
    # and explain's warning, measured on these images)
    record = default_apart_record(run, results)
    if record:
        sys.stdout.write(f"{record_line(record)}\n")
    modes = {r["target_mode"] for r in results.values()}
    sys.stdout.write("explained class: " + ", ".join(sorted(
        _TARGET_WORDS.get(mode, mode) for mode in modes)) + "\n")
    sys.stdout.write(f"written: {', '.join(r['written'] for r in results.values())} in "
                     f"{run_dir}\n")


def _report_masks(results: dict[str, dict]) -> None:
    """On stderr (with --json too): the images and masks that could not be used, how many masks
    were resized to their image, and how many look inverted. Every model meets the same mask
    files, so the largest count is said once."""
    _report_failed(results)
    resized = max(int(r.get("n_masks_resized") or 0) for r in results.values())
    if resized:
        err.print(f"note: {resized} mask(s) of another pixel size than their image, with its "
                  "aspect ratio, were resized to it (nearest neighbour)", highlight=False)
    mostly = max(int(r.get("n_masks_mostly") or 0) for r in results.values())
    if mostly:
        share = next(iter(results.values())).get("mostly_mask_share", 0.5)
        err.print(f"[yellow]warning:[/] {mostly} mask(s) mark more than {share:.0%} of their "
                  "image as tumour: probably inverted (tumour must be non-zero, the rest 0)",
                  highlight=False)


def _report_failed(results: dict[str, dict]) -> None:
    """Images and masks explain-eval could not use, on stderr: the count and the first few
    reasons (a mask of another size, a damaged file); they were only in the JSON's `failed`.
    Every model meets the same files, so each is said once."""
    failed: dict[str, str] = {}
    for r in results.values():
        for f in r.get("failed") or []:
            failed.setdefault(str(f.get("path")), str(f.get("error")))
    n = max((int(r.get("n_failed") or 0) for r in results.values()), default=0)
    if not n:
        return
    err.print(f"[yellow]{n} image(s) or mask(s) could not be used[/] (listed in the JSON's "
              "`failed`):", highlight=False)
    for path, reason in list(failed.items())[:3]:
        err.print(f"  {shown(path)}: {shown(reason)}", highlight=False, soft_wrap=True)


_TARGET_WORDS = {"true": "the true class",
                 "most-probable-tumour-class": "the model's most probable tumour class "
                                               "(the folder only says 'tumor')",
                 "mixed": "the true class where the label is a run class, else the model's most "
                          "probable tumour class"}
