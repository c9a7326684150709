"""Evaluation: per-model metrics, paired comparison, tumour-vs-no-tumour view, CV, external data.

The pure functions at the top take arrays only (`y_true` int labels, `probs` an (N, C) softmax
array, `class_names`), so they are testable on hand-computed cases. Metrics come from
scikit-learn, the exact McNemar test from `scipy.stats.binomtest` and bootstrap intervals from
`scipy.stats.bootstrap`; only the small pieces no library offers in the form we need (top-label
calibration bins, a vectorised macro-F1 for the bootstrap) are written here, each saying why.

Decision rule used everywhere: a model's prediction is the arg-max class. "Tumour" means any class
other than `no_tumor`, so a four-class prediction counts as a tumour call when its predicted label
is not `no_tumor` (the same numbers a reader gets by collapsing the confusion matrix).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from pipeline.artifacts import write_text_atomic
from pipeline.names import Progress, display_name, no_progress

NO_TUMOR = "no_tumor"
ALPHA = 0.05  # significance level of the comparison verdict
PROB_TOLERANCE = 1e-3  # softmax rows must sum to 1 within this (float32 rounding)


# ---------------------------------------------------------------------------------------------
# Input checking
# ---------------------------------------------------------------------------------------------


def check_inputs(
    y_true: Sequence[int] | np.ndarray, probs: np.ndarray, class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return `(y_true, probs)` as int64 (N,) and float64 (N, C) arrays."""
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    n_classes = len(class_names)
    if y.ndim != 1:
        raise ValueError(f"y_true must be 1-D, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y_true must hold integer class indices, got dtype {y.dtype}")
    if p.ndim != 2 or p.shape[0] != y.shape[0] or p.shape[1] != n_classes:
        raise ValueError(
            f"probs must have shape ({y.shape[0]}, {n_classes}) for {n_classes} classes "
            f"{list(class_names)}, got {p.shape}"
        )
    if y.size == 0:
        raise ValueError("nothing to evaluate: y_true is empty")
    bad = np.flatnonzero((y < 0) | (y >= n_classes))
    if bad.size:
        raise ValueError(f"y_true[{bad[0]}] = {y[bad[0]]} is not a class index in [0, {n_classes})")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        row = int(np.flatnonzero(~np.all(np.isfinite(p) & (p >= 0), axis=1))[0])
        raise ValueError(f"probs row {row} has negative or non-finite values: {p[row].tolist()}")
    sums = p.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > PROB_TOLERANCE)
    if off.size:
        raise ValueError(f"probs row {off[0]} sums to {sums[off[0]]:.6f}, not 1 (not a softmax?)")
    return y.astype(np.int64), p


def _predictions(p: np.ndarray, y_pred: Sequence[int] | np.ndarray | None) -> np.ndarray:
    if y_pred is None:
        return p.argmax(axis=1).astype(np.int64)
    yp = np.asarray(y_pred, dtype=np.int64)
    if yp.shape != (p.shape[0],):
        raise ValueError(f"y_pred must have shape ({p.shape[0]},), got {yp.shape}")
    return yp


def _f(x: float) -> float | None:
    """JSON-safe float: NaN (undefined metric) becomes None."""
    x = float(x)
    return None if math.isnan(x) else x


# ---------------------------------------------------------------------------------------------
# Per-model metrics
# ---------------------------------------------------------------------------------------------


def confusion(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
) -> dict[str, Any]:
    """Confusion matrix over all `class_names` as counts; rows = true class, columns = predicted."""
    labels = list(range(len(class_names)))
    matrix = skm.confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=labels)
    return {"labels": list(class_names), "matrix": matrix.astype(int).tolist()}


def top_confusions(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str], k: int = 5
) -> list[dict[str, Any]]:
    """The `k` largest off-diagonal cells: which true class is most often taken for which."""
    m = np.asarray(matrix)
    support = m.sum(axis=1)
    cells = [
        (int(m[i, j]), i, j)
        for i in range(m.shape[0]) for j in range(m.shape[1]) if i != j and m[i, j] > 0
    ]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [
        {"true": class_names[i], "predicted": class_names[j], "count": count,
         "rate": count / int(support[i])}
        for count, i, j in cells[:k]
    ]


def calibration(
    probs: np.ndarray, y_true: Sequence[int] | np.ndarray, bins: int = 10,
    y_pred: Sequence[int] | np.ndarray | None = None,
) -> tuple[float, list[dict[str, Any]]]:
    """Top-label expected calibration error and the reliability-diagram bins.

    Confidence = probability the model gave to its predicted class. Bins split [0, 1] into `bins`
    equal widths (a confidence of exactly 1 falls in the last bin). ECE = sum over bins of
    (bin share of images) * |accuracy in bin - mean confidence in bin|.
    Hand-written because scikit-learn's `calibration_curve` is one-vs-rest per class and drops
    empty bins, while a reliability diagram of the top label needs every bin with its count.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    pred = _predictions(p, y_pred)
    conf = p[np.arange(len(y)), pred]
    correct = (pred == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    out: list[dict[str, Any]] = []
    for b in range(bins):
        mask = which == b
        count = int(mask.sum())
        if count:
            acc, mean_conf = float(correct[mask].mean()), float(conf[mask].mean())
            ece += count / len(y) * abs(acc - mean_conf)
        else:
            acc = mean_conf = None
        out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": count,
                    "confidence": mean_conf, "accuracy": acc})
    return float(ece), out


def curves(
    y_true: Sequence[int] | np.ndarray, probs: np.ndarray, class_names: Sequence[str],
    decimals: int = 5,
) -> dict[str, Any]:
    """One-vs-rest ROC and precision-recall curves per class with their AUC / average precision.

    Classes with no positive (or no negative) image in `y_true` have no curve and are left out.
    """
    y, p = check_inputs(y_true, probs, class_names)
    roc: dict[str, Any] = {}
    pr: dict[str, Any] = {}
    for k, name in enumerate(class_names):
        positive = y == k
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = skm.roc_curve(positive, p[:, k])
        precision, recall, _ = skm.precision_recall_curve(positive, p[:, k])
        roc[name] = {"fpr": np.round(fpr, decimals).tolist(),
                     "tpr": np.round(tpr, decimals).tolist(),
                     "auc": float(skm.roc_auc_score(positive, p[:, k]))}
        pr[name] = {"precision": np.round(precision, decimals).tolist(),
                    "recall": np.round(recall, decimals).tolist(),
                    "ap": float(skm.average_precision_score(positive, p[:, k]))}
    return {"roc": roc, "pr": pr}


def tumor_vs_no_tumor(
    y_true: Sequence[int] | np.ndarray, probs: np.ndarray, class_names: Sequence[str],
    y_pred: Sequence[int] | np.ndarray | None = None,
) -> dict[str, Any] | None:
    """Screening view: sensitivity and specificity for "any tumour" vs `no_tumor`.

    Returns None when the classes have no `no_tumor` (nothing to screen against). Sensitivity is
    None when no tumour image is present, specificity None when no tumour-free image is.
    `auc` ranks images by P(tumour) = 1 - P(no_tumor), independent of the arg-max rule.
    """
    y, p = check_inputs(y_true, probs, class_names)
    if NO_TUMOR not in class_names:
        return None
    nt = list(class_names).index(NO_TUMOR)
    pred = _predictions(p, y_pred)
    is_tumor, called_tumor = y != nt, pred != nt
    tp = int(np.sum(is_tumor & called_tumor))
    fn = int(np.sum(is_tumor & ~called_tumor))
    tn = int(np.sum(~is_tumor & ~called_tumor))
    fp = int(np.sum(~is_tumor & called_tumor))

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    p_tumor = 1.0 - p[:, nt]
    auc = (float(skm.roc_auc_score(is_tumor, p_tumor))
           if is_tumor.any() and not is_tumor.all() else None)
    return {
        "sensitivity": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp), "npv": ratio(tn, tn + fn),
        "accuracy": (tp + tn) / len(y), "auc": auc,
        "tp": tp, "fn": fn, "tn": tn, "fp": fp,
        "n_tumor": tp + fn, "n_no_tumor": tn + fp,
        "rule": "tumour = predicted class is not no_tumor; auc ranks by 1 - P(no_tumor)",
    }


def classification_metrics(
    y_true: Sequence[int] | np.ndarray, probs: np.ndarray, class_names: Sequence[str],
    y_pred: Sequence[int] | np.ndarray | None = None, bins: int = 10, top_k: int = 5,
) -> dict[str, Any]:
    """All per-model numbers of metrics.json (see docs/architecture.md).

    Averages (balanced accuracy, macro/weighted F1, macro ROC/PR AUC) run over the classes present
    in `y_true`, so a folder holding only some of the run's classes is scored on those; the
    confusion matrix always spans every class. `y_pred` defaults to the arg-max of `probs`.
    """
    y, p = check_inputs(y_true, probs, class_names)
    pred = _predictions(p, y_pred)
    present = sorted(set(y.tolist()))
    prec, rec, f1, support = skm.precision_recall_fscore_support(
        y, pred, labels=present, zero_division=0
    )
    with warnings.catch_warnings():
        # Predicted classes absent from y_true only matter as errors; sklearn warns about them.
        warnings.simplefilter("ignore", UserWarning)
        balanced = skm.balanced_accuracy_score(y, pred)
    cm = confusion(y, pred, class_names)
    ece, reliability = calibration(p, y, bins=bins, y_pred=pred)
    cv = curves(y, p, class_names)
    roc_aucs = [c["auc"] for c in cv["roc"].values()]
    pr_aucs = [c["ap"] for c in cv["pr"].values()]
    return {
        "n": int(len(y)),
        "accuracy": float(skm.accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced),
        "macro_f1": float(np.mean(f1)),
        "weighted_f1": float(np.average(f1, weights=support)),
        "macro_precision": float(np.mean(prec)),
        "macro_recall": float(np.mean(rec)),
        "per_class": {
            class_names[k]: {"precision": float(prec[i]), "recall": float(rec[i]),
                             "f1": float(f1[i]), "support": int(support[i])}
            for i, k in enumerate(present)
        },
        "labels_evaluated": [class_names[k] for k in present],
        "ece": ece,
        "reliability": reliability,
        "roc_auc": float(np.mean(roc_aucs)) if roc_aucs else None,
        "pr_auc": float(np.mean(pr_aucs)) if pr_aucs else None,
        "roc_auc_per_class": {k: c["auc"] for k, c in cv["roc"].items()},
        "pr_auc_per_class": {k: c["ap"] for k, c in cv["pr"].items()},
        "tumor_vs_no_tumor": tumor_vs_no_tumor(y, p, class_names, y_pred=pred),
        "top_confusions": top_confusions(cm["matrix"], class_names, k=top_k),
    }


# ---------------------------------------------------------------------------------------------
# Uncertainty and paired comparison
# ---------------------------------------------------------------------------------------------


def _macro_f1_batched(yt: np.ndarray, yp: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """Macro-F1 along the last axis for a batch of resamples.

    Hand-written because calling sklearn's f1_score once per resample (thousands of times) is
    slow; this counts TP/FP/FN per class with numpy and matches f1_score(labels=labels,
    average="macro", zero_division=0), which the tests check.
    """
    scores = []
    for k in labels:
        t, q = yt == k, yp == k
        tp = np.sum(t & q, axis=-1)
        denom = 2 * tp + np.sum(~t & q, axis=-1) + np.sum(t & ~q, axis=-1)
        scores.append(np.divide(2.0 * tp, denom, out=np.zeros(denom.shape), where=denom > 0))
    return np.mean(scores, axis=0)


MetricFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _metric_fn(metric: str, labels: Sequence[int]) -> MetricFn:
    if metric == "accuracy":
        return lambda yt, yp: np.mean(yt == yp, axis=-1)
    if metric == "macro_f1":
        return lambda yt, yp: _macro_f1_batched(yt, yp, labels)
    raise ValueError(f"unknown bootstrap metric {metric!r}; choose 'accuracy' or 'macro_f1'")


def paired_bootstrap(
    y_true: Sequence[int] | np.ndarray, preds: dict[str, np.ndarray], metrics: Sequence[str] = (
        "accuracy", "macro_f1"), n_boot: int = 2000, seed: int = 0, confidence: float = 0.95,
) -> dict[str, dict[str, list[float]]]:
    """Percentile bootstrap intervals for several models on the same resamples of the images.

    One `scipy.stats.bootstrap` call resamples image *indices*, and every model and metric is
    computed on the same resample, so the intervals (and the difference of the first two models,
    under key "difference") are paired. Macro-F1 is averaged over the classes in `y_true`.
    Returns {model: {metric: [lo, hi]}}.
    """
    y = np.asarray(y_true, dtype=np.int64)
    names = list(preds)
    arrays = {m: np.asarray(preds[m], dtype=np.int64) for m in names}
    for m, a in arrays.items():
        if a.shape != y.shape:
            raise ValueError(f"predictions of {m!r} have shape {a.shape}, y_true has {y.shape}")
    if len(y) < 2:
        raise ValueError(f"a bootstrap needs at least 2 images, got {len(y)}")
    labels = sorted(set(y.tolist()))
    fns = [(metric, _metric_fn(metric, labels)) for metric in metrics]
    keys: list[tuple[str, str]] = []
    for metric, _ in fns:
        keys += [(m, metric) for m in names]
        if len(names) >= 2:
            keys.append(("difference", metric))

    def statistic(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        idx = np.moveaxis(idx, axis, -1).astype(np.int64)
        yt = y[idx]
        out = []
        for _, fn in fns:
            values = [fn(yt, arrays[m][idx]) for m in names]
            out += values
            if len(names) >= 2:
                out.append(values[0] - values[1])
        return np.stack(out)

    with warnings.catch_warnings():
        # A metric that is constant over resamples (e.g. 100 % accuracy) is a valid, degenerate
        # interval; scipy warns about it.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", getattr(stats, "DegenerateDataWarning", RuntimeWarning))
        res = stats.bootstrap(
            (np.arange(len(y)),), statistic, n_resamples=n_boot, confidence_level=confidence,
            method="percentile", vectorized=True, rng=np.random.default_rng(seed),
            batch=max(1, min(n_boot, 2_000_000 // max(len(y), 1))),
        )
    lo, hi = np.atleast_1d(res.confidence_interval.low), np.atleast_1d(res.confidence_interval.high)
    out: dict[str, dict[str, list[float]]] = {}
    for i, (model, metric) in enumerate(keys):
        out.setdefault(model, {})[metric] = [float(lo[i]), float(hi[i])]
    return out


def bootstrap_ci(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
    metric: str = "accuracy", n_boot: int = 2000, seed: int = 0, confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval `(lo, hi)` of `metric` ("accuracy" or "macro_f1").

    With the same `seed` and number of images, every call draws the same resamples, so intervals
    of two models computed separately are still paired; `paired_bootstrap` does both at once.
    """
    ci = paired_bootstrap(y_true, {"m": np.asarray(y_pred)}, metrics=(metric,), n_boot=n_boot,
                          seed=seed, confidence=confidence)["m"][metric]
    return ci[0], ci[1]


def mcnemar_exact(
    correct_a: Sequence[bool] | np.ndarray, correct_b: Sequence[bool] | np.ndarray
) -> dict[str, Any]:
    """McNemar's exact test on paired correctness of two models over the same images.

    b = images only model A gets right, c = images only model B gets right. Under the null both
    are equally likely, so min(b, c) ~ Binomial(b + c, 1/2); the two-sided p-value comes from
    `scipy.stats.binomtest`. With no discordant image there is no evidence either way: p = 1.
    """
    a = np.asarray(correct_a, dtype=bool)
    bb = np.asarray(correct_b, dtype=bool)
    if a.shape != bb.shape or a.ndim != 1:
        raise ValueError(
            f"correctness arrays must be 1-D and equal length, got {a.shape} and {bb.shape}"
        )
    b = int(np.sum(a & ~bb))
    c = int(np.sum(~a & bb))
    p = 1.0 if b + c == 0 else float(stats.binomtest(min(b, c), b + c, 0.5).pvalue)
    return {"statistic": min(b, c), "p_value": min(p, 1.0), "b": b, "c": c,
            "test": "McNemar exact (two-sided binomial on discordant pairs)"}


def _pct(x: float) -> str:
    return f"{x * 100:.1f} %"


def verdict(
    name_a: str, acc_a: float, name_b: str, acc_b: float, p_value: float, n: int,
    alpha: float = ALPHA,
) -> str:
    """Plain-language sentence for a paired comparison of two models' accuracy."""
    da, db = display_name(name_a), display_name(name_b)
    level = f"{alpha * 100:g} %"
    if acc_a == acc_b:
        return (f"{da} and {db} are equally accurate ({_pct(acc_a)}) on these {n} images; "
                f"there is no difference to test (McNemar exact p = {p_value:.3g}).")
    (win, wacc), (lose, lacc) = sorted([(da, acc_a), (db, acc_b)], key=lambda t: -t[1])
    head = f"{win} is more accurate ({_pct(wacc)} vs {_pct(lacc)} for {lose} on {n} images); "
    if p_value < alpha:
        return head + (f"the difference is significant at the {level} level "
                       f"(McNemar exact p = {p_value:.3g}).")
    return (head + f"the difference is not significant at the {level} level "
            f"(McNemar exact p = {p_value:.3g}), so these images cannot tell them apart.")


def compare(
    y_true: Sequence[int] | np.ndarray, probs: dict[str, np.ndarray], class_names: Sequence[str],
    paths: Sequence[str] | None = None, n_boot: int = 2000, seed: int = 0,
    y_pred: dict[str, np.ndarray] | None = None, max_disagreements: int | None = None,
) -> dict[str, Any]:
    """comparison.json for models evaluated on the same images (see docs/architecture.md).

    The McNemar test and verdict compare the first two models in `probs` order; with more
    than two, every pair is also listed under "pairwise".
    """
    names = list(probs)
    if not names:
        raise ValueError("compare needs at least one model")
    y = np.asarray(y_true, dtype=np.int64)
    n = len(y)
    paths = list(paths) if paths is not None else [str(i) for i in range(n)]
    if len(paths) != n:
        raise ValueError(f"{len(paths)} paths for {n} images")
    preds: dict[str, np.ndarray] = {}
    table: dict[str, dict[str, Any]] = {}
    for m in names:
        yy, p = check_inputs(y, probs[m], class_names)
        preds[m] = _predictions(p, (y_pred or {}).get(m))
        met = classification_metrics(yy, p, class_names, y_pred=preds[m])
        tvn = met["tumor_vs_no_tumor"] or {}
        table[m] = {
            "display_name": display_name(m),
            **{k: met[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1",
                                   "roc_auc", "pr_auc", "ece")},
            "sensitivity": tvn.get("sensitivity"), "specificity": tvn.get("specificity"),
        }
    ci = paired_bootstrap(y, preds, n_boot=n_boot, seed=seed)
    out: dict[str, Any] = {
        "models": names, "display_names": {m: display_name(m) for m in names}, "n": n,
        "table": table, "ci": {m: ci[m] for m in names},
        "ci_method": f"percentile bootstrap, {n_boot} paired resamples of the images, seed {seed}",
    }
    if len(names) == 1:
        out.update(mcnemar=None, verdict=f"Only {display_name(names[0])} was evaluated; "
                   "there is nothing to compare.", agreement=1.0, disagreements=[])
        return out
    a, b = names[0], names[1]
    out["ci"]["difference"] = ci["difference"]
    out["difference"] = {"models": [a, b],
                         "accuracy": table[a]["accuracy"] - table[b]["accuracy"],
                         "macro_f1": table[a]["macro_f1"] - table[b]["macro_f1"]}
    mc = mcnemar_exact(preds[a] == y, preds[b] == y)
    out["mcnemar"] = mc
    out["verdict"] = verdict(a, table[a]["accuracy"], b, table[b]["accuracy"], mc["p_value"], n)
    differ = table[a]["accuracy"] != table[b]["accuracy"]
    out["significant"] = bool(mc["p_value"] < ALPHA and differ)
    agree = np.all([preds[m] == preds[a] for m in names], axis=0)
    out["agreement"] = float(agree.mean())
    rows = []
    for i in np.flatnonzero(~agree):
        row: dict[str, Any] = {"path": paths[i], "true": class_names[y[i]]}
        row.update({m: class_names[preds[m][i]] for m in names})
        rows.append(row)
    out["n_disagreements"] = len(rows)
    out["disagreements"] = rows if max_disagreements is None else rows[:max_disagreements]
    if len(names) > 2:
        pairs = []
        for i, m1 in enumerate(names):
            for m2 in names[i + 1:]:
                t = mcnemar_exact(preds[m1] == y, preds[m2] == y)
                pairs.append({"models": [m1, m2], "mcnemar": t,
                              "verdict": verdict(m1, table[m1]["accuracy"], m2,
                                                 table[m2]["accuracy"], t["p_value"], n)})
        out["pairwise"] = pairs
    return out


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (see artifacts.write_text_atomic); NaN is refused, not written."""
    write_text_atomic(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def write_predictions_csv(
    path: Path, paths: Sequence[str], y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray,
    class_names: Sequence[str],
) -> None:
    """predictions.csv: path,true,predicted,p_<class>...,correct (correct is 1 or 0)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "true", "predicted", *[f"p_{c}" for c in class_names], "correct"])
            for i, rel in enumerate(paths):
                w.writerow([rel, class_names[y_true[i]], class_names[y_pred[i]],
                            *[f"{v:.6f}" for v in probs[i]], int(y_true[i] == y_pred[i])])
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_model_eval(
    model_dir: str | Path, paths: Sequence[str], y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray, class_names: Sequence[str], y_pred: Sequence[int] | np.ndarray | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write metrics.json, confusion_matrix.json, curves.json and predictions.csv into `model_dir`.

    `paths` are the images' paths relative to the data folder, in the order of `y_true`.
    `extra` keys (model name, source of the images, ...) are added to metrics.json.
    Returns the metrics dict.
    """
    model_dir = Path(model_dir)
    y, p = check_inputs(y_true, probs, class_names)
    if len(paths) != len(y):
        raise ValueError(f"{len(paths)} paths for {len(y)} predictions")
    pred = _predictions(p, y_pred)
    met = {**(extra or {}), **classification_metrics(y, p, class_names, y_pred=pred)}
    write_predictions_csv(model_dir / "predictions.csv", paths, y, pred, p, class_names)
    write_json(model_dir / "confusion_matrix.json", confusion(y, pred, class_names))
    write_json(model_dir / "curves.json", curves(y, p, class_names))
    write_json(model_dir / "metrics.json", met)
    return met


# ---------------------------------------------------------------------------------------------
# External label mapping (pure)
# ---------------------------------------------------------------------------------------------


class EvaluationError(ValueError):
    """A run or data folder that cannot be evaluated; the message names what is wrong."""


BINARY_CLASSES = ["no_tumor", "tumor"]


@dataclass
class LabelPlan:
    """How a data folder's labels are scored against a run's classes.

    mode "direct": folder labels are run classes (images of other labels are skipped);
    "binary": a yes/no folder scored against a multi-class run, whose probabilities collapse to
    P(no_tumor) and P(tumour) = 1 - P(no_tumor); "tumour-types-as-tumor": a four-class folder
    scored against a binary run, every tumour type counting as "tumor".
    """

    mode: str
    class_names: list[str]  # the classes metrics are computed over
    mapping: dict[str, str]  # folder label -> evaluation label; labels not in it are skipped
    collapse: bool  # collapse the run's probabilities to [no_tumor, tumor]

    def skipped(self, folder_labels: Sequence[str]) -> list[str]:
        return sorted(set(folder_labels) - set(self.mapping))


def map_external_labels(folder_labels: Sequence[str], run_classes: Sequence[str]) -> LabelPlan:
    """Decide how images labelled `folder_labels` are scored by a run with `run_classes`."""
    folder, run = set(folder_labels), list(run_classes)
    if not folder:
        raise EvaluationError("the data folder has no labelled images")
    if "tumor" in folder and folder <= set(BINARY_CLASSES) and "tumor" not in run:
        if NO_TUMOR not in run:
            raise EvaluationError(
                f"a yes/no folder needs a run that knows {NO_TUMOR!r}; this run's classes are "
                f"{run}")
        return LabelPlan("binary", list(BINARY_CLASSES), {c: c for c in folder}, collapse=True)
    if sorted(run) == BINARY_CLASSES and folder - set(BINARY_CLASSES):
        mapping = {c: (NO_TUMOR if c == NO_TUMOR else "tumor") for c in folder}
        return LabelPlan("tumour-types-as-tumor", run, mapping, collapse=False)
    mapping = {c: c for c in folder if c in run}
    if not mapping:
        raise EvaluationError(
            f"the data folder's classes {sorted(folder)} do not overlap the run's classes {run}")
    return LabelPlan("direct", run, mapping, collapse=False)


def collapse_to_binary(probs: np.ndarray, class_names: Sequence[str]) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """Binary view of multi-class probabilities: ([P(no_tumor), P(tumour)], tumour call 0/1).

    The tumour call is the arg-max rule of the module docstring (predicted class is not
    no_tumor), so it matches `tumor_vs_no_tumor` of the same model on the same image.
    """
    nt = list(class_names).index(NO_TUMOR)
    p = np.asarray(probs, dtype=np.float64)
    p_no = p[:, nt]
    return np.stack([p_no, 1.0 - p_no], axis=1), (p.argmax(axis=1) != nt).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Evaluating a run (test split or any other data folder)
# ---------------------------------------------------------------------------------------------

PREDICT_CHUNK = 128  # images decoded and predicted at a time: bounded memory on any folder size
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


def _predict_records(predictor: Any, model: str, records: Sequence[Any], progress: Progress
                     ) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """Probabilities for `records` in chunks; returns (probs, rel paths loaded, failures)."""
    from pipeline import data

    info = predictor.info[model]
    size, crop = int(info["image_size"]), bool(info.get("crop_head", True))
    labels = sorted({r.label for r in records})
    out, rels, failed = [], [], []
    desc = f"{display_name(model)}: predicting"
    progress(desc, 0, len(records))
    for start in range(0, len(records), PREDICT_CHUNK):
        chunk = records[start:start + PREDICT_CHUNK]
        arrays = data.load_arrays(chunk, labels, size, crop=crop)
        failed += arrays.failed
        if len(arrays.records):
            out.append(predictor.predict_arrays(model, arrays.x))
            rels += [r.rel for r in arrays.records]
        progress(desc, min(start + PREDICT_CHUNK, len(records)), len(records))
    n_classes = len(predictor.class_names)
    probs = np.concatenate(out) if out else np.zeros((0, n_classes), dtype=np.float32)
    return probs, rels, failed


def _renormalise(probs: np.ndarray) -> np.ndarray:
    """float32 softmax rows can be off 1 by ~1e-7; make them sum to 1 exactly in float64."""
    p = np.asarray(probs, dtype=np.float64)
    return p / p.sum(axis=1, keepdims=True)


def _summary(met: dict[str, Any]) -> dict[str, Any]:
    tvn = met.get("tumor_vs_no_tumor") or {}
    return {"n": met["n"], "accuracy": met["accuracy"], "balanced_accuracy":
            met["balanced_accuracy"], "macro_f1": met["macro_f1"], "roc_auc": met["roc_auc"],
            "ece": met["ece"], "sensitivity": tvn.get("sensitivity"),
            "specificity": tvn.get("specificity")}


def _sha1(path: Path) -> str | None:
    """SHA-1 of a regular file's bytes; None for anything unreadable.

    images.read_file, not Path.read_bytes: a FIFO named scan.png in an external folder would
    block forever and /dev/zero never ends; read_file refuses non-regular files unread.
    """
    from pipeline.images import ImageError, read_file

    try:
        return hashlib.sha1(read_file(path)).hexdigest()
    except (ImageError, OSError):
        return None


def training_overlap(run: Any, records: Sequence[Any]) -> dict[str, Any]:
    """Images of `records` that are byte-identical to a train/val image of the run.

    Public datasets are often merged from each other (Nickparvar's includes Sartaj's), so an
    "external" folder can contain the very images a model was trained on, inflating its score.
    Only exact copies are found (SHA-1 of the file bytes: cheap, no decoding); re-encoded copies
    are not, so a count of 0 is a lower bound, not a guarantee.
    """
    root = run.data_dir
    try:
        splits = run.read_json("splits.json")
    except Exception as exc:  # missing/damaged splits: report, never fail the evaluation
        return {"checked": False, "reason": f"splits.json unreadable: {exc}"}
    if root is None or not root.is_dir():
        return {"checked": False, "reason": f"the run's dataset folder {root} is not there"}
    seen: set[str] = set()
    for split in ("train", "val"):
        for item in splits.get(split, []):
            digest = _sha1(root.joinpath(*PurePosixPath(str(item["path"])).parts))
            if digest:
                seen.add(digest)
    hits = [r.rel for r in records if _sha1(Path(r.path)) in seen]
    return {"checked": True, "method": "SHA-1 of file bytes against the run's train+val images",
            "n_exact": len(hits), "examples": hits[:20]}


def evaluate_run(
    run_dir: str | Path, data_dir: str | Path | None = None, name: str | None = None,
    progress: Progress | None = None, data_root: str | Path | None = None,
    n_boot: int = 2000, seed: int = 0,
) -> dict[str, Any]:
    """Evaluate every model of a run and write the evaluation files (docs/architecture.md).

    Without `data_dir`: the run's own test split (splits.json), read from the manifest's data
    folder or from `data_root` when the dataset has moved; files go to `<run>/<model>/` and
    `<run>/comparison.json`. With `data_dir`: every image of that folder (any supported layout;
    labels mapped by `map_external_labels`), files under `<run>/<model>/external/<name>/` and
    `<run>/external/<name>/comparison.json`; nothing is retrained. Returns a summary dict.
    """
    from pipeline import artifacts, data
    from pipeline.predict import Predictor

    progress = progress or no_progress
    try:
        run = artifacts.open_run(run_dir)
    except artifacts.ArtifactError as exc:
        raise EvaluationError(str(exc)) from exc
    run_classes = run.class_names
    if data_dir is None:
        root = Path(data_root) if data_root is not None else run.data_dir
        if root is None or not root.is_dir():
            raise EvaluationError(
                f"the run's dataset folder {root} is not there; pass the folder it moved to "
                "(CLI: --data-root DIR)")
        try:
            test = data.splits_from_json(run.read_json("splits.json"), root).test
        except artifacts.ArtifactError as exc:
            raise EvaluationError(str(exc)) from exc
        if not test:
            raise EvaluationError(f"run {run.run_id} has an empty test split")
        plan = LabelPlan("test", run_classes, {c: c for c in run_classes}, collapse=False)
        records = test
        source: dict[str, Any] = {"kind": "test", "data_dir": str(root), "split": "test"}
        out_dirs = {m: run.path / m for m in run.model_names}
        comparison_path = run.path / "comparison.json"
    else:
        if name is not None and (not _SAFE_NAME.match(name) or name in {".", ".."}):
            raise EvaluationError(f"--name {name!r} must be letters, digits, '.', '_' or '-' "
                                  "(at most 80, not starting with '.' or '-')")
        ds = data.discover(data_dir)
        plan = map_external_labels(ds.classes, run_classes)
        if name is None:
            name = re.sub(r"[^A-Za-z0-9._-]+", "-", ds.root.name).strip(".-_") or "external"
        records = [r for r in ds.records if r.label in plan.mapping]
        skipped = plan.skipped(ds.classes)
        source = {"kind": "external", "name": name, "data_dir": str(ds.root),
                  "layout": ds.layout, "folder_classes": ds.classes, "mode": plan.mode,
                  "label_mapping": plan.mapping, "skipped_classes": {
                      c: sum(1 for r in ds.records if r.label == c) for c in skipped}}
        source["overlap_with_training"] = training_overlap(run, records)
        out_dirs = {m: run.path / m / "external" / name for m in run.model_names}
        comparison_path = run.path / "external" / name / "comparison.json"
    source["run_id"] = run.run_id

    predictor = Predictor(run)
    label_of = {r.rel: plan.mapping[r.label] for r in records}
    raw: dict[str, tuple[np.ndarray, list[str]]] = {}
    failed: dict[str, str] = {}
    for m in run.model_names:
        probs, rels, bad = _predict_records(predictor, m, records, progress)
        raw[m] = (probs, rels)
        failed.update(dict(bad))
    # An unreadable file fails for every model; keep the images every model scored, in order.
    keep = [r.rel for r in records if r.rel not in failed]
    if not keep:
        raise EvaluationError(f"none of the {len(records)} images could be read, e.g. "
                              f"{next(iter(failed.items()), ('', ''))}")
    source.update(n_images=len(records), n_unreadable=len(failed),
                  unreadable=sorted(failed)[:20])
    eval_classes = plan.class_names
    y = np.array([eval_classes.index(label_of[rel]) for rel in keep], dtype=np.int64)
    probs_eval: dict[str, np.ndarray] = {}
    preds_eval: dict[str, np.ndarray] = {}
    summaries: dict[str, Any] = {}
    for i, m in enumerate(run.model_names):
        probs, rels = raw[m]
        pos = {rel: k for k, rel in enumerate(rels)}
        p = _renormalise(probs[[pos[rel] for rel in keep]])
        if plan.collapse:
            p, pred = collapse_to_binary(p, run_classes)
        else:
            pred = p.argmax(axis=1)
        probs_eval[m], preds_eval[m] = p, pred
        met = write_model_eval(out_dirs[m], keep, y, p, eval_classes, y_pred=pred, extra={
            "model": m, "display_name": display_name(m), "source": source})
        summaries[m] = _summary(met)
        progress("writing evaluation files", i + 1, len(run.model_names))
    comp = compare(y, probs_eval, eval_classes, paths=keep, y_pred=preds_eval, n_boot=n_boot,
                   seed=seed)
    comp["source"] = source
    write_json(comparison_path, comp)
    return {"run_id": run.run_id, "source": source, "n": int(len(y)), "models": summaries,
            "verdict": comp["verdict"], "mcnemar": comp["mcnemar"], "ci": comp["ci"],
            "files": {m: str(d) for m, d in out_dirs.items()},
            "comparison": str(comparison_path)}


# ---------------------------------------------------------------------------------------------
# Cross-validation
# ---------------------------------------------------------------------------------------------

CV_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "roc_auc", "ece",
              "sensitivity", "specificity")


def cv_folds(
    labels: Sequence[str], groups: Sequence[int], k: int, seed: int = 42,
    val_fraction: float = 0.15,
) -> list[dict[str, np.ndarray]]:
    """Stratified K-fold over duplicate groups: [{"train", "val", "test"}: index arrays].

    The test folds partition the images (scikit-learn's StratifiedGroupKFold, so a duplicate
    group never spans two folds); each fold's validation set (early stopping) is one inner
    StratifiedGroupKFold fold of the remaining images, about `val_fraction` of them.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    y = np.asarray(labels)
    g = np.asarray(groups)
    if y.shape != g.shape:
        raise ValueError(f"{len(y)} labels but {len(g)} groups")
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {k}")
    n_groups = len(np.unique(g))
    if n_groups < k:
        raise EvaluationError(f"{k} folds need at least {k} duplicate groups; the data has "
                              f"{n_groups}")
    if not 0 < val_fraction < 0.5:
        raise ValueError(f"val_fraction must lie in (0, 0.5), got {val_fraction}")
    inner_k = max(2, round(1 / val_fraction))
    outer = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = []
    for rest, test in outer.split(np.zeros(len(y)), y, g):
        inner_k_here = min(inner_k, len(np.unique(g[rest])))
        inner = StratifiedGroupKFold(n_splits=inner_k_here, shuffle=True, random_state=seed)
        tr, va = next(inner.split(np.zeros(len(rest)), y[rest], g[rest]))
        folds.append({"train": np.sort(rest[tr]), "val": np.sort(rest[va]), "test": np.sort(test)})
    return folds


def _mean_std(values: Sequence[float | None]) -> dict[str, Any]:
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if not v.size:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def cross_validate(
    run_dir: str | Path, folds: int, data_root: str | Path | None = None,
    progress: Progress | None = None, say: Callable[[str], None] | None = None,
    out_dir: str | Path | None = None, n_boot: int = 1000, models: Sequence[str] | None = None,
) -> dict[str, Any]:
    """K-fold cross-validation of a run's models with the run's config on the run's dataset.

    Every fold is trained with `pipeline.train.train_one` (the same code as `train`) into a
    complete run folder `<out>/runs/fold-<k>/` and evaluated with `evaluate_run` on its held-out
    fold. `<out>/cv.json` holds per-fold metrics, mean ± sample std per model and a McNemar test
    on the pooled out-of-fold predictions (each image is predicted by the model that did not
    see it). `<out>` defaults to `<run>/cv/<timestamp>/`; `models` limits CV to some of the
    run's models. Returns the cv.json object.
    """
    import time

    from pipeline import artifacts, data
    from pipeline.config import TrainConfig
    from pipeline.train import train_one

    progress = progress or no_progress
    say = say or (lambda msg: None)
    try:
        run = artifacts.open_run(run_dir)
    except artifacts.ArtifactError as exc:
        raise EvaluationError(str(exc)) from exc
    root = Path(data_root) if data_root is not None else run.data_dir
    if root is None or not root.is_dir():
        raise EvaluationError(f"the run's dataset folder {root} is not there; pass the folder it "
                              "moved to (CLI: --data-root DIR)")
    cfg = TrainConfig.from_dict(run.manifest["config"])
    unknown = sorted(set(models or []) - set(run.model_names))
    if unknown:
        raise EvaluationError(f"run {run.run_id} has no model(s) {unknown}; it has "
                              f"{run.model_names}")
    models = list(models) if models else run.model_names
    ds = data.discover(root)
    if ds.classes != run.class_names:
        raise EvaluationError(f"{root} now has classes {ds.classes}, the run was trained on "
                              f"{run.class_names}")
    # All readable images (capped like the run), then the data layer's duplicate groups.
    pool = data.make_splits(ds, seed=cfg.seed, val_fraction=0.0, test_fraction=0.0,
                            dedupe=cfg.dedupe, max_per_class=cfg.max_images, progress=progress)
    records = pool.train
    if cfg.dedupe:
        # data._group is the same grouping make_splits uses (exact SHA-1 + near pHash pairs);
        # reused so CV folds and the run's own splits agree on what a duplicate is.
        comps = data._group(records, data.hash_files(records)).component_of
    else:
        comps = list(range(len(records)))
    labels = [r.label for r in records]
    fold_idx = cv_folds(labels, comps, folds, seed=cfg.seed, val_fraction=cfg.val_fraction)

    runs_root = (Path(out_dir) if out_dir is not None
                 else run.path / "cv" / time.strftime("%Y%m%d-%H%M%S"))
    if (runs_root / "cv.json").exists():
        raise EvaluationError(f"{runs_root} already holds a cross-validation; choose another")
    # Share train's decoded-array cache (artifacts/cache) when the run sits in an artifacts tree.
    cache = run.path.parent.parent / "cache" if run.path.parent.name == "runs" else None
    per_fold: list[dict[str, Any]] = []
    oof_true: list[int] = []
    oof_pred: dict[str, list[int]] = {m: [] for m in models}
    oof_paths: list[str] = []
    for k, idx in enumerate(fold_idx, 1):
        splits = data.Splits(train=[records[i] for i in idx["train"]],
                             val=[records[i] for i in idx["val"]],
                             test=[records[i] for i in idx["test"]])
        say(f"fold {k}/{folds}: {len(splits.train)} train / {len(splits.val)} val / "
            f"{len(splits.test)} test images")
        writer = artifacts.RunWriter(runs_root, run_id=f"fold-{k}")
        writer.write_json("splits.json", data.splits_to_json(splits, ds.root))
        state: dict[str, Any] = {}
        infos = {m: train_one(m, cfg, ds.classes, splits, writer, state, cache, progress,
                              say).info for m in models}
        fold_dir = writer.finalize({
            "created": artifacts.utc_now(), "git_commit": artifacts.git_commit(),
            "data": {"dir": str(ds.root), "layout": ds.layout, "n_images": len(ds.records),
                     "binary": ds.binary},
            "splits": {"strategy": f"cv-fold {k}/{folds} (StratifiedGroupKFold)",
                       "seed": cfg.seed, "train": len(splits.train), "val": len(splits.val),
                       "test": len(splits.test)},
            "class_names": ds.classes, "config": cfg.to_dict(),
            "versions": artifacts.library_versions(), "models": infos,
            "cv_of": run.run_id,
        }, set_latest=False)
        evaluate_run(fold_dir, progress=progress, n_boot=n_boot, seed=cfg.seed)
        row: dict[str, Any] = {"fold": k, "run": str(fold_dir), "n_train": len(splits.train),
                               "n_val": len(splits.val), "n_test": len(splits.test), "models": {}}
        preds_by_path: dict[str, dict[str, str]] = {}
        for m in models:
            met = read_json_file(fold_dir / m / "metrics.json")
            row["models"][m] = _summary(met) | {"weighted_f1": met["weighted_f1"]}
            with open(fold_dir / m / "predictions.csv", newline="") as fh:
                for r in csv.DictReader(fh):
                    preds_by_path.setdefault(r["path"], {"true": r["true"]})[m] = r["predicted"]
        for path, p in preds_by_path.items():
            if all(m in p for m in models):
                oof_paths.append(path)
                oof_true.append(ds.classes.index(p["true"]))
                for m in models:
                    oof_pred[m].append(ds.classes.index(p[m]))
        per_fold.append(row)
        write_json(runs_root / "cv.partial.json", {"folds": per_fold})

    summary = {m: {metric: _mean_std([f["models"][m].get(metric) for f in per_fold])
                   for metric in CV_METRICS} for m in models}
    y = np.array(oof_true, dtype=np.int64)
    pooled: dict[str, Any] = {"n": int(len(y)), "accuracy": {
        m: float(np.mean(np.array(oof_pred[m]) == y)) for m in models}}
    if len(models) >= 2 and len(y):
        a, b = models[0], models[1]
        mc = mcnemar_exact(np.array(oof_pred[a]) == y, np.array(oof_pred[b]) == y)
        pooled["mcnemar"] = mc
        pooled["verdict"] = verdict(a, pooled["accuracy"][a], b, pooled["accuracy"][b],
                                    mc["p_value"], len(y))
    result = {
        "run_id": run.run_id, "folds": folds, "seed": cfg.seed, "data_dir": str(ds.root),
        "n_images": len(records), "models": models,
        "method": "StratifiedGroupKFold over duplicate groups (exact + near duplicates never "
                  "split across folds); validation = one inner group fold of the rest; "
                  "std is the sample standard deviation over folds",
        "per_fold": per_fold, "summary": summary, "pooled_out_of_fold": pooled,
        "out_dir": str(runs_root),
    }
    write_json(runs_root / "cv.json", result)
    (runs_root / "cv.partial.json").unlink(missing_ok=True)
    return result


def read_json_file(path: Path) -> Any:
    """Read one of our JSON files (the evaluation writes them, so damage is a bug: fail loudly)."""
    with open(path) as fh:
        return json.load(fh)
