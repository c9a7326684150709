"""Audit of a dataset: counts, image sizes and modes, unreadable files, duplicates and leakage.

Pure reading and hashing: no TensorFlow, so `pipeline audit` starts fast.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

from pipeline.data.discovery import Dataset, ImageRecord, untrainable
from pipeline.data.duplicates import (
    NEAR_DUPLICATE_METHOD,
    NEAR_DUPLICATE_THRESHOLD,
    DuplicateGroups,
    group_duplicates,
)
from pipeline.data.hashing import HashInfo, hash_files
from pipeline.names import NO_TUMOR, Progress, size_label

# Warn when pixel size alone tells the classes apart this much better than chance (balanced
# accuracy, cross-validated: `size_cue`): in the Sartaj data nearly every tumour image is a
# 512x512 export of one collection and almost no no-tumour image is, which is how a model
# learns the source.
SIZE_CUE_MARGIN = 0.2
# folds of the size cue's vote; each holds a fifth of every (size, label) cell, see `size_cue`
SIZE_CUE_FOLDS = 5


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
    `near_duplicate_threshold`, `size_cue` (see `size_cue`), `patient_folders` (folders between
    a class folder and its images, which train keeps whole: `ImageRecord.patient`),
    `patient_examples`, `untrainable` (why train would refuse the dataset, or None),
    `interrupted_synth` (`synth.interrupted_note`: an interrupted synth's partial output, or None),
    `examples` and `seconds`. Unreadable files are listed, never fatal.
    """
    from pipeline.synth import interrupted_note

    t0 = time.perf_counter()
    infos = hash_files(ds.records, progress)
    bad = [r for r in ds.records if infos[r.rel].error]
    good = [r for r in ds.records if not infos[r.rel].error]
    groups = group_duplicates(good, infos)
    if progress:
        progress("comparing hashes", 1, 1)
    exact_counts, cross_split_groups = _exact_findings(good, infos, groups.exact)
    near_counts, near_groups, cross_class_near, closest = _near_findings(good, infos, groups)
    return {
        "root": str(ds.root),
        "layout": ds.layout,
        "binary": ds.binary,
        "classes": list(ds.classes),
        "class_folders": dict(ds.folders),  # "train/Healthy" -> "no_tumor"
        "n_images": len(ds.records),
        "n_readable": len(good),
        "counts": ds.counts(),
        "ignored_folders": list(ds.ignored),
        "untrainable": untrainable(ds),
        "interrupted_synth": interrupted_note(ds.root),
        "patient_folders": len(ds.patients()),
        "patient_examples": ds.patients()[:examples],
        "unreadable": [r.rel for r in bad],
        "unreadable_reasons": {r.rel: infos[r.rel].error for r in bad},
        **_image_stats(good, infos),
        "size_cue": size_cue([r.label for r in good],
                             [size_label(infos[r.rel].width, infos[r.rel].height) for r in good]),
        **exact_counts,
        **near_counts,
        "near_duplicate_method": NEAR_DUPLICATE_METHOD,
        "near_duplicate_threshold": NEAR_DUPLICATE_THRESHOLD,
        "examples": {
            "exact": _show(good, groups.exact, examples),
            "cross_split": _show(good, cross_split_groups, examples, "split"),
            "cross_class": _show(good, cross_class_near, examples, "label"),
            "near": _show(good, near_groups, examples),
            "near_pairs": [{"a": good[i].rel, "b": good[j].rel, "distance": d}
                           for d, i, j in closest[:examples]],
        },
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _image_stats(good: list[ImageRecord], infos: dict[str, HashInfo]) -> dict[str, Any]:
    """The ten commonest pixel sizes, how many sizes there are, colour modes and file formats."""
    sizes = Counter(size_label(infos[r.rel].width, infos[r.rel].height) for r in good)
    modes = Counter(infos[r.rel].mode or "?" for r in good)
    formats = Counter(infos[r.rel].format or "?" for r in good)
    return {
        "sizes": [{"size": s, "count": n} for s, n in sizes.most_common(10)],
        "n_distinct_sizes": len(sizes),
        "modes": dict(modes.most_common()),
        "formats": dict(formats.most_common()),
    }


def size_cue(labels: list[str], sizes: list[str]) -> dict[str, Any]:
    """How well an image's pixel size alone predicts its label: a source shortcut in the data.

    Each image is given the commonest label among the images of its size in the other folds
    (`SIZE_CUE_FOLDS`; a size the other folds lack gets their commonest label overall; ties go
    to the label commoner overall, then by name). Each fold holds the same share of every
    (size, label) cell, so taking a fold out leaves each size's class mix as it was: leaving
    one image out made its own class the minority of a balanced size, and a cue that carries
    nothing scored 0.03 against a chance of 0.25. Keys `classes` and, when a
    `no_tumor` class sits beside tumour classes, `tumour_vs_no_tumour` (else None), each with
    `accuracy`, `balanced_accuracy`, `majority_accuracy` (always the commonest label), `chance`
    (balanced accuracy of any constant answer) and `warn` (balanced accuracy more than
    SIZE_CUE_MARGIN above chance).
    """
    several_tumours = NO_TUMOR in labels and len(set(labels)) > 2
    return {"classes": _size_vote(labels, sizes),
            "tumour_vs_no_tumour": _size_vote(
                [lab if lab == NO_TUMOR else "tumour" for lab in labels], sizes)
            if several_tumours else None}


def _size_vote(labels: list[str], sizes: list[str]) -> dict[str, Any]:
    overall = Counter(labels)
    # fold of each image: its rank within its (size, label) cell, dealt round the folds
    fold, seen = [], Counter()
    for cell in zip(sizes, labels, strict=True):
        fold.append(seen[cell] % SIZE_CUE_FOLDS)
        seen[cell] += 1
    by_size: dict[tuple[int, str], Counter] = defaultdict(Counter)
    in_fold: dict[int, Counter] = defaultdict(Counter)
    for lab, size, f in zip(labels, sizes, fold, strict=True):
        by_size[f, size][lab] += 1
        in_fold[f][lab] += 1
    hits: Counter = Counter()
    for f in sorted(set(fold)):
        rest = overall - in_fold[f]
        guesses: dict[str, str] = {}
        for lab, size, g in zip(labels, sizes, fold, strict=True):
            if g != f:
                continue
            if size not in guesses:
                votes = sum((by_size[h, size] for h in range(SIZE_CUE_FOLDS) if h != f),
                            Counter()) or rest or overall
                guesses[size] = max(votes, key=lambda c: (votes[c], overall[c], c))
            hits[lab] += guesses[size] == lab
    n, k = len(labels), len(overall)
    balanced = sum(hits[c] / overall[c] for c in overall) / k if n else 0.0
    chance = 1.0 / k if k else 0.0
    return {"accuracy": round(sum(hits.values()) / n, 4) if n else 0.0,
            "balanced_accuracy": round(balanced, 4),
            "majority_accuracy": round(max(overall.values()) / n, 4) if n else 0.0,
            "chance": round(chance, 4), "warn": k > 1 and balanced > chance + SIZE_CUE_MARGIN}


def _spans(good: list[ImageRecord], idx: list[int], attr: str) -> bool:
    """Whether the records `idx` hold more than one value of `attr` ("label" or "split")."""
    return len({getattr(good[i], attr) for i in idx}) > 1


def _exact_findings(good: list[ImageRecord], infos: dict[str, HashInfo], exact: list[list[int]]
                    ) -> tuple[dict[str, int], list[list[int]]]:
    """Counts over byte-identical copies, and the exact groups spanning splits."""
    # a flat dataset's records have split None, which must not count as a split of its own
    cross_split_groups = [g for g in exact if len({good[i].split for i in g} - {None}) > 1]
    sha_splits: dict[str, set[str | None]] = defaultdict(set)
    for r in good:
        sha_splits[infos[r.rel].sha1].add(r.split)
    counts = {
        "exact_duplicate_groups": len(exact),
        "exact_duplicate_extra_files": sum(len(g) - 1 for g in exact),
        "cross_split_duplicates": sum(1 for r in good if r.split == "test"
                                      and "train" in sha_splits[infos[r.rel].sha1]),
        "cross_split_duplicate_groups": len(cross_split_groups),
        "cross_class_duplicates": sum(1 for g in exact if _spans(good, g, "label")),
    }
    return counts, cross_split_groups


def _near_findings(good: list[ImageRecord], infos: dict[str, HashInfo], groups: DuplicateGroups
                   ) -> tuple[dict[str, int], list[list[int]], list[list[int]],
                              list[tuple[int, int, int]]]:
    """Counts over exact+near groups; near groups, cross-class groups and closest pairs to show.

    The closest pairs are (distance, i, j) of near pairs whose bytes differ: exact copies are
    reported by `_exact_findings` already.
    """
    multi = [c for c in groups.components if len(c) > 1]
    near_groups = [c for c in multi if len({infos[good[i].rel].sha1 for i in c}) > 1]
    comp_splits = [{good[i].split for i in c} for c in groups.components]
    cross_class = [c for c in multi if _spans(good, c, "label")]
    closest = sorted(((d, i, j) for i, j, d in groups.pairs
                      if infos[good[i].rel].sha1 != infos[good[j].rel].sha1))
    counts = {
        "near_duplicate_groups": len(near_groups),
        "near_duplicate_pairs": len(closest),
        "duplicate_groups": len(multi),
        "images_in_duplicate_groups": sum(len(c) for c in multi),
        "largest_duplicate_group": max((len(c) for c in multi), default=0),
        "cross_split_near_duplicates": sum(
            1 for i, r in enumerate(good)
            if r.split == "test" and "train" in comp_splits[groups.component_of[i]]),
        "cross_class_near_duplicate_groups": len(cross_class),
    }
    return counts, near_groups, cross_class, closest


def _show(good: list[ImageRecord], groups: list[list[int]], limit: int, attr: str | None = None
          ) -> list[list[str]]:
    """Up to `limit` groups as paths (at most 8 each), largest first.

    With `attr`, each group starts with one member per distinct split or class, so an example of a
    leak shows both sides of it even when the group is longer than what is shown.
    """
    out = []
    for g in sorted(groups, key=lambda g: (-len(g), g[0]))[:limit]:
        if attr:
            seen: set[Any] = set()
            first = []
            for i in g:
                if getattr(good[i], attr) not in seen:
                    seen.add(getattr(good[i], attr))
                    first.append(i)
            g = first + [i for i in g if i not in first]
        out.append([good[i].rel for i in g][:8])
    return out
