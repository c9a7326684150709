"""Which split of a run an image is in, by its perceptual hash (`data.membership`)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline import data
from pipeline.data.membership import FILE, Membership, split_hashes
from pipeline.images import decode_image


def _image(path: Path) -> np.ndarray:
    return decode_image(path.read_bytes(), path.name)


def test_each_split_s_images_are_found_there_and_others_nowhere(synth_data: Path):
    ds = data.discover(synth_data)
    splits = data.make_splits(ds, seed=0)
    report = split_hashes(splits)
    assert {k: len(v) for k, v in report["splits"].items()} == {
        s: len(getattr(splits, s)) for s in ("train", "val", "test")}
    found = Membership(json.loads(json.dumps(report)))  # as read back from the file
    for split in ("train", "val", "test"):
        for record in getattr(splits, split)[:5]:
            seen = found.find(_image(Path(record.path)))
            assert seen is not None and (seen.split, seen.distance, seen.exact) == (
                split, 0, True), record.rel
    # a re-saved, shrunk JPEG copy is still a copy of its training image, but not the image
    original = Image.open(splits.train[0].path).convert("RGB")
    buf = io.BytesIO()
    original.resize((100, 100)).save(buf, "JPEG", quality=60)
    copy = found.find(np.asarray(Image.open(buf)))
    assert copy is not None and copy.split == "train" and 0 < copy.distance <= found.threshold
    assert copy.exact is False
    # a copy at distance 0 that is not pixel for pixel the image (a review shrank a training
    # image to 64 px: its pHash moved 0-4 bits) is no exact copy either
    image = _image(Path(splits.train[0].path))
    brighter = np.clip(image.astype(int) + 1, 0, 255).astype(np.uint8)
    near = found.find(brighter)
    assert near is not None and near.split == "train" and near.exact is False
    # a file written before the pixel digests cannot tell: exact is None, never True
    older = Membership({k: v for k, v in report.items() if k != "pixels"})
    assert older.find(image).exact is None
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    assert found.find(noise) is None


def test_only_the_run_s_own_training_or_validation_image_hides_its_unlike_warning():
    """A changed copy of a training image (shrunk, recoloured) may be unlike the training
    data: the change is what the warning is about. Only the image itself hides it."""
    from pipeline.data.membership import hides_unlike, seen_note

    assert hides_unlike("train", True) and hides_unlike("val", True)
    assert not hides_unlike("train", False) and not hides_unlike("train", None)
    assert not hides_unlike("test", True) and not hides_unlike(None, True)
    assert seen_note("train", 0, True).startswith("This image is in this run's training split")
    near = seen_note("train", 0, False)  # same pHash, other pixels: a copy, said so
    assert near.startswith("A near copy of this image is") and "learnt from that copy" in near


def test_a_run_without_the_file_or_with_other_hashes_says_nothing(tmp_path: Path):
    assert Membership.of_run(tmp_path) is None
    (tmp_path / FILE).write_text(json.dumps({"bits": 64, "splits": {"train": ["00" * 8]}}))
    assert Membership.of_run(tmp_path) is None  # another hash size: nothing comparable
    (tmp_path / FILE).write_text("{not json")
    assert Membership.of_run(tmp_path) is None
    empty = Membership({"splits": {}})
    assert empty.find(np.zeros((32, 32, 3), np.uint8)) is None


def test_a_trained_run_knows_where_its_images_are(smoke_run: Path):
    """`train` (through `ood_run`) writes split_hashes.json with every image of each split."""
    report = json.loads((smoke_run / FILE).read_text())
    splits = json.loads((smoke_run / "splits.json").read_text())
    assert {k: len(v) for k, v in report["splits"].items()} == {
        s: len(splits[s]) for s in ("train", "val", "test")}


def test_predict_says_which_answers_are_for_the_run_s_own_images(smoke_run: Path,
                                                                  tmp_path: Path):
    """The CLI says what the dashboard says: a training image's answer is no test."""
    import csv

    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.data.membership import SEEN_MEANINGS, SEEN_TAGS

    manifest = json.loads((smoke_run / "manifest.json").read_text())
    splits = json.loads((smoke_run / "splits.json").read_text())
    root = Path(manifest["data"]["dir"])
    train, test = (root / splits[s][0]["path"] for s in ("train", "test"))
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
                    ).save(noise)
    args = ["predict", "--run", str(smoke_run), str(train), str(test), str(noise)]
    printed = CliRunner().invoke(app, args)
    assert printed.exit_code == 0, printed.output[-2000:]
    lines = printed.stdout.splitlines()
    assert lines[0].endswith(f"[{SEEN_TAGS['train']}]") and lines[1].endswith(
        f"[{SEEN_TAGS['test']}]") and "in this run's" not in lines[2]
    assert all(ln.split("\t")[-1].startswith("[") for ln in lines[:2])  # a field of its own
    assert printed.stderr.count(SEEN_MEANINGS["train"]) == 1
    as_json = json.loads(CliRunner().invoke(app, [*args, "--json"]).stdout)["results"]
    assert [r["in_run_split"] for r in as_json] == ["train", "test", None]
    assert [r["in_run_exact"] for r in as_json] == [True, True, None]
    # a changed copy (one level brighter) is tagged as a near copy, as the dashboard says it
    brighter = tmp_path / "brighter.png"
    Image.fromarray(np.clip(_image(train).astype(int) + 1, 0, 255).astype(np.uint8)).save(
        brighter)
    near = CliRunner().invoke(app, ["predict", "--run", str(smoke_run), str(brighter)])
    assert near.stdout.rstrip().endswith(f"[a near copy {SEEN_TAGS['train']}]"), near.stdout
    out = tmp_path / "p.csv"
    assert CliRunner().invoke(app, [*args, "--out", str(out)]).exit_code == 0
    rows = list(csv.DictReader(out.open(newline="")))
    assert [r["in_run_split"] for r in rows] == ["train", "test", ""]


def test_explain_says_which_overlays_are_of_the_run_s_own_images(smoke_run: Path,
                                                                   tmp_path: Path):
    """`explain` tags the run's own images as `predict` does, in its lines, explain.json and
    the captioned overlay, and never calls a training image "unlike the training data"."""
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.data.membership import SEEN_MEANINGS, SEEN_TAGS
    from pipeline.evaluate.flags import FLAG_LABELS
    from pipeline.explain.overlay_text import overlay_caption

    manifest = json.loads((smoke_run / "manifest.json").read_text())
    splits = json.loads((smoke_run / "splits.json").read_text())
    root = Path(manifest["data"]["dir"])
    train, test = (root / splits[s][0]["path"] for s in ("train", "test"))
    out = tmp_path / "ex"
    printed = CliRunner().invoke(app, ["explain", "--run", str(smoke_run), "--model",
                                       "custom_cnn", str(train), str(test), "--out", str(out)])
    assert printed.exit_code == 0, printed.output[-2000:]
    lines = printed.stdout.splitlines()
    # the image's own tags close the line, the split's last (a phantom may also be tagged "may be
    # T2 or FLAIR": the hint fires on 11 of 160 of them, which are no MRI)
    assert lines[0].split("\t")[-1].endswith(f"[{SEEN_TAGS['train']}]")
    assert lines[1].split("\t")[-1].endswith(f"[{SEEN_TAGS['test']}]")
    assert printed.stderr.count(SEEN_MEANINGS["train"]) == 1
    # a "no tumour" answer gets predict's legend line: never a rule-out (said once)
    from pipeline.evaluate.flags import NO_TUMOUR_CAUTION

    said_none = any(": no_tumor (" in line for line in lines[:2])
    assert printed.stderr.count(NO_TUMOUR_CAUTION) == int(said_none)
    rows = json.loads((out / "explain.json").read_text())["images"]
    assert [r["in_run_split"] for r in rows] == ["train", "test"]
    assert [r["in_run_exact"] for r in rows] == [True, True]
    assert [r["agree"] for r in rows] == [None, None]  # one model explained: not known
    # the caption: an "unlike" score on a training image is not shown as a warning
    entry = {"predicted": "glioma", "target": "glioma", "probs": {"glioma": 0.9},
             "method": "gradcam", "unlike": True}
    own = overlay_caption("custom_cnn", entry, "train", True)
    assert not any(FLAG_LABELS["unlike"] in ln for ln in own)
    assert own[-1].startswith(f"Note: {SEEN_TAGS['train']}")
    assert any(FLAG_LABELS["unlike"] in ln for ln in overlay_caption("custom_cnn", entry, "test"))
    changed = overlay_caption("custom_cnn", entry, "train", False)  # a shrunk copy, say
    assert any(FLAG_LABELS["unlike"] in ln for ln in changed)
    assert changed[-1].startswith(f"Note: a near copy: {SEEN_TAGS['train']}")


def test_a_one_model_run_s_legend_speaks_of_its_one_model(smoke_run: Path, tmp_path: Path):
    """A run trained with `--model custom_cnn` (here: the smoke run with its MobileNetV2 taken
    out, as such a run's files are) had predict and explain say "the models learnt from this
    image…, so their answer shows what they learnt": now "the model… its answer"."""
    import re
    import shutil

    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.data.membership import SEEN_TAGS, seen_meaning

    run = tmp_path / "artifacts" / "runs" / smoke_run.name
    shutil.copytree(smoke_run, run)
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["models"]["mobilenetv2"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(run / "mobilenetv2")
    splits = json.loads((run / "splits.json").read_text())
    root = Path(manifest["data"]["dir"])
    images = [str(root / splits[s][0]["path"]) for s in ("train", "val", "test")]
    for args in (["predict"], ["explain", "--bare", "--out", str(tmp_path / "ex")]):
        printed = CliRunner().invoke(app, [*args, "--run", str(run), *images])
        assert printed.exit_code == 0, printed.output[-2000:]
        last = [ln.split("\t")[-1] for ln in printed.stdout.splitlines()[:3]]
        assert all(field.endswith(f"[{SEEN_TAGS[s]}]")  # after any "may be T2 or FLAIR"
                   for field, s in zip(last, ("train", "val", "test"), strict=True)), last
        for split in ("train", "val", "test"):
            assert printed.stderr.count(f"[{SEEN_TAGS[split]}]: {seen_meaning(split, 1)}.") == 1
        assert "the model learnt from this image (or a copy of it), so its answer" in (
            printed.stderr)
        assert not re.search(r"\b(the models|their|they)\b", printed.stderr), printed.stderr


def test_a_mirrored_copy_is_found_as_a_copy_never_as_the_image():
    """A left-right mirror of a training image got no note at all (a clinician's review): the
    pHash is not mirror-invariant, and the models trained on mirrored copies."""
    from pipeline.data.membership import perceptual_hash, pixel_digest

    rng = np.random.default_rng(3)
    image = np.zeros((128, 128), np.uint8)
    image[20:110, 10:60] = 200  # a bright block on the left: far from its own mirror
    image[40:60, 70:120] = 90
    image = np.clip(image + rng.integers(0, 20, image.shape), 0, 255).astype(np.uint8)
    mirror = np.ascontiguousarray(image[:, ::-1])
    report = {"splits": {"train": [perceptual_hash(image).hex()]},
              "pixels": {"train": [pixel_digest(image)]}}
    found = Membership(report)
    apart = np.unpackbits(np.frombuffer(perceptual_hash(image), np.uint8)
                          ^ np.frombuffer(perceptual_hash(mirror), np.uint8)).sum()
    assert apart > found.threshold  # without the mirrored query it would not be found
    seen = found.find(mirror)
    assert seen is not None and (seen.split, seen.distance, seen.exact) == ("train", 0, False)
    assert found.find(image).exact is True  # the image itself still is the image
    assert seen.index is None and found.find(image).index == 0  # a copy has no place


def test_the_run_s_own_image_gives_its_label_where_the_lists_line_up(smoke_run: Path):
    """An exact image of a split gives its place, and splits.json its dataset label (the
    Predict card's true class); a list that may not line up (an image left out of
    split_hashes.json) or a near copy gives none."""
    from pipeline import images

    membership = Membership.of_run(smoke_run)
    splits = json.loads((smoke_run / "splits.json").read_text())
    folder = Path(json.loads((smoke_run / "manifest.json").read_text())["data"]["dir"])
    for split, k in (("train", 3), ("val", 1), ("test", -1)):
        image = images.read_image(folder / splits[split][k]["path"])
        seen = membership.find(image)
        assert seen.exact and splits[split][seen.index]["path"] == splits[split][k]["path"]
        assert membership.label(seen, splits) == splits[split][k]["label"]
        shorter = {**splits, split: splits[split][:-1]}  # one image fewer than hashed
        assert membership.label(seen, shorter) is None
        brighter = np.clip(image.astype(int) + 1, 0, 255).astype(np.uint8)
        assert membership.label(membership.find(brighter), splits) is None
    assert membership.label(None, splits) is None
