"""Per-model metrics from arrays only: `y_true` int labels, `probs` an (N, C) softmax array.

Pure functions, testable on hand-computed cases. The numbers come from scikit-learn; only the
top-label calibration bins are written here (see `calibration` for why).

Decision rule used everywhere: a model's prediction is the arg-max class. "Tumour" means any class
other than `no_tumor`, so a four-class prediction counts as a tumour call when its predicted label
is not `no_tumor` (the same numbers a reader gets by collapsing the confusion matrix).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

from pipeline.names import NO_TUMOR

PROB_TOLERANCE = 1e-3  # softmax rows must sum to 1 within this (float32 rounding)
# draws behind `ece_if_calibrated`: its p95 spans <= 0.0015 over 20 seeds on the shipped runs
ECE_DRAWS = 4000


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


def predicted_classes(p: np.ndarray, y_pred: Sequence[int] | np.ndarray | None) -> np.ndarray:
    """`y_pred` as int64 (N,) checked against `p`, or the arg-max of `p` when it is None.

    Callers pass their own `y_pred` when the decision is not the arg-max of these probabilities
    (a four-class model scored on yes/no images calls "tumour" from its four-class arg-max).
    """
    if y_pred is None:
        return p.argmax(axis=1).astype(np.int64)
    yp = np.asarray(y_pred, dtype=np.int64)
    if yp.shape != (p.shape[0],):
        raise ValueError(f"y_pred must have shape ({p.shape[0]},), got {yp.shape}")
    return yp


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
    pred = predicted_classes(p, y_pred)
    conf = p[np.arange(len(y)), pred]
    correct = (pred == y).astype(np.float64)
    edges, which = _confidence_bins(conf, bins)
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


def _confidence_bins(conf: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges over [0, 1] and each confidence's bin index (1.0 falls in the last bin)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return edges, np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)


def ece_if_calibrated(
    probs: np.ndarray, y_pred: Sequence[int] | np.ndarray | None = None, bins: int = 10,
    draws: int = ECE_DRAWS, seed: int = 0,
) -> dict[str, Any]:
    """The ECE a perfectly calibrated model with these confidences would show on this many
    images: each image is drawn correct with probability equal to its confidence (consistency
    resampling, Broecker & Smith 2007) and scored with `calibration`'s bins.

    ECE is biased upward on finite sets, so a measured ECE means little beside a target until it
    is set against this floor: `mean` is the expected value, `p95` the level only 5 % of
    calibrated draws exceed (a measured ECE above it is real miscalibration, not chance).
    """
    p = np.asarray(probs, dtype=np.float64)
    if len(p) == 0:
        return {"mean": None, "p95": None, "draws": 0}
    pred = predicted_classes(p, y_pred)
    conf = p[np.arange(len(p)), pred]
    _, which = _confidence_bins(conf, bins)
    onehot = np.eye(bins)[which]  # (N, bins): per-bin sums as one matrix product
    conf_sum = conf @ onehot
    rng = np.random.default_rng(seed)
    eces = []
    for start in range(0, draws, 100):  # chunks keep memory flat on large folders
        k = min(100, draws - start)
        correct = (rng.random((k, len(conf))) < conf).astype(np.float64)
        eces.append(np.abs(correct @ onehot - conf_sum).sum(axis=1) / len(conf))
    values = np.concatenate(eces)
    return {"mean": float(values.mean()), "p95": float(np.quantile(values, 0.95)),
            "draws": int(draws)}


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
    pred = predicted_classes(p, y_pred)
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
    pred = predicted_classes(p, y_pred)
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
        "ece_if_calibrated": ece_if_calibrated(p, pred, bins=bins),
        "reliability": reliability,
        "roc_auc": float(np.mean(roc_aucs)) if roc_aucs else None,
        "pr_auc": float(np.mean(pr_aucs)) if pr_aucs else None,
        "roc_auc_per_class": {k: c["auc"] for k, c in cv["roc"].items()},
        "pr_auc_per_class": {k: c["ap"] for k, c in cv["pr"].items()},
        "tumor_vs_no_tumor": tumor_vs_no_tumor(y, p, class_names, y_pred=pred),
        "top_confusions": top_confusions(cm["matrix"], class_names, k=top_k),
    }


def by_size_group(
    y_true: Sequence[int] | np.ndarray, probs: np.ndarray, class_names: Sequence[str],
    is_common: Sequence[bool] | np.ndarray, common: str,
    y_pred: Sequence[int] | np.ndarray | None = None,
) -> dict[str, Any]:
    """Accuracy, tumour sensitivity and specificity for the images of the training split's
    commonest pixel size (`common`) and for all others: in the Sartaj data size marks the source,
    and a model that learned the source fails on the other group (the audit's size cue).
    Keys: `size` (`common`), `common_size` and `other_sizes` ({`n`, `accuracy`, `sensitivity`,
    `specificity`}, only `n` when the group is empty)."""
    y, p = check_inputs(y_true, probs, class_names)
    pred = predicted_classes(p, y_pred)
    mask = np.asarray(is_common, dtype=bool)
    groups: dict[str, Any] = {}
    for key, inside in (("common_size", mask), ("other_sizes", ~mask)):
        if not inside.any():
            groups[key] = {"n": 0}
            continue
        tvn = tumor_vs_no_tumor(y[inside], p[inside], class_names, pred[inside]) or {}
        groups[key] = {"n": int(inside.sum()),
                       "accuracy": float(np.mean(y[inside] == pred[inside])),
                       "sensitivity": tvn.get("sensitivity"),
                       "specificity": tvn.get("specificity")}
    return {"size": common, **groups}


def by_copy_group(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
    group_of: Sequence[int] | np.ndarray, class_names: Sequence[str],
) -> dict[str, Any]:
    """Accuracy with each group of exact or near copies counted once.

    A folder can hold copies of one slice (the Sartaj `Testing/` folder: 394 images, 282
    distinct): plain accuracy then counts one slice's answer several times. Here each group
    (`group_of`, the same id for copies, as `duplicate_components` gives) weighs one, its
    score the share of its images answered right. Keys: `n_images`, `n_groups`,
    `images_in_copies` (images in groups of two or more), `accuracy`, and per class the number
    of distinct groups (`groups_per_class`, a group counted under its images' labels)."""
    y, pred = np.asarray(y_true), np.asarray(y_pred)
    groups = np.asarray(group_of)
    if not len(y) == len(pred) == len(groups):
        raise ValueError("y_true, y_pred and group_of must have one entry per image")
    ids, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    right = np.bincount(inverse, weights=(y == pred).astype(float), minlength=len(ids))
    return {"n_images": int(len(y)), "n_groups": int(len(ids)),
            "images_in_copies": int(counts[counts > 1].sum()),
            "accuracy": float(np.mean(right / counts)) if len(ids) else None,
            "groups_per_class": {name: int(len(np.unique(groups[y == k])))
                                 for k, name in enumerate(class_names)}}
