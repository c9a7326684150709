"""README figures and results table from a real (smoke) run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.artifacts import open_run
from pipeline.cli import app
from pipeline.intervals import share_interval
from pipeline.names import SHIFT_VALIDATION_NOTE, display_name
from pipeline.report import make_figures, results_table


def test_figures_and_table_from_smoke_run(smoke_run, tmp_path):
    run = open_run(smoke_run)
    paths = make_figures(run, tmp_path)
    names = {p.name for p in paths}
    assert {"confusion_matrices.png", "training_curves.png", "results.md"} <= names
    for p in paths:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    table = results_table(run)
    assert "| Custom CNN |" in table and "| MobileNetV2 |" in table
    metrics = run.read_json("mobilenetv2/metrics.json")
    assert f"{metrics['accuracy']:.3f}" in table


def test_the_confusion_figure_names_classes_as_the_dashboard_does(smoke_run, tmp_path,
                                                                  monkeypatch):
    """Its axes read "no tumor" (the folder name with a space) where every page says "no
    tumour"."""
    import matplotlib.pyplot as plt

    from pipeline.report import confusion_figure

    shown: list[str] = []
    close = plt.close

    def keep_labels(fig=None):  # the figure's tick labels, read before it is closed
        if fig is not None:
            shown.extend(t.get_text() for ax in fig.axes for t in ax.get_yticklabels())
        close(fig)

    monkeypatch.setattr(plt, "close", keep_labels)
    assert confusion_figure(open_run(smoke_run), tmp_path) is not None
    assert "no tumour" in shown and "no tumor" not in shown


def test_figures_cli_on_missing_run_is_one_clear_line(tmp_path):
    result = CliRunner().invoke(app, ["figures", "--artifacts", str(tmp_path), "--out",
                                      str(tmp_path / "f")])
    assert result.exit_code == 2
    assert "no runs yet" in result.output and "Traceback" not in result.output


def test_test_set_description_names_split_and_leakage():
    from types import SimpleNamespace

    from pipeline.report import describe_test_set

    official = SimpleNamespace(manifest={"splits": {"dedupe": True, "official_test": {
        "n": 394, "leaking": 259, "dropped_duplicates_of_test": 301}}})
    text = describe_test_set(official)
    assert "Testing/" in text and "259 of 394" in text and "301 such copies" in text
    # the file a student pastes says what the Overview and the model card say: the recipes were
    # chosen on that folder, so its figures are shift validation, not a clean test (a review)
    assert "(shift validation)" in text and text.endswith("not a clean test")
    dedup = SimpleNamespace(manifest={"splits": {"dedupe": True}})
    assert "no test image has a copy" in describe_test_set(dedup)
    plain = SimpleNamespace(manifest={"splits": {"dedupe": False}})
    assert "not grouped" in describe_test_set(plain)


# ------------------------------------------------------------------ results.md: the whole file
ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "artifacts" / "runs"
MAIN, OFFICIAL = "20261204-234844-8cf044", "20261204-234901-1f09da"


def _shipped(run_id: str, tmp_path: Path) -> Path:
    """A copy of a shipped run (tests never touch the shipped folders)."""
    src = SHIPPED / run_id
    if not (src / "manifest.json").is_file():
        pytest.skip(f"shipped run {run_id} is not in this checkout")
    dst = tmp_path / "runs" / run_id
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.keras", "*.npz"))
    return dst


def _section(text: str, title: str) -> str:
    """The lines of results.md's section `## title…`, up to the next section."""
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


@pytest.mark.parametrize("run_id", [MAIN, OFFICIAL])
def test_results_md_is_citable_and_holds_every_table_the_run_has(run_id, tmp_path):
    """A student could not cite results.md: no run id, no kind of test set, no date, no interval
    method, and no robustness or warnings table (a review, finding 5)."""
    from pipeline.evaluate.flags import flag_table
    from pipeline.results_md import results_markdown

    path = _shipped(run_id, tmp_path)
    run = open_run(path)
    result = CliRunner().invoke(app, ["figures", "--run", str(path), "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "out" / "results.md").read_text()
    assert text == results_markdown(run)  # the dashboard offers the same function's bytes
    manifest = json.loads((path / "manifest.json").read_text())
    comp = json.loads((path / "comparison.json").read_text())
    head = text[:text.index("\n## ")]
    assert f"`{run_id}`" in head.splitlines()[0]
    assert f"Date: run finished {manifest['created'][:10]} {manifest['created'][11:16]} UTC" in head
    assert comp["ci_method"] in head
    official = run_id == OFFICIAL
    kind = "official Testing/ folder" if official else "main split"
    assert f"Test set: {kind}" in head
    assert (SHIFT_VALIDATION_NOTE in head) is official
    assert results_table(run) in text  # the table README and MODEL_CARD quote, unchanged

    robust = _section(text, "Robustness")
    rob = json.loads((path / "robustness.json").read_text())
    models = list(rob["models"])
    clean = [f"{rob['models'][m]['clean']['accuracy']:.3f}" for m in models]
    assert f"| unshifted | | | {' | '.join(clean)} |" in robust
    # "unshifted", as the review asked: "clean" only in "not a clean test"
    assert robust.lower().count("clean") == robust.count("not a clean test") == 1
    for shift, rows in rob["models"][models[0]]["shifts"].items():
        for row in rows:
            line = next(ln for ln in robust.splitlines()
                        if ln.startswith(f"| {shift.replace('_', ' ')} | {row['severity']} |"))
            delta = row["accuracy"] - rob["models"][models[0]]["clean"]["accuracy"]
            assert f"| {row['accuracy']:.3f} ({delta:+.3f}) |".replace("-0.000", "+0.000") in line

    warn = _section(text, "Do the warnings catch the errors?")
    for row in flag_table(json.loads((path / "flags.json").read_text()),
                          {m: display_name(m) for m in run.model_names}):
        assert f"| {' | '.join(row.values())} |" in warn
    assert ("shift validation" in warn) is official


def test_results_md_writes_a_title_s_control_characters_as_escapes(tmp_path):
    """A run title holding a terminal escape went raw into results.md: `cat` turned the
    terminal red (a review). Shown as a Python escape, as the CLI shows such text."""
    from pipeline.results_md import results_markdown

    path = _shipped(MAIN, tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["title"] = "ev\x1b[31mil | `tick`\x07"
    (path / "manifest.json").write_text(json.dumps(manifest))
    text = results_markdown(open_run(path))
    assert not any(ord(ch) < 32 and ch not in "\n\t" for ch in text)
    assert "ev\\x1b[31mil" in text and "\\x07" in text


def test_results_md_leaves_out_a_damaged_section_and_says_nothing_false(tmp_path):
    from pipeline.results_md import results_markdown

    path = _shipped(OFFICIAL, tmp_path)
    (path / "robustness.json").write_text('{"models": {"custom_cnn": [1, 2]}}')
    (path / "flags.json").write_text("not json")
    comp = json.loads((path / "comparison.json").read_text())
    del comp["ci_method"]
    (path / "comparison.json").write_text(json.dumps(comp))
    text = results_markdown(open_run(path))
    assert "## Robustness" not in text and "## Do the warnings" not in text
    assert "Intervals: 95 %; methods not recorded" in text
    assert results_table(open_run(path)) in text
    # ... and says what it left out, and why: the sections went as if never measured (a review)
    left = _section(text, "Left out")
    assert "robustness.json: not what it should hold; results.md leaves out the robustness " \
           f"section. To fix: run python -m pipeline evaluate --run {path} --robustness" in left
    assert "flags.json" in left and "the warnings' section" in left and "ood --run" in left
    assert "comparison.json" not in left  # an older file without ci_method is still usable
    metrics = json.loads((path / "mobilenetv2" / "metrics.json").read_text())
    del metrics["balanced_accuracy"]  # a file of another version: no traceback, the rest stands
    (path / "mobilenetv2" / "metrics.json").write_text(json.dumps(metrics))
    (path / "comparison.json").write_text("{}")
    result = CliRunner().invoke(app, ["figures", "--run", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1, result.output  # written, but not a citable table
    warned = [x for x in " ".join(result.stderr.split()).split("warning: ") if "damaged" in x]
    assert [w.split(":")[0].rsplit("/", 1)[-1] for w in warned] == [
        "comparison.json", "robustness.json", "flags.json"], result.stderr
    assert "the intervals, the paired test and the pooled answer" in warned[0]
    text = (tmp_path / "o" / "results.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| MobileNetV2 |"))
    assert "mobilenetv2/metrics.json: no 'balanced_accuracy'" in row
    assert f"To fix: run python -m pipeline evaluate --run {path}" in row
    assert "| Custom CNN | 0." in text  # the other model's row stands
    assert f"`{OFFICIAL}`" in text


def _smoke_copy(smoke_run: Path, tmp_path: Path) -> Path:
    """A copy of the smoke run, without its models (figures never loads them)."""
    dst = tmp_path / "artifacts" / "runs" / smoke_run.name
    shutil.copytree(smoke_run, dst, ignore=shutil.ignore_patterns("*.keras"))
    return dst


@pytest.mark.parametrize("damage", ["missing", "cut short", "not a number"])
def test_figures_names_a_missing_or_damaged_metrics_file_and_fails(smoke_run, tmp_path, damage):
    """A model was left out of results.md without a word (exit 0), and a wrong type printed
    Python's "Unknown format code 'f'" instead of a file name (review 4, finding 1)."""
    path = _smoke_copy(smoke_run, tmp_path)
    metrics = path / "custom_cnn" / "metrics.json"
    if damage == "missing":
        metrics.unlink()
    elif damage == "cut short":
        metrics.write_bytes(metrics.read_bytes()[:300])
    else:
        metrics.write_text(json.dumps(json.loads(metrics.read_text()) | {"accuracy": "high"}))
    out = tmp_path / "figs"
    result = CliRunner().invoke(app, ["figures", "--run", str(path), "--out", str(out)])
    assert result.exit_code == 1, result.output
    said = {"missing": "missing file", "cut short": "damaged file",
            "not a number": "damaged file"}[damage]
    fix = f"To fix: run python -m pipeline evaluate --run {path}"
    line = next(x for x in result.output.splitlines() if x.startswith("error: "))
    assert said in line and "custom_cnn/metrics.json" in line and fix in line, result.output
    assert "format code" not in result.output
    text = (out / "results.md").read_text()
    row = next(x for x in text.splitlines() if x.startswith("| Custom CNN |"))
    assert said in row and "custom_cnn/metrics.json" in row and fix in row
    assert "format code" not in text
    mobilenet = json.loads((path / "mobilenetv2" / "metrics.json").read_text())
    assert f"| MobileNetV2 | {mobilenet['accuracy']:.3f}" in text


def test_figures_names_a_damaged_confusion_matrix(smoke_run, tmp_path):
    path = _smoke_copy(smoke_run, tmp_path)
    (path / "mobilenetv2" / "confusion_matrix.json").write_text('{"matrix": [[1, 2]], '
                                                                '"labels": ["a", "b"]}')
    result = CliRunner().invoke(app, ["figures", "--run", str(path), "--out",
                                      str(tmp_path / "o")])
    assert result.exit_code == 1, result.output
    assert "mobilenetv2/confusion_matrix.json: 'matrix' is not 2 x 2" in result.output
    assert (tmp_path / "o" / "confusion_matrices.png").is_file()  # Custom CNN's panel drawn


def _external_files(path: Path, name: str, model: str, metrics: dict, ci: list | None) -> None:
    """One `evaluate --data NAME` result as evaluate writes it (metrics.json, comparison.json)."""
    d = path / model / "external" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "metrics.json").write_text(json.dumps(metrics))
    comp = path / "external" / name / "comparison.json"
    comp.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(comp.read_text()) if comp.is_file() else {"ci": {}}
    if ci:
        old["ci"][model] = {"accuracy": ci}
    comp.write_text(json.dumps(old))


def test_results_md_lists_each_external_folder_with_what_its_files_record(tmp_path):
    """Fields are read as present: a file of today (copies counted near and exact, the images new
    to the run) and one written before (byte-identical copies only), each shown as it is."""
    from pipeline.results_md import results_markdown

    path = _shipped(MAIN, tmp_path)
    _external_files(path, "mine", "custom_cnn", {
        "n": 24, "accuracy": 0.75, "source": {"overlap_with_training": {
            "checked": True, "n_seen": 16, "n_new": 8}},
        "new_to_run": {"n": 8, "accuracy": 0.625}}, [0.551, 0.880])
    _external_files(path, "old", "mobilenetv2", {
        "n": 10, "accuracy": 0.9, "source": {"overlap_with_training": {
            "checked": True, "n_exact": 2}}}, None)
    text = _section(results_markdown(open_run(path)), "Other folders")
    # the figures on the images new to the run first, as the CLI's headline table: they
    # came after all images' (a review, 2026-12-06)
    lo, hi = share_interval(5, 8)
    assert ("| folder | model | new to the run | accuracy on new images (95 % CI) | all images "
            "| accuracy on all images (95 % CI) | in the run's training/validation |") in text
    assert (f"| mine | Custom CNN | 8 | 0.625 ({lo:.3f}–{hi:.3f}) | 24 | 0.750 (0.551–0.880) "
            "| 16 |") in text
    lo, hi = share_interval(9, 10)  # no stored interval: Wilson's, from accuracy and n
    assert (f"| old | MobileNetV2 | – | – | 10 | 0.900 ({lo:.3f}–{hi:.3f}) "
            "| 2 (byte-identical only) |") in text


@pytest.mark.slow
def test_figures_reads_a_real_evaluate_data_result(smoke_run, tmp_path):
    """The external section from files `evaluate --data` really wrote (a smoke run's copy)."""
    from pipeline.evaluate import evaluate_run

    run_dir = tmp_path / "runs" / smoke_run.name
    shutil.copytree(smoke_run, run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    folder = tmp_path / "mine"
    for item in json.loads((run_dir / "splits.json").read_text())["train"][:6]:
        dst = folder / item["label"] / Path(item["path"]).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(manifest["data"]["dir"]) / item["path"], dst)
    evaluate_run(run_dir, data_dir=folder, name="mine", n_boot=50)
    result = CliRunner().invoke(app, ["figures", "--run", str(run_dir), "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    text = _section((tmp_path / "out" / "results.md").read_text(), "Other folders")
    comp = json.loads((run_dir / "external" / "mine" / "comparison.json").read_text())
    for m in open_run(run_dir).model_names:
        met = json.loads((run_dir / m / "external" / "mine" / "metrics.json").read_text())
        lo, hi = comp["ci"][m]["accuracy"]
        overlap = met["source"]["overlap_with_training"]
        seen = overlap.get("n_seen", overlap.get("n_exact"))
        assert seen and seen >= 1  # training images: found, and said
        new = met["new_to_run"]
        assert (f"| mine | {display_name(m)} | {new['n']} | ") in text
        assert (f" | {met['n']} | {met['accuracy']:.3f} ({lo:.3f}–{hi:.3f}) | {seen} |") in text
    # the verdict on the images new to the run before the one on all images
    if comp["new_to_run"].get("verdict"):
        assert text.index("- mine (images new to the run): ") < text.index("- mine: ")


def _second_run(smoke_run: Path, tmp_path: Path, run_id: str) -> Path:
    """Another run: the smoke run's copy under another id (figures never loads the models)."""
    dst = tmp_path / "artifacts" / "runs" / run_id
    shutil.copytree(smoke_run, dst, ignore=shutil.ignore_patterns("*.keras"))
    manifest = json.loads((dst / "manifest.json").read_text())
    (dst / "manifest.json").write_text(json.dumps(manifest | {"run_id": run_id}))
    return dst


def _png_run(path: Path) -> str | None:
    from PIL import Image

    with Image.open(path) as img:
        return img.text.get("Run")


def test_figures_for_two_runs_into_one_folder_refuses_unless_replace(smoke_run, tmp_path):
    """Two `figures` runs into one --out, for two runs, overwrote each other's files without a
    word: the second is refused in one line naming the first run, its files untouched; the
    same run again overwrites its own; --replace writes the other run's, every file its."""
    first = _smoke_copy(smoke_run, tmp_path)
    other = _second_run(smoke_run, tmp_path, "20990101-000000-other")
    out = tmp_path / "figs"
    fig = ["figures", "--out", str(out), "--run"]
    done = CliRunner().invoke(app, [*fig, str(first)])
    assert done.exit_code == 0, done.output
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"confusion_matrices.png", "training_curves.png", "results.md"}
    refused = CliRunner().invoke(app, [*fig, str(other)])
    assert refused.exit_code == 2, refused.output
    errors = [x for x in refused.output.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in refused.output
    assert f"already holds confusion_matrices.png, training_curves.png, results.md of run " \
           f"{smoke_run.name}; this is run 20990101-000000-other: pass --replace" in errors[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert CliRunner().invoke(app, [*fig, str(first)]).exit_code == 0  # its own: overwritten
    done = CliRunner().invoke(app, [*fig, str(other), "--replace"])
    assert done.exit_code == 0, done.output
    assert (out / "results.md").read_text().startswith("# Results of run "
                                                       "`20990101-000000-other`")
    assert {_png_run(out / n) for n in ("confusion_matrices.png", "training_curves.png")} == {
        "20990101-000000-other"}


def test_figures_refuses_files_it_cannot_tie_to_a_run(smoke_run, tmp_path):
    """A results.md of the user's own in --out is not figures' to overwrite."""
    out = tmp_path / "notes"
    out.mkdir()
    (out / "results.md").write_text("# My notes\n")
    done = CliRunner().invoke(app, ["figures", "--run", str(_smoke_copy(smoke_run, tmp_path)),
                                    "--out", str(out)])
    assert done.exit_code == 2, done.output
    assert "already holds results.md of an unknown run" in done.output
    assert (out / "results.md").read_text() == "# My notes\n"


def test_a_figure_with_nothing_to_draw_leaves_no_older_file_behind(smoke_run, tmp_path):
    """With --replace, a figure the new run cannot draw (no usable history.json) would have
    left the other run's PNG beside the new run's files."""
    out = tmp_path / "figs"
    first = _smoke_copy(smoke_run, tmp_path)
    assert CliRunner().invoke(app, ["figures", "--run", str(first), "--out",
                                    str(out)]).exit_code == 0
    other = _second_run(smoke_run, tmp_path, "20990101-000000-other")
    for m in ("custom_cnn", "mobilenetv2"):
        (other / m / "history.json").unlink()
    done = CliRunner().invoke(app, ["figures", "--run", str(other), "--out", str(out),
                                    "--replace"])
    assert done.exit_code == 0, done.output
    assert sorted(p.name for p in out.iterdir()) == ["confusion_matrices.png", "results.md"]


@pytest.mark.parametrize("damage", ["missing", "cut short", "no loss"])
def test_figures_names_a_missing_or_damaged_history_and_the_curves_say_so(
        smoke_run, tmp_path, monkeypatch, damage):
    """A model without a usable history.json was left out of the training curves without a
    word (a row without 'val_loss' was a KeyError traceback). Only training writes the file,
    and every version of train has (the first commit of train.py wrote it), so it is a
    warning naming the file: the curves say which model they leave out, the table stands."""
    import matplotlib.pyplot as plt

    path = _smoke_copy(smoke_run, tmp_path)
    history = path / "custom_cnn" / "history.json"
    if damage == "missing":
        history.unlink()
    elif damage == "cut short":
        history.write_bytes(history.read_bytes()[:100])
    else:
        hist = json.loads(history.read_text())
        del hist["epochs"][-1]["loss"]
        history.write_text(json.dumps(hist))
    texts: list[str] = []
    close = plt.close

    def keep_texts(fig=None):  # the figure's own words, read before it is closed
        if fig is not None:
            texts.extend(t.get_text() for t in fig.texts)
        close(fig)

    monkeypatch.setattr(plt, "close", keep_texts)
    out = tmp_path / "figs"
    result = CliRunner().invoke(app, ["figures", "--run", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    warnings = [x for x in result.output.splitlines() if x.startswith("warning: ")]
    said = {"missing": "missing file", "cut short": "damaged file",
            "no loss": "damaged file"}[damage]
    assert len(warnings) == 1, result.output
    assert said in warnings[0] and "custom_cnn/history.json" in warnings[0]
    assert "Custom CNN is left out of the training curves" in warnings[0]
    assert "restore it from a copy of the run, or train a new run" in warnings[0]
    assert "Not drawn: Custom CNN (history.json missing or damaged)" in texts
    assert (out / "training_curves.png").is_file()  # MobileNetV2's curves drawn
    assert "| Custom CNN | 0." in (out / "results.md").read_text()
