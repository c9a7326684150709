"""Training behaviour: the loss goes down, runs are atomic, interrupted runs resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.artifacts import list_runs, open_run
from pipeline.config import ModelConfig, profile
from pipeline.fit import _augmented_views, class_weights
from pipeline.models import build_model
from pipeline.train import train_run

ROOT = Path(__file__).resolve().parents[1]


def test_class_weights_balance_the_loss():
    y = np.array([0, 0, 0, 1])
    w = class_weights(y, 3)
    assert w[0] * 3 == pytest.approx(w[1] * 1)  # each present class contributes equally
    assert w[2] == 1.0  # absent class: neutral weight


def test_augmented_views_count_and_content():
    built = build_model("custom_cnn", 2, ModelConfig(image_size=32, width=4, depth=2))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    views = _augmented_views(built.model, x, 5, seed=1)
    assert len(views) == 5 and all(v.shape == x.shape and v.dtype == np.uint8 for v in views)
    assert np.array_equal(views[0], x) and np.array_equal(views[1], x[:, :, ::-1])
    # random views differ from the original and from each other
    assert not np.array_equal(views[2], x) and not np.array_equal(views[2], views[3])
    assert len(_augmented_views(built.model, x, 1, seed=1)) == 1


@pytest.mark.slow
def test_loss_goes_down_and_run_is_complete(synth_data, tmp_path):
    cfg = profile("smoke")
    cfg.models["custom_cnn"].epochs = 8
    cfg.models["custom_cnn"].patience = 8
    cfg.models["custom_cnn"].width = 16
    run_dir = train_run(cfg, synth_data, tmp_path, ["custom_cnn"])
    hist = json.loads((run_dir / "custom_cnn" / "history.json").read_text())["epochs"]
    assert len(hist) >= 4
    losses = [h["loss"] for h in hist]
    assert min(losses[-3:]) < 0.9 * losses[0], losses
    run = open_run(run_dir)
    info = run.model_info("custom_cnn")
    assert info["weights"] == "none" and info["params"] > 0 and info["train_seconds"] > 0
    assert run.manifest["data"]["fingerprint"] and run.manifest["splits"]["test"] > 0
    assert (tmp_path / "latest").read_text().strip() == run_dir.name
    assert not list((run_dir / "custom_cnn").glob("checkpoint*"))


def test_smoke_run_tree_and_manifest(smoke_run):
    run = open_run(smoke_run)
    m = run.manifest
    assert set(m["models"]) == {"custom_cnn", "mobilenetv2"}
    for name in ("custom_cnn", "mobilenetv2"):
        assert (smoke_run / name / "model.keras").is_file()
        hist = json.loads((smoke_run / name / "history.json").read_text())
        assert hist["epochs"] and {"loss", "val_accuracy", "learning_rate", "seconds"} <= set(
            hist["epochs"][0])
    mob = m["models"]["mobilenetv2"]
    # CI and make setup put the shared ImageNet file in the Keras cache.
    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    if (cache / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5").is_file():
        assert mob["weights"] == "imagenet"
    assert mob["gradcam_layer"] == "out_relu"
    if Path("/proc/self/status").is_file():  # each model's training peak RSS, in MB
        for name in ("custom_cnn", "mobilenetv2"):
            assert 50 < m["models"][name]["peak_rss_mb"] < 64_000
    assert {"schema_version", "run_id", "created", "class_names", "config", "versions",
            "splits", "data"} <= set(m)
    splits = json.loads((smoke_run / "splits.json").read_text())
    assert len(splits["test"]) == m["splits"]["test"]
    assert m["title"] == "Deduplicated split"  # the picker's name, from how the split was made


def test_run_titles_name_the_split():
    from pipeline.train import run_title

    assert run_title({"strategy": "official-test"}) == "Official Testing split"
    assert run_title({"strategy": "stratified+dedup"}) == "Deduplicated split"
    assert run_title({"strategy": "stratified"}) == "Random split"
    assert run_title({"strategy": "cv-fold 2/5 (StratifiedGroupKFold)"}) == "Cross-validation 2/5"


def _wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_killed_run_is_never_latest_and_resumes(synth_data, tmp_path):
    cfg = tmp_path / "cfg.json"
    # 20 epochs: after the kill at epoch 2 most of training is still ahead on any machine speed.
    cfg.write_text(json.dumps({"models": {"custom_cnn": {"epochs": 20, "patience": 20}}}))
    out = tmp_path / "art"
    cmd = [sys.executable, "-m", "pipeline", "train", "--data", str(synth_data), "--model",
           "custom_cnn", "--profile", "smoke", "--config", str(cfg), "--out", str(out),
           "--no-evaluate"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def two_epochs_done() -> bool:
        for state in out.glob("runs/.tmp-*/state.json"):
            try:
                hist = json.loads(state.read_text())["models"]["custom_cnn"]["history"]
            except (ValueError, KeyError):
                continue
            return len(hist) >= 2
        return False

    try:
        assert _wait_for(two_epochs_done, 240), "training never checkpointed two epochs"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert list_runs(out) == [] and not (out / "latest").exists()
    tmp_runs = list((out / "runs").glob(".tmp-*"))
    assert len(tmp_runs) == 1
    run_id = tmp_runs[0].name[len(".tmp-"):]
    before = json.loads((tmp_runs[0] / "state.json").read_text())["models"]["custom_cnn"]
    resumed = subprocess.run([sys.executable, "-m", "pipeline", "train", "--resume", run_id,
                              "--out", str(out), "--no-evaluate"],
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from epoch" in resumed.stderr
    run = open_run(out / "runs" / run_id)
    hist = run.read_json("custom_cnn/history.json")["epochs"]
    assert hist[: len(before["history"])] == before["history"]  # earlier epochs kept
    assert len(hist) > len(before["history"])
    assert (out / "latest").read_text().strip() == run_id
    # training time counts the epochs before the kill too, not only the resumed part
    seconds = run.manifest["models"]["custom_cnn"]["train_seconds"]
    assert seconds >= sum(h["seconds"] for h in hist), (seconds, hist)
