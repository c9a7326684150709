"""Evaluation: metrics on hand-computed cases, statistics on known inputs, written files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score

from pipeline import evaluate as ev

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


def test_tumor_vs_no_tumor_by_hand() -> None:
    t = ev.tumor_vs_no_tumor(Y_TRUE, PROBS, CLASSES)
    assert t is not None
    assert (t["tp"], t["fn"], t["tn"], t["fp"]) == (5, 1, 1, 1)
    assert t["sensitivity"] == pytest.approx(5 / 6)
    assert t["specificity"] == pytest.approx(1 / 2)
    # P(tumour): the no_tumor image at .85 outranks only the tumour image at .55 -> 11/12
    assert t["auc"] == pytest.approx(11 / 12)


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
    ours = ev._macro_f1_batched(yt[None, :], yp[None, :], labels)[0]
    assert ours == pytest.approx(f1_score(yt, yp, labels=labels, average="macro", zero_division=0))


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
