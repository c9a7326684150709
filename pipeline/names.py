"""One home for facts several modules share: model and class names as people read them, the
default pair, the progress callback, image file extensions. Pure Python, so the dashboard and the
metrics import it without Keras.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

# What every answer comes with (the dashboard's pages, the PDF reports, predict and explain);
# the dashboard sets "not a diagnostic device" in bold, the PDF in capitals.
DISCLAIMER = ("Research and teaching tool: not a diagnostic device. Predictions and heatmaps must "
              "never be used for clinical decisions.")

# Registry name -> the name people read (tables, captions, the dashboard).
DISPLAY_NAMES: dict[str, str] = {
    "custom_cnn": "Custom CNN",
    "mobilenetv2": "MobileNetV2",
    "efficientnetb0": "EfficientNetB0",
}
# The models' answers pooled (`evaluate.together`): its name on a card, the glossary and the
# PDF; the prefix of its columns and of `predict`'s field ("averaged_predicted", "averaged: ...");
# and what it is, in the glossary's and the card tooltip's words
# ("Both, averaged" read as the mean of the two percentages, and a reviewer found it above
# both models' own: "pooled", and the meaning says why it can be)
TOGETHER_LABEL = "Both, pooled"
# said beside a pooled answer that is a class no model answered (`together.neither`): pooling can
# land there (2 of the main run's 490 test images, both wrong; a review read "one side of the
# disagreement" on every card and found one that was not)
NEITHER_WORDS = "neither model's answer"
TOGETHER_COLUMN = "averaged"
TOGETHER_MEANING = ("the two models' answers pooled: their calibrated log-probabilities "
                    "averaged, then divided by one temperature fitted on the run's validation "
                    "images, so its confidence is not the mean of the two and can be above "
                    "both. Two models that err on different images can be right together "
                    "where one alone is wrong.")
# Every model the registry builds (models.build_model: our CNN, then backbones.BACKBONES, kept in
# step by a test): what a config's "models" may name, without importing Keras.
MODEL_NAMES: tuple[str, ...] = ("custom_cnn", "mobilenetv2", "efficientnetb0")
# What `train`, `run`, `bench` and `--model all` mean: our CNN and the transfer-learning model.
DEFAULT_MODELS: tuple[str, ...] = ("custom_cnn", "mobilenetv2")
# The transfer-learning models (backbones.BACKBONES, in step by the same test): the rest of
# MODEL_NAMES after our from-scratch CNN.
TRANSFER_MODELS: tuple[str, ...] = MODEL_NAMES[1:]

# The label of scans without a tumour; every other label is a tumour type (tumour vs no tumour).
NO_TUMOR = "no_tumor"

# explain-eval's defaults (`explain.quality.explain_eval` and its CLI command, one home): test
# images per model scored in full, and the deletion / insertion curves' steps
EXPLAIN_EVAL_IMAGES = 64
DELETION_STEPS = 20
# files per forward pass of `predict.iter_predictions` (predict's lines, its CSV, the benchmark)
PREDICT_BATCH = 32
# Class label -> the words people read (the dashboard's tables, captions, menus, reports), in the
# spelling of the project's prose ("says no tumour"); labels not listed lose their underscores.
CLASS_LABELS: dict[str, str] = {NO_TUMOR: "no tumour", "tumor": "tumour"}
# a heatmap overlay's default opacity: the dashboard's slider and `explain --alpha` (0.45 and
# 0.4 before: the same image looked different in each)
HEATMAP_ALPHA = 0.4
# How to read any heatmap, beside every picture of one (the dashboard's legend, captioned
# overlays, the PDF): a lecturer found the exported pictures without it
# What the official Testing/ folder's figures are, wherever they are shown (figures' results.md,
# the Overview): the custom CNN's recipes were chosen on it, so it is no clean test
SHIFT_VALIDATION_NOTE = ("this project's training recipes were chosen on it (shift validation), so "
                         "its figures are a guide to images from other sources, not a clean test")
# Left and right on a picture of a slice: the picture's own, unless the file says how the
# patient lies in it (a NIfTI volume with a usable affine, which `nifti` shows as radiologists
# view an axial slice: `images.decode_slices`' info["radiological"]); every heatmap's reading
# note and the dashboard's colour scale say one of these (`sides_words`)
PICTURE_SIDES = "Left and right are the picture's, not the patient's."
RADIOLOGICAL_SIDES = ("Shown as radiologists view a slice (from the file's orientation): the "
                      "patient's right is on the picture's left.")


def sides_words(radiological: bool = False) -> str:
    """Which side of a picture is which: `RADIOLOGICAL_SIDES` where the file's orientation is
    known and the slice is shown radiologically, else `PICTURE_SIDES`."""
    return RADIOLOGICAL_SIDES if radiological else PICTURE_SIDES


def heatmap_reading(radiological: bool = False) -> str:
    """How to read any heatmap (`HEATMAP_READING`), its last sentence saying which side is
    which (`sides_words`)."""
    return ("Heatmap colours are scaled per image: every map has a brightest spot, even where "
            f"the evidence is weak. It is not a lesion map. {sides_words(radiological)}")


HEATMAP_READING = heatmap_reading()

# Image files a dataset folder or a mask folder may hold (decoding is `images.decode_image`'s job).
IMAGE_EXTS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".dcm"})
# Every name a single file is read as an image by (`images.PIL_FORMATS` as Pillow names them, and
# DICOM): what predict and explain look for in a folder (`stream.expand_inputs`), where .gif and
# .webp files given by name were read but skipped inside a folder. Dataset discovery and masks keep
# IMAGE_EXTS (MRI datasets hold no GIF or WebP; the audit counts by it). A test keeps this in step
# with Pillow's registered extensions.
DECODED_EXTS: frozenset[str] = IMAGE_EXTS | frozenset({
    ".jpe", ".jfif", ".mpo", ".apng", ".dib", ".gif", ".webp",
    ".pbm", ".pgm", ".ppm", ".pnm", ".pfm"})

# NIfTI volumes (`pipeline.nifti`): series files, read by predict, explain (in folders too) and the
# dashboard, never as a dataset's images. ".nii.gz" is a double suffix: compare `file_ext`, never
# `Path.suffix` (".gz").
NIFTI_EXTS: tuple[str, ...] = (".nii", ".nii.gz")


def file_ext(name: str) -> str:
    """A file name's extension, lower case, ".nii.gz" as one ("scan.NII.GZ" -> ".nii.gz",
    "a.png" -> ".png", "IM0001" -> "")."""
    lower = name.lower().rsplit("/", 1)[-1]
    if lower.endswith(".nii.gz"):
        return ".nii.gz"
    dot = lower.rfind(".")
    return lower[dot:] if dot > 0 else ""


# progress(description, done, total): every long stage reports through one of these.
Progress = Callable[[str, int, int], None]


def no_progress(desc: str, done: int, total: int) -> None:
    """The `Progress` that reports nothing."""


def size_label(width: int, height: int) -> str:
    """An image's pixel size as "WxH": how the audit, evaluation's `by_size` and the dashboard
    name it, so that their sizes compare equal."""
    return f"{width}x{height}"


def _class_key(text: str) -> str:
    """A class name as compared with what a user typed: case, underscores, hyphens and runs
    of spaces ignored ("No_Tumor", "no  tumor" and "no-tumor" are one)."""
    return " ".join(text.replace("_", " ").replace("-", " ").split()).casefold()


def class_index(choice: str | None, class_names: Sequence[str]) -> int | None:
    """The class a user asked to explain (`explain --target`, the dashboard's menu), by its
    label, the words people read (`class_label`: "no tumour", as the dashboard shows it) in
    any case, with spaces or underscores, or by index; None means each image's own
    prediction. ValueError (one line, listing the choices) for anything else."""
    if choice is None:
        return None
    names = list(class_names)
    if choice in names:
        return names.index(choice)
    if choice.isdigit() and int(choice) < len(names):
        return int(choice)
    key = _class_key(choice)
    for i, name in enumerate(names):
        if key and key in (_class_key(name), _class_key(class_label(name))):
            return i
    raise ValueError(f"unknown class {choice!r}; choose a class name "
                     f"({', '.join(class_label(n) for n in names)}) or an index "
                     f"0..{len(names) - 1}")


def class_label(name: str) -> str:
    """How a class label is shown to people ("no_tumor" -> "no tumour", "glioma" unchanged).
    Files (CSV, JSON) and the command line keep the label itself."""
    return CLASS_LABELS.get(name, name.replace("_", " "))


def percent(p: float) -> str:
    """A probability as people are shown it: "73%", but ">99%" and "<1%" at the ends, never
    "100%" or "0%" (a clinician read "100%" as certainty; the model card lists confidently
    wrong answers at 0.99)."""
    shown = f"{p:.0%}"
    return {"100%": ">99%", "0%": "<1%"}.get(shown, shown)


def display_name(model: str) -> str:
    """Human name of a registry model ("mobilenetv2" -> "MobileNetV2"); unknown names unchanged."""
    return DISPLAY_NAMES.get(model, model)


def model_words(n_models: int) -> dict[str, str]:
    """The words a sentence about a run's models takes for `n_models` of them, as
    `str.format` fields: "the {models} {were} made for MRI, so {their} answer…" reads "the
    models were … their" for two and "the model was … its" for one (a MobileNetV2-only run's
    legend said "the models learnt… their answer", a review of 2026-12-06). The templates are
    the one home of each text; two models (and no run) read as they always did."""
    one = n_models == 1
    return {"models": "model" if one else "models", "their": "its" if one else "their",
            "they": "it" if one else "they", "were": "was" if one else "were",
            "see": "sees" if one else "see", "do": "does" if one else "do"}


def class_folder_words(folders: Sequence[str]) -> str:
    """"class folder: Healthy" ("class folders: Gezond, Healthy"): the words beside a class of
    a run trained on class folders of other names (`data.discovery.folders_by_class`), in
    `predict`'s and `explain`'s lines and explain's captioned overlays. The names are the
    user's: callers make them safe for where they are shown."""
    return f"class folder{'s' * (len(folders) > 1)}: {', '.join(folders)}"


def one_line(text: object) -> str:
    """User-controlled text (file names, decoder messages, run titles) as one printable line.

    Control characters (a newline or a terminal escape sequence in a file name) are shown as
    Python escapes, so one message stays one line and cannot drive the terminal (the CLI's
    messages, results.md).
    """
    s = str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in s)
