"""Training callbacks shared by every fit path: early stopping and the learning-rate schedule
(`ModelConfig.lr_schedule`)."""

from __future__ import annotations

import math
from collections.abc import Callable

import keras

from pipeline.config import LR_SCHEDULES


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


def callbacks(patience: int, schedule: str = "plateau", lr: float = 1e-3, epochs: int = 1,
              ema: bool = False) -> list[keras.callbacks.Callback]:
    """Early stopping on val_loss (best weights restored), the step's steering and a NaN stop.
    `schedule` "plateau" halves the step when val_loss stalls; "cosine" follows `cosine_lr`
    from `lr` over `epochs`. `ema` (an optimizer with `use_ema`): the weights' moving average
    is swapped in for validation and at each epoch's end, so early stopping, the checkpoints
    and the model kept are the average."""
    if schedule == "plateau":
        steer: keras.callbacks.Callback = keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=max(1, patience // 2), min_lr=1e-6)
    elif schedule == "cosine":
        steer = keras.callbacks.LearningRateScheduler(cosine_lr(lr, epochs))
    else:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    # First in the list: the callbacks after it see the averaged weights at an epoch's end.
    swap = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if ema else []
    return [
        *swap,
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                      restore_best_weights=True),
        steer,
        keras.callbacks.TerminateOnNaN(),
    ]
