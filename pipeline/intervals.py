"""Confidence intervals of a share (k of n), in closed form with the standard library only.

One home for the Wilson score interval: the explanation metrics (pointing game) and the
dashboard's screening chart (sensitivity, specificity) both use it. No scipy here: the
dashboard's first page must not wait for `scipy.stats` (pipeline/lazy.py says why).
"""

from __future__ import annotations

import math
from statistics import NormalDist

N_BOOT = 2000  # bootstrap resamples for the intervals without a closed form (evaluate.comparison)
WILSON = "Wilson score interval"  # its name in comparison.json's "ci_method" and on the pages


def share_interval(hits: int, n: int, confidence: float = 0.95) -> list[float] | None:
    """Wilson score interval `[lo, hi]` of a hit share such as the pointing game or a
    sensitivity (the same as scipy's `binomtest(...).proportion_ci(method="wilson")`); None
    without images. On 26-48 boxed test images the share alone hides how wide this is (17 of
    26 hits: 0.46-0.81)."""
    if n <= 0:
        return None
    if not 0 <= hits <= n:
        raise ValueError(f"hits must lie in [0, n], got {hits} of {n}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p, z2 = hits / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # clipped: at 0 or n hits an end is 0 or 1 exactly, up to rounding
    return [max(0.0, centre - half), min(1.0, centre + half)]
