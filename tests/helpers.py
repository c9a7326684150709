"""Builders shared by several test files (imported as `helpers`; pytest puts tests/ on sys.path)."""

from __future__ import annotations

import io

import numpy as np


def dicom_dataset(syntax: str | None = None):  # noqa: ANN201 (pydicom Dataset)
    """An empty secondary-capture DICOM dataset with its file meta, in transfer syntax
    `syntax` (default explicit VR little endian): the start of every DICOM the tests build."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    return ds


def make_dicom(pixels: np.ndarray | None, photometric: str = "MONOCHROME2", **extra) -> bytes:
    """A minimal DICOM file: a 12-bit unsigned slice, or frames (a 3-D array: a multi-frame
    file), or no pixels at all; extra tags as kwargs."""
    ds = dicom_dataset()
    ds.Modality = "MR"
    ds.PatientName = "Phantom^Test"
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape[-2:]
        if pixels.ndim == 3:
            ds.NumberOfFrames = pixels.shape[0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    for key, value in extra.items():
        setattr(ds, key, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def warning_inputs(smoke_run, tmp_path, files: list) -> tuple:
    """A calibrated copy of `smoke_run` (the weak-answer threshold comes with calibration) and
    inputs on which both answer warnings occur: two noise images (unlike the training data)
    among `files` (three phantoms), an unreadable file third. Returns (run folder, paths, the
    unreadable one)."""
    import shutil

    from PIL import Image

    from pipeline.calibration import calibrate_run, read_low_confidence

    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    if not read_low_confidence(run):
        calibrate_run(run)
    rng = np.random.default_rng(3)
    noise = []
    for k in range(2):
        noise.append(tmp_path / f"noise{k}.png")
        Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(noise[-1])
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    return run, [noise[0], files[0], bad, files[1], noise[1], files[2]], bad


def stderr_lines(stderr: str) -> list[str]:
    """The non-blank stderr lines other than the run's "note:" lines: the smoke run has no
    calibration.json, and `predict`/`explain` say so before anything else (`pipeline.gaps`)."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("note: ")]


def one_card(probs: list[float], **results: object) -> tuple:
    """(results, upload) of the dashboard for one 32 px upload "x.png" answered by the custom CNN
    (classes glioma and no_tumor, `probs`; its Grad-CAM peaks at the upper left): what a card's
    captioned overlay is drawn from. `results` overrides `inference.Results` fields
    (`ct`, `seen_split`, `low_below`); a `seen_split` of "test" marks the upload itself so."""
    from dashboard import core, inference

    heat = np.zeros((32, 32), np.float32)
    heat[3, 3] = 1.0
    result = inference.ImageResult(np.full((32, 32, 3), 90, np.uint8), heat, np.array(probs), 0,
                                   "gradcam", "conv", outside_head=0.0, unlike_training=False)
    fields = {"class_names": ["glioma", "no_tumor"], "colour": [False], "ct": [False],
              "seen_split": [""], **results}
    split = fields["seen_split"][0]
    upload = core.Upload("x.png", "d" * 64, image=np.zeros((128, 128, 3), np.uint8),
                         **({"seen_split": split, "seen_exact": True} if split else {}))
    return inference.Results({"custom_cnn": [result]}, {}, 0.1, **fields), upload


def card_download(probs: list[float], **kwargs: object) -> tuple[np.ndarray, dict]:
    """The card's "Overlay PNG" of `one_card(probs)` (its overlay a grey 320 px square),
    captioned by `views.captioned_picture` with `kwargs` (`outline`, `run_title`, `folders`),
    and the explain.json entry (`overlay_caption`'s) of the same answer and heatmap."""
    from dashboard import views

    classes = ["glioma", "no_tumor"]
    results, upload = one_card(probs)
    card = np.full((320, 320, 3), 128, np.uint8)
    picture = views.captioned_picture(card, upload, 0, results, classes, "custom_cnn", **kwargs)
    entry = {"predicted": classes[int(np.argmax(probs))], "target": "glioma",
             "method": "gradcam", "probs": dict(zip(classes, probs, strict=True)),
             "peak": "upper left"}
    return picture, entry


def captioned_with(picture: np.ndarray, lines: list[str]) -> bool:
    """Whether `picture` carries exactly `lines` and the overlays' small print under its
    picture, as `explain` draws them (`render.caption_strip`)."""
    from pipeline.explain.overlay_text import OVERLAY_NOTE
    from pipeline.explain.render import CAPTION_MIN_SIDE, caption_strip

    return np.array_equal(picture[CAPTION_MIN_SIDE:],
                          caption_strip(CAPTION_MIN_SIDE, lines, OVERLAY_NOTE))


def with_disc(frame: np.ndarray) -> np.ndarray:
    """`frame` (H×W, or N×H×W: each frame) with a centred disc half the grey range away from
    its corner's level: content, so a series' slice is not blank (blank slices are left out,
    `images.without_blank`), while the corner keeps the level tests tell slices apart by."""
    out = np.array(frame, copy=True)
    h, w = out.shape[-2:]
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2 <= (min(h, w) / 4) ** 2
    top = 256 if out.dtype == np.uint8 else 4096  # 8-bit pages, 12-bit DICOM frames
    corner = out[..., :1, :1].astype(np.int64)
    out[..., disc] = ((corner + top // 2) % top).reshape(corner.shape[:-2] + (1,))
    return out
