"""Which of a run's splits an image (or a near copy of it) belongs to: `split_hashes.json`.

A student who uploads a file from the dataset's `Testing/` folder reads the answer as a fair
test, yet a split of the whole dataset trains on many of `Testing/`'s images (271 of 394 in the
shipped main-split run). The run keeps the perceptual hash of every image of each split (the
hash the duplicate audit uses, `hashing.perceptual_hash`), so a page can say "this image is in
the training split" for an upload without the dataset at hand. An image counts as in a split
when its hash is within `duplicates.NEAR_DUPLICATE_THRESHOLD` bits of one of the split's
images: the audit's rule for a copy (re-encoded, resized or re-exported).

The file also keeps each image's `hashing.pixel_digest`, so a lookup tells the run's own image,
pixel for pixel (`Seen.exact`), from a changed copy of it: a training image shrunk to 64 px or
recoloured is within the threshold too, and such a copy may well be unlike the training data,
which an exact one is not (`hides_unlike`).

`ood.ood_run` writes the file (`train` calls it on every new run; `python -m pipeline ood`
adds it to an older run).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import run_files
from pipeline.data.duplicates import NEAR_DUPLICATE_THRESHOLD
from pipeline.data.hashing import (
    PHASH_BITS,
    HashInfo,
    hash_files,
    perceptual_hash,
    pixel_digest,
)
from pipeline.data.splits import SPLIT_NAMES, Splits
from pipeline.names import Progress, model_words

FILE = run_files.SPLIT_HASHES
SPLIT_WORDS = {"train": "training", "val": "validation", "test": "test"}
# what `predict` prints beside an answer for an image of the run's own splits (its CSV and JSON
# say `in_run_split`); the dashboard says `seen_note`
SEEN_TAGS = {s: f"in this run's {w} split" for s, w in SPLIT_WORDS.items()}
# what each tag means, in `names.model_words`' fields: "the models…their" for a run of two,
# "the model…its" for a run of one (`seen_meaning`)
_SEEN_TEMPLATES = {
    "train": "the {models} learnt from this image (or a copy of it), so {their} answer shows "
             "what {they} learnt, not how {they} {do} on new images",
    "val": "the {models} did not learn from it, but {their} training was stopped and "
           "calibrated on it, so {their} answer is not a clean test",
    # not "a fair test": other slices of the same patient may be in training (a clinician's
    # review, 2026-12-05); the split keeps only copies of one image together
    "test": "the {models} did not train on it or on its copies, though other slices of the "
            "same patient may have been in training",
}


def seen_meaning(split: str, n_models: int = 2) -> str:
    """What `SEEN_TAGS[split]` means, for a run answering with `n_models` models: "the model
    learnt from this image…, so its answer…" for one; "" for an unknown split."""
    return _SEEN_TEMPLATES.get(split, "").format(**model_words(n_models))


SEEN_MEANINGS = {s: seen_meaning(s) for s in _SEEN_TEMPLATES}  # two models: the default pair


def split_hashes(splits: Splits, progress: Progress | None = None) -> dict[str, Any]:
    """The `split_hashes.json` object: per split, the hex pHash of each readable image."""
    out: dict[str, Any] = {
        "method": f"pHash ({PHASH_BITS} bits) of each image of the split, as the duplicate "
                  f"audit computes it; an image within {NEAR_DUPLICATE_THRESHOLD} bits of one "
                  "of them is a copy of it",
        "bits": PHASH_BITS, "threshold": NEAR_DUPLICATE_THRESHOLD,
        "pixels_method": "SHA-1 (first 20 hex digits) of each decoded image's shape and pixels: "
                         "the same image, not a changed copy",
        "splits": {}, "pixels": {}}
    for name in SPLIT_NAMES:
        records = getattr(splits, name)
        infos = hash_files(records, progress)
        readable = [infos[r.rel] for r in records if infos[r.rel].phash is not None]
        out["splits"][name] = [i.phash.hex() for i in readable]
        out["pixels"][name] = [i.pixels for i in readable]
    return out


@dataclass(frozen=True)
class Seen:
    """An image's nearest copy in a run: the split, the distance in bits, and whether it is
    that split's image pixel for pixel (None: the run's file cannot tell, an older one); for
    such an exact match, its place among the split's readable images (`index`, as
    split_hashes.json lists them: `Membership.label`)."""

    split: str
    distance: int
    exact: bool | None = None
    index: int | None = None

    def to_bytes(self) -> bytes:
        """b"split distance exact": a `Seen` through tf.data's string tensor (`predict`)."""
        return f"{self.split} {self.distance} {self.exact}".encode()

    @staticmethod
    def from_bytes(data: bytes) -> Seen | None:
        """`to_bytes` read back; None for b"" (not found)."""
        if not data:
            return None
        split, distance, exact = data.decode().split(" ")
        return Seen(split, int(distance), None if exact == "None" else exact == "True")


def hides_unlike(split: str | None, exact: bool | None) -> bool:
    """Whether an image's "unlike the training data" warning is left unsaid: only for a training
    or validation image itself, pixel for pixel (the models met it, and the card says where).
    A changed copy (shrunk, recoloured, blurred) keeps it: the change may be what is unlike."""
    return split in ("train", "val") and exact is True


class Membership:
    """The splits' hashes of one run, searched by Hamming distance (a few thousand: a scan)."""

    def __init__(self, report: dict[str, Any]) -> None:
        bits = int(report.get("bits", PHASH_BITS))
        if bits != PHASH_BITS:
            raise ValueError(f"{FILE} holds {bits}-bit hashes, this version makes {PHASH_BITS}")
        self.threshold = int(report.get("threshold", NEAR_DUPLICATE_THRESHOLD))
        names, rows = [], []
        for split, hashes in (report.get("splits") or {}).items():
            for h in hashes:
                names.append(str(split))
                rows.append(np.frombuffer(bytes.fromhex(h), np.uint8))
        self._splits = np.asarray(names)
        self._hashes = np.stack(rows) if rows else np.zeros((0, PHASH_BITS // 8), np.uint8)
        pixels = report.get("pixels")
        # per split, the pixel digests of its images; None for a file written before them
        self._pixels: dict[str, dict[str, int]] | None = (  # digest -> its first place
            {str(k): {d: i for i, d in reversed(list(enumerate(map(str, v))))}
             for k, v in pixels.items()} if isinstance(pixels, dict) else None)
        self._sizes = {str(k): len(v) for k, v in (report.get("splits") or {}).items()}

    @classmethod
    def of_run(cls, run_path: Path) -> Membership | None:
        """The run's file, or None when it has none (a run older than the file) or it is
        unreadable: then nothing can be said, and nothing is."""
        from pipeline.artifacts import read_json

        path = Path(run_path) / FILE
        if not path.is_file():
            return None
        try:
            return cls(read_json(path))
        except (ValueError, TypeError, KeyError, OSError):
            return None

    def find(self, image: np.ndarray, hashed: HashInfo | None = None) -> Seen | None:
        """The split holding the nearest copy of `image` (RGB or grey uint8), if any is
        within the threshold. Its mirror image counts as a copy too (never as the image
        itself): the models trained on mirrored copies, and teaching images found online are
        often flipped (the pHash is not mirror-invariant). `hashed`: the image's own pHash and
        pixel digest, already computed (`hashing.remember`), not computed again."""
        if not len(self._hashes):
            return None
        image = np.asarray(image)
        nearest = []  # (distance, index, mirrored) per view
        for mirrored, view in ((False, image), (True, image[:, ::-1])):
            own = hashed is not None and hashed.phash is not None and not mirrored
            query = np.frombuffer(hashed.phash if own else
                                  perceptual_hash(np.ascontiguousarray(view)), np.uint8)
            dist = np.unpackbits(self._hashes ^ query, axis=1).sum(axis=1)
            best = int(np.argmin(dist))
            nearest.append((int(dist[best]), best, mirrored))
        distance, best, mirrored = min(nearest)  # the image itself first on a tie
        if distance > self.threshold:
            return None
        split = str(self._splits[best])
        digest = hashed.pixels if hashed is not None and hashed.pixels else pixel_digest(image)
        places = self._pixels.get(split, {}) if self._pixels is not None else None
        exact = digest in places if places is not None else None
        # a mirror image is a copy, not the image (a symmetric one matches itself first)
        if mirrored and exact is not None:
            return Seen(split, distance, False)
        return Seen(split, distance, exact, places.get(digest) if places else None)

    def label(self, seen: Seen | None, splits: Any) -> str | None:
        """The dataset's label of the run's own image `seen` found (exact, with its place),
        from the run's splits.json object `splits`; None when it is no exact match, the
        lists may not line up (an unreadable image left out of split_hashes.json), or a copy
        of it in the run is labelled otherwise (the dataset holds the same slice as a glioma
        and as a meningioma: a review found 8 such pairs; a "wrong" mark would be the
        dataset's doing)."""
        if seen is None or not seen.exact or seen.index is None or not isinstance(splits, dict):
            return None
        labels = []  # per hashed image, in `_hashes`' order: its label, where known
        for split, size in self._sizes.items():
            entries = splits.get(split)
            if not isinstance(entries, list) or len(entries) != size:
                if split == seen.split:
                    return None
                entries = [None] * size
            labels += [e.get("label") if isinstance(e, dict) else None for e in entries]
        at = int(np.flatnonzero(self._splits == seen.split)[seen.index])
        near = np.unpackbits(self._hashes ^ self._hashes[at], axis=1).sum(axis=1)
        found = {labels[i] for i in np.flatnonzero(near <= self.threshold)} - {None}
        label = labels[at]
        return label if isinstance(label, str) and found == {label} else None


def seen_tag(split: str, exact: bool | None) -> str:
    """`predict`'s and `explain`'s tag for an image found in `split`: "[in this run's training
    split]", or "[a near copy in this run's training split]" for a changed copy."""
    near = "a near copy " if exact is False else ""
    return f"[{near}{SEEN_TAGS[split]}]"


def seen_note(split: str, distance: int, exact: bool | None = None, n_models: int = 2) -> str:
    """The sentence for an image found in `split` at `distance` bits: "This image is in this
    run's training split: the models learnt ..." ("the model learnt ..., its answer" for a run
    of one, `n_models`); a copy that is not the image itself (`exact` False, or a distance
    above 0) says "A near copy of this image is ...", and what the models learnt from is that
    copy."""
    same = exact if exact is not None else distance == 0
    what = "This image is" if same else "A near copy of this image is"
    meaning = seen_meaning(split, n_models).replace(" (or a copy of it)", "")
    if not same:
        meaning = meaning.replace("from this image", "from that copy").replace(
            "trained on it", "trained on that copy").replace("from it", "from that copy")
    return f"{what} {SEEN_TAGS.get(split, f'in split {split}')}: {meaning}."


def find_files(memberships: Sequence[Membership], paths: Sequence[str | Path],
               progress: Progress | None = None) -> list[list[Seen | None] | None]:
    """Per file, `Membership.find` in each of `memberships` (the file decoded once, as
    `predict` reads it): how `evaluate --data` and `explain-eval --data` find a folder's copies
    of a run's images, near copies (re-encoded, resized) included. None for an unreadable
    file (the callers score it as unreadable anyway). Decoding is most of the cost: 24 Sartaj
    files took 0.7-0.8 s, 299 took 3.7-5.0 s on 2 cores at load 7, a second run's look-up
    adding nothing measurable."""
    from pipeline import images
    from pipeline.data.hashing import parallel_map

    def look(path: str | Path) -> list[Seen | None] | None:
        try:
            image = images.read_image(path)
        except (images.ImageError, OSError):
            return None
        return [m.find(image) for m in memberships]

    return parallel_map(look, list(paths), "looking for copies of the run's images", progress)
