"""One writer per run folder (review 4, findings 4 and 8). Real `python -m pipeline`
subprocesses; the other writer is a real process holding the run's lock (`locks.run_writer`),
on copies of the smoke run or on a temporary artifacts folder."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import run_files

ROOT = Path(__file__).resolve().parents[1]

# Another command writing the run: takes its lock, says "held", keeps it until stdin closes.
HOLD = """
import sys
from pathlib import Path
from pipeline.locks import run_writer
with run_writer(Path(sys.argv[1]), sys.argv[2]):
    print("held", flush=True)
    sys.stdin.read()
"""


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "BRAIN_MRI_OFFLINE": "1"}


def _holder(folder: Path, command: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), command], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _release(proc: subprocess.Popen) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=60)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, env=_env())


def _error_line(done: subprocess.CompletedProcess) -> str:
    """The one `error:` line a refused command printed (TensorFlow may add start-up lines)."""
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == errors[0]  # the last line, nothing after
    return errors[0]


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_second_writer_of_a_run_is_refused_naming_the_other_and_a_dead_one_blocks_nothing(
        smoke_run: Path, synth_data: Path, tmp_path: Path):
    """`evaluate` twice, `calibrate` beside `evaluate`, ... all succeeded, last writer winning:
    every command that writes into a run now refuses, in one line naming the process that is
    writing it; readers (predict) go on; a lock left by a killed process blocks nothing."""
    run = tmp_path / "art" / "runs" / smoke_run.name
    shutil.copytree(smoke_run, run)
    holder = _holder(run, "evaluate")
    try:
        before = _digests(run)
        for args in (["evaluate"], ["evaluate", "--robustness"], ["calibrate"], ["ood"],
                     ["explain-eval", "--max-images", "8"], ["explain-choose"]):
            line = _error_line(_cli(*args, "--run", str(run)))
            assert line.startswith(f"error: run {smoke_run.name} is being written by another "
                                   f"command (`evaluate`, pid {holder.pid}, since "), line
            assert "one command at a time per run" in line
        assert _digests(run) == before  # nothing written by the refused commands
        image = sorted(synth_data.glob("Testing/*/*.png"))[0]
        read = _cli("predict", "--run", str(run), str(image))  # a reader takes no lock
        assert read.returncode == 0, read.stderr[-2000:]
    finally:
        holder.kill()  # SIGKILL: its lock file stays behind, naming a dead process
        holder.wait(timeout=60)
    assert json.loads((run / run_files.WRITER_LOCK).read_text())["pid"] == holder.pid
    done = _cli("calibrate", "--run", str(run))
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (run / run_files.WRITER_LOCK).exists()  # taken over, then removed when done


def test_a_second_resume_of_a_run_is_refused_and_its_cache_kept(tmp_path: Path):
    """Two `train --resume <id>` at once: the second deleted the first's feature cache as
    stale, and the first then failed blaming the disk. The second is now refused in one line
    naming the first."""
    art = tmp_path / "art"
    run_id = "20261206-054110-7af918"
    tmp_run = art / "runs" / f".tmp-{run_id}"
    cache = tmp_run / ".features-mobilenetv2-xseqixz0"
    cache.mkdir(parents=True)
    (cache / "view0.f16").write_bytes(b"\0" * 4096)
    holder = _holder(tmp_run, "train --resume")
    try:
        line = _error_line(_cli("train", "--resume", run_id, "--out", str(art)))
        assert line.startswith(f"error: run {run_id} is being written by another command "
                               f"(`train --resume`, pid {holder.pid}, since "), line
        assert (cache / "view0.f16").is_file()
    finally:
        _release(holder)
    assert not (tmp_run / run_files.WRITER_LOCK).exists()
