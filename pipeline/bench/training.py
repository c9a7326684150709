"""The training race, parent side: both recipes for every model, each in a child process.

The child is `python -m pipeline.bench SPEC.json RESULT.json` (`recipes.worker_main`). Its peak
RSS is the larger of what it reports itself at its end and what the parent polled while it ran
(`timing.run_measured`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.artifacts import PROJECT_ROOT, write_json_atomic
from pipeline.bench.options import BenchOptions
from pipeline.bench.timing import run_measured, tail


def speedup(ours: dict[str, Any], naive: dict[str, Any]) -> dict[str, Any]:
    """speedup_vs_naive = naive time-to-target / ours, or a lower bound, or null with a reason.

    When the naive recipe never reached the target, its whole (capped) wall time is still less
    than its unknown time-to-target, so wall / ours is a lower bound of the speed-up.
    """
    out: dict[str, Any] = {"speedup_vs_naive": None, "speedup_vs_naive_lower_bound": None,
                           "naive_reached": bool(naive.get("reached")),
                           "ours_reached": bool(ours.get("reached"))}
    if ours.get("error") or naive.get("error"):
        out["speedup_vs_naive_reason"] = "a recipe failed: " + "; ".join(
            f"{k}: {r['error']}" for k, r in (("ours", ours), ("naive", naive)) if r.get("error"))
        return out
    t_ours = ours.get("time_to_target_s")
    if not ours.get("reached") or not t_ours:
        out["speedup_vs_naive_reason"] = (
            f"our recipe did not reach val accuracy {ours.get('target')} (best "
            f"{ours.get('best_val_accuracy')}, stopped: {ours.get('stopped')})")
        return out
    if naive.get("reached"):
        out["speedup_vs_naive"] = round(naive["time_to_target_s"] / t_ours, 2)
    else:
        out["speedup_vs_naive_lower_bound"] = round(naive["wall_s"] / t_ours, 2)
        out["speedup_vs_naive_reason"] = (
            f"the naive recipe did not reach val accuracy {naive.get('target')} in "
            f"{naive.get('wall_s')} s (best {naive.get('best_val_accuracy')}, stopped: "
            f"{naive.get('stopped')}); the speed-up is at least the lower bound")
    return out


def training_benchmark(opts: BenchOptions, cfg: Any, classes: list[str], data_dir: Path,
                       splits_file: Path, work: Path, tick: Callable[[str], None]
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both recipes for every model, each in a child process; (training, memory) sections."""
    training: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    for name in opts.models:
        results = {}
        for recipe in ("ours", "naive"):
            tick(f"training {name}: {recipe} recipe")
            spec = {"recipe": recipe, "model": name, "train_config": cfg.to_dict(),
                    "classes": classes, "data_dir": str(data_dir),
                    "splits_file": str(splits_file), "target": opts.targets[name],
                    "max_seconds": float(opts.max_minutes) * 60,
                    "naive_max_epochs": opts.naive_max_epochs}
            results[recipe] = run_recipe(spec, work)
        training[name] = {"target_val_accuracy": opts.targets[name], **results,
                          **speedup(results["ours"], results["naive"])}
        for key, recipe in ((f"train_{name}_mb", "ours"), (f"train_{name}_naive_mb", "naive")):
            memory[key] = results[recipe]["peak_rss_mb"]
            if memory[key] is None:
                memory[f"{key}_reason"] = results[recipe].get("error") or \
                    "no /proc/PID/status to read the peak RSS from (not Linux?)"
    return training, memory


def run_recipe(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """One recipe in a child process: its result, or an `error` with the tail of its log."""
    name, recipe, max_s = spec["model"], spec["recipe"], spec["max_seconds"]
    spec_path = work / f"spec-{name}-{recipe}.json"
    result_path = work / f"result-{name}-{recipe}.json"
    log_path = work / f"log-{name}-{recipe}.txt"
    write_json_atomic(spec_path, spec)
    # The cap is checked at epoch ends; the hard limit only catches a hung child.
    proc = run_measured([sys.executable, "-m", "pipeline.bench", str(spec_path),
                         str(result_path)], log_path, timeout_s=2 * max_s + 900, env=_child_env())
    if proc["returncode"] == 0 and result_path.is_file():
        res = json.loads(result_path.read_text())
    else:
        why = "killed after the hard time limit" if proc["timed_out"] else \
            f"exit code {proc['returncode']}"
        res = {"recipe": recipe, "model": name, "target": spec["target"],
               "reached": False, "time_to_target_s": None,
               "error": f"{why}: {tail(log_path, 6)}"}
    res["process_wall_s"] = proc["wall_s"]
    peaks = [v for v in (res.get("self_peak_rss_mb"), proc["peak_rss_mb"]) if v]
    res["peak_rss_mb"] = max(peaks) if peaks else None
    return res


def _child_env() -> dict[str, str]:
    # The child must import this checkout's `pipeline` whatever the caller's working directory.
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                        os.environ.get("PYTHONPATH")]))}
