"""Interrupted runs: the `runs/.tmp-<id>/` folders a stopped `train` leaves behind.

A run is built in a hidden temporary folder (`artifacts.RunWriter`) that `train --resume <id>`
continues. Nothing listed them, and the run picker skips hidden folders, so an abandoned one
stayed forever with its checkpoints (and, after a SIGKILL during MobileNetV2's caching, every
training image's activations). `train` now names them when it starts (`note`), and
`train --discard <id>` removes one (`discard`). No TensorFlow here.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline import locks, run_files
from pipeline.artifacts import TMP_PREFIX, ArtifactError, RunWriter, shown_path

SHOWN = 5  # interrupted runs named in `note`; the rest counted


@dataclass
class Interrupted:
    run_id: str
    path: Path
    mb: float  # what removing it frees
    resumable: bool  # run.json is there (written last when a run starts)


def _size_mb(folder: Path) -> float:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total / 1e6


def _being_written(folder: Path) -> bool:
    """Whether a process holds the folder's writer lock (`locks.held`; where locks cannot be
    asked, whether the pid its file names is alive, a hint)."""
    lock = folder / run_files.WRITER_LOCK
    now = locks.held(lock)
    if now is not None:
        return now
    record = locks.holder(lock)
    return record is not None and locks.alive(record["pid"])


def interrupted_runs(artifacts_dir: str | Path) -> list[Interrupted]:
    """The interrupted runs under `artifacts_dir/runs`, oldest first, leaving out those a live
    command is training or resuming now."""
    runs_dir = Path(artifacts_dir) / "runs"
    if not runs_dir.is_dir():
        return []
    found = []
    for path in sorted(runs_dir.glob(f"{TMP_PREFIX}*")):
        if path.is_dir() and not _being_written(path):
            found.append(Interrupted(path.name[len(TMP_PREFIX):], path, _size_mb(path),
                                     (path / "run.json").is_file()))
    return found


def mb_words(mb: float) -> str:
    """"0.3 MB", "12 MB": a size as `note` and `train --discard` say it."""
    return f"{mb:.1f} MB" if mb < 10 else f"{mb:.0f} MB"


def commands(run_id: str, out_arg: str = "") -> tuple[str, str]:
    """The commands that continue (`train --resume`) and remove (`train --discard`) the
    interrupted run `run_id` ("ID" for any), `out_arg` (" --out DIR") naming a folder other
    than the default (`gaps.out_arg`): `note`'s and the dashboard's."""
    return (f"python -m pipeline train --resume {run_id}{out_arg}",
            f"python -m pipeline train --discard {run_id}{out_arg}")


def refusal(artifacts_dir: str | Path, run_id: str) -> str:
    """What opening the interrupted run `run_id` of `artifacts_dir` says (`predict --run <id>`
    said "not found", `--run .tmp-<id>` "missing file"): the commands that continue or remove
    it, with `--out` when the folder is not the default (`gaps.out_arg`)."""
    from pipeline.gaps import out_arg  # gaps imports artifacts, which asks this lazily

    tmp = Path(artifacts_dir) / "runs" / f"{TMP_PREFIX}{run_id}"
    if _being_written(tmp):  # not interrupted: a live `train` builds it now
        return (f"run {run_id!r} is being trained now (in {shown_path(tmp)}); open it once "
                "its training has finished")
    resume, remove = commands(run_id, out_arg(artifacts_dir))
    return (f"run {run_id!r} is an interrupted run (its training stopped before the end): "
            f"continue it with `{resume}`, or remove it with `{remove}`")


def note(runs: list[Interrupted], out_arg: str = "") -> str | None:
    """The line `train` says at start about `runs` (None when there are none): each id and its
    size, and the commands that continue or remove one. `out_arg` (" --out DIR") names the
    artifacts folder in those commands when it is not the default."""
    if not runs:
        return None
    named = ", ".join(f"{r.run_id} ({mb_words(r.mb)})" for r in runs[:SHOWN])
    more = f" and {len(runs) - SHOWN} more" if len(runs) > SHOWN else ""
    one = len(runs) == 1
    resume, remove = commands(runs[0].run_id if one else "ID", out_arg)
    return (f"{len(runs)} interrupted run{'' if one else 's'} in "
            f"{shown_path(runs[0].path.parent)}: {named}{more}; continue "
            f"{'it' if one else 'one'} with `{resume}`, "
            f"or remove {'it' if one else 'one'} with `{remove}`")


def discard(artifacts_dir: str | Path, run_id: str) -> float:
    """Remove the interrupted run `run_id` (its `runs/.tmp-<id>/` folder); returns the MB
    freed. ArtifactError when there is no such run (a complete one is never removed here) or
    a command is training or resuming it now (its lock)."""
    writer = RunWriter(artifacts_dir, run_id, resume=True)  # checks the id; no folder made
    mb = _size_mb(writer.tmp)
    with locks.run_writer(writer.tmp, "train --discard"):
        try:
            shutil.rmtree(writer.tmp)
        except OSError as exc:
            raise ArtifactError(f"cannot remove interrupted run {run_id}: "
                                f"{exc.strerror or exc}") from None
    return mb


def resume_data_dir(run_id: str, saved: dict, given: str | Path | None) -> str:
    """The data folder an interrupted run resumes on: `given` (`train --resume --data`: where
    it is now) or the one its run.json names. DatasetError, one line, when that folder is gone;
    `check_moved_data` then compares what it holds."""
    from pipeline.data import DatasetError

    data_dir = str(given or saved["data_dir"])
    if not Path(data_dir).is_dir():
        raise DatasetError(f"run {run_id} was trained on {data_dir}, which is not there now: "
                           "if it moved, give --data with where it is")
    return data_dir


def check_moved_data(run_id: str, saved: dict, ds, writer: RunWriter) -> None:  # noqa: ANN001
    """A data folder given to a resume (`ds`, not where run.json says) must hold the images the
    run began on: the same fingerprint (every file's path, label and content), or the rest of
    the training would see other images under the same names (a review: regenerated phantoms
    resumed silently). Where it does, run.json names the new place, so a later resume needs no
    --data. Runs begun before run.json kept a fingerprint are taken as they are."""
    from pipeline.data import DatasetError, fingerprint

    if str(ds.root) == str(saved["data_dir"]) or not saved.get("fingerprint"):
        return
    if fingerprint(ds) != saved["fingerprint"]:
        raise DatasetError(f"{ds.root} does not hold the images run {run_id} was trained on "
                           "(another file, label or content): give the folder it began on")
    writer.write_json("run.json", {**saved, "data_dir": str(ds.root)})
