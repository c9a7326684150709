"""Cross-validation: retrain a run's models K times on group-stratified folds and evaluate each.

Folds come from scikit-learn's StratifiedGroupKFold over the data layer's duplicate groups (each
patient/series folder joined into one, as in the splits), every fold is trained by
`pipeline.train.train_one` (the code `train` uses) into a complete run folder and evaluated by
`evaluate_run`. The cv.json format is in docs/architecture.md.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import run_files
from pipeline.artifacts import read_json, recorded_path
from pipeline.csv_safe import restore_cell
from pipeline.evaluate.comparison import mcnemar_exact, verdict
from pipeline.evaluate.external import EvaluationError
from pipeline.evaluate.run import evaluate_run, metrics_summary, write_json
from pipeline.names import Progress, no_progress

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
    """Mean, sample std (ddof 1; 0 for one value), min, max and count of the non-None values."""
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if not v.size:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def _open_for_cv(run_dir: str | Path, data_root: str | Path | None,
                 models: Sequence[str] | None) -> tuple[Any, Any, Any, list[str]]:
    """(run, its dataset, its TrainConfig, models to cross-validate), or EvaluationError."""
    from pipeline import artifacts, data
    from pipeline.config import TrainConfig

    try:
        run = artifacts.open_run(run_dir)
    except artifacts.ArtifactError as exc:
        raise EvaluationError(str(exc)) from exc
    try:
        root = run.dataset_root(data_root)
    except artifacts.ArtifactError as exc:
        raise EvaluationError(str(exc)) from None
    try:
        cfg = TrainConfig.from_dict(run.manifest["config"])
    except ValueError as exc:  # a run trained before config_rules refused its config
        raise EvaluationError(f"run {run.run_id} cannot be retrained in folds: its config is "
                              f"invalid ({exc})") from None
    unknown = sorted(set(models or []) - set(run.model_names))
    if unknown:
        raise EvaluationError(f"run {run.run_id} has no model(s) {unknown}; it has "
                              f"{run.model_names}")
    ds = data.discover(root)
    if ds.classes != run.class_names:
        raise EvaluationError(f"{root} now has classes {ds.classes}, the run was trained on "
                              f"{run.class_names}")
    return run, ds, cfg, list(models) if models else run.model_names


def _pool_and_groups(ds: Any, cfg: Any, progress: Progress) -> tuple[list[Any], list[int]]:
    """All readable images (capped like the run) and their group ids: duplicate groups (with
    dedupe) joined so that each patient/series folder lies in one group, as in the splits."""
    from pipeline import data
    from pipeline.data.splits import with_patients

    pool = data.make_splits(ds, seed=cfg.seed, val_fraction=0.0, test_fraction=0.0,
                            dedupe=cfg.dedupe, max_per_class=cfg.max_images, progress=progress)
    records = pool.train
    # The grouping make_splits uses (exact SHA-1 + near pHash pairs), so CV folds and the run's
    # own splits agree on what a duplicate is. Hashes are cached: make_splits just computed them.
    ids = data.duplicate_components(records) if cfg.dedupe else list(range(len(records)))
    if not any(r.patient for r in records):
        return records, ids
    members: dict[int, list[int]] = {}
    for i, g in enumerate(ids):
        members.setdefault(g, []).append(i)
    joined, _ = with_patients(records, list(members.values()))
    out = [0] * len(records)
    for g, idx in enumerate(joined):
        for i in idx:
            out[i] = g
    return records, out


def _train_fold(k: int, folds: int, splits: Any, runs_root: Path, run: Any, ds: Any, cfg: Any,
                models: list[str], cache: Path | None, progress: Progress,
                say: Callable[[str], None]) -> Path:
    """Train `models` on one fold into the complete run `<runs_root>/runs/fold-<k>/`."""
    from pipeline import artifacts, data
    from pipeline.train import run_manifest, train_one

    writer = artifacts.RunWriter(runs_root, run_id=f"fold-{k}")
    writer.write_json(run_files.SPLITS, data.splits_to_json(splits, ds.root))
    state: dict[str, Any] = {}
    infos = {m: train_one(m, cfg, ds.classes, splits, writer, state, cache, progress,
                          say).info for m in models}
    split_info = {"strategy": f"cv-fold {k}/{folds} (StratifiedGroupKFold)", "seed": cfg.seed,
                  "train": len(splits.train), "val": len(splits.val), "test": len(splits.test)}
    manifest = run_manifest(cfg, ds, split_info, infos) | {"cv_of": run.run_id}
    return writer.finalize(manifest, set_latest=False)


def _fold_results(fold_dir: Path, models: list[str]
                  ) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """Per-model summaries of an evaluated fold and {path: {"true", <model>: predicted}}."""
    summaries: dict[str, Any] = {}
    preds_by_path: dict[str, dict[str, str]] = {}
    for m in models:
        # evaluate_run just wrote it: a missing or damaged file is a bug, so no fallback here.
        met = read_json(fold_dir / m / run_files.METRICS)
        summaries[m] = metrics_summary(met) | {"weighted_f1": met["weighted_f1"]}
        with open(fold_dir / m / run_files.PREDICTIONS, newline="") as fh:
            for r in csv.DictReader(fh):
                path = restore_cell(r["path"])  # written formula-safe (csv_safe)
                preds_by_path.setdefault(path, {"true": r["true"]})[m] = r["predicted"]
    return summaries, preds_by_path


def _add_out_of_fold(preds_by_path: dict[str, dict[str, str]], models: list[str],
                     classes: list[str], oof_true: list[int], oof_pred: dict[str, list[int]]
                     ) -> None:
    """Append one fold's held-out images (those every model scored) to the pooled lists."""
    for p in preds_by_path.values():
        if all(m in p for m in models):
            oof_true.append(classes.index(p["true"]))
            for m in models:
                oof_pred[m].append(classes.index(p[m]))


def _pooled(models: list[str], oof_true: list[int], oof_pred: dict[str, list[int]]
            ) -> dict[str, Any]:
    """Accuracy per model on the pooled out-of-fold predictions; McNemar of the first two."""
    y = np.array(oof_true, dtype=np.int64)
    pooled: dict[str, Any] = {"n": int(len(y)), "accuracy": {
        m: float(np.mean(np.array(oof_pred[m]) == y)) for m in models}}
    if len(models) >= 2 and len(y):
        a, b = models[0], models[1]
        mc = mcnemar_exact(np.array(oof_pred[a]) == y, np.array(oof_pred[b]) == y)
        pooled["mcnemar"] = mc
        pooled["verdict"] = verdict(a, pooled["accuracy"][a], b, pooled["accuracy"][b],
                                    mc["p_value"], len(y))
    return pooled


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
    from pipeline import data

    progress = progress or no_progress
    say = say or (lambda msg: None)
    run, ds, cfg, models = _open_for_cv(run_dir, data_root, models)
    records, comps = _pool_and_groups(ds, cfg, progress)
    labels = [r.label for r in records]
    fold_idx = cv_folds(labels, comps, folds, seed=cfg.seed, val_fraction=cfg.val_fraction)

    runs_root = (Path(out_dir) if out_dir is not None
                 else run.path / "cv" / time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
    if (runs_root / "cv.json").exists():
        raise EvaluationError(f"{runs_root} already holds a cross-validation; choose another")
    # Share train's decoded-array cache (artifacts/cache) when the run sits in an artifacts tree.
    cache = run.path.parent.parent / "cache" if run.path.parent.name == "runs" else None
    per_fold: list[dict[str, Any]] = []
    oof_true: list[int] = []
    oof_pred: dict[str, list[int]] = {m: [] for m in models}
    for k, idx in enumerate(fold_idx, 1):
        splits = data.Splits(train=[records[i] for i in idx["train"]],
                             val=[records[i] for i in idx["val"]],
                             test=[records[i] for i in idx["test"]])
        say(f"fold {k}/{folds}: {len(splits.train)} train / {len(splits.val)} val / "
            f"{len(splits.test)} test images")
        fold_dir = _train_fold(k, folds, splits, runs_root, run, ds, cfg, models, cache,
                               progress, say)
        evaluate_run(fold_dir, progress=progress, n_boot=n_boot, seed=cfg.seed)
        summaries, preds_by_path = _fold_results(fold_dir, models)
        # recorded as run files record paths (relative to the project), never this machine's
        per_fold.append({"fold": k, "run": recorded_path(fold_dir), "n_train": len(splits.train),
                         "n_val": len(splits.val), "n_test": len(splits.test),
                         "models": summaries})
        _add_out_of_fold(preds_by_path, models, ds.classes, oof_true, oof_pred)
        write_json(runs_root / "cv.partial.json", {"folds": per_fold})

    summary = {m: {metric: _mean_std([f["models"][m].get(metric) for f in per_fold])
                   for metric in CV_METRICS} for m in models}  # mean ± std over folds
    result = {
        "run_id": run.run_id, "folds": folds, "seed": cfg.seed,
        "data_dir": recorded_path(ds.root),
        "n_images": len(records), "models": models,
        "method": "StratifiedGroupKFold over duplicate groups (exact + near duplicates never "
                  "split across folds); validation = one inner group fold of the rest; "
                  "std is the sample standard deviation over folds",
        "per_fold": per_fold, "summary": summary, "pooled_out_of_fold": _pooled(
            models, oof_true, oof_pred),
        "out_dir": recorded_path(runs_root),
    }
    write_json(runs_root / "cv.json", result)
    (runs_root / "cv.partial.json").unlink(missing_ok=True)
    return result

