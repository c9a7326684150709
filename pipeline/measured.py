"""What a run already holds a measurement of, so that a smaller one does not replace it.

A quick check with few images replaced a run's shipped measurement, which the dashboard and the
docs show: first through the CLI (`cli.common.keep_larger` refuses it there, in the CLI's
words), then, a review found (2026-12-07), through the library itself, where `explain_eval` and
`choose_defaults` overwrote `explanations.json` (358 images) and `explain_choice.json` with a
measurement on 2. Both now refuse unless `replace`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def held_measurement(path: Path, within: Sequence[str] = ()) -> dict[str, Any] | None:
    """The measurement in JSON file `path` (the entry at the keys `within`, e.g. one model's
    of a shared file); None for a missing or damaged file, or one without that entry."""
    from pipeline.artifacts import ArtifactError, read_json

    try:
        done = read_json(path) if path.is_file() else None
    except ArtifactError:
        return None
    for key in within:
        done = done.get(key) if isinstance(done, dict) else None
    return done if isinstance(done, dict) and done else None


def images_measured(path: Path, keys: Sequence[str], within: Sequence[str] = ()) -> int | None:
    """How many images the measurement in `path` was made on (the first of `keys` it holds);
    None where there is none."""
    done = held_measurement(path, within) or {}
    n = next((done[k] for k in keys if k in done), None)
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def refuse_smaller(path: Path, keys: Sequence[str], asked: int, what: str,
                   within: Sequence[str] = ()) -> None:
    """ValueError when the measurement in `path` covers more images than `asked`: `what` names
    it ("custom_cnn/explanations.json")."""
    n = images_measured(path, keys, within)
    if n is not None and n > asked:
        raise ValueError(f"{what} was measured on {n} images, this would use {asked}: pass "
                         f"max_images={n} or more, or replace=True to overwrite it")
