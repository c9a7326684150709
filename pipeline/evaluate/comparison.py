"""Comparing models evaluated on the same images: intervals, McNemar, verdict.

A model's accuracy is a share of independent images, so its interval is Wilson's score interval
(`pipeline.intervals`). The percentile bootstrap it replaced claimed certainty where a user
needs caution: on a 16-image folder it gave 16 of 16 right as [1.000, 1.000] (Wilson:
0.806-1.000). Macro-F1 and the difference between two models have no such closed form: their
intervals come from `scipy.stats.bootstrap`, every model scored on the same resamples of the same
images (so the difference is paired). The exact McNemar test comes from `scipy.stats.binomtest`;
only a vectorised macro-F1 for the bootstrap is written here (see `_macro_f1_batched` for why).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats

from pipeline.evaluate.metrics import check_inputs, classification_metrics, predicted_classes
from pipeline.intervals import N_BOOT, WILSON, share_interval
from pipeline.names import display_name

ALPHA = 0.05  # significance level of the comparison verdict



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
        "accuracy", "macro_f1"), n_boot: int = N_BOOT, seed: int = 0, confidence: float = 0.95,
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
    metric: str = "accuracy", n_boot: int = N_BOOT, seed: int = 0, confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval `(lo, hi)` of `metric` ("accuracy" or "macro_f1").

    With the same `seed` and number of images, every call draws the same resamples, so intervals
    of two models computed separately are still paired; `paired_bootstrap` does both at once.
    """
    ci = paired_bootstrap(y_true, {"m": np.asarray(y_pred)}, metrics=(metric,), n_boot=n_boot,
                          seed=seed, confidence=confidence)["m"][metric]
    return ci[0], ci[1]


def accuracy_interval(correct: Sequence[bool] | np.ndarray) -> list[float]:
    """95 % Wilson score interval of the share of `correct` answers (at least one answer)."""
    right = np.asarray(correct, dtype=bool)
    if right.size == 0:
        raise ValueError("an accuracy interval needs at least one answer")
    return share_interval(int(right.sum()), int(right.size))  # type: ignore[return-value]


def ci_method(n_boot: int, seed: int) -> str:
    """comparison.json's "ci_method": how each interval was made."""
    return (f"accuracy: {WILSON}; macro-F1 and the difference between models: "
            f"percentile bootstrap, {n_boot} paired resamples of the images, seed {seed}")


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
    alpha: float = ALPHA, alone: int | None = None,
) -> str:
    """Plain-language sentence for a paired comparison of two models' accuracy; `alone`: how
    many images each gets right that the other gets wrong (McNemar's discordant count, the same
    both ways when the accuracies are equal), said when known."""
    da, db = display_name(name_a), display_name(name_b)
    level = f"{alpha * 100:g} %"
    if acc_a == acc_b:
        # not "no difference to test": equal totals can hide images each gets right alone (a
        # student's review, 2026-12-05: 32 each way on the official run)
        each = (f"each gets {alone} images right that the other gets wrong" if alone
                else "neither gets an image right that the other gets wrong" if alone == 0
                else "each may still get right images the other gets wrong")
        return (f"{da} and {db} are equally accurate overall ({_pct(acc_a)}) on these {n} "
                f"images (McNemar exact p = {p_value:.3g}); {each}.")
    (win, wacc), (lose, lacc) = sorted([(da, acc_a), (db, acc_b)], key=lambda t: -t[1])
    head = f"{win} is more accurate ({_pct(wacc)} vs {_pct(lacc)} for {lose} on {n} images); "
    if p_value < alpha:
        return head + (f"the difference is significant at the {level} level "
                       f"(McNemar exact p = {p_value:.3g}).")
    return (head + f"the difference is not significant at the {level} level "
            f"(McNemar exact p = {p_value:.3g}), so these images cannot tell them apart.")


def _alone(mcnemar: dict[str, Any]) -> int | None:
    """The discordant count McNemar's record holds when it is the same both ways (b = c)."""
    b, c = mcnemar.get("b"), mcnemar.get("c")
    return b if isinstance(b, int) and not isinstance(b, bool) and b == c else None


def verdict_of(comparison: dict[str, Any]) -> str | None:
    """A comparison.json's sentence in today's words (`verdict`), from its figures; the stored
    sentence when they are missing (older files), None when there is neither."""
    pair = list(comparison.get("models") or [])[:2]
    table = comparison.get("table") or {}
    accs = [(table.get(m) or {}).get("accuracy") for m in pair]
    p_value = (comparison.get("mcnemar") or {}).get("p_value")
    n = comparison.get("n")
    numbers = [*accs, p_value, n]
    if len(pair) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                              for v in numbers):
        return verdict(pair[0], float(accs[0]), pair[1], float(accs[1]), float(p_value), int(n),
                       alone=_alone(comparison.get("mcnemar") or {}))
    stored = comparison.get("verdict")
    return stored if isinstance(stored, str) else None


def _table_row(model: str, met: dict[str, Any]) -> dict[str, Any]:
    """One model's row of the comparison table, from its `classification_metrics`."""
    tvn = met["tumor_vs_no_tumor"] or {}
    return {
        "display_name": display_name(model),
        **{k: met[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1",
                               "roc_auc", "pr_auc", "ece")},
        "sensitivity": tvn.get("sensitivity"), "specificity": tvn.get("specificity"),
    }


def _disagreement_rows(
    where: np.ndarray, y: np.ndarray, preds: dict[str, np.ndarray], paths: Sequence[str],
    class_names: Sequence[str],
) -> list[dict[str, Any]]:
    """{path, true, <model>: predicted label, ...} for each image index in `where`."""
    rows = []
    for i in where:
        row: dict[str, Any] = {"path": paths[i], "true": class_names[y[i]]}
        row.update({m: class_names[preds[m][i]] for m in preds})
        rows.append(row)
    return rows


def _pairwise(y: np.ndarray, preds: dict[str, np.ndarray], table: dict[str, dict[str, Any]]
              ) -> list[dict[str, Any]]:
    """McNemar test and verdict for every pair of models, in `preds` order."""
    names, n, pairs = list(preds), len(y), []
    for i, m1 in enumerate(names):
        for m2 in names[i + 1:]:
            t = mcnemar_exact(preds[m1] == y, preds[m2] == y)
            pairs.append({"models": [m1, m2], "mcnemar": t,
                          "verdict": verdict(m1, table[m1]["accuracy"], m2,
                                             table[m2]["accuracy"], t["p_value"], n,
                                             alone=_alone(t))})
    return pairs


def compare(
    y_true: Sequence[int] | np.ndarray, probs: dict[str, np.ndarray], class_names: Sequence[str],
    paths: Sequence[str] | None = None, n_boot: int = N_BOOT, seed: int = 0,
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
        preds[m] = predicted_classes(p, (y_pred or {}).get(m))
        table[m] = _table_row(m, classification_metrics(yy, p, class_names, y_pred=preds[m]))
    ci = paired_bootstrap(y, preds, n_boot=n_boot, seed=seed)
    for m in names:
        ci[m]["accuracy"] = accuracy_interval(preds[m] == y)
    out: dict[str, Any] = {
        "models": names, "display_names": {m: display_name(m) for m in names}, "n": n,
        "table": table, "ci": {m: ci[m] for m in names},
        "ci_method": ci_method(n_boot, seed),
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
    out["verdict"] = verdict(a, table[a]["accuracy"], b, table[b]["accuracy"], mc["p_value"], n,
                             alone=_alone(mc))
    differ = table[a]["accuracy"] != table[b]["accuracy"]
    out["significant"] = bool(mc["p_value"] < ALPHA and differ)
    agree = np.all([preds[m] == preds[a] for m in names], axis=0)
    out["agreement"] = float(agree.mean())
    rows = _disagreement_rows(np.flatnonzero(~agree), y, preds, paths, class_names)
    out["n_disagreements"] = len(rows)
    out["disagreements"] = rows if max_disagreements is None else rows[:max_disagreements]
    if len(names) > 2:
        out["pairwise"] = _pairwise(y, preds, table)
    return out
