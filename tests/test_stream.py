"""predict --out: a CSV streamed in chunks, resumed after a crash, split into shards."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.artifacts import open_run
from pipeline.predict import Predictor
from pipeline.stream import (
    _done_paths,
    expand_inputs,
    header,
    parse_shard,
    select_shard,
    stream_to_csv,
)

ROOT = Path(__file__).resolve().parents[1]


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(), newline="")))


def test_expand_inputs_and_parse_shard(tmp_path: Path):
    (tmp_path / "a" / ".hidden").mkdir(parents=True)
    for name in ("a/2.png", "a/1.jpg", "a/notes.txt", "a/.hidden/x.png", "a/s.zip", "b.png"):
        (tmp_path / name).write_bytes(b"x")
    # a .zip (a series of .dcm slices) in a folder is read like one given by name
    assert expand_inputs([tmp_path / "a", tmp_path / "b.png"]) == [
        tmp_path / "a" / "1.jpg", tmp_path / "a" / "2.png", tmp_path / "a" / "s.zip",
        tmp_path / "b.png"]
    (tmp_path / "empty.png").mkdir()  # a folder that holds no image: kept, to be reported
    assert expand_inputs([tmp_path / "empty.png"]) == [tmp_path / "empty.png"]
    from pipeline.images import ImageError, read_file

    # "is a folder, not an image" told a user who had passed a folder, as the help invites, wrong
    with pytest.raises(ImageError, match="a folder with no image in it"):
        read_file(tmp_path / "empty.png")
    assert parse_shard("1/4") == (1, 4)
    shards = [select_shard(range(10), (i, 3)) for i in range(3)]
    assert shards[1] == [1, 4, 7] and sorted(sum(shards, [])) == list(range(10))
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


@pytest.mark.slow
def test_stream_resumes_after_a_crash_without_redoing_rows(smoke_run: Path, synth_data: Path,
                                                           tmp_path: Path, monkeypatch):
    from pipeline import images

    files = expand_inputs([synth_data / "Training"])[:44]
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    paths = [*files[:4], bad, *files[4:]]
    predictor = Predictor(open_run(smoke_run))
    out = tmp_path / "preds.csv"
    first = next(iter(predictor.models))
    real_predict, real_read = predictor.predict_arrays, images.read_image
    batches: list[int] = []
    read: list[str] = []

    def crash_on_third_batch(name, x, batch_size=32):
        if name == first:
            batches.append(len(x))
            if len(batches) == 3:
                raise RuntimeError("killed")
        return real_predict(name, x, batch_size)

    monkeypatch.setattr(predictor, "predict_arrays", crash_on_third_batch)
    monkeypatch.setattr(images, "read_image", lambda p: (read.append(p), real_read(p))[1])
    with pytest.raises(RuntimeError):
        stream_to_csv(predictor, paths, out, chunk=3)
    assert batches == [3, 2, 3]  # the unreadable file is not predicted
    assert len(_rows(out)) == 6  # two batches kept
    # decoding runs ahead of the forward pass by a few batches, never through the folder
    assert 9 <= len(read) <= 24 < len(paths)
    with open(out, "a") as fh:  # and a row torn by the crash
        fh.write(str(files[6]) + ",gli")
    monkeypatch.setattr(predictor, "predict_arrays", real_predict)
    summary = stream_to_csv(predictor, paths, out, chunk=3)
    rows = _rows(out)
    # the unreadable file's row is not "done": it is tried again (and fails again)
    assert summary["already_done"] == 5 and summary["written"] == len(paths) - 5
    assert summary["failed"] == [(str(bad), summary["failed"][0][1])]
    assert sorted(r["path"] for r in rows) == sorted(map(str, paths))  # each once
    assert [r["path"] for r in rows if r["error"]] == [str(bad)]
    assert {r["run"] for r in rows} == {predictor.run.run_id}
    # a rerun on part of the inputs keeps the error rows of files it was not given (they went)
    assert stream_to_csv(predictor, paths[:2], out)["written"] == 0
    assert [r["path"] for r in _rows(out) if r["error"]] == [str(bad)]
    # A reviewer fixed an unreadable file and ran the command again: "wrote 0 row(s)", exit 0,
    # the error row kept. Now it is retried and its answer replaces the error.
    bad.write_bytes(files[0].read_bytes())
    again = stream_to_csv(predictor, paths, out)
    rows = _rows(out)
    assert again["written"] == 1 and not again["failed"]
    assert sorted(r["path"] for r in rows) == sorted(map(str, paths))
    assert not any(r["error"] for r in rows)
    assert stream_to_csv(predictor, paths, out)["written"] == 0  # all done: nothing redone
    # another run's answers never join this file (they came in silently, "3 already there")
    with pytest.raises(ValueError, match="holds answers of run"):
        _done_paths(out, header(list(predictor.class_names), list(predictor.models)),
                    "20000101-000000-aaaaaa")


@pytest.mark.slow
def test_a_file_begun_before_the_hint_columns_goes_on_with_its_own(smoke_run: Path,
                                                                   synth_data: Path,
                                                                   tmp_path: Path):
    """The CSV had no `may_be_ct`, `may_be_t2`, `averaged_weak` or `<model>_far`, which
    predict's lines and --json give: a new file has them, as --json fills them; a file an
    earlier predict began without them goes on with its own columns (its resume kept working),
    and predict says so."""
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.csv_safe import to_csv
    from pipeline.stream import LATER_COLUMNS, later_columns

    files = expand_inputs([synth_data / "Testing"])[:4]
    predictor = Predictor(open_run(smoke_run))
    full = header(list(predictor.class_names), list(predictor.models))
    later = [c for c in full if c in later_columns(full)]
    assert len(predictor.models) == 2 and set(LATER_COLUMNS) <= set(full)
    assert later == ["custom_cnn_far", "mobilenetv2_far", *LATER_COLUMNS]
    new = tmp_path / "new.csv"
    assert stream_to_csv(predictor, files, new)["columns_left_out"] == []
    rows = _rows(new)
    printed = CliRunner().invoke(app, ["predict", "--run", str(smoke_run), "--json",
                                       *map(str, files)])
    assert printed.exit_code == 0, printed.output[-2000:]
    answers = json.loads(printed.stdout)["results"]
    flag = {None: "", True: "1", False: "0"}
    for row, answer in zip(rows, answers, strict=True):
        assert row["path"] == answer["path"]
        assert row["may_be_ct"] == flag[answer["may_be_ct"]]
        assert row["may_be_t2"] == flag[answer["may_be_t2"]]
        assert row["small_image"] == flag[answer["small_image"]] == "0"  # 128 px phantoms
        assert row["averaged_weak"] == flag[answer["together"]["weak"]]
        for m, v in answer["models"].items():
            assert row[f"{m}_far"] == flag[v["far"]] and row[f"{m}_unlike"] == flag[v["unlike"]]
    older = [c for c in full if c not in later]
    old = tmp_path / "old.csv"
    old.write_text(to_csv(older, [[r[c] for c in older] for r in rows[:2]]), encoding="utf-8",
                   newline="")
    printed = CliRunner().invoke(app, ["predict", "--run", str(smoke_run), "--out", str(old),
                                       *map(str, files)])
    assert printed.exit_code == 0, printed.output[-2000:]
    assert "wrote 2 row(s)" in printed.stdout and "(2 already there)" in printed.stdout
    assert (f"was begun by an earlier predict: its rows go on without the columns "
            f"{', '.join(later)}") in " ".join(printed.stderr.split())
    assert _rows(old) == [{c: r[c] for c in older} for r in rows]  # one table, as begun
    # a header of other columns is still refused, untouched
    other = tmp_path / "other.csv"
    other.write_text(to_csv([*older, "mine"], []), encoding="utf-8", newline="")
    with pytest.raises(ValueError, match="holds other columns"):
        stream_to_csv(predictor, files, other)

@pytest.mark.slow
def test_a_file_name_that_is_not_utf8_gets_its_row_and_resumes(smoke_run: Path,
                                                                synth_data: Path, tmp_path: Path):
    """A name from an old zip or a Windows share (byte 0xE9, not UTF-8) failed the whole CSV:
    "'utf-8' codec can't encode character '\\udce9'", no row written, on every rerun."""
    import os

    good = expand_inputs([synth_data / "Testing"])[0]
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/scan\xe9.png"))
    odd.write_bytes(good.read_bytes())
    out = tmp_path / "preds.csv"
    predictor = Predictor(open_run(smoke_run))
    summary = stream_to_csv(predictor, [good, odd], out)
    assert summary["written"] == 2 and not summary["failed"]
    rows = _rows(out)
    assert [r["path"] for r in rows] == [str(good), f"{tmp_path}/scan\\xe9.png"]
    assert rows[0]["custom_cnn_predicted"] == rows[1]["custom_cnn_predicted"] != ""
    assert stream_to_csv(predictor, [good, odd], out)["written"] == 0  # resumed: both done


@pytest.mark.slow
def test_stream_raises_what_is_not_the_files_fault(smoke_run: Path, synth_data: Path,
                                                   tmp_path: Path, monkeypatch):
    """A bug while preparing a file stops the stream with its own exception (not a CSV row, not
    TensorFlow's wrapper); the rows before it are kept."""
    from pipeline import images

    paths = expand_inputs([synth_data / "Testing"])[:8]
    real = images.read_image

    def broken_on_the_sixth(path):
        if str(path) == str(paths[5]):
            raise KeyError("a bug")
        return real(path)

    monkeypatch.setattr(images, "read_image", broken_on_the_sixth)
    out = tmp_path / "preds.csv"
    with pytest.raises(KeyError, match="a bug"):
        stream_to_csv(Predictor(open_run(smoke_run)), paths, out, chunk=2, batch=2)
    assert [r["path"] for r in _rows(out)] == [str(p) for p in paths[:4]]


@pytest.mark.slow
def test_cli_shards_split_a_folder_and_concatenate(smoke_run: Path, synth_data: Path,
                                                   tmp_path: Path):
    folder = synth_data / "Testing"
    outs = []
    for i in range(2):
        out = tmp_path / f"shard{i}.csv"
        proc = subprocess.run([sys.executable, "-m", "pipeline", "predict", "--run",
                               str(smoke_run), "--out", str(out), "--shard", f"{i}/2",
                               str(folder)], cwd=ROOT, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "wrote" in proc.stdout
        outs.append({r["path"] for r in _rows(out)})
    assert not outs[0] & outs[1]
    assert outs[0] | outs[1] == {str(p) for p in expand_inputs([folder])}
    bad = subprocess.run([sys.executable, "-m", "pipeline", "predict", "--shard", "2/2",
                          str(folder)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    # a shard with no file of the list said so (it printed nothing and exited 0: a review)
    one = sorted(folder.rglob("*.png"))[0]
    empty = subprocess.run([sys.executable, "-m", "pipeline", "predict", "--run", str(smoke_run),
                            "--shard", "1/2", str(one)], cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
    assert empty.returncode == 0 and not empty.stdout.strip(), empty.stdout
    assert "note: shard 1/2 holds none of the 1 file(s)" in empty.stderr, empty.stderr


@pytest.mark.slow
def test_explain_streams_a_folder_in_chunks(smoke_run: Path, synth_data: Path, tmp_path: Path):
    """Chunks of 2 give the rows and overlay names of one batch; bad files are met in order."""
    from pipeline.explain import Explainer
    from pipeline.explain.batch import explain_files

    folder = tmp_path / "in"
    folder.mkdir()
    for src in sorted(synth_data.glob("Testing/*/*.png"))[:5]:
        (folder / f"{src.parent.name}-{src.name}").write_bytes(src.read_bytes())
    (folder / "broken.png").write_bytes(b"not an image")
    paths = expand_inputs([folder])
    run = open_run(smoke_run)
    explainers = {m: Explainer(run.load_model(m), run.model_info(m)["gradcam_layer"])
                  for m in ("custom_cnn", "mobilenetv2")}
    results = {}
    for chunk in (2, 100):
        bad: list[str] = []
        ticks: list[tuple[int, int]] = []
        summary = explain_files(
            run, explainers, paths, tmp_path / f"out{chunk}", method="gradcam", target=None,
            alpha=0.4, outline=None, chunk=chunk,
            on_unreadable=lambda p, why, seen=bad: seen.append(p),
            progress=lambda desc, done, total, seen=ticks: seen.append((done, total)))
        rows, failures = summary.rows, summary.failures
        assert [f["path"] for f in failures] == bad == [str(folder / "broken.png")]
        assert [r["path"] for r in rows] == [str(p) for p in paths if p.name != "broken.png"]
        assert ticks[-1] == (6, 6) and ticks == sorted(ticks)
        # the bar moves per model within a chunk (it sat at 0 for a minute with Score-CAM)
        assert (3, 6) in ticks if chunk == 100 else {(1, 6), (3, 6), (5, 6)} <= set(ticks)
        for r in rows:
            assert (tmp_path / f"out{chunk}" / r["models"]["custom_cnn"]["overlay"]).is_file()
        results[chunk] = rows
    small, whole = ([r["models"]["custom_cnn"] for r in results[c]] for c in (2, 100))
    for a, b in zip(small, whole, strict=True):  # same overlays and answers in any chunking
        assert (a["overlay"], a["predicted"], a["target"]) == \
            (b["overlay"], b["predicted"], b["target"])
        assert a["probs"] == pytest.approx(b["probs"], abs=1e-4)


def test_an_out_file_that_is_no_predictions_csv_is_refused_untouched(tmp_path: Path):
    """`predict --out notes.txt` cut a file without a final newline to its last newline, and
    `--out scan.jpg` cut a JPEG, before either was refused: the file must stay as it was."""
    cols = header(["glioma", "no_tumor"], ["custom_cnn"])
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"line one\nimportant notes without a final newline")
    jpeg = tmp_path / "scan.jpg"
    jpeg.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    from pipeline.stream import only_csv_writer

    for path, match in ((notes, "holds other columns"), (jpeg, "not a predictions CSV")):
        before = path.read_bytes()
        with pytest.raises(ValueError, match=match), only_csv_writer(path):
            _done_paths(path, cols, "run-a")
        assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "scan.jpg"]  # no lock


def test_a_file_from_before_the_pooled_answer_is_refused_for_what_it_is(tmp_path: Path):
    """A predictions CSV of the same run and models written before the `averaged_*` columns
    was refused as "another run or model set, or not a predictions CSV": wrong on all counts."""
    from pipeline.csv_safe import to_csv
    from pipeline.stream import LATER_COLUMNS

    cols = header(["glioma", "no_tumor"], ["custom_cnn", "mobilenetv2"])
    older = [c for c in cols if not c.startswith("averaged_") and c not in LATER_COLUMNS]
    # averaged_predicted, one probability per class, then the columns added after it
    assert len(older) == len(cols) - 3 - len(LATER_COLUMNS)
    out = tmp_path / "preds.csv"
    out.write_text(to_csv(older, []), encoding="utf-8", newline="")
    before = out.read_bytes()
    with pytest.raises(ValueError, match="written by an earlier predict, without the models' "
                                         r"pooled answer \(averaged_\* columns\)"):
        _done_paths(out, cols, "run-a")
    assert out.read_bytes() == before
    # one model has no pooled answer: its header is today's, and resumes
    one = header(["glioma", "no_tumor"], ["custom_cnn"])
    out.write_text(to_csv(one, []), encoding="utf-8", newline="")
    assert _done_paths(out, one, "run-a") == set()


def test_a_torn_or_short_row_is_dropped_and_a_damaged_one_refused(tmp_path: Path):
    """A kill mid-row can leave a short last row (a quoted name with a newline cut inside its
    quotes): a rerun raised IndexError. Such a last row is dropped; a short row before the
    last is damage, refused in one line naming the row."""
    from pipeline.csv_safe import to_csv

    cols = header(["glioma", "no_tumor"], ["custom_cnn"])
    good = ["a.png", "glioma", "0.9", "0.1", "0", "0", "", "", "1", "", "run-a", "", "0", "",
            "0", ""]
    assert len(good) == len(cols)
    out = tmp_path / "p.csv"
    torn = 'a\nb.png",glioma'  # the start of a row whose quoted name holds a newline
    out.write_text(to_csv(cols, [good]) + '"' + torn + "\n", encoding="utf-8", newline="")
    assert _done_paths(out, cols, "run-a") == {"a.png"}
    assert _rows(out) == [dict(zip(cols, good, strict=True))]  # the torn row is gone
    out.write_text(to_csv(cols, [good[:5], good]), encoding="utf-8", newline="")
    before = out.read_bytes()
    with pytest.raises(ValueError, match="row 2 has 5 fields, not 16: the file is damaged"):
        _done_paths(out, cols, "run-a")
    assert out.read_bytes() == before
    # the right number of fields, but values predict never writes: refused, not counted done
    error_row = ["c.png", "", "", "", "", "", "", "", "", "cannot read", "run-a", "", "", "",
                 "", ""]
    for k, value in ((1, "glioma, probably"), (2, "1.7"), (3, "nan?"), (4, "yes"), (7, "2"),
                     (8, ""), (12, "maybe")):
        damaged = list(good)
        damaged[k] = value
        out.write_text(to_csv(cols, [damaged, good, error_row]), encoding="utf-8", newline="")
        before = out.read_bytes()
        with pytest.raises(ValueError, match=f"row 2 has .* in column {cols[k]}: the file is "
                                             "damaged"):
            _done_paths(out, cols, "run-a")
        assert out.read_bytes() == before
    out.write_text(to_csv(cols, [good, error_row]), encoding="utf-8", newline="")
    assert _done_paths(out, cols, "run-a", retry=set()) == {"a.png"}  # what predict writes


def test_a_second_predict_into_the_same_csv_is_refused(tmp_path: Path):
    """Two `predict --out p.csv` at once each wrote every row (two headers, 789 rows for
    394 images); the second one is now refused while the first holds the file."""
    from pipeline.stream import only_csv_writer

    out = tmp_path / "p.csv"
    second = pytest.raises(ValueError, match="another predict is writing to")
    with only_csv_writer(out), second, only_csv_writer(out):
        pass
    with only_csv_writer(out):  # released: the next command goes ahead
        pass


@pytest.mark.parametrize("raised, code, said", [
    (OSError(28, "No space left on device"), 1, "No space left on device; the rows written so "
                                                "far are kept"),
    (KeyboardInterrupt(), 130, "interrupted: the rows written so far are in"),
])
def test_predict_out_says_what_is_kept_when_the_disk_fills_or_ctrl_c(
        smoke_run: Path, synth_data: Path, tmp_path: Path, monkeypatch, raised, code, said):
    """A full disk ended `predict --out` in an OSError traceback, Ctrl-C in silence; both
    now say that the rows so far are kept and how to go on."""
    from typer.testing import CliRunner

    from pipeline import stream
    from pipeline.cli import app

    def fails(*args, **kwargs):
        raise raised

    monkeypatch.setattr(stream, "stream_to_csv", fails)
    image = next(iter(sorted(synth_data.glob("Testing/*/*.png"))))
    done = CliRunner().invoke(app, ["predict", "--run", str(smoke_run), str(image), "--out",
                                    str(tmp_path / "p.csv")])
    assert done.exit_code == code, done.output
    assert said in " ".join(done.stderr.split())
