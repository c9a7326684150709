"""Where a run or a benchmark came from: the code's commit, the library versions, the processor.

The manifest and the benchmark report record these so that two figures can be told apart by
what produced them (TensorFlow's CPU kernels differ between processors).
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def library_versions() -> dict[str, str]:
    import keras
    import numpy
    import tensorflow

    return {"python": platform.python_version(), "tensorflow": tensorflow.__version__,
            "keras": keras.__version__, "numpy": numpy.__version__}


# The vector instructions TensorFlow's CPU kernels choose between: runs trained on processors
# that differ here may differ in the last digits and, over many epochs, in their figures.
CPU_FEATURES = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
                "amx_tile")


def cpu_facts(cpuinfo: str | None = None) -> dict[str, Any]:
    """The processor a run was trained on: model name and which of CPU_FEATURES it has (from
    /proc/cpuinfo; `cpuinfo` text for tests). Without /proc: the platform's processor name."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return {"cpu_model": platform.processor() or platform.machine(), "cpu_features": None}
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return {"cpu_model": model or platform.processor() or platform.machine(),
            "cpu_features": [f for f in CPU_FEATURES if f in flags]}
