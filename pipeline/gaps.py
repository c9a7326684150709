"""What a run's answers go without, and the command that adds it.

A run made before a check existed (or copied without some of its files) still answers, but its
answers then lack a warning without saying so: no temperature, no "weak answer" threshold, no
"unlike the training data" score, no split hashes to recognise the run's own images. `predict`,
`explain` and the dashboard say it once, before any answer, with the fix.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.artifacts import PROJECT_ROOT, Run, default_artifacts, shown_path
from pipeline.names import TOGETHER_LABEL, display_name


@dataclass(frozen=True)
class Gap:
    """A check the answers go without (`what`, our words) and the `command` that adds it (it
    names the run's folder: shown verbatim, never as markup)."""

    what: str
    command: str

    def __str__(self) -> str:
        return f"{self.what}; `{self.command}` adds it"


def run_arg(run: Run | Path) -> str:
    """How a fix command shown to a user names `run` (`--run` of a shell in the project): its
    folder's name when the default artifacts folder (`artifacts.default_artifacts`) finds this
    very folder by that name, else its folder's path: relative to the project as messages
    show it (`shown_path`), or in full for a folder elsewhere; quoted for a shell. The
    manifest's run id named the original of a copied folder, and failed for a run outside the
    default folder."""
    folder = Path(run.path if isinstance(run, Run) else run)
    if _is_default(folder, "runs", folder.name):
        return shlex.quote(folder.name)
    return _shell_path(folder)


def _is_default(folder: Path, *below: str) -> bool:
    """Whether `folder` is the default artifacts folder's `below` (`default_artifacts`,
    relative to the project, where the commands are shown to be run)."""
    default = default_artifacts()
    if not default.is_absolute():
        default = PROJECT_ROOT / default
    try:
        return os.path.samefile(default.joinpath(*below), folder)
    except OSError:
        return False


def _shell_path(folder: Path) -> str:
    """`folder` for a shell in the project, quoted: relative to the project as messages show it
    (`shown_path`), or in full for a folder elsewhere (shown from its `runs` folder on, such a
    path would not work from the project)."""
    shown, absolute = shown_path(folder), os.path.abspath(folder)
    works = shown == Path(os.path.relpath(absolute, PROJECT_ROOT)).as_posix()
    return shlex.quote(shown if works else absolute)


def out_arg(artifacts_dir: str | Path) -> str:
    """" --out <folder>" naming `artifacts_dir` in a `train` command shown to a user (as
    `run_arg` names a run: its path relative to the project, or in full when elsewhere); ""
    when it is the default artifacts folder, which the command finds by itself."""
    folder = Path(artifacts_dir)
    return "" if _is_default(folder) else f" --out {_shell_path(folder)}"


def fix_command(run: Run | Path, command: str, *options: str) -> str:
    """`python -m pipeline <command> --run <run_arg> <options>`: the command that rebuilds a
    file of `run`, as every "To fix" names it."""
    return " ".join(("python -m pipeline", command, "--run", run_arg(run), *options))


def to_fix(problem: object, command: str) -> str:
    """One line: what is wrong with a run's file (`problem`: an ArtifactError's text names
    the file) and the command that rebuilds it. The dashboard shows the same words, with the
    command as code."""
    return f"{problem}. To fix: run {command}"


def _models(names: list[str]) -> str:
    return " and ".join(display_name(m) for m in names)


def missing_checks(run: Run, models: Sequence[str], *, calibrated: bool = True,
                   knows_splits: bool, run_ref: str | None = None,
                   calibration: tuple[dict, dict, dict] | None = None,
                   ood_damage: Mapping[str, str] | None = None,
                   pool_unscaled: bool = False) -> list[Gap]:
    """One `Gap` per check the answers of `models` of `run` go without, each ending with its
    fix; [] when nothing is missing. `calibrated` False: the caller shows raw probabilities on
    purpose, so a missing temperature is no gap. `knows_splits`: whether the caller has the
    run's split hashes (`data.membership.Membership.of_run` found a readable file); `run_ref`:
    how the fixes name the run (the CLI's own `--run` and `--artifacts`; default `run_arg`);
    `calibration`: `calibration.read_calibration`'s ({model: T}, {model: threshold},
    {model: damage}) when the caller has them already (the `Predictor` caches them: the
    dashboard asks on every rerun), else read; `ood_damage`: {model: why its ood.npz cannot
    be used} (`ood.ood_damage`), else read; `pool_unscaled`: the caller shows the models'
    answers pooled (`evaluate.together`) and calibration.json has no temperature for the pool:
    a gap when every model is calibrated (a run calibrated before the pool existed). A damaged
    file is a gap like a missing one, said as damaged."""
    from pipeline.calibration import FILE as CALIBRATION_FILE
    from pipeline.calibration import read_calibration
    from pipeline.data.membership import FILE as SPLITS_FILE
    from pipeline.ood import MODEL_FILE
    from pipeline.ood import ood_damage as read_ood_damage

    where = run_ref or run_arg(run)
    calibrate = f"python -m pipeline calibrate --run {where}"
    ood = f"python -m pipeline ood --run {where}"
    temps, below, damaged = calibration or read_calibration(run.path, models)
    if ood_damage is None:
        ood_damage = {m: why for m in models if (why := read_ood_damage(run.path, m)[1])}
    gaps: list[Gap] = []
    cal_file = (f"not in {CALIBRATION_FILE}" if (run.path / CALIBRATION_FILE).is_file()
                else f"no {CALIBRATION_FILE}")
    # models that lack the same parts of calibration.json share one line
    lacking: dict[tuple[str, ...], list[str]] = {}
    for m in models:
        lacks = (("probabilities not calibrated",) if calibrated and m not in temps else ()) + (
            ("no answer is marked weak",) if m not in below else ())
        if lacks:
            why = f"damaged {CALIBRATION_FILE}: {damaged[m]}" if m in damaged else cal_file
            lacking.setdefault((lacks, why), []).append(m)
    for (lacks, why), names in lacking.items():
        gaps.append(Gap(f"{_models(names)}: {' and '.join(lacks)} ({why})", calibrate))
    if pool_unscaled and all(m in temps for m in models):
        # the models' own gap above already sends a run without temperatures to `calibrate`
        gaps.append(Gap(f"{TOGETHER_LABEL}: its confidence is not calibrated (no temperature of "
                        f"its own in {CALIBRATION_FILE}: calibrated before it existed)",
                        calibrate))
    unlike: dict[str, list[str]] = {}
    before_far: list[str] = []  # scores fitted before the far threshold (`ood.FAR`) existed
    for m in models:
        if m in ood_damage:
            unlike.setdefault(f"damaged {MODEL_FILE}: {ood_damage[m]}", []).append(m)
        elif not (run.path / m / MODEL_FILE).is_file():
            unlike.setdefault(f"no {MODEL_FILE}", []).append(m)
        elif (score := read_ood_damage(run.path, m)[0]) is not None and score.far is None:
            before_far.append(m)
    for why, names in unlike.items():
        gaps.append(Gap(f"{_models(names)}: no image is marked unlike the training data "
                        f"({why})", ood))
    if before_far:
        gaps.append(Gap(f"{_models(before_far)}: no image is marked far unlike the training "
                        f"data, so no answer is withheld as likely no MRI ({MODEL_FILE} "
                        "fitted before that existed)", ood))
    if not knows_splits:
        gaps.append(Gap("the run's own training, validation and test images are not "
                        f"recognised (no readable {SPLITS_FILE})", ood))
    return gaps
