"""explain's captioned overlays: enlarged, with a strip saying what they show (model, answer,
method and explained class, colour scale, disclaimer); --bare writes the plain overlay of
before; a folder never mixes the two (pipeline/explain/render.py, pipeline/explain/overlays.py,
pipeline/explain/overlay_text.py, pipeline/explain/batch.py)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline.explain.render import (
    CAPTION_BACKGROUND,
    CAPTION_MIN_SIDE,
    captioned_overlay,
    heatmap_to_rgb,
    render_overlay,
)
from pipeline.geometry import prepare_image
from pipeline.names import DISCLAIMER

MODEL = "custom_cnn"
LINES = ["Custom CNN answers 'glioma' (92%)", "Heatmap: Grad-CAM for 'glioma'"]


def _phantom(synth_data: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A real test phantom as a model sees it, and its tumour mask (blurred) as the heatmap."""
    src = sorted(synth_data.glob("Testing/glioma*/*.png"))[0]
    img = prepare_image(np.asarray(Image.open(src).convert("RGB")), size, crop=False)
    mask = np.asarray(Image.open(synth_data / "masks" / src.relative_to(synth_data))
                      .convert("L").resize((size, size)), np.float32) / 255.0
    return img, cv2.GaussianBlur(mask, (0, 0), size / 16)


def _read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _strip_checks(picture: np.ndarray, width: int) -> None:
    """The strip under a `width`-square overlay: text drawn, the colour scale's own colours,
    and nothing in the right-hand margin (the text wraps inside the width)."""
    strip = picture[width:]
    background = np.all(strip == CAPTION_BACKGROUND, axis=-1)
    assert (~background).mean() > 0.05  # text and the scale, not an empty band
    top = strip[: strip.shape[0] // 3]  # the caption's lines, above the scale
    assert (~np.all(top == CAPTION_BACKGROUND, axis=-1)).sum() > 500
    colours = {tuple(c) for c in strip.reshape(-1, 3)}
    ends = heatmap_to_rgb(np.array([[0.0, 0.5, 1.0]], np.float32))[0]
    assert {tuple(c) for c in ends} <= colours  # low, middle and high of the overlay's colormap
    assert background[:, -round(8 * width / CAPTION_MIN_SIDE):].all()


@pytest.mark.parametrize("size", [128, 224])
def test_a_captioned_overlay_is_enlarged_above_a_strip(synth_data: Path, size: int):
    img, heatmap = _phantom(synth_data, size)
    picture = captioned_overlay(img, heatmap, LINES, DISCLAIMER)
    height, width, _ = picture.shape
    assert width == CAPTION_MIN_SIDE and height > width + 60, picture.shape
    _strip_checks(picture, width)
    # the picture above the strip is the overlay itself, only larger
    bare = render_overlay(img, heatmap)
    enlarged = cv2.resize(bare, (width, width), interpolation=cv2.INTER_CUBIC)
    assert np.abs(picture[:width].astype(int) - enlarged).mean() < 4
    # a larger image is not shrunk, and a longer caption wraps into more rows, never wider
    big = captioned_overlay(cv2.resize(img, (600, 600)), heatmap, LINES, DISCLAIMER)
    assert big.shape[1] == 600
    long = captioned_overlay(img, heatmap, [LINES[0] + " and much more" * 6], DISCLAIMER)
    assert long.shape[1] == width and long.shape[0] > height


def test_the_caption_states_the_answer_and_the_explained_class():
    from pipeline.explain.overlay_text import overlay_caption

    entry = {"predicted": "no_tumor", "target": "glioma", "method": "layercam-fusion",
             "probs": {"glioma": 0.3, "no_tumor": 0.7}}
    assert overlay_caption("mobilenetv2", entry) == [
        "MobileNetV2 answers 'no tumour' (70%)",
        "Heatmap: Multi-layer LayerCAM (fusion) for 'glioma'",
        "Warning: \"no tumour\" is no rule-out"]  # as on the dashboard's card
    # never "(1.00)": a clinician read it as certainty (the dashboard's ">99%")
    sure = {**entry, "probs": {"glioma": 0.003, "no_tumor": 0.997}}
    assert overlay_caption("mobilenetv2", sure)[0] == "MobileNetV2 answers 'no tumour' (>99%)"
    # an overlay travels without the console's lines: its warnings go with it
    warned = {**entry, "method": "scorecam", "colour": True, "weak": False, "unlike": True,
              "outside_head_flag": True}
    assert overlay_caption("mobilenetv2", warned)[1:] == [
        "Heatmap: Score-CAM for 'glioma'",
        "Warning: a colour image, not a greyscale MRI; \"no tumour\" is no rule-out; unlike the "
        "training data; evidence mostly outside the head"]
    # an image that may be no MRI: its answer is "shown anyway", as on the PDF page, whose card
    # hides it (a clinician's review found a CT slice's confident answer leading an overlay)
    assert overlay_caption("mobilenetv2", warned)[0] == (
        "Shown anyway (a colour image, not a greyscale MRI): MobileNetV2 answers 'no tumour' "
        "(70%)")
    assert overlay_caption("mobilenetv2", entry, may_be_ct=True)[0] == (
        "Shown anyway (may be CT, not MRI): MobileNetV2 answers 'no tumour' (70%)")
    # where the heat peaks, as the dashboard's cards say it (explain.json "peak")
    assert overlay_caption("mobilenetv2", {**entry, "peak": "upper left"})[1] == (
        "Heatmap: Multi-layer LayerCAM (fusion) for 'glioma', hottest at the image's upper left")
    # the models' disagreement goes with each model's overlay too (explain never said it)
    assert overlay_caption("mobilenetv2", entry, disagree=True)[-1] == (
        "Warning: \"no tumour\" is no rule-out; the models disagree")


@pytest.fixture(scope="module")
def inputs(synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("caption-in")
    srcs = sorted(synth_data.glob("Testing/*/*.png"))[::9][:2]
    for k, src in enumerate(srcs):
        (root / f"{k}.png").write_bytes(src.read_bytes())
    return sorted(root.glob("*.png"))


def _explain(smoke_run: Path, out: Path, inputs: list[Path], *extra: str):
    from typer.testing import CliRunner

    from pipeline.cli import app

    return CliRunner().invoke(app, ["explain", "--run", str(smoke_run), "--model", MODEL,
                                    "--method", "gradcam", "--out", str(out), *extra,
                                    *map(str, inputs)])


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    from helpers import stderr_lines

    lines = stderr_lines(result.stderr)
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.slow
def test_bare_writes_todays_overlay_and_a_folder_never_mixes_the_two(
        smoke_run: Path, inputs: list[Path], tmp_path: Path):
    from pipeline.artifacts import crop_head, open_run
    from pipeline.explain import Explainer

    bare, captioned = tmp_path / "bare", tmp_path / "captioned"
    done = _explain(smoke_run, bare, inputs, "--bare")
    assert done.exit_code == 0, done.output
    done = _explain(smoke_run, captioned, inputs)
    assert done.exit_code == 0, done.output
    reports = {d: json.loads((d / "explain.json").read_text()) for d in (bare, captioned)}
    assert reports[bare]["caption"] is False and reports[captioned]["caption"] is True
    names = {d: sorted(p.name for p in d.glob("*.png")) for d in (bare, captioned)}
    assert names[bare] == names[captioned] and len(names[bare]) == len(inputs)

    # --bare: exactly render_overlay of the model's input and heatmap, as explain wrote before
    run = open_run(smoke_run)
    info = run.model_info(MODEL)
    size, crop = int(info["image_size"]), crop_head(info)
    explainer = Explainer(run.load_model(MODEL), info["gradcam_layer"])
    x = np.stack([prepare_image(np.asarray(Image.open(p).convert("RGB")), size, crop=crop)
                  for p in inputs])
    ex = explainer(x, method="gradcam")
    for i, row in enumerate(reports[bare]["images"]):
        got = _read_png(bare / row["models"][MODEL]["overlay"])
        assert got.shape == (size, size, 3)
        assert np.abs(got.astype(int) - render_overlay(x[i], ex.heatmaps[i])).max() <= 1
    for row in reports[captioned]["images"]:
        entry = row["models"][MODEL]
        picture = _read_png(captioned / entry["overlay"])
        assert picture.shape[1] >= CAPTION_MIN_SIDE and picture.shape[0] > picture.shape[1]
        _strip_checks(picture, picture.shape[1])

    # resuming into the other kind of folder: refused in one line, nothing touched
    before = {d: {p.name: p.read_bytes() for p in d.iterdir()} for d in (bare, captioned)}
    refused = _explain(smoke_run, bare, inputs)
    assert "overlays bare (--bare) then, captioned now" in _one_error_line(refused)
    refused = _explain(smoke_run, captioned, inputs, "--bare")
    assert "overlays captioned then, bare (--bare) now" in _one_error_line(refused)
    assert {d: {p.name: p.read_bytes() for p in d.iterdir()} for d in (bare, captioned)} == before

    # a folder written before captions existed holds bare overlays: --bare continues it
    old = reports[bare].copy()
    del old["caption"]
    (bare / "explain.json").write_text(json.dumps(old))
    refused = _explain(smoke_run, bare, inputs)
    assert "overlays bare (--bare) then, captioned now" in _one_error_line(refused)
    again = _explain(smoke_run, bare, inputs, "--bare")
    assert again.exit_code == 0 and "2 already done, skipped" in again.stdout, again.output


def test_the_caption_names_the_class_folder_of_a_run_whose_folders_had_other_names():
    """"answers 'no tumour'" on a run trained on `Healthy/`: the caption says the folder, as
    explain's lines do; a run whose folders are named as its classes is captioned as before."""
    from pipeline.explain.overlay_text import overlay_caption

    entry = {"predicted": "no_tumor", "target": "glioma", "method": "gradcam",
             "probs": {"glioma": 0.3, "no_tumor": 0.7}}
    before = overlay_caption("custom_cnn", entry)
    assert overlay_caption("custom_cnn", entry, folders={}) == before
    assert overlay_caption("custom_cnn", entry, folders={"pituitary": ["Hypofyse"]}) == before
    renamed = overlay_caption("custom_cnn", entry, folders={"no_tumor": ["Gezond", "Healthy"],
                                                            "glioma": ["Glioom\n"]})
    assert renamed[:2] == [
        "Custom CNN answers 'no tumour' (class folders: Gezond, Healthy) (70%)",
        "Heatmap: Grad-CAM for 'glioma' (class folder: Glioom_)"]  # one line, as names are
    assert renamed[2:] == before[2:]


def test_the_dashboard_s_overlay_download_carries_the_caption_and_small_print():
    """The card's "Overlay PNG" was the bare 320 px overlay: no model, answer, colour scale or
    disclaimer, while `explain`'s picture of the same image carried them all (a lecturer's
    review). It is now `explain`'s caption and small print under the card's overlay."""
    from helpers import one_card

    from dashboard import views
    from pipeline.explain.overlay_text import OVERLAY_NOTE
    from pipeline.explain.render import caption_strip

    classes = ["glioma", "no_tumor"]
    results, upload = one_card([0.3, 0.7], low_below={"custom_cnn": 0.9}, ct=[True],
                               seen_split=["test"])
    card = np.full((320, 320, 3), 128, np.uint8)  # the card's overlay, box and all
    picture = views.captioned_picture(card, upload, 0, results, classes, "custom_cnn")
    assert picture.shape[1] == CAPTION_MIN_SIDE and picture.shape[0] > CAPTION_MIN_SIDE
    lines = ["Shown anyway (may be CT, not MRI): Custom CNN answers 'no tumour' (70%)",
             "Heatmap: Grad-CAM for 'glioma', hottest at the image's upper left",
             'Warning: may be CT, not MRI; "no tumour" is no rule-out; weak answer (low '
             'confidence)',
             "Note: in this run's test split (not trained on; other slices of the same "
             "patient may have been)"]
    strip = caption_strip(CAPTION_MIN_SIDE, lines, OVERLAY_NOTE)
    assert np.array_equal(picture[CAPTION_MIN_SIDE:], strip)
    assert DISCLAIMER in OVERLAY_NOTE and "not a lesion map" in OVERLAY_NOTE


def test_the_dashboard_s_overlay_download_names_a_renamed_class_folder():
    """`explain`'s captioned overlays named a run's class folder of another name ("'no
    tumour' (class folder: Healthy)"), the card's "Overlay PNG" did not (a review of
    2026-12-06): it now says what `explain` says of the same answer."""
    from helpers import captioned_with, card_download

    from pipeline.explain.overlay_text import overlay_caption

    folders = {"no_tumor": ["Healthy"]}
    picture, entry = card_download([0.3, 0.7], folders=folders)
    lines = overlay_caption("custom_cnn", entry, folders=folders)
    assert lines[0] == "Custom CNN answers 'no tumour' (class folder: Healthy) (70%)"
    assert captioned_with(picture, lines)
    plain, _ = card_download([0.3, 0.7])  # without the folders: the class alone
    assert not np.array_equal(plain, picture)
    assert captioned_with(plain, overlay_caption("custom_cnn", entry))


def test_the_dashboard_s_overlay_names_the_run_its_split_note_is_about():
    """A downloaded overlay travels without the page: its "in this run's training split" named
    no run. The card's download names it as the PDF does, "<title> (<run id>)" (`explain`'s
    overlays too: the next test)."""
    from helpers import one_card

    from dashboard import views
    from pipeline.explain.overlay_text import OVERLAY_NOTE, overlay_caption
    from pipeline.explain.render import caption_strip

    classes = ["glioma", "no_tumor"]
    title = "Deduplicated split (20261202-090129-8ee89a)"
    results, upload = one_card([0.8, 0.2], seen_split=["train"])
    card = np.full((320, 320, 3), 128, np.uint8)
    picture = views.captioned_picture(card, upload, 0, results, classes, "custom_cnn",
                                      run_title=title)
    entry = {"predicted": "glioma", "target": "glioma", "method": "gradcam",
             "probs": {"glioma": 0.8, "no_tumor": 0.2}, "peak": "upper left"}
    lines = overlay_caption("custom_cnn", entry, "train", True, run=title)
    assert lines[-1] == (f"Note: in the training split of run {title} (not a test of the "
                         "model)")
    assert np.array_equal(picture[CAPTION_MIN_SIDE:],
                          caption_strip(CAPTION_MIN_SIDE, lines, OVERLAY_NOTE))
    near = overlay_caption("custom_cnn", entry, "val", False, run=title)[-1]
    assert near == f"Note: a near copy: in the validation split of run {title} (not a test of " \
                   "the model)"
    assert overlay_caption("custom_cnn", entry, "train", True)[-1].startswith(
        "Note: in this run's training split")  # no run given: as before


@pytest.mark.slow
def test_explain_s_overlays_name_the_run_their_split_note_is_about(
        smoke_run: Path, tmp_path: Path, monkeypatch):
    """`explain`'s captioned overlays said "in this run's training split" after the dashboard's
    download had learnt to name the run: the picture travels without its explain.json too."""
    import json

    from pipeline.artifacts import open_run
    from pipeline.explain import overlays

    run = open_run(smoke_run)
    train = json.loads((smoke_run / "splits.json").read_text())["train"][0]["path"]
    captions: list[list[str]] = []
    real = overlays.overlay_caption
    monkeypatch.setattr(overlays, "overlay_caption",
                        lambda *a, **k: captions.append(real(*a, **k)) or captions[-1])
    done = _explain(smoke_run, tmp_path / "out", [run.data_dir / train])
    assert done.exit_code == 0, done.output
    assert captions and captions[0][-1].startswith(
        f"Note: in the training split of run {run.report_name}"), captions


def test_one_image_s_captioned_overlays_are_of_one_height():
    """The two models' captioned overlays of one image were 639 and 619 px tall (captions of
    different lengths): uneven side by side on a slide. The shorter is padded below, in the
    caption's background; a bare overlay of another width is left as it is."""
    from pipeline.explain.overlays import same_height

    tall = np.zeros((639, 448, 3), np.uint8)
    short = np.full((619, 448, 3), 7, np.uint8)
    out = same_height({"a": tall, "b": short})
    assert out["a"] is tall and out["b"].shape == tall.shape
    assert np.array_equal(out["b"][:619], short)
    assert (out["b"][619:] == np.array(CAPTION_BACKGROUND, np.uint8)).all()
    other = np.zeros((128, 128, 3), np.uint8)
    assert same_height({"a": tall, "b": other})["b"] is other


def test_a_larger_captioned_overlay_scales_its_caption_with_it(synth_data: Path):
    """`explain --size`: the picture at least that size, and the caption's text, scale and
    margins with it, so a slide's panel reads as the 448 px one does, larger."""
    from pipeline.explain.render import CAPTION_TEXT_PX, caption_strip

    img, heatmap = _phantom(synth_data, 128)
    small = captioned_overlay(img, heatmap, LINES, DISCLAIMER)
    big = captioned_overlay(img, heatmap, LINES, DISCLAIMER, min_side=2 * CAPTION_MIN_SIDE)
    assert small.shape[1] == CAPTION_MIN_SIDE and big.shape[1] == 2 * CAPTION_MIN_SIDE
    _strip_checks(big, 2 * CAPTION_MIN_SIDE)
    strips = [p[p.shape[1]:] for p in (small, big)]
    assert np.array_equal(strips[1], caption_strip(2 * CAPTION_MIN_SIDE, LINES, DISCLAIMER))

    def ink_rows(strip: np.ndarray) -> int:  # rows with the caption's dark text on them
        return int(np.any(np.all(strip < 120, axis=-1), axis=1).sum())
    # the same lines at twice the size: twice the strip and about twice the text's rows
    # (Pillow's glyphs round to whole pixels); CAPTION_TEXT_PX px text at 448
    assert strips[1].shape[0] == pytest.approx(2 * strips[0].shape[0], abs=8)
    assert ink_rows(strips[1]) == pytest.approx(2 * ink_rows(strips[0]), rel=0.15)
    assert CAPTION_TEXT_PX == 15


@pytest.mark.slow
def test_explain_size_writes_slide_sized_panels_and_keeps_a_folder_to_one_size(
        smoke_run: Path, inputs: list[Path], tmp_path: Path):
    import json

    from pipeline.artifacts import open_run
    from pipeline.explain.overlay_text import OVERLAY_NOTE, overlay_caption
    from pipeline.explain.render import caption_strip

    out = tmp_path / "slides"
    res = _explain(smoke_run, out, inputs[:1], "--size", "700")
    assert res.exit_code == 0, res.output
    report = json.loads((out / "explain.json").read_text())
    assert report["size"] == 700 and report["caption"] is True
    row = report["images"][0]
    entry = row["models"][MODEL]
    picture = _read_png(out / entry["overlay"])
    assert picture.shape[1] == 700
    lines = overlay_caption(MODEL, entry, row["in_run_split"], row["in_run_exact"],
                            may_be_ct=row["may_be_ct"], run=open_run(smoke_run).report_name)
    strip = caption_strip(700, lines, OVERLAY_NOTE)
    assert np.array_equal(picture[700:700 + strip.shape[0]], strip)
    # another size into the same folder is refused, as any other setting
    refused = _explain(smoke_run, out, inputs, "--size", "900")
    assert "size 700 then, 900 now" in _one_error_line(refused)
    # without --size: the default, unchanged
    plain = _explain(smoke_run, tmp_path / "plain", inputs[:1])
    assert plain.exit_code == 0, plain.output
    assert json.loads((tmp_path / "plain" / "explain.json").read_text())["size"] == CAPTION_MIN_SIDE
    # a folder written before --size existed holds default-size overlays: it continues
    old = json.loads((tmp_path / "plain" / "explain.json").read_text())
    del old["size"]
    (tmp_path / "plain" / "explain.json").write_text(json.dumps(old))
    again = _explain(smoke_run, tmp_path / "plain", inputs)
    assert again.exit_code == 0 and "1 already done, skipped" in again.stdout, again.output
    for bad, words in ((["--size", "300"], "--size must be between 448 and 4096 px, got 300"),
                       (["--size", "5000"], "--size must be between 448 and 4096 px, got 5000"),
                       (["--bare", "--size", "700"], "--size sizes captioned overlays; --bare")):
        assert words in _one_error_line(_explain(smoke_run, tmp_path / "x", inputs, *bad))


def test_a_test_image_s_overlay_says_its_true_class_and_whether_the_answer_is_right():
    """The Error analysis page's "Overlay PNG" said "MobileNetV2 answers 'meningioma' (89%)"
    of a glioma, with nothing to show it was wrong; its card and PDF say the true class (a
    review). A test image's overlay says it now, and whether the answer is right."""
    from helpers import one_card

    from dashboard import views
    from pipeline.explain.overlay_text import OVERLAY_NOTE
    from pipeline.explain.render import caption_strip

    classes = ["glioma", "no_tumor"]
    results, upload = one_card([0.3, 0.7])
    card = np.full((320, 320, 3), 128, np.uint8)
    for true, verdict in (("glioma", "wrong"), ("no_tumor", "right")):
        upload.true_label = true
        picture = views.captioned_picture(card, upload, 0, results, classes, "custom_cnn")
        lines = ["Custom CNN answers 'no tumour' (70%)",
                 f"True class (dataset label): '{'glioma' if true == 'glioma' else 'no tumour'}'; "
                 f"the answer is {verdict}",
                 "Heatmap: Grad-CAM for 'glioma', hottest at the image's upper left",
                 'Warning: "no tumour" is no rule-out']
        assert np.array_equal(picture[picture.shape[1]:],
                              caption_strip(CAPTION_MIN_SIDE, lines, OVERLAY_NOTE))
    upload.true_label = None  # an upload: no such line
    plain = views.captioned_picture(card, upload, 0, results, classes, "custom_cnn")
    del lines[1]
    assert np.array_equal(plain[plain.shape[1]:],
                          caption_strip(CAPTION_MIN_SIDE, lines, OVERLAY_NOTE))


def test_a_card_s_report_page_names_its_image_as_the_table_does():
    """A series slice's PDF page said nothing of which slice it was (a review): the page
    carries the upload's ref, as the predictions table names the row, and the CT gate's
    reason where the card hides the answers."""
    from helpers import one_card

    from dashboard import views
    from dashboard.inference import Settings

    results, upload = one_card([0.3, 0.7], ct=[True])
    upload.ref = "upload 1 · slice 3 of 5"
    page = views.report_page(upload, 0, results, ["glioma", "no_tumor"], Settings())
    assert page.ref == "upload 1 · slice 3 of 5"
    assert page.withheld == "may be CT, not MRI"
