"""One training recipe in its own process (`python -m pipeline.bench SPEC.json RESULT.json`).

Our recipe (`pipeline.train`) or the naive one (`naive_file_dataset`, full fine-tuning) for one
model, on the split the parent wrote; the result is the recipe's epochs and figures as measured
by `EpochClock` (stopping rules and time-to-target: the package docstring) plus the child's own
peak RSS at its end.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import write_json_atomic
from pipeline.bench.errors import BenchError
from pipeline.bench.timing import proc_memory_mb

NAIVE_LEARNING_RATE = 1e-4  # full fine-tuning of MobileNetV2 with Adam, as tutorials do


class _Stop(Exception):
    """Raised from an epoch-end hook to end our recipe at the wall-clock cap."""


class EpochClock:
    """Epoch-end bookkeeping shared by both recipes: elapsed time, target, cap."""

    def __init__(self, target: float, max_seconds: float, n_train: int,
                 stop_at_target: bool) -> None:
        self.t0 = time.perf_counter()
        self.target, self.max_seconds, self.n_train = target, max_seconds, n_train
        self.stop_at_target = stop_at_target
        self.epochs: list[dict[str, Any]] = []
        self.reached_at: float | None = None
        self.stopped = "recipe_end"

    def elapsed(self) -> float:
        """Seconds since the recipe started (the clock is made right after the imports)."""
        return time.perf_counter() - self.t0

    def epoch_end(self, phase: str, seconds: float, accuracy: float, val_accuracy: float
                  ) -> bool:
        """Record one epoch; True when the recipe should stop (target when asked, or cap)."""
        t = self.elapsed()
        self.epochs.append({
            "epoch": len(self.epochs) + 1, "phase": phase,
            "accuracy": _round(accuracy), "val_accuracy": _round(val_accuracy),
            "seconds": round(seconds, 2),
            "images_per_s": round(self.n_train / seconds, 1) if seconds > 0 else None,
            "elapsed_s": round(t, 2),
        })
        if self.reached_at is None and not math.isnan(val_accuracy) and \
                val_accuracy >= self.target:
            self.reached_at = t
        if self.stop_at_target and self.reached_at is not None:
            self.stopped = "target"
            return True
        if t > self.max_seconds:
            self.stopped = "cap"
            return True
        return False

    def summary(self) -> dict[str, Any]:
        """The recipe's figures: reached, time to target, best/final val accuracy, images/s."""
        vals = [e["val_accuracy"] for e in self.epochs if e["val_accuracy"] is not None]
        per_phase: dict[str, list[float]] = {}
        for e in self.epochs:
            if e["images_per_s"] is not None:
                per_phase.setdefault(e["phase"], []).append(e["images_per_s"])
        return {
            "target": self.target,
            "reached": self.reached_at is not None,
            "time_to_target_s": round(self.reached_at, 2) if self.reached_at is not None else None,
            "best_val_accuracy": max(vals) if vals else None,
            "final_val_accuracy": vals[-1] if vals else None,
            "epochs_run": len(self.epochs),
            "images_per_s": {p: round(float(np.median(v)), 1) for p, v in per_phase.items()},
            "stopped": self.stopped,
            "wall_s": round(self.elapsed(), 2),
            "epochs": self.epochs,
        }


def _round(v: float, digits: int = 4) -> float | None:
    return None if v is None or math.isnan(v) else round(float(v), digits)


def naive_file_dataset(paths: Sequence[str], labels: Sequence[int], size: int, batch_size: int,
                       shuffle: bool, seed: int):  # -> tf.data.Dataset
    """What `image_dataset_from_directory` does: read, decode and resize files on every epoch.

    No cache, no head crop: exactly the work the naive recipe pays again each epoch.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((list(map(str, paths)),
                                             np.asarray(labels, dtype=np.int32)))
    if shuffle:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)

    def load(path: Any, label: Any) -> tuple[Any, Any]:
        img = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        img = tf.image.resize(img, (size, size))  # bilinear, float32 in 0-255, like Keras
        return img, label

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def train_recipe(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one recipe ("ours" or "naive") for one model as described by `spec`
    (written by `training.training_benchmark`)."""
    import keras  # noqa: F401  (imported before the clock starts, like in real use)
    import tensorflow as tf  # noqa: F401

    from pipeline import data
    from pipeline.artifacts import read_json
    from pipeline.config import TrainConfig
    from pipeline.models import build_model

    cfg = TrainConfig.from_dict(spec["train_config"])
    name, recipe = spec["model"], spec["recipe"]
    mc = cfg.models[name]
    classes = list(spec["classes"])
    splits = data.splits_from_json(read_json(Path(spec["splits_file"])), spec["data_dir"])
    clock = EpochClock(float(spec["target"]), float(spec["max_seconds"]), len(splits.train),
                       stop_at_target=recipe == "naive")
    out: dict[str, Any] = {"recipe": recipe, "model": name, "image_size": mc.image_size,
                           "n_train": len(splits.train), "n_val": len(splits.val),
                           "batch_size": cfg.batch_size}
    if recipe == "ours":
        out.update(_train_ours(name, cfg, mc, classes, splits, clock, build_model, data))
    elif recipe == "naive":
        out.update(_train_naive(name, cfg, mc, classes, splits, clock, spec, build_model))
    else:
        raise BenchError(f"unknown recipe {recipe!r}; expected ours or naive")
    out.update(clock.summary())
    out["self_peak_rss_mb"] = proc_memory_mb("self")  # this child's exact peak, at its end
    return out


def _train_ours(name: str, cfg: Any, mc: Any, classes: list[str], splits: Any,
                clock: EpochClock, build_model: Callable[..., Any], data: Any) -> dict[str, Any]:
    from pipeline.fit import FitJob, augment_in_model, fit
    from pipeline.train import masks_dir

    # No disk cache: the recipe starts from raw files, as a first training does.
    train = data.load_arrays(splits.train, classes, mc.image_size, crop=mc.crop_head)
    val = data.load_arrays(splits.val, classes, mc.image_size, crop=mc.crop_head)
    decode_s = clock.elapsed()
    clock.n_train = len(train.y)
    built = build_model(name, len(classes), mc, weights=cfg.weights, seed=cfg.seed,
                        augment=augment_in_model(name, mc, cfg))

    def checkpoint(hist: list[dict[str, Any]], phase: str) -> None:
        # Called after every epoch (and once between phases with no new epoch).
        for row in hist[len(clock.epochs):]:
            if clock.epoch_end(row["phase"], row["seconds"], row["accuracy"],
                               row["val_accuracy"]):
                raise _Stop

    cached = built.transfer and cfg.cache_features
    with tempfile.TemporaryDirectory(prefix="bench-features-") as scratch:
        # activations on disk, as `train` caches them (pipeline.feature_cache)
        job = FitJob(built, mc, cfg, train, val, len(classes), checkpoint=checkpoint,
                     say=lambda m: None, scratch=Path(scratch) if cached else None,
                     masks_dir=masks_dir(cfg, splits) if mc.guidance > 0 else None)
        with contextlib.suppress(_Stop):
            fit(job)
    if cached:
        how = (f"decode + head-crop once into memory; backbone activations cached at the cut "
               f"point for {mc.aug_views if cfg.augment else 1} views; head on pooled features "
               f"({mc.epochs} epochs max), then top {mc.finetune_layers} layers fine-tuned on "
               f"cached activations ({mc.finetune_epochs} epochs max); early stopping")
    else:
        how = (f"decode + head-crop once into memory; ordinary fit ({mc.epochs} epochs max, "
               "early stopping)")
    return {"description": how, "crop_head": mc.crop_head, "weights": built.weights.label,
            "decode_s": round(decode_s, 2), "feature_cache_s": job.state.feature_seconds,
            "failed_images": len(train.failed) + len(val.failed),
            "learning_rate": mc.learning_rate}


def _train_naive(name: str, cfg: Any, mc: Any, classes: list[str], splits: Any,
                 clock: EpochClock, spec: dict[str, Any],
                 build_model: Callable[..., Any]) -> dict[str, Any]:
    import keras

    index = {c: i for i, c in enumerate(classes)}
    ds_train = naive_file_dataset([r.path for r in splits.train],
                                  [index[r.label] for r in splits.train], mc.image_size,
                                  cfg.batch_size, shuffle=True, seed=cfg.seed)
    ds_val = naive_file_dataset([r.path for r in splits.val],
                                [index[r.label] for r in splits.val], mc.image_size,
                                cfg.batch_size, shuffle=False, seed=cfg.seed)
    built = build_model(name, len(classes), mc, weights=cfg.weights, seed=cfg.seed,
                        augment=cfg.augment)
    model = built.model
    if built.transfer:
        # Full fine-tuning from the first epoch, BatchNorm included, as most tutorials do.
        for layer in model.layers:
            layer.trainable = True
        lr = NAIVE_LEARNING_RATE
        how = ("tf.data from files: read + decode + resize every epoch, no cache, no crop; "
               f"all layers trainable from epoch 1 (BatchNorm too); Adam {lr:g}; sparse "
               "categorical cross-entropy; same augmentation layers")
    else:
        lr = mc.learning_rate  # same model and optimiser as ours: only the input pipeline differs
        how = ("tf.data from files: read + decode + resize every epoch, no cache, no crop; "
               f"same model, Adam {lr:g}, sparse categorical cross-entropy")
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])

    class Hook(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            if clock.epoch_end("train", time.perf_counter() - self.t,
                               float(logs.get("accuracy", math.nan)),
                               float(logs.get("val_accuracy", math.nan))):
                self.model.stop_training = True

    model.fit(ds_train, shuffle=False,  # ds_train shuffles itself (Keras warns on True)
              validation_data=ds_val, epochs=int(spec["naive_max_epochs"]),
              callbacks=[Hook()], verbose=0)
    return {"description": how, "crop_head": False, "weights": built.weights.label,
            "decode_s": None, "feature_cache_s": None, "failed_images": None,
            "learning_rate": lr}


def worker_main(argv: list[str]) -> int:
    """The child's entry point: run the recipe SPEC.json describes, write RESULT.json; 0 or 2."""
    if len(argv) != 2:
        sys.stderr.write("usage: python -m pipeline.bench SPEC.json RESULT.json\n")
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    result = train_recipe(spec)
    write_json_atomic(Path(argv[1]), result)
    return 0

