"""The run's own dataset files as the dashboard reads them (Predict's "Draw test images", Error
analysis' cards): only paths taken from the run's artifacts, each checked to stay inside the
dataset folder as named. Logic without Streamlit (split out of `dashboard.core`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dashboard.core import Upload
from pipeline.artifacts import ArtifactError, shown_path
from pipeline.evaluate.flags import is_colour
from pipeline.images import ImageError, decode_image, read_file
from pipeline.modality import looks_like_ct, looks_like_photo
from pipeline.sequence import may_be_t2


def _named_path(data_dir: str | Path, rel: str) -> Path | None:
    """`data_dir`/`rel` as named, made absolute and normalised (no symlink followed); None when
    `rel` leaves the folder (`../`, an absolute path)."""
    root = Path(os.path.abspath(data_dir))
    path = Path(os.path.normpath(root / rel))
    return path if path.is_relative_to(root) else None


def data_file(data_dir: str | Path | None, rel: str) -> Path | None:
    """The dataset file `rel` if it exists inside `data_dir`; None otherwise.

    `rel` comes from the run's own artifacts, but a crafted CSV could still say `../../etc`:
    containment is checked on the path as named, normalised, so every read stays inside the
    dataset folder. Symlinks are not resolved first: a dataset of links (git-annex, DVC's
    cache, a hand-made subset) points outside its folder by design, and every image was
    "not found".
    """
    if not data_dir:
        return None
    try:
        path = _named_path(data_dir, rel)
        return path if path is not None and path.is_file() else None
    except (OSError, ValueError):
        return None


def load_data_images(data_dir: str | Path | None, rels: Sequence[str]) -> list[Upload]:
    """Read dataset images as Uploads (error message in place of an unreadable file)."""
    out = []
    for rel in rels:
        path = data_file(data_dir, rel)
        name = Path(rel).name
        if path is None:
            where = shown_path(data_dir) if data_dir else "(not reachable here)"
            lost = "is outside" if data_dir and _named_path(data_dir, rel) is None else (
                "not found in")
            out.append(Upload(name, "", error=f"{rel}: {lost} the dataset folder {where}"))
            continue
        try:
            # messages name the file by `rel`, not by this machine's path; keyed like an
            # upload, by the SHA-256 of its bytes (which its report quotes)
            data = read_file(path, rel)
            image = decode_image(data, rel)
            out.append(Upload(name, hashlib.sha256(data).hexdigest(), image=image,
                              colour=is_colour(image), ct=looks_like_ct(image),
                              photo=looks_like_photo(image), t2=may_be_t2(image)))
        except ImageError as exc:
            out.append(Upload(name, "", error=str(exc)))
    return out


def test_entries(splits: Any) -> list[dict[str, str]]:
    """The test entries of splits.json ({"path", "label"}), validated."""
    if not isinstance(splits, Mapping):
        raise ArtifactError("damaged splits.json: not a JSON object")
    test = splits.get("test")
    if not isinstance(test, list):
        raise ArtifactError("damaged splits.json: no 'test' list")
    return [e for e in test if isinstance(e, Mapping) and isinstance(e.get("path"), str)]
