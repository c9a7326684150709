"""explain-eval on a researcher's own folder (review s36): masks of another size are resized or
refused truly, a masks folder that matches nothing fails with where it looked, inverted masks
are warned about, copies of the run's training images and ignored folders are said, each
method's result is kept, and the pointing game's interval is printed."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.explain.decoding import decode, no_localisation
from pipeline.explain.masks import MOSTLY_MASK, fit_mask, no_mask_message, prepare_mask


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def test_fit_mask_resizes_the_same_aspect_ratio_and_names_sizes_as_wxh() -> None:
    half = np.zeros((50, 64), np.uint8)  # 64 wide, 50 high: half of a 128x100 image
    half[10:20, 30:40] = 255
    same, resized = fit_mask(half, (50, 64, 3))
    assert not resized and same is half
    big, resized = fit_mask(half, (100, 128, 3))
    assert resized and big.shape == (100, 128)
    assert np.array_equal(np.argwhere(big).min(axis=0), [20, 60])  # nearest: the box doubled
    assert np.array_equal(np.argwhere(big).max(axis=0), [39, 79])
    with pytest.raises(ValueError, match=r"mask is 64x50 pixels, its image 128x128"):
        fit_mask(half, (128, 128, 3))
    # prepare_mask (explain-choose, guided training) takes the half-size mask too
    image = np.zeros((100, 128, 3), np.uint8)
    assert prepare_mask(half, image, 32, crop=False).any()


def test_no_mask_message_says_where_it_looked_and_what_the_folder_holds(tmp_path: Path
                                                                         ) -> None:
    masks = tmp_path / "masks"
    for name in ("a_mask.png", "b_mask.png", "c_mask.png", "d_mask.png"):
        _png(masks / "glioma" / name, np.zeros((8, 8), np.uint8))
    said = no_mask_message(masks, "glioma/a.jpg", 9)
    assert f"for glioma/a.jpg it looked for {masks.as_posix()}/glioma/a.<" in said
    assert "holds 4 image file(s), e.g. glioma/a_mask.png, glioma/b_mask.png, " in said
    assert "d_mask" not in said and "\n" not in said
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "the folder holds no image files" in no_mask_message(empty, "x/y.png", 1)


def test_decode_counts_resized_inverted_and_refused_masks(tmp_path: Path) -> None:
    data, masks = tmp_path / "data", tmp_path / "masks"
    image = np.full((60, 80, 3), 40, np.uint8)
    records = []
    for name in ("half", "inverted", "ratio", "broken", "none"):
        _png(data / "glioma" / f"{name}.png", image)
        records.append({"path": f"glioma/{name}.png", "label": "glioma"})
    box = np.zeros((30, 40), np.uint8)
    box[5:10, 5:10] = 255
    _png(masks / "glioma" / "half.png", box)  # half size, same ratio: resized
    inverted = np.full((60, 80), 255, np.uint8)
    inverted[10:20, 10:20] = 0
    _png(masks / "glioma" / "inverted.jpg", inverted)  # another extension: found too
    _png(masks / "glioma" / "ratio.png", np.zeros((60, 60), np.uint8))  # another ratio
    (masks / "glioma" / "broken.png").write_bytes(b"not a png")
    stats: Counter[str] = Counter()
    decoded, failed = decode(records, data, masks, stats)
    assert len(decoded) == 5
    got = {rec["path"].split("/")[1].split(".")[0]: m for rec, _, m in decoded}
    assert got["half"].shape == (60, 80) and got["inverted"] is not None
    assert got["ratio"] is None and got["broken"] is None and got["none"] is None
    assert stats["read"] == 3 and stats["unreadable"] == 1 and stats["refused"] == 2
    assert stats["resized"] == 1 and stats["mostly"] == 1 and MOSTLY_MASK == 0.5
    reasons = {f["path"]: f["error"] for f in failed}
    assert reasons["glioma/ratio.png"].startswith("mask: mask is 60x60 pixels, its image 80x60")
    assert no_localisation(stats, failed, "m") == (
        "no evaluated image has a non-empty tumour mask")  # two masks were usable
    only_refused: Counter[str] = Counter()
    _, bad = decode(records[2:3], data, masks, only_refused)
    assert no_localisation(only_refused, bad, "m").startswith(
        "none of the 1 mask file(s) found could be used, e.g. mask is 60x60 pixels")
    assert no_localisation(Counter(), [], "m") == "no masks found under m"


def _own_folder(run_dir: Path, root: Path, n: int = 2) -> tuple[Path, Path]:
    """`n` training images per class of the run copied into `root/data/<class>/` (so all are
    copies of training images), an `astrocytoma/` folder, and the tumour images' masks in
    `root/masks/<class>/<stem>.png`."""
    from pipeline.artifacts import open_run

    run = open_run(run_dir)
    train = json.loads((run_dir / "splits.json").read_text())["train"]
    data, masks = root / "data", root / "masks"
    for label in ("glioma", "no_tumor"):
        for r in [r for r in train if r["label"] == label][:n]:
            src = run.data_dir / r["path"]
            (data / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, data / label / src.name)
            if label != "no_tumor":
                msrc = run.data_dir / "masks" / r["path"]
                _png(masks / label / f"{src.stem}.png", cv2.imread(str(msrc), 0))
    _png(data / "astrocytoma" / "a.png", np.full((32, 32), 80, np.uint8))
    return data, masks


def _remask(masks: Path, out: Path, change) -> Path:
    """A copy of the masks folder with each mask changed by `change(array)`."""
    for path in masks.rglob("*.png"):
        _png(out / path.relative_to(masks), change(cv2.imread(str(path), 0)))
    return out


@pytest.mark.slow
def test_explain_eval_on_an_own_folder_says_what_a_researcher_needs(smoke_run: Path,
                                                                    tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)  # explain-eval writes into the run
    data, masks = _own_folder(run_dir, tmp_path / "own")
    ext = run_dir / "custom_cnn" / "explanations-external"

    def explain_eval(*args: str):
        return CliRunner().invoke(app, ["explain-eval", "--run", str(run_dir), "--data",
                                        str(data), "--model", "custom_cnn", "--max-images", "4",
                                        "--steps", "2", *args])

    res = explain_eval("--masks", str(masks), "--method", "gradcam")
    assert res.exit_code == 0, res.output
    # A1: copies of training images are said, as evaluate says them, and recorded
    assert ("warning: 4 of these 4 images are in the run's training or validation split (4 "
            "training): the model met them") in res.stderr  # --model: one
    saved = json.loads((ext / "data-gradcam.json").read_text())
    assert saved["source"]["overlap_with_training"]["n_seen"] == 4
    # A8: the unknown folder is said
    assert "ignored folders (no known class name): astrocytoma" in res.stderr
    # C1: the pointing game's Wilson interval, as the JSON holds it
    lo, hi = saved["pointing_game_ci"]
    row = [ln for ln in res.stdout.splitlines() if ln.startswith("│   95 % interval")]
    assert row and f"[{lo:.2f}, {hi:.2f}]" in row[0], res.stdout
    # A2: another method is kept beside the first, not written over it
    res = explain_eval("--masks", str(masks), "--method", "hirescam")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in ext.iterdir()) == ["data-gradcam.json", "data-hirescam.json"]
    assert json.loads((ext / "data-gradcam.json").read_text())["method"] == "gradcam"
    # ... and an explicit --name holding another method is refused, as on the test split
    assert explain_eval("--masks", str(masks), "--method", "gradcam", "--name", "mine"
                        ).exit_code == 0
    refused = explain_eval("--masks", str(masks), "--method", "hirescam", "--name", "mine")
    assert refused.exit_code == 2
    assert "mine.json holds gradcam" in refused.stderr and "--replace" in refused.stderr
    assert explain_eval("--masks", str(masks), "--method", "hirescam", "--name", "mine",
                        "--replace").exit_code == 0
    assert json.loads((ext / "mine.json").read_text())["method"] == "hirescam"
    fewer = explain_eval("--masks", str(masks), "--method", "hirescam", "--name", "mine",
                         "--max-images", "2")  # a quicker look does not replace it either
    assert fewer.exit_code == 2 and "mine.json was measured on 4 images" in fewer.stderr

    # A6: half-size masks are resized and scored; another aspect ratio fails, saying why
    half = _remask(masks, tmp_path / "half", lambda m: cv2.resize(
        m, (m.shape[1] // 2, m.shape[0] // 2), interpolation=cv2.INTER_NEAREST))
    res = explain_eval("--masks", str(half), "--method", "gradcam", "--name", "half", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)["custom_cnn"]
    assert out["n_masks_resized"] == 2 and out["n_localisation"] == 2
    assert "2 mask(s) of another pixel size than their image" in res.stderr
    narrow = _remask(masks, tmp_path / "narrow", lambda m: m[:, : m.shape[1] // 2])
    res = explain_eval("--masks", str(narrow), "--method", "gradcam", "--name", "narrow")
    assert res.exit_code == 2
    w, h = cv2.imread(str(next(masks.rglob("*.png"))), 0).shape[::-1]
    assert (f"none of the 2 mask file(s) found could be used, e.g. mask is {w // 2}x{h} pixels, "
            f"its image {w}x{h}") in res.stderr
    assert not (ext / "narrow.json").exists()
    # B3: inverted masks are warned about
    inverted = _remask(masks, tmp_path / "inverted", lambda m: np.where(m > 0, 0, 255
                                                                        ).astype(np.uint8))
    res = explain_eval("--masks", str(inverted), "--method", "gradcam", "--name", "inv")
    assert res.exit_code == 0, res.output
    assert "warning: 2 mask(s) mark more than 50% of their image as tumour" in res.stderr
    # A7: masks named <stem>_mask.png match nothing: fail, saying where it looked
    suffixed = tmp_path / "suffixed"
    for path in masks.rglob("*.png"):
        _png(suffixed / path.parent.name / f"{path.stem}_mask.png", cv2.imread(str(path), 0))
    res = explain_eval("--masks", str(suffixed), "--method", "gradcam", "--name", "suffixed")
    assert res.exit_code == 2
    example = sorted((data / "glioma").iterdir())[0]
    assert f"for glioma/{example.name} it looked for" in res.stderr
    assert f"e.g. glioma/{example.stem}_mask.png" in res.stderr
    assert not (ext / "suffixed.json").exists()


def test_explain_eval_of_both_defaults_gives_the_two_heatmap_record(smoke_run: Path,
                                                                   tmp_path: Path) -> None:
    """Both models' defaults measured on a folder: the line saying how often their peaks lay
    far apart there and what that meant, read from the two files written; a method picked
    by hand is not the default the dashboard's warning applies to, so no line."""
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.explain.agreement import apart_record, record_line

    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)
    data, masks = _own_folder(run_dir, tmp_path / "own")

    def explain_eval(*args: str):
        res = CliRunner().invoke(app, ["explain-eval", "--run", str(run_dir), "--data",
                                       str(data), "--masks", str(masks), "--max-images", "4",
                                       "--steps", "2", *args])
        assert res.exit_code == 0, res.output
        return res

    res = explain_eval()
    written = {m: json.loads(next((run_dir / m / "explanations-external").glob("*.json"))
                             .read_text()) for m in ("custom_cnn", "mobilenetv2")}
    record = apart_record(written)
    assert record is not None and record["n_apart"] + record["n_together"] == 2
    assert record_line(record) in " ".join(res.stdout.split())
    picked = explain_eval("--method", "hirescam")
    assert "point at different places" not in picked.stdout


def test_the_masks_folder_is_named_by_one_rule_whether_given_or_the_run_s_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --data the run's own masks/ was named relative to the project (or by its name
    alone), while README says the folder is named as given, absolute when it climbs out: the
    rule is the same for both now, more than one level out, and README says so (a review,
    2026-12-06)."""
    import os

    from pipeline.explain.quality import masks_folder_words

    here = tmp_path / "work" / "project"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    beside = tmp_path / "work" / "scratch" / "ds" / "masks"  # ../scratch/ds/masks
    far = tmp_path / "elsewhere" / "ds" / "masks"  # ../../elsewhere/ds/masks
    assert masks_folder_words(beside, given=False) == "../scratch/ds/masks"
    assert masks_folder_words(far, given=False) == str(far)
    assert masks_folder_words(Path("../scratch/ds/masks"), given=True) == "../scratch/ds/masks"
    assert masks_folder_words(Path(os.path.relpath(far)), given=True) == str(far)
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    assert "absolute when that climbs more than one level out of the working folder" in readme


@pytest.mark.slow
def test_explain_eval_without_masks_names_the_folder_as_given_and_models_as_evaluate_does(
        smoke_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review s37 (findings 15, 16): "no masks found under ../../../../tmp/…/masks" named the
    folder from the project root and not how to give masks; the table said custom_cnn where
    evaluate says Custom CNN."""
    import os

    from typer.testing import CliRunner

    from pipeline.cli import app

    monkeypatch.delenv("BRAIN_MRI_BOXES", raising=False)  # no boxes folder to fall back on
    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)
    data, _ = _own_folder(run_dir, tmp_path / "own", n=1)
    given = os.path.relpath(data)  # how a user in the project reaches /tmp: ../../../..
    assert given.startswith(os.path.join("..", ".."))
    res = CliRunner().invoke(app, ["explain-eval", "--run", str(run_dir), "--data", given,
                                   "--model", "custom_cnn", "--max-images", "2", "--steps", "2",
                                   "--method", "gradcam"])
    assert res.exit_code == 0, res.output
    assert (f"Custom CNN: no localisation scores (no masks found under "
            f"{os.path.abspath(given)}/masks; --masks DIR names the folder of tumour masks)"
            ) in " ".join(res.stdout.split())
    header = next(line for line in res.stdout.splitlines() if "measure" in line)
    assert "Custom CNN" in header and "custom_cnn" not in header
    # the file keeps its model key and the project-relative path (no machine path)
    saved = json.loads((run_dir / "custom_cnn" / "explanations-external" / "data-gradcam.json"
                        ).read_text())
    assert saved["model"] == "custom_cnn"
    assert saved["localisation_reason"] == f"no masks found under {given}/masks"


def test_explain_eval_leaves_series_files_out_and_records_why(tmp_path: Path) -> None:
    """A TIFF stack in an explain-eval --data folder was explained as its first page with the
    folder's label, a NIfTI volume dropped without a word: both are left out, counted with
    evaluate's reason (`source.skipped_series`, said by `report_source`)."""
    import nibabel as nib
    from PIL import Image

    from pipeline.artifacts import open_run
    from pipeline.data.discovery import SERIES_NOTE
    from pipeline.explain.external import external_source

    root = Path(__file__).resolve().parents[1] / "artifacts"
    run = open_run(root / "runs" / (root / "latest").read_text().strip())  # only read
    rng = np.random.default_rng(0)
    folder = tmp_path / "own" / "glioma"
    folder.mkdir(parents=True)
    pages = [Image.fromarray(rng.integers(0, 256, (64, 64), np.uint8)) for _ in range(3)]
    pages[0].save(folder / "a.png")
    pages[0].save(folder / "stack.tif", save_all=True, append_images=pages[1:])
    nib.save(nib.Nifti1Image(rng.random((64, 64, 4)).astype(np.float32), np.eye(4)),
             folder / "brain.nii")
    source = external_source(run, folder.parent, None)
    assert source["records"] == [{"path": "glioma/a.png", "label": "glioma"}]
    assert source["info"]["skipped_series"] == {
        "n": 2, "reason": SERIES_NOTE, "examples": ["glioma/brain.nii", "glioma/stack.tif"]}
    (folder / "a.png").unlink()
    with pytest.raises(ValueError, match=r"holds only series files \(2\)"):
        external_source(run, folder.parent, None)


@pytest.mark.slow
def test_explain_eval_reads_a_moved_dataset_through_run_data_as_evaluate_does(
        smoke_run: Path, tmp_path: Path) -> None:
    """evaluate took --run-data for the run's own dataset, moved, while explain-eval read it
    only through --data, which also means another folder: --run-data measures the test split
    into explanations.json, as --data on the same folder still does (the old meaning)."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    run_dir = tmp_path / "runs" / smoke_run.name
    shutil.copytree(smoke_run, run_dir)  # explain-eval writes into the run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    moved = Path(manifest["data"]["dir"])
    manifest["data"].update(dir=str(tmp_path / "gone"), dir_relative=None)
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    masks = Path(f"{moved}-boxes") / "masks"
    masks = masks if masks.is_dir() else moved / "masks"
    for option in ("--run-data", "--data"):
        res = CliRunner().invoke(app, [
            "explain-eval", "--run", str(run_dir), option, str(moved), "--masks", str(masks),
            "--model", "custom_cnn", "--max-images", "2", "--steps", "2", "--replace"])
        assert res.exit_code == 0, res.output
        saved = json.loads((run_dir / "custom_cnn" / "explanations.json").read_text())
        assert saved["source"]["kind"] == "test" and saved.get("n_faithfulness", saved["n"]) == 2
    assert not (run_dir / "custom_cnn" / "explanations-external").exists()


def test_explain_eval_decodes_each_image_of_a_folder_once_with_the_same_results(
        smoke_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """explain-eval --data decoded every image to look for copies of the run's images, then
    each image it explains again (evaluate --data decodes once since session 38): now the
    look-up hands those over, and the results are those of decoding them again."""
    from pipeline import images
    from pipeline.explain import quality

    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)  # explain-eval writes into the run
    data, masks = _own_folder(run_dir, tmp_path / "own", n=3)
    broken = data / "glioma" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    decoded: list[str] = []
    real = images.decode_image

    def spy(data_: bytes, name: str = "", *args, **kwargs):
        if Path(name).is_relative_to(data):  # the images, not their masks
            decoded.append(Path(name).name)
        return real(data_, name, *args, **kwargs)

    monkeypatch.setattr(images, "decode_image", spy)

    def measure(name: str) -> dict:
        return quality.explain_eval(run_dir, data_dir=data, masks_dir=masks, method="gradcam",
                                    max_images=64, models=["custom_cnn"], steps=2,
                                    name=name)["custom_cnn"]

    once = measure("once")
    readable = sorted(p.name for p in data.rglob("*") if p.is_file() and p != broken
                      and p.parent.name != "astrocytoma")  # not a run class: never read
    assert len(readable) == 6 and once["n"] == 6
    # each readable image once; the unreadable one is worded by the explaining pass again
    assert sorted(decoded) == sorted([*readable, "broken.png", "broken.png"])
    assert once["n_failed"] == 1 and once["failed"][0]["path"] == "glioma/broken.png"
    assert once["source"]["overlap_with_training"]["n_seen"] == 6

    decoded.clear()
    real_overlap = quality.with_overlap

    def hand_nothing_over(*args, **kwargs):  # as before: every chosen image read again
        real_overlap(*args, **kwargs)
        return {}

    monkeypatch.setattr(quality, "with_overlap", hand_nothing_over)
    again = measure("again")
    assert sorted(decoded) == sorted([*readable, *readable, "broken.png", "broken.png"])
    varying = {"created", "seconds", "source", "written"}
    assert {k: v for k, v in once.items() if k not in varying} == {
        k: v for k, v in again.items() if k not in varying}
    assert {k: v for k, v in once["source"].items() if k != "name"} == {
        k: v for k, v in again["source"].items() if k != "name"}
