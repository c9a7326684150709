"""The robustness benchmark: the shift functions, robustness_run on (a copy of) the session's smoke
run, the `evaluate --robustness` option and the Overview page's robustness chart."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

from pipeline.evaluate import robustness as rb


def _phantom(seed: int = 3) -> np.ndarray:
    """A synthetic head, padded to a non-square gray RGB frame (150×170)."""
    from pipeline.synth import render_phantom

    img, _ = render_phantom("glioma_tumor", 150, np.random.default_rng(seed))
    img = np.pad(img, ((0, 0), (8, 12)))
    return np.repeat(img[:, :, None], 3, axis=2)


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize("name", list(rb.SHIFTS))
def test_shift_changes_keeps_shape_and_is_deterministic(name):
    img = _phantom()
    before = img.copy()
    outs = [rb.apply_shift(img, name, k, seed=0, key=7) for k in range(3)]
    np.testing.assert_array_equal(img, before)  # pure: the input is not modified
    for k, out in enumerate(outs):
        assert out.shape == img.shape and out.dtype == np.uint8, (name, k)
        assert _mad(out, img) > 0, (name, k)
        assert np.array_equal(out[:, :, 0], out[:, :, 2]), "a gray image must stay gray"
        np.testing.assert_array_equal(out, rb.apply_shift(img, name, k, seed=0, key=7))
    assert len(rb.SHIFTS[name].levels) == len(rb.SEVERITIES) == 3
    assert rb.SHIFTS[name].description


@pytest.mark.parametrize("name", list(rb.SHIFTS))
def test_shift_grows_with_severity(name):
    for seed, key in [(0, 0), (0, 1), (1, 5)]:
        img = _phantom(seed + key)
        outs = [rb.apply_shift(img, name, k, seed=seed, key=key) for k in range(3)]
        ref = img
        if name == "rotate_flip":
            # The flip (p = 1/2) is the same at every severity; the rotation is what grows.
            rng = np.random.default_rng([seed, zlib.crc32(name.encode()), key])
            ref = rb.rotate_flip(img, 0.0, rng)
        mads = [_mad(out, ref) for out in outs]
        assert mads[0] < mads[1] < mads[2], (name, seed, key, mads)


def test_seeds_change_the_random_shifts():
    img = _phantom()
    for name in ("bias_field", "rician_noise", "crop_pad", "burnt_in_text"):
        assert not np.array_equal(rb.apply_shift(img, name, 1, seed=0, key=0),
                                  rb.apply_shift(img, name, 1, seed=1, key=0)), name


def test_robustness_run_refuses_bad_input_before_work(tmp_path):
    from pipeline.evaluate import EvaluationError

    with pytest.raises(EvaluationError, match="max_images must be at least 1"):
        rb.robustness_run(tmp_path, max_images=0)
    with pytest.raises(EvaluationError, match="manifest"):
        rb.robustness_run(tmp_path)


def test_a_subset_of_the_test_split_is_spread_over_the_classes():
    """`--max-images 8` took a plain random subset, which held no no-tumour image (a review)."""
    labels = ["glioma"] * 50 + ["no_tumor"] * 5 + ["pituitary"] * 45
    keys = rb.stratified_keys(labels, 8, seed=0)
    assert len(keys) == 8 == len(set(keys)) and keys == sorted(keys)
    counts = {c: sum(labels[k] == c for k in keys) for c in set(labels)}
    assert counts == {"glioma": 3, "no_tumor": 3, "pituitary": 2}, counts  # one of each in turn
    assert rb.stratified_keys(labels, 8, seed=0) == keys  # seeded
    assert rb.stratified_keys(labels, 8, seed=1) != keys
    few = rb.stratified_keys(["a", "b", "b"], 3, seed=0)
    assert few == [0, 1, 2]  # every image when the subset asks for them all


def test_cli_option_errors(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    runner = CliRunner()
    base = ["evaluate", "--artifacts", str(tmp_path)]
    for args, message in [
        (["--robustness", "--max-images", "0"], "--max-images must be at least 1, got 0"),
        (["--max-images", "5"], "only applies to the robustness benchmark"),
        (["--robustness", "--folds", "2"], "cannot be combined"),
        (["--robustness", "--n-boot", "500"], "do not bootstrap"),
        (["--folds", "3", "--n-boot", "500"], "do not bootstrap"),
        (["--n-boot", "50"], "--n-boot must be at least 100, got 50"),
        (["--robustness", "--data", str(tmp_path)], "cannot be combined"),
        (["--robustness"], "no runs yet"),
        # taken and ignored before (a review)
        (["--name", "x"], "--name names an external evaluation: give it with --data"),
        (["--replace"], "it goes with --robustness --max-images"),
        (["--robustness", "--replace"], "it goes with --robustness --max-images"),
    ]:
        r = runner.invoke(app, base + args)
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output and "Traceback" not in r.output, (args, r.output)
        assert len(r.output.strip().splitlines()) == 1, r.output
    r = runner.invoke(app, [*base, "--robustness", "--max-images", "many"])
    assert r.exit_code == 2 and "Traceback" not in r.output  # typer: not an integer


# --------------------------------------------------------------------------- on a trained run


@pytest.fixture(scope="module")
def robust_run(smoke_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's smoke run (others don't see its new file) with robustness.json."""
    adir = tmp_path_factory.mktemp("robust") / "artifacts"
    run = adir / "runs" / smoke_run.name
    shutil.copytree(smoke_run, run)
    (adir / "latest").write_text(smoke_run.name + "\n")
    calls = []
    rb.robustness_run(run, progress=lambda d, done, total: calls.append((done, total)))
    assert calls[-1][0] == calls[-1][1]  # the progress ends complete
    return run


@pytest.mark.slow
def test_robustness_json_is_complete_and_clean_matches_metrics(robust_run: Path):
    rob = json.loads((robust_run / "robustness.json").read_text())  # no NaN: strict JSON
    manifest = json.loads((robust_run / "manifest.json").read_text())
    assert rob["run_id"] == manifest["run_id"] and rob["seed"] == 0 and rob["created"]
    assert rob["severities"] == ["mild", "moderate", "severe"]
    assert set(rob["shifts"]) == set(rb.SHIFTS)
    assert all(len(s["levels"]) == 3 and s["description"] for s in rob["shifts"].values())
    assert "not a clean test" in rob["note"]
    assert list(rob["models"]) == list(manifest["models"])
    for m, res in rob["models"].items():
        met = json.loads((robust_run / m / "metrics.json").read_text())
        assert rob["n_images"] == met["n"] and rob["n_unreadable"] == 0
        assert res["clean"]["accuracy"] == pytest.approx(met["accuracy"])
        assert res["clean"]["tumor_sensitivity"] == pytest.approx(
            met["tumor_vs_no_tumor"]["sensitivity"])
        for name, rows in res["shifts"].items():
            assert [r["severity"] for r in rows] == rob["severities"]
            for r in rows:
                assert 0 <= r["accuracy"] <= 1
                assert r["accuracy_drop"] == pytest.approx(
                    res["clean"]["accuracy"] - r["accuracy"])
            assert rob["target"]["met"][m][name] == (rows[1]["accuracy_drop"] <= 0.05 + 1e-9)


@pytest.mark.slow
def test_cli_robustness_subset(robust_run: Path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    n = json.loads((robust_run / "robustness.json").read_text())["n_images"]
    assert n > 5
    args = ["evaluate", "--robustness", "--run", str(robust_run), "--max-images", "5"]
    # a quick subset silently replaced the run's full benchmark: it must be asked for
    kept = CliRunner().invoke(app, args)
    assert kept.exit_code == 2 and f"measured on {n} images" in kept.output, kept.output
    assert json.loads((robust_run / "robustness.json").read_text())["n_images"] == n
    r = CliRunner().invoke(app, [*args, "--replace"])
    assert r.exit_code == 0, r.output
    assert "unshifted" in r.stdout and "rician_noise" in r.stdout and "not a clean test" in r.stdout
    # the unshifted accuracy is not called "clean" beside "not a clean test" (a review)
    assert r.stdout.count("clean") == r.stdout.count("not a clean test")
    rob = json.loads((robust_run / "robustness.json").read_text())
    assert rob["n_images"] == 5 and rob["max_images"] == 5


@pytest.mark.slow
def test_overview_shows_the_robustness_chart(robust_run: Path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("BRAIN_MRI_ARTIFACTS", str(robust_run.parent.parent))
    app = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
    at = AppTest.from_file(str(app), default_timeout=240)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Robustness to image shifts" in [h.value for h in at.header]
    assert any("not a clean test" in c.value for c in at.caption)
    assert not [w.value for w in at.warning if "robustness" in str(w.value)]
