"""A user's own dataset (review h72): patient folders, unreadable files, label conflicts, too few
classes, the dataset's own test folder, the size cue on balanced data and an interrupted run."""

from __future__ import annotations

import json
import shutil
import warnings
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_data import save, shapes
from typer.testing import CliRunner

from pipeline import data, train
from pipeline.cli import app
from pipeline.config import profile
from pipeline.data.auditing import size_cue
from pipeline.data.splits import with_patients


def _patients(root: Path, classes: dict[str, int], slices: int = 4) -> Path:
    """`<Class>/patient_NNN/slice_k.jpg`: `classes` {folder: patients}, each image distinct."""
    n = 500
    for cls, patients in classes.items():
        for p in range(patients):
            for k in range(slices):
                n += 1
                save(root / cls / f"patient_{p:03d}" / f"slice_{k}.jpg", shapes(n))
    return root


def _flat(root: Path, classes: dict[str, int], seed: int = 0) -> Path:
    n = 2000 + seed * 100
    for cls, count in classes.items():
        for i in range(count):
            n += 1
            save(root / cls / f"img{i:03d}.jpg", shapes(n))
    return root


# --------------------------------------------------------------------------- patient folders


def test_each_patient_folder_lies_in_one_split(tmp_path: Path):
    ds = data.discover(_patients(tmp_path / "nested", {"Glioma": 8, "No Tumour": 8}))
    assert len(ds.patients()) == 16 and ds.records[0].patient == "Glioma/patient_000"
    splits = data.make_splits(ds, seed=42)
    where: dict[str, set[str]] = defaultdict(set)
    for name in data.SPLIT_NAMES:
        for r in getattr(splits, name):
            where[r.patient].add(name)
    assert len(where) == 16 and all(len(s) == 1 for s in where.values()), dict(where)
    assert {n for s in where.values() for n in s} == {"train", "val", "test"}
    assert splits.info["patient_folders"] == 16
    assert "patient/series folder" in splits.info["grouping"]
    # without dedupe the patients are kept whole all the same
    plain = data.make_splits(ds, seed=42, dedupe=False)
    for name in data.SPLIT_NAMES:
        others = {r.patient for s in data.SPLIT_NAMES if s != name for r in getattr(plain, s)}
        assert not {r.patient for r in getattr(plain, name)} & others


def test_a_dataset_without_patient_folders_is_split_as_before(tmp_path: Path):
    ds = data.discover(_flat(tmp_path / "flat", {"glioma": 12, "no_tumor": 12}))
    assert ds.patients() == [] and all(r.patient is None for r in ds.records)
    comps = [[i] for i in range(len(ds.records))]
    assert with_patients(ds.records, comps) == (comps, 0)
    info = data.make_splits(ds, seed=42).info
    assert "patient_folders" not in info and "patient" not in info["grouping"]


def test_cross_validation_folds_keep_each_patient_folder_whole(tmp_path: Path):
    from pipeline.evaluate.cv import _pool_and_groups, cv_folds

    ds = data.discover(_patients(tmp_path / "nested", {"Glioma": 5, "No Tumour": 5}, slices=3))
    for dedupe in (True, False):
        cfg = profile("smoke")
        cfg.dedupe = dedupe
        records, groups = _pool_and_groups(ds, cfg, lambda *a: None)
        assert len(set(groups)) == 10  # one group per patient (the slices are all distinct)
        folds = cv_folds([r.label for r in records], groups, k=5, seed=1)
        for fold in folds:
            parts = {s: {records[i].patient for i in fold[s]} for s in ("train", "val", "test")}
            assert not (parts["train"] & parts["test"] or parts["val"] & parts["test"]
                        or parts["train"] & parts["val"])


def test_audit_counts_patient_folders(tmp_path: Path):
    root = _patients(tmp_path / "nested", {"Glioma": 3, "Meningioma": 2}, slices=2)
    report = data.audit(data.discover(root))
    assert report["patient_folders"] == 5 and report["patient_examples"][0] == "Glioma/patient_000"
    out = CliRunner().invoke(app, ["audit", str(root)])
    assert out.exit_code == 0, out.output
    text = " ".join(out.stdout.split())
    assert ("patient/series folders: 5 (folders between the class folders and the images, e.g. "
            "Glioma/patient_000/): train keeps each folder's images in one split") in text


# --------------------------------------------------------------------------- what train leaves out


def _dirty(root: Path) -> Path:
    """Two classes in Training/ and Testing/, two unreadable files and one label conflict."""
    n = 3000
    for split, count in (("Training", 10), ("Testing", 4)):
        for cls in ("glioma", "no_tumor"):
            for i in range(count):
                n += 1
                save(root / split / cls / f"img{i:02d}.jpg", shapes(n))
    (root / "Training" / "glioma" / "empty.jpg").write_bytes(b"")
    (root / "Training" / "no_tumor" / "notes.jpg").write_text("not an image")
    shutil.copyfile(root / "Training" / "glioma" / "img03.jpg",
                    root / "Training" / "no_tumor" / "conflict.jpg")
    return root


def test_label_conflicts_are_in_no_split(tmp_path: Path):
    ds = data.discover(_dirty(tmp_path / "d"))
    splits = data.make_splits(ds, seed=42)
    kept = {r.rel for s in data.SPLIT_NAMES for r in getattr(splits, s)}
    pair = {"Training/glioma/img03.jpg", "Training/no_tumor/conflict.jpg"}
    assert not pair & kept
    assert splits.info["label_conflicts_dropped"] == 2
    assert set(splits.info["label_conflicts"]) == pair
    assert len(kept) == 29 - 2  # 28 images and the copy readable, the conflicting pair out


def _train_notes(monkeypatch, tmp_path: Path, root: Path, official: bool) -> list[str]:
    """What train_run says before training (the fit itself replaced: the notes come first)."""
    monkeypatch.setattr(train, "_train_and_finalize", lambda *a, **k: tmp_path / "done")
    cfg = profile("smoke")
    cfg.official_test = official
    said: list[str] = []
    train.train_run(cfg, root, tmp_path / ("art-o" if official else "art"), ["custom_cnn"],
                    say=said.append)
    return said


def test_train_says_what_its_split_left_out_and_pooled(tmp_path: Path, monkeypatch):
    root = _dirty(tmp_path / "d")
    said = _train_notes(monkeypatch, tmp_path, root, official=False)
    assert ("skipped 2 unreadable files: Training/glioma/empty.jpg, Training/no_tumor/notes.jpg "
            "(run audit for each reason)") in said, said
    assert ("left out 2 images whose bytes sit under two classes (label conflicts: "
            "Training/glioma/img03.jpg, Training/no_tumor/conflict.jpg); they are in no split "
            "(audit lists them)") in said, said
    assert ("your Testing/ folder (8 images) is pooled with the other images and split like "
            "them (own deduplicated split); --official-test tests on it") in said, said
    official = _train_notes(monkeypatch, tmp_path, root, official=True)
    assert not [s for s in official if "pooled" in s], official
    plain = _train_notes(monkeypatch, tmp_path, _flat(tmp_path / "clean", {"glioma": 6,
                                                                           "no_tumor": 6}),
                         official=False)
    assert not [s for s in plain if "unreadable" in s or "conflict" in s or "pooled" in s]


def test_train_says_patient_folders_are_kept_whole(tmp_path: Path, monkeypatch):
    root = _patients(tmp_path / "nested", {"Glioma": 4, "Meningioma": 4}, slices=3)
    said = _train_notes(monkeypatch, tmp_path, root, official=False)
    assert data.patient_note(8, "Glioma/patient_000") in said, said
    splits = json.loads(next((tmp_path / "art" / "runs").glob(".tmp-*/splits.json")).read_text())
    assert splits["info"]["patient_folders"] == 8


# --------------------------------------------------------------------------- too few classes


def _one_known_class(root: Path) -> Path:
    return _flat(root, {"Glioblastoma": 3, "Metastasis": 3, "Normal": 3})


def test_one_known_class_is_refused_before_any_work(tmp_path: Path):
    root, out = _one_known_class(tmp_path / "unknown"), tmp_path / "art"
    ds = data.discover(root)
    why = data.untrainable(ds)
    assert why == ("training needs at least 2 classes with images, unknown has 1: Normal/ -> "
                   "no_tumor; ignored (no known class name): Glioblastoma/, Metastasis/. Known "
                   "classes: glioma, meningioma, no_tumor, pituitary")
    result = CliRunner().invoke(app, ["train", "--data", str(root), "--out", str(out),
                                      "--model", "custom_cnn", "--profile", "smoke"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()  # the profile line, then the refusal: nothing between
    assert len(lines) == 2 and lines[0].startswith("profile smoke"), lines
    assert lines[1] == f"error: {why}"
    assert not (out / "runs").exists()  # no runs/.tmp-... left behind
    with pytest.raises(data.DatasetError, match="at least 2 classes"):  # the library too
        train.train_run(profile("smoke"), root, out, ["custom_cnn"])
    assert not (out / "runs").exists() or not any((out / "runs").iterdir())


def test_a_class_without_training_or_validation_images_is_refused_before_any_run(
        tmp_path: Path):
    """One glioma among 24 no-tumour images: the glioma went to the test split, and the run
    trained without the class, "tested" it and exited 0 (a review). Refused now, naming the
    class and its counts, before any run folder exists."""
    root, out = _flat(tmp_path / "skew", {"Glioma": 1, "Healthy": 24}), tmp_path / "art"
    result = CliRunner().invoke(app, ["train", "--data", str(root), "--out", str(out),
                                      "--model", "custom_cnn", "--profile", "smoke"])
    assert result.exit_code == 2, result.output
    said = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert said.startswith("error: every class needs images in training and in validation, "
                           "and glioma (train "), said
    assert "has too few" in said and "no_tumor" not in said, said
    assert not (out / "runs").exists() or not any((out / "runs").iterdir())
    ds = data.discover(_flat(tmp_path / "fine", {"Glioma": 12, "Healthy": 12}))
    assert data.split_gaps(data.make_splits(ds, seed=0), ds.classes) is None
    # a large class kept whole by its groups (patient folders): the message says why and what
    # to try, not only "add images" (a review: 200 gliomas in 2 patient folders)
    from pipeline.data.discovery import ImageRecord

    def recs(label: str, n: int) -> list:
        return [ImageRecord(Path(f"{label}{k}.jpg"), f"{label}{k}.jpg", label, None)
                for k in range(n)]

    grouped = data.Splits(recs("glioma", 100) + recs("no_tumor", 80), recs("no_tumor", 20),
                          recs("glioma", 100))
    said = data.split_gaps(grouped, ["glioma", "no_tumor"])
    assert said is not None and "glioma (train 100, val 0, test 100) has too few" in said
    assert "another seed" in said
    assert "another seed" not in data.split_gaps(
        data.Splits(recs("glioma", 1), recs("no_tumor", 2), []), ["glioma", "no_tumor"])


def test_tune_refuses_it_before_any_work_too(tmp_path: Path):
    from pipeline.tune import tune

    root, out = _one_known_class(tmp_path / "unknown"), tmp_path / "art"
    result = CliRunner().invoke(app, ["tune", "--data", str(root), "--model", "custom_cnn",
                                      "--budget", "1", "--profile", "smoke", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1].startswith("error: training needs at least 2 classes")
    assert not (out / "tune").exists()
    with pytest.raises(data.DatasetError, match="at least 2 classes"):  # the library too
        tune(root, "custom_cnn", 1, out, cfg=profile("smoke"))


def test_print_config_and_audit_say_it_cannot_be_trained(tmp_path: Path):
    root = _one_known_class(tmp_path / "unknown")
    shown = CliRunner().invoke(app, ["train", "--print-config", "--data", str(root)])
    assert shown.exit_code == 2
    assert json.loads(shown.stdout)["profile"] == "full"  # the config is still shown
    assert "error: training needs at least 2 classes" in shown.stderr
    audit = CliRunner().invoke(app, ["audit", str(root)])
    assert audit.exit_code == 0, audit.output
    assert "train would refuse it: training needs at least 2 classes" in " ".join(
        audit.stdout.split())
    fine = CliRunner().invoke(app, ["train", "--print-config", "--data",
                                    str(_flat(tmp_path / "two", {"glioma": 2, "no_tumor": 2}))])
    assert fine.exit_code == 0 and fine.stderr == ""


# --------------------------------------------------------------------------- the size cue


def test_a_size_that_carries_nothing_scores_chance():
    """Leave-one-out scored 0.03 against a chance of 0.25 on balanced data (review h72): taking
    an image out made its own class the minority of its size."""
    labels, sizes = [], []
    for c in ("glioma", "meningioma", "no_tumor", "pituitary"):
        labels += [c] * 12
        sizes += ["512x512"] * 10 + ["256x256"] * 2
    cue = size_cue(labels, sizes)
    for key in ("classes", "tumour_vs_no_tumour"):
        assert cue[key]["balanced_accuracy"] == cue[key]["chance"], cue
        assert not cue[key]["warn"]
    rng = np.random.default_rng(0)  # random sizes: around chance, never far below it
    for _ in range(20):
        noise = size_cue(labels, [str(s) for s in rng.integers(0, 3, len(labels))])
        assert noise["classes"]["balanced_accuracy"] >= 0.25 - 0.15, noise


def test_the_size_cue_still_finds_a_size_that_tells_classes_apart():
    # Two tumour types share one size, no-tumour images have another: size tells no tumour
    # apart (and glioma from meningioma not at all).
    labels = ["glioma"] * 4 + ["meningioma"] * 4 + ["no_tumor"] * 4
    cue = size_cue(labels, ["512x512"] * 8 + ["200x200"] * 4)
    assert cue["classes"] == {"accuracy": 0.6667, "balanced_accuracy": 0.6667,
                              "majority_accuracy": 0.3333, "chance": 0.3333, "warn": True}
    assert cue["tumour_vs_no_tumour"] == {"accuracy": 1.0, "balanced_accuracy": 1.0,
                                          "majority_accuracy": 0.6667, "chance": 0.5,
                                          "warn": True}
    # Every size unique: no vote to learn from, the commonest label overall.
    lone = size_cue(["a", "a", "a", "b"], ["1", "2", "3", "4"])
    assert lone["classes"]["balanced_accuracy"] == 0.5 and not lone["classes"]["warn"]
    assert lone["tumour_vs_no_tumour"] is None


# --------------------------------------------------------------------------- interruption


def test_an_interrupted_train_names_the_run_and_how_to_resume(tmp_path: Path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "_train_and_finalize", interrupt)
    root, out = _flat(tmp_path / "d", {"glioma": 6, "no_tumor": 6}), tmp_path / "my runs"
    result = CliRunner().invoke(app, ["train", "--data", str(root), "--out", str(out),
                                      "--model", "custom_cnn", "--profile", "smoke"])
    assert result.exit_code == 130, result.output
    run_id = next((out / "runs").glob(".tmp-*")).name[len(".tmp-"):]
    last = [ln for ln in result.stderr.splitlines() if ln.strip()][-1]
    assert last == (f"interrupted: run {run_id} is kept; resume it with `python -m pipeline "
                    f"train --resume {run_id} --out '{out}'`")


def test_a_resume_says_which_options_it_does_not_use_and_finds_moved_data(tmp_path: Path,
                                                                          monkeypatch):
    """`--resume ID --epochs 5` trained on silently with the saved 40 epochs, and a data folder
    moved since could not be given: the resume failed with the old absolute path, no way out
    (a review). The unused options are named; --data says where the data is now."""
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "_train_and_finalize", interrupt)
    root, out = _flat(tmp_path / "d", {"glioma": 6, "no_tumor": 6}), tmp_path / "runs"
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--data", str(root), "--out", str(out),
                                 "--model", "custom_cnn", "--profile", "smoke"])
    assert result.exit_code == 130, result.output
    run_id = next((out / "runs").glob(".tmp-*")).name[len(".tmp-"):]
    moved = root.rename(tmp_path / "moved")
    result = runner.invoke(app, ["train", "--resume", run_id, "--out", str(out),
                                 "--epochs", "5"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert ("note: --epochs not used: a resumed run trains on with its saved config, models and "
            "evaluation choice (--data may say where its data folder is now)") in " ".join(
                result.stderr.split()), lines
    assert lines[-1] == (f"error: run {run_id} was trained on {root}, which is not there now: "
                         "if it moved, give --data with where it is"), lines
    # a folder of the same file names holding other images is not the run's data (a review of
    # this fix: regenerated phantoms resumed silently)
    other = tmp_path / "other"
    shutil.copytree(moved, other)
    first = sorted(other.rglob("*.jpg"))[0]
    save(first, shapes(999))
    result = runner.invoke(app, ["train", "--resume", run_id, "--out", str(out),
                                 "--data", str(other)])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1] == (
        f"error: {other} does not hold the images run {run_id} was trained on (another file, "
        "label or content): give the folder it began on"), result.stderr
    result = runner.invoke(app, ["train", "--resume", run_id, "--out", str(out),
                                 "--data", str(moved)])
    assert result.exit_code == 130, result.output  # on to training (interrupted here again)
    assert not any(ln.startswith("note:") for ln in result.stderr.splitlines())
    # run.json names the new place: a later resume needs no --data
    saved = json.loads(next((out / "runs").glob(".tmp-*/run.json")).read_text())
    assert saved["data_dir"] == str(moved)
    result = runner.invoke(app, ["train", "--resume", run_id, "--out", str(out)])
    assert result.exit_code == 130, result.output


def test_an_interrupt_before_the_run_is_resumable_says_only_interrupted(tmp_path: Path,
                                                                       monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "make_splits", interrupt)  # still hashing: no run yet
    with pytest.raises(KeyboardInterrupt) as caught:
        train.train_run(profile("smoke"), _flat(tmp_path / "d", {"glioma": 3, "no_tumor": 3}),
                        tmp_path / "art", ["custom_cnn"])
    assert not isinstance(caught.value, train.RunInterrupted)


@pytest.mark.slow
def test_training_prints_no_keras_shuffle_warning(tmp_path: Path):
    """Keras warned `shuffle=True ... will be ignored` (seen on a resumed run): our datasets shuffle
    themselves, and fit is told so."""
    root = _flat(tmp_path / "d", {"glioma": 8, "no_tumor": 8})
    for path in list(root.glob("no_tumor/*.jpg"))[:2]:  # another size: balancing has work
        save(path, cv2.resize(shapes(7), (72, 72)))
    cfg = profile("smoke")
    cfg.models["custom_cnn"].epochs = 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train.train_run(cfg, root, tmp_path / "art", ["custom_cnn"], say=lambda _: None)
    shuffle = [str(w.message) for w in caught if "shuffle" in str(w.message)]
    assert shuffle == []
