"""What runs on a trained run before it is renamed into place (`RunWriter.finalize`'s
`before_rename`): calibration and evaluation when asked, then the "unlike the training data"
score. Each step that fails is reported in one line and the run is kept without it; only
OSError (disk full, unwritable) propagates, for `train_run`'s handler to keep the run resumable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pipeline.names import Progress

Say = Callable[[str], None]


def finish_hook(progress: Progress, say: Say, evaluate: bool) -> Callable[[Path], None]:
    """Calibrate and evaluate (with `evaluate`), then fit the OOD score: after the evaluation,
    so that `ood_run` finds the predictions it writes flags.json from."""
    evaluation = evaluation_hook(progress, say) if evaluate else None

    def finish(tmp: Path) -> None:
        if evaluation is not None:
            evaluation(tmp)
        fit_ood(tmp, progress, say)
    return finish


def fit_ood(run_dir: Path, progress: Progress, say: Say) -> None:
    """`ood_run` on a new run; a failure leaves the run without the flag, said in one line."""
    from pipeline.ood import ood_run

    started = time.perf_counter()
    try:
        ood_run(run_dir, progress=progress)
    except OSError:
        raise  # disk full or unwritable: train_run's handler explains and keeps the run
    except Exception as exc:  # a finished training is never lost to its OOD score
        say(f"OOD score not fitted ({type(exc).__name__}: {exc}); the run is kept without the "
            "'unlike the training data' flag: fit it later with `python -m pipeline ood`")
        return
    say(f"'unlike the training data' score fitted in {time.perf_counter() - started:.1f} s "
        "(ood.json)")


def evaluation_hook(progress: Progress, say: Say) -> Callable[[Path], None]:
    """Calibrate on validation, then evaluate the test split; failures are said, not raised."""
    def evaluate(tmp: Path) -> None:
        from pipeline.calibration import calibrate_run
        from pipeline.evaluate import evaluate_run

        try:  # the temperature comes from validation data; evaluation then applies it
            calibrate_run(tmp, progress=progress)
        except OSError:
            raise
        except Exception as exc:  # the run stays usable with uncalibrated probabilities
            say(f"calibration failed ({type(exc).__name__}: {exc}); probabilities stay "
                f"uncalibrated: calibrate later with `python -m pipeline calibrate`")
        try:
            evaluate_run(tmp, progress=progress)
        except OSError:
            raise  # disk full or unwritable: train_run's handler explains and keeps the run
        except Exception as exc:  # a finished training is never lost to its evaluation
            say(f"evaluation failed ({type(exc).__name__}: {exc}); the run is kept without "
                f"metrics: evaluate it later with `python -m pipeline evaluate`")
    return evaluate
