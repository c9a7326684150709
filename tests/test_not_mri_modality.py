"""A DICOM file whose header names another kind of imaging than MRI or CT (ultrasound, PET, an
X-ray, ...) got no warning of its own: `modality.may_be_ct` trusted a header naming CT or MR and
judged the pixels of every other file. Such a file now says so as its own fact, first among the
"not an MRI" warnings: on the dashboard's card, in predict's line, JSON and CSV, in explain's
line, explain.json and captions; a zip mixing series, slice by slice. Codes that name no
acquisition (OT, SC: exports and conversions of MRI carry them; SR, KO, ...; unknown ones) and
MR warn of nothing."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import make_dicom
from test_dicom_modality import CT_PIXELS, MR_PIXELS

from pipeline import images
from pipeline.evaluate.flags import FLAG_LABELS, flag_meaning
from pipeline.modality import looks_like_ct, may_be_ct, not_mri_words

CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]
# the codes that must warn, with the words they are named by, and those that must not
WARNED = {"US": "ultrasound (US)", "PT": "PET (PT)", "CR": "computed radiography X-ray (CR)"}
SILENT = ("OT", "SC", "MR")


def _dicom(code: str) -> bytes:
    """A slice whose header names `code`; the ultrasound's pixels look like CT, so that its
    header's word is seen to replace the look's "may be CT"."""
    return make_dicom(CT_PIXELS if code == "US" else MR_PIXELS, Modality=code)


def _study(codes: list[str]) -> bytes:
    """A study's zip mixing series: a slice file per code, each code its own series, in order."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, code in enumerate(codes):
            zf.writestr(f"IM{k}.dcm", make_dicom(MR_PIXELS, Modality=code, InstanceNumber=k + 1,
                                                 SeriesInstanceUID=f"1.2.{k + 3}"))
    return buf.getvalue()


def _tag(code: str) -> str:
    return f"[not MRI: {WARNED[code]} by its DICOM header]"


def test_a_header_naming_another_kind_of_imaging_has_its_words_and_settles_may_be_ct():
    assert {c: not_mri_words(c) for c in WARNED} == WARNED
    # no acquisition, MRI or CT, retired MR codes, unknown codes, none: nothing to say
    for code in ("", "MR", "CT", "OT", "SC", "SR", "PR", "KO", "SEG", "REG", "MA", "MS", "XYZ"):
        assert not_mri_words(code) == "", code
    image, info = images.decode_slices(_dicom("US"), "us.dcm")
    assert info["modality"] == "US" and looks_like_ct(image[0])
    assert not may_be_ct(image[0], "US")  # the header's own word speaks instead of the look
    for code in ("", "OT", "SC", "SR"):
        assert may_be_ct(image[0], code), code  # the pixels decide, as before
    assert FLAG_LABELS["modality"] == "not MRI by its DICOM header"
    assert "names another kind of imaging than MRI" in flag_meaning("modality")


def test_the_card_says_the_header_s_modality_first_as_the_file_s_own_fact():
    """Before any other "not an MRI" warning (a colour image's here), in place of "may be CT",
    with no T2 hint; its answers folded under that label; a study's zip slice by slice."""
    from dashboard import card_flags
    from dashboard import flags as dflags
    from dashboard.core import decode_upload
    from dashboard.inference import ct_said

    uploads = {c: decode_upload(f"{c}.dcm", _dicom(c)) for c in (*WARNED, *SILENT)}
    assert {c: ct_said(u) for c, u in uploads.items()} == {
        "US": "US", "PT": "PT", "CR": "CR", "OT": False, "SC": False, "MR": False}
    one = {"custom_cnn": np.array([[0.1, 0.1, 0.7, 0.1]])}
    said = dflags.answer_flags(one, 0, {}, {}, {}, CLASSES, ct="US", colour=True, t2=True)
    assert said[0] == ("This file is not MRI: its DICOM header names the modality ultrasound "
                       "(US); the model is made for brain MRI, so its answers say nothing of it.")
    assert said[1] == dflags.COLOUR_WARNING
    assert not any(s.kind in ("ct", "t2") for s in said)
    two = {**one, "mobilenetv2": np.array([[0.1, 0.1, 0.7, 0.1]])}
    said = dflags.answer_flags(two, 0, {}, {}, {}, CLASSES, ct="PT")
    assert said[0] == ("This file is not MRI: its DICOM header names the modality PET (PT); the "
                       "models are made for brain MRI, so their answers say nothing of it.")
    assert dflags.leading_flags(said, list(two))[0] is said[0]  # no agreement badge; folded
    assert card_flags.withheld(said) == "not MRI by its DICOM header"  # the table's, the PDF's
    for c in SILENT:
        quiet = dflags.answer_flags(two, 0, {}, {}, {}, CLASSES, ct=ct_said(uploads[c]))
        assert not any(s.kind == "modality" for s in quiet), c
    study = decode_upload("study.zip", _study(["MR", "US", "MR", "CR"]))
    assert [ct_said(study.slice_view(k)) for k in range(4)] == [False, "US", False, "CR"]


def test_a_captioned_overlay_leads_with_the_header_s_modality():
    from pipeline.explain.overlay_text import overlay_caption

    entry = {"predicted": "glioma", "target": "glioma", "method": "gradcam", "colour": True,
             "probs": {"glioma": 0.9, "meningioma": 0.05, "no_tumor": 0.03, "pituitary": 0.02}}
    lines = overlay_caption("custom_cnn", entry, may_be_ct="US", may_be_t2=True)
    assert lines[0] == ("Shown anyway (not MRI: ultrasound (US) by its DICOM header): Custom "
                        "CNN answers 'glioma' (90%)")
    warning = next(ln for ln in lines if ln.startswith("Warning: "))
    assert warning.startswith("Warning: not MRI: ultrasound (US) by its DICOM header; ")
    assert FLAG_LABELS["ct"] not in warning and FLAG_LABELS["t2"] not in warning
    # a look's CT, or a header's, as before
    assert overlay_caption("custom_cnn", entry, may_be_ct="header")[0].startswith(
        "Shown anyway (a colour image")


def test_the_card_s_pdf_page_and_overlay_download_say_it():
    """The PDF page leads its flags with the warning and says it over the answers; the card's
    overlay download, a picture that travels alone, leads its caption with it (it said "may
    be CT" of any truthy verdict)."""
    from helpers import one_card

    from dashboard import views
    from dashboard.flags import modality_warning
    from dashboard.inference import Settings
    from pipeline.explain.overlay_text import OVERLAY_NOTE, overlay_caption
    from pipeline.explain.render import CAPTION_MIN_SIDE, caption_strip

    classes = ["glioma", "no_tumor"]
    results, upload = one_card([0.3, 0.7], ct=["US"])
    page = views.report_page(upload, 0, results, classes, Settings())
    assert page.flags[0] == modality_warning("US", n_models=1)
    assert page.withheld == "not MRI by its DICOM header"
    card = np.full((320, 320, 3), 128, np.uint8)
    picture = views.captioned_picture(card, upload, 0, results, classes, "custom_cnn")
    lines = ["Shown anyway (not MRI: ultrasound (US) by its DICOM header): Custom CNN answers "
             "'no tumour' (70%)", "Heatmap: Grad-CAM for 'glioma', hottest at the image's upper "
             "left", 'Warning: not MRI: ultrasound (US) by its DICOM header; "no tumour" is no '
             "rule-out"]
    entry = {"predicted": "no_tumor", "target": "glioma", "method": "gradcam",
             "probs": {"glioma": 0.3, "no_tumor": 0.7}, "peak": "upper left"}
    assert overlay_caption("custom_cnn", entry, may_be_ct="US") == lines
    assert np.array_equal(picture[picture.shape[1]:],
                          caption_strip(CAPTION_MIN_SIDE, lines, OVERLAY_NOTE))


def test_a_predictions_csv_s_modality_cell_holds_a_code_or_nothing(tmp_path: Path):
    """The CSV's `not_mri_modality` is checked as the flags are: a resumed file holding
    anything else there is refused as damaged, untouched."""
    from pipeline.csv_safe import to_csv
    from pipeline.stream import _done_paths, header

    cols = header(["glioma", "no_tumor"], ["custom_cnn"])
    assert cols[-4:] == ["may_be_ct", "may_be_t2", "small_image", "not_mri_modality"]
    row = ["a.png", "glioma", "0.9", "0.1", "0", "0", "", "", "1", "", "run-a", "", "0", "", "0"]
    out = tmp_path / "p.csv"
    for code in ("US", ""):
        out.write_text(to_csv(cols, [[*row, code]]), encoding="utf-8", newline="")
        assert _done_paths(out, cols, "run-a") == {"a.png"}
    out.write_text(to_csv(cols, [[*row, "ultrasound?"]]), encoding="utf-8", newline="")
    before = out.read_bytes()
    with pytest.raises(ValueError, match="in column not_mri_modality: the file is damaged"):
        _done_paths(out, cols, "run-a")
    assert out.read_bytes() == before


@pytest.mark.slow
def test_predict_and_explain_say_the_header_s_modality(smoke_run: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch):
    """predict's lines (the legend once), --json and --out (a CSV begun before the column
    still resumes), explain's lines, explain.json and captions; the zip's slices each their
    own."""
    from typer.testing import CliRunner

    import pipeline.explain.overlays as overlays
    from pipeline.cli import app

    paths = []
    for code in (*WARNED, *SILENT):
        paths.append(tmp_path / f"{code.lower()}.dcm")
        paths[-1].write_bytes(_dicom(code))
    paths.append(tmp_path / "study.zip")
    paths[-1].write_bytes(_study(["MR", "US", "MR"]))
    codes = ["US", "PT", "CR", "", "", "", "", "US", ""]  # a line per slice of the zip
    args = ["predict", "--run", str(smoke_run), *map(str, paths)]
    printed = CliRunner().invoke(app, args)
    assert printed.exit_code == 0, printed.output
    lines = [ln for ln in printed.stdout.splitlines() if "\t" in ln]
    assert len(lines) == len(codes), lines

    def tags(line: str) -> str:
        return line.split("\t")[-1]

    for line, code in zip(lines, codes, strict=True):
        assert (_tag(code) in tags(line)) if code else "[not MRI:" not in tags(line), line
    assert FLAG_LABELS["ct"] not in tags(lines[0])  # CT-looking pixels: the header speaks
    assert printed.stderr.count(flag_meaning("modality")) == 1  # the legend, once
    rows = json.loads(CliRunner().invoke(app, [*args[:3], "--json", *args[3:]]).stdout)
    assert [r["not_mri_modality"] for r in rows["results"]] == codes
    assert [r["may_be_ct"] for r in rows["results"]][0] is False
    out = tmp_path / "preds.csv"
    assert CliRunner().invoke(app, [*args[:3], "--out", str(out), *args[3:]]).exit_code == 0
    with open(out, newline="") as fh:
        assert [r["not_mri_modality"] for r in csv.DictReader(fh)] == codes
    # a CSV begun by a predict without the column (its last row not yet written) goes on
    older = tmp_path / "older.csv"
    with open(out, newline="") as fh:
        table = [r[:-1] for r in csv.reader(fh)]
    assert table[0][-1] == "small_image"
    with open(older, "w", newline="") as fh:
        csv.writer(fh).writerows(table[:-1])
    resumed = CliRunner().invoke(app, [*args[:3], "--out", str(older), *args[3:]])
    assert resumed.exit_code == 0, resumed.output
    assert "without the columns not_mri_modality" in resumed.stderr
    assert "wrote 1 row(s)" in resumed.stdout
    with open(older, newline="") as fh:
        assert list(csv.reader(fh)) == table
    # explain: its lines, explain.json, and the captions drawn on the overlays
    captions: list[list[str]] = []
    real = overlays.overlay_caption

    def caption(*a, **kw) -> list[str]:  # noqa: ANN002, ANN003
        captions.append(real(*a, **kw))
        return captions[-1]

    monkeypatch.setattr(overlays, "overlay_caption", caption)
    explained = CliRunner().invoke(app, ["explain", "--run", str(smoke_run), "--model",
                                         "custom_cnn", "--out", str(tmp_path / "ex"),
                                         *map(str, paths)])
    assert explained.exit_code == 0, explained.output
    lines = [ln for ln in explained.stdout.splitlines() if "\t" in ln]
    for line, code in zip(lines, codes, strict=True):
        assert (_tag(code) in tags(line)) if code else "[not MRI:" not in tags(line), line
    assert explained.stderr.count(flag_meaning("modality")) == 1
    rows = json.loads((tmp_path / "ex" / "explain.json").read_text())["images"]
    assert [r["not_mri_modality"] for r in rows] == codes
    assert len(captions) == len(codes)
    for said, code in zip(captions, codes, strict=True):
        lead = f"Shown anyway ({_tag(code)[1:-1]}): " if code else ""
        assert said[0].startswith(lead) if code else "not MRI:" not in " ".join(said), said


@pytest.fixture
def artifacts(smoke_run: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    adir = smoke_run.parent.parent
    monkeypatch.setenv("BRAIN_MRI_ARTIFACTS", str(adir))
    return adir


@pytest.mark.slow
def test_the_dashboard_card_says_the_header_s_modality(artifacts: Path):
    """Uploads naming US, PT and CR get their warning, each once; OT, SC and MR none; a study's
    zip on the slice shown, and not once its MR slice is chosen."""
    from test_dashboard_app import _app, _each_page_of_cards, _ok

    from dashboard.flags import modality_warning

    files = [(f"{c.lower()}.dcm", _dicom(c), "application/dicom") for c in (*WARNED, *SILENT)]
    files.append(("study.zip", _study(["US", "MR"]), "application/zip"))
    at = _app("predict")
    at.file_uploader(key="uploads").set_value(files).run()
    _ok(at)
    said = [w.value for page in _each_page_of_cards(at) for w in page.warning
            if w.value.startswith("This file is not MRI")]
    # the study's card shows its first slice: the ultrasound's
    assert sorted(said) == sorted([*(modality_warning(c) for c in WARNED), modality_warning("US")])
    slider = at.select_slider[0]  # the study's, on the last page of cards
    slider.set_value(2).run()
    _ok(at)
    assert not [w.value for w in at.warning if w.value.startswith("This file is not MRI")]
