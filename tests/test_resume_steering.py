"""A resumed training phase steers on as the interrupted run left it (`schedules.Resumed`):
early stopping's best epoch, its weights and the epochs waited, the plateau's count and the step
reached. A review's resumed run trained to epoch 10 and kept epoch 7 where the uninterrupted one
stopped at 6 with epoch 3."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from pipeline import schedules


def _tiny() -> keras.Model:
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    return model


def test_the_callbacks_resume_with_the_phase_s_best_wait_and_step() -> None:
    model = _tiny()
    rows = [{"val_loss": 1.0, "learning_rate": 1e-3}, {"val_loss": 0.8, "learning_rate": 1e-3},
            {"val_loss": 0.9, "learning_rate": 1e-3}, {"val_loss": 0.95, "learning_rate": 5e-4}]
    zeros = [np.zeros_like(w) for w in model.get_weights()]
    cbs = schedules.callbacks(4, "plateau", 1e-3, 20, resume_rows=rows,
                              best_weights=lambda fitted: zeros)
    keras.callbacks.CallbackList(cbs, model=model).on_train_begin()
    early = next(c for c in cbs if isinstance(c, keras.callbacks.EarlyStopping))
    steer = next(c for c in cbs if isinstance(c, keras.callbacks.ReduceLROnPlateau))
    assert (early.best, early.best_epoch, early.wait) == (0.8, 1, 2)
    assert all(not w.any() for w in early.best_weights)  # the best epoch's, to restore at the end
    # the plateau: best 0.8, one stalled epoch, then the step was cut (after epoch 4): wait 0
    assert (steer.best, steer.wait) == (0.8, 0)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(5e-4)
    assert not model.stop_training  # two epochs waited of four
    short = schedules.callbacks(2, resume_rows=rows, best_weights=lambda fitted: zeros)
    keras.callbacks.CallbackList(short, model=model).on_train_begin()
    assert model.stop_training  # patience 2 ran out as the run stopped: stop at once
    model.stop_training = False
    # without the best weights early stopping starts afresh (it would keep the wrong epoch's)
    fresh = schedules.callbacks(4, resume_rows=rows, best_weights=lambda fitted: None)
    keras.callbacks.CallbackList(fresh, model=model).on_train_begin()
    assert fresh[0].best is None and fresh[0].wait == 0
    # a phase that starts anew gets no Resumed at all
    assert not any(isinstance(c, schedules.Resumed) for c in schedules.callbacks(4))


@pytest.mark.slow
@pytest.mark.parametrize("guidance", [0.0, 1.0])
def test_an_interrupted_training_resumes_with_its_best_epoch_kept(
        synth_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        guidance: float) -> None:
    """Interrupted after its third epoch and resumed: the best epoch's weights were kept in a
    checkpoint of their own, the model saved is the best of the whole history, and the run
    says how many epochs it ran in all. Guided training too: the shipped custom CNN's recipe
    (guidance 3.0) fits through its own path, which the first version of this fix missed (a
    review of it)."""
    from pipeline import train
    from pipeline.config import profile

    cfg = profile("smoke")
    cfg.models["custom_cnn"].epochs, cfg.models["custom_cnn"].patience = 5, 5
    cfg.models["custom_cnn"].guidance = guidance
    said: list[str] = []

    def interrupt_after_third(line: str) -> None:
        said.append(line)
        if "train epoch 3/5" in line:
            raise KeyboardInterrupt

    with pytest.raises(train.RunInterrupted) as stopped:
        train.train_run(cfg, synth_data, tmp_path, ["custom_cnn"], say=interrupt_after_third)
    run_id = stopped.value.run_id
    tmp = next((tmp_path / "runs").glob(f".tmp-{run_id}"))
    state = json.loads((tmp / "state.json").read_text())["models"]["custom_cnn"]
    losses = [h["val_loss"] for h in state["history"]]
    best = state["best_checkpoints"]["train"]
    assert best == f"checkpoint-best-train-{int(np.argmin(losses)) + 1:04d}.weights.h5"
    assert (tmp / "custom_cnn" / best).is_file()
    resumed: list[tuple] = []  # what early stopping started the resumed phase with
    real = schedules.Resumed.on_train_begin

    def spy(self, logs=None):  # noqa: ANN001, ANN202
        real(self, logs)
        resumed.append((self.early.best, self.early.wait, self.early.best_weights is not None))

    monkeypatch.setattr(schedules.Resumed, "on_train_begin", spy)
    run = train.train_run(cfg, None, tmp_path, ["custom_cnn"], resume=run_id,
                          say=said.append)
    k = int(np.argmin(losses))
    assert resumed == [(pytest.approx(losses[k]), len(losses) - 1 - k, True)], resumed
    manifest = json.loads((run / "manifest.json").read_text())
    history = json.loads((run / "custom_cnn" / "history.json").read_text())["epochs"]
    losses = [h["val_loss"] for h in history]
    assert manifest["models"]["custom_cnn"]["best_epoch"] == int(np.argmin(losses)) + 1
    assert not list((run / "custom_cnn").glob("checkpoint*"))  # none left in the final run
