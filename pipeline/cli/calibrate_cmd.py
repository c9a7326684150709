"""`calibrate`: fit a run's temperatures on its validation split (pipeline/calibration.py)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from pipeline.cli.common import (
    RUN_DATA_HELP,
    _existing_dir,
    artifacts_option,
    fail,
    one_line,
    print_json,
    progress_bar,
    renamed,
)


def calibrate(
    run_: str = typer.Option("latest", "--run", help="run id, run folder or 'latest'"),
    artifacts_dir: Path = artifacts_option(),
    run_data: Path = typer.Option(None, "--run-data", help=RUN_DATA_HELP),
    data_root: Path = typer.Option(None, "--data-root", hidden=True),  # --run-data's old name
    as_json: bool = typer.Option(False, "--json", help="print calibration.json"),
) -> None:
    """Temperature scaling: one T per model fitted on the run's validation split, stored in
    <run>/calibration.json and applied to every probability shown (with two models, one more
    for their pooled answer). Re-run `evaluate` after."""
    from pipeline.artifacts import ArtifactError, resolve_run
    from pipeline.calibration import FILE, calibrate_run
    from pipeline.data import DatasetError
    from pipeline.locks import run_writer
    from pipeline.names import TOGETHER_LABEL, display_name

    data_root = renamed(run_data, data_root, "--run-data", "--data-root")
    if data_root is not None:
        _existing_dir(data_root, "--run-data folder")
    try:
        run_dir = resolve_run(artifacts_dir, run_)
        with run_writer(run_dir, "calibrate"), progress_bar() as update:
            result = calibrate_run(run_dir, progress=update, data_root=data_root)
    except (ArtifactError, DatasetError) as exc:
        fail(str(exc))
    if as_json:
        print_json(result)
        return
    for m, r in result["models"].items():
        bound = "  [at the search bound]" if r["at_bound"] else ""
        sys.stdout.write(f"{display_name(m)}: T = {r['temperature']:.3f}; validation ECE "
                         f"{r['ece_before']:.3f} -> {r['ece_after']:.3f}, NLL "
                         f"{r['nll_before']:.3f} -> {r['nll_after']:.3f} "
                         f"({r['n']} images){bound}\n")
    if pool := result.get("together"):  # the models' answers pooled (`evaluate.together`)
        sys.stdout.write(f"{TOGETHER_LABEL}: T = {pool['temperature']:.3f}; validation ECE "
                         f"{pool['ece_before']:.3f} -> {pool['ece_after']:.3f} "
                         f"({pool['n']} images)\n")
    # the run's folder, not its id: an id alone is looked up in ./artifacts, which is another
    # run when --artifacts or --run named one elsewhere (a reviewer evaluated the wrong copy)
    sys.stdout.write(f"wrote {one_line(run_dir / FILE)}; run `python -m pipeline evaluate "
                     f"--run {one_line(shlex.quote(str(run_dir)))}` to update the test "
                     "metrics\n")
