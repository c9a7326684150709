"""A run without calibration.json, an ood.npz or split_hashes.json says so, with its fix, in
`predict`, `explain` and the dashboard: before, its answers just lacked those warnings."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.artifacts import open_run
from pipeline.calibration import FILE as CALIBRATION_FILE
from pipeline.cli import app
from pipeline.data.membership import FILE as SPLITS_FILE
from pipeline.ood import MODEL_FILE
from pipeline.predict import Predictor

pytestmark = pytest.mark.slow  # uses the trained smoke run


def _copy(smoke_run: Path, tmp_path: Path) -> Path:
    """A complete copy of the smoke run (trained without calibration: calibrated here)."""
    from pipeline.calibration import calibrate_run, read_low_confidence

    run = tmp_path / "artifacts" / "runs" / smoke_run.name
    shutil.copytree(smoke_run, run)
    if not read_low_confidence(run):
        calibrate_run(run)
    return run


def _notes(result) -> list[str]:
    return [ln for ln in result.stderr.splitlines() if ln.startswith("note: ")]


def test_a_complete_run_has_no_gaps(smoke_run: Path, synth_data: Path, tmp_path: Path):
    run = _copy(smoke_run, tmp_path)
    predictor = Predictor(open_run(run))
    assert predictor.missing_checks() == []
    image = next((synth_data / "Testing").rglob("*.png"))
    result = CliRunner().invoke(app, ["predict", "--run", str(run), str(image)])
    assert result.exit_code == 0, result.output
    assert _notes(result) == []


def test_missing_run_files_are_named_with_a_fix_that_works(smoke_run: Path, synth_data: Path,
                                                           tmp_path: Path):
    run = _copy(smoke_run, tmp_path)
    (run / CALIBRATION_FILE).unlink()
    (run / "mobilenetv2" / MODEL_FILE).unlink()
    (run / SPLITS_FILE).write_text("{damaged")  # unreadable counts as missing
    gaps = Predictor(open_run(run)).missing_checks()
    assert [g.what for g in gaps] == [
        "Custom CNN and MobileNetV2: probabilities not calibrated and no answer is marked weak "
        f"(no {CALIBRATION_FILE})",
        f"MobileNetV2: no image is marked unlike the training data (no {MODEL_FILE})",
        f"the run's own training, validation and test images are not recognised (no readable "
        f"{SPLITS_FILE})"]
    # raw probabilities asked for: only the threshold is missing
    raw = Predictor(open_run(run), calibrated=False).missing_checks()
    assert raw[0].what.startswith("Custom CNN and MobileNetV2: no answer is marked weak")

    image = str(next((synth_data / "Testing").rglob("*.png")))
    artifacts = str(run.parent.parent)
    runner = CliRunner()
    for args in (["predict", image], ["explain", image, "--out", str(tmp_path / "ex")]):
        result = runner.invoke(app, [*args, "--run", run.name, "--artifacts", artifacts])
        assert result.exit_code == 0, result.output
        notes = _notes(result)
        assert len(notes) == 3, result.stderr
        # the fix names the run as it was given, --artifacts included
        assert f"`python -m pipeline calibrate --run {run.name} --artifacts {artifacts}`" \
            in notes[0]
        assert f"`python -m pipeline ood --run {run.name} --artifacts {artifacts}`" in notes[1]
        assert "\t" in result.stdout  # the answers still come

    # the fix offered works: calibrating removes that gap, and only that one; a Predictor
    # already open (the dashboard's) sees it too, through its cache of calibration.json
    before = Predictor(open_run(run))
    assert len(before.missing_checks()) == 3
    fix = runner.invoke(app, ["calibrate", "--run", run.name, "--artifacts", artifacts])
    assert fix.exit_code == 0, fix.output
    for predictor in (before, Predictor(open_run(run))):
        left = predictor.missing_checks()
        assert [g.command.split()[3] for g in left] == ["ood", "ood"]


def test_the_dashboard_s_rerun_does_not_read_calibration_again(smoke_run: Path, tmp_path: Path,
                                                                monkeypatch):
    """The dashboard asks for the gaps on every rerun: they come from the Predictor's cache of
    calibration.json (read again only when the file changes), not from two fresh reads."""
    import pipeline.calibration as cal

    predictor = Predictor(open_run(_copy(smoke_run, tmp_path)))
    want = predictor.missing_checks()

    def no_read(*_args, **_kwargs):
        raise AssertionError("calibration.json read again")

    monkeypatch.setattr(cal, "read_calibration", no_read)
    monkeypatch.setattr(cal, "read_temperatures", no_read)
    monkeypatch.setattr(cal, "read_low_confidence", no_read)
    assert predictor.missing_checks() == want


def test_a_damaged_calibration_file_is_a_gap_like_a_missing_one(smoke_run: Path,
                                                               synth_data: Path, tmp_path: Path):
    """A damaged calibration.json refused the whole run (explain, predict) and disabled both
    models in the dashboard, over one model's bad temperature (review 4, finding 7, and the
    calibration half of 10): the model answers uncalibrated, said once with the refit command,
    and only that model."""
    run = _copy(smoke_run, tmp_path)
    image = str(next((synth_data / "Testing").rglob("*.png")))
    cal = json.loads((run / CALIBRATION_FILE).read_text())
    cal["models"]["custom_cnn"]["temperature"] = "x"
    (run / CALIBRATION_FILE).write_text(json.dumps(cal))
    predictor = Predictor(open_run(run))
    assert predictor.temperature("custom_cnn") is None
    assert predictor.temperature("mobilenetv2") == cal["models"]["mobilenetv2"]["temperature"]
    gaps = [str(g) for g in predictor.missing_checks()]
    assert gaps == ["Custom CNN: probabilities not calibrated and no answer is marked weak "
                    "(damaged calibration.json: custom_cnn has no positive temperature (got "
                    f"'x')); `python -m pipeline calibrate --run {shlex.quote(str(run))}` "
                    "adds it"], gaps
    (run / CALIBRATION_FILE).write_text('{"models": 3}')
    for command in (["explain", image, "--out", str(tmp_path / "ex")], ["predict", image]):
        result = CliRunner().invoke(app, [*command, "--run", str(run)])
        assert result.exit_code == 0, result.output
        notes = [" ".join(x.split()) for x in result.stderr.splitlines() if "calibrat" in x]
        assert notes == ["note: Custom CNN and MobileNetV2: probabilities not calibrated and no "
                         "answer is marked weak (damaged calibration.json: no 'models' object); "
                         f"`python -m pipeline calibrate --run {run}` adds it"], result.stderr


def test_a_run_calibrated_before_the_pooled_answer_says_so_and_calibrate_fixes_it(
        smoke_run: Path, synth_data: Path, tmp_path: Path):
    """Runs calibrated before `evaluate.together` existed have each model's temperature but
    none for the pooled answer: `predict` and the dashboard showed it unscaled, silently."""
    from pipeline.evaluate import together

    run = _copy(smoke_run, tmp_path)
    cal = json.loads((run / CALIBRATION_FILE).read_text())
    pool_t = cal.pop(together.KEY)["temperature"]
    (run / CALIBRATION_FILE).write_text(json.dumps(cal))
    open_before = Predictor(open_run(run))
    assert open_before.pool_temperature() is None
    gaps = [str(g) for g in open_before.missing_checks()]
    assert gaps == [f"Both, pooled: its confidence is not calibrated (no temperature of its "
                    f"own in {CALIBRATION_FILE}: calibrated before it existed); `python -m "
                    f"pipeline calibrate --run {shlex.quote(str(run))}` adds it"], gaps
    # one model shows no pooled answer, and raw probabilities are asked for on purpose
    assert Predictor(open_run(run), models=["custom_cnn"]).missing_checks() == []
    assert Predictor(open_run(run), calibrated=False).missing_checks() == []
    image = str(next((synth_data / "Testing").rglob("*.png")))
    runner = CliRunner()
    result = runner.invoke(app, ["predict", image, "--run", str(run)])
    assert result.exit_code == 0, result.output
    assert [n for n in _notes(result) if "Both, pooled" in n] != [], result.stderr
    explained = runner.invoke(app, ["explain", image, "--run", str(run), "--out",
                                    str(tmp_path / "ex")])
    assert explained.exit_code == 0, explained.output
    assert _notes(explained) == []  # explain shows no pooled answer: nothing is missing there

    fix = runner.invoke(app, ["calibrate", "--run", str(run)])
    assert fix.exit_code == 0, fix.output
    assert open_before.missing_checks() == []  # the open Predictor follows the file
    assert open_before.pool_temperature() == pytest.approx(pool_t)
    probs = {"custom_cnn": np.array([[0.7, 0.1, 0.1, 0.1]], "float32"),
             "mobilenetv2": np.array([[0.4, 0.4, 0.1, 0.1]], "float32")}
    np.testing.assert_allclose(open_before.together(probs),
                               together.combine(probs, pool_t), rtol=1e-6)


def test_fix_commands_name_the_run_so_that_they_find_this_folder(smoke_run, tmp_path,
                                                                 monkeypatch):
    """The dashboard's "To fix" commands named the manifest's run id: wrong for a copied folder
    (it named the original) and not found for a run outside `artifacts/` (review 4, finding 9)."""
    import subprocess
    import sys

    from dashboard import runinfo
    from pipeline.gaps import fix_command, run_arg

    artifacts = tmp_path / "ärtéfacts 'q"
    copy = artifacts / "runs" / "copied run"
    shutil.copytree(smoke_run, copy, ignore=shutil.ignore_patterns("*.keras", "*.npz"))
    (copy / "custom_cnn" / "explanations.json").unlink()
    run = open_run(copy)
    assert run.run_id != copy.name
    monkeypatch.setenv("BRAIN_MRI_ARTIFACTS", str(artifacts))  # the dashboard's folder
    assert run_arg(run) == "'copied run'"  # the folder's name, as `--run` looks it up
    fixes = [p.fix for p in runinfo.run_problems(run)]
    assert any("explain-eval --run 'copied run'" in f for f in fixes), fixes
    assert not any(run.run_id in f for f in fixes), fixes
    # the command as shown finds this very folder (not the original) from the project
    command = fix_command(run, "figures", "--out", str(tmp_path / "o"))
    done = subprocess.run(command.replace("python", sys.executable, 1), shell=True,
                          capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert f"from run {run.run_id}" in done.stdout, done.stderr
    monkeypatch.delenv("BRAIN_MRI_ARTIFACTS")  # not in the default folder: named by its path
    assert run_arg(run) not in ("'copied run'", run.run_id)
    assert run_arg(run).endswith("/copied run'")
