"""What the benchmark measures on: the data, the one split both recipes use, the run whose models
are timed, and the images to time and upload.

Each function also records in the report where its inputs came from (`data`, `settings`,
`latency_models`).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import run_files
from pipeline.artifacts import crop_head, write_json_atomic
from pipeline.bench.errors import BenchError
from pipeline.bench.options import BenchOptions, SayFn, train_config


def data_and_splits(opts: BenchOptions, work: Path, say: SayFn, report: dict[str, Any]
                    ) -> tuple[Any, Any, Path, Any]:
    """Dataset, the one split both recipes use (written to a file for the children), config."""
    from pipeline import data

    data_dir = _prepare_data(opts, work, say)
    cfg = train_config(opts)
    ds = data.discover(data_dir)
    splits = data.make_splits(ds, seed=cfg.seed, val_fraction=cfg.val_fraction,
                              test_fraction=cfg.test_fraction, dedupe=cfg.dedupe,
                              official_test=cfg.official_test, max_per_class=cfg.max_images)
    splits_file = work / run_files.SPLITS
    write_json_atomic(splits_file, data.splits_to_json(splits, ds.root))
    report["data"] = {
        # phantoms made in a temporary folder, gone once the benchmark ends: not named by a
        # path that no longer exists (a review)
        "dir": str(ds.root) if opts.data_dir is not None else
        "synthetic phantoms in a temporary folder (removed afterwards)",
        "synthetic": opts.data_dir is None, "layout": ds.layout,
        "classes": ds.classes, "n_images": len(ds.records), "train": len(splits.train),
        "val": len(splits.val), "test": len(splits.test),
        "split": f"make_splits seed {cfg.seed}, val {cfg.val_fraction}, test "
                 f"{cfg.test_fraction}, dedupe {cfg.dedupe}, max_per_class {cfg.max_images}",
    }
    report["settings"] = {
        "profile": cfg.profile, "targets_val_accuracy": opts.targets,
        "max_minutes_per_recipe": opts.max_minutes,
        "naive_max_epochs": opts.naive_max_epochs, "latency_repeats": opts.repeats,
        "uploads": opts.uploads, "batch_size": cfg.batch_size,
        "image_sizes": {m: cfg.models[m].image_size for m in opts.models},
    }
    return ds, splits, splits_file, cfg


def _prepare_data(opts: BenchOptions, work: Path, say: SayFn) -> Path:
    """The given data folder, or (quick mode only) synthetic phantoms made in `work`."""
    if opts.data_dir is not None:
        if not Path(opts.data_dir).is_dir():
            raise BenchError(f"data folder {opts.data_dir} does not exist")
        return Path(opts.data_dir)
    if not opts.quick:
        raise BenchError("a full benchmark needs --data (the real dataset); --quick makes "
                         "synthetic phantoms")
    from pipeline.synth import generate

    out = work / "phantoms"
    say(f"generating synthetic phantoms in {out}")
    generate(out, per_class=30, size=128, seed=opts.seed)
    return out


def latency_inputs(opts: BenchOptions, cfg: Any, data_dir: Path, splits: Any, work: Path,
                   say: SayFn, report: dict[str, Any]) -> tuple[Any, list[Any], list[Any]]:
    """The run whose models are timed, and raw test images (decoded, any size) to feed them."""
    from pipeline import images
    from pipeline.artifacts import open_run

    if opts.run_dir is not None:
        run_dir = Path(opts.run_dir)
        report["latency_models"] = {"source": "given run", "run": str(run_dir)}
    else:
        run_dir = _latency_run(opts, cfg, data_dir, work, say)
        report["latency_models"] = {
            "source": "short run trained by the benchmark (same architecture and input size "
                      "as the benchmarked recipe; latency does not depend on training)",
            "run": run_dir.name}
    picks = _test_images(splits.test or splits.val, max(opts.uploads, 8))
    if not picks:
        raise BenchError("the split has no test or validation image to time predictions on")
    raw = [images.read_image(r.path) for r in picks]
    report["latency_models"]["image"] = picks[0].rel
    return open_run(run_dir), picks, raw


def _latency_run(opts: BenchOptions, cfg: Any, data_dir: Path, work: Path, say: SayFn) -> Path:
    """A short run with the benchmarked models' real architecture and input size.

    Latency and the dashboard depend on the architecture and input size, not on how well the
    weights are trained, so one or two epochs on a few images per class suffice. Quick mode (a
    smoke check of the machinery) skips MobileNetV2's fine-tuning phase, the same model either
    way: 10-13 s instead of 13.5-15.5 s for this run on a loaded 2-core machine (measured).
    Fewer images are no good: with 4 a class every upload to the dashboard was far from the
    run's own images, and the dashboard part waited for heatmaps it withholds for such images.
    """
    from pipeline.config import TrainConfig
    from pipeline.train import train_run

    short = TrainConfig.from_dict(cfg.to_dict())
    short.max_images = 12 if opts.quick else 40
    for mc in short.models.values():
        mc.epochs, mc.patience = 1, 1
        mc.finetune_epochs = 0 if opts.quick else 1
    say("training a short run for the latency and dashboard parts")
    with _quiet_tf_logger():
        return train_run(short, data_dir, work / "latency-artifacts", list(opts.models),
                         say=lambda m: None)


@contextlib.contextmanager
def _quiet_tf_logger() -> Iterator[None]:
    """Hide TensorFlow's retracing warnings (many tiny fits on few images trigger them)."""
    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def _test_images(records: Sequence[Any], n: int) -> list[Any]:
    """Up to n records spread over the classes (round-robin), in a stable order.

    Byte-identical files are taken once: the dataset's copies can sit in the same split (our
    split keeps duplicate groups together), and a copy would hit the dashboard's result cache
    and time a cached answer as if it were a new upload.
    """
    by_label: dict[str, list[Any]] = {}
    for r in records:
        by_label.setdefault(r.label, []).append(r)
    out: list[Any] = []
    seen: set[str] = set()
    while len(out) < n and any(by_label.values()):
        for label in sorted(by_label):
            while by_label[label] and len(out) < n:
                r = by_label[label].pop(0)
                digest = hashlib.sha256(Path(r.path).read_bytes()).hexdigest()
                if digest not in seen:
                    seen.add(digest)
                    out.append(r)
                    break
    return out


def prepare(raw: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """A raw image prepared for one model of the run exactly as its training prepared images."""
    from pipeline import geometry

    return geometry.prepare_image(raw, int(info["image_size"]), crop=crop_head(info))

