"""The paired comparison of two models in words, from comparison.json: the verdict (worded
again from the stored figures), the McNemar counts and the accuracy gap with its interval."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dashboard.figures.common import model_label


def _images(count: Any) -> str:
    """A count of images in words: "1 image", "3 images"; "? images" when it is missing."""
    is_one = count == 1 and not isinstance(count, bool)
    return f"{count if count is not None else '?'} image{'' if is_one else 's'}"


def comparison_verdict(comparison: Mapping[str, Any]) -> str | None:
    """The paired comparison's sentence in today's words (`evaluate.comparison.verdict_of`)."""
    from pipeline.evaluate.comparison import verdict_of

    return verdict_of(dict(comparison))


def difference_sentence(comparison: Mapping[str, Any]) -> str | None:
    """"Accuracy, MobileNetV2 minus Custom CNN: +6.1 points (95% paired bootstrap interval
    +3.1 to +9.4)." from comparison.json: by how much, which the verdict does not say."""
    diff = comparison.get("difference") or {}
    ci = ((comparison.get("ci") or {}).get("difference") or {}).get("accuracy")
    pair = list(diff.get("models") or [])
    value = diff.get("accuracy")
    if (len(pair) != 2 or not isinstance(value, (int, float)) or not isinstance(ci, list)
            or len(ci) != 2):
        return None
    # stored as first minus second; said as the more accurate minus the other
    sign = -1 if value < 0 else 1
    lo, hi = sorted(sign * 100 * float(v) for v in ci)
    a, b = (pair[1], pair[0]) if sign < 0 else (pair[0], pair[1])
    return (f"Accuracy, {model_label(a)} minus {model_label(b)}: {sign * 100 * value:+.1f} "
            f"points (95% paired bootstrap interval {lo:+.1f} to {hi:+.1f}).")


def mcnemar_sentence(comparison: Mapping[str, Any], pair: Sequence[str]) -> str:
    """The caption of the paired test: how many images only each model got right, p and the
    agreement, from comparison.json ("1 image only Custom CNN got right", not "1 images")."""
    mc = comparison.get("mcnemar") or {}
    p_value, agree = mc.get("p_value"), comparison.get("agreement")
    n = comparison.get("n")
    return (f"McNemar exact test on {n if n is not None else '?'} paired test "
            f"image{'' if n == 1 else 's'}: "
            f"{_images(mc.get('b'))} only {model_label(pair[0])} got right, "
            f"{mc.get('c', '?')} only {model_label(pair[1])} got right"
            + (f", p = {p_value:.3g}. " if isinstance(p_value, (int, float)) else ". ")
            + (f"The models agree on {agree:.1%} of the images."
               if isinstance(agree, (int, float)) else ""))
