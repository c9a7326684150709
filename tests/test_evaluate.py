"""Evaluation: metrics on hand-computed cases, statistics on known inputs, written files."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import f1_score

from pipeline import evaluate as ev
from pipeline.artifacts import relative_to_project
from pipeline.evaluate.comparison import _macro_f1_batched

CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]

# A tiny 4-class case, worked out by hand in the comments of the tests below.
Y_TRUE = np.array([0, 0, 1, 1, 2, 2, 3, 3])
Y_PRED = np.array([0, 1, 1, 1, 2, 0, 3, 2])
CONF = np.array([0.9, 0.6, 0.8, 0.7, 0.95, 0.55, 0.65, 0.45])


def _probs(pred: np.ndarray, conf: np.ndarray, n_classes: int = 4) -> np.ndarray:
    """Predicted class gets `conf`, the rest share 1 - conf equally."""
    p = np.repeat(((1 - conf) / (n_classes - 1))[:, None], n_classes, axis=1)
    p[np.arange(len(pred)), pred] = conf
    return p


PROBS = _probs(Y_PRED, CONF)


def test_metrics_match_hand_computation() -> None:
    m = ev.classification_metrics(Y_TRUE, PROBS, CLASSES)
    assert m["n"] == 8
    assert m["accuracy"] == pytest.approx(5 / 8)
    # recalls 1/2, 2/2, 1/2, 1/2
    assert m["balanced_accuracy"] == pytest.approx(0.625)
    pc = m["per_class"]
    assert pc["glioma"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert pc["meningioma"] == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert pc["no_tumor"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert pc["pituitary"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.5 + 2 / 3) / 4)
    assert m["weighted_f1"] == pytest.approx(m["macro_f1"])  # equal supports
    # glioma one-vs-rest AUC: positive 0.9 beats all 6 negatives, positive 0.133 beats 4 of 6
    assert m["roc_auc_per_class"]["glioma"] == pytest.approx(10 / 12)
    assert m["top_confusions"] == [
        {"true": "glioma", "predicted": "meningioma", "count": 1, "rate": 0.5},
        {"true": "no_tumor", "predicted": "glioma", "count": 1, "rate": 0.5},
        {"true": "pituitary", "predicted": "no_tumor", "count": 1, "rate": 0.5},
    ]


def test_confusion_matrix_rows_are_true_class() -> None:
    cm = ev.confusion(Y_TRUE, Y_PRED, CLASSES)
    assert cm["labels"] == CLASSES
    assert cm["matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 1, 1]]
    assert sum(map(sum, cm["matrix"])) == len(Y_TRUE)


def test_calibration_by_hand() -> None:
    # Two bins: [0, .5] holds the wrong 0.45 prediction; (.5, 1] holds 7 with mean conf 5.15/7
    # and accuracy 5/7. ECE = 1/8 * .45 + 7/8 * (5.15 - 5)/7 = 0.075.
    ece, bins = ev.calibration(PROBS, Y_TRUE, bins=2)
    assert ece == pytest.approx(0.075)
    assert [b["count"] for b in bins] == [1, 7]
    assert bins[0]["accuracy"] == 0.0 and bins[0]["confidence"] == pytest.approx(0.45)
    assert bins[1]["accuracy"] == pytest.approx(5 / 7)
    ece10, bins10 = ev.calibration(PROBS, Y_TRUE, bins=10)
    assert len(bins10) == 10 and sum(b["count"] for b in bins10) == 8
    assert bins10[0]["count"] == 0 and bins10[0]["accuracy"] is None


def test_calibration_perfect_and_confidence_one() -> None:
    y = np.array([0, 1, 2])
    ece, bins = ev.calibration(np.eye(3), y, bins=5)
    assert ece == 0.0
    assert bins[-1]["count"] == 3  # confidence exactly 1 lands in the last bin


def test_ece_if_calibrated_by_hand() -> None:
    from pipeline.evaluate.metrics import ece_if_calibrated
    # Two images at confidence 0.5 share one bin: 0, 1 or 2 correct with probability 1/4, 1/2,
    # 1/4, so ECE = |k/2 - 0.5| is 0.5, 0 or 0.5, expected 0.25 and p95 0.5.
    half = np.array([[0.5, 0.5], [0.5, 0.5]])
    r = ece_if_calibrated(half, bins=1, draws=4000)
    assert r["mean"] == pytest.approx(0.25, abs=0.02) and r["p95"] == 0.5
    # Certain predictions are always right: a calibrated model's ECE is exactly 0.
    assert ece_if_calibrated(np.eye(3))["mean"] == 0.0
    # The floor falls as the set grows (the finite-sample bias it measures) ...
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.4, 1.0, 4000)
    probs = np.stack([conf, 1 - conf], axis=1)
    small, large = ece_if_calibrated(probs[:100])["mean"], ece_if_calibrated(probs)["mean"]
    assert large < small / 3
    # ... and a same-seed call repeats itself; empty sets have none.
    assert ece_if_calibrated(probs[:100]) == ece_if_calibrated(probs[:100])
    assert ece_if_calibrated(np.zeros((0, 2)))["mean"] is None
    # classification_metrics reports it beside the ECE
    met = ev.classification_metrics(Y_TRUE, PROBS, CLASSES)
    assert 0 < met["ece_if_calibrated"]["mean"] < met["ece_if_calibrated"]["p95"]


def test_tumor_vs_no_tumor_by_hand() -> None:
    t = ev.tumor_vs_no_tumor(Y_TRUE, PROBS, CLASSES)
    assert t is not None
    assert (t["tp"], t["fn"], t["tn"], t["fp"]) == (5, 1, 1, 1)
    assert t["sensitivity"] == pytest.approx(5 / 6)
    assert t["specificity"] == pytest.approx(1 / 2)
    # P(tumour): the no_tumor image at .85 outranks only the tumour image at .55 -> 11/12
    assert t["auc"] == pytest.approx(11 / 12)


def test_by_size_group_by_hand() -> None:
    from pipeline.evaluate import by_size_group

    classes = ["glioma", "no_tumor"]
    y = [0, 0, 0, 0, 1, 1]
    pred = [0, 0, 1, 1, 1, 0]  # the two 512 px tumours found, the other-size ones missed
    probs = np.eye(2)[pred]
    common = [True, True, False, False, False, False]
    out = by_size_group(y, probs, classes, common, "512x512")
    assert out["size"] == "512x512"
    assert out["common_size"] == {"n": 2, "accuracy": 1.0, "sensitivity": 1.0,
                                  "specificity": None}
    assert out["other_sizes"] == {"n": 4, "accuracy": 0.25, "sensitivity": 0.0,
                                  "specificity": 0.5}
    assert by_size_group(y, probs, classes, [False] * 6, "9x9")["common_size"] == {"n": 0}


def test_by_copy_group_counts_each_slice_once() -> None:
    from pipeline.evaluate import by_copy_group

    classes = ["glioma", "no_tumor"]
    # one glioma slice three times, all wrong; two distinct no-tumour slices, one right
    y, pred, groups = [0, 0, 0, 1, 1], [1, 1, 1, 1, 0], [7, 7, 7, 2, 5]
    out = by_copy_group(y, pred, groups, classes)
    assert out == {"n_images": 5, "n_groups": 3, "images_in_copies": 3,
                   "accuracy": pytest.approx((0.0 + 1.0 + 0.0) / 3),
                   "groups_per_class": {"glioma": 1, "no_tumor": 2}}
    assert np.mean(np.array(y) == pred) == pytest.approx(0.2)  # plain accuracy differs
    # a group half right weighs as half an image
    assert by_copy_group([0, 0], [0, 1], [1, 1], classes)["accuracy"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one entry per image"):
        by_copy_group([0], [0, 1], [1, 1], classes)


def test_tumor_vs_no_tumor_binary_and_missing() -> None:
    y = np.array([0, 0, 1, 1, 1])  # ["no_tumor", "tumor"]
    p = _probs(np.array([0, 1, 1, 1, 0]), np.full(5, 0.8), n_classes=2)
    t = ev.tumor_vs_no_tumor(y, p, ["no_tumor", "tumor"])
    assert t["sensitivity"] == pytest.approx(2 / 3) and t["specificity"] == pytest.approx(1 / 2)
    assert ev.tumor_vs_no_tumor(y, p, ["a", "b"]) is None
    only_tumours = ev.tumor_vs_no_tumor(np.array([1, 1]), p[2:4], ["no_tumor", "tumor"])
    assert only_tumours["specificity"] is None and only_tumours["sensitivity"] == 1.0


def test_metrics_over_present_labels_only() -> None:
    # Only glioma and no_tumor in the folder; a meningioma prediction is still an error.
    y = np.array([0, 0, 2, 2])
    pred = np.array([0, 1, 2, 2])
    m = ev.classification_metrics(y, _probs(pred, np.full(4, 0.7)), CLASSES)
    assert m["labels_evaluated"] == ["glioma", "no_tumor"]
    assert set(m["per_class"]) == {"glioma", "no_tumor"}
    assert m["balanced_accuracy"] == pytest.approx(0.75)
    # glioma f1 = 2/3 (tp 1, fn 1), no_tumor f1 = 1
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1) / 2)
    cm = ev.confusion(y, pred, CLASSES)
    assert len(cm["matrix"]) == 4 and cm["matrix"][0] == [1, 1, 0, 0]


@pytest.mark.parametrize(
    ("probs", "message"),
    [
        (np.full((8, 3), 1 / 3), "shape"),
        (PROBS * 2, "sums to"),
        (np.where(np.eye(8, 4) > 0, -0.1, 0.4), "negative"),
    ],
)
def test_bad_inputs_are_named(probs: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ev.classification_metrics(Y_TRUE, probs, CLASSES)


def test_bad_label_is_named() -> None:
    with pytest.raises(ValueError, match=r"y_true\[1\] = 7"):
        ev.classification_metrics(np.array([0, 7]), np.eye(4)[:2], CLASSES)


def test_mcnemar_known_values() -> None:
    a = np.array([1, 0, 0, 0, 0, 0, 1, 1], bool)
    b = np.array([0, 1, 1, 1, 1, 1, 1, 0], bool)
    r = ev.mcnemar_exact(a, b)
    assert (r["b"], r["c"], r["statistic"]) == (2, 5, 2)
    # b = 2, c = 5: two-sided p = 2 * P(X<=2), X~Bin(7, .5) = 2 * 29/128
    assert r["p_value"] == pytest.approx(2 * 29 / 128)
    r = ev.mcnemar_exact(np.zeros(6, bool), np.ones(6, bool))
    assert (r["b"], r["c"], r["statistic"]) == (0, 6, 0)
    assert r["p_value"] == pytest.approx(2 / 64)
    r = ev.mcnemar_exact(np.ones(4, bool), np.ones(4, bool))
    assert r["p_value"] == 1.0 and r["b"] == r["c"] == 0
    with pytest.raises(ValueError, match="equal length"):
        ev.mcnemar_exact([True], [True, False])


def test_bootstrap_matches_normal_approximation() -> None:
    # 80 % accuracy on 400 images: the 95 % interval is about 0.8 +- 1.96 * sqrt(.16 / 400).
    y = np.zeros(400, int)
    pred = np.where(np.arange(400) % 5 == 0, 1, 0)
    lo, hi = ev.bootstrap_ci(y, pred, "accuracy", n_boot=2000, seed=1)
    half = 1.96 * np.sqrt(0.8 * 0.2 / 400)
    assert lo == pytest.approx(0.8 - half, abs=0.01)
    assert hi == pytest.approx(0.8 + half, abs=0.01)
    assert ev.bootstrap_ci(y, pred, "accuracy", n_boot=2000, seed=1) == (lo, hi)  # seeded
    assert ev.bootstrap_ci(y, y, "accuracy", n_boot=200) == (1.0, 1.0)
    with pytest.raises(ValueError, match="unknown bootstrap metric"):
        ev.bootstrap_ci(y, pred, "auc")


def test_paired_bootstrap_difference() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    noisy = np.where(rng.random(200) < 0.3, (y + 1) % 4, y)
    ci = ev.paired_bootstrap(y, {"a": y, "b": noisy, "c": noisy}, n_boot=500, seed=0)
    # A is always right, B wrong exactly where it is noisy: the paired difference is B's error
    err = float(np.mean(noisy != y))
    lo, hi = ci["difference"]["accuracy"]
    assert lo < err < hi and lo > 0.15
    # identical models on the same resamples have identical intervals
    assert ci["b"] == ci["c"]
    assert ci["a"]["macro_f1"] == [1.0, 1.0]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=40))
def test_batched_macro_f1_matches_sklearn(pairs: list[tuple[int, int]]) -> None:
    yt = np.array([a for a, _ in pairs])
    yp = np.array([b for _, b in pairs])
    labels = sorted(set(yt.tolist()))
    ours = _macro_f1_batched(yt[None, :], yp[None, :], labels)[0]
    assert ours == pytest.approx(f1_score(yt, yp, labels=labels, average="macro", zero_division=0))


def test_compare_accuracy_interval_stays_wide_on_a_small_perfect_folder() -> None:
    """16 of 16 right on a user's small folder: the percentile bootstrap said [1.000, 1.000]
    (every resample scores 1), as if the accuracy were certain; Wilson's interval says how little
    16 images show."""
    y = np.arange(16) % 4
    probs = {"custom_cnn": _probs(y, np.full(16, 0.9)),
             "mobilenetv2": _probs((y + 1) % 4, np.full(16, 0.9))}
    c = ev.compare(y, probs, CLASSES, n_boot=200)
    lo, hi = c["ci"]["custom_cnn"]["accuracy"]
    assert hi == 1.0 and lo < 0.85
    assert lo == pytest.approx(stats.binomtest(16, 16).proportion_ci(method="wilson").low)
    lo, hi = c["ci"]["mobilenetv2"]["accuracy"]  # none right: the other end
    assert lo == 0.0 and hi > 0.15


def test_compare_verdicts() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 120)
    good = np.where(rng.random(120) < 0.05, (y + 1) % 4, y)
    bad = np.where(rng.random(120) < 0.40, (y + 2) % 4, y)
    probs = {"custom_cnn": _probs(bad, np.full(120, 0.7)),
             "mobilenetv2": _probs(good, np.full(120, 0.9))}
    paths = [f"img{i}.jpg" for i in range(120)]
    c = ev.compare(y, probs, CLASSES, paths=paths, n_boot=300)
    assert c["models"] == ["custom_cnn", "mobilenetv2"] and c["n"] == 120
    assert c["verdict"].startswith("MobileNetV2 is more accurate")
    assert "is significant at the 5 % level" in c["verdict"]
    assert c["mcnemar"]["p_value"] < 0.001 and c["significant"]
    lo, hi = c["ci"]["mobilenetv2"]["accuracy"]
    assert lo <= c["table"]["mobilenetv2"]["accuracy"] <= hi
    assert c["agreement"] == pytest.approx(np.mean(good == bad))
    assert len(c["disagreements"]) == int(np.sum(good != bad))
    d = c["disagreements"][0]
    i = paths.index(d["path"])
    assert d == {"path": paths[i], "true": CLASSES[y[i]], "custom_cnn": CLASSES[bad[i]],
                 "mobilenetv2": CLASSES[good[i]]}

    # accuracy: a share of independent images, so Wilson's interval (scipy's own, for a check
    # independent of ours); macro-F1 still bootstrapped
    k = int(np.sum(good == y))
    wilson = stats.binomtest(k, 120).proportion_ci(method="wilson")
    assert c["ci"]["mobilenetv2"]["accuracy"] == pytest.approx([wilson.low, wilson.high])
    assert c["ci_method"].startswith("accuracy: Wilson score interval; macro-F1")
    assert c["ci"]["mobilenetv2"]["macro_f1"] != c["ci"]["mobilenetv2"]["accuracy"]

    # one extra error for B on 8 images: not significant
    close = y[:8].copy()
    close[0] = (close[0] + 1) % 4
    c = ev.compare(y[:8], {"custom_cnn": np.eye(4)[y[:8]], "mobilenetv2": np.eye(4)[close]},
                   CLASSES, n_boot=100)
    assert c["verdict"].startswith("Custom CNN is more accurate")
    assert "is not significant at the 5 % level" in c["verdict"] and not c["significant"]

    same = ev.compare(y[:8], {"custom_cnn": np.eye(4)[close], "mobilenetv2": np.eye(4)[close]},
                      CLASSES, n_boot=100)
    assert "equally accurate" in same["verdict"] and same["mcnemar"]["p_value"] == 1.0
    assert same["disagreements"] == [] and same["agreement"] == 1.0


def test_write_model_eval_files_are_consistent(tmp_path) -> None:
    paths = [f"Testing/x/{i}.jpg" for i in range(8)]
    m = ev.write_model_eval(tmp_path / "m", paths, Y_TRUE, PROBS, CLASSES, extra={"model": "m"})
    for name in ("metrics.json", "confusion_matrix.json", "curves.json", "predictions.csv"):
        assert (tmp_path / "m" / name).is_file()
    met = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert met == json.loads(json.dumps(m)) and met["model"] == "m"
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "per_class", "ece", "n"):
        assert key in met
    cm = json.loads((tmp_path / "m" / "confusion_matrix.json").read_text())
    with open(tmp_path / "m" / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sum(map(sum, cm["matrix"])) == len(rows) == met["n"] == 8
    assert list(rows[0]) == ["path", "true", "predicted", "p_glioma", "p_meningioma",
                             "p_no_tumor", "p_pituitary", "correct"]
    for r, t, p in zip(rows, Y_TRUE, Y_PRED, strict=True):
        assert sum(float(r[f"p_{c}"]) for c in CLASSES) == pytest.approx(1.0, abs=1e-5)
        assert (r["true"], r["predicted"]) == (CLASSES[t], CLASSES[p])
        assert r["correct"] == str(int(t == p))
    curves = json.loads((tmp_path / "m" / "curves.json").read_text())
    assert set(curves["roc"]) == set(CLASSES)
    assert curves["roc"]["glioma"]["auc"] == pytest.approx(10 / 12)
    assert curves["pr"]["glioma"]["recall"][0] == 1.0


def test_predictions_csv_bytes_and_nan_refused(tmp_path) -> None:
    paths = [f"Testing/x/{i}.jpg" for i in range(8)]
    ev.write_model_eval(tmp_path / "m", paths, Y_TRUE, PROBS, CLASSES)
    lines = (tmp_path / "m" / "predictions.csv").read_bytes().split(b"\r\n")  # csv's default
    assert lines[0] == b"path,true,predicted,p_glioma,p_meningioma,p_no_tumor,p_pituitary,correct"
    assert lines[1] == b"Testing/x/0.jpg,glioma,glioma,0.900000,0.033333,0.033333,0.033333,1"
    assert lines[2].endswith(b",glioma,meningioma,0.133333,0.600000,0.133333,0.133333,0")
    assert len(lines) == 10 and lines[-1] == b""
    # atomic writes leave no temporary files behind
    assert sorted(f.name for f in (tmp_path / "m").iterdir()) == [
        "confusion_matrix.json", "curves.json", "metrics.json", "predictions.csv"]
    # evaluation JSON refuses NaN instead of writing the non-standard `NaN`
    with pytest.raises(ValueError, match="not JSON compliant"):
        ev.write_model_eval(tmp_path / "n", paths, Y_TRUE, PROBS, CLASSES,
                            extra={"bad": float("nan")})
    assert not (tmp_path / "n" / "metrics.json").exists()


# ---------------------------------------------------------------------------------------------
# External label mapping and CV folds (pure)
# ---------------------------------------------------------------------------------------------


def test_map_external_labels() -> None:
    plan = ev.map_external_labels(["no_tumor", "tumor"], CLASSES)
    assert plan.mode == "binary" and plan.collapse and plan.class_names == ["no_tumor", "tumor"]
    plan = ev.map_external_labels(["glioma", "no_tumor"], CLASSES)
    assert plan.mode == "direct" and plan.class_names == CLASSES and not plan.collapse
    plan = ev.map_external_labels(CLASSES, ["no_tumor", "tumor"])
    assert plan.mode == "tumour-types-as-tumor"
    assert plan.mapping == {"glioma": "tumor", "meningioma": "tumor", "no_tumor": "no_tumor",
                            "pituitary": "tumor"}
    plan = ev.map_external_labels(["glioma", "pituitary"], ["glioma", "meningioma"])
    assert plan.mapping == {"glioma": "glioma"} and plan.skipped(["glioma", "pituitary"]) == [
        "pituitary"]
    with pytest.raises(ev.EvaluationError, match="do not overlap"):
        ev.map_external_labels(["no_tumor", "pituitary"], ["glioma", "meningioma"])
    with pytest.raises(ev.EvaluationError, match="needs a run that knows 'no_tumor'"):
        ev.map_external_labels(["no_tumor", "tumor"], ["glioma", "meningioma"])


def test_collapse_to_binary_matches_four_class_tumour_calls() -> None:
    p2, call = ev.collapse_to_binary(PROBS, CLASSES)
    assert p2.shape == (8, 2) and np.allclose(p2.sum(axis=1), 1)
    assert np.allclose(p2[:, 0], PROBS[:, 2])
    assert call.tolist() == [int(c != 2) for c in Y_PRED]
    t = ev.tumor_vs_no_tumor(Y_TRUE, PROBS, CLASSES)
    binary_truth = (Y_TRUE != 2).astype(int)
    m = ev.classification_metrics(binary_truth, p2, ["no_tumor", "tumor"], y_pred=call)
    assert m["per_class"]["tumor"]["recall"] == pytest.approx(t["sensitivity"])
    assert m["per_class"]["no_tumor"]["recall"] == pytest.approx(t["specificity"])


def test_cv_folds_keep_groups_together_and_stratify() -> None:
    rng = np.random.default_rng(0)
    n = 300
    labels = np.array(CLASSES)[rng.integers(0, 4, n)]
    groups = np.arange(n)
    # 30 duplicate groups of 2-4 images (same label inside a group, like real copies)
    for g in range(30):
        members = rng.choice(n, size=rng.integers(2, 5), replace=False)
        groups[members] = 1000 + g
        labels[members] = labels[members[0]]
    folds = ev.cv_folds(labels, groups, k=5, seed=1, val_fraction=0.15)
    assert len(folds) == 5
    tests = np.concatenate([f["test"] for f in folds])
    assert sorted(tests.tolist()) == list(range(n))  # test folds partition the images
    for f in folds:
        tr, va, te = (set(f[s].tolist()) for s in ("train", "val", "test"))
        assert not (tr & va or tr & te or va & te) and len(tr | va | te) == n
        gs = {s: set(groups[f[s]].tolist()) for s in ("train", "val", "test")}
        assert not (gs["train"] & gs["test"] or gs["val"] & gs["test"] or
                    gs["train"] & gs["val"]), "a duplicate group spans two parts of a fold"
        assert 0.08 < len(va) / (len(tr) + len(va)) < 0.25
        for c in CLASSES:  # stratified: each class close to its overall share in every fold
            assert abs(np.mean(labels[f["test"]] == c) - np.mean(labels == c)) < 0.08
    with pytest.raises(ev.EvaluationError, match="at least 5 duplicate groups"):
        ev.cv_folds(labels[:4], groups[:4], k=5)


# ---------------------------------------------------------------------------------------------
# On a real (smoke) run
# ---------------------------------------------------------------------------------------------


def _csv_rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def run_copy(smoke_run, tmp_path_factory):
    """A private copy of the session's smoke run, so external evaluations don't touch it."""
    import shutil

    dst = tmp_path_factory.mktemp("evalrun") / "runs" / smoke_run.name
    shutil.copytree(smoke_run, dst)
    return dst


@pytest.mark.slow
def test_smoke_run_evaluation_files_are_consistent(smoke_run) -> None:
    manifest = json.loads((smoke_run / "manifest.json").read_text())
    splits = json.loads((smoke_run / "splits.json").read_text())
    classes = manifest["class_names"]
    n_test = len(splits["test"])
    rows_by_model = {}
    for m in manifest["models"]:
        d = smoke_run / m
        met = json.loads((d / "metrics.json").read_text())
        cm = json.loads((d / "confusion_matrix.json").read_text())
        curves = json.loads((d / "curves.json").read_text())
        rows = _csv_rows(d / "predictions.csv")
        rows_by_model[m] = rows
        assert sum(map(sum, cm["matrix"])) == len(rows) == met["n"] == n_test
        assert cm["labels"] == classes
        assert {r["path"] for r in rows} == {t["path"] for t in splits["test"]}
        for r in rows:
            probs = [float(r[f"p_{c}"]) for c in classes]
            assert sum(probs) == pytest.approx(1.0, abs=1e-4)
            assert r["predicted"] == classes[int(np.argmax(probs))]
        # the matrix is the cross-tabulation of predictions.csv
        for i, t in enumerate(classes):
            for j, p in enumerate(classes):
                assert cm["matrix"][i][j] == sum(r["true"] == t and r["predicted"] == p
                                                 for r in rows)
        assert met["accuracy"] == pytest.approx(np.mean([r["correct"] == "1" for r in rows]))
        assert set(curves["roc"]) <= set(classes) and 0 <= met["ece"] <= 1
        assert met["source"]["kind"] == "test"
        # phantoms all have one size: every test image is in the training split's size group
        assert met["by_size"] == {"size": "128x128", "other_sizes": {"n": 0},
                                  "common_size": {"n": n_test, "accuracy": met["accuracy"],
                                                  "sensitivity": pytest.approx(
                                                      met["tumor_vs_no_tumor"]["sensitivity"]),
                                                  "specificity": pytest.approx(
                                                      met["tumor_vs_no_tumor"]["specificity"])}}
    comp = json.loads((smoke_run / "comparison.json").read_text())
    a, b = manifest["models"]
    assert comp["n"] == n_test and comp["models"] == [a, b]
    by_path = {m: {r["path"]: r for r in rows} for m, rows in rows_by_model.items()}
    paths = sorted(by_path[a])
    ca = np.array([by_path[a][p]["correct"] == "1" for p in paths])
    cb = np.array([by_path[b][p]["correct"] == "1" for p in paths])
    assert comp["mcnemar"]["b"] == int(np.sum(ca & ~cb))
    assert comp["mcnemar"]["c"] == int(np.sum(~ca & cb))
    assert 0 <= comp["mcnemar"]["p_value"] <= 1
    for m in (a, b):
        lo, hi = comp["ci"][m]["accuracy"]
        assert lo <= comp["table"][m]["accuracy"] <= hi
        assert len(comp["ci"][m]["macro_f1"]) == 2
    same = [by_path[a][p]["predicted"] == by_path[b][p]["predicted"] for p in paths]
    assert comp["agreement"] == pytest.approx(np.mean(same))
    assert len(comp["disagreements"]) == same.count(False)
    assert ("significant at the 5 % level" in comp["verdict"]
            or "equally accurate" in comp["verdict"])


def _folder_from_test_split(run_dir, dst, names: dict[str, str]) -> list[tuple[str, str]]:
    """Copy the run's (synthetic) test images into `dst/<names[label]>/`; returns (new, old)."""
    import shutil

    manifest = json.loads((run_dir / "manifest.json").read_text())
    root = manifest["data"]["dir"]
    pairs = []
    for item in json.loads((run_dir / "splits.json").read_text())["test"]:
        if item["label"] not in names:
            continue
        src = f"{root}/{item['path']}"
        rel = f"{names[item['label']]}/{item['path'].replace('/', '_')}"
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst / rel)
        pairs.append((rel, item["path"]))
    return pairs


@pytest.mark.slow
def test_external_nickparvar_layout_reproduces_test_predictions(run_copy, tmp_path) -> None:
    data = tmp_path / "nick"
    nick = {"glioma": "Testing/glioma", "meningioma": "Testing/meningioma",
            "no_tumor": "Testing/notumor", "pituitary": "Testing/pituitary"}
    pairs = _folder_from_test_split(run_copy, data, nick)
    summary = ev.evaluate_run(run_copy, data_dir=data, name="nick", n_boot=200)
    # "split", not another dataset's name ("nickparvar" before 2026-12-06)
    assert summary["source"]["layout"] == "split" and summary["source"]["mode"] == "direct"
    assert summary["n"] == len(pairs)
    # the test images were not training images: all found in the run's test split, all new
    overlap = summary["source"]["overlap_with_training"]
    assert overlap["n_seen"] == 0 and overlap["splits"]["test"]["exact"] == len(pairs)
    assert summary["new_to_run"]["n"] == summary["n"]
    for m in json.loads((run_copy / "manifest.json").read_text())["models"]:
        d = run_copy / m / "external" / "nick"
        rows = _csv_rows(d / "predictions.csv")
        cm = json.loads((d / "confusion_matrix.json").read_text())
        met = json.loads((d / "metrics.json").read_text())
        assert sum(map(sum, cm["matrix"])) == len(rows) == met["n"] == len(pairs)
        # same images, same model, same preparation -> same probabilities as on the test split
        test_rows = {r["path"]: r for r in _csv_rows(run_copy / m / "predictions.csv")}
        for r in rows:
            old = test_rows[dict(pairs)[r["path"]]]
            assert r["true"] == old["true"] and r["predicted"] == old["predicted"]
            assert float(r["p_glioma"]) == pytest.approx(float(old["p_glioma"]), abs=1e-5)
    comp = json.loads((run_copy / "external" / "nick" / "comparison.json").read_text())
    assert "p_value" in comp["mcnemar"] and comp["source"]["name"] == "nick"


@pytest.mark.slow
def test_external_folder_is_decoded_in_bounded_chunks(run_copy, tmp_path, monkeypatch) -> None:
    """evaluate --data never holds more than PREDICT_CHUNK decoded images (a large folder
    streams through), and chunking changes no prediction."""
    from pipeline.evaluate import decoding
    from pipeline.predict import Predictor

    folder = tmp_path / "chunked"
    pairs = _folder_from_test_split(run_copy, folder, {"glioma": "glioma", "no_tumor": "no_tumor",
                                                       "meningioma": "meningioma",
                                                       "pituitary": "pituitary"})
    assert len(pairs) > 7  # several chunks of 3
    sizes: dict[str, list[int]] = {}
    real = Predictor.predict_arrays

    def spy(self, model, x, *args, **kwargs):
        sizes.setdefault(model, []).append(len(x))
        return real(self, model, x, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict_arrays", spy)
    monkeypatch.setattr(decoding, "PREDICT_CHUNK", 3)
    summary = ev.evaluate_run(run_copy, data_dir=folder, name="chunked", n_boot=50)
    models = json.loads((run_copy / "manifest.json").read_text())["models"]
    assert summary["n"] == len(pairs) and sorted(sizes) == sorted(models)
    assert all(max(n) == 3 and sum(n) == len(pairs) for n in sizes.values())
    for m in models:
        test_rows = {r["path"]: r for r in _csv_rows(run_copy / m / "predictions.csv")}
        for r in _csv_rows(run_copy / m / "external" / "chunked" / "predictions.csv"):
            old = test_rows[dict(pairs)[r["path"]]]
            assert r["predicted"] == old["predicted"]
            assert float(r["p_glioma"]) == pytest.approx(float(old["p_glioma"]), abs=1e-5)


@pytest.mark.slow
def test_external_binary_folder_matches_tumour_view(run_copy, tmp_path) -> None:
    data = tmp_path / "yesno"
    pairs = _folder_from_test_split(run_copy, data, {"glioma": "yes", "meningioma": "yes",
                                                     "pituitary": "yes", "no_tumor": "no"})
    ev.evaluate_run(run_copy, data_dir=data, name="yesno", n_boot=200)
    for m in json.loads((run_copy / "manifest.json").read_text())["models"]:
        d = run_copy / m / "external" / "yesno"
        met = json.loads((d / "metrics.json").read_text())
        rows = _csv_rows(d / "predictions.csv")
        assert met["source"]["mode"] == "binary" and met["n"] == len(pairs) == len(rows)
        assert list(rows[0])[3:5] == ["p_no_tumor", "p_tumor"]
        assert json.loads((d / "confusion_matrix.json").read_text())["labels"] == [
            "no_tumor", "tumor"]
        # binary sensitivity/specificity equal the 4-class test-split screening view
        four = json.loads((run_copy / m / "metrics.json").read_text())["tumor_vs_no_tumor"]
        assert met["tumor_vs_no_tumor"]["sensitivity"] == pytest.approx(four["sensitivity"])
        assert met["tumor_vs_no_tumor"]["specificity"] == pytest.approx(four["specificity"])
        assert met["per_class"]["tumor"]["recall"] == pytest.approx(four["sensitivity"])


@pytest.mark.slow
def test_external_folder_with_some_classes(run_copy, tmp_path) -> None:
    data = tmp_path / "two"
    pairs = _folder_from_test_split(run_copy, data, {"glioma": "glioma", "no_tumor": "no_tumor"})
    # a folder whose name is no class (issue: it was dropped without a word)
    (data / "glioblastoma").mkdir()
    shutil.copy(next((data / "glioma").iterdir()), data / "glioblastoma" / "x.png")
    summary = ev.evaluate_run(run_copy, data_dir=data, name="two", n_boot=200)
    assert summary["n"] == len(pairs)
    assert summary["source"]["ignored_folders"] == ["glioblastoma"]
    comp = json.loads((run_copy / "external" / "two" / "comparison.json").read_text())
    assert comp["source"]["ignored_folders"] == ["glioblastoma"]
    met = json.loads((run_copy / "custom_cnn" / "external" / "two" / "metrics.json").read_text())
    assert met["labels_evaluated"] == ["glioma", "no_tumor"]
    cm = json.loads((run_copy / "custom_cnn" / "external" / "two" / "confusion_matrix.json")
                    .read_text())
    assert len(cm["matrix"]) == 4 and sum(cm["matrix"][1]) == sum(cm["matrix"][3]) == 0


def test_evaluate_cli_errors(tmp_path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["evaluate", "--artifacts", str(tmp_path)])
    assert r.exit_code == 2 and "no runs yet" in r.output
    r = runner.invoke(app, ["evaluate", "--artifacts", str(tmp_path), "--data",
                            str(tmp_path / "missing")])
    assert r.exit_code == 2 and "does not exist" in r.output
    r = runner.invoke(app, ["evaluate", "--artifacts", str(tmp_path), "--folds", "1"])
    assert r.exit_code == 2 and "--folds must be at least 2" in r.output


def test_evaluate_data_of_unreadable_files_says_which_in_one_plain_line(run_copy, tmp_path
                                                                        ) -> None:
    """It printed a Python tuple holding the file's absolute path: ('glioma/x1.jpg',
    '/abs/.../glioma/x1.jpg: not an image (text?)') (a review)."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    data = tmp_path / "notimg"
    for label in ("glioma", "no_tumor"):
        for k in range(2):
            (data / label).mkdir(parents=True, exist_ok=True)
            (data / label / f"x{k}.jpg").write_text("these are notes, not an image\n" * 4)
    r = CliRunner().invoke(app, ["evaluate", "--run", str(run_copy), "--data", str(data)])
    assert r.exit_code == 2, r.output
    line = next(x for x in r.output.splitlines() if x.startswith("error:"))
    assert line.startswith("error: none of the 4 images could be read, e.g. glioma/x0.jpg: "), line
    assert str(tmp_path) not in line and "('" not in line, line


@pytest.mark.slow
def test_evaluate_cli_external_and_bad_name(run_copy, tmp_path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    data = tmp_path / "flat"
    pairs = _folder_from_test_split(run_copy, data, {"glioma": "glioma",
                                                     "pituitary": "pituitary"})
    smaller = data / pairs[0][0]  # one image from "another source": a different pixel size
    smaller.write_bytes(cv2.imencode(smaller.suffix, cv2.resize(
        cv2.imread(str(smaller)), (96, 96)))[1].tobytes())
    copied = data / pairs[1][0]  # and one slice twice, under another name
    twin = copied.with_name("twin-" + copied.name)
    twin.write_bytes(copied.read_bytes())
    runner = CliRunner()
    r = runner.invoke(app, ["evaluate", "--run", str(run_copy), "--data", str(data), "--name",
                            "../escape"])
    assert r.exit_code == 2 and "--name" in r.output
    r = runner.invoke(app, ["evaluate", "--run", str(run_copy), "--data", str(data), "--json",
                            "--n-boot", "200"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout[r.stdout.index("{"):])
    assert out["source"]["name"] == "flat" and out["source"]["layout"] == "flat"
    assert (run_copy / "mobilenetv2" / "external" / "flat" / "predictions.csv").is_file()
    met = json.loads((run_copy / "custom_cnn" / "external" / "flat" / "metrics.json").read_text())
    by_size = met["by_size"]  # against the run's own training split's commonest size
    assert by_size["size"] == "128x128" and by_size["other_sizes"]["n"] == 1
    assert by_size["common_size"]["n"] == met["n"] - 1 == len(pairs)  # the twin included
    copies = met["copies"]  # the twin and its original count once
    assert copies["n_images"] == met["n"] and copies["images_in_copies"] >= 2
    assert copies["n_groups"] <= met["n"] - 1
    # the printed summary sets each ECE against what a calibrated model would show
    r = runner.invoke(app, ["evaluate", "--run", str(run_copy), "--data", str(data),
                            "--n-boot", "200"])
    assert r.exit_code == 0, r.output
    floor = json.loads((run_copy / "custom_cnn" / "external" / "flat" / "metrics.json")
                       .read_text())["ece_if_calibrated"]["mean"]
    assert (f"ECE a perfectly calibrated model would show on these images: Custom CNN "
            f"{floor:.3f}, MobileNetV2 ") in r.stdout
    copies = json.loads((run_copy / "custom_cnn" / "external" / "flat" / "metrics.json")
                        .read_text())["copies"]
    assert (f"Custom CNN: {copies['n_groups']} distinct images (exact or near copies counted "
            f"once), accuracy {copies['accuracy']:.3f}") in r.stdout


@pytest.mark.slow
def test_cross_validation_of_a_run_with_a_now_refused_config_fails_in_one_line(run_copy,
                                                                                tmp_path) -> None:
    """A run trained before the config's rules (its manifest names a mistyped model) is refused
    by cross-validation with an EvaluationError the CLI prints, not a traceback."""
    import shutil

    run = tmp_path / "runs" / run_copy.name
    shutil.copytree(run_copy, run)  # the module's copy stays untouched
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["config"]["models"]["customcnn"] = manifest["config"]["models"]["custom_cnn"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ev.EvaluationError,
                       match=r"cannot be retrained in folds: .*models\.customcnn is not a model"):
        ev.cross_validate(run, 2, models=["custom_cnn"], out_dir=tmp_path / "cv")
    assert not (tmp_path / "cv").exists()


@pytest.mark.slow
def test_cross_validation_folds_and_summary(run_copy, tmp_path) -> None:
    result = ev.cross_validate(run_copy, 2, models=["custom_cnn"], out_dir=tmp_path / "cv",
                               n_boot=100)
    cv = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert cv == json.loads(json.dumps(result))
    assert cv["folds"] == 2 and len(cv["per_fold"]) == 2 and cv["models"] == ["custom_cnn"]
    # folders recorded as run files record them: never this machine's absolute path
    from pipeline.artifacts import recorded_path
    assert cv["out_dir"] == recorded_path(tmp_path / "cv") and not Path(cv["out_dir"]).is_absolute()
    assert [f["run"] for f in cv["per_fold"]] == [
        recorded_path(tmp_path / "cv" / "runs" / f"fold-{k}") for k in (1, 2)]
    tests = []
    for fold in cv["per_fold"]:
        fold_dir = tmp_path / "cv" / "runs" / f"fold-{fold['fold']}"
        sp = json.loads((fold_dir / "splits.json").read_text())
        parts = {s: {t["path"] for t in sp[s]} for s in ("train", "val", "test")}
        assert not (parts["train"] & parts["test"] or parts["val"] & parts["test"])
        tests += sorted(parts["test"])
        met = json.loads((fold_dir / "custom_cnn" / "metrics.json").read_text())
        assert met["n"] == fold["n_test"] == len(parts["test"])
        assert fold["models"]["custom_cnn"]["accuracy"] == met["accuracy"]
    assert len(tests) == len(set(tests)) == cv["n_images"]  # every image tested exactly once
    accs = [f["models"]["custom_cnn"]["accuracy"] for f in cv["per_fold"]]
    s = cv["summary"]["custom_cnn"]["accuracy"]
    assert s["mean"] == pytest.approx(np.mean(accs)) and s["std"] == pytest.approx(
        np.std(accs, ddof=1))
    assert cv["pooled_out_of_fold"]["n"] == cv["n_images"]


@pytest.mark.slow
@pytest.mark.data
def test_external_evaluation_on_real_images(run_copy, real_data, tmp_path) -> None:
    """Real JPEGs (any size, grayscale or RGB) in the Nickparvar layout, plus one broken file.

    The run was trained on phantoms, so only the mechanics are checked, not the accuracy. The
    real images are linked from a temporary folder, never copied into the repository.
    """
    data = tmp_path / "real-nick"
    names = {"glioma_tumor": "glioma", "meningioma_tumor": "meningioma", "no_tumor": "notumor",
             "pituitary_tumor": "pituitary"}
    n = 0
    for src_name, dst_name in names.items():
        dst = data / "Testing" / dst_name
        dst.mkdir(parents=True)
        for f in sorted((real_data / "Testing" / src_name).iterdir())[:4]:
            (dst / f.name).symlink_to(f)
            n += 1
    (data / "Testing" / "glioma" / "broken.jpg").write_bytes(b"not a jpeg at all")
    summary = ev.evaluate_run(run_copy, data_dir=data, name="real", n_boot=200)
    assert summary["n"] == n and summary["source"]["n_unreadable"] == 1
    assert summary["source"]["unreadable"] == ["Testing/glioma/broken.jpg"]
    for m in summary["models"]:
        rows = _csv_rows(run_copy / m / "external" / "real" / "predictions.csv")
        assert len(rows) == n and all(r["path"] != "Testing/glioma/broken.jpg" for r in rows)


@pytest.mark.slow
def test_moved_dataset_needs_run_data(run_copy, synth_data, tmp_path) -> None:
    import shutil

    moved = tmp_path / "runs" / "moved"
    shutil.copytree(run_copy, moved, ignore=shutil.ignore_patterns("external"))
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["data"]["dir"] = str(tmp_path / "gone")
    manifest["data"]["dir_relative"] = None  # moved: neither recorded location exists
    (moved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ev.EvaluationError, match="--run-data"):
        ev.evaluate_run(moved, n_boot=200)
    summary = ev.evaluate_run(moved, data_root=synth_data, n_boot=200)
    assert summary["n"] == len(json.loads((moved / "splits.json").read_text())["test"])
    # recorded relative to the project, as explanations.json records its folders: run files
    # held this machine's absolute path
    assert summary["source"]["data_dir"] == relative_to_project(synth_data)
    assert not Path(summary["source"]["data_dir"]).is_absolute()
