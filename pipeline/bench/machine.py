"""What the benchmark ran on: CPU, cores (and the container's CPU quota), memory, load, versions.

A figure measured on a shared 2-core machine means little without these, so every report starts
with them.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from pipeline.bench.browser import chromium_version
from pipeline.provenance import cpu_facts


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded: above the core count, others were busy."""
    return [round(v, 2) for v in os.getloadavg()]


def machine_facts() -> dict[str, Any]:
    """Cores, CPU model, memory, load and library versions of the machine measured on."""
    return {
        **cpu_facts(),  # cpu_model, cpu_features
        "cores_logical": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cgroup_cpu_limit": _cgroup_cpus(),
        "memory_total_mb": _mem_total_mb(),
        "gpu": "none used (tensorflow-cpu)",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": _version("tensorflow-cpu") or _version("tensorflow"),
        "keras": _version("keras"),
        "numpy": _version("numpy"),
        "tf_keras_vis": _version("tf-keras-vis"),
        "streamlit": _version("streamlit"),
        "playwright": _version("playwright"),
        "chromium": chromium_version(),
        "load_average_start": load_average(),
    }


def _mem_total_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_cpus() -> float | None:
    """CPU quota of this container in cores (cgroup v2 cpu.max), None when unlimited/unknown."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else round(int(quota) / int(period), 2)


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return None
