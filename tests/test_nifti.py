"""NIfTI volumes (.nii, .nii.gz): read as a series of axial slices by `predict`, `explain` and
the dashboard (`images.decode_slices`, which `dashboard.core.decode_upload` calls). Every volume
is built here with nibabel: phantom slices, a known affine."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline import dicom, images
from pipeline.images import ImageError
from pipeline.names import file_ext
from pipeline.series import Slice, SliceReader, expand_series
from pipeline.synth.tumours import render_phantom

SIDE = 48


def _pictures(n: int, blank: tuple[int, ...] = ()) -> np.ndarray:
    """`n` phantom slices as they should be shown (rows anterior to posterior, columns the
    patient's right to left), inferior first; a bright marker in each one's top-left corner
    (the patient's right, anterior); the `blank` ones all zero (outside the head)."""
    rng = np.random.default_rng(3)
    out = np.stack([render_phantom("meningioma_tumor", SIDE, rng)[0] for _ in range(n)])
    out = out.astype(np.int16) * 4  # 10-bit: the volume's window maps it back to 0-255
    out[:, 1:4, 1:4] = 1023
    out[:, 0, 0] = 0  # every slice spans the window's whole range
    for k in blank:
        out[k] = 0
    return out


def _ras(pictures: np.ndarray) -> np.ndarray:
    """The voxel array (x toward the patient's right, y anterior, z superior) that shows as
    `pictures` in the radiological convention."""
    return np.stack([p[::-1, ::-1].T for p in pictures], axis=2)


def _volume(pictures: np.ndarray, codes: str = "RAS", zoom: float = 1.0) -> nib.Nifti1Image:
    """`pictures` as a NIfTI volume stored with voxel axes along `codes` ("RAS", "LPS", "SRA":
    the superior axis first), its affine saying so."""
    vox = _ras(pictures)  # x: R, y: A, z: S
    axes = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}
    order = [axes[c] for c in codes]
    vox = np.transpose(vox, order)
    affine = np.zeros((4, 4))
    affine[3, 3] = 1
    for i, c in enumerate(codes):
        sign = 1.0 if c in "RAS" else -1.0
        if sign < 0:  # stored from the other end: flip the voxels and the affine's column
            vox = np.flip(vox, axis=i)
        affine[axes[c], i] = sign * (zoom if axes[c] == 2 else 1.0)
    return nib.Nifti1Image(np.ascontiguousarray(vox), affine)


def _bytes(img: nib.Nifti1Image, gz: bool = False) -> bytes:
    data = img.to_bytes()
    return gzip.compress(data) if gz else data


@pytest.mark.parametrize("codes", ["LPS", "SRA", "LAI"])
def test_slices_are_axial_inferior_first_and_radiological_whatever_the_storage(codes):
    pictures = _pictures(5)
    ras, info = images.decode_slices(_bytes(_volume(pictures)), "ras.nii")
    assert info["orientation"] == "RAS" and info["format"] == "NIfTI"
    assert len(ras) == 5 and info["frames"] == 5 and info["indices"] == [0, 1, 2, 3, 4]
    for got, want in zip(ras, pictures, strict=True):  # the marker top-left: right, anterior
        assert got.shape == (SIDE, SIDE, 3) and got[2, 2, 0] == 255
        assert np.corrcoef(got[..., 0].ravel(), want.ravel())[0, 1] > 0.999
    img = _volume(pictures, codes)
    assert "".join(nib.aff2axcodes(img.affine)) == codes
    other, info = images.decode_slices(_bytes(img, gz=True), f"{codes}.nii.gz")
    assert info["orientation"] == codes
    assert all(np.array_equal(a, b) for a, b in zip(ras, other, strict=True))


def test_one_window_for_the_volume_keeps_a_dim_slice_dim():
    pictures = _pictures(3)
    pictures[1] //= 4  # a darker slice (no marker at full brightness either)
    slices, _ = images.decode_slices(_bytes(_volume(pictures)), "v.nii")
    assert slices[1].max() < 80 and slices[0].max() == slices[2].max() == 255


def test_blank_end_slices_are_left_out_and_long_volumes_thinned(tmp_path):
    pictures = _pictures(dicom.MAX_SLICES + 36, blank=(0, 1))
    data = _bytes(_volume(pictures, "LPS"), gz=True)
    slices, info = images.decode_slices(data, "long.nii.gz")
    analysed = dicom.slice_indices(100)
    assert info["frames"] == 100 and info["blank"] == [1] and len(slices) == 63
    assert info["indices"] == analysed[1:]  # slice 1 (blank) out; slice 2 not analysed
    path = tmp_path / "long.nii.gz"
    path.write_bytes(data)
    items = expand_series([path])  # counted from the header
    assert len(items) == dicom.MAX_SLICES
    assert str(items[1]) == f"{path} · slice 3 of 100 (64 of 100 slices analysed)"
    read = SliceReader()
    assert np.array_equal(read(items[1]), slices[0])
    with pytest.raises(ImageError, match=r"slice 1 of 100 \(64 of 100 slices analysed\): blank"):
        read(items[0])


def test_a_4d_volume_reads_its_first_volume_and_says_so(tmp_path):
    from dashboard.core import decode_upload

    first = _ras(_pictures(3))
    vox = np.stack([first, first[::-1]], axis=3)  # the second volume differs
    data = _bytes(nib.Nifti1Image(vox, np.eye(4)))
    slices, info = images.decode_slices(data, "bold.nii")
    assert info["volumes"] == 2 and len(slices) == 3
    assert all(np.array_equal(a, b) for a, b in zip(
        slices, images.decode_slices(_bytes(nib.Nifti1Image(first, np.eye(4))), "x.nii")[0],
        strict=True))
    upload = decode_upload("bold.nii", data)
    assert "only the first of its 2 volumes is analysed" in upload.note
    path = tmp_path / "bold.nii"
    path.write_bytes(data)
    assert [str(i) for i in expand_series([path])] == [
        f"{path} · volume 1 of 2 · slice {k} of 3" for k in (1, 2, 3)]


def test_the_dashboard_reads_a_volume_upload_as_a_series():
    from dashboard.core import decode_upload

    data = _bytes(_volume(_pictures(4, blank=(3,)), "LPS"), gz=True)
    upload = decode_upload("scan.nii.gz", data)
    assert upload.ok and len(upload.slices) == 3 and upload.total == 4
    assert upload.slice_view(1).name == "scan.nii.gz · slice 2 of 4"
    assert "slice 4 of 4 is blank (almost all one grey level), not analysed" in upload.note


@pytest.mark.parametrize(("data", "match"), [
    (lambda good: good[: len(good) // 2], r"^bad\.nii\.gz: cut short \.nii\.gz \(it cannot be "
                                          r"unpacked\)$"),
    (lambda good: gzip.compress(b"\x00" * 400), r"^bad\.nii\.gz: not a readable NIfTI volume"),
    (lambda good: good[:20] + b"\xff" * 30 + good[50:], r"^bad\.nii\.gz: (cut short|damaged)"),
])
def test_a_damaged_volume_is_one_line(data, match):
    from dashboard.core import decode_upload

    bad = data(_bytes(_volume(_pictures(3)), gz=True))
    with pytest.raises(ImageError, match=match) as err:
        images.decode_slices(bad, "bad.nii.gz")
    assert "\n" not in str(err.value)
    upload = decode_upload("bad.nii.gz", bad)
    assert not upload.ok and upload.error == str(err.value)


def test_file_ext_takes_nii_gz_as_one_extension():
    assert [file_ext(n) for n in ("a/scan.NII.GZ", "x.nii", "b.tar.gz", "IM0001", ".nii",
                                  "d.v1/IM")] == [".nii.gz", ".nii", ".gz", "", "", ""]


def test_predict_reads_volumes_in_a_folder_and_a_damaged_one_in_one_line(tmp_path: Path,
                                                                         smoke_run: Path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "a.nii.gz").write_bytes(_bytes(_volume(_pictures(3), "LPS"), gz=True))
    (folder / "b.nii").write_bytes(_bytes(_volume(_pictures(2))))
    good = _bytes(_volume(_pictures(4)), gz=True)
    (folder / "c.nii.gz").write_bytes(good[: len(good) // 2])  # its header is whole
    result = CliRunner().invoke(app, ["predict", "--run", str(smoke_run), "--json",
                                      str(folder)])
    assert result.exit_code == 1, result.output[-2000:]
    report = json.loads(result.stdout)
    assert [r["path"] for r in report["results"]] == [
        *(str(Slice(str(folder / "a.nii.gz"), k, 3)) for k in range(3)),
        *(str(Slice(str(folder / "b.nii"), k, 2)) for k in range(2))]
    lines = [ln for ln in result.stderr.splitlines() if ln.strip() and "note:" not in ln]
    assert lines == [f"cannot read {folder / 'c.nii.gz'} · 4 slices (slices 1 to 4): cut short "
                     ".nii.gz (it cannot be unpacked)"]
    assert "Traceback" not in result.output


def test_a_file_named_nii_that_is_not_one_is_one_line_and_nibabel_says_nothing(capfd, tmp_path):
    """nibabel logs what it finds wrong in a header ("sizeof_hdr should be 348; ..."): stray
    lines on stderr beside our one line."""
    junk = b"\x89PNG\r\n\x1a\n" + bytes(400)
    with pytest.raises(ImageError, match=r"^x\.nii: not a readable NIfTI volume \(") as err:
        images.decode_slices(junk, "x.nii")
    assert "\n" not in str(err.value)
    path = tmp_path / "x.nii"
    path.write_bytes(junk)
    assert expand_series([path]) == [str(path)]  # its read says why, once
    with pytest.raises(ImageError, match="not a readable NIfTI volume"):
        SliceReader()(str(path))
    assert capfd.readouterr().err == ""


def test_explain_names_a_4d_volumes_slices_and_their_overlays(tmp_path: Path, smoke_run: Path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    first = _ras(_pictures(2))
    bold = tmp_path / "bold.nii.gz"
    bold.write_bytes(_bytes(nib.Nifti1Image(np.stack([first] * 3, axis=3), np.eye(4)), gz=True))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["explain", "--run", str(smoke_run), "--model",
                                      "custom_cnn", "--bare", "--out", str(out), str(bold)])
    assert result.exit_code == 0, result.output[-2000:]
    record = json.loads((out / "explain.json").read_text())
    assert [r["path"] for r in record["images"]] == [
        f"{bold} · volume 1 of 3 · slice {k} of 2" for k in (1, 2)]
    assert sorted(p.name for p in out.glob("*.png")) == [
        f"bold.nii.gz.slice-{k}.custom_cnn.gradcam.png" for k in (1, 2)]


def test_a_volume_unpacking_past_the_file_limit_is_refused(monkeypatch):
    """A .nii.gz is unpacked in memory: past `images.MAX_FILE_BYTES` (a gzip bomb) it is
    refused in one line, before nibabel sees it."""
    from pipeline import nifti

    data = _bytes(_volume(_pictures(3)), gz=True)
    monkeypatch.setattr(nifti, "MAX_FILE_BYTES", 5000)  # the volume is about 14 kB unpacked
    with pytest.raises(ImageError, match=r"^big\.nii\.gz: the volume unpacks to more than "):
        images.decode_slices(data, "big.nii.gz")
    assert nifti.volume_slices(data, "big.nii.gz") == (3, 1)  # its header is read all the same


def test_voxels_longer_than_wide_are_shown_square_and_a_singular_affine_as_stored():
    pictures = _pictures(2)
    wide = _ras(pictures)
    img = nib.Nifti1Image(wide, np.diag([1.0, 2.0, 1.0, 1.0]))  # 2 mm from front to back
    slices, info = images.decode_slices(_bytes(img), "tall.nii")
    assert info["orientation"] == "RAS" and slices[0].shape == (2 * SIDE, SIDE, 3)
    singular = np.eye(4)
    singular[2, 2] = 0  # no superior-inferior direction at all: the third axis, as stored
    img = nib.Nifti1Image(wide, None)
    img.header.set_sform(singular, code=1)
    slices, info = images.decode_slices(_bytes(img), "flat.nii")
    assert info["orientation"] == "" and info["frames"] == 2 and slices[0].shape == (SIDE, SIDE, 3)


def test_a_volume_s_slices_say_the_patient_s_right_is_on_the_picture_s_left(
        tmp_path: Path, smoke_run: Path, monkeypatch: pytest.MonkeyPatch):
    """A NIfTI slice is shown radiologically (the patient's right on the picture's left), yet
    its caption said left and right were the picture's, not the patient's. Where the file's
    affine says how the patient lies, the caption now says whose right is where; elsewhere (a
    PNG, a volume without a usable affine) the old words stay."""
    from PIL import Image
    from typer.testing import CliRunner

    from dashboard.core import decode_upload
    from dashboard.figures import legend_caption
    from pipeline.cli import app
    from pipeline.explain import overlays
    from pipeline.explain.overlay_text import OVERLAY_NOTE, overlay_note
    from pipeline.names import PICTURE_SIDES, RADIOLOGICAL_SIDES

    assert PICTURE_SIDES in OVERLAY_NOTE and PICTURE_SIDES in legend_caption()
    assert RADIOLOGICAL_SIDES in overlay_note(True) and PICTURE_SIDES not in overlay_note(True)
    assert RADIOLOGICAL_SIDES in legend_caption(True)
    # the dashboard: the upload and each slice chosen know it
    vol = _bytes(_volume(_pictures(3), "LPS"), gz=True)
    upload = decode_upload("scan.nii.gz", vol)
    assert upload.radiological and upload.slice_view(1).radiological
    singular = np.eye(4)
    singular[2, 2] = 0
    stored = nib.Nifti1Image(_ras(_pictures(2)), None)
    stored.header.set_sform(singular, code=1)
    assert not decode_upload("flat.nii", _bytes(stored)).radiological
    assert not decode_upload("x.png", _png(tmp_path)).radiological
    # explain: the captioned overlays' small print and explain.json's rows
    notes: dict[str, str] = {}
    real = overlays.captioned_overlay

    def spy(image, heatmap, lines, note, **kwargs):  # noqa: ANN001, ANN202
        notes[lines[0] + str(len(notes))] = note
        return real(image, heatmap, lines, note, **kwargs)

    monkeypatch.setattr(overlays, "captioned_overlay", spy)
    scan, flat, png = tmp_path / "scan.nii.gz", tmp_path / "flat.nii", tmp_path / "head.png"
    scan.write_bytes(vol)
    flat.write_bytes(_bytes(stored))
    Image.fromarray(_pictures(1)[0].astype(np.uint8)).save(png)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["explain", "--run", str(smoke_run), "--model",
                                      "custom_cnn", "--out", str(out), str(scan), str(flat),
                                      str(png)])
    assert result.exit_code == 0, result.output[-2000:]
    rows = json.loads((out / "explain.json").read_text())["images"]
    assert [r["radiological"] for r in rows] == [True] * 3 + [False] * 3
    assert list(notes.values()) == [overlay_note(True)] * 3 + [OVERLAY_NOTE] * 3


def _png(tmp_path: Path) -> bytes:
    from PIL import Image

    path = tmp_path / "x.png"
    Image.fromarray(_pictures(1)[0].astype(np.uint8)).save(path)
    return path.read_bytes()
