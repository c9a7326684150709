"""AppTest of every dashboard page against the session's smoke run, plus damaged runs.

The smoke run (tests/conftest.py) is a real trained and evaluated run in a temporary artifacts
folder; damaged variants are copies of it with one thing broken each.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import make_dicom
from PIL import Image
from streamlit.testing.v1 import AppTest

from dashboard import card_flags, layer_names, paging, runinfo, summary_table, views
from dashboard.figures.quality import ACCURACY_ROW
from pipeline.explain import METHOD_LABELS
from pipeline.names import class_label

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
TIMEOUT = 240  # first model load + tracing on a busy 2-core machine
SMOKE_TITLE = "Synthetic phantoms, deduplicated split"  # the smoke run's (trained on phantoms)
PAGES = {
    "overview": ("app_pages/overview.py", "Overview & comparison"),
    "predict": ("app_pages/predict.py", "Predict & explain"),
    "errors": ("app_pages/errors.py", "Error analysis"),
    "quality": ("app_pages/quality.py", "Explanation quality"),
    "about": ("app_pages/about.py", "About & model card"),
}

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def artifacts(smoke_run: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    adir = smoke_run.parent.parent
    monkeypatch.setenv("BRAIN_MRI_ARTIFACTS", str(adir))
    return adir


def _app(page: str = "overview") -> AppTest:
    """Run the app and open `page`. Overview is the default page: no switch needed.

    AppTest (Streamlit 1.67) keeps only the page's own elements after `switch_page`, not the
    sidebar drawn by app.py, so sidebar checks run on the default page.
    """
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page != "overview":
        at.switch_page(PAGES[page][0]).run()
    return at


def _ok(at: AppTest) -> None:
    """No exception reached Streamlit, and none was caught by app.py's last line of defence."""
    assert not at.exception, [e.value for e in at.exception]
    assert "unexpected problem" not in _texts(at.error), _texts(at.error)


def _texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def _test_image(smoke_run: Path, k: int = 0) -> tuple[str, bytes]:
    manifest = json.loads((smoke_run / "manifest.json").read_text())
    splits = json.loads((smoke_run / "splits.json").read_text())
    entry = splits["test"][k]
    path = Path(manifest["data"]["dir"]) / entry["path"]
    return path.name, path.read_bytes()


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims `width`x`height` (a decompression bomb's calling card)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


class _HtmlTable(HTMLParser):
    """The rows of an HTML table (`summary_table.summary_html`): each cell's text, a thumbnail
    cell's the alt text of its image."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "img" and self.cell is not None:
            self.cell.append(dict(attrs).get("alt") or "")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def _html_frames(at: AppTest) -> list[pd.DataFrame]:
    """The summaries drawn as HTML tables (thumbnails with alt text), read back as the grid held
    them: counts as numbers, "yes" and "no" as booleans."""
    def value(text: str):
        return int(text) if text.isdigit() else {"yes": True, "no": False}.get(text, text)

    frames = []
    for el in at.get("html"):
        if f'class="{summary_table.CSS_CLASS}"' in el.proto.body:
            table = _HtmlTable()
            table.feed(el.proto.body)
            head, *rows = table.rows
            frames.append(pd.DataFrame([[value(c) for c in r] for r in rows], columns=head))
    return frames


def _frame(at: AppTest, column: str):
    """The first st.dataframe, st.table or summary (an HTML table) showing `column` (AppTest
    does not expose dataframe keys)."""
    for df in [*(d.value for d in [*at.dataframe, *at.table]), *_html_frames(at)]:
        if column in df.columns:
            return df
    return None


def _metrics_table(at: AppTest):
    """The Overview's headline table (metrics as rows): the model facts above it now also have a
    column per model."""
    return next((df.value for df in at.dataframe if "Accuracy" in df.value.index), None)


def _captions(at: AppTest) -> list[str]:
    """Captions of the overlays ("<model> · <method> for '<class>'...")."""
    return [c for img in at.image for c in img.captions if " · " in c]


def _shown(at: AppTest) -> str:
    """Every text the page shows: Markdown (badges too), subheaders (image cards' titles),
    captions, alerts, plain text, image captions, the options of the select boxes and the
    cells of the tables."""
    parts = [e.value for kind in ("markdown", "subheader", "caption", "warning", "info",
                                  "success", "text") for e in at.get(kind)]
    parts += [c for img in at.image for c in img.captions]
    parts += [o for box in [*at.selectbox, *at.multiselect] for o in box.options]
    parts += [df.value.to_string() for df in [*at.dataframe, *at.table]]
    return "\n".join(str(p) for p in parts)


def _cards_in_rows(at: AppTest, prefix: str) -> list[int]:
    """For each row of columns holding image cards (`<prefix>_card_<i>` containers), how many
    cards it holds side by side."""
    rows: list[int] = []

    def walk(node) -> None:
        kids = list(getattr(node, "children", {}).values())
        cards = sum(f"-{prefix}_card_" in str(getattr(getattr(block, "proto", None), "id", ""))
                    for col in kids if getattr(col, "type", "") == "column"
                    for block in col.children.values())
        if cards:
            rows.append(cards)
        for kid in kids:
            walk(kid)

    walk(at.main)
    return rows


def _cards(at: AppTest, prefix: str = "predict") -> list[int]:
    """The item numbers of the image cards drawn (`<prefix>_card_<i>` containers), in order."""
    found: list[int] = []

    def walk(node) -> None:
        key = str(getattr(node, "key", None) or "")
        if key.startswith(f"{prefix}_card_"):
            found.append(int(key.rsplit("_", 1)[1]))
        for kid in getattr(node, "children", {}).values():
            walk(kid)

    walk(at._tree)
    return found


def _pager(at: AppTest):
    """The Predict page's page selector, or None when every card fits on one page."""
    try:
        return at.radio(key="predict_page")
    except KeyError:
        return None


def _each_page_of_cards(at: AppTest):
    """`at` on each page of the Predict page's cards in turn, first to last."""
    pager = _pager(at)
    for k in range(1, (len(pager.options) if pager else 1) + 1):
        if pager is not None:
            at.radio(key="predict_page").set_value(k).run()
            _ok(at)
        yield at


# a class label where a class is named to people ("no_tumor/x.png", a dataset path, is not)
RAW_LABEL = re.compile(r"(?<![/\w])no_tumor(?![/\w])")


# --------------------------------------------------------------------------- pages


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_renders(artifacts: Path, smoke_run: Path, page: str):
    at = _app(page)
    _ok(at)
    assert [t.value for t in at.title] == [PAGES[page][1]]
    assert not at.error


def test_an_upload_from_the_run_s_own_splits_says_which(artifacts: Path, smoke_run: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    """A student uploaded Testing/no_tumor/image(101).jpg, a training image of the run, and read
    its 100 % answer as a fair test: the card now says where the run met the image."""
    # no answer warnings (the smoke models' vary): the summary counts the split notes alone;
    # which images may not be called "unlike the training data" is recorded
    hidden: list[list[str]] = []
    monkeypatch.setattr(card_flags, "image_flags",
                        lambda results, j: (hidden.append(list(results.seen_split)), [], [])[1:])
    manifest = json.loads((smoke_run / "manifest.json").read_text())
    splits = json.loads((smoke_run / "splits.json").read_text())
    train = Path(manifest["data"]["dir"]) / splits["train"][0]["path"]
    # a changed copy (every pixel one level brighter): the same pHash, not the same image
    brighter = np.clip(np.asarray(Image.open(train).convert("RGB"), int) + 1, 0, 255)
    at = _app("predict")
    at.file_uploader(key="uploads").set_value([
        ("from-train.png", train.read_bytes(), "image/png"),
        # the last test image: results are kept per process, and other tests upload the first
        (*_test_image(smoke_run, -1), "image/png"),
        ("noise.png", _encode(Image.fromarray(np.random.default_rng(0).integers(
            0, 256, (64, 64), dtype=np.uint8)), "PNG"), "image/png"),
        ("changed.png", _encode(Image.fromarray(brighter.astype(np.uint8)), "PNG"),
         "image/png")]).run()
    _ok(at)
    notes = [i.value for i in at.info if "in this run's" in i.value]
    assert len(notes) == 3, notes  # the noise image was met nowhere: nothing said
    assert notes[0].startswith("This image is in this run's training split: the models learnt")
    # what to do instead (a lecturer demoed memorised answers): draw test images; no run to
    # switch to, as this is the only one
    assert "use \"Draw test images\" above" in notes[0] and "pick the run" not in notes[0]
    assert "Draw test images" not in notes[1]  # a test image needs no other
    assert notes[1].startswith("This image is in this run's test split: the models did not "
                               "train on it")
    assert notes[2].startswith("A near copy of this image is in this run's training split: the "
                               "models learnt from that copy")
    # the run's own images, pixel for pixel, show their dataset label as drawn ones do (a
    # student's upload of a Testing/ file showed none); a changed copy and noise show none
    from dashboard.figures import class_name

    titles = [str(t.value) for t in at.subheader if "upload " in str(t.value)]
    labels = [class_name(splits[s][k]["label"]) for s, k in (("train", 0), ("test", -1))]
    assert [t.split("true class: ")[-1] if "true class" in t else None for t in titles] == [
        f"**{labels[0]}**", f"**{labels[1]}**", None, None], titles
    # the training images' notes are warnings in the summary and the CSV; the test image's not
    assert list(_frame(at, "flags")["flags"]) == [1, 0, 0, 1]
    # only the training image itself may leave "unlike the training data" unsaid; a changed
    # copy keeps it (a review shrank training images to 64 px and the warning vanished)
    assert hidden and hidden[-1] == ["train", "test", "", ""]


def test_a_training_image_s_overlay_download_names_the_run(artifacts: Path, smoke_run: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    """The overlay PNG's split note said "in this run's training split": a picture that travels
    alone, naming no run. It names the run as the PDF and CSV do."""
    from pipeline.explain import overlay_text

    notes: list[str] = []
    real = overlay_text.overlay_caption

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        lines = real(*args, **kwargs)
        notes.extend(line for line in lines if line.startswith("Note: "))
        return lines

    monkeypatch.setattr(views, "overlay_caption", spy)
    pngs: list[bytes] = []
    _tap_downloads(monkeypatch, lambda data, kw: pngs.append(data()) if str(
        kw.get("mime")) == "image/png" else None)
    manifest = json.loads((smoke_run / "manifest.json").read_text())
    splits = json.loads((smoke_run / "splits.json").read_text())
    train = Path(manifest["data"]["dir"]) / splits["train"][0]["path"]
    at = _app("predict")
    at.file_uploader(key="uploads").set_value([("from-train.png", train.read_bytes(),
                                                "image/png")]).run()
    _ok(at)
    assert len(pngs) == 2 and len(notes) == 2, notes  # each model's overlay download
    run = f"{manifest['title']} ({manifest['run_id']})"
    assert set(notes) == {f"Note: in the training split of run {run} (not a test of the model)"}


def test_a_card_and_the_summary_count_the_same_warnings(artifacts: Path, smoke_run: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    """The summary's "flags" counted a training image's split note and the heatmaps' flags while
    its card's line counted the answers' warnings alone: both count `flags.image_warnings`."""
    from dashboard.flags import Flag

    # one answer warning and one heatmap flag for the first image, none for the second (the
    # smoke models' own flags vary from run to run)
    monkeypatch.setattr(card_flags, "image_flags", lambda results, j: (
        [Flag("Weak answer from Custom CNN.", "weak", ["custom_cnn"])] if j == 0 else [],
        [Flag("MobileNetV2: outside.", "outside_head", ["mobilenetv2"])] if j == 0 else []))
    manifest = json.loads((smoke_run / "manifest.json").read_text())
    splits = json.loads((smoke_run / "splits.json").read_text())
    train = Path(manifest["data"]["dir"]) / splits["train"][0]["path"]
    at = _app("predict")
    at.file_uploader(key="uploads").set_value([
        ("from-train.png", train.read_bytes(), "image/png"),
        (*_test_image(smoke_run, -1), "image/png")]).run()
    _ok(at)
    assert list(_frame(at, "flags")["flags"]) == [3, 0]
    # the split note in its box's words (it read "the run has met this image"), all three in
    # one fold labelled with their count (boxes pushed the heatmaps off a projector's screen)
    folds = [e for e in at.get_by_key("predict_card_0").expander]
    assert [f.label for f in folds] == [
        "3 warnings: in this run's training split · weak answer (Custom CNN) · evidence outside "
        "the head (MobileNetV2)"]
    assert len(folds[0].info) == 1 and len(folds[0].warning) == 2
    assert not at.get_by_key("predict_card_1").expander  # no warning, no fold


def test_predict_says_the_upload_size_limit_before_anything_is_refused(artifacts: Path):
    """The browser refuses a file over the server's limit before the page sees it; a reviewer's
    36 MB PNG vanished with only a red chip out of sight. The limit is stated up front."""
    import streamlit as st

    at = _app("predict")
    _ok(at)
    limit = st.get_option("server.maxUploadSize")
    assert f"of up to {limit} MB each: a larger file is refused" in _texts(at.caption)


def test_sidebar_run_picker_and_disclaimer(artifacts: Path, smoke_run: Path):
    at = _app()
    _ok(at)
    # The run picker lists the smoke run and selects the one `latest` names.
    picker = at.sidebar.selectbox(key="run_choice")
    assert picker.value == smoke_run.name
    # the box: the run's title from its manifest, then the end of its id (a longer label was
    # cut off); under it, the full id and that it is the latest run
    # (the smoke run is trained on phantoms: its title says so)
    assert picker.options == [f"{SMOKE_TITLE} · {smoke_run.name.rsplit('-', 1)[1]}"]
    assert f"{SMOKE_TITLE} · latest run `{smoke_run.name}`" in _texts(at.sidebar.caption)
    assert "not a diagnostic device" in _texts(at.sidebar.caption)
    assert "train " in _texts(at.sidebar.caption)  # split sizes of the selected run
    from dashboard.runinfo import readable_time

    created = json.loads((smoke_run / "manifest.json").read_text())["created"]
    assert f"{readable_time(created)} · 4 classes" in _texts(at.sidebar.caption)


def test_overview_shows_both_models(artifacts: Path):
    at = _app("overview")
    _ok(at)
    table = _metrics_table(at)
    assert list(table.columns) == ["Custom CNN", "MobileNetV2"]
    assert table.loc["Accuracy"].str.match(r"^\d\.\d{3}").all()
    charts = at.get("plotly_chart")
    assert len(charts) >= 8  # CI, per-class, 2 confusion, curves, ROC, PR, reliability, tumour
    # every chart at the projector's text size (charts.chart applies figures.readable)
    from dashboard.figures import FONT_SIZE

    assert all(json.loads(c.proto.spec)["layout"]["font"]["size"] == FONT_SIZE for c in charts)
    facts = _frame(at, "")  # the model facts: a row per fact, a column per model
    assert list(facts.columns) == ["", "Custom CNN", "MobileNetV2"]
    assert "best epoch" in facts[""].tolist()
    # the disclaimer in the page, not only in the sidebar (hidden when it is collapsed)
    assert "not a diagnostic device" in _texts(at.main.caption)
    sizes = _frame(at, "tumour sensitivity")  # phantoms have one size: no gap to warn about
    assert sizes is not None and set(sizes["images"]) == {
        "128x128 (training's commonest size)", "every other size"}
    assert not any("recognising where an image comes from" in w.value for w in at.warning)
    # the ECE is set against what a calibrated model would show on as many images
    assert _texts(at.caption).count("A perfectly calibrated model with the same confidences") == 2
    # counts <-> row-normalised toggle redraws without error
    at.get_by_key("cm_mode").set_value("Row-normalised").run()
    _ok(at)
    assert not at.error


def test_predict_upload_explains_with_both_models(artifacts: Path, smoke_run: Path,
                                                  monkeypatch: pytest.MonkeyPatch):
    from pipeline.explain import Explainer

    calls: list[tuple[str, int]] = []
    original = Explainer.__call__

    def counting(self, images, *args, **kwargs):
        calls.append((kwargs.get("method", "gradcam"), len(images)))
        return original(self, images, *args, **kwargs)

    monkeypatch.setattr(Explainer, "__call__", counting)
    at = _app("predict")
    _ok(at)
    assert at.info and "Upload" in at.info[0].value
    name, data = _test_image(smoke_run)
    at.file_uploader(key="uploads").set_value([
        (name, data, "image/jpeg"), ("notes.jpg", b"this is not an image\n" * 10, "image/jpeg"),
    ]).run()
    _ok(at)
    captions = _captions(at)
    assert sum("Custom CNN ·" in c for c in captions) == 1
    assert sum("MobileNetV2 ·" in c for c in captions) == 1
    assert "notes.jpg" in _texts(at.warning)
    # the caption over the cards counts the one readable image, never the unreadable one
    assert re.search(r"the models agree on [01] of 1 · model files", _texts(at.caption))
    tables = [m.value for m in at.markdown if m.value.startswith("| probability |")]
    assert len(tables) == 1  # one card (the unreadable file gets a warning), both models:
    assert "| Custom CNN |" in tables[0] and "| MobileNetV2 |" in tables[0]
    assert tables[0].count("**") == 4  # each model's answer in bold
    assert at.get_by_key("predict_csv") is not None
    assert at.get_by_key("predict_png_0_custom_cnn") is not None
    assert at.get_by_key("predict_pdf_0") is not None  # the image's report
    assert at.get_by_key("predict_pdf_all") is not None  # and all of them in one PDF
    # every layer option: plain words, then its technical name (the name alone where the
    # words would only repeat it); each overlay's layer line has the technical name in its
    # tooltip
    for m in ("custom_cnn", "mobilenetv2"):
        options = at.selectbox(key=f"predict_layer_{m}").options
        assert len(options) > 3 and all(
            re.fullmatch(r".+, \d+×\d+ \([\w.]+\)|[\w.]+, \d+×\d+", o) for o in options), options
    layer_lines = [c for c in at.caption if c.value.startswith("Layer: ")]
    assert len(layer_lines) == 2 and all(
        c.proto.help.startswith("Technical name: `") for c in layer_lines)
    # one batch call per model for the new image (plus warm-up calls if models just loaded)
    assert calls[-2:] == [("gradcam", 1), ("gradcam", 1)]
    n_calls = len(calls)
    # opacity and outline only re-render overlays: no new explanation is computed
    at.slider(key="predict_alpha").set_value(0.8).run()
    at.toggle(key="predict_outline").set_value(True).run()
    _ok(at)
    assert len(calls) == n_calls
    # the legend under the card says what the white line is (`render.outline_words`)
    from pipeline.explain.render import outline_words

    assert outline_words(10) in _shown(at)
    at.selectbox(key="predict_method").set_value("gradcam++").run()
    assert calls[n_calls:] == [("gradcam++", 1), ("gradcam++", 1)]
    at.selectbox(key="predict_target").set_value("no_tumor").run()
    _ok(at)
    captions = _captions(at)
    # one display form for a class everywhere (the table said "no tumor", captions "no_tumor")
    assert any("Grad-CAM++ for 'no tumour'" in c for c in captions), captions
    assert "no tumour" in at.selectbox(key="predict_target").options
    assert "| no tumour |" in tables[0]
    assert not RAW_LABEL.search(_shown(at)), RAW_LABEL.findall(_shown(at))


def test_predict_card_pictures_line_up_with_short_flags_and_a_numbered_scale(
        artifacts: Path, smoke_run: Path, monkeypatch: pytest.MonkeyPatch):
    """Screenshot review of the shipped runs: the original showed at another height than the
    overlays (captions out of line), the shortcut warning filled about 11 lines of each narrow
    overlay column, and the colour scale had no numbers."""
    import streamlit as st

    from dashboard import figures as F
    from dashboard import inference, views

    drawn: list[tuple[tuple[int, ...], str]] = []  # (shape, caption) of every st.image
    real = st.image

    def spy(image, caption=None, *args, **kwargs):
        drawn.append((np.asarray(image).shape, caption or ""))
        return real(image, caption, *args, **kwargs)

    monkeypatch.setattr(st, "image", spy)
    # every non-empty heatmap raises the shortcut alarm, whatever the smoke models learnt
    monkeypatch.setattr(inference.ImageResult, "outside_head_flag",
                        property(lambda self: self.outside_head is not None))
    _, data = _test_image(smoke_run)
    wide = Image.open(io.BytesIO(data)).convert("RGB").resize((200, 130))  # not square
    at = _app("predict")
    at.file_uploader(key="uploads").set_value(
        [("wide.png", _encode(wide, "PNG"), "image/png")]).run()
    _ok(at)
    shapes = {caption: shape for shape, caption in drawn[-4:]}
    pictures = [s for c, s in shapes.items() if c.startswith("Original") or " · " in c]
    assert len(pictures) == 3, shapes  # the original and both overlays ...
    assert set(pictures) == {(views.DISPLAY_SIDE, views.DISPLAY_SIDE, 3)}, shapes  # ... one size
    # the colour scale: its numbers in the picture, their meaning in its caption
    assert shapes[F.LEGEND_CAPTION] == F.colour_legend().shape
    assert "Heatmap colours: low (blue) to high (red) evidence" not in _shown(at)
    # under each flagged overlay a short label (its full sentence in the tooltip); the
    # explanation once for the card, naming both models
    labels = [c for c in at.caption if "Outside the head" in c.value]
    assert len(labels) == 2 and all(len(c.value) < 60 for c in labels), [c.value for c in labels]
    assert all("alarm above" in c.proto.help for c in labels)
    warnings = _texts(at.warning)
    assert warnings.count("text, borders or markers") == 1, warnings
    note = next(w.value for w in at.warning if "text, borders or markers" in w.value)
    assert "Custom CNN" in note and "MobileNetV2" in note


def test_controls_and_heatmaps_agree_after_the_uploads_are_removed(artifacts: Path,
                                                                   smoke_run: Path):
    """Issue: set controls, remove the file, upload another: the overlays were drawn with the
    old settings while the controls showed their defaults."""
    at = _app("predict")
    first, second = _test_image(smoke_run, 0), _test_image(smoke_run, 1)
    at.file_uploader(key="uploads").set_value([(*first, "image/jpeg")]).run()
    at.selectbox(key="predict_method").set_value("gradcam++").run()
    at.selectbox(key="predict_target").set_value("meningioma").run()
    at.toggle(key="predict_outline").set_value(True).run()
    assert any("Grad-CAM++ for 'meningioma'" in c for c in _captions(at))
    at.file_uploader(key="uploads").set_value([]).run()  # the chip's remove button
    # Root cause: the page stopped before drawing the controls, so their widgets left the page
    # (the browser then showed defaults). They must stay, with the values the user chose.
    assert at.selectbox(key="predict_target").value == "meningioma"
    assert at.toggle(key="predict_outline").value is True
    at.file_uploader(key="uploads").set_value([(*second, "image/jpeg")]).run()
    _ok(at)
    method = at.selectbox(key="predict_method").value
    target = at.selectbox(key="predict_target").value
    label = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}[method]
    captions = _captions(at)
    assert len(captions) == 2, captions
    for caption in captions:
        assert f"{label} for '" in caption, (method, target, captions)
        if target != "predicted class":
            assert f"for '{target}'" in caption, (target, captions)
    # what the controls show is what was drawn: the method and class survive, as widgets
    assert (method, target, at.toggle(key="predict_outline").value) == (
        "gradcam++", "meningioma", True)


def test_uploads_lost_by_a_server_restart_are_noticed(artifacts: Path, smoke_run: Path):
    """Issue: after a restart an open tab kept stale file chips and broken overlays."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["uploads"] = "2"  # what the tab's URL says from before the restart
    at.run()
    at.switch_page(PAGES["predict"][0]).run()
    _ok(at)
    assert any("uploads are gone" in w.value for w in at.warning)
    assert at.get_by_key("uploads-again") is not None  # a fresh uploader: no stale chips
    # uploading again works and clears the notice
    at.file_uploader(key="uploads-again").set_value([(*_test_image(smoke_run), "image/jpeg")])
    at.run()
    assert not any("uploads are gone" in w.value for w in at.warning)
    assert len(_captions(at)) == 2


def test_a_reload_of_the_tab_brings_the_uploads_back(artifacts: Path, smoke_run: Path):
    """A presenter's reload emptied the Predict page: a reload is a new session. The server
    keeps the tab's files by the token in its URL; "Forget these files" drops them there too."""
    at = _app("predict")
    files = [(*_test_image(smoke_run, k), "image/jpeg") for k in range(2)]
    at.file_uploader(key="uploads").set_value(files).run()
    _ok(at)
    token = at.query_params["uploads"]
    token = token[0] if isinstance(token, list) else token
    assert len(token) >= 20  # a random token, not the file count

    def reload() -> AppTest:
        again = AppTest.from_file(APP, default_timeout=TIMEOUT)
        again.query_params["uploads"] = token  # the tab's URL, reloaded
        again.run()
        again.switch_page(PAGES["predict"][0]).run()
        _ok(again)
        return again

    again = reload()
    assert not any("uploads are gone" in w.value for w in again.warning)
    kept = "\n".join(t.value for t in again.text)
    assert all(f"{k + 1}. {name}" in kept for k, (name, _, _) in enumerate(files)), kept
    assert len(_captions(again)) == 2 * 2  # both images explained again, by both models
    again.button(key="predict_forget_uploads").click().run()
    assert any("uploads are gone" in w.value for w in reload().warning)  # dropped everywhere


def test_many_uploads_get_a_summary_and_a_flag_filter(artifacts: Path, smoke_run: Path):
    at = _app("predict")
    files = [(*_test_image(smoke_run, k), "image/jpeg") for k in range(3)]
    at.file_uploader(key="uploads").set_value(files).run()
    _ok(at)
    summary = _frame(at, "flags")  # thumbnail, file, each model's answer, agreement, flags
    assert len(summary) == 3 and list(summary["file"]) == [name for name, _, _ in files]
    # each thumbnail named by its file (in a grid its accessible name was its data URL)
    assert list(summary["image"]) == list(summary["file"])
    # each row and card says its number, as the CSV and the PDF name the image ("upload 2"):
    # the dataset's class folders share file names (a review could not match them)
    assert list(summary["upload"].astype(str)) == ["1", "2", "3"]
    titles = _texts(at.subheader)
    assert all(f"** · upload {k + 1}" in titles for k in range(3)), titles
    assert len(_captions(at)) == 3 * 2  # every card: one overlay per model
    assert _pager(at) is None  # three cards fit on one page: no page selector
    n_flagged = int(((summary["flags"] > 0) | ~summary["models agree"]).sum())
    at.toggle(key="predict_only_flagged").set_value(True).run()
    _ok(at)
    assert len(_captions(at)) == n_flagged * 2  # only the flagged cards are left


def _percent(cell: str) -> float:
    """The confidence in a summary cell ("Glioma (87%)", ">99%", "<1%", "Glioma (87%, weak)")
    as a number."""
    shown = cell.rsplit("(", 1)[1].split("%")[0]
    return float(shown.strip("<>")) + (0.5 if shown[0] == ">" else -0.5 if shown[0] == "<" else 0)


def test_the_summary_sorts_by_a_keyed_box_and_keeps_its_alt_text(artifacts: Path,
                                                                  smoke_run: Path,
                                                                  monkeypatch: pytest.MonkeyPatch):
    """The summary became an HTML table (thumbnails with alt text) and lost the grid's sorting:
    a keyed "Sort the table by" box sorts it, each thumbnail still named by its own row's file,
    and the choice outlives a visit to another page."""
    import streamlit as st

    widths: dict[str, tuple[object, list[str]]] = {}
    real = st.selectbox

    def spy(label, options, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        widths[kwargs.get("key")] = (kwargs.get("width"),
                                     [kwargs.get("format_func", str)(o) for o in options])
        return real(label, options, *args, **kwargs)

    monkeypatch.setattr(st, "selectbox", spy)
    names = ["scan 10.jpg", "scan 2.jpg", "Scan 1.jpg"]
    files = [(name, _test_image(smoke_run, k)[1], "image/jpeg") for k, name in enumerate(names)]
    at = _app("predict")
    at.file_uploader(key="uploads").set_value(files).run()
    _ok(at)
    box = at.selectbox(key="predict_summary_sort")
    assert box.value == summary_table.UPLOAD_ORDER and list(_frame(at, "flags")["file"]) == names
    width, shown = widths["predict_summary_sort"]  # every choice fits the box (as other boxes)
    assert isinstance(width, int) and max(map(len, shown)) * CHAR_PX + BOX_CHROME_PX <= width
    box.set_value("name").run()
    _ok(at)
    summary = _frame(at, "flags")
    assert list(summary["file"]) == ["Scan 1.jpg", "scan 2.jpg", "scan 10.jpg"]
    assert list(summary["image"]) == list(summary["file"])  # alt text moved with its row
    assert len(_captions(at)) == 3 * 2  # the cards are untouched
    at.selectbox(key="predict_summary_sort").set_value("confidence:custom_cnn").run()
    _ok(at)
    summary = _frame(at, "flags")
    sure = [_percent(c) for c in summary["Custom CNN"]]
    assert sure == sorted(sure) and sorted(summary["file"]) == sorted(names), summary
    assert list(summary["image"]) == list(summary["file"])
    region = next(el.proto.body for el in at.get("html")
                  if summary_table.CSS_CLASS in el.proto.body)
    assert "sorted by Custom CNN: least confident first" in region  # said to screen readers
    for page in ("about", "predict"):
        at.switch_page(PAGES[page][0]).run()
    _ok(at)
    assert at.selectbox(key="predict_summary_sort").value == "confidence:custom_cnn"
    assert [_percent(c) for c in _frame(at, "flags")["Custom CNN"]] == sure


def test_more_uploads_than_a_page_holds_show_one_page_of_cards(
        artifacts: Path, smoke_run: Path, monkeypatch: pytest.MonkeyPatch):
    """Eight uploads made a page ~9,700 px tall: the summary lists every image, a keyed
    selector picks the page, and only that page's cards are drawn."""
    from pipeline.explain import Explainer

    calls: list[int] = []
    original = Explainer.__call__

    def counting(self, images, *args, **kwargs):
        calls.append(len(images))
        return original(self, images, *args, **kwargs)

    monkeypatch.setattr(Explainer, "__call__", counting)
    per_page = paging.CARDS_PER_PAGE
    n = per_page + 2
    files = [(*_test_image(smoke_run, k), "image/jpeg") for k in range(n)]
    at = _app("predict")
    at.file_uploader(key="uploads").set_value(files).run()
    _ok(at)
    assert len(_frame(at, "flags")) == n  # the summary: every image
    pager = _pager(at)
    assert pager is not None and pager.value == 1
    assert pager.options == [f"Images 1–{per_page} of {n}", f"Images {per_page + 1}–{n} of {n}"]
    assert _cards(at) == list(range(per_page))
    assert len(_captions(at)) == 2 * per_page
    assert f"**{files[0][0]}**" in _shown(at).replace("`", "")
    n_calls = len(calls)
    at.radio(key="predict_page").set_value(2).run()
    _ok(at)
    assert at.radio(key="predict_page").value == 2
    assert _cards(at) == [per_page, per_page + 1]  # the next page's cards, and only them
    assert len(_captions(at)) == 2 * 2
    shown = _shown(at).replace("`", "")
    assert f"**{files[-1][0]}**" in shown and f"**{files[0][0]}**" not in shown
    assert len(calls) == n_calls  # every image was explained already: nothing computed again
    # a rerun for another reason keeps the page asked for
    at.slider(key="predict_alpha").set_value(0.7).run()
    assert at.radio(key="predict_page").value == 2 and _cards(at) == [per_page, per_page + 1]


def test_the_all_images_report_has_a_page_per_image_while_one_page_of_cards_is_drawn(
        artifacts: Path, smoke_run: Path, monkeypatch: pytest.MonkeyPatch):
    """"Report PDF, all" was built from the cards drawn: with paging it must still hold every
    analysed image (an unreadable file has no page), in upload order."""
    import hashlib

    import dashboard.report_pdf

    pdfs: dict[str, bytes] = {}  # every PDF offered, drawn as if clicked, by button key

    def keep(data, kwargs) -> None:  # noqa: ANN001
        if str(kwargs.get("mime", "")) == "application/pdf":
            pdfs[kwargs["key"]] = data() if callable(data) else data

    _tap_downloads(monkeypatch, keep)

    digests: list[list[str]] = []  # per PDF built: its pages' image hashes
    real = dashboard.report_pdf.report_pdf

    def recording(pages, *args, **kwargs):  # noqa: ANN001
        digests.append([p.digest for p in pages])
        return real(pages, *args, **kwargs)

    monkeypatch.setattr(dashboard.report_pdf, "report_pdf", recording)
    good = [_test_image(smoke_run, k) for k in range(paging.CARDS_PER_PAGE + 2)]
    files = [(name, data, "image/jpeg") for name, data in good]
    files.insert(2, ("notes.jpg", b"this is not an image\n" * 10, "image/jpeg"))
    at = _app("predict")
    at.file_uploader(key="uploads").set_value(files).run()
    _ok(at)
    assert _cards(at) == list(range(paging.CARDS_PER_PAGE))  # one page of cards, the bad one too
    assert "notes.jpg" in _texts(at.warning)
    pdf = pdfs["predict_pdf_all"]
    assert pdf.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == len(good)  # /Pages does not match
    everything = [d for d in digests if len(d) > 1]
    assert everything[-1] == [hashlib.sha256(data).hexdigest() for _, data in good]
    # each drawn card still offers its own one-page report
    assert len(re.findall(rb"/Type\s*/Page\b", pdfs["predict_pdf_0"])) == 1
    assert "predict_pdf_5" not in pdfs  # a card on the next page: not drawn, no button


def test_the_flag_filter_pages_over_the_flagged_images(artifacts: Path, smoke_run: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    """The filter pages over the images it keeps, and a page that no longer exists after the
    filter changes becomes the last one there is."""
    # which images have flags, decided here (the smoke models' own flags vary from run to run):
    # every image but each third one
    monkeypatch.setattr(card_flags, "image_flags",
                        lambda results, j: ([f"test flag {j}"] if j % 3 else [], []))
    per_page = paging.CARDS_PER_PAGE
    n = 2 * per_page + 1  # three pages of cards
    flagged = [j for j in range(n) if j % 3]
    files = [(*_test_image(smoke_run, k), "image/jpeg") for k in range(n)]
    at = _app("predict")
    at.file_uploader(key="uploads").set_value(files).run()
    _ok(at)
    assert list(_frame(at, "flags")["flags"]) == [int(j % 3 > 0) for j in range(n)]
    at.radio(key="predict_page").set_value(3).run()
    assert _cards(at) == [n - 1]
    at.toggle(key="predict_only_flagged").set_value(True).run()
    _ok(at)
    pages = paging.page_count(len(flagged))
    pager = _pager(at)
    assert pager is not None and pages < 3
    assert pager.value == pages  # not left on a page that no longer exists
    assert pager.options == [paging.page_label(k, len(flagged)) for k in range(1, pages + 1)]
    assert _cards(at) == paging.page_items(flagged, pages)
    at.radio(key="predict_page").set_value(1).run()
    assert _cards(at) == flagged[:per_page]
    assert len(_frame(at, "flags")) == n  # the summary still lists every image
    at.toggle(key="predict_only_flagged").set_value(False).run()
    _ok(at)
    assert len(_pager(at).options) == 3 and _cards(at) == list(range(per_page))


# a select box's shown choice in Streamlit's 14 px font: at most this many px a character (7.4
# measured for "wrong by any model"), plus the box's padding and arrow
CHAR_PX, BOX_CHROME_PX = 7.5, 60


def test_select_boxes_are_as_wide_as_their_longest_choice(artifacts: Path, smoke_run: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    """In columns the boxes were cut at a projector's 819 and 911 px ("any cl", "wrong by any
    mo", half a layer's name): each is given a width its longest choice fits, in a row that
    wraps (the widths browser screenshots checked, 819-1280 px)."""
    import streamlit as st

    widths: dict[str, tuple[object, list[str]]] = {}
    for name in ("selectbox", "multiselect"):
        real = getattr(st, name)

        def spy(label, options, *args, real=real, **kwargs):  # noqa: ANN001, ANN002, ANN003
            shown = kwargs.get("format_func") or str
            widths[kwargs.get("key")] = (kwargs.get("width"), [shown(o) for o in options])
            return real(label, options, *args, **kwargs)

        monkeypatch.setattr(st, name, spy)
    at = _app("predict")
    at.file_uploader(key="uploads").set_value([(*_test_image(smoke_run), "image/jpeg")]).run()
    _ok(at)
    at.switch_page(PAGES["errors"][0]).run()
    _ok(at)
    keys = ["sample_class", "err_by", "err_true", "err_pred",
            *(k for k in widths if str(k).startswith("predict_layer_"))]
    assert len(keys) == 6, sorted(map(str, widths))  # both models' layer boxes too
    for key in keys:
        width, shown = widths[key]
        assert isinstance(width, int), (key, width)
        assert max(map(len, shown)) * CHAR_PX + BOX_CHROME_PX <= width, (key, width, shown)


def test_a_wrong_file_type_gets_a_visible_reason(artifacts: Path, smoke_run: Path):
    at = _app("predict")
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n" * 20
    at.file_uploader(key="uploads").set_value([("report.pdf", pdf, "application/pdf")]).run()
    _ok(at)
    assert any("report.pdf" in w.value and "not an image" in w.value for w in at.warning)


def test_a_quote_in_an_uploaded_name_is_shown_as_the_disk_has_it(artifacts: Path,
                                                                  smoke_run: Path):
    """A browser sends a '"' in an uploaded file's name as "%22" (and CR, LF as "%0D", "%0A";
    the HTML standard's multipart rules), and Streamlit passes the name on as sent: the list,
    the card and the summary showed `say %22hi%22.jpg`. The quote comes back; a line break's
    code stays (a one-line name cannot show it)."""
    from dashboard import uploads

    sent = ["say %22hi%22 <b>x</b>.jpg", "two%0Alines.jpg"]  # as Chromium sends them
    shown = ['say "hi" <b>x</b>.jpg', "two%0Alines.jpg"]
    assert [uploads.browser_name(n) for n in sent] == shown
    files = [(name, _test_image(smoke_run, k)[1], "image/jpeg") for k, name in enumerate(sent)]
    at = _app("predict")
    at.file_uploader(key="uploads").set_value(files).run()
    _ok(at)
    assert "1. " + shown[0] in _texts(at.text)  # plain text, as before
    assert list(_frame(at, "flags")["file"]) == shown  # the summary, its alt text too
    assert list(_frame(at, "flags")["image"]) == shown
    titles = _texts(at.subheader)
    assert f"`{shown[0]}`" in titles and "%22" not in titles  # each card's title, verbatim
    for page in ("about", "predict"):  # the kept uploads keep the name as shown
        at.switch_page(PAGES[page][0]).run()
    _ok(at)
    assert "1. " + shown[0] in _texts(at.text)


def test_removing_uploads_in_the_same_session_is_not_a_loss(artifacts: Path, smoke_run: Path):
    at = _app("predict")
    at.file_uploader(key="uploads").set_value([(*_test_image(smoke_run), "image/jpeg")]).run()
    at.file_uploader(key="uploads").set_value([]).run()
    _ok(at)
    assert not any("uploads are gone" in w.value for w in at.warning)


def _tap_downloads(monkeypatch: pytest.MonkeyPatch, keep) -> None:  # noqa: ANN001
    """Every download button the app draws also calls `keep(data, kwargs)` (as if clicked).
    `st.download_button` is bound to the main area at import: patched on its own, beside the
    containers' (`DeltaGenerator.download_button`)."""
    import streamlit as st
    from streamlit.delta_generator import DeltaGenerator

    original, main = DeltaGenerator.download_button, st.download_button
    monkeypatch.setattr(DeltaGenerator, "download_button", lambda self, label, data, *a, **kw: (
        keep(data, kw), original(self, label, data, *a, **kw))[1])
    monkeypatch.setattr(st, "download_button", lambda label, data, *a, **kw: (
        keep(data, kw), main(label, data, *a, **kw))[1])


def _bad_and_odd_files(smoke_run: Path) -> list[tuple[str, bytes, bool | None]]:
    """(name, bytes, expected ok) — None where either outcome is acceptable."""
    _, data = _test_image(smoke_run, 1)
    base = Image.open(io.BytesIO(data)).convert("RGB")
    grey = base.convert("L")
    rgba = base.convert("RGBA")
    rgba.putalpha(200)
    frames = [base, base.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    arr16 = (np.asarray(grey, dtype=np.uint16) * 257).astype(np.uint16)
    return [
        ("empty.png", b"", False),
        ("random.jpg", np.random.default_rng(1).integers(0, 256, 4096, np.uint8).tobytes(), False),
        ("text renamed.jpg", b"patient notes, not pixels\n" * 40, False),
        ("truncated.jpg", _encode(base, "JPEG")[:300], False),
        ("bomb.png", _png_header_only(60000, 60000), False),
        ("one-pixel.png", _encode(Image.new("RGB", (1, 1)), "PNG"), False),
        ("sixteen-bit.png", _encode(Image.fromarray(arr16), "PNG"), True),
        ("rgba.png", _encode(rgba, "PNG"), True),
        ("cmyk.jpg", _encode(base.convert("CMYK"), "JPEG"), True),
        ("palette.png", _encode(base.convert("P"), "PNG"), True),
        ("animated.gif", _encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
         True),
        ("pages.tiff", _encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]), True),
        ("exif-rotated.jpg", _encode(base, "JPEG", exif=exif), True),
        ("脑部 MRI é.png", _encode(grey, "PNG"), True),
        ("slice.dcm", make_dicom(arr16 >> 4), True),
    ]


def test_predict_batch_of_bad_files_each_gets_its_own_message(artifacts: Path, smoke_run: Path):
    files = _bad_and_odd_files(smoke_run)
    at = _app("predict")
    at.file_uploader(key="uploads").set_value(
        [(n, d, "application/octet-stream") for n, d, _ in files]).run()
    _ok(at)
    # more files than a page of cards holds: each page's cards in turn
    pages = [(_texts(at.warning), _captions(at), bool(at.error)) for at in _each_page_of_cards(at)]
    assert len(pages) == -(-len(files) // paging.CARDS_PER_PAGE)
    assert not any(error for _, _, error in pages)  # nothing page-level went wrong
    warnings = "\n".join(w for w, _, _ in pages)
    captions = [c for _, cs, _ in pages for c in cs]
    n_good = 0
    for name, _, expected in files:
        failed = name in warnings
        if expected is True:
            assert not failed, f"{name} should decode: {warnings}"
        elif expected is False:
            assert failed, f"{name} should get a message in its place"
        n_good += not failed
    # every decodable file got both heatmaps
    assert sum("Custom CNN ·" in c for c in captions) == n_good
    assert sum("MobileNetV2 ·" in c for c in captions) == n_good
    assert "Traceback" not in warnings


def test_sample_picker_draws_test_images(artifacts: Path):
    at = _app("predict")
    at.selectbox(key="sample_class").set_value("glioma").run()
    at.number_input(key="sample_count").set_value(2).run()
    at.button(key="sample_draw").click().run()
    _ok(at)
    titles = _texts(at.subheader)  # each card's title is a heading
    assert titles.count("true class: **glioma**") == 2
    captions = _captions(at)
    assert sum("MobileNetV2 ·" in c for c in captions) == 2
    at.button(key="sample_clear").click().run()
    _ok(at)
    assert "true class" not in _shown(at)


def test_drawn_test_images_are_put_away_when_another_run_trained_on_them(
        smoke_run, tmp_path, monkeypatch):
    """Test images drawn on one run stayed after a switch to a run that trained on them, still
    captioned "in this run's test split" and judged right or wrong (a presenter's review). Those
    not in the new run's test split are put away, and the page says so."""
    run, older = _two_runs(smoke_run, tmp_path, monkeypatch)
    at = _app("predict")
    at.number_input(key="sample_count").set_value(2).run()
    at.button(key="sample_draw").click().run()
    _ok(at)
    drawn = [e["path"] for e in at.session_state["predict_samples"]]
    assert len(drawn) == 2
    # the older run trained on the first of them
    splits = json.loads((older / "splits.json").read_text())
    moved = next(e for e in splits["test"] if e["path"] == drawn[0])
    splits["test"].remove(moved)
    splits["train"].append(moved)
    (older / "splits.json").write_text(json.dumps(splits))
    at.switch_page(PAGES["overview"][0]).run()
    at.sidebar.selectbox(key="run_choice").set_value(older.name).run()
    at.switch_page(PAGES["predict"][0]).run()
    _ok(at)
    assert [e["path"] for e in at.session_state["predict_samples"]] == drawn[1:]
    assert any("1 drawn image put away" in i.value for i in at.info), _texts(at.info)
    shown = _shown(at)
    assert drawn[0] not in shown and drawn[1] in shown
    # the rerun once the new run's models have loaded took the note away after a few seconds
    at.run()
    assert any("1 drawn image put away" in i.value for i in at.info), _texts(at.info)
    at.button(key="sample_draw").click().run()  # drawn again: the note is done
    assert not any("put away" in i.value for i in at.info), _texts(at.info)


# The errors the Error analysis tests page through: the copy's predictions.csv files say these
# (five: more than a page of two, and one of every class in the first four); written by the test,
# because how many errors the smoke models make varies by machine and seed (none on some).
N_ERRORS = 5
WRONG_CONFIDENCE = 0.7  # the wrong answer's probability; the other classes share the rest


def _run_with_errors(smoke_run: Path, tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    """A copy of the smoke run whose predictions.csv files hold exactly `N_ERRORS` errors.

    Wrong are each class's first test row (so the page's first cards are of different
    classes) and the last rows up to `N_ERRORS`: the custom CNN answers the class after the
    true one, and MobileNetV2 the same, except for the last row, which it answers right (so
    "wrong by every model" and "the models disagree" each match a known subset). Every other
    row is right. Returns the run and the wrong rows' true classes in the page's order.
    """
    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    classes = json.loads((run / "manifest.json").read_text())["class_names"]
    rows = list(csv.DictReader((run / "custom_cnn" / "predictions.csv").open()))
    firsts = sorted(next(i for i, r in enumerate(rows) if r["true"] == c) for c in classes)
    lasts = [i for i in range(len(rows)) if i not in firsts][len(classes) - N_ERRORS:]
    wrong = firsts + lasts
    assert len(set(wrong)) == N_ERRORS and wrong == sorted(wrong), (wrong, len(rows))
    for m in ("custom_cnn", "mobilenetv2"):
        path = run / m / "predictions.csv"
        fields = list(csv.DictReader(path.open()).fieldnames or [])
        out = []
        for i, row in enumerate(rows):
            true = row["true"]
            wrong_here = i in wrong and not (m == "mobilenetv2" and i == wrong[-1])
            answer = classes[(classes.index(true) + 1) % len(classes)] if wrong_here else true
            rest = (1 - WRONG_CONFIDENCE) / (len(classes) - 1)
            probs = {f"p_{c}": f"{WRONG_CONFIDENCE if c == answer else rest:.6f}"
                     for c in classes}
            out.append({**row, "predicted": answer, **probs, "correct": "0" if wrong_here
                        else "1"})
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(out)
    return run, [rows[i]["true"] for i in wrong]


def test_error_analysis_filters(smoke_run: Path, tmp_path: Path, monkeypatch):
    run, wrong_true = _run_with_errors(smoke_run, tmp_path, monkeypatch)
    at = _app("errors")
    _ok(at)
    assert "not a diagnostic device" in _texts(at.main.caption)
    # a smoke run's split draws its test images from both folders: the page says why
    from dashboard.runinfo import TEST_PATHS_NOTE

    assert (TEST_PATHS_NOTE in _texts(at.main.caption)) != bool(
        json.loads((run / "manifest.json").read_text())["splits"].get("official_test"))
    for key in ("err_by", "err_true", "err_pred", "err_page_size"):
        assert at.get_by_key(key) is not None
    counts = {m.label: m.value for m in at.metric}
    assert counts == {"Custom CNN errors": str(N_ERRORS), "MobileNetV2 errors": str(N_ERRORS - 1),
                      "Both wrong": str(N_ERRORS - 1), "Models disagree": "1"}, counts
    table = _frame(at, "Custom CNN answer")
    assert table is not None and len(table) == N_ERRORS  # "wrong by any model" at first
    # classes named as on every page
    assert list(table["True class"]) == [class_label(c) for c in wrong_true]
    captions = _captions(at)
    # two cards to a page at first, one to a row: two to a row squeezed the heatmaps at
    # 1280 px with the sidebar open, and broke the cards at a projector's size (reviews)
    assert at.selectbox(key="err_page_size").value == 2
    assert sum("Custom CNN ·" in c for c in captions) == 2
    assert sum("MobileNetV2 ·" in c for c in captions) == 2
    assert _cards_in_rows(at, "err") == [1, 1]
    # a full card folds its warnings too (a lecturer's review: boxes before the heatmaps)
    _folds_count_what_they_hold(at)
    # a wide screen: two to a row, each half-width card folding its warnings (wrapped in
    # half the width, they made one card of a row far taller than its neighbour)
    at.selectbox(key="err_grid").set_value(2).run()
    _ok(at)
    assert _cards_in_rows(at, "err") == [2]
    assert len(_captions(at)) == 4
    _folds_count_what_they_hold(at)
    # each view of the errors selects its own rows
    for wrong_by, n in (("all", N_ERRORS - 1), ("disagree", 1), ("mobilenetv2", N_ERRORS - 1)):
        at.selectbox(key="err_by").set_value(wrong_by).run()
        _ok(at)
        assert len(_frame(at, "Custom CNN answer")) == n, wrong_by
    at.selectbox(key="err_by").set_value("any").run()
    assert "no tumour" in at.multiselect(key="err_true").options
    at.multiselect(key="err_true").set_value(["no_tumor"]).run()
    _ok(at)
    table = _frame(at, "Custom CNN answer")
    assert list(table["True class"]) == ["no tumour"] * wrong_true.count("no_tumor")
    assert not RAW_LABEL.search(_shown(at)), RAW_LABEL.findall(_shown(at))
    # filters that match nothing say so (a no-tumour image answered "glioma" by neither model)
    at.multiselect(key="err_pred").set_value(["glioma"]).run()
    _ok(at)
    assert _frame(at, "Custom CNN answer") is None
    assert "No test image matches" in _texts(at.success)


def _folds_count_what_they_hold(at: AppTest) -> None:
    """Each card's fold of warnings says how many it holds, and of which kinds; every answer
    warning outside a fold is one a card leads with (no MRI, or unlike for every model)."""
    from dashboard.flags import COLOUR_WARNING, CT_WARNING

    folds = [e for e in at.expander if re.match(r"\d+ warnings?\b", e.label)]
    for fold in folds:
        held = len(fold.warning) + len(fold.info)
        assert held and fold.label.startswith(f"{held} warning"), fold.label
        assert ": " in fold.label, fold.label  # "2 warnings: the models disagree · …"
    answer_warnings = [w.value for w in at.warning if w.icon == ":material/report:"]
    folded = {w.value for f in folds for w in f.warning}
    assert all(w in folded or w in (COLOUR_WARNING, CT_WARNING) or "unlike" in w
               for w in answer_warnings)


def test_error_analysis_cards_name_the_run_in_their_downloads(smoke_run: Path, tmp_path: Path,
                                                             monkeypatch):
    """An Error analysis card's PDF named neither the run nor the model files, and its overlay
    PNG no run (a review): the page gave its cards no run title or model hashes, as the
    Predict page does."""
    from pipeline.artifacts import open_run
    from pipeline.names import display_name

    run_dir, _ = _run_with_errors(smoke_run, tmp_path, monkeypatch)
    passed: list[dict] = []
    real = views.image_card

    def recording(*args, **kwargs):
        passed.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(views, "image_card", recording)
    at = _app("errors")
    _ok(at)
    assert len(passed) == 2  # the first page's two cards
    run = open_run(run_dir)
    assert {k["run_title"] for k in passed} == {run.report_name}
    assert all(set(k["model_hashes"]) == {display_name(m) for m in run.model_names}
               for k in passed), passed[0]["model_hashes"]


def test_error_analysis_explains_each_image_s_true_class_when_asked(smoke_run: Path,
                                                                    tmp_path: Path, monkeypatch):
    """A student could not ask, in one view of errors of mixed true classes, where the
    evidence for each image's real class lies (a review): the class box offers "true class",
    and each card's heatmaps then explain its own true class."""
    _, wrong_true = _run_with_errors(smoke_run, tmp_path, monkeypatch)
    at = _app("errors")
    _ok(at)
    box = at.selectbox(key="err_target")
    assert "true class" in box.options and box.value == "predicted class"
    box.set_value("true class").run()
    _ok(at)
    captions = _captions(at)
    wanted = [class_label(c) for c in wrong_true[:2]]  # the first page's cards
    assert len(captions) == 4 and len(set(wanted)) == 2  # two cards, of two true classes
    for k, true in enumerate(wanted):
        assert all(f" for '{true}'" in c for c in captions[2 * k: 2 * k + 2]), (true, captions)


def test_error_analysis_pages_through_the_cards_in_a_grid(smoke_run: Path, tmp_path: Path,
                                                          monkeypatch):
    """Fewer, smaller cards per page, every widget keyed: the page size and the page number
    are widget state, and a page number past the last page becomes the last page."""
    _run_with_errors(smoke_run, tmp_path, monkeypatch)
    errors = N_ERRORS
    at = _app("errors")
    _ok(at)
    at.selectbox(key="err_page_size").set_value(2).run()
    _ok(at)
    pages = -(-errors // 2)
    assert at.number_input(key="err_page").label == f"Page (of {pages})"
    at.number_input(key="err_page").set_value(pages).run()
    _ok(at)
    assert len(_captions(at)) == 2 * (errors - 2 * (pages - 1))  # the last page's cards
    # more cards per page: fewer pages, and the page shown is the new last one
    at.selectbox(key="err_page_size").set_value(8).run()
    _ok(at)
    last = -(-errors // 8)
    assert at.number_input(key="err_page").value == last
    assert len(_captions(at)) == 2 * (errors - 8 * (last - 1))
    assert sum(_cards_in_rows(at, "err")) == errors - 8 * (last - 1)
    # another filter starts on its first page: a review stayed on page 2 of the new filter, its
    # first matches unseen
    at.selectbox(key="err_page_size").set_value(2).run()
    at.number_input(key="err_page").set_value(2).run()
    assert at.number_input(key="err_page").value == 2
    at.selectbox(key="err_by").set_value("all").run()
    _ok(at)
    assert at.number_input(key="err_page").value == 1


def test_quality_page_shows_each_figure_with_its_meaning(artifacts: Path, smoke_run: Path):
    at = _app("quality")
    _ok(at)
    if not all((smoke_run / m / "explanations.json").is_file()
               for m in ("custom_cnn", "mobilenetv2")):
        assert "explain-eval" in _texts(at.warning)
        return
    assert len(at.get("plotly_chart")) >= 2
    captions = _texts(at.caption)
    # each figure comes with its one-sentence meaning
    assert "random heatmaps" in captions and "re-initialised" in captions
    assert "outside the head" in captions  # the shortcut alarm figure
    # how deletion removes, the step, n and the chance line, read from the files
    expl = json.loads((smoke_run / "custom_cnn" / "explanations.json").read_text())
    assert "Removed = replaced by a blurred copy" in captions
    other = json.loads((smoke_run / "mobilenetv2" / "explanations.json").read_text())
    n = expl["n_faithfulness"]  # said once when both files agree, else per model
    assert (f"n = {n}" if other["n_faithfulness"] == n else f"n = Custom CNN: {n}") in captions
    assert "1/4 = 0.25" in captions
    # ROAD has its own figure and words; the sanity check its n, randomisation and line
    assert any("LeRF" in c.proto.spec for c in at.get("plotly_chart"))
    assert "noisy linear imputation" in captions and "full randomisation" in captions
    assert "rule of thumb" in captions
    # the centre-of-head baseline, in words under the localisation figure
    assert "centre of the head would hit the box on" in captions
    # and the pointing game per true class, counted from the file's rows, in the phantoms'
    # word for their drawn tumours (the real runs' boxes: test_quality_page)
    assert "Heatmap peak in the mask, by the image's true class" in captions
    hits = [r for r in expl["rows"] if isinstance(r.get("pointing_hit"), bool)
            and r["label"] == "glioma"]
    assert (f"Custom CNN: glioma {sum(r['pointing_hit'] for r in hits)} of {len(hits)} ("
            in captions)
    # and how often the two models' peaks lay apart, and what that meant (`agreement`)
    from pipeline.explain.agreement import apart_record, record_sentence

    record = apart_record({"custom_cnn": expl, "mobilenetv2": other})
    assert record is not None and record_sentence(record, "mask") in captions
    summary = _frame(at, "MobileNetV2")
    assert summary is not None and "method" in summary.index
    assert "evidence mostly outside the head" in summary.index
    # the method as Predict names it; the layer in plain words, its technical name in brackets
    # (after "stages fused; deepest: " for a fusion method)
    assert summary.loc["layer", summary.columns[0]].removeprefix(layer_names.FUSED_FROM) in (
        "last conv block (gradcam_target)", "last conv block (out_relu)")
    assert set(summary.loc["method"]) <= set(METHOD_LABELS.values()), summary.loc["method"]
    # localisation on every boxed test image, faithfulness on a sample: the table says both
    for m in ("custom_cnn", "mobilenetv2"):
        e = json.loads((smoke_run / m / "explanations.json").read_text())
        column = "Custom CNN" if m == "custom_cnn" else "MobileNetV2"
        assert summary.loc["images", column] == str(e["n"])
        assert summary.loc["faithfulness and sanity on", column] == str(e["n_faithfulness"])
        # the accuracy of these images (the caption under the table: not the test accuracy)
        assert summary.loc[ACCURACY_ROW, column].endswith(f" of {e['n']}")
    assert any("their accuracy is not the run's test accuracy" in c.value for c in at.caption)


def test_quality_page_says_when_heatmaps_are_empty(smoke_run, tmp_path, monkeypatch):
    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    path = run / "custom_cnn" / "explanations.json"
    data = json.loads(path.read_text())
    data.update(n_empty_heatmaps=3, pointing_game=0.1,  # pointing: the localisation section
                top_in_mask=0.5, top_in_mask_chance=0.1)
    path.write_text(json.dumps(data))
    other = run / "mobilenetv2" / "explanations.json"
    other.write_text(json.dumps({**json.loads(other.read_text()), "top_in_mask": None}))
    at = _app("quality")
    _ok(at)
    # top_in_mask recorded for every model: localisation gains its third panel
    assert any("Hottest box-sized" in c.proto.spec for c in at.get("plotly_chart"))
    # n as written: other tests may have re-run explain-eval on the shared smoke run
    assert f"3 of {data['n']} test heatmaps are empty" in _texts(at.warning)
    summary = _frame(at, "Custom CNN")
    assert summary.loc["empty heatmaps (no evidence shown)", "Custom CNN"] == "3"


def test_quality_page_shows_what_each_default_was_chosen_from(smoke_run, tmp_path, monkeypatch):
    """The page named the chosen default of each model but never the candidates behind it,
    which explain_choice.json keeps (a review): a table per model, best first, the chosen one
    marked, with the rule and the baselines."""
    from dashboard.figures.choice import CHOSEN
    from pipeline.explain.choice import RULE

    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    layer = json.loads((run / "manifest.json").read_text())["models"]["custom_cnn"][
        "gradcam_layer"]
    table = [{"method": "gradcam", "layer": layer, "pointing_game": 0.5, "energy_in_mask": 0.3,
              "tied_with_best": False},
             {"method": "layercam", "layer": layer, "pointing_game": 0.75,
              "energy_in_mask": 0.45, "tied_with_best": True}]
    (run / "explain_choice.json").write_text(json.dumps({"models": {"custom_cnn": {
        "method": "layercam", "layer": layer, "pointing_game": 0.75, "n_images": 8,
        "chance": 0.04, "pointing_game_centre": 0.25, "rule": RULE, "table": table}}}))
    at = _app("quality")
    _ok(at)
    shown = _frame(at, "tied")
    assert shown is not None, "no table of the candidates"
    assert list(shown["method"]) == ["LayerCAM", "Grad-CAM"]  # best first
    assert list(shown["pointing game"]) == ["75.0%", "50.0%"]
    assert list(shown[""]) == [CHOSEN, ""]
    said = _texts(at.caption)
    assert ("Chosen on 8 validation images with a tumour box (never test images): highest "
            "pointing game") in said and "Chance 4%; a heatmap that always peaks" in said


def test_quality_page_names_the_sartaj_boxes_only_for_a_run_trained_on_them(
        smoke_run, tmp_path, monkeypatch):
    """A student's 3-class run without masks was told "for the Sartaj images pass the tumour
    boxes: ... brain-tumor-mri-sartaj-boxes/masks" (a review, 2026-12-06)."""
    from pipeline.known_data import SARTAJ_FINGERPRINTS

    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    for m in ("custom_cnn", "mobilenetv2"):
        path = run / m / "explanations.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "pointing_game": None,
                                    "localisation_reason": "no masks found"}))
    at = _app("quality")
    _ok(at)
    said = _texts(at.info)
    assert "Localisation cannot be measured for this run: no masks found" in said
    assert "Sartaj" not in said and "explain-eval --masks MASKS" in said
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["data"]["fingerprint"] = next(iter(SARTAJ_FINGERPRINTS))
    (run / "manifest.json").write_text(json.dumps(manifest))
    at = _app("quality")
    _ok(at)
    assert "brain-tumor-mri-sartaj-boxes/masks" in _texts(at.info)


def test_quality_page_lists_explain_eval_on_your_own_folders(smoke_run, tmp_path, monkeypatch):
    from dashboard.figures.external import POINTING

    """explain-eval --data wrote results nothing in the dashboard read (a researcher's review,
    2026-12-06): the page lists them, one row per model, folder and method, and names a damaged
    file instead of failing."""
    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    at = _app("quality")
    _ok(at)
    assert "explain-eval --run RUN --data DIR --masks MASKS" in _texts(at.caption)
    ext = run / "custom_cnn" / "explanations-external"
    ext.mkdir()
    result = {**json.loads((run / "custom_cnn" / "explanations.json").read_text()),
              "n": 9, "n_localisation": 7, "pointing_game": 6 / 7,
              "pointing_game_ci": [0.49, 0.97], "pointing_game_centre": 0.25,
              "created": "2026-12-06T01:00:00+00:00",
              "source": {"kind": "external", "folder": "hospital-b",
                         "overlap_with_training": {"n_exact": 2}}}
    (ext / "hospital-b-gradcam.json").write_text(json.dumps(result))
    (ext / "torn.json").write_text('{"n": ')
    at = _app("quality")
    _ok(at)
    table = _frame(at, "Folder")
    assert table is not None and table["Folder"].tolist() == ["hospital-b"]
    row = table.iloc[0]
    assert row["Model"] == "Custom CNN" and row[POINTING] == "0.86 (6 of 7, 0.49–0.97)"
    assert row["Copies of training images"] == "2 (not held out)"
    # a table that wraps its cells, not a grid that keeps each on one line: the grid was 1409 px
    # wide at 1280 px (818 px of room), its last five columns a sideways scroll away
    assert [t for t in at.table if "Folder" in t.value.columns]
    assert not [d for d in at.dataframe if "Folder" in d.value.columns]
    assert "torn.json" in _texts(at.warning)
    # with the other model's default measured on that folder too, the two-heatmap rule's record
    # there (`agreement`): how often peaks far apart meant a miss on the folder's masks
    from dashboard.core import literal
    from pipeline.explain.agreement import apart_record, record_line

    assert f"{literal('hospital-b')}: " not in _texts(at.caption)  # one model: no record
    other = run / "mobilenetv2" / "explanations-external"
    other.mkdir()
    mnv2 = {**json.loads((run / "mobilenetv2" / "explanations.json").read_text()),
            "source": {"kind": "external", "folder": "hospital-b"}}
    (other / "hospital-b-gradcam.json").write_text(json.dumps(mnv2))
    at = _app("quality")
    _ok(at)
    record = apart_record({"custom_cnn": result, "mobilenetv2": mnv2})
    assert record is not None
    assert f"{literal('hospital-b')}: {record_line(record)}." in _texts(at.caption)


def test_quality_page_s_per_image_table_says_box_for_tumour_boxes(smoke_run, tmp_path,
                                                                  monkeypatch):
    """On the real runs the masks are tumour boxes (`<dataset>-boxes/masks`): the per-image
    table said "mask"; the synthetic phantoms' masks are the tumours themselves."""
    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    recorded = {}
    for m in ("custom_cnn", "mobilenetv2"):
        path = run / m / "explanations.json"
        data = json.loads(path.read_text())
        recorded[m] = (data.get("data_dir"), data.get("masks_dir"))
        if m == "mobilenetv2":  # as measured on the Sartaj images with their boxes
            data.update(data_dir="../shared/data/sartaj",
                        masks_dir="../shared/data/sartaj-boxes/masks")
        path.write_text(json.dumps(data))
    at = _app("quality")
    _ok(at)
    headers = {}
    for m in ("custom_cnn", "mobilenetv2"):
        at.selectbox(key="quality_rows").set_value(m).run()
        headers[m] = list(_frame(at, "true class").columns)
    assert "energy in tumour box" in headers["mobilenetv2"]
    assert not any("mask" in h for h in headers["mobilenetv2"])
    # the smoke run's own masks: the phantoms' drawn tumours
    assert not runinfo.masks_are_boxes(recorded["custom_cnn"][1], recorded["custom_cnn"][0])
    assert "energy in tumour mask" in headers["custom_cnn"]


def test_about_page_shows_the_model_card(smoke_run, tmp_path, monkeypatch):
    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    at = _app("about")
    _ok(at)
    # no card in the artifacts folder: nothing to show
    assert "Model card of the shipped reference models" not in [e.label for e in at.expander]
    (run.parent.parent / "MODEL_CARD.md").write_text("# Card\n\nKnown failure modes: none seen.\n")
    at = _app("about")
    _ok(at)
    assert "Model card of the shipped reference models" in [e.label for e in at.expander]
    assert "Known failure modes: none seen." in _shown(at)
    from dashboard import runinfo

    data = json.loads((smoke_run / "manifest.json").read_text())["data"]
    shown = _shown(at)  # the project-relative folder, or (for ../../tmp/x) its name
    assert f"`{runinfo.shown_data_dir(data)}`" in shown and data["dir"] not in shown
    # the run's time as people read it ("2 Dec 2026, 09:53 UTC"), not ISO 8601
    created = json.loads((smoke_run / "manifest.json").read_text())["created"]
    assert re.search(r"\*\*Created\*\*: \d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d UTC · ", shown)
    assert created not in shown and created[:16] not in shown
    assert "classes glioma, meningioma, no tumour, pituitary" in shown
    # the CT limit said once (About said "A card says when a slice may be CT" twice)
    assert shown.count("may be CT") == 1
    # the smoke run is trained on phantoms, not the Sartaj data: none of that data's facts
    # (a yes/no run's page said "four labels" and "73 CT slices": a review, 2026-12-06), its
    # labels from its own class names
    assert "CT slices" not in shown and "512×512" not in shown
    assert "one of four labels: glioma, meningioma, no tumour, pituitary." in shown


def test_about_page_states_the_sartaj_facts_only_for_a_run_trained_on_it(
        smoke_run, tmp_path, monkeypatch):
    """About said "four labels", "512×512 from one collection" and "73 CT slices" of every run,
    a student's yes/no run too; a run names its dataset by the manifest's fingerprint."""
    from pipeline.known_data import SARTAJ_FINGERPRINTS

    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    path = run / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["class_names"] = ["no_tumor", "tumor"]  # read as written: the page loads no model
    path.write_text(json.dumps(manifest))
    at = _app("about")
    _ok(at)
    shown = _shown(at)
    assert "one of two labels: no tumour, tumour." in shown
    assert "four labels" not in shown and "CT slices" not in shown and "512×512" not in shown
    manifest["data"]["fingerprint"] = next(iter(SARTAJ_FINGERPRINTS))
    manifest["class_names"] = ["glioma", "meningioma", "no_tumor", "pituitary"]
    path.write_text(json.dumps(manifest))
    at = _app("about")
    _ok(at)
    shown = _shown(at)
    assert "512×512 from one\n  collection" in shown and shown.count("may be CT") == 1
    # the count the model card gives (About said 60, counting only the no-tumour folder's)
    count = re.search(r"holds (\d+) CT slices", shown)
    card = (Path(__file__).parents[1] / "artifacts" / "MODEL_CARD.md").read_text()
    assert count and f"the dataset holds {count.group(1)} CT slices" in card


# --------------------------------------------------------------------------- damaged runs


def _copy_run(smoke_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    adir = tmp_path / "artifacts"
    run = adir / "runs" / smoke_run.name
    shutil.copytree(smoke_run, run)
    (adir / "latest").write_text(smoke_run.name + "\n")
    monkeypatch.setenv("BRAIN_MRI_ARTIFACTS", str(adir))
    return run


def test_overview_breaks_results_down_by_pixel_size(smoke_run, tmp_path, monkeypatch):
    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    # The official-testing run's custom CNN: 100 % of 512x512 tumours, 61 % of the others.
    path = run / "custom_cnn" / "metrics.json"
    met = json.loads(path.read_text())
    met["by_size"] = {"size": "512x512",
                      "common_size": {"n": 32, "accuracy": 0.875, "sensitivity": 1.0,
                                      "specificity": None},
                      "other_sizes": {"n": 362, "accuracy": 0.577, "sensitivity": 0.611,
                                      "specificity": 0.771}}
    path.write_text(json.dumps(met))
    at = _app("overview")
    _ok(at)
    row = _frame(at, "tumour sensitivity").set_index(["model", "images"]).loc[
        ("Custom CNN", "every other size")]
    assert (row["n"], row["tumour sensitivity"], row["specificity"]) == ("362", "0.611", "0.771")
    gaps = [w.value for w in at.warning if "recognising where an image comes from" in w.value]
    assert gaps == ["Custom CNN finds 61% of the tumours in images of other sizes against 100% "
                    "at 512x512: it may be recognising where an image comes from rather than "
                    "the tumour."]


def test_overview_counts_copies_once(smoke_run, tmp_path, monkeypatch):
    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    at = _app("overview")
    _ok(at)
    assert "distinct slices" not in _texts(at.caption)  # phantoms: no copies, no sentence
    for m, acc in (("custom_cnn", 0.648), ("mobilenetv2", 0.767)):
        path = run / m / "metrics.json"
        met = json.loads(path.read_text())
        met["copies"] = {"n_images": 394, "n_groups": 282, "images_in_copies": 150,
                         "accuracy": acc, "groups_per_class": {}}
        path.write_text(json.dumps(met))
    at = _app("overview")
    _ok(at)
    text = _texts(at.caption)
    assert "The 394 test images are 282 distinct slices" in text
    assert "Custom CNN 0.648 (every image counted:" in text
    assert "MobileNetV2 0.767 (every image counted:" in text


def test_overview_says_whether_the_warnings_catch_the_errors(smoke_run, tmp_path,
                                                              monkeypatch):
    from pipeline.evaluate.flags import audit_run, read_predictions

    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    at = _app("overview")
    _ok(at)
    assert "Do the warnings catch the errors?" not in _texts(at.header)  # not measured yet
    rels = sorted(read_predictions(run / "custom_cnn" / "predictions.csv"))
    report = audit_run(run, {"custom_cnn": {r: i < 3 for i, r in enumerate(rels)}})
    at = _app("overview")
    _ok(at)
    assert "Do the warnings catch the errors?" in _texts(at.header)
    table = _frame(at, "right when flagged").set_index(["model", "warning"])
    unlike = report["models"]["custom_cnn"]["unlike"]
    row = table.loc[("Custom CNN", "unlike the training data")]
    assert row["answers flagged"] == f"3 of {len(rels)}"
    assert row["right when flagged"] == f"{unlike['accuracy_flagged']:.0%}"
    assert ("MobileNetV2", "unlike the training data") not in table.index  # it has no score
    assert ("MobileNetV2", "the models disagree") in table.index
    assert "the run's test split" in _texts(at.caption)


def test_a_no_tumour_answer_is_never_a_rule_out_and_says_its_size_gap(smoke_run, tmp_path,
                                                                    monkeypatch):
    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    gap = {"size": "999x999",  # no phantom has it: every upload is "another size"
           "common_size": {"n": 30, "accuracy": 0.9, "sensitivity": 1.0, "specificity": None},
           "other_sizes": {"n": 40, "accuracy": 0.6, "sensitivity": 0.5, "specificity": 0.8}}
    for m in ("custom_cnn", "mobilenetv2"):
        path = run / m / "metrics.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "by_size": gap}))
    rows = {m: list(csv.DictReader((run / m / "predictions.csv").open()))
            for m in ("custom_cnn", "mobilenetv2")}
    splits = json.loads((run / "splits.json").read_text())["test"]
    # the first test image some model calls "no tumour", and which models do
    k, said_none = next((k, [m for m in rows if rows[m][k]["predicted"] == "no_tumor"])
                        for k in range(len(splits))
                        if any(rows[m][k]["predicted"] == "no_tumor" for m in rows))
    assert rows["custom_cnn"][k]["path"] == splits[k]["path"]
    at = _app("predict")
    at.file_uploader(key="uploads").set_value([(*_test_image(smoke_run, k), "image/jpeg")]).run()
    _ok(at)
    flagged = [w.value for w in at.warning if "cannot rule a tumour out" in w.value]
    assert len(flagged) == 1  # one caution, however many models say it
    names = ["Custom CNN" if m == "custom_cnn" else "MobileNetV2" for m in said_none]
    assert flagged[0].startswith(" and ".join(names) + (" says" if len(names) == 1 else " say"))
    for m, name in zip(said_none, names, strict=True):
        record = json.loads((run / m / "metrics.json").read_text())["tumor_vs_no_tumor"]
        assert f"of {name}'s 'no tumour' answers were right, and it called {record['fn']} of " \
            f"{record['n_tumor']} tumours 'no tumour'" in flagged[0]
        assert f"is not 999x999 like most of {name}'s training tumours" in flagged[0]
    assert flagged[0].count("found 50% of the tumours") == len(said_none)


def test_missing_and_truncated_files_are_reported(smoke_run, tmp_path, monkeypatch):
    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    (run / "custom_cnn" / "metrics.json").unlink()
    text = (run / "comparison.json").read_text()
    (run / "comparison.json").write_text(text[: len(text) // 2])
    at = _app("overview")
    _ok(at)
    warnings = _texts(at.warning)
    assert "metrics.json" in warnings and "pipeline evaluate --run" in warnings
    assert "comparison.json" in warnings and "not valid JSON" in warnings
    # the other model's metrics are still shown
    assert list(_metrics_table(at).columns) == ["MobileNetV2"]


@pytest.mark.parametrize("damage, message", [
    ("unknown schema", "schema_version 99"),
    ("truncated manifest", "not valid JSON"),
])
def test_damaged_manifest_is_explained_on_every_page(smoke_run, tmp_path, monkeypatch, damage,
                                                     message):
    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    text = (run / "manifest.json").read_text()
    if damage == "unknown schema":
        (run / "manifest.json").write_text(json.dumps({**json.loads(text), "schema_version": 99}))
    else:
        # list_runs skips such a folder; `latest` still names it, so the viewer is told why
        (run / "manifest.json").write_text(text[: len(text) // 3])
    for page in PAGES:
        at = _app(page)
        _ok(at)
        shown = _texts(at.error) + _texts(at.warning)
        assert message in shown and "Pick another run" in shown, (page, shown)


@pytest.mark.parametrize("damage", ["not a model", "manifest disagrees"])
def test_one_broken_model_leaves_the_other_working(smoke_run, tmp_path, monkeypatch, damage):
    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    if damage == "not a model":
        (run / "mobilenetv2" / "model.keras").write_bytes(b"definitely not a keras zip")
    else:
        manifest = json.loads((run / "manifest.json").read_text())
        manifest["models"]["mobilenetv2"]["image_size"] += 1  # unlike the model's input
        (run / "manifest.json").write_text(json.dumps(manifest))
    at = _app("predict")
    _ok(at)
    name, data = _test_image(smoke_run)
    at.file_uploader(key="uploads").set_value([(name, data, "image/jpeg")]).run()
    _ok(at)
    # the models load in the background; once loaded, the broken one is named
    assert "MobileNetV2 cannot be used" in _texts(at.error)
    captions = _captions(at)
    assert sum("Custom CNN ·" in c for c in captions) == 1  # the good model still explains


def test_a_run_without_some_checks_says_so_where_answers_are_shown(smoke_run, tmp_path,
                                                                  monkeypatch):
    """A run without an OOD score for a model (or without calibration.json) dropped that
    warning from every card silently: the pages that answer now name each gap and its fix."""
    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    (run / "mobilenetv2" / "ood.npz").unlink()
    at = _app("predict")
    _ok(at)
    name, data = _test_image(smoke_run)
    at.file_uploader(key="uploads").set_value([(name, data, "image/jpeg")]).run()
    _ok(at)
    shown = _texts(at.warning)
    # one line per gap, naming only the model that lacks it
    assert "\n- MobileNetV2: no image is marked unlike the training data (no ood.npz); " \
        f"`python -m pipeline ood --run {run.name}` adds it" in shown, shown
    at = _app("errors")
    _ok(at)
    assert "no image is marked unlike the training data" in _texts(at.warning)


def test_no_runs_at_all(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAIN_MRI_ARTIFACTS", str(tmp_path / "empty"))
    for page in PAGES:
        at = _app(page)
        _ok(at)
        shown = _texts(at.error) + _texts(at.warning)
        assert "No trained run" in shown or "No runs" in shown, (page, shown)


def _two_runs(smoke_run, tmp_path, monkeypatch) -> tuple[Path, Path]:  # noqa: ANN001
    """A copy of the smoke run (the artifacts folder's latest) and an older copy of it."""
    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    older = run.parent / "20000101-000000-aaaaaa"
    shutil.copytree(run, older)
    manifest = json.loads((older / "manifest.json").read_text())
    manifest.update(run_id=older.name, created="2000-01-01T00:00:00+00:00")
    (older / "manifest.json").write_text(json.dumps(manifest))
    return run, older


def test_a_training_image_s_note_names_the_official_testing_run_to_switch_to(
        smoke_run, tmp_path, monkeypatch):
    """A lecturer's Testing/ images were training images of the default run: the note names a
    loaded run whose test split is the official test folder, as the sidebar lists it."""
    run, official = _two_runs(smoke_run, tmp_path, monkeypatch)
    manifest = json.loads((official / "manifest.json").read_text())
    manifest["title"] = "Official Testing split"
    manifest.setdefault("splits", {})["official_test"] = {"n": 12}
    (official / "manifest.json").write_text(json.dumps(manifest))
    data = Path(manifest["data"]["dir"])
    train = data / json.loads((run / "splits.json").read_text())["train"][0]["path"]
    at = _app()
    label = "Official Testing split · aaaaaa"
    assert label in at.sidebar.selectbox(key="run_choice").options  # the sidebar's words
    at.switch_page(PAGES["predict"][0]).run()
    at.file_uploader(key="uploads").set_value(
        [("from-train.png", train.read_bytes(), "image/png")]).run()
    _ok(at)
    note = next(i.value for i in at.info if "in this run's training split" in i.value)
    assert f"pick the run `{label}` in the sidebar" in note, note
    assert "Draw test images" in note


def test_run_picker_switches_between_runs(smoke_run, tmp_path, monkeypatch):
    run, older = _two_runs(smoke_run, tmp_path, monkeypatch)
    at = _app()
    picker = at.sidebar.selectbox(key="run_choice")
    assert picker.options == [f"{SMOKE_TITLE} · {run.name.rsplit('-', 1)[1]}",
                              f"{SMOKE_TITLE} · aaaaaa"]  # newest first
    assert f"latest run `{run.name}`" in _texts(at.sidebar.caption)
    assert run.name in _texts(at.caption)
    picker.set_value(older.name).run()
    _ok(at)
    assert older.name in _texts(at.caption) and run.name not in _texts(at.caption)
    assert f"{SMOKE_TITLE} · run `{older.name}`" in _texts(at.sidebar.caption)


def test_choices_survive_a_visit_to_another_page_and_a_switch_of_run(
        smoke_run, tmp_path, monkeypatch):
    """A reviewer set the method, the class and the opacity on Predict and the filters on Error
    analysis, looked at About, came back: every choice was reset (Streamlit drops a widget's
    state in a run that does not draw it). They are kept now, and across a switch of run
    while that run offers them; the layer box, each run's own choice, starts on the new run's
    chosen layer (`test_a_choice_the_run_does_not_offer_gives_way_to_its_default` for the
    rest, and the browser test for what the box shows)."""
    run, older = _two_runs(smoke_run, tmp_path, monkeypatch)
    at = _app("predict")
    at.file_uploader(key="uploads").set_value([(*_test_image(smoke_run), "image/jpeg")]).run()
    at.selectbox(key="predict_method").set_value("layercam").run()
    at.selectbox(key="predict_target").set_value("meningioma").run()
    at.slider(key="predict_alpha").set_value(0.7).run()
    layer = at.selectbox(key="predict_layer_custom_cnn")
    default_layer = layer.value
    layer.select_index(0 if layer.index else 1).run()
    assert at.selectbox(key="predict_layer_custom_cnn").value != default_layer
    at.switch_page(PAGES["errors"][0]).run()
    at.selectbox(key="err_by").set_value("all").run()
    at.multiselect(key="err_true").set_value(["glioma"]).run()
    for page in ("about", "predict"):
        at.switch_page(PAGES[page][0]).run()
    _ok(at)
    assert at.selectbox(key="predict_method").value == "layercam"
    assert at.selectbox(key="predict_target").value == "meningioma"
    assert at.slider(key="predict_alpha").value == 0.7
    assert all("LayerCAM for 'meningioma'" in c for c in _captions(at)), _captions(at)
    at.switch_page(PAGES["errors"][0]).run()
    _ok(at)
    assert at.selectbox(key="err_by").value == "all"
    assert at.multiselect(key="err_true").value == ["glioma"]
    at.switch_page(PAGES["overview"][0]).run()
    at.sidebar.selectbox(key="run_choice").set_value(older.name).run()
    at.switch_page(PAGES["predict"][0]).run()
    _ok(at)
    assert at.selectbox(key="predict_method").value == "layercam"  # not bound to a run
    assert at.selectbox(key="predict_target").value == "meningioma"  # the older run has it
    assert at.selectbox(key="predict_layer_custom_cnn").value == default_layer  # the run's own
    assert all("LayerCAM for 'meningioma'" in c for c in _captions(at)), _captions(at)
    at.switch_page(PAGES["errors"][0]).run()
    _ok(at)
    assert at.multiselect(key="err_true").value == ["glioma"]


def test_a_choice_the_run_does_not_offer_gives_way_to_its_default():
    """`state.offered`: a kept value the run does not offer becomes the default (a
    multiselect keeps what is offered), assigned so that the browser shows it too."""

    def script() -> None:
        import streamlit as st

        from dashboard import state

        opts = st.session_state.get("opts", ["a", "b", "c"])
        state.offered("one", opts, "a")
        st.selectbox("One", opts, key="one")
        state.offered("many", opts, [])
        st.multiselect("Many", opts, key="many")

    at = AppTest.from_function(script, default_timeout=TIMEOUT)
    at.run()
    at.selectbox(key="one").set_value("c").run()
    at.multiselect(key="many").set_value(["b", "c"]).run()
    at.session_state["opts"] = ["a", "b", "d"]
    at.run()
    assert not at.exception
    assert at.selectbox(key="one").value == "a"
    assert at.multiselect(key="many").value == ["b"]
    at.selectbox(key="one").set_value("d").run()  # an offered choice stays
    assert at.selectbox(key="one").value == "d" and at.multiselect(key="many").value == ["b"]


def _machine_paths(tmp_path: Path) -> list[str]:
    """What no page may show: this test's folders (artifacts, data), the project's and the
    home folder's absolute paths."""
    home = str(Path.home())
    return [str(tmp_path), str(ROOT), "/work/"] + ([home + "/"] if home != "/" else [])


@pytest.mark.parametrize("damage", ["files", "manifest", "run folder gone", "no runs"])
def test_no_page_shows_a_machine_path(smoke_run, tmp_path, monkeypatch, damage):
    """Issue 18: error messages printed absolute paths (missing file /abs/..., the artifacts
    folder, the model file, the dataset folder) on the pages of a damaged run."""
    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    monkeypatch.delenv("BRAIN_MRI_DATA", raising=False)
    if damage == "files":
        (run / "custom_cnn" / "metrics.json").unlink()
        (run / "custom_cnn" / "explanations.json").unlink(missing_ok=True)
        (run / "mobilenetv2" / "predictions.csv").unlink()
        (run / "custom_cnn" / "history.json").write_text("[1, 2]")  # JSON of the wrong kind
        text = (run / "comparison.json").read_text()
        (run / "comparison.json").write_text(text[: len(text) // 2])
        (run / "mobilenetv2" / "model.keras").write_bytes(b"definitely not a keras zip")
        manifest = json.loads((run / "manifest.json").read_text())
        gone = tmp_path / "moved" / "brain-mri"  # the dataset is not reachable from here
        manifest["data"].update(dir=str(gone), dir_relative=os.path.relpath(gone, ROOT))
        (run / "manifest.json").write_text(json.dumps(manifest))
        (run.parent.parent / "MODEL_CARD.md").write_bytes(b"# card \xff\xfe not UTF-8")
    elif damage == "manifest":
        text = (run / "manifest.json").read_text()
        (run / "manifest.json").write_text(text[: len(text) // 3])
    elif damage == "run folder gone":
        (run.parent.parent / "latest").write_text("20000101-000000-gone00\n")
    else:
        shutil.rmtree(run.parent)
        (run.parent.parent / "latest").unlink()
    shown = []
    for page in PAGES:
        at = _app(page)
        _ok(at)
        if page == "predict" and damage == "files":  # the broken model is named once loaded
            at.file_uploader(key="uploads").set_value([(*_test_image(smoke_run),
                                                        "image/jpeg")]).run()
            _ok(at)
            assert (f"cannot load model runs/{run.name}/mobilenetv2/model.keras: "
                    in _texts(at.error))
        dump = _page_dump(at)
        shown.append(dump)
        leaked = [p for p in _machine_paths(tmp_path) if p in dump]
        assert not leaked, f"{page} shows {leaked}"
    # the messages are there, naming files inside the artifacts folder
    everything = "\n".join(shown)
    expected = {"files": [f"runs/{run.name}/custom_cnn/metrics.json",
                          f"damaged file runs/{run.name}/comparison.json",
                          f"runs/{run.name}/mobilenetv2/predictions.csv",
                          f"runs/{run.name}/custom_cnn/history.json",
                          "the dataset folder `brain-mri`",
                          "The model card `MODEL_CARD.md` could not be read (UnicodeDecodeError)"],
                "manifest": [f"damaged file runs/{run.name}/manifest.json"],
                "run folder gone": ["run folder runs/20000101-000000-gone00 does not exist"],
                "no runs": ["No runs in the artifacts folder `artifacts`"]}[damage]
    for text in expected:
        assert text in everything, text


def test_pages_name_the_unreachable_dataset_folder(smoke_run, tmp_path, monkeypatch):
    """Issue 18: "The dataset folder `None` is not reachable" (Run.data_dir is None then)."""
    run, _ = _run_with_errors(smoke_run, tmp_path, monkeypatch)  # errors whose images it names
    monkeypatch.delenv("BRAIN_MRI_DATA", raising=False)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["data"].update(dir=str(tmp_path / "elsewhere" / "brain-mri"),
                            dir_relative="../moved-away-for-this-test/brain-mri")
    (run / "manifest.json").write_text(json.dumps(manifest))
    said = ("this run was trained on the dataset folder `../moved-away-for-this-test/brain-mri`,"
            " which is not reachable from this machine")
    at = _app("errors")
    _ok(at)
    assert len(_frame(at, "Custom CNN answer")) == N_ERRORS  # the table, but no images
    assert said in _texts(at.info) and "None" not in _texts(at.info)
    at = _app("predict")
    _ok(at)
    assert f"Sample picker unavailable: {said}." in _texts(at.caption)
    assert "`None`" not in _page_dump(at)


# --------------------------------------------------------------------------- DICOM series

# Attributes of the DICOM basic de-identification profile, with values no page may show.
IDENTIFIERS = {
    "PatientName": "Doe^Jane^Quincy", "PatientID": "PID-8675309", "PatientBirthDate": "19510704",
    "OtherPatientIDs": "OPID-5551212", "PatientAddress": "42 Wallaby Way Sydney",
    "PatientTelephoneNumbers": "555-0199-77", "InstitutionName": "St Elsewhere Hospital",
    "InstitutionAddress": "1 Secret Lane Boston", "ReferringPhysicianName": "House^Gregory",
    "PerformingPhysicianName": "Kildare^James", "OperatorsName": "Ratched^Mildred",
    "StudyDate": "20240102", "SeriesDate": "20240103", "AcquisitionDate": "20240104",
    "StudyTime": "101112", "AccessionNumber": "ACC77441", "StudyID": "STUDY9981",
    "StationName": "SCANNER-ROOM-7", "DeviceSerialNumber": "SN-44-2211",
    "StudyDescription": "Brain series of Jane Quincy",
    "StudyInstanceUID": "1.2.826.0.1.3680043.8.498.111222333",
    "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.444555666",
    "FrameOfReferenceUID": "1.2.826.0.1.3680043.8.498.777888999",
}


def _identifier_values(data: bytes) -> set[str]:
    """Every identifying value the file really carries (names also by their parts)."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    values = {str(ds.get(k)) for k in IDENTIFIERS} | {str(ds.SOPInstanceUID)}
    values |= {part for v in values for part in v.split("^") if len(part) >= 4}
    assert "Doe^Jane^Quincy" in values and len(values) > len(IDENTIFIERS)
    return values


def _page_dump(at: AppTest) -> str:
    """Everything the page sent to the browser: every element's protobuf as text."""
    out: list[str] = []

    def walk(node) -> None:  # noqa: ANN001
        proto = getattr(node, "proto", None)
        if proto is not None:
            out.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(out)


def _pdf_text(pdf: bytes) -> str:
    """The PDF's text: pdftotext when installed, plus every (decompressed) stream."""
    import re
    import shutil
    import subprocess

    parts = [pdf.decode("latin-1")]
    for stream in re.findall(rb"stream\r?\n(.*?)endstream", pdf, re.S):
        try:
            parts.append(zlib.decompress(stream).decode("latin-1"))
        except zlib.error:
            parts.append(stream.decode("latin-1"))
    if shutil.which("pdftotext"):
        parts.append(subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True,
                                    check=True).stdout.decode("utf-8", "replace"))
    return "\n".join(parts)


def test_a_series_slider_is_drawn_with_its_card_and_keeps_its_slice_across_pages(
        artifacts: Path, smoke_run: Path):
    """A series' slider and slice table were drawn above the cards on every page of cards, far
    from the series' own card; with its card they must also keep the slice chosen while the
    card's page was not shown (Streamlit drops the state of a widget left out of a run)."""
    import hashlib

    per_page = paging.CARDS_PER_PAGE
    grey = [np.asarray(Image.open(io.BytesIO(_test_image(smoke_run, k)[1])).convert("L")
                       .resize((96, 96)), np.uint16) * 16 for k in range(3)]
    multi = make_dicom(np.stack(grey))
    files = [(*_test_image(smoke_run, k), "image/jpeg") for k in range(per_page + 1)]
    files.append(("scan.dcm", multi, "application/dicom"))  # the first card of page 2
    key = f"predict_slice_{hashlib.sha256(multi).hexdigest()[:16]}"
    at = _app("predict")
    at.file_uploader(key="uploads").set_value(files).run()
    _ok(at)
    assert _cards(at) == list(range(per_page))
    with pytest.raises(KeyError):  # not on page 1: the series' card is on page 2
        at.select_slider(key=key)
    assert "a series of 3 slices" not in _shown(at)
    assert "scan.dcm · slice 2 of 3" in list(_frame(at, "flags")["file"])  # the summary has it
    at.radio(key="predict_page").set_value(2).run()
    _ok(at)
    assert _cards(at) == [per_page, per_page + 1]
    assert at.select_slider(key=key).value == 2 and "a series of 3 slices" in _shown(at)
    assert list(_frame(at, "slice")["slice"]) == ["slice 1", "slice 2", "slice 3"]
    at.select_slider(key=key).set_value(3).run()
    _ok(at)
    assert "scan.dcm · slice 3 of 3" in _shown(at)
    # the card's title says the slice once ("… · slice 3 of 3 · upload 6 · slice 3 of 3")
    title = next(str(t.value) for t in at.subheader if "scan.dcm" in str(t.value))
    assert title.count("slice 3 of 3") == 1 and f"upload {per_page + 2}" in title, title
    at.radio(key="predict_page").set_value(1).run()  # away: the slider is not drawn...
    _ok(at)
    with pytest.raises(KeyError):
        at.select_slider(key=key)
    assert "scan.dcm · slice 3 of 3" in list(_frame(at, "flags")["file"])
    at.radio(key="predict_page").set_value(2).run()  # ...and back: the slice chosen is kept
    _ok(at)
    assert at.select_slider(key=key).value == 3
    assert "scan.dcm · slice 3 of 3" in _shown(at)
    assert "scan.dcm · slice 2 of 3" not in _shown(at)


def test_a_long_series_slider_table_and_card_number_slices_alike(
        artifacts: Path, smoke_run: Path, monkeypatch: pytest.MonkeyPatch):
    """Of a series longer than dicom.MAX_SLICES only evenly spaced slices are analysed: the
    slider counted them 1..n while the card named the slice's place in the file ("slider 37,
    slice 43 of 74"). All three now use the place in the file."""
    import hashlib

    from pipeline import dicom

    monkeypatch.setattr(dicom, "MAX_SLICES", 3)  # 5 frames: frames 1, 3 and 5 are analysed
    grey = [np.asarray(Image.open(io.BytesIO(_test_image(smoke_run, k % 3)[1])).convert("L")
                       .resize((96, 96)), np.uint16) * (16 + k) for k in range(5)]
    multi = make_dicom(np.stack(grey))
    key = f"predict_slice_{hashlib.sha256(multi).hexdigest()[:16]}"
    at = _app("predict")
    at.file_uploader(key="uploads").set_value([("long.dcm", multi, "application/dicom")]).run()
    _ok(at)
    slider = at.select_slider(key=key)
    assert (list(map(int, slider.options)), int(slider.value)) == ([1, 3, 5], 3)
    assert "a series of 5 slices" in _shown(at) and "long.dcm · slice 3 of 5" in _shown(at)
    assert list(_frame(at, "slice")["slice"]) == ["slice 1", "slice 3", "slice 5"]
    slider.set_value(5).run()
    _ok(at)
    assert "long.dcm · slice 5 of 5" in _shown(at)
    assert int(at.select_slider(key=key).value) == 5


def test_a_series_slice_from_the_run_s_own_splits_says_which(artifacts: Path, smoke_run: Path):
    """A single upload of a training image said so on its card, but a series holding it did
    not (the look-up skipped series), though `predict` tags such a slice: the chosen slice's
    card now says it in the same words, and another slice says its own."""
    import hashlib

    manifest = json.loads((smoke_run / "manifest.json").read_text())
    splits = json.loads((smoke_run / "splits.json").read_text())
    root = Path(manifest["data"]["dir"])
    pages = [Image.open(root / splits[split][0]["path"]).convert("L")
             for split in ("test", "train", "test")]
    pages[2] = Image.open(root / splits["test"][1]["path"]).convert("L")
    assert len({p.size for p in pages}) == 1, [p.size for p in pages]  # one stack, one size
    stack = _encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    key = f"predict_slice_{hashlib.sha256(stack).hexdigest()[:16]}"
    at = _app("predict")
    at.file_uploader(key="uploads").set_value([("stack.tif", stack, "image/tiff")]).run()
    _ok(at)
    assert int(at.select_slider(key=key).value) == 2  # the training image
    notes = [i.value for i in at.info if "in this run's" in i.value]
    assert len(notes) == 1 and notes[0].startswith(
        "This image is in this run's training split: the models learnt"), notes
    at.select_slider(key=key).set_value(1).run()
    _ok(at)
    notes = [i.value for i in at.info if "in this run's" in i.value]
    assert len(notes) == 1 and notes[0].startswith("This image is in this run's test split"), notes


def test_a_series_table_notes_the_run_s_own_slices_and_sorts(
        artifacts: Path, smoke_run: Path, monkeypatch: pytest.MonkeyPatch):
    """A series' slice table had no split note (the summary of single uploads counts a
    training image's among its flags, and the Predictions CSV says it) and could not be
    sorted like the summary: each slice is looked up now, its note counted and in the Slices
    CSV, and the table has its own "Sort the slices by" box."""
    import hashlib

    manifest = json.loads((smoke_run / "manifest.json").read_text())
    splits = json.loads((smoke_run / "splits.json").read_text())
    root = Path(manifest["data"]["dir"])
    pages = [Image.open(root / splits[split][k]["path"]).convert("L")
             for split, k in (("test", 0), ("train", 0), ("test", 1))]
    assert len({p.size for p in pages}) == 1, [p.size for p in pages]  # one stack, one size
    stack = _encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    digest = hashlib.sha256(stack).hexdigest()[:16]
    csvs: list[bytes] = []
    _tap_downloads(monkeypatch, lambda data, kw: csvs.append(data)
                   if kw.get("key") == "predict_series_csv_0" else None)
    at = _app("predict")
    at.file_uploader(key="uploads").set_value([("stack.tif", stack, "image/tiff")]).run()
    _ok(at)
    rows = pd.read_csv(io.BytesIO(csvs[-1]))
    assert list(rows["image"].str.extract(r"(slice \d+)")[0]) == ["slice 1", "slice 2", "slice 3"]
    said = ["in this run's training split" in str(w) for w in rows["warnings"]]
    assert said == [False, True, False], list(rows["warnings"])  # the training slice only
    # why a slice's answers are folded away, as the Predictions CSV says it (a review)
    assert "answers_withheld" in rows.columns
    table = _frame(at, "slice")
    sort = at.selectbox(key=f"predict_slice_sort_{digest}")
    labels = list(sort.options)  # as shown
    assert sort.value == summary_table.UPLOAD_ORDER
    assert labels[0] == "slice order" and "file name" not in labels
    assert list(table["flags"]) == list(rows["n_warnings"])  # the note counted in the table
    sort.set_value("flags").run()
    _ok(at)
    table = _frame(at, "slice")
    assert list(table["flags"]) == sorted(rows["n_warnings"], reverse=True)
    assert sorted(table["slice"]) == ["slice 1", "slice 2", "slice 3"]


def test_a_series_slices_pdf_has_a_page_per_slice(artifacts: Path, smoke_run: Path,
                                                   monkeypatch: pytest.MonkeyPatch):
    """A series' PDF held only the slice its card showed ("Report PDF, all" and the card's own
    report): the series panel's Slices PDF has a page for every analysed slice, each naming
    its slice as the table does, with the run and model files of every report."""
    manifest = json.loads((smoke_run / "manifest.json").read_text())
    splits = json.loads((smoke_run / "splits.json").read_text())
    root = Path(manifest["data"]["dir"])
    pages = [Image.open(root / splits["test"][k]["path"]).convert("L") for k in range(3)]
    assert len({p.size for p in pages}) == 1, [p.size for p in pages]  # one stack, one size
    stack = _encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    pdfs: dict[str, bytes] = {}
    _tap_downloads(monkeypatch, lambda data, kw: pdfs.__setitem__(kw["key"], data())
                   if kw.get("mime") == "application/pdf" and callable(data) else None)
    at = _app("predict")
    at.file_uploader(key="uploads").set_value([("stack.tif", stack, "image/tiff")]).run()
    _ok(at)
    pdf = pdfs["predict_series_pdf_0"]
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == 3  # /Pages does not match
    text = _pdf_text(pdf)
    for k in (1, 2, 3):
        assert f"slice {k} of 3" in text, text[:2000]
    assert "Model files (SHA-256)" in text and "NOT a diagnostic" in text, text[:2000]
    # the card's own report still has the shown slice alone
    assert len(re.findall(rb"/Type\s*/Page\b", pdfs["predict_pdf_0"])) == 1


def test_a_nifti_volume_upload_gets_the_series_slider(artifacts: Path, smoke_run: Path,
                                                      monkeypatch: pytest.MonkeyPatch):
    """A researcher's .nii.gz is a series like a multi-frame DICOM: its axial slices behind a
    slider, each named by its place in the volume; its blank top slice left out, said so. Its
    card's PDF says whose right is where, as the card does (it said nothing)."""
    import gzip
    import hashlib

    import nibabel as nib

    from pipeline.names import RADIOLOGICAL_SIDES

    pdfs: list = []
    _tap_downloads(monkeypatch, lambda data, kw: pdfs.append(data)
                   if kw.get("key") == "predict_pdf_0" else None)

    grey = [np.asarray(Image.open(io.BytesIO(_test_image(smoke_run, k)[1])).convert("L")
                       .resize((96, 96)), np.int16) for k in range(3)]
    # voxels x to the patient's right, y anterior (identity affine: RAS), shown radiologically
    vox = np.stack([g[::-1, ::-1].T for g in grey] + [np.zeros((96, 96), np.int16)], axis=2)
    data = gzip.compress(nib.Nifti1Image(vox, np.eye(4)).to_bytes())
    at = _app("predict")
    at.file_uploader(key="uploads").set_value([("scan.nii.gz", data, "application/gzip")]).run()
    _ok(at)
    slider = at.select_slider(key=f"predict_slice_{hashlib.sha256(data).hexdigest()[:16]}")
    assert (list(map(int, slider.options)), int(slider.value)) == ([1, 2, 3], 2)
    shown = _shown(at)
    assert "scan.nii.gz · slice 2 of 4" in shown
    assert "slice 4 of 4 is blank (almost all one grey level), not analysed" in shown
    assert list(_frame(at, "slice")["slice"]) == ["slice 1", "slice 2", "slice 3"]
    # the volume's affine says whose right is where: the colour scale's caption says so too
    from dashboard import figures as F

    assert F.legend_caption(radiological=True) in shown and F.LEGEND_CAPTION not in shown
    pdf = _pdf_text(pdfs[-1]() if callable(pdfs[-1]) else pdfs[-1])
    assert RADIOLOGICAL_SIDES in " ".join(w for w in pdf.split() if w not in ("0", "0.5", "1"))


def test_dicom_series_gets_a_slice_slider_and_never_shows_identifiers(
        artifacts: Path, smoke_run: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture):
    import hashlib
    import zipfile

    from dashboard import core, loader

    # real pixels: three test-split slices, as 12-bit frames of one multi-frame file
    grey = [np.asarray(Image.open(io.BytesIO(_test_image(smoke_run, k)[1])).convert("L")
                       .resize((128, 128)), np.uint16) * 16 for k in range(3)]
    multi = make_dicom(np.stack(grey), **IDENTIFIERS)
    secret = _identifier_values(multi)
    series = io.BytesIO()
    with zipfile.ZipFile(series, "w") as zf:
        for k in (2, 0, 1):  # stored out of order: sorted by InstanceNumber
            zf.writestr(f"IM{k:04d}.dcm", make_dicom(grey[k], InstanceNumber=k + 1,
                                                      **IDENTIFIERS))
    mixed = io.BytesIO()
    with zipfile.ZipFile(mixed, "w") as zf:
        zf.writestr("IM0001.dcm", make_dicom(grey[0], **IDENTIFIERS))
        zf.writestr("notes.txt", "not a slice")
    downloads: list[bytes] = []  # every CSV and PDF the page offers, drawn as if clicked

    def capture(data, kwargs) -> None:  # noqa: ANN001
        if str(kwargs.get("mime", "")) in ("text/csv", "application/pdf"):
            downloads.append(data() if callable(data) else data)

    _tap_downloads(monkeypatch, capture)
    caplog.set_level("DEBUG")
    at = _app("predict")
    at.file_uploader(key="uploads").set_value([
        ("scan.dcm", multi, "application/dicom"),
        ("series.zip", series.getvalue(), "application/zip"),
        ("broken.zip", b"PK\x03\x04 not really a zip", "application/zip"),
        ("mixed.zip", mixed.getvalue(), "application/zip")]).run()
    _ok(at)
    warnings = _texts(at.warning)
    # a bad zip: one line in the file's card; a zip's other files (a PACS export's README.TXT)
    # are skipped and said so, where one refused the whole zip (a review)
    assert "broken.zip: not a readable zip file" in warnings
    assert "1 other file in the zip, not DICOM, was skipped" in _shown(at)
    # each series: a keyed slider over its slices, the middle one shown by default
    slider = at.select_slider(key=f"predict_slice_{hashlib.sha256(multi).hexdigest()[:16]}")
    assert (list(map(int, slider.options)), slider.value) == ([1, 2, 3], 2)
    md = _shown(at)
    assert "scan.dcm · slice 2 of 3" in md and "series.zip · slice 2 of 3" in md
    # the chosen slice of each series and the mixed zip's one slice: both overlays
    assert len(_captions(at)) == 3 * 2
    slices = _frame(at, "slice")  # every slice's answers
    assert list(slices["slice"]) == ["slice 1", "slice 2", "slice 3"]
    slider.set_value(1).run()
    _ok(at)
    assert "scan.dcm · slice 1 of 3" in _shown(at)
    # the zipped series in InstanceNumber order: its slice 1 is the multi-frame's slice 1
    up = core.decode_upload("series.zip", series.getvalue())
    assert [core.pixel_digest(s) for s in up.slices] == [
        core.pixel_digest(s) for s in core.decode_upload("scan.dcm", multi).slices]
    # cache keys: hashes of the pixels, never a name or an attribute
    keys = repr(list(loader.result_store()._items))
    assert core.pixel_digest(up.slices[0]) in keys
    # the page, its CSVs and PDFs, the logs and the cache keys carry no identifier
    texts = {"page": _page_dump(at), "log": caplog.text, "cache keys": keys,
             **{f"download {k}": _pdf_text(d) if d[:4] == b"%PDF" else d.decode()
                for k, d in enumerate(downloads)}}
    assert any("sha256" in t.lower() for t in texts.values())
    kinds = {d[:4] for d in downloads}
    assert b"%PDF" in kinds and len(kinds) >= 2  # PDFs and CSVs were drawn and checked
    for where, text in texts.items():
        leaked = sorted(v for v in secret if v in text)
        assert not leaked, f"{where} shows {leaked}"


def test_model_file_hashes_are_hashed_once_and_reported(artifacts: Path, smoke_run: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    import hashlib

    import pandas as pd
    from streamlit.delta_generator import DeltaGenerator

    from dashboard import loader, runinfo

    calls: list[str] = []
    real = runinfo.model_file_hashes

    def counting(path, manifest):  # noqa: ANN001
        calls.append(str(path))
        return real(path, manifest)

    monkeypatch.setattr(runinfo, "model_file_hashes", counting)
    loader._model_hashes.clear()
    csvs: list[bytes] = []
    original = DeltaGenerator.download_button

    def capture(self, label, data, *args, **kwargs):  # noqa: ANN001
        if kwargs.get("key") == "predict_csv":  # built when clicked: a callable
            csvs.append(data() if callable(data) else data)
        return original(self, label, data, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", capture)
    at = _app("predict")
    at.file_uploader(key="uploads").set_value(
        [(*_test_image(smoke_run, k), "image/jpeg") for k in range(3)]).run()
    at.slider(key="predict_alpha").set_value(0.7).run()
    _ok(at)
    assert len(calls) == 1  # once per run, not per image or rerun
    full = hashlib.sha256((smoke_run / "mobilenetv2" / "model.keras").read_bytes()).hexdigest()
    assert f"MobileNetV2 {full[:12]}" in _texts(at.caption)  # the short form on the page
    # provenance as columns: the file opens as it is (five "# " lines before the header
    # failed pandas.read_csv, h64's review)
    assert not csvs[-1].startswith(b"#")
    frame = pd.read_csv(io.BytesIO(csvs[-1]))
    assert set(frame["model_sha256_mobilenetv2"]) == {full}  # the full one in the CSV
    assert smoke_run.name in frame["run"].iloc[0] and frame["created"].notna().all()
    assert "NOT a diagnostic device" in frame["disclaimer"].iloc[0]
    # rows by their number in the upload list, never by file name
    assert list(frame["image"]) == ["upload 1", "upload 2", "upload 3"]
    assert "file" not in frame.columns


def test_no_report_carries_an_uploads_file_name(artifacts: Path, smoke_run: Path,
                                                 monkeypatch: pytest.MonkeyPatch):
    """Issue 18 item 3: the Predictions CSV had a `file` column of upload names, which can
    identify a patient; the PDFs never did. Both name an image by number and SHA-256."""
    import hashlib

    import pandas as pd

    downloads: dict[str, bytes] = {}
    file_names: list[str] = []  # every download's suggested name, overlay PNGs too

    def keep(data, kwargs) -> None:  # noqa: ANN001
        file_names.append(str(kwargs.get("file_name")))
        if str(kwargs.get("mime", "")) in ("text/csv", "application/pdf"):
            downloads[kwargs["key"]] = data() if callable(data) else data

    _tap_downloads(monkeypatch, keep)
    _, data = _test_image(smoke_run)
    at = _app("predict")
    at.file_uploader(key="uploads").set_value([("Doe_John_1970.jpg", data, "image/jpeg")]).run()
    _ok(at)
    assert "Doe_John_1970.jpg" in _shown(at)  # the page shows it, as plain text
    assert {"predict_csv", "predict_pdf_0", "predict_pdf_all"} <= set(downloads)
    for key, content in downloads.items():
        text = _pdf_text(content) if content[:4] == b"%PDF" else content.decode()
        assert "Doe_John" not in text, key
    assert len(file_names) >= 5 and not [n for n in file_names if "Doe_John" in n], file_names
    frame = pd.read_csv(io.BytesIO(downloads["predict_csv"]))
    assert frame[["image", "sha256"]].values.tolist() == [
        ["upload 1", hashlib.sha256(data).hexdigest()[:12]]]  # `sha256sum` finds the file


def test_every_probability_table_says_what_its_percentages_are(smoke_run: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch):
    """h64's review: the percentages are temperature-scaled and run high on other sources, and
    neither card, CSV nor PDF said so. One line, from the run's own calibration and metrics."""
    import pandas as pd

    downloads: dict[str, bytes] = {}
    _tap_downloads(monkeypatch, lambda data, kw: downloads.__setitem__(
        kw.get("key"), data() if callable(data) else data)
        if str(kw.get("mime", "")) in ("text/csv", "application/pdf") else None)
    run = _copy_run(smoke_run, tmp_path, monkeypatch)  # the smoke run has no temperature
    temps = {"custom_cnn": {"temperature": 0.61}, "mobilenetv2": {"temperature": 0.63}}
    (run / "calibration.json").write_text(json.dumps({"models": temps}))
    ece = json.loads((run / "custom_cnn" / "metrics.json").read_text())["ece"]
    at = _app("predict")
    at.file_uploader(key="uploads").set_value([(*_test_image(smoke_run), "image/png")]).run()
    _ok(at)
    card = at.get_by_key("predict_card_0")
    line = next(c.value for c in card.caption if c.value.startswith("Percentages temperature"))
    assert all(f"T = {e['temperature']:.2f}" in line for e in temps.values()), line
    assert "run high" in line and f"Custom CNN T = 0.61, ECE {ece:.3f}" in line
    assert pd.read_csv(io.BytesIO(downloads["predict_csv"]))["probabilities"].tolist() == [line]
    assert "temperature-scaled" in " ".join(_pdf_text(downloads["predict_pdf_0"]).split())


def test_a_fusion_method_s_layer_caption_names_the_layers_fused(artifacts: Path, smoke_run: Path,
                                                                 monkeypatch: pytest.MonkeyPatch):
    """h64's review: under "Multi-layer LayerCAM (fusion)" the card and the PDF said "Layer:
    last conv block, 16×16", as if the map were that one layer's."""
    from pipeline.artifacts import open_run
    from pipeline.explain.cams import FUSION_STAGES
    from pipeline.explain.layers import stage_layers

    pdfs: list[bytes] = []
    _tap_downloads(monkeypatch, lambda data, kw: pdfs.append(data())
                   if kw.get("key") == "predict_pdf_0" else None)
    at = _app("predict")
    at.selectbox(key="predict_method").set_value("layercam-fusion").run()
    at.file_uploader(key="uploads").set_value([(*_test_image(smoke_run), "image/png")]).run()
    _ok(at)
    layers = [c for c in at.get_by_key("predict_card_0").caption if c.value.startswith("Layer")]
    run = open_run(smoke_run)
    assert len(layers) == len(run.model_names)
    for m, caption in zip(run.model_names, layers, strict=True):
        said = re.fullmatch(r"Layers: (\d) stages fused; deepest: (.+)", caption.value)
        assert said, caption.value
        deepest = re.search(r"`(.+)`", caption.proto.help).group(1)  # its technical name
        assert int(said[1]) == len(stage_layers(run.load_model(m), deepest, FUSION_STAGES)) > 1
    assert "stages fused; deepest: " in " ".join(_pdf_text(pdfs[-1]).split())
    at.selectbox(key="predict_method").set_value("layercam").run()  # one layer: its words
    _ok(at)
    layers = [c.value for c in at.get_by_key("predict_card_0").caption
              if c.value.startswith("Layer")]
    assert layers and not [c for c in layers if "fused" in c or c.startswith("Layers")], layers


# --------------------------------------------------------------------------- defaults, speed


def _choose(run: Path, choice: dict[str, str]) -> None:
    """An explain_choice.json giving each model its own method (at the manifest's layer)."""
    (run / "explain_choice.json").write_text(json.dumps(
        {"models": {m: {"method": method, "layer": None} for m, method in choice.items()}}))


def test_each_model_uses_its_own_default_method_until_one_is_picked(smoke_run, tmp_path,
                                                                     monkeypatch):
    """Issue: the second model was explained with the first model's chosen method."""
    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    _choose(run, {"custom_cnn": "layercam", "mobilenetv2": "hirescam"})
    at = _app("predict")
    box = at.selectbox(key="predict_method")
    assert box.value == "default"
    assert "Custom CNN: LayerCAM" in box.help and "MobileNetV2: HiResCAM" in box.help
    at.file_uploader(key="uploads").set_value([(*_test_image(smoke_run), "image/jpeg")]).run()
    _ok(at)
    captions = _captions(at)
    assert len(captions) == 2, captions
    cnn = next(c for c in captions if c.startswith("Custom CNN ·"))
    mnv2 = next(c for c in captions if c.startswith("MobileNetV2 ·"))
    assert "LayerCAM for" in cnn and "HiResCAM for" in mnv2, captions
    assert all("· this model's default" in c for c in captions), captions
    # and where the heat is, in words: the overlay's text equivalent
    assert all(re.search(r" · hottest at the image's (upper|middle|lower|centre)", c)
               for c in captions), captions
    # a picked method applies to both models, and the captions no longer say "default"
    at.selectbox(key="predict_method").set_value("gradcam").run()
    _ok(at)
    captions = _captions(at)
    assert all(" · Grad-CAM for" in c and "default" not in c for c in captions), captions
    # back to the defaults, but another layer for one model: that map is no longer its default
    # (the caption said so, and the two-heatmap rule took it for one)
    at.selectbox(key="predict_method").set_value("default").run()
    box = at.selectbox(key="predict_layer_custom_cnn")
    chosen = box.index
    box.select_index(0 if chosen else 1).run()
    _ok(at)
    assert at.selectbox(key="predict_layer_custom_cnn").index != chosen
    captions = _captions(at)
    cnn = next(c for c in captions if c.startswith("Custom CNN ·"))
    mnv2 = next(c for c in captions if c.startswith("MobileNetV2 ·"))
    assert "LayerCAM for" in cnn and "default" not in cnn, captions
    assert "· this model's default" in mnv2, captions


def test_a_default_heatmap_says_its_test_record_for_the_class_it_explains(artifacts: Path,
                                                                          smoke_run: Path):
    """Under each default heatmap, how often that model's default maps of the class found the
    tumour on the run's test images, counted from its explanations.json (the phantoms' masks
    are drawn tumours: "mask"); gone once another method is picked."""
    from dashboard import figures as F
    from dashboard.figures.quality_text import class_pointing_counts

    counts = {m: class_pointing_counts(json.loads(
        (smoke_run / m / "explanations.json").read_text())["rows"])
        for m in ("custom_cnn", "mobilenetv2")}
    both = sorted(set(counts["custom_cnn"]) & set(counts["mobilenetv2"]))
    assert both, counts  # the smoke run scores its tumour phantoms' masks
    at = _app("predict")
    at.file_uploader(key="uploads").set_value([(*_test_image(smoke_run), "image/jpeg")]).run()
    at.selectbox(key="predict_target").set_value(both[0]).run()
    _ok(at)
    records = [c.value for c in at.caption if c.value.startswith("Test record of these")]
    shown = F.class_name(both[0])
    assert records == [f"Test record of these heatmaps for '{shown}': peak in the mask {h} of "
                       f"{n} times ({h / n:.0%})"
                       for h, n in (counts[m][both[0]] for m in ("custom_cnn", "mobilenetv2"))]
    at.selectbox(key="predict_method").set_value("layercam").run()
    _ok(at)
    assert not [c for c in at.caption if c.value.startswith("Test record of these")]


def test_uploads_survive_a_visit_to_another_page(artifacts: Path, smoke_run: Path):
    """Issue: leaving Predict and coming back lost the uploads (Streamlit drops the state of a
    widget a run does not draw)."""
    first, second = _test_image(smoke_run, 0), _test_image(smoke_run, 1)
    at = _app("predict")
    at.file_uploader(key="uploads").set_value([(*first, "image/jpeg")]).run()
    assert len(_captions(at)) == 2
    at.switch_page(PAGES["overview"][0]).run()
    at.switch_page(PAGES["predict"][0]).run()
    _ok(at)
    assert len(_captions(at)) == 2  # the same file, explained again from the kept bytes
    assert f"1. {first[0]}" in _texts(at.text)
    assert "kept from your earlier visit" in _texts(at.caption)
    assert not any("uploads are gone" in w.value for w in at.warning)
    # its results come from the result store: it was analysed earlier, not "in 0.00 s"
    assert "1 of 1 file(s) analysed earlier on this server (it took " in _texts(at.caption)
    assert "analysed in 0.00 s" not in _texts(at.caption)
    # a rerun that keeps the uploader empty keeps showing them
    at.slider(key="predict_alpha").set_value(0.7).run()
    assert len(_captions(at)) == 2
    assert "analysed earlier" in _texts(at.caption)
    # new uploads replace the kept ones
    at.file_uploader(key="uploads").set_value([(*second, "image/jpeg")]).run()
    _ok(at)
    assert len(_captions(at)) == 2 and first[0] not in _texts(at.text)
    assert f"**{second[0]}**" in _shown(at).replace("`", "")
    # removing the files with the uploader forgets them: nothing comes back
    at.file_uploader(key="uploads").set_value([]).run()
    at.switch_page(PAGES["overview"][0]).run()
    at.switch_page(PAGES["predict"][0]).run()
    _ok(at)
    assert not _captions(at)
    # and kept files can be forgotten with their button
    at.file_uploader(key="uploads").set_value([(*first, "image/jpeg")]).run()
    at.switch_page(PAGES["overview"][0]).run()
    at.switch_page(PAGES["predict"][0]).run()
    assert len(_captions(at)) == 2
    at.button(key="predict_forget_uploads").click().run()
    _ok(at)
    assert not _captions(at) and "kept from" not in _texts(at.caption)


def test_script_runs_keep_the_keras_session(artifacts: Path, smoke_run: Path,
                                            monkeypatch: pytest.MonkeyPatch):
    """Streamlit cleared Keras' session after every script run: a full garbage collection
    (about a second with TensorFlow loaded) after each upload and widget change."""
    import keras

    calls: list[int] = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: calls.append(1))
    at = _app("predict")
    at.file_uploader(key="uploads").set_value([(*_test_image(smoke_run), "image/jpeg")]).run()
    at.slider(key="predict_alpha").set_value(0.6).run()
    _ok(at)
    assert len(_captions(at)) == 2  # the shared models still work
    assert calls == []


def _page_waiting_for_models(path: str) -> None:
    """An AppTest page that waits for run `path`'s models, as Predict does with an upload."""
    from dashboard import loader
    from pipeline.artifacts import open_run

    loader.models(open_run(path))


def test_the_model_load_spinner_says_how_long_and_counts_the_seconds(
        smoke_run, tmp_path, monkeypatch):
    """The spinner an upload waits behind while the models load: its words (`LOAD_TIME_WORDS`:
    a presenter waited 21-28 s with no idea how long) and its timer, as the browser gets them
    (the spinner's message), had no test of their own."""
    import threading

    from streamlit.elements import spinner as spinner_module
    from streamlit.testing.v1 import AppTest

    from dashboard import loader

    sent: list = []  # every spinner the page sent
    shown = threading.Event()
    real_enqueue = spinner_module.enqueue_message

    def spy(msg):  # noqa: ANN001, ANN202
        sent.extend(e.spinner for e in msg.delta.new_transient.elements if e.HasField("spinner"))
        if sent:
            shown.set()
        return real_enqueue(msg)

    real_build = loader.build_models

    def after_the_spinner(path: str, warm: bool = True):  # noqa: ANN202
        # the models are ready only once the spinner is on the page (Streamlit shows one after
        # half a second): the test does not depend on how fast this machine loads them
        shown.wait(60)
        return real_build(path, warm)

    monkeypatch.setattr(spinner_module, "enqueue_message", spy)
    monkeypatch.setattr(loader, "build_models", after_the_spinner)
    run = _copy_run(smoke_run, tmp_path, monkeypatch)  # a run whose models no test has loaded
    at = AppTest.from_function(_page_waiting_for_models, args=(str(run),),
                               default_timeout=TIMEOUT).run()
    _ok(at)
    loading = [s for s in sent if "Loading this run's models" in s.text]
    assert len(loading) == 1, [s.text for s in sent]
    assert f"({loader.LOAD_TIME_WORDS};" in loading[0].text
    assert re.fullmatch(r"usually \d+-\d+ s on a \d+-core machine", loader.LOAD_TIME_WORDS)
    assert loading[0].show_time  # the seconds counted beside the words
    assert loader.LOAD_TIME_WORDS in loader.LOADING_NOTE  # the background note says it alike


def test_the_loading_note_is_drawn_above_the_uploader(smoke_run, tmp_path, monkeypatch):
    """It was the page's last element: at 1366×768 it sat below the screen, and a presenter saw
    no sign of the 20 s load (a review). Its place is kept near the top and filled there."""
    from dashboard import loader

    def note_only(run, note=None):  # noqa: ANN001, ANN202 (the note, without the wait)
        (note if note is not None else st.empty()).caption(loader.LOADING_NOTE)

    import streamlit as st

    monkeypatch.setattr(loader, "wait_for_models", note_only)
    monkeypatch.setattr(loader, "models", lambda run, wait=True: (None, None))
    _copy_run(smoke_run, tmp_path, monkeypatch)
    at = _app("predict")
    _ok(at)
    def walk(node):  # noqa: ANN001, ANN202 (the page's elements in the order drawn)
        for child in getattr(node, "children", {}).values():
            yield child
            yield from walk(child)

    drawn = list(walk(at.main))
    uploader = at.get_by_key("uploads")
    note = next(k for k, e in enumerate(drawn)
                if loader.LOADING_NOTE in str(getattr(e, "value", "")))
    assert note < next(k for k, e in enumerate(drawn) if e is uploader), [
        type(e).__name__ for e in drawn]


def test_first_visit_to_predict_loads_the_models_without_a_timer_fragment(
        smoke_run, tmp_path, monkeypatch):
    """The page draws the uploader, then waits for the models at its end and reruns once; no
    `run_every` fragment takes part (one that went away left a blank browser page in CI)."""
    import streamlit as st

    from dashboard import loader
    from pipeline.artifacts import open_run

    timers: list[float] = []
    real = st.fragment

    def spy(func=None, *, run_every=None, **kw):
        if run_every is not None:
            timers.append(run_every)
        return real(func, run_every=run_every, **kw) if func else real(run_every=run_every, **kw)

    monkeypatch.setattr(st, "fragment", spy)
    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    stamp = loader.models_stamp(open_run(run))
    assert loader.model_loader().request(str(run), stamp, start=False) is None
    at = _app("predict")
    _ok(at)
    assert at.get_by_key("uploads") is not None
    assert loader.model_loader().request(str(run), stamp, start=False).done()
    assert loader.LOADING_NOTE not in _texts(at.caption)  # the rerun after loading dropped it
    at.file_uploader(key="uploads").set_value([(*_test_image(smoke_run), "image/jpeg")]).run()
    _ok(at)
    assert len(_captions(at)) == 2
    assert timers == []
    # modules imported once (the loader) are not re-run by AppTest: read their source too
    dashboard = Path(__file__).resolve().parents[1] / "dashboard"
    assert not [p.name for p in dashboard.rglob("*.py") if "run_every" in p.read_text()]


# --------------------------------------------------------------------------- OOD score (train)


def test_a_pure_noise_upload_is_flagged_unlike_the_training_data(
        artifacts: Path, smoke_run: Path, monkeypatch: pytest.MonkeyPatch):
    """`train` fitted the score, so a fresh run flags a noise image on the Predict page with no
    extra command; its MRI test image is judged against the same stored threshold.

    A reviewer found colour noise answered "no tumour" under a green "models agree" badge, with
    "its test answers on images flagged so were right 100% of the time" beside it, which read as
    reassurance: a colour image is now said to be no MRI, the badge is not green beside a
    warning, no flagged-test statistic is quoted for "unlike", and the CSV keeps the warnings."""
    import pandas as pd

    from dashboard.flags import COLOUR_WARNING
    from pipeline.ood import load_run_ood

    assert all(load_run_ood(smoke_run, m) for m in ("custom_cnn", "mobilenetv2"))
    downloads: dict[str, bytes] = {}
    _tap_downloads(monkeypatch, lambda data, kw: downloads.__setitem__(
        kw.get("key"), data() if callable(data) else data))
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    at = _app("predict")
    at.file_uploader(key="uploads").set_value(
        [("noise.png", _encode(Image.fromarray(noise), "PNG"), "image/png"),
         (*_test_image(smoke_run), "image/png")]).run()
    _ok(at)
    cards = [[w.value for w in at.get_by_key(f"predict_card_{i}").warning] for i in (0, 1)]
    assert cards[0][0] == COLOUR_WARNING  # first, before the per-model warnings
    assert COLOUR_WARNING not in cards[1]  # a greyscale phantom, like an MRI slice
    for name in ("Custom CNN", "MobileNetV2"):  # colour noise is far from any MRI (`ood.FAR`)
        said = next(w for w in cards[0] if f"This image is far unlike {name}'s training" in w)
        assert "it may not be a brain MRI slice at all" in said
    assert "flagged so were right" not in _texts(at.warning)
    # a lecturer's review: "models agree" with a check mark on colour noise, then confident
    # answers and full heatmaps. The colour warning leads, no badge, the answers folded
    noise_card = at.get_by_key("predict_card_0")
    assert noise_card.warning[0].value == COLOUR_WARNING
    assert not [m.value for m in noise_card.markdown if "-badge[" in m.value]
    anyway = [e for e in noise_card.expander if e.label == "Show the answers anyway"]
    assert len(anyway) == 1
    assert [c for img in anyway[0].image for c in img.captions if " · " in c]  # the heatmaps
    assert any("Custom CNN: **" in m.value for m in anyway[0].markdown)  # the answers
    assert [m.value for m in at.get_by_key("predict_card_1").markdown if "-badge[" in m.value]
    # its report leads its flags with the colour warning, as the card does: the page is drawn
    # until full, and a review found "may not be MRI" counted away under "+ 5 more flags"
    text = " ".join(_pdf_text(downloads["predict_pdf_0"]).split())
    flags_at = text.find("Flags - ")
    assert flags_at >= 0 and text[flags_at + len("Flags - "):].startswith(
        "This is a colour image, and MRI slices are greyscale"), text[flags_at:flags_at + 300]
    frame = pd.read_csv(io.BytesIO(downloads["predict_csv"]))
    assert frame["n_warnings"].iloc[0] >= 3 and COLOUR_WARNING in frame["warnings"].iloc[0]
    assert COLOUR_WARNING not in str(frame["warnings"].iloc[1])


def test_models_agree_is_green_only_on_a_card_without_any_warning(
        artifacts: Path, smoke_run: Path, monkeypatch: pytest.MonkeyPatch):
    """A validation image both models answered alike got a green "models agree" over its
    "in this run's validation split" note (a presenter's review; README: green only without a
    warning). Agreement and the answers' flags are fixed here; the split note is the run's."""
    monkeypatch.setattr(views, "agreement",  # the card's (`answers.agreement`)
                        lambda probs: np.ones(len(next(iter(probs.values()))), bool))
    monkeypatch.setattr(card_flags, "image_flags", lambda results, j: ([], []))
    manifest = json.loads((smoke_run / "manifest.json").read_text())
    splits = json.loads((smoke_run / "splits.json").read_text())
    val = Path(manifest["data"]["dir"]) / splits["val"][0]["path"]
    at = _app("predict")
    at.file_uploader(key="uploads").set_value(
        [("val.png", val.read_bytes(), "image/png"), (*_test_image(smoke_run), "image/png")]
    ).run()
    _ok(at)
    badges = [[m.value for m in at.get_by_key(f"predict_card_{i}").markdown
               if "-badge[" in m.value] for i in (0, 1)]
    assert any("in this run's validation split" in i.value for i in at.info)
    assert len(badges[0]) == 1 and ":gray-badge[" in badges[0][0], badges
    assert len(badges[1]) == 1 and ":green-badge[" in badges[1][0], badges  # a test image


def test_overview_shows_the_ood_score_against_foreign_and_shifted_images(artifacts: Path,
                                                                         smoke_run: Path):
    report = json.loads((smoke_run / "ood.json").read_text())
    at = _app("overview")
    _ok(at)
    assert "How well \"unlike the training data\" tells images apart" in _texts(at.header)
    table = _frame(at, "Custom CNN AUROC").set_index("images")
    cnn = report["models"]["custom_cnn"]
    assert table.loc["foreign: noise", "Custom CNN AUROC"] == f"{cnn['auroc']['noise']:.3f}"
    shifted = table.loc["shifted: rician noise"]
    assert shifted["Custom CNN AUROC"] == f"{cnn['shift_auroc']['rician_noise']:.3f}"
    mnv2 = report["models"]["mobilenetv2"]
    assert shifted["MobileNetV2 flagged"] == f"{mnv2['shift_flagged']['rician_noise']:.0%}"
    assert sum(i.startswith("shifted: ") for i in table.index) == len(cnn["shift_auroc"])
    assert "middle severity" in _texts(at.caption)


def test_the_overview_tables_show_every_row_without_an_inner_scroll_box(
        artifacts: Path, monkeypatch: pytest.MonkeyPatch):
    """Streamlit's default table height shows at most ten rows and scrolls the rest inside a
    box; the OOD table has more (one per foreign kind and per shift), and a presenter scrolled
    inside it. Every overview table is drawn at its content's height. AppTest does not expose
    an element's height, so the calls are recorded."""
    import streamlit

    calls: list[tuple[str, int, object]] = []
    real, real_table = streamlit.dataframe, streamlit.table

    def recording(data=None, *args, **kwargs):
        calls.append((kwargs.get("key"), len(data), kwargs.get("height", "auto")))
        return real(data, *args, **kwargs)

    def recording_table(data=None, *args, **kwargs):
        columns = list(getattr(data, "columns", []))
        rows = len(getattr(data, "data", data))  # a Styler (a chart's numbers) holds its frame
        calls.append(("ood_table" if "Custom CNN AUROC" in columns else "table", rows,
                      kwargs.get("height", "content")))  # st.table: its content's height
        return real_table(data, *args, **kwargs)

    monkeypatch.setattr(streamlit, "dataframe", recording)
    monkeypatch.setattr(streamlit, "table", recording_table)
    at = _app("overview")
    _ok(at)
    by_key = {key: (n, height) for key, n, height in calls}
    assert by_key["ood_table"][0] > 10, by_key  # the table that once scrolled
    assert {"model_facts", "metrics_table", "ood_table"} <= set(by_key), by_key
    # a chart's numbers (`charts.numbers`) scroll only where they are a curve's hundreds of points
    from dashboard.charts import NUMBERS_ROWS

    assert all(height == "content" for key, (n, height) in by_key.items()
               if not str(key).endswith("_numbers_table")), by_key
    assert all(n > NUMBERS_ROWS for key, (n, _) in by_key.items()
               if str(key).endswith("_numbers_table")), by_key


def test_a_run_s_manifest_text_is_shown_as_text(smoke_run: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch):
    """A manifest's run id holding a backtick broke out of its code span: the Overview and
    About pages fetched an image from a URL in it and drew a bold fake verdict."""
    import shutil

    from dashboard import core

    hostile = "x` ![t](http://127.0.0.1:9/track.png) **FAKE VERDICT** `y"
    run = tmp_path / "runs" / smoke_run.name
    shutil.copytree(smoke_run, run)
    (tmp_path / "latest").write_text(smoke_run.name)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["run_id"] = hostile
    manifest["data"]["layout"] = "sartaj **L** `q`"
    (run / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("BRAIN_MRI_ARTIFACTS", str(tmp_path))
    at = _app("overview")
    _ok(at)
    assert any(c.value.startswith(f"Run {core.literal(hostile)} · ") for c in at.caption)
    layout = core.literal("sartaj **L** `q`")
    assert any(f"({layout} layout)" in c.value for c in at.caption), [c.value for c in at.caption]
    at = _app("about")
    _ok(at)
    assert f"This run: {core.literal(hostile)}" in [h.value for h in at.header]


def test_same_source_figures_say_where_to_see_another_source(smoke_run, tmp_path, monkeypatch):
    """The overview's headline figures are on images from the training images' sources; a
    clinician read them as the tool's accuracy. A run tested on the official Testing/ folder
    (another source mix) does not need the pointer."""
    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    pointer = "pick an 'Official Testing split' run in the sidebar"
    at = _app()
    _ok(at)
    assert pointer in _texts(at.caption)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["splits"]["official_test"] = {"n": 10, "leaking": 0}
    (run / "manifest.json").write_text(json.dumps(manifest))
    at = _app()
    _ok(at)
    assert pointer not in _texts(at.caption)
    # the phantoms' own test folder: not told the Sartaj Testing/ folder's story
    assert "the dataset's own test folder, kept apart from training" in _texts(at.caption)
    assert "this project's training recipes were chosen" not in _texts(at.caption)
    from pipeline.known_data import SARTAJ_FINGERPRINTS

    manifest["data"]["fingerprint"] = next(iter(SARTAJ_FINGERPRINTS))  # a run on that data
    (run / "manifest.json").write_text(json.dumps(manifest))
    at = _app()
    _ok(at)
    assert "the dataset's own Testing/ folder: this project's training recipes were chosen" in (
        _texts(at.caption))


def test_a_slice_that_looks_like_ct_says_so(artifacts):
    """A CT slice got "no tumour", models agreeing, and no warning at all (a clinician's review,
    2026-12-05): the card now says it may be CT, first among its warnings."""
    from test_modality import _head

    from dashboard.flags import CT_WARNING

    ct = _head(rim=255, rim_width=12, band=110, band_width=0, white=115)
    mri = _head(rim=255, rim_width=12, band=45, band_width=6)
    files = []
    for name, img in (("ct.png", ct), ("mri.png", mri)):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "PNG")
        files.append((name, buf.getvalue(), "image/png"))
    at = _app("predict")
    at.file_uploader(key="uploads").set_value(files).run()
    _ok(at)
    warned = [w.value for w in at.warning if w.value == CT_WARNING]
    assert len(warned) == 1  # the CT phantom's card, not the MRI one's


@pytest.mark.data
def test_a_slice_that_looks_like_t2_or_flair_says_so(smoke_run, real_data, tmp_path,
                                                     monkeypatch):
    """The shipped models called most of Testing/'s T2 and FLAIR gliomas "no tumour" or
    meningioma with no warning: the card of such a slice now says it may be T2 or FLAIR (on a
    copy of the smoke run without the far level, which real MRI may reach against phantoms)."""
    from test_sequence import _two_slices, _weights, run_without_far

    from dashboard.flags import t2_warning

    _weights()
    monkeypatch.setenv("BRAIN_MRI_ARTIFACTS", str(tmp_path / "artifacts"))
    run_without_far(smoke_run, tmp_path / "artifacts")
    files = [(p.name, p.read_bytes(), "image/jpeg") for p in _two_slices(real_data)]
    at = _app("predict")
    at.file_uploader(key="uploads").set_value(files).run()
    _ok(at)
    warned = [w.value for w in at.warning if w.value.startswith(t2_warning())]
    assert len(warned) == 1  # the T2 slice's card, not the T1 one's


def test_the_overview_defines_its_figures(artifacts):
    at = _app()
    _ok(at)
    glossary = [e for e in at.expander if e.label == "What these figures mean"]
    assert len(glossary) == 1
    assert "**McNemar exact test**" in _texts(glossary[0].markdown)


def test_a_photo_of_a_screen_says_so(artifacts):
    """A phone photo of an MRI on a monitor got a confident answer with no warning of its kind:
    its card now says it looks like a photo of a screen, and a grey slice's card does not."""
    from test_modality import _head

    from dashboard.flags import PHOTO_WARNING
    from pipeline.synth.photo import screen_photo

    mri = _head(rim=255, rim_width=12, band=45, band_width=6)
    photo = screen_photo(mri, np.random.default_rng(3), 0.3, "warm")
    files = []
    for name, img, fmt in (("photo.jpg", photo, "JPEG"), ("mri.png", mri, "PNG")):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, fmt)
        files.append((name, buf.getvalue(), f"image/{fmt.lower()}"))
    at = _app("predict")
    at.file_uploader(key="uploads").set_value(files).run()
    _ok(at)
    warned = [w.value for w in at.warning if w.value == PHOTO_WARNING]
    assert len(warned) == 1  # the photo's card, not the grey slice's


def test_error_analysis_names_a_predictions_file_cut_short(smoke_run, tmp_path, monkeypatch):
    """A predictions.csv cut mid-row gave "errors 2 · both wrong 2" for both models, with no
    warning (review 4, finding 2): the file is named, with the command that rebuilds it, and
    the other model's counts are its own file's."""
    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    path = run / "custom_cnn" / "predictions.csv"
    path.write_bytes(path.read_bytes()[:250])
    at = _app("errors")
    _ok(at)
    warned = _texts(at.warning)
    assert (f"damaged file runs/{run.name}/custom_cnn/predictions.csv: its last row is cut "
            "short (no line end)") in warned, warned
    assert f"To fix: run `python -m pipeline evaluate --run {run.name}`" in warned, warned


def test_a_damaged_check_file_turns_off_that_check_not_the_model(smoke_run, tmp_path,
                                                                 monkeypatch):
    """A damaged ood.npz or calibration.json disabled whole models ("cannot be used" … "To fix:
    retrain the run"), one model's bad temperature both (review 4, finding 7): each model still
    answers; one warning names the damaged file and the command that refits it."""
    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    (run / "calibration.json").write_text(json.dumps(
        {"models": {"custom_cnn": {"temperature": "x"}, "mobilenetv2": {"temperature": 0.63}}}))
    ood = run / "mobilenetv2" / "ood.npz"
    ood.write_bytes(ood.read_bytes()[:300])
    at = _app("errors")
    _ok(at)
    assert "cannot be used" not in _texts(at.error), _texts(at.error)
    warned = _texts(at.warning)
    assert ("- Custom CNN: probabilities not calibrated and no answer is marked weak (damaged "
            "calibration.json: custom_cnn has no positive temperature (got 'x')); "
            f"`python -m pipeline calibrate --run {run.name}` adds it") in warned, warned
    assert ("- MobileNetV2: no image is marked unlike the training data (damaged ood.npz: not "
            f"a numpy archive); `python -m pipeline ood --run {run.name}` adds it") in warned
    assert "retrain" not in warned + _texts(at.error)


def test_a_card_shows_both_models_together(smoke_run: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch):
    """The models' answers pooled (`evaluate.together`), with the pool's temperature from
    calibration.json: the verdict line's last part, with what it is and the run's record in the
    line's tooltip. Not a table row: that and a caption pushed the heatmaps below 720 px."""
    import pandas as pd

    from dashboard.records import TOGETHER_HELP
    from pipeline.artifacts import open_run
    from pipeline.evaluate import together
    from pipeline.images import decode_image
    from pipeline.names import percent
    from pipeline.predict import Predictor

    downloads: dict[str, bytes] = {}
    _tap_downloads(monkeypatch, lambda data, kw: downloads.__setitem__(
        kw.get("key"), data() if callable(data) else data)
        if kw.get("key") in ("predict_csv", "predict_pdf_0") else None)
    run = _copy_run(smoke_run, tmp_path, monkeypatch)
    cal = {"models": {"custom_cnn": {"temperature": 0.61}, "mobilenetv2": {"temperature": 0.63}},
           "together": {"temperature": 0.5}}
    (run / "calibration.json").write_text(json.dumps(cal))
    predictor = Predictor(open_run(run))  # the probabilities the card shows, unrounded
    probs = predictor.predict_images([decode_image(_test_image(smoke_run)[1])])
    want = together.combine(probs, 0.5)[0]
    # the pool's weak threshold just above its answer: said weak on the line
    below = float(want.max()) + 0.005
    cal["together"]["low_confidence_below"] = below
    (run / "calibration.json").write_text(json.dumps(cal))
    at = _app("predict")
    at.file_uploader(key="uploads").set_value([(*_test_image(smoke_run), "image/png")]).run()
    _ok(at)
    card = at.get_by_key("predict_card_0")
    top = class_label(open_run(run).class_names[int(want.argmax())])
    verdict = next(m for m in card.markdown if m.value.startswith("Custom CNN: **"))
    # the answer in bold, then its percentage (", tied with ..." where another rounds alike)
    assert f" · {together.LABEL}: **{top}** ({percent(want.max())}" in verdict.value, verdict.value
    # said weak (the upload is the run's own test image: each answer is marked right or wrong)
    # (and "neither model's answer" where the tiny models' pool lands on a third class)
    said = verdict.value.split(together.LABEL)[1]
    assert ", weak)" in said or ", weak, neither model's answer)" in said, verdict.value
    record = json.loads((run / "comparison.json").read_text())[together.KEY]
    assert verdict.proto.help == (
        f"{TOGETHER_HELP}\n\nSaid weak below {percent(below)}: on validation images its "
        f"answers that unsure were right less than 90% of the time.\n\n"
        f"{together.words(record)}")
    table = next(m.value for m in card.markdown if m.value.startswith("| probability |"))
    assert together.LABEL not in table and table.count("**") == 4  # the models' rows only
    # the CSV download has it as `predict --out` would: averaged_* after the models' columns
    frame = pd.read_csv(io.BytesIO(downloads["predict_csv"]))
    classes = open_run(run).class_names
    assert frame["averaged_predicted"].tolist() == [classes[int(want.argmax())]]
    np.testing.assert_allclose([frame[f"averaged_p_{c}"][0] for c in classes], want, atol=6e-5)
    # and the PDF page: a last column of the probability table, the record under it
    pdf = " ".join(_pdf_text(downloads["predict_pdf_0"]).split())
    assert together.LABEL in pdf and f"{percent(want.max())} (answer, weak)" in pdf
    assert " ".join(together.words(record).split()) in pdf


def test_the_draw_note_says_a_sartaj_run_s_no_tumour_images_include_ct(smoke_run: Path,
                                                                        tmp_path: Path,
                                                                        monkeypatch):
    """A presenter drew no-tumour slices whose answers were hidden as "may be CT" about one
    draw in four, with no word of why: on a run trained on the Sartaj data the picker says so;
    on any other run (the phantoms') it says nothing of that data."""
    import shutil

    from dashboard.about_text import SARTAJ_DRAW_NOTE
    from pipeline.known_data import SARTAJ_FINGERPRINTS

    for sartaj in (False, True):
        adir = tmp_path / f"art-{sartaj}"
        run = adir / "runs" / smoke_run.name
        shutil.copytree(smoke_run, run)
        (adir / "latest").write_text(smoke_run.name + "\n")
        if sartaj:
            manifest = json.loads((run / "manifest.json").read_text())
            manifest["data"]["fingerprint"] = next(iter(SARTAJ_FINGERPRINTS))
            (run / "manifest.json").write_text(json.dumps(manifest))
        monkeypatch.setenv("BRAIN_MRI_ARTIFACTS", str(adir))
        at = _app("predict")
        _ok(at)
        said = _texts(at.caption)
        assert "Images this run's models never trained on." in said
        assert (SARTAJ_DRAW_NOTE in said) == sartaj, said
