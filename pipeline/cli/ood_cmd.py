"""`ood`: fit each model's "unlike the training data" score for a run and measure it."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from pipeline.cli.common import (
    RUN_DATA_HELP,
    _existing_dir,
    _open_run,
    artifacts_option,
    fail,
    one_line,
    progress_bar,
    renamed,
)


def ood(
    run_: str = typer.Option("latest", "--run", help="run id, run folder or 'latest'"),
    artifacts_dir: Path = artifacts_option(),
    run_data: Path = typer.Option(None, "--run-data", help=RUN_DATA_HELP),
    data_root: Path = typer.Option(None, "--data-root", hidden=True),  # --run-data's old name
) -> None:
    """Out-of-distribution score per model (fitted on training features, threshold from
    validation), saved in the run; prints how well it tells test images from foreign and from
    shifted ones. `train` fits it already: this refits older runs."""
    from pipeline.artifacts import ArtifactError
    from pipeline.evaluate.flags import flag_summary
    from pipeline.locks import run_writer
    from pipeline.names import display_name
    from pipeline.ood import ood_run

    data_root = renamed(run_data, data_root, "--run-data", "--data-root")
    if data_root is not None:  # was checked only once the stage looked for its images
        _existing_dir(data_root, "--run-data folder")
    run = _open_run(artifacts_dir, run_)
    with progress_bar() as update:
        try:
            with run_writer(run.path, "ood"):
                report = ood_run(run.path, progress=update, data_root=data_root)
        except (ArtifactError, ValueError) as exc:
            fail(str(exc))
    for m, e in report["models"].items():
        aurocs = ", ".join(f"{k} {v:.3f}" for k, v in e["auroc"].items())
        sys.stdout.write(f"{display_name(m)}: layer {e['layer']}, threshold "
                         f"{e['threshold']:.2f}, test images "
                         f"flagged {e['test_flagged']:.1%}; AUROC vs test: {aurocs}\n")
        shifted = ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in e["shift_auroc"].items())
        sys.stdout.write(f"{display_name(m)}: AUROC test vs shifted "
                         f"({report['shifts']['severity']}): {shifted}\n")
        far = ", ".join(f"{k} {v:.0%}" for k, v in e["far"].items())
        sys.stdout.write(f"{display_name(m)}: far unlike (threshold {e['far_threshold']:.2f}, "
                         f"answers folded away): test images {e['test_far']:.1%}; {far}\n")
    for m, rows in report.get("flags", {}).get("models", {}).items():
        sys.stdout.write(f"{display_name(m)}, test answers right when flagged / not: "
                         f"{flag_summary(rows)}\n")
    # where it went (a reviewer found no trace of the files it had written)
    sys.stdout.write(f"wrote ood.json, flags.json, split_hashes.json and <model>/ood.npz in "
                     f"{one_line(run.path)}\n")
