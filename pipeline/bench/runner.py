"""`run_bench`: every part of the benchmark in order, timed per part, written as one report.

In order: data and split; training (child processes, this process only polls them); the models
for latency; explanation and prediction latency (warm, in this process); the dashboard (its own
server process). Each part's wall time and starting load go into the report's `sections`.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline import run_files
from pipeline.artifacts import write_json_atomic, write_text_atomic
from pipeline.bench.browser import dashboard_benchmark, dashboard_skip
from pipeline.bench.errors import BenchError
from pipeline.bench.inputs import data_and_splits, latency_inputs, prepare
from pipeline.bench.latency import both_models, explain_benchmark, predict_benchmark
from pipeline.bench.machine import load_average, machine_facts
from pipeline.bench.options import QUICK_METHODS, BenchOptions, SayFn, check_options
from pipeline.bench.report import goal_texts, goals_check, to_markdown
from pipeline.bench.streaming import stream_benchmark
from pipeline.bench.training import training_benchmark
from pipeline.names import Progress, no_progress
from pipeline.provenance import git_commit

SCHEMA_VERSION = 1
MEMORY_DEFINITION = ("peak RSS (VmHWM, the kernel's high-water mark) of the child process: a "
                     "whole training from raw files (ours) / until the target or cap (naive); "
                     "the Streamlit server from start to after the timed uploads, both models "
                     "loaded")


@dataclass
class BenchResult:
    """Where `run_bench` wrote the report, and the report itself."""

    json_path: Path
    md_path: Path
    report: dict[str, Any]


def run_bench(opts: BenchOptions, progress: Progress | None = None,
              say: SayFn | None = None) -> BenchResult:
    """Run every benchmark and write `<out>/<UTC date>[-quick].json` and `.md`."""
    opts = opts.resolved()
    say = say or (lambda m: None)
    progress = progress or no_progress
    if opts.dashboard_only:
        return remeasure_dashboard(opts, progress, say)
    check_options(opts)
    started = datetime.now(timezone.utc)
    t_start = time.perf_counter()
    steps = 2 * len(opts.models) + 4 + len(opts.models) + opts.uploads
    tick = _ticker(say, progress, steps)
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created": started.isoformat(timespec="seconds"),
        "quick": opts.quick,
        "command": opts.command or None,
        "git_commit": git_commit(),
        "machine": machine_facts(),
        "goals": goal_texts(),
    }
    sections: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="brain-mri-bench-") as tmp:
        _measure(opts, Path(tmp), say, tick, report, sections)
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


def _ticker(say: SayFn, progress: Progress, steps: int) -> Callable[[str], None]:
    """tick(what): say what starts now and advance the progress bar by one step."""
    done = [0]

    def tick(what: str) -> None:
        say(what)
        progress("benchmark", min(done[0], steps), steps)
        done[0] += 1

    return tick


@contextlib.contextmanager
def _section(sections: dict[str, Any], name: str) -> Iterator[None]:
    # Wall time and load per part: on a shared machine the load explains outliers.
    load, t0 = load_average(), time.perf_counter()
    try:
        yield
    finally:
        sections[name] = {"seconds": round(time.perf_counter() - t0, 1),
                          "load_average_start": load}


def _measure(opts: BenchOptions, work: Path, say: SayFn, tick: Callable[[str], None],
             report: dict[str, Any], sections: dict[str, Any]) -> None:
    """Every measured part, in order, into `report`; each part's time and load into `sections`."""
    with _section(sections, "data"):
        tick("preparing data and splits")
        ds, splits, splits_file, cfg = data_and_splits(opts, work, say, report)
    with _section(sections, "training"):
        training, memory = training_benchmark(opts, cfg, ds.classes, ds.root, splits_file,
                                              work, tick)
    report["training"] = training
    with _section(sections, "latency_models"):
        tick("models for latency")
        run, picks, raw = latency_inputs(opts, cfg, ds.root, splits, work, say, report)
    with _section(sections, "explain"):
        per_model = {name: prepare(raw[0], run.model_info(name)) for name in opts.models}
        report["explain"] = explain_benchmark(run, per_model, opts.repeats, tick,
                                              QUICK_METHODS if opts.quick else None)
        report["explain_methods"] = both_models(report["explain"])
    with _section(sections, "predict"):
        report["predict"] = predict_benchmark(run, raw, opts.repeats, opts.quick, tick,
                                              list(opts.models))
    with _section(sections, "streaming"):
        report["streaming"] = _streaming_section(opts, run.path, raw, work, tick)
    with _section(sections, "dashboard"):
        report["dashboard"] = _dashboard_section(opts, run.path, picks, work, tick)
    memory["dashboard_mb"] = report["dashboard"].get("peak_rss_mb")
    if memory["dashboard_mb"] is None:
        memory["dashboard_mb_reason"] = report["dashboard"]["upload_to_heatmaps_reason"]
    memory["definition"] = MEMORY_DEFINITION
    report["memory"] = memory


def _streaming_section(opts: BenchOptions, run_dir: Path, raw: list[Any], work: Path,
                       tick: Callable[[str], None]) -> dict[str, Any]:
    if not opts.stream_counts:
        return {"skipped": "not asked for (--stream 1000,10000)"}
    tick("streaming predict over JPEG folders")
    model = "mobilenetv2" if "mobilenetv2" in opts.models else opts.models[0]
    return stream_benchmark(run_dir, raw, work, opts.stream_counts, model)


def _dashboard_section(opts: BenchOptions, run_dir: Path, picks: list[Any], work: Path,
                       tick: Callable[[str], None]) -> dict[str, Any]:
    if not opts.dashboard:
        return dashboard_skip("disabled with --no-dashboard")
    try:
        return dashboard_benchmark(run_dir, [Path(r.path) for r in picks], opts.uploads, work,
                                   tick, other_run=other_run(run_dir))
    except Exception as exc:  # the browser part must not lose the other results
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        return dashboard_skip(f"failed: {type(exc).__name__}: {first}", failed=True)


def run_training_memory(manifest: dict[str, Any]) -> dict[str, float]:
    """Each model's training peak RSS as its run recorded it (`peak_rss_mb` in the manifest:
    the whole `train` process, VmHWM), as `memory` entries `train_<model>_in_run_mb`: the
    shipped recipe's figure, where the full report's training rows are the benchmark's own."""
    return {f"train_{m}_in_run_mb": info["peak_rss_mb"]
            for m, info in (manifest.get("models") or {}).items()
            if isinstance(info, dict) and info.get("peak_rss_mb") is not None}


def other_run(run_dir: Path) -> Path | None:
    """Another complete run beside `run_dir` (the dashboard's two-runs memory figure), if any."""
    for folder in sorted(Path(run_dir).parent.iterdir()):
        if folder.resolve() != Path(run_dir).resolve() and (folder / run_files.MANIFEST).is_file():
            return folder
    return None


def remeasure_dashboard(opts: BenchOptions, progress: Progress, say: SayFn) -> BenchResult:
    """Measure only the dashboard (on `opts.run_dir`, uploading its test images) and merge it
    into the newest full report in `opts.out_dir`, written as today's report; the other
    sections keep their figures and date (`dashboard_remeasured` says what changed, when)."""
    import json

    from pipeline.artifacts import open_run

    out_dir = Path(opts.out_dir)
    bases = [p for p in sorted(out_dir.glob("[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9].json"))
             if "dashboard_remeasured" not in json.loads(p.read_text())]  # full runs only
    if not bases:
        raise BenchError(f"no full benchmark report in {out_dir} to merge the dashboard into")
    if opts.run_dir is None:
        raise BenchError("--dashboard-only needs --run (the run the dashboard opens on)")
    report = json.loads(bases[-1].read_text())
    run = open_run(opts.run_dir)
    data_dir = Path(run.manifest["data"]["dir"])
    if not data_dir.is_absolute():
        from pipeline.artifacts import PROJECT_ROOT

        data_dir = PROJECT_ROOT / data_dir
    test = json.loads((run.path / run_files.SPLITS).read_text())["test"]
    files = [data_dir / e["path"] for e in test[:: max(1, len(test) // 16)]][:max(opts.uploads,
                                                                                    2)]
    started = datetime.now(timezone.utc)
    load_start = load_average()
    tick = _ticker(say, progress, opts.uploads + 3 + bool(opts.stream_counts))
    with tempfile.TemporaryDirectory(prefix="brain-mri-bench-") as tmp:
        if opts.stream_counts:  # before the browser, which leaves nothing running behind it
            from pipeline.images import read_image

            raw = [read_image(f) for f in files]
            report["streaming"] = _streaming_section(opts, run.path, raw, Path(tmp), tick)
        try:
            dash = dashboard_benchmark(run.path, files, opts.uploads, Path(tmp), tick,
                                       other_run=other_run(run.path))
        except Exception as exc:  # the browser part must not lose the streaming figures
            first = str(exc).splitlines()[0][:300] if str(exc) else ""
            dash = dashboard_skip(f"failed: {type(exc).__name__}: {first}", failed=True)
    report["dashboard"] = dash
    memory = report.setdefault("memory", {})
    memory["dashboard_mb"] = dash.get("peak_rss_mb")
    memory.update(run_training_memory(run.manifest))
    report["dashboard_remeasured"] = {
        "created": started.isoformat(timespec="seconds"), "based_on": bases[-1].name,
        "parts": ["dashboard", *(["streaming"] if opts.stream_counts else []),
                  "training memory of the run"],
        "run": run.run_id, "git_commit": git_commit(), "command": opts.command or None,
        "load_average_start": load_start, "load_average_end": load_average()}
    report["goals"] = goal_texts()
    report["goals_check"] = goals_check(report)
    stem = started.strftime("%Y-%m-%d")
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    write_json_atomic(json_path, report)
    write_text_atomic(md_path, to_markdown(report))
    return BenchResult(json_path, md_path, report)
