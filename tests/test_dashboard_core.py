"""Unit tests of dashboard.core, dashboard.runinfo, dashboard.error_frames and dashboard.paging:
uploads, prediction tables, run facts, error filtering, paths, paging."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dashboard import (
    about_text,
    answers,
    core,
    dataset_files,
    error_frames,
    image_counts,
    layer_names,
    paging,
    runinfo,
    summary_table,
)
from dashboard import flags as dflags
from pipeline.artifacts import ArtifactError, open_run

CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]


def _png(size=(40, 30), mode="RGB", fmt="PNG") -> bytes:
    """A small image with a bright block on its ground: a flat one is refused as blank."""
    from PIL import ImageDraw

    buf = io.BytesIO()
    im = Image.new(mode, size, 128 if mode in ("L", "P") else (100, 50, 25)[: len(mode)] or 0)
    w, h = size
    ImageDraw.Draw(im).rectangle((w // 4, h // 4, w // 2, h // 2),
                                 fill=250 if mode in ("L", "P") else (250,) * len(mode))
    im.save(buf, format=fmt)
    return buf.getvalue()


def test_decode_uploads_keeps_order_and_reports_bad_files_in_place():
    files = [("ok.png", _png()), ("empty.jpg", b""), ("text.jpg", b"hello, I am text\n" * 20),
             ("random.bin", bytes(np.random.default_rng(0).integers(0, 256, 500, np.uint8))),
             ("truncated.png", _png()[:60]), ("ünïcødé 脳.png", _png(mode="L"))]
    ups = core.decode_uploads(files)
    assert [u.name for u in ups] == [n for n, _ in files]
    assert [u.ok for u in ups] == [True, False, False, False, False, True]
    assert ups[0].image.shape == (30, 40, 3) and ups[0].image.dtype == np.uint8
    for bad in ups[1:5]:
        assert bad.error and bad.name in bad.error  # the message names the file
        assert "Traceback" not in bad.error
    assert ups[0].digest != ups[5].digest and len(ups[0].digest) == 64


def test_decode_upload_turns_unexpected_exceptions_into_messages(monkeypatch):
    def boom(data, name, **kwargs):
        raise RuntimeError("decoder bug")

    monkeypatch.setattr(core, "decode_slices", boom)
    up = core.decode_upload("x.png", _png())
    assert not up.ok and "could not be read" in up.error and "RuntimeError" in up.error


def test_large_uploads_are_shrunk_small_ones_kept():
    small = np.zeros((512, 400, 3), np.uint8)
    assert core.limit_size(small) is small
    big = np.full((3000, 1500, 3), 200, np.uint8)
    out = core.limit_size(big, max_side=1000)
    assert out.shape == (1000, 500, 3) and out.dtype == np.uint8 and int(out.mean()) == 200
    up = core.decode_upload("huge.png", _png(size=(2600, 100)))
    assert up.ok and up.image.shape[1] <= core.MAX_SIDE and up.image.shape[0] >= 100 // 2
    assert abs(up.image.shape[1] / up.image.shape[0] - 26) < 1  # shape kept


def test_uploads_have_a_lower_pixel_cap_with_a_clear_message():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (6000, 5000)).save(buf, "PNG")  # 30 megapixels in a few kilobytes
    up = core.decode_upload("wide.png", buf.getvalue())
    assert not up.ok
    assert up.error == "wide.png: image too large: 6000×5000 exceeds 25 megapixels"


def test_predictions_frame_and_agreement():
    probs = {"custom_cnn": np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4]]),
             "mobilenetv2": np.array([[0.6, 0.2, 0.1, 0.1], [0.5, 0.2, 0.2, 0.1]])}
    assert answers.agreement(probs).tolist() == [True, False]
    frame = answers.predictions_frame(["upload 1", "upload 2"], probs, CLASSES, ["glioma", None])
    assert frame["custom_cnn_predicted"].tolist() == ["glioma", "pituitary"]
    assert frame["mobilenetv2_confidence"].tolist() == [0.6, 0.5]
    assert frame["models_agree"].tolist() == [True, False]
    assert frame["true"].tolist() == ["glioma", ""]
    csv = answers.to_csv_bytes(frame).decode(answers.CSV_ENCODING)
    assert csv.splitlines()[0].startswith("image,true,custom_cnn_predicted")
    back = pd.read_csv(io.StringIO(csv))
    assert back["custom_cnn_p_pituitary"].tolist() == [0.1, 0.4]
    assert "**glioma** (70%)" in answers.verdict_line(probs, 0, CLASSES)
    marked = answers.verdict_line(probs, 1, CLASSES, true_label="pituitary")
    assert marked.count("✓ right") == 1 and marked.count("✗ wrong") == 1
    assert marked.index("✓") < marked.index("MobileNetV2")  # the CNN is the right one
    assert "tied" not in answers.verdict_line(probs, 0, CLASSES)
    # a tie at the precision shown is said, not passed off as an answer
    tie = {"custom_cnn": np.array([[0.441, 0.05, 0.4394, 0.0696]])}
    assert "**glioma** (44%, tied with **no tumour**)" in answers.verdict_line(tie, 0, CLASSES)
    # the pooled answer is said weak below its own threshold; each model's weak answer has its
    # own warning under the line, not this mark
    pooled = np.array([[0.55, 0.2, 0.15, 0.1]])
    line = answers.verdict_line(probs, 0, CLASSES, together=pooled, together_weak_below=0.6)
    assert line.endswith("Both, pooled: **glioma** (55%, weak)") and line.count("weak") == 1
    assert "weak" not in answers.verdict_line(probs, 0, CLASSES, together=pooled,
                                           together_weak_below=0.55)
    assert "weak" not in answers.verdict_line(probs, 0, CLASSES, together=pooled)


def test_a_predictions_csv_with_its_provenance_opens_as_it_is():
    """Five `# ` lines before the header failed `pandas.read_csv` ("Expected 1 fields in line
    6, saw 18", h64's review): the run, time, model hashes and disclaimer are columns now."""
    import csv as csvlib

    from dashboard import runinfo

    probs = {"custom_cnn": np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4]])}
    frame = answers.predictions_frame(["upload 1", "upload 2"], probs, CLASSES,
                                   warnings=[["=a, \"quoted\"\nwarning"], []])
    notes = runinfo.report_notes("Run, v2 (r1)", "2026-12-06 03:00 UTC",
                                 {"Custom CNN": "ab" * 32}, "Not a diagnostic\ndevice.")
    data = answers.to_csv_bytes(frame, notes)
    back = pd.read_csv(io.BytesIO(data))
    assert len(back) == 2 and list(back.columns[-4:]) == [
        "run", "created", "model_sha256_custom_cnn", "disclaimer"]
    assert back["run"].tolist() == ["Run, v2 (r1)"] * 2
    assert back["model_sha256_custom_cnn"].tolist() == ["ab" * 32] * 2
    assert back["disclaimer"].iloc[0] == "Not a diagnostic device."  # one line per row
    assert back["custom_cnn_p_pituitary"].tolist() == [0.1, 0.4]
    rows = list(csvlib.reader(io.StringIO(data.decode(answers.CSV_ENCODING))))
    assert rows[0][0] == "image" and len({len(r) for r in rows}) == 1  # the header first


def test_a_download_has_a_byte_order_mark_for_excel_and_still_opens_in_pandas():
    """Excel reads a CSV without a byte-order mark in the machine's legacy code page: a run
    title "Référence" showed as "RÃ©fÃ©rence". The downloads carry the mark; pandas drops it
    with its default encoding, and the csv module with utf-8-sig."""
    import codecs
    import csv as csvlib

    from dashboard import runinfo

    probs = {"custom_cnn": np.array([[0.7, 0.1, 0.1, 0.1]])}
    frame = answers.predictions_frame(["test split Training/glioma/gliome-é.jpg"], probs, CLASSES)
    notes = runinfo.report_notes("Référence · Ünterschied (r1)", "2026-12-06 03:00 UTC", {},
                                 "Not a diagnostic device.")
    data = answers.to_csv_bytes(frame, notes)
    assert data.startswith(codecs.BOM_UTF8) and data.count(codecs.BOM_UTF8) == 1
    for back in (pd.read_csv(io.BytesIO(data)),
                 pd.read_csv(io.BytesIO(data), encoding="utf-8-sig")):
        assert back.columns[0] == "image"  # no stray "\ufeff" glued to the first header
        assert back["image"].tolist() == ["test split Training/glioma/gliome-é.jpg"]
        assert back["run"].tolist() == ["Référence · Ünterschied (r1)"]
    rows = list(csvlib.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0][0] == "image" and rows[1][-3] == "Référence · Ünterschied (r1)"


def test_class_labels_have_one_display_form():
    """The probability table said "no tumor" while captions and the verdict said "no_tumor":
    every page shows a class through `names.class_label`; files keep the label."""
    from pipeline.names import class_label

    assert [class_label(c) for c in CLASSES] == ["glioma", "meningioma", "no tumour", "pituitary"]
    assert class_label("tumor") == "tumour" and class_label("some_new_class") == "some new class"
    says_none = {"custom_cnn": np.array([[0.1, 0.1, 0.7, 0.1]])}
    assert answers.verdict_line(says_none, 0, CLASSES) == "Custom CNN: **no tumour** (70%)"
    marked = answers.verdict_line(says_none, 0, CLASSES, true_label="no_tumor")
    assert "✓ right" in marked  # compared as labels, shown as words
    summary = summary_table.summary_frame(["t"], ["a.png"], says_none, CLASSES, [[]])
    assert summary["Custom CNN"].tolist() == ["no tumour (70%)"]
    table = pd.DataFrame({"path": ["no_tumor/a.jpg"], "true": ["no_tumor"],
                          "custom_cnn_pred": ["no_tumor"], "custom_cnn_conf": [0.6]})
    shown = error_frames.error_table(table, ["custom_cnn"])
    assert shown.iloc[0].tolist() == ["no_tumor/a.jpg", "no tumour", "no tumour", "60%"]
    assert table["true"].tolist() == ["no_tumor"]  # the data itself is left alone
    # the predictions CSV keeps the labels: it is read by code, not only by people
    csv = answers.to_csv_bytes(answers.predictions_frame(["upload 1"], says_none, CLASSES)).decode(
        answers.CSV_ENCODING)
    assert "no_tumor" in csv and "no tumour" not in csv


def test_csv_download_and_predictions_csv_neutralise_formula_file_names():
    names = ["=HYPERLINK(\"http://x\").png", "@SUM(1+1).png", "+cmd.png", "ok.png"]
    probs = {"custom_cnn": np.tile([0.7, 0.1, 0.1, 0.1], (4, 1))}
    csv_text = answers.to_csv_bytes(answers.predictions_frame(names, probs, CLASSES)).decode(
        answers.CSV_ENCODING)
    first_cells = [line.split(",")[0] for line in csv_text.splitlines()[1:]]
    assert not any(c.lstrip('"')[:1] in "=+-@" for c in first_cells), first_cells
    # predictions.csv of a run: written safe, read back exactly by the dashboard
    header = "path,true,predicted,p_glioma,p_meningioma,p_no_tumor,p_pituitary,correct\r\n"
    from pipeline.csv_safe import to_csv

    text = to_csv(header.strip().split(","),
                  [[n, "glioma", "glioma", 0.7, 0.1, 0.1, 0.1, 1] for n in names])
    assert not any(line[:1] in "=+-@" for line in text.splitlines())
    assert error_frames.parse_predictions(text, CLASSES, "x")["path"].tolist() == names


def test_class_index_by_name_or_index():
    from pipeline.names import class_index

    assert class_index(None, CLASSES) is None
    assert class_index("no_tumor", CLASSES) == 2
    assert class_index("3", CLASSES) == 3
    # the words the dashboard shows, in any case, with spaces or underscores (review s37)
    for said in ("no tumour", "No Tumour", "no tumor", "NO_TUMOR", " no  tumour ", "no-tumor"):
        assert class_index(said, CLASSES) == 2, said
    assert class_index("Glioma", CLASSES) == 0
    for bad in ("cat", "4", "-1", "", "tumour"):
        with pytest.raises(ValueError, match=f"unknown class '{bad}'; choose a class name "
                                             r"\(glioma, meningioma, no tumour, pituitary\)"):
            class_index(bad, CLASSES)


MANIFEST = {
    "run_id": "r1", "created": "2026-11-22T22:15:00+00:00",
    "data": {"dir": "/data/x", "layout": "sartaj", "n_images": 3264, "binary": False},
    "splits": {"strategy": "stratified+dedup", "seed": 42, "train": 2200, "val": 400, "test": 500,
               "official_test": {"n": 394, "leaking": 64}},
    "class_names": CLASSES, "config": {"profile": "full"},
    "models": {
        "custom_cnn": {"image_size": 160, "crop_head": True, "weights": "none", "params": 123456,
                       "train_seconds": 330.0, "best_epoch": 17, "epochs_run": 25},
        "mobilenetv2": {"image_size": 224, "crop_head": True, "weights": "none", "params": 2300000,
                        "train_seconds": 7300.0, "best_epoch": 5, "epochs_run": 9},
    },
}


def test_run_facts_badge_only_for_transfer_models_without_imagenet():
    facts = runinfo.run_facts(MANIFEST)
    assert len(facts.weights_warnings) == 1 and "MobileNetV2" in facts.weights_warnings[0]
    assert runinfo.split_sizes(facts) == {"train": 2200, "val": 400, "test": 500,
                                          "official test": 394}
    table = runinfo.model_facts_frame(facts)
    assert table["started from"].tolist() == ["from scratch (by design)",
                                              "random (no ImageNet)"]
    assert table["training time"].tolist() == ["5.5 min", "2.0 h"]
    assert table["parameters"].tolist() == ["123,456", "2,300,000"]
    # As shown: a row per fact, a column per model, so no fact falls off a narrow page.
    shown = runinfo.model_facts_table(facts)
    assert list(shown.columns) == ["", "Custom CNN", "MobileNetV2"]
    assert shown.set_index("").loc["best epoch"].tolist() == ["17", "5"]
    assert len(shown) == table.shape[1] - 1
    with_imagenet = json.loads(json.dumps(MANIFEST))
    with_imagenet["models"]["mobilenetv2"]["weights"] = "imagenet:mobilenet.h5"
    assert runinfo.run_facts(with_imagenet).weights_warnings == []
    assert runinfo.weights_status("mobilenetv2", {"weights": "/w/custom.h5"}) == "file"
    # A manifest missing optional blocks still gives facts, not a KeyError.
    bare = runinfo.run_facts({"class_names": ["a", "b"], "models": {"custom_cnn": {}}})
    assert bare.n_images == "?" and runinfo.split_sizes(bare) == {}


def test_an_official_test_split_is_one_tile_and_its_left_out_copies_are_said():
    """The official run showed "Test images 394" and "Official test images 394", one set of
    images as two, and nothing said where 256 of the dataset's images had gone."""
    facts = runinfo.run_facts({"data": {"n_images": 3264}, "splits": {
        "train": 2220, "val": 394, "test": 394,
        "official_test": {"n": 394, "leaking": 259, "leaking_exact": 88,
                          "dropped_duplicates_of_test": 256}}})
    assert runinfo.split_sizes(facts) == {"train": 2220, "val": 394, "official test": 394}
    # 3264 - 2220 - 394 - 394 = 256: the left-out copies account for the rest
    assert image_counts.dropped_copies_sentence(facts) == (
        "259 of the 394 official test images (the dataset's own test folder) have an exact or "
        "near copy among its training-folder images, 88 of them exact. The 256 training-folder "
        "images that are such copies were left out of training and validation: no copy of a "
        "test image was trained on.")
    kept = runinfo.run_facts({"splits": {"test": 394, "official_test": {
        "n": 394, "leaking": 259, "leaking_exact": 0, "dropped_duplicates_of_test": 0}}})
    assert image_counts.dropped_copies_sentence(kept).endswith(
        "Those copies were not left out of training (a run without dedupe): its test figures "
        "are not a clean test.")
    assert image_counts.dropped_copies_sentence(runinfo.run_facts(MANIFEST)) is None  # no counts
    # the Overview's one caption: the copies said once, where the image count accounts for
    # them; a run without dedupe keeps its own sentence
    assert image_counts.overview_caption(facts) == (
        "The dataset folder holds 3264 image files; this run's splits hold 3008 of them. Left "
        "out of every split: 256 training-folder images that are exact or near copies of "
        "official test images, so no copy of a test image was trained or validated on. 259 of "
        "the 394 official test images (the dataset's own test folder) have an exact or near "
        "copy among its training-folder images, 88 of them exact.")
    assert image_counts.overview_caption(kept) == image_counts.dropped_copies_sentence(kept)
    assert image_counts.overview_caption(runinfo.run_facts({"splits": {"test": 9}})) is None
    assert image_counts.dropped_copies_sentence(runinfo.run_facts({"splits": {"test": 9}})) is None


def _pred_csv(rows):
    head = "path,true,predicted," + ",".join(f"p_{c}" for c in CLASSES) + ",correct\n"
    return head + "".join(rows)


def test_parse_predictions_validates():
    text = _pred_csv(["glioma/a.jpg,glioma,glioma,0.9,0.05,0.03,0.02,1\n",
                      "no_tumor/b.jpg,no_tumor,glioma,0.6,0.1,0.2,0.1,0\n"])
    frame = error_frames.parse_predictions(text, CLASSES, "p.csv")
    assert frame["correct"].tolist() == [True, False]
    with pytest.raises(ArtifactError, match="columns"):
        error_frames.parse_predictions("path,true\nx,glioma\n", CLASSES, "p.csv")
    with pytest.raises(ArtifactError, match="cat"):
        error_frames.parse_predictions(_pred_csv(["a,cat,glioma,1,0,0,0,0\n"]), CLASSES, "p.csv")
    with pytest.raises(ArtifactError, match="damaged"):
        error_frames.parse_predictions("", CLASSES, "p.csv")


def test_merge_and_filter_errors():
    a = error_frames.parse_predictions(_pred_csv([
        "g1,glioma,glioma,0.9,0.05,0.03,0.02,1\n", "g2,glioma,meningioma,0.3,0.5,0.1,0.1,0\n",
        "n1,no_tumor,glioma,0.5,0.1,0.3,0.1,0\n", "p1,pituitary,pituitary,0,0,0,1,1\n"]),
        CLASSES, "a")
    b = error_frames.parse_predictions(_pred_csv([
        "n1,no_tumor,glioma,0.6,0.1,0.2,0.1,0\n", "g1,glioma,no_tumor,0.2,0.1,0.6,0.1,0\n",
        "g2,glioma,glioma,0.8,0.1,0.05,0.05,1\n", "p1,pituitary,pituitary,0,0,0,1,1\n"]),
        CLASSES, "b")
    merged = error_frames.merge_predictions({"custom_cnn": a, "mobilenetv2": b})
    assert len(merged) == 4
    row = merged.set_index("path").loc["g1"]
    assert row["custom_cnn_pred"] == "glioma" and row["mobilenetv2_pred"] == "no_tumor"
    assert row["mobilenetv2_conf"] == pytest.approx(0.6)
    models = ["custom_cnn", "mobilenetv2"]

    def paths(**kw):
        return sorted(error_frames.filter_errors(merged, models, **kw)["path"])

    assert paths(wrong_by="any") == ["g1", "g2", "n1"]
    assert paths(wrong_by="all") == ["n1"]
    assert paths(wrong_by="custom_cnn") == ["g2", "n1"]
    assert paths(wrong_by="disagree") == ["g1", "g2"]
    assert paths(wrong_by="any", true_classes=["glioma"]) == ["g1", "g2"]
    assert paths(wrong_by="any", predicted_classes=["no_tumor"]) == ["g1"]
    with pytest.raises(ValueError, match="wrong_by"):
        error_frames.filter_errors(merged, models, "sometimes")
    shown = error_frames.error_table(error_frames.filter_errors(merged, models, "all"), models)
    assert list(shown.columns) == ["Test image", "True class", "Custom CNN answer",
                                   "Custom CNN confidence", "MobileNetV2 answer",
                                   "MobileNetV2 confidence"]
    assert shown.iloc[0].tolist() == ["n1", "no tumour", "glioma", "50%", "glioma", "60%"]


def test_data_file_stays_inside_the_dataset(tmp_path):
    data = tmp_path / "data"
    (data / "glioma").mkdir(parents=True)
    (data / "glioma" / "a.png").write_bytes(_png())
    (tmp_path / "secret.png").write_bytes(_png())
    assert dataset_files.data_file(data, "glioma/a.png") == data / "glioma" / "a.png"
    assert dataset_files.data_file(data, "glioma/../glioma/a.png") == data / "glioma" / "a.png"
    assert dataset_files.data_file(data, "../secret.png") is None
    assert dataset_files.data_file(data, str(tmp_path / "secret.png")) is None  # absolute path
    assert dataset_files.data_file(data, "glioma/missing.png") is None
    assert dataset_files.data_file(None, "glioma/a.png") is None
    ups = dataset_files.load_data_images(data, ["glioma/a.png", "../secret.png"])
    assert ups[0].ok and not ups[1].ok
    assert ups[1].error.startswith("../secret.png: is outside the dataset folder")


def test_a_dataset_of_symlinks_is_read_and_its_escapes_still_refused(tmp_path):
    """git-annex, DVC's cache and hand-made subsets give a dataset whose files link elsewhere:
    every image was "not found in the dataset folder" (the link was resolved, then checked)."""
    store = tmp_path / "store"
    store.mkdir()
    (store / "a.png").write_bytes(_png())
    (tmp_path / "secret.png").write_bytes(_png())
    data = tmp_path / "subset"
    (data / "glioma").mkdir(parents=True)
    (data / "glioma" / "a.png").symlink_to(store / "a.png")
    (data / "linked_dir").symlink_to(store, target_is_directory=True)
    link_root = tmp_path / "data_link"  # the dataset folder itself named through a link
    link_root.symlink_to(data, target_is_directory=True)
    for root in (data, link_root):
        assert dataset_files.data_file(root, "glioma/a.png") == root / "glioma" / "a.png"
        assert dataset_files.data_file(root, "linked_dir/a.png") == root / "linked_dir" / "a.png"
        assert dataset_files.data_file(root, "../secret.png") is None
        assert dataset_files.data_file(root, "glioma/../../secret.png") is None
    ok, escape = dataset_files.load_data_images(data, ["glioma/a.png", "glioma/../../secret.png"])
    assert ok.ok and ok.image is not None
    assert not escape.ok and "is outside the dataset folder" in escape.error


def test_dataset_images_are_named_without_machine_paths(tmp_path):
    import hashlib

    data = tmp_path / "data"
    (data / "glioma").mkdir(parents=True)
    (data / "glioma" / "a.png").write_bytes(_png())
    (data / "glioma" / "bad.png").write_bytes(b"not an image")
    ok, missing, bad = dataset_files.load_data_images(data, ["glioma/a.png", "glioma/gone.png",
                                                    "glioma/bad.png"])
    # keyed and reported by the SHA-256 of the file's bytes, like an upload
    assert ok.digest == hashlib.sha256((data / "glioma" / "a.png").read_bytes()).hexdigest()
    assert missing.error.startswith("glioma/gone.png: not found in the dataset folder")
    assert bad.error.startswith("glioma/bad.png: ")
    for up in (missing, bad):
        assert str(tmp_path) not in up.error, up.error
    assert "(not reachable here)" in dataset_files.load_data_images(None, ["glioma/a.png"])[0].error


def test_shown_paths_are_relative_to_the_project_or_the_artifacts_folder(tmp_path):
    from pipeline.artifacts import PROJECT_ROOT, read_json, shown_path

    assert shown_path(PROJECT_ROOT / "artifacts" / "runs" / "r1" / "manifest.json") == (
        "artifacts/runs/r1/manifest.json")
    assert shown_path(PROJECT_ROOT.parent / "shared" / "data") == "../shared/data"
    # outside the project's tree (only "/" in common): from the artifacts folder on, else a name
    away = Path(PROJECT_ROOT.anchor) / "elsewhere-x" / "art"
    assert shown_path(away / "runs" / "r1" / "custom_cnn" / "metrics.json") == (
        "runs/r1/custom_cnn/metrics.json")
    assert shown_path(away) == "art"
    run = tmp_path / "artifacts" / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "bad.json").write_text("{")
    for rel, message in (("gone.json", "missing file runs/r1/gone.json"),
                         ("bad.json", "damaged file runs/r1/bad.json: not valid JSON")):
        with pytest.raises(ArtifactError) as err:
            read_json(run / rel)
        assert str(err.value).startswith(message) and str(tmp_path) not in str(err.value)
    with pytest.raises(ArtifactError, match="^run folder runs/gone does not exist$"):
        open_run(run.parent / "gone")


def test_shown_paths_keep_a_symlinked_folder_as_given(tmp_path, monkeypatch):
    """A CI checkout has ../shared as a symlink: the path is shown as given (../shared/data),
    not as the link's target (it was ../../shared/data there)."""
    from pipeline import artifacts

    project, target = tmp_path / "checkout" / "repo", tmp_path / "elsewhere" / "shared"
    project.mkdir(parents=True)
    (target / "data").mkdir(parents=True)
    (project.parent / "shared").symlink_to(target, target_is_directory=True)
    monkeypatch.setattr(artifacts, "PROJECT_ROOT", project)
    assert artifacts.shown_path(project / ".." / "shared" / "data") == "../shared/data"


def test_an_unreachable_dataset_is_named_from_the_manifest():
    data = {"dir": "/home/someone/brain-mri", "dir_relative": "../data/brain-mri"}
    assert runinfo.data_unreachable(data) == (
        "this run was trained on the dataset folder `../data/brain-mri`, which is not "
        "reachable from this machine")
    assert "`brain-mri`" in runinfo.data_unreachable({"dir": "/home/someone/brain-mri"})
    assert "None" not in runinfo.data_unreachable({})


def test_report_rows_carry_a_number_and_a_hash_never_a_file_name():
    probs = {"custom_cnn": np.tile([0.7, 0.1, 0.1, 0.1], (2, 1))}
    frame = answers.predictions_frame(["upload 1", "upload 2 · slice 2 of 3"], probs, CLASSES,
                                   digests=["0123456789ab", "ba9876543210"])
    assert list(frame.columns[:2]) == ["image", "sha256"] and "file" not in frame.columns
    assert frame["sha256"].tolist() == ["0123456789ab", "ba9876543210"]
    # a series' slice keeps its file's number
    series = core.Upload("Doe_John_1970.zip", "d", image=np.zeros((2, 2, 3), np.uint8),
                         ref="upload 4", slices=[np.zeros((2, 2, 3), np.uint8)] * 3)
    piece = series.slice_view(1)
    assert piece.ref == "upload 4 · slice 2 of 3" and "Doe" not in piece.ref


def test_a_long_series_names_each_slice_by_its_place_in_the_file():
    """100 frames, 64 analysed: the second analysed was called "slice 2 of 64"."""
    from helpers import make_dicom, with_disc

    from pipeline import dicom

    frames = with_disc(np.stack([np.full((8, 8), 40 * (k % 50), np.uint16) for k in range(100)]))
    upload = core.decode_upload("series.dcm", make_dicom(frames))
    assert len(upload.slices) == dicom.MAX_SLICES and upload.total == 100
    real = dicom.slice_indices(100)[1] + 1
    assert real > 2 and upload.slice_view(1).name == f"series.dcm · slice {real} of 100"
    assert "64 of its 100 slices" in upload.note


def test_test_entries():
    entries = dataset_files.test_entries({"test": [{"path": "a.jpg", "label": "glioma"}, {"x": 1}]})
    assert entries == [{"path": "a.jpg", "label": "glioma"}]
    with pytest.raises(ArtifactError, match="test"):
        dataset_files.test_entries({"train": []})
    with pytest.raises(ArtifactError, match="object"):
        dataset_files.test_entries([1, 2])


def test_run_problems_lists_missing_files_with_fixes(tmp_path: Path):
    run_dir = tmp_path / "runs" / "r1"
    (run_dir / "custom_cnn").mkdir(parents=True)
    (run_dir / "custom_cnn" / "model.keras").write_bytes(b"x")
    (run_dir / "custom_cnn" / "metrics.json").write_text("{}")
    manifest = {**MANIFEST, "schema_version": 1, "complete": True}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    problems = runinfo.run_problems(open_run(run_dir))
    text = "\n".join(f"{p.severity}: {p.what} -> {p.fix}" for p in problems)
    assert "error: MobileNetV2: model file model.keras is missing" in text
    assert "confusion_matrix.json" in text and f"pipeline evaluate --run {run_dir}" in text
    assert f"explain-eval --run {run_dir}" in text and "comparison.json" in text


def test_core_imports_neither_plotly_nor_streamlit_nor_tensorflow():
    """core is logic without drawing: importing it must stay cheap (a fresh interpreter)."""
    import subprocess
    import sys

    code = ("import sys, dashboard.core; "
            "print(sorted(m for m in ('plotly', 'streamlit', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_dashboards_first_page_imports_no_scipy_stats_sklearn_or_tensorflow():
    """Every module a first visit imports (app.py's and the pages') stays free of scipy.stats,
    scikit-learn and TensorFlow: `pipeline.evaluate`'s eager re-exports once pulled in scipy.stats
    and scikit-learn through `pipeline.evaluate.flags`, about 1 s before the first page showed."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from dashboard import core, flags, inference, loader, runinfo, series_view, state, "
            "uploads, views, figures, charts\n"
            "import pipeline.evaluate, pipeline.evaluate.flags\n"
            "print(sorted(m for m in ('scipy.stats', 'sklearn', 'tensorflow')\n"
            "             if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    # the lazy package still gives every name it lists
    import pipeline.evaluate as ev

    assert all(getattr(ev, name) is not None for name in ev.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ev.nope  # noqa: B018


def test_figures_do_not_import_tensorflow():
    """Every page draws figures; importing TensorFlow for them would cost seconds per first
    visit (taking a threshold from `pipeline.explain` would import it)."""
    import subprocess
    import sys

    code = "import sys, dashboard.figures; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", [
    "![t](http://127.0.0.1:9999/track.png).png", "[link](http://x).png", "$x^2$.png",
    ":red[alarm].png", ":material/warning: scan.png", "Custom CNN: **pituitary** (99%).png",
    "back`tick``s.png", "`edge.png`", "line\nbreak.png", "<img src=x onerror=alert(1)>.png",
])
def test_literal_is_one_code_span_holding_the_text(name):
    import re

    out = core.literal(name)
    fence = re.match(r"`+", out).group(0)
    assert out.endswith(fence) and fence not in out[len(fence):-len(fence)]
    inner = out[len(fence):-len(fence)]
    if inner.startswith(" ") and inner.endswith(" ") and inner.strip():
        inner = inner[1:-1]  # CommonMark strips one space each side of a padded span
    assert inner == " ".join(name.splitlines())


def test_run_labels_and_data_folder_without_machine_paths():
    from dashboard import runinfo

    # the picker's box: title first, then the id's random suffix, short enough for the sidebar
    # (it showed "latest · Reference · deduplicated split · 20261", the id cut off)
    label = runinfo.run_label("20261123-014143-eb56b3", "Reference · official Testing split")
    assert label == "Reference · official Testing split · eb56b3" and len(label) <= 45
    assert runinfo.run_label("r1", None) == "r1"
    assert runinfo.run_label("20261123-014143-eb56b3", None) == "20261123-014143-eb56b3"
    long = runinfo.run_label("r1", "A title far longer than any sidebar box could ever show")
    assert long.startswith("A title far") and long.endswith("… · r1") and len(long) <= 45
    # the full text under the box: title, latest or not, the whole id (Markdown-safe)
    assert runinfo.run_caption("20261123-014143-eb56b3", "Reference · deduplicated split",
                               True) == ("Reference · deduplicated split · latest run "
                                         "`20261123-014143-eb56b3`")
    assert runinfo.run_caption("r1", "**bold** [x](y)", False) == (
        r"\*\*bold\*\* \[x\]\(y\) · run `r1`")
    assert runinfo.run_caption("r1", None, False) == "run `r1`"
    assert runinfo.shown_data_dir({"dir": "/work/shared/data/x", "dir_relative": "../data/x"}) \
        == "../data/x"
    assert runinfo.shown_data_dir({"dir": "/home/someone/secret/brain-mri"}) == "brain-mri"
    # relative, but climbing to the file-system root: the absolute path in disguise
    assert runinfo.shown_data_dir({"dir": "/tmp/pytest-7/smoke0/data",
                                   "dir_relative": "../../tmp/pytest-7/smoke0/data"}) == "data"
    facts = runinfo.run_facts({"title": "T", "data": {"dir": "/abs/path/ds"}})
    assert facts.title == "T" and facts.data_shown == "ds"


def test_answer_flags_in_plain_words():
    probs = {"custom_cnn": np.array([[0.40, 0.30, 0.20, 0.10]]),
             "mobilenetv2": np.array([[0.05, 0.05, 0.05, 0.85]])}
    flags = dflags.answer_flags(probs, 0, {"custom_cnn": 0.6, "mobilenetv2": 0.6},
                                {"custom_cnn": None, "mobilenetv2": True},
                                {"mobilenetv2": dflags.ShiftedAccuracy(0.81, 0.86, 0.7)})
    # what should change a reader's mind most first: disagreement, unlike, then weak
    assert len(flags) == 3
    assert flags[0].startswith("The models disagree")
    assert "unlike MobileNetV2's training data" in flags[1]
    # "kept 81%" read as a share of the accuracy kept (a lecturer's review)
    assert ("Its accuracy on copies of its own test images made blurrier, noisier or otherwise "
            "shifted at moderate strength averaged 81% (unshifted 86%, worst 70%), but "
            "stronger shifts") in flags[1]
    assert flags[2].startswith("Weak answer from Custom CNN: 40% confidence")
    calm = dflags.answer_flags({"custom_cnn": np.array([[0.9, 0.1]])}, 0, {"custom_cnn": 0.6},
                               {"custom_cnn": False}, {})
    assert calm == []


def test_flags_say_how_often_test_answers_with_the_same_warning_were_right():
    probs = {"custom_cnn": np.array([[0.40, 0.30, 0.20, 0.10]]),
             "mobilenetv2": np.array([[0.05, 0.05, 0.05, 0.85]])}
    measured = {  # flags.json "models" of the official-testing run, rounded
        "custom_cnn": {"weak": {"accuracy_flagged": 0.37, "accuracy_unflagged": 0.755},
                       "unlike": {"accuracy_flagged": 0.52, "accuracy_unflagged": None},
                       "disagree": {"accuracy_flagged": 0.179}},
        "mobilenetv2": {"disagree": {"accuracy_flagged": 0.581}, "unlike": "damaged"}}
    flags = dflags.answer_flags(probs, 0, {"custom_cnn": 0.6, "mobilenetv2": 0.6},
                                {"custom_cnn": True, "mobilenetv2": True}, {}, (), None, None,
                                measured)
    assert flags[0] == ("The models disagree: at least one of them is wrong. On the test images "
                        "where they disagreed, each was right: Custom CNN 18%, MobileNetV2 58%.")
    # not quoted for "unlike": the flagged test images were real MRI right about as often as
    # the others, which beside a photo or noise read as reassurance
    assert flags[1].endswith("does not vouch for this answer. If it is not a brain MRI "
                             "slice, the answer means nothing.")
    assert flags[2].endswith("the answer means nothing.")  # damaged entry: nothing added
    assert flags[3].endswith("Its test answers this weak were right 37% of the time "
                             "(76% otherwise).")
    # the shifted copies' accuracy is a best case, never comfort: beside a chest X-ray "it was
    # 88% accurate" read as reassurance
    shifted = dflags.answer_flags(probs, 0, {}, {"custom_cnn": True}, {"custom_cnn": 0.88})
    assert ("Its accuracy on copies of its own test images made blurrier, noisier or otherwise "
            "shifted averaged 88%, but stronger shifts and images of another kind or source "
            "can fare far worse."
            ) in shifted[1]
    assert "axial" not in shifted[1]  # the training data hold coronal and sagittal slices too
    unmeasured = dflags.answer_flags(probs, 0, {"custom_cnn": 0.6}, {}, {})
    # one spelling of percentages on every page: "90%", like "40% confidence" above
    assert unmeasured[-1].endswith("were right less than 90% of the time.")


def test_every_no_tumour_answer_says_it_cannot_rule_a_tumour_out():
    """A sagittal glioma answered "no tumour (85%)" with no warning of its own (a clinician's
    review): the only caution, for images of another pixel size, never fired on the shipped
    runs. Every "no tumour" answer now says it is no rule-out, with the model's measured
    record, and the pixel-size gap where it applies."""
    classes = ["glioma", "meningioma", "no_tumor", "pituitary"]
    by_size = {"size": "512x512",  # the official-testing run's custom CNN
               "common_size": {"n": 32, "accuracy": 0.875, "sensitivity": 1.0,
                               "specificity": None},
               "other_sizes": {"n": 362, "accuracy": 0.577, "sensitivity": 0.611,
                               "specificity": 0.771}}
    record = {"tp": 386, "fn": 29, "tn": 71, "fp": 4, "n_tumor": 415, "n_no_tumor": 75}
    says_none = {"custom_cnn": np.array([[0.05, 0.05, 0.85, 0.05]])}

    def flags(probs, size, groups, rec=record, sartaj=True):  # the shipped runs' data
        return dflags.answer_flags(probs, 0, {}, {}, {}, classes, size, {"custom_cnn": groups},
                                   tumour_records={"custom_cnn": rec}, sartaj=sartaj)

    caution = ("Custom CNN says no tumour: a 'no tumour' answer cannot rule a tumour out: it "
               "means the slice looks most like the training data's no-tumour images (a "
               "folder that includes CT slices), not that the brain is normal.")
    measured = (" On this run's test images, 71% of Custom CNN's 'no tumour' answers were "
                "right, and it called 29 of 415 tumours 'no tumour'.")
    assert flags(says_none, "256x256", by_size) == [
        caution + measured + " This image is not 512x512 like most of Custom CNN's training "
        "tumours: on such test images it found 61% of the tumours (against 100% at 512x512)."]
    assert flags(says_none, "512x512", by_size) == [caution + measured]  # the common size
    says_glioma = {"custom_cnn": np.array([[0.85, 0.05, 0.05, 0.05]])}
    assert flags(says_glioma, "256x256", by_size) == []  # a tumour answer: nothing to rule out
    small_gap = {**by_size, "other_sizes": {**by_size["other_sizes"],
                                            "sensitivity": 1.0 - dflags.SIZE_GAP / 2}}
    assert flags(says_none, "256x256", small_gap) == [caution + measured]
    # a run evaluated before the breakdowns: the caution alone
    assert flags(says_none, "256x256", None, rec=None) == [caution]
    # a run on other data is told nothing of the Sartaj no-tumour folder's CT slices (a
    # review, 2026-12-06: a student's yes/no run said it)
    assert flags(says_none, "256x256", None, rec=None, sartaj=False) == [
        caution.replace(" (a folder that includes CT slices)", "")]
    assert dflags.size_gap(by_size) == (1.0, 0.611) and dflags.size_gap(small_gap) is None
    # both models say it: one caution, each model's record in it, before the disagreement
    both = dflags.answer_flags(
        {"custom_cnn": says_none["custom_cnn"], "mobilenetv2": np.array([[.1, .1, .7, .1]])},
        0, {}, {}, {}, classes, "512x512", None,
        tumour_records={"custom_cnn": record, "mobilenetv2": {**record, "fn": 3, "tn": 73}},
        sartaj=True)
    assert both == [caution.replace("Custom CNN says", "Custom CNN and MobileNetV2 say")
                    + measured + " On this run's test images, 96% of MobileNetV2's 'no tumour' "
                    "answers were right, and it called 3 of 415 tumours 'no tumour'."]


def test_middle_severity_accuracy_of_a_robustness_report():
    rows = [{"accuracy": 0.9}, {"accuracy": 0.8}, {"accuracy": 0.5}]
    report = {"models": {"m": {"shifts": {"blur": rows, "noise": [*rows[:1], {"accuracy": 0.6},
                                                                   rows[2]]}}}}
    assert dflags.middle_severity_accuracy(report)["m"] == pytest.approx((0.7, None, 0.6))
    report["models"]["m"]["clean"] = {"accuracy": 0.95}
    assert dflags.middle_severity_accuracy(report)["m"].words() == (
        "at moderate strength averaged 70% (unshifted 95%, worst 60%)")
    assert dflags.middle_severity_accuracy({"models": {"m": {"shifts": {}}}}) == {"m": None}


def test_decode_notes_and_plain_layer_names():
    from PIL import Image, ImageDraw

    rgba = Image.new("RGBA", (40, 30), (200, 100, 50, 128))
    ImageDraw.Draw(rgba).rectangle((10, 8, 20, 15), fill=(20, 240, 90, 255))  # not blank
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    up = core.decode_upload("t.png", buf.getvalue())
    assert up.ok and up.note == "This file was adapted: its transparency was flattened onto black."
    assert core.decode_upload("plain.png", _png()).note is None
    assert core.decode_note({"mode": "L", "frames": 3}) == (
        "This file was adapted: only the first of its 3 frames is shown and analysed.")
    assert layer_names.layer_label("out_relu", (7, 7), last=True) == "last conv block, 7×7"
    assert layer_names.layer_label("block_13_expand_relu", (14, 14), last=False) == (
        "block 13 expand relu, 14×14")
    # every option of the layer picker carries its technical name, not only the first few
    assert layer_names.layer_option("last conv block, 7×7", "out_relu") == (
        "last conv block, 7×7 (out_relu)")
    # a name in words that is only the technical one with spaces: said once (twice, the box
    # cut it at 911 px)
    assert layer_names.layer_option("block 13 expand relu, 14×14", "block_13_expand_relu") == (
        "block_13_expand_relu, 14×14")
    assert layer_names.layer_option("block 13 expand relu", "block_13_expand_relu") == (
        "block_13_expand_relu")


def test_summary_frame_for_many_uploads():
    probs = {"custom_cnn": np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4]]),
             "mobilenetv2": np.array([[0.6, 0.2, 0.1, 0.1], [0.5, 0.2, 0.2, 0.1]])}
    thumbs = [summary_table.thumbnail_url(np.full((300, 200, 3), v, np.uint8))
              for v in (0, 255)]
    assert all(t.startswith("data:image/png;base64,") for t in thumbs)
    frame = summary_table.summary_frame(thumbs, ["a.png", "=b.png"], probs, CLASSES,
                               [[], ["The models disagree: at least one of them is wrong."]])
    # the answers first, the (often long) file name last: at 800 px it pushed them off-screen
    assert list(frame.columns) == ["image", "Custom CNN", "MobileNetV2", "models agree",
                                   "flags", "file"]
    assert frame["Custom CNN"].tolist() == ["glioma (70%)", "pituitary (40%)"]
    assert frame["models agree"].tolist() == [True, False]
    assert frame["flags"].tolist() == [0, 1]


def test_pdf_report_carries_the_model_file_hashes(tmp_path):
    import hashlib
    import subprocess

    from dashboard import runinfo
    from dashboard.report_pdf import Page, PageModel, report_pdf

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "model.keras").write_bytes(b"weights of a")
    manifest = {"models": {"custom_cnn": {"file": "a/model.keras"},
                           "mobilenetv2": {"file": "missing/model.keras"}}}
    hashes = runinfo.model_file_hashes(tmp_path, manifest)
    assert hashes == {"custom_cnn": hashlib.sha256(b"weights of a").hexdigest(),
                      "mobilenetv2": "unreadable"}
    img = np.zeros((32, 32, 3), np.uint8)
    page = Page("ab" * 32, img, [PageModel("Custom CNN", img, "Grad-CAM", {"x": 0.9, "y": 0.1})],
                [])
    pdf = report_pdf([page], "Run (r1)", np.zeros((4, 16, 3), np.uint8),
                     model_hashes={"Custom CNN": hashes["custom_cnn"]})
    try:
        text = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True,
                              check=True).stdout.decode()
    except FileNotFoundError:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    assert f"Custom CNN: {hashes['custom_cnn']}" in text
    assert runinfo.short_hash(hashes["custom_cnn"]) == hashes["custom_cnn"][:12]


def test_layer_words_and_readable_time_for_people():
    assert layer_names.layer_words("gradcam_target", "gradcam_target") == "last conv block"
    assert layer_names.layer_words("block_13_expand_relu", "out_relu") == "block 13 expand relu"
    # the About page showed "2026-12-02T09:53:34+00:00"
    assert runinfo.readable_time("2026-12-02T09:53:34+00:00") == "2 Dec 2026, 09:53 UTC"
    assert runinfo.readable_time("2026-12-01T17:02:43+02:00") == "1 Dec 2026, 15:02 UTC"
    assert runinfo.readable_time("2027-01-01T00:30:00-01:00") == "1 Jan 2027, 01:30 UTC"
    assert runinfo.readable_time("2026-12-02T09:53:34") == "2 Dec 2026, 09:53"  # no zone: none said
    assert runinfo.readable_time("?") == "?"


def test_agreement_note_counts_images_and_says_nothing_for_one_model():
    """The caption over the cards said "0 agreement(s)", and "1 agreement(s)" on a one-model run
    (whose agreement column is all True): a claim with nothing to agree with."""
    assert answers.agreement_note([True, False, True], 2) == "the models agree on 2 of 3"
    assert answers.agreement_note([False], 2) == "the models agree on 0 of 1"
    assert answers.agreement_note([True, True], 1) == ""
    # an image whose answers are hidden (it may be no MRI) is not counted, and said apart
    assert answers.agreement_note([True, True, True], 2, [False, True, True]) == (
        "the models agree on 1 of 1 shown (2 images' answers hidden: may not be brain MRI)")
    assert answers.agreement_note([True, False], 2, [False, False]) == "the models agree on 1 of 2"
    assert answers.agreement_note([True, True], 2, [True, False]) == (
        "the models agree on 1 of 1 shown (1 image's answers hidden: may not be brain MRI)")
    assert answers.agreement_note([True], 2, [True]) == (
        "no agreement counted (1 image's answers hidden: may not be brain MRI)")


def test_restored_results_say_when_they_were_analysed_not_0_seconds():
    """A restored upload (its results from the result store) said "analysed in 0.00 s"."""
    assert answers.analysis_note(2, 1.234, [None]) == "1 of 2 file(s) analysed in 1.23 s"
    again = answers.analysis_note(2, 0.001, [0.8, 0.45])
    # "on this server": the store is shared by sessions (a new one's first upload said
    # "analysed earlier" of an analysis its reader never made: a review)
    assert again == ("2 of 2 file(s) analysed earlier on this server (it took 1.25 s then) and "
                     "shown again from memory")
    assert "0.00 s" not in again
    mixed = answers.analysis_note(3, 0.9, [None, 0.4, None])
    assert mixed == ("3 of 3 file(s) analysed in 0.90 s (1 of them analysed earlier on this "
                     "server, shown again from memory)")
    # the benchmark reads "analysed in X s" from the page (pipeline.bench.browser)
    import re

    assert re.search(r"analysed in ([0-9.]+) s", mixed).group(1) == "0.90"


@pytest.mark.parametrize("shape", [(300, 200, 3), (200, 300, 3), (512, 512, 3), (100, 100, 3),
                                   (581, 524, 3)])
def test_every_picture_of_a_card_gets_one_square_size(shape):
    """The original (any aspect) showed taller or shorter than the square overlays, so the
    captions under them did not line up."""
    image = np.full(shape, 200, np.uint8)
    out = core.square_for_display(image, 320)
    assert out.shape == (320, 320, 3) and out.dtype == np.uint8
    h, w = shape[:2]
    # the whole image, aspect kept, centred on black
    rows = np.flatnonzero(out[:, 160, 0] > 100)
    cols = np.flatnonzero(out[160, :, 0] > 100)
    assert abs(len(rows) - 320 * h / max(h, w)) <= 2 and abs(len(cols) - 320 * w / max(h, w)) <= 2
    assert abs(rows[0] - (319 - rows[-1])) <= 1 and abs(cols[0] - (319 - cols[-1])) <= 1


def test_heatmap_flags_are_short_under_an_overlay_and_explained_once_per_card():
    """The shortcut warning filled about 11 lines of a narrow overlay column: the column gets a
    short label, the card one note naming every flagged model."""
    label = dflags.outside_label(0.654)
    assert label == "Outside the head 65%" and len(label) <= 24
    assert "65%" in dflags.outside_help(0.654, 0.5) and "alarm above 50%" in dflags.outside_help(
        0.654, 0.5)
    note = dflags.outside_note({"custom_cnn": 0.65, "mobilenetv2": 0.73}, 0.5)
    assert note.startswith("Evidence mostly outside the head (Custom CNN 65%, MobileNetV2 73% ")
    for meaning in ("the heat in", "hottest 10%", "outside the head", "alarm above 50%",
                    "something other than the anatomy", "text, borders or markers"):
        assert note.count(meaning) == 1, meaning
    assert len(dflags.EMPTY_LABEL) <= 24
    assert dflags.empty_note(["mobilenetv2"]).startswith("Empty heatmap (MobileNetV2): ")
    assert "no positive evidence for 'no tumour'" in dflags.empty_help("Grad-CAM", "no tumour")


def test_predict_cards_are_paged_and_a_page_past_the_end_is_the_last_one():
    per = paging.CARDS_PER_PAGE
    assert (paging.page_count(0), paging.page_count(per), paging.page_count(per + 1)) == (1, 1, 2)
    assert paging.page_label(1, 9, 4) == "Images 1–4 of 9"
    assert paging.page_label(3, 9, 4) == "Image 9 of 9"  # a last page of one
    assert paging.page_label(2, 7, 4) == "Images 5–7 of 7"
    assert paging.page_items(list(range(9)), 3, 4) == [8]
    assert paging.page_items(list(range(9)), 2, 4) == [4, 5, 6, 7]
    # the page asked for, within the pages there are: a filter left fewer pages -> the last
    assert [paging.clamp_page(p, 9, 4) for p in (1, 2, 3, 4, 0, None, "2", True)] == [
        1, 2, 3, 3, 1, 1, 1, 1]


def test_the_model_card_s_headings_sit_under_the_page_s_title():
    """The About page showed the model card's "# Model card" as a second h1."""
    card = "# Model card\n\ntext # not a heading\n\n## Data\n```\n# a comment in code\n```\n"
    assert about_text.demote_headings(card).splitlines() == [
        "## Model card", "", "text # not a heading", "", "### Data", "```",
        "# a comment in code", "```"]


def test_a_heatmap_s_hottest_place_in_words():
    """The overlays had no text equivalent: a screen reader (or a colour-blind eye) could not
    tell where the heat is. Each overlay's caption says it by thirds of the picture."""
    from pipeline.explain.render import peak_words

    hm = np.zeros((90, 90), np.float32)
    assert peak_words(hm) is None  # an empty map has no hottest place
    for (y, x), words in {(5, 5): "upper left", (5, 45): "upper centre", (45, 45): "centre",
                          (45, 85): "middle right", (85, 10): "lower left",
                          (89, 89): "lower right"}.items():
        hm[:] = 0.1
        hm[y, x] = 1.0
        assert peak_words(hm) == words, (y, x)


def test_probabilities_never_read_as_certainty():
    """"no tumour (100%)" read as certainty to a clinician (the model card lists confidently
    wrong answers at 0.99): the ends are shown as ">99%" and "<1%", on the card, in its table
    and in the PDF."""
    from dashboard.figures import probability_table
    from dashboard.report_pdf import PageModel, answer
    from pipeline.names import percent

    assert [percent(p) for p in (0.9951, 0.994, 0.73, 0.0051, 0.0049, 0.0)] == [
        ">99%", "99%", "73%", "1%", "<1%", "<1%"]
    probs = {"custom_cnn": np.array([[0.998, 0.001, 0.001, 0.0]])}
    assert "**glioma** (>99%)" in answers.verdict_line(probs, 0, CLASSES)
    table = probability_table({"custom_cnn": probs["custom_cnn"][0]}, CLASSES)
    assert "**>99%**" in table and "<1%" in table and "100%" not in table
    page = PageModel("Custom CNN", np.zeros((4, 4, 3), np.uint8), "",
                     dict(zip(CLASSES, probs["custom_cnn"][0].tolist(), strict=True)))
    assert answer(page) == "glioma (>99%)"


def test_the_dashboard_and_explain_draw_overlays_at_one_default_opacity():
    """The dashboard's slider started at 0.45 and `explain --alpha` at 0.4: the same image's
    overlay looked different in each."""
    import inspect

    from dashboard.inference import Settings
    from pipeline.cli.explain_cmd import explain
    from pipeline.explain.render import render_overlay
    from pipeline.names import HEATMAP_ALPHA

    cli_default = inspect.signature(explain).parameters["alpha"].default.default
    overlay_default = inspect.signature(render_overlay).parameters["alpha"].default
    assert Settings().alpha == cli_default == overlay_default == HEATMAP_ALPHA


def test_the_original_shows_the_part_the_models_see_dashed():
    """The overlays show only the head's box, the original all of the picture: a presenter
    pointing from one to the other was off (a review). The original dashes that box."""
    from dashboard import views
    from pipeline.geometry import crop_box

    image = np.zeros((200, 300, 3), np.uint8)
    cv2.circle(image, (100, 100), 60, (140, 140, 140), -1)  # a head left of centre
    shown, framed = core.original_for_display(image, True, views.DISPLAY_SIDE)
    assert framed and shown.shape == (views.DISPLAY_SIDE, views.DISPLAY_SIDE, 3)
    plain = core.square_for_display(image, views.DISPLAY_SIDE)
    changed = np.argwhere(np.any(shown != plain, axis=-1))
    assert len(changed) and np.all(shown[tuple(changed.T)] == core.FRAME_COLOUR)
    # the dashes sit on the box, brought into the displayed square (300 px wide: 50 px padded)
    x0, y0, x1, y1 = crop_box(image)
    scale = views.DISPLAY_SIDE / 300
    assert changed[:, 1].min() == round(x0 * scale) and changed[:, 0].min() == round(
        (y0 + 50) * scale)
    dashed_top = shown[round((y0 + 50) * scale), round(x0 * scale):round(x1 * scale)]
    assert 0 < np.mean(np.all(dashed_top == core.FRAME_COLOUR, axis=-1)) < 0.8  # dashes
    # models that see the whole picture, or a head that fills it: no box, the plain original
    assert not core.original_for_display(image, False, views.DISPLAY_SIDE)[1]
    full = np.full((120, 120, 3), 140, np.uint8)
    shown, framed = core.original_for_display(full, True, views.DISPLAY_SIDE)
    assert not framed and np.array_equal(shown, core.square_for_display(full, views.DISPLAY_SIDE))


def test_the_test_paths_note_names_the_data_s_own_split_folders_or_nothing():
    """Predict and Error analysis said test images come "from `Training/` and `Testing/`
    alike" on a flat yes/no run and a train/test run, which have no such folders (a review,
    2026-12-06)."""
    sartaj = ["Testing/no_tumor/a.jpg", "Training/glioma_tumor/b.jpg"]
    assert runinfo.test_paths_note(sartaj) == runinfo.TEST_PATHS_NOTE  # as before
    assert runinfo.test_paths_note(["yes/a.jpg", "no/b.jpg"]) == ""
    assert runinfo.test_paths_note(["Glioma/patient_001/s1.jpg"]) == ""
    own = runinfo.test_paths_note(["test/Healthy/a.jpg", "train/Glioma/b.jpg"])
    assert "from `train/` and `test/` alike" in own and "Training" not in own
    assert runinfo.test_paths_note(["Training/glioma/a.jpg"]).endswith("from `Training/`.")


def test_the_method_menu_says_which_are_slower_and_the_captions_do_not():
    """The menu's "Score-CAM (slower)" was the method's own label, so every caption and table
    said "Score-CAM (slower) for 'pituitary'" (a review): the menu alone says it now, from the
    registry's `cost`."""
    from dashboard.views import CHOICE_LABELS
    from pipeline.explain import METHOD_LABELS, REGISTRY

    slow = {m for m, method in REGISTRY.items() if method.cost == "slow"}
    assert {"scorecam", "smoothgrad"} <= slow
    assert CHOICE_LABELS["scorecam"] == "Score-CAM · slower"
    assert all(CHOICE_LABELS[m].endswith(" · slower") == (m in slow) for m in METHOD_LABELS)
    assert not any("slower" in label for label in METHOD_LABELS.values())


def test_an_unreadable_upload_s_csv_row_sits_in_upload_order_and_counts_stay_whole():
    """The Predictions CSV's row for a file that could not be read came last, whatever its
    place, and its blank count turned every other into "5.0" (a review)."""
    probs = {"custom_cnn": np.array([[0.9, 0.1], [0.2, 0.8]])}
    frame = answers.predictions_frame(["upload 1", "upload 3"], probs, ["glioma", "no_tumor"],
                                   digests=["a" * 12, "c" * 12], warnings=[["w"] * 5, []],
                                   withheld=["", "may be CT, not MRI"],
                                   failed=[(1, "upload 2", "b" * 12, "not an image")])
    assert list(frame["image"]) == ["upload 1", "upload 2", "upload 3"]
    text = answers.to_csv_bytes(frame).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["n_warnings"] for r in rows] == ["5", "", "0"]
    assert [r["error"] for r in rows] == ["", "not an image", ""]
    assert [r["answers_withheld"] for r in rows] == ["", "", "may be CT, not MRI"]
