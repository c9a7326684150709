"""What the commands that open a run say of one they cannot open: an interrupted run (its hidden
`runs/.tmp-<id>` folder, which `train --resume` continues) and a manifest that does not say the
run is complete (which it does not)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pipeline import locks
from pipeline.artifacts import (
    SCHEMA_VERSION,
    TMP_PREFIX,
    ArtifactError,
    RunWriter,
    open_run,
    resolve_run,
    write_json_atomic,
)

ID = "20261201-000000-abc123"


def _interrupted(artifacts: Path) -> Path:
    """A run's temporary folder as a stopped `train` leaves it (run.json written first)."""
    writer = RunWriter(artifacts)
    writer.write_json("run.json", {"data_dir": str(artifacts), "models": ["custom_cnn"]})
    return writer.tmp


def _refusal(run_id: str, out: str) -> str:
    return (f"run '{run_id}' is an interrupted run (its training stopped before the end): "
            f"continue it with `python -m pipeline train --resume {run_id}{out}`, or remove it "
            f"with `python -m pipeline train --discard {run_id}{out}`")


def test_an_interrupted_run_is_named_with_the_commands_that_continue_or_remove_it(
        tmp_path, monkeypatch) -> None:
    """`predict --run <id>` said "not found (recent runs: ...)" of an interrupted run, and
    `--run .tmp-<id>` "missing file runs/.tmp-.../manifest.json" (a review of the CLI). Only
    `resolve_run` (every --run) refuses it: training evaluates its run with `open_run` there."""
    art = tmp_path / "art"
    tmp = _interrupted(art)
    run_id = tmp.name[len(TMP_PREFIX):]
    RunWriter(art, run_id, resume=True)  # what the message sends to: `train --resume` takes it
    said = "^" + re.escape(_refusal(run_id, f" --out {art}")) + "$"
    for given in (run_id, tmp.name, str(tmp)):
        with pytest.raises(ArtifactError, match=said):
            resolve_run(art, given)
    (tmp / "manifest.json").write_text('{"complete": true}')  # killed during the evaluation
    for given in (str(tmp), str(tmp / "manifest.json")):
        with pytest.raises(ArtifactError, match=said):
            resolve_run(art, given)
    monkeypatch.setenv("BRAIN_MRI_ARTIFACTS", str(art))  # the default folder: no --out
    with pytest.raises(ArtifactError, match="^" + re.escape(_refusal(run_id, "")) + "$"):
        open_run(run_id)
    with locks.run_writer(tmp, "train"), pytest.raises(
            ArtifactError, match=rf"^run '{run_id}' is being trained now \(in .*\); open it "
                                 r"once its training has finished$"):
        resolve_run(art, run_id)  # a live training's folder is no interrupted run


def test_predict_names_an_interrupted_run_in_one_line(tmp_path) -> None:
    from PIL import Image
    from typer.testing import CliRunner

    from pipeline.cli import app

    art = tmp_path / "art"
    tmp = _interrupted(art)
    run_id = tmp.name[len(TMP_PREFIX):]
    image = tmp_path / "head.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(image)
    for given in (run_id, tmp.name):
        r = CliRunner().invoke(app, ["predict", "--run", given, "--artifacts", str(art),
                                     str(image)])
        assert r.exit_code == 2, r.output
        assert r.stderr == f"error: {_refusal(run_id, f' --out {art}')}\n"


def test_an_incomplete_manifest_names_no_resume_that_train_refuses(tmp_path) -> None:
    """A run folder whose manifest says complete: false was to be resumed with `train --resume
    <id>`, which then said "no interrupted run ... (that run is already complete)"."""
    art = tmp_path / "art"
    folder = art / "runs" / ID
    folder.mkdir(parents=True)
    write_json_atomic(folder / "manifest.json", {"schema_version": SCHEMA_VERSION,
                                                 "complete": False, "class_names": ["a", "b"],
                                                 "models": {"custom_cnn": {}}})
    with pytest.raises(ArtifactError, match="no interrupted run"):
        RunWriter(art, ID, resume=True)
    with pytest.raises(ArtifactError) as info:
        open_run(resolve_run(art, ID))
    assert str(info.value) == (
        f'run {ID} is incomplete: its manifest lacks "complete": true, which training writes '
        "last; copy the whole run again or train a new one (`train --resume` continues only "
        "interrupted runs, kept as runs/.tmp-<id>)")


def test_an_empty_run_is_refused_not_read_as_latest(tmp_path) -> None:
    """`--run ""` silently meant the latest run (a review of the CLI)."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    art = tmp_path / "art"
    (art / "runs" / ID).mkdir(parents=True)
    (art / "latest").write_text(ID + "\n")
    said = "the run's name is empty: give a run folder, a run id or 'latest'"
    with pytest.raises(ArtifactError, match=f"^{re.escape(said)}$"):
        resolve_run(art, "")
    assert resolve_run(art, "latest") == resolve_run(art) == art / "runs" / ID
    r = CliRunner().invoke(app, ["calibrate", "--run", "", "--artifacts", str(art)])
    assert r.exit_code == 2 and r.stderr == f"error: {said}\n", r.output
