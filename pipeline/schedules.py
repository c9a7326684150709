"""Training callbacks shared by every fit path: early stopping and the learning-rate schedule
(`ModelConfig.lr_schedule`)."""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
import numpy as np

from pipeline import signals
from pipeline.config_rules import LR_SCHEDULES


def cosine_lr(base: float, epochs: int, warmup: int = 2, floor: float = 0.01
              ) -> Callable[[int], float]:
    """Epoch -> learning rate: a linear warm-up over `warmup` epochs, then a half cosine from
    `base` down to `floor * base` at the last epoch (a function of the epoch index alone, so a
    resumed run continues on the same curve)."""
    def rate(epoch: int) -> float:
        if epoch < warmup:
            return base * (epoch + 1) / (warmup + 1)
        t = (epoch - warmup) / max(1, epochs - 1 - warmup)
        return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))
    return rate


def recompute_batchnorm(model: keras.Model, images: np.ndarray, batches: int, batch_size: int,
                        seed: int = 0) -> int:
    """BatchNorm's moving statistics recomputed for the weights now in `model`: reset, then the
    plain average over `batches` random training batches, run in training mode (SWA's bn_update,
    Izmailov et al. 2018). Averaged weights need it: the statistics gathered during training
    belong to the raw weights of the last few steps. Returns how many layers were refreshed
    (frozen BatchNorm layers keep theirs)."""
    layers = [layer for layer in model._flatten_layers(include_self=False)
              if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    if not layers or batches <= 0 or len(images) == 0:
        return 0
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, "float32"))
        layer.moving_variance.assign(np.ones(layer.moving_variance.shape, "float32"))
    order = np.random.default_rng(seed).permutation(len(images))[:batches * batch_size]
    try:
        for k, start in enumerate(range(0, len(order), batch_size)):
            for layer in layers:  # batch k weighs 1 / (k + 1): a running mean of the batches
                layer.momentum = k / (k + 1)
            model(images[np.sort(order[start:start + batch_size])], training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return len(layers)


class LostInterrupts(keras.callbacks.Callback):
    """After each training batch, raises an interrupt that was dropped on its way
    (`signals.check`): a SIGTERM as feature caching started once let training run to its end."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        signals.check()


class BeforeValidation(keras.callbacks.Callback):
    """Calls `fn` at the start of every validation pass (after the averaged weights are in)."""

    def __init__(self, fn: Callable[[], object]) -> None:
        super().__init__()
        self.fn = fn

    def on_test_begin(self, logs: dict | None = None) -> None:
        self.fn()


class Resumed(keras.callbacks.Callback):
    """A resumed phase's steering as the interrupted run left it, set at the start of training
    (after the callbacks' own resets): early stopping's best val_loss, its epoch and weights and
    the epochs waited since, the plateau's best and wait, and the step it had reached. Rebuilt
    from the phase's `rows` (the run's history, one per finished epoch: val_loss and the step
    after each epoch's steering); `best_weights(model)`: the fitted model's weights at the best
    epoch (the run's best checkpoint), or None. Without it a resumed run trained on with fresh
    counters and the first step, and kept the best model since the resume (a review: best epoch
    7 of 10 resumed, against 3 of 6 uninterrupted). The optimizer's moments are not kept: they
    start afresh."""

    def __init__(self, early: keras.callbacks.EarlyStopping, steer: keras.callbacks.Callback,
                 rows: list[dict], best_weights: Callable[[keras.Model], list | None]) -> None:
        super().__init__()
        self.early, self.steer, self.rows, self.best_weights = early, steer, rows, best_weights

    def on_train_begin(self, logs: dict | None = None) -> None:
        losses = [float(r["val_loss"]) for r in self.rows]
        if not losses or not all(np.isfinite(losses)):
            return
        best = int(np.argmin(losses))  # the first of equals, as early stopping keeps it
        weights = self.best_weights(self.model)
        if weights is not None:
            self.early.best, self.early.best_epoch = losses[best], best
            self.early.wait = len(losses) - 1 - best
            self.early.best_weights = weights
            # patience ran out as the run was stopped (its phase not yet marked done): stop at
            # once, after one batch (Keras checks no sooner), and end on the best epoch's weights
            if self.early.wait >= self.early.patience:
                self.model.stop_training = True
        if isinstance(self.steer, keras.callbacks.ReduceLROnPlateau):
            plateau_best, wait, step = None, 0, None
            for row, loss in zip(self.rows, losses, strict=True):
                # the step after this epoch: lower than before means the plateau cut it here
                cut = step is not None and float(row["learning_rate"]) < step
                step = float(row["learning_rate"])
                if plateau_best is None or loss < plateau_best - self.steer.min_delta:
                    plateau_best, wait = loss, 0
                else:
                    wait = 0 if cut else wait + 1
            self.steer.best, self.steer.wait = plateau_best, wait
            self.model.optimizer.learning_rate = step


def callbacks(patience: int, schedule: str = "plateau", lr: float = 1e-3, epochs: int = 1,
              ema: bool = False, refresh: Callable[[], object] | None = None,
              resume_rows: list[dict] | None = None,
              best_weights: Callable[[keras.Model], list | None] | None = None
              ) -> list[keras.callbacks.Callback]:
    """Early stopping on val_loss (best weights restored), the step's steering, a NaN stop and
    the check for an interrupt dropped on its way (`LostInterrupts`).
    `schedule` "plateau" halves the step when val_loss stalls; "cosine" follows `cosine_lr`
    from `lr` over `epochs`. `ema` (an optimizer with `use_ema`): the weights' moving average
    is swapped in for validation and at each epoch's end, so early stopping, the checkpoints
    and the model kept are the average; `refresh` (with `ema`) runs after the average is swapped
    in and before each validation (`recompute_batchnorm`), so the statistics kept match it.
    `resume_rows`, `best_weights`: a resumed phase's history and best weights (`Resumed`)."""
    if schedule == "plateau":
        steer: keras.callbacks.Callback = keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=max(1, patience // 2), min_lr=1e-6)
    elif schedule == "cosine":
        steer = keras.callbacks.LearningRateScheduler(cosine_lr(lr, epochs))
    else:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    # First in the list: the callbacks after it see the averaged weights at an epoch's end.
    swap = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if ema else []
    if ema and refresh is not None:  # after the swap: it must see the averaged weights
        swap.append(BeforeValidation(refresh))
    early = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                          restore_best_weights=True)
    resumed = [Resumed(early, steer, resume_rows, best_weights or (lambda model: None))
               ] if resume_rows else []
    return [*swap, early, steer, *resumed, keras.callbacks.TerminateOnNaN(), LostInterrupts()]
