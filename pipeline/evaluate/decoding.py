"""Predicting a set of images with every model of a run, each file decoded once: `evaluate`'s
pass (its test split or a folder, looking a folder's images up in the run's splits on the way)
and `calibrate`'s (one model at a time). Images are prepared as in training
(`geometry.prepare_image` of `images.read_image`'s array, as `data.load_arrays` does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.names import Progress, display_name

PREDICT_CHUNK = 128  # images decoded and predicted at a time: bounded memory on any folder size


@dataclass
class Pass:
    """What `predict_all`'s one pass over a folder gives: per model (probabilities, rel paths
    scored), the unreadable files (rel -> reason) and, per record, its look-up in the run's
    splits (`CopyCheck.memberships`; None for a file that could not be decoded)."""

    raw: dict[str, tuple[np.ndarray, list[str]]]
    failed: dict[str, str]
    found: list[list[Any] | None]


def _decode_one(rec: Any, shapes: Sequence[tuple[int, bool]], memberships: Sequence[Any],
                hashes: bool) -> tuple[list[Any] | None, dict[tuple[int, bool], np.ndarray | str]]:
    """One file decoded once: its look-up in `memberships` and its image prepared for each
    (size, crop) of `shapes`, or the reason it cannot be (as `data.load_arrays` words it). With
    `hashes`, its hashes are kept (`hashing.remember`): `evaluate`'s copy groups then decode
    nothing."""
    from pipeline import geometry, images
    from pipeline.data.hashing import remember

    try:
        data = images.read_file(rec.path)
        image, meta = images.decode_image_info(data, str(rec.path))  # as `images.read_image`
        hashed = remember(rec.path, data, image, meta) if hashes or memberships else None
    except images.ImageError as exc:
        return None, dict.fromkeys(shapes, str(exc))
    except Exception as exc:  # a bad file must not stop the others
        return None, dict.fromkeys(shapes, f"{rec.rel}: {type(exc).__name__}: {exc}")
    found = [m.find(image, hashed) for m in memberships]
    prepared: dict[tuple[int, bool], np.ndarray | str] = {}
    for size, crop in shapes:
        try:
            prepared[size, crop] = geometry.prepare_image(image, size, crop=crop)
        except images.ImageError as exc:
            prepared[size, crop] = str(exc)
        except Exception as exc:
            prepared[size, crop] = f"{rec.rel}: {type(exc).__name__}: {exc}"
    return found, prepared


def predict_all(predictor: Any, models: Sequence[str], records: Sequence[Any],
                memberships: Sequence[Any], progress: Progress, hashes: bool = True,
                desc: str | None = None) -> Pass:
    """Every model's probabilities for `records`, in chunks of `PREDICT_CHUNK` (bounded
    memory), each file decoded once for all of them and looked up in `memberships` on the
    way: a look-up of its own decoded each file again (12-16 % of evaluating 299 images), and
    so did each model and the copy groups. `hashes`: keep each file's hashes for
    `evaluate`'s copy groups."""
    from pipeline.artifacts import crop_head
    from pipeline.data.hashing import parallel_map

    shape_of = {m: (int(predictor.info[m]["image_size"]),
                    crop_head(predictor.info[m])) for m in models}
    shapes = list(dict.fromkeys(shape_of.values()))
    out: dict[str, list[np.ndarray]] = {m: [] for m in models}
    rels: dict[str, list[str]] = {m: [] for m in models}
    failed: dict[str, str] = {}
    found: list[list[Any] | None] = []
    desc = desc or ("predicting" + (" and looking for copies of the run's images"
                                    if memberships else ""))
    progress(desc, 0, len(records))
    for start in range(0, len(records), PREDICT_CHUNK):
        chunk = records[start:start + PREDICT_CHUNK]
        results = parallel_map(lambda r: _decode_one(r, shapes, memberships, hashes), chunk,
                               desc, None)
        found += [hits for hits, _ in results]
        for m in models:
            ok = [(rec, prepared[shape_of[m]]) for rec, (_, prepared) in zip(chunk, results,
                                                                             strict=True)]
            failed.update((rec.rel, x) for rec, x in ok if isinstance(x, str))
            ok = [(rec, x) for rec, x in ok if not isinstance(x, str)]
            if ok:
                out[m].append(predictor.predict_arrays(m, np.stack([x for _, x in ok])))
                rels[m] += [rec.rel for rec, _ in ok]
        progress(desc, min(start + PREDICT_CHUNK, len(records)), len(records))
    n_classes = len(predictor.class_names)
    raw = {m: (np.concatenate(out[m]) if out[m] else np.zeros((0, n_classes), np.float32),
               rels[m]) for m in models}
    return Pass(raw, failed, found)


def predict_records(predictor: Any, model: str, records: Sequence[Any], progress: Progress
                    ) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """One model's (probabilities, rel paths scored, [(rel, reason)] unreadable): `calibrate`'s
    pass over the validation split."""
    done = predict_all(predictor, [model], records, [], progress, hashes=False,
                       desc=f"{display_name(model)}: predicting")
    return (*done.raw[model], list(done.failed.items()))
