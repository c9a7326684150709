"""Benchmarks: each measuring piece measures what it claims, and `bench --quick` writes a complete,
well-formed report. No benchmark figure is asserted: figures belong in the report."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from pipeline.bench import (
    CHROMIUM,
    MODELS,
    BenchError,
    EpochClock,
    _test_images,
    goals_check,
    naive_file_dataset,
    parse_targets,
    proc_memory_mb,
    run_measured,
    speedup,
    summarize_ms,
    time_round_robin,
    to_markdown,
)

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ statistics and bookkeeping


def test_summarize_ms_gives_percentiles_of_the_timings():
    s = summarize_ms([float(v) for v in range(1, 101)])
    assert s["p50"] == pytest.approx(50.5)
    assert s["p95"] == pytest.approx(95.05)
    assert s["min"] == 1.0 and s["n"] == 100 and s["mean"] == pytest.approx(50.5)
    with pytest.raises(BenchError):
        summarize_ms([])


def test_round_robin_interleaves_calls_after_warmup():
    calls: list[str] = []
    res = time_round_robin({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                           repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4  # 1 warm-up round + 3 timed rounds, alternating
    assert res["a"]["n"] == 3 and res["b"]["n"] == 3


def test_parse_targets_accepts_models_and_rejects_the_rest():
    assert parse_targets("mobilenetv2=0.8, custom_cnn=0.7", MODELS) == {
        "mobilenetv2": 0.8, "custom_cnn": 0.7}
    assert parse_targets(None, MODELS) == {}
    for bad in ("resnet=0.5", "mobilenetv2", "mobilenetv2=high", "mobilenetv2=1.5",
                "custom_cnn=0"):
        with pytest.raises(BenchError, match="--target"):
            parse_targets(bad, MODELS)
    with pytest.raises(BenchError):  # a model that is not being benchmarked
        parse_targets("custom_cnn=0.7", ("mobilenetv2",))


def test_speedup_exact_lower_bound_and_missing():
    ours = {"reached": True, "time_to_target_s": 10.0, "target": 0.8}
    naive = {"reached": True, "time_to_target_s": 55.0, "wall_s": 60.0, "target": 0.8}
    r = speedup(ours, naive)
    assert r["speedup_vs_naive"] == 5.5 and r["speedup_vs_naive_lower_bound"] is None
    assert r["naive_reached"] is True

    capped = {"reached": False, "time_to_target_s": None, "wall_s": 120.0, "target": 0.8,
              "best_val_accuracy": 0.7, "stopped": "cap"}
    r = speedup(ours, capped)
    assert r["speedup_vs_naive"] is None and r["speedup_vs_naive_lower_bound"] == 12.0
    assert r["naive_reached"] is False and "lower bound" in r["speedup_vs_naive_reason"]

    r = speedup({"reached": False, "time_to_target_s": None, "target": 0.8,
                 "best_val_accuracy": 0.6, "stopped": "recipe_end"}, naive)
    assert r["speedup_vs_naive"] is None and r["speedup_vs_naive_lower_bound"] is None
    assert "our recipe did not reach" in r["speedup_vs_naive_reason"]

    r = speedup(ours, {"error": "exit code 1: boom", "reached": False})
    assert r["speedup_vs_naive"] is None and "boom" in r["speedup_vs_naive_reason"]


def test_epoch_clock_stops_at_target_or_cap():
    clock = EpochClock(target=0.5, max_seconds=1000, n_train=100, stop_at_target=True)
    assert not clock.epoch_end("train", 2.0, 0.3, float("nan"))  # NaN never counts as reached
    assert not clock.epoch_end("train", 2.0, 0.3, 0.4)
    assert clock.epoch_end("train", 4.0, 0.6, 0.55)
    s = clock.summary()
    assert s["reached"] and s["stopped"] == "target" and s["epochs_run"] == 3
    assert 0 <= s["time_to_target_s"] <= s["wall_s"]
    assert s["images_per_s"] == {"train": 50.0}  # median of 50, 50, 25
    assert s["best_val_accuracy"] == 0.55 and s["final_val_accuracy"] == 0.55

    ours = EpochClock(target=0.5, max_seconds=1000, n_train=10, stop_at_target=False)
    assert not ours.epoch_end("head", 1.0, 0.9, 0.9)  # ours keeps going past the target
    assert ours.summary()["reached"]

    capped = EpochClock(target=0.99, max_seconds=0.0, n_train=10, stop_at_target=False)
    assert capped.epoch_end("head", 1.0, 0.1, 0.2)
    assert capped.summary()["stopped"] == "cap" and not capped.summary()["reached"]


# ------------------------------------------------------------------ measuring processes and data


def test_run_measured_reports_each_childs_own_peak_rss(tmp_path):
    # The parent holds 600 MB while it starts the children: a child's figure must not include
    # it (Linux's ru_maxrss would: it carries the parent's peak over into the child at exec).
    ballast = np.ones(600 * 2**20 // 8)
    big = run_measured([sys.executable, "-c",
                        "import numpy as np, time; a = np.ones(300 * 2**20 // 8); "
                        "time.sleep(0.5); print(a.sum())"],
                       tmp_path / "big.log", timeout_s=120)
    small = run_measured([sys.executable, "-c", "import time; time.sleep(0.5); print('hi')"],
                         tmp_path / "small.log", timeout_s=120)
    assert ballast.sum() > 0
    assert big["returncode"] == 0 and small["returncode"] == 0
    assert big["peak_rss_mb"] >= 300
    assert small["peak_rss_mb"] < 150  # its own few MB, not the parent's 600 or big's 300
    assert (tmp_path / "small.log").read_text().strip() == "hi"
    assert proc_memory_mb("self", "VmRSS") >= 600  # the ballast is really resident here


def test_run_measured_kills_a_hung_child(tmp_path):
    r = run_measured([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "h.log",
                     timeout_s=1)
    assert r["timed_out"] and r["returncode"] != 0 and r["wall_s"] < 30


def test_naive_dataset_decodes_the_files_again_every_epoch(tmp_path):
    paths = []
    for i, (value, fmt) in enumerate([(30, "PNG"), (120, "PNG"), (220, "JPEG")]):
        p = tmp_path / f"img{i}.{fmt.lower()}"
        Image.new("L" if i == 0 else "RGB", (40, 30), (value if i == 0 else (value,) * 3)).save(
            p, fmt)
        paths.append(p)
    ds = naive_file_dataset(paths, [0, 1, 2], size=16, batch_size=2, shuffle=False, seed=0)
    batches = list(ds.as_numpy_iterator())
    assert [b[0].shape for b in batches] == [(2, 16, 16, 3), (1, 16, 16, 3)]
    assert batches[0][0].dtype == np.float32
    assert list(np.concatenate([b[1] for b in batches])) == [0, 1, 2]
    means = [float(b.mean()) for b in np.concatenate([b[0] for b in batches])]
    assert means == pytest.approx([30, 120, 220], abs=3)  # grayscale PNG became 3 channels

    Image.new("RGB", (40, 30), (200, 200, 200)).save(paths[0], "PNG")  # change the file
    again = next(ds.as_numpy_iterator())[0]
    assert float(again[0].mean()) == pytest.approx(200, abs=3)  # read from disk, not cached


def test_explain_latency_times_every_method_on_a_real_model():
    from pipeline.bench import FLOOR_DEFINITION, explain_latency, floor_fn
    from pipeline.config import ModelConfig
    from pipeline.explain import METHODS
    from pipeline.models import build_model

    built = build_model("custom_cnn", 3, ModelConfig(image_size=32, width=4, depth=2),
                        weights="none")
    x = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    r = explain_latency(built.model, x, None, repeats=3)
    assert r["layer"] == "gradcam_target" and r["input_shape"] == [32, 32, 3]
    assert set(r["ours_ms"]) == set(METHODS)  # the default, as the full benchmark times them
    for s in [*r["ours_ms"].values(), r["floor_ms"], r["forward_ms"],
              r["tf_keras_vis_gradcam_per_request_ms"]]:
        assert 0 < s["p50"] <= s["p95"] and s["n"] >= 2
    assert r["gradcam_ratio_to_floor"] == pytest.approx(
        r["ours_ms"]["gradcam"]["p50"] / r["floor_ms"]["p50"], rel=1e-2)
    # The floor differentiates w.r.t. the Grad-CAM layer's output (not the input), as documented.
    grad = floor_fn(built.model, r["layer"])(x[None].astype(np.float32))
    assert tuple(grad.shape[1:]) == tuple(built.model.get_layer(r["layer"]).output.shape[1:])
    assert r["floor_definition"] == FLOOR_DEFINITION and "layer output" in FLOOR_DEFINITION
    # the former tf-keras-vis SmoothGrad is timed beside ours, and the slowest method is named
    assert r["tf_keras_vis_smoothgrad_ms"]["p50"] > 0 and r["smoothgrad_speedup_vs_tf_keras_vis"]
    assert r["slowest_method_ms"] == max(v["p50"] for v in r["ours_ms"].values())
    from pipeline.bench.latency import both_models

    both = both_models({"a": r, "b": r})
    assert both["p50_ms"]["gradcam"] == pytest.approx(2 * r["ours_ms"]["gradcam"]["p50"], abs=0.1)
    assert both["slowest_method"] == r["slowest_method"]


def test_goals_and_markdown_show_a_lower_bound_and_missing_parts():
    report = {
        "created": "2026-01-01T00:00:00+00:00", "quick": False,
        "machine": {"cpu_model": "X", "cores_usable": 2, "cores_logical": 2,
                    "memory_total_mb": 1000.0, "tensorflow": "2", "keras": "3", "python": "3",
                    "load_average_start": [1, 1, 1]},
        "training": {"mobilenetv2": {
            "target_val_accuracy": 0.8, "speedup_vs_naive": None,
            "speedup_vs_naive_lower_bound": 6.2, "speedup_vs_naive_reason": "naive capped",
            "ours": {"reached": True, "time_to_target_s": 10.0, "images_per_s": {"head": 900.0}},
            "naive": {"reached": False, "time_to_target_s": None, "images_per_s": {}}}},
        "explain": {}, "predict": {},
        "dashboard": {"upload_to_heatmaps_s": None,
                      "upload_to_heatmaps_reason": "chromium missing"},
        "memory": {"train_mobilenetv2_mb": 900.0, "dashboard_mb": None},
    }
    goals = goals_check(report)
    assert goals["training.mobilenetv2.speedup_vs_naive"]["met"] is True  # lower bound >= 5
    assert goals["dashboard.upload_to_heatmaps_s"]["met"] is None
    report["goals_check"] = goals
    md = to_markdown(report)
    assert "≥ 6.20× (lower bound)" in md and "Not measured: chromium missing" in md


def test_goals_check_takes_every_threshold_from_goals(monkeypatch):
    from pipeline.bench import report as bench_report

    report = {"training": {"mobilenetv2": {"speedup_vs_naive": 4.0}},
              "explain": {"a": {"gradcam_ratio_to_floor": 1.2},
                          "b": {"gradcam_ratio_to_floor": None}},
              "dashboard": {"upload_to_heatmaps_s": 2.5}}
    assert goals_check(report) == {
        "training.mobilenetv2.speedup_vs_naive": {"value": 4.0, "goal": ">= 5.0", "met": False},
        "explain.a.gradcam_ratio_to_floor": {"value": 1.2, "goal": "<= 1.5", "met": True},
        "explain.b.gradcam_ratio_to_floor": {"value": None, "goal": "<= 1.5", "met": None},
        "dashboard.upload_to_heatmaps_s": {"value": 2.5, "goal": "<= 1.0", "met": False},
        "dashboard.upload_to_heatmaps_first_s": {"value": None, "goal": "<= 1.5", "met": None},
        "dashboard.first_visit_predict_s": {"value": None, "goal": "<= 3.0", "met": None},
        "dashboard.peak_rss_two_runs_mb": {"value": None, "goal": "<= 1024.0", "met": None},
        "streaming.images_per_s": {"value": None, "goal": ">= 40.0", "met": None},
        "streaming.rss_growth": {"value": None, "goal": "<= 0.1", "met": None},
        "memory.train_mobilenetv2_in_run_mb": {"value": None, "goal": "<= 3072.0", "met": None},
    }
    assert set(goals_check({})) == {  # no models: no model goals
        "dashboard.upload_to_heatmaps_s", "dashboard.upload_to_heatmaps_first_s",
        "dashboard.first_visit_predict_s", "dashboard.peak_rss_two_runs_mb",
        "streaming.images_per_s", "streaming.rss_growth", "memory.train_mobilenetv2_in_run_mb"}
    monkeypatch.setitem(bench_report.GOALS, "training.mobilenetv2.speedup_vs_naive", (">=", 3.0))
    monkeypatch.setitem(bench_report.GOALS, "dashboard.upload_to_heatmaps_s", ("<=", 3.0))
    goals = goals_check(report)
    assert goals["training.mobilenetv2.speedup_vs_naive"] == {"value": 4.0, "goal": ">= 3.0",
                                                              "met": True}
    assert goals["dashboard.upload_to_heatmaps_s"]["met"] is True
    assert bench_report.goal_texts()["dashboard.upload_to_heatmaps_s"] == "<= 3.0"
    # a quick report's tiny models are not judged against full-run goals (a review read
    # "met: NO" for a 3.1 ms map against a 1.5 ms floor)
    quick = goals_check({**report, "quick": True})
    assert quick["training.mobilenetv2.speedup_vs_naive"] == {"value": 4.0, "goal": ">= 3.0",
                                                              "met": None}
    assert all(g["met"] is None for g in quick.values())


def test_upload_images_spread_over_classes_and_skip_byte_identical_copies(tmp_path):
    def rec(name: str, label: str, content: bytes) -> SimpleNamespace:
        path = tmp_path / f"{label}-{name}"
        path.write_bytes(content)
        return SimpleNamespace(path=path, label=label)

    a1, a2, a3 = rec("1", "a", b"one"), rec("2", "a", b"one"), rec("3", "a", b"three")
    b1, b2 = rec("1", "b", b"one"), rec("2", "b", b"two")  # b1: a copy of a1 under another class
    picks = _test_images([a1, a2, a3, b1, b2], 4)
    assert picks == [a1, b2, a3]  # round-robin a, b, a; both copies of a1 skipped; then none left
    assert _test_images([a1, a2, a3, b1, b2], 2) == [a1, b2]


def test_committed_full_report_holds_every_key_and_the_readme_quotes_its_goals():
    reports = sorted(p for p in (ROOT / "artifacts" / "bench").glob("*.json")
                     if not p.stem.endswith("-quick"))
    if not reports:
        pytest.skip("no full benchmark report committed yet")
    r = json.loads(reports[-1].read_text())
    assert r["quick"] is False and r["data"]["synthetic"] is False
    for key in ("cpu_model", "cores_usable", "tensorflow"):
        assert r["machine"][key], key
    for name in MODELS:
        t = r["training"][name]
        assert t["ours"]["reached"], f"{name}: our recipe did not reach its target"
        assert t["speedup_vs_naive"] is not None or t["speedup_vs_naive_lower_bound"], name
        assert r["explain"][name]["gradcam_ratio_to_floor"] > 0
        assert r["predict"][name]["one_image_ms"]["p50"] > 0
        assert r["predict"][name]["batch_images_per_s"] > 0
        assert r["memory"][f"train_{name}_mb"] > 0
    assert r["memory"]["dashboard_mb"] > 0
    assert r["dashboard"]["upload_to_heatmaps_s"] > 0
    assert r["dashboard"]["cold_start_to_first_render_s"] > 0
    readme = (ROOT / "README.md").read_text()
    assert f"artifacts/bench/{reports[-1].stem}.md" in readme, "README does not name the report"
    md = to_markdown(r).splitlines()
    goals = md[md.index("## Goals") + 2:]
    rows = [line for line in goals[:goals.index("")] if line.startswith("| `")]
    assert len(rows) == len(r["goals_check"]) >= 4
    for row in rows:
        assert row in readme, f"README is out of date with {reports[-1].name}: {row}"


def test_dashboard_only_keeps_the_other_sections_of_the_newest_full_report(tmp_path,
                                                                          monkeypatch,
                                                                          smoke_run):
    from pipeline.bench import runner
    from pipeline.bench.options import BenchOptions

    base = {"created": "2026-01-01T00:00:00+00:00", "quick": False,
            "machine": {"cpu_model": "X", "cores_usable": 2, "cores_logical": 2,
                        "memory_total_mb": 1000.0, "tensorflow": "2", "keras": "3",
                        "python": "3", "load_average_start": [1, 1, 1]},
            "training": {}, "explain": {},
            "predict": {}, "dashboard": {"upload_to_heatmaps_s": 9.0},
            "memory": {"dashboard_mb": 2000.0, "train_mobilenetv2_mb": 900.0}}
    (tmp_path / "2026-01-01.json").write_text(json.dumps(base))
    (tmp_path / "2026-01-02-quick.json").write_text(json.dumps({**base, "quick": True}))
    seen = {}

    def fake(run_dir, files, n, work, tick, timeout_s=300.0, other_run=None):
        seen.update(run=run_dir, files=files, other=other_run)
        return {"upload_to_heatmaps_s": 0.8, "upload_to_heatmaps_first_s": 1.2,
                "first_visit_predict_s": 2.0, "peak_rss_mb": 700.0,
                "peak_rss_two_runs_mb": 800.0, "cold_start_to_first_render_s": 3.0,
                "cold_start_to_health_s": 1.0, "upload_to_heatmaps_p95_s": 1.0,
                "uploads": [1.2, 0.8], "definition": "d"}

    def fake_stream(run_dir, images, work, counts, model):
        seen.update(stream=(run_dir, len(images), tuple(counts), model))
        return {"model": model, "format": "jpeg", "batch_size": 32, "images_per_s": 55.0,
                "rss_growth": 0.02, "targets": {"images_per_s": ">= 40", "rss_growth": "<= 0.10"},
                "runs": [{"n": n, "images_per_s": 55.0, "peak_rss_mb": 1000.0} for n in counts]}

    monkeypatch.setattr(runner, "dashboard_benchmark", fake)
    monkeypatch.setattr(runner, "stream_benchmark", fake_stream)
    out = runner.run_bench(BenchOptions(out_dir=tmp_path, run_dir=smoke_run, uploads=2,
                                        dashboard_only=True, stream_counts=(3, 5)))
    r = json.loads(out.json_path.read_text())
    assert out.json_path.name != "2026-01-01.json"  # today's report; the base stays as it was
    assert json.loads((tmp_path / "2026-01-01.json").read_text()) == base
    assert r["training"] == base["training"] and r["dashboard"]["upload_to_heatmaps_s"] == 0.8
    # the run's own training peaks (its manifest) join the memory table, beside the old rows
    models = json.loads((smoke_run / "manifest.json").read_text())["models"]
    in_run = {f"train_{m}_in_run_mb": info["peak_rss_mb"] for m, info in models.items()}
    assert in_run and all(v > 0 for v in in_run.values())
    assert r["memory"] == {**base["memory"], "dashboard_mb": 700.0, **in_run}
    assert r["goals_check"]["memory.train_mobilenetv2_in_run_mb"]["met"] is (
        in_run["train_mobilenetv2_in_run_mb"] <= 3072)
    # streaming re-measured on the same run, from its test images
    assert seen["stream"][0] == smoke_run and seen["stream"][1:] == (2, (3, 5), "mobilenetv2")
    assert r["streaming"]["images_per_s"] == 55.0
    assert r["goals_check"]["streaming.images_per_s"]["met"] is True
    assert r["goals_check"]["streaming.rss_growth"]["met"] is True
    assert r["dashboard_remeasured"]["parts"][:2] == ["dashboard", "streaming"]
    assert r["dashboard_remeasured"]["based_on"] == "2026-01-01.json"
    assert r["goals_check"]["dashboard.peak_rss_two_runs_mb"]["met"] is True
    assert r["goals_check"]["dashboard.upload_to_heatmaps_s"]["met"] is True
    assert all(Path(f).is_file() for f in seen["files"]) and len(seen["files"]) == 2
    assert seen["other"] is None  # the smoke run has no sibling run
    md = out.md_path.read_text()
    assert "Re-measured (dashboard, streaming, training memory of the run) on" in md
    assert "## Streaming predict (mobilenetv2" in md and "train_mobilenetv2_in_run" in md


# ------------------------------------------------------------------ command line


def test_package_exports_its_api_and_runs_the_training_child_entry_point():
    import pipeline.bench as bench

    assert [n for n in bench.__all__ if not hasattr(bench, n)] == []
    # `python -m pipeline.bench SPEC RESULT` is what the parent starts per recipe.
    proc = subprocess.run([sys.executable, "-m", "pipeline.bench"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "usage: python -m pipeline.bench SPEC.json RESULT.json" in proc.stderr


def test_cli_rejects_bad_input_with_one_line(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    runner = CliRunner()
    cases = [
        ([], "--data is required"),
        (["--data", str(tmp_path / "missing")], "does not exist"),
        (["--quick", "--model", "resnet"], "unknown --model"),
        (["--quick", "--max-minutes", "0"], "--max-minutes must be positive"),
        (["--quick", "--uploads", "0"], "--uploads must be at least 1"),
        (["--quick", "--target", "mobilenetv2=2"], "must be in (0, 1]"),
        (["--quick", "--run", "nope", "--artifacts", str(tmp_path)], "run 'nope' not found"),
        (["--quick", "--stream", "0,1000"], "--stream sizes must be at least 1"),
        (["--quick", "--stream", "lots"], "--stream takes folder sizes"),
    ]
    for args, message in cases:
        r = runner.invoke(app, ["bench", "--out", str(tmp_path / "out"), *args])
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output and "Traceback" not in r.output, (args, r.output)
    assert not (tmp_path / "out").exists()


def test_bench_writes_its_reports_into_the_artifacts_folder_the_environment_names(
        tmp_path, monkeypatch, smoke_run):
    """`bench` wrote to ./artifacts/bench whatever $BRAIN_MRI_ARTIFACTS said, while every other
    command (and bench's own --run) used that folder: the reports now go to its bench/
    folder, or --artifacts's, unless --out names another; --explain-only's too."""
    from types import SimpleNamespace

    from typer.testing import CliRunner

    import pipeline.bench
    import pipeline.bench.methods_latency as methods_latency
    from pipeline.artifacts import ARTIFACTS_ENV
    from pipeline.cli import app

    outs: list[Path] = []

    def fake_bench(opts, progress, say):  # where the reports would go; nothing measured
        outs.append(Path(opts.out_dir))
        return SimpleNamespace(report={"goals_check": {}}, json_path=opts.out_dir / "r.json",
                               md_path=opts.out_dir / "r.md")

    def fake_methods(run_dir, out_dir, repeats, say):
        outs.append(Path(out_dir))
        return out_dir / "m.json", out_dir / "m.png", {
            "explain_methods": {"slowest_method": "gradcam", "slowest_ms": 1.0},
            "target_ms": 2.0, "met": True}

    monkeypatch.setattr(pipeline.bench, "run_bench", fake_bench)
    monkeypatch.setattr(methods_latency, "explain_methods_bench", fake_methods)
    env_art, given = smoke_run.parent.parent, tmp_path / "given"
    (given / "runs").mkdir(parents=True)
    runner = CliRunner(env={ARTIFACTS_ENV: str(env_art)})
    for args, expected in ((["--quick"], env_art / "bench"),
                           (["--quick", "--artifacts", str(given)], given / "bench"),
                           (["--quick", "--out", str(tmp_path / "mine")], tmp_path / "mine"),
                           (["--explain-only"], env_art / "bench")):
        done = runner.invoke(app, ["bench", *args])
        assert done.exit_code == 0, (args, done.output)
        assert outs.pop() == expected, args
    assert CliRunner(env={ARTIFACTS_ENV: ""}).invoke(app, ["bench", "--quick"]).exit_code == 0
    assert outs.pop() == Path("artifacts") / "bench"  # unset or empty: ./artifacts, as before


@pytest.mark.slow
def test_bench_quick_writes_a_complete_report(tmp_path):
    from pipeline.bench.options import QUICK_METHODS

    repo_bench = ROOT / "artifacts" / "bench"
    before = sorted(p.name for p in repo_bench.iterdir()) if repo_bench.is_dir() else []
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "bench", "--quick", "--out", str(out),
         "--repeats", "3", "--uploads", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [json_path] = out.glob("*-quick.json")
    [md_path] = out.glob("*-quick.md")
    assert proc.stdout.split() == [str(json_path), str(md_path)]
    r = json.loads(json_path.read_text())
    assert r["quick"] is True and r["schema_version"] == 1
    # its phantoms' temporary folder is gone: not named by a path (a review found /tmp/...)
    assert r["data"]["synthetic"] and "/" not in r["data"]["dir"], r["data"]

    m = r["machine"]
    assert m["cores_usable"] >= 1 and m["cpu_model"] and m["tensorflow"] and m["keras"]

    for name in MODELS:
        t = r["training"][name]
        assert 0 < t["target_val_accuracy"] <= 1
        for recipe in ("ours", "naive"):
            run = t[recipe]
            assert "error" not in run, run.get("error")
            assert run["epochs"] and run["peak_rss_mb"] > 0 and run["wall_s"] > 0
            assert all(e["images_per_s"] > 0 for e in run["epochs"])
            assert run["reached"] == (run["time_to_target_s"] is not None)
        assert "speedup_vs_naive" in t  # a value, or null with a lower bound or a reason
        if t["speedup_vs_naive"] is None:
            assert t["speedup_vs_naive_lower_bound"] is not None or t["speedup_vs_naive_reason"]
        assert r["memory"][f"train_{name}_mb"] == t["ours"]["peak_rss_mb"]

        e = r["explain"][name]
        assert set(e["ours_ms"]) == set(QUICK_METHODS)  # the full run's every method: below
        assert e["gradcam_ratio_to_floor"] > 0 and math.isfinite(e["gradcam_ratio_to_floor"])
        assert e["floor_ms"]["p50"] > 0 and e["tf_keras_vis_gradcam_per_request_ms"]["p50"] > 0
        p = r["predict"][name]
        assert p["one_image_ms"]["p50"] > 0 and p["batch_images_per_s"] > 0

    d = r["dashboard"]
    assert "upload_to_heatmaps_s" in d and "dashboard_mb" in r["memory"]
    if CHROMIUM.is_file():
        assert d["error"] is None and d["skipped"] is None, d
        assert len(d["uploads"]) == 2 and d["upload_to_heatmaps_s"] > 0
        assert d["cold_start_to_first_render_s"] > 0 and r["memory"]["dashboard_mb"] > 0
    else:
        assert d["upload_to_heatmaps_s"] is None and d["skipped"]
        assert r["memory"]["dashboard_mb_reason"]
    assert set(r["goals_check"]) >= {"training.mobilenetv2.speedup_vs_naive",
                                     "dashboard.upload_to_heatmaps_s",
                                     *(f"explain.{n}.gradcam_ratio_to_floor" for n in MODELS)}

    md = md_path.read_text()
    for heading in ("## Training", "## Explanation latency", "## Prediction", "## Dashboard",
                    "## Memory", "## Goals"):
        assert heading in md
    after = sorted(p.name for p in repo_bench.iterdir()) if repo_bench.is_dir() else []
    assert after == before  # the test writes only into its tmp folder


@pytest.mark.slow
def test_streaming_benchmark_measures_each_folder_in_a_child(smoke_run, tmp_path):
    from pipeline.bench.streaming import jpeg_folder, stream_benchmark

    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (80, 90, 3), dtype=np.uint8) for _ in range(3)]
    folder = jpeg_folder(imgs, 5, tmp_path / "jpegs")
    assert sorted(p.name for p in folder.iterdir()) == [f"slice-{i:06d}.jpg" for i in range(5)]
    assert (folder / "slice-000000.jpg").read_bytes() == (folder / "slice-000003.jpg").read_bytes()
    st = stream_benchmark(smoke_run, imgs, tmp_path / "work", counts=(4, 9), model="custom_cnn")
    assert [r["n"] for r in st["runs"]] == [4, 9]
    for r in st["runs"]:
        assert "error" not in r, r
        assert r["written"] == r["n"] and r["failed"] == 0
        assert r["images_per_s"] > 0 and r["peak_rss_mb"] > 0
    assert st["rss_growth"] == round(st["runs"][1]["peak_rss_mb"] / st["runs"][0]["peak_rss_mb"]
                                     - 1, 4)
    from pipeline.bench.report import _md_streaming

    md = "\n".join(_md_streaming(st))  # the report's section (a full report needs every part)
    assert "## Streaming predict (custom_cnn" in md and "| 9 |" in md


def test_a_goal_line_says_met_in_words():
    """`bench` printed "met: None" for a figure it had not measured."""
    from pipeline.cli.bench_cmd import _goal_line

    met = {"value": 3, "goal": "<= 5", "met": True}
    assert _goal_line("x", met) == "x: 3 (goal <= 5, met: yes)"
    assert _goal_line("x", {"value": 7, "goal": "<= 5", "met": False}).endswith("met: NO)")
    assert _goal_line("x", {"value": None, "goal": ">= 2", "met": None}) == \
        "x: - (goal >= 2, met: not measured)"
    # a --quick run's figures are measured but not judged: "not measured" beside a value was
    # wrong (a review)
    assert _goal_line("x", {"value": 1.255, "goal": "<= 1.5", "met": None}) == \
        "x: 1.255 (goal <= 1.5, met: not judged (--quick))"


def test_prediction_latency_times_only_the_models_asked_for(smoke_run: Path) -> None:
    """`bench --model custom_cnn` timed MobileNetV2's prediction too (a review): the Predictor
    loaded every model of the run. Only those asked for now, and no "both models" row for one."""
    from pipeline.artifacts import open_run
    from pipeline.bench.latency import predict_benchmark

    raw = [np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)]
    out = predict_benchmark(open_run(smoke_run), raw, 2, True, lambda what: None,
                            ["custom_cnn"])
    assert "custom_cnn" in out and "mobilenetv2" not in out, list(out)
    assert "both_models_one_image_ms" not in out
    both = predict_benchmark(open_run(smoke_run), raw, 2, True, lambda what: None)
    assert {"custom_cnn", "mobilenetv2", "both_models_one_image_ms"} <= set(both)
