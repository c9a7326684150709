"""Explaining a batch of files: overlay PNGs with stable, distinct names and explain.json rows.

The `explain` command's work, apart from parsing and printing (pipeline/cli/explain_cmds.py).
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
  id, each model's method and layer, target class, alpha, outline, caption, shard). Rerun into
  the same folder, files with a row or an error already recorded (journal, else a finished
  explain.json) are skipped, and other settings are refused in one line naming the difference
  (`settings_difference`) rather than mixed in (captioned and bare overlays never share a
  folder). One writer per
  folder at a time (a lock on the folder where the file system has one). A header from before
  captions existed (no "caption") stands for bare overlays, which is what that version wrote,
  so such a folder continues with --bare only.
- Overlays: captioned by default (`render.captioned_overlay`: enlarged to at least
  `render.CAPTION_MIN_SIDE` px, a strip saying the model, its answer, the method and class the
  heatmap explains, a colour scale and the disclaimer), so a PNG can go on a slide or in a
  report as it is; `caption=False` (--bare) writes `render_overlay` at the model's resolution,
  for further processing. The file names are the same either way.
- Shards: `shard=(i, n)` explains every n-th file from position i (`stream.select_shard`), with
  the overlay names of the whole list (`overlay_bases`), so n shards' folders hold exactly the
  files one unsharded run would write.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import Run
from pipeline.data.membership import SEEN_TAGS, Membership, hides_unlike
from pipeline.explain.alarm import OUTSIDE_HEAD_MESSAGE
from pipeline.explain.explainer import Explainer, Explanation
from pipeline.explain.journal import (
    JOURNAL,
    RESULT,
    earlier,
    fold,
    journal_lines,
    only_writer,
    settings_difference,
)
from pipeline.explain.masks import head_mask_in_frame
from pipeline.explain.metrics import (
    energy_outside_head,
    outside_head_flag,
    top_outside_head,
)
from pipeline.explain.render import (
    captioned_overlay,
    heatmap_stats,
    peak_words,
    render_overlay,
    to_png,
)
from pipeline.geometry import prepare_image
from pipeline.names import DISCLAIMER, Progress, class_label, display_name, no_progress
from pipeline.series import Slice, SliceReader, expand_series

OVERLAY_NAME_BYTES = 120  # leaves room for ".<model>.<method>.png" under the 255-byte limit
# Files decoded and explained at once: gradients of 32 MobileNetV2 inputs fit in a few hundred MB
EXPLAIN_CHUNK = 32


def overlay_bases(paths: list[Path | Slice]) -> list[str]:
    """One distinct, stable base name per input for its overlay files (same order as `paths`).

    The base is the file name with its extension (scan.png and scan.jpg differ), control
    characters replaced by "_" and cut to OVERLAY_NAME_BYTES; a slice of a series file
    (`series.Slice`) adds ".slice-<k>". Inputs sharing a base (a/scan.png
    and b/scan.png) get "-" and 8 hex digits of the SHA-1 of their absolute path, so a name does
    not depend on argument order; the same file given twice gets "-2", "-3". Names are compared
    case-folded because macOS and Windows folders are case-insensitive.
    """
    def clean(item: Path | Slice) -> str:
        path = Path(item.path) if isinstance(item, Slice) else Path(item)
        name = "".join(ch if ch.isprintable() else "_" for ch in path.name) or "image"
        name = name.encode()[:OVERLAY_NAME_BYTES].decode(errors="ignore")
        return f"{name}.slice-{item.number}" if isinstance(item, Slice) else name

    bases = [clean(p) for p in paths]
    counts = Counter(b.casefold() for b in bases)
    used: set[str] = set()
    out = []
    for path, base in zip(paths, bases, strict=True):
        if counts[base.casefold()] > 1:
            where = path.path if isinstance(path, Slice) else path
            digest = hashlib.sha1(os.fsencode(os.path.abspath(where))).hexdigest()[:8]
            base = f"{base}-{digest}"
        name, k = base, 1
        while name.casefold() in used:
            k += 1
            name = f"{base}-{k}"
        used.add(name.casefold())
        out.append(name)
    return out


@dataclass
class Warners:
    """What the answers' warnings need, as `predict` gives them. `models`: per model the
    confidence under which an answer is weak and the "unlike the training data" scorer, each
    None where the run does not measure it; `membership`: the run's split hashes
    (`data.membership`), None for a run without them."""

    models: dict[str, tuple[float | None, Callable[[np.ndarray], np.ndarray] | None]]
    membership: Membership | None


def answer_warners(run: Run, explainers: dict[str, Explainer]) -> Warners:
    """The `Warners` of `run` for these models. Built once per command: each scorer traces a
    graph, and the split hashes are read once."""
    from pipeline.calibration import read_low_confidence
    from pipeline.ood import unlike_scorer

    below = read_low_confidence(run.path)
    return Warners({name: (below.get(name), unlike_scorer(run.path, name, ex.model))
                    for name, ex in explainers.items()}, Membership.of_run(run.path))


def write_overlays(run: Run, explainers: dict[str, Explainer],
                   decoded: list[tuple[Path, np.ndarray]], out: Path, *, method: str | None,
                   target: int | None, alpha: float, outline: float | None,
                   caption: bool = True, progress: Progress = no_progress,
                   bases: list[str] | None = None,
                   warners: Warners | None = None) -> list[dict[str, Any]]:
    """Explain every image with every model, write one overlay PNG each into `out`: captioned
    (`overlay_caption`, `captioned_overlay`), or with `caption` False the bare `render_overlay`
    at the model's resolution.

    `method` None: each explainer's own default (`Explainer.method`).
    Returns explain.json's "images" rows: path, overlay_base and, per model, the prediction,
    probabilities, explained class, layer, heatmap stats, the shortcut alarm
    (`energy_outside_head`, `top_outside_head`, `outside_head_flag`), the answer's warnings
    as `predict` gives them (`weak`, `unlike`: true / false / null; `colour`: true / false;
    `evaluate.flags.answer_flags`) and the overlay's file name.
    ValueError names the model whose explanation failed. `bases` (one per image) are the
    overlay names when the images are part of a longer list (`overlay_bases` of it);
    `warners` come from `answer_warners` (built here when not given).
    """
    from pipeline.calibration import apply_temperature, read_temperatures
    from pipeline.evaluate.flags import answer_flags, is_colour

    temperatures = read_temperatures(run.path)  # probabilities shown as everywhere else
    warners = warners if warners is not None else answer_warners(run, explainers)
    bases = bases if bases is not None else overlay_bases([p for p, _ in decoded])
    found = [warners.membership.find(img) if warners.membership else None
             for _, img in decoded]
    # `in_run_split`: the run's split holding the image or a copy (as predict's), else None;
    # `in_run_exact`: whether it is that split's image pixel for pixel (None: cannot tell)
    rows: list[dict[str, Any]] = [
        {"path": str(p), "overlay_base": base, "models": {},
         "in_run_split": seen.split if seen else None,
         "in_run_exact": seen.exact if seen else None}
        for (p, _), base, seen in zip(decoded, bases, found, strict=True)]
    colour = [is_colour(img) for _, img in decoded]  # one verdict per file, on what it holds
    drawn: dict[str, tuple[np.ndarray, Explanation]] = {}  # per model: its inputs, heatmaps
    for k, (name, explainer) in enumerate(explainers.items()):
        progress("explain", k, len(explainers))
        info = run.model_info(name)
        size, crop = int(info["image_size"]), bool(info.get("crop_head", False))
        x = np.stack([prepare_image(img, size, crop=crop) for _, img in decoded])
        try:
            ex = explainer(x, method=method, target=target)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from exc
        probs_all = np.asarray(ex.probs)
        if name in temperatures:
            probs_all = apply_temperature(probs_all, temperatures[name])
        below, unlike = warners.models[name]
        warned = answer_flags(probs_all, below, None if unlike is None else unlike(x), colour)
        for i in range(len(decoded)):
            png = out / f"{bases[i]}.{name}.{ex.method.replace('+', 'p')}.png"
            entry = overlay_entry(run.class_names, ex, i, png.name, probs_all[i])
            head = head_mask_in_frame(decoded[i][1], size, crop)
            share = energy_outside_head(ex.heatmaps[i], head)
            top = top_outside_head(ex.heatmaps[i], head)
            entry["peak"] = peak_words(ex.heatmaps[i])  # where it is hottest, in words
            entry["energy_outside_head"] = float(share) if np.isfinite(share) else None
            entry["top_outside_head"] = float(top) if np.isfinite(top) else None
            entry["outside_head_flag"] = outside_head_flag(entry["top_outside_head"])
            entry["weak"], entry["unlike"] = warned["weak"][i], warned["unlike"][i]
            entry["colour"] = warned["colour"][i]
            rows[i]["models"][name] = entry
        drawn[name] = (x, ex)
    for i, row in enumerate(rows):  # every model's answer known: captions say if they differ
        # None with one model explained: agreement is not known (true claimed it)
        row["agree"] = (len({e["predicted"] for e in row["models"].values()}) == 1
                        if len(row["models"]) > 1 else None)
        for name, (x, ex) in drawn.items():
            entry = row["models"][name]
            if caption:  # after the warnings: the caption carries them
                lines = overlay_caption(name, entry, row["in_run_split"], row["in_run_exact"],
                                        disagree=row["agree"] is False)
                picture = captioned_overlay(x[i], ex.heatmaps[i], lines, DISCLAIMER,
                                            alpha=alpha, outline_top_percent=outline)
            else:
                picture = render_overlay(x[i], ex.heatmaps[i], alpha=alpha,
                                         outline_top_percent=outline)
            (out / entry["overlay"]).write_bytes(to_png(picture))
    progress("explain", len(explainers), len(explainers))
    return rows


def overlay_entry(class_names: list[str], ex: Explanation, i: int, overlay: str,
                  probs: np.ndarray) -> dict[str, Any]:
    """explain.json's record of image `i` of explanation `ex` (one model), with its
    (calibrated) probabilities `probs`."""
    return {
        "predicted": class_names[int(np.argmax(probs))],
        "probs": {c: float(p) for c, p in zip(class_names, probs, strict=True)},
        "target": class_names[int(ex.targets[i])],
        "method": ex.method,
        "layer": ex.layer,
        "heatmap": heatmap_stats(ex.heatmaps[i]),
        "overlay": overlay,
    }


def overlay_caption(model: str, entry: dict[str, Any], in_run_split: str | None = None,
                    in_run_exact: bool | None = None, *, disagree: bool = False) -> list[str]:
    """A captioned overlay's lines from its explain.json record (`overlay_entry`): the model's
    answer with its (calibrated) probability as explain prints it, and the method and class the
    heatmap explains, which may not be the answer (--target); then the answer's warnings, the
    shortcut alarm and whether the models disagree (`disagree`), as explain prints them (an
    overlay travels without the console's lines), and the run's split the image is in
    (`in_run_split`, `data.membership`): a training or validation image itself, pixel for pixel
    (`in_run_exact`), is not called "unlike the training data", as in `predict`.

    >>> overlay_caption("custom_cnn", {"predicted": "no_tumor", "target": "glioma",
    ...                 "probs": {"glioma": 0.3, "no_tumor": 0.7}, "method": "gradcam",
    ...                 "weak": True})
    ["Custom CNN answers 'no tumour' (0.70)", "Heatmap: Grad-CAM for 'glioma'",
     'Warning: weak answer (low confidence)']
    """
    from pipeline.evaluate.flags import FLAG_LABELS
    from pipeline.explain.methods import METHOD_LABELS

    # "Score-CAM (slower)": the dashboard's menu says how long it takes; a picture need not
    method = METHOD_LABELS.get(entry["method"], entry["method"]).replace(" (slower)", "")
    peak = f", hottest at the image's {entry['peak']}" if entry.get("peak") else ""
    lines = [f"{display_name(model)} answers '{class_label(entry['predicted'])}' "
             f"({entry['probs'][entry['predicted']]:.2f})",
             f"Heatmap: {method} for '{class_label(entry['target'])}'{peak}"]
    hidden = hides_unlike(in_run_split, in_run_exact)
    warnings = [FLAG_LABELS[k] for k in ("colour", "weak", "unlike")
                if entry.get(k) and not (hidden and k == "unlike")]
    if entry.get("outside_head_flag"):
        warnings.append(OUTSIDE_HEAD_MESSAGE)
    if disagree:
        warnings.append(FLAG_LABELS["disagree"])
    if warnings:
        lines.append("Warning: " + "; ".join(warnings))
    if in_run_split in SEEN_TAGS:
        copy = "" if in_run_exact is not False else "a near copy: "
        lines.append(f"Note: {copy}{SEEN_TAGS[in_run_split]}" + (
            " (not trained on)" if in_run_split == "test" else " (not a test of the model)"))
    return lines


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
                   caption: bool = True, shard: tuple[int, int] = (0, 1)) -> dict[str, Any]:
    """explain.json's keys besides "images" and "errors": run_id, method (as asked), target
    (class name; None = each model's predicted class), alpha, outline, caption (true:
    captioned overlays, false: bare, --bare), shard ("i/n") and per model the method and layer
    actually used (layer None for methods that read none)."""
    from pipeline.explain.methods import get_method

    models = {}
    for name, explainer in explainers.items():
        used = get_method(method or explainer.method)
        models[name] = {"method": used.name,
                        "layer": explainer.layer if used.needs_layer else None}
    return {"run_id": run.run_id, "method": method or "each model's default",
            "target": None if target is None else run.class_names[target], "alpha": alpha,
            "outline": outline, "caption": caption, "shard": f"{shard[0]}/{shard[1]}",
            "models": models}


def _explain_chunk(run: Run, explainers: dict[str, Explainer], part: list[tuple[Path, str]],
                   out: Path, options: dict[str, Any],
                   on_unreadable: Callable[[str, str], None] | None
                   ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Decode and explain (path or series slice, overlay base) pairs: (rows, [{"path",
    "error"}])."""
    from pipeline import images

    read = SliceReader()  # a series is decoded once for its slices in this chunk
    decoded, names, bad = [], [], []
    for path, base in part:
        try:
            decoded.append((path, read(path)))
            names.append(base)
        except images.ImageError as exc:
            bad.append({"path": str(path), "error": str(exc)})
            if on_unreadable:
                on_unreadable(str(path), str(exc))
    rows = (write_overlays(run, explainers, decoded, out, **options, bases=names)
            if decoded else [])
    return rows, bad


def explain_files(run: Run, explainers: dict[str, Explainer], paths: Sequence[Path], out: Path,
                  *, method: str | None, target: int | None, alpha: float,
                  outline: float | None, caption: bool = True, chunk: int = EXPLAIN_CHUNK,
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
                            outline=outline, caption=caption, shard=shard)
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
