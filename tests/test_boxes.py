"""Real tumour boxes in explain-eval (masks named <stem>.png beside .jpg images, images without a
box), external folders in any layout, and the dashboard's box outline / peak-in-box answer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline import explain as E
from pipeline.explain.quality import TARGET_TOP_TUMOUR, TARGET_TRUE, _pick


def test_find_mask_takes_another_extension_and_keeps_dotted_stems(tmp_path: Path) -> None:
    (tmp_path / "Testing" / "glioma_tumor").mkdir(parents=True)
    (tmp_path / "Testing" / "glioma_tumor" / "image (1).png").write_bytes(b"x")
    (tmp_path / "Testing" / "glioma_tumor" / "scan.1.png").write_bytes(b"x")
    (tmp_path / "Testing" / "glioma_tumor" / "scan.png").write_bytes(b"x")
    got = E.find_mask(tmp_path, "Testing/glioma_tumor/image (1).jpg")
    assert got == tmp_path / "Testing" / "glioma_tumor" / "image (1).png"
    assert E.find_mask(tmp_path, "Testing/glioma_tumor/scan.1.jpg").name == "scan.1.png"
    assert E.find_mask(tmp_path, "Testing/glioma_tumor/none.jpg") is None


def test_boxes_dir_env_then_sibling_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    data = tmp_path / "ds"
    data.mkdir()
    monkeypatch.delenv("BRAIN_MRI_BOXES", raising=False)
    assert E.boxes_dir(data) is None  # optional: nothing there, no error
    (tmp_path / "ds-boxes" / "masks").mkdir(parents=True)
    assert E.boxes_dir(data) == tmp_path / "ds-boxes" / "masks"
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.setenv("BRAIN_MRI_BOXES", str(other))
    assert E.boxes_dir(data) == other
    assert E.boxes_dir(None) == other


def test_explain_eval_and_choose_look_for_masks_in_the_same_place(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch
                                                                    ) -> None:
    """Without --masks, explain-eval found no boxes for the shipped runs (it looked in
    `<dataset>/masks`) while explain-choose found `<dataset>-boxes/masks`: one rule for both."""
    from pipeline.explain.quality import _folders

    monkeypatch.delenv("BRAIN_MRI_BOXES", raising=False)
    data = tmp_path / "ds"
    (data / "masks").mkdir(parents=True)
    assert E.default_masks_dir(data) == data / "masks"  # the phantoms' layout
    assert _folders(None, data, None) == (data, data / "masks")
    (tmp_path / "ds-boxes" / "masks").mkdir(parents=True)
    assert E.default_masks_dir(data) == tmp_path / "ds-boxes" / "masks"
    assert _folders(None, data, None) == (data, tmp_path / "ds-boxes" / "masks")
    given = tmp_path / "given"
    given.mkdir()
    assert _folders(None, data, given) == (data, given)


def test_pick_puts_images_with_a_mask_first_and_stays_balanced() -> None:
    recs = [{"path": f"{c}/{i}.jpg", "label": c} for c in ("a", "b") for i in range(10)]
    boxed = {"a/3.jpg", "a/7.jpg", "b/1.jpg"}
    picked = _pick(recs, 6, seed=0, has_mask=lambda r: r["path"] in boxed)
    assert sorted(r["label"] for r in picked) == ["a", "a", "a", "b", "b", "b"]
    assert boxed <= {r["path"] for r in picked}
    # without masks the pick is the one it always was
    assert _pick(recs, 6, seed=0) == _pick(recs, 6, seed=0, has_mask=lambda r: False)


def _copy_tree(run_dir: Path, n: int, root: Path, layout: dict[str, str]
               ) -> tuple[Path, Path, int]:
    """Copy `n` test images per label of the smoke run into `root/data/<folder>/` per `layout`
    (run label -> folder name), masks as <stem>.png into `root/masks/<folder>/` for the tumour
    images with an even index only. Returns (data folder, masks folder, masks written)."""
    from pipeline.artifacts import open_run

    run = open_run(run_dir)
    test = json.loads((run_dir / "splits.json").read_text())["test"]
    data, masks = root / "data", root / "masks"
    written = 0
    for label, folder in layout.items():
        recs = [r for r in test if r["label"] == label][:n]
        (data / folder).mkdir(parents=True, exist_ok=True)
        for k, r in enumerate(recs):
            src = run.data_dir / r["path"]
            dst = data / folder / f"{label}.{k}{src.suffix}"
            shutil.copy(src, dst)
            msrc = run.data_dir / "masks" / r["path"]
            if label != "no_tumor" and k % 2 == 0 and msrc.is_file():
                (masks / folder).mkdir(parents=True, exist_ok=True)
                shutil.copy(msrc, masks / folder / f"{label}.{k}.png")
                written += 1
    return data, masks, written


@pytest.mark.slow
def test_explain_eval_on_external_class_folders_and_yes_no(smoke_run: Path, tmp_path: Path
                                                           ) -> None:
    shutil.copytree(smoke_run, tmp_path / "run")  # explain-eval writes into the run
    smoke_run = tmp_path / "run"
    data, masks, written = _copy_tree(smoke_run, 2, tmp_path / "cls",
                                      {"glioma": "glioma", "no_tumor": "no_tumor"})
    res = E.explain_eval(smoke_run, data_dir=data, masks_dir=masks, max_images=8, steps=2,
                         models=["custom_cnn"])["custom_cnn"]
    # named after the folder and the method: another method's result is kept beside it
    out = smoke_run / "custom_cnn" / "explanations-external" / f"data-{res['method']}.json"
    saved = json.loads(out.read_text())
    assert saved["source"]["kind"] == "external" and saved["source"]["mode"] == "direct"
    assert saved["target_mode"] == TARGET_TRUE and res["n"] == 4
    assert saved["n_localisation"] == written == 1  # images without a box: faithfulness only
    assert all(r["deletion_auc"] is not None for r in saved["rows"])
    assert not saved["masks_dir"].startswith("/") and not saved["data_dir"].startswith("/")
    keys = {"outside_head_alarm_rate", "n_outside_head_flagged", "energy_outside_head"}
    assert keys <= set(saved)
    assert all("outside_head_flag" in r for r in saved["rows"])

    data, masks, _ = _copy_tree(smoke_run, 2, tmp_path / "yn",
                                {"pituitary": "yes", "no_tumor": "no"})
    res = E.explain_eval(smoke_run, data_dir=data, masks_dir=masks, max_images=8, steps=2,
                         models=["custom_cnn"], name="yes-no")["custom_cnn"]
    saved = json.loads((smoke_run / "custom_cnn" / "explanations-external" / "yes-no.json"
                        ).read_text())
    assert saved["source"]["mode"] == "binary" and saved["target_mode"] == "mixed"
    classes = json.loads((smoke_run / "manifest.json").read_text())["class_names"]
    for row in saved["rows"]:
        if row["label"] == "tumor":
            assert row["target_rule"] == TARGET_TOP_TUMOUR
            assert classes[row["target"]] != "no_tumor"
        else:
            assert row["target_rule"] == TARGET_TRUE and classes[row["target"]] == "no_tumor"
    assert res["written"] == "custom_cnn/explanations-external/yes-no.json"
    # boxed "tumor" images beyond the fully scored one are explained for the model's most
    # probable tumour class too (their probabilities computed chunk by chunk)
    data, masks, written = _copy_tree(smoke_run, 4, tmp_path / "yn4",
                                      {"pituitary": "yes", "no_tumor": "no"})
    assert written >= 2
    E.explain_eval(smoke_run, data_dir=data, masks_dir=masks, max_images=1, steps=2,
                   models=["custom_cnn"], name="yes-no-more")
    saved = json.loads((smoke_run / "custom_cnn" / "explanations-external" / "yes-no-more.json"
                        ).read_text())
    extra = [r for r in saved["rows"] if not r["faithfulness_scored"]]
    assert extra and saved["n_localisation"] == written  # the sample may hold a no-tumour one
    for row in extra:
        assert row["label"] == "tumor" and row["target_rule"] == TARGET_TOP_TUMOUR
        assert classes[row["target"]] != "no_tumor"


@pytest.mark.slow
def test_explain_eval_with_partial_png_masks_on_the_runs_split(smoke_run: Path, tmp_path: Path
                                                               ) -> None:
    from typer.testing import CliRunner

    from pipeline.artifacts import open_run
    from pipeline.cli import app

    shutil.copytree(smoke_run, tmp_path / "run")  # explain-eval writes into the run
    smoke_run = tmp_path / "run"
    run = open_run(smoke_run)
    test = json.loads((smoke_run / "splits.json").read_text())["test"]
    masks = tmp_path / "boxes"
    tumour = [r for r in test if r["label"] != "no_tumor"][:1]
    for r in tumour:  # one box only; every other test image has none
        dst = masks / r["path"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(run.data_dir / "masks" / r["path"], dst)
    res = CliRunner().invoke(app, ["explain-eval", "--run", str(smoke_run), "--masks",
                                   str(masks), "--max-images", "4", "--steps", "2",
                                   "--model", "custom_cnn", "--replace"])
    assert res.exit_code == 0, res.output
    assert "localisation on the 1 of 4 images" in res.output
    assert "explained class: the true class" in res.output
    saved = json.loads((smoke_run / "custom_cnn" / "explanations.json").read_text())
    assert saved["n_localisation"] == 1 and saved["n"] == 4 and saved["n_with_mask_file"] == 1
    assert saved["rows"][0]["path"] == tumour[0]["path"]  # the boxed image is picked first
    assert not saved["masks_dir"].startswith("/")
    assert saved["source"] == {"kind": "test", "split": "test"}


@pytest.mark.slow
def test_explain_eval_says_which_masks_it_could_not_use_and_fits_80_columns(
        smoke_run: Path, tmp_path: Path) -> None:
    """A mask of another size or a damaged one was reported only in the JSON's `failed` list;
    the table of ten columns broke mid-word at 80 columns ("custo / m_cnn")."""
    from typer.testing import CliRunner

    from pipeline.artifacts import open_run
    from pipeline.cli import app

    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)  # explain-eval writes into the run
    run = open_run(run_dir)
    test = json.loads((run_dir / "splits.json").read_text())["test"]
    tumour = [r for r in test if r["label"] != "no_tumor"][:2]
    masks = tmp_path / "boxes"
    for r in tumour:
        (masks / r["path"]).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(run.data_dir / "masks" / tumour[0]["path"], masks / tumour[0]["path"])
    (masks / tumour[1]["path"]).write_text("not a mask")
    res = CliRunner().invoke(app, ["explain-eval", "--run", str(run_dir), "--masks", str(masks),
                                   "--max-images", "4", "--steps", "2", "--replace"])
    assert res.exit_code == 0, res.output
    assert "1 image(s) or mask(s) could not be used" in res.stderr
    assert f"{tumour[1]['path']}: mask: " in res.stderr and "not an image" in res.stderr
    table = [ln for ln in res.stdout.splitlines() if ln.startswith(("┃", "│"))]
    assert table and all(len(ln) <= 80 for ln in table), table
    assert any(ln.startswith("│ pointing game (chance)") for ln in table)


@pytest.mark.slow
def test_explain_eval_locates_every_boxed_image_beyond_the_fully_scored_sample(
        smoke_run: Path, tmp_path: Path) -> None:
    from pipeline.artifacts import open_run

    # a copy: it wrote a 3-image custom_cnn/explanations.json into the session's run, and a
    # later page test found the two models' files measured on different numbers of images
    shutil.copytree(smoke_run, tmp_path / "run")
    smoke_run = tmp_path / "run"
    run = open_run(smoke_run)
    test = json.loads((smoke_run / "splits.json").read_text())["test"]
    boxed = [r for r in test if r["label"] != "no_tumor"][:9]
    masks = tmp_path / "boxes"
    for r in boxed:
        dst = masks / r["path"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(run.data_dir / "masks" / r["path"], dst)
    broken = masks / boxed[-1]["path"]
    broken.write_bytes(b"not a png")  # an unreadable mask: reported, not fatal

    def evaluate(**kw: object) -> dict:
        E.explain_eval(smoke_run, masks_dir=masks, steps=2, models=["custom_cnn"], replace=True,
                       **kw)
        return json.loads((smoke_run / "custom_cnn" / "explanations.json").read_text())

    part = evaluate(max_images=3)
    full = evaluate(max_images=len(test))  # every image scored in full: the reference
    assert part["n_faithfulness"] == 3 and full["n_faithfulness"] == full["n"] == len(test)
    assert part["n_localisation"] == full["n_localisation"] == len(boxed) - 1
    extra = [r for r in part["rows"] if not r["faithfulness_scored"]]
    assert extra and len(part["rows"]) == 3 + len(extra)
    assert all(r["deletion_auc"] is None and r["sanity_rank_correlation"] is None and
               r["pointing_hit"] is not None for r in extra)
    by_path = {r["path"]: r for r in full["rows"]}
    for r in part["rows"]:  # the same heatmap, the same localisation, scored either way
        ref = by_path[r["path"]]
        assert r["pointing_hit"] == ref["pointing_hit"] and r["target"] == ref["target"]
        for key in ("energy_in_mask", "top_in_mask", "top_outside_head"):
            assert r[key] == pytest.approx(ref[key], abs=1e-5), key
    for key in ("pointing_game", "energy_in_mask", "top_in_mask"):  # over the same boxes
        assert part[key] == pytest.approx(full[key], abs=1e-5), key
    assert any(f["path"] == boxed[-1]["path"] for f in part["failed"])
    assert part["deletion_auc"] is not None and part["road_lerf_minus_morf"] is not None

    only = evaluate(max_images=3, max_localisation=0)
    assert only["n"] == only["n_faithfulness"] == 3
    assert only["n_localisation"] == sum(r["pointing_hit"] is not None for r in only["rows"])
    assert evaluate(max_images=3, max_localisation=2)["n"] == 5


def test_dashboard_box_outline_and_peak_in_box() -> None:
    from dashboard import inference, views

    image = np.zeros((100, 100, 3), np.uint8)
    image[10:90, 20:80] = 120  # a "head"
    box = np.zeros((100, 100), np.uint8)
    box[30:50, 30:50] = 255
    heat = np.zeros((32, 32), np.float32)
    r = inference.ImageResult(np.zeros((32, 32, 3), np.uint8), heat, np.array([0.5, 0.5]), 0,
                              "gradcam", None, crop=True, outside_head=0.7)
    frame = inference.box_in_frame(box, image, r)
    assert frame.shape == (32, 32) and frame.any()
    ys, xs = np.nonzero(frame)
    r.heatmap[int(ys.mean()), int(xs.mean())] = 1.0
    assert inference.peak_in_box(r, frame)
    r.heatmap[:] = 0
    assert r.empty and not inference.peak_in_box(r, frame)
    r.heatmap[0, 0] = 1.0
    assert not r.empty and not inference.peak_in_box(r, frame)
    assert r.outside_head_flag
    drawn = views.overlay(r.prepared, r.heatmap, inference.Settings(alpha=0.0), frame)
    outlined = np.all(drawn == np.array(views.BOX_COLOUR, np.uint8), axis=-1)
    assert outlined.any()
    plain = views.overlay(r.prepared, r.heatmap, inference.Settings(alpha=0.0))
    assert not np.all(plain == np.array(views.BOX_COLOUR, np.uint8), axis=-1).any()


def test_a_training_image_is_not_called_unlike_the_training_data_and_its_page_says_why():
    """A reviewer saw "This image is in this run's training split" and, two lines below, "This
    image is unlike MobileNetV2's training data"; the PDF page did not carry the split note."""
    from dashboard import card_flags, core, inference, views
    from pipeline.data.membership import seen_note

    heat = np.zeros((32, 32), np.float32)
    heat[10, 10] = 1.0

    def result() -> inference.ImageResult:
        return inference.ImageResult(np.zeros((32, 32, 3), np.uint8), heat.copy(),
                                     np.array([0.6, 0.4]), 0, "gradcam", None,
                                     outside_head=0.0, unlike_training=True)

    def flags_for(split: str) -> list[str]:
        results = inference.Results({"custom_cnn": [result()]}, {}, 0.1,
                                    class_names=["glioma", "no_tumor"], seen_split=[split])
        answers, _ = card_flags.image_flags(results, 0)
        return answers

    assert any("unlike" in a for a in flags_for(""))  # found nowhere: the score's flag stands
    assert any("unlike" in a for a in flags_for("test"))
    assert not any("unlike" in a for a in flags_for("train"))
    assert not any("unlike" in a for a in flags_for("val"))
    upload = core.Upload("x.png", "d" * 64, image=np.zeros((64, 64, 3), np.uint8),
                         seen=seen_note("train", 0), seen_split="train")
    results = inference.Results({"custom_cnn": [result()]}, {}, 0.1,
                                class_names=["glioma", "no_tumor"], seen_split=["train"])
    page = views.report_page(upload, 0, results, ["glioma", "no_tumor"], inference.Settings())
    assert page.flags[0] == seen_note("train", 0)


def test_boxes_whose_source_files_them_under_another_class_are_said_on_the_quality_page(
        tmp_path: Path, real_data: Path) -> None:
    """All 10 boxed "pituitary" images of the official Testing/ run are figshare meningiomas
    (the boxes' README; an explanation review): the page's per-class pointing game for
    pituitary was measured on meningiomas and said nothing. `box_source_classes` reads
    boxes.csv, and the quality page says which boxed test images another class's."""
    import json

    from dashboard import runinfo
    from dashboard.figures.quality_text import relabelled_sentence

    masks = tmp_path / "ds-boxes" / "masks"
    masks.mkdir(parents=True)
    (masks.parent / "boxes.csv").write_text(
        "path,figshare_class,folder_class,x_center\n"
        "Testing/pituitary_tumor/a.jpg,meningioma_tumor,pituitary_tumor,0.5\n"
        "Testing/pituitary_tumor/b.jpg,pituitary_tumor,pituitary_tumor,0.5\n"
        "Testing/glioma_tumor/c.jpg,glioma_tumor,glioma_tumor,0.5\n"
        "Testing/glioma_tumor/d.jpg,glioma,glioma_tumor,0.5\n")  # one class, two spellings
    assert E.box_source_classes(masks) == {"Testing/pituitary_tumor/a.jpg": "meningioma"}
    assert E.box_source_classes(tmp_path) == {}  # no table: nothing claimed
    rows = [{"path": f"Testing/pituitary_tumor/{n}.jpg", "label": "pituitary",
             "pointing_hit": True} for n in "ab"]
    rows.append({"path": "Testing/glioma_tumor/c.jpg", "label": "glioma", "pointing_hit": False})
    said = relabelled_sentence({"m": {"rows": rows}}, E.box_source_classes(masks), "figshare")
    assert said is not None and said.startswith(
        "In the boxes' source (figshare), 1 of the 2 boxed test images filed as pituitary are "
        "meningioma slices"), said
    assert "partly measured" in said
    assert relabelled_sentence({"m": {"rows": rows[1:]}}, E.box_source_classes(masks),
                               "figshare") is None  # none of them among the explained images

    # the shipped official-Testing/ run on the real boxes: every boxed pituitary image
    boxes = E.boxes_dir(real_data)
    if boxes is None:
        pytest.skip("the dataset's boxes folder is not beside it")
    run = Path(__file__).resolve().parents[1] / "artifacts" / "runs" / "20261204-234901-1f09da"
    expl = {m: json.loads((run / m / "explanations.json").read_text())
            for m in ("custom_cnn", "mobilenetv2")}
    facts = runinfo.box_facts(json.loads((run / "splits.json").read_text()), boxes)
    said = relabelled_sentence(expl, facts.relabelled, facts.source)
    assert said is not None and "10 of the 10 boxed test images filed as pituitary are " \
        "meningioma slices" in said and "partly" not in said, said
