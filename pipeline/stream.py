"""Batch inference over many files into a CSV: bounded memory, resumable, shardable.

`predict --out preds.csv FOLDER...` lands here. Files stream through a tf.data pipeline in
batches (`predict.iter_predictions`: a few threads decode and prepare the next batch while the
models predict this one), each batch's rows are appended and the file is fsynced every `chunk`
rows, so memory does not grow with the folder and a crash loses at most one chunk: run the
same command again and rows already in the CSV are skipped (files that could not be read are
tried again; each row names its run, and another run's file is refused). `--shard i/n` takes
every n-th file from position i of the sorted list, so n machines (a cluster array job) split a
folder without talking to each other and their CSVs simply concatenate. `explain --out` shares
the shard selection (`select_shard`) and the torn-line cut (`whole_lines`) for its row journal.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pipeline.csv_safe import restore_cell, to_csv, utf8_text
from pipeline.names import (
    DECODED_EXTS,
    NIFTI_EXTS,
    PREDICT_BATCH,
    TOGETHER_COLUMN,
    Progress,
    file_ext,
    no_progress,
)

CHUNK = 64  # rows written between two fsyncs
# Each answer's warnings (predict.answer_flags): 1, 0, or empty where the run does not measure it
# ("far": far unlike the training data, `ood.FAR`, whose answer the other outputs withhold)
ANSWER_FLAGS = ("colour", "weak", "unlike", "far")
# Each image's hints (predict.iter_predictions): `modality.looks_like_ct`, `pipeline.sequence`,
# `modality.is_small`
IMAGE_FLAGS = ("may_be_ct", "may_be_t2", "small_image")
# Each image's DICOM code naming an acquisition other than MRI or CT ("US": predict's
# `not_mri_modality`, `modality.not_mri_words`), empty for any other file; after the flags
MODALITY_COLUMN = "not_mri_modality"
# Columns added since files were first resumable: a file without them is continued with its own
# (and each model's `<model>_far`: `later_columns`)
LATER_COLUMNS = (f"{TOGETHER_COLUMN}_weak", *IMAGE_FLAGS, MODALITY_COLUMN)
BATCH = PREDICT_BATCH  # files per forward pass (predict.iter_predictions)

T = TypeVar("T")


# what a folder given to predict or explain is searched for: every image format a file given by
# name is read in, and .zip series of .dcm slices (a .zip given by name was read, one inside a
# folder silently skipped; so were .gif and .webp files), NIfTI volumes (`names.file_ext`)
FOLDER_EXTS = DECODED_EXTS | {".zip", *NIFTI_EXTS}
DICOM_MAGIC_AT = 128  # b"DICM" at bytes 128:132 of a DICOM file (after its preamble)


@dataclass(frozen=True)
class Inputs:
    """What `scan_inputs` made of the paths given: the files to read, in order, and what was
    left out (so that a command can say so rather than skip silently)."""

    files: list[Path]
    skipped: list[Path] = field(default_factory=list)  # in folders, not images (sorted)
    # dropped: (a repeat, the earlier path kept for it): a symlink's name and its target's differ
    repeated: list[tuple[Path, Path]] = field(default_factory=list)


def may_be_dicom_export(path: str | Path) -> bool:
    """Whether `path` is named as scanners export DICOM (no extension: "IM0001"; .IMA; a UID
    ending in digits: "1.2.840.113619.2.55.3.604") and holds b"DICM" at 128. Only those 132
    bytes are read, and only from a regular file (`images.open_regular`: a FIFO is never
    waited on)."""
    suffix = Path(path).suffix.lower()
    if not (suffix in ("", ".ima") or suffix[1:].isdigit()):
        return False
    from pipeline.images import ImageError, open_regular

    try:
        with open_regular(path) as fh:
            return fh.read(DICOM_MAGIC_AT + 4)[DICOM_MAGIC_AT:] == b"DICM"
    except ImageError:  # unreadable, not a regular file: not ours to read
        return False


def _folder_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """A folder's files to read and the ones skipped as not images, recursively, both sorted,
    hidden files and folders left out (neither read nor counted). Something named like an image
    that is not a regular file (a broken symlink, a FIFO) is kept: its read says why it cannot
    be used, in one line, as for one named directly."""
    found, skipped = [], []
    for f in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in f.relative_to(folder).parts) or f.is_dir():
            continue
        if file_ext(f.name) in FOLDER_EXTS or (f.is_file() and may_be_dicom_export(f)):
            found.append(f)
        else:
            skipped.append(f)
    return found, skipped


def scan_inputs(paths: Sequence[str | Path]) -> Inputs:
    """Files as given; folders replaced by their files to read (`_folder_files`); a folder
    without any stays as it is (its read fails with a clear reason). A file given twice (by
    name and in a folder, or through a symlink) is kept once, where it first appears."""
    files: list[Path] = []
    skipped: list[Path] = []
    seen: dict[str, Path] = {}
    repeated: list[tuple[Path, Path]] = []
    for p in map(Path, paths):
        found, left = _folder_files(p) if p.is_dir() else ([], [])
        skipped += left
        # A folder without images stays itself, so reading it reports the problem in one line.
        for f in found or [p]:
            # realpath, not Path.resolve: a symlink loop raises RuntimeError there (3.11)
            key = os.path.realpath(f)
            if key in seen:
                repeated.append((f, seen[key]))  # two identical CSV rows, two overlays of one file
                continue
            seen[key] = f
            files.append(f)
    return Inputs(files, skipped, repeated)


def expand_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """The files `scan_inputs` finds in `paths`: files as given, folders replaced by their image
    and .zip files (recursive, sorted, no hidden), each file once."""
    return scan_inputs(paths).files


def parse_shard(spec: str) -> tuple[int, int]:
    """"i/n" -> (i, n) with 0 <= i < n; ValueError in one line otherwise."""
    try:
        i, n = (int(v) for v in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {spec!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard i/n needs 0 <= i < n, got {spec!r}")
    return i, n


def select_shard(items: Sequence[T], shard: tuple[int, int]) -> list[T]:
    """Shard (i, n) of `items`: every n-th item from position i (`--shard i/n` of predict and
    explain, over `expand_inputs`' order), so n shards partition the list."""
    i, n = shard
    return list(items[i::n])


def whole_lines(path: Path) -> bytes:
    """The bytes of an append-only text file up to its last newline; a line torn by a kill
    mid-write is cut off the file itself, so appending goes on after a whole line. b"" when
    the file does not exist."""
    if not path.is_file():
        return b""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):  # killed mid-write: drop the partial line
        data = data[: data.rfind(b"\n") + 1]
        with open(path, "r+b") as fh:
            fh.truncate(len(data))
    return data




def header(class_names: Sequence[str], models: Sequence[str]) -> list[str]:
    cols = ["path"]
    for m in models:
        cols += [f"{m}_predicted", *[f"{m}_p_{c}" for c in class_names],
                 *[f"{m}_{k}" for k in ANSWER_FLAGS]]
    if len(models) > 1:  # the models' answers pooled, weak as each model's answer is
        cols += [f"{TOGETHER_COLUMN}_predicted",
                 *[f"{TOGETHER_COLUMN}_p_{c}" for c in class_names], f"{TOGETHER_COLUMN}_weak"]
    # `run`: which run's models answered (a resumed file must not mix two runs' answers);
    # `in_run_split`: the run's split holding the image or a copy (`data.membership`), if any;
    # the image's own hints, as predict's lines tag them (1, 0, empty: cannot run here)
    return [*cols, "models_agree", "error", "run", "in_run_split", *IMAGE_FLAGS, MODALITY_COLUMN]


def later_columns(cols: Sequence[str]) -> set[str]:
    """The columns of `cols` added since files were first resumable: `LATER_COLUMNS` and each
    model's far flag (a model's columns begin with `<model>_predicted`)."""
    models = [c.removesuffix("_predicted") for c in cols if c.endswith("_predicted")]
    return {*LATER_COLUMNS, *(f"{m}_far" for m in models if m != TOGETHER_COLUMN)}


def file_columns(out: Path, cols: list[str]) -> list[str]:
    """The columns to write into `out`: `cols`, or the fewer columns of an earlier predict's
    file being continued (the same columns in the same order, less some this version added:
    the pooled answer's weak flag and the image hints), so that its resume goes on working.
    Anything else is `_done_paths`' to judge."""
    if not out.is_file():
        return cols
    with open(out, "rb") as fh:
        first = fh.readline()
    try:
        head = next(csv.reader([first.decode("utf-8").rstrip("\r\n")]), [])
    except UnicodeDecodeError:
        return cols
    dropped = [c for c in cols if c not in head]
    if head == [c for c in cols if c in head] and set(dropped) <= later_columns(cols):
        return head
    return cols


def _done_paths(out: Path, cols: list[str], run_id: str,
                retry: set[str] | None = None) -> set[str]:
    """Paths `out` already holds an answer for, from an earlier, interrupted command with the
    same run. Rows of files that could not be read and are asked for again (`retry`: the CSV
    names of this command's inputs; None: all) are removed from the file, so that those files
    are tried again rather than counted as done; the error rows of files not asked for stay. A
    last row torn by a kill (no final newline, or too few fields: a torn quoted name) is
    dropped too. The file is rewritten (atomically) only for these, and only once it is known
    to be a predictions CSV of this run: ValueError, with the file untouched, when `out` is not
    UTF-8 text, holds other columns or another run's answers, or has a damaged row before
    its last."""
    if not out.is_file():
        return set()
    data = out.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{out} is not a predictions CSV (it is not text): choose another "
                         "--out") from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        return set()
    if rows[0] != cols:
        missing = [c for c in cols if c not in rows[0]]  # before the pooled answer, and so
        # before the columns added after it too
        if (rows[0] == [c for c in cols if c in rows[0]]
                and f"{TOGETHER_COLUMN}_predicted" in missing
                and all(c.startswith(f"{TOGETHER_COLUMN}_") or c in later_columns(cols)
                        for c in missing)):
            raise ValueError(f"{out} was written by an earlier predict, without the models' "
                             f"pooled answer ({TOGETHER_COLUMN}_* columns), and cannot be "
                             "continued: choose another --out")
        raise ValueError(f"{out} holds other columns (another run or model set, or not a "
                         "predictions CSV): choose another --out")
    body = [r for r in rows[1:] if r]
    torn = bool(body) and (not text.endswith("\n") or len(body[-1]) != len(cols))
    if torn:  # killed mid-write
        body = body[:-1]
    for k, r in enumerate(body):
        if len(r) != len(cols):
            raise ValueError(f"{out}: row {k + 2} has {len(r)} fields, not {len(cols)}: the "
                             "file is damaged; choose another --out")
    body = [[restore_cell(c) for c in r] for r in body]
    i_err, i_run = cols.index("error"), cols.index("run")
    for k, r in enumerate(body):
        bad = _bad_value(cols, r)
        if bad is not None:  # the right number of fields, but not what predict writes
            raise ValueError(f"{out}: row {k + 2} has {r[cols.index(bad)][:40]!r} in "
                             f"column {bad}: the file is damaged; choose another --out")
    others = sorted({r[i_run] for r in body} - {run_id})
    if others:
        raise ValueError(f"{out} holds answers of run {others[0]}, not {run_id}: choose another "
                         "--out (one file per run)")
    kept = [r for r in body if not r[i_err] or (retry is not None and r[0] not in retry)]
    if torn or len(kept) < len(body):
        tmp = out.with_name(f".{out.name}.retry")
        tmp.write_text(to_csv(cols, kept), encoding="utf-8", newline="")
        os.replace(tmp, out)
    return {r[0] for r in kept if not r[i_err]}


def _bad_value(cols: list[str], row: list[str]) -> str | None:
    """The first column of a predictions row holding what `_rows` never writes (a class the
    header does not name, a probability outside [0, 1], a flag other than 0 or 1); None when
    every value could be predict's. An error row has its answer columns blank."""
    err = bool(row[cols.index("error")])
    flags = tuple(f"_{k}" for k in ANSWER_FLAGS)
    for col, value in zip(cols, row, strict=True):
        if col.endswith("_predicted"):
            model = col.removesuffix("_predicted")
            classes = {c.split("_p_", 1)[1] for c in cols if c.startswith(f"{model}_p_")}
            ok = value == "" if err else value in classes
        elif "_p_" in col:
            ok = value == "" if err else _is_probability(value)
        elif col == "models_agree":
            ok = value == "" if err else value in ("0", "1")
        elif col.endswith(flags) or col in IMAGE_FLAGS or col == f"{TOGETHER_COLUMN}_weak":
            ok = value in ("", "0", "1")  # blank: not measured (a run without its OOD score)
        elif col == MODALITY_COLUMN:  # a code as `dicom.modality` gives them ("US"), or none
            ok = value == "" or (value.isalnum() and value == value.upper() and len(value) <= 16)
        else:
            continue
        if not ok:
            return col
    return None


def _is_probability(value: str) -> bool:
    try:
        return 0.0 <= float(value) <= 1.0
    except ValueError:
        return False


@contextlib.contextmanager
def only_csv_writer(out: Path) -> Iterator[None]:
    """Hold an exclusive lock for the CSV `out` (ValueError naming the other process when
    another command holds it): a lock file `.<name>.lock` beside it while the command runs
    (`locks.exclusive`). Two `predict --out` into one file wrote every row twice."""
    from pipeline.locks import HOLDER, exclusive

    with exclusive(out.with_name(f".{out.name}.lock"), f"another predict is writing to {out} "
                   f"({HOLDER}): one command at a time per --out", "predict --out"):
        yield


def _rows(paths: Sequence[Path], results: list[dict], failures: list[tuple[str, str]],
          class_names: Sequence[str], models: Sequence[str], run_id: str) -> list[list[Any]]:
    """One CSV row per path, in the order given (unusable files carry their reason)."""
    by_path: dict[str, list[Any]] = {}
    for r in results:
        row: list[Any] = [r["path"]]
        for m in models:
            v = r["models"][m]
            row += [v["label"], *[f"{v['probs'][c]:.6f}" for c in class_names],
                    *[_flag(v.get(k)) for k in ANSWER_FLAGS]]
        if len(models) > 1:
            pooled = r["together"]
            row += [pooled["label"], *[f"{pooled['probs'][c]:.6f}" for c in class_names],
                    _flag(pooled.get("weak"))]
        by_path[r["path"]] = [*row, int(r["agree"]), "", run_id, r.get("in_run_split") or "",
                              *[_flag(r.get(k)) for k in IMAGE_FLAGS],
                              r.get(MODALITY_COLUMN) or ""]
    blank = [""] * (len(models) * (1 + len(class_names) + len(ANSWER_FLAGS))
                    + (2 + len(class_names) if len(models) > 1 else 0))
    for p, reason in failures:
        by_path[p] = [p, *blank, "", reason, run_id, "", *[""] * len(IMAGE_FLAGS), ""]
    return [by_path[str(p)] for p in paths if str(p) in by_path]


def _flag(value: bool | None) -> int | str:
    """A warning's cell: 1 or 0, empty where it is not measured or cannot run here."""
    return "" if value is None else int(value)


def stream_to_csv(predictor: Any, paths: Sequence[Path], out: Path, chunk: int = CHUNK,
                  progress: Progress = no_progress, batch: int = BATCH) -> dict[str, Any]:
    """Predict `paths` into `out` (appending, resumable). Returns counts and the failures.

    Files stream through `predict.iter_predictions` (a tf.data pipeline: decoding overlaps the
    forward pass) in batches of `batch` (at most `chunk`); every batch's rows are appended, and
    the file is fsynced after each `chunk` rows and at the end.
    """
    from pipeline.series import expand_series

    models, classes = list(predictor.models), list(predictor.class_names)
    full = header(classes, models)
    run_id = predictor.run.run_id
    items = expand_series(paths)  # a series file: a row per slice, each resumable
    names = [utf8_text(str(p)) for p in items]  # as the CSV holds them
    out.parent.mkdir(parents=True, exist_ok=True)
    with only_csv_writer(out):
        cols = file_columns(out, full)
        done = _done_paths(out, cols, run_id, retry=set(names))
        todo = [p for p, name in zip(items, names, strict=True) if name not in done]
        written, failed = _append_rows(predictor, todo, out, cols, chunk, batch, progress)
    return {"written": written, "already_done": len(items) - len(todo), "failed": failed,
            "out": str(out), "columns_left_out": [c for c in full if c not in cols]}


def _append_rows(predictor: Any, todo: list[Any], out: Path, cols: list[str], chunk: int,
                 batch: int, progress: Progress) -> tuple[int, list[tuple[str, str]]]:
    """`stream_to_csv`'s appending: (rows written, failures)."""
    from pipeline.predict import iter_predictions

    models, classes = list(predictor.models), list(predictor.class_names)
    run_id = predictor.run.run_id
    full = header(classes, models)
    keep = [full.index(c) for c in cols]  # an earlier predict's file: its own columns
    written, failed, unsynced = 0, [], 0
    with open(out, "a", encoding="utf-8", newline="") as fh:
        if fh.tell() == 0:
            fh.write(to_csv(cols, []))
        for part, results, bad in iter_predictions(predictor, todo, batch=min(batch, chunk)):
            rows = _rows(part, results, bad, classes, models, run_id)
            fh.write(to_csv(None, [[r[i] for i in keep] for r in rows]))
            written += len(part)
            failed += bad
            unsynced += len(part)
            if unsynced >= chunk or written == len(todo):
                fh.flush()
                os.fsync(fh.fileno())  # these rows survive a crash of what follows
                unsynced = 0
                progress("predict", written, len(todo))
    return written, failed
