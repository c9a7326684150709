"""How many of the dataset folder's images a run used, and what it left out and why.

Logic without Streamlit, from the manifest's own record only (`data.n_images`: every image file
found; `splits`: what `data.make_splits` left out, by reason). The Overview showed "Images in
dataset 3264" beside splits that held 3008, and a user comparing the tiles could not make them
add up. A reason the run does not record is not guessed: the rest is said to be unrecorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dashboard.core import literal
from dashboard.runinfo import RunFacts

SHOWN_NAMES = 3  # unreadable files named in the sentence, as `train` names them


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def images_used(facts: RunFacts) -> int | None:
    """Images in the run's train, validation and test splits together; None when the manifest
    lacks one of the three counts."""
    sizes = [_count(facts.splits.get(k)) for k in ("train", "val", "test")]
    return None if any(n is None for n in sizes) else sum(sizes)  # type: ignore[arg-type]


def left_out(facts: RunFacts) -> list[tuple[int, str]]:
    """(count, why) for each reason the run records for leaving dataset images out of every
    split, in the order the split applied them; reasons with nothing left out are omitted."""
    splits = facts.splits
    out: list[tuple[int, str]] = []
    if n := _count(splits.get("unreadable_excluded")):
        names = [str(p) for p in (splits.get("unreadable") or [])][:SHOWN_NAMES]
        more = f" and {n - len(names)} more" if n > len(names) and names else ""
        named = f": {', '.join(literal(p) for p in names)}{more}" if names else ""
        out.append((n, f"unreadable file{'' if n == 1 else 's'}{named} "
                       "(`python -m pipeline audit` gives each reason)"))
    if n := _count(splits.get("label_conflicts_dropped")):
        out.append((n, f"label conflict{'' if n == 1 else 's'} (the same bytes filed under two "
                       "classes: no one true label)"))
    if n := _count(splits.get("capped_out")):
        cap = _count(splits.get("max_per_class"))
        out.append((n, "over the training profile's cap of "
                       + (f"{cap} images a class" if cap else "images a class")
                       + " (max_per_class)"))
    official = splits.get("official_test")  # the same count, also kept there
    if n := _count(splits.get("dropped_duplicates_of_test",
                              official.get("dropped_duplicates_of_test")
                              if isinstance(official, Mapping) else None)):
        out.append((n, COPIES_REASON))
    return out


COPIES_REASON = "training-folder images that are exact or near copies of official test images"
# what leaving them out means, said beside them in the Overview's one caption
COPIES_CONSEQUENCE = ", so no copy of a test image was trained or validated on"


def _images(n: int) -> str:
    return f"{n} image{'' if n == 1 else 's'}"


def left_out_sentence(facts: RunFacts, consequence: bool = False) -> str | None:
    """Markdown: the dataset folder's image count, how many the splits hold, and each recorded
    reason for the difference; a difference the reasons do not cover is called unrecorded.
    None when the splits hold every image, or the manifest lacks the counts. `consequence`:
    the copies of official test images left out are followed by what that means
    (`COPIES_CONSEQUENCE`: `overview_caption`)."""
    found, used = _count(facts.n_images), images_used(facts)
    if found is None or used is None or used >= found:
        return None
    reasons = left_out(facts)
    parts = [f"{n} {why}" + (COPIES_CONSEQUENCE if consequence and why == COPIES_REASON else "")
             for n, why in reasons]
    said = (f"The dataset folder holds {found} image file{'' if found == 1 else 's'}; this "
            f"run's splits hold {used} of them.")
    if parts:
        said += " Left out of every split: " + "; ".join(parts) + "."
    unrecorded = found - used - sum(n for n, _ in reasons)
    if unrecorded > 0:
        said += (f" The run does not record why {'the other ' if parts else ''}"
                 f"{_images(unrecorded)} {'was' if unrecorded == 1 else 'were'} left out.")
    return said


def used_words(facts: RunFacts) -> str:
    """The data line's count (About): "3264 images" when the splits hold them all (or the
    manifest lacks the counts), else "3264 image files, 3008 of them in the splits"."""
    found, used = _count(facts.n_images), images_used(facts)
    if found is None or used is None or used >= found:
        return f"{facts.n_images} images"
    return f"{found} image files, {used} of them in the splits"


def _official_counts(facts: RunFacts) -> tuple[int, int, Any, int] | None:
    """(copies dropped, test images with a copy, of them exact, test images) of a run tested on
    the official test folder, from the manifest's split record; None for other runs."""
    official = facts.splits.get("official_test")
    if not isinstance(official, Mapping):
        return None
    dropped, leaking, exact, n = (official.get(k) for k in (
        "dropped_duplicates_of_test", "leaking", "leaking_exact", "n"))
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (dropped, leaking, n)):
        return None
    return dropped, leaking, exact, n


def _leak_sentence(leaking: int, exact: Any, n: int) -> str:
    exact_part = f", {exact} of them exact" if isinstance(exact, int) and exact else ""
    return (f"{leaking} of the {n} official test images (the dataset's own test folder) have an "
            f"exact or near copy among its training-folder images{exact_part}.")


def dropped_copies_sentence(facts: RunFacts) -> str | None:
    """For a run tested on the official test folder: how many training-folder images were left
    out as exact or near copies of test images, and how many test images had one, from the
    manifest's split record; None for other runs."""
    if (counts := _official_counts(facts)) is None:
        return None
    dropped, leaking, exact, n = counts
    said = _leak_sentence(leaking, exact, n)
    if not dropped:
        return said + (" Those copies were not left out of training (a run without dedupe): "
                       "its test figures are not a clean test." if leaking else "")
    # how many the splits hold of the folder's images: `left_out_sentence`
    return (said + f" The {dropped} training-folder images that are such copies were left out "
            "of training and validation: no copy of a test image was trained on.")


def overview_caption(facts: RunFacts) -> str | None:
    """The Overview's one caption under the split tiles: the images the run used and what it
    left out, and why (`left_out_sentence`), and for a run tested on the official test folder
    how many test images have a copy among the training-folder images. The Overview had two
    captions both saying the 256 copies were left out (a review, 2026-12-06): when the first
    counts them, the copies are said once there, with what leaving them out means. None when
    there is nothing to say."""
    left = left_out_sentence(facts, consequence=True)
    counts = _official_counts(facts)
    if left is not None and counts is not None and counts[0] and COPIES_REASON in left:
        return f"{left} {_leak_sentence(*counts[1:])}"
    return " ".join(s for s in (left, dropped_copies_sentence(facts)) if s) or None
