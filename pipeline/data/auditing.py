"""Audit of a dataset: counts, image sizes and modes, unreadable files, duplicates and leakage.

Pure reading and hashing: no TensorFlow, so `pipeline audit` starts fast.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from pipeline.data.discovery import Dataset
from pipeline.data.duplicates import (
    NEAR_DUPLICATE_METHOD,
    NEAR_DUPLICATE_THRESHOLD,
    group_duplicates,
)
from pipeline.data.hashing import hash_files
from pipeline.names import Progress


def audit(ds: Dataset, progress: Progress | None = None, examples: int = 5) -> dict[str, Any]:
    """Counts, sizes, modes, unreadable files, exact and near duplicates, leakage, conflicts.

    Keys: `root`, `layout`, `binary`, `classes`, `n_images`, `counts` ({split: {class: n}}),
    `unreadable` (rel paths), `unreadable_reasons` ({rel: reason}), `sizes` (top sizes),
    `n_distinct_sizes`, `modes`, `formats`, `exact_duplicate_groups`, `exact_duplicate_extra_files`
    (copies beyond the first of each group), `cross_split_duplicates` (test-split images with an
    exact copy in the training split), `cross_split_duplicate_groups` (exact groups spanning
    splits), `cross_class_duplicates` (exact groups spanning classes: label conflicts),
    `near_duplicate_groups` (exact+near components holding at least two different files),
    `duplicate_groups` (all components of size >= 2), `images_in_duplicate_groups`,
    `largest_duplicate_group`, `cross_split_near_duplicates` (test images with an exact or near
    copy in training), `cross_class_near_duplicate_groups`, `near_duplicate_method`,
    `near_duplicate_threshold`, `examples` and `seconds`. Unreadable files are listed, never fatal.
    """
    t0 = time.perf_counter()
    infos = hash_files(ds.records, progress)
    bad = [r for r in ds.records if infos[r.rel].error]
    good = [r for r in ds.records if not infos[r.rel].error]
    groups = group_duplicates(good, infos)
    if progress:
        progress("comparing hashes", 1, 1)

    sizes = Counter(f"{infos[r.rel].width}x{infos[r.rel].height}" for r in good)
    modes = Counter(infos[r.rel].mode or "?" for r in good)
    formats = Counter(infos[r.rel].format or "?" for r in good)

    def rels(idx: Iterable[int]) -> list[str]:
        return [good[i].rel for i in idx]

    def spans(idx: list[int], attr: str) -> bool:
        return len({getattr(good[i], attr) for i in idx}) > 1

    exact = groups.exact
    xsplit_groups = [g for g in exact if len({good[i].split for i in g} - {None}) > 1]
    xclass_groups = [g for g in exact if spans(g, "label")]
    sha_splits: dict[str, set[str | None]] = defaultdict(set)
    for r in good:
        sha_splits[infos[r.rel].sha1].add(r.split)
    cross_split = sum(1 for r in good if r.split == "test"
                      and "train" in sha_splits[infos[r.rel].sha1])

    multi = [c for c in groups.components if len(c) > 1]
    near_groups = [c for c in multi if len({infos[good[i].rel].sha1 for i in c}) > 1]
    comp_splits = [{good[i].split for i in c} for c in groups.components]
    cross_split_near = sum(1 for i, r in enumerate(good) if r.split == "test"
                           and "train" in comp_splits[groups.component_of[i]])
    xclass_near = [c for c in multi if spans(c, "label")]

    def show(gs: list[list[int]], attr: str | None = None) -> list[list[str]]:
        """Largest groups first; members ordered so that different splits/classes show first."""
        out = []
        for g in sorted(gs, key=lambda g: (-len(g), g[0]))[:examples]:
            if attr:
                seen: set[Any] = set()
                first = [i for i in g if not (getattr(good[i], attr) in seen
                                              or seen.add(getattr(good[i], attr)))]
                g = first + [i for i in g if i not in first]
            out.append(rels(g)[:8])
        return out

    closest = sorted(((d, i, j) for i, j, d in groups.pairs
                      if infos[good[i].rel].sha1 != infos[good[j].rel].sha1))
    return {
        "root": str(ds.root),
        "layout": ds.layout,
        "binary": ds.binary,
        "classes": list(ds.classes),
        "n_images": len(ds.records),
        "n_readable": len(good),
        "counts": ds.counts(),
        "ignored_folders": list(ds.ignored),
        "unreadable": [r.rel for r in bad],
        "unreadable_reasons": {r.rel: infos[r.rel].error for r in bad},
        "sizes": [{"size": s, "count": n} for s, n in sizes.most_common(10)],
        "n_distinct_sizes": len(sizes),
        "modes": dict(modes.most_common()),
        "formats": dict(formats.most_common()),
        "exact_duplicate_groups": len(exact),
        "exact_duplicate_extra_files": sum(len(g) - 1 for g in exact),
        "cross_split_duplicates": cross_split,
        "cross_split_duplicate_groups": len(xsplit_groups),
        "cross_class_duplicates": len(xclass_groups),
        "near_duplicate_groups": len(near_groups),
        "near_duplicate_pairs": len(closest),
        "duplicate_groups": len(multi),
        "images_in_duplicate_groups": sum(len(c) for c in multi),
        "largest_duplicate_group": max((len(c) for c in multi), default=0),
        "cross_split_near_duplicates": cross_split_near,
        "cross_class_near_duplicate_groups": len(xclass_near),
        "near_duplicate_method": NEAR_DUPLICATE_METHOD,
        "near_duplicate_threshold": NEAR_DUPLICATE_THRESHOLD,
        "examples": {
            "exact": show(exact),
            "cross_split": show(xsplit_groups, "split"),
            "cross_class": show(xclass_near, "label"),
            "near": show(near_groups),
            "near_pairs": [{"a": good[i].rel, "b": good[j].rel, "distance": d}
                           for d, i, j in closest[:examples]],
        },
        "seconds": round(time.perf_counter() - t0, 2),
    }
