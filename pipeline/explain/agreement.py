"""Do the two models' heatmaps point at the same place? The rule, its words and its record on a
run's boxed test images, in one home that imports no TensorFlow (the dashboard, `explain` and
`explain-eval` use it).

Why: a heatmap that misses the tumour looks as confident as one that hits it, and one model's
map cannot tell which it is. Two models that learnt differently rarely miss in the same place,
so peaks far apart mean that at least one map is off the tumour. Measured on the shipped runs'
boxed validation images (each model's default method, the true class explained, 2026-12-06):
with the peaks more than PEAKS_APART of the frame apart, at least one peak missed the box for 33
of 38 images on the main split (47 of 314 where the peaks were closer) and 38 of 39 on the
official run (33 of 306). The threshold was chosen there, as the smallest of 0.05, 0.10, ...
0.30 at which at least four in five flagged images had a miss on both runs; it flags 11 % of
those images. Measured once on the main split's boxed test images afterwards: 37 of 41 (45 of
301 elsewhere). It finds fewer than half the images where a map misses: two maps can miss
together, so no warning is no all-clear.

Only for maps the rule was measured on: each model's default method, one tumour class explained
by both, frames cropped alike (a peak is a fraction of its model's frame, comparable only when
both frames show the same part of the image). A "no tumour" map has no tumour to point at.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from pipeline.names import NO_TUMOR

# peaks further apart than this share of the (square, head-cropped) frame's side: at least one
# of the two maps is probably off the tumour (chosen on validation boxes, see above)
PEAKS_APART = 0.15
APART_MESSAGE = "the two heatmaps point at different places"
# what it means, after the tag in explain's legend (the card's warning, `apart_sentence`, says
# it of the image in hand)
APART_MEANING = (f"the two models' default heatmaps explain the same tumour class, but their "
                 f"hottest points are more than {PEAKS_APART:.0%} of the picture's side apart, "
                 "so at least one of them is probably not on the tumour: read both, and trust "
                 "neither alone")


class MapFacts(NamedTuple):
    """What the rule needs of one model's map of one image."""

    peak: Sequence[float] | None  # (y, x) fractions of the frame (`render.heatmap_stats`)
    target: str  # the class it explains
    default: bool  # made with the model's default method and layer
    crop: bool  # the model's frame is head-cropped


def maps_apart(maps: Sequence[MapFacts]) -> float | None:
    """The peaks' distance when the rule applies and finds them apart (`peaks_apart`): two
    maps, each its model's default, one tumour class explained by both, frames cropped alike.
    None otherwise: the rule was measured on nothing else."""
    if len(maps) != 2 or not all(m.default for m in maps):
        return None
    a, b = maps
    if a.target != b.target or a.target == NO_TUMOR or a.crop != b.crop:
        return None
    return peaks_apart(a.peak, b.peak)


def peak_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Distance between two peaks given as (y, x) fractions of their frames, in frame sides."""
    return math.hypot(float(a[0]) - float(b[0]), float(a[1]) - float(b[1]))


def peaks_apart(a: Sequence[float] | None, b: Sequence[float] | None) -> float | None:
    """The peaks' distance when it exceeds PEAKS_APART, else None (also when a map has no
    peak: an empty map is flagged on its own)."""
    if a is None or b is None:
        return None
    d = peak_distance(a, b)
    return d if d > PEAKS_APART else None


def apart_sentence(distance: float, record: Mapping[str, int] | None = None) -> str:
    """The card's warning: what the distance means, and with `record` (`apart_record`) how
    often it meant a miss on the run's boxed test images."""
    text = (f"{APART_MESSAGE.capitalize()} (their hottest points are {distance:.0%} of the "
            "picture's side apart): at least one of them is probably not on the tumour. Read "
            "both, and trust neither alone.")  # APART_MEANING, said of this image
    if record and record.get("n_apart"):
        text += (f" On this run's test images with a known tumour box, where the peaks were this "
                 f"far apart at least one missed the box {record['apart_missed']} of "
                 f"{record['n_apart']} times; {record['together_missed']} of "
                 f"{record['n_together']} where they were closer.")
    return text


def _rows_by_path(rows: Any) -> dict[str, Mapping[str, Any]]:
    out = {}
    for r in rows or []:
        if (isinstance(r, Mapping) and isinstance(r.get("path"), str)
                and isinstance(r.get("pointing_hit"), bool) and r.get("peak") is not None):
            out[r["path"]] = r
    return out


def apart_record(explanations: Mapping[str, Mapping[str, Any]]) -> dict[str, int] | None:
    """The rule on a run's boxed test images, from two models' `explanations.json` per-image
    rows (peak, whether it hit the box, the class explained): how many pairs had their peaks
    apart, and in how many of those, and of the others, at least one peak missed. None without
    exactly two models with such rows, or no image they share."""
    if len(explanations) != 2:
        return None
    a, b = (_rows_by_path(e.get("rows")) for e in explanations.values())
    record = {"n_apart": 0, "apart_missed": 0, "n_together": 0, "together_missed": 0}
    for path in sorted(set(a) & set(b)):
        ra, rb = a[path], b[path]
        if ra.get("target") != rb.get("target"):
            continue
        missed = not (ra["pointing_hit"] and rb["pointing_hit"])
        key = "apart" if peaks_apart(ra["peak"], rb["peak"]) is not None else "together"
        record[f"n_{key}"] += 1
        record[f"{key}_missed"] += missed
    return record if record["n_apart"] + record["n_together"] else None


def default_apart_record(run: Any, explanations: Mapping[str, Mapping[str, Any]]
                         ) -> dict[str, int] | None:
    """`apart_record` of a run's two models' explain-eval results (explanations.json, or one
    external folder's), when the rule applies to them: each measures its model's default
    method and layer, and both models crop the head alike. None otherwise."""
    from pipeline.artifacts import crop_head
    from pipeline.explain.defaults import is_default

    if len(explanations) != 2 or not all(
            isinstance(e, Mapping) and is_default(run, m, e.get("method"), e.get("layer"))
            for m, e in explanations.items()):
        return None
    if len({crop_head(run.model_info(m)) for m in explanations}) != 1:
        return None
    return apart_record(explanations)


def record_line(record: Mapping[str, int], region: str = "mask",
                images: str = "images") -> str:
    """The rule's record in one line (explain-eval's; the quality page's `record_sentence`):
    how many of the `images` with a `region` had their peaks apart, and the misses there and
    elsewhere."""
    n = record["n_apart"] + record["n_together"]
    return (f"{APART_MESSAGE} (hottest points more than {PEAKS_APART:.0%} of the picture's "
            f"side apart, both models' defaults explaining one class) on {record['n_apart']} of "
            f"{n} {images} with a {region}: at least one peak missed the {region} "
            f"{record['apart_missed']} of {record['n_apart']} times there, "
            f"{record['together_missed']} of {record['n_together']} elsewhere")


def record_sentence(record: Mapping[str, int], region: str = "box") -> str:
    """The quality page's line: the rule's record on the run's boxed test images, and where
    the warning is given."""
    line = record_line(record, region, "test images")
    return (f"{line[0].upper()}{line[1:]}. The Predict page warns when an upload's two default "
            "heatmaps explain one tumour class this far apart.")
