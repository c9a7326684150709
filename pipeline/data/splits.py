"""Train/val/test splits that keep every duplicate group and every patient folder in one split,
and splits.json.

The assignment is deterministic for a seed and stratified by class; see `make_splits`.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from pipeline.data.discovery import Dataset, DatasetError, ImageRecord, canonical_split
from pipeline.data.duplicates import (
    NEAR_DUPLICATE_METHOD,
    NEAR_DUPLICATE_THRESHOLD,
    DuplicateGroups,
    connected_groups,
    group_duplicates,
)
from pipeline.data.hashing import HashInfo, hash_files
from pipeline.names import Progress

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class Splits:
    """The records of each split, and `info` on how they were made (saved in splits.json)."""

    train: list[ImageRecord]
    val: list[ImageRecord]
    test: list[ImageRecord]
    info: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, dict[str, int]]:
        """{split: {class: n}} over the classes present in any split."""
        labels = sorted({r.label for r in (*self.train, *self.val, *self.test)})
        out = {}
        for name in SPLIT_NAMES:
            c = dict.fromkeys(labels, 0)
            for r in getattr(self, name):
                c[r.label] += 1
            out[name] = c
        return out


def _seeded_key(seed: int, rel: str) -> str:
    return hashlib.sha256(f"{seed}:{rel}".encode()).hexdigest()


def _assign_groups(groups: list[list[int]], labels: list[str], classes: list[str],
                   fractions: dict[str, float], rng: np.random.Generator) -> dict[int, str]:
    """Greedy stratified group assignment (own code, in the spirit of StratifiedGroupKFold).

    StratifiedGroupKFold only gives 1/k folds; this hits arbitrary fractions. Groups go largest
    first (ties in seeded random order) to the split whose per-class quota is least filled,
    weighted by the group's class make-up; small groups and singletons fill the remaining quotas
    almost exactly. Returns {record index: split}.
    """
    cidx = {c: k for k, c in enumerate(classes)}
    names = [s for s, f in fractions.items() if f > 0]
    totals = np.zeros(len(classes))
    vecs = []
    for g in groups:
        v = np.zeros(len(classes))
        for i in g:
            v[cidx[labels[i]]] += 1
        vecs.append(v)
        totals += v
    target = np.array([[fractions[s] * t for t in totals] for s in names])
    current = np.zeros_like(target)
    priority = rng.permutation(len(groups))
    order = sorted(range(len(groups)), key=lambda k: (-len(groups[k]), priority[k]))
    out: dict[int, str] = {}
    for k in order:
        v = vecs[k]
        deficit = (target - current) / np.maximum(target, 1e-9)
        score = (deficit * v).sum(axis=1) / v.sum()
        score = score + rng.random(len(names)) * 1e-9  # random tie-break
        s = int(np.argmax(score))
        current[s] += v
        for i in groups[k]:
            out[i] = names[s]
    return out


def _cap(records: list[ImageRecord], max_per_class: int, seed: int) -> list[ImageRecord]:
    by_class: dict[str, list[ImageRecord]] = defaultdict(list)
    for r in records:
        by_class[r.label].append(r)
    kept = []
    for label in sorted(by_class):
        kept += sorted(by_class[label], key=lambda r: _seeded_key(seed, r.rel))[:max_per_class]
    return sorted(kept, key=lambda r: r.rel)


def make_splits(ds: Dataset, seed: int = 42, val_fraction: float = 0.15,
                test_fraction: float = 0.15, dedupe: bool = True, official_test: bool = False,
                max_per_class: int | None = None, progress: Progress | None = None) -> Splits:
    """Deterministic stratified train/val/test split of the readable images.

    dedupe: every exact/near duplicate group (`pipeline.data.duplicates`) lies in one split, so no
    test image has a copy in train or val. Every patient/series folder (`ImageRecord.patient`)
    lies in one split too, with or without dedupe (`info["patient_folders"]` counts them).
    Images whose bytes sit under two classes (a label conflict) are dropped from every split
    (`info["label_conflicts_dropped"]`): in test such a pair is a guaranteed error, in
    training a contradiction. official_test: test = the dataset's own Testing/ images;
    `info["official_test_leaking"]` counts those with an exact or near copy in the training pool,
    and with dedupe those copies are dropped from train/val (`dropped_duplicates_of_test`); val is
    then `val_fraction` of what remains. max_per_class: keep at most that many images per class
    (a seeded choice) before splitting, for smoke runs. Unreadable files are excluded and counted.
    """
    _check_arguments(val_fraction, test_fraction, official_test, max_per_class)
    infos = hash_files(ds.records, progress)
    unreadable = [r.rel for r in ds.records if infos[r.rel].error]
    records, conflicts = _without_label_conflicts(
        [r for r in ds.records if not infos[r.rel].error], infos)
    n_readable = len(records)
    if max_per_class is not None:
        records = _cap(records, max_per_class, seed)
    if official_test and not any(r.split == "test" for r in records):
        # the flag people type, not the config key (a review, 2026-12-06), and the way out
        raise DatasetError(f"--official-test (a config's official_test) needs the dataset's own "
                           f"test folder (Testing/ or test/); {ds.root} (layout {ds.layout}) "
                           "has none: leave --official-test out to test on a split of the whole "
                           "dataset")
    rng = np.random.default_rng(seed)
    # near pairs also measure official-test leakage, so they are found even without dedupe
    groups = group_duplicates(records, infos, near=True)
    comps = groups.components if dedupe else [[i] for i in range(len(records))]
    comps, n_patients = with_patients(records, comps)
    info: dict[str, Any] = {
        "strategy": ("official-test" if official_test else "stratified")
        + ("+dedup" if dedupe else ""),
        "grouping": "own greedy stratified group assignment (largest groups first)",
        "seed": seed, "val_fraction": val_fraction,
        "test_fraction": None if official_test else test_fraction,
        "dedupe": dedupe, "max_per_class": max_per_class,
        "n_images": len(records),
        "unreadable_excluded": len(unreadable), "unreadable": unreadable[:20],
        "capped_out": n_readable - len(records),
        "duplicate_groups": sum(1 for c in groups.components if len(c) > 1),
        "largest_group": max((len(c) for c in groups.components), default=0),
        "near_duplicate_method": NEAR_DUPLICATE_METHOD,
        "near_duplicate_threshold": NEAR_DUPLICATE_THRESHOLD,
    }
    # only when there are some: a dataset without either keeps the splits.json it always had
    if n_patients:
        info["patient_folders"] = n_patients
        info["grouping"] += "; every patient/series folder in one split"
    if conflicts:
        info["label_conflicts_dropped"] = len(conflicts)
        info["label_conflicts"] = conflicts[:20]
    if official_test:
        assigned, official_info = _official_test_assignment(
            records, infos, groups, comps, ds.classes, val_fraction, dedupe, rng)
        info.update(official_info)
    else:
        assigned = _assign_groups(comps, [r.label for r in records], ds.classes,
                                  {"train": 1 - val_fraction - test_fraction,
                                   "val": val_fraction, "test": test_fraction}, rng)
    return _collect(records, assigned, info)


def split_gaps(splits: Splits, classes: list[str]) -> str | None:
    """Why `splits` cannot train a classifier of `classes`, or None: every class needs images in
    training and in validation. A class of one image went to the test split alone, and the run
    trained without it and "tested" it (a review); `train` refuses before any run folder
    exists."""
    counts = splits.counts()
    short = [c for c in classes
             if not counts["train"].get(c, 0) or not counts["val"].get(c, 0)]
    if not short:
        return None
    parts = [f"{c} (train {counts['train'].get(c, 0)}, val {counts['val'].get(c, 0)}, test "
             f"{counts['test'].get(c, 0)})" for c in short]
    # a class of few patient folders or duplicate groups is kept whole in one split each, so a
    # large class can miss a split (a review: 200 gliomas in 2 patient folders, none in val)
    grouped = (" (its images are kept in groups, patient folders or copies, each whole in one "
               "split: another seed, the config's \"seed\", may spread them)"
               if any(sum(counts[k].get(c, 0) for k in counts) >= 10 for c in short) else "")
    return ("every class needs images in training and in validation, and "
            + ", ".join(parts) + (" has" if len(short) == 1 else " have") + " too few: add "
            "images to its folder, or move the folder out of the data folder to train without "
            "that class" + grouped)


def _without_label_conflicts(records: list[ImageRecord], infos: dict[str, HashInfo]
                             ) -> tuple[list[ImageRecord], list[str]]:
    """The records without label conflicts (the same bytes under two classes), and those
    dropped (rel paths): such an image has no one true label."""
    labels_of: dict[str, set[str]] = defaultdict(set)
    for r in records:
        labels_of[infos[r.rel].sha1].add(r.label)
    clash = {sha for sha, labels in labels_of.items() if len(labels) > 1}
    return ([r for r in records if infos[r.rel].sha1 not in clash],
            [r.rel for r in records if infos[r.rel].sha1 in clash])


def with_patients(records: list[ImageRecord], comps: list[list[int]]
                  ) -> tuple[list[list[int]], int]:
    """`comps` (groups of record indices) joined so that each patient/series folder lies in one
    group, and the number of such folders. Without patient folders `comps` comes back as it is,
    so a dataset without them is split exactly as before they were known."""
    by_patient: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        if r.patient:
            by_patient[r.patient].append(i)
    if not by_patient:
        return comps, 0
    edges = [(c[0], j) for c in comps for j in c[1:]]
    edges += [(g[0], j) for g in by_patient.values() for j in g[1:]]
    return connected_groups(len(records), edges)[0], len(by_patient)


def _check_arguments(val_fraction: float, test_fraction: float, official_test: bool,
                     max_per_class: int | None) -> None:
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1:
        raise DatasetError("val_fraction and test_fraction must lie in [0, 1)")
    if not official_test and val_fraction + test_fraction >= 1:
        raise DatasetError(f"val_fraction + test_fraction must be < 1, got "
                           f"{val_fraction} + {test_fraction}")
    if max_per_class is not None and max_per_class < 1:
        raise DatasetError(f"max_per_class must be >= 1, got {max_per_class}")


def _official_test_assignment(records: list[ImageRecord], infos: dict[str, HashInfo],
                              groups: DuplicateGroups, comps: list[list[int]],
                              classes: list[str], val_fraction: float, dedupe: bool,
                              rng: np.random.Generator) -> tuple[dict[int, str], dict[str, Any]]:
    """Test = the records of the dataset's own test folder; the rest split into train and val.

    Returns the assignment and the `info` keys on leakage: test images with an exact or near copy
    in the pool, and (with dedupe) how many pool images were dropped for being such copies.
    """
    test_idx = {i for i, r in enumerate(records) if r.split == "test"}
    pool = [i for i in range(len(records)) if i not in test_idx]
    comp_has_test = {groups.component_of[i] for i in test_idx}
    comp_has_pool = {groups.component_of[i] for i in pool}
    pool_sha = {infos[records[i].rel].sha1 for i in pool}
    leaking = sum(1 for i in test_idx if groups.component_of[i] in comp_has_pool)
    leaking_exact = sum(1 for i in test_idx if infos[records[i].rel].sha1 in pool_sha)
    dropped = [i for i in pool if groups.component_of[i] in comp_has_test] if dedupe else []
    drop = set(dropped)
    pool_comps = [[i for i in c if i not in test_idx and i not in drop] for c in comps]
    pool_comps = [c for c in pool_comps if c]
    assigned = _assign_groups(pool_comps, [r.label for r in records], classes,
                              {"train": 1 - val_fraction, "val": val_fraction}, rng)
    assigned.update(dict.fromkeys(test_idx, "test"))
    info = {
        "official_test_leaking": leaking,
        "official_test": {"n": len(test_idx), "leaking": leaking, "leaking_exact": leaking_exact,
                          "dropped_duplicates_of_test": len(dropped)},
        "dropped_duplicates_of_test": len(dropped),
    }
    return assigned, info


def _collect(records: list[ImageRecord], assigned: dict[int, str], info: dict[str, Any]
             ) -> Splits:
    """Splits from {record index: split name} (records keep their order); sizes added to info."""
    parts: dict[str, list[ImageRecord]] = {s: [] for s in SPLIT_NAMES}
    for i, r in enumerate(records):
        if i in assigned:  # dropped copies of official test images are in no split
            parts[assigned[i]].append(r)
    splits = Splits(train=parts["train"], val=parts["val"], test=parts["test"], info=info)
    info.update({s: len(parts[s]) for s in SPLIT_NAMES})
    info["counts"] = splits.counts()
    return splits


def splits_to_json(splits: Splits, root: str | Path) -> dict[str, Any]:
    """The `splits.json` object: {"train"|"val"|"test": [{"path": rel, "label"}], "info": {...}}.

    "info" is `splits.info` (how the split was made); with an official test set,
    `info["official_test"]` summarises it: {n, leaking, leaking_exact, dropped_duplicates_of_test}.
    """
    root = Path(root).resolve()

    def rel(r: ImageRecord) -> str:
        try:
            return Path(r.path).resolve().relative_to(root).as_posix()
        except ValueError:
            return r.rel

    out: dict[str, Any] = {s: [{"path": rel(r), "label": r.label} for r in getattr(splits, s)]
                           for s in SPLIT_NAMES}
    out["info"] = json.loads(json.dumps(splits.info, default=str))
    return out


def splits_from_json(obj: dict[str, Any], root: str | Path, check_exists: bool = True) -> Splits:
    """Rebuild Splits from `splits_to_json` output against the data folder `root`."""
    if not isinstance(obj, dict) or not all(isinstance(obj.get(s), list) for s in SPLIT_NAMES):
        raise DatasetError("splits.json must hold lists under 'train', 'val' and 'test'")
    root = Path(root).resolve()
    missing: list[str] = []
    parts: dict[str, list[ImageRecord]] = {}
    for s in SPLIT_NAMES:
        recs = []
        for item in obj[s]:
            try:
                rel, label = str(item["path"]), str(item["label"])
            except (TypeError, KeyError):
                raise DatasetError(f"splits.json: bad entry in {s!r}: {item!r}") from None
            pure = PurePosixPath(rel)
            if pure.is_absolute() or ".." in pure.parts:
                raise DatasetError(f"splits.json: path {rel!r} must be relative to the data folder")
            path = root.joinpath(*pure.parts)
            if check_exists and not path.is_file():
                missing.append(rel)
            split = canonical_split(pure.parts[0]) if len(pure.parts) > 1 else None
            recs.append(ImageRecord(path=path, rel=pure.as_posix(), label=label, split=split))
        parts[s] = recs
    if missing:
        from pipeline.artifacts import shown_path

        # never this machine's absolute path (a review); an empty folder said as such
        where = shown_path(root)
        if len(missing) == sum(len(v) for v in parts.values()) and not any(root.iterdir()):
            raise DatasetError(f"the data folder {where} is empty: none of the "
                               f"{len(missing)} image(s) of splits.json is there")
        raise DatasetError(f"{len(missing)} image(s) of splits.json are missing under {where}, "
                           f"e.g. {', '.join(missing[:3])}")
    info = obj.get("info") if isinstance(obj.get("info"), dict) else {}
    return Splits(train=parts["train"], val=parts["val"], test=parts["test"], info=dict(info))
