"""Training: a custom CNN from scratch and transfer models in two phases, fast on 2 CPU cores.

Speed comes from doing expensive work once:
- images are decoded, cropped and resized once (`data.load_arrays`, with an optional disk cache);
- for transfer models the frozen lower backbone is run once per image *view* (original, mirrored
  and a few randomly augmented copies) and its activations are cached at the cut point; the head
  phase trains on pooled features and the fine-tuning phase trains only the top blocks on the
  cached activations. The naive recipe would run the whole backbone on every image every epoch.
BatchNorm layers stay frozen (inference mode) in fine-tuning, as keras-io recommends.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from pipeline import artifacts, data
from pipeline.config import ModelConfig, TrainConfig
from pipeline.models import BuiltModel, build_model, compiled, count_params, split_point
from pipeline.names import Progress, display_name, no_progress

log = logging.getLogger(__name__)

Say = Callable[[str], None]

@dataclass
class ModelResult:
    info: dict[str, Any]
    history: list[dict[str, Any]]


class EpochLog(keras.callbacks.Callback):
    """Records per-epoch metrics, learning rate and seconds; checkpoints weights and state."""

    def __init__(self, phase: str, history: list[dict[str, Any]], total: int,
                 on_epoch: Callable[[list[dict[str, Any]]], None], progress: Progress,
                 say: Say, label: str) -> None:
        super().__init__()
        self.phase, self.history, self.total = phase, history, total
        self.on_epoch, self.progress, self.say, self.label = on_epoch, progress, say, label
        self._t0 = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        lr = self.model.optimizer.learning_rate
        row = {
            "epoch": len(self.history) + 1,
            "phase": self.phase,
            "phase_epoch": epoch + 1,
            "loss": float(logs.get("loss", math.nan)),
            "accuracy": float(logs.get("accuracy", math.nan)),
            "val_loss": float(logs.get("val_loss", math.nan)),
            "val_accuracy": float(logs.get("val_accuracy", math.nan)),
            "learning_rate": float(keras.ops.convert_to_numpy(lr)),
            "seconds": round(time.perf_counter() - self._t0, 3),
        }
        self.history.append(row)
        self.on_epoch(self.history)
        self.progress(f"{self.label}: {self.phase} epochs", epoch + 1, self.total)
        self.say(f"{self.label} {self.phase} epoch {epoch + 1}/{self.total}: "
                 f"loss {row['loss']:.4f} acc {row['accuracy']:.4f} "
                 f"val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.4f} "
                 f"({row['seconds']:.1f}s)")


def _optimizer(name: str, lr: float) -> keras.optimizers.Optimizer:
    if name == "adam":
        return keras.optimizers.Adam(lr)
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
    raise ValueError(f"unknown optimizer {name!r}; use adam or sgd")


def _compile(model: keras.Model, mc: ModelConfig, lr: float, num_classes: int) -> None:
    # Label smoothing needs one-hot targets; we feed one-hot everywhere for one code path.
    model.compile(
        optimizer=_optimizer(mc.optimizer, lr),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=mc.label_smoothing),
        metrics=["accuracy"],
    )


def _callbacks(patience: int) -> list[keras.callbacks.Callback]:
    return [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                      restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                          patience=max(1, patience // 2), min_lr=1e-6),
        keras.callbacks.TerminateOnNaN(),
    ]


def class_weights(y: np.ndarray, num_classes: int) -> dict[int, float]:
    """Inverse-frequency weights normalised to mean 1 (classes absent from y get weight 1)."""
    counts = np.bincount(y, minlength=num_classes).astype(float)
    present = counts > 0
    w = np.ones(num_classes)
    w[present] = counts[present].sum() / (present.sum() * counts[present])
    return {i: float(v) for i, v in enumerate(w)}


class _ViewBatches(keras.utils.PyDataset):
    """Batches of cached activations, drawing one random view of each image per epoch."""

    def __init__(self, views: list[np.ndarray], y1h: np.ndarray, batch: int, seed: int,
                 sample_weight: np.ndarray | None = None) -> None:
        super().__init__()
        self.views, self.y, self.batch, self.sw = views, y1h, batch, sample_weight
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch)

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.y))
        self.pick = self.rng.integers(0, len(self.views), len(self.y))

    def __getitem__(self, i: int):
        idx = self.order[i * self.batch:(i + 1) * self.batch]
        x = np.stack([self.views[v][j] for v, j in zip(self.pick[idx], idx, strict=True)])
        x = x.astype("float32")
        if self.sw is None:
            return x, self.y[idx]
        return x, self.y[idx], self.sw[idx]


def _augmented_views(model: keras.Model, x: np.ndarray, n_views: int, seed: int
                     ) -> list[np.ndarray]:
    """Original, mirrored and randomly augmented copies of x, via the model's own aug layers."""
    views = [x, x[:, :, ::-1, :].copy()]
    aug_names = [n for n in ("aug_flip", "aug_rotate", "aug_zoom", "aug_contrast")
                 if n in {layer.name for layer in model.layers}]
    for v in range(2, n_views):
        if not aug_names:
            break
        out = []
        for i in range(0, len(x), 64):
            t = keras.ops.convert_to_tensor(x[i:i + 64].astype("float32"))
            for n in aug_names:
                t = model.get_layer(n)(t, training=True)
            out.append(np.clip(keras.ops.convert_to_numpy(t), 0, 255).astype("uint8"))
        views.append(np.concatenate(out))
        keras.utils.set_random_seed(seed + v)
    return views[:max(1, n_views)]  # one view asked for: the original only


def _predict_batches(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int,
                     progress: Progress, desc: str, dtype: str = "float16") -> np.ndarray:
    out = []
    for i in range(0, len(x), batch):
        out.append(fn(x[i:i + batch].astype("float32")).astype(dtype))
        progress(desc, min(i + batch, len(x)), len(x))
    return np.concatenate(out)


def fit_transfer_cached(built: BuiltModel, mc: ModelConfig, cfg: TrainConfig,
                        train: data.LoadedArrays, val: data.LoadedArrays, num_classes: int,
                        history: list[dict[str, Any]], state: dict[str, Any],
                        checkpoint: Callable[[list[dict[str, Any]], str], None],
                        progress: Progress, say: Say) -> None:
    """Two-phase transfer learning on cached activations (see the module docstring)."""
    model = built.model
    cut = split_point(model, mc.finetune_layers)
    bottom = keras.Model(model.input, model.get_layer(cut).input, name="bottom")
    top = keras.Model(model.get_layer(cut).input, model.output, name="top")
    pooled = keras.Model(model.get_layer(cut).input, model.get_layer(built.head_input).output)
    head = keras.Model(model.get_layer("head_dropout").input, model.output, name="head")
    y_tr = keras.utils.to_categorical(train.y, num_classes)
    y_va = keras.utils.to_categorical(val.y, num_classes)
    cw = class_weights(train.y, num_classes) if cfg.class_weights else None
    sw = np.array([cw[int(c)] for c in train.y], dtype="float32") if cw else None

    n_views = max(1, mc.aug_views) if cfg.augment else 1
    t0 = time.perf_counter()
    views = _augmented_views(model, train.x, n_views, cfg.seed)
    say(f"{built.name}: caching backbone activations at '{cut}' for {len(views)} views "
        f"of {len(train.y)} training images")
    bottom_fn = compiled(bottom)
    feats = [_predict_batches(bottom_fn, v, 64, progress,
                              f"{built.name}: features, view {k + 1}/{len(views)}")
             for k, v in enumerate(views)]
    feats_val = _predict_batches(bottom_fn, val.x, 64, progress,
                                 f"{built.name}: features, validation")
    state["feature_seconds"] = round(time.perf_counter() - t0, 2)
    say(f"{built.name}: features cached in {state['feature_seconds']:.0f}s")

    done_phase = state.get("phase_done", [])
    if "head" not in done_phase:
        # Phase 1: the whole backbone frozen; the head learns on pooled features.
        pooled_fn = compiled(pooled)
        pooled_tr = [_predict_batches(pooled_fn, f, 128, no_progress, "", "float32")
                     for f in feats]
        pooled_va = _predict_batches(pooled_fn, feats_val, 128, no_progress, "", "float32")
        _compile(head, mc, mc.learning_rate, num_classes)
        start = state.get("phase_epoch", 0) if state.get("phase") == "head" else 0
        cb = EpochLog("head", history, mc.epochs, lambda h: checkpoint(h, "head"), progress,
                      say, built.name)
        head.fit(_ViewBatches(pooled_tr, y_tr, cfg.batch_size, cfg.seed, sw),
                 validation_data=(pooled_va, y_va), epochs=mc.epochs, initial_epoch=start,
                 callbacks=[*_callbacks(mc.patience), cb], verbose=0)
        state.setdefault("phase_done", []).append("head")
        state["phase"], state["phase_epoch"] = "finetune", 0
        checkpoint(history, "finetune")
    if mc.finetune_epochs > 0 and "finetune" not in state.get("phase_done", []):
        # Phase 2: unfreeze the top blocks except BatchNorm, low learning rate.
        for layer in top.layers:
            if not isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = True
        _compile(top, mc, mc.finetune_learning_rate, num_classes)
        start = state.get("phase_epoch", 0) if state.get("phase") == "finetune" else 0
        cb = EpochLog("finetune", history, mc.finetune_epochs,
                      lambda h: checkpoint(h, "finetune"), progress, say, built.name)
        top.fit(_ViewBatches(feats, y_tr, cfg.batch_size, cfg.seed + 1, sw),
                validation_data=(feats_val.astype("float32"), y_va),
                epochs=mc.finetune_epochs, initial_epoch=start,
                callbacks=[*_callbacks(max(2, mc.patience)), cb], verbose=0)
        state.setdefault("phase_done", []).append("finetune")


def fit_plain(built: BuiltModel, mc: ModelConfig, cfg: TrainConfig, train: data.LoadedArrays,
              val: data.LoadedArrays, num_classes: int, history: list[dict[str, Any]],
              state: dict[str, Any], checkpoint: Callable[[list[dict[str, Any]], str], None],
              progress: Progress, say: Say) -> None:
    """Ordinary fit on decoded-once arrays (custom CNN, or transfer with caching off)."""
    model = built.model
    cw = class_weights(train.y, num_classes) if cfg.class_weights else None
    y_tr = keras.utils.to_categorical(train.y, num_classes)
    y_va = keras.utils.to_categorical(val.y, num_classes)
    ds_tr = data.make_tf_dataset(train.x, y_tr, cfg.batch_size, shuffle=True, seed=cfg.seed)
    ds_va = data.make_tf_dataset(val.x, y_va, cfg.batch_size)
    phases = [("train" if not built.transfer else "head", mc.epochs, mc.learning_rate)]
    if built.transfer and mc.finetune_epochs > 0:
        phases.append(("finetune", mc.finetune_epochs, mc.finetune_learning_rate))
    for phase, epochs, lr in phases:
        if phase in state.get("phase_done", []):
            continue
        if phase == "finetune":
            cut = split_point(model, mc.finetune_layers)
            names = [layer.name for layer in model.layers]
            for layer in model.layers[names.index(cut):]:
                if not isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = True
        _compile(model, mc, lr, num_classes)
        start = state.get("phase_epoch", 0) if state.get("phase") == phase else 0
        cb = EpochLog(phase, history, epochs, lambda h, p=phase: checkpoint(h, p), progress,
                      say, built.name)
        model.fit(ds_tr, validation_data=ds_va, epochs=epochs, initial_epoch=start,
                  class_weight=cw, callbacks=[*_callbacks(mc.patience), cb], verbose=0)
        state.setdefault("phase_done", []).append(phase)
        state["phase"], state["phase_epoch"] = None, 0


def _best_epoch(history: list[dict[str, Any]]) -> int | None:
    scored = [h for h in history if not math.isnan(h.get("val_loss", math.nan))]
    if not scored:
        return None
    return int(min(scored, key=lambda h: h["val_loss"])["epoch"])


def train_one(name: str, cfg: TrainConfig, classes: list[str], splits: data.Splits,
              writer: artifacts.RunWriter, state: dict[str, Any], cache_dir: Path | None,
              progress: Progress, say: Say) -> ModelResult:
    """Train one model, checkpointing into the run's temporary folder after every epoch."""
    mc = cfg.models.get(name) or ModelConfig()
    num_classes = len(classes)
    t_start = time.perf_counter()
    mstate = state.setdefault("models", {}).setdefault(name, {})
    # Time spent before an interruption, kept in state.json, so resumed runs report it all.
    seconds_before = float(mstate.get("seconds_before_resume", 0.0))
    train = data.load_arrays(splits.train, classes, mc.image_size, crop=mc.crop_head,
                             progress=progress, cache_dir=cache_dir)
    val = data.load_arrays(splits.val, classes, mc.image_size, crop=mc.crop_head,
                           progress=progress, cache_dir=cache_dir)
    for bad in (*train.failed, *val.failed):
        say(f"skipped unreadable image {bad[0]}: {bad[1]}")
    if len(train.y) == 0 or len(val.y) == 0:
        raise data.DatasetError(f"no usable images for {name}: train {len(train.y)}, "
                                f"val {len(val.y)}")
    built = build_model(name, num_classes, mc, weights=cfg.weights, seed=cfg.seed,
                        augment=cfg.augment)
    if built.weights.warning:
        say("WARNING: " + built.weights.warning)
    mdir = writer.model_dir(name)
    history: list[dict[str, Any]] = list(mstate.get("history", []))
    # Runs interrupted before checkpoints were named in state.json used this fixed name.
    ckpt = mdir / mstate.get("checkpoint", "checkpoint.weights.h5")
    if ckpt.is_file() and history:
        try:
            built.model.load_weights(ckpt)
        except Exception as exc:  # h5py/keras raise many types for a damaged file
            raise artifacts.ArtifactError(
                f"cannot resume {name} of run {writer.run_id}: checkpoint {ckpt} is damaged "
                f"({type(exc).__name__}); start a new run") from exc
        say(f"{name}: resumed from epoch {len(history)} ({mstate.get('phase')})")

    def checkpoint(hist: list[dict[str, Any]], phase: str) -> None:
        # Crash safety: each checkpoint is a new file, and state.json (written atomically) names
        # it only once it is complete, so a kill during save_weights leaves the previous
        # checkpoint and the state describing it intact. Older files go after the switch.
        path = mdir / f"checkpoint-{len(hist):04d}-{phase}.weights.h5"
        built.model.save_weights(path)
        mstate["checkpoint"] = path.name
        mstate["history"] = hist
        if mstate.get("phase") != phase:
            mstate["phase"], mstate["phase_epoch"] = phase, 0
        mstate["phase_epoch"] = sum(1 for h in hist if h["phase"] == phase)
        mstate["seconds_before_resume"] = seconds_before + time.perf_counter() - t_start
        writer.write_json("state.json", state)
        for old in mdir.glob("checkpoint*.weights.h5"):
            if old.name != path.name:
                old.unlink(missing_ok=True)

    if built.transfer and cfg.cache_features:
        fit_transfer_cached(built, mc, cfg, train, val, num_classes, history, mstate,
                            checkpoint, progress, say)
    else:
        fit_plain(built, mc, cfg, train, val, num_classes, history, mstate, checkpoint,
                  progress, say)
    seconds = time.perf_counter() - t_start + seconds_before
    built.model.save(mdir / "model.keras")
    best = _best_epoch(history)
    writer.write_json(f"{name}/history.json", {"epochs": history, "best_epoch": best})
    info = {
        "display_name": display_name(name),
        "image_size": mc.image_size,
        "crop_head": mc.crop_head,
        "weights": built.weights.label,
        "weights_sha256": built.weights.sha256,
        "params": count_params(built.model),
        "train_seconds": round(seconds, 1),
        "feature_seconds": mstate.get("feature_seconds"),
        "best_epoch": best,
        "epochs_run": len(history),
        "gradcam_layer": built.gradcam_layer,
        "file": f"{name}/model.keras",
        "train_images": int(len(train.y)),
        "val_images": int(len(val.y)),
    }
    mstate["done"] = True
    mstate["info"] = info
    writer.write_json("state.json", state)
    for old in mdir.glob("checkpoint*.weights.h5"):
        old.unlink(missing_ok=True)
    return ModelResult(info, history)


def train_run(cfg: TrainConfig, data_dir: str | Path | None, artifacts_dir: str | Path,
              models: list[str], resume: str | None = None, progress: Progress | None = None,
              say: Say | None = None, cache_dir: str | Path | None = None) -> Path:
    """Train `models` on `data_dir` and write a complete run; returns the run folder.

    With `resume`, continues the interrupted run of that id from its last checkpoint (its saved
    config, data and splits win over the arguments).
    """
    progress = progress or no_progress
    say = say or log.info
    artifacts_dir = Path(artifacts_dir)
    if resume:
        writer = artifacts.RunWriter(artifacts_dir, resume, resume=True)
        saved = artifacts.read_json(writer.tmp / "run.json")
        cfg = TrainConfig.from_dict(saved["config"])
        data_dir, models = saved["data_dir"], saved["models"]
        state = artifacts.read_json(writer.tmp / "state.json") \
            if (writer.tmp / "state.json").is_file() else {}
    if data_dir is None:
        raise data.DatasetError("no data folder given")
    ds = data.discover(data_dir)
    if resume:
        splits = data.splits_from_json(artifacts.read_json(writer.tmp / "splits.json"), ds.root)
    else:
        splits = data.make_splits(ds, seed=cfg.seed, val_fraction=cfg.val_fraction,
                                  test_fraction=cfg.test_fraction, dedupe=cfg.dedupe,
                                  official_test=cfg.official_test, max_per_class=cfg.max_images,
                                  progress=progress)
        writer = artifacts.RunWriter(artifacts_dir)
        # run.json goes last: its presence is what makes the run resumable.
        writer.write_json("splits.json", data.splits_to_json(splits, ds.root))
        writer.write_json("run.json", {"config": cfg.to_dict(), "data_dir": str(ds.root),
                                       "models": models, "started": artifacts.utc_now()})
        state = {}
    say(f"run {writer.run_id}: {len(splits.train)} train / {len(splits.val)} val / "
        f"{len(splits.test)} test images, classes {', '.join(ds.classes)}")
    cache = Path(cache_dir) if cache_dir else artifacts_dir / "cache"
    try:
        return _train_and_finalize(cfg, ds, splits, writer, state, models, cache, progress, say)
    except OSError as exc:  # disk full, permissions, ...: say what is safe and how to go on
        where = f" ({exc.filename})" if exc.filename else ""
        if writer.final.is_dir():
            raise artifacts.ArtifactError(
                f"run {writer.run_id} is complete in {writer.final} but `latest` could not be "
                f"updated: {exc.strerror or exc}{where}") from exc
        raise artifacts.ArtifactError(
            f"run {writer.run_id} could not be written: {exc.strerror or exc}{where}. Earlier "
            f"runs and `latest` are untouched; once fixed, continue it with "
            f"`python -m pipeline train --resume {writer.run_id}`") from exc


def _train_and_finalize(cfg: TrainConfig, ds: data.Dataset, splits: data.Splits,
                        writer: artifacts.RunWriter, state: dict[str, Any], models: list[str],
                        cache: Path, progress: Progress, say: Say) -> Path:
    infos: dict[str, Any] = {}
    for name in models:
        mstate = state.get("models", {}).get(name, {})
        if mstate.get("done"):
            infos[name] = mstate["info"]
            continue
        infos[name] = train_one(name, cfg, ds.classes, splits, writer, state, cache, progress,
                                say).info
    split_info = {"strategy": "official-test" if cfg.official_test else
                  ("dedup-stratified" if cfg.dedupe else "stratified"),
                  "seed": cfg.seed, "train": len(splits.train), "val": len(splits.val),
                  "test": len(splits.test), **{k: v for k, v in splits.info.items()
                                               if k not in ("train", "val", "test")}}
    return writer.finalize(run_manifest(cfg, ds, split_info, infos))


def run_manifest(cfg: TrainConfig, ds: data.Dataset, split_info: dict[str, Any],
                 infos: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a run trained with `cfg` on `ds` (`RunWriter.finalize` adds its id)."""
    return {
        "created": artifacts.utc_now(),
        "git_commit": artifacts.git_commit(),
        "data": {"dir": str(ds.root), "dir_relative": artifacts.relative_to_project(ds.root),
                 "layout": ds.layout, "fingerprint": data.fingerprint(ds),
                 "n_images": len(ds.records), "binary": ds.binary},
        "splits": split_info,
        "class_names": ds.classes,
        "config": cfg.to_dict(),
        "versions": artifacts.library_versions(),
        "models": infos,
    }
