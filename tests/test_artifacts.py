"""Run folders: atomic finalisation, `latest`, and clear errors for damaged runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.artifacts import (
    ArtifactError,
    RunWriter,
    list_runs,
    open_run,
    read_json,
    resolve_run,
    write_json_atomic,
)
from pipeline.config import ModelConfig
from pipeline.models import build_model


def _manifest() -> dict:
    return {"created": "2026-01-01T00:00:00+00:00", "class_names": ["a", "b"],
            "data": {"dir": "/x"},
            "models": {"custom_cnn": {"image_size": 32, "crop_head": False,
                                      "file": "custom_cnn/model.keras"}}}


def _finished_run(artifacts: Path) -> Path:
    w = RunWriter(artifacts)
    model = build_model("custom_cnn", 2, ModelConfig(image_size=32, width=4, depth=2)).model
    model.save(w.model_dir("custom_cnn") / "model.keras")
    return w.finalize(_manifest())


def test_run_is_invisible_until_finalized(tmp_path):
    w = RunWriter(tmp_path)
    w.write_json("splits.json", {"train": []})
    assert list_runs(tmp_path) == []
    assert not (tmp_path / "latest").exists()
    with pytest.raises(ArtifactError, match="no runs yet"):
        resolve_run(tmp_path)
    with pytest.raises(ArtifactError, match="model.keras missing"):
        w.finalize(_manifest())  # a run without its model file never becomes complete
    assert list_runs(tmp_path) == []


def test_finalize_sets_latest_and_loads_with_safe_mode(tmp_path):
    run_dir = _finished_run(tmp_path)
    assert (tmp_path / "latest").read_text().strip() == run_dir.name
    assert resolve_run(tmp_path) == run_dir
    assert resolve_run(tmp_path, run_dir.name) == run_dir
    run = open_run(run_dir)
    assert run.class_names == ["a", "b"] and run.model_names == ["custom_cnn"]
    assert run.load_model("custom_cnn").output.shape[-1] == 2
    assert [r.run_id for r in list_runs(tmp_path)] == [run_dir.name]
    assert not list(run_dir.parent.glob(".tmp-*"))


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "manifest.json").write_text('{"schema_version": 1, "comp'), "not valid JSON"),
    (lambda d: (d / "manifest.json").unlink(), "missing file"),
    (lambda d: _edit(d, schema_version=99), "schema_version 99.*update brain-mri-xai"),
    (lambda d: _edit(d, complete=False), "incomplete"),
    (lambda d: _edit(d, class_names=[]), "class_names"),
])
def test_damaged_manifest_is_reported(tmp_path, damage, message):
    run_dir = _finished_run(tmp_path)
    damage(run_dir)
    with pytest.raises(ArtifactError, match=message):
        open_run(run_dir)


def _edit(run_dir: Path, **changes) -> None:
    m = json.loads((run_dir / "manifest.json").read_text())
    m.update(changes)
    (run_dir / "manifest.json").write_text(json.dumps(m))


def test_model_file_that_is_not_a_model(tmp_path):
    run_dir = _finished_run(tmp_path)
    path = run_dir / "custom_cnn" / "model.keras"
    # a copy cut short: Keras said "File not found: filepath=…" of a file that is there
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ArtifactError, match="cannot load model .*: not a Keras archive"):
        open_run(run_dir).load_model("custom_cnn")
    path.write_bytes(b"not a zip at all")
    with pytest.raises(ArtifactError, match="not a Keras archive"):
        open_run(run_dir).load_model("custom_cnn")
    (run_dir / "custom_cnn" / "model.keras").unlink()
    with pytest.raises(ArtifactError, match="model file missing"):
        open_run(run_dir).load_model("custom_cnn")
    with pytest.raises(ArtifactError, match="no model 'mobilenetv2'"):
        open_run(run_dir).load_model("mobilenetv2")


def test_lambda_layer_refused_by_safe_mode(tmp_path):
    import keras

    inp = keras.Input((32, 32, 3))
    out = keras.layers.Lambda(lambda t: t * 2.0)(inp)
    out = keras.layers.GlobalAveragePooling2D()(out)
    out = keras.layers.Dense(2, activation="softmax")(out)
    w = RunWriter(tmp_path)
    keras.Model(inp, out).save(w.model_dir("custom_cnn") / "model.keras")
    run_dir = w.finalize(_manifest())
    with pytest.raises(ArtifactError, match="cannot load model"):
        open_run(run_dir).load_model("custom_cnn")


def test_unknown_run_lists_known_ones(tmp_path):
    run_dir = _finished_run(tmp_path)
    with pytest.raises(ArtifactError, match=run_dir.name):
        resolve_run(tmp_path, "nope")


def test_open_run_takes_latest_and_a_run_id_as_the_cli_does(tmp_path, monkeypatch):
    """A notebook's open_run("latest") said "run folder latest does not exist", a run id the
    same, a file "does not exist" and None a bare TypeError (a review of the Python API)."""
    run_dir = _finished_run(tmp_path)
    assert open_run("latest", tmp_path).path == run_dir
    assert open_run(run_dir.name, tmp_path).path == run_dir
    monkeypatch.setenv("BRAIN_MRI_ARTIFACTS", str(tmp_path))  # the CLI's default folder
    assert open_run("latest").path == run_dir and open_run(run_dir.name).path == run_dir
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.md").write_text("x")
    for given, said in (("nope", rf"run 'nope' not found in .*recent runs: {run_dir.name}"),
                        ("notes.md", r"run folder .*notes.md is a file, not a run folder"),
                        (None, r"open_run takes a run folder, a run id or 'latest', got NoneType")):
        with pytest.raises(ArtifactError, match=f"^{said}"):
            open_run(given)
    (tmp_path / "latest").write_text("gone-run\n")  # a deleted run: say where its id came from
    with pytest.raises(ArtifactError, match=r"run 'gone-run' \(named by .*latest\) not found"):
        open_run("latest")


def test_a_file_for_a_folder_and_a_run_s_manifest_for_its_run(tmp_path):
    """`explain --out README.md` said "cannot write to ... README.md: File exists", and
    `--run <run>/manifest.json` "not found" (a review of the CLI)."""
    from pipeline.artifacts import ensure_writable

    run_dir = _finished_run(tmp_path)
    note = tmp_path / "README.md"
    note.write_text("x")
    with pytest.raises(ArtifactError, match=r"^the output folder .*README.md is a file, not a "
                                           r"folder$"):
        ensure_writable(note, "output folder")
    assert resolve_run(tmp_path, str(run_dir / "manifest.json")) == run_dir
    assert open_run(run_dir / "manifest.json").path == run_dir  # as --run takes it


def test_a_folder_that_is_no_run_is_named_as_such(tmp_path):
    """`--run /tmp` said "missing file manifest.json", naming no folder (an absolute path was
    joined under runs/ as itself, and opened as a run)."""
    run_dir = _finished_run(tmp_path)
    other = tmp_path / "elsewhere"
    other.mkdir()
    for given in (str(other), str(tmp_path / "runs")):
        with pytest.raises(ArtifactError, match=rf"^{re.escape(given)} is not a run folder \(it "
                                                r"has no manifest.json\): give a run folder"):
            resolve_run(tmp_path, given)
    assert resolve_run(tmp_path, str(run_dir)) == run_dir  # a run folder by its path still


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    write_json_atomic(target, {"v": 1})

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("pipeline.atomic.os.fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_json_atomic(target, {"v": 2})
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temp file left behind


def test_atomic_writes_get_the_umask_mode_not_private(tmp_path):
    from pipeline import atomic

    path = tmp_path / "x.json"
    atomic.write_json_atomic(path, {"a": 1})
    # mkstemp alone gives 0600; run files must be readable by the dashboard's user too
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~atomic._UMASK)


def test_cpu_facts_name_the_processor_and_its_vector_instructions():
    # Training repeats exactly on one processor, not across them: the manifest says which.
    from pipeline.provenance import cpu_facts

    info = ("processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse2 avx avx2 fma "
            "avx512f avx512bw avx512_vnni\n\nprocessor\t: 1\nmodel name\t: other\nflags\t: avx\n")
    assert cpu_facts(info) == {"cpu_model": "AMD EPYC 9B14",
                               "cpu_features": ["avx", "avx2", "fma", "avx512f", "avx512bw",
                                                "avx512_vnni"]}
    older = cpu_facts("model name : Xeon\nflags : sse2 avx\n")
    assert older == {"cpu_model": "Xeon", "cpu_features": ["avx"]}
    here = cpu_facts()  # this machine: a model name and a list (or None without /proc)
    assert here["cpu_model"] and (here["cpu_features"] is None
                                  or isinstance(here["cpu_features"], list))


def test_a_moved_dataset_is_named_once_with_its_fix_and_no_absolute_path(tmp_path):
    """calibrate, ood, evaluate and evaluate --cv each wrote this check and its message, and
    each quoted this machine's absolute path (issue 18)."""
    from pipeline.calibration import calibrate_run
    from pipeline.evaluate import EvaluationError, evaluate_run

    run_dir = _finished_run(tmp_path / "artifacts")
    gone = tmp_path / "moved-away" / "dataset"
    _edit(run_dir, data={"dir": str(gone)})
    run = open_run(run_dir)
    with pytest.raises(ArtifactError) as info:
        run.dataset_root()
    message = str(info.value)
    assert "dataset folder" in message and "--run-data DIR" in message
    assert str(tmp_path) not in message
    here = tmp_path / "here"
    here.mkdir()
    assert run.dataset_root(here) == here  # where it moved to
    # the stages say the same
    with pytest.raises(ArtifactError, match="--run-data DIR") as info:
        calibrate_run(run_dir)
    assert str(tmp_path) not in str(info.value)
    with pytest.raises(EvaluationError, match="--run-data DIR") as info:
        evaluate_run(run_dir)
    assert str(tmp_path) not in str(info.value)


def test_the_cli_finds_runs_where_brain_mri_artifacts_points_as_the_dashboard_does(
        tmp_path, monkeypatch):
    """The dashboard read `$BRAIN_MRI_ARTIFACTS`, the CLI never did: `predict --run latest` in
    the same shell answered with ./artifacts' latest run, another run than the dashboard's."""
    from PIL import Image
    from typer.testing import CliRunner

    from dashboard import state
    from pipeline import artifacts
    from pipeline.cli import app

    assert state.ARTIFACTS_ENV is artifacts.ARTIFACTS_ENV == "BRAIN_MRI_ARTIFACTS"  # one home
    monkeypatch.chdir(tmp_path)
    here = _finished_run(tmp_path / "artifacts")  # ./artifacts: the default without it
    there = _finished_run(tmp_path / "elsewhere")
    image = tmp_path / "head.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(image)
    env = {artifacts.ARTIFACTS_ENV: str(tmp_path / "elsewhere")}

    def run_of(args: list[str], env: dict[str, str]) -> tuple[str, str]:
        result = CliRunner().invoke(app, ["predict", "--json", *args, str(image)], env=env)
        assert result.exit_code == 0, result.output[-2000:]
        return json.loads(result.stdout)["run"], result.stderr

    assert run_of(["--run", "latest"], {})[0] == here.name
    ran, stderr = run_of(["--run", "latest"], env)
    assert ran == there.name
    # the fix commands name the run as the same shell finds it: no --artifacts needed
    assert "python -m pipeline calibrate --run latest" in stderr and "--artifacts" not in stderr
    assert run_of(["--run", there.name], env)[0] == there.name  # an id, looked up there
    # --artifacts still wins, and an empty variable is no folder
    assert run_of(["--run", "latest", "--artifacts", "artifacts"], env)[0] == here.name
    assert run_of(["--run", "latest"], {artifacts.ARTIFACTS_ENV: ""})[0] == here.name
    result = CliRunner().invoke(app, ["predict", "--run", "latest", str(image)],
                                env={artifacts.ARTIFACTS_ENV: str(tmp_path / "none")})
    assert result.exit_code == 2 and f"{tmp_path / 'none' / 'latest'} does not exist" in \
        result.stderr
    assert artifacts.ARTIFACTS_ENV in CliRunner().invoke(app, ["predict", "--help"]).stdout


def test_a_manifest_without_crop_head_is_read_alike_by_every_command(smoke_run, tmp_path):
    """The fallback for a model entry without `crop_head` was True in evaluate (and the
    dashboard), False in predict, explain and bench, so one run's images were prepared two
    ways; `artifacts.crop_head` is its one reading: training's default."""
    import re
    import shutil

    from pipeline import geometry
    from pipeline.artifacts import crop_head
    from pipeline.predict import Predictor

    assert crop_head({}) is ModelConfig().crop_head is True
    assert crop_head({"crop_head": None}) is True and crop_head({"crop_head": False}) is False
    # no other module (the dashboard's too) reads the key of a manifest entry itself
    readers = [f"{p.name}:{i}" for top in ("pipeline", "dashboard")
               for p in sorted(Path(top).rglob("*.py"))
               if p.name != "artifacts.py"
               for i, line in enumerate(p.read_text().splitlines(), 1)
               if re.search(r"""(\.get\(|\[)\s*["']crop_head["']""", line)]
    assert readers == []
    run = tmp_path / "runs" / smoke_run.name
    shutil.copytree(smoke_run, run)
    manifest = json.loads((run / "manifest.json").read_text())
    for info in manifest["models"].values():
        assert info.pop("crop_head") is True  # the smoke run was trained cropping
    (run / "manifest.json").write_text(json.dumps(manifest))
    predictor = Predictor(open_run(run), check_ood=False)
    image = np.zeros((96, 128, 3), np.uint8)
    image[20:80, 30:100] = 150  # a "head" with black around it: cropping changes the input
    for name, (size, crop) in zip(predictor.models, predictor.prepare_specs(), strict=True):
        assert crop is True
        cropped = geometry.prepare_image(image, size, crop=True)
        assert not np.array_equal(cropped, geometry.prepare_image(image, size, crop=False))
        assert np.array_equal(predictor.prepare(name, image), cropped)
