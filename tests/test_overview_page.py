"""AppTest of the Overview page on copies of the two shipped reference runs (real run files).

Cheap: the models are never loaded (`loader.preload_models` is switched off), so these tests read
only the runs' JSON and CSV files. Every figure they expect is computed here from those files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import loader

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
SHIPPED = ROOT / "artifacts" / "runs"
MAIN, OFFICIAL = "20261204-234844-8cf044", "20261204-234901-1f09da"


def _run_files(run_id: str) -> Path:
    path = SHIPPED / run_id
    if not (path / "manifest.json").is_file():
        pytest.skip(f"shipped run {run_id} is not in this checkout")
    return path


@pytest.fixture
def overview(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`overview(run_id)`: the Overview page run on a copy of that shipped run (the artifacts
    folder's latest), and the copy's folder."""
    monkeypatch.setattr(loader, "preload_models", lambda: None)  # no TensorFlow here

    def run(run_id: str) -> tuple[AppTest, Path]:
        adir = tmp_path / run_id / "artifacts"
        copy = adir / "runs" / run_id
        shutil.copytree(_run_files(run_id), copy)
        (adir / "latest").write_text(run_id + "\n")
        monkeypatch.setenv("BRAIN_MRI_ARTIFACTS", str(adir))
        at = AppTest.from_file(APP, default_timeout=120)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at, copy

    return run


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


def test_training_curves_say_why_training_loss_sits_above_validation_loss(overview):
    at, run = overview(MAIN)
    text = _captions(at)
    manifest = _json(run / "manifest.json")
    for m, info in manifest["models"].items():
        hist = _json(run / m / "history.json")
        kept = next(r for r in hist["epochs"] if r["epoch"] == hist["best_epoch"])
        penalty = info["guidance"]["weight"] * kept["outside_share"]
        assert (f"at the kept epoch ({hist['best_epoch']}) the penalty is about "
                f"{penalty:.2f} of the training loss's {kept['loss']:.2f}") in text
        last = hist["epochs"][-1]["epoch"]
        said = f"{info['display_name']}'s kept epoch ({hist['best_epoch']}) is the last one run"
        assert (said in text) == (hist["best_epoch"] == last)
    assert "compare the curves' shapes, not their levels" in text
    # MobileNetV2 is guided in fine-tuning only: the jump where it starts is explained
    assert "from fine-tuning on (epoch" in text


@pytest.mark.parametrize("run_id", [MAIN, OFFICIAL])
def test_a_warning_that_marks_right_answers_says_it_is_no_error_signal(overview, run_id):
    at, run = overview(run_id)
    flags = _json(run / "flags.json")["models"]
    infos = [a.value for a in at.info]
    for m, rows in flags.items():
        unlike = rows["unlike"]
        name = _json(run / "manifest.json")["models"][m]["display_name"]
        part = (f"{name}: {unlike['accuracy_flagged']:.0%} of its {unlike['flagged']} flagged "
                "answers right")
        said = any(part in s and "It says the image is unusual" in s for s in infos)
        assert said == (unlike["accuracy_flagged"] >= unlike["accuracy_unflagged"])
    # a warning whose flagged answers were right less often, for every model, gets none
    from pipeline.evaluate.flags import FLAG_LABELS

    for k, label in FLAG_LABELS.items():
        rows = [r[k] for r in flags.values() if k in r]
        if rows and all(r["accuracy_flagged"] < r["accuracy_unflagged"] for r in rows):
            assert not any(f'"{label}"' in s for s in infos)


def _chart(at: AppTest, trace_name: str, x_label: str) -> list[dict]:
    """The traces of the first plotly chart on the page with a trace `trace_name` whose x holds
    `x_label` (AppTest gives charts as their plotly JSON)."""
    for el in at.get("plotly_chart"):
        data = json.loads(el.proto.spec)["data"]
        if any(t.get("name") == trace_name and x_label in (t.get("x") or []) for t in data):
            return data
    raise AssertionError(f"no chart with a trace {trace_name!r} over {x_label!r}")


def test_screening_bars_carry_their_counts_and_wilson_intervals(overview):
    from pipeline.intervals import share_interval

    at, run = overview(MAIN)
    sens = "Sensitivity: tumours found"
    for m in ("custom_cnn", "mobilenetv2"):
        tvn = _json(run / m / "metrics.json")["tumor_vs_no_tumor"]
        name = _json(run / "manifest.json")["models"][m]["display_name"]
        bar = next(t for t in _chart(at, name, sens) if t.get("name") == name)
        lo, hi = share_interval(tvn["tp"], tvn["n_tumor"])
        assert bar["text"][0].endswith(f"{tvn['tp']} of {tvn['n_tumor']}")
        assert bar["y"][0] + bar["error_y"]["array"][0] == pytest.approx(hi)
        assert bar["y"][0] - bar["error_y"]["arrayminus"][0] == pytest.approx(lo)
        assert f"{tvn['tn']} of {tvn['n_no_tumor']}" in bar["text"][1]
    # every chart drawn with only the PNG download in its modebar, and room above for it (the
    # full modebar covered panel titles and legends)
    from dashboard.figures.common import MODEBAR_ROOM

    charts = at.get("plotly_chart")
    assert len(charts) >= 5
    for el in charts:
        config = json.loads(el.proto.config)
        assert config["modeBarButtons"] == [["toImage"]], config
        assert json.loads(el.proto.spec)["layout"]["margin"]["t"] >= MODEBAR_ROOM


@pytest.mark.parametrize("run_id", [MAIN, OFFICIAL])
def test_robustness_says_what_one_image_is_worth_and_names_the_severe_drops(overview, run_id):
    at, run = overview(run_id)
    rob = _json(run / "robustness.json")
    text = _captions(at)
    n = rob["n_images"]
    assert f"One test image = {100 / n:.2f} points of accuracy." in text
    # the largest severe drop of all, as the file records it
    drop, model, shift = max((m["clean"]["accuracy"] - rows[-1]["accuracy"], name, s)
                             for name, m in rob["models"].items()
                             for s, rows in m["shifts"].items())
    clean = rob["models"][model]["clean"]["accuracy"]
    level = rob["shifts"][shift]["levels"][-1]
    assert (f"At the severe level the largest drops are: "
            f"{_json(run / 'manifest.json')['models'][model]['display_name']}, "
            f"{shift.replace('_', ' ')} at {rob['shifts'][shift]['parameter']} = {level:.3g}: "
            f"{clean:.3f} → {clean - drop:.3f}") in text
    levels = next(df.value for df in at.dataframe if "severe" in df.value.columns)
    assert len(levels) == len(rob["shifts"])


def test_the_official_run_shows_its_test_images_once_and_says_where_the_rest_went(overview):
    at, run = overview(OFFICIAL)
    splits = _json(run / "manifest.json")["splits"]
    tiles = {m.label: m.value for m in at.metric}
    assert "Test images" not in tiles
    assert tiles["Official test images"] == str(splits["official_test"]["n"])
    official = splits["official_test"]
    dropped, n_images = official["dropped_duplicates_of_test"], _json(run / "manifest.json")[
        "data"]["n_images"]
    # one caption, each fact once: two captions both said the copies were left out (a review,
    # 2026-12-06)
    said = [c.value for c in at.caption if f"{dropped} training-folder images" in c.value]
    assert len(said) == 1 and said[0].count(str(dropped)) == 1, said
    used = splits["train"] + splits["val"] + splits["test"]
    assert said[0] == (
        f"The dataset folder holds {n_images} image files; this run's splits hold {used} of "
        f"them. Left out of every split: {dropped} training-folder images that are exact or "
        "near copies of official test images, so no copy of a test image was trained or "
        f"validated on. {official['leaking']} of the {official['n']} official test images "
        "(the dataset's own test folder) have an exact or near copy among its training-folder "
        f"images, {official['leaking_exact']} of them exact.")
    at, _ = overview(MAIN)  # a run tested on its own split: its test tile, no such sentence
    assert "Test images" in {m.label for m in at.metric}
    assert "training-folder images" not in _captions(at)


@pytest.mark.parametrize("run_id", [MAIN, OFFICIAL])
def test_results_download_is_the_file_figures_writes(overview, run_id, monkeypatch):
    """The warnings' table had no export and the metrics table's CSV no run id, test set kind or
    interval method (a review, finding 5): one button offers results.md, from the same function
    `figures` writes it with."""
    import streamlit as st
    from streamlit.delta_generator import DeltaGenerator

    from pipeline.artifacts import open_run
    from pipeline.results_md import results_markdown

    offered: dict[str, bytes] = {}
    original, main = DeltaGenerator.download_button, st.download_button

    def keep(data, kwargs) -> None:  # noqa: ANN001
        offered[kwargs.get("key")] = data() if callable(data) else data

    monkeypatch.setattr(DeltaGenerator, "download_button", lambda self, label, data, *a, **kw: (
        keep(data, kw), original(self, label, data, *a, **kw))[1])
    monkeypatch.setattr(st, "download_button", lambda label, data, *a, **kw: (
        keep(data, kw), main(label, data, *a, **kw))[1])
    at, copy = overview(run_id)
    assert "results_md" in offered, list(offered)
    assert offered["results_md"] == results_markdown(open_run(copy)).encode()
    text = offered["results_md"].decode()
    assert f"`{run_id}`" in text and "## Do the warnings catch the errors?" in text


def test_the_data_line_keeps_the_user_s_folder_names_and_a_neutral_layout(overview):
    """A student's `train/Healthy` run read "(nickparvar layout) · classes: glioma, meningioma,
    no tumour": another dataset's name, and their folder name gone (a review, 2026-12-06). The
    shipped runs read as before, the Sartaj data's 512x512 fact with them."""
    at, run = overview(MAIN)
    said = _captions(at)
    assert "(`sartaj` layout) · classes: glioma, meningioma, no tumour, pituitary" in said
    assert "512×512 export of one collection" in said
    path = run / "manifest.json"
    manifest = _json(path)
    manifest["data"].update(layout="nickparvar", fingerprint="0" * 64,  # an older own run
                            class_folders={"train/Glioma": "glioma", "test/Healthy": "no_tumor",
                                           "train/Healthy": "no_tumor",
                                           "train/meningioma": "meningioma",
                                           "train/pituitary": "pituitary"})
    path.write_text(json.dumps(manifest))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    said = _captions(at)
    assert ("(`split` layout) · classes: glioma, meningioma, no tumour, pituitary (folder "
            "`Healthy` → no tumour)") in said
    assert "nickparvar" not in said and "512×512" not in said


def test_an_official_test_run_of_other_data_is_not_told_the_sartaj_testing_folder_s_story(
        overview):
    """"this project's training recipes were chosen on it", "mostly from other sources" and
    "the model card has the official Testing/ folder's" are facts of the shipped runs' data,
    said of any run (a review, 2026-12-06)."""
    from pipeline.names import SHIFT_VALIDATION_NOTE

    at, _ = overview(MAIN)
    assert "the model card has the official Testing/ folder's" in _captions(at)
    at, run = overview(OFFICIAL)  # the artifacts folder is this copy's from here on
    said = " ".join(_captions(at).split())
    assert SHIFT_VALIDATION_NOTE in said and "mostly from other sources" in said
    manifest = _json(run / "manifest.json")
    manifest["data"]["fingerprint"] = "0" * 64  # the same files, as a run on other data
    (run / "manifest.json").write_text(json.dumps(manifest))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    said = " ".join(_captions(at).split())
    assert SHIFT_VALIDATION_NOTE not in said and "mostly from other sources" not in said
    assert "the dataset's own test folder, kept apart from training as the dataset came" in said
    assert "model card" not in said


@pytest.mark.parametrize("run_id", [MAIN, OFFICIAL])
def test_the_overview_quotes_both_models_together(overview, run_id: str):
    """The models' pooled answer on the same test images, from comparison.json's "together"
    (`evaluate.together`), under the comparison; nothing for a file without it."""
    at, run = overview(run_id)
    record = _json(run / "comparison.json")["together"]
    where = "official test images" if run_id == OFFICIAL else "test images"
    said = (f"Averaged, the two models' answers were right on {record['accuracy']:.0%} of the "
            f"{record['n']} {where} (alone: Custom CNN {record['alone']['custom_cnn']:.0%}, "
            f"MobileNetV2 {record['alone']['mobilenetv2']:.0%}).")
    assert said in _captions(at), _captions(at)
    comp = _json(run / "comparison.json")
    del comp["together"]
    (run / "comparison.json").write_text(json.dumps(comp))
    at.run()
    assert not at.exception and "Averaged, the" not in _captions(at)
