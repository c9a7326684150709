"""Both models' answer together: their calibrated log-probabilities averaged, then one
temperature fitted on validation (a geometric pool of the two answers).

The two models err on different images. On the official `Testing/` folder (shift validation:
the run trained on `Training/` without copies of those images) each of the shipped models got
32 images right that the other got wrong, and the pooled answer was right on 0.779 of the 394
images against 0.749 for each alone. Over 32 pairs of `Testing/`-run trainings kept from
earlier recipe trials (four custom CNNs, eight MobileNetV2s, each calibrated on its validation
split) the pool beat the better model of its pair by 2.1 points on average (-0.3 to +4.1; 30
of 32 above it). Equal weights, chosen before measuring: a
weight fitted to `Testing/` would be tuned on it. Geometric, not the plain mean of the
probabilities: on both shipped runs' validation splits the two pools were equally accurate
(0.927 / 0.927, 0.954 / 0.957), but the mean was under-confident (ECE 0.056 / 0.060 against
0.037 / 0.015) and its temperature fitted further from 1 (0.82 / 0.59 against 0.93 / 0.82).

The models stay separate (each is explained by its own heatmap); only their answers are pooled.
`calibration.calibrate_run` stores the pool's temperature in calibration.json ("together"),
`evaluate` its test record in comparison.json ("together"); `Predictor.together` gives it per
image to `predict` and the dashboard's Predict card.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import run_files
from pipeline.artifacts import ArtifactError, read_json
from pipeline.calibration import apply_temperature, fit_temperature, low_confidence
from pipeline.names import NEITHER_WORDS, NO_TUMOR, TOGETHER_LABEL, display_name

# scipy and scikit-learn are imported by `fit` and `summary` only: `predict` and the dashboard's
# cards pool every answer (`combine`, `read_pool`), and those imports cost them about 1 s

KEY = "together"  # its entry in calibration.json and comparison.json
LABEL = TOGETHER_LABEL  # its name beside the models' display names (cards, tables, the PDF)
RULE = ("the models' calibrated log-probabilities averaged, then a temperature fitted on "
        "validation; answer = its arg-max")
MIN_SPECIFICITY = 0.90  # issue #16's screening target: sensitivity at specificity >= this
NUMBER_WORDS = {2: "two", 3: "three", 4: "four"}  # "the two models'", as a sentence says it
_TINY = 1e-12  # log(0) guard: a float32 softmax can underflow to 0


def combine(probs: Mapping[str, np.ndarray], temperature: float | None = None) -> np.ndarray:
    """The models' probabilities (each (N, C), or one (C,) row each) pooled: the softmax of
    their mean log-probability, divided by `temperature` when given. ValueError for fewer than
    two models or shapes that differ."""
    arrays = [np.asarray(p, dtype=np.float64) for p in probs.values()]
    if len(arrays) < 2:
        raise ValueError(f"pooling needs two models or more, got {len(arrays)}")
    if any(a.shape != arrays[0].shape for a in arrays):
        raise ValueError(f"the models' probabilities differ in shape: "
                         f"{[a.shape for a in arrays]}")
    z = np.mean([np.log(np.clip(a, _TINY, 1.0)) for a in arrays], axis=0)
    z = z / (temperature or 1.0)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def neither(probs: Mapping[str, np.ndarray], pooled: np.ndarray) -> np.ndarray:
    """Per image ((N,) bool), whether the pooled answer is a class none of the models answered:
    averaging can favour a class every model put second (on the main run's test split, 2 of the
    66 images the models disagree on; none of the official run's 79)."""
    k = np.asarray(pooled).argmax(axis=-1)
    return np.all([np.asarray(p).argmax(axis=-1) != k for p in probs.values()], axis=0)


def qualifiers(probs: Mapping[str, np.ndarray], pooled: np.ndarray, i: int,
               weak_below: float | None = None) -> str:
    """What is said beside image `i`'s pooled answer, after its confidence: ", weak" below
    `weak_below` (its validation threshold; None: not measured), ", neither model's answer"
    (`neither`); "" for none. The card's answer line, the summary table and the slices'."""
    p = np.asarray(pooled)[i]
    weak = weak_below is not None and float(p.max()) < weak_below
    third = bool(neither({m: np.asarray(a)[i:i + 1] for m, a in probs.items()}, p[None])[0])
    return (", weak" if weak else "") + (f", {NEITHER_WORDS}" if third else "")


def fit(probs: Mapping[str, np.ndarray], y_true: np.ndarray) -> dict[str, Any]:
    """calibration.json's "together": the pool's temperature fitted on these (validation)
    images' calibrated probabilities, with its ECE before and after, and the confidence below
    which its answers are weak (`calibration.low_confidence`, as each model's)."""
    from pipeline.evaluate.metrics import calibration

    pooled = combine(probs)
    t = fit_temperature(pooled, np.asarray(y_true))
    scaled = apply_temperature(pooled, t)
    return {"rule": RULE, "models": list(probs), "temperature": t, "n": int(len(pooled)),
            "ece_before": calibration(pooled, y_true)[0],
            "ece_after": calibration(scaled, y_true)[0],
            **low_confidence(scaled, np.asarray(y_true))}


def read_pool(run_dir: str | Path) -> tuple[float | None, float | None]:
    """(the pool's temperature, the confidence below which its answers are weak) from
    `<run>/calibration.json`; None for what the file, the entry or a valid number lacks (the
    pool is then left uncalibrated or unflagged, never refused)."""
    path = Path(run_dir) / run_files.CALIBRATION
    if not path.is_file():
        return None, None
    try:
        entry = read_json(path).get(KEY)
    except (ArtifactError, AttributeError):
        return None, None
    if not isinstance(entry, dict):
        return None, None
    t, below = entry.get("temperature"), entry.get("low_confidence_below")
    return (float(t) if _number(t) and t > 0 else None,
            float(below) if _number(below) and 0 <= below <= 1 else None)


def read_temperature(run_dir: str | Path) -> float | None:
    """The pool's temperature from `<run>/calibration.json` (`read_pool`)."""
    return read_pool(run_dir)[0]


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def best_sensitivity(is_tumour: np.ndarray, p_tumour: np.ndarray,
                     min_specificity: float = MIN_SPECIFICITY) -> float | None:
    """The highest tumour sensitivity any threshold on P(tumour) reaches while keeping
    specificity at least `min_specificity`; None without both kinds of image."""
    from sklearn.metrics import roc_curve

    pos = np.asarray(is_tumour, dtype=bool)
    if pos.all() or not pos.any():
        return None
    # every threshold "tumour if P >= t" at once (an external folder can hold thousands)
    fpr, tpr, _ = roc_curve(pos, np.asarray(p_tumour, dtype=np.float64))
    return float(tpr[fpr <= 1.0 - min_specificity + 1e-12].max())


def summary(y_true: Sequence[int] | np.ndarray, probs: Mapping[str, np.ndarray],
            class_names: Sequence[str], temperature: float | None = None,
            weak_below: float | None = None) -> dict[str, Any] | None:
    """comparison.json's "together": the averaged answer's accuracy (with its Wilson interval),
    each model's alone on the same images, McNemar's p against each, its ECE, tumour sensitivity
    and specificity, the best sensitivity at specificity >= 0.90, and with `weak_below` (its
    validation threshold) how many answers were weak and how often those and the rest were
    right. None for one model."""
    from pipeline.evaluate.comparison import accuracy_interval, mcnemar_exact
    from pipeline.evaluate.metrics import calibration, check_inputs, tumor_vs_no_tumor

    if len(probs) < 2:
        return None
    y, p = check_inputs(y_true, combine(probs, temperature), class_names)
    pred = p.argmax(axis=1)
    right = pred == y
    alone = {m: np.asarray(q).argmax(axis=1) == y for m, q in probs.items()}
    screen = tumor_vs_no_tumor(y, p, class_names) or {}
    nt = list(class_names).index(NO_TUMOR) if NO_TUMOR in class_names else None
    return {
        "rule": RULE, "models": list(probs), "temperature": temperature, "n": int(len(y)),
        "accuracy": float(right.mean()), "accuracy_interval": accuracy_interval(right),
        "alone": {m: float(r.mean()) for m, r in alone.items()},
        "mcnemar_p": {m: mcnemar_exact(right, r)["p_value"] for m, r in alone.items()},
        "ece": calibration(p, y)[0],
        "sensitivity": screen.get("sensitivity"), "specificity": screen.get("specificity"),
        "tumour_auc": screen.get("auc"),
        "sensitivity_at_specificity": None if nt is None else {
            "min_specificity": MIN_SPECIFICITY,
            "sensitivity": best_sensitivity(y != nt, 1.0 - p[:, nt])},
        "weak": None if weak_below is None else _weak(right, p.max(axis=1) < weak_below,
                                                       weak_below),
    }


def _weak(right: np.ndarray, weak: np.ndarray, below: float) -> dict[str, Any]:
    """How the answers said weak (confidence under `below`) and the rest fared."""
    return {"below": below, "n": int(weak.sum()),
            "accuracy": float(right[weak].mean()) if weak.any() else None,
            "accuracy_rest": float(right[~weak].mean()) if (~weak).any() else None}


def _weak_counted(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """A record's `weak` counts when some answers were weak and some not (both accuracies
    known), else None: nothing to say."""
    weak = record.get("weak")
    ok = isinstance(weak, dict) and weak.get("n") and weak.get("accuracy_rest") is not None
    return weak if ok else None


def words(record: Mapping[str, Any] | None, where: str = "test images") -> str:
    """A stored `summary` in words: "Averaged, the two models' answers were right on 78% of
    the 394 test images (alone: Custom CNN 75%, MobileNetV2 75%)." and, where weak answers
    were counted, how they fared; "" without a record."""
    if not record or not record.get("alone"):
        return ""
    alone = ", ".join(f"{display_name(m)} {a:.0%}" for m, a in record["alone"].items())
    k = len(record["alone"])
    said = (f"Averaged, the {NUMBER_WORDS.get(k, k)} models' answers were right on "
            f"{record['accuracy']:.0%} of the {record['n']} {where} (alone: {alone}).")
    if weak := _weak_counted(record):
        said += (f" {weak['n']} of those answers were weak: right on {weak['accuracy']:.0%} "
                 f"of them, and on {weak['accuracy_rest']:.0%} of the rest.")
    return said


def line(record: Mapping[str, Any]) -> str:
    """`evaluate`'s line under its verdict: "Both models averaged: accuracy 0.779 [0.736,
    0.817] (alone: Custom CNN 0.749, MobileNetV2 0.749); tumour sensitivity 0.93 at
    specificity >= 0.90; 110 answers weak (below 0.93): accuracy 0.491 on those, 0.891 on the
    rest"."""
    lo, hi = record["accuracy_interval"]
    alone = ", ".join(f"{display_name(m)} {a:.3f}" for m, a in record["alone"].items())
    best = (record.get("sensitivity_at_specificity") or {}).get("sensitivity")
    screen = (f"; tumour sensitivity {best:.2f} at specificity >= {MIN_SPECIFICITY:.2f}"
              if best is not None else "")
    if weak := _weak_counted(record):
        screen += (f"; {weak['n']} answers weak (below {weak['below']:.2f}): accuracy "
                   f"{weak['accuracy']:.3f} on those, {weak['accuracy_rest']:.3f} on the rest")
    return (f"Both models averaged: accuracy {record['accuracy']:.3f} [{lo:.3f}, {hi:.3f}] "
            f"(alone: {alone}){screen}")
