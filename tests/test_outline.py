"""The white outline of a heatmap's hottest pixels (`explain --outline`, the dashboard's toggle):
never around heat near 0, kept around real heat wherever it is, and named in every caption
(pipeline/explain/render.py `top_region`, `outline_words`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.explain.render import (
    OUTLINE_FLOOR,
    caption_strip,
    outline_words,
    render_overlay,
    top_region,
)


def _focused_map(side: int = 128) -> np.ndarray:
    """A map like the shipped custom CNN's plain Grad-CAMs: one hot spot on 2 % of the
    picture, 0 on most of it, and a trace of heat (0.0003-0.02 of the peak, as measured on
    Testing/ images) in the black corners."""
    yy, xx = np.mgrid[0:side, 0:side]
    hm = np.exp(-((yy - 80) ** 2 + (xx - 50) ** 2) / (2 * (side / 20) ** 2)).astype(np.float32)
    hm[hm < 0.05] = 0.0
    corners = np.zeros_like(hm)
    corners[:12, :12] = 0.0003
    corners[-14:, -14:] = 0.02
    corners[:10, -10:] = 0.001
    return np.maximum(hm, corners)


def _line(img: np.ndarray, hm: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels the white line changed (it is anti-aliased: not all pure white)."""
    outlined = render_overlay(img, hm, outline_top_percent=10).astype(int)
    return np.abs(outlined - render_overlay(img, hm).astype(int)).sum(axis=2) > 0


def test_the_outline_leaves_out_heat_near_zero():
    """With 0 on most of the map, the "hottest 10 %" was made up with the corners' trace of
    heat, and the white line circled them (seen on real images; the corners were black)."""
    hm = _focused_map()
    region = top_region(hm, 10)
    assert region.any() and (hm[region] >= OUTLINE_FLOOR).all()
    assert region[80, 50] and not region[:14].any() and not region[-14:].any()
    # the old rule, for contrast: the top 10 % by rank took the corners in
    by_rank = hm >= np.percentile(hm, 90)
    assert by_rank[-1, -1] and by_rank[0, 0]
    img = np.full((128, 128, 3), 0, np.uint8)  # a black frame: the corners are black
    white = _line(img, hm)
    ys, xs = np.nonzero(white)
    assert white.any() and ys.min() > 40 and ys.max() < 120 and xs.max() < 90


def test_real_heat_in_a_corner_is_still_outlined():
    """Where the model's evidence really is in a corner, the line says so: the floor only
    removes heat the colour scale shows as none."""
    hm = _focused_map()
    hm[-14:, -14:] = 0.6
    region = top_region(hm, 10)
    assert region[-14:, -14:].all() and region[80, 50]
    img = np.full((128, 128, 3), 0, np.uint8)
    assert _line(img, hm)[-20:, -20:].any()


@pytest.mark.parametrize("value", [0.0, 0.3, 1.0])
def test_a_flat_map_has_no_outline(value: float):
    """A flat map has no hottest place: it outlined the whole picture's edge (any value above
    0) instead of nothing."""
    hm = np.full((32, 32), value, np.float32)
    assert not top_region(hm, 10).any()
    img = np.full((64, 64, 3), 90, np.uint8)
    assert not _line(img, hm).any()


def test_top_region_still_takes_the_top_share_of_a_spread_map():
    """A map with heat everywhere keeps the rule it had: the top k % by rank."""
    hm = np.linspace(0.2, 1.0, 100 * 100, dtype=np.float32).reshape(100, 100)
    assert top_region(hm, 10).mean() == pytest.approx(0.10, abs=0.001)
    with pytest.raises(ValueError, match=r"top percent must be in \(0, 100\], got 0"):
        top_region(hm, 0)


def test_the_caption_names_the_white_line():
    """No caption said what the white line was; it travels with the picture now."""
    from pipeline.explain.overlay_text import overlay_caption

    entry = {"predicted": "glioma", "target": "glioma", "method": "gradcam",
             "probs": {"glioma": 0.9, "no_tumor": 0.1}}
    plain = overlay_caption("custom_cnn", entry)
    outlined = overlay_caption("custom_cnn", entry, outline=10.0)
    assert outlined == [*plain[:2], outline_words(10.0), *plain[2:]]
    assert outline_words(10.0).startswith("White line: around the map's hottest 10% of pixels")
    assert f"under {OUTLINE_FLOOR:g} on the colour scale" in outline_words(10.0)
    assert outline_words(2.5).count("2.5%") == 1


def test_the_dashboard_s_download_and_legend_name_the_white_line():
    """The card's "Overlay PNG" with the toggle on says what the line is, as explain's does."""
    from helpers import captioned_with, card_download

    from dashboard import views
    from pipeline.explain.overlay_text import overlay_caption

    picture, entry = card_download([0.8, 0.2], outline=True)
    lines = overlay_caption("custom_cnn", entry, outline=views.OUTLINE_PERCENT)
    assert outline_words(views.OUTLINE_PERCENT) in lines
    assert captioned_with(picture, lines)


@pytest.mark.slow
def test_explain_outline_captions_say_what_the_line_is(smoke_run: Path, synth_data: Path,
                                                       tmp_path: Path):
    """`explain --outline 10` on a real run: each PNG's caption strip is the caption with the
    white line's words (drawn from explain.json's own record)."""
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from pipeline.artifacts import open_run
    from pipeline.cli import app
    from pipeline.explain.overlay_text import OVERLAY_NOTE, overlay_caption

    src = sorted(synth_data.glob("Testing/glioma*/*.png"))[0]
    res = CliRunner().invoke(app, ["explain", "--run", str(smoke_run), "--model", "custom_cnn",
                                   "--method", "gradcam", "--outline", "10",
                                   "--out", str(tmp_path), str(src)])
    assert res.exit_code == 0, res.output
    row = json.loads((tmp_path / "explain.json").read_text())["images"][0]
    entry = row["models"]["custom_cnn"]
    picture = np.asarray(Image.open(tmp_path / entry["overlay"]).convert("RGB"))
    lines = overlay_caption("custom_cnn", entry, row["in_run_split"], row["in_run_exact"],
                            may_be_ct=row["may_be_ct"], outline=10.0,
                            run=open_run(smoke_run).report_name)
    assert outline_words(10.0) in lines
    strip = caption_strip(picture.shape[1], lines, OVERLAY_NOTE)
    assert np.array_equal(picture[-strip.shape[0]:], strip)
