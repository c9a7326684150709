"""Timing calls and measuring child processes: latency summaries, round-robin timing, peak RSS.

Peak RSS is `VmHWM` from /proc, not `ru_maxrss`: the package docstring says why.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import PROJECT_ROOT
from pipeline.bench.errors import BenchError
from pipeline.memory import proc_memory_mb


def summarize_ms(times_ms: Sequence[float]) -> dict[str, Any]:
    """p50, p95, mean and min of a list of milliseconds (rounded to 0.01 ms), plus n."""
    arr = np.asarray(times_ms, dtype=float)
    if arr.size == 0:
        raise BenchError("no timings to summarise")
    return {"p50": round(float(np.percentile(arr, 50)), 2),
            "p95": round(float(np.percentile(arr, 95)), 2),
            "mean": round(float(arr.mean()), 2), "min": round(float(arr.min()), 2),
            "n": int(arr.size)}


def _time_ms(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> dict[str, Any]:
    """Warm `fn` up, then summarize_ms over `repeats` timed calls."""
    for _ in range(warmup):
        fn()
    return summarize_ms([_time_ms(fn) for _ in range(repeats)])


def time_round_robin(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 2
                     ) -> dict[str, dict[str, Any]]:
    """Time several functions interleaved (a, b, c, a, b, c, ...) so drifting load hits all."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(_time_ms(fn))
    return {k: summarize_ms(v) for k, v in times.items()}


def run_measured(cmd: Sequence[str], log_path: Path, timeout_s: float,
                 env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a child process to its end; its exit code, wall time and own peak RSS (MB).

    The peak is the child's `VmHWM`, polled every 0.1 s while it runs (it only grows, so the
    last reading is at most 0.1 s stale; the training children also report it themselves).
    A child still running after `timeout_s` is killed (`timed_out: true`).
    """
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=PROJECT_ROOT)
    timed_out, peak = False, None
    while proc.poll() is None:
        hwm = proc_memory_mb(proc.pid)
        if hwm is not None:
            peak = max(peak or 0.0, hwm)
        if time.monotonic() - t0 > timeout_s:
            timed_out = True
            proc.kill()
            proc.wait()
            break
        time.sleep(0.1)
    return {"returncode": proc.returncode, "wall_s": round(time.monotonic() - t0, 2),
            "peak_rss_mb": peak, "timed_out": timed_out}


def tail(path: Path, lines: int = 12) -> str:
    """The last `lines` lines of a child's log ("" when unreadable), for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
