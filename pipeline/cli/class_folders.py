"""The class folders behind a run's answers, for `predict` and `explain`'s printed lines.

A run trained on class folders of other names (`Healthy`, `yes`) answers in the run's class
names (`no_tumor`, `tumor`): the user who named the folder could not tell which of theirs an
answer meant (a review, 2026-12-06). Their lines now say it beside the class, "no_tumor (class
folder: Healthy)", with one legend line; the manifest's mapping is read as train and the
dashboard read it (`data.discovery.renamed_folders`). A run whose folders are named as their
classes (the Sartaj data: `glioma_tumor`, `no_tumor`) prints as before, and the CSV and JSON
answers keep the class names (predict --json adds `class_folder_names`).
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.cli.common import one_line
from pipeline.names import class_folder_words

SEEN_PREFIX = "folder:"  # a class answered, in the legend's `seen` set


def answer_words(label: str, folders: Mapping[str, list[str]], seen: set[str]) -> str:
    """"no_tumor (class folder: Healthy)", or the label alone for a class whose folders are
    named as it; a class said with its folder is added to `seen` for `legend_line`. Folder
    names are the user's: one line each, as paths are printed."""
    words = folder_words(label, folders, seen)
    return f"{label} ({words})" if words else label


def folder_words(label: str, folders: Mapping[str, list[str]], seen: set[str]) -> str:
    """"class folder: Healthy" for a class whose training folders had other names, "" for one
    named as its folders; like `answer_words`, a class said with its folder joins `seen`."""
    names = folders.get(label)
    if not names:
        return ""
    seen.add(SEEN_PREFIX + label)
    return class_folder_words([one_line(n) for n in names])


def folder_class(choice: str, folders: Mapping[str, list[str]]) -> list[str]:
    """The classes whose class folder is named `choice` (`explain --target Healthy` on a run
    trained on `Healthy/` for no_tumor): its exact name first, else in any case; [] when no
    folder is; two classes only for a run whose folders of one name held two classes."""
    for same in (str.__eq__, lambda a, b: a.casefold() == b.casefold()):
        hits = [c for c, names in folders.items() if any(same(n, choice) for n in names)]
        if hits:
            return hits
    return []


def legend_line(folders: Mapping[str, list[str]], seen: set[str]) -> str | None:
    """The legend's line for the answers said with their class folder (`answer_words`), None
    when none was: which folder each class was learnt from, and that the machine-readable
    outputs name the class."""
    pairs = [f"{one_line(n)} → {label}" for label, names in folders.items()
             if SEEN_PREFIX + label in seen for n in names]
    if not pairs:
        return None
    return ("(class folder: …): the folder of the run's training data the class was learnt "
            f"from ({', '.join(pairs)}); CSV and JSON outputs name the class alone.")
