"""Bounded hyper-parameter search for one model, selected on the validation split only.

Library: KerasTuner (`keras_tuner`, maintained by the Keras team, already a dependency). Why it
and not scikit-learn's `ParameterSampler`: its oracles offer random search *and* Bayesian
optimisation behind one interface, keep a typed search space with log-scaled ranges, and record
every trial on disk. We subclass `keras_tuner.Tuner` and override `run_trial` — KerasTuner's
documented way to "tune anything" — so that every trial trains with exactly the code `train`
uses (`pipeline.fit.fit`: plain epochs for the custom CNN; for transfer models two phases on
cached backbone features) instead of a bare `model.fit`.

Honesty rules: the budget is a number of trials; the objective is validation accuracy of the
restored best weights (computed by us on the validation split); the test split is never loaded.
Trial 1 uses the starting config's values (KerasTuner's first trial takes the defaults), so the
table always shows whether tuning beat the baseline.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import write_json_atomic, write_text_atomic
from pipeline.config import ModelConfig, TrainConfig
from pipeline.names import MODEL_NAMES, Progress

log = logging.getLogger(__name__)
Say = Callable[[str], None]
ALGORITHMS = ("random", "bayesian")


class TuneError(ValueError):
    """Bad tuning arguments (model, budget, algorithm, data)."""


@dataclass(frozen=True)
class Param:
    """One searched ModelConfig field: a log/linear float range or a list of choices."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    def describe(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log, "step": self.step}


# Ranges around the defaults in pipeline/config.py, wide enough to matter, small enough that a
# budget of ~10 trials covers them. Every name is a ModelConfig field, so the best values drop
# straight into a config file for `train --config`.
CUSTOM_SPACE = (
    Param("learning_rate", 3e-4, 5e-3, log=True),
    Param("dropout", 0.1, 0.5, step=0.1),
    Param("width", choices=(8, 16, 32, 48)),
    Param("depth", choices=(3, 4, 5)),
)
TRANSFER_SPACE = (
    Param("learning_rate", 1e-4, 3e-3, log=True),
    Param("dropout", 0.1, 0.5, step=0.1),
    Param("finetune_layers", choices=(10, 20, 40, 60)),  # fine-tune depth
    Param("finetune_learning_rate", 1e-5, 3e-4, log=True),
)


def search_space(model: str) -> tuple[Param, ...]:
    """The searched parameters of `model` (custom CNN vs. any transfer backbone)."""
    if model not in MODEL_NAMES:
        raise TuneError(f"unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}")
    return CUSTOM_SPACE if model == "custom_cnn" else TRANSFER_SPACE


def _default(p: Param, value: Any) -> Any:
    """The starting config's value, moved into the searched range (KerasTuner requires that)."""
    if p.choices is not None:
        return value if value in p.choices else min(p.choices, key=lambda c: abs(c - value))
    assert p.low is not None and p.high is not None
    v = float(min(max(value, p.low), p.high))
    if p.step:
        v = p.low + round((v - p.low) / p.step) * p.step
    return v


def define(hp: Any, space: tuple[Param, ...], base: ModelConfig) -> dict[str, Any]:
    """Register `space` on a KerasTuner HyperParameters object; returns the drawn values."""
    values = {}
    for p in space:
        default = _default(p, getattr(base, p.name))
        if p.choices is not None:
            values[p.name] = hp.Choice(p.name, list(p.choices), default=default)
        elif p.step:
            values[p.name] = hp.Float(p.name, p.low, p.high, step=p.step, default=default)
        else:
            values[p.name] = hp.Float(p.name, p.low, p.high, sampling="log" if p.log else
                                      "linear", default=default)
    return _tidy(values)


def _tidy(values: dict[str, Any]) -> dict[str, Any]:
    """KerasTuner gives floats like 0.30000000000000004 for stepped ranges; keep configs tidy."""
    return {k: (round(v, 10) if isinstance(v, float) else v) for k, v in values.items()}


def _val_scores(model: Any, x: np.ndarray, y: np.ndarray, batch: int = 64) -> tuple[float, float]:
    """Validation accuracy and (unsmoothed) cross-entropy of a trained model."""
    probs = np.concatenate([np.asarray(model(x[i:i + batch].astype("float32"), training=False))
                            for i in range(0, len(x), batch)]).astype(np.float64)
    acc = float(np.mean(probs.argmax(axis=1) == y))
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))))
    return acc, loss


def tune(
    data_dir: str | Path, model: str, budget: int, out_dir: str | Path,
    cfg: TrainConfig | None = None, algorithm: str = "random", seed: int | None = None,
    progress: Progress | None = None, say: Say | None = None,
) -> dict[str, Any]:
    """Search `budget` configurations of `model` on `data_dir`; write results and best config.

    Splits are made exactly as `train` makes them from `cfg` (same seed, fractions, dedupe,
    cap); only train and validation images are loaded. Writes into
    `<out_dir>/tune/<model>-<timestamp>/`: `results.json`, `results.md`, `best_config.json`
    (a config file for `train --config`, holding only the tuned keys so the chosen profile
    keeps its epochs) and KerasTuner's own trial records under `keras_tuner/`.
    Returns the results.json object.
    """
    import keras
    import keras_tuner as kt

    from pipeline import data
    from pipeline.config_rules import check_recipe, check_seed
    from pipeline.fit import FitJob, fit
    from pipeline.models import build_model
    from pipeline.names import display_name
    from pipeline.weights import check_weights

    if budget < 1:
        raise TuneError(f"--budget must be at least 1 trial, got {budget}")
    if algorithm not in ALGORITHMS:
        raise TuneError(f"unknown algorithm {algorithm!r}; choose {' or '.join(ALGORITHMS)}")
    space = search_space(model)
    cfg = cfg or TrainConfig()
    if seed is not None:  # before any folder is made (TrainConfig checked its own)
        check_seed(seed, "--seed")
    seed = cfg.seed if seed is None else seed
    progress = progress or (lambda d, i, n: None)
    say = say or log.info
    base = cfg.models.get(model) or ModelConfig()
    check_recipe(model, base, cfg)  # before the data pass, as train_run does
    check_weights(cfg.weights, [model])

    ds = data.discover(data_dir)
    if why := data.untrainable(ds):  # before the data pass, as train_run does
        raise data.DatasetError(why)
    splits = data.make_splits(ds, seed=cfg.seed, val_fraction=cfg.val_fraction,
                              test_fraction=cfg.test_fraction, dedupe=cfg.dedupe,
                              official_test=cfg.official_test, max_per_class=cfg.max_images,
                              progress=progress)
    if why := data.split_gaps(splits, ds.classes):  # as train_run: no class left untrained
        raise data.DatasetError(why)
    classes = ds.classes
    train = data.load_arrays(splits.train, classes, base.image_size, crop=base.crop_head,
                             progress=progress)
    val = data.load_arrays(splits.val, classes, base.image_size, crop=base.crop_head,
                           progress=progress)
    if len(train.y) == 0 or len(val.y) == 0:
        raise TuneError(f"no usable images in {ds.root}: {len(train.y)} train, {len(val.y)} val")
    say(f"tuning {display_name(model)} on {len(train.y)} train / {len(val.y)} val images "
        f"({len(splits.test)} test images are not used), {budget} trials, {algorithm} search")

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())  # UTC, like run ids
    out = Path(out_dir) / "tune" / f"{model}-{stamp}"
    out.mkdir(parents=True, exist_ok=False)
    extras: dict[str, dict[str, Any]] = {}
    done = [0]

    class _TrainTuner(kt.Tuner):
        """Runs one of our own trainings per trial (see the module docstring)."""

        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
            values = define(trial.hyperparameters, space, base)
            mc = dataclasses.replace(base, **values)
            keras.backend.clear_session()  # free the previous trial's graphs
            t0 = time.perf_counter()
            built = build_model(model, len(classes), mc, weights=cfg.weights, seed=seed,
                                augment=cfg.augment)
            job = FitJob(built, mc, cfg, train, val, len(classes), say=lambda m: None)
            fit(job)
            history = job.state.history
            acc, loss = _val_scores(built.model, val.x, val.y)
            extras[trial.trial_id] = {"epochs_run": len(history),
                                      "seconds": round(time.perf_counter() - t0, 1)}
            done[0] += 1
            progress(f"tuning {model}", done[0], budget)
            say(f"trial {done[0]}/{budget}: {values} -> val_accuracy {acc:.4f} "
                f"val_loss {loss:.4f} ({extras[trial.trial_id]['seconds']:.0f}s)")
            return {"val_accuracy": acc, "val_loss": loss}

    objective = kt.Objective("val_accuracy", direction="max")
    oracle_cls = (kt.oracles.RandomSearchOracle if algorithm == "random"
                  else kt.oracles.BayesianOptimizationOracle)
    oracle = oracle_cls(objective=objective, max_trials=budget, seed=seed)
    tuner = _TrainTuner(oracle=oracle, directory=str(out), project_name="keras_tuner",
                        overwrite=True)
    progress(f"tuning {model}", 0, budget)
    tuner.search(verbose=0)

    trials = []
    for t in sorted(tuner.oracle.trials.values(), key=lambda t: int(t.trial_id)):
        row = {"trial": int(t.trial_id) + 1, "status": t.status,
               "hyperparameters": _tidy({p.name: t.hyperparameters.values.get(p.name)
                                         for p in space}),
               "val_accuracy": _metric(t, "val_accuracy"), "val_loss": _metric(t, "val_loss"),
               **extras.get(t.trial_id, {})}
        trials.append(row)
    scored = [r for r in trials if r["val_accuracy"] is not None]
    if not scored:
        raise TuneError(f"no trial finished; see KerasTuner's records in {out / 'keras_tuner'}")
    # Ties in accuracy (common on small validation sets) go to the lower validation loss.
    best = max(scored, key=lambda r: (r["val_accuracy"], -(r["val_loss"] or math.inf)))
    best_config = {"models": {model: dict(best["hyperparameters"])}}
    baseline = trials[0]
    result = {
        "model": model, "display_name": display_name(model),
        "library": f"keras-tuner {kt.__version__} ({oracle_cls.__name__}, run_trial calls "
                   "pipeline.train)",
        "algorithm": algorithm, "budget": budget, "seed": seed, "objective": "val_accuracy",
        "selection": "validation split only; ties broken by lower val_loss; the test split "
                     "is never loaded",
        "data": {"dir": str(ds.root), "layout": ds.layout, "classes": classes,
                 "train": int(len(train.y)), "val": int(len(val.y)),
                 "test_not_used": len(splits.test)},
        "profile": cfg.profile,
        "fixed": {k: v for k, v in base.to_dict().items() if k not in {p.name for p in space}},
        "space": {p.name: p.describe() for p in space},
        "trials": trials, "best": best, "baseline": baseline,
        "best_config": best_config, "best_config_file": str(out / "best_config.json"),
        "out_dir": str(out),
    }
    # Atomic writes; NaN refused as before (a trial's missing metric is None, never NaN).
    write_json_atomic(out / "best_config.json", best_config, allow_nan=False)
    write_json_atomic(out / "results.json", result, allow_nan=False)
    write_text_atomic(out / "results.md", results_markdown(result))
    return result


def _metric(trial: Any, name: str) -> float | None:
    try:
        value = trial.metrics.get_last_value(name)
    except (KeyError, ValueError):
        return None
    return None if value is None or (isinstance(value, float) and math.isnan(value)) \
        else float(value)


def results_markdown(result: dict[str, Any]) -> str:
    """A Markdown table of all trials, best first, for reports and the dashboard."""
    names = list(result["space"])
    head = ["rank", "trial", *names, "val accuracy", "val loss", "epochs", "seconds"]
    lines = [
        f"# Tuning {result['display_name']} ({result['algorithm']} search, "
        f"{result['budget']} trials)",
        "",
        f"Selected on validation accuracy only ({result['data']['val']} images); the "
        f"{result['data']['test_not_used']} test images were not used. Trial 1 is the "
        f"starting config. Library: {result['library']}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    order = sorted(result["trials"], key=lambda r: (-(r["val_accuracy"] or -1),
                                                    r["val_loss"] or math.inf))

    def fmt(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    for rank, r in enumerate(order, 1):
        cells = [str(rank), str(r["trial"]), *[fmt(r["hyperparameters"][n]) for n in names],
                 fmt(r["val_accuracy"]), fmt(r["val_loss"]), fmt(r.get("epochs_run")),
                 fmt(r.get("seconds"))]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Best config (`train --config {result['best_config_file']}`):", "",
              "```json", json.dumps(result["best_config"], indent=2), "```", ""]
    return "\n".join(lines)
