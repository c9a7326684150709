"""Crash safety: training is SIGKILLed again and again, at seeded random moments and at exact
points of the checkpoint and finalize code, and a full disk is simulated at finalize time.

After every kill: `latest` is absent or names a run that `open_run` accepts, every folder that
looks like a run is complete, no `.tmp-*` folder is listed, and `--resume` carries on.

Exact kill points are reached with a small launcher (written into the test's temp folder) that
wraps `os.replace` or `keras.Model.save_weights` and SIGKILLs its own process there; random
moments come from a seeded RNG and the run's own progress files.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.artifacts import TMP_PREFIX, ArtifactError, list_runs, open_run

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

EPOCHS = 6  # enough epochs that timed kills land inside training on a busy 2-core machine

# Runs `python -m pipeline ...` with one fault injected: KILL_AT says where the process SIGKILLs
# itself. Kept out of the package on purpose: production code has no test hooks.
LAUNCHER = '''
import json, os, signal, sys, threading
from pathlib import Path

where = os.environ["KILL_AT"]
real_replace = os.replace


def die():
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def kill_during_next_epoch(state_path):
    # after-epoch:N:F -- once N epochs are checkpointed, die F x (the last epoch's duration) later:
    # a random point of the next epoch on any machine, however fast or slow.
    _, n, fraction = where.split(":")
    try:
        history = json.loads(Path(state_path).read_text())["models"]["custom_cnn"]["history"]
    except (ValueError, KeyError, OSError):
        return
    if len(history) >= int(n) and not armed:
        armed.append(True)
        threading.Timer(float(fraction) * float(history[-1]["seconds"]), die).start()


armed = []


def replace(src, dst, *args, **kwargs):
    if where == "rename-run" and Path(src).name.startswith(".tmp-"):
        die()
    if where == "write-latest" and Path(dst).name == "latest":
        die()
    if where == "evaluation" and Path(dst).name == "metrics.json":
        die()  # post-training evaluation has begun: the first model's metrics are being written
    result = real_replace(src, dst, *args, **kwargs)
    if where.startswith("after-epoch:") and Path(dst).name == "state.json":
        kill_during_next_epoch(dst)
    return result


os.replace = replace

if where.startswith("torn-checkpoint"):
    import keras

    real_save = keras.Model.save_weights
    calls = {"n": 0}
    nth = int(where.split(":")[1])

    def torn_save(self, filepath, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == nth:  # half of a real checkpoint on disk, then the power goes
            real_save(self, filepath, *args, **kwargs)
            data = Path(filepath).read_bytes()
            Path(filepath).write_bytes(data[: len(data) // 2])
            die()
        return real_save(self, filepath, *args, **kwargs)

    keras.Model.save_weights = torn_save

from pipeline.cli import main

sys.argv = ["pipeline", *sys.argv[1:]]
main()
'''


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "BRAIN_MRI_OFFLINE": "1",
            "PYTHONPATH": str(ROOT)}


def _train_args(data: Path, out: Path, cfg: Path, resume: str | None) -> list[str]:
    if resume:
        return ["train", "--resume", resume, "--out", str(out), "--no-evaluate"]
    return ["train", "--data", str(data), "--model", "custom_cnn", "--profile", "smoke",
            "--config", str(cfg), "--out", str(out), "--no-evaluate"]


def tmp_runs(out: Path) -> list[Path]:
    return sorted((out / "runs").glob(f"{TMP_PREFIX}*"))


def epochs_checkpointed(out: Path, run_id: str | None) -> int:
    """Epochs in the checkpoint state of the unfinished run `run_id` (0 for none)."""
    if run_id is None:
        return 0
    try:
        state = json.loads((out / "runs" / f"{TMP_PREFIX}{run_id}" / "state.json").read_text())
        return len(state["models"]["custom_cnn"]["history"])
    except (ValueError, KeyError, OSError):
        return 0


def check_invariants(out: Path, where: str) -> None:
    """What must hold after any crash, whatever the moment."""
    listed = list_runs(out)
    assert not any(r.run_id.startswith(TMP_PREFIX) for r in listed), where
    runs_dir = out / "runs"
    if runs_dir.is_dir():
        for folder in runs_dir.iterdir():
            if folder.name.startswith("."):
                continue  # a temp run; must not be listed (checked above)
            run = open_run(folder)  # every visible run folder is a complete run
            for name in run.model_names:
                assert (folder / name / "model.keras").is_file(), (where, folder)
    latest = out / "latest"
    if latest.exists():
        run_id = latest.read_text().strip()
        assert run_id and not run_id.startswith(TMP_PREFIX), (where, run_id)
        open_run(runs_dir / run_id)
        assert run_id in {r.run_id for r in listed}, where


def wait_for(predicate, timeout: float, proc: subprocess.Popen) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


@pytest.fixture()
def train_setup(synth_data: Path, tmp_path: Path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"models": {"custom_cnn": {"epochs": EPOCHS, "patience": EPOCHS}}}))
    launcher = tmp_path / "launch_with_fault.py"
    launcher.write_text(LAUNCHER)
    return synth_data, tmp_path / "artifacts", cfg, launcher


def test_repeated_kills_never_leave_a_fake_run_and_resume_finishes(train_setup):
    """Kill points come from the run's own progress, never from how fast this machine trains.

    A process that finishes before its planned kill is a valid outcome: the invariants are
    checked, and the next step starts a new run to kill.
    """
    data, out, cfg, launcher = train_setup
    rng = random.Random(20261122)
    resume: str | None = None
    kills: dict[str, int] = {}  # moment -> epochs checkpointed when killed
    completed: list[str] = []  # moments whose process finished before the kill

    def start(fault: str | None = None) -> subprocess.Popen:
        args = _train_args(data, out, cfg, resume)
        cmd = [sys.executable, str(launcher), *args] if fault else \
            [sys.executable, "-m", "pipeline", *args]
        env = {**_env(), "KILL_AT": fault} if fault else _env()
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    def after_kill(proc: subprocess.Popen, moment: str) -> None:
        nonlocal resume
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=600)
        if proc.returncode == 0:  # finished first: a complete run, and nothing left to resume
            completed.append(moment)
            check_invariants(out, moment)
            assert (out / "latest").is_file(), moment
            if resume is not None:
                open_run(out / "runs" / resume)  # the resumed run is the one that completed
            resume = None
            return
        assert proc.returncode == -signal.SIGKILL, (moment, proc.returncode, stderr[-2000:])
        check_invariants(out, moment)
        with_run_json = [t for t in tmp_runs(out) if (t / "run.json").is_file()]
        assert len(with_run_json) <= 1, with_run_json
        if with_run_json:
            resume = with_run_json[0].name[len(TMP_PREFIX):]
        kills[moment] = epochs_checkpointed(out, resume)

    def run_with_fault(fault: str, moment: str) -> None:
        """Start with a fault that makes the process kill itself; wait for it to end."""
        proc = start(fault)
        proc.wait(timeout=600)
        after_kill(proc, moment)

    def ensure_resumable() -> None:
        """A run to resume: if the last one finished, start one and kill it after epoch 1."""
        if resume is None:
            run_with_fault("after-epoch:1:0", "after the first checkpoint")
        assert resume is not None and epochs_checkpointed(out, resume) >= 1, (kills, completed)

    # 1. start-up: Python and TensorFlow still importing
    proc = start()
    time.sleep(rng.uniform(0.2, 3.0))
    after_kill(proc, "start-up")

    # 2. data loading / splitting / model building: right after the temp run folder appears
    proc = start()
    wait_for(lambda: any((t / "run.json").is_file() for t in tmp_runs(out)), 600, proc)
    time.sleep(rng.uniform(0.0, 1.0))
    after_kill(proc, "data loading")

    # 3. training: after a random number of checkpointed epochs, at a random point of the next
    for _ in range(2):
        target = min(epochs_checkpointed(out, resume) + rng.randint(1, 2), EPOCHS - 1)
        run_with_fault(f"after-epoch:{target}:{rng.uniform(0.05, 0.9):.3f}",
                       f"training (epoch >= {target})")

    # 4. torn checkpoint: the process dies half-way through writing the next weights file
    ensure_resumable()
    run_with_fault("torn-checkpoint:1", "torn checkpoint write")
    assert resume is not None, "a torn checkpoint must leave the run resumable"

    # 5. the final rename: everything written, the temp folder not yet renamed into place
    runs_before = {r.run_id for r in list_runs(out)}
    latest_before = (out / "latest").read_text() if (out / "latest").exists() else None
    run_with_fault("rename-run", "before the run folder rename")
    assert {r.run_id for r in list_runs(out)} == runs_before
    assert ((out / "latest").read_text() if (out / "latest").exists() else None) == latest_before

    # 6. resumed to completion
    done = subprocess.run([sys.executable, "-m", "pipeline", *_train_args(data, out, cfg, resume)],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    check_invariants(out, "completed")
    run = open_run(out / "runs" / resume)
    assert (out / "latest").read_text().strip() == resume
    hist = run.read_json("custom_cnn/history.json")["epochs"]
    assert [h["epoch"] for h in hist] == list(range(1, len(hist) + 1)), hist  # no gap, no repeat
    assert len(hist) == EPOCHS
    # the kills that landed in training did so before its end, at different epochs
    timed = [n for m, n in kills.items() if m.startswith("training")]
    assert all(n < EPOCHS for n in timed) and len(set(timed)) == len(timed), kills
    leftovers = {p.name for p in (out / "runs" / resume).rglob("*")}
    assert not {"state.json", "run.json"} & leftovers
    assert not any(n.startswith("checkpoint") for n in leftovers)
    assert not [t for t in tmp_runs(out) if (t / "run.json").is_file()]

    # 7. a second, one-epoch run killed while `latest` is being replaced: the new run is
    # complete (renamed before), and `latest` still names the last run it was set to
    short = cfg.with_name("one-epoch.json")
    short.write_text(json.dumps({"models": {"custom_cnn": {"epochs": 1}}}))
    runs_before = len(list_runs(out))
    proc = subprocess.Popen([sys.executable, str(launcher), *_train_args(data, out, short, None)],
                            cwd=ROOT, env={**_env(), "KILL_AT": "write-latest"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    proc.wait(timeout=600)
    after_kill(proc, "write-latest")
    assert (out / "latest").read_text().strip() == resume
    assert len(list_runs(out)) == runs_before + 1
    # kills at exact code points cannot miss; only the timed ones may find the run finished
    exact = {"after the first checkpoint", "torn checkpoint write",
             "before the run folder rename", "write-latest"}
    assert not exact & set(completed), completed
    assert {"torn checkpoint write", "before the run folder rename", "write-latest"} <= set(kills)


def test_kill_during_evaluation_leaves_no_unevaluated_run_and_resume_finishes(train_setup):
    """Issue: a kill during post-training evaluation left `latest` on a run without metrics."""
    data, out, cfg, launcher = train_setup
    cfg.write_text(json.dumps({"models": {"custom_cnn": {"epochs": 1}}}))
    args = [a for a in _train_args(data, out, cfg, None) if a != "--no-evaluate"]
    proc = subprocess.run([sys.executable, str(launcher), *args], cwd=ROOT,
                          env={**_env(), "KILL_AT": "evaluation"}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    check_invariants(out, "evaluation")
    assert not list_runs(out) and not (out / "latest").exists()  # nothing final without metrics
    (tmp,) = [t for t in tmp_runs(out) if (t / "run.json").is_file()]
    run_id = tmp.name[len(TMP_PREFIX):]
    done = subprocess.run([sys.executable, "-m", "pipeline", "train", "--resume", run_id,
                           "--out", str(out)], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "train epoch" not in done.stderr  # the trained model was not trained again
    assert (out / "latest").read_text().strip() == run_id
    run = open_run(out / "runs" / run_id)
    assert run.read_json("custom_cnn/metrics.json")["n"] > 0
    assert (out / "runs" / run_id / "comparison.json").is_file()


def test_disk_full_at_finalize_keeps_the_previous_run_and_resumes(train_setup, monkeypatch):
    """In-process: `os.replace` fails with ENOSPC, first for the manifest, then for the rename."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    data, out, cfg, _ = train_setup
    cfg.write_text(json.dumps({"models": {"custom_cnn": {"epochs": 1}}}))
    runner = CliRunner()
    ok = runner.invoke(app, _train_args(data, out, cfg, None))
    assert ok.exit_code == 0, ok.output
    previous = (out / "latest").read_text().strip()
    previous_manifest = (out / "runs" / previous / "manifest.json").read_bytes()

    real_replace = os.replace
    for victim in ("manifest", "rename"):
        def full_disk(src, dst, *args, victim=victim, **kwargs):
            hit = (Path(dst).name == "manifest.json" if victim == "manifest"
                   else Path(src).name.startswith(TMP_PREFIX))
            if hit:
                raise OSError(28, "No space left on device", str(dst))
            return real_replace(src, dst, *args, **kwargs)

        complete_before = [r.run_id for r in list_runs(out)]
        monkeypatch.setattr(os, "replace", full_disk)
        res = runner.invoke(app, _train_args(data, out, cfg, None))
        monkeypatch.setattr(os, "replace", real_replace)
        assert res.exit_code == 2, (victim, res.output, res.exception)
        assert not isinstance(res.exception, OSError), victim  # reported, not a traceback
        lines = [line for line in res.stderr.splitlines() if "error" in line]
        assert len(lines) == 1 and "No space left on device" in lines[0], res.stderr
        # the previous run and `latest` are untouched; the failed run is not listed
        assert (out / "latest").read_text().strip() == previous
        assert (out / "runs" / previous / "manifest.json").read_bytes() == previous_manifest
        assert [r.run_id for r in list_runs(out)] == complete_before
        check_invariants(out, f"disk full ({victim})")
        (failed,) = tmp_runs(out)
        failed_id = failed.name[len(TMP_PREFIX):]
        assert f"--resume {failed_id}" in lines[0]
        # space freed: the same run resumes and completes without retraining
        res = runner.invoke(app, _train_args(data, out, cfg, failed_id))
        assert res.exit_code == 0, (victim, res.output)
        assert "train epoch" not in res.stderr  # the finished model was not trained again
        assert (out / "latest").read_text().strip() == failed_id
        open_run(out / "runs" / failed_id)
        previous = failed_id
        previous_manifest = (out / "runs" / previous / "manifest.json").read_bytes()
    assert len(list_runs(out)) == 3


def test_resume_refuses_ids_that_are_paths(train_setup):
    from pipeline.artifacts import RunWriter

    _, out, _, _ = train_setup
    (out / "runs").mkdir(parents=True)
    outside = out.parent / "outside"
    (outside / "runs").mkdir(parents=True)
    for bad in ("../outside", "../../outside/runs/x", "/etc", "a/b", "..", "x\ny"):
        with pytest.raises(ArtifactError, match="run id"):
            RunWriter(out, bad, resume=True)
        with pytest.raises(ArtifactError, match="run id"):
            RunWriter(out, bad)
    assert not any(outside.rglob("*.tmp-*")) and list((out / "runs").iterdir()) == []
