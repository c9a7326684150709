"""explain-eval on an external folder: its images, the file each model's result goes to, the
refusal to replace another measurement, and the check for copies of the run's training images.

The result of one external folder is `<run>/<model>/explanations-external/<folder>-<method>.json`
(`-<layer>` added when a layer was asked for): a researcher comparing methods on their own
images runs explain-eval once per method and finds every result kept side by side, where one
`<folder>.json` was silently overwritten by the next method. An explicit `--name` is used as
given, and a file there measured with another method or layer is not replaced without
`replace` (as `explanations.json` on the test split is not).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import run_files
from pipeline.artifacts import Run, read_json
from pipeline.explain.methods import LAYER_METHODS

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


def _slug(text: str) -> str:
    """`text` as part of a file name: "gradcam++" -> "gradcampp", other odd characters -> "-"."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text.replace("+", "p")).strip(".-_")


def external_source(run: Run, data: Path, name: str | None) -> dict[str, Any]:
    """Every image of an external folder whose label the run can score: {"records": [{"path",
    "label"}], "plan": the LabelPlan, "info": the JSON `source`, "what": words for messages,
    "image_records": the `data.ImageRecord`s (for `with_overlap`)}. `info["name"]` is the
    explicit `name`, else None (`external_file` then names the file after the folder)."""
    from pipeline import data as data_pkg
    from pipeline.evaluate.external import map_external_labels, series_files, skipped_series

    if name is not None and (not _SAFE_NAME.fullmatch(name) or ".." in name):
        raise ValueError(f"--name {name!r} must be letters, digits, '.', '_' or '-' (at most 80, "
                         "not starting with '.' or '-')")
    try:
        ds = data_pkg.discover(data)
        plan = map_external_labels(ds.classes, run.class_names)
    except ValueError as exc:  # DatasetError, EvaluationError
        # a DatasetError names the folder already ("data folder X is empty"): not twice
        raise ValueError(str(exc) if str(data) in str(exc) else f"{data}: {exc}") from exc
    given = data.resolve()
    # a volume's label is not each slice's: no slice of a series is scored with it (evaluate's)
    series = [*series_files([r for r in ds.records if r.label in plan.mapping]),
              *(v for v in ds.volumes if v.label in plan.mapping)]
    gone = {r.rel for r in series}
    records, kept = [], []
    for r in ds.records:
        if r.label not in plan.mapping or r.rel in gone:
            continue
        try:  # relative to the folder given (masks mirror it), not to the root discover found
            rel = Path(r.path).resolve().relative_to(given).as_posix()
        except ValueError:
            rel = r.rel
        records.append({"path": rel, "label": r.label})
        kept.append(r)
    if not records and series:
        from pipeline.data.discovery import SERIES_NOTE

        raise ValueError(f"{data} holds only series files ({len(series)}): {SERIES_NOTE}")
    if not records:
        raise ValueError(f"{data} has no image whose label the run can score")
    info = {"kind": "external", "name": name, "folder": _slug(ds.root.name) or "external",
            "layout": ds.layout, "folder_classes": ds.classes, "mode": plan.mode,
            "label_mapping": plan.mapping, "skipped_classes": plan.skipped(ds.classes),
            "ignored_folders": list(ds.ignored), "skipped_series": skipped_series(series)}
    return {"records": records, "plan": plan, "what": "images", "info": info,
            "image_records": kept}


def external_file(run: Run, model: str, info: dict[str, Any], method: str,
                  layer: str | None, layer_asked: bool) -> Path:
    """Where `model`'s result on the external folder goes: `--name` as given, else
    `<folder>-<method>` (`-<layer>` too when a layer was asked for)."""
    stem = info["name"]
    if stem is None:
        parts = [info["folder"], _slug(method)]
        if layer_asked and layer and method in LAYER_METHODS:
            parts.append(_slug(layer))
        stem = "-".join(p for p in parts if p)
    return run.path / model / run_files.EXPLANATIONS_EXTERNAL / f"{stem}.json"


def refuse_replacing(run: Run, path: Path, method: str, layer: str | None, max_images: int
                     ) -> None:
    """ValueError when `path` holds a measurement of another method or layer than this one, or
    one on more images than `max_images`: the same refusals as on the test split
    (`cli.common.keep_larger`), so one result is never silently lost to another."""
    from pipeline.explain.defaults import method_at

    try:
        done = read_json(path) if path.is_file() else {}
    except Exception:  # a damaged file is no measurement to keep
        return
    if not isinstance(done, dict) or "method" not in done:
        return
    old = (done.get("method"), done.get("layer") if done.get("method") in LAYER_METHODS else None)
    new = (method, layer if method in LAYER_METHODS else None)
    shown = path.relative_to(run.path).as_posix()
    if old != new:
        raise ValueError(f"{shown} holds {method_at(*old)}; this would replace it with "
                         f"{method_at(*new)}: pass --replace, or another --name")
    n = done.get("n_faithfulness", done.get("n"))
    if isinstance(n, int) and n > max_images:
        raise ValueError(f"{shown} was measured on {n} images, this would use {max_images}: "
                         f"pass --max-images {n} or more, --replace, or another --name")


def with_overlap(run: Run, source: dict[str, Any], data: Path, progress: Any = None,
                 keep: Collection[str] = ()) -> dict[str, np.ndarray]:
    """Add `overlap_with_training` to the source info, as `evaluate --data` does: the images
    that are the run's own images or copies of them, per split, exact or near (the look-up of
    `evaluate.external.training_overlap`); those of its training or validation split are not
    held-out results. Each image is decoded once here, and those whose record path is in
    `keep` (the images explained in full) are returned, {path: image}, for `decode` to use:
    explain-eval decoded each of them a second time. An unreadable one is left to `decode`,
    which words its failure; a run without split hashes decodes nothing here."""
    from pipeline import images
    from pipeline.data.hashing import parallel_map
    from pipeline.evaluate.external import CopyCheck

    check = CopyCheck.of_run(run)
    records, memberships = source["records"], check.memberships
    if not memberships:
        source["info"]["overlap_with_training"] = check.overlap(
            source["image_records"], [None] * len(records)).report
        return {}

    def look(pair: tuple[dict[str, str], Any]) -> tuple[list[Any] | None, Any]:
        rec, image_record = pair
        # kept only when `decode` would read this very file (a symlink's record may differ)
        kept = rec["path"] in keep and \
            Path(image_record.path).resolve() == (data / rec["path"]).resolve()
        try:
            image = images.read_image(image_record.path)
        except (images.ImageError, OSError):
            return None, None
        return [m.find(image) for m in memberships], image if kept else None

    looked = parallel_map(look, list(zip(records, source["image_records"], strict=True)),
                          "looking for copies of the run's images", progress)
    source["info"]["overlap_with_training"] = check.overlap(
        source["image_records"], [found for found, _ in looked]).report
    return {rec["path"]: got for rec, (_, got) in zip(records, looked, strict=True)
            if got is not None}
