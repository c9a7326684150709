"""A DICOM file's header names its modality: "may be CT, not MRI" follows it where it says CT
or MR. The pixel check (`modality.looks_like_ct`) misses CT shown at a wide window and now and
then flags an MRI slice; the scanner's own word does neither. A header naming another
acquisition (PET, ultrasound, ...) has its own warning (`test_not_mri_modality`); every other
file, and a header naming no acquisition (OT, SC) or none, is judged by its pixels as before.
Likewise an MR header's echo or inversion time raises "may be T2 or FLAIR" where the learnt
hint missed it."""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import make_dicom
from test_modality import _head

from pipeline import images
from pipeline.evaluate.flags import FLAG_LABELS, flag_meaning
from pipeline.modality import FLAIR_INVERSION_MS, T2_ECHO_MS, looks_like_ct, may_be_ct, t2_by_times

# pixels that look like CT (a thick white skull against the brain) and like MRI (a dark bone
# band inside the bright scalp): `test_modality`'s phantoms, 12-bit as a scanner stores them
CT_PIXELS = _head(rim=255, rim_width=12, band=110, band_width=0, white=115).astype(np.uint16) * 16
MR_PIXELS = _head(rim=255, rim_width=12, band=45, band_width=6).astype(np.uint16) * 16


def _decoded(data: bytes, name: str = "x.dcm") -> tuple[np.ndarray, dict]:
    slices, info = images.decode_slices(data, name)
    return slices[0], info


def _without_modality(data: bytes) -> bytes:
    """`data` (make_dicom's, which writes MR) without its Modality tag."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    del ds.Modality
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def _zipped(codes: list[str | None]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, code in enumerate(codes):
            extra = {"Modality": code} if code is not None else {}
            data = make_dicom(MR_PIXELS, InstanceNumber=k + 1, **extra)
            zf.writestr(f"IM{k}.dcm", _without_modality(data) if code is None else data)
    return buf.getvalue()


def test_the_header_s_ct_or_mr_settles_it_and_anything_else_leaves_it_to_the_pixels():
    ct_image, info = _decoded(make_dicom(CT_PIXELS, Modality="OT"))
    mr_image, _ = _decoded(make_dicom(MR_PIXELS, Modality="OT"))
    assert info["modality"] == "OT"
    assert looks_like_ct(ct_image) and not looks_like_ct(mr_image)  # the phantoms survive DICOM
    assert may_be_ct(mr_image, "CT") and not may_be_ct(ct_image, "MR")
    for code in ("", "OT", "SC"):  # no word on CT or MR: the pixels decide
        assert may_be_ct(ct_image, code) and not may_be_ct(mr_image, code), code
    # another acquisition (PET): not CT, its own warning speaks (`test_not_mri_modality`)
    assert not may_be_ct(ct_image, "PT") and not may_be_ct(mr_image, "PT")
    # the code as the header has it: padded, lower-case, absent, or no code at all
    with warnings.catch_warnings():  # pydicom warns of a code outside DICOM's rules
        warnings.simplefilter("ignore", UserWarning)
        assert _decoded(make_dicom(MR_PIXELS, Modality="ct "))[1]["modality"] == "CT"
        assert _decoded(make_dicom(MR_PIXELS, Modality="M/R"))[1]["modality"] == ""
    assert _decoded(make_dicom(MR_PIXELS[None].repeat(2, 0), Modality="CT"))[1][
        "modality"] == "CT"  # a multi-frame file
    # a zipped series has one code when its slice files agree
    assert _decoded(_zipped(["CT", "CT"]), "s.zip")[1]["modality"] == "CT"
    assert _decoded(_zipped(["CT", "MR"]), "s.zip")[1]["modality"] == ""
    assert _decoded(_zipped(["CT", None]), "s.zip")[1]["modality"] == ""
    assert _decoded(_png(), "x.png")[1].get("modality", "") == ""  # not DICOM: nothing to say


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((MR_PIXELS // 16).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_an_upload_and_each_of_its_slices_follow_the_header():
    from dashboard.core import decode_upload

    said_mr = decode_upload("ct.dcm", make_dicom(CT_PIXELS, Modality="MR"))
    said_ct = decode_upload("mr.dcm", make_dicom(MR_PIXELS, Modality="CT"))
    untold = decode_upload("ct.dcm", make_dicom(CT_PIXELS, Modality="OT"))
    assert (said_mr.ct, said_ct.ct, untold.ct) == (False, True, True)
    assert said_ct.modality == "CT"
    series = decode_upload("s.dcm", make_dicom(np.stack([MR_PIXELS, MR_PIXELS]), Modality="CT"))
    assert series.ct and all(series.slice_view(k).ct for k in range(2))
    series = decode_upload("s.dcm", make_dicom(np.stack([CT_PIXELS, CT_PIXELS]), Modality="MR"))
    assert not series.ct and not any(series.slice_view(k).ct for k in range(2))


def test_the_warning_says_a_header_can_say_it():
    assert "or a DICOM header that says CT" in flag_meaning("ct")
    assert "a DICOM header that names CT or MR decides instead" in flag_meaning("ct", sartaj=True)


def test_an_mr_header_s_echo_or_inversion_time_says_t2_or_flair():
    from dashboard.core import decode_upload
    from pipeline.sequence import may_be_t2

    assert (T2_ECHO_MS, FLAIR_INVERSION_MS) == (80.0, 1500.0)
    assert t2_by_times(80.0, None) and t2_by_times(None, 1500.0) and t2_by_times(100.0, 2500.0)
    assert not t2_by_times(79.9, 1499.0) and not t2_by_times(None, None)

    def said(**tags) -> bool:  # noqa: ANN003
        return _decoded(make_dicom(MR_PIXELS, **tags))[1]["t2_header"]

    assert said(EchoTime=100) and said(EchoTime=12, InversionTime=2500)  # T2; FLAIR
    assert not said(EchoTime=12) and not said(EchoTime=3, InversionTime=900)  # T1; MPRAGE
    assert not said() and not said(Modality="CT", EchoTime=100)  # no time; not MR
    assert said(EchoTime=[100, 20])  # a multi-echo file: its first
    assert _decoded(_without_modality(make_dicom(MR_PIXELS, EchoTime=100)))[1]["t2_header"]
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    echo, shared = Dataset(), Dataset()  # an enhanced file keeps it in its functional groups
    echo.EffectiveEchoTime = 95
    shared.MREchoSequence = Sequence([echo])
    assert said(SharedFunctionalGroupsSequence=Sequence([shared]))
    assert said(PerFrameFunctionalGroupsSequence=Sequence([shared]))  # or per frame (a review)
    modifier, flair = Dataset(), Dataset()  # an enhanced FLAIR's inversion time
    modifier.InversionTimes = [2500]
    flair.MRModifierSequence = Sequence([modifier])
    assert said(SharedFunctionalGroupsSequence=Sequence([flair]))
    modifier.InversionTimes = [900]  # T1-FLAIR
    assert not said(PerFrameFunctionalGroupsSequence=Sequence([flair]))
    assert _decoded(_zipped(["MR", "MR"]), "s.zip")[1]["t2_header"] is False
    # the learnt hint calls the phantom T1; the header's times say T2, and the card says so
    image, _ = _decoded(make_dicom(MR_PIXELS))
    assert may_be_t2(image) is False
    assert decode_upload("t2.dcm", make_dicom(MR_PIXELS, EchoTime=100)).t2 is True
    assert decode_upload("t1.dcm", make_dicom(MR_PIXELS, EchoTime=12)).t2 is False
    series = decode_upload("s.dcm", make_dicom(np.stack([MR_PIXELS] * 2), EchoTime=100))
    assert series.t2 and all(series.slice_view(k).t2 for k in range(2))


def _run_image(run: Path) -> np.ndarray:
    """A test image of `run` the learnt T2 hint calls T1, grey and 12-bit, as a DICOM holds it."""
    from pipeline.sequence import may_be_t2

    folder = Path(json.loads((run / "manifest.json").read_text())["data"]["dir"])
    for entry in json.loads((run / "splits.json").read_text())["test"]:
        image = images.read_image(folder / entry["path"])
        if may_be_t2(image) is False:
            return image[..., 0].astype(np.uint16) * 16
    raise AssertionError("every test image of the run looks like T2 to the learnt hint")


@pytest.mark.slow
def test_predict_and_explain_follow_the_header(smoke_run: Path, tmp_path: Path):
    """predict's line and JSON, a zipped series' slices, and explain.json."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    files = {"mr_pixels_said_ct.dcm": make_dicom(MR_PIXELS, Modality="CT"),
             "ct_pixels_said_mr.dcm": make_dicom(CT_PIXELS, Modality="MR"),
             "ct_pixels_untold.dcm": make_dicom(CT_PIXELS, Modality="OT"),
             "series_said_ct.zip": _zipped(["CT", "CT"]),
             # the run's own kind of image: the T2 hint is left unsaid on a far unlike one
             "t2_times.dcm": make_dicom(_run_image(smoke_run), EchoTime=100),
             "t1_times.dcm": make_dicom(_run_image(smoke_run), EchoTime=12)}
    paths = []
    for name, data in files.items():
        paths.append(tmp_path / name)
        paths[-1].write_bytes(data)
    args = ["predict", "--run", str(smoke_run), *map(str, paths)]
    printed = CliRunner().invoke(app, args)
    assert printed.exit_code == 0, printed.output
    tag = f"[{FLAG_LABELS['ct']}]"
    lines = [ln for ln in printed.stdout.splitlines() if "\t" in ln]
    assert [tag in ln.split("\t")[-1] for ln in lines] == [True, False, True, True, True,
                                                          False, False], lines
    assert printed.stderr.count(flag_meaning("ct")) == 1  # the legend, once
    t2_tag = f"[{FLAG_LABELS['t2']}]"
    assert [t2_tag in ln.split("\t")[-1] for ln in lines][-2:] == [True, False], lines
    rows = json.loads(CliRunner().invoke(app, [*args[:3], "--json", *args[3:]]).stdout)
    assert [r["may_be_ct"] for r in rows["results"]] == [True, False, True, True, True,
                                                         False, False]
    assert [r["may_be_t2"] for r in rows["results"]][-2:] == [True, False]
    out = tmp_path / "overlays"
    explained = CliRunner().invoke(app, ["explain", "--run", str(smoke_run), "--model",
                                         "custom_cnn", "--out", str(out), *map(str, paths)])
    assert explained.exit_code == 0, explained.output
    rows = json.loads((out / "explain.json").read_text())["images"]
    assert [r["may_be_ct"] for r in rows] == [True, False, True, True, True, False, False]
    assert [r["may_be_t2"] for r in rows][-2:] == [True, False]


def test_a_zip_of_several_series_keeps_each_series_together():
    """A study's export (T1, T2, a localiser) zipped: sorted by position alone, a T1 and a T2
    slice alternated at each place. Each series now stays together, in the zip's order of
    series, its slices along the axis; the card's note says how many series it holds."""
    from test_dicom_inputs import _banded, _which

    from dashboard.core import decode_note, decode_upload

    frames = _banded(6)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # members interleaved, positions out of order
        for k, (uid, z) in enumerate([("1.2.3", 10.0), ("1.2.4", 0.0), ("1.2.3", 0.0),
                                      ("1.2.4", 10.0), ("1.2.3", 5.0), ("1.2.4", 5.0)]):
            zf.writestr(f"IM{k}.dcm", make_dicom(
                frames[k], SeriesInstanceUID=uid, ImagePositionPatient=[0.0, 0.0, z],
                ImageOrientationPatient=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))
    slices, info = images.decode_slices(buf.getvalue(), "study.zip")
    # series 1.2.3 (met first): members 2, 4, 0 by position; then 1.2.4: members 1, 5, 3
    assert [_which(s) for s in slices] == [2, 4, 0, 1, 5, 3]
    assert info["series"] == 2
    assert "it holds 2 series, shown one after another" in decode_note(info)
    assert "it holds 2 series" in (decode_upload("study.zip", buf.getvalue()).note or "")
    one = _zipped(["MR", "MR"])  # one series (no SeriesInstanceUID at all): no such note
    assert images.decode_slices(one, "s.zip")[1]["series"] == 1
    assert "series, shown" not in (decode_note(images.decode_slices(one, "s.zip")[1]) or "")


def test_each_series_of_a_study_zip_keeps_its_own_modality_and_times(tmp_path: Path):
    """A study's export mixing a CT series and a T2 MR series: each slice is judged by its own
    file's header (the series-wide verdicts need every file to agree), a blank slice left out
    without shifting the others' verdicts; on the card, in predict's reader and explain's."""
    from dashboard.core import decode_upload
    from pipeline.series import SliceReader, expand_series

    blank = np.zeros_like(MR_PIXELS)
    files = [("1.2.3", "CT", {}, MR_PIXELS), ("1.2.3", "CT", {}, blank),
             ("1.2.3", "CT", {}, MR_PIXELS), ("1.2.4", "MR", {"EchoTime": 100}, MR_PIXELS),
             ("1.2.4", "MR", {"EchoTime": 100}, MR_PIXELS)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, (uid, code, times, pixels) in enumerate(files):
            zf.writestr(f"IM{k}.dcm", make_dicom(pixels, SeriesInstanceUID=uid, Modality=code,
                                                 InstanceNumber=k + 1, **times))
    data = buf.getvalue()
    slices, info = images.decode_slices(data, "study.zip")
    assert len(slices) == 4 and info["blank"] == [2]
    assert (info["modality"], info["t2_header"]) == ("", False)  # the files disagree
    assert info["slice_modality"] == ["CT", "CT", "MR", "MR"]
    assert info["slice_t2_header"] == [False, False, True, True]
    upload = decode_upload("study.zip", data)
    assert [upload.slice_view(k).ct for k in range(4)] == [True, True, False, False]
    assert [upload.slice_view(k).t2 for k in range(4)][2:] == [True, True]
    assert upload.ct and not upload.slice_view(2).ct
    study = tmp_path / "study.zip"
    study.write_bytes(data)
    read, said = SliceReader(), []
    for item in expand_series([study]):
        try:
            read(item)
        except images.ImageError:  # the blank slice
            continue
        said.append((read.modality(item), read.t2_header(item)))
    assert said == [("CT", False), ("CT", False), ("MR", True), ("MR", True)]


def test_a_study_zip_s_dicomdir_is_no_slice_nor_series_and_a_long_one_stays_aligned():
    """A PACS export's DICOMDIR (a header, no pixels) made a second series and an unreadable
    slice; a mixed zip thinned past 64 slices keeps each slice's own verdict (a review)."""
    from test_dicom_inputs import _banded, _which

    from dashboard.core import decode_note

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k in range(3):
            zf.writestr(f"IM{k}.dcm", make_dicom(MR_PIXELS, InstanceNumber=k + 1, EchoTime=100,
                                                 SeriesInstanceUID="1.2.3"))
        zf.writestr("DICOMDIR", make_dicom(None))  # as a DICOMDIR: a header, no pixel data
    _, info = images.decode_slices(buf.getvalue(), "export.zip")
    assert (info["series"], info["modality"], info["t2_header"]) == (1, "MR", True)
    assert info["unreadable"] == [] and info["frames"] == 3
    with zipfile.ZipFile(buf, "a") as zf:  # another file without pixels: unreadable, no series
        zf.writestr("IM9.dcm", make_dicom(None, Modality="SR"))
    _, info = images.decode_slices(buf.getvalue(), "export.zip")
    assert (info["series"], info["modality"], info["t2_header"]) == (1, "MR", True)
    assert len(info["unreadable"]) == 1
    # 40 CT then 40 T2 MR slice files: 64 of 80 analysed, each with its own file's verdict
    frames = _banded(80)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k in range(80):
            ct = k < 40
            zf.writestr(f"IM{k}.dcm", make_dicom(
                frames[k], InstanceNumber=k + 1, SeriesInstanceUID="1.1" if ct else "1.2",
                Modality="CT" if ct else "MR", **({} if ct else {"EchoTime": 100})))
    slices, info = images.decode_slices(buf.getvalue(), "study.zip")
    assert len(slices) == 64 and info["frames"] == 80
    assert info["slice_modality"] == ["CT" if _which(s) < 40 else "MR" for s in slices]
    assert info["slice_t2_header"] == [_which(s) >= 40 for s in slices]
    # the card's note for a series of one file still says what it did (a review found the
    # series line had taken the frames' line's place: "only the first of its 5 frames ...")
    note = decode_note(images.decode_slices(make_dicom(np.stack([MR_PIXELS] * 5)), "m.dcm")[1])
    assert note == ("A series: its 5 slices are analysed; choose the slice to show with its "
                    "slider."), note
    assert "2 series" in decode_note({**info, "series": 2})


def test_predict_reads_a_slice_and_its_file_s_verdicts_together(tmp_path: Path, smoke_run: Path,
                                                                 monkeypatch):
    """With several reading threads another thread's reads could push a series out of the
    reader's cache between a slice's pixels and its file's verdicts, which were then lost (4 of
    24 CT slices called MR-looking, a review). The verdicts now come with the pixels: a reader
    that has forgotten every series by the time it is asked loses nothing."""
    from pipeline.artifacts import open_run
    from pipeline.predict import Predictor, predict_files
    from pipeline.series import Slice, SliceReader, expand_series

    real = SliceReader.facts
    monkeypatch.setattr(SliceReader, "facts", lambda self, item: {} if isinstance(
        item, Slice) else real(self, item))  # as after an eviction
    study = tmp_path / "study.zip"
    study.write_bytes(_zipped(["CT", "CT"]))
    assert all(isinstance(i, Slice) for i in expand_series([study]))  # read as a series
    results, failures = predict_files(Predictor(open_run(smoke_run)), [study])
    assert not failures and [r["may_be_ct"] for r in results] == [True, True]


def test_the_card_says_a_header_s_ct_as_a_fact_and_a_look_as_a_hint():
    """A review read "This slice may be CT, not MRI: a thick white skull ring ..." on a file
    whose header said CT and whose pixels looked like MRI: the card now gives the reason it
    has."""
    import numpy as np

    from dashboard import flags as dflags
    from dashboard.core import decode_upload
    from dashboard.inference import ct_said

    said_ct = decode_upload("mr.dcm", make_dicom(MR_PIXELS, Modality="CT"))
    looks_ct = decode_upload("ct.dcm", make_dicom(CT_PIXELS, Modality="OT"))
    mr = decode_upload("mr.dcm", make_dicom(MR_PIXELS))
    assert [ct_said(u) for u in (said_ct, looks_ct, mr)] == ["header", True, False]
    series = decode_upload("s.zip", _zipped(["CT", "CT"]))
    assert ct_said(series.slice_view(1)) == "header"
    probs = {"custom_cnn": np.array([[0.1, 0.1, 0.7, 0.1]])}
    classes = ["glioma", "meningioma", "no_tumor", "pituitary"]

    def first(ct, sartaj=False) -> str:  # noqa: ANN001
        return dflags.answer_flags(probs, 0, {}, {}, {}, classes, ct=ct, sartaj=sartaj)[0]

    assert first("header") == ("This slice is CT, not MRI: its DICOM header names the scanner "
                               "CT; the model was made for MRI, so an answer on a CT slice "
                               "says nothing of it.")
    assert "no-tumour class holds CT slices" in first("header", sartaj=True)
    assert first(True).startswith("This slice may be CT, not MRI: a thick white skull ring")
