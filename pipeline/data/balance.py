"""Oversampling that stops pixel size from paying as a class cue (the audit's `size_cue`).

In the Sartaj data nearly every tumour image is a 512x512 export of one collection and nearly
every no-tumour image comes from elsewhere at other sizes, so "looks like that collection" means
"tumour". Within each class, the images of the rarer group (the dataset's commonest size, or
any other size) are repeated until both groups weigh about the same, at most `most` copies each:
group balancing, as in Idrissi et al. 2022 ("Simple data balancing achieves competitive
worst-group accuracy").
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from PIL import Image

from pipeline.data.arrays import LoadedArrays
from pipeline.names import size_label


def native_size(path: Any) -> str:
    """"WxH" from the file's header (no decoding), or "?" when Pillow cannot tell (DICOM)."""
    try:
        with Image.open(path) as im:
            return size_label(im.width, im.height)
    except Exception:  # unreadable headers form their own group; decoding reports real errors
        return "?"


def common_size(paths: list[Any]) -> tuple[str, list[str]]:
    """The commonest native size among `paths` ("?" if none) and each path's own size."""
    sizes = [native_size(p) for p in paths]
    return (Counter(sizes).most_common(1)[0][0] if sizes else "?"), sizes


def balance_sizes(train: LoadedArrays, classes: list[str], most: int
                  ) -> tuple[LoadedArrays, dict[str, Any]]:
    """`train` with each class's rarer size group repeated (at most `most` copies per image) and
    a summary: the common size and, per class, the group sizes and copies made."""
    common, sizes = common_size([r.path for r in train.records])
    is_common = np.array([s == common for s in sizes], dtype=bool)
    index = [np.arange(len(sizes))]
    per_class: dict[str, Any] = {}
    for c, name in enumerate(classes):
        mine = train.y == c
        n_common, n_other = int((mine & is_common).sum()), int((mine & ~is_common).sum())
        if not n_common or not n_other or most < 2:
            continue
        rare_is_common = n_common < n_other
        copies = min(most, round(max(n_common, n_other) / min(n_common, n_other)))
        if copies < 2:
            continue
        rare = np.flatnonzero(mine & (is_common if rare_is_common else ~is_common))
        index.extend([rare] * (copies - 1))
        per_class[name] = {"common_size": n_common, "other_sizes": n_other,
                           "repeated": "common_size" if rare_is_common else "other_sizes",
                           "copies": copies}
    idx = np.concatenate(index)
    out = LoadedArrays(train.x[idx], train.y[idx], [train.records[i] for i in idx],
                       train.failed)
    return out, {"common_size": common, "classes": per_class,
                 "n_before": len(sizes), "n_after": len(idx)}
