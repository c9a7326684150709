"""Interrupts whose exception is dropped on the way (`signals.installed`, `signals.check`): a
SIGTERM during feature caching was lost in three test runs under load (2026-12) and training ran
to its end, exit 0. Python drops whatever a `__del__` raises, and library code may clear it.
In-process: real signals, a real tiny Keras fit."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

import numpy as np
import pytest

from pipeline import signals


class _Raising:
    """Sends `signum` to this process in its `__del__`: the handler runs there, and Python
    reports what it raises as unraisable and goes on."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def __del__(self) -> None:
        signal.raise_signal(self.signum)
        for _ in range(100_000):  # the Python handler runs in here
            pass


def _dropped_by_a_library() -> None:
    with contextlib.suppress(KeyboardInterrupt):  # code that clears what it did not expect
        signals.terminate(signal.SIGTERM, None)


def test_sigterm_swallowed_by_a_finaliser_is_raised_by_the_next_check(capsys):
    before_hook, before_handler = sys.unraisablehook, signal.getsignal(signal.SIGTERM)
    with signals.installed():
        assert signal.getsignal(signal.SIGTERM) is signals.terminate
        _Raising(signal.SIGTERM)  # dropped at once
        with pytest.raises(signals.Terminated):
            signals.check()
        signals.check()  # raised once: nothing left
    assert "Exception ignored" not in capsys.readouterr().err  # no traceback on a kill
    assert sys.unraisablehook is before_hook
    assert signal.getsignal(signal.SIGTERM) is before_handler
    assert not signals.terminated(ValueError())  # the state was reset on the way out


def test_ctrl_c_swallowed_by_a_finaliser_comes_back_as_ctrl_c():
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own
    try:
        with signals.installed():
            assert signal.getsignal(signal.SIGINT) is signals.interrupt
            _Raising(signal.SIGINT)
            with pytest.raises(KeyboardInterrupt) as raised:
                signals.check()
        assert not isinstance(raised.value, signals.Terminated)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_ctrl_c_a_library_turned_into_another_error_is_still_an_interrupt():
    """A Ctrl-C landing in TensorFlow's `Flatten` ended train as a TypeError with no chain
    back to it (exit 1 and a traceback, in a test): the handler's note says it was one."""
    with signals.installed():
        assert not signals.interrupted(TypeError("a plain bug"))
        with contextlib.suppress(KeyboardInterrupt):
            signals.interrupt(signal.SIGINT, None)
        assert signals.interrupted(TypeError("wrapped"))
        assert not signals.terminated(TypeError("wrapped"))  # exit 130, not SIGTERM's 143
    assert not signals.interrupted(TypeError("a plain bug"))  # forgotten on the way out


def test_an_ignored_ctrl_c_stays_ignored():
    """A background job started with SIGINT ignored (`cmd &` in a script) keeps ignoring it."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with signals.installed():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_an_interrupt_a_library_cleared_is_raised_by_the_next_check():
    with signals.installed():
        _dropped_by_a_library()
        with pytest.raises(signals.Terminated):
            signals.check()


def test_an_interrupt_on_its_way_out_is_not_raised_again():
    """Cleanup that reports progress (an `except` or `finally` the interrupt reached) is not
    cut short by a second one."""
    checked: list[str] = []  # where check() returned instead of raising a second one
    with signals.installed():
        with pytest.raises(signals.Terminated):
            try:
                signals.terminate(signal.SIGTERM, None)
            finally:
                signals.check()  # the interrupt is being handled here: nothing raised
                checked.append("finally")
        with pytest.raises(signals.Terminated):
            try:
                signals.terminate(signal.SIGTERM, None)
            except KeyboardInterrupt:
                signals.check()
                checked.append("except")
                raise
    assert checked == ["finally", "except"]


def test_other_unraisable_errors_still_reach_the_previous_hook(monkeypatch):
    seen: list[type] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_type))

    class Failing:
        def __del__(self) -> None:
            raise ValueError("a finaliser's own bug")

    with signals.installed():
        Failing()
        signals.check()  # nothing pending
    assert seen == [ValueError]


def test_an_interrupt_python_made_a_system_error_of_is_not_printed(monkeypatch):
    """A SIGTERM landing in a builtin that C code called became "SystemError: ... returned a
    result with an exception set" (its cause: the interrupt), which TensorFlow's `Flatten`
    reported as unraisable: a bare traceback on a kill. It is dropped; the interrupt stays
    pending for `check`. A SystemError of its own still reaches the previous hook."""
    seen: list[type] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_type))

    class Made:
        def __init__(self, cause: BaseException | None) -> None:
            self.cause = cause

        def __del__(self) -> None:
            if self.cause is None:
                raise SystemError("a library's own")
            raise SystemError("returned a result with an exception set") from self.cause

    with signals.installed():
        Made(None)  # nothing noted: reported
        with contextlib.suppress(signals.Terminated):
            signals.terminate(signal.SIGTERM, None)  # the handler ran
        with contextlib.suppress(signals.Terminated):
            try:
                signals.check()
            except signals.Terminated as exc:
                Made(exc)  # dropped
                raise
        Made(None)  # no interrupt in its chain: reported
    assert seen == [SystemError, SystemError]


def test_check_outside_the_main_thread_leaves_the_interrupt_for_the_main_thread():
    with signals.installed():
        _dropped_by_a_library()
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                signals.check()
            except BaseException as exc:  # noqa: BLE001 - the test looks at what escaped
                errors.append(exc)

        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert errors == []
        with pytest.raises(signals.Terminated):
            signals.check()


def test_training_stops_at_the_batch_after_a_dropped_interrupt():
    """`schedules.callbacks` (every fit uses them) check after each training batch."""
    import keras

    from pipeline import schedules

    batches: list[int] = []

    class Dropping(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            batches.append(batch)
            if len(batches) == 3:
                _dropped_by_a_library()

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = keras.utils.to_categorical(np.arange(64) % 2, 2)
    with signals.installed(), pytest.raises(signals.Terminated):
        model.fit(x, y, batch_size=8, epochs=5, verbose=0, validation_data=(x, y),
                  callbacks=[Dropping(), *schedules.callbacks(10)])
    assert len(batches) == 3  # 40 batches otherwise
