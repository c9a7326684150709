"""Folders given to predict and explain, as a reviewer found them mishandled: WebP, GIF and
scanner-named DICOM files skipped inside a folder (read when named), skipped files never
counted, a file given twice predicted twice, and one hot pixel wrecking a 16-bit slice."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import make_dicom
from PIL import Image

from pipeline import images
from pipeline.names import DECODED_EXTS, IMAGE_EXTS
from pipeline.stream import FOLDER_EXTS, expand_inputs, scan_inputs


def _encode(pixels: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _slice(bits: int = 12, size: int = 64) -> np.ndarray:
    """A synthetic glioma slice in `bits` bits (uint16), its background the minimum."""
    from pipeline.synth import render_phantom

    img, _ = render_phantom("glioma_tumor", size, np.random.default_rng(5))
    img = img.astype(np.float64)
    img = (img - img.min()) / (img.max() - img.min()) * (2**bits - 1)
    return np.rint(img).astype(np.uint16)


def _old_scale(arr: np.ndarray) -> np.ndarray:
    """`images._scale_to_uint8` before outliers were clipped: min..max -> 0..255."""
    arr = np.asarray(arr, dtype=np.float64)
    finite = np.isfinite(arr)
    lo, hi = float(arr[finite].min()), float(arr[finite].max())
    out = (np.where(finite, arr, lo) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- formats in folders


def test_a_folder_reads_every_format_a_file_is_read_in(tmp_path: Path):
    gray = _slice(8).astype(np.uint8)
    frames = [Image.fromarray(gray), Image.fromarray(255 - gray)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    files = {"a.webp": _encode(gray, "WEBP", lossless=True), "b.GIF": gif.getvalue(),
             "c.png": _encode(gray, "PNG"), "d.pgm": _encode(gray, "PPM")}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    found = expand_inputs([tmp_path])
    # "a folder with no image in it" for a folder of WebP files, read when named one by one
    assert [p.name for p in found] == sorted(files)
    for p in found:
        assert images.read_image(p).shape == (*gray.shape, 3)


def test_the_folder_extensions_are_every_format_the_decoder_takes():
    """One list: Pillow's names for `images.PIL_FORMATS`, and DICOM; dataset discovery keeps
    IMAGE_EXTS (the audit counts by it), a subset."""
    Image.init()
    pillow = {ext for ext, fmt in Image.registered_extensions().items()
              if fmt in images.PIL_FORMATS}
    assert pillow | {".dcm"} == DECODED_EXTS
    assert IMAGE_EXTS < DECODED_EXTS
    assert set(FOLDER_EXTS) == DECODED_EXTS | {".zip", ".nii", ".nii.gz"}


@pytest.mark.timeout(60)
def test_scanner_named_dicom_files_in_a_folder_are_read_by_their_magic(tmp_path: Path):
    data = make_dicom(_slice())
    for name in ("IM0001", "scan.IMA", "1.2.840.113619.2.55", ".IM0002", "sub/IM0003"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    (tmp_path / "README").write_text("not a scan\n")
    (tmp_path / "short").write_bytes(b"DICM")  # too short to hold the magic at 128
    os.mkfifo(tmp_path / "IMFIFO")  # a pipe must be neither waited on nor read
    (tmp_path / "IMLOOP").symlink_to(tmp_path / "IMLOOP")
    inputs = scan_inputs([tmp_path])
    names = [p.relative_to(tmp_path).as_posix() for p in inputs.files]
    assert names == ["1.2.840.113619.2.55", "IM0001", "scan.IMA", "sub/IM0003"]  # not hidden
    assert sorted(p.name for p in inputs.skipped) == ["IMFIFO", "IMLOOP", "README", "short"]
    want = images.read_image(tmp_path / "IM0001")
    for p in inputs.files:
        assert np.array_equal(images.read_image(p), want)


# --------------------------------------------------------------------------- what is left out


def test_skipped_files_are_counted_and_said_once(tmp_path: Path, capsys):
    from pipeline.cli.unreadable import report_inputs

    (tmp_path / "a.png").write_bytes(_encode(np.asarray(_slice(8), np.uint8), "PNG"))
    odd = "[red]new\nline.txt"
    for name in ("notes.txt", "b.csv", odd, "c.json", ".DS_Store"):
        (tmp_path / name).write_text("x")
    (tmp_path / "broken.jpg").symlink_to(tmp_path / "no-such-target.jpg")
    (tmp_path / "broken-notes.txt").symlink_to(tmp_path / "no-such-target.txt")
    inputs = scan_inputs([tmp_path])
    # a broken link named like an image is read, so it is reported like a missing file
    assert [p.name for p in inputs.files] == ["a.png", "broken.jpg"]
    with pytest.raises(images.ImageError, match=r"broken\.jpg: file not found"):
        images.read_file(inputs.files[1])
    assert len(inputs.skipped) == 5  # hidden files neither read nor counted

    report_inputs(inputs)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("skipped 5 file(s) in folders that are "
                                                   "not images by name (")
    shown = lines[0].split(" (", 1)[1]
    assert shown.count(",") == 3 and shown.endswith(", …)")  # three names, then …
    assert "[red]new\\nline.txt" in shown  # one line, markup printed, not parsed


def test_a_file_given_twice_is_read_once_where_it_first_appears(tmp_path: Path, capsys):
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(_encode(np.asarray(_slice(8), np.uint8), "PNG"))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "link.png").symlink_to(tmp_path / "a.png")
    inputs = scan_inputs([tmp_path / "b.png", tmp_path, tmp_path / "a.png",
                          tmp_path / "sub" / ".." / "a.png"])
    assert inputs.files == [tmp_path / "b.png", tmp_path / "a.png"]
    # b.png again in the folder, the link to a.png there, then a.png twice
    assert [(f.name, kept.name) for f, kept in inputs.repeated] == [
        ("b.png", "b.png"), ("link.png", "a.png"), ("a.png", "a.png"), ("a.png", "a.png")]
    from pipeline.cli.unreadable import report_inputs

    report_inputs(inputs)  # the link's answer stands under a.png: say so
    assert "(b.png, link.png as a.png, a.png, …): each is read once" in capsys.readouterr().err
    assert expand_inputs([tmp_path, tmp_path]) == inputs.files[::-1]


# --------------------------------------------------------------------------- 16-bit scaling


def test_one_hot_pixel_does_not_darken_a_12_bit_slice(tmp_path: Path):
    clean = _slice()
    hot = clean.copy()
    hot[3, 3] = 65535  # one stuck detector element, in the background
    for name, encode in (("s.png", lambda a: _encode(a, "PNG")), ("s.dcm", make_dicom)):
        want = images.decode_image(encode(clean), name)
        got = images.decode_image(encode(hot), name)
        # was: the whole slice in greys 0-4 (and a glioma answer of 1.00 became 0.29)
        assert got[3, 3].tolist() == [255] * 3
        got[3, 3] = want[3, 3]
        assert np.array_equal(got, want), name


@pytest.mark.parametrize("kind", ["ramp", "narrow", "noise", "float", "dot", "slice"])
def test_without_outliers_the_scaling_is_unchanged(kind: str):
    rng = np.random.default_rng(0)
    arr = {"ramp": np.linspace(0, 4095, 64 * 16).reshape(16, 64),
           "narrow": np.linspace(1000, 1510, 32 * 32).reshape(32, 32),
           "noise": rng.integers(0, 4096, (64, 64)),
           "float": rng.normal(0, 1, (64, 64)).astype(np.float32),
           "dot": np.pad(np.full((1, 1), 4095), 40),  # content in 1 pixel of 6561: no outlier
           "slice": _slice(16)}[kind]
    assert np.array_equal(images._scale_to_uint8(arr), _old_scale(arr))


# --------------------------------------------------------------------------- the command


@pytest.mark.slow
def test_predict_reads_a_folder_whole_and_each_file_once(smoke_run: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    folder = tmp_path / "scans"
    folder.mkdir()
    gray = np.asarray(_slice(8, 128), np.uint8)
    (folder / "a.png").write_bytes(_encode(gray, "PNG"))
    (folder / "b.webp").write_bytes(_encode(gray, "WEBP", lossless=True))
    (folder / "IM0001").write_bytes(make_dicom(_slice(12, 128)))
    (folder / "notes.txt").write_text("x")
    (folder / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(app, ["predict", "--run", str(smoke_run), "--out", str(out),
                                      "--", str(folder), str(folder / "a.png")])
    assert result.exit_code == 1, result.output[-2000:]  # gone.jpg cannot be read
    rows = list(csv.DictReader(io.StringIO(out.read_text(), newline="")))
    assert [Path(r["path"]).name for r in rows] == ["IM0001", "a.png", "b.webp", "gone.jpg"]
    assert [bool(r["error"]) for r in rows] == [False, False, False, True]
    err = result.stderr
    assert "skipped 1 file(s) in folders that are not images by name (notes.txt)" in err
    assert "1 file(s) given more than once (a.png): each is read once" in err
    assert "gone.jpg: file not found" in err
    # explain reads the same list and says the same (it skipped silently too)
    result = CliRunner().invoke(app, ["explain", "--run", str(smoke_run), "--out",
                                      str(tmp_path / "overlays"), "--", str(folder)])
    assert "skipped 1 file(s) in folders that are not images by name (notes.txt)" in \
        result.stderr, result.output[-2000:]


def test_a_scanner_named_multi_frame_dicom_is_expanded_into_its_slices(tmp_path: Path):
    """"IM0001" (no .dcm) with 3 frames was read as its first frame only."""
    from pipeline.series import Slice, expand_series

    frames = np.stack([np.full((16, 16), 100 * (k + 1), np.uint16) for k in range(3)])
    (tmp_path / "IM0001").write_bytes(make_dicom(frames))
    items = expand_series(expand_inputs([tmp_path]))
    assert [str(i) for i in items] == [f"{tmp_path / 'IM0001'} · slice {k} of 3"
                                       for k in (1, 2, 3)]
    assert all(isinstance(i, Slice) for i in items)
