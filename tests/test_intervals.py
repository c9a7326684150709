"""pipeline.intervals: the Wilson interval's one home, checked against scipy and by hand."""

from __future__ import annotations

import subprocess
import sys

import pytest
from scipy import stats

from pipeline.intervals import share_interval


@pytest.mark.parametrize("n", [1, 2, 26, 75, 415])
def test_share_interval_is_scipy_s_wilson_interval(n: int) -> None:
    for hits in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        want = stats.binomtest(hits, n).proportion_ci(0.95, method="wilson")
        assert share_interval(hits, n) == pytest.approx([want.low, want.high], abs=1e-12)
    want = stats.binomtest(n // 2, n).proportion_ci(0.9, method="wilson")
    assert share_interval(n // 2, n, 0.9) == pytest.approx([want.low, want.high], abs=1e-12)


def test_share_interval_by_hand() -> None:
    # 386 of 415 (the reference run's Custom CNN sensitivity): p = 0.93012, z = 1.95996;
    # centre (p + z²/2n) / (1 + z²/n) = 0.92617, half-width 0.02473
    assert share_interval(386, 415) == pytest.approx([0.90144, 0.95091], abs=1e-5)
    # 17 of 26 (a pointing game on the Testing/ run's boxes): 0.462-0.806
    assert share_interval(17, 26) == pytest.approx([0.4622, 0.8059], abs=1e-4)
    lo, hi = share_interval(26, 26)
    assert hi == 1.0 and lo == pytest.approx(0.8713, abs=1e-4)  # all hits still leave room
    assert share_interval(0, 0) is None
    with pytest.raises(ValueError, match="hits"):
        share_interval(5, 4)


def test_the_interval_costs_no_scipy_import() -> None:
    """The dashboard's screening chart uses it; its first page must not wait for scipy.stats."""
    code = ("import sys, pipeline.intervals as i; i.share_interval(3, 4); "
            "print('scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_the_interval_loads_no_tensorflow_or_keras() -> None:
    """Its callers (the dashboard's charts, explain-eval's summary) import it from here: through
    `pipeline.explain` it came from `explain/metrics.py`, which loads Keras (seconds)."""
    code = ("import sys, pipeline.intervals as i; i.share_interval(3, 4); "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    import pipeline.explain

    assert "share_interval" not in pipeline.explain.__all__  # one way in: its home
