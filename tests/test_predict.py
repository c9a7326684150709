"""Predictor: the compiled forward pass matches Keras, and files stream through in chunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.artifacts import open_run
from pipeline.predict import Predictor, predict_files

pytestmark = pytest.mark.slow  # uses the trained smoke run


def test_compiled_forward_matches_the_keras_model(smoke_run: Path):
    predictor = Predictor(open_run(smoke_run))
    for name, model in predictor.models.items():
        size = predictor.image_size(name)
        x = np.random.default_rng(1).uniform(0, 255, (5, size, size, 3)).astype("float32")
        want = np.asarray(model(x, training=False))
        got = predictor.predict_arrays(name, x, batch_size=2)  # batches of 2, 2 and 1
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_files_are_predicted_in_chunks_with_the_same_results(smoke_run: Path, synth_data: Path,
                                                             tmp_path: Path):
    files = sorted((synth_data / "Testing").rglob("*.png"))[:7]
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    paths = [*files[:3], bad, *files[3:]]
    predictor = Predictor(open_run(smoke_run))
    whole, whole_bad = predict_files(predictor, paths)
    chunked, chunked_bad = predict_files(predictor, paths, chunk=3)
    assert [r["path"] for r in chunked] == [str(p) for p in files]  # order kept
    assert [p for p, _ in chunked_bad] == [p for p, _ in whole_bad] == [str(bad)]
    for a, b in zip(whole, chunked, strict=True):
        for m in a["models"]:
            assert a["models"][m]["label"] == b["models"][m]["label"]
            for c, v in a["models"][m]["probs"].items():
                assert abs(v - b["models"][m]["probs"][c]) < 1e-5
    # the same answers as preparing and predicting each decoded image on its own
    from pipeline.images import read_image

    alone = predictor.predict_images([read_image(p) for p in files])
    for i, row in enumerate(chunked):
        for m, probs in alone.items():
            got = [row["models"][m]["probs"][c] for c in predictor.class_names]
            np.testing.assert_allclose(got, probs[i], atol=1e-5)


def test_predict_warns_beside_each_answer_as_the_dashboard_does(smoke_run: Path,
                                                                synth_data: Path, tmp_path: Path):
    """`predict` printed a bare answer for a screenshot of a web page ("no_tumor (0.94)") that
    the dashboard flags as unlike the training data: every answer now carries the weak and
    unlike warnings, in the printed line, the JSON and the CSV, computed per image even when an
    unreadable file sits in the batch."""
    import csv
    import io
    import json

    from helpers import warning_inputs
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.evaluate.flags import FLAG_LABELS, FLAG_MEANINGS
    from pipeline.images import read_image
    from pipeline.ood import FAR

    files = sorted((synth_data / "Testing").rglob("*.png"))[:3]
    run, paths, bad = warning_inputs(smoke_run, tmp_path, files)
    predictor = Predictor(open_run(run))
    rows, failed = predict_files(predictor, paths)
    assert [p for p, _ in failed] == [str(bad)]
    good = [p for p in paths if p != bad]
    assert [r["path"] for r in rows] == [str(p) for p in good]
    shown = {"weak": 0, "unlike": 0}
    for m in predictor.models:
        below = predictor.low_confidence_below(m)
        assert below is not None
        for p, row in zip(good, rows, strict=True):  # each image on its own: no misalignment
            x = predictor.prepare(m, read_image(p))[None]
            conf = float(predictor.predict_arrays(m, x).max())
            v = row["models"][m]
            assert v["weak"] is (conf < below)
            level = predictor.unlike_training(m, x)[0]
            assert v["unlike"] is bool(level) and v["far"] is bool(level == FAR)
            shown["weak"] += v["weak"]
            shown["unlike"] += v["unlike"]
            # the noise images are colour noise, the phantoms greyscale like MRI
            assert v["colour"] is p.name.startswith("noise"), p
    assert shown["weak"] and shown["unlike"], shown  # both warnings occur in this test

    runner = CliRunner()
    args = ["predict", "--artifacts", str(tmp_path), "--run", str(run), *map(str, paths)]
    printed = runner.invoke(app, args)
    assert printed.exit_code == 1  # the unreadable file
    lines = [ln for ln in printed.stdout.splitlines() if "\t" in ln]
    assert len(lines) == len(good)
    for line, row in zip(lines, rows, strict=True):
        for part in line.split("\t")[1:]:
            if part.startswith("["):  # the image's own tags (disagreement, the run's split)
                continue
            if part.startswith("averaged: "):  # both models' answer pooled: no warnings
                assert part.startswith(f"averaged: {row['together']['label']} ("), part
                continue
            m = part.split(":")[0]
            v = row["models"][m]
            for k in ("colour", "weak", "far", "unlike"):
                # not "unlike the training data" for one of the run's own training images;
                # "far unlike" says it and more (`flags.SAID_BY`)
                shown_ = v[k] and not (k in ("far", "unlike") and row["in_run_split"] in (
                    "train", "val")) and not (k == "unlike" and v["far"])
                assert (f"[{FLAG_LABELS[k]}]" in part) is shown_, part
    for k in ("colour", "weak", "far", "unlike"):  # each warning shown is explained once
        assert printed.stderr.count(FLAG_MEANINGS[k]) == (f"[{FLAG_LABELS[k]}]" in printed.stdout)
    assert f"[{FLAG_LABELS['far']}]" in printed.stdout  # colour noise: far from any MRI
    as_json = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert as_json["results"] == json.loads(json.dumps(rows))
    out = tmp_path / "preds.csv"
    assert runner.invoke(app, [*args, "--out", str(out)]).exit_code == 1
    table = list(csv.DictReader(io.StringIO(out.read_text(), newline="")))
    by_path = {r["path"]: r for r in table}
    for row in rows:
        for m, v in row["models"].items():
            for k in ("colour", "weak", "unlike", "far"):
                assert by_path[row["path"]][f"{m}_{k}"] == str(int(v[k]))
    assert by_path[str(bad)]["error"] and by_path[str(bad)][f"{m}_weak"] == ""


def test_both_models_give_one_colour_verdict_for_a_large_colour_image(smoke_run: Path,
                                                                      tmp_path: Path):
    """One file, one verdict: 1600 px colour noise shrunk to each model's input turned grey."""
    from PIL import Image

    big = tmp_path / "noise.png"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (1600, 1600, 3), dtype=np.uint8)).save(big)
    rows, failed = predict_files(Predictor(open_run(smoke_run)), [big])
    assert not failed
    assert {m: v["colour"] for m, v in rows[0]["models"].items()} == {
        m: True for m in rows[0]["models"]}


def test_a_series_file_is_predicted_slice_by_slice_and_resumes_by_slice(
        smoke_run: Path, synth_data: Path, tmp_path: Path):
    """`predict` read a multi-frame DICOM as its first frame only and refused a zip of .dcm
    slices, both of which the dashboard shows slice by slice: each slice now gets its row, named
    as the dashboard names it, and a rerun of `predict --out` skips the slices already written."""
    import zipfile

    from helpers import make_dicom
    from PIL import Image

    from pipeline.images import decode_slices
    from pipeline.stream import stream_to_csv

    files = sorted((synth_data / "Testing").rglob("*.png"))[:3]
    grey = [np.asarray(Image.open(f).convert("L").resize((96, 96)), np.uint16) * 16
            for f in files]
    multi = tmp_path / "scan.dcm"
    multi.write_bytes(make_dicom(np.stack(grey)))
    zipped = tmp_path / "series.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for k in (2, 0, 1):  # stored out of order: read in InstanceNumber order
            zf.writestr(f"IM{k}.dcm", make_dicom(grey[k], InstanceNumber=k + 1))
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    predictor = Predictor(open_run(smoke_run))
    paths = [files[0], multi, broken, zipped]
    rows, failed = predict_files(predictor, paths, chunk=4)
    names = [f"{p} · slice {k} of 3" for p in (multi, zipped) for k in (1, 2, 3)]
    assert [r["path"] for r in rows] == [str(files[0]), *names]
    assert [p for p, _ in failed] == [str(broken)] and "zip" in failed[0][1]
    slices = decode_slices(multi.read_bytes(), multi.name)[0]
    alone = predictor.predict_images(slices)  # each slice on its own
    for k in range(3):
        for m, probs in alone.items():
            for row in (rows[1 + k], rows[4 + k]):  # the same pixels in both files
                got = [row["models"][m]["probs"][c] for c in predictor.class_names]
                np.testing.assert_allclose(got, probs[k], atol=1e-5)
    out = tmp_path / "preds.csv"
    first = stream_to_csv(predictor, paths[:2], out)  # stopped after the multi-frame file
    assert first["written"] == 4
    again = stream_to_csv(predictor, paths, out)
    assert again["already_done"] == 4 and again["written"] == 4  # the broken zip and 3 slices
    lines = out.read_text().splitlines()
    assert [ln.split(",")[0] for ln in lines[1:]] == [str(files[0]), *names[:3], str(broken),
                                                     *names[3:]]


def test_printed_answers_explain_a_disagreement_and_carry_the_disclaimer(capsys):
    """"[models disagree]" had no legend line (the other warnings each have one), and nothing
    printed said the answers are not a diagnosis."""
    from pipeline.cli.common import warning_legend
    from pipeline.cli.eval_cmds import _print_answers
    from pipeline.evaluate.flags import FLAG_LABELS, FLAG_MEANINGS, NO_TUMOUR_CAUTION
    from pipeline.names import DISCLAIMER

    def print_all(rows: list[dict]) -> None:  # as predict does: answers, then the legend
        seen: set[str] = set()
        splits: set[str] = set()
        _print_answers(rows, seen, splits)
        warning_legend(seen, splits, answered=bool(rows))

    def answer(label: str) -> dict:
        return {"label": label, "probs": {label: 0.9, "other": 0.1}, "colour": False,
                "weak": False, "unlike": False}

    rows = [{"path": "a.png", "agree": False,
             "models": {"custom_cnn": answer("glioma"), "mobilenetv2": answer("no_tumor")}},
            {"path": "b.png", "agree": True,
             "models": {"custom_cnn": answer("glioma"), "mobilenetv2": answer("glioma")}}]
    print_all(rows)
    out, err = capsys.readouterr()
    first, second = out.splitlines()
    assert first.endswith(f"no_tumor (90%)\t[{FLAG_LABELS['disagree']}]")
    assert FLAG_LABELS["disagree"] not in second
    assert err.count(FLAG_MEANINGS["disagree"]) == 1 and err.count(DISCLAIMER) == 1
    # a "no tumour" answer is never a rule-out: said once, however many there are
    assert err.count(NO_TUMOUR_CAUTION) == 1
    print_all(rows[1:])  # no disagreement: no legend line for it, the disclaimer still
    _, err = capsys.readouterr()
    assert FLAG_MEANINGS["disagree"] not in err and DISCLAIMER in err
    assert NO_TUMOUR_CAUTION not in err  # no "no tumour" answer


def test_predict_prints_each_chunk_s_answers_as_it_is_done(smoke_run, synth_data, monkeypatch):
    """A folder of 1000 files printed nothing for 40 s, then everything: Ctrl-C lost all of
    it. Answers now come a chunk at a time, before the next chunk is read."""
    from typer.testing import CliRunner

    from pipeline import predict as predict_mod
    from pipeline.cli import app, eval_cmds

    files = sorted(synth_data.glob("Testing/*/*.png"))[:5]
    printed: list[int] = []  # answer lines printed so far
    printed_before: list[int] = []  # ... when the next chunk is asked for
    real_iter, real_print = predict_mod.iter_predictions, eval_cmds._print_answers

    def watched(predictor, items, batch=32, workers=None):
        for out in real_iter(predictor, items, batch=2, workers=workers):
            yield out
            printed_before.append(sum(printed))

    def counted(rows, seen, splits, *rest):
        printed.append(len(rows))
        real_print(rows, seen, splits, *rest)

    monkeypatch.setattr(predict_mod, "iter_predictions", watched)
    monkeypatch.setattr(eval_cmds, "_print_answers", counted)
    done = CliRunner().invoke(app, ["predict", "--run", str(smoke_run), *map(str, files)])
    assert done.exit_code == 0, done.output
    assert printed_before == [2, 4, 5]  # each chunk's lines out as soon as it was done
    assert done.stdout.count("\n") == 5


def test_predict_takes_the_models_explain_takes(smoke_run, synth_data, tmp_path):
    """`predict` had no --model (explain has): one model's answers, the same as in both
    models' output, and a CSV of one model's columns that the other set cannot resume."""
    import json

    from typer.testing import CliRunner

    from pipeline.cli import app

    files = [str(p) for p in sorted(synth_data.glob("Testing/*/*.png"))[:3]]
    args = ["predict", "--run", str(smoke_run), "--json"]
    both = json.loads(CliRunner().invoke(app, [*args, *files]).stdout)["results"]
    one = json.loads(CliRunner().invoke(app, [*args, "--model", "mobilenetv2", *files]).stdout)
    assert [list(r["models"]) for r in one["results"]] == [["mobilenetv2"]] * 3
    assert [r["models"]["mobilenetv2"] for r in one["results"]] == [
        r["models"]["mobilenetv2"] for r in both]
    bad = CliRunner().invoke(app, [*args, "--model", "resnet", *files])
    assert bad.exit_code == 2 and "unknown --model 'resnet'" in bad.stderr
    out = tmp_path / "one.csv"
    done = CliRunner().invoke(app, ["predict", "--run", str(smoke_run), "--model", "custom_cnn",
                                    "--out", str(out), *files])
    assert done.exit_code == 0, done.output
    columns = out.read_text().splitlines()[0].split(",")
    assert "custom_cnn_predicted" in columns and not any("mobilenetv2" in c for c in columns)
    again = CliRunner().invoke(app, ["predict", "--run", str(smoke_run), "--out", str(out),
                                     *files])
    assert again.exit_code != 0 and "other columns" in again.stderr


def test_a_run_of_renamed_class_folders_says_each_answer_s_folder(smoke_run, synth_data,
                                                                   tmp_path):
    """A run trained on `Healthy/` answered "no_tumor" in predict's and explain's lines, and its
    user could not tell which of their folders that meant: each answer now names its class
    folder beside the class, with one legend line; the CSV's columns stay the class names,
    --json adds the mapping. A run whose folders are named as their classes (the smoke run's
    Kaggle names, the Sartaj data's) prints as before."""
    import json
    import shutil

    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.data.discovery import folders_by_class as folder_names

    run = tmp_path / "artifacts" / "runs" / smoke_run.name
    shutil.copytree(smoke_run, run)
    manifest = json.loads((run / "manifest.json").read_text())
    own = {"glioma": "Glioom", "meningioma": "Meningeoom", "pituitary": "Hypofyse",
           "no_tumor": "Gezond"}
    manifest["data"]["class_folders"] = {
        **{f"train/{f}": c for c, f in own.items()}, **{f"test/{f}": c for c, f in own.items()},
        "test/Healthy": "no_tumor", "train/no_tumor": "no_tumor"}
    (run / "manifest.json").write_text(json.dumps(manifest))
    files = [str(p) for p in sorted(synth_data.glob("Testing/*/*.png"))[::10][:4]]

    said = CliRunner().invoke(app, ["predict", "--run", str(run), *files])
    assert said.exit_code == 0, said.output
    answers = [part.split(": ", 1)[1] for line in said.stdout.splitlines()
               for part in line.split("\t")[1:] if part.startswith(("custom_cnn", "mobilenetv2"))]
    assert len(answers) == 8, said.stdout
    for answer in answers:  # "glioma (class folder: Glioom) (61%)"
        label = answer.split(" ", 1)[0]
        named = ("Gezond, Healthy" if label == "no_tumor" else own[label])
        plural = "s" if label == "no_tumor" else ""
        assert answer.startswith(f"{label} (class folder{plural}: {named}) ("), answer
    legend = [line for line in said.stderr.splitlines() if line.startswith("(class folder")]
    assert len(legend) == 1 and "the class was learnt from (" in legend[0], said.stderr
    for label in {a.split(" ", 1)[0] for a in answers}:
        assert f"{own[label]} → {label}" in legend[0]
    assert "no_tumor → no_tumor" not in legend[0]  # a folder named as its class: not said

    doc = json.loads(CliRunner().invoke(app, ["predict", "--run", str(run), "--json",
                                              *files]).stdout)
    assert doc["class_folder_names"]["no_tumor"] == ["Gezond", "Healthy"]
    assert {v["label"] for r in doc["results"] for v in r["models"].values()} <= set(own)
    out = tmp_path / "answers.csv"
    assert CliRunner().invoke(app, ["predict", "--run", str(run), "--out", str(out),
                                    *files]).exit_code == 0
    plain = tmp_path / "plain.csv"
    assert CliRunner().invoke(app, ["predict", "--run", str(smoke_run), "--out", str(plain),
                                    *files]).exit_code == 0
    assert out.read_text().splitlines()[0] == plain.read_text().splitlines()[0]  # same columns

    shown = CliRunner().invoke(app, ["explain", "--run", str(run), "--model", "custom_cnn",
                                     "--bare", "--out", str(tmp_path / "ex"), files[0]])
    assert shown.exit_code == 0, shown.output
    line = shown.stdout.splitlines()[0]
    label = line.split("\tcustom_cnn: ", 1)[1].split(" ", 1)[0]
    assert f"custom_cnn: {label} (class folder" in line and " -> " in line
    assert sum(x.startswith("(class folder") for x in shown.stderr.splitlines()) == 1

    # folders named as their classes: the lines and the legend as before
    assert folder_names(json.loads((smoke_run / "manifest.json").read_text())) == {}
    assert folder_names({"data": {"class_folders": {"Training/glioma_tumor": "glioma",
                                                    "Testing/no_tumor": "no_tumor"}}}) == {}
    assert folder_names({"data": {}}) == {} and folder_names({}) == {}
    before = CliRunner().invoke(app, ["predict", "--run", str(smoke_run), *files])
    assert "class folder" not in before.stdout + before.stderr


def test_explain_s_target_and_caption_take_the_run_s_class_folder_names(smoke_run, synth_data,
                                                                        tmp_path, monkeypatch):
    """On a run trained on `Healthy/` for no_tumor, `explain --target Healthy` was refused
    ("unknown --target 'Healthy'") though predict says "no_tumor (class folder: Healthy)"; the
    captioned overlay said "answers 'no tumour'" without the folder. Both take it now; a run
    whose folders are named as their classes captions as before."""
    import json
    import shutil

    from typer.testing import CliRunner

    import pipeline.explain.overlays as overlays
    from pipeline.cli import app
    from pipeline.explain.overlay_text import overlay_caption
    from pipeline.names import class_label

    run = tmp_path / "artifacts" / "runs" / smoke_run.name
    shutil.copytree(smoke_run, run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["data"]["class_folders"] = {"train/Healthy": "no_tumor", "test/Healthy": "no_tumor",
                                         "train/Glioom": "glioma", "train/meningioma": "meningioma",
                                         "train/pituitary": "pituitary"}
    (run / "manifest.json").write_text(json.dumps(manifest))
    image = str(sorted(synth_data.glob("Testing/*/*.png"))[0])
    captions: list[list[str]] = []

    def kept(*args, **kwargs):  # the caption drawn on each overlay, as explain made it
        captions.append(overlay_caption(*args, **kwargs))
        return captions[-1]

    monkeypatch.setattr(overlays, "overlay_caption", kept)
    for target in ("Healthy", "healthy"):  # the folder's name, in any case
        out = tmp_path / f"ex-{target}"
        done = CliRunner().invoke(app, ["explain", "--run", str(run), "--model", "custom_cnn",
                                        "--method", "gradcam", "--target", target, "--out",
                                        str(out), image])
        assert done.exit_code == 0, done.output
        (row,) = json.loads((out / "explain.json").read_text())["images"]
        assert row["models"]["custom_cnn"]["target"] == "no_tumor"
        assert captions[-1][1].startswith(
            "Heatmap: Grad-CAM for 'no tumour' (class folder: Healthy)"), captions[-1][1]
        # the printed line too: it said "(heatmap for 'no_tumor')" (a review of 2026-12-06)
        assert "(heatmap for 'no_tumor' (class folder: Healthy))" in done.stdout, done.stdout
        said = row["models"]["custom_cnn"]["predicted"]
        named = {"no_tumor": " (class folder: Healthy)", "glioma": " (class folder: Glioom)"}
        assert captions[-1][0].startswith(f"Custom CNN answers '{class_label(said)}'"
                                          f"{named.get(said, '')} ("), captions[-1][0]
    bad = CliRunner().invoke(app, ["explain", "--run", str(run), "--target", "Gezond",
                                   "--out", str(tmp_path / "bad"), image])
    assert bad.exit_code == 2 and "unknown --target 'Gezond'" in bad.stderr
    assert "a class folder of this run (Glioom for glioma, Healthy for no_tumor)" in bad.stderr

    # folders named as their classes (the smoke run, the Sartaj data): the caption of before
    captions.clear()
    plain = CliRunner().invoke(app, ["explain", "--run", str(smoke_run), "--model",
                                     "custom_cnn", "--method", "gradcam", "--target",
                                     "no_tumor", "--out",
                                     str(tmp_path / "plain"), image])
    assert plain.exit_code == 0, plain.output
    assert "class folder" not in " ".join(captions[-1]) and captions[-1][1].startswith(
        "Heatmap: Grad-CAM for 'no tumour'")
    assert "(heatmap for 'no_tumor')" in plain.stdout, plain.stdout
    refused = CliRunner().invoke(app, ["explain", "--run", str(smoke_run), "--target",
                                       "Healthy", "--out", str(tmp_path / "no"), image])
    assert refused.exit_code == 2 and "class folder" not in refused.stderr
