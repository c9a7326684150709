"""Temperature scaling: the fit on known synthetic cases, the stored file, and every consumer
(Predictor, evaluation, the dashboard's explanations, the CLI, the training hook)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax

from pipeline import calibration as cal
from pipeline.artifacts import ArtifactError
from pipeline.evaluate.metrics import calibration as ece_of


def _synthetic(t0: float, n: int = 20000, c: int = 4, seed: int = 0):
    """Labels drawn from softmax(z) (the truth); the model reports softmax(t0 * z), i.e. logits
    t0 times too large (over-confident for t0 > 1). Temperature t0 undoes it exactly."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, (n, c))
    p_true = softmax(z, axis=1)
    y = (rng.random(n)[:, None] > p_true.cumsum(axis=1)).sum(axis=1)
    return softmax(t0 * z, axis=1), np.minimum(y, c - 1), p_true


@pytest.mark.parametrize("t0", [2.5, 0.6])
def test_fit_recovers_a_known_temperature(t0: float) -> None:
    probs, y, _ = _synthetic(t0)
    t = cal.fit_temperature(probs, y)
    assert t == pytest.approx(t0, rel=0.05)
    assert cal.nll(probs, y, t) < cal.nll(probs, y)


def test_temperature_one_changes_nothing_and_argmax_is_kept() -> None:
    probs, _, _ = _synthetic(2.0, n=500)
    probs[0] = [1.0, 0.0, 0.0, 0.0]  # float32 softmax outputs can underflow to exactly 0
    np.testing.assert_allclose(cal.apply_temperature(probs, 1.0), probs, atol=1e-12)
    for t in (0.3, 3.0):
        q = cal.apply_temperature(probs, t)
        np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-12)
        assert (q.argmax(axis=1) == probs.argmax(axis=1)).all()
    with pytest.raises(ValueError, match="positive"):
        cal.apply_temperature(probs, 0.0)


def test_ece_drops_on_a_miscalibrated_set() -> None:
    probs, y, _ = _synthetic(3.0, n=5000, seed=1)
    before, _ = ece_of(probs, y)
    after, _ = ece_of(cal.apply_temperature(probs, cal.fit_temperature(probs, y)), y)
    assert before > 0.1 and after <= before and after < 0.03


def test_read_temperatures(tmp_path: Path) -> None:
    assert cal.read_temperatures(tmp_path) == {}
    (tmp_path / cal.FILE).write_text(json.dumps({"models": {"a": {"temperature": 1.5}}}))
    assert cal.read_temperatures(tmp_path) == {"a": 1.5}
    for bad in ({"models": {"a": {"temperature": -1}}}, {"models": []}, [1]):
        (tmp_path / cal.FILE).write_text(json.dumps(bad))
        with pytest.raises(ArtifactError, match="damaged file") as why:
            cal.read_temperatures(tmp_path)
        # no page shows this machine's paths, and the fix is calibrate, not training again
        assert str(tmp_path) not in str(why.value)
        assert f"python -m pipeline calibrate --run {tmp_path.name}" in str(why.value)


def test_training_hook_calibrates_then_evaluates(monkeypatch, tmp_path: Path) -> None:
    import pipeline.calibration
    import pipeline.evaluate
    from pipeline.train import _evaluation_hook

    calls, said = [], []

    def failing_calibration(run, progress=None):
        calls.append("calibrate")
        raise ArtifactError("no validation images")

    monkeypatch.setattr(pipeline.calibration, "calibrate_run", failing_calibration)
    monkeypatch.setattr(pipeline.evaluate, "evaluate_run",
                        lambda run, progress=None: calls.append("evaluate"))
    _evaluation_hook(lambda *a: None, said.append)(tmp_path)
    assert calls == ["calibrate", "evaluate"]  # a failed calibration still evaluates
    assert "calibration failed" in said[0] and "pipeline calibrate" in said[0]


# --------------------------------------------------------------------------- on a trained run


@pytest.fixture(scope="module")
def calibrated_run(smoke_run: Path, tmp_path_factory) -> Path:
    """A private, calibrated and re-evaluated copy of the session's smoke run."""
    from pipeline.evaluate import evaluate_run

    dst = tmp_path_factory.mktemp("calib") / "runs" / smoke_run.name
    shutil.copytree(smoke_run, dst)
    cal.calibrate_run(dst)
    evaluate_run(dst, n_boot=200)
    return dst


def _test_images(run_dir: Path, k: int = 6) -> tuple[list[np.ndarray], list[str]]:
    from pipeline.images import read_image

    manifest = json.loads((run_dir / "manifest.json").read_text())
    items = json.loads((run_dir / "splits.json").read_text())["test"][:k]
    root = Path(manifest["data"]["dir"])
    return [read_image(root / it["path"]) for it in items], [it["path"] for it in items]


@pytest.mark.slow
def test_calibrate_run_writes_the_file_and_predictor_applies_it(calibrated_run: Path) -> None:
    from pipeline.artifacts import open_run
    from pipeline.predict import Predictor

    obj = json.loads((calibrated_run / cal.FILE).read_text())
    splits = json.loads((calibrated_run / "splits.json").read_text())
    assert obj["split"] == "val" and obj["n"] == len(splits["val"]) and obj["created"]
    run = open_run(calibrated_run)
    assert set(obj["models"]) == set(run.model_names)
    for r in obj["models"].values():
        assert cal.T_MIN <= r["temperature"] <= cal.T_MAX
        assert r["nll_after"] <= r["nll_before"] + 1e-9  # T = 1 is in the search range
        assert 0 <= r["ece_after"] <= 1 and 0 <= r["ece_before"] <= 1
    imgs, _ = _test_images(calibrated_run)
    shown = Predictor(run).predict_images(imgs)
    raw_predictor = Predictor(run, calibrated=False)
    raw = raw_predictor.predict_images(imgs)
    for m, p in shown.items():
        t = obj["models"][m]["temperature"]
        assert raw_predictor.temperature(m) == t
        # the weak-answer threshold travels with the temperature
        assert raw_predictor.low_confidence_below(m) == obj["models"][m]["low_confidence_below"]
        assert 0.0 <= raw_predictor.low_confidence_below(m) <= 1.0
        np.testing.assert_allclose(p, cal.apply_temperature(raw[m], t), atol=1e-6)
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
        assert (p.argmax(axis=1) == raw[m].argmax(axis=1)).all()
        if abs(t - 1) > 0.05:
            assert not np.allclose(p, raw[m], atol=1e-4)


@pytest.mark.slow
def test_evaluation_reports_ece_before_and_after(calibrated_run: Path) -> None:
    obj = json.loads((calibrated_run / cal.FILE).read_text())
    for m, r in obj["models"].items():
        met = json.loads((calibrated_run / m / "metrics.json").read_text())
        assert met["temperature"] == r["temperature"]
        assert 0 <= met["ece"] <= 1 and 0 <= met["ece_uncalibrated"] <= 1
        assert len(met["reliability_uncalibrated"]) == len(met["reliability"])
        # predictions.csv holds the calibrated probabilities; their ECE is metrics.json's
        lines = (calibrated_run / m / "predictions.csv").read_text().splitlines()[1:]
        classes = json.loads((calibrated_run / "manifest.json").read_text())["class_names"]
        rows = [line.split(",") for line in lines]
        probs = np.array([[float(v) for v in row[3:3 + len(classes)]] for row in rows])
        y = np.array([classes.index(row[1]) for row in rows])
        assert ece_of(probs, y)[0] == pytest.approx(met["ece"], abs=1e-3)


@pytest.mark.slow
def test_dashboard_probabilities_are_the_predictor_s(calibrated_run: Path) -> None:
    from dashboard import core, inference
    from pipeline.artifacts import open_run
    from pipeline.explain import Explainer
    from pipeline.predict import Predictor

    run = open_run(calibrated_run)
    predictor = Predictor(run)
    explainers = {m: Explainer(model) for m, model in predictor.models.items()}
    imgs, names = _test_images(calibrated_run, k=3)
    uploads = [core.Upload(n, f"calib-{n}", im) for n, im in zip(names, imgs, strict=True)]
    results = inference.explain(run, predictor, explainers, uploads, inference.Settings())
    assert not results.errors
    # every model answered every image (an empty result would make the loop below vacuous)
    assert set(results.probs) == set(predictor.models)
    assert all(len(p) == len(imgs) for p in results.probs.values())
    want = predictor.predict_images(imgs)
    for m, p in results.probs.items():
        np.testing.assert_allclose(p, want[m], atol=1e-4)


@pytest.mark.slow
def test_calibrate_cli(calibrated_run: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    run = tmp_path / "runs" / calibrated_run.name
    shutil.copytree(calibrated_run, run)
    (run / cal.FILE).unlink()
    res = CliRunner().invoke(app, ["calibrate", "--run", str(run)])
    assert res.exit_code == 0, res.output
    assert "T = " in res.stdout and (run / cal.FILE).is_file()
    pool = json.loads((run / cal.FILE).read_text())["together"]  # the models' pooled answer
    assert f"Both, pooled: T = {pool['temperature']:.3f}; validation ECE" in res.stdout
    # the follow-up names this run's folder: its id alone would be looked up in ./artifacts,
    # where a reviewer's pasted command evaluated another copy of the run
    assert f"evaluate --run {run}`" in res.stdout, res.stdout
    res = CliRunner().invoke(app, ["calibrate", "--run", "nope", "--artifacts", str(tmp_path)])
    assert res.exit_code == 2
    assert "error:" in res.output and "'nope' not found" in res.output


def test_low_confidence_threshold_marks_where_validation_accuracy_drops():
    from pipeline.calibration import low_confidence

    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, 4000)
    right = rng.uniform(size=4000) < conf  # calibrated: right as often as it says
    probs = np.stack([conf, 1 - conf], axis=1)  # class 0 is always the answer
    y = np.where(right, 0, 1)
    out = low_confidence(probs, y)
    # accuracy reaches 90 % where confidence does: answers below about 0.9 are weak
    assert 0.85 < out["low_confidence_below"] < 0.95
    assert out["low_confidence_accuracy"] < 0.9 and 2000 < out["low_confidence_n"] < 3600
    # a model right everywhere gets no threshold; one never that good flags everything
    assert low_confidence(probs, np.zeros(4000, int))["low_confidence_below"] == 0.0
    assert low_confidence(probs, np.ones(4000, int))["low_confidence_below"] == 1.0


@pytest.mark.slow
def test_evaluate_says_when_a_model_s_figures_are_uncalibrated(calibrated_run: Path,
                                                              tmp_path: Path) -> None:
    """A damaged or missing temperature makes evaluate score raw probabilities (metrics.json:
    temperature null), as answers do; the command said nothing of it (a review, 2026-12-06)."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    run = tmp_path / "runs" / calibrated_run.name
    shutil.copytree(calibrated_run, run)
    args = ["evaluate", "--run", str(run), "--n-boot", "100"]
    calibrated = CliRunner().invoke(app, args)
    assert calibrated.exit_code == 0, calibrated.output
    assert "uncalibrated probabilities" not in calibrated.output
    obj = json.loads((run / cal.FILE).read_text())
    obj["models"]["custom_cnn"]["temperature"] = "x"
    (run / cal.FILE).write_text(json.dumps(obj))
    damaged = CliRunner().invoke(app, args)
    assert damaged.exit_code == 0, damaged.output
    note = next(line for line in damaged.stderr.splitlines() if "uncalibrated" in line)
    assert "Custom CNN" in note and "MobileNetV2" not in note
    assert f"`python -m pipeline calibrate --run {run}`" in note  # the folder, as given
    assert json.loads((run / "custom_cnn" / "metrics.json").read_text())["temperature"] is None
    assert json.loads((run / "mobilenetv2" / "metrics.json").read_text())["temperature"] == \
        obj["models"]["mobilenetv2"]["temperature"]
