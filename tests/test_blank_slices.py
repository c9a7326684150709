"""Blank slices inside a series (a multi-frame DICOM, a zip of .dcm slices, a multi-page TIFF,
a NIfTI volume).

A blank single file was refused in one line, but a series' blank slices (the empty slices
outside the head at a series' ends) were answered "no tumour" like any other. Now each is left
out with a note naming it, the other slices are answered, and a series with nothing but blank
slices is refused in one line: on the command line (`predict`, `explain`) and in the dashboard
(`dashboard.core.decode_upload`, what the uploader calls), which share `images.decode_slices`."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import make_dicom

from pipeline import images
from pipeline.images import BLANK_SLICE, ImageError
from pipeline.series import SliceReader, expand_series
from pipeline.synth.tumours import render_phantom


def _phantoms(n: int, blank: tuple[int, ...] = (), side: int = 64) -> np.ndarray:
    """`n` 12-bit phantom slices (different heads), the 0-based `blank` ones one flat level."""
    rng = np.random.default_rng(7)
    frames = np.stack([render_phantom("glioma_tumor", side, rng)[0] for _ in range(n)])
    frames = frames.astype(np.uint16) * 16
    for k in blank:
        frames[k] = 300  # a scanner's padding slice: one level, not always black
    return frames


def _tiff(frames: np.ndarray) -> bytes:
    from PIL import Image

    pages = [Image.fromarray((f // 16).astype(np.uint8)) for f in frames]
    buf = io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:])
    return buf.getvalue()


def _zip(frames: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k in reversed(range(len(frames))):  # stored out of order: sorted by InstanceNumber
            zf.writestr(f"IM{k:04d}.dcm", make_dicom(frames[k], InstanceNumber=k + 1))
    return buf.getvalue()


@pytest.mark.parametrize(("name", "build"), [
    ("scan.dcm", make_dicom), ("series.zip", _zip), ("stack.tif", _tiff)])
def test_blank_first_and_last_slices_are_left_out_and_named(name, build, tmp_path):
    frames = _phantoms(6, blank=(0, 5))
    data = build(frames)
    slices, info = images.decode_slices(data, name)
    assert len(slices) == info["slices"] == 4 and info["frames"] == 6
    assert info["blank"] == [1, 6] and info["indices"] == [1, 2, 3, 4]
    whole = images.decode_slices(build(_phantoms(6)), name)[0]  # the same slices, none blank
    assert all(np.array_equal(a, b) for a, b in zip(slices, whole[1:5], strict=True))
    # the command line: every slice is an item; the blank ones say why they have no answer
    path = tmp_path / name
    path.write_bytes(data)
    items = expand_series([path])
    assert len(items) == 6
    read = SliceReader()
    for item in items[1:5]:
        assert np.array_equal(read(item), whole[item.number - 1])
    for item in (items[0], items[5]):
        with pytest.raises(ImageError) as err:
            read(item)
        assert str(err.value) == f"{item}: {BLANK_SLICE}"
    # the dashboard: the slider offers the four, the note names the two
    from dashboard.core import decode_upload

    upload = decode_upload(name, data)
    assert upload.ok and upload.slice_numbers() == [2, 3, 4, 5]
    assert upload.slice_view(0).name == f"{name} · slice 2 of 6"
    unit = "pages" if name.endswith(".tif") else "slices"
    assert f"{unit} 1 and 6 of 6 are blank (almost all one grey level), not analysed" in upload.note
    assert "4 of its 6 slices are analysed" in upload.note and "evenly" not in upload.note


def test_one_slice_left_beside_blank_ones_is_analysed_alone():
    from dashboard.core import decode_note, decode_upload

    upload = decode_upload("scan.dcm", make_dicom(_phantoms(3, blank=(0, 2))))
    assert upload.ok and upload.slices is None and upload.image is not None
    assert upload.note == ("This file was adapted: only one of its 3 slices could be analysed; "
                           "slices 1 and 3 of 3 are blank (almost all one grey level), not "
                           "analysed.")
    many = decode_note({"frames": 20, "slices": 11, "blank": list(range(1, 10))})
    assert "slices 1 to 9 of 20 are blank" in many
    five = decode_note({"frames": 20, "slices": 15, "blank": [1, 2, 3, 4, 20]})
    assert "slices 1, 2, 3, 4 and 20 of 20 are blank" in five  # "and 1 more" says less


@pytest.mark.parametrize(("name", "build"), [
    ("scan.dcm", make_dicom), ("series.zip", _zip), ("stack.tif", _tiff)])
def test_a_series_of_blank_slices_is_refused_in_one_line(name, build):
    from dashboard.core import decode_upload

    data = build(_phantoms(4, blank=(0, 1, 2, 3)))
    with pytest.raises(ImageError) as err:
        images.decode_slices(data, name)
    assert str(err.value) == (f"{name}: all 4 slices are blank (almost all one grey level): "
                              "nothing in it to classify")
    upload = decode_upload(name, data)
    assert not upload.ok and upload.error == str(err.value)
    # one blank frame alone is a blank file, as a blank PNG is
    with pytest.raises(ImageError, match=r"^one\.dcm: a blank image \(almost all one grey level\)"):
        images.decode_slices(make_dicom(_phantoms(1, blank=(0,))[0]), "one.dcm")


def test_blank_slices_among_unreadable_ones_are_said_apart():
    from dashboard.core import decode_note

    info = {"format": "DICOM series", "frames": 5, "slices": 1, "indices": [2], "blank": [2],
            "unreadable": [(1, "damaged DICOM")]}
    with pytest.raises(ImageError, match=r"^s\.zip: the one slice that could be read is blank"):
        images.without_blank([np.zeros((8, 8, 3), np.uint8)], info, "s.zip")
    note = decode_note({**info, "frames": 6, "slices": 3, "blank": [2, 3]})
    assert "3 of its 6 slices are analysed" in note and "evenly" not in note
    assert "slice 1 could not be read (`damaged DICOM`)" in note
    assert "slices 2 and 3 of 6 are blank" in note


def _nifti(frames: np.ndarray) -> bytes:
    """`frames` as the axial slices of a NIfTI volume (identity affine: z is superior)."""
    import nibabel as nib

    vox = np.stack([f[::-1, ::-1].T for f in frames.astype(np.int16)], axis=2)
    return nib.Nifti1Image(vox, np.eye(4)).to_bytes()


def test_predict_answers_a_series_and_notes_its_blank_slices_without_failing(
        tmp_path: Path, smoke_run: Path):
    """A series' padding slices were a "cannot read" line each and made predict exit 1, though
    every other slice was answered: now one note per series, as the dashboard's, and exit 0."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    files = {"scan.dcm": make_dicom(_phantoms(5, blank=(0, 4))),
             "stack.tif": _tiff(_phantoms(4, blank=(3,))),
             "vol.nii": _nifti(_phantoms(4, blank=(0,)))}
    paths = []
    for name, data in files.items():
        paths.append(tmp_path / name)
        paths[-1].write_bytes(data)
    result = CliRunner().invoke(app, ["predict", "--run", str(smoke_run), *map(str, paths)])
    assert result.exit_code == 0, result.output[-2000:]  # every slice with something in it
    answered = [ln.split("\t")[0] for ln in result.stdout.splitlines() if "\t" in ln]
    scan, stack, vol = map(str, paths)
    assert answered == [*(f"{scan} · slice {k} of 5" for k in (2, 3, 4)),
                        *(f"{stack} · slice {k} of 4" for k in (1, 2, 3)),
                        *(f"{vol} · slice {k} of 4" for k in (2, 3, 4))]
    assert "cannot read" not in result.stderr
    notes = [ln for ln in result.stderr.splitlines() if "blank" in ln]
    assert notes == [f"{scan}: slices 1 and 5 of 5 are {BLANK_SLICE}",
                     f"{stack}: slice 4 of 4 is {BLANK_SLICE}",
                     f"{vol}: slice 1 of 4 is {BLANK_SLICE}"]
    # the dashboard says it in the same words
    from dashboard.core import decode_upload

    note = decode_upload("s.dcm", files["scan.dcm"]).note
    assert f"slices 1 and 5 of 5 are {BLANK_SLICE}" in note
    # --json: the slices left out are listed apart, not as errors
    result = CliRunner().invoke(app, ["predict", "--run", str(smoke_run), "--json", scan])
    assert result.exit_code == 0, result.output[-2000:]
    report = json.loads(result.stdout)
    assert report["errors"] == []
    assert report["blank_slices"] == [f"{scan} · slice {k} of 5" for k in (1, 5)]
    # --out: a row each (a rerun retries them, as it retries failures), exit 0
    out = tmp_path / "preds.csv"
    result = CliRunner().invoke(app, ["predict", "--run", str(smoke_run), "--out", str(out), scan])
    assert result.exit_code == 0, result.output[-2000:]
    assert f"{scan}: slices 1 and 5 of 5 are {BLANK_SLICE}" in result.stderr


def test_predict_says_a_blank_file_is_blank_and_exits_1(tmp_path: Path, smoke_run: Path):
    """A blank file (or a series of nothing but blank slices) has no answer at all: one line
    saying it is blank (it was "cannot read", though it was read), and exit 1, as a file that
    cannot be read: every file given gets an answer or the exit code says so."""
    from PIL import Image
    from typer.testing import CliRunner

    from pipeline.cli import app

    white = tmp_path / "white.png"
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(white)
    flat = tmp_path / "flat.dcm"
    flat.write_bytes(make_dicom(_phantoms(3, blank=(0, 1, 2))))
    scan = tmp_path / "scan.dcm"
    scan.write_bytes(make_dicom(_phantoms(3, blank=(2,))))
    result = CliRunner().invoke(app, ["predict", "--run", str(smoke_run), "--json", str(white),
                                      str(flat), str(scan)])
    assert result.exit_code == 1, result.output[-2000:]
    report = json.loads(result.stdout)
    assert [r["path"] for r in report["results"]] == [f"{scan} · slice {k} of 3" for k in (1, 2)]
    assert report["blank_slices"] == [f"{scan} · slice 3 of 3"]
    assert [e["path"] for e in report["errors"]] == [
        str(white), *(f"{flat} · slice {k} of 3" for k in (1, 2, 3))]
    assert "cannot read" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if "blank" in ln]
    assert lines == [f"{white}: a blank image (almost all one grey level): nothing in it to "
                     "classify",
                     f"{flat}: all 3 slices are blank (almost all one grey level): nothing in "
                     "it to classify",
                     f"{scan}: slice 3 of 3 is {BLANK_SLICE}"]
    # a file that cannot be read still says so
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    result = CliRunner().invoke(app, ["predict", "--run", str(smoke_run), str(bad), str(scan)])
    assert result.exit_code == 1
    assert [ln for ln in result.stderr.splitlines() if ln.startswith("cannot read")] == [
        ln for ln in result.stderr.splitlines() if str(bad) in ln]


def test_explain_leaves_out_a_blank_slice(tmp_path: Path, smoke_run: Path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    stack = tmp_path / "stack.tif"
    stack.write_bytes(_tiff(_phantoms(3, blank=(2,))))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["explain", "--run", str(smoke_run), "--model",
                                      "custom_cnn", "--out", str(out), str(stack)])
    assert result.exit_code == 0, result.output[-2000:]  # the blank slice alone: no failure
    assert f"{stack}: slice 3 of 3 is {BLANK_SLICE}" in result.stderr
    assert "1 blank slice(s) left out" in result.stdout and "unreadable" not in result.stdout
    record = json.loads((out / "explain.json").read_text())
    assert [r["path"] for r in record["images"]] == [f"{stack} · slice {k} of 3" for k in (1, 2)]
    assert record["errors"] == [{"path": f"{stack} · slice 3 of 3",
                                 "error": f"{stack} · slice 3 of 3: {BLANK_SLICE}"}]
    assert sorted(p.name for p in out.glob("*.png")) == [
        f"stack.tif.slice-{k}.custom_cnn.gradcam.png" for k in (1, 2)]
