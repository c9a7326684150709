"""explain --out: rows kept after every chunk, an interrupted run resumed, other settings
refused, --shard i/n with the overlay names of one unsharded run (pipeline/explain/batch.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.artifacts import open_run
from pipeline.stream import expand_inputs, select_shard

MODEL = "custom_cnn"


class Interrupted(Exception):
    """Stands for Ctrl-C or a crash between two chunks."""


@pytest.fixture(scope="module")
def folder(synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven inputs: two files named scan.png in different folders (their overlay names carry
    a hash only because the other one is in the list), and an unreadable file third."""
    root = tmp_path_factory.mktemp("explain-in") / "in"
    srcs = sorted(synth_data.glob("Testing/*/*.png"))[::5][:6]
    names = ["a/scan.png", "b/scan.png", "c/00.png", "c/01.png", "c/02.png", "c/03.png"]
    for name, src in zip(names, srcs, strict=True):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(src.read_bytes())
    (root / "c" / "00-broken.png").write_bytes(b"not an image")
    return root


@pytest.fixture(scope="module")
def run_and_explainers(smoke_run: Path):
    from pipeline.explain import Explainer

    run = open_run(smoke_run)
    layer = run.model_info(MODEL)["gradcam_layer"]
    return run, {MODEL: Explainer(run.load_model(MODEL), layer)}


def _explain(run_and_explainers, paths, out: Path, **kw):
    from pipeline.explain.batch import explain_files

    run, explainers = run_and_explainers
    options = {"method": "gradcam", "target": None, "alpha": 0.4, "outline": None, "chunk": 2,
               **kw}
    return explain_files(run, explainers, paths, out, **options)


def _report(out: Path) -> dict:
    return json.loads((out / "explain.json").read_text())


def _same_rows(got: list[dict], want: list[dict]) -> None:
    assert [r["path"] for r in got] == [r["path"] for r in want]
    assert [r["overlay_base"] for r in got] == [r["overlay_base"] for r in want]
    for a, b in zip(got, want, strict=True):
        a, b = a["models"][MODEL], b["models"][MODEL]
        keys = ("overlay", "predicted", "target", "method", "layer", "outside_head_flag")
        assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
        assert a["probs"] == pytest.approx(b["probs"], abs=1e-5)
        assert a["heatmap"]["mean"] == pytest.approx(b["heatmap"]["mean"], abs=1e-5)


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_the_rows_of_one_run(run_and_explainers, folder: Path,
                                                           tmp_path: Path):
    from pipeline.explain.batch import JOURNAL

    paths = expand_inputs([folder])
    assert len(paths) == 7 and paths[2].name == "00-broken.png"
    whole = _explain(run_and_explainers, paths, tmp_path / "whole")
    assert whole.already_done == 0 and (whole.images, whole.errors) == (6, 1)
    reference = _report(tmp_path / "whole")
    assert not (tmp_path / "whole" / JOURNAL).exists()  # folded into explain.json

    out = tmp_path / "resumed"
    ticks: list[int] = []

    def stop_after_the_second_chunk(desc: str, done: int, total: int) -> None:
        ticks.append(done)
        if done == 4:
            raise Interrupted

    with pytest.raises(Interrupted):
        _explain(run_and_explainers, paths, out, progress=stop_after_the_second_chunk)
    assert ticks == [0, 2, 4]
    assert not (out / "explain.json").exists()
    lines = [json.loads(x) for x in (out / JOURNAL).read_text().splitlines()]
    assert lines[0]["explain"]["run_id"] == reference["run_id"]
    assert sorted(x.get("image", x.get("error"))["path"] for x in lines[1:]) == \
        sorted(str(p) for p in paths[:4])  # both chunks kept, the unreadable file among them
    with open(out / JOURNAL, "a") as fh:  # and a line torn by the kill
        fh.write('{"image": {"path": "' + str(paths[4]))

    bad: list[str] = []
    again = _explain(run_and_explainers, paths, out, on_unreadable=lambda p, why: bad.append(p))
    assert again.already_done == 4 and bad == []  # the unreadable file is not read again
    assert [r["path"] for r in again.rows] == [str(p) for p in paths[4:]]
    assert (again.images, again.errors) == (6, 1)
    got = _report(out)
    assert not (out / JOURNAL).exists()
    _same_rows(got["images"], reference["images"])
    assert got["errors"] == reference["errors"]
    assert {k: v for k, v in got.items() if k not in ("images", "errors")} == \
        {k: v for k, v in reference.items() if k not in ("images", "errors")}
    assert sorted(p.name for p in out.glob("*.png")) == \
        sorted(p.name for p in (tmp_path / "whole").glob("*.png"))

    before = (out / "explain.json").read_bytes()
    done = _explain(run_and_explainers, paths, out)  # all done: nothing redone or rewritten
    assert done.already_done == 7 and done.rows == [] and (done.images, done.errors) == (6, 1)
    assert (out / "explain.json").read_bytes() == before

    extra = folder.parent / "more.png"  # a finished folder takes new files: they are appended
    extra.write_bytes(Path(paths[0]).read_bytes())
    more = _explain(run_and_explainers, [*paths, extra], out)
    assert more.already_done == 7 and [r["path"] for r in more.rows] == [str(extra)]
    assert [r["path"] for r in _report(out)["images"]] == \
        [r["path"] for r in reference["images"]] + [str(extra)]


@pytest.mark.slow
def test_other_settings_are_refused_before_anything_is_written(run_and_explainers,
                                                               folder: Path, tmp_path: Path):
    from pipeline.explain import Explainer
    from pipeline.explain.batch import JOURNAL

    paths = expand_inputs([folder])[:4]
    out = tmp_path / "out"
    def stop_after_the_first_chunk(desc: str, done: int, total: int) -> None:
        if done:
            raise Interrupted

    with pytest.raises(Interrupted):  # an interrupted run: its journal holds the settings
        _explain(run_and_explainers, paths, out, progress=stop_after_the_first_chunk)
    journal = (out / JOURNAL).read_bytes()
    pngs = sorted(out.glob("*.png"))
    run, explainers = run_and_explainers
    layer = explainers[MODEL].layer
    refusals = {
        "alpha 0.4 then, 0.6 now": {"alpha": 0.6},
        "outline none then, 10.0 now": {"outline": 10.0},
        "size 448 then, 700 now": {"size": 700},
        "target each model's predicted class then, " + run.class_names[1] + " now":
            {"target": 1},
        f"{MODEL} explained by gradcam at {layer} then, layercam at {layer} now":
            {"method": "layercam"},
        "shard 0/1 then, 1/2 now": {"shard": (1, 2)},
    }
    for words, change in refusals.items():
        with pytest.raises(ValueError) as info:
            _explain(run_and_explainers, paths, out, **change)
        message = str(info.value)
        assert words in message and "another --out" in message and "\n" not in message, message
    other = (run, {**explainers, "second": Explainer(run.load_model(MODEL), layer)})
    with pytest.raises(ValueError, match=f"models {MODEL} then, {MODEL}, second now"):
        _explain(other, paths, out)
    assert (out / JOURNAL).read_bytes() == journal and sorted(out.glob("*.png")) == pngs

    finished = _explain(run_and_explainers, paths, out)  # the same settings: it continues
    assert finished.already_done == 2 and finished.images + finished.errors == 4
    with pytest.raises(ValueError, match="alpha 0.4 then, 0.6 now"):  # a finished folder too
        _explain(run_and_explainers, paths, out, alpha=0.6)

    old = tmp_path / "old"  # explain.json of an earlier version records no settings
    old.mkdir()
    (old / "explain.json").write_text(json.dumps({"run_id": run.run_id, "method": "gradcam",
                                                  "target": None, "alpha": 0.4,
                                                  "images": [], "errors": []}))
    with pytest.raises(ValueError, match="does not record the settings"):
        _explain(run_and_explainers, paths, old)


@pytest.mark.slow
def test_one_writer_per_folder(run_and_explainers, folder: Path, tmp_path: Path):
    fcntl = pytest.importorskip("fcntl")
    import os

    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another process's run, as it were
        with pytest.raises(ValueError, match="another explain is writing"):
            _explain(run_and_explainers, expand_inputs([folder])[:1], out)
    finally:
        os.close(fd)
    assert not list(out.iterdir())
    assert _explain(run_and_explainers, expand_inputs([folder])[:1], out).images == 1


@pytest.mark.slow
def test_shards_partition_the_files_with_the_overlay_names_of_one_run(
        run_and_explainers, folder: Path, tmp_path: Path):
    paths = expand_inputs([folder])
    _explain(run_and_explainers, paths, tmp_path / "whole")
    whole = {r["path"]: r for r in _report(tmp_path / "whole")["images"]}
    assert {whole[str(folder / d / "scan.png")]["overlay_base"] for d in "ab"} != {"scan.png"}
    seen_rows: list[str] = []
    seen_errors: list[str] = []
    pngs: list[str] = []
    for i in range(3):
        out = tmp_path / f"shard{i}"
        summary = _explain(run_and_explainers, paths, out, shard=(i, 3))
        report = _report(out)
        assert report["shard"] == f"{i}/3" and summary.selected == len(paths[i::3])
        mine = [str(p) for p in select_shard(paths, (i, 3))]
        assert [r["path"] for r in report["images"]] + [e["path"] for e in report["errors"]] \
            == [p for p in mine if p in whole] + [p for p in mine if p not in whole]
        for row in report["images"]:  # the names one unsharded run gives, not the shard's own
            assert row["overlay_base"] == whole[row["path"]]["overlay_base"]
            assert row["models"][MODEL]["overlay"] == whole[row["path"]]["models"][MODEL]["overlay"]
        seen_rows += [r["path"] for r in report["images"]]
        seen_errors += [e["path"] for e in report["errors"]]
        pngs += [p.name for p in out.glob("*.png")]
    assert sorted(seen_rows) == sorted(whole) and len(seen_rows) == len(set(seen_rows))
    assert seen_errors == [str(paths[2])]
    assert sorted(pngs) == sorted(p.name for p in (tmp_path / "whole").glob("*.png"))


@pytest.mark.slow
def test_cli_shard_resume_summary_and_one_line_errors(smoke_run: Path, folder: Path,
                                                      tmp_path: Path, monkeypatch):
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.explain import batch
    from pipeline.explain.batch import JOURNAL

    def explain(*args: str):
        return CliRunner().invoke(app, ["explain", "--run", str(smoke_run), "--model", MODEL,
                                        "--method", "gradcam", *args, str(folder)])

    def one_error_line(result) -> str:
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            repr(result.exception)
        from helpers import stderr_lines

        lines = stderr_lines(result.stderr)
        assert len(lines) == 1, lines
        return lines[0]

    out = tmp_path / "out"
    real = batch._explain_chunk
    calls: list[int] = []

    def ctrl_c_on_the_second_chunk(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setitem(batch.explain_files.__kwdefaults__, "chunk", 2)  # 32 in the CLI
    monkeypatch.setattr(batch, "_explain_chunk", ctrl_c_on_the_second_chunk)
    stopped = explain("--out", str(out), "--shard", "0/2")  # a/scan.png, 00-broken.png, ...
    assert stopped.exit_code == 130
    assert "run the same command again" in stopped.stderr and JOURNAL in stopped.stderr
    monkeypatch.setattr(batch, "_explain_chunk", real)

    res = explain("--out", str(out), "--shard", "0/2")
    assert res.exit_code == 1, res.output  # explain.json lists the unreadable file
    assert "shard 0/2: 4 of 7 file(s); 2 already done, skipped; explain.json: 3 image(s), " \
        "1 unreadable" in res.stdout
    assert _report(out)["shard"] == "0/2"
    res = explain("--out", str(out), "--shard", "0/2")
    assert res.exit_code == 1 and "4 already done, skipped" in res.stdout

    refused = explain("--out", str(out), "--shard", "1/2")
    assert refused.exit_code == 2
    assert "shard 0/2 then, 1/2 now" in one_error_line(refused)
    refused = explain("--out", str(out), "--shard", "0/2", "--alpha", "0.7")
    assert refused.exit_code == 2 and "alpha 0.4 then, 0.7 now" in one_error_line(refused)
    bad = explain("--out", str(tmp_path / "x"), "--shard", "2/2")
    assert bad.exit_code == 2 and "--shard" in one_error_line(bad)

    empty = explain("--out", str(tmp_path / "empty"), "--shard", "7/8")  # holds no file
    assert empty.exit_code == 0, empty.output
    assert _report(tmp_path / "empty")["images"] == []


@pytest.mark.slow
def test_a_series_file_is_explained_slice_by_slice(run_and_explainers, synth_data: Path,
                                                   tmp_path: Path):
    """`explain --out` overlaid only a multi-frame DICOM's first frame and refused a zip of .dcm
    slices: every slice now gets its overlays and row, named after its file and slice, and a
    rerun after an interruption explains only the slices not yet done."""
    import zipfile

    import numpy as np
    from helpers import make_dicom
    from PIL import Image

    files = sorted(synth_data.glob("Testing/*/*.png"))[:3]
    grey = [np.asarray(Image.open(f).convert("L").resize((96, 96)), np.uint16) * 16
            for f in files]
    zipped = tmp_path / "series.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for k in range(3):
            zf.writestr(f"IM{k}.dcm", make_dicom(grey[k], InstanceNumber=k + 1))
    multi = tmp_path / "scan.dcm"
    multi.write_bytes(make_dicom(np.stack(grey)))
    out = tmp_path / "out"
    paths = [multi, files[0], zipped]
    with pytest.raises(Interrupted):
        _explain(run_and_explainers, paths, out, chunk=2,
                 progress=lambda d, done, total: _stop_after(done, 2))
    summary = _explain(run_and_explainers, paths, out, chunk=2)
    assert summary.images == 7 and summary.already_done == 2
    rows = _report(out)["images"]
    names = [f"{multi} · slice {k} of 3" for k in (1, 2, 3)]
    assert [r["path"] for r in rows] == [*names, str(files[0]),
                                         *[f"{zipped} · slice {k} of 3" for k in (1, 2, 3)]]
    assert [r["overlay_base"] for r in rows[:3]] == [f"scan.dcm.slice-{k}" for k in (1, 2, 3)]
    for r in rows:
        assert (out / r["models"][MODEL]["overlay"]).is_file()
    # the same pixels in both series: the same answers
    for a, b in zip(rows[:3], rows[4:], strict=True):
        assert a["models"][MODEL]["probs"] == pytest.approx(b["models"][MODEL]["probs"],
                                                            abs=1e-5)


def _stop_after(done: int, n: int) -> None:
    if done >= n:
        raise Interrupted


def test_explain_warns_beside_each_answer_as_predict_does(smoke_run: Path, synth_data: Path,
                                                          tmp_path: Path):
    """`explain` printed each model's answer bare where `predict` and the dashboard warn that
    it is weak or the image unlike the training data: its lines and explain.json now carry the
    same warnings, image by image, and the legend once per warning shown."""
    from helpers import warning_inputs
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.evaluate.flags import FLAG_LABELS, FLAG_MEANINGS
    from pipeline.predict import Predictor, predict_files

    files = sorted(synth_data.glob("Testing/*/*.png"))[::7][:3]
    run, paths, bad = warning_inputs(smoke_run, tmp_path, files)
    good = [p for p in paths if p != bad]
    expected, _ = predict_files(Predictor(open_run(run)), paths)

    out = tmp_path / "out"
    done = CliRunner().invoke(app, ["explain", "--run", str(run), "--out", str(out),
                                    *map(str, paths)])
    assert done.exit_code == 1, done.output  # the unreadable file
    rows = json.loads((out / "explain.json").read_text())["images"]
    assert [r["path"] for r in rows] == [str(p) for p in good]
    lines = [ln for ln in done.stdout.splitlines() if "\t" in ln]
    assert len(lines) == len(good)
    shown = {"colour": 0, "weak": 0, "far": 0, "unlike": 0}
    for row, want, line in zip(rows, expected, lines, strict=True):
        # the last field, "[in this run's … split]", is the image's, not a model's
        parts = dict(part.split(": ", 1) for part in line.split("\t")[1:]
                     if not part.startswith("["))
        # the image itself, not a changed copy: never "unlike the training data"
        own = row["in_run_split"] in ("train", "val") and row["in_run_exact"] is True
        assert row["in_run_split"] == want["in_run_split"]
        # the models' disagreement, as predict says it, in the image's last field
        assert row["agree"] is want["agree"]
        assert (f"[{FLAG_LABELS['disagree']}]" in line.split("\t")[-1]) is (not row["agree"])
        for m, v in row["models"].items():
            for k in shown:
                assert v[k] is want["models"][m][k], (row["path"], m, k)
                # "far unlike" says "unlike" and more, in its place (`flags.SAID_BY`)
                printed = v[k] and not (own and k in ("unlike", "far")) and not (
                    k == "unlike" and v["far"])
                assert (f"[{FLAG_LABELS[k]}]" in parts[m]) is printed, parts[m]
                shown[k] += printed
    # every warning occurs in this test (the noise images: unlike, or far unlike, the data)
    assert shown["colour"] and shown["weak"] and shown["far"] + shown["unlike"], shown
    for k in shown:  # each warning shown is explained once, on stderr
        assert done.stderr.count(FLAG_MEANINGS[k]) == (shown[k] > 0), k


@pytest.mark.slow
def test_explain_says_which_class_each_heatmap_explains_when_targeted(smoke_run: Path,
                                                                      folder: Path,
                                                                      tmp_path: Path):
    """`explain --target meningioma` printed "glioma (0.92) -> x.png": a heatmap for
    meningioma beside the answer glioma, and nothing printed said so. The overlay names stay
    those of an untargeted run (resuming relies on them)."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    run = open_run(smoke_run)
    paths = [str(p) for p in expand_inputs([folder]) if p.name != "00-broken.png"][:2]
    target = run.class_names[1]
    printed = {}
    for name, extra in (("targeted", ["--target", target]), ("plain", [])):
        out = tmp_path / name
        res = CliRunner().invoke(app, ["explain", "--run", str(smoke_run), "--out", str(out),
                                       "--model", MODEL, "--method", "gradcam", *extra, *paths])
        assert res.exit_code == 0, res.output
        rows = _report(out)["images"]
        lines = [ln for ln in res.stdout.splitlines() if "\t" in ln]
        assert len(lines) == len(rows) == 2
        printed[name] = (rows, lines)
    rows, lines = printed["targeted"]
    for row, line in zip(rows, lines, strict=True):
        entry = row["models"][MODEL]
        assert entry["target"] == target
        assert f" -> {entry['overlay']} (heatmap for '{target}')" in line, line
    plain_rows, plain_lines = printed["plain"]
    assert [r["models"][MODEL]["overlay"] for r in plain_rows] == \
        [r["models"][MODEL]["overlay"] for r in rows]
    assert not any("heatmap for" in ln for ln in plain_lines)


@pytest.mark.slow
def test_a_rerun_over_a_folder_holding_its_own_out_never_reads_its_overlays(
        smoke_run: Path, synth_data: Path, tmp_path: Path):
    """explain's way to resume is to run the same command again. With --out inside (or equal
    to) an input folder, the second run read its own overlays as scans and explained them (a
    review: "glioma (99%) [looks like a photo of a screen or film]" for an overlay)."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    src = sorted(synth_data.glob("Testing/*/*.png"))[0]
    for out_of in ("inside", "same"):
        scans = tmp_path / out_of
        scans.mkdir()
        (scans / "a.png").write_bytes(src.read_bytes())
        out = scans / "overlays" if out_of == "inside" else scans
        for attempt in range(2):
            res = CliRunner().invoke(app, ["explain", "--run", str(smoke_run), "--model", MODEL,
                                           "--method", "gradcam", "--out", str(out), str(scans)])
            assert res.exit_code == 0, res.output
            report = _report(out)
            assert [Path(r["path"]).name for r in report["images"]] == ["a.png"], out_of
            assert len(list(out.glob(f"*.{MODEL}.*.png"))) == 1, out_of
            said = "left out 1 overlay(s) this command wrote into"
            assert (said in res.stderr) == (attempt == 1), (out_of, res.stderr)
