"""DICOM inputs a reviewer found mishandled: long series thinned without saying so, a damaged
multi-frame file refused once per slice, decoder failures without a reason, an unusable window,
a JPEG named .dcm, a DICOM without its preamble. Every file is built with pydicom here."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from helpers import dicom_dataset, make_dicom

from pipeline import dicom, images
from pipeline.images import ImageError, decode_image
from pipeline.series import Slice, SliceReader, expand_series


def _banded(n: int, width: int = 104) -> np.ndarray:
    """`n` frames of 8×`width` (12-bit), frame k bright in column k % width only: which frame a
    decoded slice is can be read back from its pixels."""
    frames = np.full((n, 8, width), 100, np.uint16)
    for k in range(n):
        frames[k, :, k % width] = 2000
    return frames


def _which(image: np.ndarray) -> int:
    return int(np.argmax(image[0, :, 0]))


def _rewrite(data: bytes, **changes) -> bytes:
    """`data` read with pydicom, its attributes changed, written again."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    for key, value in changes.items():
        setattr(ds, key, value)
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


# --------------------------------------------------------------------------- long series


def test_a_long_multi_frame_dicom_is_named_by_its_real_frames(tmp_path):
    """100 frames: 64 evenly spaced are analysed; the second was named "slice 2 of 64" though
    it is frame 3 of 100, and nothing said that 36 frames were skipped."""
    scan = tmp_path / "scan.dcm"
    scan.write_bytes(make_dicom(_banded(100)))
    items = expand_series([scan])
    assert len(items) == dicom.MAX_SLICES
    assert str(items[1]) == f"{scan} · frame 3 of 100 (64 of 100 frames analysed)"
    assert str(items[-1]) == f"{scan} · frame 100 of 100 (64 of 100 frames analysed)"
    read = SliceReader()
    for item in (items[0], items[1], items[40], items[-1]):
        assert _which(read(item)) == item.number - 1  # the frame the name says
    info = images.decode_slices(scan.read_bytes(), "scan.dcm")[1]
    assert info["frames"] == 100 and info["indices"][:3] == [0, 2, 3]


def test_a_short_series_keeps_its_slice_names(tmp_path):
    scan = tmp_path / "scan.dcm"
    scan.write_bytes(make_dicom(_banded(3)))
    assert [str(s) for s in expand_series([scan])] == [f"{scan} · slice {k} of 3"
                                                      for k in (1, 2, 3)]


def test_a_long_zipped_series_is_named_by_its_real_slices(tmp_path):
    frames = _banded(70)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k in range(70):
            zf.writestr(f"IM{k}.dcm", make_dicom(frames[k], InstanceNumber=k + 1))
    series = tmp_path / "series.zip"
    series.write_bytes(buf.getvalue())
    items = expand_series([series])
    assert len(items) == dicom.MAX_SLICES
    # 64 of 70, evenly spaced: the second analysed is slice 2, the 64th slice 70
    assert str(items[1]) == f"{series} · slice 2 of 70 (64 of 70 slices analysed)"
    assert str(items[-1]) == f"{series} · slice 70 of 70 (64 of 70 slices analysed)"
    read = SliceReader()
    assert [_which(read(items[k])) for k in (1, 32, 63)] == [
        items[k].number - 1 for k in (1, 32, 63)]
    assert images.decode_slices(buf.getvalue(), "s.zip")[1]["frames"] == 70


# --------------------------------------------------------------------------- damaged series


def _short_pixels(frames: np.ndarray, cut: int) -> bytes:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(make_dicom(frames)))
    ds.PixelData = ds.PixelData[:-cut]
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


@pytest.mark.parametrize(("data", "match"), [
    (_rewrite(make_dicom(_banded(1)[0]), NumberOfFrames=1_000_000),
     "damaged DICOM: its pixel data holds 1 of the 1000000 frames its header declares"),
    (_short_pixels(np.zeros((3, 64, 64), np.uint16), 5000),
     "damaged DICOM: its pixel data holds 2 of the 3 frames its header declares"),
    (make_dicom(np.zeros((3, 64, 64), np.uint16))[:-5000],  # the file itself cut short
     "scan.dcm: "),
], ids=["million-frames", "short-pixel-data", "cut-file"])
def test_a_damaged_multi_frame_dicom_is_one_unusable_file(tmp_path, data, match):
    """Such a file became up to 64 slices, each failing with the same line."""
    scan = tmp_path / "scan.dcm"
    scan.write_bytes(data)
    assert expand_series([scan]) == [str(scan)]
    with pytest.raises(ImageError, match=match) as err:
        SliceReader()(str(scan))
    assert "\n" not in str(err.value) and str(err.value).count(str(scan)) == 1
    with pytest.raises(ImageError, match=match):
        images.decode_slices(data, "scan.dcm")


def test_a_compressed_series_with_fewer_fragments_than_frames_is_one_unusable_file(tmp_path):
    import pydicom
    from pydicom.uid import RLELossless

    ds = pydicom.dcmread(io.BytesIO(make_dicom(_banded(3))))
    ds.compress(RLELossless)
    ds.NumberOfFrames = 5  # three fragments: frames 4 and 5 do not exist
    buf = io.BytesIO()
    ds.save_as(buf)
    scan = tmp_path / "scan.dcm"
    scan.write_bytes(buf.getvalue())
    assert expand_series([scan]) == [str(scan)]
    with pytest.raises(ImageError, match="holds 3 of the 5 frames"):
        SliceReader()(str(scan))
    ds.NumberOfFrames = 3  # the intact file still counts and decodes
    buf = io.BytesIO()
    ds.save_as(buf)
    scan.write_bytes(buf.getvalue())
    items = expand_series([scan])
    assert [_which(SliceReader()(s)) for s in items] == [0, 1, 2]


def test_a_series_that_fails_to_decode_is_decoded_once_and_named_once(tmp_path, monkeypatch):
    """Frames that are counted but cannot be decoded (junk JPEG 2000 fragments): each slice's
    failure names the slice once ("<file> · slice 1 of 3: <reason>", not "<file> · slice 1 of
    3: <file>: <reason>"), and the file is decoded once, not once per slice."""
    scan = tmp_path / "scan.dcm"
    scan.write_bytes(_jpeg2000_junk(frames=3))
    items = expand_series([scan])
    assert items == [Slice(str(scan), k, 3) for k in range(3)]
    calls = []
    real = images.decode_slices
    monkeypatch.setattr(images, "decode_slices", lambda *a, **k: calls.append(1) or real(*a, **k))
    read = SliceReader()
    for item in items:
        with pytest.raises(ImageError) as err:
            read(item)
        assert str(err.value).startswith(f"{item}: cannot decode DICOM pixel data")
        assert str(err.value).count(str(scan)) == 1
    assert len(calls) == 1


# --------------------------------------------------------------------------- decoder reasons


def _encapsulated(syntax, fragments: list[bytes], frames: int = 1, bits: int = 8) -> bytes:
    """A DICOM of 64×64 frames whose pixel data is `fragments`, compressed as `syntax`."""
    from pydicom.encaps import encapsulate

    ds = dicom_dataset(syntax)
    ds.Rows = ds.Columns = 64
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = encapsulate(fragments)
    ds["PixelData"].VR = "OB"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _jpeg2000_junk(frames: int = 1) -> bytes:
    from pydicom.uid import JPEG2000Lossless

    return _encapsulated(JPEG2000Lossless, [b"\xff\x4f\xff\x51" + b"\0" * 100] * frames, frames)


@pytest.fixture
def no_jpegls_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """JPEG-LS as on a machine with no decoder for it, wherever the tests run: these tests
    skipped where pylibjpeg-libjpeg (or gdcm, pyjpegls) is installed, so they tested nothing
    there. pydicom lists a decoder's usable plugins in its `_available`; emptied, the decoder
    answers as it does on a bare install."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    decoder = get_decoder(JPEGLSLossless)
    monkeypatch.setattr(decoder, "_available", {})
    assert not decoder.is_available


def test_a_missing_decoder_is_named_with_its_fix(no_jpegls_decoder):
    from pydicom.uid import JPEGLSLossless

    data = _encapsulated(JPEGLSLossless, [b"\xff\xd8\xff\xf7" + b"\0" * 200])
    with pytest.raises(ImageError) as err:
        decode_image(data, "ls.dcm")
    assert str(err.value) == (
        "ls.dcm: no decoder installed for JPEG-LS Lossless Image Compression (install pylibjpeg "
        "and pylibjpeg-libjpeg, or convert the file with dcmdjpls)")


def test_a_multi_frame_file_without_its_decoder_is_one_unusable_file(tmp_path,
                                                                   no_jpegls_decoder):
    from pydicom.uid import JPEGLSLossless

    scan = tmp_path / "scan.dcm"
    scan.write_bytes(_encapsulated(JPEGLSLossless, [b"\xff\xd8\xff\xf7" + b"\0" * 200] * 4, 4))
    assert expand_series([scan]) == [str(scan)]
    with pytest.raises(ImageError, match="no decoder installed for JPEG-LS"):
        SliceReader()(str(scan))


def test_a_decoder_error_keeps_pydicoms_reason():
    """It ended in a bare class name ("...: RuntimeError")."""
    with pytest.raises(ImageError) as err:
        decode_image(_jpeg2000_junk(), "j2k.dcm")
    text = str(err.value)
    assert text.startswith("j2k.dcm: cannot decode DICOM pixel data (transfer syntax JPEG 2000")
    assert "Unable to decode" in text and not text.endswith("RuntimeError")
    assert "\n" not in text


def test_a_long_decoder_message_is_cut_to_one_short_line():
    from pydicom.dataset import Dataset

    reason = dicom._decode_failure(ValueError("x" * 400 + "\nsecond line"), Dataset())
    assert reason.startswith("cannot decode DICOM pixel data: xxx") and "\n" not in reason
    assert len(reason.split(": ", 1)[1]) == dicom.REASON_CHARS


@pytest.mark.parametrize("width", [0, -5])
def test_an_unusable_window_is_ignored(width):
    """pydicom refuses a window narrower than 1: the file was refused ("...: ValueError")."""
    ramp = np.linspace(0, 4000, 16 * 16).astype(np.uint16).reshape(16, 16)
    windowed = decode_image(make_dicom(ramp, WindowCenter=100, WindowWidth=width), "w.dcm")
    assert np.array_equal(windowed, decode_image(make_dicom(ramp), "plain.dcm"))  # min/max


# --------------------------------------------------------------------------- not quite DICOM


def test_a_jpeg_named_dcm_is_read_as_the_jpeg_it_is_and_junk_is_not_dicom():
    from PIL import Image

    from pipeline.images import decode_image_info

    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32), 128, np.uint8)).save(buf, "JPEG")
    # was "DICOM file has no pixel data"
    image, info = decode_image_info(buf.getvalue(), "x.dcm")
    assert image.shape[:2] == (32, 32) and info["format"] == "JPEG"
    with pytest.raises(ImageError, match=r"^x\.dcm: not a DICOM file"):
        decode_image(b"\0" * 300, "x.dcm")


def _without_preamble(data: bytes) -> bytes:
    """The same dataset as a bare implicit-VR stream: no preamble, no "DICM", no file meta."""
    import pydicom
    from pydicom.dataset import Dataset

    ds = Dataset(pydicom.dcmread(io.BytesIO(data)))
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=True, little_endian=True)
    return buf.getvalue()


def test_a_dicom_without_its_preamble_is_decoded(tmp_path):
    """pydicom reads it (force=True) but had no transfer syntax to decode it with:
    "cannot decode DICOM pixel data: AttributeError"."""
    ramp = np.linspace(0, 4000, 16 * 16).astype(np.uint16).reshape(16, 16)
    raw = _without_preamble(make_dicom(ramp))
    assert raw[128:132] != b"DICM" and b"DICM" not in raw[:200]
    assert np.array_equal(decode_image(raw, "raw.dcm"), decode_image(make_dicom(ramp), "a.dcm"))
    scan = tmp_path / "raw.dcm"  # a multi-frame one, counted and decoded per frame
    scan.write_bytes(_without_preamble(make_dicom(_banded(3))))
    items = expand_series([scan])
    assert [_which(SliceReader()(s)) for s in items] == [0, 1, 2]


def test_a_series_whose_slices_all_fail_is_one_line_on_the_command_line(tmp_path, smoke_run,
                                                                         capsys):
    """70 frames of junk JPEG 2000 printed 64 "cannot read … · frame k of 70" lines, one per
    slice analysed; now one line says how many slices failed, and why. Each slice keeps its
    own row where rows are written (the JSON's errors)."""
    import json

    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.cli.unreadable import unreadable_report

    scan = tmp_path / "scan.dcm"
    scan.write_bytes(_jpeg2000_junk(frames=70))
    good = tmp_path / "good.png"
    good.write_bytes(_png_bytes())
    result = CliRunner().invoke(app, ["predict", "--run", str(smoke_run), "--json", str(scan),
                                      str(good)])
    assert result.exit_code == 1, result.output[-2000:]
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("cannot read")]
    errors = json.loads(result.stdout)["errors"]
    from pipeline.series import parse_slice_name, places_words
    where = places_words("frame", [parse_slice_name(e["path"]).number for e in errors])
    assert where.startswith("frames 1, 2, 3, ") and where.endswith(" and 60 more")
    assert len(lines) == 1 and lines[0].startswith(
        f"cannot read {scan} · 64 frames ({where}): cannot decode DICOM pixel data (")
    errors = json.loads(result.stdout)["errors"]
    assert len(errors) == dicom.MAX_SLICES
    # different files, or different reasons, stay lines of their own, in order
    with unreadable_report() as report:
        report("a.dcm · slice 1 of 3", "a.dcm · slice 1 of 3: bad")
        report("a.dcm · slice 2 of 3", "a.dcm · slice 2 of 3: worse")
        report("b.png", "b.png: not an image")
        report("a.dcm · slice 3 of 3", "a.dcm · slice 3 of 3: worse")
    printed = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert printed == ["cannot read a.dcm · slice 1 of 3: bad",
                       "cannot read a.dcm · slice 2 of 3: worse",
                       "cannot read b.png: not an image",
                       "cannot read a.dcm · slice 3 of 3: worse"]
    # a series' two blank end slices are "slices 1 and 5", not "slice 1 to 5", read as a run
    with unreadable_report() as report:
        for k in (1, 5):
            report(f"v.nii · slice {k} of 5", f"v.nii · slice {k} of 5: blank")
    printed = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert printed == ["cannot read v.nii · 2 slices (slices 1 and 5): blank"]
    from pipeline.series import places_words
    assert places_words("slice", [2, 3, 4]) == "slices 2 to 4"
    assert places_words("page", [1, 2, 3, 9, 12, 14]) == "pages 1, 2, 3, 9 and 2 more"


def _png_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- damaged zipped slice


def _slice(frame: np.ndarray, z: float) -> bytes:
    """One slice of a zipped series at position `z` along the series' axis."""
    return make_dicom(frame, ImagePositionPatient=[0, 0, z],
                      ImageOrientationPatient=[1, 0, 0, 0, 1, 0], InstanceNumber=int(z) + 1)


def _garble_member(data: bytes, name: str) -> bytes:
    """`data` (a zip) with member `name`'s compressed bytes overwritten: it cannot be
    unpacked (a bad CRC or a broken deflate stream), the other members still can."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(name)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    out = bytearray(data)
    out[start + 10 : start + info.compress_size - 10] = b"\x55" * (info.compress_size - 20)
    return bytes(out)


def _damaged_series() -> bytes:
    """Seven slice files stored out of order; by position: 0, 1, 2 (its pixel data cut
    short, header intact), 3, 4, then one whose header is junk and one that cannot be
    unpacked (their places unknown: after the others)."""
    import pydicom

    frames = _banded(5)
    members = {f"IM{z}.dcm": _slice(frames[z], float(z)) for z in (4, 0, 3, 1)}
    ds = pydicom.dcmread(io.BytesIO(_slice(frames[2], 2.0)))
    ds.PixelData = ds.PixelData[:-40]
    buf = io.BytesIO()
    ds.save_as(buf)
    members["IM2.dcm"] = buf.getvalue()
    members["junk.dcm"] = b"\x00" * 300
    members["lost.dcm"] = _slice(frames[0], 9.0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    return _garble_member(buf.getvalue(), "lost.dcm")


def test_one_damaged_slice_of_a_zipped_series_costs_that_slice_only(tmp_path):
    """A zip of DICOM slices with one damaged file failed as a whole (its message named the
    file in the zip): the good slices are read, and the damaged ones named, as a multi-page
    TIFF's damaged page is (commit 2414749)."""
    from dashboard.core import decode_upload

    data = _damaged_series()
    slices, info = images.decode_slices(data, "series.zip")
    assert [_which(s) for s in slices] == [0, 1, 3, 4]  # by position, the damaged left out
    assert info["frames"] == 7 and info["indices"] == [0, 1, 3, 4]
    places = dict(info["unreadable"])
    assert set(places) == {3, 6, 7}
    assert places[3].startswith("damaged DICOM: its pixel data holds 0 of the 1 frames")
    assert places[6].startswith("not a DICOM file")
    assert places[7] == "damaged in the zip (it cannot be unpacked)"
    assert not any("IM" in r or "junk" in r or "lost" in r for r in places.values())

    series = tmp_path / "series.zip"
    series.write_bytes(data)
    items = expand_series([series])
    assert [str(i) for i in items] == [f"{series} · slice {k} of 7" for k in range(1, 8)]
    read = SliceReader()
    assert [_which(read(items[k])) for k in (0, 1, 3, 4)] == [0, 1, 3, 4]
    for k in (2, 5, 6):
        with pytest.raises(ImageError) as err:
            read(items[k])
        assert str(err.value) == f"{items[k]}: {places[k + 1]}"

    upload = decode_upload("series.zip", data)
    assert upload.ok and upload.slice_numbers() == [1, 2, 4, 5]
    assert "slice 3 and 2 more could not be read (`damaged DICOM" in upload.note
    assert "are left out" in upload.note and "page" not in upload.note


def test_a_zipped_series_with_no_readable_slice_fails_in_one_line():
    members = {"a.dcm": b"\x00" * 300, "b.dcm": b"\x01" * 300}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    with pytest.raises(ImageError, match=r"^s\.zip: slice file 1: not a DICOM file") as err:
        images.decode_slices(buf.getvalue(), "s.zip")
    assert "\n" not in str(err.value)


def test_predict_fails_only_the_damaged_slice_of_a_zipped_series(tmp_path, smoke_run):
    """On the command line the good slices get their answers and the damaged ones each a line
    of their own, with their own reason (all seven failed before)."""
    import json

    from typer.testing import CliRunner

    from pipeline.cli import app

    series = tmp_path / "series.zip"
    series.write_bytes(_damaged_series())
    result = CliRunner().invoke(app, ["predict", "--run", str(smoke_run), "--json",
                                      str(series)])
    assert result.exit_code == 1, result.output[-2000:]
    report = json.loads(result.stdout)
    answered = [r["path"] for r in report["results"]]
    assert answered == [f"{series} · slice {k} of 7" for k in (1, 2, 4, 5)]
    errors = {e["path"]: e["error"] for e in report["errors"]}
    assert set(errors) == {f"{series} · slice {k} of 7" for k in (3, 6, 7)}
    assert "damaged DICOM" in errors[f"{series} · slice 3 of 7"]
    assert errors[f"{series} · slice 7 of 7"].endswith(
        "damaged in the zip (it cannot be unpacked)")
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("cannot read")]
    assert lines and all(str(series) in ln for ln in lines)
    assert any("slice 3 of 7: damaged DICOM" in ln for ln in lines)


def _rle_with_a_garbled_frame(n: int, bad: int) -> bytes:
    """`_banded(n)` as an RLE-compressed multi-frame DICOM whose frame `bad` (0-based) has a
    garbled RLE header (99 segments): the other frames decode."""
    import pydicom
    from pydicom.encaps import encapsulate, generate_fragmented_frames
    from pydicom.uid import RLELossless

    ds = pydicom.dcmread(io.BytesIO(make_dicom(_banded(n))))
    ds.compress(RLELossless)
    frames = [b"".join(f) for f in generate_fragmented_frames(ds.PixelData, number_of_frames=n)]
    frames[bad] = (99).to_bytes(4, "little") + frames[bad][4:]
    ds.PixelData = encapsulate(frames)
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def test_one_damaged_frame_of_a_multi_frame_dicom_costs_that_frame_only(tmp_path):
    """A compressed multi-frame file with one garbled frame failed as a whole; the other
    frames are read, in a file and as a slice file of a zip, and that frame says why."""
    from dashboard.core import decode_upload

    data = _rle_with_a_garbled_frame(4, bad=1)
    slices, info = images.decode_slices(data, "scan.dcm")
    assert [_which(s) for s in slices] == [0, 2, 3] and info["indices"] == [0, 2, 3]
    assert [p for p, _ in info["unreadable"]] == [2]
    assert info["unreadable"][0][1].startswith("cannot decode DICOM pixel data (transfer "
                                               "syntax RLE Lossless)")
    scan = tmp_path / "scan.dcm"
    scan.write_bytes(data)
    items = expand_series([scan])
    read = SliceReader()
    assert [_which(read(items[k])) for k in (0, 2, 3)] == [0, 2, 3]
    with pytest.raises(ImageError, match=rf"^{scan} · slice 2 of 4: cannot decode DICOM"):
        read(items[1])
    assert "slice 2 could not be read" in decode_upload("scan.dcm", data).note
    # the same file in a zip after a one-frame slice: its damaged frame keeps its place
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.dcm", _slice(_banded(5)[4], 0.0))
        zf.writestr("b.dcm", _rewrite(data, ImagePositionPatient=[0, 0, 1.0],
                                      ImageOrientationPatient=[1, 0, 0, 0, 1, 0]))
    slices, info = images.decode_slices(buf.getvalue(), "s.zip")
    assert [_which(s) for s in slices] == [4, 0, 2, 3] and info["indices"] == [0, 1, 3, 4]
    assert [p for p, _ in info["unreadable"]] == [3]
    # every frame damaged: the file fails in one line, as before
    with pytest.raises(ImageError, match=r"^scan\.dcm: cannot decode DICOM pixel data"):
        images.decode_slices(_rle_with_a_garbled_frame(1, bad=0), "scan.dcm")


AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]  # rows toward the patient's left: radiological
FLIPPED = [-1.0, 0.0, 0.0, 0.0, 1.0, 0.0]  # rows toward the patient's right
SAGITTAL = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]  # left and right of the picture: front and back


def _phantom_frames(n: int) -> np.ndarray:
    from pipeline.synth.tumours import render_phantom

    rng = np.random.default_rng(5)
    return np.stack([render_phantom("glioma_tumor", 64, rng)[0] for _ in range(n)]
                    ).astype(np.uint16) * 16


def test_a_dicom_s_orientation_tag_tells_whose_right_is_on_the_picture_s_left(
        tmp_path, smoke_run, monkeypatch):
    """Where a DICOM's ImageOrientationPatient says the rows run toward the patient's left,
    the reading notes say the patient's right is on the picture's left, as for a NIfTI slice;
    without the tag, or another orientation, the old words ("the picture's") stay."""
    import json

    from typer.testing import CliRunner

    from dashboard.core import decode_upload
    from pipeline.cli import app
    from pipeline.explain import overlays
    from pipeline.explain.overlay_text import OVERLAY_NOTE, overlay_note

    frames = _phantom_frames(2)

    def sides(data: bytes, name: str = "x.dcm") -> bool:
        return images.decode_slices(data, name)[1]["radiological"]

    assert sides(make_dicom(frames[0], ImageOrientationPatient=AXIAL))
    assert sides(make_dicom(frames, ImageOrientationPatient=AXIAL))  # a multi-frame file
    for ori in (FLIPPED, SAGITTAL, None):
        extra = {"ImageOrientationPatient": ori} if ori else {}
        assert not sides(make_dicom(frames[0], **extra)), ori
    # an enhanced multi-frame file keeps it in its shared functional groups
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    plane, shared = Dataset(), Dataset()
    plane.ImageOrientationPatient = AXIAL
    shared.PlaneOrientationSequence = Sequence([plane])
    assert sides(make_dicom(frames, SharedFunctionalGroupsSequence=Sequence([shared])))
    # a zip of slices: only when every slice file says so
    def zipped(orientations: list) -> bytes:  # noqa: ANN202
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for k, ori in enumerate(orientations):
                extra = {"ImageOrientationPatient": ori} if ori else {}
                zf.writestr(f"IM{k}.dcm", make_dicom(frames[k], InstanceNumber=k + 1, **extra))
        return buf.getvalue()

    assert sides(zipped([AXIAL, AXIAL]), "s.zip")
    assert not sides(zipped([AXIAL, None]), "s.zip")
    assert decode_upload("x.dcm", make_dicom(frames, ImageOrientationPatient=AXIAL)).radiological
    assert not decode_upload("x.dcm", make_dicom(frames)).radiological
    # explain: a single axial file and a sagittal series, each with its own small print
    notes: list[str] = []
    real = overlays.captioned_overlay
    axial, sagittal = tmp_path / "axial.dcm", tmp_path / "sagittal.dcm"
    axial.write_bytes(make_dicom(frames[0], ImageOrientationPatient=AXIAL))
    sagittal.write_bytes(make_dicom(frames, ImageOrientationPatient=SAGITTAL))

    def spy(image, heatmap, lines, note, **kwargs):  # noqa: ANN001, ANN202
        notes.append(note)
        return real(image, heatmap, lines, note, **kwargs)

    monkeypatch.setattr(overlays, "captioned_overlay", spy)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["explain", "--run", str(smoke_run), "--model",
                                      "custom_cnn", "--out", str(out), str(axial), str(sagittal)])
    assert result.exit_code == 0, result.output[-2000:]
    rows = json.loads((out / "explain.json").read_text())["images"]
    assert [r["radiological"] for r in rows] == [True, False, False]
    assert notes == [overlay_note(True), OVERLAY_NOTE, OVERLAY_NOTE]
