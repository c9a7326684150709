"""Evaluating a run: predict its test split (or any data folder) and write the evaluation files.

The file formats are in docs/architecture.md ("evaluation files", "comparison.json"). Models
predict through `pipeline.predict.Predictor`, images are prepared exactly as in training by
`pipeline.data.load_arrays`, and nothing is retrained.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import run_files
from pipeline.artifacts import recorded_path, write_json_atomic, write_text_atomic
from pipeline.csv_safe import to_csv
from pipeline.evaluate import together
from pipeline.evaluate.comparison import N_BOOT, accuracy_interval, compare
from pipeline.evaluate.decoding import predict_all
from pipeline.evaluate.external import (
    CopyCheck,
    EvaluationError,
    LabelPlan,
    Overlap,
    collapse_to_binary,
    map_external_labels,
    series_files,
    skipped_series,
)
from pipeline.evaluate.metrics import (
    by_copy_group,
    by_size_group,
    calibration,
    check_inputs,
    classification_metrics,
    confusion,
    curves,
    predicted_classes,
)
from pipeline.names import Progress, display_name, no_progress

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------


def write_json(path: Path, obj: Any) -> None:
    """Write one evaluation JSON file atomically; NaN is refused (ValueError), not written."""
    write_json_atomic(path, obj, allow_nan=False)


def write_predictions_csv(
    path: Path, paths: Sequence[str], y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray,
    class_names: Sequence[str],
) -> None:
    """predictions.csv: path,true,predicted,p_<class>...,correct (correct is 1 or 0).

    Built in memory (a few hundred bytes per image) and written by artifacts.write_text_atomic;
    rows end in "\\r\\n", as in every predictions.csv written so far.
    """
    header = ["path", "true", "predicted", *[f"p_{c}" for c in class_names], "correct"]
    rows = ([rel, class_names[y_true[i]], class_names[y_pred[i]],
             *[f"{v:.6f}" for v in probs[i]], int(y_true[i] == y_pred[i])]
            for i, rel in enumerate(paths))
    # File names are the user's: neutralised against spreadsheet formulas (csv_safe).
    write_text_atomic(path, to_csv(header, rows))


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
    pred = predicted_classes(p, y_pred)
    met = {**(extra or {}), **classification_metrics(y, p, class_names, y_pred=pred)}
    write_predictions_csv(model_dir / run_files.PREDICTIONS, paths, y, pred, p, class_names)
    write_json(model_dir / run_files.CONFUSION, confusion(y, pred, class_names))
    write_json(model_dir / run_files.CURVES, curves(y, p, class_names))
    write_json(model_dir / run_files.METRICS, met)
    return met


def metrics_summary(met: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of one model's metrics.json (CLI summary, cv.json rows)."""
    tvn = met.get("tumor_vs_no_tumor") or {}
    return {"n": met["n"], "accuracy": met["accuracy"], "balanced_accuracy":
            met["balanced_accuracy"], "macro_f1": met["macro_f1"], "roc_auc": met["roc_auc"],
            "ece": met["ece"], "ece_uncalibrated": met.get("ece_uncalibrated", met["ece"]),
            "ece_if_calibrated": (met.get("ece_if_calibrated") or {}).get("mean"),
            "temperature": met.get("temperature"), "sensitivity": tvn.get("sensitivity"),
            "specificity": tvn.get("specificity"),
            "accuracy_distinct": (met.get("copies") or {}).get("accuracy"),
            "n_distinct": (met.get("copies") or {}).get("n_groups")}


# ---------------------------------------------------------------------------------------------
# Evaluating a run (test split or any other data folder)
# ---------------------------------------------------------------------------------------------


@dataclass
class _Target:
    """What `evaluate_run` scores (records, label plan, source) and where its files go."""

    records: list[Any]  # data.ImageRecord
    plan: LabelPlan
    source: dict[str, Any]
    out_dirs: dict[str, Path]  # model -> folder of its four evaluation files
    comparison_path: Path
    overlap: Overlap | None = None  # an external folder's images the run has met
    check: CopyCheck | None = None  # where an external folder's images are looked up


def _test_split_target(run: Any, data_root: str | Path | None) -> _Target:
    """The run's own test split, read from its dataset folder (or `data_root` if it moved)."""
    from pipeline import artifacts, data

    try:
        root = run.dataset_root(data_root)
    except artifacts.ArtifactError as exc:
        raise EvaluationError(str(exc)) from None
    try:
        test = data.splits_from_json(run.read_json(run_files.SPLITS), root).test
    except artifacts.ArtifactError as exc:
        raise EvaluationError(str(exc)) from exc
    if not test:
        raise EvaluationError(f"run {run.run_id} has an empty test split")
    classes = run.class_names
    plan = LabelPlan("test", classes, {c: c for c in classes}, collapse=False)
    source: dict[str, Any] = {"kind": "test", "data_dir": recorded_path(root), "split": "test"}
    return _Target(test, plan, source, {m: run.path / m for m in run.model_names},
                   run.path / run_files.COMPARISON)


def _external_target(run: Any, data_dir: str | Path, name: str | None) -> _Target:
    """Every image of `data_dir` whose label the run can score; files named after `name`."""
    from pipeline import data
    from pipeline.data.discovery import SERIES_NOTE

    if name is not None and (not _SAFE_NAME.match(name) or name in {".", ".."}):
        raise EvaluationError(f"--name {name!r} must be letters, digits, '.', '_' or '-' "
                              "(at most 80, not starting with '.' or '-')")
    ds = data.discover(data_dir)
    plan = map_external_labels(ds.classes, run.class_names)
    if name is None:
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", ds.root.name).strip(".-_") or "external"
    records = [r for r in ds.records if r.label in plan.mapping]
    # a volume's label is not each slice's: its slices (or its first) are not scored
    series = [*series_files(records), *(v for v in ds.volumes if v.label in plan.mapping)]
    if series:
        gone = {r.rel for r in series}
        records = [r for r in records if r.rel not in gone]
        if not records:
            raise EvaluationError(f"the data folder holds only series files ({len(series)}): "
                                  f"{SERIES_NOTE}")
    skipped = plan.skipped(ds.classes)
    source = {"kind": "external", "name": name, "data_dir": recorded_path(ds.root),
              "layout": ds.layout, "folder_classes": ds.classes, "mode": plan.mode,
              "label_mapping": plan.mapping, "skipped_classes": {
                  c: sum(1 for r in ds.records if r.label == c) for c in skipped},
              # folders whose names map to no class at all (`glioblastoma/`): said, not dropped
              "ignored_folders": list(ds.ignored), "skipped_series": skipped_series(series)}
    source["overlap_with_training"] = None  # `CopyCheck.overlap`, once the images are read
    return _Target(records, plan, source,
                   {m: run.path / m / "external" / name for m in run.model_names},
                   run.path / "external" / name / run_files.COMPARISON,
                   check=CopyCheck.of_run(run))


def _renormalise(probs: np.ndarray) -> np.ndarray:
    """float32 softmax rows can be off 1 by ~1e-7; make them sum to 1 exactly in float64."""
    p = np.asarray(probs, dtype=np.float64)
    return p / p.sum(axis=1, keepdims=True)


def _scored(probs: np.ndarray, rels: list[str], keep: list[str], plan: LabelPlan,
            run_classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, predicted class) over the plan's classes for the images in `keep`."""
    pos = {rel: k for k, rel in enumerate(rels)}
    p = _renormalise(probs[[pos[rel] for rel in keep]])
    if plan.collapse:
        return collapse_to_binary(p, run_classes)
    return p, p.argmax(axis=1)


def _size_groups(run: Any, data_root: str | Path | None, path_of: dict[str, Path],
                 keep: list[str]) -> tuple[str, np.ndarray] | None:
    """The training split's commonest pixel size and, per kept image, whether it has that size;
    None when the training images cannot be read (the dataset moved and no `data_root`)."""
    from pipeline import artifacts, data
    from pipeline.data.balance import common_size, native_size

    root = Path(data_root) if data_root is not None else run.data_dir
    if root is None or not root.is_dir():
        return None
    try:
        train = data.splits_from_json(run.read_json(run_files.SPLITS), root).train
    except (artifacts.ArtifactError, data.DatasetError, KeyError, ValueError):
        return None
    common, _ = common_size([r.path for r in train])
    if common == "?":
        return None
    return common, np.array([native_size(path_of[rel]) == common for rel in keep])


def _copy_groups(records: Sequence[Any], keep: list[str]) -> np.ndarray | None:
    """Per kept image, the id of its group of exact or near copies among the kept images (the
    grouping the splits keep together); None when hashing fails."""
    from pipeline.data.duplicates import duplicate_components

    by_rel = {r.rel: r for r in records}
    try:
        return np.asarray(duplicate_components([by_rel[rel] for rel in keep]))
    except (OSError, ValueError, KeyError):  # the plain figures stand without it
        return None


def evaluate_run(
    run_dir: str | Path, data_dir: str | Path | None = None, name: str | None = None,
    progress: Progress | None = None, data_root: str | Path | None = None,
    n_boot: int = N_BOOT, seed: int = 0,
) -> dict[str, Any]:
    """Evaluate every model of a run and write the evaluation files (docs/architecture.md).

    Without `data_dir`: the run's own test split (splits.json), read from the manifest's data
    folder or from `data_root` when the dataset has moved; files go to `<run>/<model>/` and
    `<run>/comparison.json`. With `data_dir`: every image of that folder (any supported layout;
    labels mapped by `map_external_labels`), files under `<run>/<model>/external/<name>/` and
    `<run>/external/<name>/comparison.json`; nothing is retrained. Each image is decoded once
    for every model (`predict_all`); on a folder it is also looked up in the run's splits
    there (`CopyCheck`, as `predict` does), and the figures on the images the run neither
    trained nor validated on are added as `new_to_run` to each metrics.json, the comparison
    and the returned summary (None there for the test split, or a run that cannot tell).
    Returns a summary dict.
    """
    from pipeline import artifacts
    from pipeline.calibration import apply_temperature
    from pipeline.predict import Predictor

    progress = progress or no_progress
    try:
        run = artifacts.open_run(run_dir)
        artifacts.ensure_writable(run.path, "run folder")
    except artifacts.ArtifactError as exc:
        raise EvaluationError(str(exc)) from exc
    target = (_test_split_target(run, data_root) if data_dir is None
              else _external_target(run, data_dir, name))
    records, plan, source = target.records, target.plan, target.source
    source["run_id"] = run.run_id

    try:  # raw probabilities: the "before" of calibration; the run's temperature applied below
        predictor = Predictor(run, calibrated=False)
    except artifacts.ArtifactError as exc:
        raise EvaluationError(str(exc)) from exc
    check = target.check
    done = predict_all(predictor, run.model_names, records,
                        check.memberships if check is not None else [], progress)
    raw, failed = done.raw, done.failed
    if check is not None:  # the look-up was made while decoding: each file decoded once
        target.overlap = check.overlap(records, done.found)
        source["overlap_with_training"] = target.overlap.report
    # An unreadable file fails for every model; keep the images every model scored, in order.
    keep = [r.rel for r in records if r.rel not in failed]
    if not keep:
        rel, why = next(iter(failed.items()))
        # the reader's message begins with the file's full path: the folder's path stands for it
        head, sep, tail = why.partition(": ")
        why = tail if sep and head.endswith(Path(rel).name) else why
        raise EvaluationError(f"none of the {len(records)} images could be read, e.g. {rel}: "
                              f"{why}")
    if len(keep) < 2:  # the intervals resample images: one was a ValueError traceback
        raise EvaluationError(f"only 1 image could be scored ({keep[0]}): an evaluation needs "
                              "at least 2; use predict for one image")
    source.update(n_images=len(records), n_unreadable=len(failed),
                  unreadable=sorted(failed)[:20])
    label_of = {r.rel: plan.mapping[r.label] for r in records}
    sizes = _size_groups(run, data_root, {r.rel: r.path for r in records}, keep)
    y = np.array([plan.class_names.index(label_of[rel]) for rel in keep], dtype=np.int64)
    copies = _copy_groups(records, keep)
    # the images the run neither trained nor validated on: the figures that estimate how it
    # does on new images (None: the run cannot tell, or its own test split)
    new = target.overlap.new_to_run(keep) if target.overlap is not None else None
    at = {rel: k for k, rel in enumerate(keep)}
    sub = np.array([at[rel] for rel in new or []], dtype=np.int64)
    probs_eval: dict[str, np.ndarray] = {}
    preds_eval: dict[str, np.ndarray] = {}
    summaries: dict[str, Any] = {}
    new_met: dict[str, dict[str, Any]] = {}  # per model, its metrics on the new images
    for i, m in enumerate(run.model_names):
        probs_raw, rels = raw[m]
        temperature = predictor.temperature(m)
        p_raw, pred_raw = _scored(probs_raw, rels, keep, plan, run.class_names)
        ece_raw, reliability_raw = calibration(p_raw, y, y_pred=pred_raw)
        if temperature is None:
            probs_eval[m], preds_eval[m] = p_raw, pred_raw
        else:
            probs_eval[m], preds_eval[m] = _scored(apply_temperature(probs_raw, temperature),
                                                   rels, keep, plan, run.class_names)
        met = write_model_eval(target.out_dirs[m], keep, y, probs_eval[m], plan.class_names,
                               y_pred=preds_eval[m], extra={
                                   "model": m, "display_name": display_name(m), "source": source,
                                   "temperature": temperature, "ece_uncalibrated": ece_raw,
                                   "reliability_uncalibrated": reliability_raw,
                                   "by_size": None if sizes is None else by_size_group(
                                       y, probs_eval[m], plan.class_names, sizes[1], sizes[0],
                                       y_pred=preds_eval[m]),
                                   "copies": None if copies is None else by_copy_group(
                                       y, preds_eval[m], copies, plan.class_names),
                                   **({} if new is None else {"new_to_run": new_met.setdefault(
                                       m, _new_metrics(y, probs_eval[m], preds_eval[m], copies,
                                                       sub, plan.class_names))})})
        summaries[m] = metrics_summary(met)
        progress("writing evaluation files", i + 1, len(run.model_names))
    comp = compare(y, probs_eval, plan.class_names, paths=keep, y_pred=preds_eval, n_boot=n_boot,
                   seed=seed)
    comp["source"] = source
    # the models' answer pooled, if any, scaled and said weak as calibration.json says
    pool_t, pool_below = together.read_pool(run.path)
    if pooled := together.summary(y, probs_eval, plan.class_names, pool_t, pool_below):
        comp[together.KEY] = pooled
    fresh = None
    if new is not None:
        comp["new_to_run"] = fresh = _new_comparison(
            y, probs_eval, preds_eval, sub, keep, plan.class_names, n_boot, seed,
            comp if len(sub) == len(keep) else None)
        if len(sub) > 1 and len(sub) < len(keep) and (pooled := together.summary(
                y[sub], {m: p[sub] for m, p in probs_eval.items()}, plan.class_names, pool_t,
                pool_below)):
            fresh[together.KEY] = pooled
    write_json(target.comparison_path, comp)
    return {"run_id": run.run_id, "source": source, "n": int(len(y)), "models": summaries,
            "uncalibrated": _uncalibrated_note(run, predictor),
            "verdict": comp["verdict"], "mcnemar": comp["mcnemar"], "ci": comp["ci"],
            together.KEY: comp.get(together.KEY),
            "new_to_run": None if fresh is None else {
                "n": fresh["n"], **({} if not fresh["n"] else {
                    "models": {m: metrics_summary(new_met[m]) for m in run.model_names},
                    "verdict": fresh["verdict"], "mcnemar": fresh["mcnemar"],
                    "ci": fresh["ci"], together.KEY: fresh.get(together.KEY)})},
            "files": {m: str(d) for m, d in target.out_dirs.items()},
            "comparison": str(target.comparison_path)}


def _uncalibrated_note(run: Any, predictor: Any) -> str | None:
    """The line `evaluate` says when a model's figures are on raw probabilities because its
    temperature is missing or damaged (None when every model is calibrated): metrics.json
    records `temperature` null, but the command said nothing, and the ECE printed was then not
    the calibrated one the dashboard would show for a calibrated run (a review, 2026-12-06)."""
    from pipeline.calibration import read_calibration
    from pipeline.gaps import fix_command

    raw = [m for m in run.model_names if predictor.temperature(m) is None]
    if not raw:
        return None
    damaged = read_calibration(run.path, raw)[2]
    why = "; ".join(f"{display_name(m)}: {damaged.get(m, 'no temperature fitted')}"
                    for m in raw)
    return (f"note: figures on uncalibrated probabilities ({why}); "
            f"`{fix_command(run, 'calibrate')}` fits the temperature, then evaluate again")


def _new_metrics(y: np.ndarray, probs: np.ndarray, preds: np.ndarray, copies: np.ndarray | None,
                 sub: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """metrics.json's `new_to_run`: one model's metrics on the images at `sub` (those the run
    neither trained nor validated on); {"n": 0} when there are none."""
    if not len(sub):
        return {"n": 0}
    met = classification_metrics(y[sub], probs[sub], class_names, y_pred=preds[sub])
    met["copies"] = None if copies is None else by_copy_group(y[sub], preds[sub], copies[sub],
                                                              class_names)
    return met


def _new_comparison(y: np.ndarray, probs: dict[str, np.ndarray], preds: dict[str, np.ndarray],
                    sub: np.ndarray, keep: list[str], class_names: Sequence[str], n_boot: int,
                    seed: int, same: dict[str, Any] | None) -> dict[str, Any]:
    """comparison.json's `new_to_run`: the models compared on the images at `sub`; `same`: the
    comparison of all images when `sub` is all of them (not bootstrapped twice)."""
    if not len(sub):
        return {"n": 0}
    if len(sub) == 1:  # nothing to bootstrap or compare: the one answer, each model's interval
        return {"n": 1, "models": list(probs), "mcnemar": None,
                "ci": {m: {"accuracy": accuracy_interval(p[sub] == y[sub])}
                       for m, p in preds.items()},
                "verdict": "Only 1 image is new to the run: too few to compare the models."}
    if same is not None:
        return {k: v for k, v in same.items() if k != "source"}
    return compare(y[sub], {m: p[sub] for m, p in probs.items()}, class_names,
                   paths=[keep[i] for i in sub], n_boot=n_boot, seed=seed,
                   y_pred={m: p[sub] for m, p in preds.items()})
