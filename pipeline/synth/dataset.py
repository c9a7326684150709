"""The dataset on disk: argument checks, the output folder, README text and `generate`.

Layout (docs/architecture.md): `Training/<class>/` and `Testing/<class>/` hold 8-bit grayscale
PNGs, `masks/` mirrors that tree, `synth.json` holds the parameters and `README.txt` says the
images are synthetic. Every image has its own generator seeded by (seed, class index, image
index), so the output depends neither on thread scheduling nor on `test_fraction`.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.names import Progress
from pipeline.synth.tumours import CLASSES, SynthError, render_phantom

GENERATOR = "brain-mri-xai synth"
VERSION = "1.0"
SPLITS: tuple[str, ...] = ("Training", "Testing")
PER_CLASS = 150  # `synth`'s and `run`'s phantoms per class unless told (the demo's: minutes)
# 5x the largest class of the public sets the project reads (Nickparvar's 2000 no-tumour images;
# Sartaj's ~940): 40 000 phantoms, ~1.9 GB at 256 px. A billion planned for minutes, silently.
MAX_PER_CLASS = 10_000
MIN_SIZE = 64
MAX_SIZE = 2048
_STAGE = "synth phantoms"  # the progress bar's label
# The compression level changes the PNG bytes (not the pixels): part of the byte-identical promise.
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]


def _check_args(per_class: int, size: int, seed: int, test_fraction: float) -> None:
    """Raise SynthError unless every argument is in range (integral floats such as 12.0 pass)."""
    if int(per_class) != per_class or not 1 <= per_class <= MAX_PER_CLASS:
        raise SynthError(f"per_class must be an integer in [1, {MAX_PER_CLASS}], "
                         f"got {per_class!r}")
    if int(size) != size or not MIN_SIZE <= size <= MAX_SIZE:
        raise SynthError(f"size must be an integer in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")
    if int(seed) != seed or seed < 0:
        raise SynthError(f"seed must be an integer >= 0, got {seed!r}")
    if not 0.0 <= test_fraction < 1.0:
        raise SynthError(f"test_fraction must be in [0, 1), got {test_fraction!r}")


def is_synthetic(out: str | Path) -> bool:
    """Whether folder `out` holds a synth.json from this generator (complete or interrupted):
    a dataset of drawn phantoms, not MRI (a run trained on one says so in its title)."""
    return _is_synth_output(Path(out))


def _is_synth_output(out: Path) -> bool:
    """Whether `out` holds a synth.json from this generator (complete or interrupted)."""
    return _synth_meta(out) is not None


def _synth_meta(out: Path) -> dict[str, Any] | None:
    """`out`'s synth.json when this generator wrote it, else None."""
    try:
        meta = json.loads((out / "synth.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("generator") == GENERATOR else None


def interrupted_note(out: str | Path) -> str | None:
    """What a folder holding an interrupted synth's partial output holds (synth.json, written
    first, still says `"complete": false`), else None: said by `synth` and `audit` alike."""
    meta = _synth_meta(Path(out))
    if meta is None or meta.get("complete") is not False:
        return None
    return ("the partial output of an interrupted synth: not every phantom was written, so "
            "classes may be missing or unbalanced; rerun synth with --overwrite to make the "
            "whole set")


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    """Create `out`; a previous synth output there is replaced only with `overwrite`.

    Only the files synth writes are removed; any other non-empty folder is refused.
    """
    if out.exists() and not out.is_dir():
        raise SynthError(f"output path {out} exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not _is_synth_output(out):
            raise SynthError(f"refusing to write into {out}: the folder is not empty and is not "
                             "a previous synth output (no synth.json from this generator)")
        if not overwrite:  # the CLI's wording: the library's callers pass overwrite=True
            note = interrupted_note(out)
            raise SynthError(f"{out} holds {note}" if note else f"{out} already holds "
                             "synthetic phantoms; rerun with --overwrite to replace them")
        # Remove only what a previous synth run writes; anything else the user put there stays.
        for name in (*SPLITS, "masks"):
            if (out / name).is_dir():
                shutil.rmtree(out / name)
        for name in ("README.txt", "synth.json"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _n_test(per_class: int, test_fraction: float) -> int:
    """How many of each class's `per_class` images go to Testing (the last indices)."""
    n = int(round(per_class * test_fraction))
    if test_fraction > 0 and per_class >= 2:
        n = min(max(n, 1), per_class - 1)  # both splits non-empty whenever that is possible
    return n


def _readme(params: dict[str, Any]) -> str:
    """Text of README.txt: what the folder is, its parameters, and the command that remakes it."""
    return (
        "SYNTHETIC MRI PHANTOMS - NOT REAL PATIENT DATA\n"
        "\n"
        "Every image in this folder was drawn by a program (pipeline/synth/ of brain-mri-xai).\n"
        "They imitate axial brain MRI slices for teaching, testing and explanation benchmarks;\n"
        "they are not medical images and say nothing about real tumours. Research and teaching\n"
        "only, not for diagnosis.\n"
        "\n"
        f"generator: {params['generator']} version {params['version']}\n"
        f"seed: {params['seed']}   size: {params['size']} px   per class: {params['per_class']}"
        f"   test fraction: {params['test_fraction']}\n"
        "\n"
        "Layout: Training/<class>/ and Testing/<class>/ hold grayscale PNGs; masks/ mirrors that\n"
        "tree with one binary mask per image (255 = tumour pixel, 0 = not; all zero for\n"
        "no_tumor). synth.json lists all parameters. Regenerate with:\n"
        f"  python -m pipeline synth OUT_DIR --per-class {params['per_class']} "
        f"--size {params['size']} --seed {params['seed']} "
        f"--test-fraction {params['test_fraction']}"
        + (" --marker" if params.get("marker") else "") + "\n"
        + ("\nmarker: every image carries a class-coded bright square in a corner outside the\n"
           "head (a planted shortcut, for testing the shortcut alarm).\n"
           if params.get("marker") else "")
    )


def generate(out_dir: str | Path, per_class: int, size: int = 256, seed: int = 0,
             test_fraction: float = 0.2, progress: Progress | None = None,
             overwrite: bool = False, workers: int | None = None,
             marker: bool = False) -> dict[str, Any]:
    """Write `per_class` phantoms per class (Kaggle-style layout) plus masks, README and params.

    Images of class c go to `Training/c/` or `Testing/c/` (the last round(per_class *
    test_fraction) indices are test); the mask of `X/c/name.png` is `masks/X/c/name.png`.
    `marker=True` plants the class-correlated shortcut square (`tumours.draw_marker`) in every
    image, for testing the shortcut alarm; synth.json then says `"marker": true` (the key is
    absent otherwise, so default outputs stay byte-identical).
    Returns a summary: parameters, counts per split and class, and the written paths.
    Raises SynthError on bad arguments or when `out_dir` must not be written into.
    """
    _check_args(per_class, size, seed, test_fraction)
    per_class, size, seed = int(per_class), int(size), int(seed)
    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)
    if progress:  # at once: the folders and the plan come before the first phantom
        progress(_STAGE, 0, len(CLASSES) * per_class)
    jobs, counts = _plan(out, per_class, _n_test(per_class, test_fraction))

    params: dict[str, Any] = {
        "generator": GENERATOR, "version": VERSION, "seed": seed, "size": size,
        "per_class": per_class, "test_fraction": test_fraction, "classes": list(CLASSES),
        "image_format": "png, 8-bit grayscale", "mask_format": "png, uint8 0/255",
        "rng": "default_rng((seed, class_index, image_index)).spawn(3): anatomy, tumour, scan",
        "counts": counts, "complete": False,
    }
    if marker:
        params["marker"] = True
    # Written first (complete=false) so an interrupted run is still recognised and replaceable.
    (out / "synth.json").write_text(json.dumps(params, indent=2) + "\n")
    _render_all(jobs, seed, size, progress, workers, marker)

    params["complete"] = True
    (out / "README.txt").write_text(_readme(params))
    (out / "synth.json").write_text(json.dumps(params, indent=2) + "\n")
    return {
        **{k: params[k] for k in ("generator", "version", "seed", "size", "per_class",
                                  "test_fraction", "classes", "counts")},
        "n_images": len(jobs),
        "paths": {"root": str(out), "masks": str(out / "masks"),
                  "readme": str(out / "README.txt"), "params": str(out / "synth.json")},
    }


# One image to write: (class index, image index, image path, mask path).
_Job = tuple[int, int, Path, Path]


def _plan(out: Path, per_class: int, n_test: int) -> tuple[list[_Job], dict[str, dict[str, int]]]:
    """Create the class folders; list one job per image and the counts per split and class.

    The last `n_test` indices of each class are test images.
    """
    width = max(4, len(str(per_class - 1)))
    jobs: list[_Job] = []
    counts: dict[str, dict[str, int]] = {split: {} for split in SPLITS}
    for ci, label in enumerate(CLASSES):
        for split in SPLITS:
            (out / split / label).mkdir(parents=True, exist_ok=True)
            (out / "masks" / split / label).mkdir(parents=True, exist_ok=True)
            counts[split][label] = 0
        for i in range(per_class):
            split = "Testing" if i >= per_class - n_test else "Training"
            name = f"{label}_{i:0{width}d}.png"
            jobs.append((ci, i, out / split / label / name, out / "masks" / split / label / name))
            counts[split][label] += 1
    return jobs, counts


def _write_phantom(job: _Job, seed: int, size: int, marker: bool = False) -> None:
    """Render one job's phantom from its own generator and write its image and mask PNGs."""
    ci, i, img_path, mask_path = job
    rng = np.random.default_rng((seed, ci, i))
    image, mask = render_phantom(CLASSES[ci], size, rng, marker=marker)
    for path, arr in ((img_path, image), (mask_path, mask)):
        if not cv2.imwrite(str(path), arr, _PNG_PARAMS):
            raise SynthError(f"could not write {path}")


def _render_all(jobs: list[_Job], seed: int, size: int, progress: Progress | None,
                workers: int | None, marker: bool = False) -> None:
    """Write every job on a thread pool, reporting progress as jobs finish.

    Each job seeds its own generator, so the order in which threads run them does not matter.
    """
    total = len(jobs)
    n_workers = workers or min(4, os.cpu_count() or 1)
    pool = ThreadPoolExecutor(max_workers=n_workers)
    try:
        futures = [pool.submit(_write_phantom, job, seed, size, marker) for job in jobs]
        for done, fut in enumerate(as_completed(futures), start=1):
            fut.result()
            if progress:
                progress(_STAGE, done, total)
    except BaseException:
        # Ctrl-C or a failed job: the queued jobs are dropped (a `with` block waited for every
        # one: a review's Ctrl-C at 241 of 2400 phantoms returned after all 2400 were written)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
