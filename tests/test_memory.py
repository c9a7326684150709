"""pipeline.memory: this process's resident set and its peak, read from /proc, restartable."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from pipeline.memory import peak_rss_mb, proc_memory_mb, reset_peak, rss_mb

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_peak_covers_a_freed_allocation_until_reset():
    start = rss_mb()
    assert start is not None and peak_rss_mb() >= start > 0
    ballast = np.ones(300 * 2**20, np.uint8)  # 300 MB, every page touched
    assert rss_mb() >= start + 250
    high = peak_rss_mb()
    assert high >= start + 250
    del ballast
    assert rss_mb() < high - 200  # freed: resident no more ...
    assert peak_rss_mb(reset=True) == pytest.approx(high, abs=5)  # ... but still the peak
    if not reset_peak():
        pytest.skip("this kernel does not let a process restart its peak count")
    assert peak_rss_mb() < high - 200  # the next stretch's own peak


def test_missing_process_gives_none():
    assert proc_memory_mb(2**22 + 12345) is None
