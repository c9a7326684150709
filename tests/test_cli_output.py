"""What the commands print around their work: no blank line before an early error, no folder
named twice."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.cli.common import progress_bar


def test_a_progress_bar_draws_nothing_until_its_first_update(capsys) -> None:
    with progress_bar() as update:
        pass
    assert capsys.readouterr().err == ""  # was a blank line
    with progress_bar() as update:
        update("reading", 1, 2)
    assert "reading" in capsys.readouterr().err


def test_a_log_file_gets_a_plain_progress_line_every_half_minute(capsys) -> None:
    """Where stderr is no terminal (a log file, a Slurm job) rich draws its bar only when the
    work ends, and `predict` none at all: a review's log stayed empty for minutes. A plain line
    says how far the work is, at most every `PLAIN_PROGRESS_EVERY_S` seconds."""
    from pipeline.cli.common import PLAIN_PROGRESS_EVERY_S

    assert PLAIN_PROGRESS_EVERY_S == 30
    now = [1000.0]

    def at(t: float, done: int) -> None:
        now[0] = 1000.0 + t
        update("predict", done, 400)

    with progress_bar(bar=False, clock=lambda: now[0]) as update:
        for t, done in ((0, 0), (29, 100), (31, 120), (40, 200), (61, 300), (62, 400)):
            at(t, done)
    assert capsys.readouterr().err.splitlines() == [
        "predict: 120/400 (30%), 0:00:31 elapsed", "predict: 300/400 (75%), 0:01:01 elapsed"]
    with progress_bar(clock=lambda: now[0]) as update:  # beside the bar drawn at the end
        at(0, 0)
        at(45, 10)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "predict: 10/400 (2%), 0:00:45 elapsed" and len(lines) == 2, lines


@pytest.mark.slow
def test_predict_into_a_log_says_how_far_it_is(smoke_run: Path, monkeypatch) -> None:
    """`predict 2>log`: its progress in plain lines (every line here: the period set to 0)."""
    from pipeline.cli import common

    monkeypatch.setattr(common, "PLAIN_PROGRESS_EVERY_S", 0.0)
    split = json.loads((smoke_run / "splits.json").read_text())["test"][:3]
    data = Path(json.loads((smoke_run / "manifest.json").read_text())["data"]["dir"])
    result = CliRunner().invoke(app, ["predict", "--run", str(smoke_run),
                                      *(str(data / e["path"]) for e in split)])
    assert result.exit_code == 0, result.output
    said = [line for line in result.stderr.splitlines() if line.startswith("predict: ")]
    assert said and said[-1].startswith("predict: 3/3 (100%), "), result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", ["explain-eval", "evaluate"])
def test_an_empty_data_folder_is_one_line_naming_it_once(command: str, smoke_run: Path,
                                                          tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(app, [command, "--run", str(smoke_run), "--data", str(empty)])
    assert result.exit_code != 0
    assert result.stderr.splitlines() == [f"error: data folder {empty} is empty"]


def test_audit_names_the_folder_as_given(tmp_path: Path, monkeypatch) -> None:
    # the header showed the dataset's absolute path on this machine, whatever was typed
    from pipeline.synth import generate

    generate(tmp_path / "phantoms", per_class=2, size=64, workers=1)
    monkeypatch.chdir(tmp_path)
    for given in (str(tmp_path / "phantoms"), "phantoms", "./phantoms"):
        result = CliRunner().invoke(app, ["audit", given])
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[0].startswith("phantoms: layout"), result.stdout
        assert str(tmp_path) not in result.stdout


def _tiny_run(artifacts: Path, data_dir: Path) -> Path:
    """A complete run of one tiny untrained custom CNN whose dataset is recorded at `data_dir`."""
    from pipeline.artifacts import RunWriter
    from pipeline.config import ModelConfig
    from pipeline.models import build_model

    w = RunWriter(artifacts)
    model = build_model("custom_cnn", 2, ModelConfig(image_size=32, width=4, depth=2)).model
    model.save(w.model_dir("custom_cnn") / "model.keras")
    return w.finalize({"created": "2026-01-01T00:00:00+00:00",
                       "class_names": ["glioma", "no_tumor"], "data": {"dir": str(data_dir)},
                       "models": {"custom_cnn": {"image_size": 32, "crop_head": False,
                                                 "file": "custom_cnn/model.keras"}}})


def test_explain_choose_says_where_masks_and_data_go_without_absolute_paths(
        tmp_path: Path, monkeypatch) -> None:
    from pipeline.artifacts import shown_path

    monkeypatch.delenv("BRAIN_MRI_BOXES", raising=False)
    data = tmp_path / "dataset"
    data.mkdir()
    run_dir = _tiny_run(tmp_path / "artifacts", data)
    result = CliRunner().invoke(app, ["explain-choose", "--run", str(run_dir)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [  # was "masks folder /tmp/.../dataset/masks does not
        # exist", the run's recorded folder on this machine
        "error: no tumour masks beside the run's dataset (dataset): neither "
        "dataset-boxes/masks next to it (or $BRAIN_MRI_BOXES) nor dataset/masks exists; pass "
        "the masks folder with --masks DIR"]
    data.rmdir()  # the dataset moved: the option to give is named
    result = CliRunner().invoke(app, ["explain-choose", "--run", str(run_dir)])
    assert result.exit_code == 2 and "(CLI: --run-data DIR)" in result.stderr
    assert str(tmp_path) not in result.stderr
    # explain-eval reads the run's own dataset, moved, through --run-data, as evaluate and
    # explain-choose do (--data, which also meant it, is another folder)
    result = CliRunner().invoke(app, ["explain-eval", "--run", str(run_dir)])
    assert result.exit_code == 2 and str(tmp_path) not in result.stderr
    assert result.stderr.splitlines() == [  # was "data folder None not found; pass data_dir"
        f"error: the run's dataset folder {shown_path(data)} is not there; pass the folder it "
        "moved to (CLI: explain-eval --run-data DIR)"]
    other = tmp_path / "other"
    other.mkdir()
    (run_dir / "splits.json").write_text(json.dumps({"test": [
        {"path": "glioma/a.png", "label": "glioma"}], "train": [], "val": []}))
    for args, said in (
            (["--run-data", str(other)], f"error: --run-data {other} does not hold run "
             f"{run_dir.name}'s test split (not half of its files are there): to measure "
             "another folder, use --data"),
            (["--run-data", str(other), "--data", str(other)], "error: --data is another "
             "folder to measure, --run-data the run's own dataset where it moved: give one"),
            (["--run-data", str(other), "--name", "x"], "error: --name names an external "
             "folder's result (--data); --run-data is the run's own dataset, measured into "
             "explanations.json")):
        result = CliRunner().invoke(app, ["explain-eval", "--run", str(run_dir), *args])
        assert result.exit_code == 2 and result.stderr.splitlines() == [said], result.stderr


def test_evaluate_names_an_external_folder_as_given(tmp_path: Path, monkeypatch) -> None:
    # the table's title showed the folder's absolute path on this machine; run files record it
    # relative to the project, as explanations.json records its folders
    import json

    import numpy as np
    from PIL import Image

    from pipeline.artifacts import relative_to_project

    other = tmp_path / "other"
    rng = np.random.default_rng(0)
    for label in ("glioma", "no_tumor"):
        (other / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), np.uint8)).save(
                other / label / f"{i}.png")
    run_dir = _tiny_run(tmp_path / "artifacts", tmp_path / "dataset")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["evaluate", "--run", str(run_dir), "--data", str(other),
                                      "--n-boot", "100"])
    assert result.exit_code == 0, result.output
    # how the labels were read, in words: "(direct)" meant nothing to a student (a review)
    assert "6 images, other (labels as the run's classes)" in result.stdout
    assert str(tmp_path) not in result.stdout
    metrics = json.loads((run_dir / "custom_cnn" / "external" / "other" / "metrics.json")
                         .read_text())
    assert metrics["source"]["data_dir"] == relative_to_project(other)


def _train_args(tmp_path: Path, command: str) -> list[str]:
    """`command` (train, run or tune) on an empty data folder (run: a synthetic one not yet
    made), which fails the moment data is read."""
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    if command == "run":
        return ["run", "--synth-dir", str(tmp_path / "synth"), "--per-class", "2",
                "--profile", "smoke", "--out", str(tmp_path / "art")]
    model = ["--model", "mobilenetv2"]
    return [command, "--data", str(empty), *model, "--profile", "smoke", "--out",
            str(tmp_path / "art")]


@pytest.mark.parametrize("command", ["train", "run", "tune"])
def test_a_missing_weights_file_fails_before_any_work(command: str, tmp_path: Path,
                                                      monkeypatch) -> None:
    # it failed when MobileNetV2 was built: after the data pass (run: after making phantoms)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # an empty Keras cache
    monkeypatch.setenv("BRAIN_MRI_OFFLINE", "1")
    missing = tmp_path / "missing.h5"
    monkeypatch.setenv("BRAIN_MRI_WEIGHTS", str(missing))  # `auto` trained from scratch quietly
    for extra, said in (([], f"$BRAIN_MRI_WEIGHTS names {missing}, which is not a file: "),
                        (["--weights", str(missing)], f"weights file {missing} does not exist: ")):
        result = CliRunner().invoke(app, [*_train_args(tmp_path, command), *extra])
        assert result.exit_code == 2, result.output
        lines = result.stderr.splitlines()
        # the refusal is the one line: the profile line comes once nothing more can refuse
        assert len(lines) == 1 and "profile smoke" not in result.stderr, result.stderr
        error = lines[-1]
        assert error.startswith(f"error: {said}run `make weights` (it copies the shared copy "
                                "../shared/weights/"), error
        assert 'or train from scratch with --weights none (in a --config file: "weights": ' \
               '"none")' in error
        assert not (tmp_path / "synth").exists()  # run made no phantoms
        assert "empty" not in result.stderr.replace(str(tmp_path / "empty"), "")
    if command != "run":  # with nothing to refuse up front, what it trains with is said first
        result = CliRunner().invoke(app, [*_train_args(tmp_path, command), "--weights", "none"])
        assert result.exit_code != 0  # the empty folder, once data is read
        assert result.stderr.splitlines()[0] == (
            "profile smoke: 25 images a class, 2-3 epochs (tests); others: --profile quick | full")


def test_evaluate_s_warnings_are_words_not_reprs(capsys) -> None:
    """`evaluate --data` said "skipped 9 unreadable image(s)" naming none (predict names each),
    "skipped classes the run does not know: {'pituitary': 20}" and "1 of them changed copies"
    (a review, 2026-12-06)."""
    from rich.console import Console

    from pipeline.cli import common
    from pipeline.cli.eval_output import unreadable_line

    def plain(markup: str) -> str:
        console = Console(width=200, record=True, file=io.StringIO())
        console.print(markup, highlight=False, soft_wrap=True)
        return console.export_text().strip()

    bad = [f"glioma/bad{k}.png" for k in range(9)]
    assert plain(unreadable_line({"n_unreadable": 9, "unreadable": bad})) == (
        "skipped 9 unreadable images: glioma/bad0.png, glioma/bad1.png, glioma/bad2.png and 6 "
        "more")
    assert plain(unreadable_line({"n_unreadable": 1, "unreadable": ["x/[b].png"]})) == (
        "skipped 1 unreadable image: x/[b].png")  # a file's name is printed, not parsed
    assert unreadable_line({"n_unreadable": 0}) is None
    # more than the 20 names a summary keeps: the count is the total
    assert plain(unreadable_line({"n_unreadable": 25, "unreadable": bad[:2]})).endswith(
        "glioma/bad0.png, glioma/bad1.png and 23 more")
    common.report_source({"skipped_classes": {"pituitary": 20, "glioma": 1}})
    err = capsys.readouterr().err
    assert "skipped classes the run does not know: pituitary (20 images), glioma (1 image)" in (
        " ".join(err.split())) and "{" not in err
    overlap = {"checked": True, "n_seen": 3, "n_new": 5,
               "splits": {"train": {"exact": 2, "near": 1}, "val": {"exact": 0, "near": 0}}}
    said = " ".join(common.overlap_lines(overlap))
    assert "1 of them a changed copy" in said and "changed copies" not in said
    assert "the models met them, so their scores" in said
    # a one-model run's evaluate said "the models met them" (a review of 2026-12-06)
    one = " ".join(common.overlap_lines(overlap, n_models=1))
    assert "the model met them, so its scores are not independent" in one
    assert "models" not in one
    overlap["splits"]["train"] = {"exact": 1, "near": 2}
    assert "2 of them changed copies" in " ".join(common.overlap_lines(overlap))


def test_target_takes_a_class_folder_of_the_run_and_refuses_an_ambiguous_one(capsys) -> None:
    """`explain --target Healthy` on a run trained on `Healthy/` for no_tumor: the folder's
    name is the class's name to its user (`common._target_index`)."""
    import typer

    from pipeline.cli.common import _target_index

    classes = ["glioma", "no_tumor"]
    folders = {"no_tumor": ["Healthy"], "glioma": ["Glioom"]}
    assert _target_index("Healthy", classes, folders) == 1
    assert _target_index("GLIOOM", classes, folders) == 0
    assert _target_index("no tumour", classes, folders) == 1  # the class names as before
    assert _target_index(None, classes, folders) is None
    with pytest.raises(typer.Exit):
        _target_index("Gezond", classes, folders)
    said = capsys.readouterr().err
    assert "unknown --target 'Gezond'" in said and "Healthy for no_tumor" in said
    # the folder's own spelling first; one name for two classes in any case: no guess
    assert _target_index("Data", classes, {"no_tumor": ["Data"], "glioma": ["data"]}) == 1
    with pytest.raises(typer.Exit):
        _target_index("dAta", classes, {"no_tumor": ["Data"], "glioma": ["data"]})
    assert "--target 'dAta' names class folders of no_tumor and glioma" in (
        capsys.readouterr().err)


@pytest.mark.slow
def test_an_interrupted_predict_json_says_nothing_was_printed_and_what_keeps_rows(
        smoke_run: Path, monkeypatch) -> None:
    """`predict --json` prints once every file is done: a review's SIGTERM after 25 s left an
    empty stdout beside a bare "interrupted". It now says so, and names --out; exit 130."""
    from pipeline import predict

    def interrupted(*args, **kwargs):  # noqa: ANN002, ANN003
        raise KeyboardInterrupt

    monkeypatch.setattr(predict, "predict_files", interrupted)
    split = json.loads((smoke_run / "splits.json").read_text())["test"][:1]
    data = Path(json.loads((smoke_run / "manifest.json").read_text())["data"]["dir"])
    result = CliRunner().invoke(app, ["predict", "--json", "--run", str(smoke_run),
                                      str(data / split[0]["path"])])
    assert result.exit_code == 130 and result.stdout == ""
    assert "--json prints the answers once every file is done, so none were printed; --out " \
        "FILE.csv keeps each row" in result.stderr, result.stderr
