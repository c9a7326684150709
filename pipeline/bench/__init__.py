"""Benchmarks (`python -m pipeline bench`): how fast the tool is on a CPU-only laptop.

One invocation measures, on this machine, and writes one report (`<out>/<UTC date>[-quick].json`
and `.md`):

1. training: per model, our recipe (`pipeline.train`: decode once, feature caching, two phases)
   against the naive recipe (tf.data reading and decoding files every epoch, every MobileNetV2
   layer trainable from epoch 1, no caching), on the same train/val lists: wall time from raw
   files to a target validation accuracy, and images/second per epoch;
2. explanation latency on one image per method and model: our `Explainer`, tf-keras-vis `Gradcam`
   constructed per request, and the floor (one forward + backward pass of the same model, the
   gradient taken w.r.t. the Grad-CAM layer's output: `latency.floor_fn`); a quick run times
   only the methods in `options.QUICK_METHODS`;
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

Where each part lives: `options` (BenchOptions, defaults, checks), `runner` (run_bench), `inputs`
(data, split, the timed run and images), `training` (the race, parent side) and `recipes` (one
recipe in its child process), `latency` (explanations, predictions, the floor), `browser` (the
dashboard in chromium), `machine` (what it ran on), `timing` (timings and peak RSS), `report`
(goals, Markdown). This package re-exports their public API.
"""

from __future__ import annotations

from pipeline.bench.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    dashboard_benchmark,
    free_port,
    wait_healthy,
)
from pipeline.bench.errors import BenchError
from pipeline.bench.inputs import _test_images as _test_images  # used by tests/test_bench.py
from pipeline.bench.latency import (
    FLOOR_DEFINITION,
    explain_benchmark,
    explain_latency,
    floor_fn,
    predict_benchmark,
)
from pipeline.bench.machine import machine_facts
from pipeline.bench.options import (
    MODELS,
    TARGETS_FULL,
    TARGETS_QUICK,
    BenchOptions,
    SayFn,
    parse_targets,
)
from pipeline.bench.recipes import (
    NAIVE_LEARNING_RATE,
    EpochClock,
    naive_file_dataset,
    train_recipe,
)
from pipeline.bench.report import GOALS, goals_check, to_markdown
from pipeline.bench.runner import SCHEMA_VERSION, BenchResult, run_bench
from pipeline.bench.timing import (
    proc_memory_mb,
    run_measured,
    summarize_ms,
    time_calls,
    time_round_robin,
)
from pipeline.bench.training import speedup, training_benchmark

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
