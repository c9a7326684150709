"""Both models' answer together (`pipeline.evaluate.together`): the pool, its temperature, its
record, and where it shows (predict, evaluate, the dashboard's card and Overview)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.calibration import apply_temperature
from pipeline.evaluate import together

CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------- unit


def test_combine_is_the_softmax_of_the_mean_log_probability() -> None:
    a = np.array([[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.4, 0.1]])
    b = np.array([[0.2, 0.6, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]])
    pooled = together.combine({"custom_cnn": a, "mobilenetv2": b})
    want = np.sqrt(a * b) / np.sqrt(a * b).sum(axis=1, keepdims=True)  # geometric mean
    np.testing.assert_allclose(pooled, want, atol=1e-12)
    # a temperature scales the pool as it scales one model's answer, and keeps its arg-max
    sharp = together.combine({"custom_cnn": a, "mobilenetv2": b}, temperature=0.5)
    np.testing.assert_allclose(sharp, apply_temperature(want, 0.5), atol=1e-9)
    assert (sharp.argmax(axis=1) == pooled.argmax(axis=1)).all()
    assert sharp.max(axis=1).min() > pooled.max(axis=1).min()
    # one row each, as a card has it
    np.testing.assert_allclose(together.combine({"x": a[0], "y": b[0]}), want[0], atol=1e-12)
    # a probability of 0 (float32 underflow) is no NaN
    assert np.isfinite(together.combine({"x": np.eye(4)[:1], "y": np.eye(4)[1:2]})).all()


def test_pooling_an_answer_costs_no_scipy_or_scikit_learn_import(tmp_path: Path) -> None:
    """`predict` and every dashboard card pool their answers: importing scipy.stats and
    scikit-learn for it cost them about 1 s (only `fit` and `summary` need them)."""
    import subprocess
    import sys

    (tmp_path / "calibration.json").write_text(json.dumps({"together": {"temperature": 0.8}}))
    code = ("import sys, numpy as np, pipeline.evaluate.together as t; "
            f"assert t.read_temperature({str(tmp_path)!r}) == 0.8; "
            "t.combine({'a': np.full((1, 4), 0.25), 'b': np.full((1, 4), 0.25)}, 0.8); "
            "print('scipy.stats' in sys.modules, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False False"


def test_combine_needs_two_models_of_one_shape() -> None:
    with pytest.raises(ValueError, match="two models"):
        together.combine({"custom_cnn": np.full((1, 4), 0.25)})
    with pytest.raises(ValueError, match="differ in shape"):
        together.combine({"a": np.full((1, 4), 0.25), "b": np.full((2, 4), 0.25)})


@pytest.mark.parametrize("t0", [0.5, 2.0])
def test_fit_recovers_the_pool_s_temperature(t0: float) -> None:
    """Labels drawn from softmax(z) while both models say softmax(z / t0): the pool is off by
    t0, and the fitted temperature undoes it."""
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2.5, size=(6000, 4))
    y = np.array([rng.choice(4, p=p) for p in _softmax(z)])
    off = _softmax(z / t0)
    fit = together.fit({"custom_cnn": off, "mobilenetv2": off}, y)
    assert fit["temperature"] == pytest.approx(1 / t0, rel=0.08)
    assert fit["n"] == 6000 and fit["ece_after"] < fit["ece_before"]
    assert fit["models"] == ["custom_cnn", "mobilenetv2"]


def test_best_sensitivity_at_a_specificity() -> None:
    # tumours score 0.9, 0.8, 0.3; tumour-free images 0.7, 0.2, 0.1, 0.05 ... (10 of them)
    pos = np.array([1, 1, 1] + [0] * 10, dtype=bool)
    score = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1, 0.05, 0.04, 0.03, 0.02, 0.01, 0.005, 0.001])
    # at >= 0.3 one tumour-free image (0.7) is called: specificity 0.9, every tumour found
    assert together.best_sensitivity(pos, score, 0.90) == 1.0
    # specificity 1.0 allows only thresholds above 0.7: two of three tumours
    assert together.best_sensitivity(pos, score, 1.0) == pytest.approx(2 / 3)
    assert together.best_sensitivity(pos[:3], score[:3]) is None  # no tumour-free image


def test_summary_counts_the_pooled_answers() -> None:
    y = np.array([0, 1, 2, 3])
    a = np.array([[0.8, 0.1, 0.05, 0.05], [0.6, 0.3, 0.05, 0.05],  # right, wrong
                  [0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.1, 0.7]])      # right, right
    b = np.array([[0.4, 0.5, 0.05, 0.05], [0.05, 0.9, 0.03, 0.02],  # wrong, right (sure)
                  [0.1, 0.1, 0.7, 0.1], [0.1, 0.6, 0.1, 0.2]])      # right, wrong
    rec = together.summary(y, {"custom_cnn": a, "mobilenetv2": b}, CLASSES)
    pooled = together.combine({"custom_cnn": a, "mobilenetv2": b})
    assert pooled.argmax(axis=1).tolist() == [0, 1, 2, 3]  # every one right together
    assert rec["accuracy"] == 1.0 and rec["n"] == 4
    assert rec["alone"] == {"custom_cnn": 0.75, "mobilenetv2": 0.5}
    assert rec["mcnemar_p"]["mobilenetv2"] == 0.5  # 2 discordant pairs, both the pool's
    lo, hi = rec["accuracy_interval"]
    assert lo < 1.0 == hi
    assert rec["sensitivity"] == 1.0 and rec["specificity"] == 1.0
    assert rec["temperature"] is None and rec["models"] == ["custom_cnn", "mobilenetv2"]
    assert together.summary(y, {"custom_cnn": a}, CLASSES) is None
    said = together.words(rec)
    assert said == ("Averaged, the two models' answers were right on 100% of the 4 test images "
                    "(alone: Custom CNN 75%, MobileNetV2 50%).")
    assert together.words(None) == "" and together.words({}) == ""
    assert together.line(rec).startswith("Both models averaged: accuracy 1.000 [")
    assert "(alone: Custom CNN 0.750, MobileNetV2 0.500)" in together.line(rec)
    assert rec["weak"] is None and "weak" not in together.line(rec)
    # with the pool's weak threshold: how the answers under it and the rest fared; the least
    # sure two are the first (right) and the last, which a label "meningioma" makes wrong
    conf = pooled.max(axis=1)
    assert np.argsort(conf)[:2].tolist() == [3, 0]
    below = float(np.sort(conf)[1]) + 1e-9
    weak = together.summary(np.array([0, 1, 2, 1]), {"custom_cnn": a, "mobilenetv2": b},
                            CLASSES, None, below)
    assert weak["weak"] == {"below": below, "n": 2, "accuracy": 0.5, "accuracy_rest": 1.0}
    assert together.words(weak).endswith(
        " 2 of those answers were weak: right on 50% of them, and on 100% of the rest.")
    assert together.line(weak).endswith(
        f"; 2 answers weak (below {below:.2f}): accuracy 0.500 on those, 1.000 on the rest")


def test_fit_sets_the_weak_threshold_as_each_model_s() -> None:
    """The pool is said weak as each model is (`calibration.low_confidence`): below the
    confidence where its validation answers fall under 90 % right."""
    from pipeline.calibration import apply_temperature, low_confidence

    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 400)
    logits = rng.normal(size=(400, 4)) + 2.0 * np.eye(4)[y] * rng.uniform(0, 2, (400, 1))
    a = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    b = np.roll(a, 1, axis=0) * 0.3 + a * 0.7
    fit = together.fit({"custom_cnn": a, "mobilenetv2": b}, y)
    pooled = apply_temperature(together.combine({"custom_cnn": a, "mobilenetv2": b}),
                               fit["temperature"])
    assert {k: fit[k] for k in ("low_confidence_below", "low_confidence_n")} == \
        {k: low_confidence(pooled, y)[k] for k in ("low_confidence_below", "low_confidence_n")}
    assert 0 < fit["low_confidence_below"] < 1 and fit["low_confidence_n"] > 0
    below = pooled.max(1) < fit["low_confidence_below"]
    assert (pooled.argmax(1) == y)[below].mean() < 0.9 <= (pooled.argmax(1) == y)[~below].mean()


def test_read_pool(tmp_path: Path) -> None:
    assert together.read_pool(tmp_path) == (None, None)
    path = tmp_path / "calibration.json"
    for entry, want in [({"temperature": 0.82, "low_confidence_below": 0.9}, (0.82, 0.9)),
                        ({"temperature": 0.82}, (0.82, None)),  # fitted before the threshold
                        ({"temperature": 0.8, "low_confidence_below": 1.5}, (0.8, None)),
                        ({"temperature": 0.8, "low_confidence_below": "0.9"}, (0.8, None)),
                        ({"low_confidence_below": 0.0}, (None, 0.0)), ("broken", (None, None))]:
        path.write_text(json.dumps({"models": {}, "together": entry}))
        assert together.read_pool(tmp_path) == want, entry


def test_read_temperature(tmp_path: Path) -> None:
    assert together.read_temperature(tmp_path) is None  # no calibration.json
    path = tmp_path / "calibration.json"
    for entry, want in [({"temperature": 0.82}, 0.82), ({"temperature": -1}, None),
                        ({"temperature": True}, None), ({"temperature": "0.8"}, None),
                        ("broken", None)]:
        path.write_text(json.dumps({"models": {}, "together": entry}))
        assert together.read_temperature(tmp_path) == want, entry
    path.write_text(json.dumps({"models": {}}))  # calibrated before the pool existed
    assert together.read_temperature(tmp_path) is None
    path.write_text("{not json")
    assert together.read_temperature(tmp_path) is None


def test_the_shipped_runs_record_the_pool_they_were_measured_with() -> None:
    """Each shipped run's comparison.json "together" is what its own predictions.csv files
    and calibration.json's pool temperature give (the figures README and model card quote)."""
    import csv

    runs = sorted(p for p in (Path(__file__).parent.parent / "artifacts" / "runs").iterdir()
                  if (p / "comparison.json").is_file())
    assert runs
    for run in runs:
        stored = json.loads((run / "comparison.json").read_text())[together.KEY]
        t, below = together.read_pool(run)
        assert t is not None and stored["temperature"] == t
        assert below is not None  # its answers can be said weak, as each model's
        probs, y = {}, None
        for m in stored["models"]:
            rows = list(csv.DictReader((run / m / "predictions.csv").open(newline="")))
            classes = [k[2:] for k in rows[0] if k.startswith("p_")]
            y = np.array([classes.index(r["true"]) for r in rows])
            probs[m] = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
        again = together.summary(y, probs, classes, t, below)
        assert again["accuracy"] == pytest.approx(stored["accuracy"])
        assert again["weak"] == pytest.approx(stored["weak"])
        assert again["alone"] == pytest.approx(stored["alone"])
        for m in stored["models"]:  # each alone is its metrics.json's accuracy
            met = json.loads((run / m / "metrics.json").read_text())
            assert stored["alone"][m] == pytest.approx(met["accuracy"])


# --------------------------------------------------------------------------- on a trained run


@pytest.fixture(scope="module")
def pooled_run(smoke_run: Path, tmp_path_factory) -> Path:
    """A private, calibrated and re-evaluated copy of the session's smoke run."""
    from pipeline.calibration import calibrate_run
    from pipeline.evaluate import evaluate_run

    dst = tmp_path_factory.mktemp("pool") / "runs" / smoke_run.name
    shutil.copytree(smoke_run, dst)
    calibrate_run(dst)
    evaluate_run(dst, n_boot=200)
    return dst


@pytest.mark.slow
def test_calibrate_fits_the_pool_and_evaluate_records_it(pooled_run: Path) -> None:
    import csv

    cal = json.loads((pooled_run / "calibration.json").read_text())
    splits = json.loads((pooled_run / "splits.json").read_text())
    fit = cal[together.KEY]
    assert fit["n"] == len(splits["val"]) and fit["models"] == list(cal["models"])
    assert together.read_temperature(pooled_run) == fit["temperature"] > 0
    comp = json.loads((pooled_run / "comparison.json").read_text())
    rec = comp[together.KEY]
    assert rec["temperature"] == fit["temperature"]
    probs, y = {}, None
    for m in rec["models"]:
        rows = list(csv.DictReader((pooled_run / m / "predictions.csv").open(newline="")))
        y = np.array([CLASSES.index(r["true"]) for r in rows])
        probs[m] = np.array([[float(r[f"p_{c}"]) for c in CLASSES] for r in rows])
        met = json.loads((pooled_run / m / "metrics.json").read_text())
        assert rec["alone"][m] == pytest.approx(met["accuracy"])
    pooled = together.combine(probs, fit["temperature"])
    assert rec["accuracy"] == pytest.approx(float(np.mean(pooled.argmax(axis=1) == y)))
    assert rec["n"] == len(y) == comp["n"]
    # said weak by the threshold calibrate fitted for it
    assert rec["weak"]["below"] == fit["low_confidence_below"]
    assert rec["weak"]["n"] == int((pooled.max(axis=1) < fit["low_confidence_below"]).sum())


@pytest.mark.slow
def test_predict_and_the_dashboard_show_the_pooled_answer(pooled_run: Path, tmp_path: Path
                                                          ) -> None:
    """`predict` (lines, --json and --out) and the Predict card's results pool the same
    calibrated probabilities they show per model, with the run's pool temperature."""
    import csv

    from typer.testing import CliRunner

    from dashboard import answers, core, inference
    from pipeline.artifacts import open_run
    from pipeline.cli import app
    from pipeline.explain import Explainer
    from pipeline.images import read_image
    from pipeline.predict import Predictor

    manifest = json.loads((pooled_run / "manifest.json").read_text())
    items = json.loads((pooled_run / "splits.json").read_text())["test"][:3]
    paths = [Path(manifest["data"]["dir"]) / it["path"] for it in items]
    res = CliRunner().invoke(app, ["predict", "--json", "--run", str(pooled_run),
                                   *map(str, paths)])
    assert res.exit_code == 0, res.output[-2000:]
    rows = json.loads(res.stdout)["results"]
    t = together.read_temperature(pooled_run)
    for row in rows:
        each = {m: np.array([v["probs"][c] for c in CLASSES]) for m, v in row["models"].items()}
        want = together.combine(each, t)
        got = np.array([row["together"]["probs"][c] for c in CLASSES])
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert row["together"]["label"] == CLASSES[int(want.argmax())]
    out = tmp_path / "answers.csv"  # --out: the pooled answer's columns after the models'
    res = CliRunner().invoke(app, ["predict", "--run", str(pooled_run), "--out", str(out),
                                   *map(str, paths)])
    assert res.exit_code == 0, res.output[-2000:]
    with out.open(newline="") as fh:
        table = list(csv.DictReader(fh))
    for line, row in zip(table, rows, strict=True):
        assert line["averaged_predicted"] == row["together"]["label"]
        np.testing.assert_allclose([float(line[f"averaged_p_{c}"]) for c in CLASSES],
                                   [row["together"]["probs"][c] for c in CLASSES], atol=2e-6)
    res = CliRunner().invoke(app, ["predict", "--run", str(pooled_run), *map(str, paths)])
    assert res.exit_code == 0, res.output[-2000:]
    lines = [ln.split("\t") for ln in res.stdout.splitlines() if "\t" in ln]
    assert len(lines) == len(paths)
    for fields, row in zip(lines, rows, strict=True):
        pooled = next(f for f in fields if f.startswith("averaged: "))
        assert pooled.startswith(f"averaged: {row['together']['label']}")
        # weak as the models' answers are, by the pool's own validation threshold
        below = json.loads((pooled_run / "calibration.json").read_text())[together.KEY][
            "low_confidence_below"]
        weak = max(row["together"]["probs"].values()) < below
        assert row["together"]["weak"] is weak
        assert ("[weak answer (low confidence)]" in pooled) is weak, pooled
        third = all(m["label"] != row["together"]["label"] for m in row["models"].values())
        assert pooled.endswith(" [neither model's answer]") is third, pooled

    run = open_run(pooled_run)
    predictor = Predictor(run)
    explainers = {m: Explainer(model) for m, model in predictor.models.items()}
    uploads = [core.Upload(p.name, f"pool-{p.name}", read_image(p)) for p in paths]
    results = inference.explain(run, predictor, explainers, uploads, inference.Settings())
    assert results.together is not None and results.together.shape == (len(paths), 4)
    np.testing.assert_allclose(results.together, together.combine(results.probs, t), atol=1e-5)
    assert results.together_note.startswith("Averaged, the two models' answers were right on ")
    line = answers.verdict_line(results.probs, 0, CLASSES, together=results.together)
    assert line.count(" · ") == 2 and "Both, pooled: **" in line
    # a one-model predictor has nothing to pool
    one = Predictor(run, models=[run.model_names[0]])
    assert one.together({m: p for m, p in results.probs.items()
                         if m == run.model_names[0]}) is None


def test_results_md_quotes_the_pooled_answer(tmp_path: Path) -> None:
    """results.md (and so docs/figures/results.md) says the pooled answer in `evaluate`'s line;
    a damaged record is left out, never a traceback."""
    from pipeline.artifacts import open_run
    from pipeline.results_md import results_markdown

    shipped = Path(__file__).parent.parent / "artifacts" / "runs" / "20261204-234901-1f09da"
    run = tmp_path / "runs" / shipped.name
    shutil.copytree(shipped, run, ignore=shutil.ignore_patterns("*.keras", "*.npz"))
    record = json.loads((run / "comparison.json").read_text())[together.KEY]
    text = results_markdown(open_run(run))
    assert f"## Both models together\n\n{together.line(record)} (" in text
    comp = json.loads((run / "comparison.json").read_text())
    comp[together.KEY] = {"accuracy": "high"}
    (run / "comparison.json").write_text(json.dumps(comp))
    assert "Both models together" not in results_markdown(open_run(run))


@pytest.mark.slow
def test_robustness_scores_the_pooled_answer(pooled_run: Path, tmp_path: Path) -> None:
    """robustness.json's "together": the pooled answer under every shift; unshifted, it is the
    answer comparison.json scored on the same test images."""
    from pipeline.evaluate import robustness_run

    run = tmp_path / "runs" / pooled_run.name
    shutil.copytree(pooled_run, run)
    result = robustness_run(run)
    pooled = result[together.KEY]
    comp = json.loads((run / "comparison.json").read_text())[together.KEY]
    assert result["n_images"] == comp["n"]
    assert pooled["clean"]["accuracy"] == pytest.approx(comp["accuracy"])
    assert pooled["temperature"] == together.read_temperature(run)
    assert pooled["display_name"] == together.LABEL and pooled["models"] == comp["models"]
    assert set(pooled["shifts"]) == set(result["shifts"])
    for rows in pooled["shifts"].values():
        assert [r["severity"] for r in rows] == result["severities"]
        for r in rows:
            assert r["accuracy_drop"] == pytest.approx(pooled["clean"]["accuracy"] - r["accuracy"])
    assert json.loads((run / "robustness.json").read_text())[together.KEY] == pooled


def test_about_and_the_glossary_say_what_the_pooled_answer_is() -> None:
    """About's known limits (two-model runs only) and the Overview's glossary, under the card's
    own label for it."""
    from dashboard.about_text import known_limits
    from dashboard.figures.glossary import GLOSSARY

    two = " ".join(known_limits(["glioma", "no_tumor"], False, 2).split())
    assert "both models pooled" in two and "no third model" in two
    assert "can be above both" in two  # not the mean of the two (a review read it so)
    assert "pooled" not in known_limits(["glioma", "no_tumor"], False, 1)
    assert dict(GLOSSARY)[together.LABEL].startswith("the two models' answers pooled")


def test_the_summary_table_has_the_pooled_answer_after_the_models() -> None:
    """The many-uploads summary and a series' slice table: a "Both, pooled" column after the
    models' answers, in the card's words; none without a pool."""
    from dashboard import summary_table

    a = np.array([[0.7, 0.1, 0.1, 0.1], [0.2, 0.2, 0.5, 0.1]])
    b = np.array([[0.2, 0.6, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1]])
    probs = {"custom_cnn": a, "mobilenetv2": b}
    pooled = together.combine(probs)
    frame = summary_table.summary_frame(["t1", "t2"], ["a.png", "b.png"], probs, CLASSES,
                                        [[], []], pooled)
    assert list(frame.columns)[:4] == ["image", "Custom CNN", "MobileNetV2", together.LABEL]
    assert frame[together.LABEL].tolist()[1] == f"no tumour ({pooled[1, 2]:.0%})"
    bare = summary_table.summary_frame(["t1", "t2"], ["a.png", "b.png"], probs, CLASSES, [[], []])
    assert together.LABEL not in bare.columns


@pytest.mark.slow
def test_evaluate_prints_the_pooled_answer_last(pooled_run: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    run = tmp_path / "runs" / pooled_run.name
    shutil.copytree(pooled_run, run)
    res = CliRunner().invoke(app, ["evaluate", "--run", str(run)])
    assert res.exit_code == 0, res.output[-2000:]
    record = json.loads((run / "comparison.json").read_text())[together.KEY]
    assert res.stdout.splitlines()[-1] == together.line(record)


@pytest.mark.slow
def test_explain_shows_the_pooled_answer_as_predict_does(pooled_run: Path, tmp_path: Path
                                                         ) -> None:
    """`explain` printed each model's answer but not the two pooled, which predict and the
    card show: its lines and explain.json now carry predict's "averaged" field; one model
    explained has none."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    manifest = json.loads((pooled_run / "manifest.json").read_text())
    items = json.loads((pooled_run / "splits.json").read_text())["test"][:3]
    paths = [str(Path(manifest["data"]["dir"]) / it["path"]) for it in items]
    said = CliRunner().invoke(app, ["predict", "--json", "--run", str(pooled_run), *paths])
    want = [r["together"] for r in json.loads(said.stdout)["results"]]
    printed = CliRunner().invoke(app, ["predict", "--run", str(pooled_run), *paths])
    fields = [next(f for f in ln.split("\t") if f.startswith("averaged: "))
              for ln in printed.stdout.splitlines() if "\t" in ln]
    out = tmp_path / "ex"
    res = CliRunner().invoke(app, ["explain", "--run", str(pooled_run), "--bare", *paths,
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output[-2000:]
    got = [next(f for f in ln.split("\t") if f.startswith("averaged: "))
           for ln in res.stdout.splitlines() if "\t" in ln]
    assert got == fields and len(got) == len(paths)
    rows = json.loads((out / "explain.json").read_text())["images"]
    for row, w in zip(rows, want, strict=True):
        assert row["together"]["label"] == w["label"] and row["together"]["weak"] == w["weak"]
        np.testing.assert_allclose([row["together"]["probs"][c] for c in CLASSES],
                                   [w["probs"][c] for c in CLASSES], atol=1e-5)
    one = CliRunner().invoke(app, ["explain", "--run", str(pooled_run), "--bare", "--model",
                                   "custom_cnn", *paths, "--out", str(tmp_path / "one")])
    assert one.exit_code == 0 and "averaged: " not in one.stdout


def test_a_pooled_answer_neither_model_gave_is_said_so_everywhere() -> None:
    """A review found "Both, pooled: glioma" beside "no tumour" and "meningioma" (2 of the main
    run's 490 test images) while the tooltip said the pool is always one side of the
    disagreement; the summary table also dropped the pool's "weak"."""
    from dashboard import answers, summary_table
    from pipeline.cli.common import pooled_part
    from pipeline.names import NEITHER_WORDS

    # each model puts glioma second, close behind its own answer: the pool favours glioma
    a = np.array([[0.40, 0.05, 0.50, 0.05], [0.7, 0.1, 0.1, 0.1]])
    b = np.array([[0.40, 0.50, 0.05, 0.05], [0.7, 0.1, 0.1, 0.1]])
    probs = {"custom_cnn": a, "mobilenetv2": b}
    pooled = together.combine(probs)
    assert pooled[0].argmax() == 0 and together.neither(probs, pooled).tolist() == [True, False]
    assert together.qualifiers(probs, pooled, 0) == f", {NEITHER_WORDS}"
    assert together.qualifiers(probs, pooled, 0, weak_below=0.99) == f", weak, {NEITHER_WORDS}"
    assert together.qualifiers(probs, pooled, 1) == ""
    line = answers.verdict_line(probs, 0, CLASSES, together=pooled)
    assert line.endswith(f"Both, pooled: **glioma** ({pooled[0, 0]:.0%}, {NEITHER_WORDS})"), line
    assert NEITHER_WORDS not in answers.verdict_line(probs, 1, CLASSES, together=pooled)
    frame = summary_table.summary_frame(["t1", "t2"], ["a.png", "b.png"], probs, CLASSES,
                                        [[], []], pooled, together_weak_below=0.99)
    assert frame[together.LABEL].tolist() == [
        f"glioma ({pooled[0, 0]:.0%}, weak, {NEITHER_WORDS})", f"glioma ({pooled[1, 0]:.0%}, weak)"]
    csv = answers.predictions_frame(["upload 1", "upload 2"], probs, CLASSES, together=pooled,
                                 together_weak_below=pooled[1].max())
    assert csv["averaged_weak"].tolist() == [True, False]  # as predict's CSV has it
    row = {"models": {"custom_cnn": {"label": "no_tumor"}, "mobilenetv2": {"label": "meningioma"}},
           "together": {"label": "glioma", "probs": {"glioma": 0.45, "no_tumor": 0.3}}}
    assert pooled_part(row, None, set())[0].endswith(f"(45%) [{NEITHER_WORDS}]")
    row["models"]["mobilenetv2"]["label"] = "glioma"
    assert NEITHER_WORDS not in pooled_part(row, None, set())[0]
