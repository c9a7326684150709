"""Temperature scaling (Guo et al., 2017): one temperature per model, fitted on validation data.

The models end in a softmax, so their logits are recovered as log-probabilities: `log p` differs
from the logits by one constant per image, which the softmax cancels, so `softmax(log p / T)` is
exactly `softmax(z / T)`. The temperature T > 0 minimises the negative log-likelihood of the
run's **validation** split (never the test split); T > 1 softens over-confident probabilities,
T < 1 sharpens under-confident ones, and the arg-max class never changes.

`calibrate_run` stores the fit in `<run>/calibration.json`; `pipeline.predict.Predictor` reads it
and applies T to every probability it returns, and `pipeline.evaluate` reports the test ECE
before (`ece_uncalibrated`) and after (`ece`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import run_files
from pipeline.artifacts import ArtifactError, read_json, shown_path, utc_now
from pipeline.names import Progress, display_name, no_progress

FILE = run_files.CALIBRATION
METHOD = "temperature scaling: one T per model minimising the validation split's NLL"
# Search range of T (bounded search over log T); a fit at a bound is reported as it is.
T_MIN, T_MAX = 0.05, 20.0
_TINY = np.finfo(np.float64).tiny  # log(0) guard: a float32 softmax can underflow to 0


def _logits(probs: np.ndarray) -> np.ndarray:
    """Log-probabilities (N, C) in float64: the logits up to one constant per row."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), _TINY, None))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """`softmax(log(probs) / T)` row by row, float64; T = 1 returns the (renormalised) input."""
    t = float(temperature)
    if not math.isfinite(t) or t <= 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    z = _logits(probs) / t
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(probs: np.ndarray, y_true: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true classes after temperature scaling."""
    from scipy.special import log_softmax

    y = np.asarray(y_true, dtype=np.int64)
    logp = log_softmax(_logits(probs) / float(temperature), axis=-1)
    return float(-logp[np.arange(len(y)), y].mean())


def fit_temperature(probs: np.ndarray, y_true: np.ndarray) -> float:
    """The T in [T_MIN, T_MAX] minimising `nll(probs, y_true, T)` (bounded search over log T)."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) != len(y) or not len(y):
        raise ValueError(f"need (N, C) probabilities and N labels, got {p.shape} and {y.shape}")
    res = minimize_scalar(lambda log_t: nll(p, y, math.exp(log_t)), method="bounded",
                          bounds=(math.log(T_MIN), math.log(T_MAX)),
                          options={"xatol": 1e-5})
    return float(math.exp(res.x))


def read_temperatures(run_dir: str | Path) -> dict[str, float]:
    """{model: T} from `<run>/calibration.json`; {} when the run has none.

    ArtifactError (one line) when the file is damaged: a wrong temperature would silently
    distort every probability shown.
    """
    path = Path(run_dir) / FILE
    if not path.exists():
        return {}
    obj = read_json(path)
    models = obj.get("models") if isinstance(obj, dict) else None
    if not isinstance(models, dict):
        raise ArtifactError(f"damaged file {shown_path(path)}: no 'models' object; fit it "
                            f"again with `python -m pipeline calibrate --run {path.parent.name}`")
    out = {}
    for name, entry in models.items():
        t = entry.get("temperature") if isinstance(entry, dict) else None
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (
                math.isfinite(t) and t > 0):
            raise ArtifactError(f"damaged file {shown_path(path)}: {name} has no positive "
                                f"temperature (got {t!r}); fit it again with `python -m "
                                f"pipeline calibrate --run {path.parent.name}`")
        out[str(name)] = float(t)
    return out


def _temperature_damage(name: str, entry: Any) -> str | None:
    t = entry.get("temperature") if isinstance(entry, dict) else None
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not (math.isfinite(t) and t > 0):
        return f"{name} has no positive temperature (got {t!r})"
    return None


def read_calibration(run_dir: str | Path, models: Sequence[str]
                     ) -> tuple[dict[str, float], dict[str, float], dict[str, str]]:
    """({model: T}, {model: weak-answer threshold}, {model: why calibration.json cannot be
    used for it}) for `models`, never raising: what answers take (`Predictor`, `explain`).

    A damaged file, or a model's bad entry, turns that model's calibration off as a missing
    one does (raw probabilities, no weak-answer mark), and `gaps.missing_checks` says so with
    the refit command; only that model is affected. `read_temperatures` refused the whole run.
    """
    path = Path(run_dir) / FILE
    if not path.exists():
        return {}, {}, {}
    try:
        obj = read_json(path)
    except ArtifactError as exc:  # "damaged file …: not valid JSON (…)": its reason alone
        why = str(exc).split(": ", 1)[-1]
        return {}, {}, dict.fromkeys(models, why)
    entries = obj.get("models") if isinstance(obj, dict) else None
    if not isinstance(entries, dict):
        return {}, {}, dict.fromkeys(models, "no 'models' object")
    damaged = {m: why for m in models if m in entries
               and (why := _temperature_damage(m, entries[m]))}
    temps = {m: float(entries[m]["temperature"]) for m in models
             if m in entries and m not in damaged}
    below = {m: t for m, t in read_low_confidence(run_dir).items()
             if m in temps}  # a threshold on probabilities the model no longer gives: off too
    return temps, below, damaged


def _pool_fit(fitted: dict[str, tuple[list[str], np.ndarray, np.ndarray]]
              ) -> tuple[str, dict[str, Any]] | None:
    """("together", the two-model pool's temperature fit, `evaluate.together.fit`) on the
    validation images every model read; None for one model."""
    from pipeline.evaluate import together

    if len(fitted) < 2:
        return None
    common = set.intersection(*(set(rels) for rels, _, _ in fitted.values()))
    probs, y = {}, None
    for m, (rels, p, yy) in fitted.items():
        keep = [i for i, rel in enumerate(rels) if rel in common]
        order = sorted(keep, key=lambda i: rels[i])  # one order of images for every model
        probs[m], y = p[order], yy[order]
    return (together.KEY, together.fit(probs, y)) if y is not None and len(y) else None


LOW_CONFIDENCE_ACCURACY = 0.9  # answers are "weak" where validation accuracy falls below this


def low_confidence(probs: np.ndarray, y_true: np.ndarray,
                   target: float = LOW_CONFIDENCE_ACCURACY) -> dict[str, Any]:
    """The confidence below which the model's (calibrated) validation answers were right less
    than `target` of the time.

    Accuracy as a function of confidence is fitted as a non-decreasing curve (isotonic
    regression of right/wrong on confidence); the threshold is the lowest confidence where that
    curve reaches `target`. 0 when even the least confident answers reached it; 1 when none did.
    """
    from sklearn.isotonic import IsotonicRegression

    conf = probs.max(axis=1)
    right = (probs.argmax(axis=1) == y_true).astype(float)
    fitted = IsotonicRegression(increasing=True, out_of_bounds="clip").fit_transform(conf, right)
    good = fitted >= target
    if good.all():
        threshold = 0.0
    elif not good.any():
        threshold = 1.0
    else:
        threshold = float(conf[good].min())
    below = conf < threshold
    return {"low_confidence_below": round(threshold, 4),
            "low_confidence_accuracy": round(float(right[below].mean()), 4) if below.any()
            else None,
            "low_confidence_n": int(below.sum())}


def read_low_confidence(run_dir: str | Path) -> dict[str, float]:
    """{model: confidence below which its answers are weak} ({} for runs without it)."""
    path = Path(run_dir) / FILE
    obj = read_json(path) if path.exists() else {}
    models = obj.get("models") if isinstance(obj, dict) else None
    out = {}
    for name, entry in (models or {}).items():
        t = entry.get("low_confidence_below") if isinstance(entry, dict) else None
        if isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t <= 1:
            out[str(name)] = float(t)
    return out


def calibrate_run(run_dir: str | Path, progress: Progress | None = None,
                  data_root: str | Path | None = None) -> dict[str, Any]:
    """Fit one temperature per model on the run's validation split; write `calibration.json`.

    Validation images are read from the run's dataset folder (or `data_root` if it moved) and
    prepared as evaluation prepares them, through `Predictor` without any previous calibration.
    Returns the object written (docs/architecture.md, "calibration.json").
    """
    from pipeline import artifacts, data
    from pipeline.evaluate.decoding import predict_records
    from pipeline.evaluate.metrics import calibration
    from pipeline.predict import Predictor

    report = progress or no_progress

    def progress(desc: str, done: int, total: int) -> None:  # not the test split's bar
        report(f"{desc} (validation)", done, total)

    run = artifacts.open_run(run_dir)
    artifacts.ensure_writable(run.path, "run folder")
    root = run.dataset_root(data_root)
    try:
        val = data.splits_from_json(run.read_json(run_files.SPLITS), root).val
    except data.DatasetError as exc:
        raise ArtifactError(f"run {run.run_id}: {exc}") from exc
    if not val:
        raise ArtifactError(f"run {run.run_id} has an empty validation split: nothing to "
                            "calibrate on")
    classes = run.class_names
    label_of = {r.rel: r.label for r in val}
    predictor = Predictor(run, calibrated=False)
    models: dict[str, Any] = {}
    unreadable: set[str] = set()
    fitted: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}  # calibrated, for the pool
    for m in run.model_names:
        probs, rels, failed = predict_records(predictor, m, val, progress)
        unreadable.update(rel for rel, _ in failed)
        if not rels:
            raise ArtifactError(f"none of the {len(val)} validation images of run "
                                f"{run.run_id} could be read")
        y = np.array([classes.index(label_of[rel]) for rel in rels], dtype=np.int64)
        p = np.asarray(probs, dtype=np.float64)
        p /= p.sum(axis=1, keepdims=True)
        t = fit_temperature(p, y)
        ece_before, _ = calibration(p, y)
        ece_after, _ = calibration(apply_temperature(p, t), y)
        models[m] = {"temperature": t, "display_name": display_name(m), "n": int(len(y)),
                     "nll_before": nll(p, y), "nll_after": nll(p, y, t),
                     "ece_before": ece_before, "ece_after": ece_after,
                     "at_bound": bool(min(t / T_MIN, T_MAX / t) < 1.001),
                     **low_confidence(apply_temperature(p, t), y)}
        fitted[m] = (list(rels), apply_temperature(p, t), y)
    result = {"method": METHOD, "split": "val", "created": utc_now(), "run_id": run.run_id,
              "n": len(val) - len(unreadable), "n_unreadable": len(unreadable),
              "bounds": [T_MIN, T_MAX], "ece_bins": 10, "models": models}
    if pool := _pool_fit(fitted):
        result[pool[0]] = pool[1]
    artifacts.write_json_atomic(run.path / FILE, result, allow_nan=False)
    return result
