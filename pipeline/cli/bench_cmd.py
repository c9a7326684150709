"""`bench`: training speed, explanation latency, prediction, dashboard and memory in one report."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from pipeline.cli.common import (
    _existing_dir,
    _model_list,
    artifacts_option,
    err,
    fail,
    progress_bar,
    shown,
)
from pipeline.names import DEFAULT_MODELS


def bench(
    quick: bool = typer.Option(False, "--quick", help="tiny synthetic data, 1-3 epochs, few "
                               "repeats: a few minutes (CI); checks every part runs, judges "
                               "no goal"),
    data: Path = typer.Option(None, "--data", help="dataset folder (required without --quick; "
                              "--quick defaults to synthetic phantoms)"),
    out: Path = typer.Option(None, "--out", show_default=False,
                             help="folder for <UTC date>[-quick].json and .md; default: "
                             "bench/ in the artifacts folder (--artifacts)"),
    run_: str = typer.Option(None, "--run", help="existing run (id, folder or latest) for the "
                             "latency and dashboard parts; default: a short run trained here"),
    artifacts_dir: Path = artifacts_option(help="artifacts folder: --run is looked up in "
                                           "it, and the reports go to its bench/ folder "
                                           "without --out"),
    model: str = typer.Option("all", "--model", help=f"{', '.join(DEFAULT_MODELS)} or all"),
    # the example with a space after its comma: one long word was cut to "…" in the help
    target: str = typer.Option(None, "--target", help="val accuracy targets, e.g. "
                               "'mobilenetv2=0.8, custom_cnn=0.7' (default 0.80/0.70; quick "
                               "0.35)"),
    max_minutes: float = typer.Option(None, "--max-minutes", help="wall-clock cap per training "
                                      "recipe (default 40; quick 1.5)"),
    repeats: int = typer.Option(None, "--repeats", help="timed single-image calls for Grad-CAM "
                                "and prediction (default 30; quick 5)"),
    uploads: int = typer.Option(None, "--uploads", help="browser uploads timed (default 7; "
                                "quick 3)"),
    dashboard: bool = typer.Option(True, "--dashboard/--no-dashboard",
                                   help="measure the dashboard in chromium"),
    dashboard_only: bool = typer.Option(False, "--dashboard-only",
                                        help="measure only the dashboard (on --run, default "
                                        "latest) and merge it into the newest full report in "
                                        "--out, written as today's report"),
    stream: str = typer.Option(None, "--stream", help="folder sizes for streaming predict "
                               "(JPEG copies, MobileNetV2), e.g. 1000,10000; default: skipped"),
    explain_only: bool = typer.Option(False, "--explain-only", help="only every explanation "
                                      "method's latency on one test image of --run (both "
                                      "models) and its figure; no training"),
) -> None:
    """Training speed vs the naive recipe, explanation latency vs the floor, prediction,
    dashboard and memory, in one run; writes a JSON and a Markdown report."""
    from pipeline.artifacts import BENCH_DIR, ArtifactError, resolve_run
    from pipeline.bench import MODELS, BenchError, BenchOptions, parse_targets, run_bench

    if out is None:  # $BRAIN_MRI_ARTIFACTS, as every command's artifacts folder (it was ignored)
        out = artifacts_dir / BENCH_DIR
    if dashboard_only and run_ is None:
        run_ = "latest"
    if explain_only:
        # each of these was silently ignored (a review): say so before any work
        ignored = [flag for flag, given in (
            ("--quick", quick), ("--dashboard-only", dashboard_only), ("--data", data),
            ("--model", model != "all"), ("--target", target), ("--max-minutes", max_minutes),
            ("--uploads", uploads), ("--stream", stream), ("--no-dashboard", not dashboard))
            if given is not None and given is not False]
        if ignored:
            fail(f"--explain-only measures only the explanation methods of --run (both "
                 f"models); it takes no {', '.join(ignored)}")
        _explain_only(artifacts_dir, run_ or "latest", out, repeats)
        return
    if data is not None:
        _existing_dir(data, "data folder")
    elif not quick and not dashboard_only:
        fail("--data is required for a full benchmark (or use --quick for synthetic data)")
    models = tuple(_model_list(model, MODELS, MODELS, what="--model",
                               hint=f"choose {', '.join(MODELS)} or all"))
    _check_bench_limits(max_minutes, repeats, uploads)
    stream_counts = _stream_counts(stream)
    try:
        targets = parse_targets(target, models)
        run_dir = resolve_run(artifacts_dir, run_) if run_ is not None else None
    except (BenchError, ArtifactError) as exc:
        fail(str(exc))
    # --dashboard-only without the folder fails at once on its missing report: not created here
    if not (dashboard_only and not out.exists()):
        _writable_out(out)
    opts = BenchOptions(out_dir=out, quick=quick, data_dir=data, run_dir=run_dir, models=models,
                        targets=targets, max_minutes=max_minutes, repeats=repeats,
                        uploads=uploads, dashboard=dashboard, dashboard_only=dashboard_only,
                        stream_counts=stream_counts,
                        command="python -m pipeline bench " + " ".join(sys.argv[2:]))
    try:
        with progress_bar() as update:
            result = run_bench(opts, progress=update, say=_say_dim)
    except (BenchError, ArtifactError, ValueError) as exc:
        fail(str(exc))
    for key, goal in result.report["goals_check"].items():
        err.print(_goal_line(key, goal), highlight=False)
    sys.stdout.write(f"{result.json_path}\n{result.md_path}\n")


def _explain_only(artifacts_dir: Path, run_: str, out: Path, repeats: int | None) -> None:
    """`bench --explain-only`: every method's latency on one image; prints the verdict."""
    from pipeline.artifacts import ArtifactError, resolve_run
    from pipeline.bench.methods_latency import explain_methods_bench

    _check_bench_limits(None, repeats, None)
    try:
        run_dir = resolve_run(artifacts_dir, run_)
    except ArtifactError as exc:
        fail(str(exc))
    _writable_out(out)
    try:
        json_path, png_path, report = explain_methods_bench(run_dir, out, repeats or 10,
                                                            say=_say_dim)
    except (ArtifactError, ValueError, OSError) as exc:
        fail(str(exc))
    both = report["explain_methods"]
    err.print(f"slowest method with both models: {both['slowest_method']} "
              f"{both['slowest_ms']:.0f} ms (target <= {report['target_ms']:.0f} ms: "
              f"{'met' if report['met'] else 'NOT met'})", highlight=False)
    sys.stdout.write(f"{json_path}\n{png_path}\n")


def _writable_out(out: Path) -> None:
    """Fail in one line unless --out can take the reports: checked before any measuring (a
    read-only --out failed on the first write, after all of it: minutes to hours lost)."""
    from pipeline.artifacts import ArtifactError, ensure_writable

    try:
        ensure_writable(out, "output folder")
    except ArtifactError as exc:
        fail(str(exc))


def _check_bench_limits(max_minutes: float | None, repeats: int | None,
                        uploads: int | None) -> None:
    """Fail in one line unless --max-minutes is positive and --repeats/--uploads at least 1."""
    if max_minutes is not None and max_minutes <= 0:
        fail(f"--max-minutes must be positive, got {max_minutes}")
    for flag, value in (("--repeats", repeats), ("--uploads", uploads)):
        if value is not None and value < 1:
            fail(f"{flag} must be at least 1, got {value}")


def _stream_counts(spec: str | None) -> tuple[int, ...]:
    """"1000,10000" -> (1000, 10000); fails in one line unless positive whole numbers."""
    if not spec:
        return ()
    try:
        counts = tuple(int(part) for part in spec.split(","))
    except ValueError:
        fail(f"--stream takes folder sizes like 1000,10000, got {spec!r}")
    if not counts or min(counts) < 1:
        fail(f"--stream sizes must be at least 1, got {spec!r}")
    return counts


def _say_dim(message: str) -> None:
    """A benchmark progress message, dimmed, on stderr (the message is text, not markup)."""
    err.print(f"[dim]{shown(message)}[/]", highlight=False)


def _goal_line(key: str, goal: dict) -> str:
    """One goals_check entry as "<key>: <value> (goal <goal>, met: <met>)".

    A figure that was not measured shows its lower bound when the report has one, else "-".
    """
    value = goal["value"] if goal["value"] is not None else (
        f">= {goal['lower_bound']} (lower bound)" if goal.get("lower_bound") is not None
        else "-")
    # "met: None" read oddly; a measured figure of a --quick run is not judged (tiny models on
    # phantoms), and "not measured" beside its value was wrong (a review)
    met = {True: "yes", False: "NO"}.get(
        goal["met"], "not measured" if goal["value"] is None else "not judged (--quick)")
    return f"{key}: {value} (goal {goal['goal']}, met: {met})"
