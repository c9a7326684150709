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
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from sklearn import metrics as skm

NO_TUMOR = "no_tumor"
DISPLAY_NAMES = {"custom_cnn": "Custom CNN", "mobilenetv2": "MobileNetV2"}
ALPHA = 0.05  # significance level of the comparison verdict
PROB_TOLERANCE = 1e-3  # softmax rows must sum to 1 within this (float32 rounding)


def display_name(model: str) -> str:
    """Human name of a registry model ("mobilenetv2" -> "MobileNetV2")."""
    return DISPLAY_NAMES.get(model, model)


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


def verdict(
    name_a: str, acc_a: float, name_b: str, acc_b: float, p_value: float, n: int,
    alpha: float = ALPHA,
) -> str:
    """Plain-language sentence for a paired comparison of two models' accuracy."""
    da, db = display_name(name_a), display_name(name_b)
    level = f"{alpha * 100:g} %"
    if acc_a == acc_b:
        return (f"{da} and {db} are equally accurate ({acc_a:.1%}) on these {n} images; "
                f"there is no difference to test (McNemar exact p = {p_value:.3g}).")
    (win, wacc), (lose, lacc) = sorted([(da, acc_a), (db, acc_b)], key=lambda t: -t[1])
    head = f"{win} is more accurate ({wacc:.1%} vs {lacc:.1%} for {lose} on {n} images); "
    if p_value < alpha:
        return head + (f"the difference is significant at the {level} level "
                       f"(McNemar exact p = {p_value:.3g}).")
    return (head + f"the difference is not significant at the {level} level "
            f"(McNemar exact p = {p_value:.3g}), so this test set cannot tell them apart.")


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
    """Write JSON atomically (temp file in the same folder + os.replace): readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=2, allow_nan=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
