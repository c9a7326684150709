"""Fitting recipes: one model's epochs, fast on 2 CPU cores (the run around them is train.py's).

Speed comes from doing expensive work once:
- images arrive decoded, cropped and resized once (`data.load_arrays`);
- for transfer models the frozen lower backbone is run once per image *view* (original, mirrored
  and a few randomly augmented copies) and its activations are cached at the cut point; the head
  phase trains on pooled features and the fine-tuning phase trains only the top blocks on the
  cached activations. The naive recipe would run the whole backbone on every image every epoch.
BatchNorm layers stay frozen (inference mode) in fine-tuning, as keras-io recommends.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from pipeline import aug_views, data, feature_cache, guidance, schedules
from pipeline.backbones import BACKBONES
from pipeline.config import ModelConfig, TrainConfig
from pipeline.config_rules import OPTIMIZERS, check_recipe
from pipeline.layers import MixStyle
from pipeline.models import BuiltModel, compiled, split_point
from pipeline.names import Progress, no_progress

log = logging.getLogger(__name__)

Say = Callable[[str], None]


class EpochLog(keras.callbacks.Callback):
    """Records per-epoch metrics, learning rate and seconds; checkpoints weights and state."""

    def __init__(self, phase: str, history: list[dict[str, Any]], total: int,
                 on_epoch: Callable[[list[dict[str, Any]]], None], progress: Progress,
                 say: Say, label: str) -> None:
        super().__init__()
        self.phase, self.history, self.total = phase, history, total
        self.on_epoch, self.progress, self.say, self.label = on_epoch, progress, say, label
        self._t0 = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        lr = self.model.optimizer.learning_rate
        row = {
            "epoch": len(self.history) + 1,
            "phase": self.phase,
            "phase_epoch": epoch + 1,
            "loss": float(logs.get("loss", math.nan)),
            "accuracy": float(logs.get("accuracy", math.nan)),
            "val_loss": float(logs.get("val_loss", math.nan)),
            "val_accuracy": float(logs.get("val_accuracy", math.nan)),
            "learning_rate": float(keras.ops.convert_to_numpy(lr)),
            "seconds": round(time.perf_counter() - self._t0, 3),
        }
        if "outside_share" in logs:  # guided training: evidence outside box/head (guidance.py)
            row["outside_share"] = float(logs["outside_share"])
        self.history.append(row)
        self.on_epoch(self.history)
        self.progress(f"{self.label}: {self.phase} epochs", epoch + 1, self.total)
        self.say(f"{self.label} {self.phase} epoch {epoch + 1}/{self.total}: "
                 f"loss {row['loss']:.4f} acc {row['accuracy']:.4f} "
                 f"val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.4f} "
                 f"({row['seconds']:.1f}s)")


def _optimizer(name: str, lr: float, clip_norm: float = 0.0, ema: float = 0.0
               ) -> keras.optimizers.Optimizer:
    # Global-norm clipping (Keras' own option) caps the rare huge step; 0 leaves it off.
    # ema > 0: the optimizer keeps a moving average of the weights (schedules.callbacks swaps
    # it in for validation, early stopping and the checkpoints).
    extra: dict[str, Any] = {"global_clipnorm": clip_norm} if clip_norm > 0 else {}
    if ema > 0:
        extra |= {"use_ema": True, "ema_momentum": ema}
    if name == "adam":
        return keras.optimizers.Adam(lr, **extra)
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, **extra)
    raise ValueError(f"unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}")


def _compile(model: keras.Model, mc: ModelConfig, lr: float, num_classes: int) -> None:
    # Label smoothing needs one-hot targets; we feed one-hot everywhere for one code path.
    model.compile(
        optimizer=_optimizer(mc.optimizer, lr, mc.clip_norm, mc.ema),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=mc.label_smoothing),
        metrics=["accuracy"],
    )


def class_weights(y: np.ndarray, num_classes: int) -> dict[int, float]:
    """Inverse-frequency weights normalised to mean 1 (classes absent from y get weight 1)."""
    counts = np.bincount(y, minlength=num_classes).astype(float)
    present = counts > 0
    w = np.ones(num_classes)
    w[present] = counts[present].sum() / (present.sum() * counts[present])
    return {i: float(v) for i, v in enumerate(w)}


@dataclass
class ModelState:
    """Where one model's training stands; saved in state.json after every epoch (`--resume`)."""

    history: list[dict[str, Any]] = field(default_factory=list)  # one row per finished epoch
    phase: str | None = None  # phase of the last checkpoint ("train", "head", "finetune")
    phase_epoch: int = 0  # epochs finished in that phase
    phase_done: list[str] = field(default_factory=list)
    checkpoint: str | None = None  # weights file named by the last checkpoint
    # phase -> weights file of its best epoch so far (lowest val_loss), for a resume's early
    # stopping (`schedules.Resumed`)
    best_checkpoints: dict[str, str] = field(default_factory=dict)
    seconds_before_resume: float = 0.0  # training time before an interruption
    feature_seconds: float | None = None  # transfer models: time spent caching activations
    guidance: dict[str, Any] | None = None  # guided training: weight, boxes used, layer
    done: bool = False
    info: dict[str, Any] | None = None  # the manifest entry, once done

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelState:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def start_epoch(self, phase: str) -> int:
        """Epoch to start `phase` from: where its last checkpoint left it, else 0."""
        return self.phase_epoch if self.phase == phase else 0


def _no_checkpoint(history: list[dict[str, Any]], phase: str) -> None:
    return None


@dataclass
class FitJob:
    """One model's training: what to fit, on what data, and who hears about each epoch."""

    built: BuiltModel
    mc: ModelConfig
    cfg: TrainConfig
    train: data.LoadedArrays
    val: data.LoadedArrays
    num_classes: int
    state: ModelState = field(default_factory=ModelState)
    # checkpoint(history, phase): called after every epoch with the history so far
    checkpoint: Callable[[list[dict[str, Any]], str], None] = _no_checkpoint
    progress: Progress = no_progress
    say: Say = log.info
    masks_dir: Path | None = None  # tumour-box masks for guided training (mc.guidance > 0)
    # transfer models: where the cached activations go (files read a batch at a time, see
    # pipeline.feature_cache); None keeps them in memory
    scratch: Path | None = None
    checkpoint_dir: Path | None = None  # where `state`'s checkpoint files are (a resume's)


def resume_steering(job: FitJob, phase: str) -> dict[str, Any]:
    """`schedules.callbacks`' resume arguments for `phase`: its finished epochs' rows when it
    resumes part-way, and a reader of the fitted model's weights at its best epoch (the full
    model's best checkpoint loaded, the fitted sub-model's weights read, the weights put back)."""
    state = job.state
    rows = [h for h in state.history if h["phase"] == phase] if state.start_epoch(phase) else []
    name = state.best_checkpoints.get(phase)
    path = job.checkpoint_dir / name if name and job.checkpoint_dir else None

    def best_weights(fitted: keras.Model) -> list | None:
        if path is None or not path.is_file():
            return None
        full = job.built.model
        now = full.get_weights()
        try:
            full.load_weights(path)
            return fitted.get_weights()
        finally:
            full.set_weights(now)

    return {"resume_rows": rows, "best_weights": best_weights}


def augment_in_model(name: str, mc: ModelConfig, cfg: TrainConfig) -> bool:
    """Whether `name` is built with its own augmentation layers. Guided training from scratch
    augments image and mask together outside the model (guidance.py); a guided transfer model
    makes its cached views with its own layers."""
    guided_outside = mc.guidance > 0 and not (name in BACKBONES and cfg.cache_features)
    return cfg.augment and not guided_outside


def fit(job: FitJob) -> None:
    """Train `job.built.model`; transfer models on cached activations when the config says so."""
    check_recipe(job.built.name, job.mc, job.cfg)
    if job.built.transfer and job.cfg.cache_features:
        _fit_transfer_cached(job)  # guided in its fine-tuning phase when mc.guidance > 0
    elif job.mc.guidance > 0:
        from pipeline.guidance import fit_guided  # imports this module: import it late

        fit_guided(job)
    else:
        _fit_plain(job)


def _epoch_log(job: FitJob, phase: str, epochs: int) -> EpochLog:
    return EpochLog(phase, job.state.history, epochs, lambda h: job.checkpoint(h, phase),
                    job.progress, job.say, job.built.name)


def bn_refresh(job: FitJob) -> Callable[[], int] | None:
    """With `ema` and `ema_batchnorm`: the recomputation of the model's BatchNorm statistics
    for the averaged weights, run before each validation (schedules.callbacks); else None."""
    mc, cfg = job.mc, job.cfg
    if mc.ema <= 0 or mc.ema_batchnorm <= 0:
        return None
    return lambda: schedules.recompute_batchnorm(job.built.model, job.train.x, mc.ema_batchnorm,
                                                 cfg.batch_size, cfg.seed)


def _sample_weights(job: FitJob) -> np.ndarray | None:
    if not job.cfg.class_weights:
        return None
    cw = class_weights(job.train.y, job.num_classes)
    return np.array([cw[int(c)] for c in job.train.y], dtype="float32")


def _cached_activations(job: FitJob, bottom: keras.Model, cut: str,
                        guide: tuple[np.ndarray, tuple[int, int]] | None = None
                        ) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray] | None]:
    """The frozen lower backbone run once per view of the training images, and on validation;
    with `guide` (allowed regions, feature-map size) also each view's region at that size."""
    built, mc, cfg = job.built, job.mc, job.cfg
    n_views = max(1, mc.aug_views) if cfg.augment else 1
    t0 = time.perf_counter()
    count = aug_views.view_count(built.model, n_views)
    where = f" into {job.scratch}" if job.scratch else ""
    job.say(f"{built.name}: caching backbone activations at '{cut}' for {count} views "
            f"of {len(job.train.y)} training images{where}")
    bottom_fn = compiled(bottom)
    feats: list[Any] = []
    small: list[np.ndarray] | None = None if guide is None else []
    made = aug_views.iter_views(built.model, job.train.x, n_views, cfg.seed,
                                *(guide if guide is not None else (None, None)))
    for k, (v, m) in enumerate(made):
        if small is not None:
            small.append(m)
        desc = f"{built.name}: features, view {k + 1}/{count}"
        if job.scratch is None:
            feats.append(aug_views.predict_batches(bottom_fn, v, 64, job.progress, desc))
        else:  # on disk, so memory holds one view of images and no activations; batches of
            # 32: at 224 px one early MobileNetV2 activation of 64 images is 300 MB
            feats.append(feature_cache.predict_to_disk(
                bottom_fn, v, 32, job.scratch / f"view{k}.f16", job.progress, desc))
        del v, m
    feats_val = aug_views.predict_batches(bottom_fn, job.val.x, 64, job.progress,
                                          f"{built.name}: features, validation")
    job.state.feature_seconds = round(time.perf_counter() - t0, 2)
    job.say(f"{built.name}: features cached in {job.state.feature_seconds:.0f}s")
    return feats, feats_val, small


def _fit_transfer_cached(job: FitJob) -> None:
    """Two-phase transfer learning on cached activations (see the module docstring)."""
    built, mc, cfg, state = job.built, job.mc, job.cfg, job.state
    model = built.model
    cut = split_point(model, mc.finetune_layers)
    bottom = keras.Model(model.input, model.get_layer(cut).input, name="bottom")
    top = keras.Model(model.get_layer(cut).input, model.output, name="top")
    pooled = keras.Model(model.get_layer(cut).input, model.get_layer(built.head_input).output)
    head = keras.Model(model.get_layer("head_dropout").input, model.output, name="head")
    y_tr = keras.utils.to_categorical(job.train.y, job.num_classes)
    y_va = keras.utils.to_categorical(job.val.y, job.num_classes)
    sw = _sample_weights(job)
    guided = mc.guidance > 0 and mc.finetune_epochs > 0 and "finetune" not in state.phase_done
    guide = None
    if guided:  # explanation-guided fine-tuning: the regions where evidence belongs, per view
        fmap = top.get_layer(built.gradcam_layer).output.shape[1:3]
        guide = (guidance.prepare(job)[0], (int(fmap[0]), int(fmap[1])))
    feats, feats_val, small = _cached_activations(job, bottom, cut, guide)
    del guide

    if "head" not in state.phase_done:
        # Phase 1: the whole backbone frozen; the head learns on pooled features.
        pooled_fn = compiled(pooled)
        pooled_tr = [aug_views.predict_batches(pooled_fn, f, 128, no_progress, "", "float32")
                     for f in feats]
        pooled_va = aug_views.predict_batches(pooled_fn, feats_val, 128, no_progress, "", "float32")
        _compile(head, mc, mc.learning_rate, job.num_classes)
        batches = aug_views.ViewBatches(pooled_tr, y_tr, cfg.batch_size, cfg.seed, sw)
        head.fit(batches, shuffle=False,  # batches holds the epoch's order
                 validation_data=(pooled_va, y_va), epochs=mc.epochs,
                 initial_epoch=state.start_epoch("head"),
                 callbacks=[*schedules.callbacks(mc.patience, mc.lr_schedule,
                                                 mc.learning_rate, mc.epochs, ema=mc.ema > 0,
                                                 **resume_steering(job, "head")),
                            _epoch_log(job, "head", mc.epochs),
                            batches.keeper()],
                 verbose=0)
        state.phase_done.append("head")
        state.phase, state.phase_epoch = "finetune", 0
        job.checkpoint(state.history, "finetune")
    if mc.finetune_epochs > 0 and "finetune" not in state.phase_done:
        # Phase 2: unfreeze the top blocks except BatchNorm, low learning rate.
        for layer in top.layers:
            if not isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = True
        # views are augmented already; MixStyle (mc.mixstyle) adds styles on the activations
        style = [MixStyle(mc.mixstyle, seed=cfg.seed + 2)] if mc.mixstyle > 0 else []
        trainer = _styled(top, style) if small is None else guidance.GuidedTrainer(
            top, built.gradcam_layer, mc.guidance, augment=[(s, False) for s in style],
            features=keras.Model(model.get_layer(cut).input,
                                 [model.get_layer(built.gradcam_layer).output, model.output]),
            score=mc.guidance_score)
        _compile(trainer, mc, mc.finetune_learning_rate, job.num_classes)
        batches = aug_views.ViewBatches(feats, y_tr, cfg.batch_size, cfg.seed + 1, sw, small)
        trainer.fit(batches, shuffle=False,
                    validation_data=(feats_val.astype("float32"), y_va),
                    epochs=mc.finetune_epochs, initial_epoch=state.start_epoch("finetune"),
                    callbacks=[*schedules.callbacks(max(2, mc.patience), mc.lr_schedule,
                                                    mc.finetune_learning_rate,
                                                    mc.finetune_epochs, ema=mc.ema > 0,
                                                    **resume_steering(job, "finetune")),
                               _epoch_log(job, "finetune", mc.finetune_epochs),
                               batches.keeper()],
                    verbose=0)
        state.phase_done.append("finetune")


def _styled(top: keras.Model, style: list[keras.Layer]) -> keras.Model:
    """`top` behind the training-only layers in `style` (none: `top` itself); it shares
    `top`'s weights, so training it trains the saved model."""
    if not style:
        return top
    x = inputs = keras.Input(top.input.shape[1:])
    for layer in style:
        x = layer(x)
    return keras.Model(inputs, top(x), name=f"{top.name}_styled")


def _fit_plain(job: FitJob) -> None:
    """Ordinary fit on decoded-once arrays (custom CNN, or transfer with caching off)."""
    built, mc, cfg, state = job.built, job.mc, job.cfg, job.state
    model = built.model
    cw = class_weights(job.train.y, job.num_classes) if cfg.class_weights else None
    y_tr = keras.utils.to_categorical(job.train.y, job.num_classes)
    y_va = keras.utils.to_categorical(job.val.y, job.num_classes)
    ds_tr = data.make_tf_dataset(job.train.x, y_tr, cfg.batch_size, shuffle=True, seed=cfg.seed)
    ds_va = data.make_tf_dataset(job.val.x, y_va, cfg.batch_size)
    phases = [("train" if not built.transfer else "head", mc.epochs, mc.learning_rate)]
    if built.transfer and mc.finetune_epochs > 0:
        phases.append(("finetune", mc.finetune_epochs, mc.finetune_learning_rate))
    for phase, epochs, lr in phases:
        if phase in state.phase_done:
            continue
        if phase == "finetune":
            cut = split_point(model, mc.finetune_layers)
            names = [layer.name for layer in model.layers]
            for layer in model.layers[names.index(cut):]:
                if not isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = True
        _compile(model, mc, lr, job.num_classes)
        # shuffle=False: ds_tr shuffles itself; Keras's default True is ignored for a
        # tf.data.Dataset with a UserWarning (printed on every resumed run)
        model.fit(ds_tr, shuffle=False, validation_data=ds_va, epochs=epochs,
                  initial_epoch=state.start_epoch(phase), class_weight=cw,
                  callbacks=[*schedules.callbacks(mc.patience, mc.lr_schedule, lr, epochs,
                                                  ema=mc.ema > 0, refresh=bn_refresh(job),
                                                  **resume_steering(job, phase)),
                             _epoch_log(job, phase, epochs)],
                  verbose=0)
        state.phase_done.append(phase)
        state.phase, state.phase_epoch = None, 0
