"""`evaluate --data` on a folder holding images the run has met (review s37, findings 1-2): it
finds re-encoded and resized copies of the run's training and validation images as `predict`
does (`data.membership`), not only byte-identical files; it scores the images new to the run
apart, says so before the table, and points to an official-`Testing/` run beside it."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def artifacts(smoke_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private artifacts folder holding a copy of the smoke run (evaluate writes into it)."""
    root = tmp_path_factory.mktemp("seen") / "artifacts"
    shutil.copytree(smoke_run, root / "runs" / smoke_run.name)
    (root / "latest").write_text(smoke_run.name + "\n")
    return root


def _split(run: Path, name: str) -> list[dict]:
    return json.loads((run / "splits.json").read_text())[name]


def _source(run: Path, item: dict) -> Path:
    data_dir = json.loads((run / "manifest.json").read_text())["data"]["dir"]
    return Path(data_dir) / item["path"]


def _test_images(run: Path, folder: Path, n: int = 4) -> None:
    """The run's first `n` test images copied into class folders under `folder`."""
    for item in _split(run, "test")[:n]:
        (folder / item["label"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(_source(run, item), folder / item["label"])


def _copies(run: Path, out: Path) -> dict[str, list[str]]:
    """A folder of the run's images as a user might hold them: training images re-saved as
    PNG (the same pixels, other bytes), re-encoded as JPEG and shrunk (changed copies), a
    validation image re-saved, and test images copied. Returns {what: [rel paths]}."""
    train, val, test = (_split(run, s) for s in ("train", "val", "test"))
    made: dict[str, list[str]] = {"png": [], "jpeg": [], "val": [], "test": []}

    def save(item: dict, what: str, suffix: str, change=None, **kw) -> None:
        image = Image.open(_source(run, item)).convert("RGB")
        image = change(image) if change else image
        rel = f"{item['label']}/{what}-{Path(item['path']).stem}{suffix}"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        image.save(out / rel, **kw)
        made[what].append(rel)

    for item in train[:3]:
        save(item, "png", ".png", compress_level=1)  # other bytes than the original PNG
    for item in train[3:5]:
        save(item, "jpeg", ".jpg", lambda im: im.resize((100, 100)), quality=70)
    save(val[0], "val", ".png", compress_level=1)
    for item in test[:4]:
        rel = f"{item['label']}/test-{Path(item['path']).name}"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_source(run, item), out / rel)
        made["test"].append(rel)
    return made


def _printed(summary: dict) -> str:
    """evaluate's printout of `summary`, stdout and stderr in the order they were written."""
    from pipeline.cli.eval_output import _print_eval_summary

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        _print_eval_summary(summary)
    return buf.getvalue()


def test_re_encoded_copies_of_training_images_are_found_and_scored_apart(artifacts: Path,
                                                                         tmp_path: Path):
    from pipeline.evaluate import evaluate_run

    run = next((artifacts / "runs").iterdir())
    folder = tmp_path / "mine"
    made = _copies(run, folder)
    # none of the training or validation copies is byte-identical to a run image: the SHA-1
    # check of the file bytes found none of them (it reported 0 and printed nothing)
    run_bytes = {hashlib.sha1(_source(run, i).read_bytes()).digest()
                 for s in ("train", "val") for i in _split(run, s)}
    assert not {hashlib.sha1((folder / r).read_bytes()).digest()
                for w in ("png", "jpeg", "val") for r in made[w]} & run_bytes

    summary = evaluate_run(run, data_dir=folder, name="mine", n_boot=100)
    overlap = summary["source"]["overlap_with_training"]
    assert overlap["checked"] and overlap["splits"] == {
        "train": {"exact": 3, "near": 2}, "val": {"exact": 1, "near": 0},
        "test": {"exact": 4, "near": 0}}
    assert overlap["n_seen"] == 6 and overlap["n_new"] == 4
    assert sorted(overlap["examples"]["train"]) == sorted(made["png"] + made["jpeg"])
    assert "official_test_run" not in overlap  # no official-Testing run beside this one

    # the figures on the 4 images new to the run, beside those on all 10, in every file
    fresh = summary["new_to_run"]
    assert summary["n"] == 10 and fresh["n"] == 4
    met = json.loads((run / "custom_cnn" / "external" / "mine" / "metrics.json").read_text())
    assert met["n"] == 10 and met["new_to_run"]["n"] == 4
    test_rows = set(made["test"])
    rows = (run / "custom_cnn" / "external" / "mine" / "predictions.csv").read_text()
    right = sum(line.split(",")[0] in test_rows and line.rstrip().endswith(",1")
                for line in rows.splitlines()[1:])
    assert met["new_to_run"]["accuracy"] == pytest.approx(right / 4)
    assert fresh["models"]["custom_cnn"]["accuracy"] == met["new_to_run"]["accuracy"]
    comp = json.loads((run / "external" / "mine" / "comparison.json").read_text())
    assert comp["n"] == 10 and comp["new_to_run"]["n"] == 4
    assert comp["new_to_run"]["verdict"] == fresh["verdict"] and "on 4 images" in fresh["verdict"]

    # the warning comes before the table, and the table is on the new images
    said = _printed(summary)
    warning = said.index("warning: 6 of these 10 images are in the run's training or "
                         "validation split (5 training, 1 validation; 2 of them changed copies")
    title = said.index("4 images new to the run")
    assert warning < title < said.index(fresh["verdict"][:40])
    assert "all 10" in said  # each model's figures on all images, beside its own
    # and it says what the look-up cannot find (a review's rotated and cropped copies of
    # training images all counted as new)
    from pipeline.evaluate.external import NOT_FOUND_NOTE
    assert warning < said.index(f"note: {NOT_FOUND_NOTE}") < title


def test_each_file_is_decoded_once_and_found_as_the_separate_look_up_finds_it(
        artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """evaluate --data looked a folder up in the run's splits (decoding every file), then
    decoded every file again for each model and once more for the copy groups: now each file
    is decoded once, and the look-up finds what the separate one (`training_overlap`, which
    explain-eval keeps) finds, an unreadable file included."""
    from pipeline import artifacts as arts
    from pipeline import data, images
    from pipeline.data import hashing
    from pipeline.evaluate import evaluate_run
    from pipeline.evaluate.external import training_overlap

    run = next((artifacts / "runs").iterdir())
    folder = tmp_path / "once"
    made = _copies(run, folder)
    (folder / "glioma" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    records = data.discover(folder).records
    expected = training_overlap(arts.open_run(run), records).report

    monkeypatch.setattr(hashing, "_HASH_CACHE", {})  # nothing decoded earlier in the session
    decoded: list[str] = []
    real = images.decode_image_info

    def spy(data_: bytes, name: str = "", *args, **kwargs):
        decoded.append(Path(name).name)
        return real(data_, name, *args, **kwargs)

    monkeypatch.setattr(images, "decode_image_info", spy)
    summary = evaluate_run(run, data_dir=folder, name="once", n_boot=50)
    assert sorted(decoded) == sorted(r.path.name for r in records)  # each file once
    assert summary["source"]["overlap_with_training"] == expected
    assert summary["source"]["n_unreadable"] == 1 and summary["n"] == sum(map(len, made.values()))
    assert expected["n_seen"] == 6 and expected["n_new"] == 4


def test_series_files_are_skipped_and_said_not_scored_with_the_folder_label(
        artifacts: Path, tmp_path: Path):
    """A NIfTI volume in an `evaluate --data` folder was dropped without a word, and a TIFF
    stack or a multi-frame DICOM was scored as its first slice with the folder's label (most
    slices of a glioma volume show no tumour): none is scored now, and one line says how many
    were skipped and why, in the CLI, the folder's record and results.md."""
    import nibabel as nib
    from helpers import make_dicom

    from pipeline import artifacts as arts
    from pipeline.data.discovery import SERIES_NOTE
    from pipeline.evaluate import evaluate_run
    from pipeline.evaluate.external import series_line
    from pipeline.results_md import results_markdown

    run = next((artifacts / "runs").iterdir())
    folder = tmp_path / "volumes"
    _test_images(run, folder)
    rng = np.random.default_rng(0)
    pages = [Image.fromarray(rng.integers(0, 256, (64, 64), np.uint8)) for _ in range(3)]
    glioma = folder / "glioma"
    glioma.mkdir(exist_ok=True)
    pages[0].save(glioma / "stack.tif", save_all=True, append_images=pages[1:])
    (glioma / "scan.dcm").write_bytes(make_dicom(rng.integers(0, 4096, (3, 64, 64))))
    nib.save(nib.Nifti1Image(rng.random((64, 64, 5)).astype(np.float32), np.eye(4)),
             glioma / "brain.nii.gz")

    summary = evaluate_run(run, data_dir=folder, name="volumes", n_boot=50)
    assert summary["n"] == 4  # the four single images only
    skipped = summary["source"]["skipped_series"]
    assert skipped == {"n": 3, "reason": SERIES_NOTE, "examples": [
        "glioma/brain.nii.gz", "glioma/scan.dcm", "glioma/stack.tif"]}
    rows = (run / "custom_cnn" / "external" / "volumes" / "predictions.csv").read_text()
    assert not any(name in rows for name in ("stack.tif", "scan.dcm", "brain.nii"))
    met = json.loads((run / "custom_cnn" / "external" / "volumes" / "metrics.json").read_text())
    assert met["source"]["skipped_series"] == skipped  # the folder's record says it too
    line = series_line(skipped)
    assert line.startswith("skipped 3 series files (NIfTI volumes, multi-frame DICOM or TIFF "
                           "stacks): a folder's label applies to a whole volume")
    assert _printed(summary).count(line) == 1  # one line, before the table
    assert _printed(summary).index(line) < _printed(summary).index(summary["verdict"][:30])
    assert f"- volumes: {line}" in results_markdown(arts.open_run(run))

    # a folder of nothing but series: one line saying so, not "none of 0 images"
    only = tmp_path / "only" / "glioma"
    only.mkdir(parents=True)
    shutil.copy(glioma / "stack.tif", only)
    from pipeline.evaluate import EvaluationError
    with pytest.raises(EvaluationError, match="holds only series files .1.: a folder's label"):
        evaluate_run(run, data_dir=only.parent, name="only", n_boot=50)


def test_dicom_slices_of_one_series_are_left_out_as_a_multi_frame_file_is(
        artifacts: Path, tmp_path: Path):
    """Three single-frame .dcm files of one series in glioma/ were scored as three glioma
    images, while the same slices in one multi-frame file were left out: a folder's label is
    the volume's. They are left out now, counted in one line; a DICOM alone in its series is
    scored, and a folder whose series are spread over several labels (sorted slice by slice)
    keeps every slice."""
    from helpers import make_dicom
    from pydicom.uid import generate_uid

    from pipeline.evaluate import evaluate_run
    from pipeline.evaluate.external import series_line

    run = next((artifacts / "runs").iterdir())
    folder = tmp_path / "slices"
    _test_images(run, folder)
    rng = np.random.default_rng(1)
    (folder / "glioma").mkdir(exist_ok=True)
    uid = generate_uid()
    for k in range(3):  # one series, one file per slice
        (folder / "glioma" / f"IM{k}.dcm").write_bytes(make_dicom(
            rng.integers(0, 4096, (64, 64)), SeriesInstanceUID=uid, InstanceNumber=k + 1))
    (folder / "glioma" / "key.dcm").write_bytes(make_dicom(  # alone in its series: an image
        rng.integers(0, 4096, (64, 64)), SeriesInstanceUID=generate_uid()))

    summary = evaluate_run(run, data_dir=folder, name="slices", n_boot=50)
    assert summary["n"] == 5  # the four images and the key slice
    skipped = summary["source"]["skipped_series"]
    assert skipped["n"] == 3 and skipped["n_slice_files"] == 3, skipped
    assert skipped["n_slice_series"] == 1
    assert skipped["examples"] == ["glioma/IM0.dcm", "glioma/IM1.dcm", "glioma/IM2.dcm"]
    rows = (run / "custom_cnn" / "external" / "slices" / "predictions.csv").read_text()
    assert "key.dcm" in rows and "IM0.dcm" not in rows
    line = series_line(skipped)
    assert line.startswith("skipped 3 DICOM slice files of 1 series (one file per slice): "
                           "a folder's label applies to a whole volume"), line
    assert _printed(summary).count(line) == 1
    # beside a multi-frame file: both counted in the one line
    assert series_line({**skipped, "n": 4}).startswith(
        "skipped 1 series file (NIfTI volumes, multi-frame DICOM or TIFF stacks) and 3 DICOM "
        "slice files of 1 series")

    # sorted slice by slice: the series is in two class folders, so each label is a slice's
    (folder / "no_tumor").mkdir(exist_ok=True)
    (folder / "no_tumor" / "IM3.dcm").write_bytes(make_dicom(
        rng.integers(0, 4096, (64, 64)), SeriesInstanceUID=uid, InstanceNumber=4))
    summary = evaluate_run(run, data_dir=folder, name="sorted", n_boot=50)
    assert summary["n"] == 9 and summary["source"]["skipped_series"] == {"n": 0}


def test_a_folder_of_training_copies_gets_no_headline_and_the_official_run_is_named(
        artifacts: Path, tmp_path: Path):
    from pipeline.evaluate import evaluate_run

    run = next((artifacts / "runs").iterdir())
    folder = tmp_path / "copies"
    for item in _split(run, "train")[:4]:
        dst = folder / item["label"] / (Path(item["path"]).stem + ".png")
        dst.parent.mkdir(parents=True, exist_ok=True)
        Image.open(_source(run, item)).save(dst, compress_level=1)
    # an official-Testing run beside it, whose test split holds these images
    official = artifacts / "runs" / "20990101-000000-0ff1ce"
    shutil.copytree(run, official, ignore=shutil.ignore_patterns("external"))
    manifest = json.loads((official / "manifest.json").read_text())
    manifest["config"]["official_test"] = True
    manifest.update(run_id=official.name, title="Official Testing split")
    (official / "manifest.json").write_text(json.dumps(manifest))
    hashes = json.loads((official / "split_hashes.json").read_text())
    for key in ("splits", "pixels"):
        hashes[key]["test"], hashes[key]["train"] = hashes[key]["train"], hashes[key]["test"]
    (official / "split_hashes.json").write_text(json.dumps(hashes))
    try:
        summary = evaluate_run(run, data_dir=folder, name="copies", n_boot=100)
        overlap = summary["source"]["overlap_with_training"]
        assert overlap["n_seen"] == 4 and overlap["n_new"] == 0
        assert overlap["official_test_run"] == {"run_id": official.name,
                                                "title": "Official Testing split",
                                                "n_in_its_test": 4}
        assert summary["new_to_run"] == {"n": 0}
        said = _printed(summary)
        assert "no figures on new images: the run trained or was validated on all 4" in said
        assert summary["verdict"] not in said  # no verdict on images the models learnt
        assert (f"hint: 4 of these images are in the test split of run {official.name} "
                f"(Official Testing split), which never trained on them: use --run "
                f"{official.name}") in said
        # the official run itself is not pointed to itself (nor to another run)
        mine = evaluate_run(official, data_dir=folder, name="copies", n_boot=100)
        assert "official_test_run" not in mine["source"]["overlap_with_training"]
        assert mine["new_to_run"]["n"] == 4  # its test split: new to it
    finally:
        shutil.rmtree(official)


def test_a_run_without_split_hashes_says_the_check_was_not_made(artifacts: Path,
                                                                tmp_path: Path):
    from pipeline.evaluate import evaluate_run

    run = tmp_path / "runs" / "older"
    shutil.copytree(next((artifacts / "runs").iterdir()), run,
                    ignore=shutil.ignore_patterns("external"))
    (run / "split_hashes.json").unlink()
    folder = tmp_path / "few"
    for item in _split(run, "test")[:3]:
        (folder / item["label"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(_source(run, item), folder / item["label"])
    summary = evaluate_run(run, data_dir=folder, name="few", n_boot=100)
    overlap = summary["source"]["overlap_with_training"]
    assert not overlap["checked"] and "python -m pipeline ood --run" in overlap["reason"]
    assert summary["new_to_run"] is None
    said = _printed(summary)
    assert said.index("warning: the images were not checked against the run's own") < \
        said.index(summary["verdict"][:30])


def test_find_files_reads_each_file_once_for_every_run_and_skips_unreadable(tmp_path: Path):
    from pipeline.data.discovery import ImageRecord
    from pipeline.data.membership import Membership, find_files, split_hashes
    from pipeline.data.splits import Splits

    good = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), np.uint8)).save(good)
    broken = tmp_path / "b.png"
    broken.write_text("not an image")
    record = ImageRecord(good, "a.png", "glioma", None)
    report = split_hashes(Splits([record], [], []))
    found = find_files([Membership(report), Membership({"splits": {}})], [good, broken])
    assert found[1] is None
    assert found[0][0] is not None and found[0][0].split == "train" and found[0][1] is None
