"""Each model's default explanation chosen on validation images with a box
(`explain-choose`, explain_choice.json) and read back by `explain` and the dashboard."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.explain import METHODS, REGISTRY
from pipeline.explain.choice import (
    CENTRE_BASELINE,
    CHOICE_FILE,
    choose_defaults,
    default_explanation,
)


def test_default_explanation_falls_back_without_or_with_a_damaged_file(tmp_path: Path) -> None:
    assert default_explanation(tmp_path, "m", "conv") == ("gradcam", "conv")
    (tmp_path / CHOICE_FILE).write_text("{not json")
    assert default_explanation(tmp_path, "m", "conv") == ("gradcam", "conv")
    (tmp_path / CHOICE_FILE).write_text(json.dumps(
        {"models": {"m": {"method": "layercam", "layer": "c2"},
                    "old": {"method": "lime", "layer": "x"},
                    "pix": {"method": "smoothgrad", "layer": None}}}))
    assert default_explanation(tmp_path, "m", "conv") == ("layercam", "c2")
    assert default_explanation(tmp_path, "old", "conv") == ("gradcam", "conv")  # unknown method
    assert default_explanation(tmp_path, "pix", "conv") == ("smoothgrad", "conv")
    assert default_explanation(tmp_path, "other", None) == ("gradcam", None)


def test_a_pointing_game_within_noise_of_the_best_is_a_tie_won_by_energy_in_box() -> None:
    """On 352 validation boxes the custom CNN's best pointing game (Grad-CAM++, 0.85) put 0.17
    of its map in the box; candidates a few images behind put 0.42-0.54 there. A gap McNemar's
    test cannot tell from noise is a tie, and the tie goes to energy in box."""
    from scipy.stats import binomtest

    from pipeline.explain.choice import TIE_P, select

    def row(name: str, hits: list[bool], energy: float) -> dict:
        return {"method": name, "layer": None, "pointing_game": sum(hits) / len(hits),
                "energy_in_mask": energy, "hits": hits}

    best = [True] * 85 + [False] * 15
    near = [True] * 82 + [False] * 18  # misses 3 of best's hits: p = 0.25
    far = [True] * 60 + [False] * 40  # misses 25: p < 1e-6
    table = [row("diffuse", best, 0.17), row("focused", near, 0.54), row("far", far, 0.9)]
    chosen = select(table, [True, True, True])
    assert [r["p_vs_best"] for r in table[:2]] == [1.0, round(binomtest(0, 3).pvalue, 4)]
    assert table[1]["p_vs_best"] > TIE_P
    assert chosen["method"] == "focused"
    assert [r["tied_with_best"] for r in table] == [True, True, False]
    assert table[2]["p_vs_best"] < TIE_P and all("hits" not in r for r in table)
    # without a near rival the best pointing game wins whatever its energy
    alone = [row("diffuse", best, 0.17), row("far", far, 0.9)]
    assert select(alone, [True, True])["method"] == "diffuse"
    # an exact tie in pointing goes to energy, then to a fast method
    twins = [row("slow", best, 0.3), row("fast", best, 0.3)]
    assert select(twins, [False, True])["method"] == "fast"


def test_an_empty_map_scores_nothing_in_the_box_when_choosing_as_in_explain_eval() -> None:
    """The choice averaged energy in box over the non-empty maps only (explain-eval counts an
    empty map as 0), so a candidate with mostly empty maps could win the energy tie-break on
    its few others (an explanation review)."""
    from types import SimpleNamespace

    from pipeline.explain.choice import _score

    box = np.zeros((8, 8), np.float32)
    box[2:4, 2:4] = 1
    full = np.zeros((8, 8), np.float32)
    full[2:4, 2:4] = 1.0  # all its heat in the box
    maps = np.stack([full, np.zeros((8, 8), np.float32)])  # the second: no evidence at all

    def ex(x, method, layer, target):  # noqa: ANN001, ANN202
        return SimpleNamespace(heatmaps=maps[: len(x)])

    got = _score(ex, None, "gradcam", np.zeros((2, 8, 8, 3), np.float32), np.array([0, 0]),
                 [box, box])
    assert got["hits"] == [True, False]
    assert got["energy_in_mask"] == pytest.approx(0.5)  # (1 + 0) / 2, not 1
    assert got["top_in_mask"] == pytest.approx(0.5)


@pytest.mark.slow
def test_choose_on_validation_boxes_then_explain_uses_the_choice(smoke_run: Path,
                                                                 tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.artifacts import open_run
    from pipeline.cli import app

    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)  # the session's run stays without a choice
    run = open_run(run_dir)
    splits = json.loads((run_dir / "splits.json").read_text())
    val = {r["path"] for r in splits["val"]}
    res = CliRunner().invoke(app, ["explain-choose", "--run", str(run_dir), "--max-images", "6",
                                   "--model", "custom_cnn"])
    assert res.exit_code == 0, res.output
    assert "custom_cnn:" in res.output and "validation images with a box" in res.output
    data = json.loads((run_dir / CHOICE_FILE).read_text())
    entry = data["models"]["custom_cnn"]
    assert data["split"] == "val" and not Path(entry["masks_dir"]).is_absolute()
    assert 1 <= entry["n_images"] <= 6 and 0 < entry["chance"] < 1
    layers = entry["candidate_layers"]
    assert layers[0] == run.model_info("custom_cnn")["gradcam_layer"] and len(layers) == 3
    rows = {(r["method"], r["layer"]) for r in entry["table"]}
    for name, spec in REGISTRY.items():  # every method; fast ones at every candidate layer
        want = (layers if spec.cost == "fast" else layers[:1]) if spec.needs_layer else [None]
        assert {(name, la) for la in want} <= rows, name
    # each row also carries the rank-only localisation measure, a share like the others
    assert all(r["top_in_mask"] is None or 0 <= r["top_in_mask"] <= 1 for r in entry["table"])
    assert any(r["top_in_mask"] is not None for r in entry["table"])
    best = max(r["pointing_game"] for r in entry["table"])
    chosen = next(r for r in entry["table"]
                  if (r["method"], r["layer"]) == (entry["method"], entry["layer"]))
    # the best pointing game or one tied with it (McNemar), the tie won by energy in box
    tied = [r for r in entry["table"] if r["tied_with_best"]]
    assert chosen in tied and entry["method"] in METHODS
    assert any(r["pointing_game"] == best for r in tied)
    assert all(r["pointing_game"] == best or r["p_vs_best"] >= 0.05 for r in tied)
    assert entry["energy_in_mask"] == max(r["energy_in_mask"] or 0.0 for r in tied)
    assert (entry["method"], entry["layer"]) in rows
    assert "mobilenetv2" not in data["models"]
    # only validation images with a tumour were used, never test images
    test = {r["path"] for r in splits["test"]}
    assert len(entry["images"]) == entry["n_images"]
    assert set(entry["images"]) <= val and not set(entry["images"]) & test
    assert all("no_tumor" not in p for p in entry["images"])
    again = choose_defaults(run_dir, max_images=6, models=["custom_cnn"])
    assert again["models"]["custom_cnn"]["table"] == entry["table"]  # deterministic
    # a choice on fewer images replaces it only when told, through the library as through the
    # CLI (a review replaced a shipped run's choice from a notebook)
    kept = (run_dir / CHOICE_FILE).read_text()
    assert entry["n_images"] >= 2
    with pytest.raises(ValueError, match=rf"^custom_cnn's default explanation in {CHOICE_FILE} "
                                         rf"was measured on {entry['n_images']} images, this "
                                         "would use 1"):
        choose_defaults(run_dir, max_images=1, models=["custom_cnn"])
    assert (run_dir / CHOICE_FILE).read_text() == kept
    # the centre-of-head baseline on the same images, as explain-eval records it; shown as a
    # baseline line, never a candidate of the table
    from pipeline import images as images_
    from pipeline.artifacts import crop_head
    from pipeline.explain.masks import (
        default_masks_dir,
        find_mask,
        head_mask_in_frame,
        prepare_mask,
        read_mask,
    )
    from pipeline.explain.metrics import head_centre_hit

    info = run.model_info("custom_cnn")
    size, crop = int(info["image_size"]), crop_head(info)
    hits = []
    for rel in entry["images"]:
        img = images_.read_image(run.data_dir / rel)
        box = prepare_mask(read_mask(find_mask(default_masks_dir(run.data_dir), rel)), img,
                           size, crop)
        hits.append(head_centre_hit(head_mask_in_frame(img, size, crop), box))
    assert entry["pointing_game_centre"] == pytest.approx(sum(hits) / len(hits))
    assert f"custom_cnn: {CENTRE_BASELINE}: pointing {entry['pointing_game_centre']:.2f} on " \
        "the same images" in res.stdout
    assert all(r["method"] in METHODS for r in entry["table"])

    img = str(run.data_dir / splits["test"][0]["path"])
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["explain", "--run", str(run_dir), "--out", str(out),
                                   "--model", "custom_cnn", img])
    assert res.exit_code == 0, res.output
    got = json.loads((out / "explain.json").read_text())["images"][0]["models"]["custom_cnn"]
    want_layer = entry["layer"] if entry["layer"] is not None else None
    assert got["method"] == entry["method"]
    if REGISTRY[entry["method"]].needs_layer:
        assert got["layer"] == want_layer
    out = tmp_path / "out-gradcam"  # other settings: a folder of their own (explain resumes)
    res = CliRunner().invoke(app, ["explain", "--run", str(run_dir), "--out", str(out),
                                   "--model", "custom_cnn", "--method", "gradcam", img])
    assert res.exit_code == 0, res.output
    got = json.loads((out / "explain.json").read_text())["images"][0]["models"]["custom_cnn"]
    assert got["method"] == "gradcam"
    assert got["layer"] == (entry["layer"] if entry["method"] == "gradcam"
                            else run.model_info("custom_cnn")["gradcam_layer"])


@pytest.mark.slow
def test_explain_eval_measures_each_models_default_unless_told(smoke_run: Path,
                                                               tmp_path: Path) -> None:
    """explain-eval scored Grad-CAM whatever the run's chosen default was, so a run's
    explanations.json described a method the dashboard did not draw."""
    from pipeline.artifacts import open_run
    from pipeline.explain import explain_eval

    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)
    layer = open_run(run_dir).model_info("custom_cnn")["gradcam_layer"]
    (run_dir / CHOICE_FILE).write_text(json.dumps(
        {"models": {"custom_cnn": {"method": "layercam", "layer": None}}}))
    # the smoke run's file was measured on 8 images: 2 replace it only when told (a review
    # replaced a shipped run's 358-image file with 2 through the library)
    with pytest.raises(ValueError, match=r"^custom_cnn/explanations.json was measured on 8 "
                                         r"images, this would use 2: pass max_images=8 or more"):
        explain_eval(run_dir, max_images=2, steps=2, models=["custom_cnn"])
    got = explain_eval(run_dir, max_images=2, steps=2, models=["custom_cnn"],
                       replace=True)["custom_cnn"]
    assert (got["method"], got["layer"]) == ("layercam", layer)
    saved = json.loads((run_dir / "custom_cnn" / "explanations.json").read_text())
    assert saved["method"] == "layercam"
    # another method than the default would take the default's file: refused unless told
    with pytest.raises(ValueError, match="hirescam at .* would replace it: pass replace=True"):
        explain_eval(run_dir, method="hirescam", max_images=2, steps=2, models=["custom_cnn"])
    assert json.loads((run_dir / "custom_cnn" / "explanations.json").read_text()) == saved
    told = explain_eval(run_dir, method="hirescam", max_images=2, steps=2,
                        models=["custom_cnn"], replace=True)["custom_cnn"]
    assert told["method"] == "hirescam"
    (run_dir / CHOICE_FILE).unlink()  # no choice: Grad-CAM, as before explain-choose existed
    plain = explain_eval(run_dir, max_images=2, steps=2, models=["custom_cnn"],
                         replace=True)["custom_cnn"]
    assert plain["method"] == "gradcam"


def test_recorded_choices_keep_each_entry_with_how_it_was_scored(tmp_path: Path) -> None:
    """A file of an earlier version describes the scoring (images, folders, rule) once for all
    its models; the entries kept when another model is chosen again carry it themselves."""
    from pipeline.explain.choice import recorded_choices

    assert recorded_choices(tmp_path) == ({}, None)
    (tmp_path / CHOICE_FILE).write_text(json.dumps(
        {"run_id": "r", "split": "val", "rule": "old rule", "data_dir": "d", "masks_dir": "m",
         "max_images": 400, "seed": 0, "seconds": 99.0, "created": "2026-12-05T00:00:00Z",
         "models": {"a": {"method": "layercam", "layer": "c2", "n_images": 352},
                    "b": {"method": "gradcam", "layer": None, "rule": "own rule"},
                    "broken": "not a table"}}))
    entries, damage = recorded_choices(tmp_path)
    assert damage is None and set(entries) == {"a", "b"}
    assert entries["a"] == {"method": "layercam", "layer": "c2", "n_images": 352,
                            "rule": "old rule", "data_dir": "d", "masks_dir": "m",
                            "max_images": 400, "seed": 0, "created": "2026-12-05T00:00:00Z"}
    assert entries["b"]["rule"] == "own rule"  # an entry's own field wins
    for text in ("{not json", "[1, 2]", json.dumps({"models": []})):
        (tmp_path / CHOICE_FILE).write_text(text)
        entries, damage = recorded_choices(tmp_path)
        assert entries == {} and damage, text


def test_keep_larger_reads_one_entry_of_a_shared_file_and_refuses_another_measure(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import typer

    from pipeline.cli.common import keep_larger

    path = tmp_path / "f.json"
    path.write_text(json.dumps({"models": {"a": {"n_images": 352}, "b": {"n_images": 4}}}))
    within = {"within": ("models", "a")}
    with pytest.raises(typer.Exit):
        keep_larger(path, ("n_images",), 8, "a's entry", "pass --replace", **within)
    assert "a's entry was measured on 352 images, this would use 8: pass --replace" in \
        " ".join(capsys.readouterr().err.split())
    keep_larger(path, ("n_images",), 8, "b", "x", within=("models", "b"))  # 4 <= 8: proceeds
    keep_larger(path, ("n_images",), 8, "c", "x", within=("models", "c"))  # no entry: nothing
    with pytest.raises(typer.Exit):  # another measurement: refused whatever the n
        keep_larger(path, ("n_images",), 999, "b", "x", within=("models", "b"),
                    instead="b measures the default; --method x would replace it")
    assert "b measures the default; --method x would replace it" in capsys.readouterr().err
    keep_larger(tmp_path / "none.json", ("n_images",), 1, "n", "x", instead="refused")
    path.write_text("{damaged")
    keep_larger(path, ("n_images",), 1, "n", "x", instead="refused")  # no measurement to keep


def _fake_score(ex, layer, method, x, targets, masks, batch=16) -> dict:
    """`choice._score` without heatmaps: what is tested is what the file keeps, not the scores."""
    hits = [method == "gradcam"] * len(x)
    return {"method": method, "layer": layer, "n": len(x),
            "pointing_game": float(sum(hits)) / len(x), "energy_in_mask": 0.5,
            "top_in_mask": 0.5, "hits": hits}


@pytest.mark.slow
def test_choosing_again_for_one_model_keeps_the_others_choice(smoke_run: Path, tmp_path: Path,
                                                              monkeypatch) -> None:
    """`explain-choose --model custom_cnn --max-images 8` rewrote the file with custom_cnn only:
    MobileNetV2's choice, made on 352 images, was deleted and its explanations fell back to
    Grad-CAM. It also replaced custom_cnn's own choice on 352 images without a word."""
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.explain import choice

    monkeypatch.setattr(choice, "_score", _fake_score)
    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)
    old_file = {"run_id": "x", "split": "val", "rule": "old rule", "data_dir": "data/d",
                "masks_dir": "data/d-boxes/masks", "max_images": 400, "seed": 0,
                "target": "the image's true class", "seconds": 1500.0,
                "created": "2026-12-05T10:00:00Z",
                "models": {"custom_cnn": {"method": "layercam", "layer": None,
                                          "pointing_game": 0.8, "chance": 0.1,
                                          "n_images": 352},
                           "mobilenetv2": {"method": "layercam-fusion", "layer": "out_relu",
                                           "pointing_game": 0.7, "chance": 0.1,
                                           "n_images": 352, "table": []}}}
    (run_dir / CHOICE_FILE).write_text(json.dumps(old_file))
    before = (run_dir / CHOICE_FILE).read_bytes()

    def choose(*args: str):
        return CliRunner().invoke(app, ["explain-choose", "--run", str(run_dir),
                                        "--max-images", "6", *args])

    for which in (["--model", "custom_cnn"], []):  # custom_cnn's choice on 352 images is kept
        refused = choose(*which)
        assert refused.exit_code == 2, refused.output
        assert ("error: custom_cnn's default explanation in explain_choice.json was measured on "
                "352 images, this would use 6: pass --max-images 352 or more, or --replace to "
                "overwrite it") in " ".join(refused.output.split())
        assert (run_dir / CHOICE_FILE).read_bytes() == before

    # explanations.json measures the earlier default (layercam): a new choice makes it stale,
    # which explain-choose did not say (a review)
    saved = run_dir / "custom_cnn" / "explanations.json"
    saved.write_text(json.dumps(json.loads(saved.read_text()) | {"method": "layercam",
                                                                  "layer": None}))
    res = choose("--model", "custom_cnn", "--replace")
    assert res.exit_code == 0, res.output
    assert ("mobilenetv2: layercam-fusion at out_relu: kept, chosen earlier on 352 validation "
            "images") in res.stdout
    assert (f"note: custom_cnn/explanations.json measures layercam, no longer custom_cnn's "
            f"default: run python -m pipeline explain-eval --run {run_dir} --model custom_cnn "
            "to measure the new default") in " ".join(res.stderr.split())
    assert "mobilenetv2/explanations.json" not in res.stderr  # not chosen now: not said
    data = json.loads((run_dir / CHOICE_FILE).read_text())
    assert list(data["models"]) == ["custom_cnn", "mobilenetv2"]
    kept = data["models"]["mobilenetv2"]
    assert kept == {**old_file["models"]["mobilenetv2"], "rule": "old rule",
                    "data_dir": "data/d", "masks_dir": "data/d-boxes/masks", "max_images": 400,
                    "seed": 0, "created": "2026-12-05T10:00:00Z"}
    assert default_explanation(run_dir, "mobilenetv2", "x") == ("layercam-fusion", "out_relu")
    new = data["models"]["custom_cnn"]
    assert new["n_images"] <= 6 and new["max_images"] == 6 and new["rule"] == choice.RULE
    assert new["seed"] == 0 and new["seconds"] >= 0 and new["created"] != kept["created"]
    assert not Path(new["masks_dir"]).is_absolute()
    # what differs per model is no longer said once for the file
    assert set(data) == {"run_id", "split", "target", "models"}

    (run_dir / CHOICE_FILE).write_text("{damaged")  # no choice readable: replaced, said so
    res = choose("--model", "custom_cnn")
    assert res.exit_code == 0, res.output
    assert "damaged file" in res.stderr and "no earlier choice is kept" in \
        " ".join(res.stderr.split())
    assert list(json.loads((run_dir / CHOICE_FILE).read_text())["models"]) == ["custom_cnn"]


@pytest.mark.slow
def test_explain_eval_refuses_to_measure_another_than_the_default_unless_replace(
        smoke_run: Path, tmp_path: Path) -> None:
    """`explain-eval --method gradcam` replaced explanations.json, which the dashboard shows as
    the default's measurement, with Grad-CAM's while the model's default was another method."""
    from typer.testing import CliRunner

    from pipeline.artifacts import open_run
    from pipeline.cli import app

    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)
    run = open_run(run_dir)
    layer = run.model_info("custom_cnn")["gradcam_layer"]
    (run_dir / CHOICE_FILE).write_text(json.dumps(
        {"models": {"custom_cnn": {"method": "layercam", "layer": None}}}))
    saved = run_dir / "custom_cnn" / "explanations.json"
    held = json.loads(saved.read_text())
    stale = held["method"], held.get("layer")  # the smoke run's default when measured
    assert stale[0] != "layercam"
    saved.write_text(json.dumps(held | {"method": "layercam", "layer": layer}))  # the default's
    before = saved.read_bytes()
    n = held.get("n_faithfulness", held["n"])  # as many images: only the method is in question

    def evaluate(*args: str, images: int = n):
        return CliRunner().invoke(app, ["explain-eval", "--run", str(run_dir), "--model",
                                        "custom_cnn", "--max-images", str(images), "--steps",
                                        "2", *args])

    refused = evaluate("--method", "gradcam")
    assert refused.exit_code == 2, refused.output
    assert (f"error: custom_cnn/explanations.json measures custom_cnn's default (layercam at "
            f"{layer}); --method gradcam would replace it with gradcam at {layer}: pass "
            "--replace, or measure on a copy of the run") in " ".join(refused.output.split())
    refused = evaluate("--method", "layercam", "--layer", "block2_relu2")
    assert refused.exit_code == 2
    assert "--method layercam --layer block2_relu2 would replace it with layercam at " \
        "block2_relu2" in " ".join(refused.output.split())
    # --data naming the run's own dataset (where the recorded path does not resolve) measures
    # the same test split into the same file: the guard held only without --data
    refused = evaluate("--method", "gradcam", "--data", str(run.data_dir))
    assert refused.exit_code == 2 and "would replace it" in refused.output, refused.output
    assert saved.read_bytes() == before
    # the default, named or not, is what the file measures: no refusal of that kind
    from pipeline.explain.defaults import not_the_default

    for method, at in ((None, None), ("layercam", None), ("layercam", layer), (None, layer)):
        assert not_the_default(run, "custom_cnn", method, at) is None, (method, at)

    # A review chose another default with explain-choose: the file then held the earlier
    # default, yet the refusal said it measured the new one, and a plain explain-eval replaced
    # it without a word. The refusal says what it holds; the replacement is said.
    from pipeline.explain.defaults import method_at, stale_measurement

    saved.write_text(json.dumps(held))
    assert stale_measurement(run, "custom_cnn") == method_at(*stale)
    refused = evaluate("--method", stale[0])
    assert refused.exit_code == 2, refused.output
    assert (f"error: custom_cnn/explanations.json holds {method_at(*stale)}, no longer "
            f"custom_cnn's default (layercam at {layer}, explain_choice.json)") in " ".join(
        refused.output.split())
    done = evaluate()
    assert done.exit_code == 0, done.output
    assert (f"note: custom_cnn/explanations.json held {method_at(*stale)}, no longer the "
            f"default: replaced by this measurement of layercam at {layer}") in " ".join(
        done.stderr.split())
    assert json.loads(saved.read_text())["method"] == "layercam"
    assert stale_measurement(run, "custom_cnn") is None

    res = evaluate("--method", "gradcam", "--replace", images=2)
    assert res.exit_code == 0, res.output
    assert json.loads(saved.read_text())["method"] == "gradcam"


@pytest.mark.slow
def test_a_recorded_layer_the_model_lacks_is_one_rule_everywhere(smoke_run: Path,
                                                                 tmp_path: Path) -> None:
    """A run whose explain_choice.json names a layer its model lacks: `explain` failed, while
    `explain-eval` and the dashboard silently explained another layer. Now all three explain at
    the model's own default layer and say so; a layer the user names must exist."""
    from typer.testing import CliRunner

    from dashboard import loader
    from pipeline.artifacts import open_run
    from pipeline.cli import app
    from pipeline.explain.defaults import explainer_for, resolve_explanation
    from pipeline.explain.layers import default_layer

    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)
    (run_dir / CHOICE_FILE).write_text(json.dumps(
        {"models": {"custom_cnn": {"method": "layercam", "layer": "gone_relu"}}}))
    run = open_run(run_dir)
    model = run.load_model("custom_cnn")
    assert resolve_explanation(run, "custom_cnn") == ("layercam", "gone_relu")
    manifest_layer = run.model_info("custom_cnn")["gradcam_layer"]
    assert resolve_explanation(run, "custom_cnn", "gradcam") == ("gradcam", manifest_layer)
    ex = explainer_for(run, "custom_cnn", model)
    assert ex.method == "layercam" and ex.layer == default_layer(model)
    note = ("custom_cnn: the run records layer 'gone_relu', which its model does not have; "
            "explained at the model's own default layer instead")
    assert ex.layer_note == note
    assert explainer_for(run, "mobilenetv2", run.load_model("mobilenetv2")).layer_note is None
    with pytest.raises(ValueError, match="layer 'gone_relu' not found"):
        explainer_for(run, "custom_cnn", model, layer="gone_relu")

    image = next(p for p in sorted(run.data_dir.rglob("*"))
                 if p.suffix.lower() in (".png", ".jpg") and "masks" not in p.parts)
    runner = CliRunner()
    res = runner.invoke(app, ["explain", str(image), "--run", str(run_dir), "--model",
                              "custom_cnn", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert f"note: {note}" in " ".join(res.stderr.split())
    record = json.loads((tmp_path / "out" / "explain.json").read_text())
    assert default_layer(model) in json.dumps(record)
    asked = runner.invoke(app, ["explain", str(image), "--run", str(run_dir), "--model",
                                "custom_cnn", "--layer", "gone_relu", "--out",
                                str(tmp_path / "out2")])
    assert asked.exit_code != 0 and "layer 'gone_relu' not found" in asked.output

    res = runner.invoke(app, ["explain-eval", "--run", str(run_dir), "--model", "custom_cnn",
                              "--max-images", "2", "--max-localisation", "0", "--steps", "2",
                              "--replace"])
    assert res.exit_code == 0, res.output
    assert f"note: {note}" in " ".join(res.stderr.split())
    saved = json.loads((run_dir / "custom_cnn" / "explanations.json").read_text())
    assert saved["layer_note"] == note and saved["layer"] == default_layer(model)

    _, explainers, failures = loader.build_models(str(run_dir), warm=False)
    assert failures == {} and explainers["custom_cnn"].layer_note == note
    assert explainers["custom_cnn"].layer == default_layer(model)
