"""pipeline.data: layouts, label mapping, audit, duplicate-aware splits, arrays, tf.data, CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline import data, geometry, images
from pipeline.data import DatasetError

# --------------------------------------------------------------------------- building datasets


def shapes(seed: int, size: int = 96) -> np.ndarray:
    """Random filled shapes on black: distinct seeds differ by ~126 of 256 pHash bits (min 86)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), np.uint8)
    for _ in range(7):
        kind = rng.integers(3)
        colour = tuple(int(v) for v in rng.integers(40, 256, 3))
        p = tuple(int(v) for v in rng.integers(0, size, 2))
        q = tuple(int(v) for v in rng.integers(0, size, 2))
        if kind == 0:
            cv2.rectangle(img, p, q, colour, -1)
        elif kind == 1:
            cv2.circle(img, p, int(rng.integers(5, size // 3)), colour, -1)
        else:
            cv2.line(img, p, q, colour, int(rng.integers(2, 6)))
    return img


def save(path: Path, arr: np.ndarray, quality: int = 95) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        Image.fromarray(arr).save(path, quality=quality)
    else:
        Image.fromarray(arr).save(path)
    return path


def near_copy(src: Path, dst: Path, kind: str) -> Path:
    """A visually identical but byte-different copy."""
    arr = np.asarray(Image.open(src).convert("RGB"))
    if kind == "jpeg":
        return save(dst, arr, quality=70)
    if kind == "bright":
        return save(dst, np.clip(arr.astype(int) + 1, 0, 255).astype(np.uint8))
    if kind == "resize":
        return save(dst, cv2.resize(arr, (80, 80), interpolation=cv2.INTER_AREA))
    raise ValueError(kind)


def plant(root: Path, src: str, dst: str, kind: str = "exact") -> None:
    (root / dst).parent.mkdir(parents=True, exist_ok=True)
    if kind == "exact":
        shutil.copyfile(root / src, root / dst)
    else:
        near_copy(root / src, root / dst, kind)


def build(root: Path, class_dirs: dict[str, int], splits: dict[str, float] | None = None,
          seed: int = 0, ext: str = ".jpg") -> Path:
    """class folder -> number of images; `splits` {folder: share} puts them in split folders."""
    n = seed * 10_000
    for cls, count in class_dirs.items():
        for i in range(count):
            n += 1
            if splits:
                names = list(splits)
                cut = int(round(count * splits[names[0]]))
                where = root / (names[0] if i < cut else names[1]) / cls
            else:
                where = root / cls
            save(where / f"img{i:03d}{ext}", shapes(n))
    return root


@pytest.fixture
def sartaj(tmp_path: Path) -> Path:
    return build(tmp_path / "sartaj", {"glioma_tumor": 10, "meningioma_tumor": 10,
                                       "no_tumor": 6, "pituitary_tumor": 8},
                 splits={"Training": 0.7, "Testing": 0.3})


def independent_hashes(paths) -> dict[Path, tuple[str, bytes]]:
    """SHA-1 and pHash computed here, not through data.hash_files, to check its claims."""
    out = {}
    for p in paths:
        raw = Path(p).read_bytes()
        out[Path(p)] = (hashlib.sha1(raw).hexdigest(),
                        data.perceptual_hash(images.decode_image(raw, str(p))))
    return out


def leaks(test_recs, other_recs) -> list[str]:
    """Test images with an exact or near (pHash <= threshold) copy among other_recs."""
    h = independent_hashes([r.path for r in (*test_recs, *other_recs)])
    others = [h[Path(r.path)] for r in other_recs]
    out = []
    if not others:
        return out
    mat = np.frombuffer(b"".join(p for _, p in others), dtype=np.uint64).reshape(len(others), -1)
    shas = {s for s, _ in others}
    for r in test_recs:
        sha, ph = h[Path(r.path)]
        d = data.hamming_matrix(np.frombuffer(ph, dtype=np.uint64)[None, :], mat)[0]
        if sha in shas or (d <= data.NEAR_DUPLICATE_THRESHOLD).any():
            out.append(r.rel)
    return out


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("name", "binary", "expected"),
    [
        ("glioma", False, "glioma"), ("Glioma_Tumor", False, "glioma"),
        ("glioma-tumour", False, "glioma"), ("GLIOMA TUMORS", False, "glioma"),
        ("meningioma_tumor", False, "meningioma"), ("Meningioma", False, "meningioma"),
        ("pituitary", False, "pituitary"), ("pituitary_tumor", False, "pituitary"),
        ("Pituitary-Tumour", False, "pituitary"),
        ("notumor", False, "no_tumor"), ("no_tumor", False, "no_tumor"),
        ("No Tumor", False, "no_tumor"), ("no-tumour", False, "no_tumor"),
        ("no", False, "no_tumor"),
        ("normal", False, "no_tumor"),
        ("yes", False, None), ("tumor", False, None),
        ("yes", True, "tumor"), ("YES", True, "tumor"), ("no", True, "no_tumor"),
        ("glioma_tumor", True, "tumor"), ("notumor", True, "no_tumor"),
        ("masks", False, None), ("Training", False, None), ("", False, None), ("cats", True, None),
    ],
)
def test_canonical_label(name, binary, expected):
    assert data.canonical_label(name, binary=binary) == expected


@pytest.mark.parametrize(("name", "expected"), [("Training", "train"), ("train", "train"),
                                                ("Testing", "test"), ("TEST", "test"),
                                                ("Validation", "val"), ("glioma", None)])
def test_canonical_split(name, expected):
    assert data.canonical_split(name) == expected


# --------------------------------------------------------------------------- discovery


def test_discover_sartaj(sartaj: Path):
    ds = data.discover(sartaj)
    assert ds.layout == "sartaj" and not ds.binary
    assert ds.classes == list(data.CANONICAL)
    assert len(ds.records) == 34
    assert [r.rel for r in ds.records] == sorted(r.rel for r in ds.records)
    r = ds.records[0]
    assert r.path.is_absolute() and r.path.is_file()
    assert r.rel == "Testing/glioma_tumor/img007.jpg" and r.split == "test" and r.label == "glioma"
    assert ds.counts() == {
        "train": {"glioma": 7, "meningioma": 7, "no_tumor": 4, "pituitary": 6},
        "test": {"glioma": 3, "meningioma": 3, "no_tumor": 2, "pituitary": 2},
    }


def test_discover_nickparvar_with_and_without_splits(tmp_path: Path):
    classes = {"glioma": 3, "meningioma": 3, "notumor": 3, "pituitary": 3}
    ds = data.discover(build(tmp_path / "a", classes, splits={"Training": 0.67, "Testing": 0.33}))
    # named for what it is, not for one public dataset: a student's own train/Healthy was
    # reported as "nickparvar" (a review, 2026-12-06); that recorded name still reads
    assert ds.layout == "split" and ds.classes == list(data.CANONICAL)
    assert data.layout_name("nickparvar") == "split" and data.layout_name("flat") == "flat"
    assert {r.split for r in ds.records} == {"train", "test"}
    flat = data.discover(build(tmp_path / "b", classes))
    assert flat.layout == "flat" and flat.classes == list(data.CANONICAL)
    assert {r.split for r in flat.records} == {None}
    assert flat.counts() == {"all": dict.fromkeys(data.CANONICAL, 3)}


def test_discover_flat_with_odd_names(tmp_path: Path):
    ds = data.discover(build(tmp_path, {"Glioma Tumour": 2, "PITUITARY": 2, "No-Tumor": 2},
                             ext=".png"))
    assert ds.layout == "flat" and ds.classes == ["glioma", "no_tumor", "pituitary"]


def test_discover_binary(tmp_path: Path):
    ds = data.discover(build(tmp_path / "a", {"yes": 4, "no": 3}))
    assert ds.layout == "binary" and ds.binary and ds.classes == list(data.BINARY)
    assert Counter(r.label for r in ds.records) == {"tumor": 4, "no_tumor": 3}
    split = data.discover(build(tmp_path / "b", {"yes": 4, "no": 4},
                                splits={"train": 0.5, "test": 0.5}))
    assert split.layout == "binary" and {r.split for r in split.records} == {"train", "test"}


def test_discover_keeps_each_class_folder_s_own_name(tmp_path: Path, sartaj: Path):
    """"Healthy" became no_tumor and yes/no became tumor/no_tumor with the mapping recorded
    nowhere (a review, 2026-12-06): discovery keeps it, audit and train say the folders not
    named as their class, and a run's manifest records it (`data.class_folders`)."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    own = build(tmp_path / "own", {"Glioma": 2, "Healthy": 2, "No Tumour": 2},
                splits={"train": 0.5, "test": 0.5})
    ds = data.discover(own)
    assert ds.folders == {"test/Glioma": "glioma", "test/Healthy": "no_tumor",
                          "test/No Tumour": "no_tumor", "train/Glioma": "glioma",
                          "train/Healthy": "no_tumor", "train/No Tumour": "no_tumor"}
    assert data.class_folders_note(ds.folders) == "class folders: Healthy → no_tumor"
    yes_no = data.discover(build(tmp_path / "yn", {"yes": 2, "no": 2}))
    assert data.class_folders_note(yes_no.folders) == (
        "class folders: no → no_tumor, yes → tumor")
    # the Sartaj names say their class: nothing to add; nor for a run recorded before
    assert data.class_folders_note(data.discover(sartaj).folders) is None
    assert data.class_folders_note(None) is None
    said = CliRunner().invoke(app, ["audit", str(own)])
    assert said.exit_code == 0, said.output
    assert "class folders: Healthy → no_tumor" in said.stdout
    from pipeline.config import TrainConfig
    from pipeline.train import run_manifest

    manifest = run_manifest(TrainConfig(), ds, {}, {}, commit="x")
    assert manifest["data"]["class_folders"] == ds.folders


def test_discover_merges_aliases_and_ignores_noise(tmp_path: Path):
    root = build(tmp_path, {"glioma": 2, "glioma_tumor": 1, "no": 2})
    save(root / "masks" / "glioma" / "m.png", shapes(1))  # synth writes masks/ at the root
    save(root / ".hidden" / "x.jpg", shapes(2))
    save(root / "glioma" / ".ipynb_checkpoints" / "y.jpg", shapes(3))
    (root / "glioma" / "notes.txt").write_text("not an image")
    (root / "glioma" / ".DS_Store").write_bytes(b"\0\0")
    save(root / "glioma" / "UPPER.JPG", shapes(4))
    save(root / "glioma" / "sub" / "deep.tiff", shapes(5))
    save(root / "extras" / "z.jpg", shapes(6))
    ds = data.discover(root)
    rels = [r.rel for r in ds.records]
    assert "glioma/UPPER.JPG" in rels and "glioma/sub/deep.tiff" in rels
    assert not any(".hidden" in r or "masks" in r or "checkpoints" in r or r.endswith(".txt")
                   for r in rels)
    assert Counter(r.label for r in ds.records) == {"glioma": 5, "no_tumor": 2}
    assert ds.ignored == ["extras"]


def test_discover_descends_into_a_wrapper_folder(tmp_path: Path):
    build(tmp_path / "archive" / "dataset", {"glioma": 2, "notumor": 2},
          splits={"Training": 0.5, "Testing": 0.5})
    ds = data.discover(tmp_path)
    assert ds.root == (tmp_path / "archive" / "dataset").resolve()
    assert ds.records[0].rel.startswith("Testing/")


def test_discover_errors(tmp_path: Path):
    with pytest.raises(DatasetError, match="does not exist"):
        data.discover(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="is not a folder"):
        data.discover(tmp_path / "file.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="is empty"):
        data.discover(tmp_path / "empty")
    for d in ("cats", "dogs"):
        save(tmp_path / "pets" / d / "a.jpg", shapes(1))
    with pytest.raises(DatasetError, match=r"found folders cats/, dogs/") as info:
        data.discover(tmp_path / "pets")
    assert "glioma" in str(info.value)  # says what was expected
    (tmp_path / "hollow" / "glioma").mkdir(parents=True)
    (tmp_path / "hollow" / "glioma" / "a.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"hold no images.*\.jpg"):
        data.discover(tmp_path / "hollow")


# --------------------------------------------------------------------------- audit


@pytest.fixture
def planted(sartaj: Path) -> Path:
    """sartaj + corrupt files + exact/near copies across splits and across classes."""
    (sartaj / "Training" / "glioma_tumor" / "zero.jpg").write_bytes(b"")
    (sartaj / "Training" / "no_tumor" / "notes.jpg").write_text("a text file renamed .jpg\n" * 4)
    good = (sartaj / "Training" / "pituitary_tumor" / "img000.jpg").read_bytes()
    (sartaj / "Testing" / "pituitary_tumor" / "cut.jpg").write_bytes(good[: len(good) // 2])
    # exact copies Training -> Testing (a group of 3 spanning splits, one of 2)
    plant(sartaj, "Training/glioma_tumor/img000.jpg", "Testing/glioma_tumor/copy_a.jpg")
    plant(sartaj, "Training/glioma_tumor/img000.jpg", "Testing/glioma_tumor/copy_b.jpg")
    plant(sartaj, "Training/meningioma_tumor/img001.jpg", "Testing/meningioma_tumor/copy.jpg")
    # exact copy within Training but in another class: a label conflict
    plant(sartaj, "Training/meningioma_tumor/img002.jpg", "Training/glioma_tumor/conflict.jpg")
    # near copies Training -> Testing
    plant(sartaj, "Training/no_tumor/img000.jpg", "Testing/no_tumor/near_jpeg.jpg", "jpeg")
    plant(sartaj, "Training/pituitary_tumor/img001.jpg", "Testing/pituitary_tumor/near.png",
          "bright")
    plant(sartaj, "Training/glioma_tumor/img003.jpg", "Testing/glioma_tumor/near_small.png",
          "resize")
    return sartaj


def test_audit_counts_corrupt_files_and_duplicates(planted: Path):
    ds = data.discover(planted)
    calls = []
    report = data.audit(ds, progress=lambda d, done, total: calls.append((d, done, total)))
    assert report["classes"] == list(data.CANONICAL)
    assert report["n_images"] == 34 + 3 + 7
    assert report["counts"]["test"]["glioma"] == 3 + 3
    assert sorted(report["unreadable"]) == ["Testing/pituitary_tumor/cut.jpg",
                                            "Training/glioma_tumor/zero.jpg",
                                            "Training/no_tumor/notes.jpg"]
    reasons = report["unreadable_reasons"]
    assert "empty file" in reasons["Training/glioma_tumor/zero.jpg"]
    assert "text?" in reasons["Training/no_tumor/notes.jpg"]
    assert "truncated" in reasons["Testing/pituitary_tumor/cut.jpg"]
    assert report["exact_duplicate_groups"] == 3
    assert report["exact_duplicate_extra_files"] == 4
    assert report["cross_split_duplicates"] == 3  # copy_a, copy_b, meningioma copy
    assert report["cross_split_duplicate_groups"] == 2
    assert report["cross_class_duplicates"] == 1
    assert report["near_duplicate_groups"] == 3  # jpeg, bright, resize
    assert report["cross_split_near_duplicates"] == 6
    assert report["largest_duplicate_group"] == 3
    assert report["cross_class_near_duplicate_groups"] == 1
    assert report["near_duplicate_threshold"] == data.NEAR_DUPLICATE_THRESHOLD
    assert "pHash" in report["near_duplicate_method"]
    assert report["n_readable"] == 41 and report["modes"] == {"RGB": 41}
    assert report["sizes"] == [{"size": "96x96", "count": 40}, {"size": "80x80", "count": 1}]
    assert set(report["examples"]["cross_split"][0][:2]) == {
        "Testing/glioma_tumor/copy_a.jpg", "Training/glioma_tumor/img000.jpg"}
    json.dumps(report)  # JSON-ready
    assert calls and calls[-1][1] == calls[-1][2]


def test_audit_of_a_clean_flat_dataset(tmp_path: Path):
    report = data.audit(data.discover(build(tmp_path, {"glioma": 5, "notumor": 5}, ext=".png")))
    assert report["layout"] == "flat" and report["counts"] == {"all": {"glioma": 5,
                                                                       "no_tumor": 5}}
    assert report["unreadable"] == [] and report["exact_duplicate_groups"] == 0
    assert report["near_duplicate_groups"] == 0 and report["cross_split_duplicates"] == 0


def test_test_images_are_perceptually_distinct():
    """The builder's images must not be near duplicates by accident (the tests rely on it)."""
    hashes = [data.perceptual_hash(shapes(s)) for s in range(200)]
    assert data.near_pairs(hashes, data.NEAR_DUPLICATE_THRESHOLD + 20) == []


def test_near_pairs_blocks_agree_with_brute_force():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (40, 32), dtype=np.uint8)
    base[20:] = base[:20] ^ (rng.random((20, 32)) < 0.05)  # 20 close pairs
    hashes = [row.tobytes() for row in base]
    small = data.near_pairs(hashes, 30, block=7)
    big = data.near_pairs(hashes, 30, block=1000)
    assert small == sorted(small) or sorted(small) == sorted(big)
    assert sorted(small) == sorted(big)
    brute = sorted((i, j, int(np.unpackbits(base[i] ^ base[j]).sum())) for i in range(40)
                   for j in range(i + 1, 40) if np.unpackbits(base[i] ^ base[j]).sum() <= 30)
    assert sorted(big) == brute and len(brute) >= 20


def reference_components(n: int, edges) -> list[int]:
    """Component index per node by label propagation, components numbered by smallest member."""
    low = list(range(n))
    changed = True
    while changed:
        changed = False
        for i, j in edges:
            m = min(low[i], low[j])
            if (low[i], low[j]) != (m, m):
                low[i] = low[j] = m
                changed = True
    order = sorted(set(low))
    return [order.index(v) for v in low]


def test_connected_groups_order_matches_a_brute_force_reference():
    """Components ordered by smallest member, members ascending: make_splits' tie-break relies
    on this order, so it must not depend on how scipy numbers components."""
    rng = np.random.default_rng(1)
    from pipeline.data.duplicates import connected_groups

    assert connected_groups(0, []) == ([], [])
    for n in (1, 2, 7, 40, 120):
        for _ in range(20):
            raw = rng.integers(0, n, (int(rng.integers(0, 2 * n + 1)), 2)).tolist()
            edges = [(max(a, b), min(a, b)) if k % 2 else (min(a, b), max(a, b))
                     for k, (a, b) in enumerate(raw)]
            components, component_of = connected_groups(n, edges)
            assert component_of == reference_components(n, edges)
            assert components == [[i for i in range(n) if component_of[i] == c]
                                  for c in range(len(components))]


def test_group_duplicates_joins_exact_and_near_copies():
    # 0 and 5 identical bytes (unrelated pHashes), 3 ~ 5 close pHashes, 1 and 4 identical bytes
    rng = np.random.default_rng(2)
    ph = [rng.integers(0, 256, 32, dtype=np.uint8) for _ in range(6)]
    ph[3] = ph[5] ^ np.eye(1, 32, 0, dtype=np.uint8)[0]  # one bit apart
    sha = ["a", "b", "c", "d", "b", "a"]
    recs = [data.ImageRecord(path=Path(f"/x/{i}.png"), rel=f"{i}.png", label="glioma", split=None)
            for i in range(6)]
    infos = {r.rel: data.HashInfo(sha1=sha[i], size_bytes=1, phash=ph[i].tobytes())
             for i, r in enumerate(recs)}
    g = data.group_duplicates(recs, infos)
    assert g.exact == [[0, 5], [1, 4]]
    assert g.components == [[0, 3, 5], [1, 4], [2]] and g.component_of == [0, 1, 2, 0, 1, 0]
    assert g.pairs == [(3, 5, 1)]  # 0 joins 5 by its bytes alone
    assert data.group_duplicates(recs, infos, near=False).components == [[0, 5], [1, 4], [2], [3]]
    assert data.duplicate_components(recs, infos) == g.component_of
    assert data._group is data.group_duplicates  # evaluate.cross_validate's name for it


# --------------------------------------------------------------------------- splits


@pytest.fixture
def dupes(tmp_path: Path) -> Path:
    """Flat 4-class dataset with 24 planted duplicate groups (exact and near, sizes 2-4)."""
    root = build(tmp_path / "dupes", {"glioma": 30, "meningioma": 30, "notumor": 24,
                                      "pituitary": 30})
    kinds = ["exact", "jpeg", "bright", "resize"]
    for g in range(24):
        cls = ["glioma", "meningioma", "notumor", "pituitary"][g % 4]
        for c in range(1 + g % 3):
            plant(root, f"{cls}/img{g:03d}.jpg", f"{cls}/dup{g:03d}_{c}.png"
                  if kinds[(g + c) % 4] != "exact" else f"{cls}/dup{g:03d}_{c}.jpg",
                  kinds[(g + c) % 4])
    return root


def test_dedupe_guarantee_no_test_image_has_a_copy_in_train_or_val(dupes: Path):
    ds = data.discover(dupes)
    leaked_without_dedupe = 0
    for seed in range(4):
        s = data.make_splits(ds, seed=seed, dedupe=True)
        assert leaks(s.test, s.train + s.val) == []
        assert leaks(s.val, s.train) == []
        assert s.info["duplicate_groups"] == 24 and s.info["largest_group"] == 4
        plain = data.make_splits(ds, seed=seed, dedupe=False)
        leaked_without_dedupe += len(leaks(plain.test, plain.train + plain.val))
    assert leaked_without_dedupe > 0  # the check above can see a leak when there is one


def test_duplicate_components_is_the_split_grouping(dupes: Path):
    ds = data.discover(dupes)
    comp = data.duplicate_components(ds.records)
    by_rel = dict(zip((r.rel for r in ds.records), comp, strict=True))
    assert by_rel["glioma/img000.jpg"] == by_rel["glioma/dup000_0.jpg"]
    assert by_rel["meningioma/img001.jpg"] == by_rel["meningioma/dup001_1.png"]
    assert by_rel["glioma/img000.jpg"] != by_rel["glioma/img001.jpg"]
    assert len(set(comp)) == len(ds.records) - sum(1 + g % 3 for g in range(24))


def test_official_test_reports_and_removes_leaks(planted: Path):
    ds = data.discover(planted)
    s = data.make_splits(ds, official_test=True, seed=3)
    readable_test = [r for r in ds.records if r.split == "test"
                     and r.rel != "Testing/pituitary_tumor/cut.jpg"]
    assert sorted(r.rel for r in s.test) == sorted(r.rel for r in readable_test)
    assert s.info["official_test_leaking"] == 6
    assert s.info["official_test"] == {"n": len(readable_test), "leaking": 6, "leaking_exact": 3,
                                       "dropped_duplicates_of_test": 5}
    assert leaks(s.test, s.train + s.val) == []
    assert all(r.split == "train" for r in s.train + s.val)
    assert s.info["unreadable_excluded"] == 3
    kept = data.make_splits(ds, official_test=True, seed=3, dedupe=False)
    assert kept.info["official_test"]["dropped_duplicates_of_test"] == 0
    assert kept.info["official_test_leaking"] == 6
    assert len(leaks(kept.test, kept.train + kept.val)) == 6


def test_official_test_needs_a_test_folder(tmp_path: Path):
    """The refusal named the config key (`official_test`), not the flag the user typed, and
    not the way out (a review, 2026-12-06)."""
    ds = data.discover(build(tmp_path, {"glioma": 4, "notumor": 4}))
    with pytest.raises(DatasetError, match="Testing") as refused:
        data.make_splits(ds, official_test=True)
    said = str(refused.value)
    assert said.startswith("--official-test") and "leave --official-test out" in said


def test_splits_are_deterministic_and_seeded(dupes: Path):
    ds = data.discover(dupes)
    a, b = data.make_splits(ds, seed=7), data.make_splits(ds, seed=7)
    assert (a.train, a.val, a.test) == (b.train, b.val, b.test)
    assert a.info == b.info
    c = data.make_splits(ds, seed=8)
    assert [r.rel for r in c.test] != [r.rel for r in a.test]
    everything = sorted(r.rel for r in a.train + a.val + a.test)
    assert everything == sorted(r.rel for r in ds.records)  # a partition


def test_splits_are_stratified(tmp_path: Path):
    ds = data.discover(build(tmp_path, {"glioma": 60, "meningioma": 60, "notumor": 30,
                                        "pituitary": 90}, ext=".png"))
    s = data.make_splits(ds, seed=1, val_fraction=0.2, test_fraction=0.2)
    total = Counter(r.label for r in ds.records)
    for part, frac in ((s.train, 0.6), (s.val, 0.2), (s.test, 0.2)):
        assert abs(len(part) - frac * 240) <= 2
        got = Counter(r.label for r in part)
        for cls, n in total.items():
            assert abs(got[cls] / len(part) - n / 240) < 0.03, (cls, got)
    assert s.info["counts"]["test"] == dict(Counter(r.label for r in s.test)) | {
        k: 0 for k in ds.classes if k not in Counter(r.label for r in s.test)}


def test_max_per_class_and_unreadable_exclusion(dupes: Path):
    (dupes / "glioma" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (dupes / "notumor" / "zero.png").write_bytes(b"")
    ds = data.discover(dupes)
    s = data.make_splits(ds, max_per_class=12, seed=5)
    n = Counter(r.label for r in s.train + s.val + s.test)
    assert n == dict.fromkeys(data.CANONICAL, 12)
    assert s.info["unreadable_excluded"] == 2
    assert sorted(s.info["unreadable"]) == ["glioma/broken.jpg", "notumor/zero.png"]
    assert data.make_splits(ds, max_per_class=12, seed=5).test == s.test
    with pytest.raises(DatasetError):
        data.make_splits(ds, val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(DatasetError):
        data.make_splits(ds, max_per_class=0)


def test_splits_json_roundtrip_and_validation(planted: Path):
    ds = data.discover(planted)
    s = data.make_splits(ds, official_test=True)
    obj = json.loads(json.dumps(data.splits_to_json(s, ds.root)))
    assert set(obj) >= {"train", "val", "test", "info"}
    assert obj["test"][0].keys() == {"path", "label"}
    back = data.splits_from_json(obj, ds.root)
    assert (back.train, back.val, back.test) == (s.train, s.val, s.test)
    assert back.info["official_test_leaking"] == s.info["official_test_leaking"]
    with pytest.raises(DatasetError, match="lists under"):
        data.splits_from_json({"train": []}, ds.root)
    with pytest.raises(DatasetError, match="relative"):
        data.splits_from_json({"train": [{"path": "../x.jpg", "label": "glioma"}], "val": [],
                               "test": []}, ds.root)
    with pytest.raises(DatasetError, match="bad entry"):
        data.splits_from_json({"train": ["x"], "val": [], "test": []}, ds.root)
    os.remove(s.test[0].path)
    with pytest.raises(DatasetError, match="1 image.*missing") as info:
        data.splits_from_json(obj, ds.root)
    assert str(ds.root.resolve()) not in str(info.value)  # never this machine's absolute path
    assert len(data.splits_from_json(obj, ds.root, check_exists=False).test) == len(s.test)
    empty = ds.root.parent / "moved-here"  # `--run-data` naming an empty folder: said so
    empty.mkdir()
    with pytest.raises(DatasetError, match=r"^the data folder \S*moved-here is empty: none of "
                                           rf"the {len(s.train) + len(s.val) + len(s.test)} "):
        data.splits_from_json(obj, empty)


def test_fingerprint_tracks_content_and_labels(sartaj: Path):
    ds = data.discover(sartaj)
    fp = data.fingerprint(ds)
    assert len(fp) == 64 and data.fingerprint(data.discover(sartaj)) == fp
    target = sartaj / "Training" / "glioma_tumor" / "img000.jpg"
    save(target, shapes(999))  # new content
    assert data.fingerprint(data.discover(sartaj)) != fp
    fp2 = data.fingerprint(data.discover(sartaj))
    shutil.move(target, sartaj / "Training" / "no_tumor" / "img000.jpg")  # relabelled
    assert data.fingerprint(data.discover(sartaj)) != fp2


# --------------------------------------------------------------------------- arrays and tf.data


def test_load_arrays_shapes_failures_and_cache(planted: Path, tmp_path: Path, monkeypatch):
    ds = data.discover(planted)
    calls = []
    arr = data.load_arrays(ds.records, ds.classes, 48, crop=True,
                           progress=lambda d, done, total: calls.append(done),
                           cache_dir=tmp_path / "cache")
    assert arr.x.shape == (41, 48, 48, 3) and arr.x.dtype == np.uint8
    assert arr.y.shape == (41,) and arr.y.dtype == np.int32
    assert [ds.classes[k] for k in arr.y] == [r.label for r in arr.records]
    assert sorted(rel for rel, _ in arr.failed) == [
        "Testing/pituitary_tumor/cut.jpg", "Training/glioma_tumor/zero.jpg",
        "Training/no_tumor/notes.jpg"]
    assert calls[-1] == 44
    good = next(i for i, r in enumerate(arr.records) if r.rel.endswith("img004.jpg"))
    expected = geometry.prepare_image(images.read_image(arr.records[good].path), 48, crop=True)
    assert np.array_equal(arr.x[good], expected)

    def boom(path):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(images, "read_image", boom)
    again = data.load_arrays(ds.records, ds.classes, 48, crop=True, cache_dir=tmp_path / "cache")
    assert np.array_equal(again.x, arr.x) and np.array_equal(again.y, arr.y)
    assert again.records == arr.records and again.failed == arr.failed
    monkeypatch.undo()
    other = data.load_arrays(ds.records[:5], ds.classes, 32, crop=False,
                             cache_dir=tmp_path / "cache")
    assert other.x.shape[1:] == (32, 32, 3)
    with pytest.raises(DatasetError, match="not among the classes"):
        data.load_arrays(ds.records, ["glioma"], 32)


def test_load_arrays_of_nothing_and_of_only_broken(tmp_path: Path):
    empty = data.load_arrays([], ["glioma"], 32)
    assert empty.x.shape == (0, 32, 32, 3) and empty.y.shape == (0,)
    bad = tmp_path / "glioma" / "x.jpg"
    bad.parent.mkdir()
    bad.write_bytes(b"nope")
    rec = data.ImageRecord(path=bad, rel="glioma/x.jpg", label="glioma", split=None)
    out = data.load_arrays([rec], ["glioma"], 32)
    assert out.x.shape == (0, 32, 32, 3) and out.failed[0][0] == "glioma/x.jpg"


def test_make_tf_dataset_batches_and_seeded_shuffle():
    x = np.arange(10 * 8 * 8 * 3, dtype=np.uint32).reshape(10, 8, 8, 3).astype(np.uint8)
    x[:, 0, 0, 0] = np.arange(10)
    y = np.arange(10, dtype=np.int32) % 3
    ds = data.make_tf_dataset(x, y, batch_size=4)
    batches = list(ds.as_numpy_iterator())
    assert [b[0].shape for b in batches] == [(4, 8, 8, 3), (4, 8, 8, 3), (2, 8, 8, 3)]
    assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int32
    assert batches[0][0].max() <= 255 and np.array_equal(batches[0][0][0], x[0].astype(np.float32))

    def order(seed):
        d = data.make_tf_dataset(x, y, batch_size=10, shuffle=True, seed=seed)
        return [int(v) for v in next(iter(d))[0][:, 0, 0, 0].numpy()]

    assert order(1) == order(1) and sorted(order(1)) == list(range(10))
    assert order(1) != list(range(10)) or order(2) != list(range(10))
    with pytest.raises(DatasetError):
        data.make_tf_dataset(x, y[:5], batch_size=2)


def test_importing_the_package_leaves_tensorflow_unloaded():
    """`pipeline audit` starts fast: only make_tf_dataset imports TensorFlow, when called."""
    code = ("import sys, pipeline.data; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


# --------------------------------------------------------------------------- CLI


def test_cli_audit_json_and_summary(planted: Path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["audit", str(planted), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # the folder as given (a review found this machine's absolute path for a relative one)
    import os

    rel = os.path.relpath(planted)
    relative = json.loads(runner.invoke(app, ["audit", rel, "--json"]).stdout)
    assert relative["root"] == rel and report["root"] == str(planted)
    for key in ("classes", "counts", "unreadable", "exact_duplicate_groups",
                "near_duplicate_groups", "cross_split_duplicates", "cross_class_duplicates",
                "n_images"):
        assert key in report
    assert report["cross_split_duplicates"] == 3 and len(report["unreadable"]) == 3
    human = runner.invoke(app, ["audit", str(planted)])
    assert human.exit_code == 0, human.output
    assert "exact duplicate groups" in human.stdout and "unreadable: 3" in human.stdout


def test_audit_says_which_folders_it_ignored(tmp_path: Path):
    """`audit` dropped a class folder of an unknown name (`astrocytoma/`) without a word, as
    `train` did; only `evaluate --data` said so. One line, from `data.ignored_note`."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    root = build(tmp_path / "d", {"glioma": 3, "no_tumor": 3, "astrocytoma": 2}, ext=".png")
    assert data.ignored_note([]) is None
    said = data.ignored_note(data.discover(root).ignored)
    assert said == "ignored folders (no known class name): astrocytoma"
    human = CliRunner().invoke(app, ["audit", str(root)])
    assert human.exit_code == 0, human.output
    assert said in human.stdout.replace("\n", " ")
    clean = CliRunner().invoke(app, ["audit", str(build(tmp_path / "c", {"glioma": 2,
                                                                          "no_tumor": 2}))])
    assert clean.exit_code == 0 and "ignored folders" not in clean.stdout


def test_audit_prints_the_split_rows_only_for_data_with_split_folders(tmp_path: Path,
                                                                       sartaj: Path):
    """On flat yes/no data `audit` printed "of which span Training/Testing" and "test images
    with an exact copy in training: 0", for splits the data does not have (a review,
    2026-12-06)."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    rows = ("span Training/Testing", "test images with an exact copy in training",
            "test images with an exact or near copy in training")
    flat = CliRunner().invoke(app, ["audit", str(build(tmp_path / "f", {"yes": 3, "no": 3}))])
    assert flat.exit_code == 0, flat.output
    assert "exact duplicate groups" in flat.stdout and not any(r in flat.stdout for r in rows)
    split = CliRunner().invoke(app, ["audit", str(sartaj)])
    assert split.exit_code == 0, split.output
    assert all(r in split.stdout for r in rows)


def test_audit_warns_when_image_size_separates_the_classes(tmp_path: Path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    root = build(tmp_path / "d", {"glioma_tumor": 6, "pituitary_tumor": 6, "no_tumor": 6},
                 splits={"Training": 0.5, "Testing": 0.5})
    for path in root.glob("*/no_tumor/*.jpg"):  # the no-tumour images come from elsewhere
        save(path, cv2.resize(images.read_image(path), (72, 72)))
    report = data.audit(data.discover(root))
    assert report["size_cue"]["tumour_vs_no_tumour"]["warn"]
    assert report["size_cue"]["tumour_vs_no_tumour"]["balanced_accuracy"] == 1.0
    out = CliRunner().invoke(app, ["audit", str(root)])
    assert out.exit_code == 0, out.output
    text = " ".join(out.stdout.split())
    assert "pixel size alone predicts tumour vs no tumour: balanced accuracy 1.00" in text
    assert "warning: image size tells tumour and no-tumour images apart" in text
    same = data.audit(data.discover(build(tmp_path / "e", {"glioma_tumor": 6, "no_tumor": 6})))
    assert not same["size_cue"]["classes"]["warn"]  # one size for all: nothing to warn about


@pytest.mark.parametrize("kind", ["missing", "unmapped"])
def test_cli_audit_bad_folder_is_one_line(tmp_path: Path, kind: str):
    from typer.testing import CliRunner

    from pipeline.cli import app

    target = tmp_path / "nope"
    if kind == "unmapped":
        save(target / "cats" / "a.jpg", shapes(1))
    result = CliRunner().invoke(app, ["audit", str(target), "--json"])
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    message = result.output.strip()
    assert message.startswith("error:") and "\n" not in message
    assert "Traceback" not in result.output
    assert ("does not exist" if kind == "missing" else "cats/") in message


def test_a_folder_of_images_and_a_labels_csv_is_told_the_csv_is_not_read(tmp_path: Path):
    """images/ + labels.csv was refused with "1 file(s) such as labels.csv" and no word that
    the CSV is never read (a review, 2026-12-06)."""
    root = tmp_path / "flatcsv"
    save(root / "images" / "a.jpg", shapes(1))
    save(root / "images" / "b.jpg", shapes(2))
    (root / "labels.csv").write_text("file,label\na.jpg,glioma\nb.jpg,no_tumor\n")
    with pytest.raises(DatasetError) as refused:
        data.discover(root)
    said = str(refused.value)
    assert "found folders images/; 1 file, labels.csv." in said and "file(s)" not in said
    assert said.endswith("a labels file (labels.csv) is not read: the class is the name of "
                         "the folder an image is in, so move each image into its class's folder")
    (root / "labels.csv").unlink()
    assert "labels file" not in str(pytest.raises(DatasetError, data.discover, root).value)


# --------------------------------------------------------------------------- the real data


@pytest.fixture(scope="module")
def real(real_data: Path):
    ds = data.discover(real_data)
    return ds, data.audit(ds)


@pytest.mark.data
def test_real_dataset_audit(real):
    ds, report = real
    assert ds.layout == "sartaj" and report["n_images"] == 3264
    assert report["classes"] == list(data.CANONICAL)
    assert report["counts"]["train"] == {"glioma": 826, "meningioma": 822, "no_tumor": 395,
                                         "pituitary": 827}
    assert report["counts"]["test"] == {"glioma": 100, "meningioma": 115, "no_tumor": 105,
                                        "pituitary": 74}
    assert report["unreadable"] == []
    assert report["exact_duplicate_groups"] == 166  # byte identity: shared/README's figure
    assert report["cross_split_duplicate_groups"] == 64
    assert report["cross_split_duplicates"] > 0
    assert report["near_duplicate_groups"] > 100
    assert report["largest_duplicate_group"] < 50  # the threshold does not chain everything
    # Nearly every tumour image is a 512x512 export of one collection, few no-tumour images are.
    assert report["size_cue"]["tumour_vs_no_tumour"]["warn"]


@pytest.mark.data
def test_real_dataset_dedupe_splits_have_no_leaks(real):
    ds, _ = real
    infos = data.hash_files(ds.records)
    s = data.make_splits(ds, seed=42)
    train_sha = {infos[r.rel].sha1 for r in s.train + s.val}
    assert not [r.rel for r in s.test if infos[r.rel].sha1 in train_sha]
    assert abs(len(s.test) / 3264 - 0.15) < 0.01
    o = data.make_splits(ds, seed=42, official_test=True)
    assert len(o.test) == 394 and o.info["official_test"]["leaking_exact"] > 0
    pool_sha = {infos[r.rel].sha1 for r in o.train + o.val}
    assert not [r.rel for r in o.test if infos[r.rel].sha1 in pool_sha]


def test_discover_keeps_nifti_volumes_apart_and_says_why_a_folder_of_them_has_no_images(
        tmp_path: Path):
    """A NIfTI volume is never one image: `discover` lists it apart (`Dataset.volumes`, which
    evaluate --data reports as skipped), and a class folder holding nothing else says so
    rather than only "no images"."""
    from pipeline.data.discovery import SERIES_NOTE

    (tmp_path / "glioma").mkdir()
    (tmp_path / "glioma" / "brain.nii.gz").write_bytes(b"not read by discovery")
    (tmp_path / "glioma" / "brain.NII").write_bytes(b"nor this")
    with pytest.raises(data.DatasetError, match=r"hold no images, only 2 NIfTI volumes: "
                       + SERIES_NOTE[:40]):
        data.discover(tmp_path)
    Image.new("L", (64, 64), 90).save(tmp_path / "glioma" / "a.png")
    ds = data.discover(tmp_path)
    assert [r.rel for r in ds.records] == ["glioma/a.png"]
    assert [(r.rel, r.label) for r in ds.volumes] == [("glioma/brain.NII", "glioma"),
                                                     ("glioma/brain.nii.gz", "glioma")]


@pytest.mark.data
def test_the_real_dataset_is_known_by_its_fingerprint(real):
    """A run names the Sartaj data by the manifest's fingerprint (`known_data`): the folder as
    downloaded must give the recorded one, or the shipped runs' facts would go unsaid; its
    Sartaj class folder names need no "class folders" line."""
    from pipeline.known_data import SARTAJ_FINGERPRINTS, trained_on_sartaj

    ds, report = real
    fingerprint = data.fingerprint(ds)
    assert fingerprint in SARTAJ_FINGERPRINTS
    assert trained_on_sartaj({"data": {"fingerprint": fingerprint}})
    assert data.class_folders_note(report["class_folders"]) is None
