"""images.py: every format and failure a user's folder or upload can throw at decode_image;
geometry.py: the head crop and prepare_image."""

from __future__ import annotations

import io
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import make_dicom, with_disc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline import dicom, images
from pipeline.geometry import crop_box, crop_to_head, prepare_for, prepare_image
from pipeline.images import ImageError, decode_image, read_image


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def pattern(w: int = 48, h: int = 32) -> np.ndarray:
    """An RGB image whose four quadrants differ, so orientation and colour are checkable."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = (255, 0, 0)
    a[: h // 2, w // 2 :] = (0, 255, 0)
    a[h // 2 :, : w // 2] = (0, 0, 255)
    a[h // 2 :, w // 2 :] = (255, 255, 255)
    return a


def check_rgb(arr: np.ndarray, h: int, w: int) -> None:
    assert isinstance(arr, np.ndarray)
    assert arr.dtype == np.uint8
    assert arr.shape == (h, w, 3)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


# --------------------------------------------------------------------------- formats that decode


def test_rgb_png_and_jpeg_roundtrip():
    a = pattern()
    check_rgb(out := decode_image(encode(Image.fromarray(a), "PNG"), "a.png"), 32, 48)
    assert np.array_equal(out, a)
    out = decode_image(encode(Image.fromarray(a), "JPEG", quality=95), "a.jpg")
    check_rgb(out, 32, 48)
    assert np.abs(out.astype(int) - a).mean() < 8


def test_grayscale_becomes_three_equal_channels():
    g = (np.arange(32 * 40) % 256).astype(np.uint8).reshape(32, 40)
    out = decode_image(encode(Image.fromarray(g, "L"), "PNG"))
    check_rgb(out, 32, 40)
    assert np.array_equal(out[:, :, 0], g)
    assert np.array_equal(out[:, :, 0], out[:, :, 2])


def test_one_bit_image():
    bw = Image.fromarray((np.indices((16, 16)).sum(0) % 2 * 255).astype(np.uint8)).convert("1")
    out = decode_image(encode(bw, "PNG"))
    check_rgb(out, 16, 16)
    assert set(np.unique(out)) == {0, 255}


def test_rgba_is_composited_on_black():
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[:, :4, 3] = 255  # opaque
    rgba[:, 4:8, 3] = 128  # half
    rgba[:, 8:, 3] = 0  # transparent
    out = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    check_rgb(out, 10, 12)
    assert tuple(out[0, 0]) == (200, 100, 50)
    assert np.allclose(out[0, 5], (100, 50, 25), atol=1)
    assert tuple(out[0, 10]) == (0, 0, 0)


def test_la_image_is_composited_on_black():
    la = np.zeros((10, 10, 2), np.uint8)
    la[..., 0] = 180
    la[:, 5:, 1] = 255
    out = decode_image(encode(Image.fromarray(la, "LA"), "PNG"))
    assert out[0, 0, 0] == 0 and out[0, 9, 0] == 180


def test_palette_png_with_and_without_transparency():
    a = pattern()
    pal = Image.fromarray(a).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    out = decode_image(encode(pal, "PNG"))
    check_rgb(out, 32, 48)
    assert np.array_equal(out, a)
    transparent_index = pal.getpixel((0, 0))  # the red quadrant becomes transparent
    out = decode_image(encode(pal, "PNG", transparency=transparent_index))
    assert tuple(out[0, 0]) == (0, 0, 0)
    assert tuple(out[-1, -1]) == (255, 255, 255)


def test_16bit_png_scaled_by_actual_range_not_by_shifting():
    # 12-bit MRI in a 16-bit file: >>8 would squash 0..4095 into 0..15
    ramp = np.linspace(0, 4095, 64 * 16).astype(np.uint16).reshape(16, 64)
    out = decode_image(encode(Image.fromarray(ramp), "PNG"), "mri16.png")
    check_rgb(out, 16, 64)
    assert out.min() == 0 and out.max() == 255
    expected = ramp / 4095 * 255  # full range, where >>8 would give at most 15
    assert np.abs(out[:, :, 0] - expected).max() <= 1


def test_16bit_tiff_and_constant_image():
    ramp = np.linspace(1000, 3000, 32 * 32).astype(np.uint16).reshape(32, 32)
    out = decode_image(encode(Image.fromarray(ramp), "TIFF"), "slice.tif")
    check_rgb(out, 32, 32)
    assert out.min() == 0 and out.max() == 255
    flat = np.full((16, 16), 700, np.uint16)
    out = decode_image(encode(Image.fromarray(flat), "PNG"))
    assert out.max() == 0  # no range: black, not a crash or a division by zero


def test_float_tiff():
    f = np.linspace(-1.0, 1.0, 16 * 16, dtype=np.float32).reshape(16, 16)
    out = decode_image(encode(Image.fromarray(f, "F"), "TIFF"))
    check_rgb(out, 16, 16)
    assert out.min() == 0 and out.max() == 255


def test_cmyk_jpeg():
    red = Image.fromarray(np.full((24, 24, 3), (220, 20, 20), np.uint8)).convert("CMYK")
    out = decode_image(encode(red, "JPEG", quality=95), "cmyk.jpg")
    check_rgb(out, 24, 24)
    r, g, b = out[12, 12].astype(int)
    assert r > 180 and g < 70 and b < 70


def test_exif_orientation_is_applied():
    a = pattern(48, 32)  # landscape, red top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    data = encode(Image.fromarray(a), "JPEG", quality=95, exif=exif.tobytes())
    out = decode_image(data, "phone.jpg")
    check_rgb(out, 48, 32)  # now portrait
    expected = np.rot90(a, k=-1)  # clockwise
    assert np.abs(out.astype(int) - expected).mean() < 10


def test_animated_gif_takes_first_frame():
    colours = ((255, 0, 0), (0, 0, 255))
    frames = [Image.fromarray(np.full((20, 20, 3), c, np.uint8)) for c in colours]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = decode_image(buf.getvalue(), "anim.gif")
    check_rgb(out, 20, 20)
    assert out[10, 10, 0] > 200 and out[10, 10, 2] < 50


def test_multipage_tiff_takes_first_page():
    pages = [Image.fromarray(np.full((16, 24), v, np.uint8)) for v in (40, 200)]
    buf = io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:])
    out = decode_image(buf.getvalue(), "stack.tiff")
    check_rgb(out, 16, 24)
    assert out[0, 0, 0] == 40


def _stack(values, side: int = 16) -> bytes:
    """A multi-page TIFF whose page k is `values[k]` but for a disc in its middle (which page a
    slice is, is readable at its corner; a flat page would be a blank slice, left out)."""
    pages = [Image.fromarray(with_disc(np.full((side, side + 8), v, np.uint8))) for v in values]
    buf = io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:])
    return buf.getvalue()


def test_a_multipage_tiff_is_a_series_of_its_pages(tmp_path: Path):
    """`predict`, `explain` and the dashboard read every page of a TIFF stack, as they read a
    DICOM series; they used to read its first page only, and said nothing."""
    from pipeline.images import decode_slices
    from pipeline.series import SliceReader, expand_series

    slices, info = decode_slices(_stack((40, 120, 200)), "stack.tiff")
    assert [int(s[0, 0, 0]) for s in slices] == [40, 120, 200]
    assert (info["frames"], info["slices"]) == (3, 3)
    short = tmp_path / "stack.tif"
    short.write_bytes(_stack((40, 120, 200)))
    items = expand_series([short])
    assert [str(i) for i in items] == [f"{short} · slice {k} of 3" for k in (1, 2, 3)]
    assert int(SliceReader()(items[1])[0, 0, 0]) == 120
    # a long stack: MAX_SLICES evenly spaced pages, each named by its real page
    long = tmp_path / "long.TIFF"
    long.write_bytes(_stack(range(100)))
    items = expand_series([long])
    assert len(items) == dicom.MAX_SLICES
    assert str(items[1]) == f"{long} · page 3 of 100 (64 of 100 pages analysed)"
    read = SliceReader()
    assert [int(read(i)[0, 0, 0]) for i in (items[1], items[-1])] == [2, 99]
    # one-page TIFFs, and TIFFs that are not TIFFs, stay one item
    one = tmp_path / "one.tif"
    one.write_bytes(_stack((7,)))
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a tiff at all")
    assert expand_series([one, junk]) == [str(one), str(junk)]
    with pytest.raises(ImageError, match="junk.tif: not an image"):
        SliceReader()(str(junk))


def test_a_tiff_page_too_large_is_left_out_naming_the_page(monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 500)  # pages of 16x24 = 384 px pass
    pages = [Image.fromarray(with_disc(np.zeros((16, 24), np.uint8))),
             Image.fromarray(with_disc(np.zeros((40, 40), np.uint8)))]
    buf = io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:])
    slices, info = images.decode_slices(buf.getvalue(), "s.tif")
    assert len(slices) == 1 and info["indices"] == [0]
    assert [(page, reason.split(":")[0]) for page, reason in info["unreadable"]] == [
        (2, "image too large")]
    buf = io.BytesIO()  # no page readable: the file fails, naming the first page tried
    pages[1].save(buf, format="TIFF", save_all=True, append_images=pages[1:])
    with pytest.raises(ImageError, match=r"s\.tif: page 1 of 2: image too large"):
        images.decode_slices(buf.getvalue(), "s.tif")


def _damaged_stack(values, bad: int) -> bytes:
    """`_stack(values)`, deflate-compressed, with page `bad`'s (0-based) pixel data garbled."""
    pages = [Image.fromarray(with_disc(np.full((16, 24), v, np.uint8))) for v in values]
    buf = io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:],
                  compression="tiff_adobe_deflate")
    data = bytearray(buf.getvalue())
    with Image.open(io.BytesIO(bytes(data))) as im:
        im.seek(bad)
        start, length = im.tag_v2[273][0], im.tag_v2[279][0]  # StripOffsets, StripByteCounts
    data[start:start + length] = b"\xff" * length
    return bytes(data)


def test_one_damaged_tiff_page_costs_that_page_only(tmp_path: Path):
    """A stack with one garbled page failed as a whole, and `predict` called all six of its
    slices unreadable: the other pages are read, and only that page says why it is not."""
    from dashboard.core import decode_upload
    from pipeline.series import SliceReader, expand_series

    data = _damaged_stack((10, 60, 110, 160, 210, 250), bad=2)
    slices, info = images.decode_slices(data, "stack.tif")
    assert [int(s[0, 0, 0]) for s in slices] == [10, 60, 160, 210, 250]
    assert info["indices"] == [0, 1, 3, 4, 5] and [p for p, _ in info["unreadable"]] == [3]
    path = tmp_path / "stack.tif"
    path.write_bytes(data)
    items = expand_series([path])
    read = SliceReader()
    assert [int(read(i)[0, 0, 0]) for i in items if i.number != 3] == [10, 60, 160, 210, 250]
    with pytest.raises(ImageError, match=r"stack\.tif · slice 3 of 6: "):
        read(items[2])
    upload = decode_upload("stack.tif", data)
    assert upload.ok and upload.slice_numbers() == [1, 2, 4, 5, 6]
    assert "5 of its 6 slices are analysed" in upload.note and "evenly" not in upload.note
    assert "page 3 could not be read" in upload.note and "left out" in upload.note


def test_bmp_and_webp():
    a = pattern()
    assert np.array_equal(decode_image(encode(Image.fromarray(a), "BMP"), "a.bmp"), a)
    check_rgb(decode_image(encode(Image.fromarray(a), "WEBP", lossless=True), "a.webp"), 32, 48)


def test_decode_image_info_reports_source_mode_and_size():
    arr, info = images.decode_image_info(encode(Image.fromarray(pattern()).convert("L"), "PNG"))
    assert info["mode"] == "L" and info["format"] == "PNG"
    assert (info["width"], info["height"]) == (48, 32)
    check_rgb(arr, 32, 48)


def test_bytearray_and_memoryview_accepted():
    data = encode(Image.fromarray(pattern()), "PNG")
    check_rgb(decode_image(bytearray(data)), 32, 48)
    check_rgb(decode_image(memoryview(data)), 32, 48)


# --------------------------------------------------------------------------- DICOM


def test_dicom_with_rescale_is_decoded():
    ramp = np.linspace(0, 4000, 24 * 32).astype(np.uint16).reshape(24, 32)
    data = make_dicom(ramp, RescaleSlope=2, RescaleIntercept=-1024)
    assert data[128:132] == b"DICM"
    out = decode_image(data, "slice.dcm")
    check_rgb(out, 24, 32)
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    assert np.all(np.diff(out[:, :, 0].ravel().astype(int)) >= 0)  # monotonic like the ramp


def test_dicom_window_and_monochrome1():
    ramp = np.linspace(0, 4000, 16 * 16).astype(np.uint16).reshape(16, 16)
    windowed = decode_image(make_dicom(ramp, WindowCenter=1000, WindowWidth=500), "w.dcm")
    # values far above the window saturate: most of the ramp ends up white
    assert (windowed[:, :, 0] == 255).mean() > 0.5
    inverted = decode_image(make_dicom(ramp, "MONOCHROME1"), "m1.dcm")
    assert inverted[0, 0, 0] == 255 and inverted[-1, -1, 0] == 0


def test_dicom_without_pixel_data_is_refused():
    with pytest.raises(ImageError, match="no pixel data"):
        decode_image(make_dicom(None), "report.dcm")


def test_corrupt_dicom_is_refused():
    data = make_dicom(np.zeros((16, 16), np.uint16))
    with pytest.raises(ImageError, match="bad.dcm"):
        decode_image(data[: len(data) - 300], "bad.dcm")


# --------------------------------------------------------------------------- what must be refused


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty file"),
        (b"just some notes, renamed to .jpg\n" * 5, r"not an image \(text\?\)"),
        (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "not an image"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not an image"),
    ],
    ids=["empty", "text", "random", "eps-is-not-accepted"],
)
def test_non_images_are_refused(data, match):
    with pytest.raises(ImageError, match=match) as info:
        decode_image(data, "scan.jpg")
    assert "scan.jpg" in str(info.value)


def test_truncated_jpeg():
    data = encode(Image.fromarray(pattern(200, 200)), "JPEG", quality=90)
    with pytest.raises(ImageError, match="truncated JPEG") as info:
        decode_image(data[: len(data) // 2], "cut.jpg")
    # in our words, not Pillow's "(N bytes not processed)", which read as almost complete
    assert "cut short" in str(info.value) and "bytes" not in str(info.value), info.value


def test_truncated_png():
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "PNG")
    for cut in (len(data) // 2, 60, 40):
        with pytest.raises(ImageError, match="cut.png"):
            decode_image(data[:cut], "cut.png")


def test_bomb_header_refused_before_decoding():
    # A 67-byte PNG whose header claims 40000×40000 pixels (1.6 gigapixels).
    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")
    with pytest.raises(ImageError, match="image too large") as info:
        decode_image(data, "bomb.png")
    assert "bomb.png" in str(info.value)
    # in our words, not Pillow's "... could be decompression bomb DOS attack" (a review)
    assert "DOS" not in str(info.value) and "megapixels" in str(info.value), info.value


def test_pixel_cap_uses_header(monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    data = encode(Image.fromarray(pattern(48, 32)), "PNG")  # 1536 pixels
    with pytest.raises(ImageError, match=r"image too large: 48×32 exceeds 0.001 megapixels"):
        decode_image(data, "big.png")


@pytest.mark.parametrize(("w", "h"), [(1, 1), (7, 100), (100, 7)])
def test_tiny_images_refused(w, h):
    data = encode(Image.fromarray(np.zeros((h, w, 3), np.uint8)), "PNG")
    with pytest.raises(ImageError, match=f"{w}×{h} image is too small"):
        decode_image(data, "dot.png")


def test_non_bytes_input():
    with pytest.raises(ImageError, match="expected bytes"):
        decode_image("not bytes")  # type: ignore[arg-type]


def test_read_image(tmp_path: Path):
    p = tmp_path / "x.png"
    p.write_bytes(encode(Image.fromarray(pattern()), "PNG"))
    check_rgb(read_image(p), 32, 48)
    check_rgb(read_image(str(p)), 32, 48)
    with pytest.raises(ImageError, match="file not found") as info:
        read_image(tmp_path / "missing.jpg")
    assert "missing.jpg" in str(info.value)
    with pytest.raises(ImageError, match="folder"):
        read_image(tmp_path)
    (tmp_path / "zero.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="zero.jpg: empty file"):
        read_image(tmp_path / "zero.jpg")


def test_a_folder_or_no_name_given_to_read_image_is_called_what_it_is(tmp_path: Path):
    """read_image(folder) said "a folder with no image in it (... searched recursively)" of a
    folder of images it never searched, and read_image("") read the working folder."""
    png = encode(Image.fromarray(pattern()), "PNG")
    (tmp_path / "scans" / "sub").mkdir(parents=True)
    (tmp_path / "scans" / "sub" / "a.png").write_bytes(png)
    with pytest.raises(ImageError, match=r"^\S+scans: is a folder, not one image file \("
                                         r"pipeline\.stream\.expand_inputs lists"):
        read_image(tmp_path / "scans")
    # nothing the CLI's search reads in it (hidden files are not searched): as the CLI says of
    # a folder it found nothing in, the search now made
    (tmp_path / "none" / ".hidden").mkdir(parents=True)
    (tmp_path / "none" / ".hidden" / "b.png").write_bytes(png)
    (tmp_path / "none" / "notes.txt").write_text("not a scan")
    from pipeline.stream import expand_inputs

    assert expand_inputs([tmp_path / "none"]) == [tmp_path / "none"]  # the CLI hands it on
    with pytest.raises(ImageError, match=f"none: {re.escape(images.FOLDER_MESSAGE)}$"):
        read_image(tmp_path / "none")
    with pytest.raises(ImageError, match="^no file name given$"):
        read_image("")


def test_read_image_names_the_series_reader_for_a_series_file(tmp_path: Path):
    """read_image("vol.nii.gz") said "not an image (unrecognised format; accepted: JPEG, ...,
    DICOM)" of a volume the CLI reads; it now names the function that reads its slices."""
    import gzip

    import nibabel as nib

    vox = np.random.default_rng(0).integers(0, 1000, (24, 24, 3)).astype(np.int16)
    volume = nib.Nifti1Image(vox, np.eye(4)).to_bytes()
    frames = [make_dicom(with_disc(np.full((24, 24), 100 * k, np.uint16))) for k in (1, 2)]
    files = {"vol.nii.gz": gzip.compress(volume), "vol.nii": volume, "named.img": volume,
             "s.zip": _zip({"a.dcm": frames[0], "b.dcm": frames[1]})}
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ImageError, match=rf"^{re.escape(str(path))}: a series \(a NIfTI "
                                             r"volume or a zip of DICOM slices\), not one image: "
                                             r"read its slices with pipeline\.images\."
                                             r"decode_slices\(read_file\(path\), str\(path\)\)$"):
            read_image(path)
        slices, _ = images.decode_slices(images.read_file(path), str(path))  # as it says
        assert len(slices) >= 2, name


# --------------------------------------------------------------------------- fuzzing

SEEDS = {
    "png": encode(Image.fromarray(pattern(24, 16)), "PNG"),
    "jpeg": encode(Image.fromarray(pattern(24, 16)), "JPEG", quality=80),
    "gray16": encode(Image.fromarray(np.arange(256, dtype=np.uint16).reshape(16, 16) * 16), "PNG"),
}


@st.composite
def mutated(draw):
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "truncate":
            data = data[:pos]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 8))]
    return bytes(data)


@settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated())
def test_mutated_bytes_decode_or_raise_image_error(data: bytes):
    try:
        out = decode_image(data, "fuzz.png")
    except ImageError as exc:
        assert "fuzz.png" in str(exc)
        return
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert out.shape[0] >= images.MIN_SIDE and out.shape[1] >= images.MIN_SIDE


# --------------------------------------------------------------------------- crop and prepare


def synthetic_head(canvas: int = 400, box: tuple[int, int, int, int] = (150, 120, 110, 80)):
    import cv2

    img = np.zeros((canvas, canvas, 3), np.uint8)
    cx, cy, ax, ay = box
    cv2.ellipse(img, (cx, cy), (ax, ay), 0, 0, 360, (150, 150, 150), -1)
    cv2.ellipse(img, (cx, cy), (ax, ay), 0, 0, 360, (230, 230, 230), 6)  # skull ring
    cv2.circle(img, (cx - 20, cy), 15, (40, 40, 40), -1)  # dark ventricle inside
    return img


def test_crop_to_head_returns_tighter_box():
    img = synthetic_head()
    out = crop_to_head(img)
    h, w = out.shape[:2]
    # ellipse is 220×160 (+3 px ring) plus a 2 % margin (8 px each side)
    assert 220 <= w <= 250 and 160 <= h <= 190
    assert out.mean() > img.mean() * 2  # mostly head now, not background


def test_crop_to_head_keeps_unsuitable_images():
    blank = np.zeros((100, 100, 3), np.uint8)
    assert crop_to_head(blank) is not None and crop_to_head(blank).shape == (100, 100, 3)
    speck = np.zeros((200, 200, 3), np.uint8)
    speck[10:20, 10:20] = 255  # 0.25 % of the area: not a head
    assert crop_to_head(speck).shape == (200, 200, 3)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert crop_to_head(noise).ndim == 3


def test_a_slice_shown_small_on_a_large_canvas_is_cropped_to_its_head():
    """A viewer's export: a head of 180 x 140 px on a 1024 px canvas (its box 2.4 % of the
    image). Under the old 10 % floor it was left uncropped, and both models misread most such
    slices."""
    canvas = synthetic_head(canvas=1024, box=(385, 485, 90, 70))
    x0, y0, x1, y1 = crop_box(canvas)
    # the head's box (295-475, 415-555) and its margin (2 % of the image's side), not the image
    assert 260 <= x0 <= 295 and 380 <= y0 <= 415 and 475 <= x1 <= 510 and 555 <= y1 <= 590, (
        x0, y0, x1, y1)
    assert crop_to_head(canvas).shape[:2] == (y1 - y0, x1 - x0)


def test_crop_box_is_the_region_crop_to_head_keeps():
    img = synthetic_head()
    x0, y0, x1, y1 = crop_box(img)
    assert 0 < x0 < x1 < 400 and 0 < y0 < y1 < 400
    assert np.array_equal(img[y0:y1, x0:x1], crop_to_head(img))
    assert crop_box(np.zeros((100, 80, 3), np.uint8)) == (0, 0, 80, 100)  # no head: everything


def test_prepare_image_shapes_and_dtype():
    img = synthetic_head(300)
    for crop in (True, False):
        out = prepare_image(img, 96, crop=crop)
        assert out.shape == (96, 96, 3) and out.dtype == np.uint8
    upscale = prepare_image(np.full((20, 30, 3), 90, np.uint8), 64, crop=False)
    assert upscale.shape == (64, 64, 3)
    # a non-square image is padded (aspect kept), not stretched
    wide = np.full((50, 100, 3), 200, np.uint8)
    out = prepare_image(wide, 100, crop=False)
    assert out[0, 50, 0] == 0 and out[50, 50, 0] == 200


def test_prepare_for_is_prepare_image_for_each_spec():
    """Streaming prediction prepares one image for several models at once: same pixels."""
    specs = [(128, True), (224, True), (96, False), (64, True)]
    wide = np.zeros((240, 360, 3), np.uint8)
    wide[20:220, 80:280] = synthetic_head(200)
    for img in (synthetic_head(300), wide, np.full((50, 70), 120, np.uint8),
                np.zeros((40, 40, 3), np.uint8), synthetic_head(90).astype(np.float32)):
        got = prepare_for(img, specs)
        assert len(got) == len(specs)
        for out, (size, crop) in zip(got, specs, strict=True):
            assert np.array_equal(out, prepare_image(img, size, crop=crop))
    assert prepare_for(synthetic_head(100), []) == []


def test_prepare_image_accepts_gray_and_float():
    gray = np.full((40, 40), 100, np.uint8)
    assert prepare_image(gray, 32, crop=False).shape == (32, 32, 3)
    f = np.full((40, 40, 3), 100.4, np.float32)
    out = prepare_image(f, 32, crop=False)
    assert out.dtype == np.uint8 and out[0, 0, 0] == 100
    rgba = np.full((40, 40, 4), 50, np.uint8)
    assert prepare_image(rgba, 32, crop=False).shape == (32, 32, 3)


@pytest.mark.parametrize("bad", [np.zeros((10, 10, 2), np.uint8), np.zeros((4, 4, 4, 3), np.uint8),
                                 np.zeros((0, 10, 3), np.uint8)])
def test_prepare_image_names_bad_shape(bad):
    with pytest.raises(ImageError, match=r"shape \(") as info:
        prepare_image(bad, 32)
    assert str(bad.shape) in str(info.value)


def test_prepare_image_rejects_bad_size_and_type():
    with pytest.raises(ImageError, match="size"):
        prepare_image(np.zeros((20, 20, 3), np.uint8), 0)
    with pytest.raises(ImageError, match="numpy array"):
        prepare_image([[1, 2], [3, 4]], 32)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "I;16"])
def test_large_images_are_shrunk_while_decoding(monkeypatch, mode):
    monkeypatch.setattr(images, "MAX_DECODE_SIDE", 64)
    base = Image.fromarray(pattern(300, 200)).convert("L")
    im = base.convert(mode) if mode != "I;16" else Image.fromarray(
        (np.asarray(base, np.uint16) * 16).astype(np.uint16))
    arr, info = images.decode_image_info(encode(im, "PNG"), f"big-{mode}.png")
    assert max(arr.shape[:2]) <= 64 and arr.shape[2] == 3
    assert info["width"] == 300 and info["reduced_by"] == 5.0
    small = np.asarray(base.resize((60, 40), Image.Resampling.BOX), np.float32)
    assert np.abs(arr[:, :, 0].astype(np.float32) - small).mean() < 40  # the same picture


def test_jpeg_is_decoded_at_reduced_size(monkeypatch):
    monkeypatch.setattr(images, "MAX_DECODE_SIDE", 100)
    arr, info = images.decode_image_info(encode(Image.fromarray(pattern(400, 240)), "JPEG"),
                                         "big.jpg")
    assert arr.shape == (60, 100, 3) and info["reduced_by"] == 4.0


def test_upload_pixel_cap_is_a_parameter():
    data = encode(Image.fromarray(pattern(48, 32)), "PNG")
    with pytest.raises(ImageError, match="exceeds 0.001 megapixels"):
        decode_image(data, "big.png", max_pixels=1000)
    assert decode_image(data, "big.png", max_pixels=2000).shape == (32, 48, 3)


def test_decoding_a_zero_filled_7000px_png_stays_small(tmp_path):
    """The issue's memory bomb: 190 KB on disk, 1.31 GB peak RSS when converted at full size."""
    import subprocess
    import sys

    path = tmp_path / "bomb.png"
    Image.new("RGBA", (7000, 7000)).save(path)
    code = (
        "from pipeline.images import decode_image_info\n"
        "def hwm():\n"
        "    return next(int(x.split()[1]) for x in open('/proc/self/status')\n"
        "                if x.startswith('VmHWM')) / 1024\n"
        f"data = open({str(path)!r}, 'rb').read(); before = hwm()\n"
        "arr, info = decode_image_info(data, 'bomb.png')\n"
        "print(arr.shape[0], info['reduced_by'], round(hwm() - before))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert out.returncode == 0, out.stderr
    side, factor, grew_mb = out.stdout.split()
    assert int(side) <= images.MAX_DECODE_SIDE and float(factor) > 1
    # Pillow's own RGBA raster (196 MB) plus reduce's premultiplied copy; was ~1300 MB
    assert int(grew_mb) < 500, out.stdout


# --------------------------------------------------------------------------- DICOM series


def _zip(members: dict[str, bytes]) -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    return buf.getvalue()


def test_multi_frame_dicom_and_zipped_series_give_every_slice_in_order():
    frames = np.full((4, 16, 16), 100, np.uint16)
    for k in range(4):
        frames[k, :, 4 * k:4 * k + 4] = 2000  # slice k: a bright band at columns 4k..4k+3
    where = [int(np.argmax(s[0, :, 0])) // 4  # which band each decoded slice has
             for s in images.decode_slices(make_dicom(frames), "multi.dcm")[0]]
    assert where == [0, 1, 2, 3]
    assert images.decode_image_info(make_dicom(frames), "m.dcm")[1]["frames"] == 4
    # a zip of slices stored out of order comes back sorted by position along the normal
    members = {f"x{k}.dcm": make_dicom(frames[k], InstanceNumber=9 - k,
                                       ImagePositionPatient=[0, 0, 5.0 * k],
                                       ImageOrientationPatient=[1, 0, 0, 0, 1, 0])
               for k in (3, 1, 0, 2)}
    series, info = images.decode_slices(_zip({"__MACOSX/._x": b"junk", **members}), "s.zip")
    assert info["format"] == "DICOM series" and info["slices"] == 4
    assert [int(np.argmax(s[0, :, 0])) // 4 for s in series] == [0, 1, 2, 3]
    # without positions: by instance number (here the reverse)
    members = {f"x{k}.dcm": make_dicom(frames[k], InstanceNumber=9 - k) for k in (3, 1, 0, 2)}
    series, _ = images.decode_slices(_zip(members), "s.zip")
    assert [int(np.argmax(s[0, :, 0])) // 4 for s in series] == [3, 2, 1, 0]


def test_long_series_are_thinned_evenly():
    assert dicom._evenly_spaced(5, 64) == [0, 1, 2, 3, 4]
    picked = dicom._evenly_spaced(200, dicom.MAX_SLICES)
    assert len(picked) == dicom.MAX_SLICES and picked[0] == 0 and picked[-1] == 199


@pytest.mark.parametrize(("data", "match"), [
    (b"PK\x03\x04 not a zip", "s.zip: not a readable zip file"),
    (_zip({}), "the zip holds no files"),
    (_zip({"a.jpg": b"\xff\xd8 not dicom", "b.txt": b"notes"}),
     r"^s.zip: none of the 2 files in the zip is DICOM; upload a zip of .dcm slices$"),
])
def test_bad_series_zips_get_one_line(data, match):
    with pytest.raises(ImageError, match=match) as err:
        images.decode_slices(data, "s.zip")
    assert "\n" not in str(err.value)


def test_a_zip_s_other_files_are_skipped_and_counted():
    """A PACS or CD export holds a README.TXT, INDEX.HTM or AUTORUN.INF beside its slices: one
    such file refused the whole zip (a review); it is skipped now, and counted for the note."""
    ramp = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (64, 1))
    data = _zip({"IM1.dcm": make_dicom(ramp), "IM2.dcm": make_dicom(ramp.T.copy()),
                 "README.TXT": b"Burned by a PACS", "AUTORUN.INF": b"[autorun]"})
    slices, info = images.decode_slices(data, "s.zip")
    assert len(slices) == 2 and info["not_dicom"] == 2


def test_a_dicom_frame_count_comes_from_its_header_as_decode_frames_would_return(
        tmp_path):
    """`predict` counts a .dcm's slices without decoding its pixels: the count must be what
    decoding returns (at most MAX_SLICES); a .dcm that is not one stays one item, whose read
    reports why."""
    from helpers import make_dicom

    from pipeline import dicom

    for frames in (1, 3, dicom.MAX_SLICES + 6):
        pixels = np.zeros((frames, 16, 16), np.uint16) + np.arange(frames)[:, None, None]
        data = make_dicom(pixels if frames > 1 else pixels[0])
        decoded = dicom.decode_frames(data, "x.dcm", 10**7)[0]
        assert len(dicom.slice_indices(dicom.header_frames(data, "x.dcm"))) == len(decoded) == (
            min(frames, dicom.MAX_SLICES))
    from pipeline.series import SliceReader, expand_series

    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\x00" * 10)
    assert expand_series([bad]) == [str(bad)]
    with pytest.raises(ImageError, match="bad.dcm"):
        SliceReader()(str(bad))


def test_a_series_dcm_is_counted_from_its_header_without_reading_its_pixels(
        tmp_path, monkeypatch):
    """`predict` expands its inputs before it streams anything: a .dcm must be counted from its
    header, not read whole (once, every .dcm was read in full, one after another, also on
    every resume). A zip is still decoded, as the dashboard sorts and filters its slices."""
    import contextlib

    from helpers import make_dicom

    from pipeline import series

    frames = np.zeros((3, 512, 512), np.uint16) + np.arange(3, dtype=np.uint16)[:, None, None]
    scan = tmp_path / "scan.dcm"
    scan.write_bytes(make_dicom(frames))
    read = []
    real_open = images.open_regular

    class Counting:
        def __init__(self, fh):
            self.fh = fh

        def read(self, n=-1):
            data = self.fh.read(n)
            read.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self.fh, name)

    @contextlib.contextmanager
    def counting_open(path, label=None):
        with real_open(path, label) as fh:
            yield Counting(fh)

    def no_whole_read(path, label=None):
        raise AssertionError(f"{path} was read whole")

    monkeypatch.setattr(images, "open_regular", counting_open)
    monkeypatch.setattr(images, "read_file", no_whole_read)
    assert series.expand_series([scan]) == [series.Slice(str(scan), k, 3) for k in range(3)]
    assert 0 < sum(read) < scan.stat().st_size / 100  # the header, not the 1.5 MB of pixels
