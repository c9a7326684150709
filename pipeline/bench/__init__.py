"""Benchmarks (`python -m pipeline bench`): how fast the tool is on a CPU-only laptop.

One invocation measures, on this machine, and writes one report (`<out>/<UTC date>[-quick].json`
and `.md`):

1. training: per model, our recipe (`pipeline.train`: decode once, feature caching, two phases)
   against the naive recipe (tf.data reading and decoding files every epoch, every MobileNetV2
   layer trainable from epoch 1, no caching), on the same train/val lists: wall time from raw
   files to a target validation accuracy, and images/second per epoch;
2. explanation latency on one image per method and model: our `Explainer`, tf-keras-vis `Gradcam`
   constructed per request, and the floor (one forward + backward pass of the same model);
3. prediction latency on one image and throughput on a batch;
4. the dashboard in a real browser: cold start to first render, upload -> both heatmaps shown;
5. peak RSS of each training and of the dashboard process.

How it measures, and why:

- Every training recipe runs in its own child process (fresh TensorFlow, nothing cached between
  recipes). Its peak RSS is the kernel's high-water mark of the child's own memory since it
  started its program (`VmHWM` in /proc/PID/status, reported by the child at its end and polled by
  the parent). Not `ru_maxrss` (`getrusage(RUSAGE_CHILDREN)` or `os.wait4`): Linux carries the
  parent's peak RSS over into a child's `ru_maxrss` when the child execs (measured here: a child
  using 9 MB reported 825 MB under a parent holding 800 MB), and RUSAGE_CHILDREN is moreover the
  maximum over all children so far.
- Our recipe runs to its own end (early stopping or its epoch budget) so its memory and per-phase
  speed are those of a real training; the naive recipe stops at the target. Both stop at the
  wall-clock cap, which is checked at epoch ends. Time-to-target is the time of the first epoch
  end with `val_accuracy >= target`, counted from the start of the recipe (after imports):
  decoding, model building and feature caching are included.
- Latencies run warm in this process, p50/p95 over repeated single-image calls. Our Grad-CAM,
  the floor and the bare forward pass are timed round-robin, so load changes on a shared machine
  hit all three alike.
- The dashboard is a real Streamlit server driven by Debian's chromium through Playwright (as
  in tests/test_dashboard_browser.py); each upload goes into a fresh session with a different
  image, so no per-image result is reused.

The child processes are started as `python -m pipeline.bench SPEC.json RESULT.json`.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import git_commit, write_json_atomic, write_text_atomic
from pipeline.bench.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    dashboard_benchmark,
    dashboard_skip,
    free_port,
    wait_healthy,
)
from pipeline.bench.errors import BenchError
from pipeline.bench.latency import (
    FLOOR_DEFINITION,
    explain_benchmark,
    explain_latency,
    floor_fn,
    predict_benchmark,
)
from pipeline.bench.machine import load_average, machine_facts
from pipeline.bench.options import (
    MODELS,
    TARGETS_FULL,
    TARGETS_QUICK,
    BenchOptions,
    check_options,
    parse_targets,
    train_config,
)
from pipeline.bench.recipes import (
    NAIVE_LEARNING_RATE,
    EpochClock,
    naive_file_dataset,
    train_recipe,
)
from pipeline.bench.report import GOALS, goal_texts, goals_check, to_markdown
from pipeline.bench.timing import (
    proc_memory_mb,
    run_measured,
    summarize_ms,
    time_calls,
    time_round_robin,
)
from pipeline.bench.training import speedup, training_benchmark
from pipeline.names import Progress

# The public API, unchanged by the split into a package: `from pipeline.bench import X` keeps
# working for every X below (cli.py, the tests), wherever X now lives.
__all__ = [
    "CHROMIUM", "CHROMIUM_ARGS", "GOALS", "MODELS", "NAIVE_LEARNING_RATE", "SCHEMA_VERSION",
    "TARGETS_FULL", "TARGETS_QUICK", "BenchError", "BenchOptions", "BenchResult", "EpochClock",
    "SayFn", "dashboard_benchmark", "explain_benchmark", "explain_latency", "free_port",
    "goals_check", "machine_facts", "naive_file_dataset", "parse_targets", "predict_benchmark",
    "proc_memory_mb", "run_bench", "run_measured", "speedup", "summarize_ms", "time_calls",
    "time_round_robin", "to_markdown", "train_recipe", "training_benchmark", "wait_healthy",
    # new with the package: the one definition of the Grad-CAM floor
    "FLOOR_DEFINITION", "floor_fn",
]

SayFn = Callable[[str], None]

SCHEMA_VERSION = 1


# ============================================================================ orchestration


@dataclass
class BenchResult:
    json_path: Path
    md_path: Path
    report: dict[str, Any]


def _prepare_data(opts: BenchOptions, work: Path, say: SayFn) -> Path:
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


def _latency_run(opts: BenchOptions, cfg: Any, data_dir: Path, work: Path, say: SayFn) -> Path:
    """A short run with the benchmarked models' real architecture and input size.

    Latency and the dashboard depend on the architecture and input size, not on how well the
    weights are trained, so one or two epochs on a few images per class suffice.
    """
    from pipeline.config import TrainConfig
    from pipeline.train import train_run

    short = TrainConfig.from_dict(cfg.to_dict())
    short.max_images = 12 if opts.quick else 40
    for mc in short.models.values():
        mc.epochs, mc.patience, mc.finetune_epochs = 1, 1, 1
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


def run_bench(opts: BenchOptions, progress: Progress | None = None,
              say: SayFn | None = None) -> BenchResult:
    """Run every benchmark and write `<out>/<UTC date>[-quick].json` and `.md`."""
    opts = opts.resolved()
    say = say or (lambda m: None)
    progress = progress or (lambda d, a, b: None)
    check_options(opts)
    started = datetime.now(timezone.utc)
    t_start = time.perf_counter()
    steps = 2 * len(opts.models) + 4 + len(opts.models) + opts.uploads
    done = [0]

    def tick(what: str) -> None:
        say(what)
        progress("benchmark", min(done[0], steps), steps)
        done[0] += 1

    sections: dict[str, Any] = {}

    @contextlib.contextmanager
    def section(name: str) -> Iterator[None]:
        # Wall time and load per part: on a shared machine the load explains outliers.
        load, t0 = load_average(), time.perf_counter()
        try:
            yield
        finally:
            sections[name] = {"seconds": round(time.perf_counter() - t0, 1),
                              "load_average_start": load}

    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created": started.isoformat(timespec="seconds"),
        "quick": opts.quick,
        "command": opts.command or None,
        "git_commit": git_commit(),
        "machine": machine_facts(),
        "goals": goal_texts(),
    }
    with tempfile.TemporaryDirectory(prefix="brain-mri-bench-") as tmp:
        work = Path(tmp)
        with section("data"):
            tick("preparing data and splits")
            ds, splits, splits_file, cfg = _data_and_splits(opts, work, say, report)
        with section("training"):
            training, memory = training_benchmark(opts, cfg, ds.classes, ds.root, splits_file,
                                                  work, tick)
        report["training"] = training
        with section("latency_models"):
            tick("models for latency")
            run, picks, raw = _latency_inputs(opts, cfg, ds.root, splits, work, say, report)
        with section("explain"):
            per_model = {}
            for name in opts.models:
                info = run.model_info(name)
                per_model[name] = _prepare(raw[0], info)
            report["explain"] = explain_benchmark(run, per_model, opts.repeats, tick)
        with section("predict"):
            report["predict"] = predict_benchmark(run, raw, opts.repeats, opts.quick, tick)
        with section("dashboard"):
            report["dashboard"] = _dashboard_section(opts, run.path, picks, work, tick)
        memory["dashboard_mb"] = report["dashboard"].get("peak_rss_mb")
        if memory["dashboard_mb"] is None:
            memory["dashboard_mb_reason"] = report["dashboard"]["upload_to_heatmaps_reason"]
        memory["definition"] = ("peak RSS (VmHWM, the kernel's high-water mark) of the child "
                                "process: a whole training from raw files (ours) / until the "
                                "target or cap (naive); the Streamlit server from start to "
                                "after the timed uploads, both models loaded")
        report["memory"] = memory
    report["machine"]["load_average_end"] = load_average()
    report["sections"] = sections
    report["duration_s"] = round(time.perf_counter() - t_start, 1)
    report["goals_check"] = goals_check(report)
    progress("benchmark", steps, steps)
    stem = started.strftime("%Y-%m-%d") + ("-quick" if opts.quick else "")
    out_dir = Path(opts.out_dir)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    write_json_atomic(json_path, report)
    write_text_atomic(md_path, to_markdown(report))
    return BenchResult(json_path, md_path, report)


def _prepare(raw: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    from pipeline import images

    return images.prepare_image(raw, int(info["image_size"]), crop=bool(info.get("crop_head")))


def _data_and_splits(opts: BenchOptions, work: Path, say: SayFn, report: dict[str, Any]
                     ) -> tuple[Any, Any, Path, Any]:
    """Dataset, the one split both recipes use (written to a file for the children), config."""
    from pipeline import data

    data_dir = _prepare_data(opts, work, say)
    cfg = train_config(opts)
    ds = data.discover(data_dir)
    splits = data.make_splits(ds, seed=cfg.seed, val_fraction=cfg.val_fraction,
                              test_fraction=cfg.test_fraction, dedupe=cfg.dedupe,
                              official_test=cfg.official_test, max_per_class=cfg.max_images)
    splits_file = work / "splits.json"
    write_json_atomic(splits_file, data.splits_to_json(splits, ds.root))
    report["data"] = {
        "dir": str(ds.root), "synthetic": opts.data_dir is None, "layout": ds.layout,
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


def _latency_inputs(opts: BenchOptions, cfg: Any, data_dir: Path, splits: Any, work: Path,
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


def _dashboard_section(opts: BenchOptions, run_dir: Path, picks: list[Any], work: Path,
                       tick: Callable[[str], None]) -> dict[str, Any]:
    if not opts.dashboard:
        return dashboard_skip("disabled with --no-dashboard")
    try:
        return dashboard_benchmark(run_dir, [Path(r.path) for r in picks], opts.uploads, work,
                                   tick)
    except Exception as exc:  # the browser part must not lose the other results
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        return dashboard_skip(f"failed: {type(exc).__name__}: {first}", failed=True)
