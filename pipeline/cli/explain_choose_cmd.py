"""`explain-choose`: choose each model's default explanation method and layer.

The command checks its options, refuses (without --replace) to overwrite a choice made on more
images, runs `explain.choice.choose_defaults` on validation images with a box and prints each
model's choice. One command per module, like `calibrate_cmd` and `ood_cmd`; the work itself
lives in `pipeline.explain.choice`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from pipeline.cli.common import (
    RUN_DATA_HELP,
    _existing_dir,
    _split_models,
    artifacts_option,
    as_given,
    fail,
    keep_larger,
    progress_bar,
    renamed,
    say,
    shown,
)
from pipeline.explain.choice import CENTRE_BASELINE, CHOOSE_MAX_IMAGES


def explain_choose_cmd(
    run_: str = typer.Option("latest", "--run", help="run id, run folder or 'latest'"),
    run_data: Path = typer.Option(None, "--run-data", help=RUN_DATA_HELP),
    data: Path = typer.Option(None, "--data", hidden=True),  # --run-data's old name here
    masks: Path = typer.Option(None, "--masks", help="tumour masks at the images' relative "
                               "paths (default: the dataset's boxes folder, else "
                               "RUN_DATA/masks)"),
    max_images: int = typer.Option(CHOOSE_MAX_IMAGES, "--max-images", help="validation "
                                   "images with a box (balanced over labels)"),
    model: str = typer.Option("all", "--model", help="model of the run, comma list, or all"),
    artifacts_dir: Path = artifacts_option(),
    replace: bool = typer.Option(False, "--replace", help="overwrite a model's choice made on "
                                 "more images than --max-images"),
) -> None:
    """Choose each model's default method and layer by pointing game on VALIDATION images with
    a box; writes <run>/explain_choice.json (other models' choices kept), which explain and the
    dashboard then use. Each model's choice is printed with the centre-of-head baseline on the
    same images (a map always peaking at the head's centre), which a heatmap should beat."""
    from pipeline.artifacts import ArtifactError, open_run, resolve_run
    from pipeline.explain.choice import CHOICE_FILE, choose_defaults
    from pipeline.locks import run_writer

    if max_images < 1:
        fail(f"--max-images must be at least 1, got {max_images}")
    data = renamed(run_data, data, "--run-data", "--data")
    for folder, what in ((data, "--run-data folder"), (masks, "masks folder")):
        if folder is not None:
            _existing_dir(folder, what)
    try:
        run_dir = resolve_run(artifacts_dir, run_)
        with run_writer(run_dir, "explain-choose"):  # one writer per run (locks)
            run = open_run(run_dir)
            names = run.model_names if model == "all" else _split_models(model)
            for name in names:
                run.model_info(name)  # an unknown name fails before the check below
            if not replace:
                for name in names:
                    keep_larger(run.path / CHOICE_FILE, ("n_images",), max_images,
                                f"{name}'s default explanation in {CHOICE_FILE}",
                                "pass --max-images {n} or more, or --replace to overwrite it",
                                within=("models", name))
            with progress_bar() as update:
                result = choose_defaults(run_dir, data_dir=data, masks_dir=masks,
                                         max_images=max_images, models=names, progress=update,
                                         say=lambda text: say(shown(text)),  # a path: not markup
                                         replace=replace)
    except (ArtifactError, ValueError) as exc:
        fail(str(exc))
    for m, r in result["models"].items():
        where = f"{m}: {r.get('method')} at {r.get('layer') or '(input pixels)'}"
        if m in names:
            sys.stdout.write(f"{where}: pointing {r['pointing_game']:.2f} (chance "
                             f"{r['chance']:.2f}) on {r['n_images']} validation images with a "
                             "box\n")
        else:  # an earlier entry, whatever it holds: printed, never a crash
            sys.stdout.write(f"{where}: kept, chosen earlier on {r.get('n_images', '?')} "
                             "validation images\n")
        centre = r.get("pointing_game_centre")  # none in an entry chosen before 2026-12-06
        if isinstance(centre, (int, float)) and not isinstance(centre, bool):
            sys.stdout.write(f"{m}: {CENTRE_BASELINE}: pointing {centre:.2f} on the same "
                             "images\n")
    sys.stdout.write(f"written: {CHOICE_FILE} in {as_given(run_dir)}\n")
    from pipeline.artifacts import open_run
    from pipeline.explain.defaults import stale_measurement

    run = open_run(run_dir)
    for m in names:  # the quality page shows explanations.json as the default's measurement
        if held := stale_measurement(run, m):
            say(f"note: {m}/explanations.json measures {held}, no longer {m}'s default: run "
                f"python -m pipeline explain-eval --run {as_given(run_dir)} --model {m} to "
                "measure the new default")
