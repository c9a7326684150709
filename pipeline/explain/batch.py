"""Explaining a batch of files: overlay PNGs with stable, distinct names and explain.json rows.

The `explain` command's work, apart from parsing and printing (pipeline/cli/explain_cmd.py).
`explain_files` streams `EXPLAIN_CHUNK` files at a time (decoded, explained, written, dropped),
so memory does not grow with the folder, and it is resumable and shardable like `predict --out`
(pipeline/stream.py):

- Nothing lost: after each chunk its rows, and its unreadable files, are appended to a journal
  in the output folder (`JOURNAL`, explain.partial.jsonl: a header line with the settings, then
  one JSON object per line) and the journal is fsynced. At the end it is folded into explain.json
  (written atomically, the same layout as before plus the settings) and removed. Why a journal
  rather than explain.json rewritten after every chunk: a rewrite costs the whole file every
  time, so a folder of N files would write O(N²) bytes (100 000 files: about 3 000 rewrites of a
  file growing past 100 MB), while an append costs only the chunk's rows; a line torn by a kill
  has no newline yet and is cut off (`stream.whole_lines`, as for predict's CSV). explain.json
  itself is only ever written whole and complete, so its readers (tests, scripts) never meet a
  partial file or a new "incomplete" state; while a journal exists, an explain.json beside it
  is the last finished run's.
- Resume (`explain.journal`): the header records what shapes the output (`SETTINGS`: run
  id, each model's method and layer, target class, alpha, outline, caption, size, shard).
  Rerun into the same folder, files with a row or an error already recorded (journal, else a
  finished explain.json) are skipped, and other settings are refused in one line naming the
  difference (`settings_difference`) rather than mixed in (captioned and bare overlays, or
  overlays of two sizes, never share a folder). One writer per folder at a time (a lock on the
  folder where the file system has one). A header from before captions existed (no "caption")
  stands for bare overlays, which is what that version wrote, so such a folder continues with
  --bare only; one from before --size (no "size") for the default size.
- Overlays: one PNG per image and model, written by `overlays.write_overlays` (captions and
  their words: `overlays`, `overlay_text`).
- Shards: `shard=(i, n)` explains every n-th file from position i (`stream.select_shard`), with
  the overlay names of the whole list (`overlay_bases`), so n shards' folders hold exactly the
  files one unsharded run would write.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.artifacts import Run
from pipeline.explain.explainer import Explainer
from pipeline.explain.journal import (
    JOURNAL,
    RESULT,
    earlier,
    fold,
    journal_lines,
    only_writer,
    settings_difference,
)
from pipeline.explain.overlay_text import overlay_bases
from pipeline.explain.overlays import answer_warners, write_overlays
from pipeline.explain.render import CAPTION_MIN_SIDE
from pipeline.names import Progress, no_progress
from pipeline.series import SliceReader, expand_series

# Files decoded and explained at once: gradients of 32 MobileNetV2 inputs fit in a few hundred MB
EXPLAIN_CHUNK = 32


@dataclass
class ExplainSummary:
    """What `explain_files` did: `rows` and `failures` met by this call (in order), the
    selected files skipped as already done, and explain.json's totals afterwards."""

    rows: list[dict[str, Any]]
    failures: list[dict[str, str]]
    selected: int  # files of this shard (all files when unsharded)
    already_done: int
    images: int  # rows in explain.json
    errors: int  # unreadable files listed in explain.json


def explain_header(run: Run, explainers: dict[str, Explainer], *, method: str | None,
                   target: int | None, alpha: float, outline: float | None,
                   caption: bool = True, size: int = CAPTION_MIN_SIDE,
                   shard: tuple[int, int] = (0, 1)) -> dict[str, Any]:
    """explain.json's keys besides "images" and "errors": run_id, method (as asked), target
    (class name; None = each model's predicted class), alpha, outline, caption (true:
    captioned overlays, false: bare, --bare), size (captioned overlays' shorter side at least,
    --size; None when bare), shard ("i/n") and per model the method and layer
    actually used (layer None for methods that read none)."""
    from pipeline.explain.methods import get_method

    models = {}
    for name, explainer in explainers.items():
        used = get_method(method or explainer.method)
        models[name] = {"method": used.name,
                        "layer": explainer.layer if used.needs_layer else None}
    return {"run_id": run.run_id, "method": method or "each model's default",
            "target": None if target is None else run.class_names[target], "alpha": alpha,
            "outline": outline, "caption": caption, "size": size if caption else None,
            "shard": f"{shard[0]}/{shard[1]}",
            "models": models}


def _explain_chunk(run: Run, explainers: dict[str, Explainer], part: list[tuple[Path, str]],
                   out: Path, options: dict[str, Any],
                   on_unreadable: Callable[[str, str], None] | None
                   ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Decode and explain (path or series slice, overlay base) pairs: (rows, [{"path",
    "error"}])."""
    from pipeline import images

    read = SliceReader()  # a series is decoded once for its slices in this chunk
    decoded, names, bad, sides, headers = [], [], [], [], []
    for path, base in part:
        try:
            image, facts = read.with_facts(path)
            decoded.append((path, image))
            names.append(base)
            headers.append(facts)  # a DICOM header's modality, T2 or FLAIR times
            sides.append(bool(headers[-1].get("radiological")))  # whose right is where
        except images.ImageError as exc:
            bad.append({"path": str(path), "error": str(exc)})
            if on_unreadable:
                on_unreadable(str(path), str(exc))
    rows = (write_overlays(run, explainers, decoded, out, **options, bases=names,
                           radiological=sides, headers=headers) if decoded else [])
    return rows, bad


def explain_files(run: Run, explainers: dict[str, Explainer], paths: Sequence[Path], out: Path,
                  *, method: str | None, target: int | None, alpha: float,
                  outline: float | None, caption: bool = True, size: int = CAPTION_MIN_SIDE,
                  chunk: int = EXPLAIN_CHUNK,
                  shard: tuple[int, int] = (0, 1), progress: Progress = no_progress,
                  on_unreadable: Callable[[str, str], None] | None = None) -> ExplainSummary:
    """`write_overlays` over shard `shard` of `paths`, `chunk` files at a time, into `out`:
    overlay PNGs, and explain.json once every file is done (the module's docstring: journal,
    resume, shards).

    Overlay names come from the whole of `paths`, so they are those of one unsharded batch;
    each unusable file is passed to `on_unreadable(path, reason)` as it is met. ValueError
    (one line): other settings than an earlier run's into `out`, a damaged journal, an overlay
    name an earlier run over another file list gave to another file, another writer, a model's
    failure.
    """
    from pipeline.stream import select_shard

    items = expand_series(paths)  # a series file: each slice explained, named "… · slice k of n"
    chosen = select_shard(list(zip(items, overlay_bases(items), strict=True)), shard)
    header = explain_header(run, explainers, method=method, target=target, alpha=alpha,
                            outline=outline, caption=caption, size=size, shard=shard)
    out.mkdir(parents=True, exist_ok=True)
    with only_writer(out) as folder_fd:
        then, rows_then, errors_then, journaled = earlier(out)
        if then is not None and (diff := settings_difference(then, header)):
            raise ValueError(f"{out} holds explanations made with other settings ({diff}): "
                             "rerun with the same options to continue, or choose another --out")
        done = {r["path"] for r in [*rows_then, *errors_then]}
        taken = {r["overlay_base"].casefold(): r["path"] for r in rows_then}
        todo = [(p, base) for p, base in chosen if str(p) not in done]
        for p, base in todo:
            if taken.get(base.casefold(), str(p)) != str(p):
                raise ValueError(f"overlay name {base} of {p} was given to "
                                 f"{taken[base.casefold()]} by an earlier run over another "
                                 "file list: choose another --out")
        n_images, n_errors = len(rows_then), len(errors_then)
        if todo and not journaled:  # start the journal: header, and a finished run's rows
            from pipeline.artifacts import write_text_atomic

            write_text_atomic(out / JOURNAL, journal_lines(
                [("explain", then or header), *(("image", r) for r in rows_then),
                 *(("error", e) for e in errors_then)]))
            journaled = True
            if folder_fd is not None:
                with contextlib.suppress(OSError):
                    os.fsync(folder_fd)  # the journal's name survives a power cut too
        del rows_then, errors_then, taken  # only the counts are needed from here on
        progress("explain", 0, len(todo))
        warners = answer_warners(run, explainers) if todo else None
        rows: list[dict[str, Any]] = []
        failures: list[dict[str, str]] = []
        if todo:
            with open(out / JOURNAL, "a", encoding="utf-8") as journal:
                for start in range(0, len(todo), chunk):
                    part = todo[start : start + chunk]

                    def within(_: str, k: int, n: int, start: int = start,
                               size: int = len(part)) -> None:
                        # between two models of the chunk (the bar sat at 0 for a minute with
                        # Score-CAM); its end is ticked below, once its rows are journaled
                        if 0 < k < n:
                            progress("explain", start + size * k // n, len(todo))

                    new, bad = _explain_chunk(run, explainers, part, out,
                                              dict(method=method, target=target, alpha=alpha,
                                                   outline=outline, caption=caption,
                                                   side=size,
                                                   warners=warners, progress=within),
                                              on_unreadable)
                    journal.write(journal_lines([*(("image", r) for r in new),
                                          *(("error", e) for e in bad)]))
                    journal.flush()
                    os.fsync(journal.fileno())  # this chunk's rows survive whatever follows
                    rows += new
                    failures += bad
                    progress("explain", min(start + chunk, len(todo)), len(todo))
        if journaled:
            n_images, n_errors = fold(out)
        elif then is None:  # nothing selected, nothing before: an empty explain.json
            from pipeline.artifacts import write_json_atomic

            write_json_atomic(out / RESULT, {**header, "images": [], "errors": []})
    return ExplainSummary(rows=rows, failures=failures, selected=len(chosen),
                          already_done=len(chosen) - len(todo), images=n_images,
                          errors=n_errors)
