"""Training on tf.distribute: two worker processes on 127.0.0.1 against one process, the
strategies' manifest, resume under a strategy, and who writes what."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import distribute
from pipeline.artifacts import list_runs, open_run
from pipeline.config import load_config, profile
from pipeline.train import train_run

ROOT = Path(__file__).resolve().parents[1]
# The smoke profile with MobileNetV2's head dropout off: dropout draws its mask per replica, so
# with it no two replica counts could agree (measured: up to 0.65 apart in raw probabilities).
CONFIG = {"models": {"mobilenetv2": {"dropout": 0.0}}}
# MobileNetV2 (cached recipe, BatchNorm frozen, no dropout) sees the same batches in one and in
# two processes; only the order of float32 sums differs. Measured: 5e-7 (docs/scale-out.md).
TOL_TRANSFER = 1e-4
# The custom CNN cannot match exactly: BatchNorm normalises each replica's 8 images, not the
# global 16, and its augmentation layers draw per replica. Measured: 0.018 after 3 epochs.
TOL_CNN = 0.1


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _raw_probs(run_dir: Path, paths: list[Path]) -> dict[str, np.ndarray]:
    from pipeline.predict import Predictor, predict_files

    run = open_run(run_dir)
    rows, bad = predict_files(Predictor(run, calibrated=False), paths)
    assert not bad
    return {m: np.array([[r["models"][m]["probs"][c] for c in run.class_names] for r in rows])
            for m in run.model_names}


@pytest.mark.distributed
@pytest.mark.slow
def test_two_workers_match_one_process(synth_data, tmp_path):
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(CONFIG))
    models = ["custom_cnn", "mobilenetv2"]
    ports = _free_ports(2)
    out, scratch = tmp_path / "multi", tmp_path / "worker-tmp"
    scratch.mkdir()
    procs = []
    for i in range(2):
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                     "task": {"type": "worker", "index": i}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TMPDIR": str(scratch)}
        cmd = [sys.executable, "-m", "pipeline", "train", "--strategy", "multiworker",
               "--data", str(synth_data), "--model", ",".join(models), "--profile", "smoke",
               "--config", str(cfg_file), "--out", str(out), "--no-evaluate"]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))
    # The single-process reference trains meanwhile (the workers mostly wait on each other).
    single = train_run(load_config(cfg_file, base=profile("smoke")), synth_data,
                       tmp_path / "single", models)
    try:
        errs = [p.communicate(timeout=900)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], [e[-1500:] for e in errs]

    runs = list_runs(out)  # the chief's run only, complete, and nothing left by worker 1
    assert len(runs) == 1 and (out / "latest").read_text().strip() == runs[0].run_id
    assert not list((out / "runs").glob(".tmp-*")) and not list(scratch.iterdir())
    assert not list(runs[0].path.glob("**/.features-*"))
    manifest = open_run(runs[0].path).manifest
    assert manifest["distribution"] == {
        "strategy": "multiworker", "workers": 2, "replicas": 2, "global_batch_size": 16,
        "per_replica_batch_size": 8.0, "learning_rate_scaling": distribute.LR_SCALING}
    assert open_run(single).manifest["distribution"]["replicas"] == 1
    assert json.loads((runs[0].path / "splits.json").read_text()) == \
        json.loads((single / "splits.json").read_text())

    test_paths = sorted(synth_data.glob("Testing/*/*.png"))[::4]
    multi_p, single_p = _raw_probs(runs[0].path, test_paths), _raw_probs(single, test_paths)
    assert np.abs(multi_p["mobilenetv2"] - single_p["mobilenetv2"]).max() <= TOL_TRANSFER
    assert np.abs(multi_p["custom_cnn"] - single_p["custom_cnn"]).max() <= TOL_CNN


@pytest.mark.distributed
@pytest.mark.slow
def test_mirrored_resume_finishes_an_interrupted_run(synth_data, tmp_path):
    """A run killed after its first epoch resumes under MirroredStrategy (one CPU replica here),
    with the custom CNN's augmentation layers built and run inside the strategy's scope."""
    cfg = profile("smoke")

    class Killed(Exception):
        pass

    def say(message: str) -> None:
        if "epoch 1/" in message:
            raise Killed(message)

    with pytest.raises(Killed):
        train_run(cfg, synth_data, tmp_path, ["custom_cnn"], say=say, strategy="mirrored")
    (tmp,) = (tmp_path / "runs").glob(".tmp-*")
    run_id = tmp.name[len(".tmp-"):]
    said: list[str] = []
    run_dir = train_run(cfg, None, tmp_path, [], resume=run_id, say=said.append,
                        strategy="mirrored")
    assert any("resumed from epoch 1" in m for m in said)
    run = open_run(run_dir)
    assert run.manifest["distribution"]["strategy"] == "mirrored"
    assert len(run.read_json("custom_cnn/history.json")["epochs"]) == 3
    layers = [layer.name for layer in run.load_model("custom_cnn").layers]
    assert any(name.startswith("aug_") for name in layers)


def test_non_chief_writes_to_a_folder_it_removes(tmp_path):
    """Worker 1 starts from a copy of the chief's interrupted run and leaves nothing behind."""
    interrupted = tmp_path / "art" / "runs" / ".tmp-r1"
    interrupted.mkdir(parents=True)
    (interrupted / "state.json").write_text("{}")
    worker = distribute.Cluster("multiworker", None, False, "worker 1", 2)
    with distribute.worker_folder(worker, tmp_path / "art", "r1") as folder:
        assert folder != tmp_path / "art"
        assert (folder / "runs" / ".tmp-r1" / "state.json").read_text() == "{}"
        (folder / "runs" / ".tmp-r1" / "new.txt").write_text("x")
    assert not folder.exists() and not (interrupted / "new.txt").exists()
    chief = distribute.Cluster("multiworker", None, True, "worker 0", 2)
    with distribute.worker_folder(chief, tmp_path / "art", "r1") as folder:
        assert folder == tmp_path / "art"


def test_tf_config_chief_and_errors():
    cluster = {"worker": ["a:1", "b:2"]}
    assert distribute.is_chief_task({"cluster": cluster, "task": {"type": "worker", "index": 0}})
    assert not distribute.is_chief_task({"cluster": cluster,
                                         "task": {"type": "worker", "index": 1}})
    with_chief = {"chief": ["c:3"], **cluster}
    assert not distribute.is_chief_task({"cluster": with_chief,
                                         "task": {"type": "worker", "index": 0}})
    for raw, words in [("", "needs TF_CONFIG"), ("{", "not valid"),
                       ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", '
                        '"index": 3}}', "not in its cluster")]:
        with pytest.raises(distribute.StrategyError, match=words):
            distribute.read_tf_config({"TF_CONFIG": raw})


@pytest.mark.parametrize("args, words", [
    (["--strategy", "ring"], "unknown strategy 'ring'"),
    (["--strategy", "multiworker"], "needs TF_CONFIG"),
])
def test_bad_strategy_fails_in_one_line(tmp_path, args, words):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    # the strategy is checked before the data is even read
    proc = subprocess.run([sys.executable, "-m", "pipeline", "train", "--data", str(tmp_path),
                           "--out", str(tmp_path), "--profile", "smoke", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    # What the pipeline says, not how many lines stderr holds: TensorFlow's own start-up lines
    # differ by CPU (an AVX-512 machine prints more), so a count of lines is brittle.
    lines = proc.stderr.strip().splitlines()
    refusals = [line for line in lines if line.startswith("error:")]
    assert len(refusals) == 1 and words in refusals[0], proc.stderr
    assert lines[-1] == refusals[0], proc.stderr  # the refusal is whole, nothing said after it
    # refused before the profile line (once said, a refusal was two lines) and without a trace
    assert not any(line.startswith("profile ") for line in lines), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())
