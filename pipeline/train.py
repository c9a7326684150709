"""Training runs: data, one fit per model (`pipeline.fit`), checkpoints, resume and the manifest.

Every epoch is checkpointed into the run's temporary folder (weights + state.json), so a killed
run resumes where it stopped (`train --resume RUN_ID`); the run folder appears, complete, only
when `RunWriter.finalize` renames it into place, after `train_hooks` finished it (calibration
and evaluation when asked, the OOD score always).
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import artifacts, data, distribute, locks, provenance, run_files, signals
from pipeline.config import ModelConfig, TrainConfig
from pipeline.config_rules import check_recipe
from pipeline.fit import FitJob, ModelState, augment_in_model, fit
from pipeline.interrupted import check_moved_data, resume_data_dir
from pipeline.memory import peak_rss_mb
from pipeline.models import BuiltModel, build_model, count_params
from pipeline.names import Progress, display_name, no_progress
from pipeline.train_hooks import Say, finish_hook
from pipeline.train_hooks import evaluation_hook as _evaluation_hook  # noqa: F401 (old name)
from pipeline.weights import check_weights

log = logging.getLogger(__name__)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a resumable run: which run, so the command can say how to resume it."""

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id


@dataclass
class ModelResult:
    info: dict[str, Any]
    history: list[dict[str, Any]]


def _best_epoch(history: list[dict[str, Any]]) -> int | None:
    scored = [h for h in history if not math.isnan(h.get("val_loss", math.nan))]
    if not scored:
        return None
    return int(min(scored, key=lambda h: h["val_loss"])["epoch"])


def _size_group_words(n: int, group: str) -> str:
    """"1 image of another size", "4 images of other sizes", "3 images of the common size":
    a balanced group in words ("1 other sizes x4" before, a review of 2026-12-06)."""
    if group == "common_size":
        return f"{n} image{'s' if n != 1 else ''} of the common size"
    return "1 image of another size" if n == 1 else f"{n} images of other sizes"


def _balance(train: data.LoadedArrays, classes: list[str], most: int, name: str, say: Say
             ) -> data.LoadedArrays:
    from pipeline.data.balance import balance_sizes

    train, summary = balance_sizes(train, classes, most)
    done = "; ".join(f"{c}: {_size_group_words(v[v['repeated']], v['repeated'])} x{v['copies']}"
                     for c, v in summary["classes"].items()) or "nothing to balance"
    say(f"{name}: pixel sizes balanced against {summary['common_size']} ({done}): "
        f"{summary['n_before']} -> {summary['n_after']} training images")
    return train


def _load_data(name: str, mc: ModelConfig, classes: list[str], splits: data.Splits,
               cache_dir: Path | None, progress: Progress, say: Say
               ) -> tuple[data.LoadedArrays, data.LoadedArrays]:
    train = data.load_arrays(splits.train, classes, mc.image_size, crop=mc.crop_head,
                             progress=progress, cache_dir=cache_dir)
    val = data.load_arrays(splits.val, classes, mc.image_size, crop=mc.crop_head,
                           progress=progress, cache_dir=cache_dir)
    for bad in (*train.failed, *val.failed):
        say(f"skipped unreadable image {bad[0]}: {bad[1]}")
    if len(train.y) == 0 or len(val.y) == 0:
        raise data.DatasetError(f"no usable images for {name}: train {len(train.y)}, "
                                f"val {len(val.y)}")
    return train, val


def masks_dir(cfg: TrainConfig, splits: data.Splits) -> Path | None:
    """The tumour-box masks for guided training: the config's, else the dataset's if any."""
    from pipeline.explain.masks import boxes_dir

    if cfg.masks_dir:
        path = Path(cfg.masks_dir).expanduser()
        if not path.is_dir():
            raise data.DatasetError(f"masks folder {path} (config masks_dir) does not exist")
        return path
    first = next(iter(splits.train), None)
    # the dataset root: the record's path without its relative part
    return boxes_dir(first.path.parents[len(Path(first.rel).parts) - 1]) if first else None


def _restore(built: BuiltModel, mdir: Path, ms: ModelState, run_id: str, say: Say) -> None:
    """Load the last checkpoint of an interrupted run into the freshly built model."""
    # Runs interrupted before checkpoints were named in state.json used this fixed name.
    ckpt = mdir / (ms.checkpoint or "checkpoint.weights.h5")
    if not (ckpt.is_file() and ms.history):
        return
    try:
        built.model.load_weights(ckpt)
    except Exception as exc:  # h5py/keras raise many types for a damaged file
        raise artifacts.ArtifactError(
            f"cannot resume {built.name} of run {run_id}: checkpoint {ckpt} is damaged "
            f"({type(exc).__name__}); start a new run") from exc
    say(f"{built.name}: resumed from epoch {len(ms.history)} ({ms.phase})")


def train_one(name: str, cfg: TrainConfig, classes: list[str], splits: data.Splits,
              writer: artifacts.RunWriter, state: dict[str, Any], cache_dir: Path | None,
              progress: Progress, say: Say,
              scope: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext
              ) -> ModelResult:
    """Train one model, checkpointing into the run's temporary folder after every epoch.

    `state` is the run's state.json content; this model's `ModelState` lives in
    `state["models"][name]` and is written back after every epoch. `scope` is entered around
    building and fitting (a `tf.distribute` strategy's scope: variables, optimizers and the
    cached recipe's sub-models must all be created inside it).
    """
    mc = cfg.models.get(name) or ModelConfig()
    t_start = time.perf_counter()
    models_state = state.setdefault("models", {})
    ms = ModelState.from_dict(models_state.get(name, {}))
    # Time spent before an interruption, kept in state.json, so resumed runs report it all.
    seconds_before = ms.seconds_before_resume
    train, val = _load_data(name, mc, classes, splits, cache_dir, progress, say)
    if mc.balance_sizes:
        train = _balance(train, classes, mc.balance_sizes, name, say)
    mdir = writer.model_dir(name)
    with scope():
        built = build_model(name, len(classes), mc, weights=cfg.weights, seed=cfg.seed,
                            augment=augment_in_model(name, mc, cfg))
        _restore(built, mdir, ms, writer.run_id, say)
    if built.weights.warning:
        say("WARNING: " + built.weights.warning)

    def save_state() -> None:
        models_state[name] = ms.to_dict()
        writer.write_json("state.json", state)

    def checkpoint(hist: list[dict[str, Any]], phase: str) -> None:
        # Crash safety: each checkpoint is a new file, and state.json (written atomically) names
        # it only once it is complete, so a kill during save_weights leaves the previous
        # checkpoint and the state describing it intact. Older files go after the switch.
        path = mdir / f"checkpoint-{len(hist):04d}-{phase}.weights.h5"
        built.model.save_weights(path)
        # the phase's best epoch so far (lowest val_loss, the first of equals) keeps its weights
        # too: a resume's early stopping restores them at the end, as an uninterrupted run does
        losses = [h["val_loss"] for h in hist if h["phase"] == phase]
        if losses and hist[-1]["phase"] == phase and all(losses[-1] < x for x in losses[:-1]):
            best = mdir / f"checkpoint-best-{phase}-{len(hist):04d}.weights.h5"
            shutil.copyfile(path, best)
            ms.best_checkpoints = {**ms.best_checkpoints, phase: best.name}
        ms.checkpoint, ms.history = path.name, hist
        ms.phase = phase
        ms.phase_epoch = sum(1 for h in hist if h["phase"] == phase)
        ms.seconds_before_resume = seconds_before + time.perf_counter() - t_start
        save_state()
        keep = {path.name, *ms.best_checkpoints.values()}
        for old in mdir.glob("checkpoint*.weights.h5"):
            if old.name not in keep:
                old.unlink(missing_ok=True)

    # Transfer models cache activations in files inside the run's temporary folder (bounded
    # memory); a killed run may have left some, which are of no use to anyone.
    def drop_caches() -> None:
        for made in writer.tmp.glob(f".features-{name}-*"):
            shutil.rmtree(made, ignore_errors=True)

    drop_caches()
    scratch = None
    try:
        if built.transfer and cfg.cache_features:
            scratch = Path(tempfile.mkdtemp(prefix=f".features-{name}-", dir=writer.tmp))
        with scope():
            fit(FitJob(built, mc, cfg, train, val, len(classes), ms, checkpoint, progress, say,
                       masks_dir=masks_dir(cfg, splits) if mc.guidance > 0 else None,
                       scratch=scratch, checkpoint_dir=mdir))
    finally:
        # every cache folder of this model, also one mkdtemp made as an interrupt came, before
        # `scratch` named it (a SIGTERM test left one, once in 16 runs)
        drop_caches()
    seconds = time.perf_counter() - t_start + seconds_before
    built.model.save(mdir / run_files.MODEL)
    best = _best_epoch(ms.history)
    writer.write_json(f"{name}/history.json", {"epochs": ms.history, "best_epoch": best})
    info = {
        "display_name": display_name(name),
        "image_size": mc.image_size,
        "crop_head": mc.crop_head,
        "weights": built.weights.label,
        "weights_sha256": built.weights.sha256,
        "params": count_params(built.model),
        "train_seconds": round(seconds, 1),
        "feature_seconds": ms.feature_seconds,
        "guidance": ms.guidance,
        "best_epoch": best,
        "epochs_run": len(ms.history),
        "gradcam_layer": built.gradcam_layer,
        "file": f"{name}/model.keras",
        "train_images": int(len(train.y)),
        "val_images": int(len(val.y)),
        # this process's peak RSS while training this model (since the previous model's
        # reading, or since the process started or resumed); None where /proc is missing
        "peak_rss_mb": peak_rss_mb(reset=True),
    }
    ms.done, ms.info = True, info
    save_state()
    for old in mdir.glob("checkpoint*.weights.h5"):
        old.unlink(missing_ok=True)
    return ModelResult(info, ms.history)


def train_run(cfg: TrainConfig, data_dir: str | Path | None, artifacts_dir: str | Path,
              models: list[str], resume: str | None = None, progress: Progress | None = None,
              say: Say | None = None, cache_dir: str | Path | None = None,
              evaluate: bool = False, strategy: str = "default") -> Path | None:
    """Train `models` on `data_dir` and write a complete run; returns the run folder.

    With `resume`, continues the interrupted run of that id from its last checkpoint (its saved
    config, models, splits and `evaluate` win over the arguments; `data_dir`, if given, is
    where its data folder is now). With `evaluate`, the test split is
    evaluated before the run folder is renamed into place, so the run is final only with its
    metrics (a failed evaluation is reported and the run kept without them). Every new run
    also gets its "unlike the training data" score (`train_hooks.fit_ood`: ood.npz, ood.json;
    a failure is reported and the run kept without it). `strategy` is
    one of `distribute.STRATEGIES`; under `multiworker` every worker calls this with the same
    arguments, and only the chief writes (and returns) the run, the others return None.
    """
    progress = progress or no_progress
    say = say or log.info
    cluster = distribute.make_cluster(strategy)  # first: before any other TensorFlow work
    if not cluster.is_chief:  # trains in step with the chief, writing to a temporary folder
        with distribute.worker_folder(cluster, Path(artifacts_dir), resume) as scratch:
            _train_run(cfg, data_dir, scratch, models, resume, progress, say, None, False,
                       cluster)
        say(f"{cluster.task} done; the chief wrote the run")
        return None
    return _train_run(cfg, data_dir, artifacts_dir, models, resume, progress, say, cache_dir,
                      evaluate, cluster)


def _train_run(cfg: TrainConfig, data_dir: str | Path | None, artifacts_dir: str | Path,
               models: list[str], resume: str | None, progress: Progress, say: Say,
               cache_dir: str | Path | None, evaluate: bool,
               cluster: distribute.Cluster) -> Path:
    # One writer per run: the run's lock is taken as soon as its folder is known and held until
    # it is in place (two `--resume` of one run deleted each other's feature cache).
    with contextlib.ExitStack() as held:
        return _train_locked(held, cfg, data_dir, artifacts_dir, models, resume, progress, say,
                             cache_dir, evaluate, cluster)


def _train_locked(held: contextlib.ExitStack, cfg: TrainConfig, data_dir: str | Path | None,
                  artifacts_dir: str | Path, models: list[str], resume: str | None,
                  progress: Progress, say: Say, cache_dir: str | Path | None, evaluate: bool,
                  cluster: distribute.Cluster) -> Path:
    artifacts_dir = artifacts.ensure_writable(artifacts_dir, "artifacts folder")
    if resume:
        writer = artifacts.RunWriter(artifacts_dir, resume, resume=True)
        held.enter_context(locks.run_writer(writer.tmp, "train --resume"))
        saved = artifacts.read_json(writer.tmp / "run.json")
        try:
            cfg = TrainConfig.from_dict(saved["config"])
        except ValueError as exc:  # saved before the config's rules refused it at load
            raise artifacts.ArtifactError(
                f"run {resume} cannot be resumed: its saved config is invalid ({exc}); delete "
                f"{writer.tmp} and train again with a corrected config") from exc
        # `data_dir` given: where the run's data folder is now (it moved; checked below)
        data_dir, models = resume_data_dir(resume, saved, data_dir), saved["models"]
        # as begun: a run begun with --no-evaluate was evaluated when resumed (a review)
        evaluate = bool(saved.get("evaluate", evaluate))
        commit = saved.get("git_commit", provenance.git_commit())
        state = artifacts.read_json(writer.tmp / "state.json") \
            if (writer.tmp / "state.json").is_file() else {}
    if data_dir is None:
        raise data.DatasetError("no data folder given")
    for name in models:  # a recipe the model cannot train fails now, not after the data pass
        check_recipe(name, cfg.models.get(name) or ModelConfig(), cfg)
    check_weights(cfg.weights, models)  # so does a missing weights file (WeightsError)
    ds = data.discover(data_dir)
    if why := data.untrainable(ds):  # before any hashing, and before a run folder exists
        raise data.DatasetError(why)
    if resume:
        check_moved_data(resume, saved, ds, writer)
        splits = data.splits_from_json(artifacts.read_json(writer.tmp / run_files.SPLITS), ds.root)
    else:
        splits = data.make_splits(ds, seed=cfg.seed, val_fraction=cfg.val_fraction,
                                  test_fraction=cfg.test_fraction, dedupe=cfg.dedupe,
                                  official_test=cfg.official_test, max_per_class=cfg.max_images,
                                  progress=progress)
        if why := data.split_gaps(splits, ds.classes):  # before a run folder exists
            raise data.DatasetError(why)
        writer = artifacts.RunWriter(artifacts_dir)
        held.enter_context(locks.run_writer(writer.tmp, "train"))
        # run.json goes last: its presence is what makes the run resumable.
        writer.write_json(run_files.SPLITS, data.splits_to_json(splits, ds.root))
        commit = provenance.git_commit()  # the code that trains, not what HEAD is at the end
        writer.write_json("run.json", {"config": cfg.to_dict(), "data_dir": str(ds.root),
                                       "fingerprint": data.fingerprint(ds),  # a resume's check
                                       "models": models, "started": artifacts.utc_now(),
                                       "git_commit": commit, "evaluate": evaluate})
        state = {}
    say(f"run {writer.run_id}: {len(splits.train)} train / {len(splits.val)} val / "
        f"{len(splits.test)} test images, classes {', '.join(ds.classes)}")
    if note := data.ignored_note(ds.ignored):  # a misspelt class folder is not trained on
        say(note)
    if note := data.class_folders_note(ds.folders):  # "Healthy → no_tumor": the user's
        say(note)
    if not resume:
        _say_split_notes(cfg, ds, splits, say)
    cache = Path(cache_dir) if cache_dir else artifacts_dir / "cache"
    try:
        # the chief alone finishes the run: calibration, evaluation, OOD score
        hook = finish_hook(progress, say, evaluate) if cluster.is_chief else None
        return _train_and_finalize(cfg, ds, splits, writer, state, models, cache, progress, say,
                                   hook, cluster, commit)
    except KeyboardInterrupt:
        if (writer.tmp / "run.json").is_file():  # resumable: the command says how
            raise RunInterrupted(writer.run_id) from None
        raise
    except Exception as exc:
        if signals.interrupted(exc):  # an interrupt TensorFlow turned into its own error
            if (writer.tmp / "run.json").is_file():
                raise RunInterrupted(writer.run_id) from exc
            raise KeyboardInterrupt() from exc
        if not isinstance(exc, OSError):
            raise
        # disk full, permissions, ...: say what is safe and how to go on
        where = f" ({exc.filename})" if exc.filename else ""
        if writer.final.is_dir():
            raise artifacts.ArtifactError(
                f"run {writer.run_id} is complete in {writer.final} but `latest` could not be "
                f"updated: {exc.strerror or exc}{where}") from exc
        raise artifacts.ArtifactError(
            f"run {writer.run_id} could not be written: {exc.strerror or exc}{where}. Earlier "
            f"runs and `latest` are untouched; once fixed, continue it with "
            f"`python -m pipeline train --resume {writer.run_id}`") from exc


def _say_split_notes(cfg: TrainConfig, ds: data.Dataset, splits: data.Splits, say: Say
                     ) -> None:
    """One line each for what the split did with the data beyond the counts: unreadable files
    skipped, label conflicts dropped, patient folders kept whole, the dataset's own test folder
    pooled. `audit` reported them, and `train` had said nothing."""
    info = splits.info
    if n := info.get("unreadable_excluded"):
        names = list(info.get("unreadable") or [])[:3]
        more = f" and {n - len(names)} more" if n > len(names) else ""
        say(f"skipped {n} unreadable file{'s' if n > 1 else ''}: {', '.join(names)}{more} "
            "(run audit for each reason)")
    if n := info.get("label_conflicts_dropped"):
        names = list(info.get("label_conflicts") or [])[:3]
        more = f" and {n - len(names)} more" if n > len(names) else ""
        say(f"left out {n} images whose bytes sit under two classes (label conflicts: "
            f"{', '.join(names)}{more}); they are in no split (audit lists them)")
    if n := info.get("patient_folders"):
        say(data.patient_note(n, ds.patients()[0]))
    tests = [r for r in ds.records if r.split == "test"]
    if tests and not cfg.official_test:
        folder = tests[0].rel.split("/", 1)[0]
        say(f"your {folder}/ folder ({len(tests)} images) is pooled with the other images "
            f"and split like them (own {'deduplicated ' if cfg.dedupe else ''}split); "
            "--official-test tests on it")


def _train_and_finalize(cfg: TrainConfig, ds: data.Dataset, splits: data.Splits,
                        writer: artifacts.RunWriter, state: dict[str, Any], models: list[str],
                        cache: Path, progress: Progress, say: Say,
                        before_rename: Callable[[Path], None] | None = None,
                        cluster: distribute.Cluster | None = None,
                        commit: str | None = None) -> Path:
    cluster = cluster or distribute.make_cluster("default")
    infos: dict[str, Any] = {}
    for name in models:
        mstate = state.get("models", {}).get(name, {})
        if mstate.get("done"):
            infos[name] = mstate["info"]
            continue
        infos[name] = train_one(name, cfg, ds.classes, splits, writer, state, cache, progress,
                                say, cluster.strategy.scope).info
    # splits.info carries "strategy" ("stratified+dedup", "official-test+dedup", ...)
    split_info = {"seed": cfg.seed, "train": len(splits.train), "val": len(splits.val),
                  "test": len(splits.test), **{k: v for k, v in splits.info.items()
                                               if k not in ("train", "val", "test")}}
    manifest = run_manifest(cfg, ds, split_info, infos, commit)
    manifest["distribution"] = cluster.manifest(cfg.batch_size)
    return writer.finalize(manifest, before_rename=before_rename)


# before a run title when the data are `synth` phantoms: `make demo` on a machine without the
# shipped run trains on them, and its "Deduplicated split" with the custom CNN far ahead could
# be shown to a room as the real result (a presenter's review)
SYNTHETIC_TITLE = "Synthetic phantoms, "


def run_title(split_info: dict[str, Any], synthetic: bool = False) -> str:
    """A readable name for a run, from how its test split was made (the picker shows it);
    `synthetic`: trained on drawn phantoms, which the title says first."""
    strategy = str(split_info.get("strategy", ""))
    if strategy.startswith("official-test"):  # "official-test+dedup" too: it read "Deduplicated"
        title = "Official Testing split"
    elif strategy.startswith("cv-fold"):
        title = f"Cross-validation {strategy[len('cv-fold '):].split(' ')[0]}"
    else:
        title = "Deduplicated split" if "dedup" in strategy else "Random split"
    return SYNTHETIC_TITLE + title[0].lower() + title[1:] if synthetic else title


def run_manifest(cfg: TrainConfig, ds: data.Dataset, split_info: dict[str, Any],
                 infos: dict[str, Any], commit: str | None = None) -> dict[str, Any]:
    """The manifest of a run trained with `cfg` on `ds` (`RunWriter.finalize` adds its id).
    `commit`: the git commit when training started (default: now); if HEAD moved while the run
    trained, `git_commit_at_end` says so."""
    from pipeline.synth import is_synthetic

    now = provenance.git_commit()
    moved = {"git_commit_at_end": now} if commit and now != commit else {}
    synthetic = is_synthetic(ds.root)
    return {
        "title": cfg.title or run_title(split_info, synthetic),
        "created": artifacts.utc_now(),
        "git_commit": commit or now, **moved,
        "data": {"dir": str(ds.root), "dir_relative": artifacts.relative_to_project(ds.root),
                 "layout": ds.layout, "fingerprint": data.fingerprint(ds),
                 "n_images": len(ds.records), "binary": ds.binary,
                 "class_folders": ds.folders, "synthetic": synthetic},
        "splits": split_info,
        "class_names": ds.classes,
        "config": cfg.to_dict(),
        "versions": provenance.library_versions(),
        "machine": provenance.cpu_facts(),
        "models": infos,
    }
