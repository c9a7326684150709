"""This process's memory as the kernel counts it: resident set now and its peak (Linux /proc).

Peak RSS is `VmHWM` from /proc/<pid>/status, not `ru_maxrss` (which a forked child inherits
from its parent, see `pipeline.bench`). `peak_rss_mb(reset=True)` also restarts the count
(writing 5 to /proc/self/clear_refs, Linux 4.0+), so a long process can report the peak of each
stretch of its work (one model's training, then the next) rather than of everything so far.
Everything here returns None where /proc is not available (not Linux), never raises.
"""

from __future__ import annotations

from pathlib import Path


def proc_memory_mb(pid: int | str = "self", field: str = "VmHWM") -> float | None:
    """`VmHWM` (peak RSS of the current program) or `VmRSS` of a process in MB, from /proc.

    None where /proc is unavailable (not Linux) or the process is gone.
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)  # the kernel reports kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_mb() -> float | None:
    """This process's resident set now, in MB."""
    return proc_memory_mb("self", "VmRSS")


def reset_peak() -> bool:
    """Restart this process's peak RSS count from its resident set now; False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb(reset: bool = False) -> float | None:
    """This process's peak RSS in MB: since it started, or since the last `reset=True` call.
    With `reset`, the count then restarts (if the kernel allows it), so the next call reports
    only what follows."""
    peak = proc_memory_mb("self", "VmHWM")
    if reset:
        reset_peak()
    return peak
