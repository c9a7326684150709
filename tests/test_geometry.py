"""geometry.as_rgb_uint8: an array or a Pillow image handed to the library reads as its file
decodes (a review of the Python API: an RGBA PNG's array, its alpha dropped, and the file got
different answers; a Pillow image was refused as "expected a numpy array")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.geometry import as_rgb_uint8, prepare_image
from pipeline.images import ImageError, read_image


def _rgba() -> np.ndarray:
    """A 32×32 RGBA slice: a bright disc, its alpha falling from opaque to transparent."""
    yy, xx = np.mgrid[:32, :32]
    grey = np.where((yy - 16) ** 2 + (xx - 16) ** 2 < 12 ** 2, 200, 30).astype(np.uint8)
    alpha = np.repeat(np.linspace(255, 0, 32).astype(np.uint8)[None, :], 32, axis=0)
    return np.dstack([grey, grey // 2, grey, alpha])


def test_an_rgba_array_reads_as_its_png_file_decodes(tmp_path: Path):
    path = tmp_path / "slice.png"
    Image.fromarray(_rgba(), "RGBA").save(path)
    from_file = read_image(path)
    assert from_file[:, -1].max() == 0  # transparent: black, as decoding composites it
    with Image.open(path) as im:
        as_array = np.asarray(im)
    assert as_array.shape == (32, 32, 4)
    for same in (as_array, as_array / 255.0):  # and as 0-1 floats (matplotlib's imread)
        np.testing.assert_array_equal(as_rgb_uint8(same), from_file)
    np.testing.assert_array_equal(prepare_image(as_array, 16), prepare_image(from_file, 16))


def _saved(tmp_path: Path, name: str, im: Image.Image, **kw) -> Path:
    path = tmp_path / name
    im.save(path, **kw)
    return path


def test_a_pillow_image_reads_as_its_file_decodes(tmp_path: Path):
    rgba = _rgba()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": decoding turns it
    twelve_bit = (rgba[:, :, 0].astype(np.uint16) * 16)  # a 12-bit slice in a 16-bit file
    palette = Image.fromarray(rgba[:, :, :3]).convert("P", palette=Image.Palette.ADAPTIVE,
                                                       colors=4)
    files = [
        _saved(tmp_path, "rgba.png", Image.fromarray(rgba, "RGBA")),
        _saved(tmp_path, "la.png", Image.fromarray(rgba[:, :, [0, 3]], "LA")),
        _saved(tmp_path, "p.png", palette, transparency=palette.getpixel((0, 0))),
        _saved(tmp_path, "i16.png", Image.fromarray(twelve_bit)),
        _saved(tmp_path, "turned.jpg", Image.fromarray(rgba[:, 4:, :3]), exif=exif.tobytes()),
    ]
    for path in files:
        with Image.open(path) as im:
            got = as_rgb_uint8(im)
        np.testing.assert_array_equal(got, read_image(path), err_msg=path.name)
    assert read_image(files[-1]).shape == (28, 32, 3)  # turned, as its EXIF says


def test_what_is_no_image_is_refused_in_one_line_saying_what_it_is():
    with pytest.raises(ImageError, match=r"^expected a numpy array or a Pillow image, "
                                         r"got None$"):
        as_rgb_uint8(None)
    for name in ("scan.jpg", Path("scan.jpg")):
        with pytest.raises(ImageError, match=r"got the file name 'scan\.jpg': read the file "
                                             r"with pipeline\.images\.read_image\(path\)$"):
            as_rgb_uint8(name)
    with pytest.raises(ImageError, match=r"got dict$"):
        as_rgb_uint8({})


def test_a_pillow_image_whose_file_is_closed_is_refused_in_one_line(tmp_path: Path):
    """Read after its `with Image.open(...)` closed the file: a bare AssertionError before."""
    path = _saved(tmp_path, "slice.png", Image.fromarray(_rgba(), "RGBA"))
    with Image.open(path) as im:
        pass
    with pytest.raises(ImageError, match=r"^cannot read the Pillow image \(AssertionError\); "
                                         r"an image whose file is closed must be loaded first"):
        as_rgb_uint8(im)
    with Image.open(path) as im:
        im.load()
    np.testing.assert_array_equal(as_rgb_uint8(im), read_image(path))
