"""Explaining a batch of files: overlay PNGs with stable, distinct names and explain.json rows.

The `explain` command's work, apart from parsing and printing (pipeline/cli/explain_cmds.py).
`explain_files` streams: `EXPLAIN_CHUNK` files are decoded, explained and written at a time,
so memory does not grow with the folder (only explain.json's small rows are kept).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import Run
from pipeline.explain.explainer import Explainer, Explanation
from pipeline.explain.masks import head_mask_in_frame
from pipeline.explain.metrics import energy_outside_head, outside_head_flag, top_outside_head
from pipeline.explain.render import heatmap_stats, render_overlay, to_png
from pipeline.geometry import prepare_image
from pipeline.names import Progress, no_progress

OVERLAY_NAME_BYTES = 120  # leaves room for ".<model>.<method>.png" under the 255-byte limit
# Files decoded and explained at once: gradients of 32 MobileNetV2 inputs fit in a few hundred MB
EXPLAIN_CHUNK = 32


def overlay_bases(paths: list[Path]) -> list[str]:
    """One distinct, stable base name per input for its overlay files (same order as `paths`).

    The base is the file name with its extension (scan.png and scan.jpg differ), control
    characters replaced by "_" and cut to OVERLAY_NAME_BYTES. Inputs sharing a base (a/scan.png
    and b/scan.png) get "-" and 8 hex digits of the SHA-1 of their absolute path, so a name does
    not depend on argument order; the same file given twice gets "-2", "-3". Names are compared
    case-folded because macOS and Windows folders are case-insensitive.
    """
    def clean(path: Path) -> str:
        name = "".join(ch if ch.isprintable() else "_" for ch in path.name) or "image"
        return name.encode()[:OVERLAY_NAME_BYTES].decode(errors="ignore")

    bases = [clean(p) for p in paths]
    counts = Counter(b.casefold() for b in bases)
    used: set[str] = set()
    out = []
    for path, base in zip(paths, bases, strict=True):
        if counts[base.casefold()] > 1:
            digest = hashlib.sha1(os.fsencode(os.path.abspath(path))).hexdigest()[:8]
            base = f"{base}-{digest}"
        name, k = base, 1
        while name.casefold() in used:
            k += 1
            name = f"{base}-{k}"
        used.add(name.casefold())
        out.append(name)
    return out


def write_overlays(run: Run, explainers: dict[str, Explainer],
                   decoded: list[tuple[Path, np.ndarray]], out: Path, *, method: str | None,
                   target: int | None, alpha: float, outline: float | None,
                   progress: Progress = no_progress, bases: list[str] | None = None
                   ) -> list[dict[str, Any]]:
    """Explain every image with every model, write one overlay PNG each into `out`.

    `method` None: each explainer's own default (`Explainer.method`).
    Returns explain.json's "images" rows: path, overlay_base and, per model, the prediction,
    probabilities, explained class, layer, heatmap stats, the shortcut alarm
    (`energy_outside_head`, `top_outside_head`, `outside_head_flag`) and the overlay's file name.
    ValueError names the model whose explanation failed. `bases` (one per image) are the
    overlay names when the images are part of a longer list (`overlay_bases` of it).
    """
    from pipeline.calibration import apply_temperature, read_temperatures

    temperatures = read_temperatures(run.path)  # probabilities shown as everywhere else
    bases = bases if bases is not None else overlay_bases([p for p, _ in decoded])
    rows: list[dict[str, Any]] = [{"path": str(p), "overlay_base": base, "models": {}}
                                  for (p, _), base in zip(decoded, bases, strict=True)]
    for k, (name, explainer) in enumerate(explainers.items()):
        progress("explain", k, len(explainers))
        info = run.model_info(name)
        size, crop = int(info["image_size"]), bool(info.get("crop_head", False))
        x = np.stack([prepare_image(img, size, crop=crop) for _, img in decoded])
        try:
            ex = explainer(x, method=method, target=target)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from exc
        for i in range(len(decoded)):
            png = out / f"{bases[i]}.{name}.{ex.method.replace('+', 'p')}.png"
            png.write_bytes(to_png(render_overlay(x[i], ex.heatmaps[i], alpha=alpha,
                                                  outline_top_percent=outline)))
            probs = ex.probs[i]
            if name in temperatures:
                probs = apply_temperature(probs, temperatures[name])
            entry = overlay_entry(run.class_names, ex, i, png.name, probs)
            head = head_mask_in_frame(decoded[i][1], size, crop)
            share = energy_outside_head(ex.heatmaps[i], head)
            top = top_outside_head(ex.heatmaps[i], head)
            entry["energy_outside_head"] = float(share) if np.isfinite(share) else None
            entry["top_outside_head"] = float(top) if np.isfinite(top) else None
            entry["outside_head_flag"] = outside_head_flag(entry["top_outside_head"])
            rows[i]["models"][name] = entry
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


def explain_files(run: Run, explainers: dict[str, Explainer], paths: Sequence[Path], out: Path,
                  *, method: str | None, target: int | None, alpha: float,
                  outline: float | None, chunk: int = EXPLAIN_CHUNK,
                  progress: Progress = no_progress,
                  on_unreadable: Callable[[str, str], None] | None = None
                  ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """`write_overlays` over `paths`, `chunk` files at a time: (rows, [{"path", "error"}]).

    Overlay names come from the whole list, so they are the same as in one batch; each
    unusable file is passed to `on_unreadable(path, reason)` as it is met.
    """
    from pipeline import images

    bases = overlay_bases(list(paths))
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    progress("explain", 0, len(paths))
    for start in range(0, len(paths), chunk):
        decoded, names = [], []
        for k in range(start, min(start + chunk, len(paths))):
            try:
                decoded.append((paths[k], images.read_image(paths[k])))
                names.append(bases[k])
            except images.ImageError as exc:
                failures.append({"path": str(paths[k]), "error": str(exc)})
                if on_unreadable:
                    on_unreadable(str(paths[k]), str(exc))
        if decoded:
            rows += write_overlays(run, explainers, decoded, out, method=method, target=target,
                                   alpha=alpha, outline=outline, bases=names)
        progress("explain", min(start + chunk, len(paths)), len(paths))
    return rows, failures
