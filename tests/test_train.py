"""Training behaviour: the loss goes down, runs are atomic, interrupted runs resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipeline.artifacts import list_runs, open_run
from pipeline.aug_views import augmented_views
from pipeline.config import ModelConfig, profile
from pipeline.fit import class_weights
from pipeline.models import build_model
from pipeline.train import train_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["smoke", "quick", "full"])
def test_every_profile_is_a_valid_recipe(name):
    # The full recipe's tumour removal needs guidance; smoke and quick switch guidance off, and
    # once built a profile that refused itself ("erase needs guidance > 0"; transplants alike).
    from pipeline.fit import check_recipe

    cfg = profile(name)
    for model, mc in cfg.models.items():
        check_recipe(model, mc, cfg)
    custom = cfg.models["custom_cnn"]
    assert custom.guidance > 0 or (custom.erase == 0 and custom.transplant == 0)


def test_class_weights_balance_the_loss():
    y = np.array([0, 0, 0, 1])
    w = class_weights(y, 3)
    assert w[0] * 3 == pytest.approx(w[1] * 1)  # each present class contributes equally
    assert w[2] == 1.0  # absent class: neutral weight


def test_cosine_schedule_warms_up_then_decays_to_its_floor():
    from pipeline.schedules import cosine_lr

    rate = cosine_lr(1e-3, 20, warmup=2, floor=0.01)
    steps = [rate(i) for i in range(20)]
    assert steps[0] < steps[1] < steps[2] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(steps[2:], steps[3:], strict=False))
    assert steps[-1] == pytest.approx(1e-5)
    assert rate(25) == pytest.approx(1e-5)  # past the last epoch it stays at the floor


def test_an_unknown_lr_schedule_is_refused_at_load(tmp_path):
    from pipeline.config import load_config

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"models": {"custom_cnn": {"lr_schedule": "step"}}}))
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        load_config(bad)
    with pytest.raises(ValueError, match="lr_schedule"):
        ModelConfig(lr_schedule="Cosine")


def test_augmented_views_count_and_content():
    built = build_model("custom_cnn", 2, ModelConfig(image_size=32, width=4, depth=2))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    views = augmented_views(built.model, x, 5, seed=1)
    assert len(views) == 5 and all(v.shape == x.shape and v.dtype == np.uint8 for v in views)
    assert np.array_equal(views[0], x) and np.array_equal(views[1], x[:, :, ::-1])
    # random views differ from the original and from each other
    assert not np.array_equal(views[2], x) and not np.array_equal(views[2], views[3])
    assert len(augmented_views(built.model, x, 1, seed=1)) == 1


def test_augmented_views_pair_images_across_the_class_order():
    """Training images arrive in class order; the views are made in chunks, and a layer that
    pairs images within its chunk (histogram matching) must see other classes' images too."""
    built = build_model("custom_cnn", 2, ModelConfig(image_size=16, width=4, depth=2,
                                                     augment_strength="mri-match"))
    x = np.zeros((130, 16, 16, 3), np.uint8)
    x[:65, 2:14, 2:14] = 40  # a dark "class" first, then a bright one, as in class folders
    x[65:, 2:14, 2:14] = 200
    dark = augmented_views(built.model, x, 3, seed=1)[2][:65, 4:12, 4:12].mean(axis=(1, 2, 3))
    assert (dark > 140).sum() >= 8  # gamma alone takes 40 to 91 at most


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


def test_manifest_names_the_commit_training_started_from(synth_data, tmp_path, monkeypatch):
    # A commit landing during a long training must not be recorded as the run's code.
    from pipeline import provenance

    heads = iter(["a" * 40])  # HEAD at the start; "b" * 40 from then on
    monkeypatch.setattr(provenance, "git_commit", lambda: next(heads, "b" * 40))
    cfg = profile("smoke")
    cfg.models["custom_cnn"].epochs = 1
    m = open_run(train_run(cfg, synth_data, tmp_path, ["custom_cnn"])).manifest
    assert m["git_commit"] == "a" * 40 and m["git_commit_at_end"] == "b" * 40
    monkeypatch.setattr(provenance, "git_commit", lambda: "c" * 40)  # HEAD did not move
    m = open_run(train_run(cfg, synth_data, tmp_path, ["custom_cnn"])).manifest
    assert m["git_commit"] == "c" * 40 and "git_commit_at_end" not in m


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
    assert m["splits"]["strategy"] == splits["info"]["strategy"] == "stratified+dedup"
    # the picker's name, from how the split was made, and that the data are drawn phantoms
    assert m["title"] == "Synthetic phantoms, deduplicated split" and m["data"]["synthetic"]
    assert m["machine"]["cpu_model"]  # training repeats on one processor, not across them


def test_run_titles_name_the_split():
    from pipeline.train import run_title

    assert run_title({"strategy": "official-test"}) == "Official Testing split"
    # the shipped official run's strategy: its title read "Deduplicated split", like the main
    # run's, so the sidebar offered two runs by one name
    assert run_title({"strategy": "official-test+dedup"}) == "Official Testing split"
    assert run_title({"strategy": "stratified+dedup"}) == "Deduplicated split"
    assert run_title({"strategy": "stratified"}) == "Random split"
    assert run_title({"strategy": "cv-fold 2/5 (StratifiedGroupKFold)"}) == "Cross-validation 2/5"
    # `make demo` without the shipped run trains on phantoms: the title says so first
    assert run_title({"strategy": "official-test"}, synthetic=True) == (
        "Synthetic phantoms, official Testing split")


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
    # --artifacts, as predict and explain call the folder, names the same one as --out;
    # --evaluate: the run keeps the choice it began with (it was evaluated, a review), and
    # says the flag is not used
    resumed = subprocess.run([sys.executable, "-m", "pipeline", "train", "--resume", run_id,
                              "--artifacts", str(out), "--evaluate"],
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from epoch" in resumed.stderr
    said = " ".join(resumed.stderr.split())
    assert "note: --evaluate/--no-evaluate not used: a resumed run trains on with its saved " \
        "config, models and evaluation choice" in said, said
    assert "run complete:" in resumed.stderr and " and evaluated" not in resumed.stderr
    assert not (out / "runs" / run_id / "comparison.json").exists()
    run = open_run(out / "runs" / run_id)
    hist = run.read_json("custom_cnn/history.json")["epochs"]
    assert hist[: len(before["history"])] == before["history"]  # earlier epochs kept
    assert len(hist) > len(before["history"])
    assert (out / "latest").read_text().strip() == run_id
    # training time counts the epochs before the kill too, not only the resumed part
    seconds = run.manifest["models"]["custom_cnn"]["train_seconds"]
    assert seconds >= sum(h["seconds"] for h in hist), (seconds, hist)


def _two_sources(root: Path) -> Path:
    """Glioma mostly 96 px with two 64 px images; no tumour mostly 64 px with one 96 px image."""
    rng = np.random.default_rng(3)
    plan = {"glioma": [96] * 9 + [64] * 2, "no_tumor": [64] * 6 + [96]}
    for cls, sides in plan.items():
        for i, side in enumerate(sides):
            (root / cls).mkdir(parents=True, exist_ok=True)
            img = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / cls / f"{cls}{i:02d}.png")
    return root


def test_size_balancing_repeats_each_class_s_rarer_size_group(tmp_path):
    from pipeline import data
    from pipeline.data.balance import balance_sizes, native_size

    ds = data.discover(_two_sources(tmp_path / "d"))
    classes = list(ds.classes)
    train = data.load_arrays(ds.records, classes, 32)
    assert native_size(ds.records[0].path) in {"96x96", "64x64"}
    out, summary = balance_sizes(train, classes, most=3)
    assert summary["common_size"] == "96x96"  # 10 images against 8
    # glioma: 9 vs 2 -> the two 64 px images x3 (ratio 4.5, capped); no tumour: 1 vs 6 -> x3
    assert summary["classes"] == {
        "glioma": {"common_size": 9, "other_sizes": 2, "repeated": "other_sizes", "copies": 3},
        "no_tumor": {"common_size": 1, "other_sizes": 6, "repeated": "common_size",
                     "copies": 3}}
    assert (summary["n_before"], summary["n_after"]) == (18, 18 + 2 * 2 + 1 * 2)
    counts = {r.rel: 0 for r in train.records}
    for r in out.records:
        counts[r.rel] += 1
    assert counts["glioma/glioma09.png"] == 3 and counts["glioma/glioma00.png"] == 1
    assert counts["no_tumor/no_tumor06.png"] == 3 and counts["no_tumor/no_tumor00.png"] == 1
    for i, r in enumerate(out.records):  # pixels and labels travel with their record
        j = train.records.index(r)
        assert out.y[i] == train.y[j] and np.array_equal(out.x[i], train.x[j])
    same, none = balance_sizes(train, classes, most=1)
    assert none["classes"] == {} and len(same.y) == 18


@pytest.mark.slow
def test_a_run_with_size_balancing_says_so_and_records_it(tmp_path):
    cfg = profile("smoke")
    cfg.val_fraction, cfg.test_fraction = 0.2, 0.2
    cfg.models["custom_cnn"].balance_sizes = 3
    cfg.models["custom_cnn"].epochs = 1
    said: list[str] = []
    data_dir = _two_sources(tmp_path / "d")
    # a folder whose name is no class was dropped without a word (evaluate alone said so)
    (data_dir / "metastasis").mkdir()
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(data_dir / "metastasis" / "m.png")
    # a student's own folder name: said beside the class it became, and recorded
    (data_dir / "no_tumor").rename(data_dir / "Healthy")
    run_dir = train_run(cfg, data_dir, tmp_path / "a", ["custom_cnn"], say=said.append)
    assert any("pixel sizes balanced against" in s for s in said), said
    # each group in words: "1 other sizes x4" before (a review, 2026-12-06)
    from pipeline.train import _size_group_words

    assert _size_group_words(1, "other_sizes") == "1 image of another size"
    assert _size_group_words(2, "other_sizes") == "2 images of other sizes"
    assert _size_group_words(1, "common_size") == "1 image of the common size"
    balanced = next(s for s in said if "pixel sizes balanced against" in s)
    assert re.search(r"glioma: \d+ images? of (another size|other sizes|the common size) x\d",
                     balanced), balanced
    assert "ignored folders (no known class name): metastasis" in said, said
    assert "class folders: Healthy → no_tumor" in said, said
    manifest = open_run(run_dir).manifest
    assert manifest["config"]["models"]["custom_cnn"]["balance_sizes"] == 3
    assert manifest["data"]["class_folders"] == {"Healthy": "no_tumor", "glioma": "glioma"}


def _fit_tiny(ema: float) -> tuple[list[np.ndarray], list[np.ndarray], Any, dict]:
    """A one-layer model fitted 4 epochs at a large step; returns initial and final weights."""
    import keras

    from pipeline import schedules
    from pipeline.fit import _optimizer

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = keras.utils.to_categorical((x[:, 0] > 0).astype(int), 2)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=_optimizer("sgd", 0.5, ema=ema), loss="categorical_crossentropy")
    start = [w.copy() for w in model.get_weights()]
    hist = model.fit(x, y, validation_data=(x, y), epochs=4, batch_size=8, verbose=0,
                     callbacks=schedules.callbacks(10, ema=ema > 0))
    return start, model.get_weights(), model, {"x": x, "y": y, "val": hist.history["val_loss"]}


def test_ema_keeps_the_averaged_weights_and_validates_them():
    start, plain, _, _ = _fit_tiny(0.0)
    start_e, averaged, model, d = _fit_tiny(0.999)  # an average over ~1000 steps: 32 taken

    def moved(w):
        return sum(float(np.abs(a - b).sum()) for a, b in zip(w, start, strict=True))

    assert all(np.array_equal(a, b) for a, b in zip(start, start_e, strict=True))
    assert moved(plain) > 0.5
    # the kept model is the slow average (Keras starts it at the weights after the first step)
    assert moved(averaged) < 0.25 * moved(plain)
    # validation saw the weights that were kept: the best epoch's val_loss is the kept model's
    best = model.evaluate(d["x"], d["y"], verbose=0)
    assert best == pytest.approx(min(d["val"]), rel=1e-4)


def _fit_with_batchnorm(refresh: bool) -> tuple[Any, np.ndarray, Any]:
    """A Dense -> BatchNorm -> softmax model fitted with weight averaging; returns the model,
    its training inputs and its BatchNorm layer."""
    import keras

    from pipeline import schedules
    from pipeline.fit import _optimizer

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(1).normal(2.0, 3.0, size=(64, 6)).astype("float32")
    y = keras.utils.to_categorical((x[:, 0] > 2).astype(int), 2)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, name="pre"),
                              keras.layers.BatchNormalization(momentum=0.5, name="bn"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=_optimizer("sgd", 0.3, ema=0.9), loss="categorical_crossentropy")
    fn = (lambda: schedules.recompute_batchnorm(model, x, 4, 16, seed=3)) if refresh else None
    model.fit(x, y, validation_data=(x, y), epochs=5, batch_size=8, verbose=0,
              callbacks=schedules.callbacks(10, ema=True, refresh=fn))
    return model, x, model.get_layer("bn")


def test_ema_batchnorm_statistics_are_recomputed_for_the_averaged_weights():
    import keras

    for refresh in (True, False):
        model, x, bn = _fit_with_batchnorm(refresh)
        # what BatchNorm sees with the kept (averaged) weights: its input over the 64 images,
        # which 4 batches of 16 cover exactly
        seen = keras.Model(model.inputs, model.get_layer("pre").output).predict(x, verbose=0)
        match = np.allclose(bn.moving_mean.numpy(), seen.mean(0), atol=1e-4)
        assert match == refresh, (refresh, bn.moving_mean.numpy(), seen.mean(0))
        assert bn.momentum == 0.5  # the layer's own momentum is back after the recomputation
        if refresh:  # the variance: the mean of the 4 batches' own variances
            order = np.random.default_rng(3).permutation(64)
            per_batch = np.mean([seen[order[k:k + 16]].var(0) for k in range(0, 64, 16)], 0)
            assert np.allclose(bn.moving_variance.numpy(), per_batch, rtol=1e-3)


def test_recompute_batchnorm_leaves_frozen_layers_alone():
    import keras

    from pipeline import schedules

    model = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(name="bn")])
    model.get_layer("bn").trainable = False
    x = np.full((8, 3), 5.0, "float32")
    assert schedules.recompute_batchnorm(model, x, 2, 4) == 0
    assert np.allclose(model.get_layer("bn").moving_mean.numpy(), 0.0)
    model.get_layer("bn").trainable = True
    assert schedules.recompute_batchnorm(model, x, 2, 4) == 1
    assert np.allclose(model.get_layer("bn").moving_mean.numpy(), 5.0)


def test_resuming_a_run_whose_saved_config_is_now_refused_says_what_to_do(tmp_path):
    """A run saved before the config's rules existed (augment_strength "heavy" got past loading
    and failed after the data pass) replayed the same failure at every --resume."""
    from pipeline.artifacts import ArtifactError

    tmp = tmp_path / "runs" / ".tmp-20261206-000000-abcdef"
    tmp.mkdir(parents=True)
    saved = profile("smoke").to_dict()
    saved["models"]["custom_cnn"]["augment_strength"] = "heavy"
    (tmp / "run.json").write_text(json.dumps({"config": saved, "data_dir": str(tmp_path),
                                              "models": ["custom_cnn"]}))
    with pytest.raises(ArtifactError) as info:
        train_run(profile("smoke"), None, tmp_path, ["custom_cnn"],
                  resume="20261206-000000-abcdef")
    message = str(info.value)
    assert "models.custom_cnn.augment_strength must be one of" in message
    assert f"delete {tmp}" in message and "\n" not in message


def test_ema_outside_its_range_is_refused():
    with pytest.raises(ValueError, match="ema must be in"):
        ModelConfig(ema=1.0)
    with pytest.raises(ValueError, match="ema_batchnorm must be"):
        ModelConfig(ema_batchnorm=-1)


def test_a_finished_training_prints_its_test_results(smoke_run: Path, monkeypatch, capsys):
    """`train` and `run` ended with "run complete and evaluated: <folder>" only: seeing how the
    models did took a second `evaluate`, which recomputed everything."""
    import pipeline.train
    from pipeline.cli.train_cmds import _train_and_evaluate
    from pipeline.config import profile

    monkeypatch.setattr(pipeline.train, "train_run", lambda *a, **k: smoke_run)
    assert _train_and_evaluate(profile("smoke"), None, smoke_run.parent.parent,
                               ["custom_cnn", "mobilenetv2"], None, True) == smoke_run
    out = capsys.readouterr().out.splitlines()
    for m, label in (("custom_cnn", "Custom CNN"), ("mobilenetv2", "MobileNetV2")):
        met = json.loads((smoke_run / m / "metrics.json").read_text())
        line = next(x for x in out if x.startswith(f"{label}: test accuracy"))
        assert f"{met['accuracy']:.3f} [" in line and f"on {met['n']} images" in line
    verdict = json.loads((smoke_run / "comparison.json").read_text())["verdict"]
    assert out[-1] == verdict
